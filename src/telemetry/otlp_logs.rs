//! The analytics entries as OTLP log records (`TOLLGATE_ANALYTICS_LOG=otlp`; docs/behaviour.md,
//! "Usage, analytics and telemetry"): http/protobuf posts to `<endpoint>/v1/logs`.
//!
//! The analytics log's writer thread (analytics.rs) hands over its buffered entries; each
//! one is a fixed-size context prefix ([`write_context`]: time, trace and span ids, trace
//! flags) followed by the entry's JSON line. Each becomes one `LogRecord` whose body is that
//! JSON, byte for byte what a file sink would hold, severity INFO, event name
//! `tollgate.analytics`, with the request's trace and span ids, under the same resource as
//! the spans. The message is written straight into protobuf bytes with the span encoder's
//! helpers (otlp_http.rs) rather than through the SDK's log pipeline: the analytics writer
//! already batches off the request path, so a second queue, thread and per-record copy
//! would buy nothing. Field numbers are those of opentelemetry-proto 0.32's generated
//! types (`opentelemetry.proto.{collector.logs,logs,common,resource}.v1`).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

use crate::config::{OtlpSignal, Settings};
use crate::telemetry::otlp_http::{
    bytes, encode_resource, fixed32, fixed64, message, post, string, string_always, to_nanos, uint,
};
use crate::telemetry::{otel, otlp_tls, semconv};

/// The `event_name` of every analytics record.
pub const EVENT_NAME: &str = "tollgate.analytics";
/// OTLP's SeverityNumber for INFO.
const SEVERITY_INFO: u64 = 9;
/// Records per post, and the body size after which a post is sent early.
const RECORDS_PER_POST: usize = 1024;
const BYTES_PER_POST: usize = 2 * 1024 * 1024;

/// What an analytics entry knows of its request, carried to its log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryContext {
    /// When the request finished.
    pub time: SystemTime,
    /// All zero when unknown.
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl EntryContext {
    /// No request behind the entry: now, without trace ids.
    pub fn now() -> EntryContext {
        EntryContext {
            time: SystemTime::now(),
            trace_id: [0; 16],
            span_id: [0; 8],
            sampled: false,
        }
    }
}

/// Bytes of the context prefix: 33 bytes (time as big-endian nanoseconds, trace id, span
/// id, flags) in hex, so the buffer stays newline-delimited text.
pub const CONTEXT_LEN: usize = 66;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `context` as the prefix of an entry (on the request path: no allocation).
pub fn write_context(buf: &mut Vec<u8>, context: &EntryContext) {
    let nanos = to_nanos(context.time);
    let flags = [u8::from(context.sampled)];
    for part in [
        &nanos.to_be_bytes()[..],
        &context.trace_id[..],
        &context.span_id[..],
        &flags[..],
    ] {
        for &b in part {
            buf.push(HEX_DIGITS[usize::from(b >> 4)]);
            buf.push(HEX_DIGITS[usize::from(b & 0x0f)]);
        }
    }
}

