//! The usage spool (docs/architecture.md, "The usage spool"): every usage event is appended
//! to a file in `<data_dir>/spool/` by one writer thread, a few milliseconds after the
//! request ends, with plain `write` calls (a killed process loses nothing the kernel
//! already has) and an `fsync` every `FSYNC_INTERVAL` from a second thread (so a slow disk
//! never holds the next write back). The usage store is filled only from the spool: the
//! metrics aggregator reads what was appended since the last write and adds it to the
//! store in one transaction together with how far each segment is counted, so every event
//! is counted exactly once, also after a kill, on this database or another node's.
//!
//! A stream is spooled twice: a `begin` record when its first byte goes out (the prompt
//! estimate, billed only if no `done` record follows) and a `done` record when it ends.
//! Segments are files named `<run>-<seq>.jsonl`, `run` a time-ordered id per process; a
//! segment ends at `SEGMENT_MAX_BYTES`, and the next one starts with the `begin` records
//! of the streams still open, so the last segment of a process holds every stream it left
//! unfinished.
//!
//! One process owns a spool directory at a time (an exclusive lock on `spool/lock`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::model::{LATENCY_BUCKETS, SpoolMark, USAGE_SOURCE_PROXY, UsageRow};

mod codec;

/// A segment this large is closed and the next one started.
pub const SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// How often written records are forced to the disk (power loss loses at most this much).
pub const FSYNC_INTERVAL: Duration = Duration::from_millis(200);
/// Records waiting between the proxy workers and the writer thread.
pub const QUEUE: usize = 65_536;
/// Encoded records held in memory while the spool cannot be written (disk full); beyond
/// this the oldest are dropped and counted.
const MAX_HELD_BYTES: usize = 64 << 20;
/// How long the writer lets records gather after a write (well inside the few
/// milliseconds a record may wait before it is in the file).
const BATCH_PAUSE: Duration = Duration::from_millis(1);
/// How often a failed write is retried.
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
const EXTENSION: &str = "jsonl";
/// How long a start waits for the spool's previous owner to finish its stop.
const LOCK_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A stream started: billed with these numbers only if no `done` record follows.
    Begin,
    /// A request (or stream) ended.
    Done,
}

/// One line of a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolRecord {
    /// The request's usage event id (a stream's `begin` and `done` share it).
    pub id: Uuid,
    pub kind: Kind,
    /// Unix milliseconds: when the request ended (`done`) or the stream started (`begin`).
    pub at_ms: i64,
    pub tenant_id: Uuid,
    pub key_id: Uuid,
    pub route_id: Uuid,
    pub model: String,
    pub error: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// USD.
    pub cost: f64,
    pub latency_ms: f64,
    /// Whose usage it is: `None` for the proxied request itself, else the policy (its
    /// plugin name) whose instruction call it was. Left out of the line when `None`, so
    /// lines of earlier versions read as proxy usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Refused by the gateway before the upstream call; left out when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rejected: bool,
}

pub fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One record on its way to the writer, with what the telemetry wants of it.
pub struct Entry<T> {
    pub record: SpoolRecord,
    pub forward: Option<T>,
}

enum Msg<T> {
    /// Boxed: a bounded std channel allocates all its slots up front (65 536 × the
    /// message's size), so a slot is a pointer.
    Entry(Box<Entry<T>>),
    /// Write everything, sync, close the run; answers the records that could not be written.
    Stop(std::sync::mpsc::Sender<u64>),
}

/// Counters for `/status` and the exported metrics.
#[derive(Default)]
pub struct SpoolStats {
    /// Records that never reached the file (queue full, or held too long while the disk
    /// was failing): usage lost.
    pub lost: AtomicU64,
    pub write_failures: AtomicU64,
    pub sync_failures: AtomicU64,
    /// Records written.
    pub written: AtomicU64,
    /// Lines that could not be read back (a torn last line after a power loss).
    pub unreadable: AtomicU64,
    /// Encoded bytes waiting in memory because the file cannot be written.
    pub held_bytes: AtomicU64,
    /// Records not passed on to the telemetry (its queue full).
    pub telemetry_dropped: AtomicU64,
}

