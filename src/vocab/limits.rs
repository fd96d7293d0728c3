//! Limits and budgets: the same object on tenants, API keys and routes (docs/behaviour.md,
//! "Limits and budgets"). Every field is optional; an empty object limits nothing. The
//! admin API checks a submitted object with [`Limits::parse`] (field paths in the 400);
//! the snapshot parses the stored column with the same function.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Where a limits object sits: `shared` is a route's word only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Tenant,
    Key,
    Route,
}

impl LimitScope {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Tenant => "tenant",
            LimitScope::Key => "key",
            LimitScope::Route => "route",
        }
    }
}

/// A budget's period, on UTC boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    Day,
    Month,
}

impl BudgetPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        }
    }
}

/// What happens to a request when the shared counter store (Redis) cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// The request goes through unlimited (logged and counted).
    #[default]
    Allow,
    /// The request is refused with 429 (logged and counted).
    Deny,
}

/// Spend allowed per UTC day or month.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// USD, greater than 0.
    pub amount_usd: f64,
    pub period: BudgetPeriod,
}

impl Budget {
    /// The amount in micro-dollars, the unit the counters keep.
    pub fn micro_usd(&self) -> i64 {
        // Validated finite and positive, at most `MAX_AMOUNT_USD`: fits an i64.
        (self.amount_usd * 1_000_000.0).round() as i64
    }
}

/// The limits object (docs/behaviour.md, "Limits and budgets").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per fixed UTC minute (a positive integer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    /// Prompt plus completion tokens per fixed UTC minute (a positive integer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Routes only: one counter for all tenants instead of one per tenant. Default false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// `allow` (default) or `deny` when the counter store cannot be reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_store_error: Option<OnStoreError>,
}

/// The largest budget accepted (USD): keeps micro-dollars far inside an i64.
pub const MAX_AMOUNT_USD: f64 = 1e12;
/// The largest per-minute limit accepted.
pub const MAX_PER_MINUTE: u64 = 1 << 50;

impl Limits {
    /// Whether any limit is set (an empty object limits nothing).
    pub fn is_empty(&self) -> bool {
        self.requests_per_minute.is_none()
            && self.tokens_per_minute.is_none()
            && self.budget.is_none()
    }

    pub fn is_shared(&self) -> bool {
        self.shared.unwrap_or(false)
    }

    pub fn on_store_error(&self) -> OnStoreError {
        self.on_store_error.unwrap_or_default()
    }

