//! The per-request analytics log (docs/behaviour.md, "Usage, analytics and telemetry"): one JSON
//! line per proxied request.
//!
//! Workers serialise their line (typed, borrowed fields — no `Value` tree) and append it to
//! a shared in-memory buffer; a dedicated thread swaps the buffer out and writes it every
//! `FLUSH_EVERY`. A worker never blocks on `write(2)` and never wakes a thread per line
//! (the benchmark's profile showed both costing more than the rest of the log path). The
//! buffer is bounded: when the writer falls behind, lines are dropped and counted, never
//! silently. `flush()` drains it at shutdown. A failed write (full disk, closed pipe) loses
//! the lines of its batch: they are counted (`write_failures`, exported with the usage
//! metrics and shown in `/status`) and logged at most once per `FAILURE_LOG_EVERY`; the
//! writer thread never panics and workers never wait for it.
//!
//! With the OTLP sink (`TOLLGATE_ANALYTICS_LOG=otlp`) the same buffer and thread are used;
//! each line is preceded by its request's time and trace ids (a fixed-size text prefix,
//! `otlp_logs::write_context`), and the writer posts the batch as OTLP log records
//! (`otlp_logs`) once a second instead of writing it every 50 ms.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::otlp_logs::{EntryContext, OtlpLogExporter};

/// Where the writer thread sends a batch.
enum Sink {
    Stream(Box<dyn Write + Send>),
    Otlp(OtlpLogExporter),
}

impl Sink {
    fn write_batch(&mut self, batch: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stream(w) => w.write_all(batch).and_then(|()| w.flush()),
            Sink::Otlp(exporter) => exporter.export(batch).map_err(std::io::Error::other),
        }
    }
}

/// How often the writer drains the buffer: a file or stdout, and an OTLP receiver (fewer,
/// larger posts; the OTel SDKs' batch delay for logs).
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const OTLP_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Bytes waiting for the writer before new lines are dropped.
const MAX_PENDING: usize = 16 * 1024 * 1024;
/// At most one log message per this interval about failed writes (the log may share the
/// failing disk or pipe; one message per line would make things worse).
/// The largest emptied batch buffer kept for reuse.
const SPARE_KEEP: usize = 4 * 1024 * 1024;
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// The last written batch's buffer, emptied: swapped in for `pending` so the workers
    /// append into memory that is already there instead of regrowing it every drain.
    spare: Mutex<Vec<u8>>,
    sink: Mutex<Sink>,
    /// Lines carry their request's context prefix (the OTLP sink).
    with_context: bool,
    dropped: AtomicU64,
    /// Lines lost because writing them failed.
    write_failures: AtomicU64,
    /// When a failed write was last logged (guarded by the sink lock's holder only).
    last_failure_log: Mutex<Option<Instant>>,
}

impl Shared {
    fn append(&self, bytes: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() + bytes.len() > MAX_PENDING {
            drop(pending);
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(dropped = n, "analytics log writer is behind; lines dropped");
            }
            return;
        }
        pending.extend_from_slice(bytes);
    }

    /// Writes what is pending; the sink lock keeps concurrent drains in order.
    fn drain(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let mut batch = {
            let spare = std::mem::take(&mut *self.spare.lock().unwrap_or_else(|e| e.into_inner()));
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.is_empty() {
                *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = spare;
                return;
            }
            std::mem::replace(&mut *pending, spare)
        };
        self.write_batch(&mut sink, &batch);
        // Kept for the next swap unless a burst made it large.
        if batch.capacity() <= SPARE_KEEP {
            batch.clear();
            *self.spare.lock().unwrap_or_else(|e| e.into_inner()) = batch;
        }
    }

    fn write_batch(&self, sink: &mut Sink, batch: &[u8]) {
        if let Err(e) = sink.write_batch(batch) {
            // Part of the batch may have been written; counting all of it errs on the side
            // of reporting a loss.
            let lines = batch.iter().filter(|&&b| b == b'\n').count();
            let total = self
                .write_failures
                .fetch_add(u64::try_from(lines).unwrap_or(u64::MAX), Ordering::Relaxed)
                .saturating_add(u64::try_from(lines).unwrap_or(u64::MAX));
            let mut last = self
                .last_failure_log
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|at| at.elapsed() >= FAILURE_LOG_EVERY) {
                *last = Some(Instant::now());
                tracing::error!(error = %e, lost_lines = total, "analytics log write failed; lines lost");
            }
        }
    }
}

/// Opens `path` for appending, created with mode 0600; an existing file is set to 0600.
fn open_owner_only(path: &str) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let file = options.open(path)?;
        if file.metadata()?.permissions().mode() & 0o777 != 0o600 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            tracing::info!(path, "tightened the analytics log's permissions to 0600");
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    options.open(path)
}

#[derive(Clone)]
pub struct AnalyticsLog {
    shared: Option<Arc<Shared>>,
}

