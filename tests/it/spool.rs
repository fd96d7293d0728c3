//! The usage spool with the real binary (docs/architecture.md, "The usage spool"): a
//! SIGKILL under load loses no request whose response completed more than 50 ms before the
//! kill, and streams in flight are billed from their `begin` record; a SIGTERM while the
//! database refuses writes exits 0 and the next start writes every request once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tollgate::config::Settings;
use tollgate::store::{self, UsageQuery};

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::process::{Env, Server, client};
use crate::support::proxy::{configure_openai, openai_completion};

/// `(requests, errors, prompt tokens)` stored for every tenant.
async fn stored(settings: &Settings) -> (i64, i64, i64) {
    let store = store::connect(&settings.database_url())
        .await
        .expect("open the store");
    let rows = store
        .query_usage(&UsageQuery {
            from: Utc::now() - chrono::Duration::days(1),
            to: Utc::now() + chrono::Duration::days(1),
            tenant_id: None,
        })
        .await
        .expect("usage");
    store.close().await;
    rows.iter().fold((0, 0, 0), |t, r| {
        (t.0 + r.requests, t.1 + r.errors, t.2 + r.prompt_tokens)
    })
}

/// Waits until the stored request count is at least `at_least` and has not moved for a
/// second (the first write after a start counts what the spool holds at once).
async fn settled(settings: &Settings, at_least: i64) -> (i64, i64, i64) {
    let until = Instant::now() + Duration::from_secs(30);
    let mut last = stored(settings).await;
    let mut since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = stored(settings).await;
        if now != last {
            last = now;
            since = Instant::now();
        }
        if (last.0 >= at_least && since.elapsed() > Duration::from_secs(3))
            || Instant::now() > until
        {
            return last;
        }
    }
}

fn chunk(text: &str) -> Vec<u8> {
    format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
    )
    .into_bytes()
}

fn sigkill(server: &mut Server) {
    let pid = server.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-KILL", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success());
}

/// The gateway (the real binary) under steady load is killed with SIGKILL; the next start
/// finds in the spool every request whose answer the client had 50 ms before the kill,
/// nothing twice, and the streams that were open, billed as errors.
#[actix_web::test]
async fn a_sigkill_under_load_loses_no_finished_request() {
    let mock = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, openai_completion())),
        streamed: Box::new(Behaviour::Stream {
            content_type: "text/event-stream",
            frames: vec![chunk("Hel")],
            gap: Duration::from_millis(1),
            tail: Tail::Hang,
        }),
    })
    .await;
    let app = crate::support::spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let (settings, _dir) = app.shut_down().await;
    let env = Env::for_settings(&settings).set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true");
    let mut server = env.serve();
    let client = client();
    let url = format!("{}/openai/chat", server.proxy);

    // Three streams that never end: in flight at the kill.
    const STREAMS: i64 = 3;
    let mut open = Vec::new();
    for i in 0..STREAMS {
        let mut resp = client
            .post(&url)
            .insert_header(("Authorization", format!("Bearer {key}")))
            .send_json(&json!({"stream": true, "messages": [{"role": "user",
                               "content": format!("a long story {i}: {}",
                                   (0..100).map(|n| n.to_string()).collect::<Vec<_>>().join(" "))}]}))
            .await
            .expect("stream starts");
        assert_eq!(resp.status().as_u16(), 200);
        // The first frame arrived: the stream is under way.
        let _ = futures::StreamExt::next(&mut resp).await;
        open.push(resp);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let done: Arc<Mutex<Vec<Instant>>> = Arc::default();
    const AT_ONCE: usize = 32;
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (client, url, key) = (client.clone(), url.clone(), key.clone());
            let (stop, sent, done) = (stop.clone(), sent.clone(), done.clone());
            actix_web::rt::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut resp) = client
                        .post(&url)
                        .insert_header(("Authorization", format!("Bearer {key}")))
                        .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
                        .await
                    else {
                        return;
                    };
                    let status = resp.status().as_u16();
                    if resp.body().await.is_err() || status != 200 {
                        return;
                    }
                    done.lock().unwrap().push(Instant::now());
                }
            })
        })
        .collect();
    let load_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    sigkill(&mut server);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    drop(open);
    let (_, output) = server.stop_async().await;
    let done = done.lock().unwrap().clone();
    let before_kill = done.iter().filter(|t| **t <= killed_at).count() as i64;
    let safe = done
        .iter()
        .filter(|t| **t + Duration::from_millis(50) <= killed_at)
        .count() as i64;
    let sent = sent.load(Ordering::Relaxed) as i64;
    let rate = before_kill as f64 / killed_at.duration_since(load_started).as_secs_f64();
    println!(
        "load: {before_kill} answered before the kill ({rate:.0} requests/s), {safe} of them \
         50 ms or more before it; {sent} sent"
    );

    // The next start counts the dead run's spool.
    let restarted = env.serve();
    let (requests, errors, prompt) = settled(&settings, safe + STREAMS).await;
    println!("stored after the restart: {requests} requests, {errors} errors");
    assert!(
        requests >= safe + STREAMS,
        "{requests} stored < {safe} answered ≥ 50 ms before the kill + {STREAMS} open streams\n{output}"
    );
    assert!(
        requests <= sent + STREAMS,
        "{requests} stored > {sent} sent + {STREAMS} streams: something counted twice"
    );
    assert_eq!(
        errors, STREAMS,
        "the interrupted streams, and nothing else, are errors"
    );
    // 12 prompt tokens per whole answer, plus the streams' estimates (100 numbers each).
    assert!(
        prompt >= (requests - STREAMS) * 12 + STREAMS * 50,
        "{prompt} prompt tokens"
    );
    let (status, _) = restarted.stop_async().await;
    assert!(status.success());

    // Another start finds nothing more to count.
    let again = env.serve();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(stored(&settings).await, (requests, errors, prompt));
    let (status, _) = again.stop_async().await;
    assert!(status.success());
    mock.stop().await;
}

