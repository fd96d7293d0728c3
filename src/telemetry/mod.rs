//! Process logging. OTLP export arrives with the telemetry issue.

use std::io::Write;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), text or JSON lines
/// on stderr (stdout is for the analytics log and for CLI output such as `admin token`).
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_span_events(FmtSpan::NONE);
    let result = if format == "json" {
        // JSON strings escape control characters already.
        builder.with_writer(std::io::stderr).json().try_init()
    } else {
        builder
            .with_writer(move || EscapingWriter {
                inner: std::io::stderr(),
                keep_escape: ansi,
            })
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
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

pub mod admin_span;
pub mod analytics;
pub mod otel;
pub mod otlp_http;
pub mod semconv;
pub mod trace;
