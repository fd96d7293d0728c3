//! The limits stage: every limit that applies to the request — its key's, its tenant's,
//! its route's (per tenant unless `shared`) — reserved together before the upstream is
//! called (docs/behaviour.md, "Limits and budgets"). The reservation rides in the request's
//! context; the account stage settles it with the real usage, and a request that ends
//! without one (an error, a client that left) drops it, which gives it back.

use std::cell::RefCell;

use actix_web::HttpResponse;
use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::BytesMut;
use serde_json::Value;

use crate::error::Error;
use crate::limits::{Demand, Kind, Limiter, Rate, RateHeaders, Refusal, Reservation, Scope};
use crate::snapshot::RouteEntry;
use crate::vocab::RouteType;

use super::context::{Party, RequestCtx};
use super::read::Body;

pub async fn reserve(
    ctx: &mut RequestCtx,
    party: &Party,
    body: &mut Body,
    limiter: &Limiter,
    default_max_tokens: u32,
) -> Result<(), Error> {
    let snap = &ctx.snapshot;
    let caller = &party.caller;
    let route = party.route.as_ref();
    // One scope per owner (key, tenant, route): on the stack, never allocated.
    let mut scopes = smallvec::SmallVec::<[Scope<'_>; 3]>::new();
    // Limits whose stored JSON no longer parses refuse the request (503): they guard money.
    if let Some(key) = snap.key_limits.get(&caller.key_id) {
        let limits = key.limits.readable("key", &key.name)?;
        scopes.push(Scope::key(caller.key_id, &key.name, limits));
    }
    if let Some(tenant) = snap.tenant_limits.get(&caller.tenant) {
        let limits = tenant.limits.readable("tenant", &tenant.name)?;
        scopes.push(Scope::tenant(caller.tenant, &tenant.name, limits));
    }
    if !route.limits.is_empty() {
        let (id, name) = (route.record.id, &route.record.name);
        let limits = route.limits.readable("route", name)?;
        scopes.push(Scope::route(id, name, caller.tenant, limits));
    }
    if scopes.is_empty() {
        return Ok(());
    }
    let prompt = prompt_estimate(body);
    let completion = max_tokens(route, body, default_max_tokens);
    let demand = Demand {
        tokens: to_i64(prompt.saturating_add(completion)),
        cost_micro: cost_micro(route, prompt, completion),
    };
    match limiter.reserve(&scopes, demand).await {
        Ok(reservation) => {
            ctx.limits = reservation;
            Ok(())
        }
        Err(refusal) => {
            ctx.limit_refusal = Some(refusal.message.clone());
            Err(refused(refusal))
        }
    }
}

/// The cheap prompt estimate: a quarter of the body's bytes (no tokenizer run).
fn prompt_estimate(body: &mut Body) -> u64 {
    body.raw().len() as u64 / 4
}

/// The completion's ceiling: the route's `max_tokens` (it overrides the client's), else the
/// client's `max_tokens` / `max_completion_tokens`, else the configured default
/// (`default_max_tokens`); none for embeddings.
fn max_tokens(route: &RouteEntry, body: &Body, default_max_tokens: u32) -> u64 {
    // An embedding has no completion.
    if route.route_type == RouteType::Embeddings {
        return 0;
    }
    let client = || {
        let object = body.parsed.as_ref()?;
        ["max_tokens", "max_completion_tokens"]
            .iter()
            .find_map(|f| object.get(*f).and_then(Value::as_u64))
    };
    route
        .model
        .options
        .max_tokens
        .map(u64::from)
        .or_else(client)
        .unwrap_or(u64::from(default_max_tokens))
}

/// Micro-dollars from the route's per-1M-token prices, rounded up; 0 when the route has
/// no prices (its budget then counts nothing).
pub fn cost_micro(route: &RouteEntry, prompt: u64, completion: u64) -> i64 {
    match route.prices() {
        Some((i, out)) => {
            let micro = (prompt as f64 * i + completion as f64 * out).ceil();
            if micro >= i64::MAX as f64 {
                i64::MAX
            } else {
                micro as i64
            }
        }
        None => 0,
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Settles a reservation with the real usage.
pub fn settle(reservation: Reservation, route: &RouteEntry, (prompt, completion): (u64, u64)) {
    let tokens = to_i64(prompt.saturating_add(completion));
    reservation.settle(tokens, cost_micro(route, prompt, completion));
}

/// The refusal as a 429 in the OpenAI shape.
fn refused(refusal: Refusal) -> Error {
    let code = match refusal.kind {
        Kind::Budget => "budget_exceeded",
        Kind::Requests | Kind::Tokens => "rate_limit_exceeded",
    };
    let after = std::time::Duration::from_secs(refusal.retry_after_secs.max(1).unsigned_abs());
    let mut error = Error::too_many_requests(refusal.message, after).with_openai_code(code);
    for (name, value) in header_values(refusal.headers) {
        error = error.with_header(name, value);
    }
    error
}

/// OpenAI's six `x-ratelimit-*` headers, for the limits that apply.
fn header_values(h: RateHeaders) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(6);
    if let Some(r) = h.requests {
        out.push(("x-ratelimit-limit-requests", r.limit.to_string()));
        out.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
        out.push(("x-ratelimit-reset-requests", format!("{}s", r.reset_secs)));
    }
    if let Some(r) = h.tokens {
        out.push(("x-ratelimit-limit-tokens", r.limit.to_string()));
        out.push(("x-ratelimit-remaining-tokens", r.remaining.to_string()));
        out.push(("x-ratelimit-reset-tokens", format!("{}s", r.reset_secs)));
    }
    out
}

/// What the upstream's answer said of its own rate limits, noted as its hints are passed on
/// (respond.rs): whether it sent any `x-ratelimit-*` header, and its two remaining counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamRates {
    pub any: bool,
    pub remaining_requests: Option<i64>,
    pub remaining_tokens: Option<i64>,
}

impl UpstreamRates {
    /// Notes one header passed to the client under OpenAI's name.
    pub fn note(&mut self, name: &str, value: &str) {
        if !name.starts_with("x-ratelimit-") {
            return;
        }
        self.any = true;
        let slot = match name {
            "x-ratelimit-remaining-requests" => &mut self.remaining_requests,
            "x-ratelimit-remaining-tokens" => &mut self.remaining_tokens,
            _ => return,
        };
        *slot = value.trim().parse().ok();
    }
}

/// The rate-limit headers on an answer the request's limits let through. Where the
/// upstream's own (`upstream`, noted as they were passed on) have less remaining, the
/// upstream's group of three stays: the client sees the stricter of the two
/// (docs/behaviour.md, "Responses"); on a tie the gateway's. When the upstream sent none,
/// the headers are appended: no lookup of a header that cannot be there, no replaced value
/// handed back.
pub fn set_headers(
    response: &mut HttpResponse,
    rate: Option<RateHeaders>,
    upstream: UpstreamRates,
) {
    let Some(rate) = rate else {
        return;
    };
    let headers = response.headers_mut();
    let groups = [
        (
            rate.requests,
            upstream.remaining_requests,
            [LIMIT_REQUESTS, REMAINING_REQUESTS, RESET_REQUESTS],
        ),
        (
            rate.tokens,
            upstream.remaining_tokens,
            [LIMIT_TOKENS, REMAINING_TOKENS, RESET_TOKENS],
        ),
    ];
    VALUES.with_borrow_mut(|values| {
        for (rate, upstream_remaining, [limit, remaining, reset]) in groups {
            let Some(r) = rate.filter(|r| !stricter(upstream_remaining, r)) else {
                continue;
            };
            let group = [
                (limit, values.limit(r.limit)),
                (remaining, values.number(r.remaining, "")),
                (reset, values.reset(r.reset_secs)),
            ];
            // Digits and `s` only: a value is always valid.
            for (name, value) in group {
                let Some(value) = value else { continue };
                if upstream.any {
                    headers.insert(name, value);
                } else {
                    headers.append(name, value);
                }
            }
        }
    });
}

/// The upstream's remaining count is below the gateway's: its group stays.
fn stricter(upstream: Option<i64>, gateway: &Rate) -> bool {
    upstream.is_some_and(|u| u < gateway.remaining)
}

// Built at compile time: `from_static` on a runtime `&str` validates it every call.
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");

/// Room a worker's chunk of header text is renewed with: a few hundred answers' values.
const CHUNK: usize = 4096;

/// Limit values a worker keeps written: a few routes' and tenants' limits.
const KEPT_LIMITS: usize = 4;

thread_local! {
    /// Where this worker's rate-limit header values come from. Every answer on a limited
    /// route carries six; a value of its own each would cost an allocation and a
    /// formatting apiece.
    static VALUES: RefCell<Values> = RefCell::new(Values::default());
}

#[derive(Default)]
struct Values {
    /// The chunk remaining counts are cut from. Each value shares it (a reference count);
    /// once every value cut from it has been sent and dropped the chunk is reused in place,
    /// else a new one is taken and the old one freed with its last value.
    chunk: BytesMut,
    /// Limits as written before: a limit is the same on every answer its limit governs.
    /// Each has its own small buffer, so that none holds a chunk back from reuse.
    limits: [Option<(i64, HeaderValue)>; KEPT_LIMITS],
    /// The slot the next new limit takes (the oldest).
    next: usize,
}

impl Values {
    /// `n` (then `unit`) as a header value cut from the chunk.
    fn number(&mut self, n: i64, unit: &str) -> Option<HeaderValue> {
        let mut digits = itoa::Buffer::new();
        let text = digits.format(n);
        if self.chunk.capacity() < text.len() + unit.len() {
            self.chunk.reserve(CHUNK);
        }
        self.chunk.extend_from_slice(text.as_bytes());
        self.chunk.extend_from_slice(unit.as_bytes());
        HeaderValue::from_maybe_shared(self.chunk.split().freeze()).ok()
    }

    /// A limit's value: as written before, else written and kept.
    fn limit(&mut self, n: i64) -> Option<HeaderValue> {
        let kept = self.limits.iter().flatten().find(|(limit, _)| *limit == n);
        if let Some((_, value)) = kept {
            return Some(value.clone());
        }
        let value = HeaderValue::from(n);
        self.limits[self.next] = Some((n, value.clone()));
        self.next = (self.next + 1) % KEPT_LIMITS;
        Some(value)
    }

    /// A reset in seconds, `<n>s`: within a minute a prepared value, else written.
    fn reset(&mut self, secs: i64) -> Option<HeaderValue> {
        match usize::try_from(secs)
            .ok()
            .and_then(|s| RESET_SECONDS.get(s))
        {
            Some(prepared) => Some(prepared.clone()),
            None => self.number(secs, "s"),
        }
    }
}

/// `0s` to `60s`: a minute window's reset, the one the headers name (requests and tokens
/// per minute), is one of these — no formatting and no check of the bytes per answer.
static RESET_SECONDS: [HeaderValue; 61] = [
    HeaderValue::from_static("0s"),
    HeaderValue::from_static("1s"),
    HeaderValue::from_static("2s"),
    HeaderValue::from_static("3s"),
    HeaderValue::from_static("4s"),
    HeaderValue::from_static("5s"),
    HeaderValue::from_static("6s"),
    HeaderValue::from_static("7s"),
    HeaderValue::from_static("8s"),
    HeaderValue::from_static("9s"),
    HeaderValue::from_static("10s"),
    HeaderValue::from_static("11s"),
    HeaderValue::from_static("12s"),
    HeaderValue::from_static("13s"),
    HeaderValue::from_static("14s"),
    HeaderValue::from_static("15s"),
    HeaderValue::from_static("16s"),
    HeaderValue::from_static("17s"),
    HeaderValue::from_static("18s"),
    HeaderValue::from_static("19s"),
    HeaderValue::from_static("20s"),
    HeaderValue::from_static("21s"),
    HeaderValue::from_static("22s"),
    HeaderValue::from_static("23s"),
    HeaderValue::from_static("24s"),
    HeaderValue::from_static("25s"),
    HeaderValue::from_static("26s"),
    HeaderValue::from_static("27s"),
    HeaderValue::from_static("28s"),
    HeaderValue::from_static("29s"),
    HeaderValue::from_static("30s"),
    HeaderValue::from_static("31s"),
    HeaderValue::from_static("32s"),
    HeaderValue::from_static("33s"),
    HeaderValue::from_static("34s"),
    HeaderValue::from_static("35s"),
    HeaderValue::from_static("36s"),
    HeaderValue::from_static("37s"),
    HeaderValue::from_static("38s"),
    HeaderValue::from_static("39s"),
    HeaderValue::from_static("40s"),
    HeaderValue::from_static("41s"),
    HeaderValue::from_static("42s"),
    HeaderValue::from_static("43s"),
    HeaderValue::from_static("44s"),
    HeaderValue::from_static("45s"),
    HeaderValue::from_static("46s"),
    HeaderValue::from_static("47s"),
    HeaderValue::from_static("48s"),
    HeaderValue::from_static("49s"),
    HeaderValue::from_static("50s"),
    HeaderValue::from_static("51s"),
    HeaderValue::from_static("52s"),
    HeaderValue::from_static("53s"),
    HeaderValue::from_static("54s"),
    HeaderValue::from_static("55s"),
    HeaderValue::from_static("56s"),
    HeaderValue::from_static("57s"),
    HeaderValue::from_static("58s"),
    HeaderValue::from_static("59s"),
    HeaderValue::from_static("60s"),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's headers say what a refusal's would (`header_values`).
    #[test]
    fn answer_headers_match_the_refusal_headers() {
        let rate = RateHeaders {
            requests: Some(Rate {
                limit: 600,
                remaining: 0,
                reset_secs: 59,
            }),
            tokens: Some(Rate {
                limit: 200_000,
                remaining: 123,
                reset_secs: 7,
            }),
        };
        let mut response = HttpResponse::Ok().finish();
        set_headers(&mut response, Some(rate), UpstreamRates::default());
        let expected = header_values(rate);
        assert_eq!(expected.len(), 6);
        for (name, value) in expected {
            assert_eq!(
                response.headers().get(name).unwrap(),
                value.as_str(),
                "{name}"
            );
        }
    }

    /// A reset within a minute comes from the prepared values, a longer one is written:
    /// both read as `<seconds>s`.
    #[test]
    fn resets_read_the_same_prepared_or_written() {
        for secs in [0, 1, 59, 60, 61, 3600] {
            let rate = RateHeaders {
                requests: Some(Rate {
                    limit: 10,
                    remaining: 9,
                    reset_secs: secs,
                }),
                tokens: Some(Rate {
                    limit: 1000,
                    remaining: 900,
                    reset_secs: secs + 1,
                }),
            };
            let mut response = HttpResponse::Ok().finish();
            set_headers(&mut response, Some(rate), UpstreamRates::default());
            let h = |n: &str| response.headers().get(n).unwrap().to_str().unwrap();
            assert_eq!(h("x-ratelimit-reset-requests"), format!("{secs}s"));
            assert_eq!(h("x-ratelimit-reset-tokens"), format!("{}s", secs + 1));
            assert_eq!(h("x-ratelimit-limit-tokens"), "1000");
            assert_eq!(h("x-ratelimit-remaining-tokens"), "900");
            assert_eq!(h("x-ratelimit-remaining-requests"), "9");
        }
    }

    /// Values cut from a worker's chunk stay what they were written as while the chunk is
    /// renewed (answers still held) or reused in place (every answer dropped); limits
    /// kept written stay right while more limits than are kept take turns.
    #[test]
    fn values_outlive_their_chunk() {
        let answer = |n: i64| {
            let rate = RateHeaders {
                requests: Some(Rate {
                    limit: 1_000_000 + n % 7,
                    remaining: n,
                    reset_secs: 75,
                }),
                tokens: None,
            };
            let mut response = HttpResponse::Ok().finish();
            set_headers(&mut response, Some(rate), UpstreamRates::default());
            response
        };
        let read = |r: &HttpResponse, name: &str| {
            r.headers().get(name).unwrap().to_str().unwrap().to_owned()
        };
        for round in 0..3 {
            // Every third answer is held past many chunks' worth of values.
            let held: Vec<(i64, HttpResponse)> = (0..3000)
                .map(|n| (n, answer(n)))
                .filter(|(n, _)| n % 3 == round)
                .collect();
            for (n, r) in &held {
                assert_eq!(read(r, "x-ratelimit-remaining-requests"), n.to_string());
                let limit = 1_000_000 + n % 7;
                assert_eq!(read(r, "x-ratelimit-limit-requests"), limit.to_string());
                assert_eq!(read(r, "x-ratelimit-reset-requests"), "75s");
            }
        }
    }

    /// The upstream's group stays where it has less remaining; else the gateway's
    /// replaces it whole.
    #[test]
    fn the_stricter_of_upstream_and_gateway_is_sent() {
        let rate = RateHeaders {
            requests: Some(Rate {
                limit: 600,
                remaining: 500,
                reset_secs: 59,
            }),
            tokens: Some(Rate {
                limit: 200_000,
                remaining: 10,
                reset_secs: 7,
            }),
        };
        let upstream_headers = [
            ("x-ratelimit-limit-requests", "50"),
            ("x-ratelimit-remaining-requests", "4"),
            ("x-ratelimit-reset-requests", "1m0s"),
            ("x-ratelimit-limit-tokens", "80000"),
            ("x-ratelimit-remaining-tokens", "79000"),
            ("x-ratelimit-reset-tokens", "20ms"),
        ];
        let mut builder = HttpResponse::Ok();
        let mut upstream = UpstreamRates::default();
        for (name, value) in upstream_headers {
            builder.insert_header((name, value));
            upstream.note(name, value);
        }
        let mut response = builder.finish();
        set_headers(&mut response, Some(rate), upstream);
        let h = |n: &str| response.headers().get(n).unwrap().to_str().unwrap();
        assert_eq!(h("x-ratelimit-limit-requests"), "50");
        assert_eq!(h("x-ratelimit-remaining-requests"), "4");
        assert_eq!(h("x-ratelimit-reset-requests"), "1m0s");
        assert_eq!(h("x-ratelimit-limit-tokens"), "200000");
        assert_eq!(h("x-ratelimit-remaining-tokens"), "10");
        assert_eq!(h("x-ratelimit-reset-tokens"), "7s");
    }
}
