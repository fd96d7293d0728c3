//! `/policies`: Kong's companion AI plugins bound to one route, service or tenant
//! (docs/behaviour.md, "Policies"). Each type's `config` is typed by the policy vocabulary
//! (`vocab::policy`: Kong's field names, defaults and limits) and checked in full when
//! written, patterns included, so the snapshot never meets a policy it cannot compile.

use std::collections::HashSet;

use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery, parse_typed};
use crate::admin::crud::{self, EVERYTHING, Resource, page_in_memory};
use crate::admin::routes::check_model;
use crate::admin::services::to_json;
use crate::admin::validate::{self, Problems};
use crate::admin::{ErrorBody, Paged, fetch_page};
use crate::error::{Error, admin::Result};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::{Lookup, Page, PolicyRecord, StoreResult, new_id, now};
use crate::vocab::Role;
use crate::vocab::policy::{
    DECORATOR_MAX_CONTENT, DECORATOR_MAX_ITEMS, DecoratorMessage, GUARD_MAX_PATTERN_LEN,
    GUARD_MAX_PATTERNS, LlmFormat, PolicyConfig, PolicyType, PromptDecoratorConfig,
    PromptGuardConfig, PromptTemplateConfig, TransformerConfig,
};

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(get_one)
        .service(update)
        .service(upsert)
        .service(remove);
}

fn yes() -> bool {
    true
}

fn empty_object() -> Value {
    json!({})
}

/// Kong's message for a transformer whose instruction LLM is not a chat route.
const TRANSFORMER_ROUTE_TYPE: &str =
    "'config.llm.route_type' must be 'llm/v1/chat' for AI transformer plugins";

/// Only the response transformer has this field (Kong's request transformer lacks it).
const RESPONSE_ONLY_FIELD: &str = "parse_llm_response_json_instructions";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyInput {
    pub name: String,
    /// Kong's plugin name.
    #[serde(rename = "type")]
    #[schema(value_type = PolicyType)]
    pub kind: String,
    /// Default true; a disabled policy is kept but never runs.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Route id or name. Exactly one of `route`, `service`, `tenant` is set.
    pub route: Option<String>,
    /// Service id or name.
    pub service: Option<String>,
    /// Tenant id or name.
    pub tenant: Option<String>,
    /// The type's configuration, in Kong's field names.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub config: Value,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyView {
    pub id: Uuid,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(value_type = PolicyType)]
    pub kind: String,
    pub enabled: bool,
    /// Route name; exactly one of `route`, `service`, `tenant` is non-null.
    pub route: Option<String>,
    /// Service name.
    pub service: Option<String>,
    /// Tenant name.
    pub tenant: Option<String>,
    /// With Kong's defaults filled in; a transformer's `llm.service` by name.
    #[schema(value_type = Object)]
    pub config: Value,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn name_or_id(name: Option<&str>, id: Uuid) -> String {
    name.map_or_else(|| id.to_string(), str::to_string)
}

/// The stored config as shown: the instruction LLM's service by name.
fn shown_config(stored: &Value, snap: &Snapshot) -> Value {
    let mut config = stored.clone();
    if let Some(service) = config.pointer_mut("/llm/service")
        && let Some(id) = service.as_str().and_then(|s| Uuid::parse_str(s).ok())
    {
        *service = Value::String(name_or_id(snap.service_name(id), id));
    }
    config
}

