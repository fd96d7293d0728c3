//! `GET /usage` (docs/behaviour.md, "Admin resources"): usage history, re-bucketed from the stored
//! per-minute rows (minute × tenant × key × route × model × source, written by the metrics
//! aggregator).
//!
//! Decided here (the contract leaves it open):
//! - `to` defaults to now and `from` to `to` − 24 h; `from` must be before `to`. The
//!   range is capped at 31 days with `bucket=minute` and 400 days otherwise (every stored
//!   minute row of the range is read and merged in memory).
//! - `bucket` defaults to `hour`. Buckets are aligned in UTC (whole minutes, hours, UTC
//!   days); the first one may start before `from` and then holds only the minutes from
//!   `from` on. Buckets without stored rows are omitted.
//! - `group_by` defaults to `tenant`; an empty value groups by nothing (one total per
//!   bucket). Fields not grouped by are absent from each item.
//! - Percentiles come from the merged latency histogram with linear interpolation inside
//!   the bucket that holds the rank (as Prometheus' `histogram_quantile`); the first
//!   bucket spans 0 ms to its bound, and a rank in the overflow bucket reports the last
//!   bound. Null when the histogram is empty.
//! - `tenant=` (name or id) filters. A tenant_admin always sees only its own tenant and
//!   gets 404 for another one, as on the keys endpoints; admin and viewer may also name a
//!   deleted tenant by id (usage outlives it).
//! - `tenant` and `route` are shown by name, or by id once deleted; `key_id` is the id.
//! - `group_by=source` keeps the proxied requests (`proxy`) apart from the transformer
//!   policies' instruction calls (their plugin names); without it a group sums both.
//! - `rejected` counts the requests the gateway refused before the upstream call; they
//!   are also counted in `requests` and `errors` (they were answered, with a 429).

use std::collections::BTreeMap;

use actix_web::{HttpResponse, get, web};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;
use uuid::Uuid;

use crate::admin::ErrorBody;
use crate::admin::auth::Principal;
use crate::admin::tenants::visible_tenant;
use crate::admin::validate::Problems;
use crate::error::{Error, admin::Result};
use crate::state::AppState;
use crate::store::{LATENCY_BUCKETS, LATENCY_BUCKETS_MS, UsageQuery, UsageRow};
use crate::vocab::Role;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(usage);
}

const DEFAULT_RANGE: TimeDelta = TimeDelta::hours(24);
const MAX_RANGE_MINUTE_BUCKETS: TimeDelta = TimeDelta::days(31);
const MAX_RANGE: TimeDelta = TimeDelta::days(400);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Start of the range (inclusive), RFC 3339. Default: `to` minus 24 hours.
    #[param(format = DateTime, example = "2026-01-01T00:00:00Z")]
    pub from: Option<String>,
    /// End of the range (exclusive), RFC 3339. Default: now.
    #[param(format = DateTime, example = "2026-01-02T00:00:00Z")]
    pub to: Option<String>,
    /// Bucket size: `minute`, `hour` (default) or `day`, aligned in UTC. The range may span
    /// at most 31 days with `minute`, 400 days otherwise.
    #[param(pattern = "^(minute|hour|day)$", example = "hour")]
    pub bucket: Option<String>,
    /// Comma-separated grouping fields among `tenant`, `route`, `model`, `key`, `source`
    /// (default `tenant`; empty = one total per bucket).
    #[param(example = "tenant,model")]
    pub group_by: Option<String>,
    /// Only this tenant (name or id). A tenant_admin sees only its own tenant anyway.
    pub tenant: Option<String>,
}

/// One bucket × group. Grouping fields are absent when not grouped by.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageItem {
    pub bucket_start: DateTime<Utc>,
    /// Tenant name (its id once deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Route name (its id once deleted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The API key's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<Uuid>,
    /// Whose usage: `proxy` for the proxied requests, or the plugin name of the transformer
    /// policy whose instruction calls these are (`ai-request-transformer`,
    /// `ai-response-transformer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Every request, refused ones included.
    pub requests: i64,
    /// Requests answered with an error (refused ones included).
    pub errors: i64,
    /// Requests the gateway refused before the upstream call (a limit or budget).
    pub rejected: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// USD.
    pub cost: f64,
    /// Estimated from the latency histogram; null without requests.
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// Ordered by `bucket_start`, then the grouping fields.
    pub data: Vec<UsageItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn parse(s: &str) -> Option<Bucket> {
        match s {
            "minute" => Some(Bucket::Minute),
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }

    fn width(self) -> TimeDelta {
        match self {
            Bucket::Minute => TimeDelta::minutes(1),
            Bucket::Hour => TimeDelta::hours(1),
            Bucket::Day => TimeDelta::days(1),
        }
    }

    fn max_range(self) -> TimeDelta {
        match self {
            Bucket::Minute => MAX_RANGE_MINUTE_BUCKETS,
            Bucket::Hour | Bucket::Day => MAX_RANGE,
        }
    }

    /// Truncation counts from the Unix epoch, so hours and days align in UTC.
    fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        t.duration_trunc(self.width()).unwrap_or(t)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct GroupBy {
    tenant: bool,
    route: bool,
    model: bool,
    key: bool,
    source: bool,
}

impl GroupBy {
    fn parse(s: &str) -> std::result::Result<GroupBy, String> {
        let mut g = GroupBy::default();
        for field in s.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            match field {
                "tenant" => g.tenant = true,
                "route" => g.route = true,
                "model" => g.model = true,
                "key" => g.key = true,
                "source" => g.source = true,
                other => {
                    return Err(format!(
                        "unknown field '{other}': expected a comma-separated list of tenant, route, model, key, source"
                    ));
                }
            }
        }
        Ok(g)
    }
}

