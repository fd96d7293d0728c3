//! The admin REST API (docs/behaviour.md, "Admin conventions"): JSON over HTTP on the admin
//! listener, one file per resource. Routes are registered through `utoipa-actix-web`, so
//! `/openapi.json` is generated from the same registrations that serve requests.

pub mod admins;
pub mod auth;
pub mod body;
pub mod credentials;
pub mod crud;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod policies;
pub mod routes;
pub mod services;
pub mod span;
pub mod status;
pub mod tenants;
pub mod ui;
pub mod usage;
pub mod validate;

use actix_web::HttpResponse;
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::Error;
use crate::store::Page;

/// `{"error":{"code","message","fields"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// validation_failed | not_found | conflict | unauthorized | forbidden | unavailable | rate_limited | payload_too_large | unsupported_media_type | internal
    pub code: String,
    pub message: String,
    /// Offending fields by dotted path, e.g. `options.azure_instance`; only on validation
    /// errors.
    #[schema(value_type = Object, required = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Value>,
}

/// One page of a collection: `next` is the URL of the following page, null on the last.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paged<T: ToSchema> {
    pub data: Vec<T>,
    pub next: Option<String>,
}

impl<T: ToSchema> Paged<T> {
    /// Builds a page from up to `limit + 1` fetched items (the extra one proves a next page).
    pub fn from_fetched(mut items: Vec<T>, page: Page, base_path: &str) -> Self {
        let has_more = items.len() as i64 > page.limit;
        items.truncate(page.limit as usize);
        let next = has_more.then(|| {
            format!(
                "{base_path}?limit={}&offset={}",
                page.limit,
                page.offset + page.limit
            )
        });
        Paged { data: items, next }
    }
}

/// The page to ask the store for: one more item than requested.
pub fn fetch_page(page: Page) -> Page {
    Page {
        limit: page.limit + 1,
        offset: page.offset,
    }
}

/// 201 with `Location`.
pub fn created<T: Serialize>(location: String, body: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header(("Location", location))
        .json(body)
}

/// RFC 7396 JSON merge patch: `null` removes, objects merge, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// PUT bodies may omit `name` (the URL names the object) but must not contradict it.
pub fn put_name(
    body: &mut serde_json::Map<String, Value>,
    field: &str,
    url_name: &str,
) -> Result<(), Error> {
    match body.get(field) {
        None => {
            body.insert(field.to_string(), Value::String(url_name.to_string()));
            Ok(())
        }
        Some(Value::String(n)) if n == url_name => Ok(()),
        Some(_) => Err(Error::invalid_field(
            field,
            format!("must equal the name in the URL ('{url_name}')"),
        )),
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Document-level metadata; paths and schemas come from the registered handlers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tollgate admin API",
        description = "Manage admins, tenants, API keys, credentials, services, routes and policies of the Tollgate AI gateway, and read its usage."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "auth", description = "Log in and inspect the caller"),
        (name = "admins", description = "Admin users (admin role only)"),
        (name = "tenants", description = "Customers or teams that call the proxy"),
        (name = "keys", description = "Tenant API keys"),
        (name = "credentials", description = "Encrypted upstream secrets (write-only fields)"),
        (name = "services", description = "LLM provider endpoints"),
        (name = "routes", description = "How clients reach a service"),
        (name = "policies", description = "Kong's companion AI plugins bound to a route, service or tenant"),
        (name = "usage", description = "Usage history: requests, tokens, cost, latency"),
        (name = "status", description = "Health and status"),
    )
)]
pub struct ApiDoc;

/// Registers every admin endpoint on a utoipa-aware app.
pub fn register<T>(app: utoipa_actix_web::UtoipaApp<T>) -> utoipa_actix_web::UtoipaApp<T>
where
    T: actix_web::dev::ServiceFactory<
            actix_web::dev::ServiceRequest,
            Config = (),
            Error = actix_web::Error,
            InitError = (),
        >,
{
    app.service(auth::login)
        .service(auth::whoami)
        .service(auth::logout_all)
        .service(status::status)
        .service(status::healthz)
        .service(status::readyz)
        .configure(admins::configure)
        .configure(tenants::configure)
        .configure(keys::configure)
        .configure(limits::configure)
        .configure(credentials::configure)
        .configure(services::configure)
        .configure(routes::configure)
        .configure(policies::configure)
        .configure(usage::configure)
}
