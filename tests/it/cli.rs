//! The `tollgate` binary as users and scripts run it (docs/behaviour.md, "Commands";
//! docs/security.md): `config check`, `admin token`, `migrate`, the first `serve` on an
//! empty data directory, and `keys rotate-master` offline and online.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde_json::{Value, json};
use tollgate::config::Settings;
use tollgate::crypto::{Secret, envelope_key_id};
use tollgate::store::Page;

use crate::support::process::{self, Env, Output};
use crate::support::{self, TestApp, fresh_database_url, spawn_app, spawn_app_with, start};

// --- helpers ---

/// A master key: base64 of 32 random bytes.
fn random_key() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    STANDARD.encode(key)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.success(),
        "{what} failed ({}):\n{}",
        out.status,
        out.all()
    );
}

fn assert_fails(out: &Output, what: &str) {
    assert!(!out.success(), "{what} should fail:\n{}", out.all());
    assert_eq!(out.status.code(), Some(1), "{what}:\n{}", out.all());
}

fn assert_hidden(text: &str, secrets: &[&str], what: &str) {
    for s in secrets {
        assert!(!text.contains(s), "{what} shows {s:?}:\n{text}");
    }
}

/// `key = value` of the effective configuration printed by `config check`.
fn config_value(stdout: &str, key: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let (k, v) = line.split_once(" = ")?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// In-process settings for `dir` with a master key spec.
async fn settings_with_master_key(dir: &Path, spec: &str) -> Settings {
    let mut settings = support::test_settings(dir, fresh_database_url(dir).await);
    settings.master_key = Some(Secret::new(spec.to_string()));
    settings
}

/// Stops an in-process app and hands back its directory (to start again on it).
/// A full stop (usage written, spool closed): the directory can be served again.
async fn stop(app: TestApp) -> tempfile::TempDir {
    app.shut_down().await.1
}

fn credential(name: &str, secret: &str) -> Value {
    json!({"name": name, "header_name": "Authorization", "header_value": secret,
           "param_name": "key", "param_value": format!("{secret}-param"), "param_location": "query"})
}

/// Asserts the credential is listed with both secrets set, and returns its header mask.
async fn assert_credential_usable(app: &TestApp, name: &str) -> String {
    let r = app.get(&format!("/credentials/{name}")).await;
    assert_eq!(r.status, 200, "{name}: {}", r.text);
    assert_eq!(r.body["has_header_value"], true, "{name}: {}", r.text);
    assert_eq!(r.body["has_param_value"], true, "{name}: {}", r.text);
    r.body["header_value"].as_str().unwrap().to_string()
}

/// The key id of every stored secret (credential values and system secrets).
async fn stored_key_ids(settings: &Settings) -> Vec<String> {
    let store = tollgate::store::connect(&settings.database_url())
        .await
        .unwrap();
    let mut kids = Vec::new();
    let all = Page {
        limit: 10_000,
        offset: 0,
    };
    for c in store.list_credentials(all).await.unwrap() {
        for value in [c.header_value, c.param_value].into_iter().flatten() {
            kids.push(envelope_key_id(&value).unwrap().to_string());
        }
    }
    let pepper = store
        .get_system_secret(tollgate::snapshot::API_KEY_PEPPER)
        .await
        .unwrap()
        .unwrap();
    kids.push(envelope_key_id(&pepper.value).unwrap().to_string());
    store.close().await;
    kids
}

/// The count in rotate-master's report: "re-encrypted N stored secrets under master key 'b'".
fn rotated_count(out: &Output, kid: &str) -> usize {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("re-encrypted"))
        .unwrap_or_else(|| panic!("no report on stderr:\n{}", out.all()));
    assert!(line.contains(&format!("'{kid}'")), "{line}");
    line.split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {line:?}"))
}

// --- config check ---

