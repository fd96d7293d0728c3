// The admin API client. The session token lives only in this module's memory: never in
// browser storage, a cookie or a URL, so a reload logs out and nothing can forge a request
// with it. A 401 (expired or revoked token) ends the session.

let session = null;
let expiryTimer = null;
const endListeners = [];

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.code = detail.code || `http_${status}`;
    this.fields = detail.fields || null;
  }
}

export function currentSession() {
  return session;
}

/** `fn(reason)` runs when the session ends: "logout" or "expired". */
export function onSessionEnd(fn) {
  endListeners.push(fn);
}

function endSession(reason) {
  if (!session) return;
  session = null;
  clearTimeout(expiryTimer);
  for (const fn of endListeners) fn(reason);
}

export async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (session) headers.authorization = `Bearer ${session.token}`;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { code: "network", message: `The gateway cannot be reached (${e.message}).` });
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (response.status === 401 && session && path !== "/auth/login") {
    endSession("expired");
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || { message: text || response.statusText });
  }
  return data;
}

export async function login(username, password) {
  const granted = await api("POST", "/auth/login", { username, password });
  session = { token: granted.token, expiresAt: new Date(granted.expires_at), who: null };
  try {
    session.who = await api("GET", "/auth/whoami");
  } catch (e) {
    session = null;
    throw e;
  }
  const left = session.expiresAt.getTime() - Date.now();
  // setTimeout's delay is a 32-bit signed integer of milliseconds.
  expiryTimer = setTimeout(() => endSession("expired"), Math.min(Math.max(left, 0), 2 ** 31 - 1));
  return session;
}

export function logout() {
  endSession("logout");
}

/** Every item of a collection (for pickers), at most `max`. */
export async function listAll(path, max = 1000) {
  const page = await api("GET", `${path}?limit=${max}`);
  return page.data;
}

export const role = () => (session && session.who ? session.who.role : null);
export const isAdmin = () => role() === "admin";
export const isTenantAdmin = () => role() === "tenant_admin";
export const ownTenant = () => (session && session.who ? session.who.tenant : null);
