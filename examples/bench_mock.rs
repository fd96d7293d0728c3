//! The benchmark's mock LLM provider (`bench/run`): a fast loopback upstream that answers
//! every request with one fixed body, so the benchmark measures the proxy, not the mock.
//!
//! - `POST /v1/chat/completions`: an OpenAI `chat.completion`.
//! - `POST /v1/messages`: an Anthropic Messages response.
//! - anything else: 404.
//!
//! Usage: `bench_mock PORT [WORKERS]` (binds 127.0.0.1 only; 1 worker by default, so the
//! mock leaves the other core to the proxy and the load generator).
//!
//! The request body is read and discarded (so keep-alive connections stay in sync); the
//! answer is a `&'static` body: no JSON work and no allocation beyond actix-web's own.
//! A cargo example rather than a `[[bin]]`: the crate stays one package with one shipped
//! binary, and `cargo build --release --example bench_mock` builds it with the crate's
//! dependencies and no extra feature flag.

use actix_web::http::header::ContentType;
use actix_web::{App, HttpResponse, HttpServer, web};

const OPENAI_CHAT: &[u8] = br#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"total_tokens":21}}"#;

const ANTHROPIC_MESSAGES: &[u8] = br#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-3-5-sonnet-20241022","content":[{"type":"text","text":"Hello! How can I help you today?"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":9}}"#;

async fn openai_chat(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(OPENAI_CHAT)
}

async fn anthropic_messages(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(ContentType::json())
        .body(ANTHROPIC_MESSAGES)
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
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route("/v1/chat/completions", web::post().to(openai_chat))
                .route("/v1/messages", web::post().to(anthropic_messages))
        })
        .workers(workers)
        .backlog(1024)
        .bind(("127.0.0.1", port))?
        .run();
        eprintln!("bench_mock listening on 127.0.0.1:{port} ({workers} worker(s))");
        server.await
    })
}
