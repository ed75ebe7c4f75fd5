//! Logging: structured `tracing` events, written as text or JSON lines to stderr.
//! The level comes from `RUST_LOG` (default `info`).

use crate::config::LogFormat;

/// Install the global subscriber; later calls are ignored (tests start several daemons).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
