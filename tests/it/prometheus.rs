//! `GET /metrics` (docs/behaviour.md, "Prometheus scraping"): the text exposition after
//! real traffic through the proxy (whole answers, streams, a guard's refusal, an upstream
//! failure), its bearer token, and — with a real Prometheus server (Debian's
//! `prometheus`, installed by `.ci/run`) scraping the gateway under traffic through the
//! scrape job shipped in deploy/prometheus.yml — every query of the shipped Grafana
//! dashboard evaluated through Prometheus's HTTP API, each returning data with the labels
//! the panel groups by.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tollgate::crypto::Secret;

use crate::support::mock_upstream::{Behaviour, MockUpstream, Tail};
use crate::support::proxy::{UPSTREAM_SECRET, chat, configure_openai, openai_completion};
use crate::support::streaming::{openai_sse, sse, stream};
use crate::support::{TestApp, required_tool, spawn_app, spawn_app_with};

const METRICS_TOKEN: &str = "scrape-token-7c1f2e9a";
/// Requests one round of `drive` makes.
const PER_ROUND: f64 = 4.0;

/// Routes `chat` (OpenAI mock: whole answers 12/3 tokens, streams 12/5) and `broken` (an
/// upstream answering 500), a prompt guard refusing "forbidden" for tenant `acme`.
struct Traffic {
    key: String,
    _ok: MockUpstream,
    _failing: MockUpstream,
}

