//! Streaming through the real listener (docs/behaviour.md, "Streaming rules"): transcoding, the
//! usage chunk, and the accounting of every way a stream can end — normally, with an in-band
//! upstream error, an upstream reset, an upstream gone silent, or a client that walks away.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{configure_openai, new_key};
use crate::support::streaming::{
    analytics_lines, anthropic_sse, app_with_log, openai_sse, recut, sse, stream,
};

fn ask(stream_options: Option<Value>) -> Value {
    let mut body = json!({"messages": [{"role": "user", "content": "Say hello"}], "stream": true});
    if let Some(o) = stream_options {
        body["stream_options"] = o;
    }
    body
}

#[actix_web::test]
async fn an_openai_stream_is_relayed_with_one_usage_chunk_only_when_asked() {
    let words = ["Hel", "lo", " wor", "ld", " — ünï"];
    // 7-byte pieces: every frame straddles network reads.
    let mock = MockUpstream::start(sse(
        recut(openai_sse(&words, Some((12, 5))), 7),
        0,
        Tail::End,
    ))
    .await;
    let (app, log, _dir) = app_with_log().await;
    let key = configure_openai(&app, &mock, json!({})).await;

    let s = stream(
        &app,
        "/openai/chat",
        &key,
        ask(Some(json!({"include_usage": true}))),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.raw);
    assert_eq!(s.content_type, "text/event-stream");
    assert_eq!(s.text(), words.concat());
    assert!(s.ends_with_done(), "{}", s.raw);
    let usage = s.usage_chunks();
    assert_eq!(usage.len(), 1, "{}", s.raw);
    assert_eq!(usage[0]["choices"], json!([]));
    assert_eq!(
        usage[0]["usage"],
        json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
    );
    for f in &s.frames[..s.frames.len() - 1] {
        for field in ["id", "object", "created", "model", "choices"] {
            assert!(f.get(field).is_some(), "chunk without {field}: {f}");
        }
    }
    // The gateway asked the upstream for usage itself.
    let sent = mock.last().json();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["stream_options"]["include_usage"], true);

    // Without include_usage the client gets no usage chunk; the usage is recorded anyway.
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert_eq!(s.status, 200, "{}", s.raw);
    assert!(s.usage_chunks().is_empty(), "{}", s.raw);
    assert!(s.ends_with_done());
    assert_eq!(mock.last().json()["stream_options"]["include_usage"], true);

    let lines = analytics_lines(&log, 2).await;
    assert_eq!(lines.len(), 2, "one line per stream: {lines:?}");
    for line in &lines {
        let usage = &line["ai"]["proxy"]["usage"];
        assert_eq!(usage["prompt_tokens"], 12);
        assert_eq!(usage["completion_tokens"], 5);
        assert_eq!(line["tollgate"]["stream"], true);
        assert_eq!(line["tollgate"]["stream_end"], "done");
        assert_eq!(line["tollgate"]["usage_estimated"], false);
        assert_eq!(
            line["ai"]["proxy"]["meta"]["response_model"],
            "gpt-4o-2024-08-06"
        );
    }
}

