//! The benchmark's streaming load generator (`bench/run`'s streaming scenario).
//!
//! Opens `-c` concurrent HTTP/1.1 keep-alive connections to one URL and, on each, POSTs an
//! OpenAI chat request with `"stream": true` (and `stream_options.include_usage`) again and
//! again for `-d` seconds, reading each answer to its end: an SSE stream in chunked transfer
//! encoding (a `Content-Length` or close-delimited body is read too). Per stream it records
//!
//! - **TTFB**: from just before the request is written to the arrival of the first byte of
//!   the response *body* (the first SSE event), not of the status line;
//! - **total**: from the same instant to the end of the `data: [DONE]` event;
//! - the number of SSE events (blank-line-terminated blocks with a `data:` line).
//!
//! A stream counts as an error, and its connection is closed, on a connect/read/write
//! failure, a status other than 200, bad chunked framing, a body that ends without
//! `data: [DONE]`, a `data:` payload that is an `{"error": …}` object, or no end within
//! 30 s. After an error the connection waits 10 ms before it reconnects, so a target that
//! refuses every stream is not hammered.
//!
//! Prints one line for bench/run (latencies in microseconds, nearest-rank percentiles over
//! every completed stream; `duration_us` from the start to the end of the last stream —
//! streams that started before the deadline are finished):
//!
//! `BENCH_STREAM streams=… errors=… err_connect=… err_io=… err_status=… err_protocol=…
//!  err_timeout=… duration_us=… ttfb_p50_us=… ttfb_p90_us=… ttfb_p99_us=… ttfb_max_us=…
//!  total_p50_us=… total_p90_us=… total_p99_us=… total_max_us=… events_min=… events_max=…`
//!
//! and up to 3 error messages on stderr. One tokio thread: the streams are mostly idle
//! (waiting for the next event), so one core is far more than 16 streams need.
//!
//! Usage: `bench_stream [-c CONNS] [-d SECS] [--model M] [--key KEY] URL`
//! (URL: `http://127.0.0.1:PORT/path`; plain HTTP only).

use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Streaming (SSE) load generator for bench/run")]
struct Args {
    /// Concurrent connections (one stream at a time each).
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Seconds to start new streams for.
    #[arg(short = 'd', long, default_value_t = 3.0)]
    duration: f64,
    /// The `model` of the request body.
    #[arg(long, default_value = "gpt-4o")]
    model: String,
    /// Sent as `Authorization: Bearer KEY` when given.
    #[arg(long)]
    key: Option<String>,
    /// Seconds one stream may take before it counts as a timeout.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// `http://HOST:PORT/PATH`.
    url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ErrKind {
    Connect,
    Io,
    Status,
    Protocol,
    Timeout,
}

#[derive(Debug)]
struct StreamError {
    kind: ErrKind,
    message: String,
}

fn err(kind: ErrKind, message: impl Into<String>) -> StreamError {
    StreamError {
        kind,
        message: message.into(),
    }
}

struct Sample {
    ttfb: Duration,
    total: Duration,
    events: u32,
}

#[derive(Default)]
struct Stats {
    samples: Vec<Sample>,
    errors: [u64; 5],
    messages: Vec<String>,
}

impl Stats {
    fn error(&mut self, e: StreamError) {
        self.errors[e.kind as usize] += 1;
        if self.messages.len() < 3 {
            self.messages.push(format!("{:?}: {}", e.kind, e.message));
        }
    }
}

/// What one stream's answer is delimited by.
enum Framing {
    Chunked,
    Length(usize),
    Close,
}

/// An incremental decoder of a chunked transfer-encoded body (RFC 9112 §7.1): chunk sizes in
/// hex with optional extensions, CRLF after each chunk's data, trailers after the last.
#[derive(Debug)]
enum Chunked {
    Size,
    Data(usize),
    DataEnd,
    Trailers,
    Done,
}

/// The index of the first CRLF in `buf`, if any.
fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

impl Chunked {
    /// Decodes what it can of `input[*pos..]` into `out`, advancing `pos`.
    fn decode(
        &mut self,
        input: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        loop {
            let rest = &input[*pos..];
            match *self {
                Chunked::Done => return Ok(()),
                Chunked::Size => {
                    let Some(end) = find_crlf(rest) else {
                        if rest.len() > 1024 {
                            return Err(err(ErrKind::Protocol, "chunk-size line too long"));
                        }
                        return Ok(());
                    };
                    let line = &rest[..end];
                    let hex = line
                        .split(|&b| b == b';')
                        .next()
                        .unwrap_or_default()
                        .trim_ascii();
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .filter(|h| !h.is_empty())
                        .and_then(|h| usize::from_str_radix(h, 16).ok())
                        .ok_or_else(|| {
                            err(
                                ErrKind::Protocol,
                                format!("bad chunk size {:?}", String::from_utf8_lossy(line)),
                            )
                        })?;
                    *pos += end + 2;
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if rest.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(rest.len());
                    out.extend_from_slice(&rest[..n]);
                    *pos += n;
                    *self = if n == left {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n)
                    };
                }
                Chunked::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(());
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(err(ErrKind::Protocol, "no CRLF after chunk data"));
                    }
                    *pos += 2;
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    let Some(end) = find_crlf(rest) else {
                        return Ok(());
                    };
                    *pos += end + 2;
                    if end == 0 {
                        *self = Chunked::Done;
                    }
                }
            }
        }
    }
}

