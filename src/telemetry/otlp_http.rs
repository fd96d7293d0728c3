//! OTLP http/protobuf span exporter that writes `SpanData` straight into protobuf bytes.
//!
//! opentelemetry-otlp's http exporter first copies every span into `opentelemetry-proto`
//! structs (a `String`/`Vec` per attribute key and value), encodes them and drops them; on
//! the batch thread that was most of the export cost. Here one pass over the spans writes
//! the `ExportTraceServiceRequest` into a single buffer. The message is the one the SDK's
//! transform builds (same fields and values, checked against it in the tests below), and
//! the SDK's `BatchSpanProcessor` still does batching, queueing, flush and shutdown.
//!
//! Field numbers are those of opentelemetry-proto 0.32's generated types
//! (`opentelemetry.proto.{collector.trace,trace,common,resource}.v1`).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

/// Posts spans to `<endpoint>/v1/traces` as `application/x-protobuf`.
pub struct OtlpHttpSpanExporter {
    client: reqwest::blocking::Client,
    url: String,
    headers: HeaderMap,
    /// The encoded `Resource` message body and the resource's schema URL, set once by the
    /// provider (`set_resource`) rather than re-converted for every batch.
    resource: Vec<u8>,
    resource_schema_url: String,
    /// The previous body's size, to allocate the next one in one go.
    last_len: AtomicUsize,
    shut_down: AtomicBool,
}

impl fmt::Debug for OtlpHttpSpanExporter {
    // Not derived: the headers often carry a vendor's API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpHttpSpanExporter")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// A blocking OTLP client trusting the public roots (the exporters build theirs with
/// `otlp_tls::blocking_client` from the configuration).
pub(crate) fn blocking_client(timeout: Duration) -> anyhow::Result<reqwest::blocking::Client> {
    super::otlp_tls::blocking_client(
        timeout,
        &crate::config::OtlpSignalSettings {
            headers: None,
            certificate: None,
            client: None,
        },
    )
}

/// The export headers: a user agent, the configured entries (those that are not valid
/// HTTP are skipped, as opentelemetry-otlp does) and the protobuf content type.
pub(crate) fn header_map<'a>(
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("tollgate/", env!("CARGO_PKG_VERSION"))),
    );
    for (k, v) in headers {
        if let (Ok(k), Ok(mut v)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            // Kept out of reqwest's and hyper's debug output.
            v.set_sensitive(true);
            map.insert(k, v);
        }
    }
    map.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-protobuf"),
    );
    map
}

/// Posts one protobuf body; the error names what failed with its causes (a TLS refusal is
/// in the source chain, not in reqwest's own message) but never the headers.
pub(crate) fn post(
    client: &reqwest::blocking::Client,
    url: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<(), String> {
    let response = client
        .post(url)
        .headers(headers.clone())
        .body(body)
        .send()
        .map_err(|e| error_chain(&e))?;
    let status = response.status();
    // Read to the end so the connection goes back to the pool.
    let _ = response.bytes();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered HTTP status {status}"))
    }
}

/// `error: cause: cause...`, without repeating a cause already in its parent's message.
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl OtlpHttpSpanExporter {
    /// `url` is the full signal URL; header entries that are not valid HTTP are skipped
    /// (as opentelemetry-otlp does). Trusts the public roots.
    pub fn new<'a>(
        url: String,
        headers: impl IntoIterator<Item = (&'a String, &'a String)>,
        timeout: Duration,
    ) -> anyhow::Result<OtlpHttpSpanExporter> {
        Ok(Self::with_client(url, headers, blocking_client(timeout)?))
    }

    /// As `new`, posting with `client` (its TLS set up from the configuration).
    pub fn with_client<'a>(
        url: String,
        headers: impl IntoIterator<Item = (&'a String, &'a String)>,
        client: reqwest::blocking::Client,
    ) -> OtlpHttpSpanExporter {
        OtlpHttpSpanExporter {
            client,
            url,
            headers: header_map(headers),
            resource: Vec::new(),
            resource_schema_url: String::new(),
            last_len: AtomicUsize::new(0),
            shut_down: AtomicBool::new(false),
        }
    }

    fn post(&self, body: Vec<u8>) -> OTelSdkResult {
        post(&self.client, &self.url, &self.headers, body)
            .map_err(|e| OTelSdkError::InternalFailure(format!("OTLP span export: {e}")))
    }
}

