//! The metrics aggregator (design card; spec §5). Every proxied request whose tenant and
//! route are known ends in one `UsageEvent`, streamed or not, successful or failed. The
//! proxy hands it to a `UsageSink` (`try_send` on a bounded channel: the request never
//! waits); a full channel drops the event and counts it, and the count is exported.
//!
//! The actor drains the channel every `DRAIN_INTERVAL`, passes each event to the
//! telemetry observer (OTLP spans and metrics are built here, off the request path), and
//! adds it to the current minute's row for its tenant × key × route × model. Every
//! `flush_interval` the rows go to the store in one batch. A failed write keeps the rows
//! and retries; past `MAX_UNWRITTEN_ROWS` the oldest are dropped and counted (never
//! silently). `Shutdown` drains, flushes and retries until its deadline.
//!
//! The same flush writes each API key's `last_used_at` (the latest request end per key
//! since the last flush): one transaction per flush instead of a write per request, and
//! no configuration version bump.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture, WrapFuture,
};
use chrono::{DateTime, DurationRound, Utc};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::model::{LATENCY_BUCKETS, UsageRow};
use crate::telemetry::trace::TraceContext;

/// Events waiting between the proxy workers and the aggregator.
pub const EVENT_QUEUE: usize = 65_536;
/// Rows kept in memory while the database cannot take them (a minute × key × route ×
/// model each; far more than a busy node produces in an hour).
pub const MAX_UNWRITTEN_ROWS: usize = 200_000;
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// One proxied request, as the aggregator and the telemetry need it.
#[derive(Debug, Clone)]
pub struct UsageEvent {
    pub started_at: SystemTime,
    pub duration: Duration,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub key_id: Uuid,
    pub route_id: Uuid,
    pub route: String,
    /// Tollgate's provider name (`openai`, `azure`, …).
    pub provider: &'static str,
    /// `chat` or `text_completion`.
    pub operation: &'static str,
    pub request_model: String,
    pub response_model: Option<String>,
    pub status: u16,
    /// Why it failed (`error.type`): the error's type or code; `None` on success.
    pub error_type: Option<String>,
    /// `None` when unknown (no zero points for failed requests).
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// USD.
    pub cost: f64,
    pub upstream: Option<UpstreamTiming>,
    /// Streams: from receiving the request to the first chunk sent to the client.
    pub time_to_first_token: Option<Duration>,
    /// Time spent in the gateway (total minus upstream).
    pub overhead: Duration,
    pub stream: bool,
    pub finish_reason: Option<String>,
    /// The upstream host (`server.address`).
    pub server_address: Option<String>,
    pub trace: TraceContext,
}

#[derive(Debug, Clone, Copy)]
pub struct UpstreamTiming {
    pub started_at: SystemTime,
    pub duration: Duration,
}

impl UsageEvent {
    pub fn is_error(&self) -> bool {
        self.status >= 400 || self.error_type.is_some()
    }
}

/// The proxy's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct UsageSink {
    tx: mpsc::Sender<UsageEvent>,
    dropped: Arc<AtomicU64>,
}

