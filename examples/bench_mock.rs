//! The benchmark's mock LLM provider (`bench/run`): a fast loopback upstream that answers
//! every request with one fixed body, so the benchmark measures the proxy, not the mock.
//!
//! - `POST /v1/chat/completions`: an OpenAI `chat.completion`.
//! - `POST /v1/messages`: an Anthropic Messages response.
//! - anything else: 404.
//!
//! When the request body has `"stream": true`, both paths answer with a server-sent event
//! stream instead (`Content-Type: text/event-stream`, chunked transfer encoding, one chunk
//! per event, each flushed on its own):
//!
//! - `/v1/chat/completions`: OpenAI `chat.completion.chunk` events — a role chunk, 20
//!   content chunks of one word each, the finish chunk (`finish_reason: "stop"`), the usage
//!   chunk (`choices: []`; always sent, as if `stream_options.include_usage` were set, which
//!   the gateway always asks for), then `data: [DONE]` — 24 events.
//! - `/v1/messages`: Anthropic named events — `message_start` (with input usage),
//!   `content_block_start`, 20 `content_block_delta`/`text_delta`, `content_block_stop`,
//!   `message_delta` (`stop_reason: "end_turn"`, `output_tokens`), `message_stop` — 25
//!   events.
//!
//! The first event is sent at once; the next ones `TOLLGATE_BENCH_STREAM_GAP_MS`
//! milliseconds apart (default 2; 0 sends them back to back), on a fixed schedule from the
//! first, so timer lateness does not accumulate.
//!
//! Usage: `bench_mock PORT [WORKERS]` (binds 127.0.0.1 only; 1 worker by default, so the
//! mock leaves the other core to the proxy and the load generator).
//!
//! The request body is read and discarded (so keep-alive connections stay in sync) after a
//! byte scan for `"stream": true`; the non-streaming answer is a `&'static` body: no JSON
//! work and no allocation beyond actix-web's own. The stream events are built once, at
//! start-up; a stream hands out reference-counted copies of them.
//! A cargo example rather than a `[[bin]]`: the crate stays one package with one shipped
//! binary, and `cargo build --release --example bench_mock` builds it with the crate's
//! dependencies and no extra feature flag.

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;

const OPENAI_CHAT: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;

const ANTHROPIC_MESSAGES: &[u8] = br#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9}}"#;

/// The streamed answer's text, one word per content event (20 events).
const STREAM_WORDS: [&str; 20] = [
    "Hello!",
    " This",
    " is",
    " a",
    " streamed",
    " answer",
    " from",
    " the",
    " benchmark's",
    " mock",
    " upstream,",
    " one",
    " word",
    " per",
    " event,",
    " a",
    " few",
    " milliseconds",
    " apart.",
    " Bye!",
];

/// The OpenAI `chat.completion.chunk` stream (§0.3 of the provider reference), as SSE.
static OPENAI_STREAM: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
    let head = r#"{"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o-2024-08-06","system_fingerprint":null,"choices":"#;
    let chunk = |choices: &str, usage: &str| {
        Bytes::from(format!("data: {head}{choices},\"usage\":{usage}}}\n\n"))
    };
    let mut events = vec![chunk(
        r#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
        "null",
    )];
    for word in STREAM_WORDS {
        let word = serde_json::to_string(word).expect("a string serialises");
        events.push(chunk(
            &format!(
                r#"[{{"index":0,"delta":{{"content":{word}}},"logprobs":null,"finish_reason":null}}]"#
            ),
            "null",
        ));
    }
    events.push(chunk(
        r#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#,
        "null",
    ));
    let completion = STREAM_WORDS.len();
    events.push(chunk(
        "[]",
        &format!(
            r#"{{"prompt_tokens":12,"completion_tokens":{completion},"total_tokens":{}}}"#,
            12 + completion
        ),
    ));
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    events
});

/// The Anthropic Messages stream (§3.4 of the provider reference): named SSE events.
static ANTHROPIC_STREAM: LazyLock<Vec<Bytes>> = LazyLock::new(|| {
    let event = |name: &str, data: &str| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let mut events = vec![
        event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_bench","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}"#,
        ),
        event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
    ];
    for word in STREAM_WORDS {
        let word = serde_json::to_string(word).expect("a string serialises");
        events.push(event(
            "content_block_delta",
            &format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":{word}}}}}"#
            ),
        ));
    }
    events.push(event(
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    ));
    events.push(event(
        "message_delta",
        &format!(
            r#"{{"type":"message_delta","delta":{{"stop_reason":"end_turn","stop_sequence":null}},"usage":{{"output_tokens":{}}}}}"#,
            STREAM_WORDS.len()
        ),
    ));
    events.push(event("message_stop", r#"{"type":"message_stop"}"#));
    events
});

