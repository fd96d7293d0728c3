//! The admin API's rendering of an [`Error`]: `{"error":{"code","message","fields"}}`, with
//! `retry-after` when the error carries one (docs/behaviour.md, "Admin conventions"); and
//! what the failures admin handlers meet mean to their clients.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

use super::{Error, ErrorCode, ErrorSource};
use crate::crypto::{HashFailed, HashingUnavailable, JwtError, Lockout, login_guard};
use crate::store::StoreError;

/// An [`Error`] as the admin API answers it: only this type renders the admin shape.
#[derive(Debug)]
pub struct AdminError(pub Error);

/// What admin handlers and their helpers return.
pub type Result<T, E = AdminError> = std::result::Result<T, E>;

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        AdminError(e)
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError(e.into())
    }
}

/// A refused admin token: 401 with the refusal's fixed text.
impl From<JwtError> for AdminError {
    fn from(e: JwtError) -> Self {
        AdminError(Error::unauthorized(e.to_string()))
    }
}

/// A locked login: 429 with `retry-after` until the lock ends.
impl From<Lockout> for AdminError {
    fn from(e: Lockout) -> Self {
        AdminError(Error::too_many_requests(e.to_string(), e.retry_after))
    }
}

impl From<HashingUnavailable> for AdminError {
    fn from(e: HashingUnavailable) -> Self {
        AdminError(match e {
            HashingUnavailable::Busy => {
                let mut busy = Error::unavailable(e.to_string())
                    .with_retry_after(login_guard::BUSY_RETRY_AFTER);
                // Load shedding under a burst, not a gateway fault: not logged as an
                // error per request.
                busy.source = ErrorSource::Client;
                busy
            }
            HashingUnavailable::NotRunning | HashingUnavailable::Interrupted => {
                Error::internal(e.to_string())
            }
        })
    }
}

impl From<HashFailed> for AdminError {
    fn from(e: HashFailed) -> Self {
        AdminError(Error::internal(e.to_string()))
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ErrorCode {
    /// The code as the admin body spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Internal => "internal",
        }
    }
}

#[derive(Serialize)]
struct AdminErrorBody<'a> {
    error: AdminErrorInner<'a>,
}

#[derive(Serialize)]
struct AdminErrorInner<'a> {
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    fields: &'a BTreeMap<String, String>,
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.0.status
    }

    fn error_response(&self) -> HttpResponse {
        let e = &self.0;
        e.log_if_unlogged_gateway_fault();
        let mut response = HttpResponse::build(e.status);
        if let Some(after) = e.retry_after {
            // Whole seconds, rounded up, never 0 (RFC 9110 §10.2.3).
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response.insert_header((actix_web::http::header::RETRY_AFTER, secs.max(1)));
        }
        response.json(AdminErrorBody {
            error: AdminErrorInner {
                code: e.code,
                message: &e.message,
                fields: &e.fields,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crypto::LockedBy;

    #[test]
    fn a_refused_token_is_401_with_its_text() {
        let AdminError(e) = JwtError::InvalidSignature.into();
        assert_eq!(e.status.as_u16(), 401);
        assert_eq!(e.message, "invalid token signature");
    }

    #[test]
    fn a_lockout_is_429_until_it_ends() {
        let wait = Duration::from_secs(59);
        for (by, word) in [
            (LockedBy::Name, "user name"),
            (LockedBy::Address, "address"),
        ] {
            let AdminError(e) = Lockout {
                by,
                retry_after: wait,
            }
            .into();
            assert_eq!(e.status.as_u16(), 429);
            assert_eq!(e.retry_after, Some(wait));
            assert!(e.message.contains(word), "{}", e.message);
        }
    }

    #[test]
    fn busy_hashing_is_503_retry_after_a_second_and_not_a_gateway_fault() {
        let AdminError(e) = HashingUnavailable::Busy.into();
        assert_eq!(e.status.as_u16(), 503);
        assert_eq!(e.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(e.source, ErrorSource::Client);
        let AdminError(e) = HashingUnavailable::Interrupted.into();
        assert_eq!(e.status.as_u16(), 500);
        let AdminError(e) = HashFailed.into();
        assert_eq!(
            (e.status.as_u16(), e.message.as_str()),
            (500, "password hashing failed")
        );
    }

    #[test]
    fn codes_are_spelled_as_serialised() {
        for code in [
            ErrorCode::ValidationFailed,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::Unavailable,
            ErrorCode::RateLimited,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Internal,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let e = Error::too_many_requests("slow down", Duration::from_millis(1500));
        let response = AdminError(e).error_response();
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(
            response
                .headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .unwrap(),
            "2"
        );
    }
}
