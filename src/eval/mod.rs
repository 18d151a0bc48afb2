//! `idgraph eval`: resolution quality on labelled data. Ingests a CSV (with the column
//! mapping of `idgraph import`) as events into a fresh store, reads back which profile each
//! record ended in, and scores that clustering against the ground truth (pairwise and
//! B-cubed precision/recall/F1), with wall time and peak memory.
//!
//! The truth is a column (`--truth cluster`), or a column and a regular expression whose
//! first capture group is the entity (`--truth 'rec_id~^rec-(\d+)'` for FEBRL). A record
//! with an empty truth cell is its own entity. A record idgraph rejects (e.g. no usable
//! identifier) is its own predicted cluster.

pub mod metrics;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::Serialize;
use serde_json::Value;

use crate::config::Settings;
use crate::engine::Engine;
use crate::ingest::identifier::BUILTIN_KINDS;
use crate::ingest::mapping::{Mapping, RowEvents};
use crate::store::rocks::RocksStore;
use crate::store::GraphStore;
use metrics::Scores;

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The labelled CSV file.
    pub file: PathBuf,
    /// Column mapping (the TOML format of `idgraph import`).
    #[arg(long)]
    pub mapping: PathBuf,
    /// Ground truth: a column, or `column~regex` (the first capture group is the entity).
    /// Default: the mapping's `truth` column.
    #[arg(long)]
    pub truth: Option<String>,
    /// Source of the events.
    #[arg(long, default_value = "third_party")]
    pub source: String,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also link records probabilistically (batch, `matching::batch`: blocking, a
    /// Fellegi-Sunter model trained on the file without labels), on top of the identifiers.
    /// Match probabilistically in the resolver, in real time: a model is first trained on
    /// the file's records (no labels), then the records are ingested one by one with
    /// matching on.
    #[arg(long, conflicts_with = "batch")]
    pub probabilistic: bool,
    /// Match probabilistically in one batch pass after ingest (all pairs known at once), for
    /// comparison with the real-time resolver.
    #[arg(long)]
    pub batch: bool,
    /// Match probability from which a probabilistic pair is linked.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub pairwise: Scores,
    pub bcubed: Scores,
    pub clusters: usize,
    pub records: usize,
    pub rejected: usize,
    /// Pairs compared and linked by the probabilistic pass (0 without `--probabilistic`).
    pub compared_pairs: usize,
    pub probable_links: usize,
    /// Why records were rejected (`field: reason` -> count); never values.
    pub rejections: std::collections::BTreeMap<String, usize>,
    /// What the resolver's probabilistic matching did (`--probabilistic`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matching: Option<crate::resolve::probable::MatchTotals>,
    /// Time spent training the model (`--probabilistic`), included in `wall_seconds`.
    pub train_seconds: f64,
    pub wall_seconds: f64,
    pub peak_rss_bytes: u64,
    /// How the trained model's prior was chosen (`--probabilistic`, `--batch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelReport>,
}

/// What training estimated, beside the scores.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub prior: Option<crate::matching::model::PriorEstimate>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub untrained_fields: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub blocked_pairs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How to read the entity of a record from its truth cell.
struct Truth {
    column: String,
    pattern: Option<regex::Regex>,
}

impl Truth {
    fn parse(spec: &str) -> anyhow::Result<Truth> {
        let (column, pattern) = match spec.split_once('~') {
            Some((c, p)) => {
                let re = regex::Regex::new(p).with_context(|| format!("--truth pattern {p:?}"))?;
                if re.captures_len() < 2 {
                    bail!("--truth pattern {p:?} needs a capture group for the entity");
                }
                (c, Some(re))
            }
            None => (spec, None),
        };
        if column.trim().is_empty() {
            bail!("--truth needs a column name");
        }
        Ok(Truth {
            column: column.trim().to_owned(),
            pattern,
        })
    }

