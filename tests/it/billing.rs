//! Honest billing (docs/architecture.md, Streaming, "Accounting"): a stream cut before the
//! provider's usage is billed for the whole prompt as OpenAI's tokenizer counts it (tools,
//! tool calls and tool results included); `preserve` answers that carry a usage object are
//! billed; a client-chosen model name is capped before it reaches any record.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{chat, configure_openai, new_key, openai_completion};
use crate::support::streaming::{analytics_lines, app_with_log, openai_sse, sse, stream};

fn o200k(text: &str) -> u64 {
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len() as u64
}

/// What OpenAI bills for a chat prompt: each message's role and content, 3 tokens of
/// framing per message and 3 for the reply's priming.
fn true_prompt(messages: &[(&str, &str)]) -> u64 {
    messages
        .iter()
        .map(|(role, content)| o200k(role) + o200k(content) + 3)
        .sum::<u64>()
        + 3
}

/// A stream that sends its first event and then loses its connection: the provider never
/// reports usage.
fn cut_stream() -> Behaviour {
    let mut frames = openai_sse(&["Hello"], None);
    frames.truncate(2);
    sse(frames, 0, Tail::Reset)
}

/// `/usage` prompt tokens, once `requests` requests are in.
async fn usage_prompt_tokens(app: &TestApp, requests: u64) -> u64 {
    let started = Instant::now();
    loop {
        let r = app.get("/usage").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let rows = r.body["data"].as_array().unwrap().clone();
        let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
        if sum("requests") >= requests || started.elapsed() > Duration::from_secs(10) {
            assert_eq!(sum("requests"), requests, "{rows:?}");
            return sum("prompt_tokens");
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn a_cut_stream_is_billed_for_a_40k_token_prompt_within_5_percent() {
    let mock = MockUpstream::start(cut_stream()).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    // " hello" is one o200k token; a system text and a multi-part user message besides.
    let system = "You are a careful assistant. Answer in English.";
    let big = " hello".repeat(40_000);
    let part = "Please count the words above and reply with the number.";
    assert_eq!(o200k(&big), 40_000, "the fixture's own count");
    let truth = true_prompt(&[("system", system), ("user", &format!("{big}{part}"))]);
    assert!((40_000..40_100).contains(&truth), "{truth}");

    let s = stream(
        &app,
        "/openai/chat",
        &key,
        json!({"stream": true, "stream_options": {"include_usage": true}, "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": [{"type": "text", "text": big},
                                         {"type": "text", "text": part}]},
        ]}),
    )
    .await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text(), "Hello");
    assert!(!s.ends_with_done(), "the stream was cut: {}", s.raw);

    let line = analytics_lines(&log, 1)
        .await
        .pop()
        .expect("an analytics line");
    assert_eq!(line["tollgate"]["usage_estimated"], true);
    assert_eq!(line["tollgate"]["stream_end"], "failed");
    let billed = line["ai"]["proxy"]["usage"]["prompt_tokens"]
        .as_u64()
        .unwrap();
    let off = (billed as f64 - truth as f64).abs() / truth as f64;
    assert!(off <= 0.05, "billed {billed} for a {truth}-token prompt");
    // The usage rows carry the same number.
    assert_eq!(usage_prompt_tokens(&app, 1).await, billed);
}

