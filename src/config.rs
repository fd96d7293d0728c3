//! Layered configuration: built-in defaults < `tollgate.toml` (or `--config`/`TOLLGATE_CONFIG`)
//! < environment (`TOLLGATE_*` and the standard `OTEL_*`). Unknown file keys are errors that
//! name the key. Secrets are held in `Secret` so printing the configuration masks them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::Secret;

/// The effective configuration. Field names are the file keys; each environment variable is
/// `TOLLGATE_` + the upper-cased key (see `ENV_KEYS`), except the `otel_*` keys, which come
/// from the standard `OTEL_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Embedded database, generated keys and spool files.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default `sqlite://<data_dir>/tollgate.db`.
    pub database_url: Option<Secret<String>>,
    pub proxy_listen: String,
    pub admin_listen: String,
    /// Worker threads per listener (0 = one per core).
    pub proxy_workers: usize,
    pub admin_workers: usize,
    /// `base64` of 32 bytes, or `kid:base64,kid:base64` (the first encrypts).
    pub master_key: Option<Secret<String>>,
    /// HS256 secret for admin JWTs (raw UTF-8 bytes).
    pub admin_jwt_secret: Option<Secret<String>>,
    /// PEM of an RS256/ES256 public key (or a path to one) for externally issued admin JWTs.
    pub admin_jwt_public_key: Option<String>,
    pub admin_jwt_issuer: Option<String>,
    pub admin_jwt_audience: Option<String>,
    /// Lifetime of tokens from `/auth/login`, e.g. `1h`, `30m`.
    pub admin_token_ttl: String,
    /// Password of the bootstrap admin `admin`, used only when no admin exists.
    pub admin_password: Option<Secret<String>>,
    /// Admin request body limit in bytes (413 beyond).
    pub admin_max_body_size: usize,
    /// Process-wide limit on bytes buffered from upstream answers (whole answers being
    /// read, streamed pieces in flight); past it a request gets 503
    /// `gateway_memory_exhausted` (docs/architecture.md, "Memory").
    pub max_buffered_upstream_bytes: usize,
    pub allow_private_upstreams: bool,
    /// Comma-separated addresses/CIDRs of reverse proxies whose `X-Forwarded-For` is
    /// believed (the client address for login limits and logs); none by default.
    pub trusted_proxies: Option<String>,
    /// `stdout`, `off`, or a file path.
    pub analytics_log: String,
    /// The usage spool's directory (one process each); default `<data_dir>/spool`.
    pub usage_spool_dir: Option<PathBuf>,
    /// Run migrations on `serve`.
    pub migrate_on_start: bool,
    /// Grace period for in-flight requests on SIGTERM, e.g. `15s`.
    pub drain_timeout: String,
    /// `max_tokens` sent to providers that require it (Anthropic) when neither the route
    /// nor the client sets one (docs/behaviour.md, "Differences from Kong", 5).
    pub default_max_tokens: u32,
    /// `redis://…`: the limit counters shared by every node; unset = in-process counters
    /// (docs/behaviour.md, "Limits and budgets"). A secret: it may carry a password.
    pub redis_url: Option<Secret<String>>,
    /// `text` or `json` for the process log.
    pub log_format: String,
    /// `GET /metrics` on the admin listener, in the Prometheus text format
    /// (docs/behaviour.md, "Prometheus scraping"); off by default.
    pub metrics: bool,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<Secret<String>>,
    /// Tenant × route × provider × model × operation combinations `/metrics` keeps; new
    /// ones past it are counted under `other`.
    pub metrics_max_label_sets: usize,
    /// Base URL of the OTLP receiver; OTLP export is on only when this is set. Over
    /// http/protobuf the signal paths `/v1/traces` and `/v1/metrics` are appended.
    pub otel_exporter_otlp_endpoint: Option<String>,
    /// `http/protobuf` (default) or `grpc` (builds with the `otlp-grpc` feature only).
    pub otel_exporter_otlp_protocol: Option<String>,
    /// `key=value,key2=value2` (values percent-encoded) sent with every export; often a
    /// vendor's API key, hence a secret.
    pub otel_exporter_otlp_headers: Option<Secret<String>>,
    /// Per-signal headers; each replaces `otel_exporter_otlp_headers` for its signal.
    pub otel_exporter_otlp_traces_headers: Option<Secret<String>>,
    pub otel_exporter_otlp_metrics_headers: Option<Secret<String>>,
    pub otel_exporter_otlp_logs_headers: Option<Secret<String>>,
    /// PEM file of the CA(s) that sign an https receiver's certificate; only these are
    /// trusted then (default: the public web roots).
    pub otel_exporter_otlp_certificate: Option<String>,
    /// Per-signal CA files; each replaces `otel_exporter_otlp_certificate` for its signal.
    pub otel_exporter_otlp_traces_certificate: Option<String>,
    pub otel_exporter_otlp_metrics_certificate: Option<String>,
    pub otel_exporter_otlp_logs_certificate: Option<String>,
    /// PEM files of a client certificate (chain) and its private key, for receivers that
    /// require mutual TLS; both or neither.
    pub otel_exporter_otlp_client_certificate: Option<String>,
    pub otel_exporter_otlp_client_key: Option<String>,
    pub otel_service_name: Option<String>,
    /// `key=value,key2=value2` (values percent-encoded), added to the resource.
    pub otel_resource_attributes: Option<String>,
    /// Milliseconds between metric exports (the OTel default is 60000).
    pub otel_metric_export_interval: Option<String>,
}

