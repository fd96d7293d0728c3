//! The process-wide budget of bytes buffered from upstream answers (docs/architecture.md,
//! "Memory"), through the real listener against a mock upstream: an answer the budget
//! cannot hold is a 503 `gateway_memory_exhausted` instead of more memory, concurrent
//! answers share the budget, streamed pieces count while they are in flight, and every
//! byte comes back once the request is over.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{chat, configure_openai, openai_completion};
use crate::support::streaming::{openai_sse, sse, stream};
use crate::support::{TestApp, spawn_app_with};

/// A budget far below the per-answer limit (32 MiB), so the budget is what refuses.
const BUDGET: usize = 256 * 1024;

fn hello() -> Value {
    json!({"messages": [{"role": "user", "content": "Say hello"}]})
}

/// An OpenAI completion whose content is `size` bytes of text.
fn completion_of(size: usize) -> Vec<u8> {
    let mut body = openai_completion();
    body["choices"][0]["message"]["content"] = Value::String("x".repeat(size));
    serde_json::to_vec(&body).unwrap()
}

/// `/status`'s `upstream_buffer` section.
async fn buffer_status(app: &TestApp) -> Value {
    let r = app.get("/status").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["upstream_buffer"].clone()
}

/// Waits (generously) until nothing is reserved: an answer's bytes are given back when the
/// last reference to them is dropped, which may be just after the client has its reply.
async fn wait_until_returned(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = buffer_status(app).await;
        if status["in_use_bytes"] == 0 || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn app_with_budget(budget: usize) -> TestApp {
    spawn_app_with(|s| s.max_buffered_upstream_bytes = budget).await
}

fn assert_memory_exhausted(status: u16, body: &Value, text: &str) {
    assert_eq!(status, 503, "{text}");
    assert_eq!(body["error"]["code"], "gateway_memory_exhausted", "{text}");
    assert_eq!(body["error"]["type"], "service_unavailable", "{text}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("retry later"), "{message}");
}

/// A whole answer larger than the budget (declared length, and chunked without one) is
/// refused with the gateway's 503; the budget is whole again afterwards and a small answer
/// goes through.
#[actix_web::test]
async fn an_answer_larger_than_the_budget_is_a_503_and_the_budget_comes_back() {
    let big = completion_of(BUDGET + 10_000);
    let mock = MockUpstream::start(Behaviour::Reply(200, "application/json", big.clone())).await;
    let app = app_with_budget(BUDGET).await;
    assert_eq!(
        buffer_status(&app).await,
        json!({"limit_bytes": BUDGET, "in_use_bytes": 0, "refused": 0})
    );
    let key = configure_openai(&app, &mock, json!({})).await;

    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_memory_exhausted(r.status, &r.body, &r.text);
    assert_eq!(mock.received().len(), 1, "the upstream was asked");

    // No Content-Length: the same answer in chunks is refused as it grows.
    let chunks: Vec<Vec<u8>> = big.chunks(16 * 1024).map(<[u8]>::to_vec).collect();
    mock.set(Behaviour::Stream {
        content_type: "application/json",
        frames: chunks,
        gap: Duration::ZERO,
        tail: Tail::End,
    });
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_memory_exhausted(r.status, &r.body, &r.text);

    let status = wait_until_returned(&app).await;
    assert_eq!(status["in_use_bytes"], 0, "{status}");
    assert_eq!(status["refused"], 2, "{status}");

    // An answer that fits, declared and chunked, is served as usual.
    let fits = completion_of(BUDGET / 4);
    mock.set(Behaviour::Reply(200, "application/json", fits.clone()));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    assert_eq!(
        r.body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        BUDGET / 4
    );
    mock.set(Behaviour::Stream {
        content_type: "application/json",
        frames: fits.chunks(4096).map(<[u8]>::to_vec).collect(),
        gap: Duration::ZERO,
        tail: Tail::End,
    });
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
    let status = wait_until_returned(&app).await;
    assert_eq!(
        status,
        json!({"limit_bytes": BUDGET, "in_use_bytes": 0, "refused": 2})
    );
}

/// The budget is shared: while one answer is being read, another that would not fit beside
/// it is refused; once the first is done, the second fits.
#[actix_web::test]
async fn concurrent_answers_share_the_budget() {
    // The first answer: its first 150 KB at once, the rest 3 s later.
    let first = completion_of(150_000);
    let (head, tail) = first.split_at(150_000);
    let mock = MockUpstream::start(Behaviour::Stream {
        content_type: "application/json",
        frames: vec![head.to_vec(), tail.to_vec()],
        gap: Duration::from_secs(3),
        tail: Tail::End,
    })
    .await;
    let app = app_with_budget(BUDGET).await;
    let key = configure_openai(&app, &mock, json!({})).await;
    // The read timeout bounds the whole answer: leave room for the 3 s pause.
    let r = app
        .patch(
            "/services/openai",
            json!({"timeouts": {"connect_ms": 1000, "read_ms": 10000}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let slow = {
        let (client, url, key) = (
            app.client.clone(),
            format!("{}/openai/chat", app.proxy),
            key.clone(),
        );
        actix_web::rt::spawn(async move {
            let mut resp = client
                .post(url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .timeout(Duration::from_secs(30))
                .send_json(&hello())
                .await
                .expect("proxy request");
            let body = resp.body().limit(4 * 1024 * 1024).await.expect("body");
            (resp.status().as_u16(), body)
        })
    };
    // The first answer's head has been read once its bytes are reserved.
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let held = buffer_status(&app).await["in_use_bytes"].as_u64().unwrap();
        if held >= 150_000 {
            break held;
        }
        assert!(
            Instant::now() < deadline,
            "the first answer was never reserved"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(held <= BUDGET as u64, "{held}");

    // A second answer of 120 KB does not fit beside it.
    let second = completion_of(120_000);
    mock.set(Behaviour::Reply(200, "application/json", second));
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_memory_exhausted(r.status, &r.body, &r.text);

    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body[..200]));
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len(),
        150_000
    );
    assert_eq!(wait_until_returned(&app).await["in_use_bytes"], 0);
    let r = chat(&app, "/openai/chat", &key, hello()).await;
    assert_eq!(r.status, 200, "{}", &r.text[..r.text.len().min(300)]);
}

/// Streamed pieces count while they wait in the channel: a stream of ordinary events runs
/// under the budget and gives everything back; under a budget smaller than one piece the
/// stream ends with an in-band `gateway_memory_exhausted` error (the head was sent).
#[actix_web::test]
async fn streamed_pieces_are_reserved_and_a_piece_past_the_budget_ends_the_stream() {
    let words = ["Hello", " there", ", friend"];
    let frames = openai_sse(&words, Some((5, 3)));
    let smallest = frames.iter().map(Vec::len).min().unwrap();
    let mock = MockUpstream::start(sse(frames, 5, Tail::End)).await;
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "stream": true});

    let app = app_with_budget(BUDGET).await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let ok = stream(&app, "/openai/chat", &key, body.clone()).await;
    assert_eq!(ok.status, 200, "{}", ok.raw);
    assert!(ok.ends_with_done(), "{}", ok.raw);
    assert_eq!(ok.text(), words.concat());
    let status = wait_until_returned(&app).await;
    assert_eq!(
        status,
        json!({"limit_bytes": BUDGET, "in_use_bytes": 0, "refused": 0})
    );

    // Each event is written as one chunk of at least `smallest` bytes: no piece fits.
    let tiny = smallest / 2;
    let app = app_with_budget(tiny).await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let cut = stream(&app, "/openai/chat", &key, body).await;
    assert_eq!(cut.status, 200, "the head was already sent: {}", cut.raw);
    assert!(!cut.ends_with_done(), "{}", cut.raw);
    let error = cut
        .frames
        .iter()
        .find(|f| f.get("error").is_some())
        .unwrap_or_else(|| panic!("no in-band error in {}", cut.raw));
    assert_eq!(
        error["error"]["code"], "gateway_memory_exhausted",
        "{error}"
    );
    let status = wait_until_returned(&app).await;
    assert_eq!(status["in_use_bytes"], 0, "{status}");
    assert_eq!(status["refused"], 1, "{status}");
}

/// The key is validated with the rest of the configuration.
#[test]
fn a_zero_budget_is_a_configuration_error() {
    let env = [(
        "TOLLGATE_MAX_BUFFERED_UPSTREAM_BYTES".to_string(),
        "0".to_string(),
    )];
    let err = tollgate::config::Settings::load_from(None, &env).unwrap_err();
    assert!(
        err.to_string().contains("max_buffered_upstream_bytes"),
        "{err}"
    );
    let env = [(
        "TOLLGATE_MAX_BUFFERED_UPSTREAM_BYTES".to_string(),
        "1048576".to_string(),
    )];
    let settings = tollgate::config::Settings::load_from(None, &env).unwrap();
    assert_eq!(settings.max_buffered_upstream_bytes, 1_048_576);
    assert_eq!(
        tollgate::config::Settings::default().max_buffered_upstream_bytes,
        256 * 1024 * 1024
    );
}
