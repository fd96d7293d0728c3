//! Contract tests of `Store`: the same suite runs against SQLite (a fresh file in a temp
//! dir) and PostgreSQL (a fresh database on the server named by
//! `TOLLGATE_TEST_POSTGRES_URL`, dropped afterwards). The PostgreSQL ones are `#[ignore]`d:
//! `.ci/run` runs them, and run without the variable they fail.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use serde_json::json;
use sqlx::Connection;
use sqlx::types::Json;
use tollgate::store::{
    self, AdminRecord, ApiKeyRecord, Backend, CredentialRecord, Lookup, Page, PgStore, RouteRecord,
    ServiceRecord, SharedStore, StoreError, StoreResult, SystemSecretRecord, TenantRecord,
    UsageQuery, UsageRow, new_id, now,
};
use uuid::Uuid;

const PG_ENV: &str = "TOLLGATE_TEST_POSTGRES_URL";

// --- harness ---

async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(SharedStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    let s = store::connect(&url).await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    s.migrate().await.unwrap();
    test(s.clone()).await;
    s.close().await;
}

async fn run_postgres<F, Fut>(test: F)
where
    F: FnOnce(SharedStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let server_url = crate::support::required_env(PG_ENV, "a PostgreSQL server URL");
    let name = format!("tollgate_test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&server_url).unwrap();
    url.set_path(&format!("/{name}"));

    let outcome = AssertUnwindSafe(async {
        let s = store::connect(url.as_str()).await.unwrap();
        assert_eq!(s.backend(), Backend::Postgres);
        s.migrate().await.unwrap();
        test(s.clone()).await;
        s.close().await;
    })
    .catch_unwind()
    .await;

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Instantiates each `async fn(SharedStore)` once per backend, `store::sqlite::<name>`
/// and `store::postgres::<name>`; those after `postgres_only:` only on PostgreSQL.
macro_rules! contract_tests {
    ($($name:ident),* $(,)?; postgres_only: $($pg_name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run_sqlite(super::$name).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs TOLLGATE_TEST_POSTGRES_URL (a PostgreSQL server; .ci/run sets it)"]
                async fn $name() {
                    super::run_postgres(super::$name).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs TOLLGATE_TEST_POSTGRES_URL (a PostgreSQL server; .ci/run sets it)"]
                async fn $pg_name() {
                    super::run_postgres(super::$pg_name).await;
                }
            )*
        }
    };
}

contract_tests!(
    admins_crud_bump_version_and_token_generation,
    tenants_crud,
    credentials_crud,
    services_crud,
    routes_crud_and_path_index,
    api_keys_crud,
    api_key_last_used_moves_forward_only,
    pagination_is_ordered_by_created_at_then_id,
    duplicate_names_conflict,
    route_alias_and_path_conflicts,
    api_key_conflicts,
    missing_references_are_invalid,
    update_of_missing_row_is_not_found,
    delete_while_referenced_names_referrers,
    tenant_delete_cascades_api_keys,
    config_writes_bump_version,
    load_config_is_consistent,
    revoke_is_idempotent,
    key_limits_are_replaced,
    system_secret_insert_keeps_first,
    reencrypt_all_rewrites_every_secret,
    reencrypt_all_rolls_back_on_error,
    unicode_round_trip,
    failed_multi_row_write_leaves_nothing,
    concurrent_writers_all_succeed,
    ping_and_close,
    usage_add_sums_every_counter,
    usage_keys_stay_separate,
    usage_range_and_tenant_filters,
    usage_batch_of_1000_rows,
    usage_exact_numbers_round_trip,
    usage_source_is_a_key_and_rejected_adds_up;
    postgres_only: usage_failed_batch_writes_nothing,
);

// --- fixtures ---

const ALL: Page = Page {
    limit: 1000,
    offset: 0,
};

fn at(secs: i64, micros: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000 + secs, micros * 1000)
        .unwrap()
}

fn tenant(name: &str) -> TenantRecord {
    let t = now();
    TenantRecord {
        id: new_id(),
        name: name.into(),
        display_name: Some(format!("{name} Inc.")),
        limits: Json(json!({"requests_per_minute": 60, "nested": {"a": [1, 2.5, "x", null]}})),
        tags: Json(vec!["team:a".into(), "env:test".into()]),
        created_at: t,
        updated_at: t,
    }
}

fn admin(name: &str, tenant_id: Option<Uuid>) -> AdminRecord {
    let t = now();
    AdminRecord {
        id: new_id(),
        name: name.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: if tenant_id.is_some() {
            "tenant_admin"
        } else {
            "admin"
        }
        .into(),
        tenant_id,
        tags: Json(vec![]),
        created_at: t,
        updated_at: t,
        token_generation: 0,
    }
}

fn credential(name: &str) -> CredentialRecord {
    let t = now();
    CredentialRecord {
        id: new_id(),
        name: name.into(),
        header_name: Some("Authorization".into()),
        header_value: Some(vec![1, 2, 3, 4, 0, 255]),
        param_name: Some("key".into()),
        param_value: Some(vec![9, 8, 7]),
        param_location: Some("query".into()),
        allow_override: true,
        header_value_hint: Some("…x4f2".into()),
        param_value_hint: Some("…987".into()),
        tags: Json(vec!["provider:openai".into()]),
        created_at: t,
        updated_at: t,
    }
}

fn service(name: &str, credential_id: Option<Uuid>, tenant_id: Option<Uuid>) -> ServiceRecord {
    let t = now();
    ServiceRecord {
        id: new_id(),
        name: name.into(),
        provider: "openai".into(),
        upstream_url: Some("https://api.openai.com/v1".into()),
        credential_id,
        options: Json(json!({"organization": "org-1"})),
        timeouts: Json(json!({"connect_ms": 1000, "read_ms": 60000})),
        tenant_id,
        tags: Json(vec![]),
        created_at: t,
        updated_at: t,
    }
}

fn route(name: &str, service_id: Uuid, paths: &[&str]) -> RouteRecord {
    let t = now();
    RouteRecord {
        id: new_id(),
        name: name.into(),
        paths: Json(paths.iter().map(|p| p.to_string()).collect()),
        model_alias: None,
        service_id,
        route_type: "llm/v1/chat".into(),
        model: Json(json!({"name": "gpt-4o", "options": {"temperature": 0.5}})),
        logging: Json(json!({"log_payloads": false})),
        response_streaming: "allow".into(),
        model_name_header: true,
        max_request_body_size: 8 * 1024 * 1024,
        tenants: None,
        policies: Json(json!([])),
        tags: Json(vec!["r".into()]),
        created_at: t,
        updated_at: t,
        limits: Json(json!({"requests_per_minute": 30, "shared": true})),
    }
}

fn api_key(tenant_id: Uuid, name: &str) -> ApiKeyRecord {
    let t = now();
    ApiKeyRecord {
        id: new_id(),
        tenant_id,
        name: name.into(),
        prefix: "tg_abc123".into(),
        key_hash: Uuid::new_v4().as_bytes().repeat(2),
        routes: None,
        tags: Json(vec![]),
        limits: Json(json!({"budget": {"amount_usd": 5.0, "period": "day"}})),
        expires_at: Some(t + chrono::Duration::days(30)),
        last_used_at: None,
        revoked_at: None,
        created_at: t,
        updated_at: t,
    }
}

fn secret(name: &str, value: &[u8]) -> SystemSecretRecord {
    SystemSecretRecord {
        name: name.into(),
        value: value.to_vec(),
        created_at: now(),
    }
}

#[track_caller]
fn conflict<T: std::fmt::Debug>(r: StoreResult<T>) -> String {
    match r {
        Err(StoreError::Conflict(m)) => m,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn invalid_reference<T: std::fmt::Debug>(r: StoreResult<T>) -> (String, String) {
    match r {
        Err(StoreError::InvalidReference { field, message }) => (field, message),
        other => panic!("expected InvalidReference, got {other:?}"),
    }
}

#[track_caller]
fn not_found<T: std::fmt::Debug>(r: StoreResult<T>) -> String {
    match r {
        Err(StoreError::NotFound(m)) => m,
        other => panic!("expected NotFound, got {other:?}"),
    }
}

/// A tenant, a credential and a service to hang routes and keys on.
async fn base(s: &SharedStore) -> (TenantRecord, CredentialRecord, ServiceRecord) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let c = credential("openai-key");
    s.insert_credential(&c).await.unwrap();
    let svc = service("openai", Some(c.id), None);
    s.insert_service(&svc).await.unwrap();
    (t, c, svc)
}

// --- CRUD ---

async fn admins_crud_bump_version_and_token_generation(s: SharedStore) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let v0 = s.config_version().await.unwrap();

    let root = admin("root", None);
    let mut ta = admin("acme-admin", Some(t.id));
    ta.tags = Json(vec!["x".into()]);
    s.insert_admin(&root).await.unwrap();
    s.insert_admin(&ta).await.unwrap();
    assert_eq!(s.count_admins().await.unwrap(), 2);
    assert_eq!(
        s.get_admin(&Lookup::Id(ta.id)).await.unwrap(),
        Some(ta.clone())
    );
    assert_eq!(
        s.get_admin(&Lookup::Name("root".into())).await.unwrap(),
        Some(root.clone())
    );
    assert_eq!(
        s.get_admin(&Lookup::Name("nobody".into())).await.unwrap(),
        None
    );
    assert_eq!(
        s.list_admins(ALL).await.unwrap(),
        vec![root.clone(), ta.clone()]
    );

    let generation = |s: SharedStore, id: Uuid| async move {
        s.get_admin(&Lookup::Id(id))
            .await
            .unwrap()
            .unwrap()
            .token_generation
    };
    // Tags and name only: the generation stays.
    let mut renamed = ta.clone();
    renamed.tags = Json(vec!["y".into()]);
    renamed.token_generation = 99; // ignored: the store owns the generation
    s.update_admin(&renamed).await.unwrap();
    assert_eq!(
        generation(s.clone(), ta.id).await,
        0,
        "a tag change revokes nothing"
    );

    let mut changed = ta.clone();
    changed.name = "acme-owner".into();
    changed.role = "admin".into();
    changed.tenant_id = None;
    changed.password_hash = "other".into();
    changed.updated_at = now() + chrono::Duration::seconds(5);
    s.update_admin(&changed).await.unwrap();
    changed.token_generation = 1;
    assert_eq!(
        s.get_admin(&Lookup::Id(ta.id)).await.unwrap(),
        Some(changed.clone())
    );
    assert_eq!(
        s.get_admin(&Lookup::Name("acme-admin".into()))
            .await
            .unwrap(),
        None
    );
    // Each of role, tenant (including to/from none) and password bumps on its own.
    let mut step = changed.clone();
    for (what, change) in [
        (
            "role",
            &(|a: &mut AdminRecord, _| a.role = "viewer".into()) as &dyn Fn(&mut AdminRecord, Uuid),
        ),
        ("tenant set", &|a: &mut AdminRecord, t| {
            a.tenant_id = Some(t)
        }),
        ("tenant cleared", &|a: &mut AdminRecord, _| {
            a.tenant_id = None
        }),
        ("password", &|a: &mut AdminRecord, _| {
            a.password_hash = "third".into()
        }),
    ] {
        let before = generation(s.clone(), ta.id).await;
        change(&mut step, t.id);
        s.update_admin(&step).await.unwrap();
        assert_eq!(generation(s.clone(), ta.id).await, before + 1, "{what}");
    }
    let before = generation(s.clone(), ta.id).await;
    s.bump_admin_generation(ta.id).await.unwrap();
    assert_eq!(generation(s.clone(), ta.id).await, before + 1, "logout-all");
    not_found(s.bump_admin_generation(new_id()).await);

    // The snapshot's view of admins: no password hashes, current generations.
    let cfg = s.load_config().await.unwrap();
    let listed: Vec<(Uuid, i64)> = cfg
        .admins
        .iter()
        .map(|a| (a.id, a.token_generation))
        .collect();
    assert_eq!(listed, vec![(root.id, 0), (ta.id, before + 1)]);

    s.delete_admin(root.id).await.unwrap();
    assert_eq!(s.get_admin(&Lookup::Id(root.id)).await.unwrap(), None);
    not_found(s.delete_admin(root.id).await);
    assert_eq!(s.count_admins().await.unwrap(), 1);

    assert!(
        s.config_version().await.unwrap() > v0,
        "admin writes bump the version (the snapshot holds token generations)"
    );
}

async fn tenants_crud(s: SharedStore) {
    let a = tenant("acme");
    let mut b = tenant("globex");
    b.display_name = None;
    b.limits = Json(json!({}));
    s.insert_tenant(&a).await.unwrap();
    s.insert_tenant(&b).await.unwrap();
    assert_eq!(
        s.get_tenant(&Lookup::Id(a.id)).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_tenant(&Lookup::Name("globex".into())).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        s.list_tenants(ALL).await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let mut changed = a.clone();
    changed.name = "acme-corp".into();
    changed.display_name = None;
    changed.limits = Json(json!({"tokens_per_day": 1_000_000_i64}));
    changed.tags = Json(vec![]);
    changed.updated_at = now() + chrono::Duration::seconds(1);
    s.update_tenant(&changed).await.unwrap();
    assert_eq!(
        s.get_tenant(&Lookup::Id(a.id)).await.unwrap(),
        Some(changed.clone())
    );

    s.delete_tenant(a.id).await.unwrap();
    assert_eq!(s.get_tenant(&Lookup::Id(a.id)).await.unwrap(), None);
    assert_eq!(s.list_tenants(ALL).await.unwrap(), vec![b]);
    not_found(s.delete_tenant(a.id).await);
}

async fn credentials_crud(s: SharedStore) {
    let a = credential("openai-key");
    let mut b = credential("anthropic-key");
    b.header_value = None;
    b.param_name = None;
    b.param_value = None;
    b.param_location = None;
    b.header_value_hint = None;
    b.param_value_hint = None;
    b.allow_override = false;
    s.insert_credential(&a).await.unwrap();
    s.insert_credential(&b).await.unwrap();
    assert_eq!(
        s.get_credential(&Lookup::Id(b.id)).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        s.get_credential(&Lookup::Name("openai-key".into()))
            .await
            .unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.list_credentials(ALL).await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let mut changed = a.clone();
    changed.header_value = Some(vec![42; 64]);
    changed.param_value = None;
    changed.allow_override = false;
    changed.updated_at = now() + chrono::Duration::seconds(1);
    s.update_credential(&changed).await.unwrap();
    assert_eq!(
        s.get_credential(&Lookup::Id(a.id)).await.unwrap(),
        Some(changed)
    );

    s.delete_credential(a.id).await.unwrap();
    assert_eq!(s.get_credential(&Lookup::Id(a.id)).await.unwrap(), None);
    assert_eq!(s.list_credentials(ALL).await.unwrap(), vec![b]);
}

async fn services_crud(s: SharedStore) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let c = credential("openai-key");
    s.insert_credential(&c).await.unwrap();

    let a = service("openai", Some(c.id), None);
    let mut b = service("private", None, Some(t.id));
    b.upstream_url = None;
    s.insert_service(&a).await.unwrap();
    s.insert_service(&b).await.unwrap();
    assert_eq!(
        s.get_service(&Lookup::Id(a.id)).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_service(&Lookup::Name("private".into()))
            .await
            .unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        s.list_services(ALL).await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    let mut changed = a.clone();
    changed.credential_id = None;
    changed.tenant_id = Some(t.id);
    changed.options = Json(json!({"deep": {"list": [true, false]}}));
    changed.updated_at = now() + chrono::Duration::seconds(1);
    s.update_service(&changed).await.unwrap();
    assert_eq!(
        s.get_service(&Lookup::Id(a.id)).await.unwrap(),
        Some(changed)
    );

    s.delete_service(a.id).await.unwrap();
    assert_eq!(s.get_service(&Lookup::Id(a.id)).await.unwrap(), None);
    assert_eq!(s.list_services(ALL).await.unwrap(), vec![b]);
    // The credential is no longer used, so it can go.
    s.delete_credential(c.id).await.unwrap();
}

async fn routes_crud_and_path_index(s: SharedStore) {
    let (t, _, svc) = base(&s).await;
    let mut a = route("chat", svc.id, &["/openai/chat", "/v1/chat"]);
    a.model_alias = Some("gpt".into());
    a.tenants = Some(Json(vec![t.id]));
    let b = route("embed", svc.id, &["/openai/embeddings"]);
    s.insert_route(&a).await.unwrap();
    s.insert_route(&b).await.unwrap();
    assert_eq!(
        s.get_route(&Lookup::Id(a.id)).await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        s.get_route(&Lookup::Name("embed".into())).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(
        s.list_routes(ALL).await.unwrap(),
        vec![a.clone(), b.clone()]
    );

    // Update rewrites the path index: "/v1/chat" is released, "/v2/chat" taken.
    let mut changed = a.clone();
    changed.paths = Json(vec!["/openai/chat".into(), "/v2/chat".into()]);
    changed.model_alias = None;
    changed.tenants = None;
    changed.max_request_body_size = 1;
    changed.model_name_header = false;
    changed.updated_at = now() + chrono::Duration::seconds(1);
    s.update_route(&changed).await.unwrap();
    assert_eq!(
        s.get_route(&Lookup::Id(a.id)).await.unwrap(),
        Some(changed.clone())
    );
    let mut c = route("old-path", svc.id, &["/v1/chat"]);
    c.model_alias = Some("gpt".into());
    s.insert_route(&c).await.unwrap();
    let msg = conflict(
        s.insert_route(&route("new-path", svc.id, &["/v2/chat"]))
            .await,
    );
    assert_eq!(msg, "path '/v2/chat' is already used by route 'chat'");

    // Deleting a route frees its paths.
    s.delete_route(changed.id).await.unwrap();
    assert_eq!(s.get_route(&Lookup::Id(a.id)).await.unwrap(), None);
    s.insert_route(&route("reuse", svc.id, &["/openai/chat", "/v2/chat"]))
        .await
        .unwrap();
    not_found(s.delete_route(changed.id).await);
}

async fn api_keys_crud(s: SharedStore) {
    let (t, _, svc) = base(&s).await;
    let other = tenant("globex");
    s.insert_tenant(&other).await.unwrap();
    let r = route("chat", svc.id, &["/chat"]);
    s.insert_route(&r).await.unwrap();

    let mut a = api_key(t.id, "ci");
    a.routes = Some(Json(vec![r.id]));
    a.last_used_at = Some(now());
    a.tags = Json(vec!["ci".into()]);
    let mut b = api_key(t.id, "dev");
    b.expires_at = None;
    let c = api_key(other.id, "ci");
    for k in [&a, &b, &c] {
        s.insert_api_key(k).await.unwrap();
    }
    assert_eq!(s.get_api_key(t.id, a.id).await.unwrap(), Some(a.clone()));
    assert_eq!(
        s.get_api_key(other.id, a.id).await.unwrap(),
        None,
        "scoped by tenant"
    );
    assert_eq!(
        s.list_api_keys(t.id, ALL).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(
        s.list_api_keys(other.id, ALL).await.unwrap(),
        vec![c.clone()]
    );
    assert_eq!(s.list_api_keys(new_id(), ALL).await.unwrap(), vec![]);
}

/// `touch_api_keys`: one batch, never moves a time back (another node may have written a
/// later one; fractions of a second included), ignores unknown ids, bumps no version.
async fn api_key_last_used_moves_forward_only(s: SharedStore) {
    let (t, _, _) = base(&s).await;
    let a = api_key(t.id, "a");
    let b = api_key(t.id, "b");
    s.insert_api_key(&a).await.unwrap();
    s.insert_api_key(&b).await.unwrap();
    let version = s.config_version().await.unwrap();
    let last_used = |id: Uuid| {
        let s = s.clone();
        async move { s.get_api_key(t.id, id).await.unwrap().unwrap().last_used_at }
    };

    s.touch_api_keys(&[(a.id, at(10, 0)), (new_id(), at(10, 0))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(10, 0)));
    assert_eq!(last_used(b.id).await, None);
    s.touch_api_keys(&[(a.id, at(10, 5)), (b.id, at(20, 0))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(10, 5)));
    assert_eq!(last_used(b.id).await, Some(at(20, 0)));
    // Earlier times (a slower node's flush) leave the stored ones.
    s.touch_api_keys(&[(a.id, at(10, 0)), (b.id, at(19, 999_999))])
        .await
        .unwrap();
    assert_eq!(last_used(a.id).await, Some(at(10, 5)));
    assert_eq!(last_used(b.id).await, Some(at(20, 0)));
    s.touch_api_keys(&[(a.id, at(11, 0))]).await.unwrap();
    assert_eq!(last_used(a.id).await, Some(at(11, 0)));
    s.touch_api_keys(&[]).await.unwrap();
    assert_eq!(
        s.config_version().await.unwrap(),
        version,
        "no version bump"
    );
}

async fn pagination_is_ordered_by_created_at_then_id(s: SharedStore) {
    // Inserted out of creation order, with ties on created_at broken by id.
    let offsets = [5, 1, 3, 3, 0, 6, 1, 2];
    let mut tenants = Vec::new();
    for (i, off) in offsets.iter().enumerate() {
        let mut t = tenant(&format!("t{i}"));
        t.created_at = at(*off, 123_456);
        t.updated_at = t.created_at;
        if i == 3 {
            t.created_at = at(*off, 0); // no fractional part at all
        }
        s.insert_tenant(&t).await.unwrap();
        tenants.push(t);
    }
    let mut expected = tenants.clone();
    expected.sort_by_key(|t| (t.created_at, t.id));

    let mut pages = Vec::new();
    for n in 0..4 {
        pages.push(
            s.list_tenants(Page {
                limit: 3,
                offset: n * 3,
            })
            .await
            .unwrap(),
        );
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 2, 0]
    );
    assert_eq!(pages.concat(), expected);

    // The same order for the other collections (keys scoped by tenant).
    let t = &tenants[0];
    let mut keys = Vec::new();
    let mut creds = Vec::new();
    let mut admins = Vec::new();
    for (i, off) in offsets.iter().enumerate() {
        let mut k = api_key(t.id, &format!("k{i}"));
        k.created_at = at(*off, 500);
        s.insert_api_key(&k).await.unwrap();
        keys.push(k);
        let mut c = credential(&format!("c{i}"));
        c.created_at = at(*off, 7);
        s.insert_credential(&c).await.unwrap();
        creds.push(c);
        let mut a = admin(&format!("a{i}"), None);
        a.created_at = at(*off, 0);
        s.insert_admin(&a).await.unwrap();
        admins.push(a);
    }
    keys.sort_by_key(|k| (k.created_at, k.id));
    creds.sort_by_key(|c| (c.created_at, c.id));
    admins.sort_by_key(|a| (a.created_at, a.id));
    let mut got_keys = Vec::new();
    let mut got_creds = Vec::new();
    let mut got_admins = Vec::new();
    for n in 0..3 {
        let page = Page {
            limit: 3,
            offset: n * 3,
        };
        got_keys.extend(s.list_api_keys(t.id, page).await.unwrap());
        got_creds.extend(s.list_credentials(page).await.unwrap());
        got_admins.extend(s.list_admins(page).await.unwrap());
    }
    assert_eq!(got_keys, keys);
    assert_eq!(got_creds, creds);
    assert_eq!(got_admins, admins);
}

// --- conflicts and references ---

async fn duplicate_names_conflict(s: SharedStore) {
    let (t, c, svc) = base(&s).await;
    let r = route("r1", svc.id, &["/r1"]);
    s.insert_route(&r).await.unwrap();
    s.insert_admin(&admin("root", None)).await.unwrap();

    assert_eq!(
        conflict(s.insert_tenant(&tenant("acme")).await),
        "a tenant named 'acme' already exists"
    );
    assert_eq!(
        conflict(s.insert_credential(&credential("openai-key")).await),
        "a credential named 'openai-key' already exists"
    );
    assert_eq!(
        conflict(s.insert_service(&service("openai", None, None)).await),
        "a service named 'openai' already exists"
    );
    assert_eq!(
        conflict(s.insert_route(&route("r1", svc.id, &["/other"])).await),
        "a route named 'r1' already exists"
    );
    assert_eq!(
        conflict(s.insert_admin(&admin("root", None)).await),
        "an admin named 'root' already exists"
    );

    // Renaming onto a taken name conflicts too; keeping one's own name does not.
    let t2 = tenant("globex");
    s.insert_tenant(&t2).await.unwrap();
    let mut renamed = t2.clone();
    renamed.name = t.name.clone();
    assert_eq!(
        conflict(s.update_tenant(&renamed).await),
        "a tenant named 'acme' already exists"
    );
    s.update_tenant(&t2).await.unwrap();
    let c2 = credential("c2");
    s.insert_credential(&c2).await.unwrap();
    let mut renamed = c2.clone();
    renamed.name = c.name.clone();
    conflict(s.update_credential(&renamed).await);
    let svc2 = service("svc2", None, None);
    s.insert_service(&svc2).await.unwrap();
    let mut renamed = svc2.clone();
    renamed.name = svc.name.clone();
    conflict(s.update_service(&renamed).await);
    let a2 = admin("a2", None);
    s.insert_admin(&a2).await.unwrap();
    let mut renamed = a2.clone();
    renamed.name = "root".into();
    conflict(s.update_admin(&renamed).await);
    s.update_route(&r).await.unwrap();
}

async fn route_alias_and_path_conflicts(s: SharedStore) {
    let (_, _, svc) = base(&s).await;
    let mut r1 = route("r1", svc.id, &["/openai/chat"]);
    r1.model_alias = Some("gpt".into());
    let mut r2 = route("r2", svc.id, &["/anthropic"]);
    r2.model_alias = Some("claude".into());
    s.insert_route(&r1).await.unwrap();
    s.insert_route(&r2).await.unwrap();
    // Several routes without alias are fine.
    s.insert_route(&route("r3", svc.id, &["/r3"]))
        .await
        .unwrap();
    s.insert_route(&route("r4", svc.id, &["/r4"]))
        .await
        .unwrap();

    assert_eq!(
        conflict(
            s.insert_route(&route("x", svc.id, &["/x", "/openai/chat"]))
                .await
        ),
        "path '/openai/chat' is already used by route 'r1'"
    );
    let mut x = route("x", svc.id, &["/x"]);
    x.model_alias = Some("claude".into());
    assert_eq!(
        conflict(s.insert_route(&x).await),
        "model_alias 'claude' is already used by route 'r2'"
    );
    assert_eq!(
        conflict(
            s.insert_route(&route("x", svc.id, &["/x", "/y", "/x"]))
                .await
        ),
        "path '/x' is listed more than once"
    );

    let mut moved = r2.clone();
    moved.model_alias = Some("gpt".into());
    assert_eq!(
        conflict(s.update_route(&moved).await),
        "model_alias 'gpt' is already used by route 'r1'"
    );
    let mut moved = r2.clone();
    moved.paths = Json(vec!["/anthropic".into(), "/openai/chat".into()]);
    assert_eq!(
        conflict(s.update_route(&moved).await),
        "path '/openai/chat' is already used by route 'r1'"
    );
    assert_eq!(s.get_route(&Lookup::Id(r2.id)).await.unwrap(), Some(r2));
}

async fn api_key_conflicts(s: SharedStore) {
    let (t, _, _) = base(&s).await;
    let other = tenant("globex");
    s.insert_tenant(&other).await.unwrap();
    let k = api_key(t.id, "ci");
    s.insert_api_key(&k).await.unwrap();
    assert_eq!(
        conflict(s.insert_api_key(&api_key(t.id, "ci")).await),
        "API key name 'ci' already exists for this tenant"
    );
    // The same name in another tenant is fine.
    s.insert_api_key(&api_key(other.id, "ci")).await.unwrap();
    // The same hash anywhere is not.
    let mut dup = api_key(other.id, "dup");
    dup.key_hash = k.key_hash.clone();
    let msg = conflict(s.insert_api_key(&dup).await);
    assert!(msg.contains("hash"), "{msg}");
}

async fn missing_references_are_invalid(s: SharedStore) {
    let (t, _, svc) = base(&s).await;
    let ghost = new_id();

    let (field, message) = invalid_reference(s.insert_admin(&admin("a", Some(ghost))).await);
    assert_eq!(
        (field.as_str(), message),
        ("tenant", format!("tenant {ghost} does not exist"))
    );

    let (field, message) =
        invalid_reference(s.insert_service(&service("s", Some(ghost), None)).await);
    assert_eq!(
        (field.as_str(), message),
        ("credential", format!("credential {ghost} does not exist"))
    );
    let (field, message) =
        invalid_reference(s.insert_service(&service("s", None, Some(ghost))).await);
    assert_eq!(
        (field.as_str(), message),
        ("tenant", format!("tenant {ghost} does not exist"))
    );
    let mut moved = svc.clone();
    moved.credential_id = Some(ghost);
    assert_eq!(
        invalid_reference(s.update_service(&moved).await).0,
        "credential"
    );

    let (field, message) = invalid_reference(s.insert_route(&route("r", ghost, &["/r"])).await);
    assert_eq!(
        (field.as_str(), message),
        ("service", format!("service {ghost} does not exist"))
    );
    let mut r = route("r", svc.id, &["/r"]);
    r.tenants = Some(Json(vec![t.id, ghost]));
    let (field, message) = invalid_reference(s.insert_route(&r).await);
    assert_eq!(
        (field.as_str(), message),
        ("tenants", format!("tenant {ghost} does not exist"))
    );
    r.tenants = Some(Json(vec![t.id]));
    s.insert_route(&r).await.unwrap();
    let mut moved = r.clone();
    moved.service_id = ghost;
    assert_eq!(invalid_reference(s.update_route(&moved).await).0, "service");

    let mut k = api_key(t.id, "k");
    k.routes = Some(Json(vec![r.id, ghost]));
    let (field, message) = invalid_reference(s.insert_api_key(&k).await);
    assert_eq!(
        (field.as_str(), message),
        ("routes", format!("route {ghost} does not exist"))
    );
    let (field, _) = invalid_reference(s.insert_api_key(&api_key(ghost, "k")).await);
    assert_eq!(field, "tenant");

    let mut moved = admin("b", None);
    s.insert_admin(&moved).await.unwrap();
    moved.tenant_id = Some(ghost);
    assert_eq!(invalid_reference(s.update_admin(&moved).await).0, "tenant");
}

async fn update_of_missing_row_is_not_found(s: SharedStore) {
    let (t, c, svc) = base(&s).await;
    let v = s.config_version().await.unwrap();
    let mut x = tenant("nope");
    x.name = t.name.clone(); // would conflict, but the row is missing first
    not_found(s.update_tenant(&x).await);
    not_found(s.update_admin(&admin("nope", None)).await);
    not_found(s.update_credential(&credential(&c.name)).await);
    not_found(s.update_service(&service("nope", None, None)).await);
    not_found(s.update_route(&route("nope", svc.id, &["/nope"])).await);
    let msg = not_found(s.revoke_api_key(t.id, new_id(), now()).await);
    assert!(msg.starts_with("API key "), "{msg}");
    not_found(s.delete_credential(new_id()).await);
    not_found(s.delete_service(new_id()).await);
    assert_eq!(s.config_version().await.unwrap(), v);
}

async fn delete_while_referenced_names_referrers(s: SharedStore) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let c = credential("openai-key");
    s.insert_credential(&c).await.unwrap();
    let a = service("svc-a", Some(c.id), None);
    let b = service("svc-b", Some(c.id), Some(t.id));
    s.insert_service(&a).await.unwrap();
    s.insert_service(&b).await.unwrap();
    let r1 = route("r1", a.id, &["/r1"]);
    let mut r2 = route("r2", a.id, &["/r2"]);
    r2.tenants = Some(Json(vec![t.id]));
    s.insert_route(&r1).await.unwrap();
    s.insert_route(&r2).await.unwrap();
    s.insert_admin(&admin("acme-admin", Some(t.id)))
        .await
        .unwrap();
    let mut k1 = api_key(t.id, "ci");
    k1.routes = Some(Json(vec![r1.id]));
    let mut k2 = api_key(t.id, "dev");
    k2.routes = Some(Json(vec![r2.id, r1.id]));
    let mut k3 = api_key(t.id, "other");
    k3.routes = Some(Json(vec![r2.id]));
    for k in [&k1, &k2, &k3] {
        s.insert_api_key(k).await.unwrap();
    }
    let v = s.config_version().await.unwrap();

    assert_eq!(
        conflict(s.delete_credential(c.id).await),
        "credential 'openai-key' is used by services: svc-a, svc-b"
    );
    assert_eq!(
        conflict(s.delete_service(a.id).await),
        "service 'svc-a' is used by routes: r1, r2"
    );
    assert_eq!(
        conflict(s.delete_tenant(t.id).await),
        "tenant 'acme' is used by services: svc-b; routes: r2; admins: acme-admin"
    );
    assert_eq!(
        conflict(s.delete_route(r1.id).await),
        "route 'r1' is used by API keys: acme/ci, acme/dev"
    );
    assert_eq!(
        s.config_version().await.unwrap(),
        v,
        "refused deletes do not bump"
    );
    assert!(s.get_credential(&Lookup::Id(c.id)).await.unwrap().is_some());
    assert!(s.get_tenant(&Lookup::Id(t.id)).await.unwrap().is_some());
    assert_eq!(s.list_api_keys(t.id, ALL).await.unwrap().len(), 3);
    // Service b is not used by any route: it can go.
    s.delete_service(b.id).await.unwrap();
}

async fn tenant_delete_cascades_api_keys(s: SharedStore) {
    let t = tenant("acme");
    let other = tenant("globex");
    s.insert_tenant(&t).await.unwrap();
    s.insert_tenant(&other).await.unwrap();
    let k1 = api_key(t.id, "a");
    let k2 = api_key(t.id, "b");
    let k3 = api_key(other.id, "a");
    for k in [&k1, &k2, &k3] {
        s.insert_api_key(k).await.unwrap();
    }
    let v = s.config_version().await.unwrap();
    s.delete_tenant(t.id).await.unwrap();
    assert_eq!(s.config_version().await.unwrap(), v + 1);
    assert_eq!(s.get_api_key(t.id, k1.id).await.unwrap(), None);
    assert_eq!(s.list_api_keys(t.id, ALL).await.unwrap(), vec![]);
    let cfg = s.load_config().await.unwrap();
    assert_eq!(cfg.api_keys, vec![k3]);
    assert_eq!(cfg.tenants, vec![other]);
}

// --- versioning and snapshots ---

async fn config_writes_bump_version(s: SharedStore) {
    assert_eq!(
        s.config_version().await.unwrap(),
        0,
        "the migration starts at 0"
    );
    let mut expected = 0;
    macro_rules! bumped {
        ($what:literal) => {
            expected += 1;
            assert_eq!(
                s.config_version().await.unwrap(),
                expected,
                "after {}",
                $what
            );
        };
    }

    let mut t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    bumped!("insert_tenant");
    t.display_name = None;
    s.update_tenant(&t).await.unwrap();
    bumped!("update_tenant");
    let mut c = credential("c");
    s.insert_credential(&c).await.unwrap();
    bumped!("insert_credential");
    c.allow_override = false;
    s.update_credential(&c).await.unwrap();
    bumped!("update_credential");
    let mut svc = service("s", Some(c.id), None);
    s.insert_service(&svc).await.unwrap();
    bumped!("insert_service");
    svc.provider = "anthropic".into();
    s.update_service(&svc).await.unwrap();
    bumped!("update_service");
    let mut r = route("r", svc.id, &["/r"]);
    s.insert_route(&r).await.unwrap();
    bumped!("insert_route");
    r.paths = Json(vec!["/r2".into()]);
    s.update_route(&r).await.unwrap();
    bumped!("update_route");
    let k = api_key(t.id, "k");
    s.insert_api_key(&k).await.unwrap();
    bumped!("insert_api_key");
    s.revoke_api_key(t.id, k.id, now()).await.unwrap();
    bumped!("revoke_api_key");
    s.insert_system_secret(&secret("pepper", b"x"))
        .await
        .unwrap();
    bumped!("insert_system_secret");
    s.reencrypt_all(&|_, v| Ok(v.to_vec())).await.unwrap();
    bumped!("reencrypt_all");
    s.delete_route(r.id).await.unwrap();
    bumped!("delete_route");
    s.delete_service(svc.id).await.unwrap();
    bumped!("delete_service");
    s.delete_credential(c.id).await.unwrap();
    bumped!("delete_credential");
    s.delete_tenant(t.id).await.unwrap();
    bumped!("delete_tenant");

    // Admin writes bump: the snapshot holds admins' token generations.
    let a = admin("root", None);
    s.insert_admin(&a).await.unwrap();
    bumped!("insert_admin");
    s.update_admin(&a).await.unwrap();
    bumped!("update_admin");
    s.bump_admin_generation(a.id).await.unwrap();
    bumped!("bump_admin_generation");
    s.delete_admin(a.id).await.unwrap();
    bumped!("delete_admin");

    // No-op writes and failed writes leave the version alone.
    s.insert_system_secret(&secret("pepper", b"y"))
        .await
        .unwrap();
    conflict(
        s.insert_credential(&credential("dup"))
            .await
            .and(s.insert_credential(&credential("dup")).await),
    );
    bumped!("the first 'dup'");
    assert_eq!(s.config_version().await.unwrap(), expected);
}

async fn load_config_is_consistent(s: SharedStore) {
    let (t, c, svc) = base(&s).await;
    let mut r = route("r", svc.id, &["/r"]);
    r.tenants = Some(Json(vec![t.id]));
    s.insert_route(&r).await.unwrap();
    let mut k = api_key(t.id, "k");
    k.routes = Some(Json(vec![r.id]));
    s.insert_api_key(&k).await.unwrap();
    let sec = s
        .insert_system_secret(&secret("pepper", b"p"))
        .await
        .unwrap();
    s.insert_admin(&admin("root", None)).await.unwrap();

    let cfg = s.load_config().await.unwrap();
    assert_eq!(cfg.version, s.config_version().await.unwrap());
    assert_eq!(cfg.version, 7);
    assert_eq!(cfg.tenants, vec![t.clone()]);
    assert_eq!(cfg.credentials, vec![c]);
    assert_eq!(cfg.services, vec![svc]);
    assert_eq!(cfg.routes, vec![r]);
    assert_eq!(cfg.api_keys, vec![k]);
    assert_eq!(cfg.system_secrets, vec![sec]);

    // Concurrent writers: every snapshot's version matches its contents (one tenant per
    // version step after this point).
    let base_version = cfg.version;
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                s.insert_tenant(&tenant(&format!("w{i}"))).await.unwrap();
            }
        })
    };
    for _ in 0..20 {
        let cfg = s.load_config().await.unwrap();
        assert_eq!(cfg.tenants.len() as i64, 1 + cfg.version - base_version);
    }
    writer.await.unwrap();
    let cfg = s.load_config().await.unwrap();
    assert_eq!(cfg.tenants.len(), 21);
}

