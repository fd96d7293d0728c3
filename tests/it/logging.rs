//! A broken log sink never stops the gateway (docs/architecture.md, "The process log"):
//! the real binary with its stdout and stderr pipes closed keeps answering, counts what it
//! could not log, and stops cleanly on SIGTERM; a SIGTERM right after "Tollgate listening"
//! is a graceful stop too.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::process::{Env, call, caught_signals, client, login};
use crate::support::proxy::{configure_openai, openai_completion};
use crate::support::{ADMIN_PASSWORD, start};

const SIGINT: u64 = 1 << (2 - 1);
const SIGTERM: u64 = 1 << (15 - 1);

#[actix_web::test]
async fn closed_stdout_and_stderr_never_stop_the_gateway() {
    broken_output_never_stops_the_gateway(false).await;
}

/// Pipes that nobody reads fill up and then block every write: workers still answer and
/// the stop is not held up by the stalled writers.
#[actix_web::test]
async fn stalled_stdout_and_stderr_never_stop_the_gateway() {
    broken_output_never_stops_the_gateway(true).await;
}

async fn broken_output_never_stops_the_gateway(stall: bool) {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    // Configure through an in-process app (analytics lines with payloads on: they go to
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
    let env = Env::for_settings(&settings)
        .set("TOLLGATE_DRAIN_TIMEOUT", "10s")
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .set("TOLLGATE_ANALYTICS_LOG", "stdout")
        // Every admin request and proxied request leaves log lines behind (enough to fill
        // a stalled pipe at trace).
        .set("RUST_LOG", if stall { "trace" } else { "debug" });
    let server = if stall {
        env.serve_then_stall_output()
    } else {
        env.serve_then_close_output()
    };
    let client = client();

    // Proxy traffic, several requests at once; enough to fill a 64 KiB pipe with
    // analytics lines.
    let rounds: u64 = if stall { 8 } else { 1 };
    const AT_ONCE: u64 = 24;
    for round in 0..rounds {
        let replies = futures::future::join_all((0..AT_ONCE).map(|i| {
            let client = client.clone();
            let url = format!("{}/openai/chat", server.proxy);
            let key = key.clone();
            let padding = "x".repeat(400);
            async move {
                let mut resp = client
                    .post(url)
                    .insert_header(("Authorization", format!("Bearer {key}")))
                    .send_json(&json!({"messages": [{"role": "user",
                                                     "content": format!("hi {round} {i} {padding}")}]}))
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
    let dropped = body["process_log"]["dropped"]
        .as_u64()
        .unwrap_or_else(|| panic!("process_log.dropped in {text}"));
    if stall {
        // Nothing failed: the lines wait in the queue (or are dropped when it is full).
        assert_eq!(failures, 0, "{text}");
    } else {
        assert!(failures > 0, "failed log writes are counted: {text}");
        assert_eq!(dropped, 0, "{text}");
        // The analytics lines went to the closed stdout: counted too.
        assert!(
            body["analytics"]["write_failures"].as_u64() > Some(0),
            "failed analytics writes are counted: {text}"
        );
    }

    let stopping = Instant::now();
    let (exit, output) = if stall {
        let (exit, output, left) = server.stop_stalled().await;
        // The pipes really were full while the process stopped: a pipe holds 64 KiB, the
        // analytics lines alone (each with its 400-byte padding) are more than that, and a
        // write that does not fit whole blocks.
        assert!(left[0] >= 48 * 1024, "stdout held {} bytes", left[0]);
        assert!(left[1] >= 48 * 1024, "stderr held {} bytes", left[1]);
        (exit, output)
    } else {
        server.stop_async().await
    };
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
    assert_eq!(requests, rounds * AT_ONCE, "{}", r.text);
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