impl SpanExporter for OtlpHttpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(self.last_len.load(Ordering::Relaxed) + 1024);
        encode_request(&mut body, &self.resource, &self.resource_schema_url, &batch);
        self.last_len.store(body.len(), Ordering::Relaxed);
        // Spans are dropped before the blocking post, not after it.
        drop(batch);
        self.post(body)
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        if self.shut_down.swap(true, Ordering::Relaxed) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource.clear();
        encode_resource(&mut self.resource, resource);
        self.resource_schema_url = resource.schema_url().unwrap_or_default().to_owned();
    }
}

/// The `Resource` message body: its attributes (field 1).
pub(super) fn encode_resource(buf: &mut Vec<u8>, resource: &Resource) {
    for (key, value) in resource.iter() {
        message(buf, 1, |b| key_value(b, key.as_str(), value));
    }
}

/// An `ExportTraceServiceRequest` with one `ResourceSpans` holding one `ScopeSpans` per
/// instrumentation scope (in order of first appearance); nothing for an empty batch.
/// `resource` is an encoded `Resource` body.
pub(crate) fn encode_request(
    buf: &mut Vec<u8>,
    resource: &[u8],
    resource_schema_url: &str,
    spans: &[SpanData],
) {
    if spans.is_empty() {
        return;
    }
    // Usually one scope, so a linear scan beats hashing every span's scope.
    let mut scopes: Vec<(&InstrumentationScope, Vec<&SpanData>)> = Vec::new();
    for span in spans {
        let scope = &span.instrumentation_scope;
        match scopes.iter_mut().find(|(s, _)| *s == scope) {
            Some((_, group)) => group.push(span),
            None => scopes.push((scope, vec![span])),
        }
    }
    // ExportTraceServiceRequest.resource_spans = 1
    message(buf, 1, |b| {
        // ResourceSpans.resource = 1 (always present, as the SDK's exporter sends it)
        message(b, 1, |b| b.extend_from_slice(resource));
        for (scope, spans) in &scopes {
            // ResourceSpans.scope_spans = 2
            message(b, 2, |b| scope_spans(b, scope, spans));
        }
        // ResourceSpans.schema_url = 3
        string(b, 3, resource_schema_url);
    });
}

fn scope_spans(buf: &mut Vec<u8>, scope: &InstrumentationScope, spans: &[&SpanData]) {
    // ScopeSpans.scope = 1: InstrumentationScope{1 name, 2 version, 3 attributes}
    message(buf, 1, |b| {
        string(b, 1, scope.name());
        string(b, 2, scope.version().unwrap_or_default());
        for kv in scope.attributes() {
            message(b, 3, |b| key_value(b, kv.key.as_str(), &kv.value));
        }
    });
    for span in spans {
        // ScopeSpans.spans = 2
        message(buf, 2, |b| encode_span(b, span));
    }
    // ScopeSpans.schema_url = 3
    string(buf, 3, scope.schema_url().unwrap_or_default());
}

