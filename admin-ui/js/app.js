// The admin UI: login, layout, navigation (hash routes, so no page is ever a server path
// and no secret is ever in a URL) and the page for each route.

import { login, logout, onSessionEnd, currentSession, role, isAdmin, isTenantAdmin } from "./api.js";
import { h, clear, notice } from "./dom.js";
import { listPage, formPage } from "./crud.js";
import { keysPage, keyFormPage } from "./keys.js";
import { usagePage, limitsPage, drawCharts, destroyCharts } from "./usage.js";
import { resources } from "./resources.js";

const root = document.getElementById("app");
let handoff = {};
let loginNotice = null;

function navFor() {
  const all = [
    ["usage", "Usage"], ["tenants", isTenantAdmin() ? "My tenant" : "Tenants"], ["keys", "API keys"], ["credentials", "Credentials"],
    ["services", "Services"], ["routes", "Routes"], ["policies", "Policies"], ["limits", "Limits"], ["admins", "Admins"],
  ];
  const allowed = {
    admin: null,
    viewer: ["usage", "tenants", "keys", "credentials", "services", "routes", "policies", "limits"],
    tenant_admin: ["usage", "tenants", "keys", "limits"],
  }[role()];
  return all.filter(([k]) => !allowed || allowed.includes(k));
}

/** Navigates; `flash` is a one-time message and `extra` one-time data for the next page
 * (a new API key travels this way, never through the URL). */
function go(hash, flash, extra = {}) {
  handoff = { flash, ...extra };
  if (location.hash === hash) render();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  return { parts: path.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(qs || "") };
}

function loginPage() {
  const user = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true });
  const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("div", { class: "messages" }, loginNotice ? notice("warn", loginNotice) : null);
  const button = h("button", { type: "submit", class: "primary", text: "Log in" });
  const form = h("form", { class: "login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title", text: "Tollgate admin" }),
    h("p", { class: "intro", text: "Log in with an admin account of this gateway." }), msg,
    h("div", { class: "field" }, h("label", { for: "login-user", text: "User name" }), user),
    h("div", { class: "field" }, h("label", { for: "login-password", text: "Password" }), pass),
    h("div", { class: "actions" }, button));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    msg.replaceChildren();
    button.disabled = true;
    try {
      await login(user.value.trim(), pass.value);
      loginNotice = null;
      pass.value = "";
      const target = location.hash && location.hash !== "#/login" ? location.hash : "#/usage";
      go(target);
    } catch (e) {
      msg.append(notice("error", e.status === 401 ? "Wrong user name or password." : e.message));
      pass.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(root).append(h("main", { class: "login-wrap", id: "main" }, form));
  user.focus();
}

function layout(current) {
  const who = currentSession().who;
  const main = h("main", { id: "main", class: "content" });
  const nav = h("nav", { class: "sidebar", "aria-label": "Sections" },
    h("ul", {}, navFor().map(([k, label]) => h("li", {},
      h("a", { href: `#/${k}`, text: label, "aria-current": k === current ? "page" : null }))),
      h("li", { class: "nav-extra" }, h("a", { href: "/docs/", text: "API docs" }))));
  const header = h("header", { class: "topbar" },
    h("a", { class: "brand", href: "#/usage", text: "Tollgate" }),
    h("span", { class: "who", text: `${who.name || who.sub} · ${who.role}${who.tenant ? ` · ${who.tenant}` : ""}` }),
    h("button", { type: "button", id: "logout", text: "Log out", onclick: () => logout() }));
  clear(root).append(h("a", { class: "skip", href: "#main-heading", onclick: (e) => { e.preventDefault(); main.querySelector("h1")?.focus(); }, text: "Skip to content" }), header, h("div", { class: "shell" }, nav, main));
  return main;
}

const heading = (text) => h("h1", { id: "main-heading", tabindex: "-1", text });

async function render() {
  destroyCharts();
  if (!currentSession()) {
    loginPage();
    return;
  }
  const { parts, query } = parseHash();
  const [section = "usage", action, id] = parts;
  const known = navFor().some(([k]) => k === section);
  const main = layout(known ? section : "");
  const ctx = { query, go, heading, ...handoff };
  handoff = {};
  main.append(h("p", { class: "loading", role: "status", text: "Loading…" }));
  let content;
  try {
    if (!known) content = [heading("Not found"), h("p", {}, "This page does not exist or your role cannot see it. ", h("a", { href: "#/usage", text: "Go to usage" }))];
    else if (section === "usage") content = await usagePage(ctx);
    else if (section === "limits") content = await limitsPage(ctx);
    else if (section === "keys") content = action ? await keyFormPage(ctx, action === "edit" ? id : null) : await keysPage(ctx);
    else if (action === "new" && isAdmin()) content = await formPage(section, ctx, null);
    else if (action === "edit" && isAdmin()) content = await formPage(section, ctx, id);
    else content = await listPage(section, ctx);
  } catch (e) {
    if (!currentSession()) return;
    content = [heading(resources[section]?.title || "Error"), notice("error", e.message)];
  }
  if (!currentSession() || !main.isConnected) return;
  main.replaceChildren(...[content].flat().filter((c) => c !== null && c !== undefined));
  drawCharts();
  const h1 = main.querySelector("h1");
  if (h1 && ctx.focusHeading !== false) h1.focus({ preventScroll: true });
}

onSessionEnd((reason) => {
  loginNotice = reason === "expired" ? "Your session has ended (expired or revoked): please log in again." : "You are logged out.";
  render();
});
window.addEventListener("hashchange", render);
render();