fn read_context(prefix: &[u8]) -> Option<EntryContext> {
    let mut raw = [0u8; CONTEXT_LEN / 2];
    for (i, pair) in prefix.get(..CONTEXT_LEN)?.chunks_exact(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        raw[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    let mut nanos = [0u8; 8];
    nanos.copy_from_slice(&raw[..8]);
    let mut trace_id = [0u8; 16];
    trace_id.copy_from_slice(&raw[8..24]);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(&raw[24..32]);
    Some(EntryContext {
        time: UNIX_EPOCH + Duration::from_nanos(u64::from_be_bytes(nanos)),
        trace_id,
        span_id,
        sampled: raw[32] & 1 == 1,
    })
}

/// Posts analytics entries to `<endpoint>/v1/logs`.
pub struct OtlpLogExporter {
    client: reqwest::blocking::Client,
    url: String,
    headers: HeaderMap,
    /// The encoded `Resource` message body and its schema URL.
    resource: Vec<u8>,
    resource_schema_url: String,
}

impl fmt::Debug for OtlpLogExporter {
    // Not derived: the headers often carry a vendor's API key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpLogExporter")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl OtlpLogExporter {
    /// From the OTLP settings (endpoint, logs headers and TLS files, the resource of the
    /// spans); fails when no endpoint is set or a TLS file is unusable.
    pub fn from_settings(settings: &Settings, node_id: Option<&str>) -> anyhow::Result<Self> {
        let Some(endpoint) = settings.otlp_endpoint() else {
            anyhow::bail!("TOLLGATE_ANALYTICS_LOG=otlp needs OTEL_EXPORTER_OTLP_ENDPOINT");
        };
        let signal = settings.otlp_signal(OtlpSignal::Logs);
        let client = otlp_tls::blocking_client(otel::EXPORT_TIMEOUT, &signal)?;
        let resource = otel::resource(settings, node_id);
        let mut encoded = Vec::new();
        encode_resource(&mut encoded, &resource);
        Ok(OtlpLogExporter {
            client,
            url: otel::signal_url(endpoint, "v1/logs"),
            headers: crate::telemetry::otlp_http::header_map(&otel::signal_headers(&signal)),
            resource: encoded,
            resource_schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        })
    }

    /// Exports a batch of prefixed, newline-terminated entries, in posts of at most
    /// `RECORDS_PER_POST` records; stops at the first failed post.
    pub fn export(&self, batch: &[u8]) -> Result<(), String> {
        let observed = to_nanos(SystemTime::now());
        let mut lines = batch
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .peekable();
        while lines.peek().is_some() {
            let mut body = Vec::with_capacity(batch.len().min(BYTES_PER_POST) + 1024);
            let mut records = 0;
            encode_request(&mut body, &self.resource, &self.resource_schema_url, |b| {
                while records < RECORDS_PER_POST && b.len() < BYTES_PER_POST {
                    let Some(line) = lines.next() else { break };
                    encode_record(b, line, observed);
                    records += 1;
                }
            });
            post(&self.client, &self.url, &self.headers, body)
                .map_err(|e| format!("OTLP log export: {e}"))?;
        }
        Ok(())
    }
}

/// ExportLogsServiceRequest{1 resource_logs: ResourceLogs{1 resource, 2 scope_logs:
/// ScopeLogs{1 scope, 2 log_records, 3 schema_url}, 3 schema_url}}; `records` writes the
/// `LogRecord` fields (2) of the one scope.
fn encode_request(
    buf: &mut Vec<u8>,
    resource: &[u8],
    resource_schema_url: &str,
    records: impl FnOnce(&mut Vec<u8>),
) {
    message(buf, 1, |b| {
        message(b, 1, |b| b.extend_from_slice(resource));
        message(b, 2, |b| {
            // InstrumentationScope{1 name, 2 version}
            message(b, 1, |b| {
                string(b, 1, semconv::INSTRUMENTATION_SCOPE);
                string(b, 2, env!("CARGO_PKG_VERSION"));
            });
            records(b);
        });
        string(b, 3, resource_schema_url);
    });
}

/// One LogRecord (ScopeLogs field 2) from a prefixed entry; an entry without a readable
/// prefix is sent as it is, without time or ids, rather than lost.
fn encode_record(buf: &mut Vec<u8>, line: &[u8], observed: u64) {
    let (context, json) = match read_context(line) {
        Some(context) => (Some(context), &line[CONTEXT_LEN..]),
        None => (None, line),
    };
    message(buf, 2, |b| {
        // LogRecord{1 time_unix_nano, 2 severity_number, 3 severity_text, 5 body,
        // 8 flags, 9 trace_id, 10 span_id, 11 observed_time_unix_nano, 12 event_name}
        if let Some(context) = &context {
            fixed64(b, 1, to_nanos(context.time));
        }
        uint(b, 2, SEVERITY_INFO);
        string(b, 3, "INFO");
        // AnyValue{1 string_value}: the JSON as written by serde_json (valid UTF-8).
        message(b, 5, |b| {
            string_always(b, 1, &String::from_utf8_lossy(json));
        });
        if let Some(context) = context.filter(|c| c.trace_id != [0; 16]) {
            fixed32(b, 8, u32::from(context.sampled));
            bytes(b, 9, &context.trace_id);
            if context.span_id != [0; 8] {
                bytes(b, 10, &context.span_id);
            }
        }
        fixed64(b, 11, observed);
        string(b, 12, EVENT_NAME);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as PValue;
    use prost::Message as _;

    #[test]
    fn entries_become_log_records() {
        let context = EntryContext {
            time: UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            trace_id: [0xab; 16],
            span_id: [0x0a; 8],
            sampled: true,
        };
        let mut batch = Vec::new();
        write_context(&mut batch, &context);
        assert_eq!(batch.len(), CONTEXT_LEN);
        assert!(!batch.contains(&b'\n'));
        assert_eq!(read_context(&batch), Some(context));
        batch.extend_from_slice(b"{\"a\":\"\xc3\xa9\"}\n");
        write_context(&mut batch, &EntryContext::now());
        batch.extend_from_slice(b"{\"b\":2}\n");

        let mut body = Vec::new();
        encode_request(&mut body, &[], "", |b| {
            for line in batch.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                encode_record(b, line, 42);
            }
        });
        let decoded = ExportLogsServiceRequest::decode(body.as_slice()).expect("decodes");
        let scope = &decoded.resource_logs[0].scope_logs[0];
        assert_eq!(
            scope.scope.as_ref().map(|s| s.name.as_str()),
            Some("tollgate")
        );
        let records = &scope.log_records;
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first.time_unix_nano, 1_700_000_000_123_456_789);
        assert_eq!(first.observed_time_unix_nano, 42);
        assert_eq!(first.severity_number, 9);
        assert_eq!(first.severity_text, "INFO");
        assert_eq!(first.event_name, EVENT_NAME);
        assert_eq!(first.trace_id, vec![0xab; 16]);
        assert_eq!(first.span_id, vec![0x0a; 8]);
        assert_eq!(first.flags, 1);
        assert_eq!(
            first.body.as_ref().and_then(|b| b.value.clone()),
            Some(PValue::StringValue("{\"a\":\"é\"}".into()))
        );
        let second = &records[1];
        assert!(second.trace_id.is_empty() && second.span_id.is_empty());
        assert_eq!(
            second.body.as_ref().and_then(|b| b.value.clone()),
            Some(PValue::StringValue("{\"b\":2}".into()))
        );
    }
}
