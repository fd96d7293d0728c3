//! Secrets stay secret (docs/security.md): credential values are write-only and masked in every
//! answer, a tenant API key is shown once, error answers do not echo secrets, and the
//! process output of a whole admin session at debug level contains none of them.

use serde_json::{Value, json};

use crate::support::process::{self, Env};
use crate::support::{self, Reply, TestApp, spawn_app};

// --- helpers ---

const HEADER_SECRET: &str = "Bearer sk-live-SECRET-abcd1234wxyz";
const PARAM_SECRET: &str = "pk-SECRET-param-value-5678";
const NEW_HEADER_SECRET: &str = "Bearer sk-live-ROTATED-efgh5678klmn";

fn credential(name: &str, header: Option<&str>, param: Option<&str>) -> Value {
    let mut c = json!({"name": name});
    if let Some(h) = header {
        c["header_name"] = "Authorization".into();
        c["header_value"] = h.into();
    }
    if let Some(p) = param {
        c["param_name"] = "api_key".into();
        c["param_value"] = p.into();
        c["param_location"] = "query".into();
    }
    c
}

/// A credential view as expected: `mask` per secret field (None = not set).
fn assert_masked(view: &Value, header: Option<&str>, param: Option<&str>, what: &str) {
    for (field, expected) in [("header_value", header), ("param_value", param)] {
        let has = format!("has_{field}");
        match expected {
            Some(mask) => {
                assert_eq!(view[field], mask, "{what}: {field} in {view}");
                assert_eq!(view[&has], true, "{what}: {has} in {view}");
            }
            None => {
                assert!(view[field].is_null(), "{what}: {field} in {view}");
                assert_eq!(view[&has], false, "{what}: {has} in {view}");
            }
        }
    }
}

/// No secret, nor a recognisable piece of one, in `text`.
fn assert_no_secret(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} contains {secret:?}: {text}");
        // The distinctive middle of each secret, in case it is shown cut or re-quoted.
        let middle: String = secret.chars().skip(7).take(12).collect();
        assert!(
            !text.contains(&middle),
            "{what} contains {middle:?}: {text}"
        );
    }
}

/// Every admin answer about credential `name`: by name, by id, in the list, for a viewer.
async fn credential_views(app: &TestApp, name: &str) -> Vec<(String, Reply)> {
    let by_name = app.get(&format!("/credentials/{name}")).await;
    assert_eq!(by_name.status, 200, "{}", by_name.text);
    let id = by_name.body["id"].as_str().unwrap().to_string();
    let viewer = app.token_for("viewer", None);
    let mut views = vec![
        (
            format!("GET /credentials/{id}"),
            app.get(&format!("/credentials/{id}")).await,
        ),
        (
            format!("viewer GET /credentials/{name}"),
            app.send("GET", &format!("/credentials/{name}"), Some(&viewer), None)
                .await,
        ),
    ];
    let list = app.get("/credentials").await;
    let item = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap();
    views.push((
        "GET /credentials (the item)".into(),
        Reply {
            status: list.status,
            headers: list.headers,
            text: list.text,
            body: item,
        },
    ));
    views.push((format!("GET /credentials/{name}"), by_name));
    views
}

async fn assert_every_read(app: &TestApp, name: &str, header: Option<&str>, param: Option<&str>) {
    for (what, r) in credential_views(app, name).await {
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        assert_masked(&r.body, header, param, &what);
        assert_no_secret(
            &r.text,
            &[HEADER_SECRET, PARAM_SECRET, NEW_HEADER_SECRET],
            &what,
        );
    }
}

// --- credentials ---

