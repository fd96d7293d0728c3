//! The per-request analytics log (spec §5): one JSON line per proxied request, written by a
//! dedicated thread through a buffer, so a worker never blocks on `write`. The channel is
//! bounded; when the writer falls behind, lines are dropped and counted (never silently:
//! the count is logged and exposed by `dropped()`).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 65_536;

#[derive(Clone)]
pub struct AnalyticsLog {
    sender: Option<SyncSender<String>>,
    dropped: Arc<AtomicU64>,
}

impl AnalyticsLog {
    /// `stdout`, `off`, or a file path (appended to).
    pub fn open(sink: &str) -> std::io::Result<AnalyticsLog> {
        let dropped = Arc::new(AtomicU64::new(0));
        let writer: Box<dyn Write + Send> = match sink {
            "off" => {
                return Ok(AnalyticsLog {
                    sender: None,
                    dropped,
                });
            }
            "stdout" => Box::new(std::io::stdout()),
            path => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (sender, receiver) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("tollgate-analytics".into())
            .spawn(move || write_lines(receiver, writer))?;
        Ok(AnalyticsLog {
            sender: Some(sender),
            dropped,
        })
    }

    /// A log that writes nothing (tests, `off`).
    pub fn off() -> AnalyticsLog {
        AnalyticsLog {
            sender: None,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn write(&self, line: String) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(dropped = n, "analytics log writer is behind; lines dropped");
                }
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Writes lines as they come, flushing whenever the queue is momentarily empty.
fn write_lines(receiver: Receiver<String>, writer: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, writer);
    while let Ok(line) = receiver.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            let _ = out.write_all(line.as_bytes());
            let _ = out.write_all(b"\n");
            next = receiver.try_recv().ok();
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}
