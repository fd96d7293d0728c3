//! Timeouts that hold (docs/architecture.md, "Timeouts and cancellation"): `read_ms` bounds a
//! whole answer, body included; `total_ms` bounds the whole exchange, a stream included,
//! but never the wait for a connection; a client that leaves cancels its upstream call; and
//! a graceful stop's drain deadline ends what is still running with an answer of its own.
//! Each case is recorded as what it was (analytics line, and the usage event's error type as
//! the request span's status in the OTLP export).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate::config::Settings;

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::otlp::Receiver;
use crate::support::proxy::{chat, openai_completion, service_at};
use crate::support::streaming::{analytics_lines, openai_sse, parse_frames, sse, stream};
use crate::support::{TestApp, spawn_app, spawn_app_with};

/// An app whose records can be read: the analytics log, and the OTLP export (spans are
/// exported when the app stops).
struct Recorded {
    app: TestApp,
    log: PathBuf,
    otlp: Receiver,
    _dir: TempDir,
}

async fn recorded_app(tweak: impl FnOnce(&mut Settings)) -> Recorded {
    let otlp = crate::support::otlp::start_receiver();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("analytics.log");
    let (log_path, endpoint) = (log.display().to_string(), otlp.url.clone());
    let app = spawn_app_with(move |s| {
        s.analytics_log = log_path;
        s.otel_exporter_otlp_endpoint = Some(endpoint);
        s.otel_metric_export_interval = Some("600000".into());
        tweak(s);
    })
    .await;
    Recorded {
        app,
        log,
        otlp,
        _dir: dir,
    }
}

/// The error type of every request span exported so far (the usage event's `error_type`).
fn span_errors(otlp: &Receiver) -> Vec<String> {
    let received = otlp.received.lock().unwrap();
    crate::support::otlp::all_spans(&received)
        .into_iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .filter_map(|s| s.status.map(|status| status.message))
        .filter(|m| !m.is_empty())
        .collect()
}

fn ask() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}]})
}

fn ask_stream() -> Value {
    json!({"messages": [{"role": "user", "content": "hi"}], "stream": true})
}

