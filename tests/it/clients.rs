//! What mainstream OpenAI clients send and expect, through the real listener
//! (docs/behaviour.md, "Responses", "Streaming rules"; docs/wire-formats.md): Azure's
//! older api-versions without `stream_options`, the provider refusing the gateway's
//! credential, `GET /v1/models/{id}`, array prompts, `x-request-id`, providers' rate-limit
//! headers under OpenAI's names, and usage estimated where a provider's answer counts none.

use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{acme_with_credential, chat, new_key};
use crate::support::spawn_app;
use crate::support::streaming::{
    analytics_lines, anthropic_sse, app_with_log, openai_sse, sse, stream,
};

/// A service `svc` of `provider` at `mock.base + upstream_path` with `options`, a route
/// `r` (`/p`, alias `alias`) of `route_type`, and a tenant key.
async fn configure(
    app: &TestApp,
    mock: &MockUpstream,
    provider: &str,
    upstream_path: &str,
    options: Value,
    route_type: &str,
) -> String {
    acme_with_credential(app, "up").await;
    let r = app
        .post(
            "/services",
            json!({"name": "svc", "provider": provider, "credential": "up",
                   "upstream_url": format!("{}{upstream_path}", mock.base), "options": options,
                   "timeouts": {"connect_ms": 1000, "read_ms": 3000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "r", "paths": ["/p"], "service": "svc", "route_type": route_type,
                   "model_alias": "alias", "model": {"name": "m"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    new_key(app, "acme", json!({"name": "app"})).await
}

fn azure_options(version: &str) -> Value {
    json!({"azure_instance": "tollgate", "azure_deployment_id": "gpt4o",
           "azure_api_version": version})
}

const AZURE_PATH: &str = "/openai/deployments/gpt4o/chat/completions";

#[actix_web::test]
async fn azure_before_stream_options_gets_none_and_the_client_an_estimated_usage() {
    // The upstream reports no usage: the old version has no way to ask for it.
    let mock = MockUpstream::start(sse(openai_sse(&["Hello", " there"], None), 2, Tail::End)).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "azure",
        AZURE_PATH,
        azure_options("2023-05-15"),
        "llm/v1/chat",
    )
    .await;
    let body = json!({"messages": [{"role": "user", "content": "Say hello to the world"}],
                      "stream": true, "stream_options": {"include_usage": true}});
    let s = stream(&app, "/p", &key, body).await;
    assert_eq!(s.status, 200, "{}", s.raw);
    assert_eq!(s.text(), "Hello there");
    let usage = s.usage_chunks();
    assert_eq!(usage.len(), 1, "{}", s.raw);
    let usage = &usage[0]["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0, "{usage}");
    let sent = mock.last();
    assert!(
        sent.query.contains("api-version=2023-05-15"),
        "{}",
        sent.query
    );
    let sent = sent.json();
    assert_eq!(sent["stream"], true);
    assert!(sent.get("stream_options").is_none(), "{sent}");

    // Without asking: no usage chunk, and still no stream_options upstream.
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});
    let s = stream(&app, "/p", &key, body).await;
    assert_eq!(s.status, 200, "{}", s.raw);
    assert!(s.usage_chunks().is_empty(), "{}", s.raw);
    assert!(mock.last().json().get("stream_options").is_none());
}

#[actix_web::test]
async fn azure_with_stream_options_keeps_them() {
    let mock = MockUpstream::start(sse(openai_sse(&["Hi"], Some((7, 1))), 2, Tail::End)).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "azure",
        AZURE_PATH,
        azure_options("2024-10-21"),
        "llm/v1/chat",
    )
    .await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}],
                      "stream": true, "stream_options": {"include_usage": true}});
    let s = stream(&app, "/p", &key, body).await;
    assert_eq!(
        s.usage_chunks()[0]["usage"]["prompt_tokens"],
        7,
        "{}",
        s.raw
    );
    assert_eq!(mock.last().json()["stream_options"]["include_usage"], true);
}

