//! `idgraph score train`: learns a propensity model from the store's own history (see
//! [`crate::scoring`]), prints the held-out report, saves the model under
//! `<data_dir>/models/` and writes each consenting profile's score back as an event,
//! through a running server (`--server URL`) or straight into a stopped store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::import::{import_events, ImportSummary, Remote, Target};
use crate::config::{GraphBackend, Period, Settings};
use crate::engine::Engine;
use crate::scoring::history::History;
use crate::scoring::{self, Plan, Report, Trained};
use crate::store::rocks::RocksStore;

#[derive(clap::Subcommand, Debug)]
pub enum ScoreAction {
    /// Train a model that predicts whether a profile has an event of type `--label`
    /// within `--horizon`, report it against a recency/frequency baseline on the last
    /// horizon held out, and write the scores to the profiles (trait `score`).
    Train(TrainArgs),
}

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Json,
    Text,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// The event type to predict, e.g. purchase.
    #[arg(long)]
    pub label: String,
    /// How far ahead: a period like 30d, 12h (also the length of the held-out period).
    #[arg(long, default_value = "30d")]
    pub horizon: String,
    /// Consent purpose a profile must have granted to be trained on and scored.
    #[arg(long, default_value = "analytics")]
    pub purpose: String,
    /// Data directory whose history is read (read-only, beside a running server) [default:
    /// storage.data_dir of --config or IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
    #[arg(long, value_name = "DIR", visible_alias = "dir")]
    pub data_dir: Option<PathBuf>,
    /// Write the scores through this running server's API (the one serving the data
    /// directory) instead of opening the store for writing.
    #[arg(long)]
    pub server: Option<String>,
    /// Environment variable holding an API key with the ingest permission, for --server.
    #[arg(long, value_name = "VAR", default_value = "IDGRAPH_KEY")]
    pub key_env: String,
    /// With --server: how long one batch is retried while the server is busy.
    #[arg(long, default_value_t = 300)]
    pub retry_seconds: u64,
    /// Train and report only: no scores written, no model file.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "json")]
    pub format: ReportFormat,
}

pub fn run(config: Option<&PathBuf>, action: ScoreAction) -> anyhow::Result<()> {
    let ScoreAction::Train(args) = action;
    let horizon =
        Period::try_from(args.horizon.clone()).map_err(|e| anyhow::anyhow!("--horizon: {e}"))?;
    if args.label.trim().is_empty() {
        bail!("--label is empty: name the event type to predict, e.g. --label purchase");
    }
    let s = super::existing(super::settings(config, args.data_dir.clone(), None)?)?;
    if s.graph.store != GraphBackend::Embedded {
        bail!(
            "idgraph score reads the embedded store's event history; graph.store is not `embedded`"
        );
    }
    if !s.consent.purposes.contains(&args.purpose) {
        bail!(
            "--purpose {:?} is not a configured consent purpose ([consent] purposes: {})",
            args.purpose,
            s.consent.purposes.join(", ")
        );
    }
    let key = match &args.server {
        Some(_) => Some(std::env::var(&args.key_env).map_err(|_| {
            anyhow::anyhow!(
                "--server needs an API key with the ingest permission in the environment variable {} (--key-env)",
                args.key_env
            )
        })?),
        None => None,
    };
    let plan = Plan {
        label: args.label.clone(),
        horizon,
        purpose: args.purpose.clone(),
    };

    let started = std::time::Instant::now();
    let (trained, addresses) = {
        let store =
            RocksStore::open_read_only(&s.storage.data_dir, crate::crypto::for_settings(&s)?)?;
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_message("events read");
        let history = History::read(&store, &mut |n| bar.set_position(n))?;
        bar.finish_and_clear();
        let access = scoring::access(&store, &history, &plan.purpose)?;
        let trained = scoring::train(&history, &access, &plan)?;
        (trained, access)
    };
    tracing::info!(
        profiles = trained.report.profiles,
        scored = trained.scores.len(),
        seconds = started.elapsed().as_secs_f64(),
        "score model trained"
    );

    let mut outcome = json!({});
    if !args.dry_run {
        let file = save_model(&s.storage.data_dir, &trained)?;
        outcome["model_file"] = json!(file);
        let scored_at = chrono::Utc::now();
        let mut events = Vec::with_capacity(trained.scores.len());
        let mut without_identifier = 0u64;
        for (id, p) in &trained.scores {
            match addresses.get(id).and_then(|a| a.identifier.as_ref()) {
                Some(identifier) => events.push(scoring::score_event(
                    &trained.saved,
                    id,
                    identifier,
                    *p,
                    scored_at,
                )),
                None => without_identifier += 1,
            }
        }
        let summary = write(&s, &args, key.as_deref(), events)?;
        outcome["written"] = written(&summary, without_identifier);
        print(&trained.report, &outcome, args.format)?;
        if summary.rejected > 0 {
            bail!(
                "{} score events were rejected (see `written.reasons`); the others are stored",
                summary.rejected
            );
        }
    } else {
        print(&trained.report, &outcome, args.format)?;
    }
    Ok(())
}

