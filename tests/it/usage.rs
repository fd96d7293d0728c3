//! `GET /usage` (docs/behaviour.md, "Admin resources") over a real HTTP listener: rows are written
//! straight through the running app's store (as the metrics aggregator does), then read back
//! re-bucketed, grouped, filtered and scoped by role. Runs on SQLite by default and on PostgreSQL
//! with `TOLLGATE_TEST_BACKEND=postgres`.

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use serde_json::{Value, json};
use tollgate::store::{UsageRow, model::LATENCY_BUCKETS};
use uuid::Uuid;

use crate::support::{Reply, TestApp, spawn_app};

#[track_caller]
fn expect_status(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text);
}

/// A 400 `validation_failed` naming exactly `field`.
#[track_caller]
fn expect_invalid(r: &Reply, field: &str) {
    expect_status(r, 400);
    assert_eq!(r.body["error"]["code"], "validation_failed", "{}", r.text);
    let fields: Vec<&String> = r.body["error"]["fields"]
        .as_object()
        .map(|f| f.keys().collect())
        .unwrap_or_default();
    assert_eq!(fields, vec![field], "{}", r.text);
}

#[track_caller]
fn assert_close(v: &Value, expected: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("{v} is not a number"));
    assert!(
        (got - expected).abs() < 1e-9,
        "got {got}, expected {expected}"
    );
}

/// 2026-03-10T10:00:00Z plus `minutes`.
fn t0(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 10, 10, 0, 0).unwrap() + TimeDelta::minutes(minutes)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A histogram with `count` requests in bucket `i`.
fn hist(i: usize, count: i64) -> [i64; LATENCY_BUCKETS] {
    let mut h = [0; LATENCY_BUCKETS];
    h[i] = count;
    h
}

struct Ids {
    acme: Uuid,
    globex: Uuid,
    chat: Uuid,
    chat2: Uuid,
    acme_key1: Uuid,
    acme_key2: Uuid,
    globex_key: Uuid,
}

#[allow(clippy::too_many_arguments)]
fn row(
    at: DateTime<Utc>,
    tenant_id: Uuid,
    key_id: Uuid,
    route_id: Uuid,
    model: &str,
    (requests, errors): (i64, i64),
    (prompt_tokens, completion_tokens): (i64, i64),
    cost: f64,
    latency_histogram: [i64; LATENCY_BUCKETS],
) -> UsageRow {
    UsageRow {
        bucket_start: at,
        tenant_id,
        key_id,
        route_id,
        model: model.into(),
        source: "proxy".into(),
        requests,
        errors,
        rejected: 0,
        prompt_tokens,
        completion_tokens,
        cost,
        latency_ms_sum: 0.0,
        latency_histogram,
    }
}

