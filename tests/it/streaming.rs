//! Streaming through the real listener (spec §4.5): transcoding, the usage chunk, and the
//! accounting of every way a stream can end — normally, with an in-band upstream error,
//! an upstream reset, an upstream gone silent, or a client that walks away.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::proxy::{configure_openai, new_key};
use crate::support::{TestApp, spawn_app_with};

/// A client's view of one streamed response.
pub struct Streamed {
    pub status: u16,
    pub content_type: String,
    pub raw: String,
    /// Each `data:` payload, parsed (`[DONE]` as the string "[DONE]").
    pub frames: Vec<Value>,
}

impl Streamed {
    pub fn text(&self) -> String {
        self.frames
            .iter()
            .filter_map(|f| {
                f.pointer("/choices/0/delta/content")
                    .or_else(|| f.pointer("/choices/0/text"))
                    .and_then(Value::as_str)
            })
            .collect()
    }

    pub fn usage_chunks(&self) -> Vec<&Value> {
        self.frames
            .iter()
            .filter(|f| f.get("usage").is_some())
            .collect()
    }

    pub fn ends_with_done(&self) -> bool {
        self.raw.ends_with("data: [DONE]\n\n")
    }

    /// The non-null `finish_reason`s of choice 0, in order.
    pub fn finish_reasons(&self) -> Vec<&str> {
        self.frames
            .iter()
            .filter_map(|f| {
                f.pointer("/choices/0/finish_reason")
                    .and_then(Value::as_str)
            })
            .collect()
    }

    /// The streamed tool calls of choice 0, assembled the way an SDK does: by `index`; the
    /// first fragment of a call brings `id`, `type` and `function.name`, every fragment may
    /// extend `function.arguments`. Panics on a fragment without `index` or a call whose
    /// first fragment lacks its id or name. Returns `{index, id, name, arguments}` in index
    /// order.
    pub fn tool_calls(&self) -> Vec<Value> {
        let mut calls: std::collections::BTreeMap<u64, Value> = Default::default();
        for frame in &self.frames {
            let Some(deltas) = frame
                .pointer("/choices/0/delta/tool_calls")
                .and_then(Value::as_array)
            else {
                continue;
            };
            for d in deltas {
                let index = d["index"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("tool call fragment without index: {d}"));
                let fragment = d
                    .pointer("/function/arguments")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match calls.get_mut(&index) {
                    Some(call) => {
                        assert!(
                            d.get("id").is_none_or(|id| id == &call["id"]),
                            "a later fragment of call {index} changes its id: {d}"
                        );
                        let args = call["arguments"].as_str().unwrap().to_string() + fragment;
                        call["arguments"] = Value::from(args);
                    }
                    None => {
                        let id = d["id"].as_str().filter(|s| !s.is_empty());
                        let name = d.pointer("/function/name").and_then(Value::as_str);
                        assert_eq!(d["type"], "function", "first fragment's type: {d}");
                        calls.insert(
                            index,
                            json!({"index": index,
                                   "id": id.unwrap_or_else(|| panic!("first fragment without id: {d}")),
                                   "name": name.unwrap_or_else(|| panic!("first fragment without name: {d}")),
                                   "arguments": fragment}),
                        );
                    }
                }
            }
        }
        calls.into_values().collect()
    }
}

pub fn parse_frames(raw: &str) -> Vec<Value> {
    raw.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let data = f
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data frame: {f:?}"));
            if data == "[DONE]" {
                Value::String("[DONE]".into())
            } else {
                serde_json::from_str(data).unwrap_or_else(|e| panic!("frame {data:?}: {e}"))
            }
        })
        .collect()
}

pub async fn stream(app: &TestApp, path: &str, key: &str, body: Value) -> Streamed {
    let mut resp = app
        .client
        .post(format!("{}{path}", app.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .timeout(Duration::from_secs(30))
        .send_json(&body)
        .await
        .expect("proxy request");
    let bytes = resp.body().limit(64 * 1024 * 1024).await.expect("body");
    let raw = String::from_utf8(bytes.to_vec()).expect("utf-8");
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let frames = if content_type.starts_with("text/event-stream") {
        parse_frames(&raw)
    } else {
        vec![serde_json::from_str(&raw).unwrap_or(Value::Null)]
    };
    Streamed {
        status: resp.status().as_u16(),
        content_type,
        raw,
        frames,
    }
}

/// SSE frames of an OpenAI stream: role, the words, finish, and (if `usage`) the usage chunk.
pub fn openai_sse(words: &[&str], usage: Option<(u64, u64)>) -> Vec<Vec<u8>> {
    let chunk = |choices: Value, usage: Option<Value>| {
        let mut c = json!({"id": "chatcmpl-up", "object": "chat.completion.chunk",
                           "created": 1_700_000_000, "model": "gpt-4o-2024-08-06",
                           "choices": choices});
        if let Some(u) = usage {
            c["usage"] = u;
        }
        format!("data: {c}\n\n").into_bytes()
    };
    let mut frames = vec![chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        None,
    )];
    for w in words {
        frames.push(chunk(
            json!([{"index": 0, "delta": {"content": w}, "finish_reason": null}]),
            None,
        ));
    }
    frames.push(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
        None,
    ));
    if let Some((p, c)) = usage {
        frames.push(chunk(
            json!([]),
            Some(json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})),
        ));
    }
    frames.push(b"data: [DONE]\n\n".to_vec());
    frames
}

/// Anthropic's named-event stream for `words`, with its usage numbers.
pub fn anthropic_sse(words: &[&str], input_tokens: u64, output_tokens: u64) -> Vec<Vec<u8>> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n").into_bytes();
    let mut frames = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_01", "type": "message",
                   "role": "assistant", "model": "claude-3-5-haiku-20241022", "content": [],
                   "stop_reason": null, "stop_sequence": null,
                   "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for w in words {
        frames.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    frames.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    frames.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": output_tokens}}),
    ));
    frames.push(event("message_stop", json!({"type": "message_stop"})));
    frames
}

pub fn sse(frames: Vec<Vec<u8>>, gap_ms: u64, tail: Tail) -> Behaviour {
    Behaviour::Stream {
        content_type: "text/event-stream",
        frames,
        gap: Duration::from_millis(gap_ms),
        tail,
    }
}

/// Re-cuts a stream's bytes into pieces of `size` bytes, so frames straddle reads.
pub fn recut(frames: Vec<Vec<u8>>, size: usize) -> Vec<Vec<u8>> {
    frames.concat().chunks(size).map(<[u8]>::to_vec).collect()
}

/// The analytics lines written so far (waits for at least `n`).
pub async fn analytics_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..150 {
        lines = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("analytics line is JSON"))
            .collect();
        if lines.len() >= n {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    lines
}

pub async fn app_with_log() -> (TestApp, std::path::PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("analytics.log");
    let log_path = log.display().to_string();
    let app = spawn_app_with(|s| s.analytics_log = log_path).await;
    (app, log, dir)
}

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