#[actix_web::test]
async fn config_check_prints_the_effective_config_with_secrets_masked() {
    let dir = tempfile::tempdir().unwrap();
    let master = random_key();
    let jwt = "jwt-secret-CONFIGCHECK-0123456789abcdef";
    let password = "admin-password-CONFIGCHECK";
    let file = dir.path().join("secrets.toml");
    std::fs::write(
        &file,
        format!("master_key = \"f:{master}\"\nadmin_jwt_secret = \"{jwt}\"\nadmin_password = \"{password}\"\n"),
    )
    .unwrap();
    let cases = [
        (
            "secrets in the environment, password in the URL's userinfo",
            None,
            "postgres://app:dbpass-SECRET-1@db.example:5432/tollgate",
            "dbpass-SECRET-1",
            "\"postgres://app:********@db.example:5432/tollgate\"",
        ),
        (
            "secrets in the environment, password in the URL's query",
            None,
            "postgres://app@db.example:5432/tollgate?sslmode=require&password=qpass-SECRET-2",
            "qpass-SECRET-2",
            "password=********",
        ),
        (
            "secrets in the file",
            Some(&file),
            "postgres://app:dbpass-SECRET-3@db.example/tollgate",
            "dbpass-SECRET-3",
            "\"postgres://app:********@db.example/tollgate\"",
        ),
    ];
    for (what, file, url, db_password, masked_url) in cases {
        let mut env = Env::new(dir.path()).set("TOLLGATE_DATABASE_URL", url);
        let mut args = vec!["config", "check"];
        match file {
            Some(f) => args.push(f.to_str().unwrap()),
            None => {
                env = env
                    .set("TOLLGATE_MASTER_KEY", format!("k1:{master}"))
                    .set("TOLLGATE_ADMIN_JWT_SECRET", jwt)
                    .set("TOLLGATE_ADMIN_PASSWORD", password);
            }
        }
        let out = env.run_async(&args).await;
        assert_ok(&out, what);
        let shown = out.all();
        assert_hidden(&shown, &[master.as_str(), jwt, password, db_password], what);
        let url_line = config_value(&out.stdout, "database_url").unwrap();
        assert!(url_line.contains(masked_url), "{what}: {url_line}");
        for key in ["master_key", "admin_jwt_secret", "admin_password"] {
            assert_eq!(
                config_value(&out.stdout, key).as_deref(),
                Some("\"********\""),
                "{what}: {key}"
            );
        }
    }
}

#[actix_web::test]
async fn an_unknown_key_in_the_config_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        (
            "admin_listen = \"127.0.0.1:9000\"\nadmin_lisen = \"x\"\n",
            "admin_lisen",
        ),
        ("[tls]\nenabled = true\n", "tls"),
        ("masterkey = \"not-a-key\"\n", "masterkey"),
    ];
    for (i, (content, key)) in files.into_iter().enumerate() {
        let file = dir.path().join(format!("bad-{i}.toml"));
        std::fs::write(&file, content).unwrap();
        let path = file.to_str().unwrap();
        let env = Env::new(dir.path());
        let runs = [
            (
                "config check FILE",
                env.clone(),
                vec!["config", "check", path],
            ),
            (
                "--config FILE config check",
                env.clone(),
                vec!["--config", path, "config", "check"],
            ),
            (
                "TOLLGATE_CONFIG=FILE serve",
                env.clone().set("TOLLGATE_CONFIG", path),
                vec!["serve"],
            ),
        ];
        for (how, env, args) in runs {
            let out = env.run_async(&args).await;
            assert_fails(&out, how);
            assert!(
                out.stderr.contains(key),
                "{how}: stderr does not name {key}:\n{}",
                out.all()
            );
            assert!(
                out.stderr.contains(path),
                "{how}: stderr does not name the file:\n{}",
                out.all()
            );
            assert!(!out.stdout.contains("effective"), "{how}:\n{}", out.all());
        }
    }
}

#[actix_web::test]
async fn config_check_shows_defaults_then_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let content = "admin_listen = \"127.0.0.1:9100\"\nproxy_listen = \"127.0.0.1:9200\"\nanalytics_log = \"off\"\n";
    let file = dir.path().join("layered.toml");
    std::fs::write(&file, content).unwrap();
    // ./tollgate.toml is read when nothing names a file.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::write(cwd.join("tollgate.toml"), content).unwrap();
    let path = file.to_str().unwrap();
    let env = Env::new(dir.path())
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:9300")
        .set(
            "TOLLGATE_ANALYTICS_LOG",
            "/var/log/tollgate/analytics.jsonl",
        );
    let runs = [
        (
            "config check FILE",
            env.clone(),
            vec!["config", "check", path],
        ),
        (
            "--config FILE",
            env.clone(),
            vec!["--config", path, "config", "check"],
        ),
        (
            "TOLLGATE_CONFIG",
            env.clone().set("TOLLGATE_CONFIG", path),
            vec!["config", "check"],
        ),
        (
            "./tollgate.toml",
            Env {
                cwd: cwd.clone(),
                ..env.clone()
            },
            vec!["config", "check"],
        ),
    ];
    let expected = [
        ("admin_listen", "\"127.0.0.1:9100\""), // file over default
        ("proxy_listen", "\"127.0.0.1:9300\""), // environment over file
        ("analytics_log", "\"/var/log/tollgate/analytics.jsonl\""), // environment over file
        ("admin_token_ttl", "\"1h\""),          // default
        ("allow_private_upstreams", "false"),   // default
    ];
    for (how, env, args) in runs {
        let out = env.run_async(&args).await;
        assert_ok(&out, how);
        for (key, value) in expected {
            assert_eq!(
                config_value(&out.stdout, key).as_deref(),
                Some(value),
                "{how}: {key}\n{}",
                out.stdout
            );
        }
    }
    // Without any file the defaults show.
    let out = Env::new(dir.path()).run_async(&["config", "check"]).await;
    assert_ok(&out, "no file");
    assert_eq!(
        config_value(&out.stdout, "admin_listen").as_deref(),
        Some("\"127.0.0.1:8081\"")
    );
}

