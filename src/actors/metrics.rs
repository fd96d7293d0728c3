//! The metrics aggregator (docs/architecture.md, "Usage and telemetry").
//! Every proxied request whose tenant and route are known ends in one `UsageEvent`,
//! streamed or not, successful or failed. The proxy hands it to a `UsageSink`, which
//! queues it for the usage spool's writer thread (src/actors/spool.rs; the request never
//! waits; a full queue drops the event and counts it, exported).
//!
//! The spool writer passes each written event on to this actor, which gives it to the
//! telemetry observer (OTLP spans and metrics, built here, off the request path). Every
//! `flush_interval` the actor reads what the spool gained since its last write, sums it
//! into one row per minute × tenant × key × route × model × source (the proxy, or the
//! policy whose instruction call it was) and writes the rows to the store
//! in one transaction together with how far the spool is counted: the usage store is
//! filled from the spool only, so a failed write loses nothing (the next one reads the
//! same bytes again) and a kill loses nothing the spool has. `Shutdown` stops the writer,
//! then writes what is left until its deadline; what the database does not take stays in
//! the spool for the next start.
//!
//! The same write records each API key's `last_used_at` (the latest request end per key):
//! one transaction per flush instead of a write per request, and no configuration version
//! bump.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message,
    ResponseActFuture, WrapFuture,
};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::actors::spool::{self, Entry, Kind, Spool, SpoolRecord, SpoolSender};
use crate::store::{UsageStore, UsageWriteError};
pub use crate::telemetry::event::{UpstreamTiming, UsageEvent, UsageObserver};
use crate::telemetry::prometheus::{ProcessCounters, PromMetrics};

/// Events waiting between the spool writer and the aggregator (telemetry only: usage is
/// already in the spool).
pub const EVENT_QUEUE: usize = 65_536;
/// Spool bytes read into one store write (about 50 000 events).
const BATCH_BYTES: u64 = 16 << 20;
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// The proxy's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct UsageSink {
    spool: SpoolSender<UsageEvent>,
    /// Whether the written events go on to the aggregator: only when it has a telemetry
    /// observer (set by `MetricsAggregator::new`). Without one the event ends here, on the
    /// worker, instead of crossing two queues and two threads to be dropped.
    forward: Arc<AtomicBool>,
}

/// The written events on their way to the aggregator (for the telemetry).
pub struct UsageEvents(mpsc::Receiver<UsageEvent>);

impl UsageSink {
    /// Opens the usage spool in `dir` (what earlier runs left there is counted once the
    /// aggregator's store answers).
    pub fn open(dir: &Path) -> std::io::Result<(UsageSink, UsageEvents)> {
        Self::open_sized(dir, spool::SEGMENT_MAX_BYTES)
    }

    /// `open` with spool segments of `segment_max` bytes (tests use small ones).
    pub fn open_sized(dir: &Path, segment_max: u64) -> std::io::Result<(UsageSink, UsageEvents)> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let sink = UsageSink {
            spool: spool::open_sized(dir, tx, segment_max)?,
            forward: Arc::new(AtomicBool::new(true)),
        };
        Ok((sink, UsageEvents(rx)))
    }

    /// A request ended.
    pub fn record(&self, event: UsageEvent) {
        let record = SpoolRecord {
            id: event.id,
            kind: Kind::Done,
            at_ms: spool::unix_ms(event.started_at + event.duration),
            tenant_id: event.tenant_id,
            key_id: event.key_id,
            route_id: event.route_id,
            model: event.request_model.clone(),
            error: event.is_error(),
            prompt_tokens: event.prompt_tokens.unwrap_or(0),
            completion_tokens: event.completion_tokens.unwrap_or(0),
            cost: event.cost,
            latency_ms: event.duration.as_secs_f64() * 1000.0,
            source: event.policy_usage.map(str::to_string),
            rejected: event.rejected,
        };
        self.spool.send(Entry {
            record,
            forward: self.forward.load(Ordering::Relaxed).then_some(event),
        });
    }

    /// A stream started: spooled so that a kill mid-stream still leaves a billed record.
    pub fn begin(&self, record: SpoolRecord) {
        self.spool.send(Entry {
            record,
            forward: None,
        });
    }

    /// Events lost: never written to the spool (queue full, or the spool's disk failing
    /// too long).
    pub fn dropped(&self) -> u64 {
        self.spool.spool().stats.lost.load(Ordering::Relaxed)
    }

    pub fn spool(&self) -> &Arc<Spool> {
        self.spool.spool()
    }
}