#[actix_web::test]
async fn a_provider_refusing_the_gateway_credential_is_a_502_naming_the_service() {
    use crate::support::proxy::UPSTREAM_SECRET;
    let refused = |status: u16| {
        Behaviour::json(
            status,
            json!({"error": {"message": format!("Incorrect API key provided: {UPSTREAM_SECRET}"),
                             "type": "invalid_request_error", "code": "invalid_api_key"}}),
        )
    };
    let mock = MockUpstream::start(refused(401)).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "openai",
        "/v1/chat/completions",
        json!({}),
        "llm/v1/chat",
    )
    .await;
    for (status, streamed) in [(401, false), (401, true), (403, false), (403, true)] {
        mock.set(refused(status));
        let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": streamed});
        let r = chat(&app, "/p", &key, body).await;
        assert_eq!(r.status, 502, "{status} {streamed}: {}", r.text);
        let e = &r.body["error"];
        assert_eq!(e["type"], "upstream_authentication_error", "{}", r.text);
        assert_eq!(e["code"], "upstream_authentication_error", "{}", r.text);
        let message = e["message"].as_str().unwrap();
        assert!(message.contains("'svc'"), "{message}");
        assert!(message.contains(&status.to_string()), "{message}");
        assert!(!r.text.contains(UPSTREAM_SECRET), "{}", r.text);
    }
    // Other client errors keep their status.
    mock.set(Behaviour::json(
        400,
        json!({"error": {"message": "bad", "type": "invalid_request_error"}}),
    ));
    let r = chat(
        &app,
        "/p",
        &key,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

/// `GET <path>` on the proxy listener with `key`: status, headers and JSON body.
async fn get(
    app: &TestApp,
    path: &str,
    key: Option<&str>,
) -> (u16, awc::http::header::HeaderMap, Value) {
    let mut req = app.client.get(format!("{}{path}", app.proxy));
    if let Some(k) = key {
        req = req.insert_header(("Authorization", format!("Bearer {k}")));
    }
    let mut resp = req.send().await.unwrap();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (resp.status().as_u16(), resp.headers().clone(), body)
}

#[actix_web::test]
async fn models_retrieve_answers_an_alias_the_key_may_use_and_404_otherwise() {
    let mock = MockUpstream::start(Behaviour::json(200, json!({}))).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "openai",
        "/v1/chat/completions",
        json!({}),
        "llm/v1/chat",
    )
    .await;
    // A second route with a slash in its alias, and a key restricted to it.
    let r = app
        .post(
            "/routes",
            json!({"name": "r2", "paths": ["/p2"], "service": "svc", "route_type": "llm/v1/chat",
                   "model_alias": "team/fast", "model": {"name": "m"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let restricted = new_key(&app, "acme", json!({"name": "only-r2", "routes": ["r2"]})).await;

    let (status, headers, body) = get(&app, "/v1/models/alias", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "alias");
    assert_eq!(body["object"], "model");
    assert_eq!(body["owned_by"], "openai");
    assert!(body["created"].as_i64().unwrap() > 0, "{body}");
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = get(&app, "/v1/models/team/fast", Some(&restricted)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "team/fast");
    // The list and the retrieve agree.
    let (_, _, list) = get(&app, "/v1/models", Some(&restricted)).await;
    assert_eq!(list["data"], json!([body]));

    for (path, k) in [("/v1/models/nope", &key), ("/v1/models/alias", &restricted)] {
        let (status, _, body) = get(&app, path, Some(k)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "model_not_found", "{body}");
        assert_eq!(body["error"]["param"], "model", "{body}");
        assert_eq!(body["error"]["type"], "not_found_error", "{body}");
    }
    let (status, _, body) = get(&app, "/v1/models/alias", None).await;
    assert_eq!(status, 401, "{body}");
}

#[actix_web::test]
async fn every_proxy_answer_carries_x_request_id() {
    let mock = MockUpstream::start(Behaviour::json(
        200,
        crate::support::proxy::openai_completion(),
    ))
    .await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "openai",
        "/v1/chat/completions",
        json!({}),
        "llm/v1/chat",
    )
    .await;
    let hello = json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]});
    let ids = |h: &awc::http::header::HeaderMap| {
        let id = h
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let own = h
            .get("x-tollgate-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(id.is_some(), "{h:?}");
        assert_eq!(id, own, "x-request-id mirrors x-tollgate-request-id");
        id.unwrap()
    };
    // A success, a gateway error, a route-path 404, a model list, a stream.
    let ok = chat(&app, "/v1/chat/completions", &key, hello.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let first = ids(&ok.headers);
    let bad = chat(&app, "/v1/chat/completions", "tg-wrong", hello.clone()).await;
    assert_eq!(bad.status, 401);
    assert_ne!(ids(&bad.headers), first, "a new id per request");
    let missing = chat(&app, "/nowhere", &key, hello.clone()).await;
    assert_eq!(missing.status, 404);
    ids(&missing.headers);
    let (_, headers, _) = get(&app, "/v1/models", Some(&key)).await;
    ids(&headers);
    mock.set(sse(openai_sse(&["Hi"], Some((3, 1))), 1, Tail::End));
    let mut streamed = hello.clone();
    streamed["stream"] = json!(true);
    let resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&streamed)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    ids(resp.headers());

    // A client's own sane id is echoed in both; an insane one is replaced.
    mock.set(Behaviour::json(
        200,
        crate::support::proxy::openai_completion(),
    ));
    for (header, value, echoed) in [
        ("x-request-id", "client-req-42", true),
        ("x-tollgate-request-id", "tg.req:7", true),
        ("x-request-id", "bad id\twith spaces", false),
    ] {
        let resp = app
            .client
            .post(format!("{}/v1/chat/completions", app.proxy))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header((header, value))
            .send_json(&hello)
            .await
            .unwrap();
        let id = ids(resp.headers());
        assert_eq!(id == value, echoed, "{header}: {value} -> {id}");
    }
}

#[actix_web::test]
async fn an_array_prompt_is_one_string_everywhere_and_a_batch_where_the_provider_takes_one() {
    let completion = json!({"id": "cmpl-1", "object": "text_completion", "created": 1_700_000_000,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [{"index": 0, "text": "one", "logprobs": null, "finish_reason": "stop"},
                    {"index": 1, "text": "two", "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}});
    let mock = MockUpstream::start(Behaviour::json(200, completion)).await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "openai",
        "/v1/completions",
        json!({}),
        "llm/v1/completions",
    )
    .await;
    let ask = |prompt: Value| json!({"model": "alias", "prompt": prompt, "max_tokens": 5});

    // LangChain's form: a list of one.
    let r = chat(&app, "/v1/completions", &key, ask(json!(["Say one"]))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["prompt"], "Say one");
    // A batch goes to OpenAI as it is, and its choices come back.
    let r = chat(
        &app,
        "/v1/completions",
        &key,
        ask(json!(["Say one", "Say two"])),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["prompt"], json!(["Say one", "Say two"]));
    assert_eq!(r.body["choices"][1]["text"], "two", "{}", r.text);
    // Not a list of strings.
    for bad in [json!([]), json!([[1, 2, 3]]), json!(["a", 5])] {
        let r = chat(&app, "/v1/completions", &key, ask(bad.clone())).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert_eq!(r.body["error"]["param"], "prompt", "{}", r.text);
    }
    assert_eq!(mock.received().len(), 2, "nothing refused was forwarded");
}

#[actix_web::test]
async fn an_array_prompt_of_several_is_refused_where_the_provider_takes_one() {
    let legacy = json!({"type": "completion", "id": "compl_1", "completion": " Hello",
                        "stop_reason": "stop_sequence", "model": "claude-2.1"});
    let mock = MockUpstream::start(Behaviour::json(200, legacy)).await;
    let app = spawn_app().await;
    let options = json!({"anthropic_version": "2023-06-01"});
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/complete",
        options,
        "llm/v1/completions",
    )
    .await;
    let ask = |prompt: Value| json!({"model": "alias", "prompt": prompt, "max_tokens": 5});
    let r = chat(&app, "/v1/completions", &key, ask(json!(["Say hello"]))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        mock.last().json()["prompt"],
        "Human: Say hello\n\nAssistant:"
    );
    let r = chat(&app, "/v1/completions", &key, ask(json!(["a", "b"]))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "prompt", "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("several prompts"),
        "{}",
        r.text
    );
    assert_eq!(mock.received().len(), 1);
}

#[actix_web::test]
async fn json_mode_on_anthropic_is_a_forced_tool_answered_as_text() {
    let answer = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "tollgate_json_answer",
                     "input": {"answer": 42}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 20, "output_tokens": 9}});
    let mock = MockUpstream::start(Behaviour::json(200, answer)).await;
    let app = spawn_app().await;
    let options = json!({"anthropic_version": "2023-06-01"});
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/messages",
        options,
        "llm/v1/chat",
    )
    .await;
    let ask = json!({"model": "alias", "response_format": {"type": "json_object"},
                     "messages": [{"role": "user", "content": "The answer, as JSON"}]});
    let r = chat(&app, "/v1/chat/completions", &key, ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = mock.last().json();
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "tollgate_json_answer"})
    );
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1, "{sent}");
    let choice = &r.body["choices"][0];
    let content: Value =
        serde_json::from_str(choice["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, json!({"answer": 42}));
    assert!(choice["message"].get("tool_calls").is_none(), "{}", r.text);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(r.body["usage"]["completion_tokens"], 9);
}

#[actix_web::test]
async fn json_mode_on_anthropic_streams_the_answer_as_content() {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let frames = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_1",
            "model": "claude-sonnet-4-5", "usage": {"input_tokens": 20, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1",
                              "name": "tollgate_json_answer", "input": {}}}),
        ),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": "{\"answer\""}}),
        ),
        event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ": 42}"}}),
        ),
        event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        event(
            "message_delta",
            json!({"type": "message_delta",
            "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        ),
        event("message_stop", json!({"type": "message_stop"})),
    ];
    let mock = MockUpstream::start(sse(frames, 2, Tail::End)).await;
    let app = spawn_app().await;
    let options = json!({"anthropic_version": "2023-06-01"});
    let key = configure(
        &app,
        &mock,
        "anthropic",
        "/v1/messages",
        options,
        "llm/v1/chat",
    )
    .await;
    let ask = json!({"model": "alias", "response_format": {"type": "json_object"}, "stream": true,
                     "stream_options": {"include_usage": true},
                     "messages": [{"role": "user", "content": "The answer, as JSON"}]});
    let s = stream(&app, "/v1/chat/completions", &key, ask).await;
    assert_eq!(s.status, 200, "{}", s.raw);
    let content: Value = serde_json::from_str(&s.text()).unwrap();
    assert_eq!(content, json!({"answer": 42}));
    assert!(s.tool_calls().is_empty(), "{}", s.raw);
    assert_eq!(s.finish_reasons(), vec!["stop"], "{}", s.raw);
    assert_eq!(
        s.usage_chunks()[0]["usage"]["completion_tokens"],
        9,
        "{}",
        s.raw
    );
    assert_eq!(
        mock.last().json()["tool_choice"]["name"],
        "tollgate_json_answer"
    );
}

/// An Anthropic Messages answer that counts its tokens (5 in, 1 out).
fn anthropic_message() -> Value {
    json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4", "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 5, "output_tokens": 1}})
}