/// Tenants acme and globex, routes chat and chat2, and six minute rows:
///
/// | minute      | tenant | key   | route | model       | req/err | tokens          | cost  | latency bucket |
/// |-------------|--------|-------|-------|-------------|---------|-----------------|-------|----------------|
/// | 10:05       | acme   | key1  | chat  | gpt-4o      | 2/0     | 100 + 50        | 0.25  | 2 × (100,250]  |
/// | 10:05       | acme   | key2  | chat  | gpt-4o-mini | 1/1     | 10 + 0          | 0.125 | 1 × [0,100]    |
/// | 10:59       | acme   | key1  | chat2 | gpt-4o      | 1/0     | 1000000007 + 3  | 0.5   | 1 × (500,1000] |
/// | 11:00       | acme   | key1  | chat  | gpt-4o      | 4/0     | 40 + 4          | 1.0   | 4 × overflow   |
/// | 10:30       | globex | gkey  | chat  | gpt-4o      | 5/2     | 500 + 500       | 2.0   | 5 × (250,500]  |
/// | +1 d 10:00  | globex | gkey  | chat  | gpt-4o      | 1/0     | 1 + 1           | 0.0   | 1 × [0,100]    |
async fn setup() -> (TestApp, Ids) {
    let app = spawn_app().await;
    app.seed().await;
    let r = app.post("/tenants", json!({"name": "globex"})).await;
    expect_status(&r, 201);
    let r = app
        .post(
            "/routes",
            json!({"name": "chat2", "paths": ["/openai/chat2"], "service": "openai",
                "route_type": "llm/v1/chat", "model": {"name": "gpt-4o"}}),
        )
        .await;
    expect_status(&r, 201);
    let id = |r: &Reply| Uuid::parse_str(r.body["id"].as_str().unwrap()).unwrap();
    let ids = Ids {
        acme: id(&app.get("/tenants/acme").await),
        globex: id(&app.get("/tenants/globex").await),
        chat: id(&app.get("/routes/chat").await),
        chat2: id(&app.get("/routes/chat2").await),
        acme_key1: Uuid::from_u128(0xa1),
        acme_key2: Uuid::from_u128(0xa2),
        globex_key: Uuid::from_u128(0xb1),
    };
    let rows = [
        row(
            t0(5),
            ids.acme,
            ids.acme_key1,
            ids.chat,
            "gpt-4o",
            (2, 0),
            (100, 50),
            0.25,
            hist(1, 2),
        ),
        row(
            t0(5),
            ids.acme,
            ids.acme_key2,
            ids.chat,
            "gpt-4o-mini",
            (1, 1),
            (10, 0),
            0.125,
            hist(0, 1),
        ),
        row(
            t0(59),
            ids.acme,
            ids.acme_key1,
            ids.chat2,
            "gpt-4o",
            (1, 0),
            (1_000_000_007, 3),
            0.5,
            hist(3, 1),
        ),
        row(
            t0(60),
            ids.acme,
            ids.acme_key1,
            ids.chat,
            "gpt-4o",
            (4, 0),
            (40, 4),
            1.0,
            hist(9, 4),
        ),
        row(
            t0(30),
            ids.globex,
            ids.globex_key,
            ids.chat,
            "gpt-4o",
            (5, 2),
            (500, 500),
            2.0,
            hist(2, 5),
        ),
        row(
            t0(24 * 60),
            ids.globex,
            ids.globex_key,
            ids.chat,
            "gpt-4o",
            (1, 0),
            (1, 1),
            0.0,
            hist(0, 1),
        ),
    ];
    app.state.store.add_usage(&rows).await.unwrap();
    (app, ids)
}

fn usage_path(from: DateTime<Utc>, to: DateTime<Utc>, extra: &str) -> String {
    format!("/usage?from={}&to={}{extra}", rfc(from), rfc(to))
}

async fn data(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let r = app.send("GET", path, Some(token), None).await;
    expect_status(&r, 200);
    r.body["data"].as_array().expect("data").clone()
}

#[actix_web::test]
async fn hourly_by_tenant_sums_counters_and_estimates_percentiles() {
    let (app, _) = setup().await;
    // Default group_by (tenant); explicit hour buckets.
    let items = data(
        &app,
        &app.token,
        &usage_path(t0(0), t0(120), "&bucket=hour"),
    )
    .await;
    assert_eq!(items.len(), 3, "{items:?}");

    let acme10 = &items[0];
    assert_eq!(acme10["bucket_start"], "2026-03-10T10:00:00Z");
    assert_eq!(acme10["tenant"], "acme");
    for absent in ["route", "model", "key_id"] {
        assert!(acme10.get(absent).is_none(), "{absent} in {acme10}");
    }
    assert_eq!(acme10["requests"], 4);
    assert_eq!(acme10["errors"], 1);
    assert_eq!(acme10["prompt_tokens"], 1_000_000_117i64);
    assert_eq!(acme10["completion_tokens"], 53);
    assert_eq!(acme10["total_tokens"], 1_000_000_170i64);
    assert_eq!(acme10["cost"], 0.875);
    // Histogram [0,100]:1, (100,250]:2, (500,1000]:1. p50 = rank 2 of 4: halfway through
    // (100,250]'s 2 requests after the first one → 175. p95 = rank 3.8: 0.8 into the
    // single (500,1000] request → 900.
    assert_close(&acme10["latency_ms_p50"], 175.0);
    assert_close(&acme10["latency_ms_p95"], 900.0);

    let globex10 = &items[1];
    assert_eq!(globex10["bucket_start"], "2026-03-10T10:00:00Z");
    assert_eq!(globex10["tenant"], "globex");
    assert_eq!(globex10["requests"], 5);
    assert_eq!(globex10["errors"], 2);
    assert_eq!(globex10["total_tokens"], 1000);
    assert_eq!(globex10["cost"], 2.0);
    // Five in (250,500]: ranks 2.5 and 4.75.
    assert_close(&globex10["latency_ms_p50"], 375.0);
    assert_close(&globex10["latency_ms_p95"], 487.5);

    let acme11 = &items[2];
    assert_eq!(acme11["bucket_start"], "2026-03-10T11:00:00Z");
    assert_eq!(acme11["tenant"], "acme");
    assert_eq!(acme11["requests"], 4);
    assert_eq!(acme11["total_tokens"], 44);
    assert_eq!(acme11["cost"], 1.0);
    // Everything above the last bound reports the last bound.
    assert_close(&acme11["latency_ms_p50"], 60_000.0);
    assert_close(&acme11["latency_ms_p95"], 60_000.0);

    // `to` is exclusive: the 10:59 row is out, and so is 11:00.
    let items = data(&app, &app.token, &usage_path(t0(0), t0(59), "")).await;
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["requests"], 3);
    assert_eq!(items[0]["total_tokens"], 160);
    // `from` inside a bucket: the bucket keeps its aligned start but only later minutes.
    let items = data(&app, &app.token, &usage_path(t0(6), t0(60), "")).await;
    assert_eq!(
        items
            .iter()
            .map(|i| (
                i["tenant"].as_str().unwrap(),
                i["requests"].as_i64().unwrap()
            ))
            .collect::<Vec<_>>(),
        vec![("acme", 1), ("globex", 5)]
    );
    assert_eq!(items[0]["bucket_start"], "2026-03-10T10:00:00Z");
    // An offset other than Z, percent-encoded.
    let path = "/usage?from=2026-03-10T11:00:00%2B01:00&to=2026-03-10T12:00:00%2B01:00";
    let items = data(&app, &app.token, path).await;
    assert_eq!(items.len(), 2, "10:00Z..11:00Z: {items:?}");
}