#[actix_web::test]
async fn tools_tool_calls_and_tool_results_are_counted() {
    let mock = MockUpstream::start(cut_stream()).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let question = json!({"role": "user", "content": "What is the weather in Paris and in Rome?"});
    let description = "Returns the current weather for a city. ".repeat(60);
    let tools = json!([{"type": "function", "function": {
        "name": "get_weather", "description": description,
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city's name, in English"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}}]);
    let arguments = json!({"city": "Paris", "note": "north ".repeat(300)}).to_string();
    let result = "18 degrees and sunny, light wind from the west. ".repeat(40);
    let plain = json!({"stream": true, "messages": [question.clone()]});
    let with_tools = json!({"stream": true, "tools": tools, "messages": [
        question,
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": result},
    ]});
    for body in [plain, with_tools] {
        let s = stream(&app, "/openai/chat", &key, body).await;
        assert_eq!(s.status, 200);
    }
    let lines = analytics_lines(&log, 2).await;
    assert_eq!(lines.len(), 2);
    let prompt = |i: usize| {
        lines[i]["ai"]["proxy"]["usage"]["prompt_tokens"]
            .as_u64()
            .unwrap()
    };
    let added = prompt(1) - prompt(0);
    // What the second request adds, as the tokenizer counts it: the tool definition (as
    // JSON), the call's name and arguments, the result, two more messages.
    let expected = o200k(&tools.to_string())
        + o200k("assistant")
        + o200k("get_weather")
        + o200k(&arguments)
        + o200k("tool")
        + o200k(&result)
        + 2 * 3;
    let ratio = added as f64 / expected as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "the tools added {added} tokens, expected about {expected}"
    );
    // Each part matters on its own: far more than the result alone (what a count of
    // message contents only would add).
    assert!(added > o200k(&result) * 2, "{added}");
}

async fn preserve_route(app: &TestApp, mock: &MockUpstream, name: &str) {
    let r = app
        .post(
            "/services",
            json!({"name": name, "provider": "openai",
                   "upstream_url": format!("{}/v1/{name}", mock.base)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": name, "paths": [format!("/{name}")], "service": name,
                   "route_type": "preserve"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[actix_web::test]
async fn preserve_answers_with_openai_or_anthropic_usage_are_billed() {
    let mock = MockUpstream::start(Behaviour::json(
        200,
        json!({"object": "list", "data": [{"embedding": [0.1, 0.2]}], "model": "text-embedding-3-small",
               "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}),
    ))
    .await;
    let (app, log, _dir) = app_with_log().await;
    assert_eq!(
        app.post("/tenants", json!({"name": "acme"})).await.status,
        201
    );
    preserve_route(&app, &mock, "embeddings").await;
    preserve_route(&app, &mock, "messages").await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;

    let body = json!({"model": "text-embedding-3-small", "input": "hi"});
    let r = chat(&app, "/embeddings", &key, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Passed through untouched.
    assert_eq!(r.body["usage"]["prompt_tokens"], 11);
    assert_eq!(mock.last().json(), body);
    let lines = analytics_lines(&log, 1).await;
    assert_eq!(lines[0]["ai"]["proxy"]["usage"]["prompt_tokens"], 11);
    assert_eq!(lines[0]["ai"]["proxy"]["usage"]["completion_tokens"], 7);

    mock.set(Behaviour::json(
        200,
        json!({"id": "msg_1", "type": "message", "content": [{"type": "text", "text": "Hi"}],
               "usage": {"input_tokens": 20, "output_tokens": 5, "cache_read_input_tokens": 4}}),
    ));
    let r = chat(
        &app,
        "/messages",
        &key,
        json!({"model": "claude", "messages": []}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lines = analytics_lines(&log, 2).await;
    assert_eq!(lines[1]["ai"]["proxy"]["usage"]["prompt_tokens"], 24);
    assert_eq!(lines[1]["ai"]["proxy"]["usage"]["completion_tokens"], 5);

    // No usage object: nothing invented.
    mock.set(Behaviour::json(200, json!({"data": []})));
    let r = chat(&app, "/messages", &key, json!({"model": "claude"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let lines = analytics_lines(&log, 3).await;
    assert_eq!(lines[2]["ai"]["proxy"]["usage"]["prompt_tokens"], 0);

    assert_eq!(usage_prompt_tokens(&app, 3).await, 11 + 24);
}

#[actix_web::test]
async fn a_10000_character_model_name_is_capped_in_every_record() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let receiver = crate::support::otlp::start_receiver();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("analytics.log");
    let (log_path, otlp) = (log.display().to_string(), receiver.url.clone());
    let app = crate::support::spawn_app_with(move |s| {
        s.analytics_log = log_path;
        s.otel_exporter_otlp_endpoint = Some(otlp);
        s.otel_metric_export_interval = Some("600000".into());
    })
    .await;
    // No model configured: the client chooses.
    let key = configure_openai(
        &app,
        &mock,
        json!({"model": {"name": null}, "model_name_header": true}),
    )
    .await;
    let model = format!("gpt-4o-{}", "x".repeat(10_000 - 7));
    let r = chat(
        &app,
        "/openai/chat",
        &key,
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The upstream gets the name as sent; the records get at most 128 bytes of it.
    assert_eq!(mock.last().json()["model"], model);
    let header = r
        .headers
        .get("x-tollgate-llm-model")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(header.starts_with("openai/gpt-4o-xxx"), "{header}");
    assert!(header.len() <= "openai/".len() + 128, "{}", header.len());

    let long = "x".repeat(129);
    let line = analytics_lines(&log, 1).await.pop().unwrap();
    let recorded = line["ai"]["proxy"]["meta"]["request_model"]
        .as_str()
        .unwrap();
    assert!(
        recorded.starts_with("gpt-4o-xxx") && recorded.len() <= 128,
        "{recorded}"
    );
    assert!(!line.to_string().contains(&long));

    let started = Instant::now();
    let rows: Vec<Value> = loop {
        let r = app.get("/usage?group_by=model").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let rows = r.body["data"].as_array().unwrap().clone();
        if !rows.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break rows;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row_model = rows[0]["model"].as_str().unwrap();
    assert!(
        row_model.len() <= 128 && row_model.starts_with("gpt-4o-x"),
        "{row_model}"
    );

    // Spans and metric attributes (exported at the graceful stop).
    app.shut_down().await;
    let exported = {
        use prost::Message;
        let received = receiver.received.lock().unwrap();
        assert!(!received.traces.is_empty() && !received.metrics.is_empty());
        let mut bytes = Vec::new();
        received
            .traces
            .iter()
            .for_each(|t| bytes.extend(t.encode_to_vec()));
        received
            .metrics
            .iter()
            .for_each(|m| bytes.extend(m.encode_to_vec()));
        String::from_utf8_lossy(&bytes).into_owned()
    };
    assert!(exported.contains("gpt-4o-xxx"), "the model is an attribute");
    assert!(
        !exported.contains(&long),
        "an uncapped model name in the OTLP export"
    );
}