/// The OTLP transport (`OTEL_EXPORTER_OTLP_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    Grpc,
}

/// The three OTLP signals, each with its own exporter (and optionally its own settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpSignal {
    Traces,
    Metrics,
    Logs,
}

/// One signal's exporter settings, each with the variable it came from (for errors).
/// Not `Debug`: the headers often carry a vendor's API key.
#[derive(Clone, Copy)]
pub struct OtlpSignalSettings<'a> {
    /// `key=value,...` (percent-encoded values); a secret, never logged.
    pub headers: Option<(&'static str, &'a str)>,
    /// The CA file trusted for an https receiver.
    pub certificate: Option<(&'static str, &'a Path)>,
    /// Client certificate and key files (`OTEL_EXPORTER_OTLP_CLIENT_{CERTIFICATE,KEY}`).
    pub client: Option<(&'a Path, &'a Path)>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            proxy_listen: "0.0.0.0:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            proxy_workers: 0,
            admin_workers: 1,
            master_key: None,
            admin_jwt_secret: None,
            admin_jwt_public_key: None,
            admin_jwt_issuer: None,
            admin_jwt_audience: None,
            admin_token_ttl: "1h".into(),
            admin_password: None,
            admin_max_body_size: 1024 * 1024,
            max_buffered_upstream_bytes: crate::budget::DEFAULT_LIMIT,
            allow_private_upstreams: false,
            trusted_proxies: None,
            analytics_log: "stdout".into(),
            usage_spool_dir: None,
            migrate_on_start: true,
            drain_timeout: "15s".into(),
            default_max_tokens: 4096,
            redis_url: None,
            log_format: "text".into(),
            metrics: false,
            metrics_token: None,
            metrics_max_label_sets: 2000,
            otel_exporter_otlp_endpoint: None,
            otel_exporter_otlp_protocol: None,
            otel_exporter_otlp_headers: None,
            otel_exporter_otlp_traces_headers: None,
            otel_exporter_otlp_metrics_headers: None,
            otel_exporter_otlp_logs_headers: None,
            otel_exporter_otlp_certificate: None,
            otel_exporter_otlp_traces_certificate: None,
            otel_exporter_otlp_metrics_certificate: None,
            otel_exporter_otlp_logs_certificate: None,
            otel_exporter_otlp_client_certificate: None,
            otel_exporter_otlp_client_key: None,
            otel_service_name: None,
            otel_resource_attributes: None,
            otel_metric_export_interval: None,
        }
    }
}

