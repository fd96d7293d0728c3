//! `tollgate mock-upstream`: a small OpenAI-compatible provider on a local port, so that a
//! first session (README, "A first session") needs no provider account. It answers
//! `POST …/chat/completions` (whole, or streamed as OpenAI's server-sent events, with the
//! usage chunk when `stream_options.include_usage` asks for it) and `GET …/models`.
//!
//! The answer is deterministic: a fixed sentence quoting the last user message, and usage
//! counted in whitespace-separated words (the prompt's words for `prompt_tokens`, the
//! answer's for `completion_tokens`), so a script or a test can check the numbers the
//! gateway records. Any `Authorization` is accepted; nothing is stored. It is a
//! demonstration and test aid, not a provider simulator: no other endpoint, no errors
//! beyond a 400 for a body without `messages`.
//!
//! Imports nothing of the crate (docs/architecture.md, "Module map").

use std::net::SocketAddr;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// The model named in answers when the request names none.
pub const DEFAULT_MODEL: &str = "mock-model";

/// Binds `listen` and returns the bound address and the server (to be awaited).
pub fn bind(listen: &str) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let listener = std::net::TcpListener::bind(listen)?;
    let addr = listener.local_addr()?;
    let server = HttpServer::new(|| {
        App::new()
            .app_data(web::JsonConfig::default().limit(4 * 1024 * 1024))
            .default_service(web::to(answer))
    })
    .workers(1)
    .listen(listener)?
    .run();
    Ok((addr, server))
}

async fn answer(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = req.path().trim_end_matches('/');
    if req.method() == actix_web::http::Method::GET && path.ends_with("/models") {
        return HttpResponse::Ok().json(json!({
            "object": "list",
            "data": [{"id": DEFAULT_MODEL, "object": "model", "created": 0,
                      "owned_by": "tollgate-mock"}]
        }));
    }
    if req.method() != actix_web::http::Method::POST || !path.ends_with("/chat/completions") {
        return error(
            404,
            "not_found",
            "the mock upstream answers POST /v1/chat/completions and GET /v1/models only",
        );
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, "invalid_json", &format!("the body is not JSON: {e}")),
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return error(400, "invalid_request", "`messages` must be an array");
    };
    let completion = Completion::of(&request, messages);
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        HttpResponse::Ok()
            .content_type("text/event-stream")
            .body(completion.sse(usage))
    } else {
        HttpResponse::Ok().json(completion.whole())
    }
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status).json(json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null,
                  "code": code}
    }))
}

/// The one answer to a chat request.
struct Completion {
    id: String,
    model: String,
    text: String,
    prompt_tokens: usize,
    completion_tokens: usize,
}

impl Completion {
    fn of(request: &Value, messages: &[Value]) -> Completion {
        let model = request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_MODEL)
            .to_string();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(content_text)
            .unwrap_or_default();
        let text = format!("Hello from Tollgate's mock upstream! You said: {last_user}");
        let prompt_tokens = messages.iter().map(|m| words(&content_text(m))).sum();
        let completion_tokens = words(&text);
        Completion {
            // Deterministic as well: the same request gets the same id.
            id: format!("chatcmpl-mock-{prompt_tokens}-{completion_tokens}"),
            model,
            text,
            prompt_tokens,
            completion_tokens,
        }
    }

    fn usage(&self) -> Value {
        json!({"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
               "total_tokens": self.prompt_tokens + self.completion_tokens})
    }

    fn whole(&self) -> Value {
        json!({
            "id": self.id, "object": "chat.completion", "created": CREATED, "model": self.model,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null,
                         "message": {"role": "assistant", "content": self.text}}],
            "usage": self.usage()
        })
    }

    /// OpenAI's stream: a role chunk, the text a few words per chunk, the finish chunk, the
    /// usage chunk (`choices: []`) when asked for, then `[DONE]`.
    fn sse(&self, include_usage: bool) -> String {
        let chunk = |choices: Value, usage: Value| {
            let mut c = json!({"id": self.id, "object": "chat.completion.chunk",
                               "created": CREATED, "model": self.model, "choices": choices});
            if include_usage {
                c["usage"] = usage;
            }
            format!("data: {c}\n\n")
        };
        let delta = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}]);
        let mut out = chunk(
            delta(json!({"role": "assistant", "content": ""}), Value::Null),
            Value::Null,
        );
        let pieces: Vec<&str> = self.text.split_inclusive(' ').collect();
        for piece in pieces.chunks(3) {
            out.push_str(&chunk(
                delta(json!({"content": piece.concat()}), Value::Null),
                Value::Null,
            ));
        }
        out.push_str(&chunk(delta(json!({}), json!("stop")), Value::Null));
        if include_usage {
            out.push_str(&chunk(json!([]), self.usage()));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// A fixed `created` (2026-01-01T00:00:00Z): the answer is the same on every run.
const CREATED: i64 = 1_767_225_600;

/// A message's text: a string `content`, or the `text` parts of an array of parts.
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn words(text: &str) -> usize {
    text.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: bool) -> Value {
        json!({"model": "gpt", "stream": stream, "stream_options": {"include_usage": true},
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]}]})
    }

    #[test]
    fn the_whole_answer_quotes_the_last_user_message_and_counts_words() {
        let r = request(false);
        let c = Completion::of(&r, r["messages"].as_array().unwrap());
        let whole = c.whole();
        assert_eq!(
            whole["choices"][0]["message"]["content"],
            "Hello from Tollgate's mock upstream! You said: Hello there"
        );
        assert_eq!(
            whole["usage"],
            json!({"prompt_tokens": 4, "completion_tokens": 9, "total_tokens": 13})
        );
        assert_eq!(whole["model"], "gpt");
    }

    #[test]
    fn the_stream_carries_the_same_text_then_usage_then_done() {
        let r = request(true);
        let c = Completion::of(&r, r["messages"].as_array().unwrap());
        let sse = c.sse(true);
        assert!(sse.ends_with("data: [DONE]\n\n"), "{sse}");
        let chunks: Vec<Value> = sse
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let text: String = chunks
            .iter()
            .filter_map(|c| {
                c.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert_eq!(text, c.text);
        let last = chunks.last().unwrap();
        assert_eq!(last["choices"], json!([]));
        assert_eq!(last["usage"], c.usage());
        assert!(c.sse(false).find("\"usage\"").is_none());
    }
}
