//! The HTTP mechanics every admin collection shares (docs/behaviour.md, "Admin conventions"):
//! pagination, POST 201 + `Location`, GET by id or name, PATCH as a JSON merge patch validated like
//! a full submission, PUT upsert by name (or replace by id), DELETE 204, and the snapshot
//! refresh after each write. A
//! resource file supplies only what differs, by implementing [`Resource`], and keeps its own thin,
//! OpenAPI-annotated handlers.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::admin::auth::Principal;
use crate::admin::body::{JsonObject, PageQuery};
use crate::admin::{Paged, created, fetch_page, merge_patch, put_name};
use crate::error::{Error, admin::Result};
use crate::state::AppState;
use crate::store::{Lookup, Page, StoreResult};

/// One admin collection. Async methods run on the actix worker; nothing here needs `Send`.
#[allow(async_fn_in_trait)]
pub trait Resource {
    type Record;
    type View: Serialize + utoipa::ToSchema;
    /// For messages: "service".
    const KIND: &'static str;
    /// The collection's path: "/services".
    const PATH: &'static str;
    /// The body field holding the object's name (`username` for admin users).
    const NAME_FIELD: &'static str = "name";
    /// Whether writes change the proxy's configuration (and so the snapshot).
    const CONFIG: bool = true;

    fn id(record: &Self::Record) -> Uuid;
    fn view(state: &AppState, record: &Self::Record) -> Self::View;
    /// The view a reader gets; scoped readers may see less (a tenant_admin never sees
    /// other tenants' names in a route).
    fn view_for(state: &AppState, _who: &Principal, record: &Self::Record) -> Self::View {
        Self::view(state, record)
    }
    /// The submitted shape of a stored record (without write-only values): the base a
    /// PATCH is merged into.
    fn as_input(state: &AppState, record: &Self::Record) -> Value;
    /// Types and validates a submission, resolving references, and builds the record to
    /// store. `patch` is the raw PATCH body (write-only fields need to tell an omitted
    /// field from an explicit `null`).
    async fn to_record(
        state: &AppState,
        submitted: Value,
        existing: Option<&Self::Record>,
        patch: Option<&Value>,
    ) -> Result<Self::Record>;

    async fn fetch(state: &AppState, key: &Lookup) -> StoreResult<Option<Self::Record>>;
    async fn fetch_page(state: &AppState, page: Page) -> StoreResult<Vec<Self::Record>>;
    async fn insert(state: &AppState, record: &Self::Record) -> StoreResult<()>;
    async fn update(state: &AppState, record: &Self::Record) -> StoreResult<()>;
    async fn delete(state: &AppState, record: &Self::Record) -> StoreResult<()>;

    /// May this principal read the collection at all (403 otherwise)? Scoped readers
    /// (tenant_admin) are then limited by `visible` and `list_for`.
    fn can_read(who: &Principal) -> Result<()> {
        who.require_global_read()
    }

    fn can_write(who: &Principal) -> Result<()> {
        who.require_admin()
    }

    /// May this principal submit this body (a PATCH: merged into the stored object)?
    /// Checked after `can_write` and before anything is looked up, so scoped writers (a
    /// tenant_admin) learn nothing about objects outside their scope from the answer.
    fn check_submission(_who: &Principal, _submitted: &Value) -> Result<()> {
        Ok(())
    }

    /// Whether this principal may see this object at all (else 404, not 403).
    fn visible(_state: &AppState, _who: &Principal, _record: &Self::Record) -> bool {
        true
    }

    /// The page a principal sees. The default pages in SQL; scoped views override it.
    async fn list_for(state: &AppState, who: &Principal, page: Page) -> Result<Vec<Self::Record>> {
        Self::can_read(who)?;
        Ok(Self::fetch_page(state, fetch_page(page)).await?)
    }

    /// Checks a write against the rest of the collection (`None` = delete), and serialises
    /// such writes when the check and the write must not interleave.
    async fn guard_write(
        _state: &AppState,
        _before: Option<&Self::Record>,
        _after: Option<&Self::Record>,
    ) -> Result<Option<tokio::sync::MutexGuard<'static, ()>>> {
        Ok(None)
    }
}