/// Holds the database's write lock (SQLite: an exclusive transaction; PostgreSQL: an
/// exclusive lock on the usage tables) until dropped: every usage write fails or waits.
struct WriteBlock {
    _conn: Box<dyn std::any::Any>,
}

async fn block_writes(settings: &Settings) -> WriteBlock {
    use sqlx::Connection;
    let url = settings.database_url();
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .expect("exclusive lock");
        WriteBlock {
            _conn: Box::new(conn),
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("postgres");
        sqlx::query("BEGIN")
            .execute(&mut conn)
            .await
            .expect("begin");
        sqlx::query("LOCK TABLE usage_spool, usage_minutes IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .expect("lock");
        WriteBlock {
            _conn: Box::new(conn),
        }
    }
}

/// SIGTERM while the database takes no writes: the stop exits 0 (the spool has the usage,
/// the log says so); the next start, with the database back, writes every request once.
#[actix_web::test]
async fn a_sigterm_during_a_database_outage_keeps_usage_for_the_next_start() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = crate::support::spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let (settings, _dir) = app.shut_down().await;
    let before = stored(&settings).await.0;
    let env = Env::for_settings(&settings).set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true");
    let server = env.serve();
    let block = block_writes(&settings).await;
    let client = client();
    const REQUESTS: i64 = 300;
    for chunk in 0..REQUESTS / 30 {
        let replies = futures::future::join_all((0..30).map(|i| {
            let client = client.clone();
            let url = format!("{}/openai/chat", server.proxy);
            let key = key.clone();
            async move {
                let mut resp = client
                    .post(url)
                    .insert_header(("Authorization", format!("Bearer {key}")))
                    .send_json(&json!({"messages": [{"role": "user",
                                                     "content": format!("hi {chunk} {i}")}]}))
                    .await
                    .expect("answer");
                let _ = resp.body().await;
                resp.status().as_u16()
            }
        }))
        .await;
        assert!(replies.iter().all(|s| *s == 200), "{replies:?}");
    }
    let started = Instant::now();
    let (status, output) = server.stop_async().await;
    println!("stopped in {:?}", started.elapsed());
    assert!(status.success(), "exit {status}: \n{output}");
    assert!(
        output.contains("stays in the spool"),
        "the log says where the usage is:\n{output}"
    );
    drop(block);
    assert_eq!(
        stored(&settings).await.0,
        before,
        "nothing written meanwhile"
    );

    let server = env.serve();
    let (requests, errors, _) = settled(&settings, before + REQUESTS).await;
    assert_eq!(requests, before + REQUESTS, "every request once");
    assert_eq!(errors, 0);
    let (status, _) = server.stop_async().await;
    assert!(status.success());
    mock.stop().await;
}
