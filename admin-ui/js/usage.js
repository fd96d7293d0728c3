// Usage over time (charts and a table) and limit status, from `GET /usage` and the
// `limits/status` endpoints. Chart.js is the vendored global `Chart`.

import { api, listAll, isTenantAdmin, ownTenant } from "./api.js";
import { h, notice, fmtDate, fmtNumber, fmtCost } from "./dom.js";

const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#9333ea", "#475569"];
const METRICS = {
  requests: ["Requests", (x) => x.requests],
  errors: ["Errors", (x) => x.errors],
  total_tokens: ["Tokens", (x) => x.total_tokens],
  cost: ["Cost (USD)", (x) => x.cost],
};
const RANGES = { "1h": 3600e3, "6h": 6 * 3600e3, "24h": 24 * 3600e3, "7d": 7 * 86400e3, "30d": 30 * 86400e3 };
const BUCKET_MS = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const charts = [];
const pending = [];

/** Draws the charts of the page just mounted (Chart.js measures the canvas's parent, so
 * it must be in the document). */
export function drawCharts() {
  while (pending.length) {
    const [canvas, config] = pending.shift();
    if (window.Chart && canvas.isConnected) charts.push(new window.Chart(canvas, config));
  }
}

/** Charts hold canvases and resize observers: destroyed whenever a page is left. */
export function destroyCharts() {
  pending.length = 0;
  while (charts.length) charts.pop().destroy();
}

function select(id, label, options, value) {
  const el = h("select", { id, name: id }, options.map(([v, t]) => h("option", { value: v, text: t })));
  el.value = value;
  return [el, h("div", { class: "field inline" }, h("label", { for: id, text: label }), el)];
}

export async function usagePage(ctx) {
  const q = ctx.query;
  const state = {
    range: q.get("range") || "24h", bucket: q.get("bucket") || "hour", group: q.get("group") || "tenant",
    metric: q.get("metric") || "requests", tenant: q.get("tenant") || "", from: q.get("from") || "", to: q.get("to") || "",
  };
  const tenants = isTenantAdmin() ? [] : await listAll("/tenants").catch(() => []);
  const [rangeEl, rangeField] = select("u-range", "Range", [["1h", "Last hour"], ["6h", "Last 6 hours"], ["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"], ["custom", "Custom"]], state.range);
  const [bucketEl, bucketField] = select("u-bucket", "Bucket", [["minute", "Minute"], ["hour", "Hour"], ["day", "Day"]], state.bucket);
  const [groupEl, groupField] = select("u-group", "Stack by", [["tenant", "Tenant"], ["route", "Route"], ["model", "Model"], ["key", "API key"]], state.group);
  const [metricEl, metricField] = select("u-metric", "Show", Object.entries(METRICS).map(([k, [t]]) => [k, t]), state.metric);
  const [tenantEl, tenantField] = select("u-tenant", "Tenant", [["", "All tenants"], ...tenants.map((t) => [t.name, t.name])], state.tenant);
  const fromEl = h("input", { id: "u-from", type: "datetime-local", value: state.from });
  const toEl = h("input", { id: "u-to", type: "datetime-local", value: state.to });
  const custom = h("div", { class: "custom-range", hidden: state.range !== "custom" },
    h("div", { class: "field inline" }, h("label", { for: "u-from", text: "From" }), fromEl),
    h("div", { class: "field inline" }, h("label", { for: "u-to", text: "To" }), toEl));
  rangeEl.addEventListener("change", () => { custom.hidden = rangeEl.value !== "custom"; });
  const controls = h("form", { class: "controls", "aria-label": "Usage query" },
    rangeField, custom, bucketField, groupField, metricField, isTenantAdmin() ? null : tenantField,
    h("button", { type: "submit", class: "primary", text: "Show" }));
  controls.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams({ range: rangeEl.value, bucket: bucketEl.value, group: groupEl.value, metric: metricEl.value });
    if (tenantEl.value) p.set("tenant", tenantEl.value);
    if (rangeEl.value === "custom") { p.set("from", fromEl.value); p.set("to", toEl.value); }
    // Same query again (the Show button as a refresh) re-renders too.
    ctx.go(`#/usage?${p}`, null, { force: true });
  });

  const body = h("div", { class: "usage-body" });
  const out = [ctx.heading("Usage"), h("p", { class: "intro", text: "Requests appear here within about ten seconds of their end. Times are UTC." }), controls, body];

  let to = new Date();
  let from = new Date(to.getTime() - (RANGES[state.range] || RANGES["24h"]));
  if (state.range === "custom") {
    from = new Date(state.from);
    to = new Date(state.to);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
      body.append(notice("error", "Choose a custom range with a start before its end."));
      return out;
    }
  }
  const base = new URLSearchParams({ from: from.toISOString(), to: to.toISOString(), bucket: state.bucket });
  if (state.tenant) base.set("tenant", state.tenant);
  let grouped;
  let totals;
  try {
    [grouped, totals] = await Promise.all([
      api("GET", `/usage?${base}&group_by=${state.group}`),
      api("GET", `/usage?${base}&group_by=`),
    ]);
  } catch (e) {
    body.append(notice("error", `Usage cannot be read: ${e.message}`));
    return out;
  }
  const [metricTitle, metricOf] = METRICS[state.metric] || METRICS.requests;
  const sum = (f) => totals.data.reduce((a, x) => a + f(x), 0);
  body.append(h("dl", { class: "cards" },
    [["Requests", fmtNumber(sum((x) => x.requests))], ["Errors", fmtNumber(sum((x) => x.errors))],
      ["Tokens", fmtNumber(sum((x) => x.total_tokens))], ["Cost", fmtCost(sum((x) => x.cost))]]
      .map(([t, v]) => h("div", { class: "card" }, h("dt", { text: t }), h("dd", { text: v })))));
  if (!grouped.data.length) {
    body.append(h("div", { class: "empty" }, h("p", { text: "No requests in this range yet — send one through the proxy with an API key, then press Show." })));
  } else {
    const labels = bucketsBetween(from, to, state.bucket, grouped.data);
    const keyNames = state.group === "key" ? await keyNamesOf(state.tenant ? [state.tenant] : isTenantAdmin() ? [ownTenant()] : tenants.map((t) => t.name)) : new Map();
    const groupOf = (x) => (state.group === "key" ? keyNames.get(x.key_id) || x.key_id : x[state.group]) || "(none)";
    const groups = [...new Set(grouped.data.map(groupOf))];
    const datasets = groups.map((g, i) => {
      const byBucket = new Map();
      for (const x of grouped.data) {
        if (groupOf(x) !== g) continue;
        const b = canonical(x.bucket_start);
        byBucket.set(b, (byBucket.get(b) || 0) + metricOf(x));
      }
      return { label: g, data: labels.map((l) => byBucket.get(l) || 0), backgroundColor: COLORS[i % COLORS.length], stack: "s" };
    });
    const latency = new Map(totals.data.map((x) => [canonical(x.bucket_start), x]));
    body.append(
      chartBox("usage-chart", `${metricTitle} per ${state.bucket}, stacked by ${state.group}`, {
        type: "bar",
        data: { labels: labels.map(shortLabel(state.bucket)), datasets },
        options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: metricTitle } } } },
      }),
      chartBox("latency-chart", `Latency per ${state.bucket} (ms)`, {
        type: "line",
        data: {
          labels: labels.map(shortLabel(state.bucket)),
          datasets: [["p50", "latency_ms_p50", COLORS[0]], ["p95", "latency_ms_p95", COLORS[3]]].map(([label, f, color]) => ({
            label, data: labels.map((l) => (latency.get(l) ? latency.get(l)[f] : null)), borderColor: color, backgroundColor: color, spanGaps: true,
          })),
        },
        options: { animation: false, responsive: true, maintainAspectRatio: false, scales: { y: { beginAtZero: true, title: { display: true, text: "ms" } } } },
      }),
      usageTable(grouped.data, state.group, groupOf),
    );
  }
  body.append(await limitStatusSection(state.tenant ? [state.tenant] : isTenantAdmin() ? [ownTenant()] : tenants.map((t) => t.name)));
  return out;
}

