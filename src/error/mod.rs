//! The one error type of the gateway. It knows its HTTP status, where it came from
//! (client, gateway, upstream) and whether a retry may help; it does not render itself.
//! Each surface renders it in its own shape through its own wrapper, so neither can answer
//! in the other's (docs/architecture.md, "Errors"):
//!
//! - `AdminError` (`admin.rs`): the admin API's `{"error":{"code","message","fields"}}`
//!   (docs/behaviour.md, "Admin conventions");
//! - `OpenAiError` (`openai.rs`): the proxy's `{"error":{"message","type","param","code"}}`
//!   (docs/behaviour.md, "Request order").

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use serde::Serialize;

pub mod admin;
pub mod openai;
mod store;

pub use admin::AdminError;
pub use openai::{OpenAiDetail, OpenAiError};

/// Who caused an error: decides logging level and, later, whether a fallback may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorSource {
    Client,
    Gateway,
    Upstream,
}

/// The machine-readable error codes of the admin API (docs/behaviour.md, "Admin conventions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    ValidationFailed,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    Unavailable,
    /// 429: too many attempts (login), with `retry-after`.
    RateLimited,
    PayloadTooLarge,
    UnsupportedMediaType,
    Internal,
}

#[derive(Debug, Clone)]
pub struct Error {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub source: ErrorSource,
    pub retryable: bool,
    pub message: String,
    /// Offending fields by dotted path (validation errors).
    pub fields: BTreeMap<String, String>,
    /// OpenAI shape only (boxed: rare, and it keeps `Result<_, Error>` small).
    pub openai: Option<Box<OpenAiDetail>>,
    /// Already logged where it arose (once per change, not per request).
    pub logged: bool,
    /// Sent as `retry-after` (whole seconds, at least 1) by the admin rendering.
    pub retry_after: Option<std::time::Duration>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a request or stream cut by a graceful stop's drain deadline is told.
pub const SHUTDOWN_MESSAGE: &str =
    "the gateway is shutting down and its drain time ran out; retry the request";

impl Error {
    fn new(
        status: StatusCode,
        code: ErrorCode,
        source: ErrorSource,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            source,
            retryable: false,
            message: message.into(),
            fields: BTreeMap::new(),
            openai: None,
            logged: false,
            retry_after: None,
        }
    }

    /// Adds a `retry-after` to the response.
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 429: too many attempts; the caller may retry after `after`.
    pub fn too_many_requests(message: impl Into<String>, after: std::time::Duration) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            ErrorSource::Client,
            message,
        );
        e.retryable = true;
        e.with_retry_after(after)
    }

    fn openai_detail(&mut self) -> &mut OpenAiDetail {
        self.openai.get_or_insert_with(Default::default)
    }

    /// Names the offending request parameter (OpenAI shape).
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.openai_detail().param = Some(param.into());
        self
    }

    /// Sets the OpenAI `code` (e.g. `model_not_found`).
    pub fn with_openai_code(mut self, code: impl Into<String>) -> Self {
        self.openai_detail().code = Some(code.into());
        self
    }

    /// Adds a response header to the OpenAI rendering (a limit refusal's `x-ratelimit-*`).
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.openai_detail().headers.push((name, value));
        self
    }

    /// Sets the OpenAI `type` (e.g. an upstream provider's own error type).
    pub fn with_openai_type(mut self, kind: impl Into<String>) -> Self {
        self.openai_detail().kind = Some(kind.into());
        self
    }

    /// An upstream failure as the gateway saw it: unreachable (502) or timed out (504).
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            status,
            ErrorCode::Unavailable,
            ErrorSource::Upstream,
            message,
        );
        e.retryable = true;
        e
    }

    /// 400 with one offending field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            ErrorSource::Client,
            format!("{field}: {message}"),
        );
        e.fields.insert(field, message);
        e
    }

    /// 400 naming every offending field.
    pub fn invalid_fields(fields: BTreeMap<String, String>) -> Self {
        let message = fields
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            ErrorSource::Client,
            message,
        );
        e.fields = fields;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            ErrorSource::Client,
            message,
        )
    }

    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            ErrorSource::Client,
            format!("{what} not found"),
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ValidationFailed,
            ErrorSource::Client,
            message,
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            ErrorSource::Client,
            message,
        )
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            ErrorSource::Client,
            message,
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            ErrorSource::Client,
            message,
        )
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            ErrorSource::Client,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            ErrorSource::Client,
            message,
        )
    }

    /// The database is unreachable: the client may retry.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            ErrorSource::Gateway,
            message,
        );
        e.retryable = true;
        e
    }

    /// 503 `credential_unavailable` (docs/security.md): the service's stored credential cannot be
    /// decrypted. Names the credential, never a value. Logged when the snapshot was built,
    /// so not again per request.
    pub fn credential_unavailable(service: &str, credential: &str) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            ErrorSource::Gateway,
            format!(
                "service '{service}' is unavailable: its credential '{credential}' cannot be decrypted by this gateway"
            ),
        )
        .with_openai_code("credential_unavailable")
        .with_openai_type("service_unavailable");
        e.logged = true;
        e
    }

    /// 503 `shutdown`: a graceful stop's drain time ran out before the answer was ready
    /// (docs/architecture.md, "Graceful stop"). Expected during a stop, so not logged.
    pub fn shutting_down() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            ErrorSource::Gateway,
            SHUTDOWN_MESSAGE,
        )
        .with_openai_code("shutdown")
        .with_openai_type("service_unavailable");
        e.retryable = true;
        e.logged = true;
        e
    }

    /// A fault of the gateway itself. The message is shown to the client, so it must not
    /// carry secrets; details belong in the log.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            ErrorSource::Gateway,
            message,
        )
    }
}

impl Error {
    /// Logs a fault of the gateway once, when it is rendered, unless it was logged where it
    /// arose. Client and upstream faults are the caller's or the upstream's, not an error of
    /// the gateway.
    fn log_if_unlogged_gateway_fault(&self) {
        if self.source == ErrorSource::Gateway && !self.logged {
            tracing::error!(status = self.status.as_u16(), message = %self.message, "request failed");
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

impl std::error::Error for Error {}