/// Every environment variable the configuration reads, with its file key.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("TOLLGATE_DATA_DIR", "data_dir"),
    ("TOLLGATE_DATABASE_URL", "database_url"),
    ("TOLLGATE_PROXY_LISTEN", "proxy_listen"),
    ("TOLLGATE_ADMIN_LISTEN", "admin_listen"),
    ("TOLLGATE_PROXY_WORKERS", "proxy_workers"),
    ("TOLLGATE_ADMIN_WORKERS", "admin_workers"),
    ("TOLLGATE_MASTER_KEY", "master_key"),
    ("TOLLGATE_ADMIN_JWT_SECRET", "admin_jwt_secret"),
    ("TOLLGATE_ADMIN_JWT_PUBLIC_KEY", "admin_jwt_public_key"),
    ("TOLLGATE_ADMIN_JWT_ISSUER", "admin_jwt_issuer"),
    ("TOLLGATE_ADMIN_JWT_AUDIENCE", "admin_jwt_audience"),
    ("TOLLGATE_ADMIN_TOKEN_TTL", "admin_token_ttl"),
    ("TOLLGATE_ADMIN_PASSWORD", "admin_password"),
    ("TOLLGATE_ADMIN_MAX_BODY_SIZE", "admin_max_body_size"),
    (
        "TOLLGATE_MAX_BUFFERED_UPSTREAM_BYTES",
        "max_buffered_upstream_bytes",
    ),
    (
        "TOLLGATE_ALLOW_PRIVATE_UPSTREAMS",
        "allow_private_upstreams",
    ),
    ("TOLLGATE_TRUSTED_PROXIES", "trusted_proxies"),
    ("TOLLGATE_ANALYTICS_LOG", "analytics_log"),
    ("TOLLGATE_USAGE_SPOOL_DIR", "usage_spool_dir"),
    ("TOLLGATE_MIGRATE_ON_START", "migrate_on_start"),
    ("TOLLGATE_DRAIN_TIMEOUT", "drain_timeout"),
    ("TOLLGATE_DEFAULT_MAX_TOKENS", "default_max_tokens"),
    ("TOLLGATE_REDIS_URL", "redis_url"),
    ("TOLLGATE_LOG_FORMAT", "log_format"),
    ("TOLLGATE_METRICS", "metrics"),
    ("TOLLGATE_METRICS_TOKEN", "metrics_token"),
    ("TOLLGATE_METRICS_MAX_LABEL_SETS", "metrics_max_label_sets"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"),
    ("OTEL_EXPORTER_OTLP_PROTOCOL", "otel_exporter_otlp_protocol"),
    ("OTEL_EXPORTER_OTLP_HEADERS", "otel_exporter_otlp_headers"),
    (
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "otel_exporter_otlp_traces_headers",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        "otel_exporter_otlp_metrics_headers",
    ),
    (
        "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
        "otel_exporter_otlp_logs_headers",
    ),
    (
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "otel_exporter_otlp_certificate",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "otel_exporter_otlp_traces_certificate",
    ),
    (
        "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
        "otel_exporter_otlp_metrics_certificate",
    ),
    (
        "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
        "otel_exporter_otlp_logs_certificate",
    ),
    (
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "otel_exporter_otlp_client_certificate",
    ),
    (
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
        "otel_exporter_otlp_client_key",
    ),
    ("OTEL_SERVICE_NAME", "otel_service_name"),
    ("OTEL_RESOURCE_ATTRIBUTES", "otel_resource_attributes"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "otel_metric_export_interval"),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid configuration file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid value in {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl Settings {
    /// Loads defaults < file < environment. `explicit_file` comes from `--config`; otherwise
    /// `TOLLGATE_CONFIG`, otherwise `./tollgate.toml` when it exists.
    pub fn load(explicit_file: Option<&Path>) -> Result<Settings, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(explicit_file, &env)
    }

    /// As `load`, with the environment passed in (tests must not mutate the process env).
    pub fn load_from(
        explicit_file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Settings, ConfigError> {
        let lookup = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let file = match (explicit_file, lookup("TOLLGATE_CONFIG")) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) if !p.is_empty() => Some(PathBuf::from(p)),
            _ => Some(PathBuf::from("tollgate.toml")).filter(|p| p.exists()),
        };
        // Start from the defaults as a TOML table so file and env layers merge key by key.
        let mut table =
            toml::Table::try_from(Settings::default()).map_err(|e| ConfigError::Invalid {
                key: "(defaults)".into(),
                reason: e.to_string(),
            })?;
        if let Some(path) = &file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            let file_table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::File {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
            // Validate the file alone so an unknown key is reported against the file.
            let _: Settings = toml::Value::Table(file_table.clone()).try_into().map_err(
                |e: toml::de::Error| ConfigError::File {
                    path: shown.clone(),
                    reason: e.to_string(),
                },
            )?;
            table.extend(file_table);
        }
        for (var, key) in ENV_KEYS {
            // An empty variable counts as unset (compose files pass `VAR: ${VAR:-}`).
            let Some(raw) = lookup(var).filter(|v| !v.is_empty()) else {
                continue;
            };
            let value = env_value(key, &raw).map_err(|reason| ConfigError::Env {
                var: (*var).to_string(),
                reason,
            })?;
            table.insert((*key).to_string(), value);
        }
        let settings: Settings =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    key: "(merged)".into(),
                    reason: e.to_string(),
                })?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            key: key.into(),
            reason,
        };
        for (key, addr) in [
            ("proxy_listen", &self.proxy_listen),
            ("admin_listen", &self.admin_listen),
        ] {
            addr.parse::<SocketAddr>()
                .map_err(|e| invalid(key, format!("'{addr}' is not host:port ({e})")))?;
        }
        parse_duration(&self.admin_token_ttl).map_err(|e| invalid("admin_token_ttl", e))?;
        parse_duration(&self.drain_timeout).map_err(|e| invalid("drain_timeout", e))?;
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(invalid("log_format", "must be 'text' or 'json'".into()));
        }
        if self.default_max_tokens == 0 {
            return Err(invalid(
                "default_max_tokens",
                "must be greater than 0".into(),
            ));
        }
        if self.admin_max_body_size == 0 {
            return Err(invalid(
                "admin_max_body_size",
                "must be greater than 0".into(),
            ));
        }
        if self.metrics_max_label_sets == 0 {
            return Err(invalid(
                "metrics_max_label_sets",
                "must be greater than 0".into(),
            ));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.expose().trim().is_empty())
        {
            return Err(invalid("metrics_token", "must not be blank".into()));
        }
        if self.max_buffered_upstream_bytes == 0 {
            return Err(invalid(
                "max_buffered_upstream_bytes",
                "must be greater than 0".into(),
            ));
        }
        if let Some(endpoint) = &self.otel_exporter_otlp_endpoint {
            let ok = url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(ConfigError::Env {
                    var: "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    reason: format!("'{endpoint}' is not an http:// or https:// URL"),
                });
            }
        }
        self.otlp_protocol()?;
        self.otel_metric_export_interval()?;
        if self.otel_exporter_otlp_client_certificate.is_some()
            != self.otel_exporter_otlp_client_key.is_some()
        {
            return Err(ConfigError::Env {
                var: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE".into(),
                reason: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY \
                         go together: set both or neither"
                    .into(),
            });
        }
        if self.analytics_log == "otlp" && self.otlp_endpoint().is_none() {
            return Err(ConfigError::Env {
                var: "TOLLGATE_ANALYTICS_LOG".into(),
                reason: "'otlp' needs OTEL_EXPORTER_OTLP_ENDPOINT (the receiver of the log \
                         records)"
                    .into(),
            });
        }
        self.trusted_proxies()?;
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:// or postgres://".into(),
            ));
        }
        Ok(())
    }

    /// The database URL, defaulting to the SQLite file in the data directory.
    /// Where the usage spool lives (docs/architecture.md, "The usage spool").
    pub fn usage_spool_dir(&self) -> PathBuf {
        self.usage_spool_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("spool"))
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().clone(),
            None => format!("sqlite://{}", self.data_dir.join("tollgate.db").display()),
        }
    }

    /// `trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> Result<crate::client_addr::TrustedProxies, ConfigError> {
        crate::client_addr::TrustedProxies::parse(self.trusted_proxies.as_deref().unwrap_or(""))
            .map_err(|reason| ConfigError::Invalid {
                key: "trusted_proxies".into(),
                reason,
            })
    }

    pub fn admin_token_ttl(&self) -> Duration {
        parse_duration(&self.admin_token_ttl).unwrap_or(Duration::from_secs(3600))
    }

    pub fn drain_timeout(&self) -> Duration {
        parse_duration(&self.drain_timeout).unwrap_or(Duration::from_secs(15))
    }

    /// The OTLP transport; gRPC only in builds with the `otlp-grpc` feature.
    pub fn otlp_protocol(&self) -> Result<OtlpProtocol, ConfigError> {
        let err = |reason: String| ConfigError::Env {
            var: "OTEL_EXPORTER_OTLP_PROTOCOL".into(),
            reason,
        };
        match self.otel_exporter_otlp_protocol.as_deref().map(str::trim) {
            None | Some("") | Some("http/protobuf") => Ok(OtlpProtocol::HttpProtobuf),
            Some("grpc") if cfg!(feature = "otlp-grpc") => Ok(OtlpProtocol::Grpc),
            Some("grpc") => Err(err(
                "'grpc' needs a build with the `otlp-grpc` cargo feature; \
                 use 'http/protobuf' (port 4318)"
                    .into(),
            )),
            Some(other) => Err(err(format!(
                "'{other}' is not supported (use 'http/protobuf' or 'grpc')"
            ))),
        }
    }

    /// The OTLP endpoint, when export is on.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        self.otel_exporter_otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// What one OTLP signal's exporter uses: the signal's own headers and CA file when set,
    /// else the general ones; the client certificate is shared.
    pub fn otlp_signal(&self, signal: OtlpSignal) -> OtlpSignalSettings<'_> {
        let (headers, headers_var, certificate, certificate_var) = match signal {
            OtlpSignal::Traces => (
                &self.otel_exporter_otlp_traces_headers,
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                &self.otel_exporter_otlp_traces_certificate,
                "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
            ),
            OtlpSignal::Metrics => (
                &self.otel_exporter_otlp_metrics_headers,
                "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                &self.otel_exporter_otlp_metrics_certificate,
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
            ),
            OtlpSignal::Logs => (
                &self.otel_exporter_otlp_logs_headers,
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                &self.otel_exporter_otlp_logs_certificate,
                "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
            ),
        };
        let headers = match headers {
            Some(h) => Some((headers_var, h.expose().as_str())),
            None => self
                .otel_exporter_otlp_headers
                .as_ref()
                .map(|h| ("OTEL_EXPORTER_OTLP_HEADERS", h.expose().as_str())),
        };
        let certificate = match certificate {
            Some(path) => Some((certificate_var, Path::new(path.as_str()))),
            None => self
                .otel_exporter_otlp_certificate
                .as_deref()
                .map(|p| ("OTEL_EXPORTER_OTLP_CERTIFICATE", Path::new(p))),
        };
        let client = self
            .otel_exporter_otlp_client_certificate
            .as_deref()
            .zip(self.otel_exporter_otlp_client_key.as_deref())
            .map(|(cert, key)| (Path::new(cert), Path::new(key)));
        OtlpSignalSettings {
            headers,
            certificate,
            client,
        }
    }

    /// `OTEL_METRIC_EXPORT_INTERVAL` (milliseconds, per the OTel spec); `None` for the
    /// SDK default.
    pub fn otel_metric_export_interval(&self) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self
            .otel_metric_export_interval
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Ok(None);
        };
        match raw.parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Some(Duration::from_millis(ms))),
            _ => Err(ConfigError::Env {
                var: "OTEL_METRIC_EXPORT_INTERVAL".into(),
                reason: format!("expected a positive number of milliseconds, got '{raw}'"),
            }),
        }
    }

    /// The effective configuration as TOML with every secret masked (also the password
    /// inside a database URL).
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = Some(Secret::new(mask_url_password(&self.database_url())));
        // `Secret` serialises as a mask, so the remaining secrets need no special care.
        let mut out = toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        if let Some(url) = &shown.database_url {
            out = out.replace(
                "database_url = \"********\"",
                &format!("database_url = {:?}", url.expose()),
            );
        }
        out
    }
}

