//! Request-body and query extractors of the admin API: a size limit checked before reading
//! (413), JSON parsed once with the offending field's path in every error (400), strings
//! checked for characters no backend can store, and pagination parameters.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use futures::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{AdminError, Error};
use crate::store::Page;

/// The admin body limit, put in app data by the server (default 1 MiB, docs/behaviour.md, "Admin
/// conventions").
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON object body as a raw value, size-limited and screened; handlers that need
/// PATCH merging work on the value before typing it with [`parse_typed`].
pub struct JsonObject(pub serde_json::Map<String, serde_json::Value>);

impl FromRequest for JsonObject {
    type Error = AdminError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AdminError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<BodyLimit>()
            .copied()
            .unwrap_or(BodyLimit(1024 * 1024))
            .0;
        let content_type_ok = match req.headers().get(actix_web::http::header::CONTENT_TYPE) {
            None => true,
            Some(v) => v
                .to_str()
                .map(|s| {
                    let mime = s
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    mime == "application/json" || mime.ends_with("+json")
                })
                .unwrap_or(false),
        };
        let declared_len = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let payload = payload.take();
        Box::pin(async move {
            read_object(payload, limit, declared_len, content_type_ok)
                .await
                .map_err(AdminError)
        })
    }
}

/// Reads, parses and screens the body whose headers [`JsonObject::from_request`] checked.
async fn read_object(
    mut payload: Payload,
    limit: usize,
    declared_len: Option<usize>,
    content_type_ok: bool,
) -> Result<JsonObject, Error> {
    if declared_len.is_some_and(|n| n > limit) {
        return Err(Error::payload_too_large(limit));
    }
    if !content_type_ok {
        return Err(Error::unsupported_media_type(
            "the admin API accepts only application/json bodies",
        ));
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Error::bad_request(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::payload_too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Error::bad_request(format!("request body is not valid JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(Error::bad_request("request body must be a JSON object"));
    };
    let mut bad = BTreeMap::new();
    screen_strings(
        &serde_json::Value::Object(map.clone()),
        String::new(),
        &mut bad,
    );
    if !bad.is_empty() {
        return Err(Error::invalid_fields(bad));
    }
    let mut value = serde_json::Value::Object(map);
    integral_numbers(&mut value);
    let serde_json::Value::Object(map) = value else {
        return Err(Error::bad_request("request body must be a JSON object"));
    };
    Ok(JsonObject(map))
}

/// JSON Schema's integers include `95.0`, serde's do not: a number without a fraction
/// (within the range a double holds exactly) is read as the integer it equals.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && n.is_f64()
                && f.fract() == 0.0
                && f.abs() <= 9_007_199_254_740_992.0
            {
                // Exact: the value is integral and within 2^53.
                #[allow(clippy::cast_possible_truncation)]
                let whole = f as i64;
                *value = serde_json::Value::from(whole);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// Rejects strings no backend stores faithfully: NUL (PostgreSQL refuses it in TEXT and
/// JSONB) and other C0/C1 controls except tab and newline. Keys are checked too.
fn screen_strings(value: &serde_json::Value, path: String, bad: &mut BTreeMap<String, String>) {
    let forbidden = |s: &str| s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
    match value {
        serde_json::Value::String(s) if forbidden(s) => {
            bad.insert(
                display_path(&path),
                "must not contain control characters (such as NUL)".into(),
            );
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                screen_strings(item, format!("{path}[{i}]"), bad);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if forbidden(k) {
                    bad.insert(
                        display_path(&child),
                        "field names must not contain control characters".into(),
                    );
                    continue;
                }
                screen_strings(v, child, bad);
            }
        }
        _ => {}
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(body)".into()
    } else {
        path.escape_debug().to_string()
    }
}

/// Write-only secret fields: an error about one never quotes the submitted value.
const WRITE_ONLY_FIELDS: &[&str] = &["password", "header_value", "param_value"];

/// Types a JSON value, turning serde's error into a 400 naming the offending field by its
/// dotted path (`options.azure_instance`, `tags[2]`), unknown fields included.
pub fn parse_typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, Error> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let at_root = path == "." || path.is_empty();
        let child = |name: &str| {
            if at_root {
                name.to_string()
            } else {
                format!("{path}.{name}")
            }
        };
        // serde_path_to_error already ends the path with an unknown field's name; a missing
        // field is reported at its parent.
        let (field, message) = if let Some(name) = backquoted(&inner, "unknown field `") {
            let field = if path.ends_with(name.as_str()) {
                path.clone()
            } else {
                child(&name)
            };
            (field, format!("unknown field '{name}'"))
        } else if let Some(name) = backquoted(&inner, "missing field `") {
            (child(&name), "is required".to_string())
        } else if at_root {
            ("(body)".to_string(), inner)
        } else if WRITE_ONLY_FIELDS.contains(&path.rsplit('.').next().unwrap_or_default()) {
            // serde quotes the offending value ("invalid type: integer `123…`"): not for secrets.
            (path, "must be a string".to_string())
        } else {
            (path, inner)
        };
        Error::invalid_field(field, message)
    })
}

/// The name in serde's "unknown field `x`, expected …" / "missing field `x`" messages.
fn backquoted(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    Some(rest.split('`').next()?.to_string())
}

/// `?limit=&offset=` (limit default 100, max 1000; docs/behaviour.md,
/// "Admin conventions").
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// Items to skip (default 0).
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn page(&self) -> Result<Page, Error> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(Error::invalid_field("limit", "must be between 1 and 1000"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset < 0 {
            return Err(Error::invalid_field("offset", "must not be negative"));
        }
        Ok(Page { limit, offset })
    }
}

/// Query extractor whose errors are the admin API's JSON errors.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        AdminError(Error::bad_request(format!("invalid query string: {err}"))).into()
    })
}

/// Path extractor errors as JSON.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, _req| {
        AdminError(Error::bad_request(format!("invalid path: {err}"))).into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        azure_instance: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        options: Option<Inner>,
        tags: Option<Vec<String>>,
    }

    #[test]
    fn errors_name_the_field_path() {
        let e = parse_typed::<Outer>(json!({"name": "a", "options": {"azure_instance": 3}}))
            .unwrap_err();
        assert!(
            e.fields.contains_key("options.azure_instance"),
            "{:?}",
            e.fields
        );
        let e = parse_typed::<Outer>(json!({"name": "a", "options": {"nope": 1}})).unwrap_err();
        assert!(e.fields.contains_key("options.nope"), "{:?}", e.fields);
        let e = parse_typed::<Outer>(json!({"name": "a", "extra": 1})).unwrap_err();
        assert!(e.fields.contains_key("extra"), "{:?}", e.fields);
        let e = parse_typed::<Outer>(json!({"name": "a", "tags": ["x", 5]})).unwrap_err();
        assert!(e.fields.contains_key("tags[1]"), "{:?}", e.fields);
        let e = parse_typed::<Outer>(json!({})).unwrap_err();
        assert_eq!(
            e.fields.get("name").map(String::as_str),
            Some("is required")
        );
    }

    #[test]
    fn control_characters_are_found_anywhere() {
        let mut bad = BTreeMap::new();
        screen_strings(
            &json!({"a": {"b": ["ok", "no\u{0000}"]}, "c": "fine\n"}),
            String::new(),
            &mut bad,
        );
        assert_eq!(bad.keys().collect::<Vec<_>>(), vec!["a.b[1]"]);
    }
}