/// Splits a decoded SSE body into events (RFC: lines ending in LF or CRLF; a blank line
/// ends an event) and notes `data: [DONE]` and error payloads.
#[derive(Default)]
struct Sse {
    pending: Vec<u8>,
    event_has_data: bool,
    event_is_done: bool,
    events: u32,
    done: bool,
}

impl Sse {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let mut line = &self.pending[start..start + nl];
            start += nl + 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.is_empty() {
                if self.event_has_data {
                    self.events += 1;
                    if self.event_is_done {
                        self.done = true;
                    }
                }
                self.event_has_data = false;
                self.event_is_done = false;
            } else if let Some(data) = line.strip_prefix(b"data:") {
                if self.done {
                    return Err(err(ErrKind::Protocol, "data after [DONE]"));
                }
                let data = data.strip_prefix(b" ").unwrap_or(data);
                self.event_has_data = true;
                if data == b"[DONE]" {
                    self.event_is_done = true;
                } else if data.starts_with(b"{\"error\"") {
                    return Err(err(
                        ErrKind::Protocol,
                        format!("error event: {}", String::from_utf8_lossy(data)),
                    ));
                }
            }
        }
        self.pending.drain(..start);
        Ok(())
    }
}

struct Target {
    addr: String,
    request: Vec<u8>,
}