fn encode_span(buf: &mut Vec<u8>, span: &SpanData) {
    let ctx = &span.span_context;
    bytes(buf, 1, &ctx.trace_id().to_bytes());
    bytes(buf, 2, &ctx.span_id().to_bytes());
    string(buf, 3, &ctx.trace_state().header());
    if span.parent_span_id != SpanId::INVALID {
        bytes(buf, 4, &span.parent_span_id.to_bytes());
    }
    string(buf, 5, &span.name);
    uint(buf, 6, span_kind(&span.span_kind));
    fixed64(buf, 7, to_nanos(span.start_time));
    fixed64(buf, 8, to_nanos(span.end_time));
    attributes(buf, 9, &span.attributes);
    uint(buf, 10, u64::from(span.dropped_attributes_count));
    for event in span.events.iter() {
        // Span.Event{1 time_unix_nano, 2 name, 3 attributes, 4 dropped_attributes_count}
        message(buf, 11, |b| {
            fixed64(b, 1, to_nanos(event.timestamp));
            string(b, 2, &event.name);
            attributes(b, 3, &event.attributes);
            uint(b, 4, u64::from(event.dropped_attributes_count));
        });
    }
    uint(buf, 12, u64::from(span.events.dropped_count));
    for link in span.links.iter() {
        // Span.Link{1 trace_id, 2 span_id, 3 trace_state, 4 attributes,
        // 5 dropped_attributes_count, 6 flags}
        let lc = &link.span_context;
        message(buf, 13, |b| {
            bytes(b, 1, &lc.trace_id().to_bytes());
            bytes(b, 2, &lc.span_id().to_bytes());
            string(b, 3, &lc.trace_state().header());
            attributes(b, 4, &link.attributes);
            uint(b, 5, u64::from(link.dropped_attributes_count));
            fixed32(b, 6, span_flags(lc, lc.is_remote()));
        });
    }
    uint(buf, 14, u64::from(span.links.dropped_count));
    // Status{2 message, 3 code}; always present, as the SDK's transform sets it.
    message(buf, 15, |b| {
        let (code, description) = match &span.status {
            Status::Unset => (0, ""),
            Status::Ok => (1, ""),
            Status::Error { description } => (2, description.as_ref()),
        };
        string(b, 2, description);
        uint(b, 3, code);
    });
    fixed32(buf, 16, span_flags(ctx, span.parent_span_is_remote));
}

/// opentelemetry-proto's `build_span_flags`: the W3C trace flags, "has is-remote" (0x100),
/// and "is remote" (0x200) when `remote`.
fn span_flags(ctx: &SpanContext, remote: bool) -> u32 {
    let mut flags = u32::from(ctx.trace_flags().to_u8()) | 0x100;
    if remote {
        flags |= 0x200;
    }
    flags
}

fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

/// Nanoseconds since the epoch; 0 before it (as the SDK's transform).
pub(super) fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn attributes(buf: &mut Vec<u8>, field: u32, kvs: &[KeyValue]) {
    for kv in kvs {
        message(buf, field, |b| key_value(b, kv.key.as_str(), &kv.value));
    }
}

/// KeyValue{1 key, 2 value: AnyValue}.
fn key_value(buf: &mut Vec<u8>, key: &str, value: &Value) {
    string(buf, 1, key);
    message(buf, 2, |b| any_value(b, value));
}

/// AnyValue's oneof: 1 string, 2 bool, 3 int, 4 double, 5 array (ArrayValue{1 values}).
/// A oneof member is written even when it holds its type's default value.
fn any_value(buf: &mut Vec<u8>, value: &Value) {
    match value {
        Value::String(s) => string_always(buf, 1, s.as_str()),
        Value::Bool(v) => {
            key(buf, 2, VARINT);
            varint(buf, u64::from(*v));
        }
        Value::I64(v) => int64_always(buf, *v),
        Value::F64(v) => double_always(buf, *v),
        Value::Array(array) => message(buf, 5, |b| match array {
            Array::Bool(vs) => {
                for v in vs {
                    message(b, 1, |b| {
                        key(b, 2, VARINT);
                        varint(b, u64::from(*v));
                    });
                }
            }
            Array::I64(vs) => {
                for v in vs {
                    message(b, 1, |b| int64_always(b, *v));
                }
            }
            Array::F64(vs) => {
                for v in vs {
                    message(b, 1, |b| double_always(b, *v));
                }
            }
            Array::String(vs) => {
                for v in vs {
                    message(b, 1, |b| string_always(b, 1, v.as_str()));
                }
            }
            // A future array type: an empty array rather than a failed batch.
            _ => {}
        }),
        // A future value type: an empty AnyValue rather than a failed batch.
        _ => {}
    }
}

fn int64_always(buf: &mut Vec<u8>, v: i64) {
    key(buf, 3, VARINT);
    // int64 is the two's complement as a 64-bit varint (negatives take 10 bytes).
    varint(buf, v as u64);
}

fn double_always(buf: &mut Vec<u8>, v: f64) {
    key(buf, 4, FIXED64);
    buf.extend_from_slice(&v.to_bits().to_le_bytes());
}