// --- API keys, secrets, rotation ---

async fn key_limits_are_replaced(s: SharedStore) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let k = api_key(t.id, "ci");
    s.insert_api_key(&k).await.unwrap();
    assert_eq!(s.get_api_key(t.id, k.id).await.unwrap(), Some(k.clone()));
    let before = s.config_version().await.unwrap();
    let limits = Json(json!({"requests_per_minute": 7}));
    let at = now();
    let changed = s.set_api_key_limits(t.id, k.id, &limits, at).await.unwrap();
    assert_eq!(changed.limits, limits);
    assert_eq!(changed.updated_at, at);
    assert!(
        s.config_version().await.unwrap() > before,
        "a configuration change"
    );
    let other = tenant("globex");
    s.insert_tenant(&other).await.unwrap();
    not_found(s.set_api_key_limits(other.id, k.id, &limits, at).await);
}

async fn revoke_is_idempotent(s: SharedStore) {
    let t = tenant("acme");
    s.insert_tenant(&t).await.unwrap();
    let k = api_key(t.id, "k");
    s.insert_api_key(&k).await.unwrap();
    let first = at(100, 42);
    let revoked = s.revoke_api_key(t.id, k.id, first).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(first));
    assert_eq!(
        ApiKeyRecord {
            revoked_at: None,
            ..revoked.clone()
        },
        k
    );
    let again = s.revoke_api_key(t.id, k.id, at(200, 0)).await.unwrap();
    assert_eq!(again, revoked, "keeps the first revocation time");
    assert_eq!(s.get_api_key(t.id, k.id).await.unwrap(), Some(revoked));
    let other = tenant("globex");
    s.insert_tenant(&other).await.unwrap();
    not_found(s.revoke_api_key(other.id, k.id, now()).await);
}