/** "name (tenant)" of every API key of these tenants, by id; a key that cannot be read
 * keeps its id. */
async function keyNamesOf(tenantNames) {
  const names = new Map();
  await Promise.all(tenantNames.slice(0, 50).map(async (t) => {
    const keys = await listAll(`/tenants/${encodeURIComponent(t)}/keys`).catch(() => []);
    for (const k of keys) names.set(k.id, `${k.name} (${t})`);
  }));
  return names;
}

/** Every bucket start in the range, so gaps show as zero; the data's own when too many. */
function bucketsBetween(from, to, bucket, data) {
  const step = BUCKET_MS[bucket];
  const first = Math.floor(from.getTime() / step) * step;
  const count = Math.ceil((to.getTime() - first) / step);
  const seen = [...new Set(data.map((x) => x.bucket_start))].sort();
  if (bucket === "day" || count > 1500) {
    // Day buckets are UTC days; the data's own starts are exact.
    return seen.map(canonical);
  }
  const all = [];
  for (let i = 0; i < count; i += 1) all.push(new Date(first + i * step).toISOString());
  return all.map(canonical);
}

// The API writes `…:00Z`; toISOString writes `….000Z`: compare one form.
function canonical(s) {
  return new Date(s).toISOString();
}

function shortLabel(bucket) {
  return (iso) => (bucket === "day" ? iso.slice(0, 10) : iso.slice(5, 16).replace("T", " "));
}

function chartBox(id, title, config) {
  const canvas = h("canvas", { id, role: "img", "aria-label": title });
  const box = h("figure", { class: "chart" }, h("figcaption", { text: title }), h("div", { class: "chart-box" }, canvas));
  pending.push([canvas, config]);
  return box;
}