// --- protobuf wire format ---

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

/// A non-zero unsigned varint field (proto3 leaves out zero).
pub(super) fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, VARINT);
        varint(buf, v);
    }
}

pub(super) fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        key(buf, field, FIXED64);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    if v != 0 {
        key(buf, field, FIXED32);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

pub(super) fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        string_bytes(buf, field, data);
    }
}

/// A non-empty string field (proto3 leaves out "").
pub(super) fn string(buf: &mut Vec<u8>, field: u32, s: &str) {
    if !s.is_empty() {
        string_bytes(buf, field, s.as_bytes());
    }
}

pub(super) fn string_always(buf: &mut Vec<u8>, field: u32, s: &str) {
    string_bytes(buf, field, s.as_bytes());
}

fn string_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    key(buf, field, LEN);
    varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

/// A length-delimited sub-message written by `body` straight into `buf`: one byte is
/// reserved for the length, and the body is shifted only when its length needs more.
pub(super) fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    key(buf, field, LEN);
    let at = buf.len();
    buf.push(0);
    body(buf);
    let end = buf.len();
    let len = end - at - 1;
    if len < 0x80 {
        buf[at] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(10);
    varint(&mut prefix, len as u64);
    let extra = prefix.len() - 1;
    buf.resize(end + extra, 0);
    buf.copy_within(at + 1..end, at + 1 + extra);
    buf[at..at + prefix.len()].copy_from_slice(&prefix);
}