/// Filters a fully loaded collection for a scoped principal, keeping pagination semantics
/// (one extra item proves a next page).
pub fn page_in_memory<T>(items: impl IntoIterator<Item = T>, page: Page) -> Vec<T> {
    let skip = usize::try_from(page.offset).unwrap_or(usize::MAX);
    let take = usize::try_from(page.limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    items.into_iter().skip(skip).take(take).collect()
}

/// The whole collection, for scoped views filtered in memory (configuration-sized).
pub const EVERYTHING: Page = Page {
    limit: i64::MAX,
    offset: 0,
};

async fn find<R: Resource>(state: &AppState, who: &Principal, key: &str) -> Result<R::Record> {
    match R::fetch(state, &Lookup::parse(key)).await? {
        Some(r) if R::visible(state, who, &r) => Ok(r),
        _ => Err(Error::not_found(format!("{} '{key}'", R::KIND)).into()),
    }
}

async fn written<R: Resource>(state: &AppState) {
    if R::CONFIG {
        state.config_changed().await;
    }
}

pub async fn list<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse> {
    let page = query.page()?;
    let records = R::list_for(&state, &who, page).await?;
    let views = records
        .iter()
        .map(|r| R::view_for(&state, &who, r))
        .collect();
    Ok(HttpResponse::Ok().json(Paged::from_fetched(views, page, R::PATH)))
}

pub async fn create<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    body: JsonObject,
) -> Result<HttpResponse> {
    R::can_write(&who)?;
    let submitted = Value::Object(body.0);
    R::check_submission(&who, &submitted)?;
    let record = R::to_record(&state, submitted, None, None).await?;
    let _serialised = R::guard_write(&state, None, Some(&record)).await?;
    R::insert(&state, &record).await?;
    written::<R>(&state).await;
    let location = format!("{}/{}", R::PATH, R::id(&record));
    Ok(created(location, &R::view(&state, &record)))
}

pub async fn get_one<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    key: web::Path<String>,
) -> Result<HttpResponse> {
    R::can_read(&who)?;
    let record = find::<R>(&state, &who, &key).await?;
    Ok(HttpResponse::Ok().json(R::view_for(&state, &who, &record)))
}

pub async fn update<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    key: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    R::can_write(&who)?;
    let existing = find::<R>(&state, &who, &key).await?;
    let patch = Value::Object(body.0);
    let mut merged = R::as_input(&state, &existing);
    merge_patch(&mut merged, &patch);
    R::check_submission(&who, &merged)?;
    let record = R::to_record(&state, merged, Some(&existing), Some(&patch)).await?;
    let _serialised = R::guard_write(&state, Some(&existing), Some(&record)).await?;
    R::update(&state, &record).await?;
    written::<R>(&state).await;
    Ok(HttpResponse::Ok().json(R::view(&state, &record)))
}

pub async fn upsert<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    name: web::Path<String>,
    body: JsonObject,
) -> Result<HttpResponse> {
    R::can_write(&who)?;
    // An id addresses an existing object, as for GET, PATCH and DELETE; only a name can
    // create one.
    let name = if Uuid::parse_str(&name).is_ok() {
        let existing = find::<R>(&state, &who, &name).await?;
        R::as_input(&state, &existing)[R::NAME_FIELD]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::internal(format!("a stored {} has no name", R::KIND)))?
    } else {
        name.into_inner()
    };
    let mut body = body.0;
    put_name(&mut body, R::NAME_FIELD, &name)?;
    let existing = R::fetch(&state, &Lookup::Name(name.to_string())).await?;
    if existing
        .as_ref()
        .is_some_and(|e| !R::visible(&state, &who, e))
    {
        return Err(Error::not_found(format!("{} '{name}'", R::KIND)).into());
    }
    let submitted = Value::Object(body);
    R::check_submission(&who, &submitted)?;
    let record = R::to_record(&state, submitted, existing.as_ref(), None).await?;
    let _serialised = R::guard_write(&state, existing.as_ref(), Some(&record)).await?;
    if existing.is_some() {
        R::update(&state, &record).await?;
    } else {
        R::insert(&state, &record).await?;
    }
    written::<R>(&state).await;
    let view = R::view(&state, &record);
    Ok(match existing {
        Some(_) => HttpResponse::Ok().json(view),
        None => created(format!("{}/{}", R::PATH, R::id(&record)), &view),
    })
}

pub async fn remove<R: Resource>(
    state: web::Data<AppState>,
    who: Principal,
    key: web::Path<String>,
) -> Result<HttpResponse> {
    R::can_write(&who)?;
    let existing = find::<R>(&state, &who, &key).await?;
    let _serialised = R::guard_write(&state, Some(&existing), None).await?;
    R::delete(&state, &existing).await?;
    written::<R>(&state).await;
    Ok(HttpResponse::NoContent().finish())
}
