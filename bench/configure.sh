# Sourced by bench/run and bench/callgrind: Tollgate's benchmark configuration through its
# admin API. Needs ADMIN_PORT, TOKEN, MOCK_URL and a `die` function; sets KEY (the tenant
# key). Tenant `bench`; an OpenAI service + route (alias `gpt-4o`) and an Anthropic service
# + route (alias `claude`), both pointing at the mock, `log_statistics` on; a second OpenAI
# route (alias `gpt-4o-policies`) with a template, a decorator and a guard bound to it; a
# third (alias `gpt-4o-limits`) with requests, tokens and budget limits.

# admin METHOD PATH [JSON]: the answer's body in REPLY; dies unless 2xx.
admin() {
  local out code
  local args=(-sS -X "$1" "http://127.0.0.1:$ADMIN_PORT$2" -H "Authorization: Bearer $TOKEN"
    -w '\n%{http_code}')
  [ $# -ge 3 ] && args+=(-H 'content-type: application/json' --data-binary "$3")
  out=$(curl "${args[@]}") || die "admin $1 $2: curl failed"
  code=${out##*$'\n'}
  REPLY=${out%$'\n'*}
  [[ $code == 2?? ]] || die "admin $1 $2 → $code: $REPLY"
}

configure_tollgate() {
  admin POST /tenants '{"name":"bench","display_name":"Benchmark tenant"}'
  admin POST /credentials \
    '{"name":"openai-key","header_name":"Authorization","header_value":"Bearer sk-bench-openai"}'
  admin POST /credentials \
    '{"name":"anthropic-key","header_name":"x-api-key","header_value":"sk-ant-bench"}'
  admin POST /services "{\"name\":\"openai\",\"provider\":\"openai\",\"credential\":\"openai-key\",
    \"upstream_url\":\"$MOCK_URL/v1/chat/completions\"}"
  admin POST /services "{\"name\":\"anthropic\",\"provider\":\"anthropic\",\"credential\":\"anthropic-key\",
    \"upstream_url\":\"$MOCK_URL/v1/messages\",\"options\":{\"anthropic_version\":\"2023-06-01\"}}"
  admin POST /routes '{"name":"openai-chat","paths":["/openai/chat"],"model_alias":"gpt-4o",
    "service":"openai","route_type":"llm/v1/chat",
    "model":{"name":"gpt-4o","options":{"input_cost":2.5,"output_cost":10.0}},
    "logging":{"log_statistics":true,"log_payloads":false}}'
  admin POST /routes '{"name":"claude-chat","paths":["/anthropic/chat"],"model_alias":"claude",
    "service":"anthropic","route_type":"llm/v1/chat",
    "model":{"name":"claude-3-5-sonnet-20241022","options":{"input_cost":3.0,"output_cost":15.0}},
    "logging":{"log_statistics":true,"log_payloads":false}}'
  # The same OpenAI route with three policies bound to it (target tollgate-policies): a
  # template library (untemplated requests pass), a decorator and a guard of ten patterns.
  admin POST /routes '{"name":"openai-policies","paths":["/openai/policies"],
    "model_alias":"gpt-4o-policies","service":"openai","route_type":"llm/v1/chat",
    "model":{"name":"gpt-4o","options":{"input_cost":2.5,"output_cost":10.0}},
    "logging":{"log_statistics":true,"log_payloads":false}}'
  admin POST /policies '{"name":"bench-template","type":"ai-prompt-template","route":"openai-policies",
    "config":{"templates":[{"name":"summarise",
      "template":"{\"messages\":[{\"role\":\"user\",\"content\":\"Summarise: {{text}}\"}]}"}]}}'
  admin POST /policies '{"name":"bench-decorator","type":"ai-prompt-decorator","route":"openai-policies",
    "config":{"prompts":{"prepend":[{"role":"system","content":"You are a concise assistant."}]}}}'
  admin POST /policies '{"name":"bench-guard","type":"ai-prompt-guard","route":"openai-policies",
    "config":{"deny_patterns":["(?i)ignore (all|any|previous|prior) instructions",
      "(?i)disregard (the|your) (system|previous) prompt","(?i)you are now (DAN|in developer mode)",
      "\\b\\d{3}-\\d{2}-\\d{4}\\b","(?i)\\bpassword\\s*[:=]","(?i)api[_-]?key\\s*[:=]\\s*\\S{16,}",
      "(?i)reveal (the|your) (system prompt|instructions)","(?i)jailbreak",
      "(?i)BEGIN (RSA|OPENSSH) PRIVATE KEY","(?i)drop table"]}}'
  # The same OpenAI route with limits far above what a run reaches (target tollgate-limits):
  # every request reserves and settles a requests, a tokens and a budget counter.
  admin POST /routes '{"name":"openai-limits","paths":["/openai/limits"],
    "model_alias":"gpt-4o-limits","service":"openai","route_type":"llm/v1/chat",
    "model":{"name":"gpt-4o","options":{"input_cost":2.5,"output_cost":10.0}},
    "logging":{"log_statistics":true,"log_payloads":false},
    "limits":{"requests_per_minute":1000000000,"tokens_per_minute":1000000000000,
      "budget":{"amount_usd":1000000000,"period":"month"}}}'
  admin POST /tenants/bench/keys '{"name":"bench"}'
  KEY=$(jq -r .key <<<"$REPLY")
  [[ $KEY == tg-* ]] || die "no tenant key in: $REPLY"
}
