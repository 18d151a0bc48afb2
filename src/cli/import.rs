//! `idgraph import`: JSONL events, or CSV / Parquet rows through a column mapping, sent in
//! batches either straight into a data directory (no server running on it) or through a
//! running server's API (`--server URL --key K`), with a progress bar and a summary of
//! accepted, duplicate and rejected records (with reasons and line numbers, never values).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{json, Value};

use crate::engine::Engine;
use crate::ingest::mapping::{Mapping, RowEvents};
use crate::resolve::EventOutcome;

/// Events per batch into the engine, and the first batch size sent to a server (halved
/// when the server says a batch is too large).
const BATCH: usize = 1000;
const EXAMPLES_PER_REASON: usize = 5;

/// What an import did.
#[derive(Debug, Default, Serialize)]
pub struct ImportSummary {
    pub records: u64,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    pub merges: u64,
    /// Refused because they carry identifiers erased on request.
    pub suppressed: u64,
    /// Rejection reason -> count and the first line/row numbers.
    pub reasons: BTreeMap<String, Rejections>,
    /// Batches a server answered 429/503 (or could not be reached) and that were sent again.
    pub retries: u64,
    pub seconds: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Rejections {
    pub count: u64,
    pub first_records: Vec<u64>,
}

impl ImportSummary {
    fn reject(&mut self, record: u64, reason: String) {
        self.rejected += 1;
        let r = self.reasons.entry(reason).or_default();
        r.count += 1;
        if r.first_records.len() < EXAMPLES_PER_REASON {
            r.first_records.push(record);
        }
    }

    fn outcome(&mut self, outcome: &EventOutcome) {
        match outcome {
            EventOutcome::Accepted { merged, .. } => {
                self.accepted += 1;
                self.merges += merged.len() as u64;
            }
            EventOutcome::Duplicate { .. } => self.duplicate += 1,
            EventOutcome::Suppressed { .. } => self.suppressed += 1,
        }
    }

    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = format!(
            "records: {}\naccepted: {}\nduplicate: {}\nrejected: {}\nsuppressed: {}\nmerges: {}\ntime: {:.2}s ({:.0} records/s)\n",
            self.records,
            self.accepted,
            self.duplicate,
            self.rejected,
            self.suppressed,
            self.merges,
            self.seconds,
            self.records as f64 / self.seconds.max(1e-9)
        );
        if self.retries > 0 {
            out.push_str(&format!("retried batches: {}\n", self.retries));
        }
        if !self.reasons.is_empty() {
            out.push_str("rejections:\n");
            for (reason, r) in &self.reasons {
                out.push_str(&format!(
                    "  {} x {reason} (first records: {:?})\n",
                    r.count, r.first_records
                ));
            }
        }
        out
    }
}

/// Where the events go.
pub enum Target<'e> {
    /// Straight into an engine over a data directory this process holds.
    Engine(&'e Engine),
    /// Through a running server's `POST /v1/events`.
    Server(Remote),
}

/// What to import and how.
pub struct ImportArgs<'a> {
    pub file: &'a Path,
    /// The source of events (rows) that name none.
    pub source: Option<&'a str>,
    pub mapping: Option<&'a Path>,
    pub format: Option<&'a str>,
    pub progress: bool,
}

struct Batcher<'e> {
    target: Target<'e>,
    pending: Vec<(u64, Value)>,
    summary: ImportSummary,
    bar: ProgressBar,
    started: Instant,
}

impl Batcher<'_> {
    fn push(&mut self, record: u64, event: Value) -> anyhow::Result<()> {
        self.summary.records += 1;
        self.pending.push((record, event));
        let full = match &self.target {
            Target::Engine(_) => BATCH,
            Target::Server(r) => r.batch,
        };
        if self.pending.len() >= full {
            self.flush()?;
        }
        Ok(())
    }

    fn reject(&mut self, record: u64, reason: String) {
        self.summary.records += 1;
        self.summary.reject(record, reason);
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        match &mut self.target {
            Target::Engine(engine) => {
                let mut valid = Vec::with_capacity(batch.len());
                for (record, event) in batch {
                    match engine.validate(&event) {
                        Ok(ev) => valid.push(ev),
                        Err(e) => {
                            let reason = if e.field.is_empty() {
                                e.message
                            } else {
                                format!("{}: {}", e.field, e.message)
                            };
                            self.summary.reject(record, reason);
                        }
                    }
                }
                if !valid.is_empty() {
                    for outcome in engine.ingest(valid)? {
                        self.summary.outcome(&outcome);
                    }
                }
            }
            Target::Server(remote) => remote.send(batch, &mut self.summary, &self.bar)?,
        }
        let rate = self.summary.records as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} records ({rate:.0}/s), {} rejected",
            self.summary.records, self.summary.rejected
        ));
        Ok(())
    }
}