/// Polls `done` every 20 ms for at most `within`.
async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if done() {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

/// The head of a JSON answer and its first bytes, then nothing.
const STALLS_AFTER_THE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
    content-length: 4096\r\n\r\n{\"id\":\"chatcmpl-";

/// A complete JSON answer in two pieces `gap` apart (the body ends one more `gap` later).
fn slow_answer(gap: Duration) -> Behaviour {
    let body = serde_json::to_vec(&openai_completion()).unwrap();
    let (a, b) = body.split_at(body.len() / 2);
    Behaviour::Stream {
        content_type: "application/json",
        frames: vec![a.to_vec(), b.to_vec()],
        gap,
        tail: Tail::End,
    }
}

/// A stall after the head used to return 200 whenever the upstream finally finished: the
/// read timeout now covers the body, so it is a 504 after `read_ms`, the upstream
/// connection is closed, and the record says 504.
#[actix_web::test]
async fn a_stall_after_the_head_is_a_504_after_read_ms() {
    let upstream = HoldingUpstream::start(STALLS_AFTER_THE_HEAD).await;
    let rec = recorded_app(|_| {}).await;
    let key = service_at(
        &rec.app,
        "t",
        &upstream.base,
        json!({"connect_ms": 1000, "read_ms": 1500}),
    )
    .await;
    let started = Instant::now();
    let r = chat(&rec.app, "/t", &key, ask()).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text);
    assert_eq!(r.body["error"]["code"], "upstream_timeout", "{}", r.text);
    assert_eq!(
        r.body["error"]["message"],
        "upstream did not answer within 1500 ms"
    );
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(20),
        "answered after {took:?}"
    );
    assert_eq!(upstream.requests.load(Ordering::SeqCst), 1);
    assert!(
        wait_until(Duration::from_secs(5), || !upstream
            .closed
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "the upstream connection stayed open"
    );

    let lines = analytics_lines(&rec.log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["tollgate"]["status"], 504);
    let Recorded { app, otlp, .. } = rec;
    app.shut_down().await;
    assert_eq!(span_errors(&otlp), ["504"]);
}

/// `total_ms` bounds the whole exchange of a non-streamed call (a 504 naming the
/// deadline), and the wait for a free connection never counts against it: with one
/// connection, a second call waits for the first to be cut, then gets its answer although
/// its whole life was longer than `total_ms`.
#[actix_web::test]
async fn a_total_deadline_bounds_the_exchange_but_not_the_wait_for_a_connection() {
    let mock = MockUpstream::start(Behaviour::Hang).await;
    let app = spawn_app().await;
    let key = service_at(
        &app,
        "t",
        &mock.base,
        json!({"connect_ms": 1000, "read_ms": 20000, "total_ms": 3000,
               "max_connections": 1, "pool_wait_ms": 20000}),
    )
    .await;
    let (first, second) = futures::join!(
        async {
            let started = Instant::now();
            (chat(&app, "/t", &key, ask()).await, started.elapsed())
        },
        async {
            // The first call holds the one connection (the mock hangs); the second is
            // answered, slowly but well within the deadline, once it gets it.
            assert!(
                wait_until(Duration::from_secs(10), || mock.received().len() == 1).await,
                "the first call never reached the upstream"
            );
            mock.set(slow_answer(Duration::from_millis(500)));
            let started = Instant::now();
            (chat(&app, "/t", &key, ask()).await, started.elapsed())
        }
    );
    let ((first, first_took), (second, second_took)) = (first, second);
    assert_eq!(first.status, 504, "{}", first.text);
    assert_eq!(first.body["error"]["code"], "upstream_timeout");
    assert_eq!(
        first.body["error"]["message"],
        "upstream did not finish within the total deadline of 3000 ms"
    );
    assert!(
        first_took >= Duration::from_millis(2900) && first_took < Duration::from_secs(15),
        "cut after {first_took:?}, not by the 3 s total deadline"
    );
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(
        second.body["choices"][0]["message"]["content"],
        "Hello there"
    );
    assert!(
        second_took > Duration::from_secs(3),
        "the second call should have waited for the connection: {second_took:?}"
    );
    assert_eq!(mock.received().len(), 2);
}

/// A stream past `total_ms` ends with an in-band error frame (no `[DONE]`), its upstream
/// read stops, and it is recorded as `upstream_total_timeout`.
#[actix_web::test]
async fn a_stream_past_its_total_deadline_ends_with_an_in_band_error() {
    let words: Vec<String> = (0..40).map(|i| format!("w{i:02} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // 40 events 150 ms apart: 6 s, each gap far inside the read timeout.
    let mock = MockUpstream::start(sse(openai_sse(&words, Some((5, 40))), 150, Tail::End)).await;
    let rec = recorded_app(|_| {}).await;
    let key = service_at(
        &rec.app,
        "t",
        &mock.base,
        json!({"connect_ms": 1000, "read_ms": 5000, "total_ms": 1500}),
    )
    .await;
    let started = Instant::now();
    let streamed = stream(&rec.app, "/t", &key, ask_stream()).await;
    let took = started.elapsed();
    assert_eq!(streamed.status, 200, "{}", streamed.raw);
    assert!(took < Duration::from_secs(5), "the stream ran {took:?}");
    let frames = parse_frames(&streamed.raw);
    let last = frames.last().expect("frames");
    assert_eq!(last["error"]["code"], "upstream_total_timeout", "{last}");
    assert_eq!(
        last["error"]["message"],
        "upstream did not finish within the total deadline of 1500 ms"
    );
    assert!(!streamed.ends_with_done(), "{}", streamed.raw);
    assert!(streamed.raw.contains("w00"), "{}", streamed.raw);
    assert!(!streamed.raw.contains("w39"), "{}", streamed.raw);
    assert!(
        wait_until(Duration::from_secs(5), || !mock.streams().is_empty()).await,
        "the upstream stream was not closed"
    );
    assert!(!mock.streams()[0].completed);

    let lines = analytics_lines(&rec.log, 1).await;
    assert_eq!(lines[0]["tollgate"]["stream_end"], "failed", "{}", lines[0]);
    let Recorded { app, otlp, .. } = rec;
    app.shut_down().await;
    assert_eq!(span_errors(&otlp), ["upstream_total_timeout"]);
}

/// A raw upstream that reads one request per connection, writes `answer` (possibly
/// nothing, possibly a part) and then holds the connection; it notes each request and when
/// the gateway closed each connection.
struct HoldingUpstream {
    base: String,
    requests: Arc<AtomicUsize>,
    closed: Arc<Mutex<Vec<Instant>>>,
}

impl HoldingUpstream {
    async fn start(answer: &'static [u8]) -> HoldingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let (seen, gone) = (requests.clone(), closed.clone());
        actix_web::rt::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (seen, gone) = (seen.clone(), gone.clone());
                actix_web::rt::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 8192];
                    let mut counted = false;
                    loop {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => {
                                gone.lock().unwrap().push(Instant::now());
                                return;
                            }
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                        if !counted && request_complete(&got) {
                            counted = true;
                            seen.fetch_add(1, Ordering::SeqCst);
                            if socket.write_all(answer).await.is_err() {
                                gone.lock().unwrap().push(Instant::now());
                                return;
                            }
                        }
                    }
                });
            }
        });
        HoldingUpstream {
            base,
            requests,
            closed,
        }
    }
}