struct Segment {
    path: PathBuf,
    run: String,
    /// Bytes of whole lines in the file (for an earlier process: its length when opened).
    end: u64,
    /// No more lines will be added.
    sealed: bool,
    /// Bytes already counted in the store; `None` until read from the store.
    applied: Option<u64>,
    /// Counted to the end, interrupted streams included.
    complete: bool,
    /// The last segment of its process: its open `begin` records are interrupted streams.
    last_of_run: bool,
}

struct Ledger {
    segments: BTreeMap<String, Segment>,
}

/// The shared view of the spool: the writer appends, the aggregator reads and deletes.
pub struct Spool {
    dir: PathBuf,
    ledger: Mutex<Ledger>,
    pub stats: SpoolStats,
    /// Held (locked) while this process writes the spool.
    lock: File,
}

impl Spool {
    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Segment names whose progress is not known yet (ask the store).
    pub fn unknown_marks(&self) -> Vec<String> {
        self.ledger()
            .segments
            .iter()
            .filter(|(_, s)| s.applied.is_none())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The store's progress for a segment (`None`: never counted).
    pub fn set_mark(&self, name: &str, mark: Option<(u64, bool)>) {
        let mut ledger = self.ledger();
        let Some(segment) = ledger.segments.get_mut(name) else {
            return;
        };
        let (applied, complete) = mark.unwrap_or((0, false));
        segment.applied = Some(applied);
        segment.complete = complete;
        if complete {
            remove_segment(&mut ledger, name);
        }
    }

    /// Bytes appended and not counted yet (all segments).
    pub fn backlog_bytes(&self) -> u64 {
        self.ledger()
            .segments
            .values()
            .map(|s| s.end.saturating_sub(s.applied.unwrap_or(0)))
            .sum()
    }

    /// Segment files present (tests, `/status`).
    pub fn segments(&self) -> usize {
        self.ledger().segments.len()
    }

    /// Reads up to about `budget` bytes not counted yet, oldest segment first, and sums
    /// them into usage rows. Blocking (file reads): call it off the actor's thread.
    pub fn collect(&self, budget: u64) -> io::Result<Batch> {
        let plan: Vec<(String, PathBuf, u64, u64, bool, bool)> = {
            let ledger = self.ledger();
            let mut plan = Vec::new();
            for (name, s) in &ledger.segments {
                let Some(applied) = s.applied else {
                    break; // progress unknown: later segments wait (order matters)
                };
                if s.complete {
                    continue;
                }
                plan.push((
                    name.clone(),
                    s.path.clone(),
                    applied,
                    s.end,
                    s.sealed,
                    s.last_of_run,
                ));
            }
            plan
        };
        let mut batch = Batch::default();
        let mut left = budget;
        for (name, path, from, end, sealed, last_of_run) in plan {
            if left == 0 {
                batch.more = true;
                break;
            }
            let want = end.saturating_sub(from).min(left);
            let bytes = read_range(&path, from, want)?;
            // Whole lines only; a sealed segment's unterminated tail (a torn write) is
            // skipped at its end.
            let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            let reaches_end = from + want == end;
            let consumed = if sealed && reaches_end {
                if whole < bytes.len() {
                    self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(segment = %name, "usage spool: a torn last line is skipped");
                }
                bytes.len()
            } else {
                whole
            };
            // memchr finds the line ends a word at a time; a byte loop was a sixth of this
            // function's cost (bench/README.md, "Instructions per request").
            let mut start = 0;
            for end in memchr::memchr_iter(b'\n', &bytes[..whole]) {
                let line = &bytes[start..end];
                start = end + 1;
                if line.is_empty() {
                    continue;
                }
                match codec::decode(line) {
                    Ok(r) if r.kind == Kind::Done => batch.add(&r, r.latency_ms),
                    Ok(_) => {}
                    Err(e) => {
                        self.stats.unreadable.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(segment = %name, error = %e, "usage spool: an unreadable line is skipped");
                    }
                }
            }
            let to = from + consumed as u64;
            let complete = sealed && to == end;
            if !complete && to == from {
                break; // nothing new
            }
            if complete && last_of_run {
                batch.interrupted += self.bill_interrupted(&path, &mut batch)?;
            }
            left = left.saturating_sub(consumed as u64);
            batch.marks.push(SpoolMark {
                segment: name,
                from: i64::try_from(from).unwrap_or(i64::MAX),
                to: i64::try_from(to).unwrap_or(i64::MAX),
                complete,
            });
            if !complete {
                // A partly read segment: later ones wait for it.
                batch.more = to < end;
                break;
            }
        }
        Ok(batch)
    }

    /// The streams a finished process left open in its last segment: billed with their
    /// `begin` numbers (the prompt estimate), counted as errors, lasting until the
    /// segment's last record.
    fn bill_interrupted(&self, path: &Path, batch: &mut Batch) -> io::Result<u64> {
        let mut text = Vec::new();
        File::open(path)?.read_to_end(&mut text)?;
        let mut open: HashMap<Uuid, SpoolRecord> = HashMap::new();
        let mut last_ms = i64::MIN;
        for line in text.split(|b| *b == b'\n') {
            let Ok(r) = codec::decode(line) else {
                continue;
            };
            last_ms = last_ms.max(r.at_ms);
            match r.kind {
                Kind::Begin => {
                    open.insert(r.id, r);
                }
                Kind::Done => {
                    open.remove(&r.id);
                }
            }
        }
        let count = open.len() as u64;
        for (_, mut r) in open {
            r.error = true;
            let latency_ms = (last_ms.saturating_sub(r.at_ms)).max(0) as f64;
            r.at_ms = r.at_ms.max(last_ms);
            batch.add(&r, latency_ms);
        }
        if count > 0 {
            tracing::warn!(
                streams = count,
                "usage spool: streams interrupted by a stop are billed with their prompt estimate"
            );
        }
        Ok(count)
    }

    /// The store took `marks`: remember them and delete finished segments.
    pub fn counted(&self, marks: &[SpoolMark]) {
        let mut ledger = self.ledger();
        for m in marks {
            if let Some(s) = ledger.segments.get_mut(&m.segment) {
                s.applied = Some(u64::try_from(m.to).unwrap_or(0));
                s.complete = m.complete;
            }
            if m.complete {
                remove_segment(&mut ledger, &m.segment);
            }
        }
    }

    /// The store refused `marks` (another writer counted them): ask it again.
    pub fn forget_marks(&self, marks: &[SpoolMark]) {
        let mut ledger = self.ledger();
        for m in marks {
            if let Some(s) = ledger.segments.get_mut(&m.segment) {
                s.applied = None;
            }
        }
    }
}

fn remove_segment(ledger: &mut Ledger, name: &str) {
    let Some(segment) = ledger.segments.get(name) else {
        return;
    };
    if !segment.sealed {
        return;
    }
    match std::fs::remove_file(&segment.path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            // Counted in the store: the next start deletes it.
            tracing::warn!(segment = %name, error = %e, "usage spool: cannot delete a counted segment");
        }
    }
    ledger.segments.remove(name);
}