fn written(summary: &ImportSummary, without_identifier: u64) -> Value {
    json!({
        "accepted": summary.accepted,
        "duplicate": summary.duplicate,
        "rejected": summary.rejected,
        "suppressed": summary.suppressed,
        "reasons": summary.reasons,
        "without_identifier": without_identifier,
    })
}

/// `<data_dir>/models/score-<label>.json`, written whole then moved into place.
fn save_model(data_dir: &Path, trained: &Trained) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("models");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name: String = trained
        .saved
        .label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("score-{name}.json"));
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&trained.saved)?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path)
        .with_context(|| format!("cannot move the model to {}", path.display()))?;
    Ok(path)
}

fn write(
    s: &Settings,
    args: &TrainArgs,
    key: Option<&str>,
    events: Vec<Value>,
) -> anyhow::Result<ImportSummary> {
    match (&args.server, key) {
        (Some(url), Some(key)) => {
            let remote = Remote::new(url, key, Duration::from_secs(args.retry_seconds))?;
            import_events(Target::Server(remote), events)
        }
        _ => {
            let engine = Engine::open(s.clone()).with_context(|| {
                format!(
                    "cannot open {} for writing the scores (if a server runs on it, pass --server URL)",
                    s.storage.data_dir.display()
                )
            })?;
            let summary = import_events(Target::Engine(&engine), events);
            drop(engine);
            summary
        }
    }
}

fn print(report: &Report, outcome: &Value, format: ReportFormat) -> anyhow::Result<()> {
    match format {
        ReportFormat::Json => {
            let mut v = serde_json::to_value(report)?;
            if let (Value::Object(o), Value::Object(extra)) = (&mut v, outcome) {
                o.extend(extra.clone());
            }
            crate::outln!("{}", serde_json::to_string_pretty(&v)?);
        }
        ReportFormat::Text => crate::out!("{}", text(report, outcome)),
    }
    Ok(())
}

fn text(r: &Report, outcome: &Value) -> String {
    let mut out = format!(
        "model {} predicts `{}` within {} (purpose {})\n\
         history: {} events of {} profiles, latest {}; {} profiles without consent left out\n\
         training: {} profiles as of {}, {} positive by {}\n\
         held out: {} profiles as of {}, {} positive by {} (base rate {:.3})\n\n\
         {:<10} {:>7} {:>7} {:>7}\n\
         {:<10} {:>7.4} {:>7.4} {:>7.4}\n\
         {:<10} {:>7.4} {:>7.4} {:>7.4}\n\n\
         reliability of the model on the held-out profiles:\n\
         {:<11} {:>8} {:>10} {:>9}\n",
        r.model_version,
        r.label,
        r.horizon,
        r.purpose,
        r.events,
        r.profiles,
        r.latest_event,
        r.without_consent,
        r.train.profiles,
        r.train.cutoff,
        r.train.positives,
        r.train.label_until,
        r.test.profiles,
        r.test.cutoff,
        r.test.positives,
        r.test.label_until,
        r.test_base_rate,
        "",
        "AUC",
        "Brier",
        "ECE",
        "model",
        r.model.auc,
        r.model.brier,
        r.model.ece,
        "baseline",
        r.baseline.auc,
        r.baseline.brier,
        r.baseline.ece,
        "predicted",
        "profiles",
        "mean pred",
        "observed",
    );
    for b in &r.model.reliability {
        let cell = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.3}"));
        out.push_str(&format!(
            "{:<11} {:>8} {:>10} {:>9}\n",
            format!("{:.1}-{:.1}", b.low, b.high),
            b.profiles,
            cell(b.predicted),
            cell(b.observed)
        ));
    }
    out.push_str("\nlargest weights of the scoring model (standardized features):\n");
    for (name, w) in &r.top_weights {
        out.push_str(&format!("  {w:>+8.3}  {name}\n"));
    }
    out.push_str(&format!("\nscored profiles: {}\n", r.scored));
    if let Some(w) = outcome.get("written") {
        out.push_str(&format!(
            "score events: {} written, {} already there, {} rejected, {} profiles without an identifier to address\n",
            w["accepted"], w["duplicate"], w["rejected"], w["without_identifier"]
        ));
    }
    if let Some(f) = outcome.get("model_file").and_then(Value::as_str) {
        out.push_str(&format!("model file: {f}\n"));
    }
    out
}
