//! The admin REST API contract (docs/behaviour.md, "Admin conventions", "Admin resources") over a
//! real HTTP listener: conventions, every resource, conflicts and references, Kong's provider
//! rules, hostile input, persistence across a restart, the snapshot swap, and the OpenAPI / Swagger
//! UI / admin UI surfaces.
//!
//! Runs on SQLite by default and on PostgreSQL with `TOLLGATE_TEST_BACKEND=postgres`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::admin::{
    created, expect_error, expect_invalid, expect_missing_reference, expect_refused_by_rule,
    expect_status, fetch, field_message, list_all, location,
};
use crate::support::{Reply, TestApp, postgres_url, spawn_app, spawn_app_with, start};

// --- helpers ---

fn time(v: &Value, field: &str) -> DateTime<Utc> {
    let s = v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} missing in {v}"));
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The names in a collection, in its order.
async fn names(app: &TestApp, path: &str) -> Vec<String> {
    list_all(app, path)
        .await
        .iter()
        .map(|o| o["name"].as_str().expect("name").to_string())
        .collect()
}

/// Every configuration collection, for "nothing was written" checks.
async fn all_config(app: &TestApp) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for path in [
        "/tenants",
        "/credentials",
        "/services",
        "/routes",
        "/admins",
    ] {
        all.push(list_all(app, path).await);
    }
    all
}

/// `/status` → `snapshot`.
async fn snapshot(app: &TestApp) -> Value {
    fetch(app, "/status").await["snapshot"].clone()
}

/// `[routes, services, tenants, api_keys]` of a snapshot.
fn counts(snap: &Value) -> [u64; 4] {
    ["routes", "services", "tenants", "api_keys"].map(|k| snap[k].as_u64().expect(k))
}

fn version(snap: &Value) -> i64 {
    snap["version"].as_i64().expect("snapshot.version")
}

fn with_field(body: &Value, field: &str, value: impl Into<Value>) -> Value {
    let mut body = body.clone();
    body[field] = value.into();
    body
}

fn service(name: &str, provider: &str, options: Value) -> Value {
    json!({"name": name, "provider": provider, "credential": "openai-key", "options": options})
}

fn route(name: &str, path: &str, alias: Option<&str>, service: &str) -> Value {
    json!({"name": name, "paths": [path], "model_alias": alias, "service": service,
           "route_type": "llm/v1/chat"})
}

/// Sends raw bytes as the admin.
async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>, content_type: &str) -> Reply {
    app.send_raw(
        "POST",
        path,
        Some(&app.token),
        Some(body),
        Some(content_type),
    )
    .await
}

// --- 1, 2: conventions on every resource ---