async fn configure_traffic(app: &TestApp) -> Traffic {
    let ok = MockUpstream::start(Behaviour::ByStream {
        whole: Box::new(Behaviour::json(200, openai_completion())),
        streamed: Box::new(sse(openai_sse(&["a", "b"], Some((12, 5))), 0, Tail::End)),
    })
    .await;
    let key = configure_openai(app, &ok, json!({})).await;
    let failing = MockUpstream::start(Behaviour::json(
        500,
        json!({"error": {"message": "boom", "type": "server_error"}}),
    ))
    .await;
    let r = app
        .post(
            "/services",
            json!({"name": "broken", "provider": "openai", "credential": "openai-key",
                   "upstream_url": format!("{}/v1/chat/completions", failing.base),
                   "timeouts": {"connect_ms": 1000, "read_ms": 2000}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/routes",
            json!({"name": "broken", "paths": ["/openai/broken"], "model_alias": "gpt-4o-mini",
                   "service": "broken", "route_type": "llm/v1/chat",
                   "model": {"name": "gpt-4o-mini"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app
        .post(
            "/policies",
            json!({"name": "guard", "type": "ai-prompt-guard", "tenant": "acme",
                   "config": {"deny_patterns": ["(?i)forbidden"]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    Traffic {
        key,
        _ok: ok,
        _failing: failing,
    }
}

/// One round: a whole answer, a stream, a refused prompt, an upstream failure.
async fn drive(app: &TestApp, traffic: &Traffic) {
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    let r = chat(app, "/openai/chat", &traffic.key, hi.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let streamed = stream(
        app,
        "/openai/chat",
        &traffic.key,
        json!({"stream": true, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert!(streamed.ends_with_done(), "{}", streamed.raw);
    let refused = json!({"messages": [{"role": "user", "content": "something forbidden"}]});
    let r = chat(app, "/openai/chat", &traffic.key, refused).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = chat(app, "/openai/broken", &traffic.key, hi).await;
    assert!(r.status >= 500, "{} {}", r.status, r.text);
}

struct Scraped {
    status: u16,
    content_type: String,
    text: String,
}

async fn scrape(app: &TestApp, authorization: Option<&str>) -> Scraped {
    let mut req = app.client.get(format!("{}/metrics", app.admin));
    if let Some(value) = authorization {
        req = req.insert_header(("Authorization", value));
    }
    let mut resp = req.send().await.expect("GET /metrics");
    let body = resp.body().limit(64 << 20).await.expect("body");
    Scraped {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        text: String::from_utf8(body.to_vec()).expect("utf-8"),
    }
}

type Labels = BTreeMap<String, String>;

/// The samples of a text exposition, checked against the format as they are read: every
/// family announced once by `# TYPE` before its samples, which are contiguous; names and
/// labels well formed; values numbers.
fn parse_exposition(text: &str) -> Vec<(String, Labels, f64)> {
    let mut samples = Vec::new();
    let mut families: Vec<String> = Vec::new();
    let family_of = |name: &str, families: &[String]| -> Option<String> {
        families
            .iter()
            .rev()
            .find(|f| {
                name == f.as_str()
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| name.strip_suffix(s) == Some(f.as_str()))
            })
            .cloned()
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(!families.contains(&name.to_string()), "{name} twice");
            families.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.is_empty() && !line.starts_with('#'), "{line:?}");
        let name_end = line.find(['{', ' ']).expect("a sample");
        let name = &line[..name_end];
        assert!(
            name.chars()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphabetic()
                    || c == '_'
                    || c == ':'
                    || (i > 0 && c.is_ascii_digit())),
            "metric name {name:?}"
        );
        assert_eq!(
            family_of(name, &families).as_deref(),
            families.last().map(String::as_str),
            "{name}: samples of a family are contiguous, after its # TYPE"
        );
        let mut labels = Labels::new();
        let mut rest = &line[name_end..];
        if let Some(inner) = rest.strip_prefix('{') {
            let chars: Vec<char> = inner.chars().collect();
            let mut i = 0;
            loop {
                if chars[i] == '}' {
                    i += 1;
                    break;
                }
                let start = i;
                while chars[i] != '=' {
                    i += 1;
                }
                let label: String = chars[start..i].iter().collect();
                assert!(
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "label {label:?} in {line}"
                );
                assert_eq!(chars[i + 1], '"', "{line}");
                i += 2;
                let mut value = String::new();
                while chars[i] != '"' {
                    if chars[i] == '\\' {
                        i += 1;
                        value.push(match chars[i] {
                            'n' => '\n',
                            c => c,
                        });
                    } else {
                        value.push(chars[i]);
                    }
                    i += 1;
                }
                i += 1;
                assert!(labels.insert(label, value).is_none(), "{line}");
                if chars[i] == ',' {
                    i += 1;
                }
            }
            let consumed: usize = chars[..i].iter().map(|c| c.len_utf8()).sum();
            rest = &inner[consumed..];
        }
        let value = rest.strip_prefix(' ').expect("space before the value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("value {v:?} in {line}")),
        };
        samples.push((name.to_string(), labels, value));
    }
    samples
}

/// The sum of the samples named `name` whose labels include `with`.
fn total(samples: &[(String, Labels, f64)], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && with
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

/// Scrapes until the gateway has counted `requests` requests (events reach the aggregator
/// through the usage spool's writer, a few milliseconds after the answer).
async fn scrape_after(app: &TestApp, auth: Option<&str>, requests: f64) -> Scraped {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = scrape(app, auth).await;
        assert_eq!(scraped.status, 200, "{}", scraped.text);
        let seen = total(
            &parse_exposition(&scraped.text),
            "tollgate_requests_total",
            &[],
        );
        if seen >= requests || Instant::now() > until {
            assert_eq!(seen, requests, "{}", scraped.text);
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn metrics_are_served_in_the_text_format_behind_the_token() {
    let app = spawn_app_with(|s| {
        s.metrics = true;
        s.metrics_token = Some(Secret::new(METRICS_TOKEN.into()));
    })
    .await;
    let traffic = configure_traffic(&app).await;
    let rounds = 2.0;
    for _ in 0..2 {
        drive(&app, &traffic).await;
    }

    // The token, and only the token: not the admin's JWT, not a wrong one.
    for auth in [
        None,
        Some("Bearer wrong-token".to_string()),
        Some(format!("Bearer {}", app.token)),
        Some(METRICS_TOKEN.to_string()),
    ] {
        let r = scrape(&app, auth.as_deref()).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
        assert!(!r.text.contains(METRICS_TOKEN));
    }
    // The scheme is case-insensitive (RFC 9110).
    assert_eq!(
        scrape(&app, Some(&format!("bearer {METRICS_TOKEN}")))
            .await
            .status,
        200
    );
    let auth = format!("Bearer {METRICS_TOKEN}");
    let scraped = scrape_after(&app, Some(&auth), rounds * PER_ROUND).await;
    assert_eq!(
        scraped.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = &scraped.text;
    let s = parse_exposition(text);

    let chat = [
        ("tollgate_tenant", "acme"),
        ("tollgate_route", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "gpt-4o"),
        ("gen_ai_operation_name", "chat"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        chat.iter().chain(extra).copied().collect()
    };
    // Requests by status class: two answers and a refusal per round on `chat`, the
    // upstream's failure on `broken`.
    let requests =
        |extra: &[(&'static str, &'static str)]| total(&s, "tollgate_requests_total", &with(extra));
    assert_eq!(requests(&[("tollgate_status_class", "2xx")]), 2.0 * rounds);
    assert_eq!(requests(&[("tollgate_status_class", "4xx")]), rounds);
    assert_eq!(
        total(
            &s,
            "tollgate_requests_total",
            &[
                ("tollgate_route", "broken"),
                ("tollgate_status_class", "5xx")
            ]
        ),
        rounds
    );
    // Tokens (12/3 whole, 12/5 streamed), cost from the route's prices (2.5 and 10 USD per
    // million), the stream's time to first token, the refusal's policy action.
    let tokens = |kind: &'static str| {
        total(
            &s,
            "gen_ai_client_token_usage_sum",
            &with(&[("gen_ai_token_type", kind)]),
        )
    };
    assert_eq!(tokens("input"), 24.0 * rounds);
    assert_eq!(tokens("output"), 8.0 * rounds);
    let cost = total(&s, "tollgate_cost_USD_total", &chat);
    let expected_cost = rounds * (24.0 * 2.5 + 8.0 * 10.0) / 1e6;
    assert!(
        (cost - expected_cost).abs() < 1e-12,
        "{cost} vs {expected_cost}"
    );
    assert_eq!(
        total(&s, "gen_ai_server_time_to_first_token_seconds_count", &chat),
        rounds
    );
    assert_eq!(
        total(
            &s,
            "tollgate_policy_actions_total",
            &with(&[
                ("tollgate_policy_type", "ai-prompt-guard"),
                ("tollgate_policy_outcome", "blocked")
            ])
        ),
        rounds
    );
    // Failures carry `error_type` on the duration histogram (the dashboard's
    // "Upstream errors" panel), successes do not.
    let failed: Vec<_> = s
        .iter()
        .filter(|(n, l, _)| {
            n == "gen_ai_client_operation_duration_seconds_count" && l.contains_key("error_type")
        })
        .collect();
    assert!(
        failed
            .iter()
            .any(|(_, l, _)| l["tollgate_route"] == "broken"),
        "{failed:?}"
    );
    assert_eq!(
        total(&s, "gen_ai_client_operation_duration_seconds_count", &chat),
        3.0 * rounds
    );
    // Histogram buckets are cumulative and end in +Inf = _count.
    let overhead_inf = total(
        &s,
        "tollgate_overhead_duration_seconds_bucket",
        &with(&[("le", "+Inf")]),
    );
    assert_eq!(overhead_inf, 3.0 * rounds);

    // Kong's names.
    let kong = [
        ("ai_provider", "openai"),
        ("ai_model", "gpt-4o"),
        ("tollgate_tenant", "acme"),
        ("tollgate_route", "chat"),
    ];
    let kong_with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        kong.iter().chain(extra).copied().collect()
    };
    assert_eq!(total(&s, "ai_llm_requests_total", &kong), 3.0 * rounds);
    for (kind, count) in [
        ("prompt_tokens", 24.0),
        ("completion_tokens", 8.0),
        ("total_tokens", 32.0),
    ] {
        assert_eq!(
            total(
                &s,
                "ai_llm_tokens_total",
                &kong_with(&[("token_type", kind)])
            ),
            count * rounds,
            "{kind}"
        );
    }
    let kong_cost = total(&s, "ai_llm_cost_total", &kong);
    assert!((kong_cost - expected_cost).abs() < 1e-12);
    // The refused request never reached the provider: no latency for it.
    assert_eq!(
        total(&s, "ai_llm_provider_latency_ms_count", &kong),
        2.0 * rounds
    );
    assert!(text.contains("# TYPE ai_llm_provider_latency_ms histogram\n"));
    assert!(text.contains("le=\"60000\"}"), "Kong's buckets");

    // Process-wide counters, present from the start.
    for name in [
        "tollgate_usage_dropped_total",
        "tollgate_log_dropped_total",
        "tollgate_analytics_lost_total",
        "tollgate_metrics_overflow_total",
    ] {
        assert!(s.iter().any(|(n, _, _)| n == name), "{name} missing");
    }
    assert_eq!(total(&s, "tollgate_metrics_overflow_total", &[]), 0.0);
    let kinds: BTreeSet<&str> = s
        .iter()
        .filter(|(n, _, _)| n == "tollgate_limit_rejections_total")
        .map(|(_, l, _)| l["tollgate_limit_kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["budget", "requests_per_minute", "tokens_per_minute"])
    );

    // Nothing secret: not the upstream credential, not the client's key, not the token.
    for secret in [UPSTREAM_SECRET, traffic.key.as_str(), METRICS_TOKEN] {
        assert!(!text.contains(secret), "{secret} in /metrics");
    }
    app.shut_down().await;
}

#[actix_web::test]
async fn metrics_are_off_by_default() {
    let app = spawn_app().await;
    let r = scrape(&app, None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    app.shut_down().await;
}

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The scrape job deploy/prometheus.yml ships commented out (the alternative to the
/// collector): the lines after its marker, uncommented.
fn shipped_direct_scrape_job() -> serde_yaml::Value {
    let text = repo_file("deploy/prometheus.yml");
    let (_, block) = text
        .split_once("# --- direct scrape of the gateway")
        .expect("deploy/prometheus.yml has the direct-scrape marker");
    let yaml: Vec<&str> = block
        .lines()
        .skip(1)
        .map(|l| {
            l.strip_prefix("  # ")
                .unwrap_or_else(|| panic!("not a commented job line: {l:?}"))
        })
        .collect();
    let jobs: serde_yaml::Value = serde_yaml::from_str(&yaml.join("\n")).expect("the job parses");
    assert_eq!(jobs.as_sequence().map(Vec::len), Some(1), "{jobs:?}");
    jobs[0].clone()
}

fn job_targets(job: &serde_yaml::Value) -> Vec<String> {
    job["static_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|sc| sc["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

/// The compose stack offers the direct scrape as an alternative, off by default, so the
/// collector's series are never counted twice.
#[test]
fn the_compose_stack_offers_scraping_the_gateway_instead_of_the_collector() {
    let job = shipped_direct_scrape_job();
    assert_eq!(
        job["job_name"].as_str(),
        Some("tollgate"),
        "the `job` label the collector's series carry (service.name)"
    );
    assert_eq!(job["metrics_path"].as_str(), Some("/metrics"));
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker-compose.yml")).expect("compose");
    let env = &compose["services"]["tollgate"]["environment"];
    let admin_port = env["TOLLGATE_ADMIN_LISTEN"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("admin listen");
    assert_eq!(job_targets(&job), [format!("tollgate:{admin_port}")]);
    assert_eq!(
        env["TOLLGATE_METRICS"].as_str(),
        Some("${TOLLGATE_METRICS:-off}")
    );
    // Only one active job carries Tollgate's metrics by default: the collector's.
    let active: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("deploy/prometheus.yml")).expect("prometheus.yml");
    let targets: Vec<String> = active["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .flat_map(job_targets)
        .collect();
    assert_eq!(targets, ["otel-collector:8889"]);
}

// --- a real Prometheus ---

/// Kills Prometheus (by its pid) on every path out, a failed assertion included.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `GET` on Prometheus's HTTP API; the `data` of a successful answer.
async fn prometheus_api(app: &TestApp, base: &str, path: &str, query: &[(&str, &str)]) -> Value {
    let mut resp = app
        .client
        .get(format!("{base}{path}"))
        .query(&query)
        .expect("query string")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("Prometheus {path}: {e}"));
    let body: Value = resp.json().limit(16 << 20).await.expect("JSON");
    assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
    body["data"].clone()
}

/// A dashboard expression with Grafana's variables replaced: every `$tenant`, `$route`,
/// `$model` (regex matchers) by `.*`, the interval variables by durations that cover the
/// test's traffic.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$tenant", ".*")
        .replace("$route", ".*")
        .replace("$model", ".*")
}

/// The labels a query's result carries: its first `by (...)` list, `le` removed (what
/// `histogram_quantile` consumes).
fn grouped_by(expr: &str) -> BTreeSet<String> {
    let Some((_, after)) = expr.split_once("by (") else {
        return BTreeSet::new();
    };
    let list = after.split_once(')').expect("closing parenthesis").0;
    list.split(',')
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && l != "le")
        .collect()
}

/// Every panel, rows' nested panels included.
fn all_panels(panels: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(all_panels(&panel["panels"]));
    }
    out
}

#[actix_web::test]
#[ignore = "needs prometheus (Debian's package; .ci/run installs it)"]
async fn grafana_dashboard_queries_return_data_from_a_real_prometheus() {
    required_tool("prometheus", &["--version"]);
    let app = spawn_app_with(|s| s.metrics = true).await;
    let traffic = configure_traffic(&app).await;
    drive(&app, &traffic).await;

    // The shipped job, pointed at this gateway, scraped every second.
    let mut job = shipped_direct_scrape_job();
    let admin = app.admin.trim_start_matches("http://").to_string();
    job["static_configs"] = serde_yaml::to_value(json!([{"targets": [admin]}])).expect("yaml");
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [serde_json::to_value(&job).expect("json")],
    });
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).expect("yaml")).expect("write");
    let log_path = dir.path().join("prometheus.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=1h")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let prometheus = ChildGuard(child);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = app.client.get(format!("{base}/-/ready")).send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < until,
            "Prometheus not ready:\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Traffic while Prometheus scrapes, until it holds several scrapes with increases.
    let traffic_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < traffic_until {
        drive(&app, &traffic).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let data = prometheus_api(
            &app,
            &base,
            "/api/v1/query",
            &[("query", "count_over_time(up{job=\"tollgate\"}[1m])")],
        )
        .await;
        let scrapes = data["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if scrapes >= 6.0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "few scrapes ({scrapes}):\n{}",
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let up = prometheus_api(
        &app,
        &base,
        "/api/v1/query",
        &[("query", "up{job=\"tollgate\"}")],
    )
    .await;
    assert_eq!(up["result"][0]["value"][1], "1", "the target is up: {up}");

    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/grafana/dashboards/tollgate.json"))
            .expect("dashboard");

    // Template variables, as Grafana asks for them: the label's values among the
    // selector's series.
    let wanted: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("tenant", &["acme"][..]),
        ("route", &["chat", "broken"][..]),
        ("model", &["gpt-4o", "gpt-4o-mini"][..]),
    ]);
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert_eq!(variables.len(), wanted.len());
    for variable in variables {
        let name = variable["name"].as_str().expect("name");
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("variable query");
        let args = substitute(query);
        let args = args
            .strip_prefix("label_values(")
            .and_then(|a| a.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{query}"));
        let (selector, label) = args.rsplit_once(',').expect("selector, label");
        let data = prometheus_api(
            &app,
            &base,
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", selector.trim())],
        )
        .await;
        let values: BTreeSet<&str> = data
            .as_array()
            .expect("values")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            values,
            wanted[name].iter().copied().collect(),
            "${name}: {query}"
        );
    }

    // Every panel's every query returns data, grouped by what the panel groups by.
    let mut evaluated = 0;
    for panel in all_panels(&dashboard["panels"]) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("expr");
            let query = substitute(expr);
            let data = prometheus_api(&app, &base, "/api/v1/query", &[("query", &query)]).await;
            let title = panel["title"].as_str().unwrap_or_default();
            let result = data["result"].as_array().expect("a vector");
            assert!(
                !result.is_empty(),
                "{title}: no data for {query}\n{}",
                log_text()
            );
            let labels = grouped_by(expr);
            for series in result {
                let metric = series["metric"].as_object().expect("labels");
                let got: BTreeSet<String> = metric.keys().cloned().collect();
                assert_eq!(got, labels, "{title}: {query} → {series}");
                assert!(
                    metric
                        .values()
                        .all(|v| v.as_str().is_some_and(|v| !v.is_empty())),
                    "{title}: {series}"
                );
                let value: f64 = series["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .expect("a number");
                assert!(value.is_finite(), "{title}: {query} → {series}");
            }
            // The per-tenant panels see the tenant that made the traffic.
            if labels.contains("tollgate_tenant") {
                assert!(
                    result
                        .iter()
                        .any(|s| s["metric"]["tollgate_tenant"] == "acme"),
                    "{title}: {data}"
                );
            }
            if labels.contains("job") {
                assert!(result.iter().all(|s| s["metric"]["job"] == "tollgate"));
            }
            evaluated += 1;
        }
    }
    assert!(evaluated >= 20, "only {evaluated} queries");

    // Kong's metric names, through Prometheus too.
    for query in [
        "sum by (ai_provider, ai_model) (rate(ai_llm_requests_total[1m]))",
        "sum by (token_type) (ai_llm_tokens_total)",
        "sum by (ai_model) (ai_llm_cost_total)",
        "histogram_quantile(0.5, sum by (le, ai_provider) (rate(ai_llm_provider_latency_ms_bucket[1m])))",
    ] {
        let data = prometheus_api(&app, &base, "/api/v1/query", &[("query", query)]).await;
        let result = data["result"].as_array().expect("a vector");
        assert!(!result.is_empty(), "no data for {query}");
        for series in result {
            let keys: BTreeSet<String> = series["metric"]
                .as_object()
                .expect("labels")
                .keys()
                .cloned()
                .collect();
            assert_eq!(keys, grouped_by(query), "{query} → {series}");
        }
    }
    drop(prometheus);
    app.shut_down().await;
}