/// [`configure`] for an Anthropic chat route at the mock's `/v1/messages`.
async fn configure_anthropic_chat(app: &TestApp, mock: &MockUpstream) -> String {
    configure(
        app,
        mock,
        "anthropic",
        "/v1/messages",
        json!({"anthropic_version": "2023-06-01"}),
        "llm/v1/chat",
    )
    .await
}

/// `hi` to the chat alias.
async fn hi(app: &TestApp, key: &str) -> crate::support::proxy::ProxyReply {
    chat(
        app,
        "/v1/chat/completions",
        key,
        json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
}

/// The value of `name` on an answer, or "" (asserted against).
fn header<'a>(headers: &'a awc::http::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Anthropic's rate-limit headers, their resets `reset_in` from now (whole seconds).
fn anthropic_rate_headers(reset_in: chrono::Duration) -> Vec<(&'static str, String)> {
    let reset = (chrono::Utc::now() + reset_in).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    vec![
        ("anthropic-ratelimit-requests-limit", "50".into()),
        ("anthropic-ratelimit-requests-remaining", "49".into()),
        ("anthropic-ratelimit-requests-reset", reset.clone()),
        ("anthropic-ratelimit-tokens-limit", "80000".into()),
        ("anthropic-ratelimit-tokens-remaining", "79000".into()),
        ("anthropic-ratelimit-tokens-reset", reset),
        ("anthropic-ratelimit-input-tokens-remaining", "40000".into()),
        ("retry-after", "7".into()),
    ]
}

/// OpenAI's six names, with Anthropic's numbers and a reset 10 minutes away (`9m59.xs` or
/// `10m0s`, Go's duration format as OpenAI writes it).
fn assert_openai_rate_headers(headers: &awc::http::header::HeaderMap, what: &str) {
    let h = |name: &str| header(headers, name);
    assert_eq!(h("x-ratelimit-limit-requests"), "50", "{what}");
    assert_eq!(h("x-ratelimit-remaining-requests"), "49", "{what}");
    assert_eq!(h("x-ratelimit-limit-tokens"), "80000", "{what}");
    assert_eq!(h("x-ratelimit-remaining-tokens"), "79000", "{what}");
    for reset in ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"] {
        let value = h(reset);
        assert!(
            value == "10m0s" || (value.starts_with("9m5") && value.ends_with('s')),
            "{what}: {reset}: {value:?}"
        );
    }
    assert_eq!(h("retry-after"), "7", "{what}");
}