fn read_range(path: &Path, from: u64, len: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Usage summed from spool records, and how far each segment it came from is read.
#[derive(Default, Debug)]
pub struct Batch {
    rows: foldhash::HashMap<RowKey, UsageRow>,
    /// The latest request end per key (`last_used_at`).
    pub keys: HashMap<Uuid, DateTime<Utc>>,
    pub marks: Vec<SpoolMark>,
    /// More is waiting beyond the budget.
    pub more: bool,
    /// Events summed (interrupted streams included).
    pub events: u64,
    pub interrupted: u64,
}

#[derive(Hash, PartialEq, Eq, Clone, Debug)]
struct RowKey {
    minute: DateTime<Utc>,
    tenant_id: Uuid,
    key_id: Uuid,
    route_id: Uuid,
    model: String,
    /// `None` is the proxy (`USAGE_SOURCE_PROXY`).
    source: Option<String>,
}

impl Batch {
    fn add(&mut self, r: &SpoolRecord, latency_ms: f64) {
        self.events += 1;
        let ended = DateTime::<Utc>::from_timestamp_millis(r.at_ms).unwrap_or_default();
        let minute = ended
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap_or(ended);
        let latest = self.keys.entry(r.key_id).or_insert(ended);
        if *latest < ended {
            *latest = ended;
        }
        let key = RowKey {
            minute,
            tenant_id: r.tenant_id,
            key_id: r.key_id,
            route_id: r.route_id,
            model: r.model.clone(),
            source: r.source.clone(),
        };
        let row = self.rows.entry(key).or_insert_with(|| UsageRow {
            bucket_start: minute,
            tenant_id: r.tenant_id,
            key_id: r.key_id,
            route_id: r.route_id,
            model: r.model.clone(),
            source: r
                .source
                .clone()
                .unwrap_or_else(|| USAGE_SOURCE_PROXY.to_string()),
            requests: 0,
            errors: 0,
            rejected: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost: 0.0,
            latency_ms_sum: 0.0,
            latency_histogram: [0; LATENCY_BUCKETS],
        });
        let tokens = |t: u64| i64::try_from(t).unwrap_or(i64::MAX);
        row.requests += 1;
        row.errors += i64::from(r.error);
        row.rejected += i64::from(r.rejected);
        row.prompt_tokens = row.prompt_tokens.saturating_add(tokens(r.prompt_tokens));
        row.completion_tokens = row
            .completion_tokens
            .saturating_add(tokens(r.completion_tokens));
        row.cost += r.cost;
        row.latency_ms_sum += latency_ms;
        row.latency_histogram[UsageRow::latency_bucket(latency_ms)] += 1;
    }

    pub fn rows(&self) -> Vec<UsageRow> {
        self.rows.values().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }
}

/// The proxy's end of the spool: never blocks (a full queue drops and counts).
pub struct SpoolSender<T> {
    tx: SyncSender<Msg<T>>,
    spool: Arc<Spool>,
}

impl<T> Clone for SpoolSender<T> {
    fn clone(&self) -> Self {
        SpoolSender {
            tx: self.tx.clone(),
            spool: self.spool.clone(),
        }
    }
}

impl<T: Send + 'static> SpoolSender<T> {
    pub fn send(&self, entry: Entry<T>) {
        match self.tx.try_send(Msg::Entry(Box::new(entry))) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.spool.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// Writes what is queued, syncs and closes this process's segments; answers the records
    /// that could not be written (0 when all were). Blocks up to `deadline`.
    pub fn stop(&self, deadline: Duration) -> u64 {
        let (tx, rx) = std::sync::mpsc::channel();
        let queued = self.tx.send(Msg::Stop(tx)).is_ok();
        let unwritten = if queued {
            rx.recv_timeout(deadline).unwrap_or(u64::MAX)
        } else {
            0
        };
        if unwritten == u64::MAX {
            tracing::error!("usage spool: the writer did not finish in time");
        }
        unwritten
    }
}

/// Opens (creating) the spool directory, takes its lock, lists what earlier processes left
/// and starts this process's writer and sync threads. `forward` receives every written
/// record's companion (the telemetry's copy of the event).
pub fn open<T: Send + 'static>(
    dir: &Path,
    forward: tokio::sync::mpsc::Sender<T>,
) -> io::Result<SpoolSender<T>> {
    open_sized(dir, forward, SEGMENT_MAX_BYTES)
}