async fn system_secret_insert_keeps_first(s: SharedStore) {
    assert_eq!(s.get_system_secret("pepper").await.unwrap(), None);
    let first = secret("pepper", b"first");
    assert_eq!(s.insert_system_secret(&first).await.unwrap(), first);
    assert_eq!(
        s.insert_system_secret(&secret("pepper", b"second"))
            .await
            .unwrap(),
        first
    );
    assert_eq!(s.get_system_secret("pepper").await.unwrap(), Some(first));

    // Racing nodes all get the one stored value.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.insert_system_secret(&secret("race", format!("v{i}").as_bytes()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results = Vec::new();
    for r in racers {
        results.push(r.await.unwrap());
    }
    let stored = s.get_system_secret("race").await.unwrap().unwrap();
    assert!(
        results.iter().all(|r| *r == stored),
        "{results:?} vs {stored:?}"
    );
}

/// Two credentials with secrets (one with both values, one with a header value only), one
/// without, and two system secrets: 5 values.
async fn secrets_fixture(s: &SharedStore) -> (Vec<CredentialRecord>, Vec<SystemSecretRecord>) {
    let both = credential("both");
    let mut header_only = credential("header-only");
    header_only.param_value = None;
    header_only.header_value = Some(b"hdr".to_vec());
    let mut none = credential("none");
    none.header_value = None;
    none.param_value = None;
    for c in [&both, &header_only, &none] {
        s.insert_credential(c).await.unwrap();
    }
    let p = s
        .insert_system_secret(&secret("pepper", b"pep"))
        .await
        .unwrap();
    let j = s
        .insert_system_secret(&secret("jwt", b"jwt-key"))
        .await
        .unwrap();
    (vec![both, header_only, none], vec![p, j])
}