#[actix_web::test]
async fn anthropic_rate_limit_headers_reach_the_client_under_openai_names() {
    let message = anthropic_message();
    let headers = anthropic_rate_headers(chrono::Duration::minutes(10));
    let behaviour = |inner| Behaviour::WithHeaders(headers.clone(), Box::new(inner));
    let mock = MockUpstream::start(behaviour(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, message)),
        streamed: Box::new(sse(anthropic_sse(&["Hi"], 5, 1), 2, Tail::End)),
    }))
    .await;
    let app = spawn_app().await;
    let key = configure_anthropic_chat(&app, &mock).await;
    let ask = json!({"model": "alias", "messages": [{"role": "user", "content": "hi"}]});

    // A whole answer.
    let r = chat(&app, "/v1/chat/completions", &key, ask.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_openai_rate_headers(&r.headers, "whole");

    // A stream: the head carries them.
    let mut streamed = ask.clone();
    streamed["stream"] = json!(true);
    let mut resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&streamed)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_openai_rate_headers(resp.headers(), "stream");
    let body = resp.body().await.unwrap();
    assert!(body.ends_with(b"data: [DONE]\n\n"));

    // An error: Anthropic's 429 keeps its status and gets the same names.
    mock.set(behaviour(Behaviour::json(
        429,
        json!({"type": "error", "error": {"type": "rate_limit_error",
               "message": "Number of request tokens has exceeded your per-minute rate limit"}}),
    )));
    let r = chat(&app, "/v1/chat/completions", &key, ask.clone()).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_openai_rate_headers(&r.headers, "429");
    // And a streamed request answered with an error.
    let r = chat(&app, "/v1/chat/completions", &key, streamed).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_openai_rate_headers(&r.headers, "streamed 429");
}

