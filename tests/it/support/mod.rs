//! Test harness: spawns the real application on port 0 with a fresh database (zero2prod's
//! `spawn_app`), plus a small JSON client for the admin API. The helpers several test
//! files share live in the submodules; test files hold tests.
//!
//! Backend: SQLite in a temp dir by default. With `TOLLGATE_TEST_BACKEND=postgres` and
//! `TOLLGATE_TEST_POSTGRES_URL` set (as `.ci/run` does), each app gets a fresh schema in that
//! PostgreSQL database instead.
//!
//! Tests that need something outside the repository (Kong's fixtures, the OpenAI Python
//! SDK, a PostgreSQL server, a CLI tool) are `#[ignore = "needs …"]`, so a plain
//! `cargo test` lists them as ignored; run with `--ignored` they fail, naming what is
//! missing ([`required_env`], [`required_tool`]), instead of passing without testing.
//!
//! `TEST_LOG=<filter>` (a `RUST_LOG`-style filter such as `debug` or
//! `tollgate=trace`) sends the in-process app's log to the test output ([`init_test_log`]).

pub mod admin;
pub mod kong;
pub mod limits;
pub mod mock_upstream;
pub mod otlp;
pub mod process;
pub mod proxy;
pub mod script;
pub mod streaming;

use std::path::PathBuf;

use serde_json::Value;
use tempfile::TempDir;
use tollgate::app::{Application, StopHandle};
use tollgate::config::Settings;
use tollgate::crypto::Secret;

pub const ADMIN_PASSWORD: &str = "test-admin-password-Ü";

pub struct TestApp {
    pub admin: String,
    pub proxy: String,
    pub token: String,
    pub settings: Settings,
    pub stop: StopHandle,
    pub dir: TempDir,
    pub client: awc::Client,
    /// The running app's shared state (its store, snapshot, …).
    pub state: actix_web::web::Data<tollgate::state::AppState>,
    /// `run_until_stopped`: ends after a stop, once usage and telemetry are flushed.
    pub running: Option<actix_web::rt::task::JoinHandle<anyhow::Result<()>>>,
}

/// Which database the app under test uses.
pub fn postgres_url() -> Option<String> {
    let wanted = std::env::var("TOLLGATE_TEST_BACKEND").is_ok_and(|b| b == "postgres");
    let url = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    match (wanted, url) {
        (true, Some(url)) => Some(url),
        (true, None) => panic!("TOLLGATE_TEST_BACKEND=postgres needs TOLLGATE_TEST_POSTGRES_URL"),
        _ => None,
    }
}

/// The value of `var`, which the calling (ignored) test needs: a failure naming the
/// variable and `what` it should hold when it is unset or empty, never a silent pass.
pub fn required_env(var: &str, what: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{var} is unset: this test needs {what} (.ci/run sets it)"),
    }
}

/// Fails naming `program` unless `program --version`-style `probe` runs: the calling
/// (ignored) test needs that tool.
pub fn required_tool(program: &str, probe: &[&str]) {
    if let Err(e) = std::process::Command::new(program).args(probe).output() {
        panic!("this test needs the {program} CLI, which cannot be run: {e}");
    }
}

/// With `TEST_LOG` set, a global subscriber writing the app's log (filtered by that value,
/// as `RUST_LOG` filters the binary's) to the test output; installed once. Without it,
/// tests stay quiet.
pub fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("TEST_LOG") else {
            return;
        };
        let filter = tracing_subscriber::EnvFilter::try_new(&filter)
            .unwrap_or_else(|e| panic!("TEST_LOG={filter:?} is not a log filter: {e}"));
        // Another subscriber already installed (none in this binary today) wins.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_test_writer()
            .try_init();
    });
}

/// A database URL for a fresh, empty schema (PostgreSQL) or file (SQLite).
pub async fn fresh_database_url(dir: &std::path::Path) -> String {
    match postgres_url() {
        Some(base) => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&base)
                .await
                .expect("connect to TOLLGATE_TEST_POSTGRES_URL");
            sqlx::Executor::execute(
                &mut conn,
                sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")),
            )
            .await
            .expect("create schema");
            let sep = if base.contains('?') { '&' } else { '?' };
            format!("{base}{sep}options=-c%20search_path%3D{schema}")
        }
        None => format!("sqlite://{}", dir.join("tollgate.db").display()),
    }
}

/// Writes `value` into the JSON column `column` of row `name` of `table`, straight in the
/// database: a hand edit the admin API would refuse (tests of what a stored value that no
/// longer parses does). Run it while the app is stopped.
pub async fn hand_edit_json(
    database_url: &str,
    table: &str,
    column: &str,
    name: &str,
    value: Value,
) {
    // Table and column names come from the tests themselves, never from input.
    let sql = || sqlx::AssertSqlSafe(format!("UPDATE {table} SET {column} = $1 WHERE name = $2"));
    let value = sqlx::types::Json(value);
    let done = if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let done = sqlx::query(sql())
            .bind(value)
            .bind(name)
            .execute(&pool)
            .await;
        pool.close().await;
        done.unwrap().rows_affected()
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let done = sqlx::query(sql())
            .bind(value)
            .bind(name)
            .execute(&pool)
            .await;
        pool.close().await;
        done.unwrap().rows_affected()
    };
    assert_eq!(done, 1, "{table} {name}");
}

