// API keys of one tenant: list, create (the key is shown once), limits, revoke.

import { api, listAll, isAdmin, isTenantAdmin, ownTenant } from "./api.js";
import { h, notice, fmtDate } from "./dom.js";
import { buildForm, limitFields, limitsSummary } from "./forms.js";
import { pagedTable, PAGE_SIZE } from "./crud.js";

const keyPath = (tenant) => `/tenants/${encodeURIComponent(tenant)}/keys`;
const canWrite = () => isAdmin() || isTenantAdmin();

/** The tenant the page is about: a tenant_admin's own, else the one chosen (or the first). */
async function chooseTenant(ctx) {
  if (isTenantAdmin()) return { tenant: ownTenant(), picker: null };
  const tenants = await listAll("/tenants");
  if (!tenants.length) return { tenant: null, picker: null };
  const wanted = ctx.query.get("tenant");
  const tenant = tenants.some((t) => t.name === wanted) ? wanted : tenants[0].name;
  const select = h("select", { id: "keys-tenant", onchange: (e) => ctx.go(`#/keys?tenant=${encodeURIComponent(e.target.value)}`) },
    tenants.map((t) => h("option", { value: t.name, text: t.name })));
  select.value = tenant;
  return { tenant, picker: h("div", { class: "field inline" }, h("label", { for: "keys-tenant", text: "Tenant" }), select) };
}

export async function keysPage(ctx) {
  const { tenant, picker } = await chooseTenant(ctx);
  const head = h("div", { class: "page-head" }, ctx.heading("API keys"),
    tenant && canWrite() ? h("a", { class: "button primary", href: `#/keys/new?tenant=${encodeURIComponent(tenant)}`, text: "New API key" }) : null);
  const intro = h("p", { class: "intro", text: "Clients send an API key as the header \"Authorization: Bearer tg-…\". Deleting a key revokes it; it stays listed." });
  if (!tenant) {
    return [head, intro, h("div", { class: "empty" }, h("p", {}, "No tenants yet — ", h("a", { href: "#/tenants/new", text: "create a tenant" }), " first; API keys belong to a tenant."))];
  }
  const message = h("div", { class: "messages", "aria-live": "polite" });
  if (ctx.flash) message.append(notice("ok", ctx.flash));
  if (ctx.created) message.append(shownOnce(ctx.created));
  const offset = Number(ctx.query.get("offset") || 0);
  const q = `tenant=${encodeURIComponent(tenant)}`;
  const table = await pagedTable({
    caption: `API keys of ${tenant}`, offset,
    empty: `No API keys for ${tenant} yet — create one so a client can call the proxy.`,
    columns: [
      ["Name", (k) => k.name], ["Prefix", (k) => `${k.prefix}…`], ["Routes", (k) => (k.routes ? k.routes.join(", ") : "all")],
      ["Limits", (k) => limitsSummary(k.limits)], ["Expires", (k) => fmtDate(k.expires_at)],
      ["Last used", (k) => fmtDate(k.last_used_at)], ["State", (k) => (k.revoked_at ? `revoked ${fmtDate(k.revoked_at)}` : "active")],
    ],
    fetchPage: (o) => api("GET", `${keyPath(tenant)}?limit=${PAGE_SIZE}&offset=${o}`),
    onOffset: (o) => ctx.go(`#/keys?${q}&offset=${o}`),
    actions: canWrite() ? (k) => (k.revoked_at ? [] : [
      h("a", { class: "button", href: `#/keys/edit/${k.id}?${q}`, text: "Limits", "aria-label": `Edit limits of key ${k.name}` }),
      h("button", {
        type: "button", class: "danger", text: "Revoke", "aria-label": `Revoke key ${k.name}`,
        onclick: async () => {
          if (!window.confirm(`Revoke key '${k.name}'? Clients using it are refused within a second.`)) return;
          try {
            await api("DELETE", `${keyPath(tenant)}/${k.id}`);
            ctx.go(`#/keys?${q}`, `Revoked key '${k.name}'.`);
          } catch (e) {
            message.replaceChildren(notice("error", `Cannot revoke key '${k.name}': ${e.message}`));
          }
        },
      }),
    ]) : null,
  });
  return [head, picker, intro, message, table];
}

/** The new key, shown this once, with a copy button; gone when the user leaves the page. */
function shownOnce(created) {
  const input = h("input", { id: "new-key", type: "text", readonly: true, value: created.key, class: "secret-once", "aria-describedby": "new-key-warning" });
  const status = h("span", { class: "copy-status", role: "status" });
  return h("section", { class: "notice warn key-once", "aria-labelledby": "new-key-title" },
    h("h2", { id: "new-key-title", text: `API key '${created.name}' created` }),
    h("p", { id: "new-key-warning" }, h("strong", { text: "Copy it now: it will not be shown again." }), " Tollgate stores only a hash of it."),
    h("label", { for: "new-key", text: "New API key" }),
    h("div", { class: "copy-row" }, input,
      h("button", {
        type: "button", class: "primary", text: "Copy",
        onclick: async () => {
          input.select();
          try {
            await navigator.clipboard.writeText(created.key);
            status.textContent = "Copied.";
          } catch {
            status.textContent = "Copying was refused: select the key and copy it by hand.";
          }
        },
      }), status));
}

export async function keyFormPage(ctx, id) {
  const tenant = isTenantAdmin() ? ownTenant() : ctx.query.get("tenant");
  const back = `#/keys?tenant=${encodeURIComponent(tenant)}`;
  if (id) {
    const key = await api("GET", `${keyPath(tenant)}/${encodeURIComponent(id)}`);
    const form = buildForm({
      fields: limitFields(), item: key, submitLabel: "Save limits", onCancel: () => ctx.go(back),
      onSubmit: async (body) => {
        const limits = Object.fromEntries(Object.entries(body.limits || {}).filter(([, v]) => v !== null));
        await api("PATCH", `${keyPath(tenant)}/${encodeURIComponent(id)}`, { limits });
        ctx.go(back, `Saved the limits of key '${key.name}'.`);
      },
    });
    return [ctx.heading(`Limits of key '${key.name}' (${tenant})`), form];
  }
  const form = buildForm({
    submitLabel: "Create API key", onCancel: () => ctx.go(back),
    fields: [
      { path: "name", label: "Name", required: true, help: "What the key is for, e.g. the client's name." },
      { path: "expires_at", label: "Expires at", type: "datetime", help: "Your local time; empty: never expires." },
      { path: "routes", label: "Routes allowed", type: "list", emptyNull: true, help: "Route names, one per line; empty: every route the tenant may use." },
      ...limitFields(),
      { path: "tags", label: "Tags", type: "list" },
    ],
    onSubmit: async (body) => {
      const created = await api("POST", keyPath(tenant), body);
      ctx.go(back, null, { created });
    },
  });
  return [ctx.heading(`New API key for ${tenant}`), form];
}