pub struct MetricsAggregator {
    rx: mpsc::Receiver<UsageEvent>,
    store: Arc<dyn UsageStore>,
    observer: Option<Box<dyn UsageObserver>>,
    /// `GET /metrics`'s counters, when it is on (docs/behaviour.md, "Prometheus scraping").
    prometheus: Option<PromMetrics>,
    sink: UsageSink,
    /// Latest use of each key whose `last_used_at` write has not succeeded yet.
    keys_used: HashMap<Uuid, DateTime<Utc>>,
    flush_interval: Duration,
    last_flush: Instant,
    /// A write is in flight.
    flushing: Arc<AtomicBool>,
    /// The last write failed (logged once until one succeeds).
    failing: bool,
    reported_dropped: u64,
}

/// One write: the spool's progress from the store, the new bytes summed, the rows and
/// progress stored together. `Ok(true)` when more is waiting.
async fn write_once(
    store: &dyn UsageStore,
    spool: &Arc<Spool>,
    budget: u64,
) -> Result<(bool, HashMap<Uuid, DateTime<Utc>>), String> {
    for name in spool.unknown_marks() {
        let mark = store.spool_mark(&name).await?;
        spool.set_mark(&name, mark);
    }
    let reader = spool.clone();
    let batch = tokio::task::spawn_blocking(move || reader.collect(budget))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read the usage spool: {e}"))?;
    if batch.is_empty() {
        return Ok((false, HashMap::new()));
    }
    match store.apply_usage(&batch.rows(), &batch.marks).await {
        Ok(()) => {
            spool.counted(&batch.marks);
            Ok((batch.more, batch.keys))
        }
        Err(UsageWriteError::Counted(m)) => {
            spool.forget_marks(&batch.marks);
            Err(m)
        }
        Err(UsageWriteError::Failed(m)) => Err(m),
    }
}

impl MetricsAggregator {
    /// The actor that feeds the telemetry from `events` and the store from `sink`'s spool.
    pub fn new(
        sink: UsageSink,
        events: UsageEvents,
        store: Arc<dyn UsageStore>,
        observer: Option<Box<dyn UsageObserver>>,
        flush_interval: Duration,
    ) -> MetricsAggregator {
        sink.forward.store(observer.is_some(), Ordering::Relaxed);
        MetricsAggregator {
            rx: events.0,
            store,
            observer,
            prometheus: None,
            sink,
            keys_used: HashMap::new(),
            flush_interval,
            // The first tick counts what an earlier run left.
            last_flush: Instant::now()
                .checked_sub(flush_interval)
                .unwrap_or_else(Instant::now),
            flushing: Arc::new(AtomicBool::new(false)),
            failing: false,
            reported_dropped: 0,
        }
    }

    /// Also aggregates the events for `GET /metrics`: the written events come here even
    /// without an OTLP observer (the cost `forward` otherwise saves).
    pub fn with_prometheus(mut self, metrics: PromMetrics) -> MetricsAggregator {
        self.sink.forward.store(true, Ordering::Relaxed);
        self.prometheus = Some(metrics);
        self
    }