    /// The entity named by a truth cell, `None` when the cell is empty or does not match.
    fn entity(&self, cell: Option<&str>) -> Option<String> {
        let cell = cell?.trim();
        if cell.is_empty() {
            return None;
        }
        match &self.pattern {
            None => Some(cell.to_owned()),
            Some(re) => re
                .captures(cell)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_owned()),
        }
    }
}

/// A scratch data directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Scratch> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("idgraph-eval-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Scratch(path))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Interns labels as small integers.
#[derive(Default)]
struct Labels(HashMap<String, usize>);

impl Labels {
    fn id(&mut self, label: String) -> usize {
        let next = self.0.len();
        *self.0.entry(label).or_insert(next)
    }
}

/// Runs the evaluation in a fresh temporary store.
pub fn run(mut settings: Settings, args: &EvalArgs) -> anyhow::Result<Report> {
    let started = Instant::now();
    let text = std::fs::read_to_string(&args.mapping)
        .with_context(|| format!("cannot read mapping {}", args.mapping.display()))?;
    let mut mapping = Mapping::from_toml_str(&text)
        .with_context(|| format!("mapping {}", args.mapping.display()))?;
    let truth = match (&args.truth, mapping.truth()) {
        (Some(spec), _) => Truth::parse(spec)?,
        (None, Some(column)) => Truth::parse(column)?,
        (None, None) => {
            bail!("no ground truth: pass --truth <column> or set `truth` in the mapping")
        }
    };
    mapping = mapping.with_truth(&truth.column);
    // Identifier kinds the mapping uses (e.g. FEBRL's national_id) are declared for the run.
    for kind in mapping.identifier_kinds() {
        if !BUILTIN_KINDS.contains(&kind)
            && !settings.identifiers.custom_kinds.iter().any(|k| k == kind)
        {
            settings.identifiers.custom_kinds.push(kind.to_owned());
        }
    }
    let dir = Scratch::new()?;
    settings.storage.data_dir = dir.0.clone();
    // A row with one malformed email still describes a person: score it on the rest.
    settings.identifiers.on_invalid = crate::config::OnInvalid::Drop;
    if !(0.0..=1.0).contains(&args.threshold) || args.threshold == 0.0 {
        bail!("--threshold must be in (0, 1]");
    }
    let mut train_seconds = 0.0;
    let mut records = Vec::new();
    let mut model_report = None;
    if args.probabilistic {
        let t = Instant::now();
        for (event, _) in csv_rows(args, &mapping)?.flatten() {
            records.push(crate::matching::batch::attributes(&event));
        }
        let file = crate::matching::batch::train(&records, 42).into_file(records.len());
        model_report = Some(ModelReport {
            prior: file.prior.clone(),
            untrained_fields: file.untrained_fields.clone(),
            blocked_pairs: file.blocked_pairs,
        });
        let path = settings.matching.model_path(&dir.0);
        std::fs::write(&path, serde_json::to_vec(&file)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        settings.matching.enabled = true;
        settings.matching.threshold = args.threshold;
        train_seconds = t.elapsed().as_secs_f64();
    }
    let tf_fields = settings
        .matching
        .tf_fields()
        .map_err(|e| anyhow::anyhow!(e))?;
    let store: Arc<dyn GraphStore> = Arc::new(RocksStore::open(&dir.0)?);
    let engine = Engine::with_store(settings, store, None)?;
    // The file's value frequencies are known up front, as a server's are after its first
    // load: the first records are scored with them too.
    if let Some(m) = engine.matcher() {
        for r in &records {
            m.frequencies.observe(None, r);
        }
    }
    drop(records);

    let mut record_ids = Vec::new();
    let mut attributes = Vec::new();
    let mut truths = Vec::new();
    let mut pending = Vec::new();
    let mut rejected = 0usize;
    let mut rejections = std::collections::BTreeMap::new();
    for row in csv_rows(args, &mapping)? {
        // A row that cannot be read (no record id, not CSV) is left out and counted, not
        // fatal: one bad line in a 50,000-row file does not end the evaluation.
        let (event, cell) = match row {
            Ok(r) => r,
            Err(e) => {
                rejected += 1;
                *rejections.entry(format!("row: {}", e.message)).or_insert(0) += 1;
                continue;
            }
        };
        let record = event_id(&event);
        if args.batch {
            attributes.push(crate::matching::batch::attributes(&event));
        }
        truths.push(truth.entity(cell.as_deref()));
        record_ids.push(record);
        match engine.validate(&event) {
            Ok(normalized) => pending.push(normalized),
            Err(e) => {
                rejected += 1;
                *rejections
                    .entry(format!("{}: {}", e.field, e.message))
                    .or_insert(0) += 1;
            }
        }
        if pending.len() >= 1000 {
            engine.ingest(std::mem::take(&mut pending))?;
        }
    }
    if !pending.is_empty() {
        engine.ingest(pending)?;
    }

    // Which profile each record ended in (the profile of its event's identifiers now).
    let mut predicted_labels = Labels::default();
    let mut truth_labels = Labels::default();
    let mut predicted = Vec::with_capacity(record_ids.len());
    let mut actual = Vec::with_capacity(record_ids.len());
    for (i, (record, entity)) in record_ids.iter().zip(truths).enumerate() {
        let profile = profile_of_record(&engine, record)?;
        predicted.push(predicted_labels.id(profile.unwrap_or_else(|| format!("\0record {i}"))));
        actual.push(truth_labels.id(entity.unwrap_or_else(|| format!("\0record {i}"))));
    }
    let (mut compared_pairs, mut probable_links) = (0, 0);
    if args.batch {
        let linked = crate::matching::batch::link(&attributes, args.threshold, 42, &tf_fields);
        compared_pairs = linked.compared;
        probable_links = linked.links.len();
        // The deterministic clusters, joined by the probable links under the guard.
        predicted = crate::matching::batch::cluster(
            &predicted,
            &attributes,
            &linked.model,
            &linked.tf,
            &linked.links,
        );
        model_report = Some(ModelReport {
            prior: Some(linked.prior.clone()),
            untrained_fields: Vec::new(),
            blocked_pairs: 0,
        });
    }
    let matching = engine.match_totals();
    if let Some(m) = &matching {
        compared_pairs = m.compared as usize;
        probable_links = m.merged as usize;
    }
    let clusters = predicted
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    drop(engine);
    Ok(Report {
        pairwise: metrics::pairwise(&predicted, &actual),
        bcubed: metrics::bcubed(&predicted, &actual),
        clusters,
        records: record_ids.len(),
        rejected,
        compared_pairs,
        probable_links,
        rejections,
        matching,
        train_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        peak_rss_bytes: crate::cli::bench::status_bytes("VmHWM"),
        model: model_report,
    })
}

type Rows = RowEvents;

fn csv_rows(args: &EvalArgs, mapping: &Mapping) -> anyhow::Result<Rows> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    Ok(RowEvents::csv(
        std::io::BufReader::new(file),
        mapping,
        Some(&args.source),
    )?)
}

fn event_id(event: &Value) -> String {
    event
        .get("event_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn profile_of_record(engine: &Engine, record: &str) -> anyhow::Result<Option<String>> {
    let Some(event) = engine.store().event(record)? else {
        return Ok(None);
    };
    for key in &event.identifiers {
        if let Some(profile) = engine.store().profile_of(key)? {
            return Ok(Some(profile.into_string()));
        }
    }
    Ok(None)
}

impl Report {
    pub fn human(&self, file: &Path) -> String {
        format!(
            "idgraph eval {}\n  records {} ({} rejected), clusters {}\n  pairwise  precision {:.4}  recall {:.4}  F1 {:.4}\n  B-cubed   precision {:.4}  recall {:.4}  F1 {:.4}\n  wall {:.2} s, peak RSS {} MB\n",
            file.display(),
            self.records,
            self.rejected,
            self.clusters,
            self.pairwise.precision,
            self.pairwise.recall,
            self.pairwise.f1,
            self.bcubed.precision,
            self.bcubed.recall,
            self.bcubed.f1,
            self.wall_seconds,
            self.peak_rss_bytes >> 20,
        )
    }
}
