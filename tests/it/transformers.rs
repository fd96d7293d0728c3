//! The AI request and response transformers over the real listener (docs/behaviour.md,
//! "Policies"): the instruction LLM is one of the gateway's services (a mock here), called
//! with its own credential; its answer rewrites the request body or the response; its
//! usage is recorded as policy usage and logged under the plugin's name; Kong's error
//! texts. The `kong_*` tests read Kong's `request-transformer` fixtures from
//! `TOLLGATE_KONG_FIXTURES` (never copied here).

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::kong::Fixtures;
use crate::support::mock_upstream::Tail;
use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::proxy::{UPSTREAM_SECRET, chat, configure_openai, openai_completion};
use crate::support::streaming::{analytics_lines, app_with_log, openai_sse, sse, stream};

const LLM_SECRET: &str = "sk-instruction-llm-secret-77";

/// Kong's extract pattern in its transformer tests: the outermost JSON object.
const JSON_OBJECT: &str = r"\{((.|\n)*)\}";

/// An OpenAI chat completion whose answer is `content`.
fn llm_answer(content: &str) -> Value {
    json!({
        "id": "chatcmpl-llm", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 20, "total_tokens": 60}
    })
}

/// The usual OpenAI setup at `upstream` (route `chat`), a `preserve` route `echo` at
/// `upstream` too, and the instruction LLM: service `llm` of `provider` at `llm` + `path`
/// with its own credential. Returns the tenant key.
async fn setup(
    app: &TestApp,
    upstream: &MockUpstream,
    llm: &MockUpstream,
    (provider, options, path): (&str, Value, &str),
) -> String {
    let key = configure_openai(app, upstream, json!({})).await;
    let r = app
        .post(
            "/credentials",
            json!({"name": "llm-key", "header_name": "Authorization",
                   "header_value": format!("Bearer {LLM_SECRET}")}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/services",
            json!({"name": "llm", "provider": provider, "credential": "llm-key",
                   "options": options, "upstream_url": format!("{}{path}", llm.base)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/services",
            json!({"name": "echo", "provider": "openai",
                   "upstream_url": format!("{}/echo", upstream.base)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "echo", "paths": ["/echo"], "service": "echo",
                   "route_type": "preserve"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    key
}

async fn openai_setup(app: &TestApp, upstream: &MockUpstream, llm: &MockUpstream) -> String {
    setup(
        app,
        upstream,
        llm,
        ("openai", json!({}), "/v1/chat/completions"),
    )
    .await
}

/// Binds a transformer of `kind` to `route`; `extra` is merged into its `config`.
async fn transformer(app: &TestApp, kind: &str, route: &str, extra: Value) {
    let mut config = json!({"prompt": "Do as you are told.",
        "llm": {"route_type": "llm/v1/chat", "service": "llm",
                "model": {"name": "gpt-4o-mini",
                          "options": {"input_cost": 0.15, "output_cost": 0.6}}}});
    tollgate::admin::merge_patch(&mut config, &extra);
    let r = app
        .post(
            "/policies",
            json!({"name": format!("{kind}-{route}"), "type": kind, "route": route,
                   "config": config}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "hello"}]})
}

/// Neither credential ever reaches the client.
fn assert_no_secret(text: &str) {
    assert!(!text.contains(LLM_SECRET), "{text}");
    assert!(!text.contains(UPSTREAM_SECRET), "{text}");
}

#[actix_web::test]
async fn the_request_transformer_rewrites_what_the_upstream_sees() {
    let (app, log, _dir) = app_with_log().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let rewritten = r#"{"messages":[{"role":"user","content":"Good day to you."}]}"#;
    let llm = MockUpstream::start(Behaviour::json(200, llm_answer(rewritten))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(&app, "ai-request-transformer", "chat", json!({})).await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_no_secret(&r.text);
    // The instruction LLM got the prompt and the client's raw body, with its own
    // credential and the policy's model.
    let asked = llm.last();
    assert_eq!(
        asked.header("authorization"),
        Some(format!("Bearer {LLM_SECRET}").as_str())
    );
    let asked = asked.json();
    assert_eq!(asked["model"], "gpt-4o-mini");
    assert_eq!(asked["messages"][0]["role"], "system");
    assert_eq!(asked["messages"][0]["content"], "Do as you are told.");
    let user: Value =
        serde_json::from_str(asked["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(user, hello());
    // The upstream got the LLM's body, translated as any request.
    let sent = upstream.last();
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert_eq!(
        sent.json()["messages"],
        json!([{"role": "user", "content": "Good day to you."}])
    );

    // The analytics line: Kong's per-plugin entry and the policy's action.
    let lines = analytics_lines(&log, 1).await;
    let line = &lines[0];
    let entry = &line["ai"]["ai-request-transformer"];
    assert_eq!(entry["meta"]["provider_name"], "openai");
    assert_eq!(entry["meta"]["request_model"], "gpt-4o-mini");
    assert_eq!(entry["meta"]["response_model"], "gpt-4o-mini-2024-07-18");
    assert_eq!(entry["usage"]["prompt_tokens"], 40);
    assert_eq!(entry["usage"]["completion_tokens"], 20);
    assert_eq!(entry["usage"]["total_tokens"], 60);
    let cost = entry["usage"]["cost"].as_f64().unwrap();
    assert!(
        (cost - (40.0 * 0.15 + 20.0 * 0.6) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(line["ai"]["proxy"]["usage"]["prompt_tokens"], 12);
    assert_eq!(
        line["tollgate"]["policies"],
        json!([{"type": "ai-request-transformer", "name": "ai-request-transformer-chat",
                "outcome": "applied"}])
    );

    // The instruction call is its own usage, under the instruction model.
    let mut rows = Vec::new();
    for _ in 0..50 {
        let r = app.get("/usage?group_by=tenant,model&bucket=day").await;
        assert_eq!(r.status, 200, "{}", r.text);
        rows = r.body["data"].as_array().unwrap().clone();
        if rows.len() >= 2 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mini = rows
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini")
        .unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(mini["tenant"], "acme");
    assert_eq!(mini["prompt_tokens"], 40);
    assert_eq!(mini["completion_tokens"], 20);
}

/// Each instruction call's usage is a row of its own in `/usage`, marked with the
/// plugin's name (`source`), beside the proxied request's `proxy` row and never summed
/// into it; grouped without `source`, a row sums all three.
#[actix_web::test]
async fn the_instruction_calls_usage_rows_are_marked_with_the_plugin_name() {
    let app = crate::support::spawn_app().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    // The request transformer's new body, and the response transformer's new answer.
    let rewritten = r#"{"messages":[{"role":"user","content":"Good day to you."}]}"#;
    let llm = MockUpstream::start(Behaviour::json(200, llm_answer(rewritten))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(&app, "ai-request-transformer", "chat", json!({})).await;
    transformer(&app, "ai-response-transformer", "chat", json!({})).await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, rewritten);
    assert_eq!(llm.received().len(), 2);

    let mut rows = Vec::new();
    for _ in 0..50 {
        let r = app
            .get("/usage?group_by=tenant,source,model&bucket=day")
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        rows = r.body["data"].as_array().unwrap().clone();
        if rows.len() >= 3 {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // tenant, source, model, requests, errors, rejected, prompt and completion tokens.
    type Summary<'a> = (&'a str, &'a str, &'a str, i64, i64, i64, i64, i64);
    let summary: Vec<Summary> = rows
        .iter()
        .map(|r| {
            (
                r["tenant"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
                r["model"].as_str().unwrap(),
                r["requests"].as_i64().unwrap(),
                r["errors"].as_i64().unwrap(),
                r["rejected"].as_i64().unwrap(),
                r["prompt_tokens"].as_i64().unwrap(),
                r["completion_tokens"].as_i64().unwrap(),
            )
        })
        .collect();
    // Ordered by the grouping fields as shown: model before source.
    let expected: Vec<Summary> = vec![
        ("acme", "proxy", "gpt-4o", 1, 0, 0, 12, 3),
        (
            "acme",
            "ai-request-transformer",
            "gpt-4o-mini",
            1,
            0,
            0,
            40,
            20,
        ),
        (
            "acme",
            "ai-response-transformer",
            "gpt-4o-mini",
            1,
            0,
            0,
            40,
            20,
        ),
    ];
    assert_eq!(summary, expected, "{rows:?}");
    let instruction_cost = (40.0 * 0.15 + 20.0 * 0.6) / 1e6;
    for row in &rows[1..] {
        let cost = row["cost"].as_f64().unwrap();
        assert!((cost - instruction_cost).abs() < 1e-12, "{row}");
    }

    // Without `source` the tenant's row sums the proxy's and the policies' usage.
    let r = app.get("/usage?group_by=tenant&bucket=day").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.body["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{}", r.text);
    assert!(data[0].get("source").is_none(), "{}", r.text);
    assert_eq!(data[0]["requests"], 3);
    assert_eq!(data[0]["rejected"], 0);
    assert_eq!(data[0]["total_tokens"], 60 + 60 + 15);
}

/// A streamed request is rewritten like any other; the stream's record carries the
/// instruction call.
#[actix_web::test]
async fn the_request_transformer_runs_before_a_stream() {
    let (app, log, _dir) = app_with_log().await;
    let upstream = MockUpstream::start(sse(
        openai_sse(&["Good", " day"], Some((9, 2))),
        0,
        Tail::End,
    ))
    .await;
    let rewritten = r#"{"messages":[{"role":"user","content":"rewritten"}],"stream":true}"#;
    let llm = MockUpstream::start(Behaviour::json(200, llm_answer(rewritten))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(&app, "ai-request-transformer", "chat", json!({})).await;

    let mut body = hello();
    body["stream"] = json!(true);
    let r = stream(&app, "/openai/chat", &key, body).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.text(), "Good day");
    assert_eq!(
        upstream.last().json()["messages"],
        json!([{"role": "user", "content": "rewritten"}])
    );
    assert!(!r.raw.contains(LLM_SECRET), "{}", r.raw);
    let lines = analytics_lines(&log, 1).await;
    assert_eq!(lines[0]["tollgate"]["stream"], true, "{}", lines[0]);
    assert_eq!(
        lines[0]["ai"]["ai-request-transformer"]["usage"]["total_tokens"], 60,
        "{}",
        lines[0]
    );
}

#[actix_web::test]
async fn request_transformer_errors_are_kongs() {
    let app = crate::support::spawn_app().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let llm =
        MockUpstream::start(Behaviour::json(500, json!({"error": {"message": "down"}}))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(
        &app,
        "ai-request-transformer",
        "chat",
        json!({"transformation_extract_pattern": JSON_OBJECT}),
    )
    .await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "failed to introspect request with AI service: status code 500"
    );
    assert_no_secret(&r.text);

    llm.set(Behaviour::json(200, llm_answer("I will not write JSON.")));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "AI response did not match specified regular expression"
    );

    llm.set(Behaviour::json(
        200,
        json!({"id": "x", "object": "chat.completion"}),
    ));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "failed to convert AI response to Kong format: 'choices' not in llm/v1/chat response"
    );

    // A result that is not a chat body is refused like any such body.
    llm.set(Behaviour::json(200, llm_answer("{not json}")));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["message"], "request body is not valid JSON");

    assert!(upstream.received().is_empty());
}

#[actix_web::test]
async fn the_response_transformer_rewrites_the_answer() {
    let (app, log, _dir) = app_with_log().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let llm = MockUpstream::start(Behaviour::json(200, llm_answer("<p>Hello there</p>"))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(&app, "ai-response-transformer", "chat", json!({})).await;

    // Without instructions: the upstream's status and headers, the LLM's text as body.
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.text, "<p>Hello there</p>");
    assert!(r.headers.contains_key("x-tollgate-request-id"));
    assert_no_secret(&r.text);
    // The LLM was sent the answer the client would have had.
    let asked = llm.last().json();
    let answer: Value =
        serde_json::from_str(asked["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello there");
    assert_eq!(
        llm.last().header("authorization"),
        Some(format!("Bearer {LLM_SECRET}").as_str())
    );
    let lines = analytics_lines(&log, 1).await;
    let entry = &lines[0]["ai"]["ai-response-transformer"];
    assert_eq!(entry["usage"]["total_tokens"], 60, "{}", lines[0]);
    assert_eq!(
        lines[0]["tollgate"]["policies"][0]["outcome"], "applied",
        "{}",
        lines[0]
    );

    // A streamed request on such a route is refused before it is forwarded.
    let before = upstream.received().len();
    let mut streamed = hello();
    streamed["stream"] = json!(true);
    let r = chat(&app, "/openai/chat", &key, streamed).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "streaming is not supported on a route with an ai-response-transformer policy"
    );
    assert_eq!(upstream.received().len(), before);
}

#[actix_web::test]
async fn the_response_transformer_follows_json_instructions() {
    let (app, log, _dir) = app_with_log().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let instructions = r#"{"status": 209, "headers": {"content-type": "application/xml"},
        "body": "<persons><person>Kong A</person></persons>"}"#;
    let llm = MockUpstream::start(Behaviour::json(200, llm_answer(instructions))).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(
        &app,
        "ai-response-transformer",
        "chat",
        json!({"parse_llm_response_json_instructions": true}),
    )
    .await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 209, "{}", r.text);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/xml")
    );
    assert_eq!(r.text, "<persons><person>Kong A</person></persons>");

    llm.set(Behaviour::json(200, llm_answer("Sure! {\"status\": 209}")));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "failed to parse JSON response instructions from AI backend: \
         Expected value but found invalid token at character 1"
    );
    assert_no_secret(&r.text);
    // The upstream's tokens are recorded with the policy's error; the instruction call's
    // under the plugin's name.
    let lines = analytics_lines(&log, 2).await;
    let failed = &lines[1];
    assert_eq!(failed["tollgate"]["status"], 500, "{failed}");
    assert_eq!(
        failed["ai"]["proxy"]["usage"]["prompt_tokens"], 12,
        "{failed}"
    );
    assert_eq!(
        failed["ai"]["ai-response-transformer"]["usage"]["prompt_tokens"], 40,
        "{failed}"
    );
    assert_eq!(
        failed["tollgate"]["policies"][0]["outcome"], "failed",
        "{failed}"
    );
}

// ---- Kong's fixtures ------------------------------------------------------------------

/// The persons object every `response-in-json.json` fixture's answer holds.
fn persons() -> Value {
    json!({"persons": [{"name": "Kong A", "age": 62}, {"name": "Kong B", "age": 84}]})
}

/// Each provider's `response-in-json.json` as the instruction LLM's answer: the request
/// transformer's result (the outermost JSON object) is what the upstream receives.
#[actix_web::test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
async fn kong_request_transformer_fixtures() {
    let fixtures = Fixtures::from_env();
    let providers: [(&str, &str, Value, &str); 6] = [
        ("openai", "openai", json!({}), "/v1/chat/completions"),
        (
            "azure",
            "azure",
            json!({"azure_instance": "001-kong-t", "azure_deployment_id": "gpt-3.5-custom",
                   "azure_api_version": "2023-05-15"}),
            "/openai/deployments/gpt-3.5-custom/chat/completions",
        ),
        (
            "anthropic",
            "anthropic",
            json!({"anthropic_version": "2023-06-01"}),
            "/v1/messages",
        ),
        ("cohere", "cohere", json!({}), "/v1/chat"),
        (
            "mistral",
            "mistral",
            json!({"mistral_format": "ollama"}),
            "/api/chat",
        ),
        (
            "llama2",
            "llama2",
            json!({"llama2_format": "raw"}),
            "/raw/llm/v1/chat",
        ),
    ];
    for (dir, provider, options, path) in providers {
        let app = crate::support::spawn_app().await;
        let upstream = MockUpstream::start(Behaviour::json(200, json!({"ok": true}))).await;
        let answer = fixtures.bytes(&format!("{dir}/request-transformer/response-in-json.json"));
        let llm = MockUpstream::start(Behaviour::Reply(200, "application/json", answer)).await;
        let key = setup(&app, &upstream, &llm, (provider, options, path)).await;
        transformer(
            &app,
            "ai-request-transformer",
            "echo",
            json!({"transformation_extract_pattern": JSON_OBJECT}),
        )
        .await;
        let r = chat(&app, "/echo", &key, json!({"persons": "make some up"})).await;
        assert_eq!(r.status, 200, "{dir}: {}", r.text);
        assert_eq!(upstream.last().json(), persons(), "{dir}");
        assert_no_secret(&r.text);
    }
}

/// OpenAI's four fixtures: the JSON answer as is, the chatty one cut by the extract
/// pattern, and the response transformer's good and bad instructions.
#[actix_web::test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
async fn kong_openai_transformer_fixtures() {
    let fixtures = Fixtures::from_env();
    let fixture = |name: &str| {
        Behaviour::Reply(
            200,
            "application/json",
            fixtures.bytes(&format!("openai/request-transformer/{name}.json")),
        )
    };
    let app = crate::support::spawn_app().await;
    let upstream = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let llm = MockUpstream::start(fixture("response-in-json")).await;
    let key = openai_setup(&app, &upstream, &llm).await;
    transformer(&app, "ai-request-transformer", "echo", json!({})).await;
    let r = chat(&app, "/echo", &key, json!({"q": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(upstream.last().json(), persons());

    // Without an extract pattern the chatty answer is the body (a `preserve` route
    // forwards it as is); Kong's pattern cuts the JSON out of it.
    llm.set(fixture("response-not-json"));
    let r = chat(&app, "/echo", &key, json!({"q": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        upstream.last().body.starts_with(b"Sure! Here is your JSON"),
        "{:?}",
        String::from_utf8_lossy(&upstream.last().body)
    );
    let r = app.delete("/policies/ai-request-transformer-echo").await;
    assert_eq!(r.status, 204, "{}", r.text);
    transformer(
        &app,
        "ai-request-transformer",
        "echo",
        json!({"transformation_extract_pattern": JSON_OBJECT}),
    )
    .await;
    let r = chat(&app, "/echo", &key, json!({"q": 1})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(upstream.last().json(), persons());

    transformer(
        &app,
        "ai-response-transformer",
        "chat",
        json!({"parse_llm_response_json_instructions": true}),
    )
    .await;
    llm.set(fixture("response-with-instructions"));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 209, "{}", r.text);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/xml")
    );
    assert!(r.text.starts_with("<persons>\n  <person>"), "{}", r.text);

    llm.set(fixture("response-with-bad-instructions"));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "failed to parse JSON response instructions from AI backend: \
         Expected value but found invalid token at character 1"
    );
    assert_no_secret(&r.text);
}