impl UsageSink {
    pub fn record(&self, event: UsageEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full (or the aggregator gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Where rows are written (the store; a fake in tests).
#[async_trait::async_trait]
pub trait UsageStore: Send + Sync {
    async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), String>;
    /// Records when each key was last used (never moving a stored time back).
    async fn touch_api_keys(&self, used: &[(Uuid, DateTime<Utc>)]) -> Result<(), String>;
}

/// Sees every event (OTLP spans and metrics); runs on the aggregator's thread.
pub trait UsageObserver {
    fn observe(&mut self, event: &UsageEvent);
    /// The running total of dropped events and rows, exported as a counter.
    fn dropped(&mut self, total: u64);
    /// Shutdown: export what is buffered.
    fn flush(&mut self);
    /// The end of one drain of the queue (events may have been summed until now).
    fn drained(&mut self) {}
}

#[derive(Hash, PartialEq, Eq, Clone)]
struct RowKey {
    minute: DateTime<Utc>,
    tenant_id: Uuid,
    key_id: Uuid,
    route_id: Uuid,
    model: String,
}

pub struct MetricsAggregator {
    rx: mpsc::Receiver<UsageEvent>,
    store: Arc<dyn UsageStore>,
    observer: Option<Box<dyn UsageObserver>>,
    current: HashMap<RowKey, UsageRow>,
    /// Rows taken out of `current` whose write has not succeeded yet, oldest first.
    unwritten: Vec<UsageRow>,
    /// Latest use of each key since its last successful `last_used_at` write.
    keys_used: HashMap<Uuid, DateTime<Utc>>,
    flush_interval: Duration,
    last_flush: Instant,
    /// A write is in flight (its rows come back to `unwritten` if it fails).
    flushing: Arc<AtomicBool>,
    queue_dropped: Arc<AtomicU64>,
    rows_dropped: u64,
    reported_dropped: u64,
}

impl MetricsAggregator {
    /// The actor and the sink the proxy workers share.
    pub fn new(
        store: Arc<dyn UsageStore>,
        observer: Option<Box<dyn UsageObserver>>,
        flush_interval: Duration,
    ) -> (MetricsAggregator, UsageSink) {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let sink = UsageSink {
            tx,
            dropped: dropped.clone(),
        };
        let aggregator = MetricsAggregator {
            rx,
            store,
            observer,
            current: HashMap::new(),
            unwritten: Vec::new(),
            keys_used: HashMap::new(),
            flush_interval,
            last_flush: Instant::now(),
            flushing: Arc::new(AtomicBool::new(false)),
            queue_dropped: dropped,
            rows_dropped: 0,
            reported_dropped: 0,
        };
        (aggregator, sink)
    }

    fn drain(&mut self) {
        let mut any = false;
        while let Ok(event) = self.rx.try_recv() {
            any = true;
            self.add(&event);
            if let Some(observer) = self.observer.as_mut() {
                observer.observe(&event);
            }
        }
        if any && let Some(observer) = self.observer.as_mut() {
            observer.drained();
        }
        let dropped = self.queue_dropped.load(Ordering::Relaxed) + self.rows_dropped;
        if dropped != self.reported_dropped {
            self.reported_dropped = dropped;
            tracing::warn!(dropped, "usage events or rows dropped (buffer full)");
            if let Some(observer) = self.observer.as_mut() {
                observer.dropped(dropped);
            }
        }
    }

    fn add(&mut self, event: &UsageEvent) {
        let finished: DateTime<Utc> = (event.started_at + event.duration).into();
        let minute = finished
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(finished);
        self.note_key_used(event.key_id, finished);
        let key = RowKey {
            minute,
            tenant_id: event.tenant_id,
            key_id: event.key_id,
            route_id: event.route_id,
            model: event.request_model.clone(),
        };
        let row = self.current.entry(key).or_insert_with(|| UsageRow {
            bucket_start: minute,
            tenant_id: event.tenant_id,
            key_id: event.key_id,
            route_id: event.route_id,
            model: event.request_model.clone(),
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            latency_ms_sum: 0.0,
            latency_histogram: [0; LATENCY_BUCKETS],
        });
        let latency_ms = event.duration.as_secs_f64() * 1000.0;
        let tokens = |t: Option<u64>| i64::try_from(t.unwrap_or(0)).unwrap_or(i64::MAX);
        row.requests += 1;
        row.errors += i64::from(event.is_error());
        row.prompt_tokens = row
            .prompt_tokens
            .saturating_add(tokens(event.prompt_tokens));
        row.completion_tokens = row
            .completion_tokens
            .saturating_add(tokens(event.completion_tokens));
        row.cost += event.cost;
        row.latency_ms_sum += latency_ms;
        row.latency_histogram[UsageRow::latency_bucket(latency_ms)] += 1;
    }

    fn note_key_used(&mut self, key: Uuid, at: DateTime<Utc>) {
        let latest = self.keys_used.entry(key).or_insert(at);
        if *latest < at {
            *latest = at;
        }
    }

    /// Moves the current rows to the write queue, bounded.
    fn seal(&mut self) {
        self.unwritten
            .extend(self.current.drain().map(|(_, row)| row));
        if self.unwritten.len() > MAX_UNWRITTEN_ROWS {
            let excess = self.unwritten.len() - MAX_UNWRITTEN_ROWS;
            let lost: i64 = self.unwritten.drain(..excess).map(|r| r.requests).sum();
            self.rows_dropped += u64::try_from(lost).unwrap_or(0);
            tracing::error!(
                rows = excess,
                requests = lost,
                "usage rows dropped: the database has been unavailable too long"
            );
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.flushing.load(Ordering::Acquire) {
            return;
        }
        self.seal();
        if self.unwritten.is_empty() && self.keys_used.is_empty() {
            return;
        }
        self.flushing.store(true, Ordering::Release);
        self.last_flush = Instant::now();
        let rows = std::mem::take(&mut self.unwritten);
        let keys: Vec<(Uuid, DateTime<Utc>)> = self.keys_used.drain().collect();
        let store = self.store.clone();
        let write = async move {
            let result = store.add_usage(&rows).await;
            let touched = store.touch_api_keys(&keys).await;
            (rows, result, keys, touched)
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(|(rows, result, keys, touched), act, _| {
                    act.flushing.store(false, Ordering::Release);
                    if let Err(e) = result {
                        tracing::warn!(error = %e, rows = rows.len(), "usage rows not written yet; will retry");
                        // Keep them ahead of anything sealed meanwhile (oldest first).
                        let newer = std::mem::replace(&mut act.unwritten, rows);
                        act.unwritten.extend(newer);
                    }
                    if let Err(e) = touched {
                        tracing::warn!(error = %e, keys = keys.len(), "API key last_used_at not written yet; will retry");
                        for (key, at) in keys {
                            act.note_key_used(key, at);
                        }
                    }
                }),
        );
    }

    /// Rows not yet in the store (for `/status` and tests).
    pub fn pending_rows(&self) -> usize {
        self.current.len() + self.unwritten.len()
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

/// Drain, write everything, retrying until `deadline`; answers how many requests could
/// not be written (0 when all were).
pub struct Shutdown {
    pub deadline: Duration,
}

impl Message for Shutdown {
    type Result = u64;
}

impl Handler<Shutdown> for MetricsAggregator {
    type Result = ResponseActFuture<Self, u64>;

    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let until = Instant::now() + msg.deadline;
        self.drain();
        let store = self.store.clone();
        let flushing = self.flushing.clone();
        Box::pin(
            async move {
                // A write in flight either lands or hands its rows back; wait for it.
                while flushing.load(Ordering::Acquire) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            .into_actor(self)
            .then(move |(), act, _| {
                act.drain();
                act.seal();
                let mut rows = std::mem::take(&mut act.unwritten);
                let keys: Vec<(Uuid, DateTime<Utc>)> = act.keys_used.drain().collect();
                async move {
                    // Best effort, once: a missed `last_used_at` is not worth delaying exit.
                    if let Err(e) = store.touch_api_keys(&keys).await {
                        tracing::warn!(error = %e, keys = keys.len(), "API key last_used_at not written at shutdown");
                    }
                    while !rows.is_empty() {
                        match store.add_usage(&rows).await {
                            Ok(()) => rows.clear(),
                            Err(e) if Instant::now() < until => {
                                tracing::warn!(error = %e, "final usage flush failed; retrying");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, rows = rows.len(), "usage rows lost at shutdown");
                                break;
                            }
                        }
                    }
                    rows
                }
                .into_actor(act)
            })
            .map(|rows, act, _| {
                let lost: i64 = rows.iter().map(|r| r.requests).sum();
                if let Some(observer) = act.observer.as_mut() {
                    if lost > 0 {
                        observer.dropped(act.reported_dropped + u64::try_from(lost).unwrap_or(0));
                    }
                    observer.flush();
                }
                u64::try_from(lost).unwrap_or(0)
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A store that fails while `down` is set and keeps what it was given otherwise.
    #[derive(Default)]
    struct FakeStore {
        down: AtomicBool,
        rows: Mutex<Vec<UsageRow>>,
        touched: Mutex<Vec<(Uuid, DateTime<Utc>)>>,
        attempts: AtomicU64,
    }

    #[async_trait::async_trait]
    impl UsageStore for FakeStore {
        async fn add_usage(&self, rows: &[UsageRow]) -> Result<(), String> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err("database unreachable".into());
            }
            self.rows.lock().expect("lock").extend_from_slice(rows);
            Ok(())
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

    #[actix::test]
    async fn events_are_aggregated_per_minute_and_key_and_written_in_batches() {
        let store = Arc::new(FakeStore::default());
        let seen = Seen::default();
        let (aggregator, sink) = MetricsAggregator::new(
            store.clone(),
            Some(Box::new(seen.clone())),
            Duration::from_millis(100),
        );
        let addr = aggregator.start();
        let tenant = Uuid::now_v7();
        for _ in 0..10 {
            sink.record(event(tenant, "gpt-4o", 12, 3, 200));
        }
        sink.record(event(tenant, "claude", 7, 1, 200));
        sink.record(event(tenant, "gpt-4o", 0, 0, 502));
        tokio::time::sleep(Duration::from_millis(400)).await;
        let rows = store.rows.lock().expect("lock").clone();
        assert_eq!(totals(&rows), (12, 1, 127, 31));
        let gpt: Vec<_> = rows.iter().filter(|r| r.model == "gpt-4o").collect();
        assert_eq!(gpt.iter().map(|r| r.requests).sum::<i64>(), 11);
        assert!(rows.iter().all(|r| r.bucket_start.timestamp() % 60 == 0));
        let histogram: i64 = rows.iter().flat_map(|r| r.latency_histogram).sum();
        assert_eq!(histogram, 12, "one latency count per request");
        assert_eq!(seen.events.load(Ordering::Relaxed), 12);
        assert_eq!(
            addr.send(Shutdown {
                deadline: Duration::from_secs(1)
            })
            .await
            .ok(),
            Some(0)
        );
        assert!(seen.flushed.load(Ordering::Relaxed));
    }

    /// One `last_used_at` per key and flush, with the key's latest request end; kept and
    /// written later while the database is down.
    #[actix::test]
    async fn keys_used_are_written_once_per_flush_with_their_latest_time() {
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (aggregator, sink) =
            MetricsAggregator::new(store.clone(), None, Duration::from_millis(50));
        let addr = aggregator.start();
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
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut touched = store.touched.lock().expect("lock").clone();
        touched.sort();
        let end = |offset: u64| -> DateTime<Utc> {
            (base + Duration::from_secs(offset) + Duration::from_millis(120)).into()
        };
        let mut expected = vec![(a, end(9)), (b, end(2))];
        expected.sort();
        assert_eq!(touched, expected, "one write per key, its latest time");
        assert_eq!(
            addr.send(Shutdown {
                deadline: Duration::from_secs(1)
            })
            .await
            .ok(),
            Some(0)
        );
    }

    #[actix::test]
    async fn rows_wait_while_the_database_is_down_and_are_written_when_it_returns() {
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (aggregator, sink) =
            MetricsAggregator::new(store.clone(), None, Duration::from_millis(50));
        let addr = aggregator.start();
        let tenant = Uuid::now_v7();
        for i in 0..100 {
            sink.record(event(tenant, "m", i, 1, 200));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(store.attempts.load(Ordering::Relaxed) >= 2, "it retries");
        assert!(store.rows.lock().expect("lock").is_empty());
        store.down.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let rows = store.rows.lock().expect("lock").clone();
        assert_eq!(
            totals(&rows),
            (100, 0, (0..100).sum(), 100),
            "nothing lost, nothing doubled"
        );
        assert_eq!(
            addr.send(Shutdown {
                deadline: Duration::from_secs(1)
            })
            .await
            .ok(),
            Some(0)
        );
    }

    #[actix::test]
    async fn shutdown_retries_until_its_deadline_and_reports_what_it_could_not_write() {
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let seen = Seen::default();
        let (aggregator, sink) = MetricsAggregator::new(
            store.clone(),
            Some(Box::new(seen.clone())),
            Duration::from_secs(3600),
        );
        let addr = aggregator.start();
        for _ in 0..5 {
            sink.record(event(Uuid::now_v7(), "m", 1, 1, 200));
        }
        let lost = addr
            .send(Shutdown {
                deadline: Duration::from_millis(300),
            })
            .await
            .expect("answer");
        assert_eq!(lost, 5);
        assert_eq!(
            seen.dropped.load(Ordering::Relaxed),
            5,
            "the loss is exported"
        );

        // The same with the database back before the deadline: nothing lost.
        let store = Arc::new(FakeStore::default());
        store.down.store(true, Ordering::Relaxed);
        let (aggregator, sink) =
            MetricsAggregator::new(store.clone(), None, Duration::from_secs(3600));
        let addr = aggregator.start();
        for _ in 0..5 {
            sink.record(event(Uuid::now_v7(), "m", 1, 1, 200));
        }
        let revive = store.clone();
        actix::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            revive.down.store(false, Ordering::Relaxed);
        });
        let lost = addr
            .send(Shutdown {
                deadline: Duration::from_secs(3),
            })
            .await
            .expect("answer");
        assert_eq!(lost, 0);
        assert_eq!(totals(&store.rows.lock().expect("lock")).0, 5);
    }

    #[actix::test]
    async fn a_full_queue_drops_and_counts_never_blocks() {
        let store = Arc::new(FakeStore::default());
        let seen = Seen::default();
        // Not started: nothing drains the queue.
        let (aggregator, sink) = MetricsAggregator::new(
            store.clone(),
            Some(Box::new(seen.clone())),
            Duration::from_millis(50),
        );
        for _ in 0..EVENT_QUEUE + 7 {
            sink.record(event(Uuid::nil(), "m", 1, 1, 200));
        }
        assert_eq!(sink.dropped(), 7);
        let addr = aggregator.start();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(seen.dropped.load(Ordering::Relaxed), 7, "exported");
        let _ = addr
            .send(Shutdown {
                deadline: Duration::from_secs(1),
            })
            .await;
        assert_eq!(
            totals(&store.rows.lock().expect("lock")).0,
            EVENT_QUEUE as i64
        );
    }
}