#[actix_web::test]
async fn mistral_rate_limit_headers_reach_the_client_under_openai_names() {
    let headers = vec![
        ("x-ratelimit-limit-req-minute", "60".to_string()),
        ("x-ratelimit-remaining-req-minute", "58".to_string()),
        ("x-ratelimit-limit-tokens-minute", "500000".to_string()),
        ("x-ratelimit-remaining-tokens-minute", "499000".to_string()),
        ("x-ratelimit-limit-tokens-month", "1000000000".to_string()),
    ];
    let completion = json!({"id": "cmpl-9", "object": "chat.completion", "created": 1_700_000_000,
        "model": "mistral-small-latest",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}});
    let mock = MockUpstream::start(Behaviour::WithHeaders(
        headers,
        Box::new(Behaviour::json(200, completion)),
    ))
    .await;
    let app = spawn_app().await;
    let key = configure(
        &app,
        &mock,
        "mistral",
        "/v1/chat/completions",
        json!({"mistral_format": "openai"}),
        "llm/v1/chat",
    )
    .await;
    let r = hi(&app, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = |name: &str| header(&r.headers, name);
    assert_eq!(h("x-ratelimit-limit-requests"), "60");
    assert_eq!(h("x-ratelimit-remaining-requests"), "58");
    assert_eq!(h("x-ratelimit-limit-tokens"), "500000");
    assert_eq!(h("x-ratelimit-remaining-tokens"), "499000");
    // No reset is sent by Mistral, so none is made up; its own names still pass.
    assert_eq!(h("x-ratelimit-reset-requests"), "");
    assert_eq!(h("x-ratelimit-limit-tokens-month"), "1000000000");
}