async fn reencrypt_all_rewrites_every_secret(s: SharedStore) {
    let (creds, secrets) = secrets_fixture(&s).await;
    let v = s.config_version().await.unwrap();
    let seen = Mutex::new(Vec::new());
    let f = |aad: &[u8], ct: &[u8]| -> Result<Vec<u8>, String> {
        seen.lock()
            .unwrap()
            .push(String::from_utf8(aad.to_vec()).unwrap());
        Ok(ct.iter().rev().copied().collect())
    };
    assert_eq!(s.reencrypt_all(&f).await.unwrap(), 5);
    assert_eq!(s.config_version().await.unwrap(), v + 1);

    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    let mut expected = vec![
        format!("credential:{}:header_value", creds[0].id),
        format!("credential:{}:param_value", creds[0].id),
        format!("credential:{}:header_value", creds[1].id),
        "system_secret:pepper".to_owned(),
        "system_secret:jwt".to_owned(),
    ];
    expected.sort();
    assert_eq!(seen, expected);

    let rev = |v: &Option<Vec<u8>>| {
        v.as_ref()
            .map(|v| v.iter().rev().copied().collect::<Vec<_>>())
    };
    for c in &creds {
        let got = s.get_credential(&Lookup::Id(c.id)).await.unwrap().unwrap();
        assert_eq!(got.header_value, rev(&c.header_value));
        assert_eq!(got.param_value, rev(&c.param_value));
        assert_eq!(
            got.header_value_hint, c.header_value_hint,
            "only ciphertext changes"
        );
        assert_eq!(got.updated_at, c.updated_at);
    }
    for sec in &secrets {
        let got = s.get_system_secret(&sec.name).await.unwrap().unwrap();
        assert_eq!(Some(got.value), rev(&Some(sec.value.clone())));
    }
}