    fn drain(&mut self) {
        let mut any = false;
        while let Ok(event) = self.rx.try_recv() {
            any = true;
            if let Some(observer) = self.observer.as_mut() {
                observer.observe(&event);
            }
            if let Some(metrics) = self.prometheus.as_mut() {
                metrics.observe(&event);
            }
        }
        if any && let Some(observer) = self.observer.as_mut() {
            observer.drained();
        }
        let dropped = self.sink.dropped();
        if dropped != self.reported_dropped {
            self.reported_dropped = dropped;
            tracing::warn!(
                dropped,
                "usage events lost (spool queue full or disk failing)"
            );
            if let Some(observer) = self.observer.as_mut() {
                observer.dropped(dropped);
            }
        }
    }

    fn note_keys(&mut self, keys: HashMap<Uuid, DateTime<Utc>>) {
        for (key, at) in keys {
            let latest = self.keys_used.entry(key).or_insert(at);
            if *latest < at {
                *latest = at;
            }
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_flush = Instant::now();
        let store = self.store.clone();
        let spool = self.sink.spool().clone();
        let keys: Vec<(Uuid, DateTime<Utc>)> = self.keys_used.drain().collect();
        let write = async move {
            let written = write_once(store.as_ref(), &spool, BATCH_BYTES).await;
            let mut keys: HashMap<Uuid, DateTime<Utc>> = keys.into_iter().collect();
            if let Ok((_, used)) = &written {
                for (key, at) in used {
                    let latest = keys.entry(*key).or_insert(*at);
                    if *latest < *at {
                        *latest = *at;
                    }
                }
            }
            let list: Vec<(Uuid, DateTime<Utc>)> = keys.iter().map(|(k, v)| (*k, *v)).collect();
            let touched = store.touch_api_keys(&list).await;
            (written.map(|(more, _)| more), touched.err().map(|_| keys))
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(|(written, untouched), act, _| {
                    act.flushing.store(false, Ordering::Release);
                    match written {
                        Ok(more) => {
                            if act.failing {
                                tracing::info!("usage writes resumed");
                                act.failing = false;
                            }
                            if more {
                                // Catching up: the next tick writes again.
                                act.last_flush = Instant::now()
                                    .checked_sub(act.flush_interval)
                                    .unwrap_or(act.last_flush);
                            }
                        }
                        Err(e) => {
                            if !act.failing {
                                tracing::warn!(error = %e, "usage not written yet; it waits in the spool and is retried");
                            }
                            act.failing = true;
                        }
                    }
                    if let Some(keys) = untouched {
                        act.note_keys(keys);
                    }
                }),
        );
    }

    /// Spool bytes not in the store yet (for `/status` and tests).
    pub fn backlog_bytes(&self) -> u64 {
        self.sink.spool().backlog_bytes()
    }
}

impl Actor for MetricsAggregator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(DRAIN_INTERVAL, |act, ctx| {
            act.drain();
            if act.last_flush.elapsed() >= act.flush_interval {
                act.flush(ctx);
            }
        });
    }
}

/// A scrape: the Prometheus exposition of what the aggregator has seen (events still
/// queued are drained first), with the process-wide `counters` the caller read. `None`
/// when `/metrics` is off.
pub struct RenderMetrics {
    pub counters: ProcessCounters,
}

impl Message for RenderMetrics {
    type Result = Option<String>;
}

impl Handler<RenderMetrics> for MetricsAggregator {
    type Result = Option<String>;

    fn handle(&mut self, msg: RenderMetrics, _: &mut Context<Self>) -> Option<String> {
        self.drain();
        let mut counters = msg.counters;
        counters.usage_dropped = self.sink.dropped();
        self.prometheus.as_ref().map(|m| m.render(&counters))
    }
}

/// Stops the spool writer (everything queued is written and synced), then writes the
/// spool to the store, retrying until `deadline`.
pub struct Shutdown {
    pub deadline: Duration,
}

/// How the stop went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Events this run lost before they reached the spool (a spool failure).
    pub lost: u64,
    /// Spool segments the store did not take in time: kept, counted at the next start.
    pub segments_left: usize,
}