/// One resource of the generic CRUD walk.
struct Resource {
    collection: &'static str,
    /// The field naming the object (`username` for admins).
    name_field: &'static str,
    /// A valid creation body without its name.
    body: Value,
    /// A partial update and the values it leaves (JSON pointer → value).
    patch: Value,
    patched: Vec<(&'static str, Value)>,
    /// A full replacement without its name, and values it leaves (omitted fields reset).
    replace: Value,
    replaced: Vec<(&'static str, Value)>,
}

fn resources() -> Vec<Resource> {
    vec![
        Resource {
            collection: "/tenants",
            name_field: "name",
            body: json!({"display_name": "One", "limits": {"requests_per_minute": 10}, "tags": ["a"]}),
            patch: json!({"display_name": "Renamed"}),
            patched: vec![
                ("/display_name", json!("Renamed")),
                ("/limits", json!({"requests_per_minute": 10})),
            ],
            replace: json!({"display_name": "Replaced"}),
            replaced: vec![("/limits", json!({})), ("/tags", json!([]))],
        },
        Resource {
            collection: "/credentials",
            name_field: "name",
            body: json!({"header_name": "Authorization", "header_value": "Bearer sk-crud-9876",
                         "tags": ["a"]}),
            patch: json!({"header_name": "x-api-key"}),
            patched: vec![
                ("/header_name", json!("x-api-key")),
                ("/header_value", json!("********9876")),
                ("/has_header_value", json!(true)),
            ],
            replace: json!({"param_name": "key", "param_value": "pv-secret-5555",
                            "param_location": "query"}),
            replaced: vec![
                ("/header_name", Value::Null),
                ("/has_header_value", json!(false)),
                ("/param_value", json!("********5555")),
                ("/param_location", json!("query")),
            ],
        },
        Resource {
            collection: "/services",
            name_field: "name",
            body: json!({"provider": "openai", "credential": "openai-key", "tags": ["a"]}),
            patch: json!({"timeouts": {"read_ms": 1000}}),
            patched: vec![(
                "/timeouts",
                json!({"connect_ms": 5000, "read_ms": 1000, "max_connections": 1024, "pool_wait_ms": 10_000,
                       "total_ms": null}),
            )],
            replace: json!({"provider": "cohere"}),
            replaced: vec![
                ("/provider", json!("cohere")),
                ("/credential", Value::Null),
                ("/tags", json!([])),
            ],
        },
        Resource {
            collection: "/routes",
            name_field: "name",
            body: json!({"paths": ["/crud"], "service": "openai", "route_type": "llm/v1/chat",
                         "tags": ["a"]}),
            patch: json!({"model": {"options": {"temperature": 0.5}}}),
            patched: vec![
                ("/model/options/temperature", json!(0.5)),
                ("/paths", json!(["/crud"])),
            ],
            replace: json!({"paths": ["/crud2"], "service": "openai",
                            "route_type": "llm/v1/completions"}),
            replaced: vec![
                ("/paths", json!(["/crud2"])),
                ("/route_type", json!("llm/v1/completions")),
                ("/tags", json!([])),
            ],
        },
        Resource {
            collection: "/policies",
            name_field: "name",
            body: json!({"type": "ai-prompt-guard", "tenant": "acme",
                         "config": {"deny_patterns": ["(?i)ignore"]}, "tags": ["a"]}),
            patch: json!({"enabled": false}),
            patched: vec![
                ("/enabled", json!(false)),
                ("/tenant", json!("acme")),
                ("/config/deny_patterns", json!(["(?i)ignore"])),
            ],
            replace: json!({"type": "ai-prompt-decorator", "route": "chat",
                            "config": {"prompts": {"prepend": [{"content": "hi"}]}}}),
            replaced: vec![
                ("/type", json!("ai-prompt-decorator")),
                ("/route", json!("chat")),
                ("/tenant", Value::Null),
                ("/enabled", json!(true)),
                ("/tags", json!([])),
            ],
        },
        Resource {
            collection: "/admins",
            name_field: "username",
            body: json!({"password": "first-password-1", "role": "viewer", "tags": ["a"]}),
            patch: json!({"role": "admin"}),
            patched: vec![("/role", json!("admin")), ("/username", json!("crud-one"))],
            replace: json!({"role": "viewer"}),
            replaced: vec![("/role", json!("viewer")), ("/tags", json!([]))],
        },
    ]
}

#[track_caller]
fn assert_values(object: &Value, expected: &[(&str, Value)], context: &str) {
    for (pointer, value) in expected {
        assert_eq!(
            object.pointer(pointer),
            Some(value),
            "{context} {pointer}: {object}"
        );
    }
}

#[actix_web::test]
async fn every_resource_follows_the_crud_conventions() {
    let app = spawn_app().await;
    app.seed().await;
    for res in resources() {
        let c = res.collection;
        let one = with_field(&res.body, res.name_field, "crud-one");
        let by_name = format!("{c}/crud-one");

        // POST → 201 + Location, which GETs the same object back; by id and by name.
        let r = app.post(c, one.clone()).await;
        expect_status(&r, 201);
        let made = r.body.clone();
        let by_id = format!("{c}/{}", made["id"].as_str().expect("id"));
        assert_eq!(location(&r), by_id);
        assert_eq!(fetch(&app, &location(&r)).await, made, "{c} by Location");
        assert_eq!(fetch(&app, &by_name).await, made, "{c} by name");
        assert_eq!(made["name"], "crud-one", "{c}");
        assert_eq!(time(&made, "created_at"), time(&made, "updated_at"), "{c}");

        // PATCH changes only the given fields; updated_at moves, created_at does not.
        let r = app.patch(&by_id, res.patch.clone()).await;
        expect_status(&r, 200);
        let after = fetch(&app, &by_name).await;
        assert_eq!(r.body, after, "{c}: PATCH response is the stored state");
        assert_values(&after, &res.patched, c);
        let touched = res.patch.as_object().expect("patch object");
        for (k, v) in made.as_object().expect("object") {
            if k != "updated_at" && !touched.contains_key(k) {
                assert_eq!(&after[k], v, "{c}: PATCH changed '{k}'");
            }
        }
        assert_eq!(after["created_at"], made["created_at"], "{c}");
        let moved = time(&after, "updated_at") > time(&made, "updated_at");
        assert!(
            moved,
            "{c}: updated_at {} → {}",
            made["updated_at"], after["updated_at"]
        );

        // PUT on an existing name replaces it: 200, same id and created_at, no Location.
        let r = app.put(&by_name, res.replace.clone()).await;
        expect_status(&r, 200);
        assert!(r.headers.get("location").is_none(), "{c}");
        let replaced = fetch(&app, &by_id).await;
        assert_eq!(r.body, replaced, "{c}");
        assert_eq!(replaced["id"], made["id"], "{c}");
        assert_eq!(replaced["created_at"], made["created_at"], "{c}");
        assert_values(&replaced, &res.replaced, c);

        // A PUT body whose name contradicts the URL is refused.
        let contradicting = with_field(&res.replace, res.name_field, "someone-else");
        expect_invalid(&app.put(&by_name, contradicting).await, &[res.name_field]);
        assert_eq!(fetch(&app, &by_id).await, replaced, "{c} unchanged");
        // A PUT by id replaces the object it names (keeping its name); an unknown id is
        // 404, since only a name creates.
        let r = app.put(&by_id, res.replace.clone()).await;
        expect_status(&r, 200);
        assert_eq!(r.body["id"], made["id"], "{c}");
        assert_eq!(r.body[res.name_field], replaced[res.name_field], "{c}");
        assert_values(&r.body, &res.replaced, c);
        expect_error(
            &app.put(
                &format!("{c}/00000000-0000-4000-8000-000000000000"),
                res.replace.clone(),
            )
            .await,
            404,
            "not_found",
        );

        // DELETE → 204, then 404 for GET, PATCH and a second DELETE.
        expect_status(&app.delete(&by_name).await, 204);
        for path in [&by_id, &by_name] {
            expect_error(&app.get(path).await, 404, "not_found");
            expect_error(&app.delete(path).await, 404, "not_found");
            expect_error(&app.patch(path, json!({})).await, 404, "not_found");
        }

        // PUT on a new name creates it: 201 + Location.
        let r = app.put(&format!("{c}/crud-two"), res.body.clone()).await;
        expect_status(&r, 201);
        assert_eq!(fetch(&app, &location(&r)).await, r.body, "{c}");
        assert_eq!(r.body[res.name_field], "crud-two", "{c}");
        let listed = names(&app, c).await;
        assert!(listed.contains(&"crud-two".to_string()), "{c}: {listed:?}");
        assert!(!listed.contains(&"crud-one".to_string()), "{c}: {listed:?}");
    }
}

#[actix_web::test]
async fn pagination_is_stable_and_bounded() {
    let app = spawn_app().await;
    let expected: Vec<String> = (0..5).map(|i| format!("page-{i}")).collect();
    for name in &expected {
        created(&app, "/tenants", json!({"name": name})).await;
    }
    // Twice: the order is the same every time (creation order).
    for _ in 0..2 {
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut next = Some("/tenants?limit=2".to_string());
        while let Some(url) = next {
            let page = fetch(&app, &url).await;
            let data = page["data"].as_array().expect("data");
            sizes.push(data.len());
            seen.extend(
                data.iter()
                    .map(|t| t["name"].as_str().expect("name").to_string()),
            );
            next = page["next"].as_str().map(str::to_string);
            if let Some(n) = &next {
                assert!(n.starts_with("/tenants?"), "{n}");
            }
        }
        assert_eq!(sizes, [2, 2, 1]);
        assert_eq!(seen, expected);
    }
    // A page that ends exactly at the last item has no `next`; past the end is empty.
    let page = fetch(&app, "/tenants?limit=5").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["next"], Value::Null);
    let page = fetch(&app, "/tenants?limit=2&offset=4").await;
    assert_eq!(page["data"][0]["name"], "page-4");
    assert_eq!(page["next"], Value::Null);
    for past_the_end in ["offset=50", "limit=1000&offset=9223372036854775807"] {
        let page = fetch(&app, &format!("/tenants?{past_the_end}")).await;
        assert_eq!(page, json!({"data": [], "next": null}), "{past_the_end}");
    }

    for (query, field) in [
        ("limit=0", Some("limit")),
        ("limit=1001", Some("limit")),
        ("limit=-1", Some("limit")),
        ("offset=-1", Some("offset")),
        ("limit=abc", None),
        ("offset=9223372036854775808", None),
    ] {
        for collection in ["/tenants", "/services", "/tenants/page-0/keys"] {
            let r = app.get(&format!("{collection}?{query}")).await;
            match field {
                Some(f) => expect_invalid(&r, &[f]),
                None => {
                    expect_error(&r, 400, "validation_failed");
                }
            }
        }
    }
    let page = fetch(&app, "/tenants?limit=1000").await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(5));
}

