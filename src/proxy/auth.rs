//! The authenticate stage: tenant-key authentication and route permission (docs/behaviour.md, "Client keys"), against the
//! snapshot.

use actix_web::HttpRequest;
use chrono::Utc;
use uuid::Uuid;

use crate::crypto::ApiKeyHasher;
use crate::error::Error;
use crate::snapshot::{KeyEntry, RouteEntry, Snapshot};

/// Which header carried the key (so it is never forwarded upstream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyHeader {
    Authorization,
    XApiKey,
    ApiKey,
}

impl KeyHeader {
    pub fn name(self) -> &'static str {
        match self {
            KeyHeader::Authorization => "authorization",
            KeyHeader::XApiKey => "x-api-key",
            KeyHeader::ApiKey => "api-key",
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'s> {
    pub key: &'s KeyEntry,
    pub tenant: Uuid,
    pub header: KeyHeader,
}

impl Caller<'_> {
    /// What the rest of the request needs of the caller, owned.
    pub fn id(&self) -> CallerId {
        CallerId {
            tenant: self.tenant,
            key_id: self.key.record.id,
            header: self.header,
        }
    }
}

/// The authenticated caller, as the request's later stages and its record need it.
#[derive(Debug, Clone, Copy)]
pub struct CallerId {
    pub tenant: Uuid,
    pub key_id: Uuid,
    /// Which header carried the gateway key (it is never forwarded upstream).
    pub header: KeyHeader,
}

/// Finds the presented key: `Authorization: Bearer tg-…`, `x-api-key`, or `api-key`.
fn presented_key(req: &HttpRequest) -> Option<(&str, KeyHeader)> {
    let headers = req.headers();
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = v.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some((token.trim(), KeyHeader::Authorization));
    }
    for header in [KeyHeader::XApiKey, KeyHeader::ApiKey] {
        if let Some(v) = headers.get(header.name()).and_then(|v| v.to_str().ok()) {
            return Some((v.trim(), header));
        }
    }
    None
}

/// 401 for a missing, unknown, revoked or expired key.
pub fn authenticate<'s>(
    req: &HttpRequest,
    snapshot: &'s Snapshot,
    hasher: &ApiKeyHasher,
) -> Result<Caller<'s>, Error> {
    let (presented, header) = presented_key(req).ok_or_else(|| {
        Error::unauthorized(
            "missing API key: send Authorization: Bearer <key>, x-api-key or api-key",
        )
    })?;
    let key = snapshot
        .find_key(hasher, presented)
        .ok_or_else(|| Error::unauthorized("invalid API key"))?;
    if key.record.revoked_at.is_some() {
        return Err(Error::unauthorized("API key has been revoked"));
    }
    if key.record.expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(Error::unauthorized("API key has expired"));
    }
    if !snapshot.tenants.contains_key(&key.record.tenant_id) {
        return Err(Error::unauthorized("invalid API key"));
    }
    Ok(Caller {
        key,
        tenant: key.record.tenant_id,
        header,
    })
}

/// 403 `permission_denied` when the key or its tenant may not use the route.
pub fn authorize(caller: &Caller<'_>, route: &RouteEntry) -> Result<(), Error> {
    let key_allows = caller
        .key
        .record
        .routes
        .as_ref()
        .is_none_or(|ids| ids.0.contains(&route.record.id));
    if key_allows && route.allows_tenant(caller.tenant) {
        Ok(())
    } else {
        Err(Error::forbidden("this API key may not use this route")
            .with_openai_code("permission_denied"))
    }
}
