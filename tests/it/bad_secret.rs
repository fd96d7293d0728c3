//! A bad secret never fails open (docs/security.md): a stored credential that cannot be
//! decrypted disables only the services that use it (503 `credential_unavailable`), at
//! start-up and at every reload, while every other change — a key revocation above all —
//! still reaches every node within a second. Also: `last_used_at` of a key is written in
//! batches, and existing data files are tightened to owner-only.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::mock_upstream::{Behaviour, MockUpstream};
use crate::support::process::{self, Env, Server};
use crate::support::proxy::{configure_openai, new_key, openai_completion};
use crate::support::{TestApp, spawn_app};

const BAD_SECRET: &str = "Bearer sk-bad-SECRET-never-shown-9876";
const LOG_LINE: &str = "stored credential cannot be decrypted";

/// Flips a byte of the stored ciphertext of credential `name`'s header value, straight in
/// the database (what a damaged row or a value encrypted under an unknown key looks like).
async fn corrupt_credential(database_url: &str, name: &str) {
    const SELECT: &str = "SELECT header_value FROM credentials WHERE name = $1";
    const UPDATE: &str = "UPDATE credentials SET header_value = $1 WHERE name = $2";
    let flip = |mut ct: Vec<u8>| {
        let last = ct.len() - 1;
        ct[last] ^= 0x5a;
        ct
    };
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let (ct,): (Vec<u8>,) = sqlx::query_as(SELECT)
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        let done = sqlx::query(UPDATE)
            .bind(flip(ct))
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let (ct,): (Vec<u8>,) = sqlx::query_as(SELECT)
            .bind(name)
            .fetch_one(&pool)
            .await
            .unwrap();
        let done = sqlx::query(UPDATE)
            .bind(flip(ct))
            .bind(name)
            .execute(&pool)
            .await
            .unwrap();
        assert_eq!(done.rows_affected(), 1);
        pool.close().await;
    }
}

