//! A streaming client for the proxy listener and the upstream streams tests feed it:
//! OpenAI and Anthropic SSE frames, re-cut bytes, and the analytics lines they leave.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, Tail};
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