#[actix_web::test]
async fn day_minute_and_ungrouped_buckets() {
    let (app, ids) = setup().await;
    // Daily by model, across both days.
    let items = data(
        &app,
        &app.token,
        &usage_path(t0(-600), t0(2 * 24 * 60), "&bucket=day&group_by=model"),
    )
    .await;
    let summary: Vec<(String, String, i64, i64, f64)> = items
        .iter()
        .map(|i| {
            assert!(i.get("tenant").is_none(), "{i}");
            (
                i["bucket_start"].as_str().unwrap().to_string(),
                i["model"].as_str().unwrap().to_string(),
                i["requests"].as_i64().unwrap(),
                i["total_tokens"].as_i64().unwrap(),
                i["cost"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "2026-03-10T00:00:00Z".into(),
                "gpt-4o".into(),
                12,
                1_000_001_204,
                3.75
            ),
            (
                "2026-03-10T00:00:00Z".into(),
                "gpt-4o-mini".into(),
                1,
                10,
                0.125
            ),
            ("2026-03-11T00:00:00Z".into(), "gpt-4o".into(), 1, 2, 0.0),
        ]
    );

    // Per minute by everything, one tenant named by the filter.
    let items = data(
        &app,
        &app.token,
        &usage_path(
            t0(0),
            t0(60),
            "&bucket=minute&group_by=tenant,route,model,key&tenant=acme",
        ),
    )
    .await;
    let rows: Vec<Value> = items
        .iter()
        .map(|i| {
            json!([
                i["bucket_start"],
                i["tenant"],
                i["route"],
                i["model"],
                i["key_id"],
                i["requests"],
                i["prompt_tokens"],
                i["completion_tokens"]
            ])
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            json!([
                "2026-03-10T10:05:00Z",
                "acme",
                "chat",
                "gpt-4o",
                ids.acme_key1,
                2,
                100,
                50
            ]),
            json!([
                "2026-03-10T10:05:00Z",
                "acme",
                "chat",
                "gpt-4o-mini",
                ids.acme_key2,
                1,
                10,
                0
            ]),
            json!([
                "2026-03-10T10:59:00Z",
                "acme",
                "chat2",
                "gpt-4o",
                ids.acme_key1,
                1,
                1_000_000_007i64,
                3
            ]),
        ]
    );
    // Two requests in (100,250]: p50 is rank 1 of 2, the middle of the bucket.
    assert_close(&items[0]["latency_ms_p50"], 175.0);

    // group_by=key and route, hourly.
    let items = data(
        &app,
        &app.token,
        &usage_path(t0(0), t0(60), "&group_by=key,route&tenant=acme"),
    )
    .await;
    let keys: Vec<(Value, Value, Value)> = items
        .iter()
        .map(|i| {
            (
                i["route"].clone(),
                i["key_id"].clone(),
                i["requests"].clone(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (json!("chat"), json!(ids.acme_key1), json!(2)),
            (json!("chat"), json!(ids.acme_key2), json!(1)),
            (json!("chat2"), json!(ids.acme_key1), json!(1)),
        ]
    );

    // No grouping: one total per bucket.
    let items = data(&app, &app.token, &usage_path(t0(0), t0(120), "&group_by=")).await;
    assert_eq!(items.len(), 2);
    let mut fields: Vec<&String> = items[0].as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "bucket_start",
            "completion_tokens",
            "cost",
            "errors",
            "latency_ms_p50",
            "latency_ms_p95",
            "prompt_tokens",
            "rejected",
            "requests",
            "total_tokens"
        ]
    );
    assert_eq!(items[0]["requests"], 9);
    assert_eq!(items[0]["cost"], 2.875);
    assert_eq!(items[1]["requests"], 4);

    // Nothing in range: an empty list.
    let items = data(&app, &app.token, &usage_path(t0(-120), t0(-60), "")).await;
    assert_eq!(items, Vec::<Value>::new());
}

#[actix_web::test]
async fn default_range_is_the_last_24_hours() {
    let (app, ids) = setup().await;
    let now = Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap();
    let recent = row(
        now - TimeDelta::hours(2),
        ids.acme,
        ids.acme_key1,
        ids.chat,
        "gpt-4o",
        (7, 0),
        (70, 7),
        0.0,
        hist(0, 7),
    );
    let old = UsageRow {
        bucket_start: now - TimeDelta::hours(25),
        requests: 100,
        ..recent.clone()
    };
    app.state.store.add_usage(&[recent, old]).await.unwrap();
    let items = data(&app, &app.token, "/usage").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["tenant"], "acme");
    assert_eq!(items[0]["requests"], 7);
    assert_close(&items[0]["latency_ms_p50"], 50.0);
    // Only `to`: the 24 hours before it (`from` inclusive: the old row is on its edge).
    let to = now - TimeDelta::hours(1);
    let items = data(&app, &app.token, &format!("/usage?to={}", rfc(to))).await;
    let requests: Vec<&Value> = items.iter().map(|i| &i["requests"]).collect();
    assert_eq!(requests, [&json!(100), &json!(7)]);
    let items = data(
        &app,
        &app.token,
        &format!("/usage?to={}", rfc(now - TimeDelta::hours(3))),
    )
    .await;
    assert_eq!(items[0]["requests"], 100);
}

