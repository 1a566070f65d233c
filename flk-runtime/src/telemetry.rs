//! The `tracing` subscriber every binary installs first: events to stderr, filtered by
//! `RUST_LOG` (else the binary's default level), as text or, with `FLK_LOG_FORMAT=json`, one
//! JSON object per line for a log shipper.

/// The variable choosing the log format (`text`, the default, or `json`).
pub const LOG_FORMAT: &str = "FLK_LOG_FORMAT";

/// Installs the global subscriber; `default_level` applies when `RUST_LOG` is unset. A second
/// call (tests) does nothing.
pub fn init(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let json = std::env::var(LOG_FORMAT).is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