/// RFC 3339. A `+` offset sent unencoded in a query string arrives as a space: accepted.
fn parse_time(value: &str) -> std::result::Result<DateTime<Utc>, String> {
    let parsed = DateTime::parse_from_rfc3339(value).or_else(|e| match value.rfind(' ') {
        Some(i) if i > 10 => {
            DateTime::parse_from_rfc3339(&format!("{}+{}", &value[..i], &value[i + 1..]))
                .map_err(|_| e)
        }
        _ => Err(e),
    });
    parsed
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z ({e})"))
}

struct Request {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    group_by: GroupBy,
}

fn validate(p: &UsageParams, now: DateTime<Utc>) -> Result<Request, Error> {
    let mut problems = Problems::default();
    let mut time = |field: &str, value: &Option<String>| match value.as_deref().map(parse_time) {
        Some(Ok(t)) => Some(Some(t)),
        Some(Err(message)) => {
            problems.add(field, message);
            None
        }
        None => Some(None),
    };
    let from = time("from", &p.from);
    let to = time("to", &p.to);
    let bucket = match p.bucket.as_deref() {
        None => Some(Bucket::Hour),
        Some(b) => Bucket::parse(b).or_else(|| {
            problems.add("bucket", "must be one of minute, hour, day");
            None
        }),
    };
    let group_by = match p.group_by.as_deref().map(GroupBy::parse) {
        None => Some(GroupBy {
            tenant: true,
            ..GroupBy::default()
        }),
        Some(Ok(g)) => Some(g),
        Some(Err(message)) => {
            problems.add("group_by", message);
            None
        }
    };
    let (Some(from), Some(to), Some(bucket), Some(group_by)) = (from, to, bucket, group_by) else {
        problems.finish()?;
        return Err(Error::internal(
            "usage parameters rejected without a reason",
        ));
    };
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - DEFAULT_RANGE);
    if from >= to {
        problems.add("from", "must be before to");
    } else if to - from > bucket.max_range() {
        problems.add(
            "from",
            format!(
                "the range may span at most {} days with bucket={}",
                bucket.max_range().num_days(),
                p.bucket.as_deref().unwrap_or("hour")
            ),
        );
    }
    problems.finish()?;
    Ok(Request {
        from,
        to,
        bucket,
        group_by,
    })
}

/// The tenant whose rows may be read: `None` = every tenant.
async fn tenant_filter(
    state: &AppState,
    who: &Principal,
    named: Option<&str>,
) -> Result<Option<Uuid>> {
    let wanted = match (who.role, named) {
        (_, Some(name)) => name,
        (Role::TenantAdmin, None) => {
            return Ok(Some(
                who.tenant_id.ok_or_else(|| Error::not_found("tenant"))?,
            ));
        }
        (Role::Admin | Role::Viewer, None) => return Ok(None),
    };
    match visible_tenant(state, who, wanted).await {
        Ok(tenant) => Ok(Some(tenant.id)),
        Err(e) => match (who.role, Uuid::parse_str(wanted)) {
            // A deleted tenant's history stays readable by id.
            (Role::Admin | Role::Viewer, Ok(id)) if e.0.status.as_u16() == 404 => Ok(Some(id)),
            _ => Err(e),
        },
    }
}

/// Sums of one bucket × group.
#[derive(Debug, Default)]
struct Totals {
    requests: i64,
    errors: i64,
    rejected: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cost: f64,
    histogram: [i64; LATENCY_BUCKETS],
}

