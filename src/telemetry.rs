//! Logging setup. Logs carry ids, counts, kinds and timings, never identifier values or
//! traits (emails, phones, names, addresses): see the PII invariant in ARCHITECTURE.md.

use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global subscriber: `RUST_LOG` filters (default `info`, tantivy and neo4rs at `warn`), and
/// `IDGRAPH_LOG_FORMAT=json` switches to JSON lines.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn,neo4rs=warn"));
    let json = std::env::var("IDGRAPH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