#[actix_web::test]
async fn a_client_that_walks_away_cancels_the_upstream_and_is_billed_for_what_it_got() {
    let words: Vec<String> = (0..60).map(|i| format!("w{i:02} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(sse(anthropic_sse(&words, 321, 999), 50, Tail::End)).await;
    let (app, log, _dir) = app_with_log().await;
    let r = app.post("/tenants", json!({"name": "acme"})).await;
    assert_eq!(r.status, 201);
    let r = app
        .post(
            "/services",
            json!({"name": "claude", "provider": "anthropic",
                   "upstream_url": format!("{}/v1/messages", mock.base),
                   "options": {"anthropic_version": "2023-06-01"},
                   "timeouts": {"connect_ms": 1000, "read_ms": 5000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "claude", "paths": ["/claude"], "model_alias": "claude",
                   "service": "claude", "route_type": "llm/v1/chat",
                   "model": {"name": "claude-3-5-haiku"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = new_key(&app, "acme", json!({"name": "app"})).await;

    let mut resp = app
        .client
        .post(format!("{}/v1/chat/completions", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"model": "claude", "stream": true,
                           "messages": [{"role": "user", "content": "count"}]}))
        .await
        .expect("stream starts");
    assert_eq!(resp.status(), 200);
    let mut got = String::new();
    while got.matches("\"content\":\"w").count() < 3 {
        let piece = resp.next().await.expect("more").expect("bytes");
        got.push_str(&String::from_utf8_lossy(&piece));
    }
    drop(resp);
    let walked_away = Instant::now();

    let mut records = Vec::new();
    for _ in 0..100 {
        records = mock.streams();
        if !records.is_empty() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(records.len(), 1, "the upstream stream was not cancelled");
    let record = records[0];
    assert!(
        !record.completed,
        "the upstream finished instead of being cancelled"
    );
    let lag = record.dropped_at.saturating_duration_since(walked_away);
    assert!(
        lag < Duration::from_secs(1),
        "upstream closed {lag:?} after the client left"
    );
    assert!(record.frames_sent < 20, "{record:?}");

    let lines = analytics_lines(&log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["tollgate"]["stream_end"], "client_disconnected");
    let usage = &line["ai"]["proxy"]["usage"];
    // Prompt tokens from the provider's first event, exactly.
    assert_eq!(usage["prompt_tokens"], 321);
    // Completion: what was streamed before the cancel (4-character words → 1 token each,
    // at least the 3 the client saw, never the 999 the full answer would have cost).
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(
        (3..20).contains(&completion),
        "completion tokens {completion}"
    );
    assert_eq!(line["tollgate"]["usage_estimated"], true);
}

#[actix_web::test]
async fn upstream_failures_mid_stream_become_an_in_band_error_and_are_accounted() {
    let (app, log, _dir) = app_with_log().await;
    let mock = MockUpstream::start(Behaviour::Hang).await;
    let key = configure_openai(&app, &mock, json!({})).await;
    // read_ms is 2000 in configure_openai: the idle timeout between two events.

    // 1. The provider reports an error in-band.
    let mut frames = openai_sse(&["partial"], None);
    frames.truncate(2);
    frames.push(
        b"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n"
            .to_vec(),
    );
    mock.set(sse(frames.clone(), 0, Tail::End));
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.text(), "partial");
    let last = s.frames.last().unwrap();
    assert_eq!(
        last["error"]["message"], "The server had an error",
        "{}",
        s.raw
    );
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!s.ends_with_done());

    // 2. The connection is reset mid-stream.
    mock.set(sse(frames[..2].to_vec(), 0, Tail::Reset));
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert_eq!(s.text(), "partial");
    let last = s.frames.last().unwrap();
    assert_eq!(last["error"]["type"], "upstream_error", "{:?}", s.raw);
    assert!(!s.ends_with_done());

    // 3. The upstream goes silent: cut after the idle timeout.
    mock.set(sse(frames[..2].to_vec(), 0, Tail::Hang));
    let started = Instant::now();
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    let took = started.elapsed();
    assert_eq!(s.text(), "partial");
    assert_eq!(
        s.frames.last().unwrap()["error"]["code"],
        "upstream_idle_timeout",
        "{}",
        s.raw
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // 4. The stream ends without a finish reason or [DONE].
    mock.set(sse(frames[..2].to_vec(), 0, Tail::End));
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert_eq!(s.text(), "partial");
    assert!(
        s.frames.last().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("before it was complete"),
        "{}",
        s.raw
    );

    // 5. A line that never ends is an error, not unbounded memory.
    mock.set(sse(vec![vec![b'x'; 3 * 1024 * 1024]], 0, Tail::End));
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert!(
        s.frames.last().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{}",
        &s.raw[..s.raw.len().min(300)]
    );

    let lines = analytics_lines(&log, 5).await;
    assert_eq!(lines.len(), 5, "one line per stream: {lines:?}");
    for line in &lines {
        assert_eq!(line["tollgate"]["stream_end"], "failed", "{line}");
    }
    // The worker keeps serving.
    mock.set(sse(openai_sse(&["ok"], Some((1, 1))), 0, Tail::End));
    assert_eq!(
        stream(&app, "/openai/chat", &key, ask(None)).await.text(),
        "ok"
    );
}

#[actix_web::test]
async fn response_streaming_always_forces_a_stream_and_errors_stay_json() {
    let (app, _log, _dir) = app_with_log().await;
    let mock = MockUpstream::start(sse(openai_sse(&["forced"], Some((2, 1))), 0, Tail::End)).await;
    let key = configure_openai(&app, &mock, json!({"response_streaming": "always"})).await;
    let s = stream(
        &app,
        "/openai/chat",
        &key,
        json!({"messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s.content_type, "text/event-stream");
    assert_eq!(s.text(), "forced");
    assert_eq!(mock.last().json()["stream"], true);

    // A non-2xx answer to a streaming request is an ordinary JSON error with its status.
    mock.set(Behaviour::json(
        429,
        json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
    ));
    let s = stream(&app, "/openai/chat", &key, ask(None)).await;
    assert_eq!(s.status, 429, "{}", s.raw);
    assert!(
        s.content_type.starts_with("application/json"),
        "{}",
        s.content_type
    );
    assert_eq!(s.frames[0]["error"]["message"], "Rate limit reached");
}
