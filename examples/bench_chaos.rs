//! The chaos script's helper (`bench/chaos`, see bench/README.md "Chaos"): a load generator
//! that records every request, and two misbehaving upstreams.
//!
//! `bench_chaos load [OPTIONS] URL` sends OpenAI chat requests to `URL` (plain HTTP; awc,
//! keep-alive connections, no connection limit) until `--duration` seconds have passed,
//! `--count` requests were sent or `--stop-file` exists, whichever comes first; requests in
//! flight then run to their end (bounded by `--timeout`).
//!
//! - Whole requests at `--rate` per second (an open loop: request *i* is due at
//!   start + i ÷ rate; 0 = as fast as `--concurrency` allows), at most `--concurrency` in
//!   flight (a request due while all are busy waits, and is counted as late).
//! - Besides, `--streams N` loops that each post `"stream": true` requests one after the
//!   other, reading each SSE answer to its end; after a failure a loop waits 100 ms.
//! - `--distinct-models` sends `model: "<model>-<i>"` (a new usage row per request, for a
//!   route without a fixed model): the usage table then has to grow.
//!
//! Each request is one line of `--log` (times are wall-clock milliseconds since the Unix
//! epoch, so the chaos script can compare them with the moment it killed the gateway):
//!
//! `START_MS END_MS KIND STATUS OUTCOME`
//!
//! KIND `p` (whole request) or `s` (stream); STATUS the HTTP status, 0 when no response
//! head arrived; OUTCOME `ok` (2xx, whole body; a stream ended with `data: [DONE]`), `http`
//! (a non-2xx answer, whole body), `broken` (a head, then the body failed, was cut, or a
//! stream ended without `[DONE]` or with an in-band `{"error": …}` event), `connect`
//! (no connection), `io` (no response head: reset, closed), `timeout` (no end within
//! `--timeout`). The summary on stdout:
//!
//! `CHAOS sent=… ok=… failed=… answered=… late=… plain=… streams=… outcomes=ok:…,http:…
//!  statuses=200:…,504:… elapsed_ms=… latency_max_ms=…`
//!
//! (`answered` = a response head arrived, i.e. the gateway handled the request.) Up to 5
//! error messages go to stderr.
//!
//! `bench_chaos upstream --mode close|hang PORT` serves on 127.0.0.1:PORT, raw HTTP/1.1:
//!
//! - `close`: answers the first request of each connection with an OpenAI
//!   `chat.completion` and keep-alive (no `connection: close`), then closes the socket when
//!   the next request arrives, unanswered — an upstream whose keep-alive timer fires just
//!   as the gateway reuses the connection.
//! - `hang`: reads requests and never answers (the socket stays open until the peer
//!   closes it).
//!
//! A cargo example like `bench_mock` and `bench_stream`: built with the crate's own
//! dependencies (`cargo build --release --example bench_chaos`), not shipped.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Parser, Debug)]
#[command(about = "Load generator and misbehaving upstreams for bench/chaos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send requests and record each one.
    Load(LoadArgs),
    /// Serve a misbehaving upstream on 127.0.0.1:PORT.
    Upstream {
        #[arg(long, value_enum)]
        mode: Mode,
        port: u16,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Mode {
    Close,
    Hang,
}

#[derive(Parser, Debug)]
struct LoadArgs {
    /// Whole requests per second (0: as fast as --concurrency allows).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Whole requests in flight at most.
    #[arg(long, default_value_t = 256)]
    concurrency: usize,
    /// Stream loops (each one stream at a time).
    #[arg(long, default_value_t = 0)]
    streams: usize,
    /// Seconds to start new requests for.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Whole requests to send at most (0: no limit).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Stop starting requests once this file exists.
    #[arg(long)]
    stop_file: Option<std::path::PathBuf>,
    /// Seconds one request (head and body) may take.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// The `model` of the request body.
    #[arg(long, default_value = "gpt-4o")]
    model: String,
    /// `model: "<model>-<i>"`, a different one per request.
    #[arg(long)]
    distinct_models: bool,
    /// Sent as `Authorization: Bearer KEY`.
    #[arg(long)]
    key: String,
    /// One line per request (see the module documentation).
    #[arg(long)]
    log: Option<std::path::PathBuf>,
    /// `http://HOST:PORT/PATH`.
    url: String,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Outcome {
    Ok,
    Http,
    Broken,
    Connect,
    Io,
    Timeout,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Http => "http",
            Outcome::Broken => "broken",
            Outcome::Connect => "connect",
            Outcome::Io => "io",
            Outcome::Timeout => "timeout",
        }
    }
}

struct Entry {
    start_ms: u128,
    end_ms: u128,
    stream: bool,
    status: u16,
    outcome: Outcome,
    latency: Duration,
}

#[derive(Default)]
struct Record {
    entries: Vec<Entry>,
    messages: Vec<String>,
    late: u64,
}

fn wall_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

struct Target {
    client: awc::Client,
    url: String,
    key: String,
    model: String,
    distinct_models: bool,
    timeout: Duration,
}