impl AnalyticsLog {
    /// `stdout`, `off`, or a file path (appended to). The file is owner-only (0600), also
    /// when it existed before: its lines name tenants, keys and, when logged, payloads.
    /// `otlp` is refused here: it needs the exporter ([`AnalyticsLog::otlp`]).
    pub fn open(sink: &str) -> std::io::Result<AnalyticsLog> {
        let writer: Box<dyn Write + Send> = match sink {
            "off" => return Ok(AnalyticsLog::off()),
            "otlp" => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the otlp analytics log is opened with its exporter",
                ));
            }
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(open_owner_only(path)?),
        };
        Self::start(Sink::Stream(writer), false, FLUSH_EVERY)
    }

    /// Entries exported as OTLP log records.
    pub fn otlp(exporter: OtlpLogExporter) -> std::io::Result<AnalyticsLog> {
        Self::start(Sink::Otlp(exporter), true, OTLP_FLUSH_EVERY)
    }

    fn start(sink: Sink, with_context: bool, every: Duration) -> std::io::Result<AnalyticsLog> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            spare: Mutex::new(Vec::with_capacity(64 * 1024)),
            sink: Mutex::new(sink),
            with_context,
            dropped: AtomicU64::new(0),
            write_failures: AtomicU64::new(0),
            last_failure_log: Mutex::new(None),
        });
        let writer = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("tollgate-analytics".into())
            .spawn(move || {
                // Ends when the last handle is gone.
                while let Some(shared) = writer.upgrade() {
                    shared.drain();
                    drop(shared);
                    std::thread::sleep(every);
                }
            })?;
        Ok(AnalyticsLog {
            shared: Some(shared),
        })
    }

    /// A log that writes nothing.
    pub fn off() -> AnalyticsLog {
        AnalyticsLog { shared: None }
    }

    /// Appends one line with no request behind it (see [`AnalyticsLog::write_for`]).
    pub fn write<T: Serialize>(&self, line: &T) {
        self.write_for(line, EntryContext::now);
    }

    /// Appends one line (serialised here, on the caller's thread, without a `Value` tree,
    /// into this thread's scratch buffer: no allocation per line). `context` (the request's
    /// time and trace) is read only by the OTLP sink.
    pub fn write_for<T: Serialize>(&self, line: &T, context: impl FnOnce() -> EntryContext) {
        /// A scratch buffer larger than this (a logged payload) is not kept.
        const SCRATCH_KEEP: usize = 64 * 1024;
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let Some(shared) = &self.shared else { return };
        let mut context = Some(context);
        let mut write = |bytes: &mut Vec<u8>| {
            bytes.clear();
            if shared.with_context
                && let Some(context) = context.take()
            {
                super::otlp_logs::write_context(bytes, &context());
            }
            if let Err(e) = serde_json::to_writer(&mut *bytes, line) {
                tracing::error!(error = %e, "cannot serialise an analytics line");
                return;
            }
            bytes.push(b'\n');
            shared.append(bytes);
        };
        // A line written while the thread ends (its buffer already gone) gets its own.
        let kept = SCRATCH.try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut bytes) => {
                write(&mut bytes);
                if bytes.capacity() > SCRATCH_KEEP {
                    *bytes = Vec::new();
                }
            }
            Err(_) => write(&mut Vec::new()),
        });
        if kept.is_err() {
            write(&mut Vec::new());
        }
    }

    /// Writes everything pending now (shutdown).
    pub fn flush(&self) {
        if let Some(shared) = &self.shared {
            shared.drain();
        }
    }

    pub fn dropped(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
    }

    /// Lines lost because writing them to the sink failed (full disk, closed pipe).
    pub fn write_failures(&self) -> u64 {
        self.shared
            .as_ref()
            .map_or(0, |s| s.write_failures.load(Ordering::Relaxed))
    }
}

/// One analytics line: Kong's `ai.proxy.{meta,usage,payload}` plus `tollgate.{…}`.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub ai: Ai<'a>,
    pub tollgate: Tollgate<'a>,
}

/// Serialised by hand below: `plugins` sit beside `proxy`, and serde's `flatten` would turn
/// every line into a map serialisation (a measurable share of the line's cost).
#[derive(Debug)]
pub struct Ai<'a> {
    pub proxy: Proxy<'a>,
    /// Kong's per-plugin entries (`ai-request-transformer`, `ai-response-transformer`):
    /// the transformer policies' instruction calls, shaped like `proxy`.
    pub plugins: std::collections::BTreeMap<&'static str, Proxy<'a>>,
    /// Kong's `ai.payload.original_request`: the client's body before a prompt template
    /// replaced it, when the template's `log_original_request` is on.
    pub payload: Option<OriginalPayload<'a>>,
}

impl Serialize for Ai<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // The field names are static for `serialize_struct`; the plugin names are too.
        let fields = 1 + self.plugins.len() + usize::from(self.payload.is_some());
        let mut st = serializer.serialize_struct("Ai", fields)?;
        st.serialize_field("proxy", &self.proxy)?;
        for (name, entry) in &self.plugins {
            st.serialize_field(name, entry)?;
        }
        if let Some(payload) = &self.payload {
            st.serialize_field("payload", payload)?;
        }
        st.end()
    }
}