impl PolicyView {
    fn new(r: &PolicyRecord, snap: &Snapshot) -> Self {
        PolicyView {
            id: r.id,
            name: r.name.clone(),
            kind: r.kind.clone(),
            enabled: r.enabled,
            route: r.route_id.map(|id| name_or_id(snap.route_name(id), id)),
            service: r.service_id.map(|id| name_or_id(snap.service_name(id), id)),
            tenant: r.tenant_id.map(|id| name_or_id(snap.tenant_name(id), id)),
            config: shown_config(&r.config.0, snap),
            tags: r.tags.0.clone(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

fn as_input(r: &PolicyRecord, snap: &Snapshot) -> Value {
    let v = PolicyView::new(r, snap);
    json!({
        "name": v.name, "type": v.kind, "enabled": v.enabled, "route": v.route,
        "service": v.service, "tenant": v.tenant, "config": v.config, "tags": v.tags,
    })
}

/// Whether a pattern compiles as the proxy will run it (`policy::check_pattern`, shared
/// with the snapshot's compile).
pub(crate) fn check_pattern(pattern: &str) -> std::result::Result<(), String> {
    crate::policy::check_pattern(pattern)
}

/// Types `config` as `T`, reporting a failure under `config.<path>`.
fn typed_config<T: DeserializeOwned>(problems: &mut Problems, config: Value) -> Option<T> {
    match parse_typed::<T>(config) {
        Ok(typed) => Some(typed),
        Err(e) => {
            if e.fields.is_empty() {
                problems.add("config", e.message);
            }
            for (field, message) in e.fields {
                let field = if field == "(body)" {
                    "config".to_string()
                } else {
                    format!("config.{field}")
                };
                problems.add(field, message);
            }
            None
        }
    }
}

fn check_body_size(problems: &mut Problems, size: u64) {
    if size == 0 {
        problems.add("config.max_request_body_size", "must be greater than 0");
    }
}

fn check_llm_format(problems: &mut Problems, format: LlmFormat) {
    if format != LlmFormat::Openai {
        problems.add(
            "config.llm_format",
            "only 'openai' is supported (Tollgate's surfaces speak OpenAI's format)",
        );
    }
}

fn check_template(problems: &mut Problems, c: &PromptTemplateConfig) {
    if c.templates.is_empty() {
        problems.add("config.templates", "must have at least one template");
    }
    let mut seen = HashSet::new();
    for (i, t) in c.templates.iter().enumerate() {
        if t.name.is_empty() {
            problems.add(format!("config.templates[{i}].name"), "must not be empty");
        } else if !seen.insert(t.name.as_str()) {
            problems.add(
                format!("config.templates[{i}].name"),
                format!("template '{}' is listed twice", t.name),
            );
        }
        if t.template.is_empty() {
            problems.add(
                format!("config.templates[{i}].template"),
                "must not be empty",
            );
        }
    }
    check_body_size(problems, c.max_request_body_size);
}

fn check_decorator(problems: &mut Problems, c: &PromptDecoratorConfig) {
    let lists: [(&str, &[DecoratorMessage]); 2] = [
        ("prepend", &c.prompts.prepend),
        ("append", &c.prompts.append),
    ];
    if lists.iter().all(|(_, items)| items.is_empty()) {
        problems.add(
            "config.prompts",
            "at least one of these fields must be non-empty: 'config.prompts.prepend', \
             'config.prompts.append'",
        );
    }
    for (field, items) in lists {
        if items.len() > DECORATOR_MAX_ITEMS {
            problems.add(
                format!("config.prompts.{field}"),
                format!("length must be at most {DECORATOR_MAX_ITEMS}"),
            );
        }
        for (i, m) in items.iter().enumerate() {
            let chars = m.content.chars().count();
            if !(1..=DECORATOR_MAX_CONTENT).contains(&chars) {
                problems.add(
                    format!("config.prompts.{field}[{i}].content"),
                    format!("length must be between 1 and {DECORATOR_MAX_CONTENT}"),
                );
            }
        }
    }
    check_body_size(problems, c.max_request_body_size);
    check_llm_format(problems, c.llm_format);
}

fn check_guard(problems: &mut Problems, c: &PromptGuardConfig) {
    let lists = [
        ("allow_patterns", &c.allow_patterns),
        ("deny_patterns", &c.deny_patterns),
    ];
    if lists.iter().all(|(_, items)| items.is_empty()) {
        problems.add(
            "config",
            "at least one of these fields must be non-empty: 'config.allow_patterns', \
             'config.deny_patterns'",
        );
    }
    for (name, items) in lists {
        if items.len() > GUARD_MAX_PATTERNS {
            problems.add(
                format!("config.{name}"),
                format!("length must be at most {GUARD_MAX_PATTERNS}"),
            );
        }
        for (i, p) in items.iter().enumerate() {
            let field = format!("config.{name}[{i}]");
            if !(1..=GUARD_MAX_PATTERN_LEN).contains(&p.chars().count()) {
                problems.add(
                    field,
                    format!("length must be between 1 and {GUARD_MAX_PATTERN_LEN}"),
                );
            } else {
                problems.check(&field, check_pattern(p));
            }
        }
    }
    if c.match_all_roles && c.allow_all_conversation_history {
        problems.add(
            "config.match_all_roles",
            "'match_all_roles' requires 'allow_all_conversation_history' to be false",
        );
    }
    check_body_size(problems, c.max_request_body_size);
    check_llm_format(problems, c.llm_format);
}

/// A transformer's fields other than its service (resolved by the caller).
fn check_transformer(problems: &mut Problems, c: &TransformerConfig) {
    if c.prompt.trim().is_empty() {
        problems.add("config.prompt", "must not be empty");
    }
    if let Some(p) = &c.transformation_extract_pattern {
        problems.check("config.transformation_extract_pattern", check_pattern(p));
    }
    if c.http_timeout == 0 {
        problems.add("config.http_timeout", "must be greater than 0");
    }
    if c.llm.model.name.is_none() {
        problems.add("config.llm.model.name", "is required");
    }
    check_model(problems, "config.llm.model", &c.llm.model);
    check_body_size(problems, c.max_request_body_size);
}

/// Types and checks `config` for `kind`; `None` when it has problems (all added).
fn check_config(
    problems: &mut Problems,
    kind: PolicyType,
    mut config: Value,
) -> Option<PolicyConfig> {
    let transformer = matches!(
        kind,
        PolicyType::RequestTransformer | PolicyType::ResponseTransformer
    );
    if transformer {
        // Kong's message for any other route type, even one serde would not know.
        if let Some(route_type) = config.pointer_mut("/llm/route_type")
            && route_type.as_str().is_some_and(|t| t != "llm/v1/chat")
        {
            problems.add("config.llm.route_type", TRANSFORMER_ROUTE_TYPE);
            *route_type = Value::String("llm/v1/chat".into());
        }
        if kind == PolicyType::RequestTransformer && config.get(RESPONSE_ONLY_FIELD).is_some() {
            problems.add(
                format!("config.{RESPONSE_ONLY_FIELD}"),
                format!("unknown field '{RESPONSE_ONLY_FIELD}'"),
            );
        }
    }
    let typed = match kind {
        PolicyType::PromptTemplate => {
            let c = typed_config(problems, config)?;
            check_template(problems, &c);
            PolicyConfig::PromptTemplate(c)
        }
        PolicyType::PromptDecorator => {
            let c = typed_config(problems, config)?;
            check_decorator(problems, &c);
            PolicyConfig::PromptDecorator(c)
        }
        PolicyType::PromptGuard => {
            let c = typed_config(problems, config)?;
            check_guard(problems, &c);
            PolicyConfig::PromptGuard(c)
        }
        PolicyType::RequestTransformer => {
            let c = typed_config(problems, config)?;
            check_transformer(problems, &c);
            PolicyConfig::RequestTransformer(c)
        }
        PolicyType::ResponseTransformer => {
            let c = typed_config(problems, config)?;
            check_transformer(problems, &c);
            PolicyConfig::ResponseTransformer(c)
        }
    };
    Some(typed)
}

/// The config as stored: Kong's defaults filled in, the instruction LLM's service by id.
fn stored_config(config: &PolicyConfig, llm_service: Option<Uuid>) -> Value {
    let mut value = match config {
        PolicyConfig::RequestTransformer(c) | PolicyConfig::ResponseTransformer(c) => to_json(c),
        PolicyConfig::PromptTemplate(c) => to_json(c),
        PolicyConfig::PromptDecorator(c) => to_json(c),
        PolicyConfig::PromptGuard(c) => to_json(c),
    };
    if let Some(object) = value.as_object_mut() {
        if matches!(config, PolicyConfig::RequestTransformer(_)) {
            object.remove(RESPONSE_ONLY_FIELD);
        }
        if let (Some(id), Some(llm)) = (llm_service, object.get_mut("llm")) {
            llm["service"] = Value::String(id.to_string());
        }
    }
    value
}

async fn to_record(
    state: &AppState,
    input: PolicyInput,
    existing: Option<&PolicyRecord>,
) -> Result<PolicyRecord> {
    let mut problems = Problems::default();
    problems.check("name", validate::object_name(&input.name));
    validate::tags(&mut problems, &input.tags);
    let kind = PolicyType::parse(&input.kind);
    if kind.is_none() {
        let known: Vec<&str> = PolicyType::IN_ORDER.iter().map(|t| t.as_str()).collect();
        problems.add(
            "type",
            format!(
                "unknown policy type '{}': expected one of {}",
                input.kind,
                known.join(", ")
            ),
        );
    }

    // Exactly one binding, and it must exist.
    let bindings = [
        ("route", &input.route),
        ("service", &input.service),
        ("tenant", &input.tenant),
    ];
    let set: Vec<&str> = bindings
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| *f)
        .collect();
    match set.len() {
        0 => {
            for (field, _) in bindings {
                problems.rule(field, "exactly one of route, service or tenant must be set");
            }
        }
        1 => {}
        _ => {
            for field in &set {
                problems.rule(
                    *field,
                    format!(
                        "exactly one of route, service or tenant may be set; got {}",
                        set.join(", ")
                    ),
                );
            }
        }
    }
    let mut route_id = None;
    let mut service_id = None;
    let mut tenant_id = None;
    // The tenant the bound object belongs to, if any: a private service may serve as the
    // instruction LLM only of policies that apply to its own tenant.
    let mut owner: Option<Uuid> = None;
    if let Some(r) = &input.route {
        match state.store.get_route(&Lookup::parse(r)).await? {
            Some(found) => {
                route_id = Some(found.id);
                owner = state
                    .store
                    .get_service(&Lookup::Id(found.service_id))
                    .await?
                    .and_then(|s| s.tenant_id);
            }
            None => problems.missing("route", format!("route '{r}' does not exist")),
        }
    }
    if let Some(s) = &input.service {
        match state.store.get_service(&Lookup::parse(s)).await? {
            Some(found) => {
                service_id = Some(found.id);
                owner = found.tenant_id;
            }
            None => problems.missing("service", format!("service '{s}' does not exist")),
        }
    }
    if let Some(t) = &input.tenant {
        match state.store.get_tenant(&Lookup::parse(t)).await? {
            Some(found) => {
                tenant_id = Some(found.id);
                owner = Some(found.id);
            }
            None => problems.missing("tenant", format!("tenant '{t}' does not exist")),
        }
    }

    // The document leaves a configuration's shape open (it depends on the type): its
    // problems are rule problems (422).
    let mut config_problems = Problems::default();
    let config = kind.and_then(|k| check_config(&mut config_problems, k, input.config));
    problems.absorb_as_rules(config_problems);
    let mut llm_service = None;
    if let Some(t) = config.as_ref().and_then(PolicyConfig::transformer) {
        let name = &t.llm.service;
        match state.store.get_service(&Lookup::parse(name)).await? {
            Some(found) if found.tenant_id.is_none_or(|t| Some(t) == owner) => {
                llm_service = Some(found.id);
            }
            _ => problems.missing(
                "config.llm.service",
                format!(
                    "service '{name}' does not exist or is private to a tenant this policy \
                     does not apply to"
                ),
            ),
        }
    }
    problems.finish()?;
    let (Some(kind), Some(config)) = (kind, config) else {
        return Err(Error::invalid_field("config", "is invalid").into());
    };
    let now = now();
    Ok(PolicyRecord {
        id: existing.map_or_else(new_id, |e| e.id),
        name: input.name,
        kind: kind.as_str().to_string(),
        enabled: input.enabled,
        config: Json(stored_config(&config, llm_service)),
        route_id,
        service_id,
        tenant_id,
        tags: Json(input.tags),
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
    })
}

/// A tenant_admin sees and manages only the policies bound to its own tenant.
fn visible_to(who: &Principal, policy: &PolicyRecord) -> bool {
    match who.role {
        Role::Admin | Role::Viewer => true,
        Role::TenantAdmin => who.tenant_id.is_some() && policy.tenant_id == who.tenant_id,
    }
}

pub struct Policies;

impl Resource for Policies {
    type Record = PolicyRecord;
    type View = PolicyView;
    const KIND: &'static str = "policy";
    const PATH: &'static str = "/policies";

    fn id(record: &PolicyRecord) -> Uuid {
        record.id
    }

    fn view(state: &AppState, record: &PolicyRecord) -> PolicyView {
        PolicyView::new(record, &state.snapshot.load())
    }

    fn as_input(state: &AppState, record: &PolicyRecord) -> Value {
        as_input(record, &state.snapshot.load())
    }

    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&PolicyRecord>,
        _: Option<&Value>,
    ) -> Result<PolicyRecord> {
        to_record(state, parse_typed(submitted)?, existing).await
    }

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<PolicyRecord>> {
        state.store.get_policy(key).await
    }

    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<PolicyRecord>> {
        state.store.list_policies(page).await
    }

    async fn insert(state: &AppState, record: &PolicyRecord) -> StoreResult<()> {
        state.store.insert_policy(record).await
    }

    async fn update(state: &AppState, record: &PolicyRecord) -> StoreResult<()> {
        state.store.update_policy(record).await
    }

    async fn delete(state: &AppState, record: &PolicyRecord) -> StoreResult<()> {
        state.store.delete_policy(record.id).await
    }

    /// Every role reads policies; a tenant_admin only its own tenant's.
    fn can_read(_: &Principal) -> Result<()> {
        Ok(())
    }

    /// Admins, and tenant_admins for their own tenant's policies (`check_submission`).
    fn can_write(who: &Principal) -> Result<()> {
        match who.role {
            Role::Admin | Role::TenantAdmin => Ok(()),
            Role::Viewer => Err(Error::forbidden("the viewer role is read-only").into()),
        }
    }

    /// A tenant_admin may bind policies to its own tenant only: a route or service binding
    /// is 403, another tenant 404 (as for its API keys).
    fn check_submission(who: &Principal, submitted: &Value) -> Result<()> {
        if who.role != Role::TenantAdmin {
            return Ok(());
        }
        let set = |field: &str| submitted.get(field).is_some_and(|v| !v.is_null());
        if set("route") || set("service") {
            return Err(Error::forbidden(
                "a tenant_admin manages only policies bound to its own tenant",
            )
            .into());
        }
        if let Some(tenant) = submitted.get("tenant").and_then(Value::as_str) {
            let own_name = who.tenant.as_deref() == Some(tenant);
            let own_id = who.tenant_id.is_some_and(|id| id.to_string() == tenant);
            if !own_name && !own_id {
                return Err(Error::not_found(format!("tenant '{tenant}'")).into());
            }
        }
        Ok(())
    }

    fn visible(_: &AppState, who: &Principal, record: &PolicyRecord) -> bool {
        visible_to(who, record)
    }

    async fn list_for(state: &AppState, who: &Principal, page: Page) -> Result<Vec<PolicyRecord>> {
        if who.role != Role::TenantAdmin {
            return Ok(state.store.list_policies(fetch_page(page)).await?);
        }
        // Filtered views cannot page in SQL; the policy count is configuration-sized.
        let all = state.store.list_policies(EVERYTHING).await?;
        Ok(page_in_memory(
            all.into_iter().filter(|p| visible_to(who, p)),
            page,
        ))
    }
}

/// List policies (a tenant_admin sees its own tenant's).
#[utoipa::path(tag = "policies", params(PageQuery),
    responses((status = 200, body = Paged<PolicyView>), (status = 401, body = ErrorBody)))]
