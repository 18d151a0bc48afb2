//! `idgraph import`: JSONL events, or CSV rows through a column mapping, resolved in
//! batches through the engine with a progress bar and a summary of accepted, duplicate
//! and rejected records (with reasons and line numbers, never values).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::Value;

use crate::engine::Engine;
use crate::ingest::event::NormalizedEvent;
use crate::ingest::mapping::{CsvEvents, Mapping};
use crate::resolve::EventOutcome;

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

    /// Human-readable summary.
    pub fn human(&self) -> String {
        let mut out = format!(
            "records: {}\naccepted: {}\nduplicate: {}\nrejected: {}\nmerges: {}\ntime: {:.2}s\n",
            self.records, self.accepted, self.duplicate, self.rejected, self.merges, self.seconds
        );
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

struct Batcher<'e> {
    engine: &'e Engine,
    pending: Vec<(u64, NormalizedEvent)>,
    summary: ImportSummary,
}

impl Batcher<'_> {
    fn push(&mut self, record: u64, event: Value) -> anyhow::Result<()> {
        self.summary.records += 1;
        match self.engine.validate(&event) {
            Ok(ev) => self.pending.push((record, ev)),
            Err(e) => {
                let reason = if e.field.is_empty() {
                    e.message
                } else {
                    format!("{}: {}", e.field, e.message)
                };
                self.summary.reject(record, reason);
            }
        }
        if self.pending.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let events: Vec<NormalizedEvent> = self.pending.drain(..).map(|(_, e)| e).collect();
        for outcome in self.engine.ingest(events)? {
            match outcome {
                EventOutcome::Accepted { merged, .. } => {
                    self.summary.accepted += 1;
                    self.summary.merges += merged.len() as u64;
                }
                EventOutcome::Duplicate { .. } => self.summary.duplicate += 1,
                EventOutcome::Suppressed { .. } => self.summary.suppressed += 1,
            }
        }
        Ok(())
    }
}

fn set_source(event: &mut Value, source: &str) {
    if let Value::Object(o) = event {
        o.insert("source".into(), Value::String(source.to_owned()));
    }
}

/// Imports `file` into `engine`. `progress` shows a bar on a terminal.
pub fn import_file(
    engine: &Engine,
    file: &Path,
    source: &str,
    mapping: Option<&Path>,
    format: Option<&str>,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let started = std::time::Instant::now();
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let format = match format {
        Some(f) => f.to_ascii_lowercase(),
        None if ext == "csv" || ext == "tsv" => "csv".into(),
        None if ext == "jsonl" || ext == "ndjson" || ext == "json" => "jsonl".into(),
        None => bail!(
            "cannot guess the format of {}; pass --format jsonl or --format csv",
            file.display()
        ),
    };
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = if progress {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut b = Batcher {
        engine,
        pending: Vec::new(),
        summary: ImportSummary::default(),
    };
    let handle = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let reader = bar.wrap_read(handle);
    match format.as_str() {
        "jsonl" => {
            for (i, line) in BufReader::new(reader).lines().enumerate() {
                let line_no = i as u64 + 1;
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        b.summary.records += 1;
                        b.summary.reject(line_no, format!("unreadable line: {e}"));
                        continue;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(mut event) => {
                        set_source(&mut event, source);
                        b.push(line_no, event)?;
                    }
                    Err(e) => {
                        b.summary.records += 1;
                        b.summary.reject(line_no, format!("invalid JSON: {e}"));
                    }
                }
            }
        }
        "csv" => {
            let mapping_path =
                mapping.ok_or_else(|| anyhow::anyhow!("CSV import needs --mapping <file.toml>"))?;
            let text = std::fs::read_to_string(mapping_path)
                .with_context(|| format!("cannot read mapping {}", mapping_path.display()))?;
            let mapping = Mapping::from_toml_str(&text)
                .with_context(|| format!("mapping {}", mapping_path.display()))?;
            for row in CsvEvents::new(reader, &mapping, source)? {
                match row {
                    Ok((event, _truth)) => {
                        let row_no = event
                            .pointer("/properties/row")
                            .and_then(Value::as_u64)
                            .unwrap_or(0);
                        b.push(row_no, event)?;
                    }
                    Err(e) => {
                        b.summary.records += 1;
                        b.summary.reject(e.row, e.message);
                    }
                }
            }
        }
        other => bail!("unknown format {other:?}; use jsonl or csv"),
    }
    b.flush()?;
    bar.finish_and_clear();
    b.summary.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        records = b.summary.records,
        accepted = b.summary.accepted,
        rejected = b.summary.rejected,
        "import finished"
    );
    Ok(b.summary)
}