/// A whole HTTP/1.1 request with a `content-length` body has arrived.
fn request_complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    got.len() >= end + 4 + length
}

/// A client that gives up on a non-streamed request: the gateway closes the upstream
/// connection at once (not after `read_ms`) and records `client_disconnected`.
#[actix_web::test]
async fn a_client_that_leaves_cancels_the_upstream_call_and_is_recorded() {
    let upstream = HoldingUpstream::start(b"").await;
    let rec = recorded_app(|_| {}).await;
    let key = service_at(
        &rec.app,
        "t",
        &upstream.base,
        json!({"connect_ms": 1000, "read_ms": 30000}),
    )
    .await;
    let addr = rec.app.proxy.trim_start_matches("http://").to_string();
    let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = serde_json::to_vec(&ask()).unwrap();
    let head = format!(
        "POST /t HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await.unwrap();
    client.write_all(&body).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || upstream
            .requests
            .load(Ordering::SeqCst)
            == 1)
        .await,
        "the request never reached the upstream"
    );
    assert!(upstream.closed.lock().unwrap().is_empty());
    drop(client);
    let left = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || !upstream
            .closed
            .lock()
            .unwrap()
            .is_empty())
        .await,
        "the upstream call was not cancelled (its connection is still open)"
    );
    let lag = upstream.closed.lock().unwrap()[0].saturating_duration_since(left);
    assert!(
        lag < Duration::from_secs(5),
        "closed {lag:?} after the client left"
    );

    let lines = analytics_lines(&rec.log, 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["tollgate"]["status"], 499, "{}", lines[0]);
    let Recorded { app, otlp, .. } = rec;
    app.shut_down().await;
    assert_eq!(span_errors(&otlp), ["client_disconnected"]);
}