impl Message for Shutdown {
    type Result = ShutdownReport;
}

impl Handler<Shutdown> for MetricsAggregator {
    type Result = ResponseActFuture<Self, ShutdownReport>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let until = Instant::now() + msg.deadline;
        self.drain();
        let store = self.store.clone();
        let flushing = self.flushing.clone();
        let sink = self.sink.clone();
        let keys: Vec<(Uuid, DateTime<Utc>)> = self.keys_used.drain().collect();
        Box::pin(
            async move {
                let writer = sink.clone();
                let lost = tokio::task::spawn_blocking(move || {
                    writer.spool.stop(Duration::from_secs(5))
                })
                .await
                .unwrap_or(u64::MAX);
                // A write in flight finishes first (it holds the spool's progress).
                while flushing.load(Ordering::Acquire) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let spool = sink.spool().clone();
                let mut used: HashMap<Uuid, DateTime<Utc>> = keys.into_iter().collect();
                loop {
                    // Bounded: a frozen database must not hold the stop past its deadline.
                    let left = until.saturating_duration_since(Instant::now());
                    let written =
                        tokio::time::timeout(left, write_once(store.as_ref(), &spool, BATCH_BYTES))
                            .await
                            .unwrap_or_else(|_| Err("the database did not answer in time".into()));
                    match written {
                        Ok((_, k)) => {
                            used.extend(k);
                            if spool.segments() == 0 {
                                break;
                            }
                            if Instant::now() >= until {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Err(e) if Instant::now() < until => {
                            tracing::warn!(error = %e, "final usage write failed; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "final usage write failed");
                            break;
                        }
                    }
                }
                // Best effort, once: a missed `last_used_at` is not worth delaying exit.
                let list: Vec<(Uuid, DateTime<Utc>)> = used.into_iter().collect();
                let touched = tokio::time::timeout(Duration::from_secs(1), store.touch_api_keys(&list))
                    .await
                    .unwrap_or_else(|_| Err("the database did not answer in time".into()));
                if let Err(e) = touched {
                    tracing::warn!(error = %e, keys = list.len(), "API key last_used_at not written at shutdown");
                }
                ShutdownReport {
                    lost,
                    segments_left: spool.segments(),
                }
            }
            .into_actor(self)
            .map(|report, act, ctx| {
                act.drain();
                if let Some(observer) = act.observer.as_mut() {
                    observer.flush();
                }
                ctx.stop();
                report
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::{SpoolMark, UsageRow};
    use crate::telemetry::trace::TraceContext;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;
    use std::time::SystemTime;

    /// A store that fails while `down` is set, keeps what it was given otherwise, and
    /// moves spool progress only from where it stands (as the SQL does).
    #[derive(Default)]
    struct FakeStore {
        down: AtomicBool,
        rows: Mutex<Vec<UsageRow>>,
        marks: Mutex<HashMap<String, (i64, bool)>>,
        touched: Mutex<Vec<(Uuid, DateTime<Utc>)>>,
        attempts: AtomicU64,
    }

    #[async_trait::async_trait]
    impl UsageStore for FakeStore {
        async fn apply_usage(
            &self,
            rows: &[UsageRow],
            marks: &[SpoolMark],
        ) -> Result<(), UsageWriteError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(UsageWriteError::Failed("database unreachable".into()));
            }
            let mut stored = self.marks.lock().expect("lock");
            for m in marks {
                let (at, complete) = stored.get(&m.segment).copied().unwrap_or((0, false));
                if at != m.from || complete {
                    return Err(UsageWriteError::Counted(m.segment.clone()));
                }
            }
            for m in marks {
                stored.insert(m.segment.clone(), (m.to, m.complete));
            }
            self.rows.lock().expect("lock").extend_from_slice(rows);
            Ok(())
        }

        async fn spool_mark(&self, segment: &str) -> Result<Option<(u64, bool)>, String> {
            if self.down.load(Ordering::Relaxed) {
                return Err("database unreachable".into());
            }
            Ok(self
                .marks
                .lock()
                .expect("lock")
                .get(segment)
                .map(|(at, complete)| (*at as u64, *complete)))
        }

        async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), String> {
            if self.down.load(Ordering::Relaxed) {
                return Err("database unreachable".into());
            }
            self.touched.lock().expect("lock").extend_from_slice(used);
            Ok(())
        }
    }

    #[derive(Default, Clone)]
    struct Seen {
        events: Arc<AtomicU64>,
        dropped: Arc<AtomicU64>,
        flushed: Arc<AtomicBool>,
    }

    impl UsageObserver for Seen {
        fn observe(&mut self, _: &UsageEvent) {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
        fn dropped(&mut self, total: u64) {
            self.dropped.store(total, Ordering::Relaxed);
        }
        fn flush(&mut self) {
            self.flushed.store(true, Ordering::Relaxed);
        }
    }

    fn event(tenant: Uuid, model: &str, prompt: u64, completion: u64, status: u16) -> UsageEvent {
        UsageEvent {
            id: Uuid::now_v7(),
            started_at: SystemTime::now(),
            duration: Duration::from_millis(120),
            tenant_id: tenant,
            tenant: "acme".into(),
            key_id: Uuid::nil(),
            route_id: Uuid::nil(),
            route: "chat".into(),
            provider: "openai",
            operation: "chat",
            request_model: model.into(),
            response_model: None,
            status,
            error_type: (status >= 400).then(|| status.to_string()),
            prompt_tokens: (status < 400).then_some(prompt),
            completion_tokens: (status < 400).then_some(completion),
            cost: 0.001,
            upstream: None,
            time_to_first_token: None,
            overhead: Duration::from_micros(50),
            stream: false,
            finish_reason: None,
            server_address: None,
            trace: TraceContext::from_headers(&actix_web::http::header::HeaderMap::new()),
            policies: Vec::new(),
            policy_usage: None,
            rejected: false,
        }
    }

    fn begin(id: Uuid, tenant: Uuid, prompt: u64) -> SpoolRecord {
        SpoolRecord {
            id,
            kind: Kind::Begin,
            at_ms: spool::unix_ms(SystemTime::now()),
            tenant_id: tenant,
            key_id: Uuid::nil(),
            route_id: Uuid::nil(),
            model: "m".into(),
            error: false,
            prompt_tokens: prompt,
            completion_tokens: 0,
            cost: 0.5,
            latency_ms: 0.0,
            source: None,
            rejected: false,
        }
    }

    fn totals(rows: &[UsageRow]) -> (i64, i64, i64, i64) {
        rows.iter().fold((0, 0, 0, 0), |t, r| {
            (
                t.0 + r.requests,
                t.1 + r.errors,
                t.2 + r.prompt_tokens,
                t.3 + r.completion_tokens,
            )
        })
    }

    fn start(
        dir: &Path,
        store: &Arc<FakeStore>,
        observer: Option<Box<dyn UsageObserver>>,
        flush: Duration,
    ) -> (actix::Addr<MetricsAggregator>, UsageSink) {
        let (sink, events) = UsageSink::open_sized(dir, 4096).expect("spool");
        let aggregator =
            MetricsAggregator::new(sink.clone(), events, store.clone(), observer, flush);
        (aggregator.start(), sink)
    }

    /// The segment files of `dir` in a new directory (another node's copy, or the spool
    /// of a killed process whose lock is still held in this test process).
    fn copy_segments(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().expect("dir");
        for entry in std::fs::read_dir(dir).expect("dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "jsonl") {
                std::fs::copy(&path, copy.path().join(path.file_name().expect("name")))
                    .expect("copy");
            }
        }
        copy
    }

    async fn stop(addr: &actix::Addr<MetricsAggregator>, deadline: Duration) -> ShutdownReport {
        addr.send(Shutdown { deadline }).await.expect("answer")
    }

    async fn wait_for_requests(store: &FakeStore, n: i64) {
        let until = Instant::now() + Duration::from_secs(10);
        while totals(&store.rows.lock().expect("lock")).0 < n && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Without OTLP and `/metrics` the written events end on the worker (the request
    /// path's default cost); `/metrics` alone has them forwarded, counted and rendered.
    #[actix::test]
    async fn events_reach_the_aggregator_only_when_something_uses_them() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        let (sink, events) = UsageSink::open_sized(dir.path(), 4096).expect("spool");
        let plain = MetricsAggregator::new(
            sink.clone(),
            events,
            store.clone(),
            None,
            Duration::from_secs(3600),
        );
        assert!(!sink.forward.load(Ordering::Relaxed));
        let scraped = plain.with_prometheus(PromMetrics::new(10));
        assert!(sink.forward.load(Ordering::Relaxed));
        let addr = scraped.start();
        sink.record(event(Uuid::now_v7(), "gpt-4o", 12, 3, 200));
        let until = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let text = addr
                .send(RenderMetrics {
                    counters: ProcessCounters::default(),
                })
                .await
                .expect("answer")
                .expect("/metrics is on");
            if text.contains("tollgate_requests_total{") || Instant::now() > until {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            text.contains(r#"gen_ai_request_model="gpt-4o",gen_ai_operation_name="chat",tollgate_status_class="2xx"} 1"#),
            "{text}"
        );
        stop(&addr, Duration::from_secs(2)).await;
    }

    #[actix::test]
    async fn events_are_aggregated_per_minute_and_key_and_written_in_batches() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        let seen = Seen::default();
        let (addr, sink) = start(
            dir.path(),
            &store,
            Some(Box::new(seen.clone())),
            Duration::from_millis(100),
        );
        let tenant = Uuid::now_v7();
        for _ in 0..10 {
            sink.record(event(tenant, "gpt-4o", 12, 3, 200));
        }
        sink.record(event(tenant, "claude", 7, 1, 200));
        sink.record(event(tenant, "gpt-4o", 0, 0, 502));
        wait_for_requests(&store, 12).await;
        let rows = store.rows.lock().expect("lock").clone();
        assert_eq!(totals(&rows), (12, 1, 127, 31));
        let gpt: Vec<_> = rows.iter().filter(|r| r.model == "gpt-4o").collect();
        assert_eq!(gpt.iter().map(|r| r.requests).sum::<i64>(), 11);
        assert!(rows.iter().all(|r| r.bucket_start.timestamp() % 60 == 0));
        let histogram: i64 = rows.iter().flat_map(|r| r.latency_histogram).sum();
        assert_eq!(histogram, 12, "one latency count per request");
        assert!(
            rows.len() <= 4,
            "summed per minute and model, not one row per event: {}",
            rows.len()
        );
        let report = stop(&addr, Duration::from_secs(2)).await;
        assert_eq!(
            report,
            ShutdownReport {
                lost: 0,
                segments_left: 0
            }
        );
        assert_eq!(seen.events.load(Ordering::Relaxed), 12);
        assert!(seen.flushed.load(Ordering::Relaxed));
        assert_eq!(
            totals(&store.rows.lock().expect("lock")).0,
            12,
            "nothing twice"
        );
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            .collect();
        assert!(files.is_empty(), "counted segments are deleted");
    }

    /// A transformer's instruction call is summed into a row marked with its plugin name,
    /// never into the proxy's; a refused request counts in `rejected` and, as a 429, in
    /// `requests` and `errors`.
    #[actix::test]
    async fn policy_usage_and_rejections_are_kept_in_their_own_counts() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        let (addr, sink) = start(dir.path(), &store, None, Duration::from_millis(50));
        let tenant = Uuid::now_v7();
        let at = SystemTime::now();
        let at_once = |mut e: UsageEvent| {
            e.started_at = at;
            e
        };
        sink.record(at_once(event(tenant, "gpt-4o", 12, 3, 200)));
        let mut policy = at_once(event(tenant, "gpt-4o", 40, 20, 200));
        policy.policy_usage = Some("ai-request-transformer");
        sink.record(policy);
        let mut refused = at_once(event(tenant, "gpt-4o", 0, 0, 429));
        refused.rejected = true;
        sink.record(refused);
        wait_for_requests(&store, 3).await;
        stop(&addr, Duration::from_secs(2)).await;
        // Summed per source: the events may have been written in more than one flush.
        let mut by_source: std::collections::BTreeMap<String, (i64, i64, i64, i64, i64)> =
            Default::default();
        for r in store.rows.lock().expect("lock").iter() {
            let t = by_source.entry(r.source.clone()).or_default();
            *t = (
                t.0 + r.requests,
                t.1 + r.errors,
                t.2 + r.rejected,
                t.3 + r.prompt_tokens,
                t.4 + r.completion_tokens,
            );
        }
        let rows: Vec<_> = by_source
            .into_iter()
            .map(|(s, t)| (s, t.0, t.1, t.2, t.3, t.4))
            .collect();
        assert_eq!(
            rows,
            vec![
                ("ai-request-transformer".to_string(), 1, 0, 0, 40, 20),
                ("proxy".to_string(), 2, 1, 1, 12, 3),
            ]
        );
    }

    /// One `last_used_at` per key and flush, with the key's latest request end; kept and
    /// written later while the database is down.
    #[actix::test]
    async fn keys_used_are_written_with_their_latest_time() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (addr, sink) = start(dir.path(), &store, None, Duration::from_millis(50));
        let tenant = Uuid::now_v7();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let base = SystemTime::now();
        for (key, offset) in [(a, 3), (a, 9), (a, 1), (b, 2)] {
            let mut e = event(tenant, "m", 1, 1, 200);
            e.key_id = key;
            e.started_at = base + Duration::from_secs(offset);
            sink.record(e);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.touched.lock().expect("lock").is_empty());
        store.down.store(false, Ordering::Relaxed);
        wait_for_requests(&store, 4).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut latest: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        for (k, at) in store.touched.lock().expect("lock").iter() {
            let l = latest.entry(*k).or_insert(*at);
            *l = (*l).max(*at);
        }
        // The spool keeps milliseconds.
        let end = |offset: u64| -> i64 {
            spool::unix_ms(base + Duration::from_secs(offset) + Duration::from_millis(120))
        };
        assert_eq!(latest[&a].timestamp_millis(), end(9));
        assert_eq!(latest[&b].timestamp_millis(), end(2));
        assert_eq!(latest.len(), 2);
        stop(&addr, Duration::from_secs(1)).await;
    }

    #[actix::test]
    async fn usage_waits_in_the_spool_while_the_database_is_down() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (addr, sink) = start(dir.path(), &store, None, Duration::from_millis(50));
        let tenant = Uuid::now_v7();
        for i in 0..100 {
            sink.record(event(tenant, "m", i, 1, 200));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.attempts.load(Ordering::Relaxed) >= 2, "it retries");
        assert!(store.rows.lock().expect("lock").is_empty());
        assert!(sink.spool().backlog_bytes() > 0);
        store.down.store(false, Ordering::Relaxed);
        wait_for_requests(&store, 100).await;
        let rows = store.rows.lock().expect("lock").clone();
        assert_eq!(
            totals(&rows),
            (100, 0, (0..100).sum(), 100),
            "nothing lost, nothing doubled"
        );
        assert_eq!(stop(&addr, Duration::from_secs(1)).await.lost, 0);
    }

    /// A stop while the database is down keeps the usage in the spool; the next start
    /// counts it once, and a third start finds nothing left to count.
    #[actix::test]
    async fn a_stop_during_an_outage_leaves_the_spool_for_the_next_start() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (addr, sink) = start(dir.path(), &store, None, Duration::from_secs(3600));
        for _ in 0..300 {
            sink.record(event(Uuid::nil(), "m", 2, 1, 200));
        }
        let report = stop(&addr, Duration::from_millis(300)).await;
        assert_eq!(report.lost, 0, "the spool took everything");
        assert!(report.segments_left > 0);
        drop(sink);
        drop(addr);

        store.down.store(false, Ordering::Relaxed);
        let (addr, _sink) = start(dir.path(), &store, None, Duration::from_millis(50));
        wait_for_requests(&store, 300).await;
        assert_eq!(
            stop(&addr, Duration::from_secs(2)).await,
            ShutdownReport {
                lost: 0,
                segments_left: 0
            }
        );
        let (addr, _sink) = start(dir.path(), &store, None, Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(&addr, Duration::from_secs(2)).await;
        assert_eq!(
            totals(&store.rows.lock().expect("lock")),
            (300, 0, 600, 300)
        );
    }

    /// The same spool counted by two processes (a copy on another node, same database):
    /// the database's progress marks let only one of them count it.
    #[actix::test]
    async fn a_spool_is_counted_once_even_when_replayed_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (addr, sink) = start(dir.path(), &store, None, Duration::from_secs(3600));
        for _ in 0..50 {
            sink.record(event(Uuid::nil(), "m", 1, 1, 200));
        }
        stop(&addr, Duration::from_millis(200)).await;
        drop(sink);
        let copy = copy_segments(dir.path());
        store.down.store(false, Ordering::Relaxed);
        let (one, _a) = start(dir.path(), &store, None, Duration::from_millis(50));
        let (two, _b) = start(copy.path(), &store, None, Duration::from_millis(50));
        wait_for_requests(&store, 50).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(&one, Duration::from_secs(1)).await;
        stop(&two, Duration::from_secs(1)).await;
        assert_eq!(totals(&store.rows.lock().expect("lock")).0, 50);
    }

