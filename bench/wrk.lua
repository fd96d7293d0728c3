-- wrk script for bench/run: POSTs one small OpenAI chat body and prints the exact numbers
-- bench/run parses (latency in microseconds, from wrk's own histogram) as one line.
--
-- Environment: BENCH_PATH (default /v1/chat/completions), BENCH_MODEL (default gpt-4o),
-- BENCH_KEY (sent as `Authorization: Bearer …` when set).

local path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
local model = os.getenv("BENCH_MODEL") or "gpt-4o"
local key = os.getenv("BENCH_KEY")

wrk.method = "POST"
wrk.path = path
wrk.body = '{"model":"' .. model .. '","messages":[{"role":"user",'
  .. '"content":"Say hello in one short sentence."}],"max_tokens":64}'
wrk.headers["Content-Type"] = "application/json"
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