#[actix_web::test]
async fn tenant_admin_sees_only_its_own_tenant() {
    let (app, ids) = setup().await;
    let all = usage_path(t0(0), t0(3 * 24 * 60), "&bucket=day");
    let tenants = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| i["tenant"].as_str().unwrap().to_string())
            .collect()
    };

    let acme_admin = app.token_for("tenant_admin", Some("acme"));
    let items = data(&app, &acme_admin, &all).await;
    assert_eq!(tenants(&items), ["acme"]);
    assert_eq!(items[0]["requests"], 8);
    // Grouping by key shows only acme's keys.
    let items = data(&app, &acme_admin, &format!("{all}&group_by=key")).await;
    assert!(
        items.iter().all(|i| i["key_id"] != json!(ids.globex_key)),
        "{items:?}"
    );
    assert_eq!(items.len(), 2);
    // Naming its own tenant is fine; naming another is a 404, as on the keys endpoints.
    let items = data(&app, &acme_admin, &format!("{all}&tenant=acme")).await;
    assert_eq!(tenants(&items), ["acme"]);
    for other in ["globex", &ids.globex.to_string(), "nope"] {
        let r = app
            .send(
                "GET",
                &format!("{all}&tenant={other}"),
                Some(&acme_admin),
                None,
            )
            .await;
        expect_status(&r, 404);
        assert_eq!(r.body["error"]["code"], "not_found");
    }

    let globex_admin = app.token_for("tenant_admin", Some("globex"));
    let items = data(&app, &globex_admin, &all).await;
    assert_eq!(tenants(&items), ["globex", "globex"]);

    // viewer and admin see everything, and may filter.
    let viewer = app.token_for("viewer", None);
    let items = data(&app, &viewer, &all).await;
    assert_eq!(tenants(&items), ["acme", "globex", "globex"]);
    let items = data(&app, &viewer, &format!("{all}&tenant=globex")).await;
    assert_eq!(tenants(&items), ["globex", "globex"]);
    let r = app
        .send("GET", &format!("{all}&tenant=nope"), Some(&viewer), None)
        .await;
    expect_status(&r, 404);

    let r = app.send("GET", &all, None, None).await;
    expect_status(&r, 401);
}