impl Target {
    fn body(&self, i: u64, stream: bool) -> Bytes {
        let model = if self.distinct_models {
            format!("{}-{i}", self.model)
        } else {
            self.model.clone()
        };
        let mut body = serde_json::json!({
            "model": model,
            "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
            "max_tokens": 64,
        });
        if stream {
            body["stream"] = true.into();
            body["stream_options"] = serde_json::json!({"include_usage": true});
        }
        Bytes::from(body.to_string())
    }

    /// One request to its end: (status, outcome, error message).
    async fn one(&self, i: u64, stream: bool) -> (u16, Outcome, Option<String>) {
        match tokio::time::timeout(self.timeout, self.exchange(i, stream)).await {
            Ok(result) => result,
            Err(_) => (
                0,
                Outcome::Timeout,
                Some(format!("no end within {:?}", self.timeout)),
            ),
        }
    }

    async fn exchange(&self, i: u64, stream: bool) -> (u16, Outcome, Option<String>) {
        let sent = self
            .client
            .post(&self.url)
            .insert_header(("Authorization", format!("Bearer {}", self.key)))
            .insert_header(("Content-Type", "application/json"))
            .send_body(self.body(i, stream))
            .await;
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                let outcome = match e {
                    awc::error::SendRequestError::Connect(_) => Outcome::Connect,
                    _ => Outcome::Io,
                };
                return (0, outcome, Some(e.to_string()));
            }
        };
        let status = response.status().as_u16();
        // The whole body, also for streams (a few kB): the end decides the outcome.
        let mut body = Vec::new();
        while let Some(piece) = response.next().await {
            match piece {
                Ok(bytes) => body.extend_from_slice(&bytes),
                Err(e) => {
                    return (
                        status,
                        Outcome::Broken,
                        Some(format!("HTTP {status}, body: {e}")),
                    );
                }
            }
        }
        if !(200..300).contains(&status) {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
            return (
                status,
                Outcome::Http,
                Some(format!("HTTP {status}: {text}")),
            );
        }
        if stream {
            let text = String::from_utf8_lossy(&body);
            if text.contains("data: {\"error\"") {
                let at = text.find("data: {\"error\"").unwrap_or(0);
                let end = (at + 200).min(text.len());
                let snippet = text.get(at..end).unwrap_or("").to_string();
                return (status, Outcome::Broken, Some(snippet));
            }
            if !text.trim_end().ends_with("data: [DONE]") {
                return (
                    status,
                    Outcome::Broken,
                    Some("the stream ended without data: [DONE]".into()),
                );
            }
        }
        (status, Outcome::Ok, None)
    }
}

/// Runs one request and records it.
async fn record(target: Rc<Target>, rec: Rc<RefCell<Record>>, i: u64, stream: bool) -> bool {
    let start_ms = wall_ms();
    let started = Instant::now();
    let (status, outcome, message) = target.one(i, stream).await;
    let mut rec = rec.borrow_mut();
    rec.entries.push(Entry {
        start_ms,
        end_ms: wall_ms(),
        stream,
        status,
        outcome,
        latency: started.elapsed(),
    });
    if let Some(m) = message
        && rec.messages.len() < 5
    {
        let kind = if stream { "stream" } else { "request" };
        rec.messages.push(format!("{kind}: {m}"));
    }
    outcome == Outcome::Ok
}

struct Stop {
    deadline: Instant,
    file: Option<std::path::PathBuf>,
    flag: std::cell::Cell<bool>,
}

impl Stop {
    fn now(&self) -> bool {
        if self.flag.get() {
            return true;
        }
        let stop =
            Instant::now() >= self.deadline || self.file.as_ref().is_some_and(|f| f.exists());
        self.flag.set(stop);
        stop
    }
}

