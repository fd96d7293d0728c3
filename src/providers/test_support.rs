//! Test helpers shared by every wire format's tests.

use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::providers::{ProviderKind, TranslateContext, Translator, WireFormat};
use crate::vocab::ModelOptions;
use crate::vocab::ServiceOptions;

/// The translator a provider's services use (the snapshot's choice, `WireFormat::of`).
pub fn translator(provider: ProviderKind) -> &'static dyn Translator {
    WireFormat::of(provider).translator()
}

/// Owns what a `TranslateContext` borrows, and the provider that picks the translator.
pub struct Setup {
    pub provider: ProviderKind,
    pub upstream_url: Option<String>,
    pub options: ServiceOptions,
    pub model: String,
    pub tuning: ModelOptions,
}

impl Setup {
    pub fn new(provider: ProviderKind, model: &str) -> Self {
        Setup {
            provider,
            upstream_url: None,
            options: ServiceOptions::default(),
            model: model.to_string(),
            tuning: ModelOptions::default(),
        }
    }

    pub fn url(mut self, url: &str) -> Self {
        self.upstream_url = Some(url.to_string());
        self
    }

    pub fn ctx(&self) -> TranslateContext<'_> {
        TranslateContext {
            upstream_url: self.upstream_url.as_deref(),
            options: &self.options,
            model: &self.model,
            tuning: &self.tuning,
            default_max_tokens: 1024,
        }
    }
}

pub fn fixture(provider: &str, name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/providers")
        .join(provider)
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn fixture_json(provider: &str, name: &str) -> Value {
    serde_json::from_str(&fixture(provider, name)).expect("fixture is JSON")
}

pub fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub fn body_json(body: &[u8]) -> Value {
    serde_json::from_slice(body).expect("upstream body is JSON")
}

/// Kong's fixture directory from `TOLLGATE_KONG_FIXTURES`; the (ignored) test fails
/// when it is unset.
pub fn kong_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("TOLLGATE_KONG_FIXTURES").expect(
        "TOLLGATE_KONG_FIXTURES is unset: this test needs Kong's fixtures (.ci/run sets it)",
    ))
}

pub fn kong_file(dir: &std::path::Path, rel: &str) -> String {
    let path = dir.join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn kong_json(dir: &std::path::Path, rel: &str) -> Value {
    serde_json::from_str(&kong_file(dir, rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// JSON equality where `1` equals `1.0` (Lua/cjson does not tell them apart).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Every field of `expected` (recursively, by JSON pointer) is in `actual` with the
/// same value, except the pointers in `skip`; `actual` may have more fields.
pub fn assert_subset(expected: &Value, actual: &Value, path: &str, skip: &[&str], what: &str) {
    if skip.contains(&path) {
        return;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let p = format!("{path}/{k}");
                if skip.contains(&p.as_str()) {
                    continue;
                }
                let got = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{what}: {p} missing in {actual}"));
                assert_subset(v, got, &p, skip, what);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{what}: length of {path}");
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                assert_subset(x, y, &format!("{path}/{i}"), skip, what);
            }
        }
        _ => assert!(
            json_eq(expected, actual),
            "{what}: {path}: expected {expected}, got {actual}"
        ),
    }
}
