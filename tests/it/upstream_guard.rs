//! The upstream hop's guards (docs/architecture.md, "Upstream pools and the address
//! guard"): redirects are never followed, every address the gateway dials — names and IP
//! literals alike — is checked at connect time, and what the tenant hears about a failed
//! upstream names no host and no configuration variable while the operator's log keeps
//! the detail.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream, RecordingListener};
use crate::support::process::{Env, client as process_client};
use crate::support::proxy::{
    ProxyReply, UPSTREAM_SECRET, chat, configure_openai, new_key, openai_completion,
};
use crate::support::{TestApp, spawn_app, start};

fn hello(stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "the secret prompt"}], "stream": stream})
}

fn message(r: &ProxyReply) -> &str {
    r.body["error"]["message"].as_str().unwrap_or_default()
}

/// An upstream answering 3xx towards another local port: the client gets 502 naming the
/// status, streamed or not, on a translated and a `preserve` route — and the redirect's
/// target receives nothing, not even a connection (so no credential and no prompt).
#[actix_web::test]
async fn redirects_are_never_followed_and_their_target_hears_nothing() {
    let target = RecordingListener::start().await;
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let r = app
        .post(
            "/routes",
            json!({"name": "raw", "paths": ["/raw"], "service": "openai",
                   "route_type": "preserve", "model": {"name": "gpt-4o"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = chat(&app, "/openai/chat", &key, hello(false)).await;
    assert_eq!(
        r.status, 200,
        "the service works before it redirects: {}",
        r.text
    );

    let mut sent = mock.received().len();
    for status in [301, 302, 303, 307, 308] {
        mock.set(Behaviour::Redirect {
            status,
            location: format!("{}/v1/chat/completions", target.base),
        });
        for (path, stream) in [
            ("/openai/chat", false),
            ("/openai/chat", true),
            ("/raw", false),
        ] {
            let r = chat(&app, path, &key, hello(stream)).await;
            let case = format!("{status} on {path}, stream {stream}");
            assert_eq!(r.status, 502, "{case}: {}", r.text);
            assert_eq!(
                message(&r),
                format!("upstream answered with a redirect ({status}); redirects are not followed"),
                "{case}"
            );
            assert_eq!(r.body["error"]["type"], "upstream_error", "{case}");
            assert_eq!(r.body["error"]["code"], "upstream_redirect", "{case}");
            sent += 1;
            assert_eq!(
                mock.received().len(),
                sent,
                "{case}: the upstream itself was asked"
            );
        }
    }
    // A follower would have connected by now; give a late one time to show itself.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.connections(), 0, "the redirect target was dialled");
    let got = target.received();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    // The credential and the prompt did reach the configured upstream (the test's premise).
    let last = mock.last();
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {UPSTREAM_SECRET}").as_str())
    );
}

/// Services at 127.0.0.1, at `localhost` and at `[::ffff:127.0.0.1]`, created while private
/// upstreams were allowed, each with a route `/<name>`; returns the tenant key.
async fn loopback_services(app: &TestApp, port: u16) -> String {
    crate::support::proxy::acme_with_credential(app, "k").await;
    for (name, host) in [
        ("literal", "127.0.0.1"),
        ("name", "localhost"),
        ("mapped", "[::ffff:127.0.0.1]"),
    ] {
        let r = app
            .post(
                "/services",
                json!({"name": name, "provider": "openai", "credential": "k",
                       "upstream_url": format!("http://{host}:{port}/v1/chat/completions"),
                       "timeouts": {"connect_ms": 2000, "read_ms": 2000}}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: {}", r.text);
        let r = app
            .post(
                "/routes",
                json!({"name": name, "paths": [format!("/{name}")], "service": name,
                       "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
            )
            .await;
        assert_eq!(r.status, 201, "{name}: {}", r.text);
    }
    new_key(app, "acme", json!({"name": "app"})).await
}

const LOOPBACK_ROUTES: [&str; 3] = ["/literal", "/name", "/mapped"];

/// What a tenant may learn about a refused or failed upstream: nothing about the host or
/// the gateway's configuration.
fn assert_tells_nothing_internal(case: &str, text: &str, port: u16) {
    for leak in [
        "127.0.0.1",
        "localhost",
        "::ffff",
        "TOLLGATE_",
        "nowhere.invalid",
        &port.to_string(),
    ] {
        assert!(
            !text.contains(leak),
            "{case}: the client learns {leak:?}: {text}"
        );
    }
}

/// Saved while private upstreams were allowed, refused at connect time once they are not
/// (the same database, the gateway restarted with the setting off): an IP literal, a name
/// that resolves to loopback and an IPv4-mapped IPv6 literal alike. Nothing reaches the
/// upstream, and the tenant learns no host and no setting.
#[actix_web::test]
async fn a_service_saved_while_private_upstreams_were_allowed_is_refused_once_they_are_not() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let port: u16 = mock.base.rsplit(':').next().unwrap().parse().unwrap();
    let app = spawn_app().await;
    let key = loopback_services(&app, port).await;
    for path in LOOPBACK_ROUTES {
        let r = chat(&app, path, &key, hello(false)).await;
        assert_eq!(r.status, 200, "{path} works while allowed: {}", r.text);
    }
    let reached = mock.received().len();
    assert_eq!(reached, LOOPBACK_ROUTES.len());

    let (mut settings, dir) = app.shut_down().await;
    settings.allow_private_upstreams = false;
    let app = start(settings, dir).await;
    for path in LOOPBACK_ROUTES {
        for stream in [false, true] {
            let case = format!("{path}, stream {stream}");
            let r = chat(&app, path, &key, hello(stream)).await;
            assert_eq!(r.status, 502, "{case}: {}", r.text);
            assert_eq!(
                message(&r),
                "the upstream destination is not allowed (a private or loopback address)",
                "{case}"
            );
            assert_eq!(r.body["error"]["code"], "upstream_destination_not_allowed");
            assert_tells_nothing_internal(&case, &r.text, port);
        }
    }
    assert_eq!(
        mock.received().len(),
        reached,
        "a refused destination received a request"
    );
}

/// The real binary on a database whose services point at loopback and at a name that does
/// not resolve, with private upstreams off: the tenant gets generic 502s, the operator's
/// log names the host, the address and the range that refused it.
#[actix_web::test]
async fn the_tenant_gets_a_generic_error_and_the_log_keeps_the_detail() {
    let target = RecordingListener::start().await;
    let app = spawn_app().await;
    let key = loopback_services(&app, target.port).await;
    let r = app
        .post(
            "/services",
            json!({"name": "gone", "provider": "openai",
                   "upstream_url": "http://nowhere.invalid/v1/chat/completions",
                   "timeouts": {"connect_ms": 3000, "read_ms": 3000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "gone", "paths": ["/gone"], "service": "gone",
                   "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (settings, _dir) = app.shut_down().await;

    let server = Env::for_settings(&settings)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "false")
        .serve();
    let client = process_client();
    let ask = |path: &'static str| {
        let (client, proxy, key) = (client.clone(), server.proxy.clone(), key.clone());
        async move {
            let mut resp = client
                .post(format!("{proxy}{path}"))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .send_json(&hello(false))
                .await
                .unwrap();
            let body = resp.body().await.unwrap();
            (
                resp.status().as_u16(),
                String::from_utf8_lossy(&body).into_owned(),
            )
        }
    };
    for path in LOOPBACK_ROUTES {
        let (status, text) = ask(path).await;
        assert_eq!(status, 502, "{path}: {text}");
        assert!(
            text.contains("the upstream destination is not allowed"),
            "{path}: {text}"
        );
        assert_tells_nothing_internal(path, &text, target.port);
    }
    let (status, text) = ask("/gone").await;
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("upstream unreachable"), "{text}");
    assert_tells_nothing_internal("/gone", &text, target.port);

    let (_, log) = server.stop_async().await;
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("upstream destination refused"))
        .collect();
    for (host, addresses) in [
        ("127.0.0.1", &["127.0.0.1"][..]),
        ("localhost", &["127.0.0.1", "::1"][..]),
        ("[::ffff:127.0.0.1]", &["::ffff:127.0.0.1"][..]),
    ] {
        assert!(
            refusals
                .iter()
                .any(|l| l.contains(&format!("host=\"{host}\""))
                    && addresses
                        .iter()
                        .any(|a| l.contains(&format!("address={a} ")))
                    && l.contains("range=")),
            "no refusal naming {host}, its address and the range:\n{log}"
        );
    }
    assert!(
        log.lines()
            .any(|l| l.contains("upstream call failed") && l.contains("nowhere.invalid")),
        "the unreachable host is not in the log:\n{log}"
    );
    assert_eq!(target.connections(), 0, "a refused destination was dialled");
}