#[derive(Debug, Serialize)]
pub struct OriginalPayload<'a> {
    pub original_request: std::borrow::Cow<'a, str>,
}

#[derive(Debug, Serialize)]
pub struct Proxy<'a> {
    pub meta: Meta<'a>,
    pub usage: Usage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Payload<'a>>,
}

#[derive(Debug, Serialize)]
pub struct Meta<'a> {
    /// The route id (Kong's plugin id).
    pub plugin_id: Uuid,
    pub provider_name: &'a str,
    pub request_model: &'a str,
    pub response_model: &'a str,
    /// Milliseconds spent waiting for the upstream.
    pub llm_latency: u128,
}

#[derive(Debug, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub time_per_token: f64,
    /// USD, from the route's per-1M-token prices.
    pub cost: f64,
}

#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// The body as sent upstream (after translation).
    pub request: Option<std::borrow::Cow<'a, str>>,
    /// The body the client received.
    pub response: Option<&'a serde_json::Value>,
}

#[derive(Debug, Serialize)]
pub struct Tollgate<'a> {
    pub request_id: &'a str,
    pub tenant: Option<&'a str>,
    pub key_id: Uuid,
    pub route: &'a str,
    pub service: &'a str,
    pub status: u16,
    pub overhead_ms: f64,
    pub stream: bool,
    /// How a stream ended: `done`, `failed` (in-band error) or `client_disconnected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_end: Option<&'static str>,
    /// Some counts are the gateway's estimates because the provider did not report them
    /// (e.g. a stream cut before the provider's usage event; docs/architecture.md,
    /// Streaming, "Accounting").
    pub usage_estimated: bool,
    /// The policies that acted on the request; absent when none did.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub policies: &'a [super::event::PolicyEvent],
    /// The limit that refused the request (`tenant acme: tokens_per_minute 200000`);
    /// absent when none did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_refused: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(model: &str) -> Proxy<'_> {
        Proxy {
            meta: Meta {
                plugin_id: Uuid::nil(),
                provider_name: "openai",
                request_model: model,
                response_model: model,
                llm_latency: 7,
            },
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 2,
                total_tokens: 3,
                time_per_token: 0.5,
                cost: 0.25,
            },
            payload: None,
        }
    }

    /// Kong's shape: the plugins' entries beside `proxy`, then `payload`; neither when absent.
    #[test]
    fn plugin_entries_sit_beside_proxy() {
        let bare = Ai {
            proxy: proxy("a"),
            plugins: Default::default(),
            payload: None,
        };
        let value = serde_json::to_value(&bare).expect("json");
        assert_eq!(value.as_object().map(|o| o.len()), Some(1), "{value}");
        assert_eq!(value["proxy"]["meta"]["request_model"], "a");

        let mut plugins = std::collections::BTreeMap::new();
        plugins.insert("ai-request-transformer", proxy("b"));
        plugins.insert("ai-response-transformer", proxy("c"));
        let full = Ai {
            proxy: proxy("a"),
            plugins,
            payload: Some(OriginalPayload {
                original_request: "{\"x\":1}".into(),
            }),
        };
        let text = serde_json::to_string(&full).expect("json");
        let value: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(
            value["ai-request-transformer"]["meta"]["request_model"],
            "b"
        );
        assert_eq!(value["ai-response-transformer"]["usage"]["total_tokens"], 3);
        assert_eq!(value["payload"]["original_request"], "{\"x\":1}");
        let order: Vec<&str> = [
            "\"proxy\"",
            "\"ai-request-transformer\"",
            "\"ai-response-transformer\"",
            "\"payload\"",
        ]
        .into_iter()
        .collect();
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).expect(k)).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[derive(Serialize)]
    struct Probe {
        n: u32,
    }

    /// `/dev/full` answers every write with ENOSPC: the lines are counted as lost, nothing
    /// panics and writing more never blocks.
    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "needs /dev/full (Linux)")]
    fn failed_writes_are_counted() {
        assert!(
            std::path::Path::new("/dev/full").exists(),
            "this test needs /dev/full"
        );
        let log = AnalyticsLog::open("/dev/full").expect("open /dev/full");
        for n in 0..5 {
            log.write(&Probe { n });
        }
        log.flush();
        assert_eq!(log.write_failures(), 5);
        let started = Instant::now();
        for n in 0..1000 {
            log.write(&Probe { n });
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        log.flush();
        assert_eq!(log.write_failures(), 1005);
        assert_eq!(log.dropped(), 0);
    }

    #[test]
    fn good_writes_count_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("analytics.log");
        let log = AnalyticsLog::open(path.to_str().expect("utf-8 path")).expect("open");
        log.write(&Probe { n: 1 });
        log.flush();
        assert_eq!(log.write_failures(), 0);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"n\":1}\n");
    }
}