// --- admin token ---

#[actix_web::test]
async fn admin_token_prints_one_jwt_that_the_app_accepts() {
    let app = spawn_app().await;
    app.seed().await;
    let env = Env::for_settings(&app.settings);
    let cases = [
        (
            vec!["--role", "admin"],
            json!({"sub": "cli", "role": "admin", "tenant": null}),
            3600,
        ),
        (
            vec!["--role", "viewer", "--sub", "robot", "--ttl", "15m"],
            json!({"sub": "robot", "role": "viewer", "tenant": null}),
            900,
        ),
        (
            vec!["--role", "tenant_admin", "--tenant", "acme", "--ttl", "2d"],
            json!({"sub": "cli", "role": "tenant_admin", "tenant": "acme"}),
            2 * 86_400,
        ),
    ];
    for (flags, whoami, ttl) in cases {
        let mut args = vec!["admin", "token"];
        args.extend(&flags);
        let out = env.run_async(&args).await;
        assert_ok(&out, &format!("{args:?}"));
        let token = out
            .stdout
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{args:?}: stdout is not one line: {:?}", out.stdout));
        assert!(
            !token.contains(char::is_whitespace),
            "{args:?}: {:?}",
            out.stdout
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{args:?}: not a JWT: {token}");
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            ttl
        );
        let r = app.send("GET", "/auth/whoami", Some(token), None).await;
        assert_eq!(r.status, 200, "{args:?}: {}", r.text);
        assert_eq!(r.body, whoami, "{args:?}");
    }

    let refused = [
        (vec!["--role", "tenant_admin"], "--tenant"),
        (vec!["--role", "viewer", "--tenant", "acme"], "--tenant"),
        (vec!["--role", "root"], "--role"),
        (vec!["--role", "admin", "--ttl", "0s"], "lifetime"),
        (vec!["--role", "admin", "--ttl", "forever"], "--ttl"),
    ];
    for (flags, mentions) in refused {
        let mut args = vec!["admin", "token"];
        args.extend(&flags);
        let out = env.run_async(&args).await;
        assert_fails(&out, &format!("{args:?}"));
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
        assert!(out.stderr.contains(mentions), "{args:?}:\n{}", out.stderr);
    }
}

#[actix_web::test]
async fn admin_token_uses_a_configured_jwt_secret() {
    const SECRET: &str = "shared-secret-for-cli-and-app-0123456789";
    let app = spawn_app_with(|s| s.admin_jwt_secret = Some(Secret::new(SECRET.into()))).await;
    // A different data directory: only the configured secret is shared.
    let elsewhere = tempfile::tempdir().unwrap();
    let base =
        Env::new(elsewhere.path()).set("TOLLGATE_DATA_DIR", elsewhere.path().display().to_string());
    let cases = [
        (
            "the same secret",
            base.clone().set("TOLLGATE_ADMIN_JWT_SECRET", SECRET),
            200,
        ),
        (
            "another secret",
            base.clone().set(
                "TOLLGATE_ADMIN_JWT_SECRET",
                "another-secret-0123456789-0123456789",
            ),
            401,
        ),
    ];
    for (what, env, status) in cases {
        let out = env.run_async(&["admin", "token", "--role", "admin"]).await;
        assert_ok(&out, what);
        assert_hidden(&out.all(), &[SECRET], what);
        let r = app
            .send("GET", "/auth/whoami", Some(out.stdout.trim()), None)
            .await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
    }

    // Neither a configured secret nor the data directory's file: no secret is invented (a
    // token signed with it would be refused); the error says where it looked.
    let out = base.run_async(&["admin", "token", "--role", "admin"]).await;
    assert_fails(&out, "no secret anywhere");
    assert!(out.stdout.is_empty(), "printed {:?}", out.stdout);
    let looked = elsewhere.path().join("jwt.secret");
    assert!(
        out.stderr.contains(&looked.display().to_string())
            && out.stderr.contains("TOLLGATE_ADMIN_JWT_SECRET"),
        "{}",
        out.stderr
    );
    assert!(
        !looked.exists(),
        "a secret was generated at {}",
        looked.display()
    );
}

