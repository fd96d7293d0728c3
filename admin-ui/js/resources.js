// The resources the admin API manages: their list columns, form fields and empty states.

import { h, fmtDate } from "./dom.js";
import { limitFields, limitsSummary } from "./forms.js";

const tags = { path: "tags", label: "Tags", type: "list", help: "One per line or comma-separated." };
const nameField = (what) => ({
  path: "name", label: "Name", required: true, placeholder: "lowercase-name",
  help: `Unique ${what} name: lowercase letters, digits, '-', '_' or '.'.`,
});

// Pickers are filled before a form opens (see crud.js `loadPickers`).
export const pickers = { tenants: [], services: [], credentials: [], routes: [] };
const names = (list) => () => pickers[list].map((x) => x.name);

export const resources = {
  tenants: {
    title: "Tenants", singular: "tenant", path: "/tenants",
    intro: "A tenant is a customer or team that calls the proxy with its own API keys, limits and usage.",
    empty: "No tenants yet — a tenant is who calls the proxy; create one, then give it an API key.",
    columns: [
      ["Name", (x) => x.name], ["Display name", (x) => x.display_name || "—"],
      ["Limits", (x) => limitsSummary(x.limits)], ["Created", (x) => fmtDate(x.created_at)],
    ],
    fields: [nameField("tenant"), { path: "display_name", label: "Display name" }, ...limitFields(), tags],
  },
  credentials: {
    title: "Credentials", singular: "credential", path: "/credentials", pickers: [],
    intro: "Upstream secrets, encrypted at rest. Secret values are write-only: once stored they are never shown again, here or in the API.",
    empty: "No credentials yet — a credential holds the provider's API key that a service sends upstream.",
    columns: [
      ["Name", (x) => x.name],
      ["Header", (x) => (x.header_name ? `${x.header_name}: ${x.has_header_value ? "(secret stored)" : "(no value)"}` : "—")],
      ["Parameter", (x) => (x.param_name ? `${x.param_location || ""} ${x.param_name}: ${x.has_param_value ? "(secret stored)" : "(no value)"}` : "—")],
      ["Updated", (x) => fmtDate(x.updated_at)],
    ],
    fields: [
      nameField("credential"),
      { group: "Header", help: "Either a header pair…" },
      { path: "header_name", label: "Header name", placeholder: "Authorization" },
      { path: "header_value", label: "Header value (secret)", type: "secret", placeholder: "Bearer sk-…", help: "Write-only: never displayed after saving." },
      { group: "Parameter", help: "…or a query/body parameter." },
      { path: "param_name", label: "Parameter name" },
      { path: "param_value", label: "Parameter value (secret)", type: "secret", help: "Write-only: never displayed after saving." },
      { path: "param_location", label: "Parameter location", type: "select", options: ["query", "body"] },
      { group: "Options" },
      { path: "allow_override", label: "Keep the client's own header or parameter when it sends one", type: "checkbox", default: false },
      tags,
    ],
  },
  services: {
    title: "Services", singular: "service", path: "/services", pickers: ["credentials", "tenants"],
    intro: "A service is one LLM provider endpoint with its credential and timeouts.",
    empty: "No services yet — a service names a provider (OpenAI, Azure, Anthropic…) and the credential to call it with.",
    columns: [
      ["Name", (x) => x.name], ["Provider", (x) => x.provider], ["Upstream URL", (x) => x.upstream_url || "(provider default)"],
      ["Credential", (x) => x.credential || "—"], ["Tenant", (x) => x.tenant || "shared"],
    ],
    fields: [
      nameField("service"),
      { path: "provider", label: "Provider", type: "select", required: true, options: ["openai", "azure", "anthropic", "cohere", "mistral", "llama2"] },
      { path: "upstream_url", label: "Upstream URL", placeholder: "https://api.openai.com/v1/chat/completions", help: "Full URL to call; empty for the provider's default (required for llama2)." },
      { path: "credential", label: "Credential", type: "select", options: names("credentials") },
      { path: "tenant", label: "Private to tenant", type: "select", options: names("tenants"), blank: "— shared by all tenants —" },
      { group: "Provider options", help: "Only the ones your provider needs." },
      { path: "options.anthropic_version", label: "Anthropic version", placeholder: "2023-06-01" },
      { path: "options.azure_instance", label: "Azure instance" },
      { path: "options.azure_deployment_id", label: "Azure deployment id" },
      { path: "options.azure_api_version", label: "Azure API version" },
      { path: "options.mistral_format", label: "Mistral format", type: "select", options: ["openai", "ollama"] },
      { path: "options.llama2_format", label: "Llama2 format", type: "select", options: ["raw", "openai", "ollama"] },
      { group: "Timeouts (milliseconds)" },
      { path: "timeouts.connect_ms", label: "Connect", type: "number", step: "1" },
      { path: "timeouts.read_ms", label: "Read", type: "number", step: "1" },
      { path: "timeouts.total_ms", label: "Total deadline", type: "number", step: "1" },
      tags,
    ],
  },
  routes: {
    title: "Routes", singular: "route", path: "/routes", pickers: ["services", "tenants"],
    intro: "A route connects a path or a model alias to a service.",
    empty: "No routes yet — a route connects a path or model alias to a service.",
    columns: [
      ["Name", (x) => x.name], ["Paths", (x) => (x.paths.length ? x.paths.join(", ") : "—")],
      ["Model alias", (x) => x.model_alias || "—"], ["Service", (x) => x.service], ["Type", (x) => x.route_type],
      ["Limits", (x) => limitsSummary(x.limits)],
    ],
    fields: [
      nameField("route"),
      { path: "service", label: "Service", type: "select", required: true, options: names("services"), blank: "— choose a service —" },
      { path: "route_type", label: "Route type", type: "select", required: true, options: ["llm/v1/chat", "llm/v1/completions", "llm/v1/embeddings", "preserve"] },
      { path: "paths", label: "Paths", type: "list", help: "Path prefixes on the proxy listener, one per line, e.g. /openai/chat." },
      { path: "model_alias", label: "Model alias", help: "Makes the route reachable as the \"model\" of /v1/chat/completions requests." },
      { group: "Model" },
      { path: "model.name", label: "Upstream model", placeholder: "gpt-4o-mini", help: "Empty: the model the client asks for is used." },
      { path: "model.options.input_cost", label: "Input cost (USD per 1M tokens)", type: "number" },
      { path: "model.options.output_cost", label: "Output cost (USD per 1M tokens)", type: "number" },
      { path: "model.options.max_tokens", label: "Max tokens", type: "number", step: "1" },
      { path: "model.options.temperature", label: "Temperature", type: "number" },
      { group: "Access" },
      { path: "response_streaming", label: "Streaming", type: "select", required: true, options: ["allow", "deny", "always"], default: "allow" },
      { path: "tenants", label: "Tenants allowed", type: "list", emptyNull: true, help: "Tenant names, one per line; empty: every tenant." },
      ...limitFields({ shared: true }),
      tags,
    ],
  },
  policies: {
    title: "Policies", singular: "policy", path: "/policies", pickers: ["routes", "services", "tenants"],
    intro: "Kong's companion AI plugins (prompt guard, template, decorator, transformers) bound to one route, service or tenant.",
    empty: "No policies yet — a policy runs on every request of the route, service or tenant it is attached to.",
    columns: [
      ["Name", (x) => x.name], ["Type", (x) => x.type],
      ["Attached to", (x) => (x.route ? `route ${x.route}` : x.service ? `service ${x.service}` : `tenant ${x.tenant}`)],
      ["Enabled", (x) => (x.enabled ? "yes" : "no")],
    ],
    fields: [
      nameField("policy"),
      { path: "type", label: "Type", type: "select", required: true, options: ["ai-prompt-guard", "ai-prompt-decorator", "ai-prompt-template", "ai-request-transformer", "ai-response-transformer"] },
      { group: "Attach to exactly one" },
      { path: "route", label: "Route", type: "select", options: names("routes") },
      { path: "service", label: "Service", type: "select", options: names("services") },
      { path: "tenant", label: "Tenant", type: "select", options: names("tenants") },
      { group: "Configuration" },
      { path: "config", label: "Config (JSON, Kong's field names)", type: "json", help: 'e.g. {"deny_patterns": ["secret"]} for ai-prompt-guard.' },
      { path: "enabled", label: "Enabled", type: "checkbox", default: true },
      tags,
    ],
  },
  admins: {
    title: "Admins", singular: "admin", path: "/admins", pickers: ["tenants"], idOf: (x) => x.username,
    intro: "People who log in here. Roles: admin (everything), viewer (read-only), tenant_admin (one tenant's keys, limits and usage).",
    empty: "Only the first admin exists — add a viewer or a tenant_admin for a customer.",
    columns: [["User name", (x) => x.username], ["Role", (x) => x.role], ["Tenant", (x) => x.tenant || "—"], ["Created", (x) => fmtDate(x.created_at)]],
    fields: [
      { path: "username", label: "User name", required: true, help: "Lowercase letters, digits, '-', '_' or '.'." },
      { path: "password", label: "Password", type: "secret", required: true, help: "8 to 1024 characters; write-only." },
      { path: "role", label: "Role", type: "select", required: true, options: ["admin", "viewer", "tenant_admin"] },
      { path: "tenant", label: "Tenant (tenant_admin only)", type: "select", options: names("tenants") },
      tags,
    ],
  },
};

export function cellText(v) {
  return v instanceof Node ? v : h("span", { text: v });
}
