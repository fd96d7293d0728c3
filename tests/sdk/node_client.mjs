// Drives Tollgate's OpenAI-compatible surface with the official OpenAI Node SDK (`openai`
// from npm).
//
// Usage: node node_client.mjs <node_clients_dir> <base_url> <tenant_key> <alias> <tools_alias>
//
// `node_clients_dir` is the npm prefix holding `node_modules/openai` (.ci/run installs it
// under target/). Prints one JSON summary on stdout: the chat completion of `alias`, the
// same request streamed with `stream_options.include_usage` (chunk by chunk), the models
// list, the errors the SDK raised for an unknown alias and a bad key, and a two-tool call
// of `tools_alias`, whole, streamed by hand and through the SDK's `chat.completions.stream`
// helper. Any unexpected error ends the script with a non-zero status. The caller
// (tests/it/client_matrix.rs) asserts on the summary.

import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [clientsDir, baseURL, apiKey, alias, toolsAlias] = process.argv.slice(2);
if (!toolsAlias) {
  console.error("usage: node_client.mjs <node_clients_dir> <base_url> <key> <alias> <tools_alias>");
  process.exit(2);
}

// ESM ignores NODE_PATH: resolve the package from the npm prefix explicitly.
const require = createRequire(join(clientsDir, "package.json"));
const { default: OpenAI } = await import(pathToFileURL(require.resolve("openai")).href.replace(/\.js$/, ".mjs"));
const { VERSION } = await import(pathToFileURL(require.resolve("openai/version")).href.replace(/\.js$/, ".mjs"));

const MESSAGES = [
  { role: "system", content: "You are a terse assistant." },
  { role: "user", content: "What is 1 + 1?" },
  { role: "assistant", content: "2." },
  { role: "user", content: "And 2 + 2?" },
];
const TOOL_MESSAGES = [{ role: "user", content: "What are the weather and the time in Paris?" }];
const TOOLS = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather in a city.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
  {
    type: "function",
    function: {
      name: "get_time",
      description: "Current time in an IANA time zone.",
      parameters: {
        type: "object",
        properties: { timezone: { type: "string" } },
        required: ["timezone"],
      },
    },
  },
];
const MAX_TOKENS = 64;

// No retries: an error must show up once, at once; the timeout bounds a hang.
const client = (key) => new OpenAI({ baseURL, apiKey: key, maxRetries: 0, timeout: 20_000 });

const usage = (u) =>
  u ? { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens } : null;

const calls = (toolCalls) =>
  (toolCalls ?? []).map((c) => ({ id: c.id, type: c.type, name: c.function.name, arguments: c.function.arguments }));

function message(completion) {
  const choice = completion.choices[0];
  return {
    object: completion.object,
    id: completion.id,
    model: completion.model,
    role: choice.message.role,
    content: choice.message.content,
    finish_reason: choice.finish_reason,
    tool_calls: calls(choice.message.tool_calls),
    usage: usage(completion.usage),
  };
}

// Iterates a streamed answer as SDK users do: text delta by delta, tool calls accumulated
// by `index`, the usage from the chunk whose `choices` is empty.
async function consume(stream) {
  const out = { chunks: 0, content: "", pieces: 0, roles: [], finish_reasons: [], usage_chunks: [], tool_calls: [] };
  const ids = new Set();
  const objects = new Set();
  const byIndex = new Map();
  for await (const chunk of stream) {
    out.chunks += 1;
    ids.add(chunk.id);
    objects.add(chunk.object);
    if (chunk.usage) out.usage_chunks.push({ usage: usage(chunk.usage), choices: chunk.choices.length });
    for (const choice of chunk.choices) {
      const delta = choice.delta ?? {};
      if (delta.role) out.roles.push(delta.role);
      if (delta.content) {
        out.content += delta.content;
        out.pieces += 1;
      }
      for (const tc of delta.tool_calls ?? []) {
        if (!byIndex.has(tc.index)) {
          const call = { index: tc.index, id: null, type: null, name: null, arguments: "", fragments: 0 };
          byIndex.set(tc.index, call);
          out.tool_calls.push(call);
        }
        const call = byIndex.get(tc.index);
        if (tc.id) call.id = tc.id;
        if (tc.type) call.type = tc.type;
        if (tc.function?.name) call.name = tc.function.name;
        if (tc.function?.arguments) {
          call.arguments += tc.function.arguments;
          call.fragments += 1;
        }
      }
      if (choice.finish_reason) out.finish_reasons.push(choice.finish_reason);
    }
  }
  out.ids = [...ids].filter(Boolean).sort();
  out.objects = [...objects].filter(Boolean).sort();
  return out;
}

// Runs `call`, which should fail with an HTTP error; reports what the SDK raised.
async function expectedError(call) {
  try {
    const result = await call();
    return { exception: null, unexpected_result: JSON.stringify(result).slice(0, 500) };
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    return { exception: e.constructor.name, status: e.status, code: e.code ?? null, type: e.type ?? null };
  }
}

const c = client(apiKey);
const summary = { openai_version: VERSION, node_version: process.version };

const { data: completion, response } = await c.chat.completions
  .create({ model: alias, messages: MESSAGES, max_tokens: MAX_TOKENS })
  .withResponse();
summary.chat = message(completion);
summary.chat.request_id_header = response.headers.get("x-tollgate-request-id");

summary.stream = await consume(
  await c.chat.completions.create({
    model: alias,
    messages: MESSAGES,
    max_tokens: MAX_TOKENS,
    stream: true,
    stream_options: { include_usage: true },
  }),
);

const models = [];
for await (const model of c.models.list()) models.push(model.id);
summary.models = models.sort();

summary.unknown_model = await expectedError(() =>
  c.chat.completions.create({ model: "no-such-alias", messages: MESSAGES }),
);
summary.bad_key = await expectedError(() =>
  client("tg-not-a-real-key").chat.completions.create({ model: alias, messages: MESSAGES }),
);

const toolRequest = { model: toolsAlias, messages: TOOL_MESSAGES, tools: TOOLS, max_tokens: MAX_TOKENS };
summary.tools_whole = message(await c.chat.completions.create(toolRequest));
summary.tools_stream = await consume(
  await c.chat.completions.create({ ...toolRequest, stream: true, stream_options: { include_usage: true } }),
);
// The SDK's own stream helper accumulates the chunks into a final completion.
const helper = c.chat.completions.stream({ ...toolRequest, stream_options: { include_usage: true } });
summary.tools_helper = message(await helper.finalChatCompletion());

process.stdout.write(JSON.stringify(summary) + "\n");
