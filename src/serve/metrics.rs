//! Prometheus metrics: request counts and latencies labelled by the matched route pattern
//! (never the raw path, which would carry identifiers), plus resolution counters.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The metrics registry of one server.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub events: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "idgraph_http_requests_total",
                "HTTP requests by route pattern, method and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "idgraph_http_request_duration_seconds",
                "HTTP request latency by route pattern",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "idgraph_events_total",
                "Ingested events by outcome (accepted, duplicate, rejected)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(events.clone()))?;
        // Resident memory, CPU seconds, open file descriptors, start time (`process_*`).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            events,
        })
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The probabilistic matching counters in the text exposition format.
pub fn matching(t: &crate::resolve::probable::MatchTotals) -> String {
    let mut out = String::from(
        "# HELP idgraph_matching_total Probabilistic matching since start: records matched, \
         candidates compared, probable links merged, refused by a rule, stopped by the guard, \
         pairs queued for review\n\
         # TYPE idgraph_matching_total counter\n",
    );
    for (what, n) in [
        ("records", t.records),
        ("compared", t.compared),
        ("merged", t.merged),
        ("refused", t.refused),
        ("guarded", t.guarded),
        ("queued_for_review", t.queued_for_review),
    ] {
        out.push_str(&format!("idgraph_matching_total{{what=\"{what}\"}} {n}\n"));
    }
    out
}

/// Middleware recording every request under its route pattern.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let res = next.call(req).await?;
    if let Some(m) = metrics {
        let status = res.status().as_u16().to_string();
        m.requests
            .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
            .inc();
        m.latency
            .with_label_values(&[method.as_str(), route.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(res)
}

/// Single-sample families in the Prometheus text format: `(name, type, help, value)` each,
/// every sample with `labels` (`{topic="events"}`, or empty).
pub fn families(rows: &[(&str, &str, &str, String)], labels: &str) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
        ));
    }
    out
}

/// (name, type, help, value of one item) of a metric family with one sample per item.
pub type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> String);

/// Metric families with one sample per item, labelled `label="<name of the item>"`.
pub fn per_item<T>(
    families: &[Family<T>],
    label: &str,
    items: &[std::sync::Arc<T>],
    name_of: impl Fn(&T) -> &str,
) -> String {
    let mut out = String::new();
    for (name, kind, help, value) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for item in items {
            out.push_str(&format!(
                "{name}{{{label}=\"{}\"}} {}\n",
                name_of(item),
                value(item)
            ));
        }
    }
    out
}

/// The build: `idgraph_build_info{version, git_sha} 1` (`git_sha` when the build set
/// `IDGRAPH_GIT_SHA`, e.g. `IDGRAPH_GIT_SHA=$(git rev-parse HEAD) cargo build`).
pub fn build_info() -> String {
    let sha = option_env!("IDGRAPH_GIT_SHA")
        .filter(|s| s.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|s| format!(",git_sha=\"{s}\""))
        .unwrap_or_default();
    format!(
        "# HELP idgraph_build_info The running build (value 1)\n# TYPE idgraph_build_info gauge\nidgraph_build_info{{version=\"{}\"{sha}}} 1\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Operations families read from what the engine already keeps (no store scan): profiles
/// created, merges, splits and conflicts since start; the search index's document count
/// and lag; the store engine's own metrics; the build.
pub fn operations(engine: &crate::engine::Engine) -> String {
    let t = engine.resolution_totals();
    let mut out = String::from(
        "# HELP idgraph_resolution_total History entries recorded since start, by kind: profiles created, merges, splits, conflicts (merges a rule refused)\n# TYPE idgraph_resolution_total counter\n",
    );
    for (kind, n) in [
        ("profile_created", t.profiles_created),
        ("merge", t.merges),
        ("split", t.splits),
        ("conflict", t.conflicts),
    ] {
        out.push_str(&format!(
            "idgraph_resolution_total{{kind=\"{kind}\"}} {n}\n"
        ));
    }
    if let Some(index) = engine.search_index() {
        let stored = engine
            .store()
            .counters()
            .map(|c| c.commit_seq)
            .unwrap_or_default();
        let indexed = index.committed_seq().unwrap_or_default();
        out.push_str(&families(
            &[
                (
                    "idgraph_search_documents",
                    "gauge",
                    "Profiles in the search index (as of its last commit)",
                    index.len().to_string(),
                ),
                (
                    "idgraph_search_lag_commits",
                    "gauge",
                    "Write groups stored but not yet in the search index",
                    stored.saturating_sub(indexed).to_string(),
                ),
            ],
            "",
        ));
    }
    if let Ok(c) = engine.store().counters() {
        if c.live_counted {
            out.push_str(&families(
                &[
                    (
                        "idgraph_profiles",
                        "gauge",
                        "Live golden profiles (kept by every write group)",
                        c.profiles.to_string(),
                    ),
                    (
                        "idgraph_identifiers",
                        "gauge",
                        "Identifier nodes in the graph (kept by every write group)",
                        c.identifiers.to_string(),
                    ),
                ],
                "",
            ));
        }
    }
    out.push_str(&retention(engine));
    out.push_str(&engine.store().engine_metrics());
    out.push_str(&build_info());
    out
}

/// What background retention did since start (see `engine::retention`).
fn retention(engine: &crate::engine::Engine) -> String {
    let t = engine.retention().totals();
    let r = &engine.settings().retention;
    let period =
        |p: Option<crate::config::Period>| p.map_or(0, |p| p.as_millis() / 1000).to_string();
    families(
        &[
            (
                "idgraph_retention_events_aged_total",
                "counter",
                "Raw events whose payload retention removed (retention.events), since start",
                t.events_aged.to_string(),
            ),
            (
                "idgraph_retention_audit_entries_removed_total",
                "counter",
                "Audit entries retention removed (retention.audit), since start",
                t.audit_removed.to_string(),
            ),
            (
                "idgraph_retention_failures_total",
                "counter",
                "Retention passes that failed (retried at the next pass), since start",
                t.failures.to_string(),
            ),
            (
                "idgraph_retention_last_success_timestamp_seconds",
                "gauge",
                "When the last retention pass finished without error (0: none yet)",
                (t.last_success_ms / 1000).to_string(),
            ),
            (
                "idgraph_retention_events_seconds",
                "gauge",
                "retention.events in seconds (0: raw events are kept forever)",
                period(r.events),
            ),
            (
                "idgraph_retention_audit_seconds",
                "gauge",
                "retention.audit in seconds (0: audit entries are kept forever)",
                period(r.audit),
            ),
        ],
        "",
    )
}