#[actix_web::test]
async fn deleted_tenants_and_routes_show_their_ids() {
    let (app, ids) = setup().await;
    let r = app.post("/tenants", json!({"name": "initech"})).await;
    expect_status(&r, 201);
    let initech = Uuid::parse_str(r.body["id"].as_str().unwrap()).unwrap();
    let gone = row(
        t0(10),
        initech,
        Uuid::from_u128(0xc1),
        ids.chat2,
        "gpt-4o",
        (1, 0),
        (1, 1),
        0.0,
        hist(0, 1),
    );
    app.state.store.add_usage(&[gone]).await.unwrap();
    expect_status(&app.delete("/tenants/initech").await, 204);
    expect_status(&app.delete("/routes/chat2").await, 204);

    let path = usage_path(t0(0), t0(60), "&group_by=tenant,route");
    let items = data(&app, &app.token, &path).await;
    let pairs: Vec<(String, String)> = items
        .iter()
        .map(|i| {
            (
                i["tenant"].as_str().unwrap().to_string(),
                i["route"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (initech, chat2) = (initech.to_string(), ids.chat2.to_string());
    let mut expected = vec![
        (initech.clone(), chat2.clone()),
        ("acme".to_string(), "chat".to_string()),
        ("acme".to_string(), chat2.clone()),
        ("globex".to_string(), "chat".to_string()),
    ];
    expected.sort();
    assert_eq!(pairs, expected);
    // An admin may still ask for the deleted tenant by id.
    let items = data(&app, &app.token, &format!("{path}&tenant={initech}")).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["tenant"], initech.as_str());
}

#[actix_web::test]
async fn bad_parameters_are_400s_naming_the_parameter() {
    let app = spawn_app().await;
    let ok_from = "2026-03-10T10:00:00Z";
    let ok_to = "2026-03-10T12:00:00Z";
    for (query, field) in [
        ("from=yesterday".to_string(), "from"),
        (format!("from={ok_from}&to=2026-03-10T25:00:00Z"), "to"),
        (format!("from={ok_to}&to={ok_from}"), "from"),
        (format!("from={ok_from}&to={ok_from}"), "from"),
        ("bucket=week".to_string(), "bucket"),
        ("group_by=colour".to_string(), "group_by"),
        ("group_by=tenant,colour".to_string(), "group_by"),
        (
            "from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&bucket=minute".to_string(),
            "from",
        ),
        (
            "from=2024-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&bucket=day".to_string(),
            "from",
        ),
    ] {
        let r = app.get(&format!("/usage?{query}")).await;
        expect_invalid(&r, field);
    }
    // Two bad parameters: both named.
    let r = app.get("/usage?bucket=week&group_by=colour").await;
    expect_status(&r, 400);
    let fields = r.body["error"]["fields"].as_object().unwrap();
    assert!(fields.contains_key("bucket") && fields.contains_key("group_by"));
    // 60 days is fine with hour or day buckets.
    let r = app
        .get("/usage?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&bucket=day")
        .await;
    expect_status(&r, 200);
}

#[actix_web::test]
async fn openapi_documents_usage() {
    let app = spawn_app().await;
    let r = app.send("GET", "/openapi.json", None, None).await;
    expect_status(&r, 200);
    let op = &r.body["paths"]["/usage"]["get"];
    assert!(op.is_object(), "{}", r.text);
    let mut params: Vec<&str> = op["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["in"], "query");
            p["name"].as_str().unwrap()
        })
        .collect();
    params.sort();
    assert_eq!(params, ["bucket", "from", "group_by", "tenant", "to"]);
    let schema = &r.body["components"]["schemas"]["UsageItem"]["properties"];
    for field in [
        "bucket_start",
        "tenant",
        "route",
        "model",
        "key_id",
        "requests",
        "errors",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost",
        "latency_ms_p50",
        "latency_ms_p95",
    ] {
        assert!(schema[field].is_object(), "{field} missing: {schema}");
    }
}