/// `configure_openai` (credential `openai-key`, service `openai`, route `/openai/chat`,
/// a key) plus credential `bad-key` used by service `broken` behind route `/broken/chat`.
/// Returns the tenant key.
async fn configure(app: &TestApp, mock: &MockUpstream) -> String {
    let key = configure_openai(app, mock, json!({})).await;
    for (path, body) in [
        (
            "/credentials",
            json!({"name": "bad-key", "header_name": "Authorization", "header_value": BAD_SECRET}),
        ),
        (
            "/services",
            json!({"name": "broken", "provider": "openai", "credential": "bad-key",
                   "upstream_url": format!("{}/v1/chat/completions", mock.base)}),
        ),
        (
            "/routes",
            json!({"name": "broken-chat", "paths": ["/broken/chat"], "service": "broken",
                   "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
        ),
    ] {
        let r = app.post(path, body).await;
        assert_eq!(r.status, 201, "{path}: {}", r.text);
    }
    key
}

/// One chat request to a proxy base URL: `(status, body, text)`.
async fn chat(client: &awc::Client, proxy: &str, path: &str, key: &str) -> (u16, Value, String) {
    let mut resp = client
        .post(format!("{proxy}{path}"))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    let bytes = resp.body().limit(1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
    )
}

/// Asserts the 503 `credential_unavailable` answer naming `bad-key` and no secret.
fn assert_credential_unavailable(reply: &(u16, Value, String), what: &str) {
    let (status, body, text) = reply;
    assert_eq!(*status, 503, "{what}: {text}");
    assert_eq!(
        body["error"]["code"], "credential_unavailable",
        "{what}: {text}"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'bad-key'") && message.contains("'broken'"),
        "{what}: {text}"
    );
    assert!(!text.contains("sk-bad-SECRET"), "{what}: {text}");
}

/// Polls `check` every 20 ms until it holds; returns how long that took (panics after 5 s).
async fn until<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: not within 5 s"
        );
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The subprocess node's `/status` and `/readyz`, checked for the disabled service.
async fn assert_degraded(client: &awc::Client, server: &Server, services: Value) {
    let token = process::login(
        client,
        &server.admin,
        "admin",
        crate::support::ADMIN_PASSWORD,
    )
    .await;
    let (status, body, text) =
        process::call(client, &server.admin, "GET", "/status", Some(&token), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["snapshot"]["degraded"], true, "{text}");
    assert_eq!(
        body["snapshot"]["unavailable_credentials"],
        json!([{"credential": "bad-key",
                "reason": body["snapshot"]["unavailable_credentials"][0]["reason"],
                "disabled_services": services}]),
        "{text}"
    );
    let reason = body["snapshot"]["unavailable_credentials"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.starts_with("header_value: "), "{text}");
    assert!(!text.contains("sk-bad-SECRET"), "{text}");
    let (status, body, text) =
        process::call(client, &server.admin, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(body["status"], "degraded", "{text}");
    assert_eq!(
        body["disabled_services"],
        services.as_array().unwrap().len(),
        "{text}"
    );
}

/// A node running from the start sees the credential go bad at the next change (picked
/// up by its poller): the revocation in that change takes effect within a second, only
/// the service with the bad credential is disabled, the error is logged once, and
/// setting the credential again brings the service back.
#[actix_web::test]
async fn a_corrupted_credential_disables_its_services_and_a_revocation_still_applies() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure(&app, &mock).await;
    let doomed = app
        .post("/tenants/acme/keys", json!({"name": "doomed"}))
        .await;
    assert_eq!(doomed.status, 201, "{}", doomed.text);
    let doomed_id = doomed.body["id"].as_str().unwrap().to_string();
    let doomed_key = doomed.body["key"].as_str().unwrap().to_string();

    // A second node on the same database: it learns of changes through its poller.
    let server = Env::for_settings(&app.settings)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .serve();
    let client = process::client();
    for (proxy, what) in [(&app.proxy, "in-process"), (&server.proxy, "node")] {
        assert_eq!(
            chat(&client, proxy, "/broken/chat", &key).await.0,
            200,
            "{what}"
        );
        assert_eq!(
            chat(&client, proxy, "/openai/chat", &doomed_key).await.0,
            200,
            "{what}"
        );
    }

    corrupt_credential(&app.settings.database_url(), "bad-key").await;
    let r = app.delete(&format!("/tenants/acme/keys/{doomed_id}")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let revoked_at = Instant::now();

    // The node that made the change serves it at once.
    let r = chat(&client, &app.proxy, "/openai/chat", &doomed_key).await;
    assert_eq!(r.0, 401, "{}", r.2);
    // The other node within a second, although the new configuration has a bad credential.
    let proxy = server.proxy.clone();
    until("revoked key refused by the node", || {
        let (client, proxy, doomed_key) = (client.clone(), proxy.clone(), doomed_key.clone());
        async move { chat(&client, &proxy, "/openai/chat", &doomed_key).await.0 == 401 }
    })
    .await;
    let took = revoked_at.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "revocation reached the node after {took:?}"
    );

    let upstream_calls = mock.received().len();
    for (proxy, what) in [(&app.proxy, "in-process"), (&server.proxy, "node")] {
        let r = chat(&client, proxy, "/broken/chat", &key).await;
        assert_credential_unavailable(&r, what);
        let r = chat(&client, proxy, "/openai/chat", &key).await;
        assert_eq!(r.0, 200, "{what}: the good service keeps working: {}", r.2);
    }
    // The two good calls reached the provider; the disabled service sent nothing.
    assert_eq!(mock.received().len(), upstream_calls + 2);
    assert_degraded(&client, &server, json!(["broken"])).await;

    // More changes and polls: the unchanged bad credential is not logged again.
    let r = app
        .post("/tenants/acme/keys", json!({"name": "another"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let output = server.output();
    let lines: Vec<&str> = output.lines().filter(|l| l.contains(LOG_LINE)).collect();
    assert_eq!(lines.len(), 1, "logged once per change:\n{output}");
    assert!(
        lines[0].contains("bad-key") && lines[0].contains("broken"),
        "{}",
        lines[0]
    );
    assert!(!output.contains("sk-bad-SECRET"), "{output}");

    // Setting the value again repairs it on every node.
    let r = app
        .patch(
            "/credentials/bad-key",
            json!({"header_value": "Bearer sk-bad-repaired-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    until("repaired service answers on the node", || {
        let (client, proxy, key) = (client.clone(), proxy.clone(), key.clone());
        async move { chat(&client, &proxy, "/broken/chat", &key).await.0 == 200 }
    })
    .await;
    let (status, body, text) =
        process::call(&client, &server.admin, "GET", "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{text}"
    );
    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{output}");
    assert_eq!(output.matches(LOG_LINE).count(), 1, "{output}");
    assert!(output.contains("credential is usable again"), "{output}");
}

/// A node that starts with a credential it cannot decrypt serves everything else.
#[actix_web::test]
async fn a_node_starts_with_a_corrupted_credential() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure(&app, &mock).await;
    // A service private to another tenant on the same credential.
    assert_eq!(
        app.post("/tenants", json!({"name": "globex"})).await.status,
        201
    );
    let r = app
        .post(
            "/services",
            json!({"name": "globex-private", "provider": "openai", "credential": "bad-key",
                   "tenant": "globex", "upstream_url": format!("{}/v1/chat/completions", mock.base)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    corrupt_credential(&app.settings.database_url(), "bad-key").await;

    let server = Env::for_settings(&app.settings)
        .set("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true")
        .serve();
    let client = process::client();
    let r = chat(&client, &server.proxy, "/broken/chat", &key).await;
    assert_credential_unavailable(&r, "node started with a bad credential");
    let r = chat(&client, &server.proxy, "/openai/chat", &key).await;
    assert_eq!(r.0, 200, "{}", r.2);
    assert_degraded(&client, &server, json!(["broken", "globex-private"])).await;

    // Changes still apply on it: a revocation within a second.
    let other = new_key(&app, "acme", json!({"name": "other"})).await;
    let keys = app.get("/tenants/acme/keys").await;
    let id = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "other")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    until("new key accepted by the node", || {
        let (client, proxy, other) = (client.clone(), server.proxy.clone(), other.clone());
        async move { chat(&client, &proxy, "/openai/chat", &other).await.0 == 200 }
    })
    .await;
    assert_eq!(
        app.delete(&format!("/tenants/acme/keys/{id}")).await.status,
        204
    );
    let took = until("revoked key refused by the node", || {
        let (client, proxy, other) = (client.clone(), server.proxy.clone(), other.clone());
        async move { chat(&client, &proxy, "/openai/chat", &other).await.0 == 401 }
    })
    .await;
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");

    // `/status` names only what the caller may see (the in-process node rebuilt too).
    for (token, services) in [
        (app.token.clone(), json!(["broken", "globex-private"])),
        (
            app.token_for("tenant_admin", Some("acme")),
            json!(["broken"]),
        ),
        (
            app.token_for("tenant_admin", Some("globex")),
            json!(["broken", "globex-private"]),
        ),
    ] {
        let r = app.send("GET", "/status", Some(&token), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            r.body["snapshot"]["unavailable_credentials"][0]["disabled_services"], services,
            "{}",
            r.text
        );
    }

    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{output}");
    assert_eq!(output.matches(LOG_LINE).count(), 1, "{output}");
    assert!(!output.contains("sk-bad-SECRET"), "{output}");
}

/// A key's `last_used_at` is set by the usage flush, without a configuration change.
#[actix_web::test]
async fn last_used_at_is_written_at_the_usage_flush() {
    let mock = MockUpstream::start(Behaviour::json(200, openai_completion())).await;
    let app = spawn_app().await;
    let key = configure_openai(&app, &mock, json!({})).await;
    let keys = app.get("/tenants/acme/keys").await;
    let id = keys.body["data"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/tenants/acme/keys/{id}");
    let r = app.get(&path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["last_used_at"].is_null(), "{}", r.text);
    let version = app.state.store.config_version().await.unwrap();

    let (app_ref, path_ref) = (&app, path.as_str());
    let before = chrono::Utc::now();
    let r = chat(&app.client, &app.proxy, "/openai/chat", &key).await;
    assert_eq!(r.0, 200, "{}", r.2);
    let after = chrono::Utc::now();
    until("last_used_at set", move || async move {
        !app_ref.get(path_ref).await.body["last_used_at"].is_null()
    })
    .await;
    let r = app.get(&path).await;
    let used: chrono::DateTime<chrono::Utc> =
        r.body["last_used_at"].as_str().unwrap().parse().unwrap();
    assert!(
        before <= used && used <= after,
        "{used} not in [{before}, {after}]"
    );
    assert_eq!(
        app.state.store.config_version().await.unwrap(),
        version,
        "the flush must not bump the configuration version"
    );

    // A later use moves it forward.
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    let r = chat(&app.client, &app.proxy, "/openai/chat", &key).await;
    assert_eq!(r.0, 200, "{}", r.2);
    until("last_used_at moved forward", move || async move {
        let now = app_ref.get(path_ref).await.body["last_used_at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap();
        now > used
    })
    .await;
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A data directory, database and analytics log made world-readable before the gateway
/// starts are owner-only once it runs, the SQLite `-wal`/`-shm` files included.
#[cfg(unix)]
#[actix_web::test]
async fn existing_data_files_are_tightened_to_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(&data, 0o755);
    // A first run creates the database and secrets; then everything is loosened.
    let env = Env::new(root.path())
        .set("TOLLGATE_DATA_DIR", data.display().to_string())
        .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_WORKERS", "1")
        .set("TOLLGATE_ADMIN_PASSWORD", crate::support::ADMIN_PASSWORD)
        .set(
            "TOLLGATE_ANALYTICS_LOG",
            data.join("analytics.log").display().to_string(),
        );
    let first = env.serve();
    let (status, _, text) = process::call(
        &process::client(),
        &first.admin,
        "GET",
        "/readyz",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    // The exit status is not checked: a SIGTERM in the first moments after "listening"
    // can arrive before the signal handler is installed; the modes are what matter here.
    let _ = first.stop_async().await;
    let db = data.join("tollgate.db");
    for name in ["tollgate.db", "master.key", "jwt.secret", "analytics.log"] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name} as created");
        set(&data.join(name), 0o644);
    }
    // Left behind only after an unclean stop; else SQLite recreates them with the
    // database file's (now loose) mode.
    for name in ["tollgate.db-wal", "tollgate.db-shm"] {
        if data.join(name).exists() {
            set(&data.join(name), 0o644);
        }
    }
    set(&data, 0o755);

    let server = env.serve();
    let (status, _, text) = process::call(
        &process::client(),
        &server.admin,
        "GET",
        "/readyz",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(mode(&data), 0o700, "data directory");
    for name in [
        "tollgate.db",
        "tollgate.db-wal",
        "tollgate.db-shm",
        "master.key",
        "jwt.secret",
        "analytics.log",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    let (_, output) = server.stop_async().await;
    assert!(output.contains("tightened permissions"), "{output}");
    assert!(db.exists());
}

/// A new analytics log file outside the data directory is created owner-only too.
#[cfg(unix)]
#[actix_web::test]
async fn a_new_analytics_log_file_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("analytics.jsonl");
    let log = tollgate::telemetry::analytics::AnalyticsLog::open(path.to_str().unwrap()).unwrap();
    log.flush();
    assert_eq!(mode(&path), 0o600);
}