/// Settings for a test app in `dir`, on loopback port 0.
pub fn test_settings(dir: &std::path::Path, database_url: String) -> Settings {
    Settings {
        data_dir: PathBuf::from(dir),
        database_url: Some(Secret::new(database_url)),
        proxy_listen: "127.0.0.1:0".into(),
        admin_listen: "127.0.0.1:0".into(),
        proxy_workers: 1,
        admin_workers: 1,
        admin_password: Some(Secret::new(ADMIN_PASSWORD.into())),
        allow_private_upstreams: true,
        drain_timeout: "1s".into(),
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Spawns with settings adjusted by `tweak`.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(dir.path()).await;
    let mut settings = test_settings(dir.path(), url);
    tweak(&mut settings);
    start(settings, dir).await
}

/// Starts an app on existing settings and directory (restart tests).
pub async fn start(settings: Settings, dir: TempDir) -> TestApp {
    init_test_log();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = Application::build(settings.clone())
        .await
        .expect("build app");
    run(app, settings, dir).await
}

/// Starts an app on a store the test opened and migrated (storage-fault tests).
pub async fn start_with_store(
    settings: Settings,
    dir: TempDir,
    store: tollgate::store::SharedStore,
) -> TestApp {
    init_test_log();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let app = Application::build_with_store(settings.clone(), store)
        .await
        .expect("build app");
    run(app, settings, dir).await
}

async fn run(app: Application, settings: Settings, dir: TempDir) -> TestApp {
    let admin = format!("http://{}", app.admin_addr());
    let proxy = format!("http://{}", app.proxy_addr());
    let stop = app.stop_handle();
    let state = app.state();
    let running = actix_web::rt::spawn(app.run_until_stopped());
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .finish();
    let mut test_app = TestApp {
        admin,
        proxy,
        token: String::new(),
        settings,
        stop,
        dir,
        client,
        state,
        running: Some(running),
    };
    test_app.token = test_app.login("admin", ADMIN_PASSWORD).await;
    test_app
}

pub struct Reply {
    pub status: u16,
    pub headers: awc::http::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestApp {
    /// A graceful stop (what SIGTERM does), waiting until the app has written its usage
    /// and closed its store; returns what a restart needs.
    pub async fn shut_down(mut self) -> (Settings, TempDir) {
        self.stop.stop(true).await;
        if let Some(running) = self.running.take() {
            running
                .await
                .expect("app task")
                .expect("app stopped cleanly");
        }
        (self.settings, self.dir)
    }

    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .send(
                "POST",
                "/auth/login",
                None,
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(r.status, 200, "login failed: {}", r.text);
        r.body["token"].as_str().expect("token").to_string()
    }

    /// Sends a request to the admin API with `token` (None = no Authorization header).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let raw = body.map(|b| serde_json::to_vec(&b).expect("json"));
        self.send_raw(method, path, token, raw, Some("application/json"))
            .await
    }

    pub async fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
        content_type: Option<&str>,
    ) -> Reply {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.admin, path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        if let (Some(ct), Some(_)) = (content_type, &body) {
            req = req.insert_header(("Content-Type", ct));
        }
        let mut resp = match body {
            Some(b) => req.send_body(b).await,
            None => req.send().await,
        }
        .expect("request");
        let bytes = resp.body().limit(64 * 1024 * 1024).await.expect("body");
        let text = String::from_utf8_lossy(&bytes).to_string();
        Reply {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            text,
        }
    }

    /// As admin.
    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, Some(&self.token.clone()), None)
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send("POST", path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send("PUT", path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send("PATCH", path, Some(&self.token.clone()), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, Some(&self.token.clone()), None)
            .await
    }

    /// Creates the usual objects: tenant `acme`, credential `openai-key`, service
    /// `openai`, route `chat` (alias `gpt-4o`).
    pub async fn seed(&self) {
        for (path, body) in [
            (
                "/tenants",
                serde_json::json!({"name": "acme", "display_name": "ACME Corp"}),
            ),
            (
                "/credentials",
                serde_json::json!({"name": "openai-key", "header_name": "Authorization", "header_value": "Bearer sk-test-openai-0001"}),
            ),
            (
                "/services",
                serde_json::json!({"name": "openai", "provider": "openai", "credential": "openai-key"}),
            ),
            (
                "/routes",
                serde_json::json!({"name": "chat", "paths": ["/openai/chat"], "model_alias": "gpt-4o",
                    "service": "openai", "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
            ),
        ] {
            let r = self.post(path, body).await;
            assert_eq!(r.status, 201, "seeding {path}: {}", r.text);
        }
    }

    /// Mints a token the way `tollgate admin token` does.
    pub fn token_for(&self, role: &str, tenant: Option<&str>) -> String {
        let keys = tollgate::app::jwt_keys(&self.settings).expect("jwt keys");
        keys.issue("test", role, tenant, chrono::Duration::minutes(10))
            .expect("issue")
            .0
    }
}