/// The gap between two stream events (`TOLLGATE_BENCH_STREAM_GAP_MS`, default 2 ms).
static STREAM_GAP: LazyLock<Duration> = LazyLock::new(|| {
    let ms = match std::env::var("TOLLGATE_BENCH_STREAM_GAP_MS") {
        Err(_) => 2,
        Ok(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
            eprintln!("bench_mock: TOLLGATE_BENCH_STREAM_GAP_MS must be whole milliseconds");
            std::process::exit(2)
        }),
    };
    Duration::from_millis(ms)
});

/// Whether a JSON request body asks for a stream: `"stream"` followed (after optional
/// whitespace) by `:` and `true`. A byte scan, not a parse — the mock trusts its clients
/// (the gateway and the load generator), and the non-streaming path stays parse-free.
fn wants_stream(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"stream\"";
    let mut rest = body;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        rest = &rest[at + KEY.len()..];
        let after = rest.trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            return value.trim_ascii_start().starts_with(b"true");
        }
    }
    false
}

/// An SSE answer that sends `events` one per chunk: the first at once, then one every
/// `STREAM_GAP` after the first (a fixed schedule, so late timer wake-ups do not add up).
fn sse(events: &'static [Bytes]) -> HttpResponse {
    let gap = *STREAM_GAP;
    let start = actix_web::rt::time::Instant::now();
    let stream = futures::stream::unfold(0usize, move |i| async move {
        let event = events.get(i)?.clone();
        if i > 0 && !gap.is_zero() {
            actix_web::rt::time::sleep_until(start + gap * i as u32).await;
        }
        Some((Ok::<_, std::convert::Infallible>(event), i + 1))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .streaming(stream)
}

async fn openai_chat(body: web::Bytes) -> HttpResponse {
    if wants_stream(&body) {
        return sse(&OPENAI_STREAM);
    }
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(OPENAI_CHAT)
}

async fn anthropic_messages(body: web::Bytes) -> HttpResponse {
    if wants_stream(&body) {
        return sse(&ANTHROPIC_STREAM);
    }
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(ANTHROPIC_MESSAGES)
}

/// OTLP export requests received (the benchmark's telemetry-cost scenario points the
/// gateway's exporter here): traces, metrics.
static OTLP_TRACES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static OTLP_METRICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// An OTLP/HTTP receiver that accepts everything: an empty protobuf message is a valid
/// `Export*ServiceResponse` (full success).
fn otlp_ok() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .finish()
}

async fn otlp_traces(_body: web::Bytes) -> HttpResponse {
    OTLP_TRACES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    otlp_ok()
}

async fn otlp_metrics(_body: web::Bytes) -> HttpResponse {
    OTLP_METRICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    otlp_ok()
}

async fn otlp_count() -> HttpResponse {
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    HttpResponse::Ok().body(format!("{} {}", load(&OTLP_TRACES), load(&OTLP_METRICS)))
}

fn usage() -> ! {
    eprintln!("usage: bench_mock PORT [WORKERS]");
    std::process::exit(2)
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let workers: usize = match args.next() {
        None => 1,
        Some(w) => w.parse().ok().filter(|&w| w > 0).unwrap_or_else(|| usage()),
    };
    // Read the environment and build the streams before serving, not on the first stream.
    let gap = *STREAM_GAP;
    let events = (OPENAI_STREAM.len(), ANTHROPIC_STREAM.len());
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                // OTLP batches can be several hundred kB.
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/v1/chat/completions", web::post().to(openai_chat))
                .route("/v1/messages", web::post().to(anthropic_messages))
                .route("/v1/traces", web::post().to(otlp_traces))
                .route("/v1/metrics", web::post().to(otlp_metrics))
                .route("/otlp/count", web::get().to(otlp_count))
        })
        .workers(workers)
        .backlog(1024)
        // Each stream event is one small write: without TCP_NODELAY, Nagle holds every
        // event after the first until the client's (delayed, up to 40 ms) ACK, and the
        // events arrive in bursts. One-write answers are unaffected.
        .tcp_nodelay(true)
        .bind(("127.0.0.1", port))?
        .run();
        eprintln!(
            "bench_mock listening on 127.0.0.1:{port} ({workers} worker(s)); streams: {} OpenAI / {} Anthropic events, {} ms apart",
            events.0,
            events.1,
            gap.as_millis()
        );
        server.await
    })
}