/// `/usage` totals once `requests` requests are recorded: (prompt, completion).
async fn usage_totals(app: &TestApp, requests: u64) -> (u64, u64) {
    let started = std::time::Instant::now();
    loop {
        let r = app.get("/usage").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let rows = r.body["data"].as_array().unwrap().clone();
        let sum = |k: &str| rows.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
        if sum("requests") >= requests || started.elapsed() > std::time::Duration::from_secs(10) {
            assert_eq!(sum("requests"), requests, "{rows:?}");
            return (sum("prompt_tokens"), sum("completion_tokens"));
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A whole answer that counts no tokens is estimated as its stream would be: the prompt
/// as sent, the answer at 4 characters per token; the client, the usage rows and the
/// analytics line (`usage_estimated: true`) say the same.
async fn check_estimated_whole_answer(
    provider: &str,
    upstream_path: &str,
    options: Value,
    route_type: &str,
    answer: Value,
    ask: Value,
    text: &str,
) {
    let mock = MockUpstream::start(Behaviour::json(200, answer)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure(&app, &mock, provider, upstream_path, options, route_type).await;
    let path = if route_type == "llm/v1/chat" {
        "/v1/chat/completions"
    } else {
        "/v1/completions"
    };
    let r = chat(&app, path, &key, ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let usage = &r.body["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0, "{provider}: {usage}");
    assert_eq!(
        completion,
        (text.chars().count() as u64).div_ceil(4),
        "{provider}: {usage}"
    );
    assert_eq!(usage["total_tokens"], prompt + completion, "{provider}");
    let line = analytics_lines(&log, 1)
        .await
        .pop()
        .expect("an analytics line");
    assert_eq!(line["tollgate"]["usage_estimated"], true, "{line}");
    assert_eq!(
        line["ai"]["proxy"]["usage"]["prompt_tokens"], prompt,
        "{line}"
    );
    assert_eq!(
        line["ai"]["proxy"]["usage"]["completion_tokens"], completion,
        "{line}"
    );
    assert_eq!(
        usage_totals(&app, 1).await,
        (prompt, completion),
        "{provider}"
    );
}

#[actix_web::test]
async fn a_whole_tgi_answer_without_counts_is_estimated() {
    check_estimated_whole_answer(
        "llama2",
        "/generate",
        json!({"llama2_format": "raw"}),
        "llm/v1/chat",
        json!({"generated_text": "[INST] Say hello to everyone here [/INST] Hello there, everyone!"}),
        json!({"model": "alias", "messages": [{"role": "user", "content": "Say hello to everyone here"}]}),
        "Hello there, everyone!",
    )
    .await;
}

#[actix_web::test]
async fn a_whole_legacy_anthropic_completion_is_estimated() {
    check_estimated_whole_answer(
        "anthropic",
        "/v1/complete",
        json!({"anthropic_version": "2023-06-01"}),
        "llm/v1/completions",
        json!({"type": "completion", "id": "compl_1", "completion": " Hello! My name is Claude.",
               "stop_reason": "stop_sequence", "model": "claude-2.1"}),
        json!({"model": "alias", "prompt": "Introduce yourself in one sentence, please."}),
        " Hello! My name is Claude.",
    )
    .await;
}

#[actix_web::test]
async fn a_whole_answer_with_counts_is_not_estimated() {
    let message = anthropic_message();
    let mock = MockUpstream::start(Behaviour::json(200, message)).await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure_anthropic_chat(&app, &mock).await;
    let r = hi(&app, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["usage"]["prompt_tokens"], 5);
    let line = analytics_lines(&log, 1)
        .await
        .pop()
        .expect("an analytics line");
    assert_eq!(line["tollgate"]["usage_estimated"], false, "{line}");
    assert_eq!(usage_totals(&app, 1).await, (5, 1));
}

#[actix_web::test]
async fn the_stricter_of_the_provider_and_the_gateway_limit_is_sent() {
    let message = anthropic_message();
    let mock = MockUpstream::start(Behaviour::WithHeaders(
        anthropic_rate_headers(chrono::Duration::minutes(10)),
        Box::new(Behaviour::json(200, message)),
    ))
    .await;
    let app = spawn_app().await;
    configure_anthropic_chat(&app, &mock).await;
    // The key allows more requests than Anthropic has left (49), and fewer tokens (79000).
    let key = new_key(
        &app,
        "acme",
        json!({"name": "limited", "limits": {"requests_per_minute": 1000, "tokens_per_minute": 5000}}),
    )
    .await;
    let r = hi(&app, &key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = |name: &str| header(&r.headers, name);
    // Requests: Anthropic's group, whole.
    assert_eq!(h("x-ratelimit-limit-requests"), "50");
    assert_eq!(h("x-ratelimit-remaining-requests"), "49");
    assert!(
        h("x-ratelimit-reset-requests").contains('m'),
        "{:?}",
        r.headers
    );
    // Tokens: the gateway's group, whole.
    assert_eq!(h("x-ratelimit-limit-tokens"), "5000");
    let remaining: u64 = h("x-ratelimit-remaining-tokens").parse().unwrap();
    assert!(remaining < 5000, "{remaining}");
    assert!(h("x-ratelimit-reset-tokens").ends_with('s'));
    assert!(
        !h("x-ratelimit-reset-tokens").contains('m'),
        "{:?}",
        r.headers
    );
}