/// The response head: status, framing, and whether the server keeps the connection.
fn parse_head(head: &[u8]) -> Result<(u16, Framing, bool), StreamError> {
    let text = std::str::from_utf8(head).map_err(|_| err(ErrKind::Protocol, "non-UTF-8 head"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| {
            err(
                ErrKind::Protocol,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let mut framing = Framing::Close;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Framing::Chunked;
            }
        } else if name.eq_ignore_ascii_case("content-length") {
            if !matches!(framing, Framing::Chunked) {
                let n = value
                    .parse()
                    .map_err(|_| err(ErrKind::Protocol, format!("bad content-length {value:?}")))?;
                framing = Framing::Length(n);
            }
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                keep_alive = false;
            } else if v.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if matches!(framing, Framing::Close) {
        keep_alive = false;
    }
    Ok((status, framing, keep_alive))
}

/// One stream on `conn`: write the request, read the answer to its end. Returns the sample
/// and whether the connection can carry the next request.
async fn one_stream(
    conn: &mut TcpStream,
    target: &Target,
    buf: &mut Vec<u8>,
) -> Result<(Sample, bool), StreamError> {
    buf.clear();
    let io = |e: std::io::Error| err(ErrKind::Io, e.to_string());
    let t0 = Instant::now();
    conn.write_all(&target.request).await.map_err(io)?;

    let mut tmp = [0u8; 16 * 1024];
    // The head.
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Err(err(ErrKind::Protocol, "response head over 64 KiB"));
        }
        let n = conn.read(&mut tmp).await.map_err(io)?;
        if n == 0 {
            return Err(err(
                ErrKind::Io,
                "connection closed before the response head",
            ));
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let (status, framing, keep_alive) = parse_head(&buf[..head_end])?;
    let mut pos = head_end + 4;

    let mut chunked = Chunked::Size;
    let mut length_left = match framing {
        Framing::Length(n) => n,
        _ => 0,
    };
    let mut sse = Sse::default();
    let mut body = Vec::new();
    let mut ttfb = None;
    let mut total = None;
    let mut error_body = Vec::new();
    loop {
        // Decode what is buffered.
        body.clear();
        let ended = match framing {
            Framing::Chunked => {
                chunked.decode(buf, &mut pos, &mut body)?;
                matches!(chunked, Chunked::Done)
            }
            Framing::Length(_) => {
                let n = length_left.min(buf.len() - pos);
                body.extend_from_slice(&buf[pos..pos + n]);
                pos += n;
                length_left -= n;
                length_left == 0
            }
            Framing::Close => {
                body.extend_from_slice(&buf[pos..]);
                pos = buf.len();
                false
            }
        };
        if !body.is_empty() {
            if ttfb.is_none() {
                ttfb = Some(t0.elapsed());
            }
            if status == 200 {
                sse.feed(&body)?;
                if sse.done && total.is_none() {
                    total = Some(t0.elapsed());
                }
            } else if error_body.len() < 300 {
                error_body.extend_from_slice(&body[..body.len().min(300)]);
            }
        }
        buf.drain(..pos);
        pos = 0;
        if ended {
            break;
        }
        let n = conn.read(&mut tmp).await.map_err(io)?;
        if n == 0 {
            if matches!(framing, Framing::Close) {
                break;
            }
            return Err(err(ErrKind::Io, "connection closed inside the body"));
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    if status != 200 {
        return Err(err(
            ErrKind::Status,
            format!("HTTP {status}: {}", String::from_utf8_lossy(&error_body)),
        ));
    }
    if !buf.is_empty() {
        return Err(err(
            ErrKind::Protocol,
            "bytes after the end of the response",
        ));
    }
    let (Some(ttfb), Some(total)) = (ttfb, total) else {
        return Err(err(
            ErrKind::Protocol,
            "the stream ended without data: [DONE]",
        ));
    };
    Ok((
        Sample {
            ttfb,
            total,
            events: sse.events,
        },
        keep_alive,
    ))
}

async fn connection(target: std::rc::Rc<Target>, deadline: Instant, timeout: Duration) -> Stats {
    let mut stats = Stats::default();
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match TcpStream::connect(&target.addr).await {
                Ok(c) => {
                    let _ = c.set_nodelay(true);
                    conn.insert(c)
                }
                Err(e) => {
                    stats.error(err(ErrKind::Connect, e.to_string()));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match tokio::time::timeout(timeout, one_stream(c, &target, &mut buf)).await {
            Ok(Ok((sample, keep_alive))) => {
                stats.samples.push(sample);
                if !keep_alive {
                    conn = None;
                }
            }
            Ok(Err(e)) => {
                stats.error(e);
                conn = None;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => {
                stats.error(err(
                    ErrKind::Timeout,
                    format!("no end of stream within {timeout:?}"),
                ));
                conn = None;
            }
        }
    }
    stats
}

/// Nearest-rank percentile of sorted microseconds.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = Args::parse();
    let Some(rest) = args.url.strip_prefix("http://") else {
        eprintln!("bench_stream: only http:// URLs");
        std::process::exit(2)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if args.connections == 0 || !positive(args.duration) || !positive(args.timeout) {
        eprintln!("bench_stream: -c, -d and --timeout must be positive");
        std::process::exit(2)
    }
    let body = format!(
        concat!(
            r#"{{"model":{},"messages":[{{"role":"user","content":"Say hello in one short sentence."}}],"#,
            r#""max_tokens":64,"stream":true,"stream_options":{{"include_usage":true}}}}"#
        ),
        serde_json::to_string(&args.model).expect("a string serialises")
    );
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(key) = &args.key {
        request.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    let target = std::rc::Rc::new(Target {
        addr: authority.to_string(),
        request: request.into_bytes(),
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let timeout = Duration::from_secs_f64(args.timeout);
    let (stats, elapsed) = local.block_on(&rt, async move {
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(args.duration);
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::task::spawn_local(connection(target.clone(), deadline, timeout)))
            .collect();
        let mut all = Stats::default();
        for t in tasks {
            let s = t.await.expect("a connection task");
            all.samples.extend(s.samples);
            for (a, b) in all.errors.iter_mut().zip(s.errors) {
                *a += b;
            }
            for m in s.messages {
                if all.messages.len() < 3 {
                    all.messages.push(m);
                }
            }
        }
        (all, start.elapsed())
    });

    for m in &stats.messages {
        eprintln!("bench_stream: {m}");
    }
    let us = |d: Duration| d.as_micros() as u64;
    let mut ttfb: Vec<u64> = stats.samples.iter().map(|s| us(s.ttfb)).collect();
    let mut total: Vec<u64> = stats.samples.iter().map(|s| us(s.total)).collect();
    ttfb.sort_unstable();
    total.sort_unstable();
    let events_min = stats.samples.iter().map(|s| s.events).min().unwrap_or(0);
    let events_max = stats.samples.iter().map(|s| s.events).max().unwrap_or(0);
    let [connect, io, status, protocol, timeout] = stats.errors;
    println!(
        "BENCH_STREAM streams={} errors={} err_connect={connect} err_io={io} err_status={status} \
         err_protocol={protocol} err_timeout={timeout} duration_us={} \
         ttfb_p50_us={} ttfb_p90_us={} ttfb_p99_us={} ttfb_max_us={} \
         total_p50_us={} total_p90_us={} total_p99_us={} total_max_us={} \
         events_min={events_min} events_max={events_max}",
        stats.samples.len(),
        stats.errors.iter().sum::<u64>(),
        us(elapsed),
        percentile(&ttfb, 50.0),
        percentile(&ttfb, 90.0),
        percentile(&ttfb, 99.0),
        ttfb.last().copied().unwrap_or(0),
        percentile(&total, 50.0),
        percentile(&total, 90.0),
        percentile(&total, 99.0),
        total.last().copied().unwrap_or(0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_in_pieces() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for split in 1..wire.len() {
            let mut dec = Chunked::Size;
            let mut out = Vec::new();
            let mut buf = Vec::new();
            for piece in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(piece);
                let mut pos = 0;
                dec.decode(&buf, &mut pos, &mut out).expect("valid framing");
                buf.drain(..pos);
            }
            assert!(matches!(dec, Chunked::Done), "split at {split}");
            assert_eq!(out, b"hello, world");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn sse_events_and_done() {
        let mut sse = Sse::default();
        sse.feed(b"event: a\ndata: {}\n\nda").expect("ok");
        sse.feed(b"ta: {}\r\n\r\n: comment\n\ndata: [DONE]\n")
            .expect("ok");
        assert!(!sse.done);
        sse.feed(b"\n").expect("ok");
        assert!(sse.done);
        assert_eq!(sse.events, 3);
    }
}