    /// A process killed mid-stream leaves a `begin` without a `done`: billed once, as an
    /// error, with its prompt estimate; a stream that ended is billed by its `done` only,
    /// also when its `begin` was carried into a later segment.
    #[actix::test]
    async fn an_interrupted_stream_is_billed_once_from_its_begin_record() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (sink, _events) = UsageSink::open_sized(dir.path(), 4096).expect("spool");
        let tenant = Uuid::now_v7();
        let (cut, ended) = (Uuid::now_v7(), Uuid::now_v7());
        sink.begin(begin(cut, tenant, 40));
        sink.begin(begin(ended, tenant, 7));
        // Enough to start several segments (4 KiB each): both begins are carried.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for _ in 0..20 {
                sink.record(event(tenant, "m", 1, 1, 200));
            }
        }
        let mut done = event(tenant, "m", 7, 5, 200);
        done.id = ended;
        sink.record(done);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // A kill: the writer never closes its run (the sink is leaked, not stopped).
        std::mem::forget(sink);
        let segments = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
            })
            .count();
        assert!(segments > 2, "{segments} segments");

        // The next process (a copy of the directory: the dead one still holds the lock).
        let next = copy_segments(dir.path());
        store.down.store(false, Ordering::Relaxed);
        let (addr, _sink) = start(next.path(), &store, None, Duration::from_millis(50));
        wait_for_requests(&store, 62).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(&addr, Duration::from_secs(2)).await;
        let rows = store.rows.lock().expect("lock").clone();
        assert_eq!(
            totals(&rows),
            (62, 1, 60 + 7 + 40, 60 + 5),
            "60 requests, the ended stream, the cut one (an error, prompt estimate only)"
        );
    }
}