async fn reencrypt_all_rolls_back_on_error(s: SharedStore) {
    let (creds, secrets) = secrets_fixture(&s).await;
    let before = s.load_config().await.unwrap();
    for fail_at in [2, 5] {
        let calls = AtomicUsize::new(0);
        let f = |aad: &[u8], ct: &[u8]| -> Result<Vec<u8>, String> {
            if calls.fetch_add(1, Ordering::SeqCst) + 1 == fail_at {
                Err(format!(
                    "cannot decrypt {} with key k1",
                    String::from_utf8_lossy(aad)
                ))
            } else {
                Ok(ct.iter().rev().copied().collect())
            }
        };
        match s.reencrypt_all(&f).await {
            Err(StoreError::Other(m)) => assert!(m.starts_with("cannot decrypt "), "{m}"),
            other => panic!("expected Other, got {other:?}"),
        }
        assert_eq!(
            calls.load(Ordering::SeqCst),
            fail_at,
            "stops at the first error"
        );
        let after = s.load_config().await.unwrap();
        assert_eq!(after.version, before.version);
        assert_eq!(after.credentials, before.credentials);
        assert_eq!(after.system_secrets, before.system_secrets);
    }
    assert_eq!(before.credentials, creds);
    assert_eq!(before.system_secrets.len(), secrets.len());
}

