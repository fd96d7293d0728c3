//! The deployment files cannot be run here (no Docker engine), so they are checked
//! statically: the compose file parses, its services and ports are what the README says,
//! every Tollgate variable it sets is one the gateway reads, and the Dockerfile copies
//! only paths that exist. The observability stack (collector, Prometheus, Grafana) is
//! checked the same way, and every metric and label the Grafana dashboard queries is
//! derived from `tollgate::telemetry::semconv` under the collector's naming rule.

use std::collections::BTreeSet;
use std::path::Path;

use tollgate::config::ENV_KEYS;
use tollgate::telemetry::semconv::{self, METRICS, MetricKind};

fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn compose_file_runs_tollgate_on_postgres() {
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&repo_file("docker-compose.yml")).unwrap();
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    assert!(
        names.contains(&"tollgate") && names.contains(&"postgres"),
        "{names:?}"
    );

    let tollgate = &compose["services"]["tollgate"];
    assert_eq!(
        tollgate["build"].as_str(),
        Some("."),
        "tollgate is built from this repository"
    );
    assert_eq!(
        tollgate["depends_on"]["postgres"]["condition"].as_str(),
        Some("service_healthy")
    );
    let env = tollgate["environment"].as_mapping().expect("environment");
    for key in env.keys().filter_map(|k| k.as_str()) {
        let known = ENV_KEYS.iter().any(|(var, _)| *var == key) || key == "RUST_LOG";
        assert!(
            known,
            "docker-compose.yml sets {key}, which Tollgate does not read"
        );
    }
    // The limits' counters are shared through the stack's Redis, kept on disk (budgets).
    assert_eq!(
        env.get("TOLLGATE_REDIS_URL").and_then(|v| v.as_str()),
        Some("redis://redis:6379")
    );
    assert_eq!(
        tollgate["depends_on"]["redis"]["condition"].as_str(),
        Some("service_healthy")
    );
    let redis = &compose["services"]["redis"];
    let redis_command: Vec<&str> = redis["command"]
        .as_sequence()
        .expect("redis command")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        redis_command
            .windows(2)
            .any(|w| w == ["--appendonly", "yes"]),
        "{redis_command:?}"
    );
    assert!(
        redis["volumes"]
            .as_sequence()
            .is_some_and(|v| v.iter().any(|m| m.as_str() == Some("redisdata:/data"))),
        "Redis keeps its data in a named volume"
    );
    let db_url = env
        .get("TOLLGATE_DATABASE_URL")
        .and_then(|v| v.as_str())
        .expect("database url");
    assert!(
        db_url.starts_with("postgres://") && db_url.contains("@postgres:5432/"),
        "{db_url}"
    );
    let ports: Vec<&str> = tollgate["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    assert!(ports.contains(&"8080:8080"), "{ports:?}");
    assert!(
        ports.contains(&"127.0.0.1:8081:8081"),
        "admin port must stay on loopback: {ports:?}"
    );
}

#[test]
fn dockerfile_copies_existing_paths_and_runs_serve() {
    let dockerfile = repo_file("Dockerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                root.join(src).exists(),
                "Dockerfile copies missing path {src}"
            );
        }
    }
    assert!(dockerfile.contains("CMD [\"serve\"]"));
    assert!(
        dockerfile.contains("USER tollgate"),
        "the image must not run as root"
    );
}

#[test]
fn example_configuration_is_valid_and_complete() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tollgate.example.toml");
    let settings = tollgate::config::Settings::load_from(Some(&path), &[]).expect("example parses");
    assert_eq!(settings.admin_listen, "127.0.0.1:8081");
    let text = repo_file("tollgate.example.toml");
    for (_, key) in ENV_KEYS {
        assert!(
            text.contains(&format!("{key} =")),
            "tollgate.example.toml does not mention {key}"
        );
    }
}

// --- observability stack: OpenTelemetry Collector → Prometheus → Grafana ---

