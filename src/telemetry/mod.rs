//! Process logging. A broken log sink never stops the gateway (docs/architecture.md,
//! "The process log"): events go through a bounded, lossy queue to one writer thread
//! (`tracing-appender`), so a stalled stderr never blocks a worker; a failed write is
//! counted, never reported by panicking (`eprintln!` panics on a closed pipe), and what the
//! queue or the sink loses is counted in [`log_stats`].

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Log lines queued for the writer thread before new ones are dropped (and counted).
const QUEUED_LINES: usize = 16 * 1024;
/// How long the exit waits for the writer thread to write what is queued.
const EXIT_FLUSH_WAIT: Duration = Duration::from_millis(1500);

/// Log lines (and direct stderr messages) whose write failed: closed pipe, full disk.
static WRITE_FAILURES: AtomicU64 = AtomicU64::new(0);
/// Lines dropped because the writer thread's queue was full (a stalled sink).
static QUEUE_DROPS: OnceLock<ErrorCounter> = OnceLock::new();

/// What the process log lost since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Lines the sink refused (EPIPE, ENOSPC, ...).
    pub write_failures: u64,
    /// Lines dropped because the sink did not keep up (queue full).
    pub dropped: u64,
}

impl LogStats {
    pub fn lost(&self) -> u64 {
        self.write_failures.saturating_add(self.dropped)
    }
}

pub fn log_stats() -> LogStats {
    LogStats {
        write_failures: WRITE_FAILURES.load(Ordering::Relaxed),
        dropped: QUEUE_DROPS
            .get()
            .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX)),
    }
}

/// Writes `text` to stderr on the caller's thread, counting a failure instead of panicking
/// (for the few messages that are not log events: the bootstrap password, a fatal error).
pub fn write_stderr(text: &str) {
    if std::io::stderr().write_all(text.as_bytes()).is_err() {
        WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writer thread's sink: stderr, where a failed write is counted and reported as
/// written (the appender's worker would otherwise abandon the rest of its batch).
struct CountingStderr;

impl Write for CountingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // One call per queued event: the fmt layer writes each event in one piece.
        if std::io::stderr().write_all(buf).is_err() {
            WRITE_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Keeps the log's writer thread; dropping it (at exit) writes what is queued, waiting at
/// most `EXIT_FLUSH_WAIT`.
#[must_use]
pub struct LogGuard(Option<WorkerGuard>);

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(guard) = self.0.take() else { return };
        // The appender's own drop waits up to 1.1 s, and when its queue stays full it
        // reports that with `println!`, which panics on a closed stdout and blocks on a
        // stalled one: drop it on a thread of its own and wait for a bounded time.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("tollgate-log-exit".into())
            .spawn(move || {
                drop(guard);
                let _ = done_tx.send(());
            });
        if spawned.is_ok() {
            let _ = done_rx.recv_timeout(EXIT_FLUSH_WAIT);
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), text or JSON lines
/// on stderr (stdout is for the analytics log and for CLI output such as `admin token`).
pub fn init_logging(format: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (queue, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("tollgate-log")
        .finish(CountingStderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_span_events(FmtSpan::NONE)
        // On a failed write the fmt layer would report it with `eprintln!` (a panic on a
        // closed stderr); the sink counts failures instead and never returns an error.
        .log_internal_errors(false);
    let counter = queue.error_counter();
    let result = if format == "json" {
        // JSON strings escape control characters already.
        builder.with_writer(queue).json().try_init()
    } else {
        builder
            .with_writer(move || EscapingWriter {
                inner: queue.clone(),
                keep_escape: ansi,
            })
            .try_init()
    };
    match result {
        Ok(()) => {
            let _ = QUEUE_DROPS.set(counter);
            LogGuard(Some(guard))
        }
        Err(e) => {
            write_stderr(&format!("logging already initialised: {e}\n"));
            LogGuard(None)
        }
    }
}

/// Writes one formatted text-log line with every control character in it escaped
/// (`\n` → `\\n`, others as `\u{..}`), except tab and the line's own final newline, so a
/// value a client chose (a login name with a newline) cannot forge a log line. The fmt
/// layer hands over each event as one complete buffer, which is what makes "the final
/// newline" well defined. ESC is kept only when colours are on (it starts the colour
/// codes); client strings cannot carry it (admin bodies refuse C0 controls but tab and
/// newline; header values cannot hold controls).
pub struct EscapingWriter<W: Write> {
    pub inner: W,
    pub keep_escape: bool,
}

/// `line` with control characters escaped (see [`EscapingWriter`]).
pub fn escape_controls(line: &str, keep_escape: bool) -> std::borrow::Cow<'_, str> {
    let body = line.strip_suffix('\n').unwrap_or(line);
    let needs = |c: char| {
        (c.is_control() && c != '\t' && !(keep_escape && c == '\u{1b}'))
            || matches!(c, '\u{2028}' | '\u{2029}')
    };
    if !body.chars().any(needs) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in body.chars() {
        match c {
            '\n' if needs(c) => out.push_str("\\n"),
            '\r' if needs(c) => out.push_str("\\r"),
            c if needs(c) => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    if body.len() < line.len() {
        out.push('\n');
    }
    std::borrow::Cow::Owned(out)
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self
                .inner
                .write_all(escape_controls(text, self.keep_escape).as_bytes()),
            // The fmt layer writes UTF-8; anything else goes through lossily escaped.
            Err(_) => {
                let text = String::from_utf8_lossy(buf);
                self.inner
                    .write_all(escape_controls(&text, self.keep_escape).as_bytes())
            }
        }?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_but_the_final_newline_stays() {
        let forged = "INFO admin login failed username=bob\n2026-01-01T00:00:00Z INFO forged\n";
        assert_eq!(
            escape_controls(forged, false),
            "INFO admin login failed username=bob\\n2026-01-01T00:00:00Z INFO forged\n"
        );
        assert_eq!(
            escape_controls("a\rb\u{7}c\u{85}d\u{2028}\te\n", false),
            "a\\rb\\u{7}c\\u{85}d\\u{2028}\te\n"
        );
        assert_eq!(
            escape_controls("\u{1b}[2mx\u{1b}[0m\n", true),
            "\u{1b}[2mx\u{1b}[0m\n"
        );
        assert_eq!(escape_controls("\u{1b}[2m\n", false), "\\u{1b}[2m\n");
        assert!(matches!(
            escape_controls("plain line\n", false),
            std::borrow::Cow::Borrowed(_)
        ));

        let mut w = EscapingWriter {
            inner: Vec::new(),
            keep_escape: false,
        };
        w.write_all(forged.as_bytes()).unwrap();
        let written = String::from_utf8(w.inner).unwrap();
        assert_eq!(written.lines().count(), 1, "{written}");
    }
}

pub mod analytics;
pub mod event;
pub mod label_index;
pub mod otel;
pub mod otlp_http;
pub mod otlp_logs;
pub mod otlp_tls;
pub mod prometheus;
pub mod semconv;
pub mod trace;