/// The source of an event that names none is `default`; an event's own source is kept.
fn default_source(event: &mut Value, default: Option<&str>) {
    let (Some(default), Value::Object(o)) = (default, event) else {
        return;
    };
    let named = o
        .get("source")
        .is_some_and(|s| !s.is_null() && s.as_str() != Some(""));
    if !named {
        o.insert("source".into(), Value::String(default.to_owned()));
    }
}

fn format_of(file: &Path, format: Option<&str>) -> anyhow::Result<String> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match format {
        Some(f) => f.to_ascii_lowercase(),
        None if ext == "csv" || ext == "tsv" => "csv".into(),
        None if ext == "jsonl" || ext == "ndjson" || ext == "json" => "jsonl".into(),
        None if ext == "parquet" || ext == "pq" => "parquet".into(),
        None => bail!(
            "cannot guess the format of {}; pass --format jsonl, csv or parquet",
            file.display()
        ),
    })
}

fn read_mapping(mapping: Option<&Path>, format: &str) -> anyhow::Result<Mapping> {
    let path =
        mapping.ok_or_else(|| anyhow::anyhow!("{format} import needs --mapping <file.toml>"))?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read mapping {}", path.display()))?;
    Mapping::from_toml_str(&text).with_context(|| format!("mapping {}", path.display()))
}

fn bar(progress: bool, len: u64, unit: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let template = if unit == "bytes" {
        "{bar:30} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}"
    } else {
        "{bar:30} {human_pos}/{human_len} rows eta {eta} {msg}"
    };
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Imports `args.file` into `target`.
pub fn import_file(target: Target<'_>, args: &ImportArgs<'_>) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let file = args.file;
    let format = format_of(file, args.format)?;
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let handle = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut b = Batcher {
        target,
        pending: Vec::new(),
        summary: ImportSummary::default(),
        bar: ProgressBar::hidden(),
        started,
    };
    match format.as_str() {
        "jsonl" => {
            b.bar = bar(args.progress, size, "bytes");
            let reader = b.bar.wrap_read(handle);
            for (i, line) in BufReader::new(reader).lines().enumerate() {
                let line_no = i as u64 + 1;
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        b.reject(line_no, format!("unreadable line: {e}"));
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(mut event) => {
                        default_source(&mut event, args.source);
                        b.push(line_no, event)?;
                    }
                    Err(e) => b.reject(line_no, format!("invalid JSON: {e}")),
                }
            }
        }
        "csv" | "parquet" => {
            let mapping = read_mapping(args.mapping, &format)?;
            let rows = if format == "csv" {
                b.bar = bar(args.progress, size, "bytes");
                RowEvents::csv(b.bar.wrap_read(handle), &mapping, args.source)?
            } else {
                let (rows, count) = RowEvents::parquet(handle, &mapping, args.source)
                    .with_context(|| format!("{}", file.display()))?;
                b.bar = bar(args.progress, count, "rows");
                rows
            };
            let by_rows = format == "parquet";
            for row in rows {
                if by_rows {
                    b.bar.inc(1);
                }
                match row {
                    Ok((event, _truth)) => {
                        let row_no = event
                            .pointer("/properties/row")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        b.push(row_no, event)?;
                    }
                    Err(e) => b.reject(e.row, e.message),
                }
            }
        }
        other => bail!("unknown format {other:?}; use jsonl, csv or parquet"),
    }
    b.flush()?;
    b.bar.finish_and_clear();
    b.summary.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        records = b.summary.records,
        accepted = b.summary.accepted,
        rejected = b.summary.rejected,
        "import finished"
    );
    Ok(b.summary)
}

/// Sends events built by another command (`idgraph score`'s score events) to `target` in
/// the same batches, with the same retries and the same summary as an import.
pub fn import_events(target: Target<'_>, events: Vec<Value>) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let mut b = Batcher {
        target,
        pending: Vec::new(),
        summary: ImportSummary::default(),
        bar: ProgressBar::hidden(),
        started,
    };
    for (i, event) in events.into_iter().enumerate() {
        b.push(i as u64 + 1, event)?;
    }
    b.flush()?;
    b.summary.seconds = started.elapsed().as_secs_f64();
    Ok(b.summary)
}

/// A running server's `POST /v1/events`, called with gzip-compressed JSON batches.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
    key: String,
    /// Events per request; halved when the server answers that a batch is too large.
    batch: usize,
    /// How long a batch is retried on 429/503 or an unreachable server before giving up.
    patience: Duration,
}

