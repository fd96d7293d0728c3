//! Usage from the proxy to `/usage`, end to end (docs/behaviour.md, "Admin resources",
//! "Usage, analytics and telemetry"): every proxied request — whole, streamed, cut short by
//! its client, failed upstream, refused by a check — is counted once, its tokens exactly as
//! the gateway accounted them, visible within 10 s, and nothing is lost across a graceful
//! stop and a restart.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{chat, configure_openai, openai_completion};
use crate::support::streaming::{analytics_lines, openai_sse, sse, stream};
use crate::support::{TestApp, start};

/// Sums of `/usage` rows: (requests, errors, prompt, completion).
async fn usage_totals(app: &TestApp, query: &str) -> (u64, u64, u64, u64) {
    let r = app.get(&format!("/usage{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = r.body["data"].as_array().expect("data").clone();
    let sum = |k: &str| {
        data.iter()
            .map(|row| row[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    for row in &data {
        assert_eq!(
            row["total_tokens"].as_u64(),
            Some(
                row["prompt_tokens"].as_u64().unwrap() + row["completion_tokens"].as_u64().unwrap()
            )
        );
    }
    (
        sum("requests"),
        sum("errors"),
        sum("prompt_tokens"),
        sum("completion_tokens"),
    )
}

async fn wait_for_usage(app: &TestApp, requests: u64) -> (u64, u64, u64, u64) {
    let started = Instant::now();
    loop {
        let totals = usage_totals(app, "").await;
        if totals.0 >= requests || started.elapsed() > Duration::from_secs(10) {
            return totals;
        }
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }
}

#[actix_web::test]
async fn every_request_is_counted_once_with_its_tokens_across_a_restart() {
    let words: Vec<String> = (0..5).map(|i| format!("w{i} ")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, openai_completion())),
        streamed: Box::new(sse(openai_sse(&words, Some((12, 5))), 0, Tail::End)),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("analytics.log");
    let database = crate::support::fresh_database_url(dir.path()).await;
    let mut settings = crate::support::test_settings(dir.path(), database);
    settings.analytics_log = log.display().to_string();
    let app = start(settings, dir).await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let hello = || json!({"messages": [{"role": "user", "content": "Say hello"}]});

    // 5 whole answers (12 + 3 tokens each).
    for _ in 0..5 {
        assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 200);
    }
    // 4 streams (12 + 5 each), half of them asking for the usage chunk.
    for i in 0..4 {
        let mut body = hello();
        body["stream"] = json!(true);
        if i % 2 == 0 {
            body["stream_options"] = json!({"include_usage": true});
        }
        let s = stream(&app, "/openai/chat", &key, body).await;
        assert!(s.ends_with_done(), "{}", s.raw);
    }
    // 3 streams the client walks away from after the first words.
    let long: Vec<String> = (0..200).map(|i| format!("x{i:03}")).collect();
    let long: Vec<&str> = long.iter().map(String::as_str).collect();
    mock.set(sse(openai_sse(&long, Some((12, 200))), 20, Tail::End));
    for _ in 0..3 {
        let mut body = hello();
        body["stream"] = json!(true);
        let mut resp = app
            .client
            .post(format!("{}/openai/chat", app.proxy))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&body)
            .await
            .unwrap();
        let mut got = String::new();
        while got.matches("\"content\":\"x").count() < 2 {
            let piece = resp.next().await.unwrap().unwrap();
            got.push_str(&String::from_utf8_lossy(&piece));
        }
        drop(resp);
    }
    // 2 upstream failures and 1 request refused before it went anywhere.
    mock.set(Behaviour::json(
        500,
        json!({"error": {"message": "boom", "type": "server_error"}}),
    ));
    for _ in 0..2 {
        assert_eq!(chat(&app, "/openai/chat", &key, hello()).await.status, 500);
    }
    let refused = chat(&app, "/openai/chat", &key, json!({"messages": []})).await;
    assert_eq!(refused.status, 400);
    let requests: u64 = 5 + 4 + 3 + 2 + 1;

    // The gateway's own per-request accounting: one analytics line per request that
    // reached the provider (the refused one did not).
    let lines = analytics_lines(&log, (requests - 1) as usize).await;
    assert_eq!(lines.len() as u64, requests - 1, "{lines:?}");
    let tokens = |k: &str| {
        lines
            .iter()
            .map(|l| l["ai"]["proxy"]["usage"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    let (prompt, completion) = (tokens("prompt_tokens"), tokens("completion_tokens"));
    // Exact for what completed: 5 × (12, 3) + 4 × (12, 5); the cut streams add their
    // prompt estimate and what was streamed before the cancel.
    let disconnected: Vec<&Value> = lines
        .iter()
        .filter(|l| l["tollgate"]["stream_end"] == "client_disconnected")
        .collect();
    assert_eq!(disconnected.len(), 3);
    let cut = |k: &str| {
        disconnected
            .iter()
            .map(|l| l["ai"]["proxy"]["usage"][k].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(prompt, 5 * 12 + 4 * 12 + cut("prompt_tokens"));
    assert_eq!(completion, 5 * 3 + 4 * 5 + cut("completion_tokens"));
    assert!(
        cut("completion_tokens") >= 3 * 2,
        "at least what the clients saw"
    );

    // Visible in /usage within 10 s, without a restart.
    let live = wait_for_usage(&app, requests).await;
    assert_eq!(live, (requests, 3, prompt, completion));

    // Stop gracefully, restart on the same database: the same numbers, nothing doubled.
    let (settings, dir) = app.shut_down().await;
    let app = start(settings, dir).await;
    assert_eq!(
        usage_totals(&app, "").await,
        (requests, 3, prompt, completion)
    );
    let by_model = app.get("/usage?group_by=tenant,model&bucket=day").await;
    assert_eq!(by_model.status, 200, "{}", by_model.text);
    let rows = by_model.body["data"].as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["tenant"] == "acme" && r["model"] == "gpt-4o"),
        "{rows:?}"
    );
}

#[actix_web::test]
async fn a_stop_waits_for_a_stream_in_flight_and_counts_it() {
    let words: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // 20 words 30 ms apart: the stream is still running when the stop comes.
    let mock = MockUpstream::start(sse(openai_sse(&words, Some((7, 20))), 30, Tail::End)).await;
    let dir = tempfile::tempdir().unwrap();
    let database = crate::support::fresh_database_url(dir.path()).await;
    let mut settings = crate::support::test_settings(dir.path(), database);
    settings.drain_timeout = "5s".into();
    let app = start(settings, dir).await;
    let key = configure_openai(&app, &mock, json!({})).await;

    let proxy = app.proxy.clone();
    let client = app.client.clone();
    let in_flight = actix_web::rt::spawn(async move {
        let mut resp = client
            .post(format!("{proxy}/openai/chat"))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&json!({"stream": true, "messages": [{"role": "user", "content": "go"}]}))
            .await
            .unwrap();
        let body = resp.body().limit(1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    });
    actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    let (settings, dir) = app.shut_down().await;
    let raw = in_flight.await.unwrap();
    assert!(
        raw.ends_with("data: [DONE]\n\n"),
        "the stream finished: {raw}"
    );
    assert!(raw.contains("s19"));

    let app = start(settings, dir).await;
    assert_eq!(usage_totals(&app, "").await, (1, 0, 7, 20));
}

/// The real binary and a real SIGTERM: the stream in flight finishes, the process exits
/// cleanly after writing its usage, and a restarted node finds every request.
#[actix_web::test]
async fn sigterm_lets_the_stream_finish_and_writes_every_request() {
    let words: Vec<String> = (0..15).map(|i| format!("t{i:02}")).collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let mock = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, openai_completion())),
        streamed: Box::new(sse(openai_sse(&words, Some((9, 15))), 40, Tail::End)),
    })
    .await;
    // Configure through an in-process app, then hand its database to the binary.
    let app = crate::support::spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let (settings, dir) = app.shut_down().await;
    let server = crate::support::process::Env::for_settings(&settings)
        .set("TOLLGATE_DRAIN_TIMEOUT", "10s")
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .serve();
    let client = crate::support::process::client();
    for _ in 0..3 {
        let mut resp = client
            .post(format!("{}/openai/chat", server.proxy))
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.body().await.unwrap();
    }
    let proxy = server.proxy.clone();
    let stream_key = key.clone();
    let in_flight = actix_web::rt::spawn(async move {
        let mut resp = crate::support::process::client()
            .post(format!("{proxy}/openai/chat"))
            .insert_header(("Authorization", format!("Bearer {stream_key}")))
            .send_json(&json!({"stream": true, "messages": [{"role": "user", "content": "go"}]}))
            .await
            .unwrap();
        let body = resp.body().limit(1 << 20).await.unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let (status, output) = server.stop_async().await;
    let raw = in_flight.await.unwrap();
    assert!(status.success(), "exit {status}:\n{output}");
    assert!(
        raw.ends_with("data: [DONE]\n\n") && raw.contains("t14"),
        "{raw}\n{output}"
    );
    assert!(output.contains("usage written at shutdown"), "{output}");

    let app = start(settings, dir).await;
    assert_eq!(usage_totals(&app, "").await, (4, 0, 3 * 12 + 9, 3 * 3 + 15));
}