function usageTable(data, group, groupOf) {
  const groupTitle = { tenant: "Tenant", route: "Route", model: "Model", key: "API key" }[group] || group;
  const rows = [...data].sort((a, b) => (a.bucket_start < b.bucket_start ? 1 : -1)).slice(0, 500);
  const num = (label, v) => h("td", { class: "num", "data-label": label, text: fmtNumber(v) });
  return h("div", { class: "table-wrap" },
    h("table", { id: "usage-table" },
      h("caption", { text: `Usage by bucket and ${groupTitle.toLowerCase()}${data.length > 500 ? " (latest 500 rows)" : ""}` }),
      h("thead", {}, h("tr", {}, ["Bucket (UTC)", groupTitle, "Requests", "Errors", "Refused", "Prompt tokens", "Completion tokens", "Tokens", "Cost", "p50 ms", "p95 ms"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows.map((x) => h("tr", {},
        h("td", { "data-label": "Bucket", text: fmtDate(x.bucket_start) }), h("td", { "data-label": groupTitle, text: groupOf(x) }),
        num("Requests", x.requests), num("Errors", x.errors), num("Refused", x.rejected), num("Prompt tokens", x.prompt_tokens),
        num("Completion tokens", x.completion_tokens), num("Tokens", x.total_tokens),
        h("td", { class: "num", "data-label": "Cost", text: fmtCost(x.cost) }),
        h("td", { class: "num", "data-label": "p50 ms", text: fmtNumber(x.latency_ms_p50, 1) }),
        h("td", { class: "num", "data-label": "p95 ms", text: fmtNumber(x.latency_ms_p95, 1) }))))));
}

/** Used / remaining / reset of every limit set on these tenants and their keys. */
export async function limitStatusSection(tenantNames) {
  const rows = [];
  const shown = tenantNames.slice(0, 50);
  await Promise.all(shown.map(async (t) => {
    const enc = encodeURIComponent(t);
    try {
      const [status, keys] = await Promise.all([api("GET", `/tenants/${enc}/limits/status`), listAll(`/tenants/${enc}/keys`)]);
      for (const [kind, s] of Object.entries(status.limits)) rows.push([t, "tenant", kind, s]);
      const limited = keys.filter((k) => !k.revoked_at && Object.values(k.limits || {}).some((v) => v !== null));
      await Promise.all(limited.map(async (k) => {
        const ks = await api("GET", `/tenants/${enc}/keys/${k.id}/limits/status`);
        for (const [kind, s] of Object.entries(ks.limits)) rows.push([t, `key ${k.name}`, kind, s]);
      }));
    } catch (e) {
      rows.push([t, "—", "error", { error: e.message }]);
    }
  }));
  rows.sort((a, b) => (a[0] + a[1] + a[2]).localeCompare(b[0] + b[1] + b[2]));
  const section = h("section", { class: "limit-status", "aria-labelledby": "limit-status-title" },
    h("h2", { id: "limit-status-title", text: "Limit status" }));
  if (!rows.length) {
    section.append(h("div", { class: "empty" }, h("p", { text: "No limits set — set requests or tokens per minute, or a budget, on a tenant, an API key or a route." })));
    return section;
  }
  const fmt = (kind, v) => (kind === "budget" ? fmtCost(v) : fmtNumber(v));
  section.append(h("div", { class: "table-wrap" }, h("table", { id: "limit-status-table" },
    h("caption", { class: "visually-hidden", text: "Limit status per tenant and key" }),
    h("thead", {}, h("tr", {}, ["Tenant", "Applies to", "Limit", "Used", "Remaining", "Of", "Resets (UTC)"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows.map(([t, who, kind, s]) => (s.error
      ? h("tr", {}, h("td", { text: t }), h("td", { colspan: "6", text: `cannot be read: ${s.error}` }))
      : h("tr", {},
        h("td", { "data-label": "Tenant", text: t }), h("td", { "data-label": "Applies to", text: who }),
        h("td", { "data-label": "Limit", text: kind === "budget" ? `budget per ${s.period}` : kind.replaceAll("_", " ") }),
        h("td", { class: "num", "data-label": "Used", text: fmt(kind, s.used) }), h("td", { class: "num", "data-label": "Remaining", text: fmt(kind, s.remaining) }),
        h("td", { class: "num", "data-label": "Of", text: fmt(kind, s.limit) }), h("td", { "data-label": "Resets", text: fmtDate(s.resets_at) }))))))));
  if (tenantNames.length > shown.length) section.append(h("p", { class: "help", text: `Showing the first ${shown.length} tenants; pick a tenant above for another.` }));
  return section;
}

export async function limitsPage(ctx) {
  const names = isTenantAdmin() ? [ownTenant()] : (await listAll("/tenants")).map((t) => t.name);
  return [
    ctx.heading("Limits"),
    h("p", { class: "intro" }, "Limits are set on ", isTenantAdmin() ? "API keys" : h("a", { href: "#/tenants", text: "tenants" }), ", ",
      h("a", { href: "#/keys", text: "API keys" }), isTenantAdmin() ? "" : [" and ", h("a", { href: "#/routes", text: "routes" })],
      ". Each is counted in fixed UTC windows: requests and tokens per minute, budgets per day or month."),
    await limitStatusSection(names),
  ];
}