#[actix_web::test]
async fn api_keys_show_the_secret_once_and_revoke() {
    let app = spawn_app().await;
    app.seed().await;
    let expires = "2099-01-02T03:04:05.123456789Z";
    let r = app
        .post(
            "/tenants/acme/keys",
            json!({"name": "ci-bot", "expires_at": expires}),
        )
        .await;
    expect_status(&r, 201);
    let made = r.body.clone();
    let key = made["key"].as_str().expect("key once").to_string();
    let id = made["id"].as_str().expect("id").to_string();
    assert!(key.starts_with("tg-") && key.len() >= 43, "{key}");
    assert!(key.len() >= 46, "32 random bytes in base64url: {key}");
    let prefix = made["prefix"].as_str().expect("prefix");
    assert!(
        key.starts_with(prefix) && prefix.len() < key.len(),
        "{prefix}"
    );
    assert_eq!(made["tenant"], "acme");
    assert_eq!(made["routes"], Value::Null);
    assert_eq!(made["revoked_at"], Value::Null);
    assert_eq!(location(&r), format!("/tenants/acme/keys/{id}"));

    // Afterwards only the prefix: never the key, in a GET or a list.
    let shown = fetch(&app, &location(&r)).await;
    assert!(shown.get("key").is_none(), "{shown}");
    assert!(!app.get(&location(&r)).await.text.contains(&key));
    let mut expected = made.clone();
    expected.as_object_mut().expect("object").remove("key");
    assert_eq!(shown, expected, "GET shows what was created, minus the key");
    // Stored (and shown) at the API's microsecond precision, the same on every backend.
    assert_eq!(shown["expires_at"], made["expires_at"]);
    assert_eq!(
        time(&shown, "expires_at"),
        time(&json!({"t": "2099-01-02T03:04:05.123456Z"}), "t")
    );
    let listed = list_all(&app, "/tenants/acme/keys").await;
    assert_eq!(listed, vec![shown.clone()]);
    assert!(!app.get("/tenants/acme/keys").await.text.contains(&key));

    // Each creation gives a different key.
    let other = created(
        &app,
        "/tenants/acme/keys",
        json!({"name": "other", "routes": ["chat"]}),
    )
    .await;
    assert_ne!(other["key"], made["key"]);
    assert_eq!(other["routes"], json!(["chat"]));

    // DELETE revokes: still listed with revoked_at set; revoking again is a no-op 204.
    expect_status(&app.delete(&location(&r)).await, 204);
    let revoked = fetch(&app, &location(&r)).await;
    let revoked_at = time(&revoked, "revoked_at");
    assert_eq!(revoked["prefix"], made["prefix"]);
    let listed = list_all(&app, "/tenants/acme/keys").await;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], revoked);
    assert_eq!(listed[1]["revoked_at"], Value::Null);
    expect_status(&app.delete(&location(&r)).await, 204);
    assert_eq!(
        time(&fetch(&app, &location(&r)).await, "revoked_at"),
        revoked_at
    );

    // Unknown ids, malformed ids, another tenant's key, unknown tenants → 404.
    created(&app, "/tenants", json!({"name": "globex"})).await;
    for path in [
        "/tenants/acme/keys/0191e5a0-0000-7000-8000-000000000000".to_string(),
        "/tenants/acme/keys/not-a-uuid".to_string(),
        format!("/tenants/globex/keys/{id}"),
        format!("/tenants/nobody/keys/{id}"),
    ] {
        expect_error(&app.get(&path).await, 404, "not_found");
        expect_error(&app.delete(&path).await, 404, "not_found");
    }
    expect_error(&app.get("/tenants/nobody/keys").await, 404, "not_found");

    // An expiry in the past, a bad name.
    let r = app
        .post(
            "/tenants/acme/keys",
            json!({"name": "old", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    expect_refused_by_rule(&r, &["expires_at"]);
    expect_invalid(
        &app.post("/tenants/acme/keys", json!({"name": "Bad Key"}))
            .await,
        &["name"],
    );
    assert_eq!(list_all(&app, "/tenants/acme/keys").await.len(), 2);
}

#[actix_web::test]
async fn secrets_and_passwords_are_write_only() {
    let app = spawn_app().await;
    let secret = "Bearer sk-live-secret-abcd";
    let made = created(
        &app,
        "/credentials",
        json!({"name": "cred", "header_name": "Authorization", "header_value": secret}),
    )
    .await;
    assert_eq!(made["header_value"], "********abcd");
    assert_eq!(made["has_header_value"], true);
    assert_eq!(made["has_param_value"], false);
    // PATCH without the secret keeps it; null removes it (and all-or-none then fails).
    let r = app.patch("/credentials/cred", json!({"tags": ["t"]})).await;
    expect_status(&r, 200);
    assert_eq!(r.body["header_value"], "********abcd");
    let r = app
        .patch("/credentials/cred", json!({"header_value": null}))
        .await;
    expect_refused_by_rule(&r, &["header_value"]);
    for path in ["/credentials", "/credentials/cred"] {
        let text = app.get(path).await.text;
        assert!(!text.contains("sk-live"), "{path}: {text}");
    }

    let password = "a-long-password-Ω";
    let r = app
        .post(
            "/admins",
            json!({"username": "ops", "password": password, "role": "viewer"}),
        )
        .await;
    expect_status(&r, 201);
    assert_eq!(r.body["username"], "ops");
    let r2 = app.patch("/admins/ops", json!({"tags": ["x"]})).await;
    expect_status(&r2, 200);
    for reply in [
        r,
        r2,
        app.get("/admins/ops").await,
        app.get("/admins").await,
    ] {
        assert!(!reply.text.contains("password"), "{}", reply.text);
        assert!(!reply.text.contains(password), "{}", reply.text);
    }
    // The password works, and a PATCH that omits it keeps it; a new one replaces it.
    let token = app.login("ops", password).await;
    let me = app.send("GET", "/auth/whoami", Some(&token), None).await;
    assert_eq!(me.body["role"], "viewer");
    expect_status(
        &app.patch("/admins/ops", json!({"password": "another-password"}))
            .await,
        200,
    );
    let r = app
        .send(
            "POST",
            "/auth/login",
            None,
            Some(json!({"username": "ops", "password": password})),
        )
        .await;
    expect_error(&r, 401, "unauthorized");
    app.login("ops", "another-password").await;
    // Required on creation, bounded.
    let r = app
        .post("/admins", json!({"username": "nopw", "role": "viewer"}))
        .await;
    expect_refused_by_rule(&r, &["password"]);
    let r = app
        .post(
            "/admins",
            json!({"username": "short", "password": "1234567", "role": "viewer"}),
        )
        .await;
    expect_invalid(&r, &["password"]);
}

// --- 3: conflicts ---

#[actix_web::test]
async fn duplicates_and_references_in_use_are_conflicts() {
    let mut app = spawn_app().await;
    app.seed().await;
    created(&app, "/tenants/acme/keys", json!({"name": "ci"})).await;
    let before = all_config(&app).await;
    let version_before = version(&snapshot(&app).await);

    // Duplicate names (per resource), a duplicate alias, a path already routed.
    let credential = json!({"name": "openai-key", "header_name": "x", "header_value": "y"});
    let admin = json!({"username": "admin", "password": "password-123", "role": "admin"});
    let alias = route("chat-2", "/other", Some("gpt-4o"), "openai");
    let path = route("chat-3", "/openai/chat", None, "openai");
    let duplicates = [
        (
            "/tenants",
            json!({"name": "acme"}),
            "a tenant named 'acme' already exists",
        ),
        (
            "/credentials",
            credential,
            "a credential named 'openai-key' already exists",
        ),
        (
            "/services",
            service("openai", "openai", json!({})),
            "a service named 'openai' already exists",
        ),
        (
            "/routes",
            route("chat", "/other", None, "openai"),
            "a route named 'chat' already exists",
        ),
        ("/admins", admin, "an admin named 'admin' already exists"),
        (
            "/tenants/acme/keys",
            json!({"name": "ci"}),
            "API key name 'ci' already exists for this tenant",
        ),
        (
            "/routes",
            alias,
            "model_alias 'gpt-4o' is already used by route 'chat'",
        ),
        (
            "/routes",
            path,
            "path '/openai/chat' is already used by route 'chat'",
        ),
    ];
    for (path, body, message) in duplicates {
        assert_eq!(
            expect_error(&app.post(path, body).await, 409, "conflict"),
            message,
            "{path}"
        );
    }
    // Deleting what is still referenced names the referrers; the last admin stays.
    let in_use = [
        (
            "/credentials/openai-key",
            "credential 'openai-key' is used by services: openai",
        ),
        (
            "/services/openai",
            "service 'openai' is used by routes: chat",
        ),
        ("/admins/admin", "this is the last user with the admin role"),
    ];
    for (path, message) in in_use {
        assert_eq!(
            expect_error(&app.delete(path).await, 409, "conflict"),
            message,
            "{path}"
        );
    }
    let demote = app.patch("/admins/admin", json!({"role": "viewer"})).await;
    expect_error(&demote, 409, "conflict");
    // Nothing was written, and the snapshot did not move.
    assert_eq!(all_config(&app).await, before);
    assert_eq!(list_all(&app, "/tenants/acme/keys").await.len(), 1);
    assert_eq!(version(&snapshot(&app).await), version_before);

    // Renaming onto another object's name conflicts; an object is no conflict with itself.
    created(&app, "/tenants", json!({"name": "solo"})).await;
    let message = expect_error(
        &app.patch("/tenants/solo", json!({"name": "acme"})).await,
        409,
        "conflict",
    );
    assert!(message.contains("acme"), "{message}");
    expect_status(
        &app.patch("/routes/chat", json!({"model_alias": "gpt-4o"}))
            .await,
        200,
    );
    expect_status(
        &app.put("/tenants/acme", json!({"name": "acme"})).await,
        200,
    );

    // A tenant used by a private service and its tenant_admin, or named by a route's list.
    let mut private = service("solo-svc", "openai", json!({}));
    private["tenant"] = json!("solo");
    created(&app, "/services", private).await;
    let ta = json!({"username": "ta", "password": "password-123", "role": "tenant_admin",
                    "tenant": "solo"});
    created(&app, "/admins", ta).await;
    let restricted = route("only-acme", "/acme", None, "openai");
    created(
        &app,
        "/routes",
        with_field(&restricted, "tenants", json!(["acme"])),
    )
    .await;
    let in_use = [
        (
            "/tenants/solo",
            "tenant 'solo' is used by services: solo-svc; admins: ta",
        ),
        (
            "/tenants/acme",
            "tenant 'acme' is used by routes: only-acme",
        ),
    ];
    for (path, message) in in_use {
        assert_eq!(
            expect_error(&app.delete(path).await, 409, "conflict"),
            message
        );
        expect_status(&app.get(path).await, 200);
    }
    assert_eq!(
        list_all(&app, "/tenants/acme/keys").await.len(),
        1,
        "keys kept"
    );

    // With a second admin the first can go; then that one is the last.
    let r = app
        .post(
            "/admins",
            json!({"username": "root2", "password": "password-123", "role": "admin"}),
        )
        .await;
    expect_status(&r, 201);
    expect_status(&app.delete("/admins/admin").await, 204);
    // Deleting `admin` revoked its token; carry on as root2.
    app.token = app.login("root2", "password-123").await;
    expect_error(&app.delete("/admins/root2").await, 409, "conflict");
    assert_eq!(admin_role(&app).await, ["root2"]);
}

/// The usernames of users with the admin role.
async fn admin_role(app: &TestApp) -> Vec<String> {
    let admins = list_all(app, "/admins").await;
    let admins = admins.iter().filter(|a| a["role"] == "admin");
    admins
        .map(|a| a["username"].as_str().expect("username").to_string())
        .collect()
}

#[actix_web::test]
async fn the_last_admin_survives_concurrent_removals() {
    let mut app = spawn_app().await;
    // Removing a stored admin revokes its tokens: act with a CLI-minted one.
    app.token = app.token_for("admin", None);
    let demote = || Some(json!({"role": "viewer"}));
    // Each round: two admins, both removed (deleted or demoted) at the same time.
    let rounds = [
        ("DELETE", None, "DELETE", None),
        ("DELETE", None, "PATCH", demote()),
        ("PATCH", demote(), "PATCH", demote()),
    ];
    for (i, (m1, b1, m2, b2)) in rounds.into_iter().enumerate() {
        let body =
            json!({"username": format!("root{i}"), "password": "password-123", "role": "admin"});
        expect_status(&app.post("/admins", body).await, 201);
        let both = admin_role(&app).await;
        assert_eq!(both.len(), 2, "{both:?}");
        let (p1, p2) = (
            format!("/admins/{}", both[0]),
            format!("/admins/{}", both[1]),
        );
        let token = Some(app.token.as_str());
        let (r1, r2) = futures::join!(app.send(m1, &p1, token, b1), app.send(m2, &p2, token, b2));
        let mut statuses = [r1.status, r2.status];
        statuses.sort_unstable();
        assert!(
            statuses[0] < 300 && statuses[1] == 409,
            "{m1} {p1}: {}; {m2} {p2}: {}",
            r1.text,
            r2.text
        );
        assert_eq!(admin_role(&app).await.len(), 1);
    }
}

// --- 4: references to missing objects ---

#[actix_web::test]
async fn missing_references_are_409_naming_the_field() {
    let app = spawn_app().await;
    app.seed().await;
    let before = all_config(&app).await;
    let version_before = version(&snapshot(&app).await);
    let mut nowhere = service("s2", "openai", json!({}));
    nowhere["credential"] = json!("no-such-credential");
    let mut private = service("s3", "openai", json!({}));
    private["tenant"] = json!("no-such-tenant");
    let mut restricted = route("r2", "/r2", None, "openai");
    restricted["tenants"] = json!(["acme", "no-such-tenant"]);
    let cases = [
        ("/services", nowhere, "credential"),
        ("/services", private, "tenant"),
        (
            "/routes",
            route("r1", "/r1", None, "no-such-service"),
            "service",
        ),
        (
            "/routes",
            with_field(&restricted, "tenants", json!(["nobody"])),
            "tenants[0]",
        ),
        ("/routes", restricted, "tenants[1]"),
        (
            "/tenants/acme/keys",
            json!({"name": "k", "routes": ["nope"]}),
            "routes[0]",
        ),
        (
            "/tenants/acme/keys",
            json!({"name": "k", "routes": ["chat", "gone"]}),
            "routes[1]",
        ),
        (
            "/admins",
            json!({"username": "ta", "password": "password-123", "role": "tenant_admin",
                   "tenant": "nobody"}),
            "tenant",
        ),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, body).await;
        expect_missing_reference(&r, &[field]);
        assert!(!field_message(&r, field).is_empty(), "{}", r.text);
    }
    assert_eq!(all_config(&app).await, before);
    assert!(list_all(&app, "/tenants/acme/keys").await.is_empty());
    assert_eq!(version(&snapshot(&app).await), version_before);
}

// --- 5: Kong's provider-option rules ---

#[actix_web::test]
async fn kong_option_rules_name_dotted_paths() {
    let app = spawn_app().await;
    app.seed().await;
    let before = all_config(&app).await;

    // Services: (provider, options, fields named).
    let foreign = json!({"azure_instance": "x", "mistral_format": "openai"});
    let malformed = json!({"azure_instance": "no.dots", "azure_deployment_id": "a/b"});
    let services = [
        ("anthropic", json!({}), vec!["options.anthropic_version"]),
        (
            "azure",
            json!({}),
            vec!["options.azure_instance", "options.azure_deployment_id"],
        ),
        (
            "azure",
            malformed,
            vec!["options.azure_instance", "options.azure_deployment_id"],
        ),
        ("mistral", json!({}), vec!["options.mistral_format"]),
        (
            "mistral",
            json!({"mistral_format": "bogus"}),
            vec!["options.mistral_format"],
        ),
        (
            "mistral",
            json!({"mistral_format": "ollama"}),
            vec!["upstream_url"],
        ),
        (
            "llama2",
            json!({}),
            vec!["options.llama2_format", "upstream_url"],
        ),
        (
            "llama2",
            json!({"llama2_format": "gguf"}),
            vec!["options.llama2_format"],
        ),
        (
            "openai",
            json!({"anthropic_version": "2023-06-01"}),
            vec!["options.anthropic_version"],
        ),
        (
            "cohere",
            foreign,
            vec!["options.azure_instance", "options.mistral_format"],
        ),
        ("openai", json!({"bogus": 1}), vec!["options.bogus"]),
        ("gemini", json!({}), vec!["provider"]),
    ];
    for (provider, options, fields) in services {
        let r = app.post("/services", service("a", provider, options)).await;
        // An option another provider needs or owns is a rule across fields (422); a
        // value's own shape is 400.
        let across = fields.iter().all(|f| {
            let why = field_message(&r, f);
            why.starts_with("must set") || why.starts_with("only applies")
        });
        if across {
            expect_refused_by_rule(&r, &fields);
        } else {
            expect_invalid(&r, &fields);
        }
    }
    let slow = with_field(
        &service("a", "openai", json!({})),
        "timeouts",
        json!({"connect_ms": 0}),
    );
    expect_invalid(&app.post("/services", slow).await, &["timeouts.connect_ms"]);

    // Routes: (field, value, fields named).
    let out_of_range = json!({"temperature": 9, "top_p": 2, "top_k": 900, "input_cost": 0});
    let routes = [
        (
            "model",
            json!({"options": out_of_range}),
            vec![
                "model.options.temperature",
                "model.options.top_p",
                "model.options.top_k",
                "model.options.input_cost",
            ],
        ),
        (
            "model",
            json!({"options": {"x": 1}}),
            vec!["model.options.x"],
        ),
        ("model", json!({"name": ""}), vec!["model.name"]),
        ("route_type", json!("llm/v2/chat"), vec!["route_type"]),
        (
            "response_streaming",
            json!("sometimes"),
            vec!["response_streaming"],
        ),
        (
            "paths",
            json!(["/ok", "x", "/v1/models"]),
            vec!["paths[1]", "paths[2]"],
        ),
        ("model_alias", json!("-bad alias"), vec!["model_alias"]),
    ];
    for (field, value, fields) in routes {
        let body = with_field(&route("r", "/r", None, "openai"), field, value);
        expect_invalid(&app.post("/routes", body).await, &fields);
    }
    // No path and no alias: each field is fine alone, not together (422).
    let unreachable = with_field(&route("r", "/r", None, "openai"), "paths", json!([]));
    expect_refused_by_rule(&app.post("/routes", unreachable).await, &["paths"]);

    // Credentials: Kong's "all or none" for the header pair and the param triple (422, a
    // rule tying fields together), and single fields' own rules (400).
    let credentials = [
        (
            json!({"header_name": "Authorization"}),
            vec!["header_value"],
        ),
        (json!({"header_value": "v"}), vec!["header_name"]),
        (
            json!({"param_name": "key", "param_value": "v"}),
            vec!["param_location"],
        ),
        (
            json!({"param_location": "query"}),
            vec!["param_name", "param_value"],
        ),
        (
            json!({"param_name": "k", "param_value": "v", "param_location": "header"}),
            vec!["param_location"],
        ),
        (json!({}), vec!["header_name"]),
        (
            json!({"header_name": "Host", "header_value": "v"}),
            vec!["header_name"],
        ),
        (
            json!({"header_name": "x", "header_value": "a\r\nX-Evil: 1"}),
            vec!["header_value"],
        ),
    ];
    for (i, (body, fields)) in credentials.into_iter().enumerate() {
        let body = with_field(&body, "name", "c");
        let r = app.post("/credentials", body).await;
        if i < 4 || i == 5 {
            expect_refused_by_rule(&r, &fields);
        } else {
            expect_invalid(&r, &fields);
        }
    }

    // Kong's wording.
    let wording = [
        (
            service("a", "anthropic", json!({})),
            "options.anthropic_version",
            "must set 'options.anthropic_version' for anthropic provider",
        ),
        (
            service("a", "azure", json!({})),
            "options.azure_deployment_id",
            "must set 'options.azure_deployment_id' for azure provider",
        ),
        (
            service("a", "llama2", json!({})),
            "upstream_url",
            "must set 'upstream_url' for self-hosted providers/models",
        ),
        (
            service("a", "openai", json!({"anthropic_version": "2023-06-01"})),
            "options.anthropic_version",
            "only applies to the anthropic provider",
        ),
        (
            json!({"name": "c", "header_name": "Authorization"}),
            "header_value",
            "all or none of these fields must be set: 'header_name', 'header_value'",
        ),
        (
            json!({"name": "c", "param_name": "k", "param_value": "v"}),
            "param_location",
            "all or none of these fields must be set: 'param_name', 'param_value', 'param_location'",
        ),
    ];
    for (body, field, message) in wording {
        let path = if body.get("provider").is_some() {
            "/services"
        } else {
            "/credentials"
        };
        assert_eq!(field_message(&app.post(path, body).await, field), message);
    }
    assert_eq!(all_config(&app).await, before);

    // The complete forms are accepted, with Kong's default Azure API version filled in.
    let mut llama = service("l", "llama2", json!({"llama2_format": "raw"}));
    llama["upstream_url"] = json!("https://llama.example.com/v1/chat");
    let azure_options = json!({"azure_instance": "inst", "azure_deployment_id": "gpt4o"});
    let azure = created(&app, "/services", service("az", "azure", azure_options)).await;
    assert_eq!(azure["options"]["azure_api_version"], "2023-05-15");
    let anthropic = json!({"anthropic_version": "2023-06-01"});
    created(&app, "/services", service("an", "anthropic", anthropic)).await;
    created(
        &app,
        "/services",
        service("mi", "mistral", json!({"mistral_format": "openai"})),
    )
    .await;
    created(&app, "/services", llama).await;
    let param =
        json!({"name": "q", "param_name": "key", "param_value": "v", "param_location": "query"});
    created(&app, "/credentials", param).await;
}

#[actix_web::test]
async fn private_upstreams_are_refused_unless_allowed() {
    let strict = spawn_app_with(|s| s.allow_private_upstreams = false).await;
    let relaxed = spawn_app().await;
    for app in [&strict, &relaxed] {
        created(
            app,
            "/credentials",
            json!({"name": "openai-key", "header_name": "a", "header_value": "b"}),
        )
        .await;
    }
    let with_url = |name: &str, url: &str| {
        with_field(&service(name, "openai", json!({})), "upstream_url", url)
    };
    let private = [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/",
        "http://localhost:8080/v1",
        "http://[::1]/x",
        "http://10.0.0.7/x",
        "http://192.168.1.1/x",
        "http://metadata.google.internal/",
    ];
    for (i, url) in private.iter().enumerate() {
        let r = strict
            .post("/services", with_url(&format!("p{i}"), url))
            .await;
        expect_invalid(&r, &["upstream_url"]);
        assert!(field_message(&r, "upstream_url").contains("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS"));
        created(&relaxed, "/services", with_url(&format!("p{i}"), url)).await;
    }
    // Never: other schemes, user information, garbage.
    for url in [
        "ftp://api.example.com/x",
        "https://user:pw@api.example.com/",
        "not a url",
    ] {
        for app in [&strict, &relaxed] {
            expect_invalid(
                &app.post("/services", with_url("bad", url)).await,
                &["upstream_url"],
            );
        }
    }
    assert!(list_all(&strict, "/services").await.is_empty());
    let ok = created(
        &strict,
        "/services",
        with_url("public", "https://api.openai.com/v1/chat/completions"),
    )
    .await;
    assert_eq!(
        ok["upstream_url"],
        "https://api.openai.com/v1/chat/completions"
    );
    // A PATCH is validated the same way.
    let r = strict
        .patch(
            "/services/public",
            json!({"upstream_url": "http://127.0.0.1:9/x"}),
        )
        .await;
    expect_invalid(&r, &["upstream_url"]);
    assert_eq!(fetch(&strict, "/services/public").await, ok);
}

// --- 6: hostile and malformed input ---

#[actix_web::test]
async fn malformed_bodies_are_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    app.seed().await;
    let before = all_config(&app).await;
    let version_before = version(&snapshot(&app).await);
    let json_ct = "application/json";
    let deep = format!(
        r#"{{"name":"deep","limits":{{"x":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );

    // Not JSON at all: truncated, trailing comma or data, empty, invalid UTF-8, a lone
    // surrogate, a number no float holds, nesting past any sane depth.
    let not_json: Vec<Vec<u8>> = vec![
        br#"{"name": "trunc"#.to_vec(),
        br#"{"name": "x",}"#.to_vec(),
        br#"{"name": "x"} {"#.to_vec(),
        Vec::new(),
        b"{\"name\": \"bad\xff\xfe\"}".to_vec(),
        br#"{"name": "x", "display_name": "\ud800"}"#.to_vec(),
        br#"{"name": "x", "limits": {"rpm": 1e999}}"#.to_vec(),
        deep.into_bytes(),
    ];
    for body in not_json {
        let message = expect_error(
            &post_raw(&app, "/tenants", body, json_ct).await,
            400,
            "validation_failed",
        );
        assert!(
            message.starts_with("request body is not valid JSON"),
            "{message}"
        );
    }
    // JSON, but not an object.
    for body in [r#"[{"name": "x"}]"#, r#""acme""#, "null", "42"] {
        let r = post_raw(&app, "/tenants", body.into(), json_ct).await;
        assert_eq!(
            expect_error(&r, 400, "validation_failed"),
            "request body must be a JSON object"
        );
    }
    // Objects with a bad field: wrong types, unknown or missing fields, control characters.
    let bad_fields = [
        ("/tenants", r#"{"name": "x", "tags": "x"}"#, "tags"),
        ("/tenants", r#"{"name": "x", "tags": ["a", 5]}"#, "tags[1]"),
        ("/tenants", r#"{"name": 5}"#, "name"),
        ("/tenants", r#"{"display_name": "x"}"#, "name"),
        ("/tenants", r#"{"name": "x", "limits": [1]}"#, "limits"),
        ("/tenants", r#"{"name": "x", "extra": 1}"#, "extra"),
        (
            "/services",
            r#"{"name": "x", "provider": "openai", "options": {"bogus": 1}}"#,
            "options.bogus",
        ),
        (
            "/tenants",
            r#"{"name": "x", "display_name": "a\u0000b"}"#,
            "display_name",
        ),
        (
            "/tenants",
            r#"{"name": "x", "tags": ["ok", "a\u0000"]}"#,
            "tags[1]",
        ),
        (
            "/tenants",
            r#"{"name": "x", "display_name": "bell\u0007"}"#,
            "display_name",
        ),
        (
            "/tenants",
            r#"{"name": "x", "limits": {"a\u0000": 1}}"#,
            "limits.a\\0",
        ),
        (
            "/tenants",
            r#"{"name": "x", "tags": [" padded"]}"#,
            "tags[0]",
        ),
        (
            "/tenants",
            r#"{"name": "x", "display_name": "   "}"#,
            "display_name",
        ),
    ];
    for (path, body, field) in bad_fields {
        expect_invalid(&post_raw(&app, path, body.into(), json_ct).await, &[field]);
    }
    let long = json!({"name": "x", "display_name": "é".repeat(201), "tags": vec!["t"; 33]});
    expect_invalid(&app.post("/tenants", long).await, &["display_name", "tags"]);
    // Not JSON by its Content-Type.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let r = post_raw(&app, "/tenants", br#"{"name": "x"}"#.to_vec(), ct).await;
        let message = expect_error(&r, 415, "unsupported_media_type");
        assert!(message.contains("application/json"), "{message}");
    }
    // The same screening on PATCH and PUT.
    let token = Some(app.token.as_str());
    let r = app
        .send_raw(
            "PATCH",
            "/tenants/acme",
            token,
            Some(b"[]".to_vec()),
            Some(json_ct),
        )
        .await;
    expect_error(&r, 400, "validation_failed");
    expect_invalid(
        &app.patch("/tenants/acme", json!({"tags": "x"})).await,
        &["tags"],
    );
    expect_invalid(
        &app.put("/tenants/acme", json!({"extra": true})).await,
        &["extra"],
    );

    // The server still answers, and nothing was written.
    expect_status(&app.send("GET", "/healthz", None, None).await, 200);
    assert_eq!(all_config(&app).await, before);
    assert_eq!(version(&snapshot(&app).await), version_before);

    // JSON with a charset or a +json type is fine; so is no Content-Type at all.
    let json_types = [
        Some("application/json; charset=utf-8"),
        Some("application/vnd.api+json"),
        None,
    ];
    for (i, ct) in json_types.into_iter().enumerate() {
        let body = serde_json::to_vec(&json!({"name": format!("ct-{i}")})).expect("json");
        expect_status(
            &app.send_raw("POST", "/tenants", token, Some(body), ct)
                .await,
            201,
        );
    }
    assert_eq!(
        names(&app, "/tenants").await,
        ["acme", "ct-0", "ct-1", "ct-2"]
    );
}

#[actix_web::test]
async fn oversized_bodies_get_413() {
    let app = spawn_app().await;
    let filler = "x".repeat(10 * 1024 * 1024);
    let big = serde_json::to_vec(&json!({"name": "big", "display_name": filler})).expect("json");
    // With an honest Content-Length (awc sets it for a sized body).
    let r = post_raw(&app, "/tenants", big.clone(), "application/json").await;
    let message = expect_error(&r, 413, "payload_too_large");
    assert!(message.contains("1048576"), "{message}");
    // Chunked: no Content-Length, the limit is enforced while reading.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = big
        .chunks(64 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let mut resp = app
        .client
        .post(format!("{}/tenants", app.admin))
        .insert_header(("Authorization", format!("Bearer {}", app.token)))
        .insert_header(("Content-Type", "application/json"))
        .send_stream(futures::stream::iter(chunks))
        .await
        .expect("chunked request");
    assert_eq!(resp.status().as_u16(), 413);
    let body: Value = resp.json().await.expect("json error");
    assert_eq!(body["error"]["code"], "payload_too_large");
    // Just under the limit is read (and then validated on its merits).
    let mut edge = br#"{"name": "edge""#.to_vec();
    edge.resize(1024 * 1024 - 1, b' ');
    edge.push(b'}');
    expect_status(
        &post_raw(&app, "/tenants", edge, "application/json").await,
        201,
    );
    assert_eq!(names(&app, "/tenants").await, ["edge"]);
    expect_status(&app.send("GET", "/healthz", None, None).await, 200);
}

#[actix_web::test]
async fn names_must_match_the_pattern() {
    let app = spawn_app().await;
    app.seed().await;
    let before = all_config(&app).await;
    let bad = [
        "Acme".to_string(),
        "acme corp".to_string(),
        "a".repeat(64),
        "-acme".to_string(),
        ".acme".to_string(),
        "_acme".to_string(),
        "ünï".to_string(),
        "acme/x".to_string(),
        String::new(),
        "0191e5a0-0000-7000-8000-000000000000".to_string(),
        "acme\u{200b}".to_string(),
    ];
    for name in &bad {
        expect_invalid(
            &app.post("/tenants", json!({"name": name})).await,
            &["name"],
        );
    }
    // The same rule on every resource.
    let others = [
        (
            "/credentials",
            json!({"name": "Bad", "header_name": "a", "header_value": "b"}),
            "name",
        ),
        ("/services", service("Bad", "openai", json!({})), "name"),
        ("/routes", route("Bad", "/bad", None, "openai"), "name"),
        (
            "/admins",
            json!({"username": "Bad", "password": "password-123", "role": "viewer"}),
            "username",
        ),
        ("/tenants/acme/keys", json!({"name": "Bad"}), "name"),
    ];
    for (path, body, field) in others {
        expect_invalid(&app.post(path, body).await, &[field]);
    }
    assert_eq!(all_config(&app).await, before);
    for good in [
        "a".repeat(63),
        "0".to_string(),
        "a.b_c-d".to_string(),
        "9lives".to_string(),
    ] {
        let made = created(&app, "/tenants", json!({"name": good})).await;
        assert_eq!(made["name"], good.as_str());
        assert_eq!(fetch(&app, &format!("/tenants/{good}")).await, made);
    }
}

#[actix_web::test]
async fn unusual_unicode_round_trips_exactly() {
    let app = spawn_app().await;
    let texts = [
        "ACME 😀 株式会社 Ünïcødé",
        "\u{05e9}\u{05dc}\u{05d5}\u{05dd} \u{0645}\u{0631}\u{062d}\u{0628}\u{0627} \u{200f}rtl",
        "e\u{0301}\u{0302} a\u{0308} Z\u{0335}\u{0351}a\u{0336}l\u{0337}g\u{0338}o",
        "tab\tand\nnewline \u{feff}bom \u{1f3f3}\u{fe0f}\u{200d}\u{1f308}",
    ];
    for (i, text) in texts.iter().enumerate() {
        let name = format!("u{i}");
        let body = json!({"name": name, "display_name": text, "tags": [text]});
        let made = created(&app, "/tenants", body).await;
        for got in [made.clone(), fetch(&app, &format!("/tenants/{name}")).await] {
            assert_eq!(got["display_name"].as_str(), Some(*text));
            assert_eq!(got["tags"], json!([text]));
        }
    }
    let listed = list_all(&app, "/tenants").await;
    let shown: Vec<&str> = listed
        .iter()
        .filter_map(|t| t["display_name"].as_str())
        .collect();
    assert_eq!(shown, texts);
}

#[actix_web::test]
async fn huge_numbers_are_refused_or_kept_sanely() {
    let app = spawn_app().await;
    app.seed().await;
    // Beyond u64 (a float), or a budget no micro-dollar counter holds: refused, named.
    let r = post_raw(
        &app,
        "/tenants",
        br#"{"name": "big", "limits": {"requests_per_minute": 123456789012345678901234567890,
             "budget": {"amount_usd": 1e300, "period": "day"}}}"#
            .to_vec(),
        "application/json",
    )
    .await;
    expect_invalid(
        &r,
        &["limits.requests_per_minute", "limits.budget.amount_usd"],
    );
    // Typed numbers out of their range name the field.
    let svc = service("s", "openai", json!({}));
    let timeouts = [
        (json!({"connect_ms": 1e30}), "timeouts.connect_ms"),
        (json!({"read_ms": u64::MAX}), "timeouts.read_ms"),
        (json!({"max_connections": 0}), "timeouts.max_connections"),
        (
            json!({"max_connections": 65_537}),
            "timeouts.max_connections",
        ),
        (json!({"max_connections": -1}), "timeouts.max_connections"),
        (json!({"pool_wait_ms": 0}), "timeouts.pool_wait_ms"),
    ];
    for (value, field) in timeouts {
        let body = with_field(&svc, "timeouts", value);
        expect_invalid(&app.post("/services", body).await, &[field]);
    }
    let rt = route("r", "/r", None, "openai");
    let routes = [
        (
            "max_request_body_size",
            json!(u64::MAX),
            "max_request_body_size",
        ),
        ("max_request_body_size", json!(-1), "max_request_body_size"),
        (
            "model",
            json!({"options": {"max_tokens": 1e12}}),
            "model.options.max_tokens",
        ),
        (
            "model",
            json!({"options": {"output_cost": 1e300}}),
            "model.options.output_cost",
        ),
    ];
    for (key, value, field) in routes {
        expect_invalid(
            &app.post("/routes", with_field(&rt, key, value)).await,
            &[field],
        );
    }
}

// --- 7, 8: persistence and the snapshot ---

#[actix_web::test]
async fn configuration_survives_a_restart() {
    let app = spawn_app().await;
    app.seed().await;
    let key = created(&app, "/tenants/acme/keys", json!({"name": "ci"})).await;
    let full_key = key["key"].as_str().expect("key").to_string();
    let paths = [
        "/tenants/acme".to_string(),
        "/credentials/openai-key".to_string(),
        "/services/openai".to_string(),
        "/routes/chat".to_string(),
        format!("/tenants/acme/keys/{}", key["id"].as_str().expect("id")),
    ];
    let mut before = Vec::new();
    for p in &paths {
        before.push(fetch(&app, p).await);
    }
    let snap_before = snapshot(&app).await;
    assert_eq!(counts(&snap_before), [1, 1, 1, 1]);

    let (settings, dir) = app.shut_down().await;
    let app = start(settings, dir).await; // logs in again with the bootstrap password

    for (p, b) in paths.iter().zip(&before) {
        assert_eq!(&fetch(&app, p).await, b, "{p} after restart");
    }
    let keys = app.get("/tenants/acme/keys").await;
    expect_status(&keys, 200);
    assert!(!keys.text.contains(&full_key));
    assert!(keys.body["data"][0].get("key").is_none());
    assert_eq!(keys.body["data"][0]["prefix"], key["prefix"]);
    let snap_after = snapshot(&app).await;
    assert_eq!(counts(&snap_after), [1, 1, 1, 1]);
    assert!(
        version(&snap_after) >= version(&snap_before),
        "{snap_before} → {snap_after}"
    );
    // Still writable, and the version keeps going up from where it was.
    created(&app, "/tenants", json!({"name": "after"})).await;
    assert!(version(&snapshot(&app).await) > version(&snap_after));
}

#[actix_web::test]
async fn every_config_write_is_live_before_the_response() {
    let app = spawn_app().await;
    let mut last = snapshot(&app).await;
    assert_eq!(counts(&last), [0, 0, 0, 0]);

    let cred = json!({"name": "k", "header_name": "a", "header_value": "b"});
    let svc = with_field(&service("s", "openai", json!({})), "credential", "k");
    let tags = json!({"tags": ["x"]});
    let tenant = json!({"name": "t"});
    // (method, path, body, status, counts afterwards: [routes, services, tenants, api_keys])
    let writes = [
        ("POST", "/tenants", Some(tenant), 201, [0, 0, 1, 0]),
        ("PATCH", "/tenants/t", Some(tags.clone()), 200, [0, 0, 1, 0]),
        ("PUT", "/tenants/t2", Some(json!({})), 201, [0, 0, 2, 0]),
        ("PUT", "/tenants/t2", Some(tags.clone()), 200, [0, 0, 2, 0]),
        ("DELETE", "/tenants/t2", None, 204, [0, 0, 1, 0]),
        ("POST", "/credentials", Some(cred), 201, [0, 0, 1, 0]),
        (
            "PATCH",
            "/credentials/k",
            Some(tags.clone()),
            200,
            [0, 0, 1, 0],
        ),
        ("POST", "/services", Some(svc), 201, [0, 1, 1, 0]),
        (
            "PATCH",
            "/services/s",
            Some(tags.clone()),
            200,
            [0, 1, 1, 0],
        ),
        (
            "POST",
            "/routes",
            Some(route("r", "/r", Some("m"), "s")),
            201,
            [1, 1, 1, 0],
        ),
        ("PATCH", "/routes/r", Some(tags), 200, [1, 1, 1, 0]),
        (
            "POST",
            "/tenants/t/keys",
            Some(json!({"name": "k1"})),
            201,
            [1, 1, 1, 1],
        ),
        // A revoked key stays in the snapshot (the proxy refuses it by its `revoked_at`).
        ("DELETE", "/tenants/t/keys/{key}", None, 204, [1, 1, 1, 1]),
        ("DELETE", "/routes/r", None, 204, [0, 1, 1, 1]),
        ("DELETE", "/services/s", None, 204, [0, 0, 1, 1]),
        ("DELETE", "/credentials/k", None, 204, [0, 0, 1, 1]),
        ("DELETE", "/tenants/t", None, 204, [0, 0, 0, 0]),
    ];
    let mut key_id = String::new();
    for (method, path, body, status, expected) in writes {
        let path = path.replace("{key}", &key_id);
        let r = app.send(method, &path, Some(&app.token), body).await;
        expect_status(&r, status);
        // No waiting: the response is only sent once the new snapshot is in place.
        let now = snapshot(&app).await;
        assert!(
            version(&now) > version(&last),
            "{method} {path}: {last} → {now}"
        );
        assert_eq!(counts(&now), expected, "after {method} {path}");
        if path.ends_with("/keys") {
            key_id = r.body["id"].as_str().expect("key id").to_string();
        }
        last = now;
    }

    // Refused writes leave it alone.
    expect_invalid(
        &app.post("/tenants", json!({"name": "Bad"})).await,
        &["name"],
    );
    expect_error(&app.delete("/tenants/nobody").await, 404, "not_found");
    assert_eq!(snapshot(&app).await["version"], last["version"]);
    // Admin-user writes are live too (the snapshot holds their token generations).
    let viewer = json!({"username": "v", "password": "password-123", "role": "viewer"});
    expect_status(&app.post("/admins", viewer).await, 201);
    let now = snapshot(&app).await;
    assert!(
        version(&now) > version(&last),
        "POST /admins: {last} → {now}"
    );
    assert_eq!(counts(&now), counts(&last));
}

// --- 9, 10: OpenAPI, Swagger UI, the admin UI, health ---

/// Whether an OpenAPI path template matches a pattern whose `{}` stands for any parameter.
fn template_matches(template: &str, pattern: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) =
        (template.split('/').collect(), pattern.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if *p == "{}" {
                t.starts_with('{') && t.ends_with('}')
            } else {
                t == p
            }
        })
}

#[actix_web::test]
async fn openapi_document_lists_every_admin_endpoint() {
    let app = spawn_app().await;
    // Served without a token.
    let r = app.send("GET", "/openapi.json", None, None).await;
    expect_status(&r, 200);
    let doc: Value = serde_json::from_str(&r.text).expect("valid JSON");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");

    let mut expected: Vec<(&str, String)> = [
        ("post", "/auth/login"),
        ("get", "/auth/whoami"),
        ("get", "/status"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/tenants/{}/keys"),
        ("post", "/tenants/{}/keys"),
        ("get", "/tenants/{}/keys/{}"),
        ("delete", "/tenants/{}/keys/{}"),
        ("get", "/usage"),
    ]
    .map(|(m, p)| (m, p.to_string()))
    .into();
    for c in [
        "/admins",
        "/tenants",
        "/credentials",
        "/services",
        "/routes",
        "/policies",
    ] {
        expected.extend(["get", "post"].map(|m| (m, c.to_string())));
        expected.extend(["get", "patch", "put", "delete"].map(|m| (m, format!("{c}/{{}}"))));
    }
    for (method, pattern) in &expected {
        let found = paths
            .iter()
            .filter(|(t, _)| template_matches(t, pattern))
            .any(|(_, ops)| ops[method].is_object());
        assert!(
            found,
            "{} {pattern} missing from /openapi.json",
            method.to_uppercase()
        );
    }
    // The bearer scheme is declared; login and the health checks need none.
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    for (path, method) in [
        ("/auth/login", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert_eq!(paths[path][method]["security"], json!([{}]), "{path}");
    }
    // The served document is the completed one (its completion falls back to the bare
    // generated document if the result does not read back): every operation that needs a
    // token declares 401, every one with a body declares 409 and 422, and creates link
    // to what they created.
    let mut links = 0;
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let Some(responses) = op.get("responses").and_then(Value::as_object) else {
                continue;
            };
            if op.get("security") != Some(&json!([{}])) {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            if op.get("requestBody").is_some() && path != "/auth/login" {
                for status in ["409", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
            links += responses
                .values()
                .filter(|r| r.get("links").is_some())
                .count();
        }
    }
    assert!(links > 0, "no operation declares links");
}

#[actix_web::test]
async fn swagger_ui_admin_ui_and_unknown_paths() {
    let app = spawn_app().await;
    let docs = app.send("GET", "/docs/", None, None).await;
    expect_status(&docs, 200);
    assert!(docs.text.contains("swagger-ui"), "{}", docs.text);
    // Every script the page loads is served from the binary.
    let scripts: Vec<&str> = ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| docs.text.split(attr).skip(1))
        .filter_map(|s| s.split('"').next())
        .filter(|s| s.starts_with("./"))
        .collect();
    assert!(
        scripts.iter().any(|s| s.contains("swagger-ui-bundle.js")),
        "{scripts:?}"
    );
    for script in scripts {
        let path = format!("/docs/{}", script.trim_start_matches("./"));
        let r = app.send("GET", &path, None, None).await;
        expect_status(&r, 200);
        assert!(!r.text.is_empty(), "{path}");
    }
    // It loads this server's document.
    let initializer = app
        .send("GET", "/docs/swagger-initializer.js", None, None)
        .await;
    assert!(
        initializer.text.contains("\"/openapi.json\""),
        "{}",
        initializer.text
    );
    // No outside validator service: Swagger UI would send the document there when opened
    // by a host name other than localhost.
    assert!(
        initializer.text.contains("\"validatorUrl\": \"none\""),
        "{}",
        initializer.text
    );
    println!(
        "REDIRECT {:?}",
        app.send("GET", "/docs", None, None).await.status
    );

    let ui = app.send("GET", "/ui/", None, None).await;
    expect_status(&ui, 200);
    assert!(
        ui.headers
            .get("content-type")
            .is_some_and(|v| v.to_str().is_ok_and(|s| s.starts_with("text/html")))
    );
    assert!(
        ui.text.contains("<title>Tollgate admin</title>"),
        "{}",
        ui.text
    );

    for (token, path) in [
        (None, "/nope"),
        (Some(app.token.as_str()), "/nope/deeper"),
        (None, "/v1/chat/completions"),
    ] {
        let r = app.send("GET", path, token, None).await;
        assert_eq!(expect_error(&r, 404, "not_found"), "endpoint not found");
    }
}

#[actix_web::test]
async fn health_is_public_and_status_needs_a_token() {
    let app = spawn_app().await;
    let r = app.send("GET", "/healthz", None, None).await;
    expect_status(&r, 200);
    assert_eq!(r.body["status"], "ok");
    let r = app.send("GET", "/readyz", None, None).await;
    expect_status(&r, 200);
    assert_eq!(r.body["status"], "ready");
    for token in [None, Some("garbage"), Some("eyJhbGciOiJub25lIn0.e30.")] {
        let r = app.send("GET", "/status", token, None).await;
        expect_error(&r, 401, "unauthorized");
    }
    let r = app.get("/status").await;
    expect_status(&r, 200);
    let backend = if postgres_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(r.body["database"]["backend"], backend);
    assert_eq!(r.body["database"]["reachable"], true);
    assert!(r.body["node_id"].as_str().is_some_and(|n| !n.is_empty()));
    // Every role may read it.
    expect_status(&app.post("/tenants", json!({"name": "acme"})).await, 201);
    for role in ["viewer", "tenant_admin"] {
        let token = app.token_for(role, Some("acme"));
        expect_status(&app.send("GET", "/status", Some(&token), None).await, 200);
    }
}

/// While the database is unreachable, writes answer 503 `unavailable` (retryable), nothing
/// is acknowledged, and the node stays ready on its last snapshot (docs/behaviour.md, "Admin
/// conventions").
#[actix_web::test]
async fn database_down_means_503_for_writes_and_ready_on_the_snapshot() {
    let app = spawn_app().await;
    app.seed().await;
    let before = app.get("/status").await.body["snapshot"].clone();
    app.state.store.close().await;

    let write = app.post("/tenants", json!({"name": "late"})).await;
    assert_eq!(write.status, 503, "{}", write.text);
    assert_eq!(write.body["error"]["code"], "unavailable");
    let read = app.get("/tenants").await;
    assert_eq!(read.status, 503, "{}", read.text);

    let ready = app.send("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    let status = app.get("/status").await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.body["database"]["reachable"], false);
    assert_eq!(status.body["snapshot"]["version"], before["version"]);
    assert_eq!(status.body["snapshot"]["routes"], 1);
}
