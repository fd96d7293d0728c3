// The admin UI's whole story in a real browser (Debian's chromium driven by
// playwright-core), run by tests/it/ui.rs against a gateway it started with a mock
// upstream. Every input comes from the environment:
//
//   TOLLGATE_UI_ADMIN_URL     the admin listener, e.g. http://127.0.0.1:40001
//   TOLLGATE_UI_PROXY_URL     the proxy listener
//   TOLLGATE_UI_UPSTREAM_URL  the mock provider's chat completions URL
//   TOLLGATE_UI_PASSWORD      the password of the first admin (`admin`)
//   TOLLGATE_UI_SECRET        the upstream secret to store as a credential
//   TOLLGATE_UI_NODE_MODULES  a node_modules holding playwright-core
//   TOLLGATE_UI_CHROMIUM      the chromium executable
//   TOLLGATE_UI_SCREENSHOTS   where the screenshots go (each page at 1280 and 390 px)
//
// Prints one JSON line ({"key": …, "requests": …}) on success; throws (exit 1) on failure.

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import path from "node:path";

function env(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is unset`);
  return v;
}

const ADMIN = env("TOLLGATE_UI_ADMIN_URL");
const PROXY = env("TOLLGATE_UI_PROXY_URL");
const UPSTREAM = env("TOLLGATE_UI_UPSTREAM_URL");
const PASSWORD = env("TOLLGATE_UI_PASSWORD");
const SECRET = env("TOLLGATE_UI_SECRET");
const SHOTS = env("TOLLGATE_UI_SCREENSHOTS");
const require = createRequire(path.join(env("TOLLGATE_UI_NODE_MODULES"), "noop.js"));
const { chromium } = require("playwright-core");

mkdirSync(SHOTS, { recursive: true });
const WIDE = { width: 1280, height: 900 };
const NARROW = { width: 390, height: 844 };
const T = 15000;

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const browser = await chromium.launch({
  executablePath: env("TOLLGATE_UI_CHROMIUM"),
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
const outside = [];
const problems = [];
let seen = 0;
const shots = [];

async function newSession() {
  const context = await browser.newContext({ viewport: WIDE });
  // Nothing may leave 127.0.0.1: every request the page makes is checked, others aborted.
  await context.route("**/*", (route) => {
    const url = new URL(route.request().url());
    seen += 1;
    if (url.hostname !== "127.0.0.1") {
      outside.push(url.href);
      return route.abort();
    }
    return route.continue();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(T);
  page.on("console", (m) => {
    // A refused request (4xx the page expects) logs an error too: only CSP and script
    // errors count.
    if (m.type() === "error" && !/Failed to load resource/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => d.accept());
  pages.push(page);
  return { context, page };
}

const label = (page, text) => page.getByLabel(text, { exact: true });
const button = (page, name) => page.getByRole("button", { name, exact: true });
const link = (page, name) => page.getByRole("link", { name, exact: true });

async function heading(page, text) {
  await page.getByRole("heading", { level: 1, name: text }).waitFor();
}

async function text(page, t) {
  await page.getByText(t, { exact: false }).first().waitFor();
}

async function shot(page, name) {
  for (const [tag, size] of [["1280", WIDE], ["390", NARROW]]) {
    await page.setViewportSize(size);
    await page.waitForTimeout(150);
    const file = path.join(SHOTS, `${name}-${tag}.png`);
    await page.screenshot({ path: file, fullPage: true });
    shots.push(file);
    // Readable at 390 px: nothing wider than the screen.
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `${name} at ${tag} px scrolls sideways by ${overflow}px`);
  }
  await page.setViewportSize(WIDE);
}

async function logIn(page, user, password) {
  await page.goto(`${ADMIN}/ui/`);
  await heading(page, "Tollgate admin");
  // By keyboard: the user name field has the focus, Tab reaches the password, Enter submits.
  await page.keyboard.type(user);
  await page.keyboard.press("Tab");
  await page.keyboard.type(password);
  await page.keyboard.press("Enter");
  await heading(page, "Usage");
}

async function nav(page, name, title) {
  await page.getByRole("navigation", { name: "Sections" }).getByRole("link", { name, exact: true }).click();
  await heading(page, title || name);
}

async function create(page, section, newLabel, fill, submitLabel, done) {
  await nav(page, section);
  await link(page, newLabel).click();
  await fill();
  await button(page, submitLabel).click();
  await text(page, done);
}

const pages = [];
// On a failure: a screenshot of every open page and the errors the pages logged.
process.on("uncaughtException", async (e) => {
  console.error(e);
  for (const [i, p] of pages.entries()) await p.screenshot({ path: path.join(SHOTS, `failure-${i}.png`), fullPage: true }).catch(() => {});
  console.error(`page problems:\n${problems.join("\n")}`);
  await browser.close().catch(() => {});
  process.exit(1);
});

// ---- admin: the whole configuration through the forms -------------------------------
const { page } = await newSession();
await page.goto(`${ADMIN}/ui/`);
await heading(page, "Tollgate admin");
await shot(page, "login");
await label(page, "User name").fill("admin");
await label(page, "Password").fill("wrong-password");
await button(page, "Log in").click();
await text(page, "Wrong user name or password.");
await logIn(page, "admin", PASSWORD);
await text(page, "No requests in this range yet");

// Keyboard: Tab reaches the navigation, Enter follows it.
async function tabTo(p, wanted) {
  for (let i = 0; i < 40; i += 1) {
    await p.keyboard.press("Tab");
    if ((await p.evaluate(() => document.activeElement && document.activeElement.textContent.trim())) === wanted) return;
  }
  throw new Error(`Tab never reaches "${wanted}"`);
}
await tabTo(page, "Tenants");
await page.keyboard.press("Enter");
await heading(page, "Tenants");
await tabTo(page, "New tenant");
await page.keyboard.press("Enter");
await heading(page, "New tenant");
check(await page.evaluate(() => document.activeElement.tagName === "H1"), "focus moves to the new page's heading");

// Tenants: a name the API refuses shows its error next to the field.
await nav(page, "Tenants");
await text(page, "No tenants yet");
await shot(page, "tenants-empty");
await link(page, "New tenant").click();
await heading(page, "New tenant");
await label(page, "Name").fill("Not A Name");
await button(page, "Create tenant").click();
const describedBy = (await label(page, "Name").getAttribute("aria-describedby")).split(" ");
const nameError = page.locator(`#${describedBy.find((id) => id.endsWith("-err"))}`);
await nameError.waitFor();
check(/must match/.test(await nameError.textContent()), "the name's validation error sits next to the name field");
check((await label(page, "Name").getAttribute("aria-invalid")) === "true", "the name field is marked invalid");
await shot(page, "tenant-form-error");
await label(page, "Name").fill("acme");
await label(page, "Display name").fill("Acme Corp");
await button(page, "Create tenant").click();
await text(page, "Created tenant 'acme'.");
await create(page, "Tenants", "New tenant", () => label(page, "Name").fill("globex"), "Create tenant", "Created tenant 'globex'.");

// A credential: its secret is written once and never displayed again.
await create(page, "Credentials", "New credential", async () => {
  await label(page, "Name").fill("openai-key");
  await label(page, "Header name").fill("Authorization");
  await label(page, "Header value (secret)").fill(`Bearer ${SECRET}`);
}, "Create credential", "Created credential 'openai-key'.");
await text(page, "(secret stored)");
{ const c = await page.content(); const i = c.indexOf(SECRET.slice(-4)); check(i < 0, `no part of the secret on the credentials page: ${c.slice(i - 80, i + 20)}`); }
await shot(page, "credentials");
await page.getByRole("link", { name: "Edit credential openai-key" }).click();
await heading(page, "Edit credential 'openai-key'");
check((await label(page, "Header value (secret)").inputValue()) === "", "the secret field starts empty when editing");
check(!(await page.content()).includes(SECRET.slice(-4)), "no part of the secret on the edit form");
await shot(page, "credential-form");
await button(page, "Cancel").click();

await create(page, "Services", "New service", async () => {
  await label(page, "Name").fill("openai");
  await label(page, "Provider").selectOption("openai");
  await label(page, "Upstream URL").fill(UPSTREAM);
  await label(page, "Credential").selectOption("openai-key");
}, "Create service", "Created service 'openai'.");
await shot(page, "services");

await create(page, "Routes", "New route", async () => {
  await label(page, "Name").fill("chat");
  await label(page, "Service").selectOption("openai");
  await label(page, "Route type").selectOption("llm/v1/chat");
  await label(page, "Paths").fill("/chat");
  await label(page, "Model alias").fill("gpt-test");
  await label(page, "Input cost (USD per 1M tokens)").fill("1000");
  await label(page, "Output cost (USD per 1M tokens)").fill("2000");
}, "Create route", "Created route 'chat'.");
await shot(page, "routes");

await create(page, "Policies", "New policy", async () => {
  await label(page, "Name").fill("no-secrets");
  await label(page, "Type").selectOption("ai-prompt-guard");
  await label(page, "Route").selectOption("chat");
  await label(page, "Config (JSON, Kong's field names)").fill('{"deny_patterns": ["top secret"]}');
}, "Create policy", "Created policy 'no-secrets'.");
await shot(page, "policies");

// A limit on the tenant, through its edit form.
await nav(page, "Tenants");
await page.getByRole("link", { name: "Edit tenant acme" }).click();
await heading(page, "Edit tenant 'acme'");
await label(page, "Requests per minute").fill("100");
await label(page, "Budget (USD)").fill("50");
await label(page, "Budget period").selectOption("month");
await button(page, "Save").click();
await text(page, "Saved tenant 'acme'.");
await text(page, "100 req/min, $50/month");
await shot(page, "tenants");

// Every edit form round-trips: opened and saved unchanged, the API accepts it.
for (const [section, singular, name] of [["Credentials", "credential", "openai-key"], ["Services", "service", "openai"], ["Routes", "route", "chat"], ["Policies", "policy", "no-secrets"]]) {
  await nav(page, section);
  await page.getByRole("link", { name: `Edit ${singular} ${name}` }).click();
  await heading(page, `Edit ${singular} '${name}'`);
  await button(page, "Save").click();
  await text(page, `Saved ${singular} '${name}'.`);
}

// A delete the API refuses (still referenced) says what refers to it.
await nav(page, "Credentials");
await page.getByRole("button", { name: "Delete credential openai-key" }).click();
await page.getByRole("alert").filter({ hasText: "still in use" }).waitFor();
check(/services: openai/.test(await page.getByRole("alert").textContent()), "the refusal names the service");

// An API key: shown once, with a copy button and a warning.
await nav(page, "API keys");
await label(page, "Tenant").selectOption("acme");
await text(page, "No API keys for acme yet");
await link(page, "New API key").click();
await heading(page, "New API key for acme");
await label(page, "Name").fill("ci-client");
await label(page, "Tokens per minute").fill("100000");
await button(page, "Create API key").click();
await text(page, "Copy it now: it will not be shown again.");
const key = await label(page, "New API key").inputValue();
check(key.startsWith("tg-"), `the new key is shown (${key.slice(0, 3)}…)`);
await button(page, "Copy").waitFor();
await nav(page, "Usage");
await nav(page, "API keys");
check(!(await page.content()).includes(key), "the key is gone once the page is left");
await text(page, "ci-client");
await shot(page, "keys");

// A key for globex, whose usage acme's tenant_admin must not see.
await label(page, "Tenant").selectOption("globex");
await link(page, "New API key").click();
await label(page, "Name").fill("globex-client");
await button(page, "Create API key").click();
const globexKey = await label(page, "New API key").inputValue();

// Proxied requests with the keys, as a client would send them.
async function chat(k, model) {
  const r = await fetch(`${PROXY}/chat`, {
    method: "POST",
    headers: { authorization: `Bearer ${k}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: "Hello" }] }),
  });
  check(r.status === 200, `proxied request answered ${r.status}: ${await r.text()}`);
}
await chat(key, "gpt-4o-mini");
await chat(globexKey, "gpt-4o-mini");
const blocked = await fetch(`${PROXY}/chat`, {
  method: "POST",
  headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
  body: JSON.stringify({ messages: [{ role: "user", content: "this is top secret" }] }),
});
check(blocked.status === 400, `the prompt guard refuses a denied prompt (got ${blocked.status})`);

// The usage page shows them within seconds: refresh until the table has them.
await nav(page, "Usage");
await label(page, "Bucket").selectOption("minute");
await label(page, "Range").selectOption("1h");
const deadline = Date.now() + 20000;
for (;;) {
  await button(page, "Show").click();
  await heading(page, "Usage");
  const table = page.locator("#usage-table");
  if (await table.count() && /acme/.test(await table.textContent()) && /globex/.test(await table.textContent())) break;
  check(Date.now() < deadline, "the requests appear on the usage page within 20 s");
  await page.waitForTimeout(1000);
}
await page.locator("#usage-chart").waitFor();
check(await page.evaluate(() => !!window.Chart && Object.keys(window.Chart.instances).length === 2), "two charts drawn (usage, latency)");
const requestsCard = await page.locator(".card", { hasText: "Requests" }).locator("dd").textContent();
check(Number(requestsCard) >= 3, `requests card counts the three requests (${requestsCard})`);
const costCard = await page.locator(".card", { hasText: "Cost" }).locator("dd").textContent();
check(costCard !== "$0.00" && costCard.startsWith("$"), `cost card shows a cost (${costCard})`);
await page.locator("#limit-status-table").getByText("requests per minute").first().waitFor();
await page.locator("#limit-status-table").getByText("key ci-client").first().waitFor();
await shot(page, "usage-by-tenant");
await label(page, "Stack by").selectOption("model");
await label(page, "Show").selectOption("cost");
await button(page, "Show").click();
await page.locator("#usage-table").getByText("gpt-4o", { exact: false }).first().waitFor();
await shot(page, "usage-by-model");
await label(page, "Stack by").selectOption("route");
await button(page, "Show").click();
await page.locator("#usage-table").getByText("chat", { exact: true }).first().waitFor();
await label(page, "Stack by").selectOption("key");
await button(page, "Show").click();
await page.locator("#usage-table").getByText("ci-client (acme)", { exact: true }).first().waitFor();

await nav(page, "Limits");
await page.locator("#limit-status-table").getByText("acme").first().waitFor();
await shot(page, "limits");

// Admins: a tenant_admin for acme and a viewer.
await create(page, "Admins", "New admin", async () => {
  await label(page, "User name").fill("acme-admin");
  await label(page, "Password").fill("acme-admin-password");
  await label(page, "Role").selectOption("tenant_admin");
  await label(page, "Tenant (tenant_admin only)").selectOption("acme");
}, "Create admin", "Created admin 'acme-admin'.");
await create(page, "Admins", "New admin", async () => {
  await label(page, "User name").fill("watcher");
  await label(page, "Password").fill("watcher-password");
  await label(page, "Role").selectOption("viewer");
}, "Create admin", "Created admin 'watcher'.");
await shot(page, "admins");
await button(page, "Log out").click();
await heading(page, "Tollgate admin");
await text(page, "You are logged out.");

// ---- tenant_admin: only its own tenant --------------------------------------------------
const ta = (await newSession()).page;
await logIn(ta, "acme-admin", "acme-admin-password");
const navText = await ta.getByRole("navigation", { name: "Sections" }).textContent();
check(!/Credentials|Services|Routes|Policies|Admins/.test(navText), `tenant_admin nav has no global sections (${navText})`);
await ta.locator("#usage-table").waitFor();
check(!/globex/.test(await ta.locator("main").textContent()), "tenant_admin's usage shows no other tenant");
check(/acme/.test(await ta.locator("#usage-table").textContent()), "tenant_admin sees its own usage");
await shot(ta, "tenant-admin-usage");
await nav(ta, "My tenant", "Tenants");
check(!/globex/.test(await ta.locator("main").textContent()), "tenant_admin's tenant list has only acme");
await text(ta, "acme");
await ta.evaluate(() => { location.hash = "#/keys?tenant=globex"; });
await heading(ta, "API keys");
check(!/globex/.test(await ta.locator("main").textContent()), "tenant_admin cannot list globex's keys");
await text(ta, "ci-client");
// It manages its own tenant's keys.
await link(ta, "New API key").click();
await heading(ta, "New API key for acme");
await label(ta, "Name").fill("acme-self-service");
await button(ta, "Create API key").click();
await text(ta, "Copy it now: it will not be shown again.");
check((await label(ta, "New API key").inputValue()).startsWith("tg-"), "tenant_admin's new key is shown once");
await shot(ta, "tenant-admin-keys");
await ta.evaluate(() => { location.hash = "#/credentials"; });
await heading(ta, "Not found");
await nav(ta, "Limits");
check(!/globex/.test(await ta.locator("main").textContent()), "tenant_admin's limits show no other tenant");

// ---- viewer: reads, no write buttons; a revoked token sends it back to login ----------
const viewer = (await newSession()).page;
await logIn(viewer, "watcher", "watcher-password");
for (const section of ["Tenants", "Credentials", "Services", "Routes", "Policies"]) {
  await nav(viewer, section);
  await viewer.locator("table").first().waitFor();
  const writes = await viewer.locator("main").getByRole("button", { name: /Delete|Save|Create/ }).count()
    + await viewer.locator("main").getByRole("link", { name: /^(New|Edit)/ }).count();
  check(writes === 0, `viewer sees no write buttons on ${section} (${writes})`);
}
await nav(viewer, "API keys");
check(await viewer.getByRole("link", { name: "New API key" }).count() === 0, "viewer cannot create keys");
const adminToken = await (await fetch(`${ADMIN}/auth/login`, {
  method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ username: "admin", password: PASSWORD }),
})).json();
// Paging: 23 tenants are two pages of 20.
for (let i = 1; i <= 21; i += 1) {
  const r = await fetch(`${ADMIN}/tenants`, {
    method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${adminToken.token}` },
    body: JSON.stringify({ name: `tenant-${String(i).padStart(2, "0")}` }),
  });
  check(r.status === 201, `tenant ${i} created (${r.status})`);
}
await nav(viewer, "Tenants");
await text(viewer, "Items 1–20");
check(await viewer.locator("main tbody tr").count() === 20, "the first page has 20 tenants");
await shot(viewer, "viewer-tenants");
await button(viewer, "Next →").click();
await text(viewer, "Items 21–23");
check(await viewer.locator("main tbody tr").count() === 3, "the second page has the other 3");
check(await button(viewer, "Next →").isDisabled(), "no page after the last");
await button(viewer, "← Previous").click();
await text(viewer, "Items 1–20");
// The viewer's tokens are revoked (as an admin would): the next call ends the session.
const revoked = await fetch(`${ADMIN}/auth/logout-all`, {
  method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${adminToken.token}` }, body: JSON.stringify({ admin: "watcher" }),
});
check(revoked.ok, `logout-all answered ${revoked.status}`);
await viewer.getByRole("navigation", { name: "Sections" }).getByRole("link", { name: "Tenants", exact: true }).click();
await heading(viewer, "Tollgate admin");
await text(viewer, "Your session has ended");

// The token lives in memory only.
for (const p of [page, ta, viewer]) {
  const stored = await p.evaluate(() => JSON.stringify({ l: { ...localStorage }, s: { ...sessionStorage }, c: document.cookie }));
  check(stored === '{"l":{},"s":{},"c":""}', `nothing stored in the browser (${stored})`);
}

await browser.close();
check(seen > 20, `the request check saw the page's requests (${seen})`);
check(outside.length === 0, `requests left 127.0.0.1: ${outside.join(", ")}`);
check(problems.length === 0, `console or page errors:\n${problems.join("\n")}`);
console.log(JSON.stringify({ key, screenshots: shots.length, requests_checked: seen }));