/// A graceful stop whose drain time runs out with work in flight: the stream ends with an
/// in-band `shutdown` error frame and the whole request gets a 503 `shutdown`, both before
/// the server drops their connections; both are recorded as `shutdown`, not as client
/// disconnects.
#[actix_web::test]
async fn the_drain_deadline_ends_streams_in_band_and_answers_whole_requests() {
    let words: Vec<String> = (0..100).map(|i| format!("d{i:02} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // 100 events 100 ms apart (10 s), and a whole answer that never comes: both still
    // running when the 2 s drain runs out.
    let mock = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::Hang),
        streamed: Box::new(sse(openai_sse(&words, Some((5, 100))), 100, Tail::End)),
    })
    .await;
    let rec = recorded_app(|s| s.drain_timeout = "2s".into()).await;
    let key = service_at(
        &rec.app,
        "t",
        &mock.base,
        json!({"connect_ms": 1000, "read_ms": 30000}),
    )
    .await;
    let post = |body: Value| {
        let (client, url, key) = (
            rec.app.client.clone(),
            format!("{}/t", rec.app.proxy),
            key.clone(),
        );
        actix_web::rt::spawn(async move {
            let mut resp = client
                .post(url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&body)
                .await
                .expect("an answer");
            let bytes = resp.body().limit(1 << 20).await.expect("a body");
            (
                resp.status().as_u16(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
    };
    let streamed = post(ask_stream());
    let whole = post(ask());
    assert!(
        wait_until(Duration::from_secs(10), || mock.received().len() == 2).await,
        "both calls reach the upstream"
    );
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let Recorded {
        app,
        otlp,
        log,
        _dir,
        ..
    } = rec;
    app.shut_down().await;

    let (status, raw) = streamed.await.unwrap();
    assert_eq!(status, 200, "{raw}");
    let frames = parse_frames(&raw);
    let last = frames.last().expect("frames");
    assert_eq!(last["error"]["code"], "shutdown", "{raw}");
    assert_eq!(last["error"]["type"], "service_unavailable", "{raw}");
    assert!(!raw.contains("[DONE]"), "{raw}");
    assert!(raw.contains("d00"), "{raw}");
    assert!(!raw.contains("d99"), "{raw}");

    let (status, text) = whole.await.unwrap();
    assert_eq!(status, 503, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"]["code"], "shutdown", "{text}");

    let lines = analytics_lines(&log, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let stream_line = lines
        .iter()
        .find(|l| l["tollgate"]["stream"] == true)
        .expect("the stream's line");
    assert_eq!(stream_line["tollgate"]["stream_end"], "shutdown");
    let whole_line = lines
        .iter()
        .find(|l| l["tollgate"]["stream"] == false)
        .expect("the whole request's line");
    assert_eq!(whole_line["tollgate"]["status"], 503);
    assert_eq!(span_errors(&otlp), ["shutdown", "shutdown"]);
}

/// `timeouts.total_ms`: optional (shown as `null` when absent), a positive number of
/// milliseconds up to a day, named in every refusal, and removable with a merge patch.
#[actix_web::test]
async fn total_ms_is_validated_stored_and_shown() {
    let app = spawn_app().await;
    let service = |name: &str, timeouts: Value| json!({"name": name, "provider": "openai", "timeouts": timeouts});
    for bad in [
        json!(0),
        json!(86_400_001_u64),
        json!(-5),
        json!("soon"),
        json!(1.5),
    ] {
        let r = app
            .post("/services", service("bad", json!({"total_ms": bad})))
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
        assert!(
            r.body["error"]["fields"].get("timeouts.total_ms").is_some(),
            "{bad}: {}",
            r.text
        );
    }
    let r = app.post("/services", service("plain", json!({}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["timeouts"]["total_ms"], Value::Null, "{}", r.text);

    let r = app
        .post(
            "/services",
            service("bounded", json!({"read_ms": 5000, "total_ms": 30000})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["timeouts"]["total_ms"], 30000);
    let r = app.get("/services/bounded").await;
    assert_eq!(r.body["timeouts"]["total_ms"], 30000, "{}", r.text);
    assert_eq!(r.body["timeouts"]["read_ms"], 5000);
    let service_id = r.body["id"].as_str().unwrap().to_string();
    let compiled = app.state.snapshot.load();
    let compiled = compiled
        .services
        .values()
        .find(|s| s.record.id.to_string() == service_id)
        .expect("the service is in the snapshot");
    assert_eq!(compiled.timeouts.total_ms, Some(30000));

    let r = app
        .patch("/services/bounded", json!({"timeouts": {"total_ms": null}}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["timeouts"]["total_ms"], Value::Null, "{}", r.text);
    assert_eq!(r.body["timeouts"]["read_ms"], 5000);
}