/// For the tests: the request as the exporter would post it for `resource`.
#[cfg(test)]
fn encode_for(resource: &Resource, spans: &[SpanData]) -> Vec<u8> {
    let mut encoded = Vec::new();
    encode_resource(&mut encoded, resource);
    let mut buf = Vec::new();
    encode_request(
        &mut buf,
        &encoded,
        resource.schema_url().unwrap_or_default(),
        spans,
    );
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{Event, Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry::{KeyValue, StringValue};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind as PKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use prost::Message as _;
    use std::borrow::Cow;

    fn scope(name: &'static str) -> InstrumentationScope {
        InstrumentationScope::builder(name)
            .with_version("1.2.3")
            .with_attributes([KeyValue::new("scope.attr", "x")])
            .build()
    }

    fn span(n: u8, scope: InstrumentationScope) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                TraceId::from_bytes([n; 16]),
                SpanId::from_bytes([n, 1, 2, 3, 4, 5, 6, 7]),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Owned(format!("chat ünïcødé ✓ {n}")),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            end_time: UNIX_EPOCH + Duration::from_nanos(1_700_000_001_987_654_321),
            attributes: vec![
                KeyValue::new("s", "välue ✓ 日本"),
                KeyValue::new("empty", ""),
                KeyValue::new("neg", -42_i64),
                KeyValue::new("min", i64::MIN),
                KeyValue::new("zero", 0_i64),
                KeyValue::new("f", -1.5_f64),
                KeyValue::new("f0", 0.0_f64),
                KeyValue::new("t", true),
                KeyValue::new("b", false),
                KeyValue::new(
                    "as",
                    Value::Array(Array::String(vec![
                        StringValue::from("stop"),
                        StringValue::from("ünï"),
                    ])),
                ),
                KeyValue::new("ai", Value::Array(Array::I64(vec![1, -2, 0]))),
                KeyValue::new("af", Value::Array(Array::F64(vec![0.5, -3.25]))),
                KeyValue::new("ab", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("aempty", Value::Array(Array::String(vec![]))),
            ],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: scope,
        }
    }

    fn resource() -> Resource {
        Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", "tollgate"),
                KeyValue::new("service.instance.id", "nöde-1"),
            ])
            .build()
    }

    fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(bytes).unwrap()
    }

    /// What opentelemetry-otlp's exporter would have sent, scopes sorted by name (it
    /// groups through a HashMap).
    fn reference(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        let resource: ResourceAttributesWithSchema = resource.into();
        let mut resource_spans = group_spans_by_resource_and_scope(spans, &resource);
        for r in &mut resource_spans {
            r.scope_spans.sort_by(|a, b| {
                let name = |s: &opentelemetry_proto::tonic::trace::v1::ScopeSpans| {
                    s.scope.as_ref().map(|s| s.name.clone())
                };
                name(a).cmp(&name(b))
            });
        }
        ExportTraceServiceRequest { resource_spans }
    }

    fn any(v: PValue) -> Option<AnyValue> {
        Some(AnyValue { value: Some(v) })
    }

    #[test]
    fn a_span_decodes_field_by_field() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let data = span(7, scope("tollgate"));
        let req = decode(&encode_for(&res, std::slice::from_ref(&data)));
        assert_eq!(req.resource_spans.len(), 1);
        let rs = &req.resource_spans[0];
        let mut res_attrs: Vec<(String, Option<AnyValue>)> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        res_attrs.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            res_attrs,
            vec![
                (
                    "service.instance.id".into(),
                    any(PValue::StringValue("nöde-1".into()))
                ),
                (
                    "service.name".into(),
                    any(PValue::StringValue("tollgate".into()))
                ),
            ]
        );
        assert_eq!(rs.scope_spans.len(), 1);
        let ss = &rs.scope_spans[0];
        let sc = ss.scope.as_ref().unwrap();
        assert_eq!(sc.name, "tollgate");
        assert_eq!(sc.version, "1.2.3");
        assert_eq!(sc.attributes[0].key, "scope.attr");
        assert_eq!(ss.spans.len(), 1);
        let s = &ss.spans[0];
        assert_eq!(s.trace_id, vec![7; 16]);
        assert_eq!(s.span_id, vec![7, 1, 2, 3, 4, 5, 6, 7]);
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.trace_state, "");
        assert_eq!(s.name, "chat ünïcødé ✓ 7");
        assert_eq!(s.kind, PKind::Server as i32);
        assert_eq!(s.start_time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(s.end_time_unix_nano, 1_700_000_001_987_654_321);
        // Sampled, local parent: trace flags | "has is-remote".
        assert_eq!(s.flags, 0x101);
        let status = s.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Unset as i32);
        assert_eq!(status.message, "");
        let attrs: Vec<(&str, Option<AnyValue>)> = s
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        let strings = |v: &[&str]| {
            any(PValue::ArrayValue(ArrayValue {
                values: v
                    .iter()
                    .map(|s| AnyValue {
                        value: Some(PValue::StringValue((*s).into())),
                    })
                    .collect(),
            }))
        };
        let array = |v: Vec<PValue>| {
            any(PValue::ArrayValue(ArrayValue {
                values: v.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
            }))
        };
        assert_eq!(
            attrs,
            vec![
                ("s", any(PValue::StringValue("välue ✓ 日本".into()))),
                ("empty", any(PValue::StringValue(String::new()))),
                ("neg", any(PValue::IntValue(-42))),
                ("min", any(PValue::IntValue(i64::MIN))),
                ("zero", any(PValue::IntValue(0))),
                ("f", any(PValue::DoubleValue(-1.5))),
                ("f0", any(PValue::DoubleValue(0.0))),
                ("t", any(PValue::BoolValue(true))),
                ("b", any(PValue::BoolValue(false))),
                ("as", strings(&["stop", "ünï"])),
                (
                    "ai",
                    array(vec![
                        PValue::IntValue(1),
                        PValue::IntValue(-2),
                        PValue::IntValue(0)
                    ])
                ),
                (
                    "af",
                    array(vec![PValue::DoubleValue(0.5), PValue::DoubleValue(-3.25)])
                ),
                (
                    "ab",
                    array(vec![PValue::BoolValue(true), PValue::BoolValue(false)])
                ),
                ("aempty", strings(&[])),
            ]
        );
        // And exactly what the SDK's transform produces.
        assert_eq!(req, reference(&res, vec![data]));
    }

    #[test]
    fn error_status_parent_and_remote_flags() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let mut data = span(3, scope("tollgate"));
        data.span_kind = SpanKind::Client;
        data.parent_span_id = SpanId::from_bytes([0xaa; 8]);
        data.parent_span_is_remote = true;
        data.status = Status::error("429 — trop de requêtes");
        data.dropped_attributes_count = 4;
        let req = decode(&encode_for(&res, std::slice::from_ref(&data)));
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.kind, PKind::Client as i32);
        assert_eq!(s.parent_span_id, vec![0xaa; 8]);
        assert_eq!(s.flags, 0x301);
        assert_eq!(s.dropped_attributes_count, 4);
        let status = s.status.as_ref().unwrap();
        assert_eq!(status.code, StatusCode::Error as i32);
        assert_eq!(status.message, "429 — trop de requêtes");
        assert_eq!(req, reference(&res, vec![data]));
    }

    #[test]
    fn every_kind_ok_status_events_links_and_trace_state_match_the_sdk() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let kinds = [
            SpanKind::Internal,
            SpanKind::Server,
            SpanKind::Client,
            SpanKind::Producer,
            SpanKind::Consumer,
        ];
        let spans: Vec<SpanData> = kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let n = u8::try_from(i).unwrap();
                let mut s = span(n + 1, scope("tollgate"));
                s.span_kind = kind.clone();
                s.status = Status::Ok;
                s.span_context = SpanContext::new(
                    s.span_context.trace_id(),
                    s.span_context.span_id(),
                    TraceFlags::default(),
                    false,
                    TraceState::from_key_value([("vendor", "v1")]).unwrap(),
                );
                let mut events = SpanEvents::default();
                events.events.push(Event::new(
                    "exception",
                    UNIX_EPOCH + Duration::from_secs(5),
                    vec![KeyValue::new("exception.message", "bøom")],
                    2,
                ));
                events.dropped_count = 1;
                s.events = events;
                let mut links = SpanLinks::default();
                links.links.push(Link::new(
                    SpanContext::new(
                        TraceId::from_bytes([9; 16]),
                        SpanId::from_bytes([8; 8]),
                        TraceFlags::SAMPLED,
                        true,
                        TraceState::default(),
                    ),
                    vec![KeyValue::new("link.n", 3_i64)],
                    1,
                ));
                links.dropped_count = 5;
                s.links = links;
                s
            })
            .collect();
        let req = decode(&encode_for(&res, &spans));
        let got: Vec<i32> = req.resource_spans[0].scope_spans[0]
            .spans
            .iter()
            .map(|s| s.kind)
            .collect();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!(s.trace_state, "vendor=v1");
        assert_eq!(s.status.as_ref().unwrap().code, StatusCode::Ok as i32);
        assert_eq!(s.events.len(), 1);
        assert_eq!(s.events[0].name, "exception");
        assert_eq!(s.dropped_events_count, 1);
        assert_eq!(s.links[0].flags, 0x301);
        assert_eq!(s.dropped_links_count, 5);
        assert_eq!(req, reference(&res, spans));
    }

    #[test]
    fn spans_are_grouped_by_scope() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let other = InstrumentationScope::builder("another").build();
        let spans = vec![
            span(1, scope("tollgate")),
            span(2, other.clone()),
            span(3, scope("tollgate")),
        ];
        let req = decode(&encode_for(&res, &spans));
        let names: Vec<(String, usize)> = req.resource_spans[0]
            .scope_spans
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.clone(), s.spans.len()))
            .collect();
        assert_eq!(names, vec![("tollgate".into(), 2), ("another".into(), 1)]);
        let mut sorted = req.clone();
        sorted.resource_spans[0].scope_spans.sort_by(|a, b| {
            a.scope
                .as_ref()
                .unwrap()
                .name
                .cmp(&b.scope.as_ref().unwrap().name)
        });
        assert_eq!(sorted, reference(&res, spans));
    }

    #[test]
    fn long_messages_get_multi_byte_lengths() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let mut data = span(1, scope("tollgate"));
        data.attributes
            .push(KeyValue::new("long", "x".repeat(70_000)));
        data.name = Cow::Owned("n".repeat(300));
        let spans: Vec<SpanData> = (0..50).map(|_| data.clone()).collect();
        let req = decode(&encode_for(&res, &spans));
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 50);
        assert_eq!(req, reference(&res, spans));
    }

    #[test]
    fn empty_resource_and_empty_batch() {
        // One instance: a Resource's attribute order is its HashMap's.
        let res = resource();
        let data = span(1, scope("tollgate"));
        let empty = Resource::builder_empty().build();
        let req = decode(&encode_for(&empty, std::slice::from_ref(&data)));
        assert!(
            req.resource_spans[0]
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .is_empty()
        );
        assert_eq!(req, reference(&empty, vec![data]));

        let bytes = encode_for(&res, &[]);
        assert!(bytes.is_empty());
        assert!(decode(&bytes).resource_spans.is_empty());
    }

    /// One HTTP exchange on a raw socket: returns the request head and body length.
    fn serve_once(status: &str) -> (String, std::thread::JoinHandle<(String, usize)>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let status = status.to_string();
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            reader.get_mut().write_all(reply.as_bytes()).unwrap();
            assert!(!decode(&body).resource_spans.is_empty());
            (head, len)
        });
        (url, handle)
    }

    #[test]
    fn posts_protobuf_with_headers_and_reports_failures() {
        let headers: std::collections::HashMap<String, String> = [
            ("x-api-key".to_string(), "s3cret".to_string()),
            ("bad header".to_string(), "skipped".to_string()),
        ]
        .into();
        let (url, server) = serve_once("200 OK");
        let mut exporter =
            OtlpHttpSpanExporter::new(url, &headers, Duration::from_secs(5)).unwrap();
        exporter.set_resource(&resource());
        let batch = vec![span(1, scope("tollgate"))];
        futures::executor::block_on(exporter.export(batch.clone())).unwrap();
        let (head, len) = server.join().unwrap();
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("post /v1/traces http/1.1"), "{head}");
        assert!(
            head.contains("content-type: application/x-protobuf"),
            "{head}"
        );
        assert!(head.contains("x-api-key: s3cret"), "{head}");
        assert!(!head.contains("bad header"), "{head}");
        assert!(len > 0);
        // An empty batch posts nothing.
        futures::executor::block_on(exporter.export(Vec::new())).unwrap();

        let (url, server) = serve_once("503 Service Unavailable");
        let exporter = OtlpHttpSpanExporter::new(url, &headers, Duration::from_secs(5)).unwrap();
        let err = futures::executor::block_on(exporter.export(batch.clone())).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        server.join().unwrap();

        exporter.shutdown().unwrap();
        assert!(futures::executor::block_on(exporter.export(batch)).is_err());
    }

    #[test]
    fn a_redirecting_collector_is_an_error_and_its_target_hears_nothing() {
        let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        target.set_nonblocking(true).unwrap();
        let location = format!("http://{}/v1/traces", target.local_addr().unwrap());
        let headers: std::collections::HashMap<String, String> =
            [("x-api-key".to_string(), "s3cret".to_string())].into();
        for status in ["301 Moved Permanently", "307 Temporary Redirect"] {
            // The status line carries the Location header after it.
            let (url, server) = serve_once(&format!("{status}\r\nlocation: {location}"));
            let exporter =
                OtlpHttpSpanExporter::new(url, &headers, Duration::from_secs(5)).unwrap();
            let err = futures::executor::block_on(exporter.export(vec![span(1, scope("t"))]))
                .unwrap_err();
            assert!(err.to_string().contains(&status[..3]), "{err}");
            server.join().unwrap();
            assert_eq!(
                target.accept().map(|_| ()).unwrap_err().kind(),
                std::io::ErrorKind::WouldBlock,
                "the exporter followed a {status}"
            );
        }
    }

    #[test]
    fn an_unreachable_collector_is_an_error() {
        // Bound then dropped: nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let exporter = OtlpHttpSpanExporter::new(
            format!("http://127.0.0.1:{port}/v1/traces"),
            &std::collections::HashMap::new(),
            Duration::from_secs(2),
        )
        .unwrap();
        let batch = vec![span(1, scope("tollgate"))];
        assert!(futures::executor::block_on(exporter.export(batch)).is_err());
    }

    #[test]
    fn varints_round_trip() {
        for v in [
            0_u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            varint(&mut buf, v);
            assert_eq!(
                prost::encoding::decode_varint(&mut buf.as_slice()).unwrap(),
                v
            );
            assert_eq!(buf.len(), prost::encoding::encoded_len_varint(v));
        }
    }
}