    /// Parses and checks a limits object; `at` is its field path (`limits`). Every problem
    /// is returned with its own path (`limits.budget.amount_usd`), so the 400 names them all.
    pub fn parse(
        value: &Value,
        at: &str,
        scope: LimitScope,
    ) -> Result<Limits, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut add = |field: &str, message: &str| {
            problems.push((format!("{at}.{field}"), message.to_string()));
        };
        let Some(object) = value.as_object() else {
            return Err(vec![(at.to_string(), "must be an object".to_string())]);
        };
        let mut limits = Limits::default();
        for (name, v) in object {
            match name.as_str() {
                "requests_per_minute" | "tokens_per_minute" => {
                    if v.is_null() {
                        continue;
                    }
                    // `1.0` is the integer 1 in JSON (and in JSON Schema, which the
                    // OpenAPI document uses).
                    let integral = v.as_u64().or_else(|| {
                        v.as_f64()
                            .filter(|f| {
                                f.fract() == 0.0 && (1.0..=MAX_PER_MINUTE as f64).contains(f)
                            })
                            .map(|f| f as u64)
                    });
                    match integral {
                        Some(n) if (1..=MAX_PER_MINUTE).contains(&n) => {
                            if name == "requests_per_minute" {
                                limits.requests_per_minute = Some(n);
                            } else {
                                limits.tokens_per_minute = Some(n);
                            }
                        }
                        _ => add(name, "must be a positive integer"),
                    }
                }
                "budget" => {
                    if v.is_null() {
                        continue;
                    }
                    let Some(b) = v.as_object() else {
                        add(name, "must be an object {\"amount_usd\", \"period\"}");
                        continue;
                    };
                    let mut amount = None;
                    let mut period = None;
                    for (field, fv) in b {
                        match field.as_str() {
                            "amount_usd" => match fv.as_f64() {
                                Some(a) if a.is_finite() && a > 0.0 && a <= MAX_AMOUNT_USD => {
                                    amount = Some(a);
                                }
                                _ => add(
                                    "budget.amount_usd",
                                    "must be a number greater than 0 (USD)",
                                ),
                            },
                            "period" => match fv.as_str() {
                                Some("day") => period = Some(BudgetPeriod::Day),
                                Some("month") => period = Some(BudgetPeriod::Month),
                                _ => add("budget.period", "must be one of: day, month"),
                            },
                            other => add(&format!("budget.{other}"), "unknown field"),
                        }
                    }
                    if !b.contains_key("amount_usd") {
                        add("budget.amount_usd", "is required");
                    }
                    if !b.contains_key("period") {
                        add("budget.period", "is required");
                    }
                    if let (Some(amount_usd), Some(period)) = (amount, period) {
                        limits.budget = Some(Budget { amount_usd, period });
                    }
                }
                "shared" => {
                    if scope != LimitScope::Route {
                        add(
                            name,
                            &format!(
                                "only a route's limits may be shared (this is a {}'s)",
                                scope.as_str()
                            ),
                        );
                    } else if v.is_null() {
                        continue;
                    } else if let Some(b) = v.as_bool() {
                        limits.shared = Some(b);
                    } else {
                        add(name, "must be true or false");
                    }
                }
                "on_store_error" => {
                    if v.is_null() {
                        continue;
                    }
                    match v.as_str() {
                        Some("allow") => limits.on_store_error = Some(OnStoreError::Allow),
                        Some("deny") => limits.on_store_error = Some(OnStoreError::Deny),
                        _ => add(name, "must be one of: allow, deny"),
                    }
                }
                other => add(other, "unknown field"),
            }
        }
        if problems.is_empty() {
            Ok(limits)
        } else {
            Err(problems)
        }
    }

    /// The stored (and shown) form: the fields set, nothing else.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_object_parses_and_round_trips() {
        let v = json!({"requests_per_minute": 600, "tokens_per_minute": 200000,
            "budget": {"amount_usd": 50.0, "period": "month"}, "shared": true,
            "on_store_error": "deny"});
        let l = Limits::parse(&v, "limits", LimitScope::Route).unwrap();
        assert_eq!(l.requests_per_minute, Some(600));
        assert_eq!(l.budget.unwrap().micro_usd(), 50_000_000);
        assert_eq!(l.on_store_error(), OnStoreError::Deny);
        assert_eq!(l.to_value(), v);
        assert_eq!(
            Limits::parse(&json!({}), "limits", LimitScope::Tenant).unwrap(),
            Limits::default()
        );
    }

    #[test]
    fn problems_are_named_by_field_path() {
        let v = json!({"requests_per_minute": 0, "tokens_per_minute": 1.5,
            "budget": {"amount_usd": -1, "period": "week", "x": 1}, "shared": true,
            "on_store_error": "maybe", "burst": 3});
        let problems = Limits::parse(&v, "limits", LimitScope::Tenant).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.0.as_str()).collect();
        for f in [
            "limits.requests_per_minute",
            "limits.tokens_per_minute",
            "limits.budget.amount_usd",
            "limits.budget.period",
            "limits.budget.x",
            "limits.shared",
            "limits.on_store_error",
            "limits.burst",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
        // An integral number written with a fraction is that integer.
        let l = Limits::parse(
            &json!({"requests_per_minute": 60.0}),
            "limits",
            LimitScope::Key,
        );
        assert_eq!(l.unwrap().requests_per_minute, Some(60));
        let missing = Limits::parse(&json!({"budget": {}}), "limits", LimitScope::Key).unwrap_err();
        assert_eq!(missing.len(), 2);
        assert!(Limits::parse(&json!([]), "limits", LimitScope::Key).is_err());
    }
}
