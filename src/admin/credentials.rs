//! `/credentials`: upstream secrets, encrypted at rest (docs/security.md). The secret fields are
//! write-only: reads show a mask with at most the last 4 characters and `has_*` flags.
//! Shape and "all or none" rules follow Kong's `auth` record.

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::crud::{self, Resource};
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged};
use crate::crypto::{Keyring, envelope_key_id, mask_hint, masked};
use crate::error::admin::Result;
use crate::state::AppState;
use crate::store::{CredentialRecord, Lookup, Page, StoreResult, credential_aad, new_id, now};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ParamLocation {
    Query,
    Body,
}

impl ParamLocation {
    fn as_str(self) -> &'static str {
        match self {
            ParamLocation::Query => "query",
            ParamLocation::Body => "body",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub name: String,
    /// Header to set upstream, e.g. `Authorization`, `api-key`, `x-api-key`.
    pub header_name: Option<String>,
    /// Write-only. The full header value, e.g. `Bearer sk-…`.
    pub header_value: Option<String>,
    /// Query or body parameter name.
    pub param_name: Option<String>,
    /// Write-only.
    pub param_value: Option<String>,
    pub param_location: Option<ParamLocation>,
    /// Kong's `allow_override`: keep the client's own header/parameter when it sent one.
    #[serde(default)]
    pub allow_override: bool,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialView {
    pub id: Uuid,
    pub name: String,
    pub header_name: Option<String>,
    /// Masked: `********` plus at most the last 4 characters.
    pub header_value: Option<String>,
    pub has_header_value: bool,
    pub param_name: Option<String>,
    /// Masked.
    pub param_value: Option<String>,
    pub has_param_value: bool,
    pub param_location: Option<String>,
    pub allow_override: bool,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&CredentialRecord> for CredentialView {
    fn from(r: &CredentialRecord) -> Self {
        let mask = |present: bool, hint: &Option<String>| {
            present.then(|| masked(hint.as_deref().unwrap_or("")))
        };
        CredentialView {
            id: r.id,
            name: r.name.clone(),
            header_name: r.header_name.clone(),
            header_value: mask(r.header_value.is_some(), &r.header_value_hint),
            has_header_value: r.header_value.is_some(),
            param_name: r.param_name.clone(),
            param_value: mask(r.param_value.is_some(), &r.param_value_hint),
            has_param_value: r.param_value.is_some(),
            param_location: r.param_location.clone(),
            allow_override: r.allow_override,
            tags: r.tags.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// The submitted shape without the write-only values (PATCH base).
fn as_input(r: &CredentialRecord) -> Value {
    json!({
        "name": r.name,
        "header_name": r.header_name,
        "param_name": r.param_name,
        "param_location": r.param_location,
        "allow_override": r.allow_override,
        "tags": r.tags.0,
    })
}

/// A secret field after a write: a new value, the stored one kept, or none.
enum SecretField {
    New(String),
    Keep(Vec<u8>, Option<String>),
    Absent,
}

impl SecretField {
    fn is_set(&self) -> bool {
        !matches!(self, SecretField::Absent)
    }
}

/// Decides a write-only field: a submitted value wins; an explicit `null` removes it; an
/// omitted field keeps what is stored (PATCH) or is absent (POST/PUT).
fn secret_field(
    submitted: Option<String>,
    explicitly_removed: bool,
    stored: Option<(&Vec<u8>, &Option<String>)>,
) -> SecretField {
    match (submitted, explicitly_removed, stored) {
        (Some(v), _, _) => SecretField::New(v),
        (None, false, Some((ct, hint))) => SecretField::Keep(ct.clone(), hint.clone()),
        _ => SecretField::Absent,
    }
}

fn seal(
    keyring: &Keyring,
    id: Uuid,
    field: &str,
    value: SecretField,
) -> (Option<Vec<u8>>, Option<String>) {
    let aad = credential_aad(id, field);
    match value {
        SecretField::New(plain) => (
            Some(keyring.encrypt(&aad, plain.as_bytes())),
            Some(mask_hint(&plain)),
        ),
        SecretField::Keep(ct, hint) => (Some(reseal(keyring, &aad, ct)), hint),
        SecretField::Absent => (None, None),
    }
}

/// A kept value goes back under the newest key: a write that overlaps `keys rotate-master`
/// (read before, written after the rotation) must not store a ciphertext under the key
/// being retired again. A value this node cannot decrypt is kept as it is.
fn reseal(keyring: &Keyring, aad: &[u8], ct: Vec<u8>) -> Vec<u8> {
    if envelope_key_id(&ct) == Some(keyring.newest_key_id()) {
        return ct;
    }
    match keyring.decrypt(aad, &ct) {
        Ok(plain) => keyring.encrypt(aad, &plain),
        Err(_) => ct,
    }
}

fn to_record(
    keyring: &Keyring,
    input: CredentialInput,
    header_value: SecretField,
    param_value: SecretField,
    existing: Option<&CredentialRecord>,
) -> Result<CredentialRecord> {
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    validate::tags(&mut problems, &input.tags);
    if let Some(h) = &input.header_name {
        problems.check("header_name", validate::header_name(h));
    }
    if let SecretField::New(v) = &header_value {
        problems.check("header_value", validate::header_value(v));
    }
    if let Some(p) = &input.param_name {
        problems.check(
            "param_name",
            validate::header_value(p).and_then(|_| {
                if p.chars().any(|c| c.is_whitespace() || "&=#?".contains(c)) {
                    Err("must not contain whitespace or '&', '=', '#', '?'".into())
                } else {
                    Ok(())
                }
            }),
        );
    }
    if let SecretField::New(v) = &param_value {
        problems.check("param_value", validate::header_value(v));
    }
    // Kong's mutually_required rules, naming each missing field.
    let header_set = [input.header_name.is_some(), header_value.is_set()];
    if header_set.iter().any(|s| *s) && !header_set.iter().all(|s| *s) {
        let message = "all or none of these fields must be set: 'header_name', 'header_value'";
        if input.header_name.is_none() {
            problems.rule("header_name", message);
        }
        if !header_value.is_set() {
            problems.rule("header_value", message);
        }
    }
    let param_set = [
        input.param_name.is_some(),
        param_value.is_set(),
        input.param_location.is_some(),
    ];
    if param_set.iter().any(|s| *s) && !param_set.iter().all(|s| *s) {
        let message = "all or none of these fields must be set: 'param_name', 'param_value', 'param_location'";
        for (field, set) in ["param_name", "param_value", "param_location"]
            .iter()
            .zip(param_set)
        {
            if !set {
                problems.rule(*field, message);
            }
        }
    }
    if !header_set.iter().any(|s| *s) && !param_set.iter().any(|s| *s) {
        problems.rule(
            "header_name",
            "a credential needs header_name/header_value or param_name/param_value/param_location",
        );
    }
    problems.finish()?;
    let id = existing.map_or_else(new_id, |e| e.id);
    let (header_ct, header_hint) = seal(keyring, id, "header_value", header_value);
    let (param_ct, param_hint) = seal(keyring, id, "param_value", param_value);
    let now = now();
    Ok(CredentialRecord {
        id,
        name: input.name,
        header_name: input.header_name,
        header_value: header_ct,
        param_name: input.param_name,
        param_value: param_ct,
        param_location: input.param_location.map(|l| l.as_str().to_string()),
        allow_override: input.allow_override,
        header_value_hint: header_hint,
        param_value_hint: param_hint,
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

pub struct Credentials;

impl Resource for Credentials {
    type Record = CredentialRecord;
    type View = CredentialView;
    const KIND: &'static str = "credential";
    const PATH: &'static str = "/credentials";

    fn id(record: &CredentialRecord) -> Uuid {
        record.id
    }

    fn view(_: &AppState, record: &CredentialRecord) -> CredentialView {
        CredentialView::from(record)
    }

    fn as_input(_: &AppState, record: &CredentialRecord) -> Value {
        as_input(record)
    }

    /// Write-only values come from the body; on PATCH an omitted one is kept and an
    /// explicit `null` removes it.
    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&CredentialRecord>,
        patch: Option<&Value>,
    ) -> Result<CredentialRecord> {
        let mut input: CredentialInput = parse_typed(submitted)?;
        let stored = |field: &str| {
            let record = existing.filter(|_| patch.is_some())?;
            match field {
                "header_value" => record
                    .header_value
                    .as_ref()
                    .map(|ct| (ct, &record.header_value_hint)),
                _ => record
                    .param_value
                    .as_ref()
                    .map(|ct| (ct, &record.param_value_hint)),
            }
        };
        let removed = |field: &str| patch.is_some_and(|p| p.get(field).is_some_and(Value::is_null));
        let header = secret_field(
            input.header_value.take(),
            removed("header_value"),
            stored("header_value"),
        );
        let param = secret_field(
            input.param_value.take(),
            removed("param_value"),
            stored("param_value"),
        );
        to_record(&state.keyring, input, header, param, existing)
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<CredentialRecord>> {
        state.store.get_credential(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<CredentialRecord>> {
        state.store.list_credentials(page).await
    }

    async fn insert(state: &AppState, record: &CredentialRecord) -> StoreResult<()> {
        state.store.insert_credential(record).await
    }

    async fn update(state: &AppState, record: &CredentialRecord) -> StoreResult<()> {
        state.store.update_credential(record).await
    }

    async fn delete(state: &AppState, record: &CredentialRecord) -> StoreResult<()> {
        state.store.delete_credential(record.id).await
    }
}

/// List credentials (secrets masked).
#[utoipa::path(tag = "credentials", params(PageQuery),
    responses((status = 200, body = Paged<CredentialView>), (status = 403, body = ErrorBody)))]
#[get("/credentials")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Credentials>(state, who, q).await
}

/// Create a credential; its secret values are encrypted and never shown again.
#[utoipa::path(tag = "credentials", request_body = CredentialInput,
    responses((status = 201, body = CredentialView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/credentials")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Credentials>(state, who, body).await
}

/// Get a credential (secrets masked).
#[utoipa::path(tag = "credentials", params(("credential" = String, Path, description = "id or name")),
    responses((status = 200, body = CredentialView), (status = 404, body = ErrorBody)))]
#[get("/credentials/{credential}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Credentials>(state, who, path).await
}

/// Partially update a credential; omitted secret values are kept, `null` removes one.
#[utoipa::path(tag = "credentials", params(("credential" = String, Path, description = "id or name")),
    request_body = Object,
    responses((status = 200, body = CredentialView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[patch("/credentials/{credential}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Credentials>(state, who, path, body).await
}

/// Create or replace a credential by name.
#[utoipa::path(tag = "credentials", params(("credential" = String, Path, description = "name")),
    request_body = CredentialInput,
    responses((status = 200, body = CredentialView), (status = 201, body = CredentialView), (status = 400, body = ErrorBody)))]
#[put("/credentials/{credential}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Credentials>(state, who, path, body).await
}

/// Delete a credential (409 naming the services that still use it).
#[utoipa::path(tag = "credentials", params(("credential" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[delete("/credentials/{credential}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Credentials>(state, who, path).await
}