/// Converts an environment string into the TOML value the key expects.
fn env_value(key: &str, raw: &str) -> Result<toml::Value, String> {
    let default = toml::Table::try_from(Settings::default()).map_err(|e| e.to_string())?;
    Ok(match default.get(key) {
        Some(toml::Value::Boolean(_)) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => toml::Value::Boolean(true),
            "false" | "0" | "no" | "off" => toml::Value::Boolean(false),
            _ => return Err(format!("expected true or false, got '{raw}'")),
        },
        Some(toml::Value::Integer(_)) => toml::Value::Integer(
            raw.trim()
                .parse::<i64>()
                .map_err(|_| format!("expected an integer, got '{raw}'"))?,
        ),
        _ => toml::Value::String(raw.to_string()),
    })
}

/// `15s`, `500ms`, `30m`, `1h`, `2d`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 15s, 30m, 1h"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => return Ok(Duration::from_millis(n)),
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err(format!("'{s}' has an unknown unit (use ms, s, m, h or d)")),
    };
    Ok(Duration::from_secs(secs))
}

/// `postgres://user:pw@host/db` → `postgres://user:********@host/db`; a libpq-style
/// `?password=pw` query parameter (which sqlx honours too) is masked the same way.
pub fn mask_url_password(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    let in_query = u.query_pairs().any(|(k, _)| k == "password");
    if u.password().is_none() && !in_query {
        return url.to_string();
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("********"));
    }
    if in_query {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" {
                    "********".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn trusted_proxies_from_env_are_checked_and_shown() {
        let s = Settings::load_from(
            None,
            &env(&[("TOLLGATE_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")]),
        )
        .unwrap();
        assert!(
            s.trusted_proxies()
                .unwrap()
                .trusts("10.2.3.4".parse().unwrap())
        );
        assert!(
            s.masked_toml()
                .contains("trusted_proxies = \"10.0.0.0/8, 192.168.1.7\"")
        );
        let err = Settings::load_from(
            None,
            &env(&[("TOLLGATE_TRUSTED_PROXIES", "10.0.0.0/8, lb")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("trusted_proxies") && err.contains("'lb'"),
            "{err}"
        );
        assert!(Settings::default().trusted_proxies().unwrap().is_empty());
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.proxy_listen, "0.0.0.0:8080");
        assert_eq!(s.admin_listen, "127.0.0.1:8081");
        assert_eq!(s.database_url(), "sqlite://./data/tollgate.db");
        assert_eq!(s.analytics_log, "stdout");
        assert!(!s.allow_private_upstreams);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "admin_listen = \"127.0.0.1:9000\"\nanalytics_log = \"off\"\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&path),
            &env(&[
                ("TOLLGATE_ANALYTICS_LOG", "/tmp/a.log"),
                ("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(s.admin_listen, "127.0.0.1:9000");
        assert_eq!(s.analytics_log, "/tmp/a.log");
        assert!(s.allow_private_upstreams);
    }

    #[test]
    fn config_env_var_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "proxy_listen = \"127.0.0.1:0\"\n").unwrap();
        let s = Settings::load_from(None, &env(&[("TOLLGATE_CONFIG", path.to_str().unwrap())]))
            .unwrap();
        assert_eq!(s.proxy_listen, "127.0.0.1:0");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "admin_listen = \"127.0.0.1:9000\"\nadmin_lisen = \"x\"\n",
        )
        .unwrap();
        let err = Settings::load_from(Some(&path), &env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_lisen"), "{err}");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let err = Settings::load_from(None, &env(&[("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("TOLLGATE_ALLOW_PRIVATE_UPSTREAMS"), "{err}");
        let err = Settings::load_from(None, &env(&[("TOLLGATE_ADMIN_LISTEN", "nowhere")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("admin_listen"), "{err}");
    }

    #[test]
    fn every_spec_variable_is_read() {
        for var in [
            "TOLLGATE_DATA_DIR",
            "TOLLGATE_DATABASE_URL",
            "TOLLGATE_PROXY_LISTEN",
            "TOLLGATE_ADMIN_LISTEN",
            "TOLLGATE_MASTER_KEY",
            "TOLLGATE_ADMIN_JWT_SECRET",
            "TOLLGATE_ADMIN_PASSWORD",
            "TOLLGATE_ALLOW_PRIVATE_UPSTREAMS",
            "TOLLGATE_ANALYTICS_LOG",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
            "OTEL_METRIC_EXPORT_INTERVAL",
        ] {
            assert!(ENV_KEYS.iter().any(|(v, _)| *v == var), "{var} is not read");
        }
    }

    #[test]
    fn masked_output_hides_secrets() {
        let s = Settings::load_from(
            None,
            &env(&[
                (
                    "TOLLGATE_MASTER_KEY",
                    "k1:c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=",
                ),
                ("TOLLGATE_ADMIN_JWT_SECRET", "jwt-secret-value"),
                ("TOLLGATE_ADMIN_PASSWORD", "hunter2-password"),
                (
                    "TOLLGATE_DATABASE_URL",
                    "postgres://app:dbpass123@db:5432/tollgate",
                ),
                ("TOLLGATE_METRICS_TOKEN", "scrape-token-value"),
            ]),
        )
        .unwrap();
        let out = s.masked_toml();
        for secret in [
            "c2VjcmV0",
            "jwt-secret-value",
            "hunter2-password",
            "dbpass123",
            "scrape-token-value",
        ] {
            assert!(!out.contains(secret), "{secret} leaked in:\n{out}");
        }
        assert!(
            out.contains("postgres://app:********@db:5432/tollgate"),
            "{out}"
        );
    }

    #[test]
    fn otel_settings_from_the_standard_variables() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=otlp-secret-value"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.otel_exporter_otlp_endpoint.as_deref(),
            Some("http://collector:4318")
        );
        assert_eq!(s.otlp_protocol().unwrap(), OtlpProtocol::HttpProtobuf);
        assert_eq!(
            s.otel_exporter_otlp_headers
                .as_ref()
                .map(|h| h.expose().as_str()),
            Some("api-key=otlp-secret-value")
        );
        assert_eq!(
            s.otel_metric_export_interval().unwrap(),
            Some(Duration::from_secs(5))
        );
        assert!(!s.masked_toml().contains("otlp-secret-value"));

        let defaults = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(
            defaults.otlp_protocol().unwrap(),
            OtlpProtocol::HttpProtobuf
        );
        assert_eq!(defaults.otel_metric_export_interval().unwrap(), None);
    }

    #[test]
    fn otlp_signal_settings_prefer_the_signal_variables() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=general"),
                ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=logs"),
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.pem"),
                ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/metrics-ca.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/c.pem"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
                ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=traces-secret"),
            ]),
        )
        .unwrap();
        let traces = s.otlp_signal(OtlpSignal::Traces);
        assert_eq!(
            traces.headers,
            Some(("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "a=traces-secret"))
        );
        assert_eq!(
            traces.certificate,
            Some(("OTEL_EXPORTER_OTLP_CERTIFICATE", Path::new("/ca.pem")))
        );
        let metrics = s.otlp_signal(OtlpSignal::Metrics);
        assert_eq!(
            metrics.headers,
            Some(("OTEL_EXPORTER_OTLP_HEADERS", "a=general"))
        );
        assert_eq!(
            metrics.certificate,
            Some((
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                Path::new("/metrics-ca.pem")
            ))
        );
        let logs = s.otlp_signal(OtlpSignal::Logs);
        assert_eq!(
            logs.headers,
            Some(("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=logs"))
        );
        assert_eq!(
            logs.client,
            Some((Path::new("/c.pem"), Path::new("/k.pem")))
        );
        assert!(!s.masked_toml().contains("traces-secret"));

        for (vars, named) in [
            (
                vec![("TOLLGATE_ANALYTICS_LOG", "otlp")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")],
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            ),
        ] {
            let err = Settings::load_from(None, &env(&vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(named), "{err}");
        }
    }

    #[test]
    fn bad_otel_values_name_the_variable() {
        for (var, value) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5s"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ] {
            let err = Settings::load_from(None, &env(&[(var, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn grpc_needs_the_cargo_feature() {
        let result = Settings::load_from(None, &env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]));
        if cfg!(feature = "otlp-grpc") {
            assert_eq!(result.unwrap().otlp_protocol().unwrap(), OtlpProtocol::Grpc);
        } else {
            let err = result.unwrap_err().to_string();
            assert!(
                err.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && err.contains("otlp-grpc"),
                "{err}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15s").unwrap(), Duration::from_secs(15));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
    }
}