// --- miscellany ---

async fn unicode_round_trip(s: SharedStore) {
    let mut t = tenant("ünï-テナント");
    t.display_name = Some("Ünïcødé 😀 株式会社".into());
    t.tags = Json(vec!["ключ:значение".into(), "🏷️".into()]);
    t.limits = Json(json!({"note": "ñ 😀 \"quoted\" \\ back"}));
    s.insert_tenant(&t).await.unwrap();
    assert_eq!(
        s.get_tenant(&Lookup::Name("ünï-テナント".into()))
            .await
            .unwrap(),
        Some(t.clone())
    );
    assert_eq!(s.get_tenant(&Lookup::Id(t.id)).await.unwrap(), Some(t));
    let (_, _, svc) = base(&s).await;
    let r = route("路由", svc.id, &["/チャット/😀"]);
    s.insert_route(&r).await.unwrap();
    assert_eq!(
        s.get_route(&Lookup::Name("路由".into())).await.unwrap(),
        Some(r)
    );
    assert_eq!(
        conflict(
            s.insert_route(&route("other", svc.id, &["/チャット/😀"]))
                .await
        ),
        "path '/チャット/😀' is already used by route '路由'"
    );
}

async fn failed_multi_row_write_leaves_nothing(s: SharedStore) {
    let (_, _, svc) = base(&s).await;
    let r1 = route("r1", svc.id, &["/taken"]);
    s.insert_route(&r1).await.unwrap();
    let before = s.load_config().await.unwrap();

    assert_eq!(
        conflict(
            s.insert_route(&route("r2", svc.id, &["/fresh", "/taken"]))
                .await
        ),
        "path '/taken' is already used by route 'r1'"
    );
    assert_eq!(s.get_route(&Lookup::Name("r2".into())).await.unwrap(), None);
    let after = s.load_config().await.unwrap();
    assert_eq!(after.version, before.version);
    assert_eq!(after.routes, before.routes);

    // The same for an update: r3 keeps its old paths, and its would-be new one stays free.
    let mut r3 = route("r3", svc.id, &["/r3a", "/r3b"]);
    s.insert_route(&r3).await.unwrap();
    let v = s.config_version().await.unwrap();
    r3.paths = Json(vec!["/r3c".into(), "/taken".into()]);
    conflict(s.update_route(&r3).await);
    assert_eq!(s.config_version().await.unwrap(), v);
    assert_eq!(
        conflict(s.insert_route(&route("x", svc.id, &["/r3b"])).await),
        "path '/r3b' is already used by route 'r3'"
    );
    // Neither "/fresh" nor "/r3c" was left behind in the path index.
    s.insert_route(&route("r4", svc.id, &["/fresh", "/r3c"]))
        .await
        .unwrap();
}

