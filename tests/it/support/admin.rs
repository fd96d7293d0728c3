//! Assertions and calls the admin API tests share: expected statuses and error shapes,
//! `Location`, and creating, fetching and listing objects as the admin.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Reply, TestApp};

#[track_caller]
pub fn expect_status(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "unexpected status; body: {}", r.text);
}

/// Asserts an admin error `{"error":{"code",…}}` with this status; returns its message.
#[track_caller]
pub fn expect_error(r: &Reply, status: u16, code: &str) -> String {
    expect_status(r, status);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    r.body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_string()
}

/// Asserts a 400 `validation_failed` whose `fields` names exactly `fields`.
#[track_caller]
pub fn expect_invalid(r: &Reply, fields: &[&str]) {
    expect_fields(r, 400, "validation_failed", fields);
}

/// 422: each field valid on its own, refused by a rule tying it to others or to the time
/// (docs/behaviour.md, "Admin conventions"), naming exactly `fields`.
#[track_caller]
pub fn expect_refused_by_rule(r: &Reply, fields: &[&str]) {
    expect_fields(r, 422, "validation_failed", fields);
}

/// 409: fields naming objects that do not exist, exactly `fields`.
#[track_caller]
pub fn expect_missing_reference(r: &Reply, fields: &[&str]) {
    expect_fields(r, 409, "conflict", fields);
}

#[track_caller]
fn expect_fields(r: &Reply, status: u16, code: &str, fields: &[&str]) {
    expect_error(r, status, code);
    let named: BTreeSet<&str> = r.body["error"]["fields"]
        .as_object()
        .map(|f| f.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let wanted: BTreeSet<&str> = fields.iter().copied().collect();
    assert_eq!(named, wanted, "{}", r.text);
}

/// The message a validation error gives for one field.
pub fn field_message<'a>(r: &'a Reply, field: &str) -> &'a str {
    r.body["error"]["fields"][field]
        .as_str()
        .unwrap_or_default()
}

pub fn location(r: &Reply) -> String {
    r.headers
        .get("location")
        .expect("Location header")
        .to_str()
        .expect("ASCII Location")
        .to_string()
}

/// POSTs and asserts 201; returns the created object.
pub async fn created(app: &TestApp, path: &str, body: Value) -> Value {
    let r = app.post(path, body).await;
    assert_eq!(r.status, 201, "POST {path}: {}", r.text);
    r.body
}

/// GETs and asserts 200; returns the body.
pub async fn fetch(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text);
    r.body
}

/// Every item of a collection, following `next` links.
pub async fn list_all(app: &TestApp, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut next = Some(path.to_string());
    while let Some(url) = next {
        let page = fetch(app, &url).await;
        items.extend(page["data"].as_array().expect("data").iter().cloned());
        next = page["next"].as_str().map(str::to_string);
    }
    items
}