#[get("/policies")]
async fn list(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    crud::list::<Policies>(state, who, q).await
}

/// Create a policy.
#[utoipa::path(tag = "policies", request_body = PolicyInput,
    responses((status = 201, body = PolicyView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/policies")]
async fn create(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::create::<Policies>(state, who, body).await
}

/// Get a policy by id or name.
#[utoipa::path(tag = "policies", params(("policy" = String, Path, description = "id or name")),
    responses((status = 200, body = PolicyView), (status = 404, body = ErrorBody)))]
#[get("/policies/{policy}")]
async fn get_one(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::get_one::<Policies>(state, who, path).await
}

/// Partially update a policy (JSON merge patch).
#[utoipa::path(tag = "policies", params(("policy" = String, Path, description = "id or name")),
    request_body = Object,
    responses((status = 200, body = PolicyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[patch("/policies/{policy}")]
async fn update(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::update::<Policies>(state, who, path, body).await
}

/// Create or replace a policy by name.
#[utoipa::path(tag = "policies", params(("policy" = String, Path, description = "name")),
    request_body = PolicyInput,
    responses((status = 200, body = PolicyView), (status = 201, body = PolicyView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[put("/policies/{policy}")]
async fn upsert(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    crud::upsert::<Policies>(state, who, path, body).await
}

/// Delete a policy.
#[utoipa::path(tag = "policies", params(("policy" = String, Path, description = "id or name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
#[delete("/policies/{policy}")]
async fn remove(
    state: web::Data<AppState>,
    who: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse> {
    crud::remove::<Policies>(state, who, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_are_rust_regex_and_linear_time() {
        assert!(check_pattern(r"(?i)ignore (all|previous) instructions").is_ok());
        let lookahead = check_pattern(r"foo(?=bar)").unwrap_err();
        assert!(lookahead.contains("look-around"), "{lookahead}");
        assert!(!lookahead.contains('\n'), "{lookahead}");
        assert!(check_pattern(r"(a)\1").is_err());
        assert!(check_pattern("(unclosed").is_err());
    }

    #[test]
    fn stored_config_fills_defaults_and_keeps_kong_names() {
        let mut problems = Problems::default();
        let c = check_config(
            &mut problems,
            PolicyType::PromptGuard,
            json!({"deny_patterns": ["x"]}),
        )
        .unwrap();
        problems.finish().unwrap();
        let stored = stored_config(&c, None);
        assert_eq!(stored["allow_all_conversation_history"], json!(false));
        assert_eq!(stored["max_request_body_size"], json!(8192));
        assert_eq!(stored["llm_format"], json!("openai"));
    }
}