// --- migrate and first start ---

#[actix_web::test]
async fn migrate_creates_the_database_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let url = fresh_database_url(&data).await;
    let env = Env::new(dir.path())
        .set("TOLLGATE_DATA_DIR", data.display().to_string())
        .set("TOLLGATE_DATABASE_URL", url.clone());
    for run in ["first", "second (nothing pending)"] {
        let out = env.run_async(&["migrate"]).await;
        assert_ok(&out, run);
        assert!(
            out.stderr.contains("migrations applied"),
            "{run}:\n{}",
            out.all()
        );
    }
    if url.starts_with("sqlite:") {
        assert!(data.join("tollgate.db").is_file(), "no database file");
    }
    // The schema is there (and nobody was bootstrapped: migrate only migrates).
    let store = tollgate::store::connect(&url).await.unwrap();
    assert_eq!(store.count_admins().await.unwrap(), 0);
    store.close().await;
}

#[cfg(unix)]
#[actix_web::test]
async fn first_serve_generates_0600_keys_and_prints_the_bootstrap_password_once() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = Env::new(dir.path())
        .set("TOLLGATE_DATA_DIR", data.display().to_string())
        .set("TOLLGATE_DATABASE_URL", fresh_database_url(&data).await)
        .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_WORKERS", "1")
        .set("TOLLGATE_DRAIN_TIMEOUT", "1s");
    let client = process::client();

    let server = env.serve();
    let password = {
        let output = server.output();
        let found: Vec<&str> = output
            .lines()
            .filter_map(|l| l.trim().strip_prefix("password: "))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "the password is not printed exactly once:\n{output}"
        );
        assert_eq!(output.matches(found[0]).count(), 1, "{output}");
        found[0].to_string()
    };
    let token = process::login(&client, &server.admin, "admin", &password).await;
    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{status}:\n{output}");
    assert!(output.contains("generated a new master key"), "{output}");
    assert!(output.contains("generated a new JWT secret"), "{output}");

    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for file in ["master.key", "jwt.secret"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&data), 0o700, "the data directory");
    let files = |d: &Path| {
        ["master.key", "jwt.secret"].map(|f| std::fs::read_to_string(d.join(f)).unwrap())
    };
    let generated = files(&data);

    // Second start: nothing is generated or printed again; the same password and the
    // same JWT secret still work.
    let server = env.serve();
    let (status, body, text) = process::call(
        &client,
        &server.admin,
        "GET",
        "/auth/whoami",
        Some(&token),
        None,
    )
    .await;
    assert_eq!((status, &body["name"]), (200, &json!("admin")), "{text}");
    process::login(&client, &server.admin, "admin", &password).await;
    let (status, output) = server.stop_async().await;
    assert!(status.success(), "{status}:\n{output}");
    assert!(
        !output.contains(&password),
        "the password is printed again:\n{output}"
    );
    assert!(!output.contains("bootstrap admin"), "{output}");
    assert!(!output.contains("generated a new"), "{output}");
    assert_eq!(files(&data), generated, "the generated files changed");
}

// --- keys rotate-master ---

