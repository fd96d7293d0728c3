//! What a storage failure means to a client (docs/architecture.md, "Errors").

use super::Error;
use crate::store::StoreError;

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(msg) => Error::conflict(msg),
            StoreError::NotFound(what) => Error::not_found(what),
            StoreError::InvalidReference { field, message } => Error::invalid_field(field, message),
            StoreError::Unavailable(u) => {
                tracing::warn!(reason = u.reason, error = %u.detail, "database unavailable");
                Error::unavailable(format!("{}; try again later", u.reason))
            }
            StoreError::Other(msg) => {
                tracing::error!(error = %msg, "database error");
                Error::internal("internal storage error")
            }
        }
    }
}
