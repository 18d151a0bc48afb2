//! Logging and tracing setup. Logs carry ids, counts, kinds and timings, never identifier
//! values or traits (emails, phones, names, addresses): see the PII invariant in
//! ARCHITECTURE.md.
//!
//! With `[telemetry] otlp_endpoint` set (or the standard `OTEL_EXPORTER_OTLP_ENDPOINT`),
//! spans are also exported over OTLP/HTTP (protobuf) to `<endpoint>/v1/traces`, in batches
//! from the SDK's own thread; the server's request span (`serve::request_id`) is named by
//! method and route pattern. Unset, no exporter is built and no OpenTelemetry layer is
//! installed: logging is exactly the `fmt` subscriber.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::TelemetrySettings;

/// Whether spans are exported (the request span then carries OpenTelemetry's fields).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The log target of the steps of a graceful stop (`serve` and `cli::serve`), so a stop
/// that hangs shows how far it got (the test suite's servers log it).
pub const SHUTDOWN: &str = "idgraph::shutdown";

/// Whether an OTLP exporter is installed.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// What [`init`] installed; [`Telemetry::shutdown`] sends the spans not yet exported.
#[must_use = "call shutdown() before exiting, or spans still queued are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (waits for the last batch, bounded by its timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(e) = provider.shutdown() {
                tracing::warn!(error = %e, "OTLP trace export: the last spans could not be sent");
            }
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filters the logs (default `info`, tantivy and
/// neo4rs at `warn`), `IDGRAPH_LOG_FORMAT=json` switches them to JSON lines, and with
/// `traces` (the settings of a serving command) whose endpoint is set, spans at `info` are
/// exported over OTLP.
pub fn init(traces: Option<&TelemetrySettings>) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter());
    let json = std::env::var("IDGRAPH_LOG_FORMAT").is_ok_and(|v| v == "json");
    let (provider, failed) = match traces.and_then(|t| t.endpoint().map(|e| (t, e))) {
        Some((t, endpoint)) => match tracer_provider(t, &endpoint) {
            Ok(p) => (Some(p), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let logs = fmt::layer().with_writer(std::io::stderr).with_target(false);
    let logs = if json {
        logs.json().boxed()
    } else {
        logs.boxed()
    };
    // Each layer has its own filter: `RUST_LOG=warn` quiets the logs, not the exported
    // request spans (which are at `info`).
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("idgraph"))
            .with_filter(default_filter())
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init()
        .is_ok();
    EXPORTING.store(installed && provider.is_some(), Ordering::Relaxed);
    if let Some(e) = failed {
        tracing::error!("{e}; spans are not exported");
    }
    Telemetry { provider }
}

/// `info`, with tantivy's and neo4rs's chatter at `warn`.
fn default_filter() -> EnvFilter {
    EnvFilter::new("info,tantivy=warn,neo4rs=warn")
}

/// The tracer provider exporting to `<endpoint>/v1/traces` in batches.
fn tracer_provider(t: &TelemetrySettings, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: cannot export to {endpoint} ({e})"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
