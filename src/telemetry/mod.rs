//! Process logging. OTLP export arrives with the telemetry issue.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), text or JSON lines
/// on stderr (stdout is for the analytics log and for CLI output such as `admin token`).
pub fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_span_events(FmtSpan::NONE);
    let result = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

pub mod analytics;
pub mod otel;
pub mod otlp_http;
pub mod semconv;
pub mod trace;