#[actix_web::test]
async fn credential_secrets_are_write_only_and_masked_everywhere() {
    let app = spawn_app().await;
    let secrets = [HEADER_SECRET, PARAM_SECRET, NEW_HEADER_SECRET];
    let (header, param, new_header) = (
        Some("********wxyz"),
        Some("********5678"),
        Some("********klmn"),
    );

    let r = app
        .post(
            "/credentials",
            credential("upstream", Some(HEADER_SECRET), Some(PARAM_SECRET)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_masked(&r.body, header, param, "POST response");
    assert_no_secret(&r.text, &secrets, "POST response");
    assert_every_read(&app, "upstream", header, param).await;

    // PATCH without the secret fields keeps both (same mask hint, still set).
    let r = app
        .patch("/credentials/upstream", json!({"tags": ["kept"]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_masked(&r.body, header, param, "PATCH (tags) response");
    assert_no_secret(&r.text, &secrets, "PATCH (tags) response");
    assert_every_read(&app, "upstream", header, param).await;

    // Removing only the value breaks Kong's all-or-none rule: 422 naming it, nothing changes.
    let r = app
        .patch("/credentials/upstream", json!({"header_value": null}))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert!(
        r.body["error"]["fields"]["header_value"].is_string(),
        "{}",
        r.text
    );
    assert_every_read(&app, "upstream", header, param).await;

    // A new value replaces the old one; its own hint is shown.
    let r = app
        .patch(
            "/credentials/upstream",
            json!({"header_value": NEW_HEADER_SECRET}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_masked(&r.body, new_header, param, "PATCH (new value) response");
    assert_no_secret(&r.text, &secrets, "PATCH (new value) response");
    assert_every_read(&app, "upstream", new_header, param).await;

    // null on both header fields removes the pair; the param triple stays.
    let r = app
        .patch(
            "/credentials/upstream",
            json!({"header_name": null, "header_value": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["header_name"].is_null(), "{}", r.text);
    assert_masked(&r.body, None, param, "PATCH (remove header) response");
    assert_every_read(&app, "upstream", None, param).await;

    // PUT replaces the whole object: its answer is masked too.
    let r = app
        .put(
            "/credentials/upstream",
            credential("upstream", Some(HEADER_SECRET), None),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_masked(&r.body, header, None, "PUT response");
    assert_no_secret(&r.text, &secrets, "PUT response");
    assert_every_read(&app, "upstream", header, None).await;

    // PUT creating a new credential.
    let r = app
        .put(
            "/credentials/fresh",
            credential("fresh", None, Some(PARAM_SECRET)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_masked(&r.body, None, param, "PUT (create) response");
    assert_no_secret(&r.text, &secrets, "PUT (create) response");
}

#[actix_web::test]
async fn masks_show_at_most_the_last_four_characters() {
    let app = spawn_app().await;
    let cases = [
        ("short", "12345678", "********"),
        ("medium", "123456789", "********89"),
        ("twelve", "abcdefghijkl", "********kl"),
        ("long", "sk-proj-abcdefghijklmnop", "********mnop"),
        ("unicode", "sk-ünïcödé-sëcrét-€😀xy", "********€😀xy"),
    ];
    for (name, secret, mask) in cases {
        let body = json!({"name": name, "header_name": "x-api-key", "header_value": secret});
        let r = app.post("/credentials", body).await;
        assert_eq!(r.status, 201, "{name}: {}", r.text);
        assert_eq!(r.body["header_value"], mask, "{name}");
        let r = app.get(&format!("/credentials/{name}")).await;
        assert_eq!(r.body["header_value"], mask, "{name}");
        assert!(!r.text.contains(secret), "{name}: {}", r.text);
    }
}

#[actix_web::test]
async fn error_answers_do_not_echo_secrets() {
    let app = spawn_app().await;
    let ok = app
        .post(
            "/credentials",
            credential("taken", Some(HEADER_SECRET), None),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "duplicate name",
            "/credentials",
            credential("taken", Some(HEADER_SECRET), Some(PARAM_SECRET)),
            409,
            PARAM_SECRET,
        ),
        (
            "control character in the header value",
            "/credentials",
            credential("ctl", Some("Bearer sk-live-CONTROL\u{7}-secret-9876"), None),
            400,
            "sk-live-CONTROL",
        ),
        (
            "header value without its name",
            "/credentials",
            json!({"name": "half", "header_value": "Bearer sk-live-HALFPAIR-4321"}),
            422,
            "sk-live-HALFPAIR",
        ),
        (
            "a number where the header value goes",
            "/credentials",
            json!({"name": "num", "header_name": "x-api-key", "header_value": 987_654_321_012_345_u64}),
            400,
            "987654321012345",
        ),
        (
            "a number as the login password",
            "/auth/login",
            json!({"username": "admin", "password": 246_813_579_024_u64}),
            400,
            "246813579024",
        ),
        (
            "a number as an admin's password",
            "/admins",
            json!({"username": "x-admin", "password": 135_792_468_013_u64, "role": "admin"}),
            400,
            "135792468013",
        ),
    ];
    for (what, path, body, status, secret) in cases {
        let r = app.post(path, body).await;
        assert_eq!(r.status, status, "{what}: {}", r.text);
        assert!(
            !r.text.contains(secret),
            "{what}: the answer echoes the secret: {}",
            r.text
        );
    }
}

// --- tenant API keys ---

#[actix_web::test]
async fn an_api_key_is_shown_only_in_its_creation_answer() {
    let app = spawn_app().await;
    app.seed().await;
    let r = app
        .post("/tenants/acme/keys", json!({"name": "ci-bot"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    let prefix = r.body["prefix"].as_str().unwrap().to_string();
    assert!(key.starts_with("tg-"), "{key}");
    let random =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &key[3..])
            .unwrap();
    assert!(random.len() >= 32, "only {} random bytes", random.len());
    assert!(
        key.starts_with(&prefix) && prefix.len() < key.len() / 2,
        "prefix {prefix}"
    );
    let secret_part = &key[prefix.len()..];

    let tenant_admin = app.token_for("tenant_admin", Some("acme"));
    let viewer = app.token_for("viewer", None);
    let item = format!("/tenants/acme/keys/{id}");
    let mut reads = Vec::new();
    for token in [&app.token, &tenant_admin, &viewer] {
        for path in ["/tenants/acme/keys", item.as_str()] {
            reads.push((path, app.send("GET", path, Some(token), None).await));
        }
    }
    assert_eq!(app.delete(&item).await.status, 204);
    reads.push(("after revocation", app.get(&item).await));
    for (what, r) in reads {
        assert_eq!(r.status, 200, "{what}: {}", r.text);
        assert!(
            !r.text.contains(secret_part),
            "{what} shows the key: {}",
            r.text
        );
        assert!(
            r.text.contains(&prefix),
            "{what} lacks the prefix: {}",
            r.text
        );
        let view = r.body.get("data").map_or(&r.body, |d| &d[0]);
        assert!(
            view.get("key").is_none(),
            "{what} has a key field: {}",
            r.text
        );
    }
    // A second key is a different key.
    let other = app
        .post("/tenants/acme/keys", json!({"name": "other"}))
        .await;
    assert_ne!(other.body["key"].as_str().unwrap(), key);
}

// --- the process log ---

/// Runs `tollgate serve` at `RUST_LOG=debug` through a whole admin session, stops it with
/// SIGTERM, and searches everything it printed for every secret it handled.
async fn session_output_is_clean(log_format: &str) {
    const PASSWORD: &str = "Adm1n-LOGTEST-password-c0ffee";
    const WRONG_PASSWORD: &str = "sk-live-WRONGPASSWORD-9f8e7d6c5b";
    const REJECTED_SECRET: &str = "sk-live-REJECTED-0a1b2c3d4e5f";
    const NUMERIC_SECRET: u64 = 918_273_645_546_372_819;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let env = Env::new(dir.path())
        .set("RUST_LOG", "debug")
        .set("TOLLGATE_LOG_FORMAT", log_format)
        .set("TOLLGATE_DATA_DIR", data.display().to_string())
        .set(
            "TOLLGATE_DATABASE_URL",
            support::fresh_database_url(&data).await,
        )
        .set("TOLLGATE_ADMIN_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_LISTEN", "127.0.0.1:0")
        .set("TOLLGATE_PROXY_WORKERS", "1")
        .set("TOLLGATE_DRAIN_TIMEOUT", "1s")
        .set("TOLLGATE_ADMIN_PASSWORD", PASSWORD);
    let server = env.serve();
    let client = process::client();
    let admin = server.admin.clone();
    let call =
        |method: &'static str, path: &'static str, token: Option<String>, body: Option<Value>| {
            let (client, admin) = (&client, &admin);
            async move {
                let (status, body, text) =
                    process::call(client, admin, method, path, token.as_deref(), body).await;
                (status, body, format!("{method} {path}: {text}"))
            }
        };

    let token = process::login(&client, &admin, "admin", PASSWORD).await;
    let t = || Some(token.clone());
    let steps: Vec<(&'static str, &'static str, Value, u16)> = vec![
        ("GET", "/auth/whoami", Value::Null, 200),
        ("POST", "/tenants", json!({"name": "acme"}), 201),
        (
            "POST",
            "/credentials",
            credential("up", Some(HEADER_SECRET), Some(PARAM_SECRET)),
            201,
        ),
        (
            "POST",
            "/services",
            json!({"name": "openai", "provider": "openai", "credential": "up"}),
            201,
        ),
        (
            "POST",
            "/routes",
            json!({"name": "chat", "paths": ["/openai/chat"], "model_alias": "gpt-4o",
                   "service": "openai", "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
            201,
        ),
        (
            "PATCH",
            "/credentials/up",
            json!({"header_value": NEW_HEADER_SECRET}),
            200,
        ),
        ("GET", "/credentials/up", Value::Null, 200),
        ("GET", "/status", Value::Null, 200),
        // Rejected secrets go through the error path (and its logging).
        (
            "POST",
            "/credentials",
            credential("bad", Some(&format!("{REJECTED_SECRET}\u{7}")), None),
            400,
        ),
        (
            "POST",
            "/credentials",
            json!({"name": "bad", "header_name": "x-api-key", "header_value": NUMERIC_SECRET}),
            400,
        ),
    ];
    for (method, path, body, status) in steps {
        let body = (!body.is_null()).then_some(body);
        let (got, _, text) = call(method, path, t(), body).await;
        assert_eq!(got, status, "{text}");
    }
    let (status, key, text) = call(
        "POST",
        "/tenants/acme/keys",
        t(),
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let key = key["key"].as_str().unwrap().to_string();

    // Refused attempts: a wrong password that looks like a secret, a tampered token, the
    // API key used as an admin token, and the API key at the proxy.
    let bad_login = json!({"username": "admin", "password": WRONG_PASSWORD});
    let (status, _, text) = call("POST", "/auth/login", None, Some(bad_login)).await;
    assert_eq!(status, 401, "{text}");
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    for bearer in [tampered.clone(), key.clone()] {
        let (status, _, text) = call("GET", "/tenants", Some(bearer), None).await;
        assert_eq!(status, 401, "{text}");
    }
    let proxied = client
        .post(format!("{}/openai/chat", server.proxy))
        .insert_header(("Authorization", format!("Bearer {key}")))
        .send_json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .await
        .unwrap();
    // The service points at an upstream this machine cannot reach: a 502, after the key
    // was checked — what matters here is that the key never reaches the output.
    assert!(
        matches!(proxied.status().as_u16(), 200..=299 | 502 | 504),
        "{}",
        proxied.status()
    );

    let (status, output) = server.stop_async().await;
    assert!(
        status.success(),
        "SIGTERM should end in exit 0, got {status}:\n{output}"
    );

    let master_key = std::fs::read_to_string(data.join("master.key")).unwrap();
    let jwt_secret = std::fs::read_to_string(data.join("jwt.secret")).unwrap();
    let master_key = master_key.trim();
    let key_material = master_key.split_once(':').map_or(master_key, |(_, k)| k);
    let signature = token.rsplit('.').next().unwrap();
    let numeric = NUMERIC_SECRET.to_string();
    let secrets: Vec<(&str, &str)> = vec![
        ("the admin password", PASSWORD),
        ("the wrong password", WRONG_PASSWORD),
        ("the admin JWT", &token),
        ("the admin JWT's signature", signature),
        ("the tampered JWT", &tampered),
        ("the API key", &key),
        ("the API key after its prefix", &key[11..]),
        ("the credential's header value", HEADER_SECRET),
        ("the credential's new header value", NEW_HEADER_SECRET),
        ("the credential's param value", PARAM_SECRET),
        ("a rejected credential value", REJECTED_SECRET),
        ("a rejected numeric credential value", &numeric),
        ("master.key", master_key),
        ("the master key material", key_material),
        ("jwt.secret", jwt_secret.trim()),
    ];
    // The test can fail: the output is there, at debug level, with the session in it.
    assert!(output.contains("Tollgate listening"), "{output}");
    assert!(output.contains("admin login failed"), "{output}");
    assert!(
        output.contains("DEBUG"),
        "RUST_LOG=debug had no effect:\n{output}"
    );
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is too short to search for");
        if let Some(at) = output.find(secret) {
            let line_start = output[..at].rfind('\n').map_or(0, |i| i + 1);
            let line_end = output[at..].find('\n').map_or(output.len(), |i| at + i);
            panic!(
                "{what} appears in the {log_format} process output:\n{}",
                &output[line_start..line_end]
            );
        }
    }
}

#[actix_web::test]
async fn process_output_never_contains_secrets_text_log() {
    session_output_is_clean("text").await;
}

#[actix_web::test]
async fn process_output_never_contains_secrets_json_log() {
    session_output_is_clean("json").await;
}