/// `open` with segments of `segment_max` bytes (tests use small ones).
pub fn open_sized<T: Send + 'static>(
    dir: &Path,
    forward: tokio::sync::mpsc::Sender<T>,
    segment_max: u64,
) -> io::Result<SpoolSender<T>> {
    std::fs::create_dir_all(dir)?;
    restrict(dir, 0o700);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // A process being replaced may still be finishing its stop: wait for it a while.
    let until = std::time::Instant::now() + LOCK_WAIT;
    while lock.try_lock().is_err() {
        if std::time::Instant::now() >= until {
            return Err(io::Error::other(format!(
                "the usage spool {} is in use by another process",
                dir.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut segments = BTreeMap::new();
    let mut last_seq: HashMap<String, String> = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        if name.ends_with(".tmp") {
            // A segment being started when the process died: it only repeats `begin`
            // records the previous segment holds.
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(stem) = name.strip_suffix(&format!(".{EXTENSION}")) else {
            continue;
        };
        let Some((run, _seq)) = stem.split_once('-') else {
            continue;
        };
        let end = std::fs::metadata(&path)?.len();
        let stem = stem.to_string();
        match last_seq.get(run) {
            Some(last) if *last >= stem => {}
            _ => {
                last_seq.insert(run.to_string(), stem.clone());
            }
        }
        segments.insert(
            stem,
            Segment {
                path,
                run: run.to_string(),
                end,
                sealed: true,
                applied: None,
                complete: false,
                last_of_run: false,
            },
        );
    }
    for (name, segment) in segments.iter_mut() {
        segment.last_of_run = last_seq.get(&segment.run) == Some(name);
    }
    if !segments.is_empty() {
        tracing::info!(
            segments = segments.len(),
            "usage spool: segments of an earlier run will be counted"
        );
    }
    let spool = Arc::new(Spool {
        dir: dir.to_path_buf(),
        ledger: Mutex::new(Ledger { segments }),
        stats: SpoolStats::default(),
        lock,
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    let run = Uuid::now_v7().simple().to_string();
    let mut writer = Writer {
        spool: spool.clone(),
        run,
        seq: 0,
        active: None,
        held: Vec::new(),
        open_streams: foldhash::HashMap::default(),
        forward,
        synced: Arc::new(SyncState::default()),
        segment_max,
    };
    writer.rotate();
    let synced = writer.synced.clone();
    std::thread::Builder::new()
        .name("tollgate-spool-sync".into())
        .spawn({
            let spool = spool.clone();
            move || sync_loop(&spool, &synced)
        })?;
    std::thread::Builder::new()
        .name("tollgate-spool".into())
        .spawn(move || writer.run(rx))?;
    Ok(SpoolSender { tx, spool })
}

fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

/// The file the sync thread forces to disk, and whether it has unsynced writes.
#[derive(Default)]
struct SyncState {
    file: Mutex<Option<Arc<File>>>,
    dirty: AtomicBool,
    stopped: AtomicBool,
}

fn sync_loop(spool: &Spool, state: &SyncState) {
    loop {
        std::thread::sleep(FSYNC_INTERVAL);
        if state.dirty.swap(false, Ordering::AcqRel) {
            let file = state
                .file
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(file) = file
                && let Err(e) = file.sync_data()
            {
                state.dirty.store(true, Ordering::Release);
                spool.stats.sync_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "usage spool: fsync failed; will retry");
            }
        }
        if state.stopped.load(Ordering::Acquire) {
            return;
        }
    }
}

struct Active {
    name: String,
    file: Arc<File>,
    len: u64,
}

struct Writer<T> {
    spool: Arc<Spool>,
    run: String,
    seq: u32,
    active: Option<Active>,
    /// Encoded lines not yet in the file (the file could not be written).
    held: Vec<u8>,
    /// `begin` lines of streams without a `done` yet: repeated at the start of each new
    /// segment.
    open_streams: foldhash::HashMap<Uuid, Vec<u8>>,
    forward: tokio::sync::mpsc::Sender<T>,
    synced: Arc<SyncState>,
    segment_max: u64,
}

impl<T> Writer<T> {
    fn run(mut self, rx: Receiver<Msg<T>>) {
        loop {
            let first = match rx.recv_timeout(RETRY_INTERVAL) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return;
                }
            };
            let mut forward = Vec::new();
            let mut stop = None;
            let mut next = first;
            let mut taken = 0;
            while let Some(msg) = next {
                match msg {
                    Msg::Entry(entry) => {
                        self.encode(&entry.record);
                        forward.extend(entry.forward);
                    }
                    Msg::Stop(reply) => {
                        stop = Some(reply);
                        break;
                    }
                }
                taken += 1;
                next = if taken < 4096 {
                    rx.try_recv().ok()
                } else {
                    None
                };
            }
            self.write_held();
            for event in forward {
                if self.forward.try_send(event).is_err() {
                    self.spool
                        .stats
                        .telemetry_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            if stop.is_none() && taken > 0 {
                // Let the next records gather: one write (and no wake-up of this thread
                // by every worker) per millisecond under load, instead of one per request.
                std::thread::sleep(BATCH_PAUSE);
            }
            if let Some(reply) = stop {
                // Whatever is still queued was sent before the stop: write it too.
                while let Ok(Msg::Entry(entry)) = rx.try_recv() {
                    self.encode(&entry.record);
                }
                self.write_held();
                let _ = reply.send(self.finish());
                return;
            }
        }
    }

    fn encode(&mut self, record: &SpoolRecord) {
        let start = self.held.len();
        if codec::encode(&mut self.held, record).is_err() {
            self.held.truncate(start);
            return;
        }
        self.held.push(b'\n');
        match record.kind {
            Kind::Begin => {
                self.open_streams
                    .insert(record.id, self.held[start..].to_vec());
            }
            Kind::Done => {
                self.open_streams.remove(&record.id);
            }
        }
    }

    /// Appends the held lines; on failure keeps them (bounded) and cuts off any partial
    /// write so the file stays whole lines.
    fn write_held(&mut self) {
        if self.held.is_empty() {
            return;
        }
        if self.active.is_none() {
            self.rotate();
        }
        let Some(active) = self.active.as_mut() else {
            self.bound_held();
            return;
        };
        match (&*active.file).write_all(&self.held) {
            Ok(()) => {
                let lines = memchr::memchr_iter(b'\n', &self.held).count() as u64;
                active.len += self.held.len() as u64;
                self.held.clear();
                self.spool.stats.written.fetch_add(lines, Ordering::Relaxed);
                self.synced.dirty.store(true, Ordering::Release);
                let (name, len) = (active.name.clone(), active.len);
                if let Some(s) = self.spool.ledger().segments.get_mut(&name) {
                    s.end = len;
                }
                if len >= self.segment_max {
                    self.rotate();
                }
            }
            Err(e) => {
                self.spool
                    .stats
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "usage spool: write failed; records held and retried");
                if active.file.set_len(active.len).is_err() {
                    // Cannot cut the partial line off: continue in a new segment.
                    self.rotate();
                }
                self.bound_held();
            }
        }
        self.spool
            .stats
            .held_bytes
            .store(self.held.len() as u64, Ordering::Relaxed);
    }

    fn bound_held(&mut self) {
        if self.held.len() <= MAX_HELD_BYTES {
            return;
        }
        let excess = self.held.len() - MAX_HELD_BYTES;
        let cut = self.held[excess..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(self.held.len(), |i| excess + i + 1);
        let lost = self.held[..cut].iter().filter(|b| **b == b'\n').count() as u64;
        self.held.drain(..cut);
        self.spool.stats.lost.fetch_add(lost, Ordering::Relaxed);
        tracing::error!(
            records = lost,
            "usage spool: records dropped, the spool could not be written"
        );
    }

    /// Starts the next segment (its first lines: the open streams' `begin` records) and
    /// seals the current one. On failure the current one stays active.
    fn rotate(&mut self) {
        let name = format!("{}-{:06}", self.run, self.seq + 1);
        let path = self.spool.dir.join(format!("{name}.{EXTENSION}"));
        let tmp = self.spool.dir.join(format!("{name}.tmp"));
        let carried: Vec<u8> = self.open_streams.values().flatten().copied().collect();
        let created = (|| -> io::Result<File> {
            let mut file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&tmp)?;
            file.write_all(&carried)?;
            drop(file);
            std::fs::rename(&tmp, &path)?;
            restrict(&path, 0o600);
            OpenOptions::new().append(true).open(&path)
        })();
        let file = match created {
            Ok(file) => Arc::new(file),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                self.spool
                    .stats
                    .write_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "usage spool: cannot start a new segment");
                return;
            }
        };
        self.seq += 1;
        if let Some(old) = self.active.take() {
            let _ = old.file.sync_data();
            let mut ledger = self.spool.ledger();
            if let Some(s) = ledger.segments.get_mut(&old.name) {
                s.sealed = true;
                s.last_of_run = false;
            }
        }
        let len = carried.len() as u64;
        self.spool.ledger().segments.insert(
            name.clone(),
            Segment {
                path,
                run: self.run.clone(),
                end: len,
                sealed: false,
                applied: Some(0),
                complete: false,
                last_of_run: true,
            },
        );
        *self
            .synced
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(file.clone());
        self.synced.dirty.store(true, Ordering::Release);
        self.active = Some(Active { name, file, len });
    }

    /// Syncs and seals this run's last segment; answers the records lost in this run
    /// (never written: queue full, held too long, or unwritten now).
    fn finish(&mut self) -> u64 {
        for _ in 0..20 {
            if self.held.is_empty() {
                break;
            }
            std::thread::sleep(RETRY_INTERVAL);
            self.write_held();
        }
        let unwritten = self.held.iter().filter(|b| **b == b'\n').count() as u64;
        if unwritten > 0 {
            self.spool
                .stats
                .lost
                .fetch_add(unwritten, Ordering::Relaxed);
            tracing::error!(records = unwritten, "usage spool: records lost at stop");
        }
        if let Some(active) = self.active.take() {
            if let Err(e) = active.file.sync_data() {
                self.spool
                    .stats
                    .sync_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "usage spool: final fsync failed");
            }
            if let Some(s) = self.spool.ledger().segments.get_mut(&active.name) {
                s.sealed = true;
            }
        }
        self.synced.stopped.store(true, Ordering::Release);
        // The spool is closed: the next process may take it over now.
        let _ = self.spool.lock.unlock();
        self.spool.stats.lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: Kind, prompt: u64) -> SpoolRecord {
        SpoolRecord {
            id: Uuid::now_v7(),
            kind,
            at_ms: unix_ms(SystemTime::now()),
            tenant_id: Uuid::nil(),
            key_id: Uuid::nil(),
            route_id: Uuid::nil(),
            model: "m".into(),
            error: false,
            prompt_tokens: prompt,
            completion_tokens: 1,
            cost: 0.0,
            latency_ms: 5.0,
            source: None,
            rejected: false,
        }
    }

    fn line(r: &SpoolRecord) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(r).expect("json");
        bytes.push(b'\n');
        bytes
    }

    /// A segment an earlier run left with a torn last line (a power loss mid-write): the
    /// whole lines are counted, the torn one is skipped and counted as unreadable, and the
    /// segment is complete.
    #[test]
    fn a_torn_last_line_is_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let mut text = Vec::new();
        for prompt in [1, 2, 3] {
            text.extend(line(&record(Kind::Done, prompt)));
        }
        let torn = line(&record(Kind::Done, 100));
        text.extend(&torn[..torn.len() / 2]);
        let name = format!("{}-000001", Uuid::now_v7().simple());
        std::fs::write(dir.path().join(format!("{name}.jsonl")), &text).expect("write");
        let (tx, _rx) = tokio::sync::mpsc::channel::<()>(8);
        let sender = open(dir.path(), tx).expect("open");
        let spool = sender.spool();
        assert_eq!(spool.unknown_marks(), vec![name.clone()]);
        spool.set_mark(&name, None);
        let batch = spool.collect(u64::MAX).expect("collect");
        assert_eq!(batch.events, 3);
        let prompt: i64 = batch.rows().iter().map(|r| r.prompt_tokens).sum();
        assert_eq!(prompt, 6);
        assert_eq!(spool.stats.unreadable.load(Ordering::Relaxed), 1);
        let mark = batch
            .marks
            .iter()
            .find(|m| m.segment == name)
            .expect("mark");
        assert_eq!(mark.to, text.len() as i64);
        assert!(mark.complete);
        spool.counted(&batch.marks);
        assert!(
            !dir.path().join(format!("{name}.jsonl")).exists(),
            "a counted segment is deleted"
        );
        assert_eq!(sender.stop(Duration::from_secs(2)), 0);
    }

    /// A policy's usage is a row of its own beside the proxy's, and refused requests are
    /// summed into `rejected` (also counted as requests and errors); a line written before
    /// either field existed reads as proxy usage, not refused.
    #[test]
    fn rows_keep_policy_usage_apart_and_count_rejections() {
        let dir = tempfile::tempdir().expect("dir");
        let at_ms = 1_765_000_000_000;
        let old = format!(
            concat!(
                r#"{{"id":"{}","kind":"done","at_ms":{},"tenant_id":"{}","key_id":"{}","#,
                r#""route_id":"{}","model":"m","error":false,"prompt_tokens":3,"#,
                r#""completion_tokens":1,"cost":0.5,"latency_ms":5.0}}"#
            ),
            Uuid::now_v7(),
            at_ms,
            Uuid::nil(),
            Uuid::nil(),
            Uuid::nil()
        );
        let at = |mut r: SpoolRecord| {
            r.at_ms = at_ms;
            r
        };
        let policy = SpoolRecord {
            source: Some("ai-request-transformer".into()),
            ..at(record(Kind::Done, 40))
        };
        let refused = SpoolRecord {
            error: true,
            rejected: true,
            ..at(record(Kind::Done, 0))
        };
        let mut text = old.into_bytes();
        text.push(b'\n');
        for r in [policy.clone(), at(record(Kind::Done, 2)), refused, policy] {
            text.extend(line(&r));
        }
        let name = format!("{}-000001", Uuid::now_v7().simple());
        std::fs::write(dir.path().join(format!("{name}.jsonl")), &text).expect("write");
        let (tx, _rx) = tokio::sync::mpsc::channel::<()>(8);
        let sender = open(dir.path(), tx).expect("open");
        let spool = sender.spool();
        spool.set_mark(&name, None);
        let batch = spool.collect(u64::MAX).expect("collect");
        assert_eq!(spool.stats.unreadable.load(Ordering::Relaxed), 0);
        let mut rows: Vec<_> = batch
            .rows()
            .into_iter()
            .map(|r| (r.source, r.requests, r.errors, r.rejected, r.prompt_tokens))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                ("ai-request-transformer".to_string(), 2, 0, 0, 80),
                ("proxy".to_string(), 3, 1, 1, 5),
            ]
        );
        assert_eq!(sender.stop(Duration::from_secs(2)), 0);
    }

    /// Reading never goes past what the writer has finished, and a budget splits the
    /// reading into several writes whose marks follow on from each other.
    #[test]
    fn reading_follows_the_writer_in_whole_lines_within_a_budget() {
        let dir = tempfile::tempdir().expect("dir");
        let (tx, _rx) = tokio::sync::mpsc::channel::<()>(8);
        let sender = open(dir.path(), tx).expect("open");
        for prompt in 0..100 {
            sender.send(Entry {
                record: record(Kind::Done, prompt),
                forward: None,
            });
        }
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while sender.spool().stats.written.load(Ordering::Relaxed) < 100
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let spool = sender.spool();
        let mut events = 0;
        let mut last_to = 0;
        loop {
            let batch = spool.collect(1000).expect("collect");
            if batch.is_empty() {
                break;
            }
            assert_eq!(batch.marks.len(), 1);
            assert_eq!(batch.marks[0].from, last_to, "marks follow on");
            assert!(
                !batch.marks[0].complete,
                "the active segment is never complete"
            );
            last_to = batch.marks[0].to;
            events += batch.events;
            spool.counted(&batch.marks);
        }
        assert_eq!(events, 100);
        assert_eq!(spool.backlog_bytes(), 0);
        assert_eq!(sender.stop(Duration::from_secs(2)), 0);
        // Closed: the last segment is complete at the next read, then deleted.
        let batch = spool.collect(u64::MAX).expect("collect");
        assert!(batch.marks[0].complete);
        spool.counted(&batch.marks);
        assert_eq!(spool.segments(), 0);
    }

    #[test]
    fn one_process_per_spool_directory() {
        let dir = tempfile::tempdir().expect("dir");
        let (tx, _rx) = tokio::sync::mpsc::channel::<()>(8);
        let first = open(dir.path(), tx.clone()).expect("open");
        let second = open(dir.path(), tx.clone());
        assert!(
            second
                .err()
                .is_some_and(|e| e.to_string().contains("in use by another process"))
        );
        first.stop(Duration::from_secs(2));
        assert!(open(dir.path(), tx).is_ok(), "free again after the stop");
    }
}
