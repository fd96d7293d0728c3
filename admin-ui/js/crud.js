// List, create, edit and delete pages for the resources in resources.js.

import { api, listAll, isAdmin } from "./api.js";
import { h, notice } from "./dom.js";
import { buildForm } from "./forms.js";
import { resources, pickers, cellText } from "./resources.js";

export const PAGE_SIZE = 20;

export async function loadPickers(kinds) {
  await Promise.all((kinds || []).map(async (k) => {
    try {
      pickers[k] = await listAll(`/${k}`);
    } catch {
      pickers[k] = [];
    }
  }));
}

/** A table with paging: `fetchPage(offset)` answers the API's `{data, next}`. */
export async function pagedTable({ columns, fetchPage, offset, onOffset, empty, actions, caption }) {
  const page = await fetchPage(offset);
  if (!page.data.length && offset === 0) {
    return h("div", { class: "empty" }, h("p", { text: empty }));
  }
  const table = h("table", {},
    h("caption", { class: "visually-hidden", text: caption }),
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", { scope: "col", text: title })), actions ? h("th", { scope: "col", text: "Actions" }) : null)),
    h("tbody", {}, page.data.map((item) => h("tr", {},
      columns.map(([title, get]) => h("td", { "data-label": title }, cellText(get(item)))),
      actions ? h("td", { class: "row-actions" }, actions(item)) : null))));
  const pager = h("nav", { class: "pager", "aria-label": `${caption} pages` },
    h("button", { type: "button", text: "← Previous", disabled: offset === 0, onclick: () => onOffset(Math.max(0, offset - PAGE_SIZE)) }),
    h("span", { text: `Items ${offset + 1}–${offset + page.data.length}` }),
    h("button", { type: "button", text: "Next →", disabled: !page.next, onclick: () => onOffset(offset + PAGE_SIZE) }));
  return h("div", { class: "table-wrap" }, table, pager);
}

export async function listPage(kind, ctx) {
  const r = resources[kind];
  const writable = isAdmin() && !r.readOnly;
  const message = h("div", { class: "messages", "aria-live": "polite" });
  if (ctx.flash) message.append(notice("ok", ctx.flash));
  const idOf = r.idOf || ((x) => x.name);
  const offset = Number(ctx.query.get("offset") || 0);
  const actions = writable ? (item) => [
    h("a", { class: "button", href: `#/${kind}/edit/${encodeURIComponent(idOf(item))}`, text: "Edit", "aria-label": `Edit ${r.singular} ${idOf(item)}` }),
    h("button", {
      type: "button", class: "danger", text: "Delete", "aria-label": `Delete ${r.singular} ${idOf(item)}`,
      onclick: async () => {
        if (!window.confirm(`Delete ${r.singular} '${idOf(item)}'?`)) return;
        message.replaceChildren();
        try {
          await api("DELETE", `${r.path}/${encodeURIComponent(idOf(item))}`);
          ctx.go(`#/${kind}`, `Deleted ${r.singular} '${idOf(item)}'.`);
        } catch (e) {
          const why = e.status === 409 ? `It is still in use: ${e.message}. Remove or change what refers to it first.` : e.message;
          message.append(notice("error", `Cannot delete ${r.singular} '${idOf(item)}'. ${why}`));
          message.querySelector(".notice").focus();
        }
      },
    }),
  ] : null;
  const table = await pagedTable({
    columns: r.columns, offset, empty: r.empty, actions, caption: r.title,
    fetchPage: (o) => api("GET", `${r.path}?limit=${PAGE_SIZE}&offset=${o}`),
    onOffset: (o) => ctx.go(`#/${kind}?offset=${o}`),
  });
  return [
    h("div", { class: "page-head" }, ctx.heading(r.title),
      writable ? h("a", { class: "button primary", href: `#/${kind}/new`, text: `New ${r.singular}` }) : null),
    h("p", { class: "intro", text: r.intro }),
    message, table,
  ];
}

export async function formPage(kind, ctx, name) {
  const r = resources[kind];
  await loadPickers(r.pickers);
  const item = name ? await api("GET", `${r.path}/${encodeURIComponent(name)}`) : null;
  const title = item ? `Edit ${r.singular} '${name}'` : `New ${r.singular}`;
  const form = buildForm({
    fields: r.fields, item, submitLabel: item ? "Save" : `Create ${r.singular}`,
    onCancel: () => ctx.go(`#/${kind}`),
    onSubmit: async (body) => {
      const saved = item
        ? await api("PATCH", `${r.path}/${encodeURIComponent(name)}`, body)
        : await api("POST", r.path, body);
      const id = (r.idOf || ((x) => x.name))(saved);
      ctx.go(`#/${kind}`, item ? `Saved ${r.singular} '${id}'.` : `Created ${r.singular} '${id}'.`);
    },
  });
  return [ctx.heading(title), h("p", { class: "intro", text: r.intro }), form];
}