fn yaml_file(name: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&repo_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn yaml_strs(value: &serde_yaml::Value) -> Vec<&str> {
    value
        .as_sequence()
        .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default()
}

/// The port of a `host:port` endpoint or URL.
fn port_of(endpoint: &str) -> u16 {
    let authority = endpoint
        .split("://")
        .last()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    authority.rsplit(':').next().unwrap().parse().unwrap()
}

/// The `host:port` mounts of a compose service, as (host path, container path).
fn bind_mounts(service: &serde_yaml::Value) -> Vec<(String, String)> {
    yaml_strs(&service["volumes"])
        .into_iter()
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect()
}

#[test]
fn compose_file_wires_tollgate_to_the_telemetry_stack() {
    let compose = yaml_file("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: Vec<&str> = services.keys().filter_map(|k| k.as_str()).collect();
    for service in [
        "postgres",
        "tollgate",
        "otel-collector",
        "prometheus",
        "grafana",
    ] {
        assert!(names.contains(&service), "{service} missing: {names:?}");
    }

    let collector = &compose["services"]["otel-collector"];
    let image = collector["image"].as_str().unwrap();
    assert!(
        image.starts_with("otel/opentelemetry-collector-contrib:") && !image.ends_with(":latest"),
        "the collector image is contrib and pinned: {image}"
    );
    assert!(
        compose["services"]["prometheus"]["image"]
            .as_str()
            .unwrap()
            .starts_with("prom/prometheus:")
    );
    assert!(
        compose["services"]["grafana"]["image"]
            .as_str()
            .unwrap()
            .starts_with("grafana/grafana:")
    );

    // Tollgate exports OTLP/HTTP to the collector's OTLP HTTP receiver.
    let tollgate = &compose["services"]["tollgate"];
    let env = &tollgate["environment"];
    let endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]
        .as_str()
        .expect("endpoint");
    let otlp_http = otel_config()["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .expect("otlp http endpoint")
        .to_string();
    assert_eq!(
        endpoint,
        format!("http://otel-collector:{}", port_of(&otlp_http)),
        "tollgate must send OTLP to the collector service's OTLP/HTTP port"
    );
    assert_eq!(port_of(endpoint), 4318);
    let protocol = env["OTEL_EXPORTER_OTLP_PROTOCOL"].as_str();
    assert!(
        protocol.is_none() || protocol == Some("http/protobuf"),
        "port 4318 speaks OTLP/HTTP: {protocol:?}"
    );
    assert_eq!(env["OTEL_SERVICE_NAME"].as_str(), Some("tollgate"));
    assert_eq!(
        tollgate["depends_on"]["otel-collector"]["condition"].as_str(),
        Some("service_started")
    );
    assert_eq!(
        compose["services"]["grafana"]["depends_on"]["prometheus"]["condition"].as_str(),
        Some("service_healthy")
    );
    for service in ["postgres", "prometheus", "grafana"] {
        assert!(
            !yaml_strs(&compose["services"][service]["healthcheck"]["test"]).is_empty(),
            "{service} has a healthcheck"
        );
    }

    // Every file mounted from the repository exists, and the stack mounts its configs
    // where each image reads them.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mounted = Vec::new();
    for (name, service) in services {
        for (host, container) in bind_mounts(service) {
            assert!(
                root.join(&host).exists(),
                "{name:?} mounts missing {host} at {container}"
            );
            mounted.push((host, container));
        }
    }
    let mount_of = |host: &str| {
        mounted
            .iter()
            .find(|(h, _)| h == host)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("{host} is not mounted"))
    };
    let collector_config = mount_of("./deploy/otel-collector.yaml");
    assert!(
        yaml_strs(&collector["command"]).contains(&format!("--config={collector_config}").as_str()),
        "the collector runs with the mounted configuration"
    );
    assert_eq!(
        mount_of("./deploy/prometheus.yml"),
        "/etc/prometheus/prometheus.yml"
    );
    assert!(
        yaml_strs(&compose["services"]["prometheus"]["command"])
            .contains(&"--config.file=/etc/prometheus/prometheus.yml")
    );
    assert_eq!(
        mount_of("./deploy/grafana/provisioning"),
        "/etc/grafana/provisioning"
    );
    let providers = yaml_file("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    let dashboards_path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("dashboard provider path");
    assert_eq!(mount_of("./deploy/grafana/dashboards"), dashboards_path);

    // Grafana's admin password is configurable; the UIs stay on the host's loopback.
    let grafana_env = &compose["services"]["grafana"]["environment"];
    assert!(
        grafana_env["GF_SECURITY_ADMIN_PASSWORD"]
            .as_str()
            .unwrap()
            .contains("${GRAFANA_ADMIN_PASSWORD")
    );
    assert!(yaml_strs(&compose["services"]["grafana"]["ports"]).contains(&"127.0.0.1:3000:3000"));
    assert!(
        yaml_strs(&compose["services"]["prometheus"]["ports"]).contains(&"127.0.0.1:9090:9090")
    );

    // Named volumes the services use are declared.
    let declared: Vec<&str> = compose["volumes"]
        .as_mapping()
        .unwrap()
        .keys()
        .filter_map(|k| k.as_str())
        .collect();
    for service in services.values() {
        for volume in yaml_strs(&service["volumes"]) {
            let source = volume.split(':').next().unwrap();
            if !source.starts_with('.') && !source.starts_with('/') {
                assert!(declared.contains(&source), "volume {source} not declared");
            }
        }
    }
}

fn otel_config() -> serde_yaml::Value {
    yaml_file("deploy/otel-collector.yaml")
}

#[test]
fn collector_receives_otlp_and_exports_to_prometheus() {
    let config = otel_config();
    let http = &config["receivers"]["otlp"]["protocols"]["http"]["endpoint"];
    assert_eq!(http.as_str(), Some("0.0.0.0:4318"), "OTLP/HTTP on 4318");
    let grpc = &config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"];
    assert_eq!(grpc.as_str(), Some("0.0.0.0:4317"), "OTLP/gRPC on 4317");

    let prometheus = &config["exporters"]["prometheus"];
    assert_eq!(prometheus["endpoint"].as_str(), Some("0.0.0.0:8889"));
    // The naming rule `prometheus_series` encodes; the exporter's default, pinned.
    assert_eq!(
        prometheus["translation_strategy"].as_str(),
        Some("UnderscoreEscapingWithSuffixes")
    );
    assert!(
        prometheus["namespace"].is_null(),
        "a namespace would prefix every metric name"
    );

    let pipelines = &config["service"]["pipelines"];
    let metrics = &pipelines["metrics"];
    assert!(yaml_strs(&metrics["receivers"]).contains(&"otlp"));
    assert!(yaml_strs(&metrics["exporters"]).contains(&"prometheus"));
    // Traces, and the analytics entries as log records (TOLLGATE_ANALYTICS_LOG=otlp).
    for signal in ["traces", "logs"] {
        let pipeline = &pipelines[signal];
        assert!(
            yaml_strs(&pipeline["receivers"]).contains(&"otlp"),
            "{signal}"
        );
        assert!(!yaml_strs(&pipeline["exporters"]).is_empty(), "{signal}");
    }
    // Every component a pipeline names is configured.
    for pipeline in pipelines.as_mapping().unwrap().values() {
        for (section, kind) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            for name in yaml_strs(&pipeline[section]) {
                assert!(
                    config[kind].get(name).is_some(),
                    "pipeline uses unconfigured {kind} {name}"
                );
            }
        }
    }
}

#[test]
fn prometheus_scrapes_the_collector_exporter() {
    let config = yaml_file("deploy/prometheus.yml");
    let exporter = otel_config()["exporters"]["prometheus"]["endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let wanted = format!("otel-collector:{}", port_of(&exporter));
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let job = jobs
        .iter()
        .find(|job| {
            job["static_configs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|sc| yaml_strs(&sc["targets"]).contains(&wanted.as_str()))
        })
        .unwrap_or_else(|| panic!("no scrape job targets {wanted}"));
    assert_eq!(
        job["honor_labels"].as_bool(),
        Some(true),
        "keep the job/instance labels the collector derives from Tollgate's resource"
    );
    assert!(
        yaml_file("docker-compose.yml")["services"]
            .get("otel-collector")
            .is_some()
    );
}

#[test]
fn grafana_provisioning_points_at_prometheus() {
    let datasources = yaml_file("deploy/grafana/provisioning/datasources/prometheus.yaml");
    let ds = &datasources["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    assert_eq!(ds["url"].as_str(), Some("http://prometheus:9090"));
    assert_eq!(ds["uid"].as_str(), Some(DATASOURCE_UID));

    let providers = yaml_file("deploy/grafana/provisioning/dashboards/dashboards.yaml");
    let provider = &providers["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert!(provider["options"]["path"].as_str().is_some());
}

const DATASOURCE_UID: &str = "prometheus";

/// The Prometheus series the collector's `prometheus` exporter produces from one OTLP
/// metric of the gateway, with `translation_strategy: UnderscoreEscapingWithSuffixes`
/// (deploy/otel-collector.yaml; the exporter's default, pinned there). The rule, as in
/// github.com/prometheus/otlptranslator `normalizeName` (formerly the collector's
/// pkg/translator/prometheus), which the exporter uses:
/// - the name is split into tokens at every character outside `[a-zA-Z0-9:]` (dots and
///   underscores alike) and the tokens are joined with `_`;
/// - the unit's main part (before any `/`) is appended unless it is empty or contains
///   `{`/`}`: curly-brace annotations such as `{token}`, `{request}`, `{event}` add no
///   suffix; UCUM units in the translator's table are renamed (`s` → `seconds`,
///   `ms` → `milliseconds`, `By` → `bytes`, `1` → nothing, ...), anything else is kept
///   as written with invalid characters turned into `_` — so `USD` → `_USD` (case kept);
///   it is not appended when the name already has that token;
/// - monotonic counters (OTel `Counter`) get `_total` (after dropping any `total`
///   token);
/// - explicit-bucket histograms become `<name>_bucket` (with `le`), `<name>_sum` and
///   `<name>_count`.
///
/// Attributes become labels with every character outside `[a-zA-Z0-9_]` turned into `_`
/// (`tollgate_tenant`, `gen_ai_request_model`); `service.name` and
/// `service.instance.id` become `job` and `instance`.
fn prometheus_series(name: &str, unit: &str, kind: MetricKind) -> Vec<String> {
    assert!(
        !unit.contains('/'),
        "per-units ({unit}) are not covered by this rule; extend it"
    );
    let mut tokens: Vec<String> = name
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == ':'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let unit = unit.trim();
    if !unit.is_empty() && !unit.contains(['{', '}']) {
        let mapped = match unit {
            "d" => "days",
            "h" => "hours",
            "min" => "minutes",
            "s" => "seconds",
            "ms" => "milliseconds",
            "us" => "microseconds",
            "ns" => "nanoseconds",
            "By" => "bytes",
            "KiBy" => "kibibytes",
            "MiBy" => "mebibytes",
            "GiBy" => "gibibytes",
            "1" => "",
            "%" => "percent",
            other => other,
        };
        let cleaned: String = mapped
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == ':' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let cleaned = cleaned
            .split('_')
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        if !cleaned.is_empty() && !tokens.contains(&cleaned) {
            tokens.push(cleaned);
        }
    }
    match kind {
        MetricKind::Counter => {
            tokens.retain(|t| t != "total");
            tokens.push("total".into());
            vec![tokens.join("_")]
        }
        MetricKind::Histogram => {
            let base = tokens.join("_");
            ["bucket", "sum", "count"]
                .iter()
                .map(|s| format!("{base}_{s}"))
                .collect()
        }
    }
}

/// The Prometheus series of one of the gateway's metrics, by its OTel name.
fn series_of(metric: &str) -> Vec<String> {
    let (name, unit, kind) = METRICS
        .iter()
        .find(|(name, _, _)| *name == metric)
        .unwrap_or_else(|| panic!("{metric} is not in METRICS"));
    prometheus_series(name, unit, *kind)
}

/// An OTel attribute name as a Prometheus label.
fn prometheus_label(attribute: &str) -> String {
    attribute
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Every attribute name in `semconv` (a dashboard may group or filter by any of them).
const ATTRIBUTES: &[&str] = &[
    semconv::GEN_AI_OPERATION_NAME,
    semconv::GEN_AI_PROVIDER_NAME,
    semconv::GEN_AI_REQUEST_MODEL,
    semconv::GEN_AI_RESPONSE_MODEL,
    semconv::GEN_AI_USAGE_INPUT_TOKENS,
    semconv::GEN_AI_USAGE_OUTPUT_TOKENS,
    semconv::GEN_AI_RESPONSE_FINISH_REASONS,
    semconv::GEN_AI_TOKEN_TYPE,
    semconv::SERVER_ADDRESS,
    semconv::ERROR_TYPE,
    semconv::HTTP_RESPONSE_STATUS_CODE,
    semconv::TOLLGATE_TENANT,
    semconv::TOLLGATE_ROUTE,
    semconv::TOLLGATE_PROVIDER,
    semconv::TOLLGATE_STATUS_CLASS,
    semconv::TOLLGATE_STREAM,
    semconv::TOLLGATE_POLICY_TYPE,
    semconv::TOLLGATE_POLICY_OUTCOME,
    semconv::TOLLGATE_LIMIT_KIND,
];

#[test]
fn prometheus_naming_rule_matches_the_translator() {
    // Spot checks of the rule against names the translator is documented to produce.
    assert_eq!(
        prometheus_series("http.server.request.duration", "s", MetricKind::Histogram)[0],
        "http_server_request_duration_seconds_bucket"
    );
    assert_eq!(
        prometheus_series("requests.count", "1", MetricKind::Counter),
        ["requests_count_total"]
    );
    assert_eq!(
        prometheus_series(
            "gen_ai.client.token.usage",
            "{token}",
            MetricKind::Histogram
        ),
        [
            "gen_ai_client_token_usage_bucket",
            "gen_ai_client_token_usage_sum",
            "gen_ai_client_token_usage_count"
        ]
    );
    assert_eq!(
        prometheus_series("tollgate.cost", "USD", MetricKind::Counter),
        ["tollgate_cost_USD_total"]
    );
    assert_eq!(
        prometheus_series("x.seconds.total", "s", MetricKind::Counter),
        ["x_seconds_total"]
    );
    assert_eq!(prometheus_label("gen_ai.token.type"), "gen_ai_token_type");
}

/// Metric names and label names a PromQL expression uses. A small scanner, enough for
/// the dashboard's queries: string literals, `$variables`, `[ranges]` and numbers are
/// skipped; identifiers inside `{...}` and the lists of `by`/`without`/`on`/`ignoring`/
/// `group_left`/`group_right` are labels; a known function or aggregation is skipped;
/// any other identifier is a metric name (an unknown function fails the test).
#[derive(Default, Debug)]
struct PromNames {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

const PROMQL_FUNCTIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "topk",
    "bottomk",
    "quantile",
    "group",
    "rate",
    "irate",
    "increase",
    "delta",
    "histogram_quantile",
    "clamp_min",
    "clamp_max",
    "abs",
    "round",
    "vector",
    "scalar",
    "label_replace",
    "sum_over_time",
    "avg_over_time",
    "max_over_time",
];
const PROMQL_GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const PROMQL_KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset"];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn skip_string(chars: &[char], mut i: usize) -> usize {
    let quote = chars[i];
    i += 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

fn read_ident(chars: &[char], mut i: usize) -> (String, usize) {
    let start = i;
    while i < chars.len() && is_ident(chars[i]) {
        i += 1;
    }
    (chars[start..i].iter().collect(), i)
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Label identifiers up to the closing `close`, skipping strings.
fn read_labels(chars: &[char], mut i: usize, close: char, out: &mut PromNames) -> usize {
    while i < chars.len() && chars[i] != close {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(chars, i);
        } else if is_ident_start(c) {
            let (ident, next) = read_ident(chars, i);
            out.labels.insert(ident);
            i = next;
        } else {
            i += 1;
        }
    }
    i + 1
}

fn promql_names(expr: &str, out: &mut PromNames) {
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c == '[' {
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '{' {
            i = read_labels(&chars, i + 1, '}', out);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let (ident, next) = read_ident(&chars, i);
            i = next;
            let after = skip_ws(&chars, i);
            if PROMQL_GROUPING.contains(&ident.as_str()) {
                if chars.get(after) == Some(&'(') {
                    i = read_labels(&chars, after + 1, ')', out);
                }
            } else if !PROMQL_KEYWORDS.contains(&ident.as_str())
                && !PROMQL_FUNCTIONS.contains(&ident.as_str())
            {
                assert!(
                    chars.get(after) != Some(&'('),
                    "unknown PromQL function {ident} in {expr}"
                );
                out.metrics.insert(ident);
            }
        } else {
            i += 1;
        }
    }
}

/// A Grafana Prometheus variable query: `label_values(selector, label)`,
/// `label_values(label)`, or a PromQL expression.
fn variable_query_names(query: &str, out: &mut PromNames) {
    let query = query.trim();
    if let Some(args) = query
        .strip_prefix("label_values(")
        .and_then(|a| a.strip_suffix(')'))
    {
        match args.rsplit_once(',') {
            Some((selector, label)) => {
                promql_names(selector, out);
                out.labels.insert(label.trim().to_string());
            }
            None => {
                out.labels.insert(args.trim().to_string());
            }
        }
    } else if let Some(inner) = query
        .strip_prefix("query_result(")
        .and_then(|a| a.strip_suffix(')'))
    {
        promql_names(inner, out);
    } else {
        promql_names(query, out);
    }
}

/// Every panel, rows' nested panels included.
fn all_panels(panels: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    for panel in panels.as_array().into_iter().flatten() {
        out.push(panel.clone());
        all_panels(&panel["panels"], out);
    }
}

#[test]
fn promql_scanner_finds_metrics_and_labels() {
    let mut names = PromNames::default();
    promql_names(
        r#"histogram_quantile(0.95, sum by (le, a_b) (rate(m_x_bucket{c=~"$v", d!="x{y}"}[$__rate_interval]))) / sum(m_y) without (e) * 3600"#,
        &mut names,
    );
    assert_eq!(
        names.metrics.iter().collect::<Vec<_>>(),
        ["m_x_bucket", "m_y"]
    );
    assert_eq!(
        names.labels.iter().collect::<Vec<_>>(),
        ["a_b", "c", "d", "e", "le"]
    );
    let mut names = PromNames::default();
    variable_query_names(r#"label_values(m_z{f="1"}, g)"#, &mut names);
    assert_eq!(names.metrics.iter().collect::<Vec<_>>(), ["m_z"]);
    assert_eq!(names.labels.iter().collect::<Vec<_>>(), ["f", "g"]);
}

#[test]
fn dashboard_queries_only_what_the_gateway_exports() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&repo_file("deploy/grafana/dashboards/tollgate.json")).unwrap();
    assert!(
        dashboard["schemaVersion"].as_u64().unwrap() >= 39,
        "a recent schemaVersion"
    );
    assert!(dashboard["uid"].as_str().is_some_and(|u| !u.is_empty()));

    let exported: BTreeSet<String> = METRICS
        .iter()
        .flat_map(|(name, unit, kind)| prometheus_series(name, unit, *kind))
        .collect();
    let mut allowed_labels: BTreeSet<String> =
        ATTRIBUTES.iter().map(|a| prometheus_label(a)).collect();
    allowed_labels.extend(["le", "job", "instance"].map(String::from));

    // Template variables: $tenant, $route, $model from label_values.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    let mut names = PromNames::default();
    let mut variable_labels = Vec::new();
    for variable in variables {
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .expect("variable query");
        assert_eq!(variable["type"].as_str(), Some("query"));
        assert_eq!(variable["datasource"]["uid"].as_str(), Some(DATASOURCE_UID));
        assert!(query.starts_with("label_values("), "{query}");
        let mut own = PromNames::default();
        variable_query_names(query, &mut own);
        let label = query
            .trim_end_matches(')')
            .rsplit(',')
            .next()
            .unwrap()
            .trim();
        variable_labels.push((
            variable["name"].as_str().unwrap().to_string(),
            label.to_string(),
        ));
        names.metrics.extend(own.metrics);
        names.labels.extend(own.labels);
    }
    for (variable, label) in [
        ("tenant", semconv::TOLLGATE_TENANT),
        ("route", semconv::TOLLGATE_ROUTE),
        ("model", semconv::GEN_AI_REQUEST_MODEL),
    ] {
        assert!(
            variable_labels.contains(&(variable.to_string(), prometheus_label(label))),
            "${variable} lists {label}: {variable_labels:?}"
        );
    }

    // Panels: every query's metrics and labels.
    let mut panels = Vec::new();
    all_panels(&dashboard["panels"], &mut panels);
    let mut titles = Vec::new();
    let mut exprs = Vec::new();
    for panel in &panels {
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().unwrap().to_string();
        assert_eq!(
            panel["datasource"]["uid"].as_str(),
            Some(DATASOURCE_UID),
            "{title}"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            promql_names(expr, &mut names);
            exprs.push(expr.to_string());
            for variable in ["$tenant", "$route", "$model"] {
                if expr.contains(variable) {
                    continue;
                }
                // Only the dropped-usage, lost-analytics, lost-log-line and limit-rejection
                // panels are not per tenant/route/model (process-wide counters without
                // those labels).
                assert!(
                    expr.contains("tollgate_usage_dropped")
                        || expr.contains("tollgate_analytics_lost")
                        || expr.contains("tollgate_log_dropped")
                        || expr.contains("tollgate_limit_rejections"),
                    "{title}: {expr} ignores {variable}"
                );
            }
        }
        titles.push(title.to_lowercase());
    }

    for metric in &names.metrics {
        assert!(
            exported.contains(metric),
            "the dashboard queries {metric}, which the gateway does not export; exported: {exported:?}"
        );
    }
    for label in &names.labels {
        assert!(
            allowed_labels.contains(label),
            "the dashboard uses label {label}, which the gateway does not set; allowed: {allowed_labels:?}"
        );
    }
    // Every exported metric is on the dashboard.
    for (name, unit, kind) in METRICS {
        let series = prometheus_series(name, unit, *kind);
        assert!(
            series.iter().any(|s| names.metrics.contains(s)),
            "no panel shows {name} ({series:?})"
        );
    }

    for topic in [
        "request",
        "error",
        "prompt token",
        "completion token",
        "cost",
        "latency",
        "time to first token",
        "overhead",
        "dropped usage",
    ] {
        assert!(
            titles.iter().any(|t| t.contains(topic)),
            "no panel about {topic}: {titles:?}"
        );
    }
    // Prompt and completion tokens come from the token histogram's _sum by token type.
    let token_sum = &series_of(semconv::METRIC_TOKEN_USAGE)[1];
    assert!(token_sum.ends_with("_sum"));
    for token_type in [semconv::TOKEN_TYPE_INPUT, semconv::TOKEN_TYPE_OUTPUT] {
        let selector = format!(
            "{}=\"{token_type}\"",
            prometheus_label(semconv::GEN_AI_TOKEN_TYPE)
        );
        assert!(
            exprs
                .iter()
                .any(|e| e.contains(token_sum.as_str()) && e.contains(&selector)),
            "no query sums {token_sum} for {selector}"
        );
    }
    // Latency and TTFT are quantiles over the histograms' buckets.
    for metric in [
        semconv::METRIC_OPERATION_DURATION,
        semconv::METRIC_TIME_TO_FIRST_TOKEN,
        semconv::METRIC_OVERHEAD_DURATION,
    ] {
        let bucket = &series_of(metric)[0];
        assert!(
            exprs
                .iter()
                .any(|e| e.starts_with("histogram_quantile(") && e.contains(bucket.as_str())),
            "no quantile over {bucket}"
        );
    }
}