/// Writers that read before they write must not fail on each other (SQLite: the write
/// lock is taken at BEGIN; PostgreSQL: they queue on the version row).
async fn concurrent_writers_all_succeed(s: SharedStore) {
    let tasks: Vec<_> = (0..4)
        .map(|w| {
            let s = s.clone();
            tokio::spawn(async move {
                for i in 0..10 {
                    s.insert_tenant(&tenant(&format!("t{w}-{i}")))
                        .await
                        .unwrap();
                    s.insert_credential(&credential(&format!("c{w}-{i}")))
                        .await
                        .unwrap();
                    // Admin writes read (name check) before their first write.
                    s.insert_admin(&admin(&format!("a{w}-{i}"), None))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let cfg = s.load_config().await.unwrap();
    // 40 tenants, 40 credentials, 40 admins: every one bumps.
    assert_eq!(cfg.version, 120);
    assert_eq!((cfg.tenants.len(), cfg.credentials.len()), (40, 40));
    assert_eq!(s.count_admins().await.unwrap(), 40);
}

async fn ping_and_close(s: SharedStore) {
    s.ping().await.unwrap();
    s.close().await;
    match s.ping().await {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("expected Unavailable after close, got {other:?}"),
    }
}

// --- not per backend ---

#[tokio::test]
async fn postgres_down_is_unavailable_not_a_hang() {
    let started = Instant::now();
    match PgStore::connect("postgres://postgres@127.0.0.1:1/postgres").await {
        Err(StoreError::Unavailable(_)) => {}
        Err(e) => panic!("expected Unavailable, got {e:?}"),
        Ok(_) => panic!("connected to port 1?"),
    }
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn unsupported_scheme_is_rejected() {
    assert!(matches!(
        store::connect("mysql://localhost/x").await,
        Err(StoreError::Other(_))
    ));
}

// --- usage history ---

/// The start of minute `n` (the base is a whole minute).
fn minute(n: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_749_999_960 + 60 * n, 0).unwrap()
}

fn usage_row(at: DateTime<Utc>, tenant_id: Uuid, key_id: Uuid, model: &str) -> UsageRow {
    UsageRow {
        bucket_start: at,
        tenant_id,
        key_id,
        route_id: Uuid::from_u128(7),
        model: model.into(),
        source: "proxy".into(),
        requests: 3,
        errors: 1,
        rejected: 0,
        prompt_tokens: 120,
        completion_tokens: 45,
        cost: 0.001_25,
        latency_ms_sum: 1_234.5,
        latency_histogram: [1, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    }
}

fn everything(tenant_id: Option<Uuid>) -> UsageQuery {
    UsageQuery {
        from: minute(-100_000),
        to: minute(100_000),
        tenant_id,
    }
}

/// Two writes of one minute × tenant × key × route × model add up, every counter and
/// every histogram bucket, in separate calls and within one batch; no version bump.
async fn usage_add_sums_every_counter(s: SharedStore) {
    let v = s.config_version().await.unwrap();
    let a = usage_row(minute(0), Uuid::from_u128(1), Uuid::from_u128(2), "gpt-4o");
    let b = UsageRow {
        requests: 10,
        errors: 0,
        prompt_tokens: 1_000,
        completion_tokens: 2_000,
        cost: 0.5,
        latency_ms_sum: 100.25,
        latency_histogram: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ..a.clone()
    };
    s.add_usage(std::slice::from_ref(&a)).await.unwrap();
    s.add_usage(std::slice::from_ref(&b)).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    let sum = UsageRow {
        requests: 13,
        errors: 1,
        prompt_tokens: 1_120,
        completion_tokens: 2_045,
        cost: 0.001_25 + 0.5,
        latency_ms_sum: 1_234.5 + 100.25,
        latency_histogram: [1, 1, 4, 3, 4, 5, 6, 7, 8, 9],
        ..a.clone()
    };
    assert_eq!(stored, vec![sum.clone()]);

    // The same key twice in one batch.
    s.add_usage(&[a.clone(), a.clone()]).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].requests, 19);
    assert_eq!(stored[0].prompt_tokens, 1_360);
    assert_eq!(stored[0].latency_histogram, [3, 1, 8, 3, 4, 5, 6, 7, 8, 9]);

    // A bucket_start inside the minute lands on that minute's row.
    let late = UsageRow {
        bucket_start: minute(0) + chrono::Duration::milliseconds(59_999),
        ..a.clone()
    };
    s.add_usage(&[late]).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].bucket_start, minute(0));
    assert_eq!(stored[0].requests, 22);

    s.add_usage(&[]).await.unwrap();
    assert_eq!(
        s.config_version().await.unwrap(),
        v,
        "usage is not configuration"
    );
}

/// Rows that differ in any key column stay separate.
async fn usage_keys_stay_separate(s: SharedStore) {
    let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let (k1, k2) = (Uuid::from_u128(11), Uuid::from_u128(12));
    let base = usage_row(minute(5), t1, k1, "gpt-4o");
    let rows = vec![
        base.clone(),
        UsageRow {
            model: "gpt-4o-mini".into(),
            ..base.clone()
        },
        UsageRow {
            key_id: k2,
            ..base.clone()
        },
        UsageRow {
            route_id: Uuid::from_u128(8),
            ..base.clone()
        },
        UsageRow {
            tenant_id: t2,
            key_id: k2,
            ..base.clone()
        },
        UsageRow {
            bucket_start: minute(6),
            ..base.clone()
        },
    ];
    s.add_usage(&rows).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored.len(), rows.len());
    for r in &rows {
        assert!(stored.contains(r), "{r:?} missing from {stored:?}");
    }
    // Ordered by bucket_start first.
    assert!(
        stored
            .windows(2)
            .all(|w| w[0].bucket_start <= w[1].bucket_start)
    );
    assert_eq!(stored.last().unwrap().bucket_start, minute(6));
}

/// A policy's row and the proxy's row of one minute × tenant × key × route × model stay
/// apart (`source` is part of the key); `rejected` adds up like the other counters.
async fn usage_source_is_a_key_and_rejected_adds_up(s: SharedStore) {
    let proxy = UsageRow {
        rejected: 1,
        ..usage_row(
            minute(0),
            Uuid::from_u128(1),
            Uuid::from_u128(2),
            "gpt-4o-mini",
        )
    };
    let policy = UsageRow {
        source: "ai-request-transformer".into(),
        rejected: 0,
        ..proxy.clone()
    };
    s.add_usage(&[proxy.clone(), policy.clone()]).await.unwrap();
    s.add_usage(std::slice::from_ref(&proxy)).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    let summed = UsageRow {
        requests: 6,
        errors: 2,
        rejected: 2,
        prompt_tokens: 240,
        completion_tokens: 90,
        cost: 0.001_25 * 2.0,
        latency_ms_sum: 1_234.5 * 2.0,
        latency_histogram: [2, 0, 4, 0, 0, 0, 0, 0, 0, 0],
        ..proxy.clone()
    };
    // Ordered by the key, `source` last.
    assert_eq!(stored, vec![policy, summed]);
}

/// Runs the migrations before 0006 on a new database at `url`, writes a usage row as
/// 0005 knew it, then migrates with the store: the row is `proxy` usage with nothing
/// rejected, and a policy row of the same minute × tenant × key × route × model is kept
/// apart from it.
async fn usage_rows_before_0006_become_proxy_rows(url: &str) {
    use sqlx::migrate::Migrator;
    fn before_0006(full: &Migrator) -> Migrator {
        Migrator {
            migrations: full
                .migrations
                .iter()
                .filter(|m| m.version < 6)
                .cloned()
                .collect::<Vec<_>>()
                .into(),
            ignore_missing: full.ignore_missing,
            locking: full.locking,
            no_tx: full.no_tx,
            table_name: full.table_name.clone(),
            create_schemas: full.create_schemas.clone(),
        }
    }
    const INSERT_0005: &str = "INSERT INTO usage_minutes (bucket_start, tenant_id, key_id, \
        route_id, model, requests, errors, prompt_tokens, completion_tokens, cost, \
        latency_ms_sum, lat_0, lat_1, lat_2, lat_3, lat_4, lat_5, lat_6, lat_7, lat_8, lat_9) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, \
        $18, $19, $20, $21)";
    let old = usage_row(minute(0), Uuid::from_u128(1), Uuid::from_u128(2), "gpt-4o");
    macro_rules! write_as_0005 {
        ($pool:expr, $full:expr) => {{
            let pool = $pool;
            before_0006($full).run(&pool).await.unwrap();
            let mut q = sqlx::query(INSERT_0005)
                .bind(old.bucket_start)
                .bind(old.tenant_id)
                .bind(old.key_id)
                .bind(old.route_id)
                .bind(&old.model)
                .bind(old.requests)
                .bind(old.errors)
                .bind(old.prompt_tokens)
                .bind(old.completion_tokens)
                .bind(old.cost)
                .bind(old.latency_ms_sum);
            for count in old.latency_histogram {
                q = q.bind(count);
            }
            q.execute(&pool).await.unwrap();
            pool.close().await;
        }};
    }
    if url.starts_with("sqlite:") {
        let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
            .unwrap()
            .create_if_missing(true);
        write_as_0005!(
            sqlx::SqlitePool::connect_with(options).await.unwrap(),
            store::SqliteStore::migrator()
        );
    } else {
        write_as_0005!(
            sqlx::PgPool::connect(url).await.unwrap(),
            PgStore::migrator()
        );
    }
    let s = store::connect(url).await.unwrap();
    s.migrate().await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored, vec![old.clone()], "source proxy, rejected 0");
    assert_eq!(
        (stored[0].source.as_str(), stored[0].rejected),
        ("proxy", 0)
    );
    let policy = UsageRow {
        source: "ai-response-transformer".into(),
        ..old.clone()
    };
    s.add_usage(&[policy.clone(), old.clone()]).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    let doubled = UsageRow {
        requests: 6,
        errors: 2,
        prompt_tokens: 240,
        completion_tokens: 90,
        cost: 0.001_25 * 2.0,
        latency_ms_sum: 1_234.5 * 2.0,
        latency_histogram: [2, 0, 4, 0, 0, 0, 0, 0, 0, 0],
        ..old
    };
    assert_eq!(stored, vec![policy, doubled]);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_usage_rows_before_0006_become_proxy_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tollgate.db").display());
    usage_rows_before_0006_become_proxy_rows(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs TOLLGATE_TEST_POSTGRES_URL (a PostgreSQL server; .ci/run sets it)"]
async fn postgres_usage_rows_before_0006_become_proxy_rows() {
    let server_url = crate::support::required_env(PG_ENV, "a PostgreSQL server URL");
    let name = format!("tollgate_test_{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(&server_url).unwrap();
    url.set_path(&format!("/{name}"));
    let outcome = AssertUnwindSafe(usage_rows_before_0006_become_proxy_rows(url.as_str()))
        .catch_unwind()
        .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// `from <= bucket_start < to`, optionally one tenant's rows, in bucket order.
async fn usage_range_and_tenant_filters(s: SharedStore) {
    let (acme, globex) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let key = Uuid::from_u128(3);
    // Written out of order, so the result's order is the query's doing.
    let mut rows = Vec::new();
    for n in [3, 0, 2, 1] {
        rows.push(usage_row(minute(n), acme, key, "m"));
        rows.push(usage_row(minute(n), globex, key, "m"));
    }
    s.add_usage(&rows).await.unwrap();
    let minutes = |rows: &[UsageRow]| -> Vec<(DateTime<Utc>, Uuid)> {
        rows.iter().map(|r| (r.bucket_start, r.tenant_id)).collect()
    };

    let q = UsageQuery {
        from: minute(1),
        to: minute(3),
        tenant_id: None,
    };
    let got = s.query_usage(&q).await.unwrap();
    assert_eq!(
        minutes(&got),
        vec![
            (minute(1), acme),
            (minute(1), globex),
            (minute(2), acme),
            (minute(2), globex)
        ]
    );
    let got = s
        .query_usage(&UsageQuery {
            tenant_id: Some(globex),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        minutes(&got),
        vec![(minute(1), globex), (minute(2), globex)]
    );
    // Bounds between minutes: a minute counts when it starts inside the range.
    let got = s
        .query_usage(&UsageQuery {
            from: minute(0) + chrono::Duration::milliseconds(500),
            to: minute(2) + chrono::Duration::microseconds(1),
            tenant_id: Some(acme),
        })
        .await
        .unwrap();
    assert_eq!(minutes(&got), vec![(minute(1), acme), (minute(2), acme)]);
    // Empty: an unknown tenant, and a range before everything.
    let got = s
        .query_usage(&everything(Some(Uuid::from_u128(99))))
        .await
        .unwrap();
    assert_eq!(got, vec![]);
    let got = s
        .query_usage(&UsageQuery {
            from: minute(-10),
            to: minute(0),
            tenant_id: None,
        })
        .await
        .unwrap();
    assert_eq!(got, vec![]);
}

/// A large batch is one call (one transaction) and reads back complete.
async fn usage_batch_of_1000_rows(s: SharedStore) {
    let rows: Vec<UsageRow> = (0..1000)
        .map(|i| UsageRow {
            requests: i + 1,
            ..usage_row(
                minute(i / 100),
                Uuid::from_u128(1 + (i % 3) as u128),
                Uuid::from_u128(100 + (i % 100) as u128),
                "gpt-4o",
            )
        })
        .collect();
    s.add_usage(&rows).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored.len(), 1000);
    assert_eq!(
        stored.iter().map(|r| r.requests).sum::<i64>(),
        1000 * 1001 / 2
    );
    for r in &rows {
        assert!(stored.contains(r), "{r:?} missing");
    }
    // Adding the batch again doubles every row instead of adding rows.
    s.add_usage(&rows).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored.len(), 1000);
    assert_eq!(stored.iter().map(|r| r.requests).sum::<i64>(), 1000 * 1001);
}

/// Integers past 2^53 (where an f64 would round) survive storing and adding; costs are
/// f64 to the last bit.
async fn usage_exact_numbers_round_trip(s: SharedStore) {
    let big = (1i64 << 53) + 1;
    let r = UsageRow {
        requests: big - 2,
        errors: big - 4,
        prompt_tokens: big,
        completion_tokens: i64::MAX / 2,
        cost: 1_234.567_890_123_456_7,
        latency_ms_sum: 0.1 + 0.2,
        latency_histogram: [big, 1, 2, 3, 4, 5, 6, 7, 8, big + 2],
        ..usage_row(
            minute(0),
            Uuid::from_u128(u128::MAX),
            Uuid::from_u128(0),
            "modèle-ü",
        )
    };
    s.add_usage(std::slice::from_ref(&r)).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored, vec![r.clone()]);
    assert_eq!(stored[0].cost.to_bits(), r.cost.to_bits());

    s.add_usage(std::slice::from_ref(&r)).await.unwrap();
    let stored = s.query_usage(&everything(None)).await.unwrap();
    assert_eq!(stored[0].prompt_tokens, (1i64 << 54) + 2);
    assert_eq!(stored[0].completion_tokens, i64::MAX - 1);
    assert_eq!(stored[0].latency_histogram[0], (1i64 << 54) + 2);
    assert_eq!(stored[0].latency_histogram[9], (1i64 << 54) + 6);
    assert_eq!(stored[0].cost, r.cost + r.cost);
}

/// A batch that fails part-way leaves nothing behind. Only PostgreSQL refuses a BIGINT
/// overflow; SQLite would turn the sum into a float instead of failing.
async fn usage_failed_batch_writes_nothing(s: SharedStore) {
    assert_eq!(s.backend(), Backend::Postgres);
    let full = UsageRow {
        requests: i64::MAX,
        ..usage_row(minute(0), Uuid::from_u128(1), Uuid::from_u128(2), "m")
    };
    s.add_usage(std::slice::from_ref(&full)).await.unwrap();
    let fresh = usage_row(minute(1), Uuid::from_u128(1), Uuid::from_u128(2), "m");
    let overflow = UsageRow {
        requests: 1,
        ..full.clone()
    };
    assert!(s.add_usage(&[fresh, overflow]).await.is_err());
    assert_eq!(s.query_usage(&everything(None)).await.unwrap(), vec![full]);
}