impl Totals {
    fn add(&mut self, r: &UsageRow) {
        self.requests = self.requests.saturating_add(r.requests);
        self.errors = self.errors.saturating_add(r.errors);
        self.rejected = self.rejected.saturating_add(r.rejected);
        self.prompt_tokens = self.prompt_tokens.saturating_add(r.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(r.completion_tokens);
        self.cost += r.cost;
        for (sum, count) in self.histogram.iter_mut().zip(r.latency_histogram) {
            *sum = sum.saturating_add(count);
        }
    }
}

/// The `q`-quantile (0..=1) of a latency histogram, interpolated linearly inside the
/// bucket holding the rank; the overflow bucket reports the last bound.
pub fn latency_percentile(histogram: &[i64; LATENCY_BUCKETS], q: f64) -> Option<f64> {
    let counts = histogram.map(|c| c.max(0));
    let total = counts.iter().fold(0i64, |a, &c| a.saturating_add(c));
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let mut below = 0i64;
    let mut lower = 0.0;
    for (count, upper) in counts.iter().zip(LATENCY_BUCKETS_MS) {
        if *count > 0 && (below + count) as f64 >= rank {
            let inside = ((rank - below as f64) / *count as f64).max(0.0);
            return Some(lower + (upper - lower) * inside);
        }
        below += count;
        lower = upper;
    }
    LATENCY_BUCKETS_MS.last().copied()
}

type GroupKey = (
    DateTime<Utc>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
    Option<Uuid>,
    Option<String>,
);

/// Merges minute rows into `bucket` × the grouping fields; names are resolved later.
fn rebucket(rows: &[UsageRow], bucket: Bucket, g: GroupBy) -> BTreeMap<GroupKey, Totals> {
    let mut groups: BTreeMap<GroupKey, Totals> = BTreeMap::new();
    for r in rows {
        let key = (
            bucket.start_of(r.bucket_start),
            g.tenant.then_some(r.tenant_id),
            g.route.then_some(r.route_id),
            g.model.then(|| r.model.clone()),
            g.key.then_some(r.key_id),
            g.source.then(|| r.source.clone()),
        );
        groups.entry(key).or_default().add(r);
    }
    groups
}

/// Usage per time bucket, grouped by tenant, route, model, key and/or source.
#[utoipa::path(tag = "usage", params(UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/usage")]
async fn usage(
    state: web::Data<AppState>,
    who: Principal,
    q: web::Query<UsageParams>,
) -> Result<HttpResponse> {
    let req = validate(&q, Utc::now())?;
    let tenant_id = tenant_filter(&state, &who, q.tenant.as_deref()).await?;
    let rows = state
        .store
        .query_usage(&UsageQuery {
            from: req.from,
            to: req.to,
            tenant_id,
        })
        .await?;
    let snap = state.snapshot.load();
    let name = |found: Option<&str>, id: Uuid| found.map_or_else(|| id.to_string(), str::to_owned);
    let mut data: Vec<UsageItem> = rebucket(&rows, req.bucket, req.group_by)
        .into_iter()
        .map(
            |((bucket_start, tenant, route, model, key_id, source), t)| UsageItem {
                bucket_start,
                tenant: tenant.map(|id| name(snap.tenant_name(id), id)),
                route: route.map(|id| name(snap.route_name(id), id)),
                model,
                key_id,
                source,
                requests: t.requests,
                errors: t.errors,
                rejected: t.rejected,
                prompt_tokens: t.prompt_tokens,
                completion_tokens: t.completion_tokens,
                total_tokens: t.prompt_tokens.saturating_add(t.completion_tokens),
                cost: t.cost,
                latency_ms_p50: latency_percentile(&t.histogram, 0.50),
                latency_ms_p95: latency_percentile(&t.histogram, 0.95),
            },
        )
        .collect();
    // The map is ordered by ids; the response is ordered by what it shows.
    data.sort_by(|a, b| {
        (
            a.bucket_start,
            &a.tenant,
            &a.route,
            &a.model,
            a.key_id,
            &a.source,
        )
            .cmp(&(
                b.bucket_start,
                &b.tenant,
                &b.route,
                &b.model,
                b.key_id,
                &b.source,
            ))
    });
    Ok(HttpResponse::Ok().json(UsageReport { data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(counts: &[(usize, i64)]) -> [i64; LATENCY_BUCKETS] {
        let mut h = [0; LATENCY_BUCKETS];
        for &(i, c) in counts {
            h[i] = c;
        }
        h
    }

    #[test]
    fn percentiles_interpolate_inside_the_bucket() {
        assert_eq!(latency_percentile(&hist(&[]), 0.5), None);
        // 4 requests in (100, 250]: the median is halfway through the bucket.
        assert_eq!(latency_percentile(&hist(&[(1, 4)]), 0.5), Some(175.0));
        // 10 in [0, 100], 10 in (500, 1000]: p50 is the top of the first bucket.
        assert_eq!(
            latency_percentile(&hist(&[(0, 10), (3, 10)]), 0.5),
            Some(100.0)
        );
        // p95 = rank 19: 9 of the 10 in (500, 1000].
        assert_eq!(
            latency_percentile(&hist(&[(0, 10), (3, 10)]), 0.95),
            Some(950.0)
        );
        // The overflow bucket reports the last bound.
        assert_eq!(
            latency_percentile(&hist(&[(0, 1), (9, 99)]), 0.95),
            Some(60_000.0)
        );
    }

    fn row(model: &str, source: &str, requests: i64, rejected: i64) -> UsageRow {
        UsageRow {
            bucket_start: DateTime::<Utc>::from_timestamp(1_765_000_020, 0)
                .unwrap()
                .duration_trunc(TimeDelta::minutes(1))
                .unwrap(),
            tenant_id: Uuid::nil(),
            key_id: Uuid::nil(),
            route_id: Uuid::nil(),
            model: model.into(),
            source: source.into(),
            requests,
            errors: rejected,
            rejected,
            prompt_tokens: 10 * requests,
            completion_tokens: requests,
            cost: 0.0,
            latency_ms_sum: 0.0,
            latency_histogram: hist(&[(0, requests)]),
        }
    }

    /// Grouped by source, policy usage stays apart from the proxy's; otherwise a group sums
    /// both. `rejected` is summed like the other counts.
    #[test]
    fn source_is_a_grouping_field_and_rejected_is_summed() {
        let rows = [
            row("gpt-4o", "proxy", 3, 1),
            row("gpt-4o-mini", "ai-request-transformer", 2, 0),
            row("gpt-4o", "proxy", 1, 1),
        ];
        let by_source = GroupBy::parse("source").unwrap();
        let groups: Vec<_> = rebucket(&rows, Bucket::Hour, by_source)
            .into_iter()
            .map(|(k, t)| (k.5, t.requests, t.rejected, t.prompt_tokens))
            .collect();
        assert_eq!(
            groups,
            vec![
                (Some("ai-request-transformer".to_string()), 2, 0, 20),
                (Some("proxy".to_string()), 4, 2, 40),
            ]
        );
        let all: Vec<_> = rebucket(&rows, Bucket::Hour, GroupBy::default())
            .into_values()
            .map(|t| (t.requests, t.errors, t.rejected))
            .collect();
        assert_eq!(all, vec![(6, 2, 2)]);
    }

    #[test]
    fn parameters_are_validated() {
        let now = Utc::now();
        let p = |from: Option<&str>, to: Option<&str>, bucket: Option<&str>, g: Option<&str>| {
            UsageParams {
                from: from.map(str::to_owned),
                to: to.map(str::to_owned),
                bucket: bucket.map(str::to_owned),
                group_by: g.map(str::to_owned),
                tenant: None,
            }
        };
        let r = validate(&p(None, None, None, None), now).unwrap();
        assert_eq!((r.to, r.to - r.from), (now, DEFAULT_RANGE));
        assert_eq!(r.bucket, Bucket::Hour);
        assert!(r.group_by.tenant && !r.group_by.route);
        // An unencoded `+` arrives as a space.
        let r = validate(
            &p(
                Some("2026-01-01T00:00:00 01:00"),
                Some("2026-01-01T12:00:00Z"),
                None,
                None,
            ),
            now,
        )
        .unwrap();
        assert_eq!(r.from.to_rfc3339(), "2025-12-31T23:00:00+00:00");
        for (params, field) in [
            (p(Some("yesterday"), None, None, None), "from"),
            (p(None, Some("2026-13-01T00:00:00Z"), None, None), "to"),
            (
                p(
                    Some("2026-01-02T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None,
                    None,
                ),
                "from",
            ),
            (
                p(
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-01-01T00:00:00Z"),
                    None,
                    None,
                ),
                "from",
            ),
            (
                p(
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-03-01T00:00:00Z"),
                    Some("minute"),
                    None,
                ),
                "from",
            ),
            (p(None, None, Some("week"), None), "bucket"),
            (p(None, None, None, Some("tenant,colour")), "group_by"),
        ] {
            let e = validate(&params, now).err().unwrap();
            assert_eq!(e.status.as_u16(), 400);
            assert!(e.fields.contains_key(field), "{field}: {:?}", e.fields);
        }
        assert!(
            validate(
                &p(
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-03-01T00:00:00Z"),
                    Some("day"),
                    Some("")
                ),
                now
            )
            .is_ok()
        );
    }
}