impl Remote {
    pub fn new(server: &str, key: &str, patience: Duration) -> anyhow::Result<Remote> {
        let base = url::Url::parse(server)
            .with_context(|| format!("--server {server:?} is not a URL (http://host:port)"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--server must be an http:// or https:// URL");
        }
        let url = base
            .join("/v1/events")
            .with_context(|| format!("--server {server:?}"))?
            .to_string();
        if key.trim().is_empty() {
            bail!("--key is empty: pass an API key with the ingest permission");
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The client's connector needs the runtime's reactor.
        let client = {
            let _in_runtime = rt.enter();
            reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .user_agent(concat!("idgraph-import/", env!("CARGO_PKG_VERSION")))
                .build()?
        };
        Ok(Remote {
            rt,
            client,
            url,
            key: key.to_owned(),
            batch: BATCH,
            patience,
        })
    }

    fn send(
        &mut self,
        mut batch: Vec<(u64, Value)>,
        summary: &mut ImportSummary,
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        while !batch.is_empty() {
            let take = batch.len().min(self.batch);
            let rest = batch.split_off(take);
            match self.post(&batch, summary, bar)? {
                Posted::Done => batch = rest,
                Posted::TooLarge if batch.len() > 1 => {
                    self.batch = (batch.len() / 2).max(1);
                    batch.extend(rest);
                }
                Posted::TooLarge => {
                    summary.reject(
                        batch[0].0,
                        "the event is larger than the server's body limit (server.max_body_bytes)"
                            .into(),
                    );
                    batch = rest;
                }
            }
        }
        Ok(())
    }

    fn post(
        &self,
        batch: &[(u64, Value)],
        summary: &mut ImportSummary,
        bar: &ProgressBar,
    ) -> anyhow::Result<Posted> {
        let events: Vec<&Value> = batch.iter().map(|(_, e)| e).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&serde_json::to_vec(&events)?)?;
        let body = gz.finish()?;
        let deadline = Instant::now() + self.patience;
        let mut wait = Duration::from_millis(250);
        loop {
            // The request future is built inside the runtime (its timeout needs the timer).
            let sent = self.rt.block_on(async {
                self.client
                    .post(&self.url)
                    .bearer_auth(&self.key)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .body(body.clone())
                    .send()
                    .await
            });
            let retry_after = match sent {
                Err(e) if e.is_connect() || e.is_timeout() => {
                    bar.set_message(format!("server unreachable ({e}); retrying"));
                    None
                }
                Err(e) => return Err(e).context("sending a batch to the server"),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let answer: Value = self.rt.block_on(resp.json()).unwrap_or(Value::Null);
                    match status {
                        200 => {
                            record_results(batch, &answer, summary)?;
                            return Ok(Posted::Done);
                        }
                        413 => return Ok(Posted::TooLarge),
                        429 | 502 | 503 | 504 | 507 => {
                            bar.set_message(format!("server busy ({status}); backing off"));
                            retry_after
                        }
                        _ => bail!(
                            "the server refused a batch ({status}): {}",
                            answer
                                .pointer("/error/message")
                                .and_then(Value::as_str)
                                .unwrap_or("no message")
                        ),
                    }
                }
            };
            let pause = retry_after.unwrap_or(wait).min(Duration::from_secs(30));
            if Instant::now() + pause > deadline {
                bail!(
                    "the server kept refusing a batch (busy or unreachable) for {} s; the batches before it are stored (rerun the import: stored events count as duplicates)",
                    self.patience.as_secs()
                );
            }
            summary.retries += 1;
            std::thread::sleep(pause);
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
}

enum Posted {
    Done,
    TooLarge,
}

/// Counts a server's per-event answers (`results[i]`, in batch order).
fn record_results(
    batch: &[(u64, Value)],
    answer: &Value,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    let results = answer
        .get("results")
        .and_then(Value::as_array)
        .filter(|r| r.len() == batch.len())
        .ok_or_else(|| {
            anyhow::anyhow!("the server's answer to a batch has no per-event results")
        })?;
    for ((record, _), result) in batch.iter().zip(results) {
        if result["status"] == "rejected" {
            let err = &result["error"];
            let message = err["message"].as_str().unwrap_or("rejected");
            let reason = match err["field"].as_str() {
                Some(f) if !f.is_empty() => format!("{f}: {message}"),
                _ => message.to_owned(),
            };
            summary.reject(*record, reason);
            continue;
        }
        // Counted by status: a scoped key's answers leave out what it may not see.
        match result["status"].as_str() {
            Some("accepted") => {
                summary.accepted += 1;
                summary.merges += result["merged"].as_array().map_or(0, |m| m.len() as u64);
            }
            Some("duplicate") => summary.duplicate += 1,
            Some("suppressed") => summary.suppressed += 1,
            _ => summary.reject(
                *record,
                format!("unexpected answer {}", json!(result["status"])),
            ),
        }
    }
    Ok(())
}
