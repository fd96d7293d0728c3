//! Embeddings through the listener (docs/behaviour.md, "Embeddings"): `POST /v1/embeddings`
//! by alias and a route path, against mock providers speaking each provider's real embeddings
//! wire format (OpenAI, Azure, Mistral, Cohere v2, Ollama) — the upstream URL, body and
//! credential, the client's answer in the encoding it asked for, usage rows, cost, the
//! analytics line and the OTLP span; the admin API's refusals; limits and policies.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::kong::Fixtures;
use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::proxy::{UPSTREAM_SECRET, acme_with_credential, chat, new_key};
use crate::support::streaming::{analytics_lines, app_with_log};

/// USD per 1M prompt tokens on every embeddings route here.
const INPUT_COST: f64 = 0.13;

/// An OpenAI embeddings answer with float vectors.
fn openai_floats(vectors: &[&[f32]], prompt_tokens: u64) -> Value {
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"object": "embedding", "index": i, "embedding": v}))
        .collect();
    json!({"object": "list", "data": data, "model": "text-embedding-3-small",
           "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
}

/// OpenAI's base64 form of a vector: its float32 values, little-endian.
fn b64(v: &[f32]) -> String {
    STANDARD.encode(v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>())
}

fn unb64(s: &str) -> Vec<f32> {
    STANDARD
        .decode(s)
        .expect("base64")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// A service `name` of `provider` at `url` with `options` and credential `k` (tenant `acme`
/// and the credential are created on the first call), and an embeddings route `name` with
/// alias `name` and path `/<name>`.
async fn embeddings_route(
    app: &TestApp,
    name: &str,
    provider: &str,
    url: &str,
    options: Value,
    model: &str,
) {
    if app.get("/tenants/acme").await.status == 404 {
        acme_with_credential(app, "k").await;
    }
    let r = app
        .post(
            "/services",
            json!({"name": name, "provider": provider, "credential": "k", "upstream_url": url,
                   "options": options, "timeouts": {"connect_ms": 1000, "read_ms": 5000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": name, "model_alias": name, "paths": [format!("/{name}")],
                   "service": name, "route_type": "llm/v1/embeddings",
                   "model": {"name": model, "options": {"input_cost": INPUT_COST}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// Route `emb` at an OpenAI mock, for `text-embedding-3-small`.
async fn openai_route(app: &TestApp, mock: &MockUpstream) {
    let url = format!("{}/v1/embeddings", mock.base);
    embeddings_route(
        app,
        "emb",
        "openai",
        &url,
        json!({}),
        "text-embedding-3-small",
    )
    .await;
}

async fn embed(app: &TestApp, key: &str, body: Value) -> crate::support::proxy::ProxyReply {
    chat(app, "/v1/embeddings", key, body).await
}

/// `/usage` rows grouped by route once `requests` requests are counted.
async fn usage_by_route(app: &TestApp, requests: u64) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let r = app.get("/usage?group_by=route").await;
        assert_eq!(r.status, 200, "{}", r.text);
        let rows = r.body["data"].as_array().expect("data").clone();
        let counted: u64 = rows.iter().filter_map(|r| r["requests"].as_u64()).sum();
        if counted >= requests || started.elapsed() > Duration::from_secs(10) {
            return rows;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

fn row<'a>(rows: &'a [Value], route: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["route"] == route)
        .unwrap_or_else(|| panic!("no usage row for {route}: {rows:?}"))
}

fn assert_cost(row: &Value, prompt_tokens: u64) {
    assert_eq!(row["prompt_tokens"], prompt_tokens, "{row}");
    assert_eq!(row["completion_tokens"], 0, "{row}");
    let cost = row["cost"].as_f64().expect("cost");
    let expected = prompt_tokens as f64 * INPUT_COST / 1_000_000.0;
    assert!((cost - expected).abs() < 1e-12, "cost {cost} != {expected}");
}

#[actix_web::test]
async fn openai_embeddings_are_forwarded_in_the_clients_encoding_and_billed() {
    let (app, log, _dir) = app_with_log().await;
    let mock = MockUpstream::start(Behaviour::json(
        200,
        openai_floats(&[&[0.5, -0.25], &[1.0, 0.0]], 4),
    ))
    .await;
    openai_route(&app, &mock).await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;

    // Floats (OpenAI's default when the field is absent).
    let r = embed(
        &app,
        &key,
        json!({"model": "emb", "input": ["hello", "world"], "dimensions": 2, "user": "u1"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, openai_floats(&[&[0.5, -0.25], &[1.0, 0.0]], 4));
    let sent = mock.last();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(
        sent.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
    assert!(!String::from_utf8_lossy(&sent.body).contains(&key));
    assert_eq!(
        sent.json(),
        json!({"model": "text-embedding-3-small", "input": ["hello", "world"],
               "dimensions": 2, "user": "u1"})
    );
    assert!(r.headers.get("x-request-id").is_some());

    // base64 is forwarded to OpenAI, and its answer passed on as it is.
    let encoded = b64(&[0.5, -0.25]);
    mock.set(Behaviour::json(
        200,
        json!({"object": "list", "model": "text-embedding-3-small",
               "data": [{"object": "embedding", "index": 0, "embedding": encoded}],
               "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
    ));
    let r = embed(
        &app,
        &key,
        json!({"model": "emb", "input": "hello", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["encoding_format"], "base64");
    assert_eq!(r.body["data"][0]["embedding"], encoded.as_str());

    // The route path surface too; token ids go to OpenAI as they are.
    let r = chat(&app, "/emb", &key, json!({"input": [[15339, 1917]]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(mock.last().json()["input"], json!([[15339, 1917]]));

    let rows = usage_by_route(&app, 3).await;
    assert_cost(row(&rows, "emb"), 4 + 1 + 1);
    let lines = analytics_lines(&log, 3).await;
    assert_eq!(lines.len(), 3);
    let usage = &lines[0]["ai"]["proxy"]["usage"];
    assert_eq!(usage["prompt_tokens"], 4, "{usage}");
    assert_eq!(usage["completion_tokens"], 0, "{usage}");
    assert_eq!(
        lines[0]["ai"]["proxy"]["meta"]["request_model"],
        "text-embedding-3-small"
    );
}

#[actix_web::test]
async fn azure_gets_its_deployment_url_and_old_versions_floats_the_gateway_encodes() {
    let app = crate::support::spawn_app().await;
    let mock = MockUpstream::start(Behaviour::json(
        200,
        openai_floats(&[&[0.125, 2.5, -3.0]], 3),
    ))
    .await;
    let url = format!("{}/openai/deployments/emb-small/embeddings", mock.base);
    let r = app
        .post(
            "/credentials",
            json!({"name": "azure-key", "header_name": "api-key", "header_value": "az-secret-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    acme_with_credential(&app, "k").await;
    let r = app
        .post(
            "/services",
            json!({"name": "az", "provider": "azure", "credential": "azure-key",
                   "upstream_url": url,
                   "options": {"azure_instance": "res", "azure_deployment_id": "emb-small"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "az", "model_alias": "az", "service": "az",
                   "route_type": "llm/v1/embeddings",
                   "model": {"name": "text-embedding-3-small",
                             "options": {"input_cost": INPUT_COST}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = new_key(&app, "acme", json!({"name": "app"})).await;

    let r = embed(
        &app,
        &key,
        json!({"model": "az", "input": "hello", "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = mock.last();
    assert_eq!(sent.path, "/openai/deployments/emb-small/embeddings");
    assert_eq!(sent.query, "api-version=2023-05-15");
    assert_eq!(sent.header("api-key"), Some("az-secret-1"));
    // 2023-05-15 predates `encoding_format`: not sent, the floats encoded by the gateway.
    assert!(
        sent.json().get("encoding_format").is_none(),
        "{}",
        sent.json()
    );
    let embedding = r.body["data"][0]["embedding"].as_str().expect("base64");
    assert_eq!(unb64(embedding), vec![0.125, 2.5, -3.0]);
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let rows = usage_by_route(&app, 1).await;
    assert_cost(row(&rows, "az"), 3);
}

#[actix_web::test]
async fn mistral_cohere_and_ollama_speak_their_own_embeddings_formats() {
    let app = crate::support::spawn_app().await;
    let mistral = MockUpstream::start(Behaviour::json(
        200,
        json!({"id": "e1", "object": "list", "model": "mistral-embed",
               "data": [{"object": "embedding", "index": 0, "embedding": [0.75, -0.5]}],
               "usage": {"prompt_tokens": 5, "total_tokens": 5, "completion_tokens": 0}}),
    ))
    .await;
    let cohere = MockUpstream::start(Behaviour::json(
        200,
        json!({"id": "c1", "texts": ["first", "second"], "response_type": "embeddings_by_type",
               "embeddings": {"float": [[0.25, 0.5], [-1.0, 1.5]]},
               "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 6}}}),
    ))
    .await;
    let ollama = MockUpstream::start(Behaviour::json(
        200,
        json!({"model": "nomic-embed-text:latest", "embeddings": [[0.1, 0.2, 0.3]],
               "total_duration": 14143917, "load_duration": 1019500,
               "prompt_eval_count": 9}),
    ))
    .await;
    embeddings_route(
        &app,
        "mis",
        "mistral",
        &format!("{}/v1/embeddings", mistral.base),
        json!({"mistral_format": "openai"}),
        "mistral-embed",
    )
    .await;
    embeddings_route(
        &app,
        "co",
        "cohere",
        &format!("{}/v2/embed", cohere.base),
        json!({}),
        "embed-v4.0",
    )
    .await;
    embeddings_route(
        &app,
        "oll",
        "llama2",
        &format!("{}/api/embed", ollama.base),
        json!({"llama2_format": "ollama"}),
        "nomic-embed-text",
    )
    .await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;
    let bearer = format!("Bearer {UPSTREAM_SECRET}");

    // Mistral: `dimensions` renamed, fields it does not know dropped; base64 forwarded.
    let r = embed(
        &app,
        &key,
        json!({"model": "mis", "input": ["a"], "dimensions": 2, "user": "u1",
               "encoding_format": "float"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = mistral.last();
    assert_eq!(sent.path, "/v1/embeddings");
    assert_eq!(sent.header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        sent.json(),
        json!({"model": "mistral-embed", "input": ["a"], "output_dimension": 2,
               "encoding_format": "float"})
    );
    // Already OpenAI's shape in the encoding asked: sent as received.
    assert_eq!(r.body["data"][0]["embedding"], json!([0.75, -0.5]));
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5, "completion_tokens": 0})
    );
    assert_eq!(r.body["id"], "e1");

    // Cohere v2: texts as documents, floats asked; base64 made by the gateway.
    let r = embed(
        &app,
        &key,
        json!({"model": "co", "input": ["first", "second"], "encoding_format": "base64"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = cohere.last();
    assert_eq!(sent.path, "/v2/embed");
    assert_eq!(sent.header("authorization"), Some(bearer.as_str()));
    assert_eq!(
        sent.json(),
        json!({"model": "embed-v4.0", "texts": ["first", "second"],
               "input_type": "search_document", "embedding_types": ["float"]})
    );
    assert_eq!(r.body["object"], "list");
    assert_eq!(r.body["model"], "embed-v4.0");
    let data = r.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(
        unb64(data[0]["embedding"].as_str().unwrap()),
        vec![0.25, 0.5]
    );
    assert_eq!(
        unb64(data[1]["embedding"].as_str().unwrap()),
        vec![-1.0, 1.5]
    );
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 6, "total_tokens": 6})
    );
    // Token ids cannot go to Cohere: 400 naming `input`, nothing sent.
    let r = embed(&app, &key, json!({"model": "co", "input": [1, 2, 3]})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["param"], "input");
    assert_eq!(cohere.received().len(), 1);

    // Ollama: /api/embed, usage from prompt_eval_count.
    let r = embed(&app, &key, json!({"model": "oll", "input": "hello there"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let sent = ollama.last();
    assert_eq!(sent.path, "/api/embed");
    assert_eq!(
        sent.json(),
        json!({"model": "nomic-embed-text", "input": ["hello there"]})
    );
    assert_eq!(r.body["model"], "nomic-embed-text:latest");
    assert_eq!(r.body["data"][0]["embedding"], json!([0.1, 0.2, 0.3]));
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 9, "total_tokens": 9})
    );
    // An Ollama that counts nothing: the input estimated (4 characters a token, rounded up).
    ollama.set(Behaviour::json(
        200,
        json!({"model": "nomic-embed-text", "embeddings": [[0.5], [0.25]]}),
    ));
    let r = embed(
        &app,
        &key,
        json!({"model": "oll", "input": ["12345678", "123456789"]}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["usage"],
        json!({"prompt_tokens": 5, "total_tokens": 5})
    );

    let rows = usage_by_route(&app, 6).await;
    assert_cost(row(&rows, "mis"), 5);
    assert_cost(row(&rows, "co"), 6);
    assert_eq!(row(&rows, "co")["errors"], 1, "the refused token ids");
    assert_cost(row(&rows, "oll"), 9 + 5);
}

#[actix_web::test]
async fn wrong_requests_are_refused_before_anything_is_sent() {
    let app = crate::support::spawn_app().await;
    let mock = MockUpstream::start(Behaviour::json(200, openai_floats(&[&[0.5]], 1))).await;
    openai_route(&app, &mock).await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;
    let cases = [
        (
            "/v1/chat/completions",
            json!({"model": "emb", "messages": [{"role": "user", "content": "x"}]}),
            "model",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "stream": true}),
            "stream",
        ),
        ("/v1/embeddings", json!({"model": "emb"}), "input"),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": []}),
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "encoding_format": "int8"}),
            "encoding_format",
        ),
        (
            "/v1/embeddings",
            json!({"model": "emb", "input": "x", "dimensions": 0}),
            "dimensions",
        ),
    ];
    for (path, body, param) in cases {
        let r = chat(&app, path, &key, body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text);
        assert_eq!(r.body["error"]["param"], param, "{path} {body}: {}", r.text);
    }
    let r = embed(
        &app,
        &key,
        json!({"model": "emb", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("not compatible with [llm/v1/embeddings]"),
        "{}",
        r.text
    );
    let r = embed(&app, &key, json!({"model": "nope", "input": "x"})).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(mock.received().is_empty(), "{:?}", mock.received());
}

#[actix_web::test]
async fn the_admin_api_refuses_embeddings_on_providers_without_them() {
    let app = crate::support::spawn_app().await;
    acme_with_credential(&app, "k").await;
    for (name, provider, options) in [
        (
            "claude",
            "anthropic",
            json!({"anthropic_version": "2023-06-01"}),
        ),
        ("tgi", "llama2", json!({"llama2_format": "raw"})),
    ] {
        let r = app
            .post(
                "/services",
                json!({"name": name, "provider": provider, "credential": "k",
                       "upstream_url": "https://203.0.113.7/v1/x", "options": options}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let r = app
            .post(
                "/routes",
                json!({"name": name, "model_alias": name, "service": name,
                       "route_type": "llm/v1/embeddings", "model": {"name": "m"}}),
            )
            .await;
        crate::support::admin::expect_refused_by_rule(&r, &["route_type"]);
        let message = crate::support::admin::field_message(&r, "route_type");
        assert!(message.contains("has no embeddings API"), "{message}");
    }
    // A streaming-only embeddings route cannot exist.
    let r = app
        .post(
            "/services",
            json!({"name": "oa", "provider": "openai", "credential": "k"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "emb", "model_alias": "emb", "service": "oa",
                   "route_type": "llm/v1/embeddings", "response_streaming": "always"}),
        )
        .await;
    crate::support::admin::expect_refused_by_rule(&r, &["response_streaming"]);
    // A service under an embeddings route keeps a provider that has them.
    let r = app
        .post(
            "/routes",
            json!({"name": "emb", "model_alias": "emb", "service": "oa",
                   "route_type": "llm/v1/embeddings"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .put(
            "/services/oa",
            json!({"name": "oa", "provider": "anthropic", "credential": "k",
                   "options": {"anthropic_version": "2023-06-01"}}),
        )
        .await;
    crate::support::admin::expect_invalid(&r, &["provider"]);
    assert!(
        crate::support::admin::field_message(&r, "provider").contains("emb"),
        "{}",
        r.text
    );
    // The route type is in the OpenAPI document.
    let doc = app.get("/openapi.json").await;
    assert!(doc.text.contains("llm/v1/embeddings"));
}

#[actix_web::test]
async fn limits_count_no_completion_and_only_the_guard_applies() {
    let app = crate::support::spawn_app().await;
    let mock = MockUpstream::start(Behaviour::json(200, openai_floats(&[&[0.5]], 2))).await;
    openai_route(&app, &mock).await;
    // 100 tokens a minute: a chat request would reserve the default max_tokens (4096) and
    // be refused; an embedding reserves its prompt only.
    let r = app
        .patch("/routes/emb", json!({"limits": {"tokens_per_minute": 100}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = new_key(&app, "acme", json!({"name": "app"})).await;
    // A decorator and a request transformer on the tenant do not touch embeddings; the
    // guard reads their input.
    for body in [
        json!({"name": "deco", "type": "ai-prompt-decorator", "tenant": "acme",
               "config": {"prompts": {"prepend": [{"content": "You are ACME's assistant."}]}}}),
        json!({"name": "grd", "type": "ai-prompt-guard", "tenant": "acme",
               "config": {"deny_patterns": ["(?i)secret plan"]}}),
        json!({"name": "rt", "type": "ai-request-transformer", "tenant": "acme",
               "config": {"prompt": "Rewrite.", "llm": {"route_type": "llm/v1/chat",
                          "service": "emb", "model": {"name": "gpt-4o-mini"}}}}),
    ] {
        let r = app.post("/policies", body).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    for _ in 0..3 {
        let r = embed(&app, &key, json!({"model": "emb", "input": ["hello"]})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(mock.last().json()["input"], json!(["hello"]));
    }
    let r = embed(
        &app,
        &key,
        json!({"model": "emb", "input": ["ok", "the SECRET PLAN"]}),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(mock.received().len(), 3);
}

#[actix_web::test]
async fn the_request_span_names_the_embeddings_operation() {
    let receiver = crate::support::otlp::start_receiver();
    let otlp = receiver.url.clone();
    let app = crate::support::spawn_app_with(move |s| {
        s.otel_exporter_otlp_endpoint = Some(otlp);
        s.otel_metric_export_interval = Some("600000".into());
    })
    .await;
    let mock = MockUpstream::start(Behaviour::json(200, openai_floats(&[&[0.5]], 2))).await;
    openai_route(&app, &mock).await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;
    let r = embed(&app, &key, json!({"model": "emb", "input": "hello"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    app.shut_down().await;
    let received = receiver.received.lock().unwrap();
    let spans = crate::support::otlp::all_spans(&received);
    let span = spans
        .iter()
        .find(|s| {
            s.name == "embeddings text-embedding-3-small"
                && s.kind == opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
        })
        .unwrap_or_else(|| {
            panic!(
                "no embeddings span: {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        });
    let attr = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .map(|v| format!("{:?}", v.value))
            .unwrap_or_default()
    };
    assert!(
        attr("gen_ai.operation.name").contains("\"embeddings\""),
        "{span:?}"
    );
    assert!(attr("gen_ai.usage.input_tokens").contains('2'), "{span:?}");
}

/// Kong's embeddings answer (`openai/llm-v1-embeddings/responses/good.json`, from its
/// `preserve` test) through a translated `llm/v1/embeddings` route: floats unchanged, and in
/// base64 exactly the float32 values.
#[actix_web::test]
#[ignore = "needs TOLLGATE_KONG_FIXTURES (Kong's ai-proxy fixtures; .ci/run sets it)"]
async fn kongs_openai_embeddings_fixture_passes_through_in_both_encodings() {
    let fixtures = Fixtures::from_env();
    let good = fixtures.json("openai/llm-v1-embeddings/responses/good.json");
    let app = crate::support::spawn_app().await;
    let mock = MockUpstream::start(Behaviour::json(200, good.clone())).await;
    embeddings_route(
        &app,
        "emb",
        "openai",
        &format!("{}/llm/v1/embeddings/good", mock.base),
        json!({}),
        "text-embedding-3-large",
    )
    .await;
    let key = new_key(&app, "acme", json!({"name": "app"})).await;
    let ask = json!({"model": "emb", "input": "The food was delicious and the waiter...",
                     "encoding_format": "float"});
    let r = embed(&app, &key, ask.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"], good["data"]);
    assert_eq!(r.body["model"], "text-embedding-3-large");
    assert_eq!(r.body["usage"], good["usage"]);
    // Asked for base64, the mock still answers floats (as an upstream ignoring the field
    // would): the gateway encodes them.
    let mut ask = ask;
    ask["encoding_format"] = json!("base64");
    let r = embed(&app, &key, ask).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let floats: Vec<f32> = good["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert!(floats.len() > 100);
    assert_eq!(
        unb64(r.body["data"][0]["embedding"].as_str().expect("base64")),
        floats
    );
    let rows = usage_by_route(&app, 2).await;
    assert_cost(row(&rows, "emb"), 8);
}
