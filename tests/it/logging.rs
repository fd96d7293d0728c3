//! A broken log sink never stops the gateway (docs/architecture.md, "The process log"):
//! the real binary with its stdout and stderr pipes closed keeps answering, counts what it
//! could not log, and stops cleanly on SIGTERM; a SIGTERM right after "Tollgate listening"
//! is a graceful stop too.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::mock_upstream::{Behaviour, MockUpstream};
use crate::process::{Env, call, caught_signals, client, login};
use crate::proxy::{configure_openai, openai_completion};
use crate::support::{ADMIN_PASSWORD, start};

const SIGINT: u64 = 1 << (2 - 1);
const SIGTERM: u64 = 1 << (15 - 1);

#[actix_web::test]
async fn closed_stdout_and_stderr_never_stop_the_gateway() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    // Configure through an in-process app (analytics lines on: they go to the closed
    // stdout), then hand its database to the binary.
    let app = crate::support::spawn_app().await;
    let key = configure_openai(
        &app,
        &mock,
        json!({"logging": {"log_statistics": true, "log_payloads": true}}),
    )
    .await;
    let (settings, dir) = app.shut_down().await;
    let drain = Duration::from_secs(10);
    let server = Env::for_settings(&settings)
        .set("TOLLGATE_DRAIN_TIMEOUT", "10s")
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .set("TOLLGATE_ANALYTICS_LOG", "stdout")
        // Every admin request and proxied request leaves log lines behind.
        .set("RUST_LOG", "debug")
        .serve_then_close_output();
    let client = client();

    // Proxy traffic, several requests at once.
    const REQUESTS: u64 = 24;
    let replies = futures::future::join_all((0..REQUESTS).map(|i| {
        let client = client.clone();
        let url = format!("{}/openai/chat", server.proxy);
        let key = key.clone();
        async move {
            let mut resp = client
                .post(url)
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&json!({"messages": [{"role": "user", "content": format!("hi {i}")}]}))
                .await
                .expect("a proxied request gets an answer");
            let body = resp.body().await.expect("body");
            (resp.status().as_u16(), body)
        }
    }))
    .await;
    for (status, body) in &replies {
        assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
        assert!(String::from_utf8_lossy(body).contains("Hello there"));
    }

    // Admin logins, failed ones (logged as warnings) and a good one.
    for _ in 0..3 {
        let body = json!({"username": "admin\nforged", "password": "wrong"});
        let (status, _, text) = call(
            &client,
            &server.admin,
            "POST",
            "/auth/login",
            None,
            Some(body),
        )
        .await;
        assert_eq!(status, 401, "{text}");
    }
    let token = login(&client, &server.admin, "admin", ADMIN_PASSWORD).await;

    // The counter is the record of what the log lost.
    let (status, body, text) =
        call(&client, &server.admin, "GET", "/status", Some(&token), None).await;
    assert_eq!(status, 200, "{text}");
    let failures = body["process_log"]["write_failures"]
        .as_u64()
        .unwrap_or_else(|| panic!("process_log.write_failures in {text}"));
    assert!(failures > 0, "failed log writes are counted: {text}");
    assert_eq!(body["process_log"]["dropped"].as_u64(), Some(0), "{text}");

    let stopping = Instant::now();
    let (exit, output) = server.stop_async().await;
    let took = stopping.elapsed();
    assert!(exit.success(), "exit {exit}:\n{output}");
    assert!(took < drain, "stopped in {took:?}");

    // Every answered request was recorded.
    let app = start(settings, dir).await;
    let r = app.get("/usage").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let requests: u64 = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|row| row["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(requests, REQUESTS, "{}", r.text);
}

/// The SIGTERM handler is in place before the listeners announce themselves: the process
/// already catches SIGTERM and SIGINT when "Tollgate listening" is read, and a SIGTERM sent
/// at once is a graceful stop (exit 0), never the default action (death by signal).
#[actix_web::test]
async fn sigterm_right_after_listening_is_a_clean_stop() {
    let app = crate::support::spawn_app().await;
    let (settings, _dir) = app.shut_down().await;
    for round in 0..5 {
        let mut server = Env::for_settings(&settings).serve();
        let pid = server.pid();
        let caught = caught_signals(pid).expect("the process is running");
        assert_eq!(
            caught & (SIGTERM | SIGINT),
            SIGTERM | SIGINT,
            "round {round}: SIGTERM and SIGINT are caught once listening (SigCgt {caught:x})"
        );
        let (exit, output) = server.stop_async().await;
        assert!(exit.success(), "round {round}: exit {exit}:\n{output}");
        assert!(output.contains("stopping"), "round {round}:\n{output}");
    }
}