async fn load(args: LoadArgs) -> std::io::Result<()> {
    let connector = awc::Connector::new()
        .limit(0)
        .timeout(Duration::from_secs(5));
    let client = awc::Client::builder()
        .connector(connector)
        .disable_redirects()
        // `Target::one` bounds head and body together.
        .disable_timeout()
        .finish();
    let target = Rc::new(Target {
        client,
        url: args.url.clone(),
        key: args.key.clone(),
        model: args.model.clone(),
        distinct_models: args.distinct_models,
        timeout: Duration::from_secs_f64(args.timeout),
    });
    let rec = Rc::new(RefCell::new(Record::default()));
    let start = Instant::now();
    let stop = Rc::new(Stop {
        deadline: start + Duration::from_secs_f64(args.duration),
        file: args.stop_file.clone(),
        flag: std::cell::Cell::new(false),
    });
    let ids = Rc::new(std::cell::Cell::new(0u64));
    let next_id = {
        let ids = ids.clone();
        move || {
            let i = ids.get();
            ids.set(i + 1);
            i
        }
    };

    let mut loops = Vec::new();
    for _ in 0..args.streams {
        let (target, rec, stop, next_id) =
            (target.clone(), rec.clone(), stop.clone(), next_id.clone());
        loops.push(actix_web::rt::spawn(async move {
            while !stop.now() {
                if !record(target.clone(), rec.clone(), next_id(), true).await {
                    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }

    let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut plain = Vec::new();
    let whole_requests = args.rate > 0.0 || args.streams == 0 || args.count > 0;
    if whole_requests {
        let mut n: u64 = 0;
        loop {
            if stop.now() || (args.count > 0 && n >= args.count) {
                break;
            }
            if args.rate > 0.0 {
                let due = start + Duration::from_secs_f64(n as f64 / args.rate);
                actix_web::rt::time::sleep_until(due.into()).await;
                if stop.now() {
                    break;
                }
            }
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if args.rate > 0.0 {
                        rec.borrow_mut().late += 1;
                    }
                    match permits.clone().acquire_owned().await {
                        Ok(p) => p,
                        Err(_) => break,
                    }
                }
            };
            let (target, rec) = (target.clone(), rec.clone());
            let i = next_id();
            plain.push(actix_web::rt::spawn(async move {
                let _permit = permit;
                record(target, rec, i, false).await;
            }));
            n += 1;
            // Finished handles are dropped now and then, so a long run does not keep them all.
            if plain.len() >= 4096 {
                plain.retain(|h: &actix_web::rt::task::JoinHandle<()>| !h.is_finished());
            }
        }
    } else {
        // Streams only: wait for the stop condition here.
        while !stop.now() {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for h in plain.into_iter().chain(loops) {
        let _ = h.await;
    }
    let elapsed = start.elapsed();

    let rec = rec.borrow();
    if let Some(path) = &args.log {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for e in &rec.entries {
            writeln!(
                out,
                "{} {} {} {} {}",
                e.start_ms,
                e.end_ms,
                if e.stream { "s" } else { "p" },
                e.status,
                e.outcome.as_str()
            )?;
        }
        out.flush()?;
    }
    for m in &rec.messages {
        eprintln!("bench_chaos: {m}");
    }
    let mut outcomes = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for e in &rec.entries {
        *outcomes.entry(e.outcome).or_insert(0u64) += 1;
        if e.status > 0 {
            *statuses.entry(e.status).or_insert(0u64) += 1;
        }
    }
    let join = |m: Vec<String>| {
        if m.is_empty() {
            "-".to_string()
        } else {
            m.join(",")
        }
    };
    let ok = outcomes.get(&Outcome::Ok).copied().unwrap_or(0);
    let sent = rec.entries.len() as u64;
    println!(
        "CHAOS sent={sent} ok={ok} failed={} answered={} late={} plain={} streams={} \
         outcomes={} statuses={} elapsed_ms={} latency_max_ms={}",
        sent - ok,
        rec.entries.iter().filter(|e| e.status > 0).count(),
        rec.late,
        rec.entries.iter().filter(|e| !e.stream).count(),
        rec.entries.iter().filter(|e| e.stream).count(),
        join(
            outcomes
                .iter()
                .map(|(o, n)| format!("{}:{n}", o.as_str()))
                .collect()
        ),
        join(statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect()),
        elapsed.as_millis(),
        rec.entries
            .iter()
            .map(|e| e.latency.as_millis())
            .max()
            .unwrap_or(0),
    );
    Ok(())
}

const COMPLETION: &[u8] = br#"{"id":"chatcmpl-chaos","object":"chat.completion","created":1700000000,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}"#;

/// Reads one request (head and `content-length` body) from `socket`; false when the peer
/// closed or the request is malformed.
async fn read_request(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                return true;
            }
        }
        match socket.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
        if buf.len() > 16 * 1024 * 1024 {
            return false;
        }
    }
}

async fn serve_connection(mut socket: tokio::net::TcpStream, mode: Mode) {
    let mut buf = Vec::new();
    match mode {
        Mode::Close => {
            if !read_request(&mut socket, &mut buf).await {
                return;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                COMPLETION.len()
            );
            if socket.write_all(head.as_bytes()).await.is_err()
                || socket.write_all(COMPLETION).await.is_err()
            {
                return;
            }
            // The next request on this connection is never answered.
            let mut tmp = [0u8; 1024];
            let _ = socket.read(&mut tmp).await;
            let _ = socket.shutdown().await;
        }
        Mode::Hang => {
            // Read (and ignore) whatever comes until the peer closes.
            let mut tmp = [0u8; 8192];
            while let Ok(n) = socket.read(&mut tmp).await {
                if n == 0 {
                    break;
                }
            }
        }
    }
}

async fn upstream(mode: Mode, port: u16) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!("bench_chaos upstream ({mode:?}) listening on 127.0.0.1:{port}");
    loop {
        let (socket, _) = listener.accept().await?;
        tokio::task::spawn_local(serve_connection(socket, mode));
    }
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Load(args) => {
            let positive = |x: f64| x.is_finite() && x > 0.0;
            let rate_ok = args.rate.is_finite() && args.rate >= 0.0;
            if !positive(args.duration) || !positive(args.timeout) || !rate_ok {
                eprintln!("bench_chaos: --duration and --timeout must be positive, --rate ≥ 0");
                std::process::exit(2)
            }
            actix_web::rt::System::new().block_on(load(args))
        }
        Command::Upstream { mode, port } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            tokio::task::LocalSet::new().block_on(&rt, upstream(mode, port))
        }
    }
}