#[actix_web::test]
async fn rotate_master_re_encrypts_so_the_new_key_alone_suffices_and_the_old_alone_fails() {
    let (k1, k2) = (random_key(), random_key());
    let (only_a, both, only_b) = (
        format!("a:{k1}"),
        format!("b:{k2},a:{k1}"),
        format!("b:{k2}"),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_with_master_key(dir.path(), &only_a).await;

    let app = start(settings.clone(), dir).await;
    app.seed().await; // credential `openai-key`: one secret
    let r = app
        .post(
            "/credentials",
            credential("both-fields", "sk-live-ROTATE-0001"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let mask = assert_credential_usable(&app, "both-fields").await;
    let dir = stop(app).await;
    assert!(stored_key_ids(&settings).await.iter().all(|k| k == "a"));

    let rotate = Env::for_settings(&settings)
        .set("TOLLGATE_MASTER_KEY", both.clone())
        .run_async(&["keys", "rotate-master"])
        .await;
    assert_ok(&rotate, "keys rotate-master");
    // 1 + 2 credential values and the API-key pepper.
    assert_eq!(rotated_count(&rotate, "b"), 4, "{}", rotate.all());
    assert_hidden(&rotate.all(), &[&k1, &k2], "rotate-master output");
    assert!(stored_key_ids(&settings).await.iter().all(|k| k == "b"));

    // Only the new key: starts, and every secret decrypts (the snapshot holds them all).
    settings.master_key = Some(Secret::new(only_b.clone()));
    let app = start(settings.clone(), dir).await;
    assert_eq!(assert_credential_usable(&app, "both-fields").await, mask);
    let r = app
        .post("/credentials", credential("after", "sk-live-ROTATE-0002"))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let _dir = stop(app).await;

    // Only the old key: a hard start-up error naming the missing key id.
    let out = Env::for_settings(&settings)
        .set("TOLLGATE_MASTER_KEY", only_a)
        .run_async(&["serve"])
        .await;
    assert_fails(&out, "serve with only the old key");
    assert!(
        out.stderr.contains("\"b\""),
        "the key id is not named:\n{}",
        out.all()
    );
    assert!(out.stderr.contains("TOLLGATE_MASTER_KEY"), "{}", out.all());
    assert!(!out.stderr.contains("Tollgate listening"), "{}", out.all());
    assert_hidden(&out.all(), &[&k1, &k2], "the failed start");
}

#[actix_web::test]
async fn rotate_master_runs_online_while_the_gateway_serves() {
    let (k1, k2) = (random_key(), random_key());
    let both = format!("b:{k2},a:{k1}");
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_with_master_key(dir.path(), &format!("a:{k1}")).await;
    let app = start(settings.clone(), dir).await;
    app.seed().await;
    for i in 0..5 {
        let r = app
            .post(
                "/credentials",
                credential(&format!("old-{i}"), "sk-live-ONLINE-0001"),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let dir = stop(app).await;

    // Every node gets the new key list first; then the rotation runs while one serves.
    settings.master_key = Some(Secret::new(both.clone()));
    let app = start(settings.clone(), dir).await;
    let env = Env::for_settings(&settings);
    let rotation = actix_web::rt::task::spawn_blocking(move || env.run(&["keys", "rotate-master"]));
    let mut round = 0;
    while !rotation.is_finished() || round < 3 {
        let r = app.get("/credentials?limit=1000").await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text);
        // Writes that keep stored secrets (a tag change: read, then written back) ...
        for i in 0..5 {
            let tags = json!({"tags": [format!("r{round}")]});
            let r = app.patch(&format!("/credentials/old-{i}"), tags).await;
            assert_eq!(r.status, 200, "round {round}: {}", r.text);
        }
        // ... and writes that add new ones.
        let r = app
            .post(
                "/credentials",
                credential(&format!("during-{round}"), "sk-live-ONLINE-0002"),
            )
            .await;
        assert_eq!(r.status, 201, "round {round}: {}", r.text);
        round += 1;
    }
    let out = rotation.await.unwrap();
    assert_ok(&out, "online keys rotate-master");
    // At least `openai-key`, the five `old-*` (two values each) and the pepper.
    let at_least = 1 + 5 * 2 + 1;
    assert!(rotated_count(&out, "b") >= at_least, "{}", out.all());

    // The gateway keeps answering reads and writes after the rotation.
    let r = app
        .post(
            "/credentials",
            credential("after-rotation", "sk-live-ONLINE-0003"),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    for name in ["old-0", "old-4", "during-0", "after-rotation"] {
        assert_credential_usable(&app, name).await;
    }
    assert_eq!(app.get("/status").await.status, 200);
    let dir = stop(app).await;

    // Nothing is left under the old key: the new key alone starts and serves everything.
    let kids = stored_key_ids(&settings).await;
    assert!(
        kids.iter().all(|k| k == "b"),
        "values left under another key: {kids:?}"
    );
    settings.master_key = Some(Secret::new(format!("b:{k2}")));
    let app = start(settings.clone(), dir).await;
    let listed = app.get("/credentials?limit=1000").await;
    let names: Vec<String> = listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .filter(|n| n != "openai-key")
        .collect();
    assert_eq!(names.len(), 5 + round + 1, "{names:?}");
    for name in &names {
        assert_credential_usable(&app, name).await;
    }
    let _dir = stop(app).await;
}
