//! No false errors under load (docs/architecture.md, "Upstream pools and the address
//! guard"): the per-service connection limit lets 1 000 healthy concurrent streams through,
//! and a pooled connection the upstream closed meanwhile is retried once, not a 502.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::mock_upstream::{MockUpstream, Tail};
use crate::support::proxy::{chat, openai_completion, service_at};
use crate::support::spawn_app;
use crate::support::streaming::{openai_sse, parse_frames, sse};

/// 1 000 streams at once, each 5 events 400 ms apart (2 s), through the default connection
/// limit with a 3 s read timeout: every one completes (a wait for a pooled connection
/// counted against the read timeout turns some into 504s). The read timeout leaves room
/// for the 1 000 connects and heads on a loaded machine.
#[actix_web::test]
async fn a_thousand_concurrent_slow_streams_all_succeed() {
    const STREAMS: usize = 1_000;
    let mock = MockUpstream::start(sse(
        openai_sse(&["one", "two", "three"], None),
        400,
        Tail::End,
    ))
    .await;
    let app = spawn_app().await;
    let key = service_at(
        &app,
        "load",
        &mock.base,
        json!({"connect_ms": 2000, "read_ms": 3000}),
    )
    .await;
    // The test's own client must not be the bottleneck.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(Duration::from_secs(60))
        .finish();
    let started = Instant::now();
    let calls = (0..STREAMS).map(|_| {
        let client = client.clone();
        let url = format!("{}/load", app.proxy);
        let key = key.clone();
        async move {
            let mut resp = client
                .post(url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&json!({"messages": [{"role": "user", "content": "hi"}],
                                   "stream": true}))
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .body()
                .limit(1024 * 1024)
                .await
                .map_err(|e| format!("body: {e}"))?;
            let raw = String::from_utf8_lossy(&bytes).to_string();
            if status != 200 {
                return Err(format!("{status}: {raw}"));
            }
            let frames = parse_frames(&raw);
            if frames.last() != Some(&Value::String("[DONE]".into())) {
                return Err(format!("incomplete stream: {raw}"));
            }
            Ok::<usize, String>(frames.len())
        }
    });
    let results = tokio::time::timeout(Duration::from_secs(90), futures::future::join_all(calls))
        .await
        .expect("the streams took more than 90 s");
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} streams failed; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(
        mock.streams().len(),
        STREAMS,
        "every stream reached the upstream"
    );
    eprintln!("{STREAMS} streams in {:?}", started.elapsed());
}

/// An HTTP/1.1 upstream that answers one request per connection with keep-alive (no
/// `connection: close`), then closes the socket when the next request arrives, unanswered —
/// as an upstream whose keep-alive timer fires just as the gateway reuses the connection.
/// Returns its base URL and the number of requests it answered.
async fn closing_upstream() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let count = answered.clone();
    let body = serde_json::to_vec(&openai_completion()).unwrap();
    actix_web::rt::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            let body = body.clone();
            actix_web::rt::spawn(async move {
                // Read the head and the content-length body of the one request answered.
                let mut got = Vec::new();
                let mut buf = [0u8; 8192];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                if socket.write_all(head.as_bytes()).await.is_err()
                    || socket.write_all(&body).await.is_err()
                {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                // The next request on this connection is never answered.
                let _ = socket.read(&mut buf).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (base, answered)
}

/// 500 sequential requests through an upstream that closes every reused connection: none
/// fails, each is answered exactly once by the upstream.
#[actix_web::test]
async fn an_upstream_closing_every_kept_alive_connection_causes_no_errors() {
    const REQUESTS: usize = 500;
    let (base, answered) = closing_upstream().await;
    let app = spawn_app().await;
    let key = service_at(
        &app,
        "load",
        &base,
        json!({"connect_ms": 2000, "read_ms": 5000}),
    )
    .await;
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    for i in 0..REQUESTS {
        assert!(Instant::now() < deadline, "500 requests took over 120 s");
        let r = chat(
            &app,
            "/load",
            &key,
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        if r.status != 200 {
            failures.push(format!("request {i}: {} {}", r.status, r.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} failed; first: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(answered.load(Ordering::SeqCst), REQUESTS);
}

/// With every connection of the service busy, a request waits at most `pool_wait_ms` and
/// then gets 503 `upstream_pool_exhausted` — the gateway is saturated, the upstream has not
/// timed out — while the call holding the connection is still bounded by `read_ms` alone.
#[actix_web::test]
async fn a_pool_wait_that_runs_out_is_a_503_not_an_upstream_timeout() {
    let mock = MockUpstream::start(crate::support::mock_upstream::Behaviour::Hang).await;
    let app = spawn_app().await;
    let key = service_at(
        &app,
        "load",
        &mock.base,
        json!({"connect_ms": 1000, "read_ms": 1500, "max_connections": 1, "pool_wait_ms": 200}),
    )
    .await;
    let ask = || json!({"messages": [{"role": "user", "content": "hi"}]});
    let (holder, waiter) = futures::join!(chat(&app, "/load", &key, ask()), async {
        // Let the first call take the one connection.
        actix_web::rt::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        (chat(&app, "/load", &key, ask()).await, started.elapsed())
    });
    let (waiter, waited) = waiter;
    assert_eq!(waiter.status, 503, "{}", waiter.text);
    assert_eq!(
        waiter.body["error"]["code"], "upstream_pool_exhausted",
        "{}",
        waiter.text
    );
    assert_eq!(
        waiter.body["error"]["message"],
        "the gateway's connections to this upstream were all busy for 200 ms; retry later"
    );
    assert!(waited < Duration::from_millis(1000), "waited {waited:?}");
    // The holder's own read timeout is unaffected by the other's wait.
    assert_eq!(holder.status, 504, "{}", holder.text);
    assert_eq!(
        mock.received().len(),
        1,
        "the waiting call never reached the upstream"
    );
}
