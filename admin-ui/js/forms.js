// Forms built from field descriptions: labelled inputs, the body they submit, and the
// API's validation errors shown next to the field they name.
//
// A field: { path: "limits.budget.amount_usd", label, type, required, help, options,
// emptyNull, placeholder, noBlank (a select without a "none" choice) }. Types: text,
// textarea, number, select, checkbox, list (one item per line or comma), secret
// (write-only: never filled in), json, datetime. `{ group, help }` starts a fieldset.

import { h, uid, notice } from "./dom.js";

export function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== "object" || o[k] === null) o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
}

function toInputDate(value) {
  if (!value) return "";
  const d = new Date(value);
  // datetime-local shows local time without a zone.
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

/**
 * Renders `fields` into a <form>. `item` (when editing) fills the inputs; secrets stay
 * empty. `onSubmit(body)` returns a promise; an ApiError with `fields` marks them.
 */
export function buildForm({ fields, item, submitLabel, onSubmit, onCancel, extraTop }) {
  const editing = !!item;
  const controls = new Map();
  const errorSlots = new Map();
  const top = h("div", { class: "form-errors" });
  const form = h("form", { class: "resource-form", novalidate: true });
  form.append(top);
  if (extraTop) form.append(extraTop);
  let fieldset = null;
  for (const f of fields) {
    if (f.group) {
      fieldset = h("fieldset", {}, h("legend", { text: f.group }));
      if (f.help) fieldset.append(h("p", { class: "help", text: f.help }));
      form.append(fieldset);
      continue;
    }
    const id = uid("f");
    const errId = `${id}-err`;
    const helpId = f.help ? `${id}-help` : null;
    const described = [helpId, errId].filter(Boolean).join(" ");
    let current = item ? getPath(item, f.path) : undefined;
    if (current === undefined || current === null) current = f.default;
    let input;
    if (f.type === "select") {
      input = h("select", { id, name: f.path, "aria-describedby": described, required: f.required });
      const options = typeof f.options === "function" ? f.options() : f.options;
      if ((!f.required && !f.noBlank) || f.blank) input.append(h("option", { value: "", text: f.blank || "— none —" }));
      for (const o of options || []) {
        const [value, label] = Array.isArray(o) ? o : [o, o];
        input.append(h("option", { value, text: label }));
      }
      input.value = current === null || current === undefined ? "" : String(current);
    } else if (f.type === "checkbox") {
      input = h("input", { id, name: f.path, type: "checkbox", "aria-describedby": described, checked: current === undefined ? f.default : current });
    } else if (f.type === "textarea" || f.type === "json" || f.type === "list") {
      let text = "";
      if (f.type === "json") text = current === undefined || current === null ? "{}" : JSON.stringify(current, null, 2);
      else if (f.type === "list") text = Array.isArray(current) ? current.join("\n") : "";
      else text = current || "";
      input = h("textarea", { id, name: f.path, rows: f.type === "json" ? 8 : 3, "aria-describedby": described, spellcheck: "false" });
      input.value = text;
    } else {
      const type = { number: "number", secret: "password", datetime: "datetime-local" }[f.type] || "text";
      input = h("input", {
        id, name: f.path, type, "aria-describedby": described, required: f.required && !(editing && f.type === "secret"),
        autocomplete: f.type === "secret" ? "new-password" : "off", step: f.type === "number" ? f.step || "any" : null,
        placeholder: f.type === "secret" && editing ? "stored — leave empty to keep" : f.placeholder,
      });
      if (f.type === "datetime") input.value = toInputDate(current);
      else if (f.type !== "secret" && current !== undefined && current !== null) input.value = String(current);
    }
    controls.set(f.path, { f, input });
    const err = h("p", { class: "field-error", id: errId, hidden: true });
    errorSlots.set(f.path, { err, input });
    // The marker stays outside the label so the field's name is the label alone; the
    // input's `required` tells assistive technology.
    const label = h("label", { for: id }, f.label);
    const labelRow = f.required ? h("div", { class: "label-row" }, label, h("span", { class: "req", "aria-hidden": "true", text: "*" })) : label;
    const row = h("div", { class: `field field-${f.type || "text"}` },
      f.type === "checkbox" ? [input, label] : [labelRow, input],
      f.help ? h("p", { class: "help", id: helpId, text: f.help }) : null, err);
    (fieldset || form).append(row);
  }
  const submit = h("button", { type: "submit", class: "primary", text: submitLabel });
  form.append(h("div", { class: "actions" }, submit,
    onCancel ? h("button", { type: "button", text: "Cancel", onclick: onCancel }) : null));

  function clearErrors() {
    top.replaceChildren();
    for (const { err, input } of errorSlots.values()) {
      err.hidden = true;
      err.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }

  function showErrors(message, fieldErrors) {
    const unplaced = [];
    let first = null;
    for (const [path, text] of Object.entries(fieldErrors || {})) {
      const slot = slotFor(path);
      if (!slot) {
        unplaced.push(`${path}: ${text}`);
        continue;
      }
      slot.err.hidden = false;
      slot.err.textContent = slot.err.textContent ? `${slot.err.textContent}; ${text}` : String(text);
      slot.input.setAttribute("aria-invalid", "true");
      first = first || slot.input;
    }
    top.append(notice("error", fieldErrors ? "Please correct the marked fields." : message,
      unplaced.length ? h("ul", {}, unplaced.map((u) => h("li", { text: u }))) : null));
    (first || submit).focus();
  }

  // "paths[0]" belongs to "paths", "limits.budget" to "limits.budget.amount_usd".
  function slotFor(path) {
    const base = path.replace(/\[\d+\]/g, "");
    if (errorSlots.has(base)) return errorSlots.get(base);
    for (const [p, slot] of errorSlots) if (p.startsWith(`${base}.`)) return slot;
    const parts = base.split(".");
    while (parts.length > 1) {
      parts.pop();
      if (errorSlots.has(parts.join("."))) return errorSlots.get(parts.join("."));
    }
    return null;
  }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const { body, errors } = collect(controls, editing);
    if (Object.keys(errors).length) {
      showErrors("", errors);
      return;
    }
    submit.disabled = true;
    try {
      await onSubmit(body);
    } catch (e) {
      showErrors(e.message, e.fields);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** The body the inputs describe. Empty optional values are left out when creating and
 * sent as null when editing (a merge patch removes them); empty secrets are never sent. */
function collect(controls, editing) {
  const body = {};
  const errors = {};
  for (const [path, { f, input }] of controls) {
    let value;
    const raw = f.type === "checkbox" ? input.checked : input.value.trim();
    switch (f.type) {
      case "checkbox":
        value = raw;
        break;
      case "number":
        value = raw === "" ? null : Number(raw);
        if (raw !== "" && Number.isNaN(value)) errors[path] = "must be a number";
        break;
      case "list":
        value = raw.split(/[\n,]/).map((s) => s.trim()).filter(Boolean);
        if (!value.length && f.emptyNull) value = null;
        break;
      case "json":
        try {
          value = raw === "" ? {} : JSON.parse(raw);
        } catch (e) {
          errors[path] = `not valid JSON: ${e.message}`;
        }
        break;
      case "datetime":
        value = raw === "" ? null : new Date(raw).toISOString();
        break;
      case "secret":
        if (raw === "") continue;
        value = input.value;
        break;
      default:
        value = raw === "" ? null : raw;
    }
    if (value === null && !editing) continue;
    setPath(body, path, value);
  }
  // A budget is a pair: no amount means no budget.
  for (const limits of [body.limits]) {
    if (limits && limits.budget && (limits.budget.amount_usd === null || limits.budget.amount_usd === undefined)) {
      if (editing) limits.budget = null;
      else delete limits.budget;
    }
  }
  return { body, errors };
}

/** The limit fields every limited object (tenant, key, route) shares. */
export function limitFields({ shared = false } = {}) {
  return [
    { group: "Limits", help: "Leave empty for no limit. Windows are fixed UTC minutes; budgets reset each UTC day or month." },
    { path: "limits.requests_per_minute", label: "Requests per minute", type: "number", step: "1" },
    { path: "limits.tokens_per_minute", label: "Tokens per minute", type: "number", step: "1" },
    { path: "limits.budget.amount_usd", label: "Budget (USD)", type: "number", step: "0.01" },
    { path: "limits.budget.period", label: "Budget period", type: "select", options: ["day", "month"], noBlank: true, default: "month" },
    ...(shared ? [{ path: "limits.shared", label: "One shared counter for all tenants", type: "checkbox" }] : []),
  ];
}

export function limitsSummary(limits) {
  if (!limits) return "—";
  const parts = [];
  if (limits.requests_per_minute) parts.push(`${limits.requests_per_minute} req/min`);
  if (limits.tokens_per_minute) parts.push(`${limits.tokens_per_minute} tok/min`);
  if (limits.budget) parts.push(`$${limits.budget.amount_usd}/${limits.budget.period}`);
  return parts.length ? parts.join(", ") : "none";
}
