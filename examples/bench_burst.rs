//! The benchmark's connection burst (`bench/run`'s memory scenario).
//!
//! Opens `-c` connections to one URL at once and, on each, sends `--requests` OpenAI chat
//! requests one after another, reading every answer to its end; every `--stream-every`-th
//! connection asks for `"stream": true` instead. Each connection is held open until every
//! connection has finished its requests, so all of them are open at the same moment (the
//! burst's peak), then all are closed together.
//!
//! A request counts as an error on a connect/send/read failure, a status other than 200,
//! or (for a stream) a body without `data: [DONE]`. Prints one line for bench/run:
//!
//! `BENCH_BURST connections=… requests=… ok=… errors=… err_connect=… err_status=…
//!  err_body=… duration_us=…`
//!
//! and up to 3 error messages on stderr. One thread: the gateway is what is measured.
//!
//! Usage: `bench_burst [-c CONNS] [--requests N] [--stream-every N] [--model M]
//! [--key KEY] URL` (URL: `http://127.0.0.1:PORT/path`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Connection burst for bench/run's memory scenario")]
struct Args {
    /// Connections opened at once.
    #[arg(short = 'c', long, default_value_t = 5000)]
    connections: usize,
    /// Requests per connection, one after another.
    #[arg(long, default_value_t = 4)]
    requests: usize,
    /// Every N-th connection streams (`"stream": true`); 0 = none.
    #[arg(long, default_value_t = 5)]
    stream_every: usize,
    /// The `model` of the request body.
    #[arg(long, default_value = "gpt-4o")]
    model: String,
    /// Sent as `Authorization: Bearer KEY` when given.
    #[arg(long)]
    key: Option<String>,
    /// `http://HOST:PORT/PATH`.
    url: String,
}

#[derive(Default)]
struct Stats {
    ok: u64,
    err_connect: u64,
    err_status: u64,
    err_body: u64,
    messages: Vec<String>,
}

impl Stats {
    fn error(&mut self, kind: &str, message: String) {
        match kind {
            "connect" => self.err_connect += 1,
            "status" => self.err_status += 1,
            _ => self.err_body += 1,
        }
        if self.messages.len() < 3 {
            self.messages.push(format!("{kind}: {message}"));
        }
    }
}

/// One request on `client` (awc takes an idle pooled connection of this task's, or opens
/// one); `Err((kind, message))` on failure.
async fn one(
    client: &awc::Client,
    args: &Args,
    body: &[u8],
    stream: bool,
) -> Result<(), (&'static str, String)> {
    let mut req = client
        .post(&args.url)
        .insert_header(("content-type", "application/json"));
    if let Some(key) = &args.key {
        req = req.insert_header(("authorization", format!("Bearer {key}")));
    }
    let mut resp = req
        .send_body(body.to_vec())
        .await
        .map_err(|e| ("connect", e.to_string()))?;
    let bytes = resp
        .body()
        .limit(16 * 1024 * 1024)
        .await
        .map_err(|e| ("body", e.to_string()))?;
    if resp.status().as_u16() != 200 {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
        return Err(("status", format!("{}: {text}", resp.status())));
    }
    if stream && !bytes.windows(12).any(|w| w == b"data: [DONE]") {
        return Err(("body", "stream without data: [DONE]".into()));
    }
    Ok(())
}

#[actix_web::main]
async fn main() {
    let args = Rc::new(Args::parse());
    let body_for = |stream: bool| {
        let mut body = serde_json::json!({
            "model": args.model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 64,
        });
        if stream {
            body["stream"] = true.into();
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        serde_json::to_vec(&body).unwrap_or_default()
    };
    let (plain, streamed) = (Rc::new(body_for(false)), Rc::new(body_for(true)));
    let stats = Rc::new(RefCell::new(Stats::default()));
    // Every connection waits here after its requests, so all are open at the peak.
    let barrier = Rc::new(tokio::sync::Barrier::new(args.connections));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| {
            let (args, stats, barrier) = (args.clone(), stats.clone(), barrier.clone());
            let stream = args.stream_every > 0 && i % args.stream_every == 0;
            let body = if stream {
                streamed.clone()
            } else {
                plain.clone()
            };
            actix_web::rt::spawn(async move {
                // One client per connection: its pool holds exactly this connection, and
                // dropping it closes the connection.
                let client = awc::Client::builder()
                    .connector(
                        awc::Connector::new()
                            .limit(1)
                            // The burst overflows the listen queue; refused SYNs are retried.
                            .timeout(Duration::from_secs(30)),
                    )
                    .timeout(Duration::from_secs(60))
                    .finish();
                for _ in 0..args.requests {
                    if let Err((kind, message)) = one(&client, &args, &body, stream).await {
                        stats.borrow_mut().error(kind, message);
                    } else {
                        stats.borrow_mut().ok += 1;
                    }
                }
                barrier.wait().await;
                drop(client);
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let s = stats.borrow();
    let errors = s.err_connect + s.err_status + s.err_body;
    println!(
        "BENCH_BURST connections={} requests={} ok={} errors={errors} err_connect={} \
         err_status={} err_body={} duration_us={}",
        args.connections,
        args.connections * args.requests,
        s.ok,
        s.err_connect,
        s.err_status,
        s.err_body,
        elapsed.as_micros()
    );
    for m in &s.messages {
        eprintln!("bench_burst: {m}");
    }
}
