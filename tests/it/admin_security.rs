//! The admin door (docs/security.md): revocable admin tokens (deleted, demoted, re-passworded,
//! logout-all — on every node), tenant_admin tokens bound to the tenant's id, login attempt
//! limits and bounded password hashing, the client address behind trusted proxies only,
//! escaped text-log lines, and a tenant_admin's scoped route views and `/status` counts.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tollgate::crypto::Binding;

use crate::support::process::{self, Env};
use crate::support::{ADMIN_PASSWORD, Reply, TestApp, spawn_app, spawn_app_with};

async fn whoami(app: &TestApp, token: &str) -> Reply {
    app.send("GET", "/auth/whoami", Some(token), None).await
}

fn assert_status(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
}

/// Creates an admin user through the API; returns its id.
async fn create_admin(app: &TestApp, username: &str, password: &str, extra: Value) -> String {
    let mut body = json!({"username": username, "password": password, "role": "admin"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = app.post("/admins", body).await;
    assert_status(&r, 201, &format!("create admin {username}"));
    r.body["id"].as_str().unwrap().to_string()
}

async fn login_reply(app: &TestApp, username: &str, password: &str) -> Reply {
    app.send(
        "POST",
        "/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    )
    .await
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

// --- revocation ---

#[actix_web::test]
async fn login_tokens_name_the_admin_by_id_and_carry_a_generation() {
    let app = spawn_app().await;
    let id = create_admin(&app, "ops", "ops-password-1", json!({})).await;
    let token = app.login("ops", "ops-password-1").await;
    let c = claims(&token);
    assert_eq!(c["sub"], id.as_str());
    assert_eq!(c["gen"], 0);
    let me = whoami(&app, &token).await;
    assert_status(&me, 200, "whoami");
    assert_eq!(
        me.body,
        json!({"sub": id, "name": "ops", "role": "admin", "tenant": null})
    );
}

#[actix_web::test]
async fn deleting_an_admin_revokes_its_tokens_at_once() {
    let app = spawn_app().await;
    create_admin(&app, "ops", "ops-password-1", json!({})).await;
    let token = app.login("ops", "ops-password-1").await;
    assert_status(&whoami(&app, &token).await, 200, "before delete");
    assert_status(&app.delete("/admins/ops").await, 204, "delete");
    let r = whoami(&app, &token).await;
    assert_status(&r, 401, "after delete");
    assert!(r.text.contains("revoked"), "{}", r.text);
    // Recreated under the same name: a new id, the old token stays dead.
    create_admin(&app, "ops", "ops-password-1", json!({})).await;
    assert_status(&whoami(&app, &token).await, 401, "after re-create");
}

#[actix_web::test]
async fn role_tenant_and_password_changes_revoke_but_tags_do_not() {
    let app = spawn_app().await;
    app.seed().await;
    assert_status(
        &app.post("/tenants", json!({"name": "other"})).await,
        201,
        "tenant other",
    );
    create_admin(&app, "ops", "ops-password-1", json!({})).await;

    // Tags only: the token keeps working.
    let token = app.login("ops", "ops-password-1").await;
    assert_status(
        &app.patch("/admins/ops", json!({"tags": ["team:a"]})).await,
        200,
        "tags",
    );
    assert_status(&whoami(&app, &token).await, 200, "after a tag change");

    // Role change.
    assert_status(
        &app.patch("/admins/ops", json!({"role": "viewer"})).await,
        200,
        "demote",
    );
    assert_status(&whoami(&app, &token).await, 401, "after demotion");
    let token = app.login("ops", "ops-password-1").await;
    assert_eq!(whoami(&app, &token).await.body["role"], "viewer");

    // Password change.
    assert_status(
        &app.patch("/admins/ops", json!({"password": "ops-password-2"}))
            .await,
        200,
        "new password",
    );
    assert_status(&whoami(&app, &token).await, 401, "after password change");
    assert_status(
        &login_reply(&app, "ops", "ops-password-1").await,
        401,
        "old password",
    );
    let token = app.login("ops", "ops-password-2").await;

    // Tenant change (tenant_admin of acme, then of other).
    assert_status(
        &app.patch(
            "/admins/ops",
            json!({"role": "tenant_admin", "tenant": "acme"}),
        )
        .await,
        200,
        "to tenant_admin",
    );
    assert_status(
        &whoami(&app, &token).await,
        401,
        "after becoming tenant_admin",
    );
    let token = app.login("ops", "ops-password-2").await;
    assert_eq!(whoami(&app, &token).await.body["tenant"], "acme");
    assert_status(
        &app.patch("/admins/ops", json!({"tenant": "other"})).await,
        200,
        "move tenant",
    );
    assert_status(&whoami(&app, &token).await, 401, "after the tenant moved");
    let token = app.login("ops", "ops-password-2").await;
    assert_eq!(whoami(&app, &token).await.body["tenant"], "other");
}

#[actix_web::test]
async fn logout_all_revokes_the_callers_tokens_and_a_new_login_works() {
    let app = spawn_app().await;
    create_admin(&app, "ops", "ops-password-1", json!({"role": "viewer"})).await;
    let first = app.login("ops", "ops-password-1").await;
    let second = app.login("ops", "ops-password-1").await;
    let r = app
        .send("POST", "/auth/logout-all", Some(&first), None)
        .await;
    assert_status(&r, 204, "logout-all (viewer, self)");
    for t in [&first, &second] {
        assert_status(&whoami(&app, t).await, 401, "after logout-all");
    }
    let fresh = app.login("ops", "ops-password-1").await;
    assert_status(&whoami(&app, &fresh).await, 200, "a new login");
    // Naming oneself explicitly is the same; the admin's own token is untouched throughout.
    let r = app
        .send(
            "POST",
            "/auth/logout-all",
            Some(&fresh),
            Some(json!({"admin": "ops"})),
        )
        .await;
    assert_status(&r, 204, "logout-all naming oneself");
    assert_status(
        &whoami(&app, &fresh).await,
        401,
        "after the second logout-all",
    );
    assert_status(&whoami(&app, &app.token).await, 200, "the admin's token");
}

#[actix_web::test]
async fn an_admin_revokes_another_admins_tokens_others_may_not() {
    let app = spawn_app().await;
    let ops_id = create_admin(&app, "ops", "ops-password-1", json!({})).await;
    create_admin(&app, "eve", "eve-password-1", json!({"role": "viewer"})).await;
    let ops = app.login("ops", "ops-password-1").await;
    let eve = app.login("eve", "eve-password-1").await;

    // A viewer may not revoke someone else's tokens (nor learn who exists).
    for target in ["ops", "nobody"] {
        let r = app
            .send(
                "POST",
                "/auth/logout-all",
                Some(&eve),
                Some(json!({"admin": target})),
            )
            .await;
        assert_status(&r, 403, &format!("viewer revoking {target}"));
    }
    assert_status(&whoami(&app, &ops).await, 200, "ops untouched");

    // The admin can, by id or name.
    let r = app
        .send(
            "POST",
            "/auth/logout-all",
            Some(&app.token),
            Some(json!({"admin": ops_id})),
        )
        .await;
    assert_status(&r, 204, "admin revokes ops by id");
    assert_status(&whoami(&app, &ops).await, 401, "ops after revocation");
    assert_status(&whoami(&app, &eve).await, 200, "eve untouched");
    assert_status(&whoami(&app, &app.token).await, 200, "the admin untouched");
    let r = app
        .send(
            "POST",
            "/auth/logout-all",
            Some(&app.token),
            Some(json!({"admin": "nobody"})),
        )
        .await;
    assert_status(&r, 404, "unknown admin");
    let r = app
        .send(
            "POST",
            "/auth/logout-all",
            Some(&app.token),
            Some(json!({"admin": "eve", "extra": 1})),
        )
        .await;
    assert_status(&r, 400, "unknown field");

    // A CLI-minted token has no stored admin to revoke.
    let cli = app.token_for("admin", None);
    let r = app.send("POST", "/auth/logout-all", Some(&cli), None).await;
    assert_status(&r, 400, "CLI token logout-all");
}

#[actix_web::test]
async fn a_token_naming_a_stored_admin_without_a_generation_is_refused() {
    let app = spawn_app().await;
    let keys = tollgate::app::jwt_keys(&app.settings).unwrap();
    let admin_id = app.get("/admins/admin").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    for sub in ["admin", admin_id.as_str()] {
        let (token, _) = keys
            .issue(sub, "admin", None, chrono::Duration::minutes(5))
            .unwrap();
        let r = whoami(&app, &token).await;
        assert_status(&r, 401, &format!("gen-less token for {sub}"));
        assert!(r.text.contains("generation"), "{}", r.text);
    }
    // A gen-less token for a subject that is no stored admin works (CLI-minted).
    let (token, _) = keys
        .issue("robot", "admin", None, chrono::Duration::minutes(5))
        .unwrap();
    assert_status(&whoami(&app, &token).await, 200, "CLI-style token");
    // A generation from the future (a forged-looking but validly signed token) is refused.
    let binding = Binding {
        tenant_id: None,
        generation: Some(7),
    };
    let (token, _) = keys
        .issue_bound(
            &admin_id,
            "admin",
            None,
            binding,
            chrono::Duration::minutes(5),
        )
        .unwrap();
    assert_status(
        &whoami(&app, &token).await,
        401,
        "generation ahead of the store",
    );
}

/// A second gateway process on the same database: a revocation on one node reaches the
/// other through the snapshot within a second.
#[actix_web::test]
async fn revocation_reaches_every_node() {
    let app = spawn_app().await;
    create_admin(&app, "ops", "ops-password-1", json!({})).await;
    let node = Env::for_settings(&app.settings).serve();
    let client = process::client();
    let token = process::login(&client, &node.admin, "ops", "ops-password-1").await;
    let (status, _, text) = process::call(
        &client,
        &app.admin,
        "GET",
        "/auth/whoami",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "node 2's token on node 1: {text}");

    let r = app
        .send("POST", "/auth/logout-all", Some(&token), None)
        .await;
    assert_status(&r, 204, "logout-all on node 1");
    let revoked_at = Instant::now();
    loop {
        let (status, _, _) = process::call(
            &client,
            &node.admin,
            "GET",
            "/auth/whoami",
            Some(&token),
            None,
        )
        .await;
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_millis(1500),
            "node 2 still accepts the revoked token after {:?}",
            revoked_at.elapsed()
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    // Deleting on node 2 reaches node 1 (whose snapshot is refreshed by its poller).
    let fresh = process::login(&client, &node.admin, "ops", "ops-password-1").await;
    assert_status(&whoami(&app, &fresh).await, 200, "fresh token on node 1");
    let (status, _, text) = process::call(
        &client,
        &node.admin,
        "DELETE",
        "/admins/ops",
        Some(&fresh),
        None,
    )
    .await;
    assert_eq!(status, 204, "{text}");
    let deleted_at = Instant::now();
    while whoami(&app, &fresh).await.status != 401 {
        assert!(
            deleted_at.elapsed() < Duration::from_millis(1500),
            "node 1 still accepts a deleted admin's token"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    node.stop_async().await;
}

// --- tenant binding ---

#[actix_web::test]
async fn a_tenant_admin_token_follows_its_tenant_through_a_rename() {
    let app = spawn_app().await;
    app.seed().await;
    create_admin(
        &app,
        "acme-ops",
        "acme-ops-password-1",
        json!({"role": "tenant_admin", "tenant": "acme"}),
    )
    .await;
    let token = app.login("acme-ops", "acme-ops-password-1").await;
    let acme_id = app.get("/tenants/acme").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(claims(&token)["tenant_id"], acme_id.as_str());
    assert_status(
        &app.patch("/tenants/acme", json!({"name": "acme-corp"}))
            .await,
        200,
        "rename",
    );
    let me = whoami(&app, &token).await;
    assert_status(&me, 200, "after rename");
    assert_eq!(me.body["tenant"], "acme-corp");
    let r = app.send("GET", "/tenants", Some(&token), None).await;
    assert_eq!(r.body["data"][0]["id"], acme_id.as_str(), "{}", r.text);
    let r = app
        .send(
            "POST",
            "/tenants/acme-corp/keys",
            Some(&token),
            Some(json!({"name": "k1"})),
        )
        .await;
    assert_status(&r, 201, "own key under the new name");
    // A new tenant taking the old name is not this token's.
    assert_status(
        &app.post("/tenants", json!({"name": "acme"})).await,
        201,
        "new acme",
    );
    let r = app
        .send("GET", "/tenants/acme/keys", Some(&token), None)
        .await;
    assert_status(&r, 404, "the new tenant named acme");
}

#[actix_web::test]
async fn a_recreated_tenant_never_inherits_an_old_token() {
    let app = spawn_app().await;
    assert_status(
        &app.post("/tenants", json!({"name": "temp"})).await,
        201,
        "temp",
    );
    let old_id = app.get("/tenants/temp").await.body["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Bound by id, as Tollgate (login and `tollgate admin token`) issues them.
    let keys = tollgate::app::jwt_keys(&app.settings).unwrap();
    let binding = Binding {
        tenant_id: Some(old_id),
        generation: None,
    };
    let (token, _) = keys
        .issue_bound(
            "cli",
            "tenant_admin",
            Some("temp"),
            binding,
            chrono::Duration::minutes(5),
        )
        .unwrap();
    assert_status(
        &app.send("GET", "/tenants/temp/keys", Some(&token), None)
            .await,
        200,
        "own tenant",
    );
    assert_status(&app.delete("/tenants/temp").await, 204, "delete");
    assert_status(
        &app.post("/tenants", json!({"name": "temp"})).await,
        201,
        "recreate",
    );
    for path in ["/auth/whoami", "/tenants/temp/keys", "/tenants"] {
        let r = app.send("GET", path, Some(&token), None).await;
        assert!(
            r.status == 401 || r.status == 404,
            "{path} with the old tenant's token: {} {}",
            r.status,
            r.text
        );
    }
}

#[actix_web::test]
async fn cli_tenant_admin_tokens_are_bound_to_the_tenant_id() {
    let app = spawn_app().await;
    app.seed().await;
    let env = Env::for_settings(&app.settings);
    let out = env
        .run_async(&[
            "admin",
            "token",
            "--role",
            "tenant_admin",
            "--tenant",
            "acme",
        ])
        .await;
    assert!(out.success(), "{}", out.all());
    let token = out.stdout.trim().to_string();
    let acme_id = app.get("/tenants/acme").await.body["id"].clone();
    assert_eq!(claims(&token)["tenant_id"], acme_id);
    let out = env
        .run_async(&[
            "admin",
            "token",
            "--role",
            "tenant_admin",
            "--tenant",
            "ghost",
        ])
        .await;
    assert!(!out.success(), "{}", out.all());
    assert!(out.stderr.contains("ghost"), "{}", out.stderr);
}

// --- login limits and bounded hashing ---

#[actix_web::test]
async fn the_eleventh_wrong_password_is_429_while_another_user_logs_in() {
    let app = spawn_app().await;
    create_admin(&app, "victim", "victim-password-1", json!({})).await;
    for i in 1..=10 {
        let r = login_reply(&app, "victim", "wrong-password").await;
        assert_status(&r, 401, &format!("wrong password #{i}"));
    }
    let started = Instant::now();
    let r = login_reply(&app, "victim", "wrong-password").await;
    assert_status(&r, 429, "the 11th");
    assert_eq!(r.body["error"]["code"], "rate_limited");
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "no hashing when locked"
    );
    // Even the right password waits: the name is locked, not just wrong guesses.
    assert_status(
        &login_reply(&app, "victim", "victim-password-1").await,
        429,
        "right password while locked",
    );
    // Another user is not affected.
    app.login("admin", ADMIN_PASSWORD).await;
    // Unknown names are limited the same way (a 429 does not reveal who exists).
    for _ in 0..10 {
        assert_status(&login_reply(&app, "ghost", "x").await, 401, "ghost");
    }
    assert_status(&login_reply(&app, "ghost", "x").await, 429, "11th ghost");
}

async fn fail_logins(app: &TestApp, n: usize, xff: &str, tag: &str) {
    let results: Vec<u16> = futures::stream::iter(0..n)
        .map(|i| {
            let req = app
                .client
                .post(format!("{}/auth/login", app.admin))
                .insert_header(("X-Forwarded-For", xff.to_string()));
            async move {
                req.send_json(&json!({"username": format!("{tag}-{i}"), "password": "nope"}))
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert!(results.iter().all(|s| *s == 401), "{results:?}");
}

async fn login_from(app: &TestApp, xff: &str, username: &str) -> u16 {
    app.client
        .post(format!("{}/auth/login", app.admin))
        .insert_header(("X-Forwarded-For", xff.to_string()))
        .send_json(&json!({"username": username, "password": "nope"}))
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn forwarded_for_is_ignored_from_an_untrusted_peer() {
    let app = spawn_app().await;
    // 50 failures (distinct names), each claiming another address: all count for 127.0.0.1.
    fail_logins(&app, 50, "198.51.100.1", "a").await;
    assert_eq!(login_from(&app, "203.0.113.77", "fresh").await, 429);
}

#[actix_web::test]
async fn forwarded_for_is_believed_from_a_trusted_proxy() {
    let app = spawn_app_with(|s| s.trusted_proxies = Some("127.0.0.1/32, 10.0.0.0/8".into())).await;
    // The client forged a leftmost hop; the rightmost untrusted one is 198.51.100.1.
    fail_logins(&app, 50, "6.6.6.6, 198.51.100.1, 10.1.2.3", "a").await;
    assert_eq!(login_from(&app, "198.51.100.1", "fresh").await, 429);
    assert_eq!(
        login_from(&app, "7.7.7.7, 198.51.100.1", "fresh2").await,
        429
    );
    // Another client behind the same proxy is not limited.
    assert_eq!(login_from(&app, "198.51.100.2", "fresh3").await, 401);
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// 200 logins at once against the real binary: its peak resident memory stays under
/// 150 MB, every answer is 401 or 503 (+ retry-after), and the proxy keeps answering.
#[actix_web::test]
async fn a_login_burst_keeps_memory_bounded_and_the_proxy_answering() {
    let app = spawn_app().await;
    app.seed().await;
    let key = app.post("/tenants/acme/keys", json!({"name": "k"})).await;
    let key = key.body["key"].as_str().unwrap().to_string();
    // Trusting loopback lets each login come "from" its own address, so the attempt
    // limits do not turn the burst away: every one of them reaches the hashing stage.
    let mut node = Env::for_settings(&app.settings)
        .set("TOLLGATE_TRUSTED_PROXIES", "127.0.0.1")
        .serve();
    let pid = node.pid();
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .connector(awc::Connector::new().limit(400))
        .finish();
    let before = rss_kib(pid, "VmRSS:");

    let proxy_probe = {
        let (client, proxy, key) = (client.clone(), node.proxy.clone(), key.clone());
        async move {
            let mut worst = Duration::ZERO;
            let mut answered = 0;
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                let t = Instant::now();
                let mut r = client
                    .get(format!("{proxy}/v1/models"))
                    .insert_header(("Authorization", format!("Bearer {key}")))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let _ = r.body().await;
                worst = worst.max(t.elapsed());
                answered += 1;
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            (answered, worst)
        }
    };
    let burst = futures::future::join_all((0..200).map(|i| {
        let req = client
            .post(format!("{}/auth/login", node.admin))
            .insert_header((
                "X-Forwarded-For",
                format!("198.51.{}.{}", i / 200, i % 200 + 1),
            ));
        async move {
            let r = req
                .send_json(&json!({"username": format!("user-{i}"), "password": "wrong-password"}))
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    }));
    let (results, (answered, worst)) = futures::future::join(burst, proxy_probe).await;
    let peak = rss_kib(pid, "VmHWM:");
    let after = rss_kib(pid, "VmRSS:");
    let unauthorized = results.iter().filter(|(s, _)| *s == 401).count();
    let shed = results.iter().filter(|(s, _)| *s == 503).count();
    eprintln!(
        "login burst: {unauthorized} × 401, {shed} × 503; RSS before {before} KiB, peak {peak} KiB, after {after} KiB; proxy answered {answered} times, slowest {worst:?}"
    );
    assert_eq!(unauthorized + shed, 200, "{results:?}");
    assert!(unauthorized > 0, "no login was verified at all");
    assert!(
        results.iter().all(|(s, retry)| *s != 503 || *retry),
        "a 503 without retry-after"
    );
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
    assert!(answered >= 5, "the proxy answered only {answered} times");
    assert!(worst < Duration::from_secs(1), "the proxy took {worst:?}");
    node.stop_async().await;
}

// --- the text log ---

#[actix_web::test]
async fn a_newline_in_a_login_name_does_not_forge_a_log_line() {
    let app = spawn_app().await;
    let node = Env::for_settings(&app.settings).serve();
    let client = process::client();
    let forged =
        "2026-12-07T04:00:00.000000Z  INFO tollgate::admin::auth: admin logged in username=admin";
    let (status, _, text) = process::call(
        &client,
        &node.admin,
        "POST",
        "/auth/login",
        None,
        Some(json!({"username": format!("bob\n{forged}\n"), "password": "x"})),
    )
    .await;
    assert_eq!(status, 401, "{text}");
    let (_, output) = node.stop_async().await;
    let output = process::strip_ansi(&output);
    assert!(
        !output.lines().any(|l| l.starts_with("2026-12-07T04:00:00")),
        "a forged line:\n{output}"
    );
    let line = output
        .lines()
        .find(|l| l.contains("admin login failed"))
        .unwrap_or_else(|| panic!("no failed-login line:\n{output}"));
    assert!(line.contains("bob\\n2026-12-07T04:00:00"), "{line}");
}

// --- a tenant_admin's scoped views ---

#[actix_web::test]
async fn a_tenant_admin_sees_only_its_tenant_in_routes_and_status() {
    let app = spawn_app().await;
    app.seed().await; // acme, route chat (every tenant)
    assert_status(
        &app.post("/tenants", json!({"name": "other-co"})).await,
        201,
        "other-co",
    );
    let other_id = app.get("/tenants/other-co").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, path, tenants) in [
        ("both", "/both", json!(["other-co", "acme"])),
        ("only-other", "/only-other", json!(["other-co"])),
    ] {
        let r = app
            .post(
                "/routes",
                json!({"name": name, "paths": [path], "service": "openai",
                       "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}, "tenants": tenants}),
            )
            .await;
        assert_status(&r, 201, name);
    }
    for (tenant, key) in [("acme", "a1"), ("other-co", "o1"), ("other-co", "o2")] {
        let r = app
            .post(&format!("/tenants/{tenant}/keys"), json!({"name": key}))
            .await;
        assert_status(&r, 201, key);
    }
    create_admin(
        &app,
        "acme-ops",
        "acme-ops-password-1",
        json!({"role": "tenant_admin", "tenant": "acme"}),
    )
    .await;
    let ta = app.login("acme-ops", "acme-ops-password-1").await;

    let r = app.send("GET", "/routes/both", Some(&ta), None).await;
    assert_status(&r, 200, "GET /routes/both");
    assert_eq!(r.body["tenants"], json!(["acme"]));
    let list = app.send("GET", "/routes", Some(&ta), None).await;
    assert_status(&list, 200, "GET /routes");
    for r in [&r, &list] {
        assert!(!r.text.contains("other-co"), "{}", r.text);
        assert!(!r.text.contains(&other_id), "{}", r.text);
    }
    let chat = list.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "chat")
        .unwrap();
    assert_eq!(
        chat["tenants"],
        Value::Null,
        "null still means every tenant"
    );
    // The admin still sees both tenants.
    assert_eq!(
        app.get("/routes/both").await.body["tenants"],
        json!(["other-co", "acme"])
    );

    let mine = app.send("GET", "/status", Some(&ta), None).await;
    assert_status(&mine, 200, "tenant_admin /status");
    let counts = |r: &Reply| {
        let s = &r.body["snapshot"];
        (
            s["routes"].clone(),
            s["services"].clone(),
            s["tenants"].clone(),
            s["api_keys"].clone(),
        )
    };
    assert_eq!(counts(&mine), (json!(2), json!(1), json!(1), json!(1)));
    let all = app.get("/status").await;
    assert_eq!(counts(&all), (json!(3), json!(1), json!(2), json!(3)));
}
