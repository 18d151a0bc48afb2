//! The command line (clap): `serve`, `import`, `demo`, `profile`, `reindex`, `schema`, `eval`,
//! `bench`, `bench-search`, `bench-http`, `overlap`, `score`, `subject-access`.
//!
//! Settings are layered: defaults, `--config` TOML file, `IDGRAPH_*` environment variables,
//! then the flags given here.

pub mod backup;
pub mod bench;
pub mod bench_http;
pub mod bench_search;
pub mod demo;
pub mod import;
pub mod output;
pub mod overlap;
pub mod reresolve;
pub mod score;
pub mod subject_access;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Settings;
use crate::engine::Engine;
use crate::serve::Application;

#[derive(Parser, Debug)]
#[command(
    name = "idgraph",
    version,
    about = "Graph-native identity resolution: events in, golden profiles out"
)]
pub struct Cli {
    /// TOML configuration file (see README "Configuration").
    #[arg(long, global = true, env = "IDGRAPH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API.
    Serve {
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on, host:port (port 0: any free port) [default: server.bind of
        /// --config or IDGRAPH_SERVER__BIND, else 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Serve reads as a replica of a writer: a snapshot of its store first, then its
    /// write groups as they come (see the README's "Read replicas").
    Replica {
        /// The writer's base URL (`http://writer:8080`); needs an admin key of the writer
        /// in `replica.key` (`IDGRAPH_REPLICA__KEY`).
        #[arg(long)]
        follow: String,
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Address to listen on, host:port (port 0: any free port) [default: server.bind of
        /// --config or IDGRAPH_SERVER__BIND, else 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Import events from a JSONL file, or a CSV or Parquet file with a column mapping,
    /// into a data directory (no server running on it) or through a running server
    /// (`--server URL --key KEY`).
    Import {
        file: PathBuf,
        /// Source (web, crm, pos, ...) of events and rows that name none; an event's own
        /// `source` (or the mapping's `source` column) is kept.
        #[arg(long)]
        source: Option<String>,
        /// Column mapping (TOML) for CSV and Parquet files.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// jsonl, csv or parquet; guessed from the file extension when omitted.
        #[arg(long)]
        format: Option<String>,
        /// Data directory to import into; not with --server [default: storage.data_dir of
        /// --config or IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR", conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        /// Send the events through a running server's API (`http://host:8080`) instead of
        /// opening a data directory; retries with backoff on 429/503.
        #[arg(long, requires = "key")]
        server: Option<String>,
        /// API key (ingest permission) for --server.
        #[arg(long, env = "IDGRAPH_KEY", hide_env_values = true)]
        key: Option<String>,
        /// With --server: how long one batch is retried while the server is busy or
        /// unreachable before the import gives up.
        #[arg(long, default_value_t = 300)]
        retry_seconds: u64,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        /// Exit with an error (after the summary) when more rows than this are rejected.
        #[arg(long, default_value_t = 0)]
        max_rejects: u64,
    },
    /// Generate a realistic sample of people across sources into a fresh data directory,
    /// ingest it and serve it.
    Demo {
        /// Number of people to generate.
        #[arg(long, default_value_t = 3000)]
        people: usize,
        /// Data directory for the generated people (emptied first).
        #[arg(long, value_name = "DIR", default_value = "./idgraph-demo-data")]
        data_dir: PathBuf,
        /// Address to listen on, host:port (port 0: any free port) [default: server.bind of
        /// --config or IDGRAPH_SERVER__BIND, else 127.0.0.1:8080]
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
        /// Ingest and print the examples, then exit instead of serving.
        #[arg(long)]
        no_serve: bool,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Print the golden profile holding an identifier, e.g. `email:bob@example.com`.
    Profile {
        identifier: String,
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Rebuild the search index from the store (stop the server on that data directory
    /// first). A missing, corrupt or lagging index is also rebuilt at start-up.
    Reindex {
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Re-render every golden profile under the current survivorship settings and pins,
    /// in the background of a running server (`--server URL`, admin key in `--key` or
    /// `IDGRAPH_KEY`) or on a stopped store (`--data-dir`), with a progress bar. A server
    /// also does it by itself when it starts with changed survivorship settings.
    Reresolve {
        /// Base URL of a running idgraph server, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        server: Option<String>,
        /// An admin API key of that server.
        #[arg(long, env = "IDGRAPH_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Also match every record again under the current model and matching settings
        /// (new probable merges and review items), not only re-render.
        #[arg(long)]
        rematch: bool,
    },
    /// Re-estimate the probabilistic matching model from the store's records (no labels)
    /// and write it where the resolver loads it (`matching.model`, default
    /// `<data_dir>/matching-model.json`). Stop the server first on the embedded store;
    /// restart it to use the new model.
    Train {
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Train on at most this many records, drawn uniformly.
        #[arg(long, default_value_t = 500_000)]
        sample: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Print the model file's summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Export golden profiles, the identifier -> profile mapping, the graph's edges or the
    /// change feed as Parquet or JSON lines for a warehouse (see README "Exports"). Reads
    /// the embedded store read-only: it runs beside a serving server.
    Export {
        /// profiles, identifiers, graph or changes.
        #[arg(value_enum)]
        kind: crate::export::Kind,
        #[arg(long, value_enum, default_value = "parquet")]
        format: crate::export::Format,
        /// Directory to write `<kind>.<format>` and `<kind>.manifest.json` into.
        #[arg(long)]
        out: PathBuf,
        /// Incremental: only what change-feed records after this sequence number concern
        /// (the previous run's manifest `through`).
        #[arg(long)]
        since: Option<u64>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
        /// Data directory (the store and search index) [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Back up a store (see README "Backup and restore"): a running server's through its
    /// API (`--server URL --key K`; the server writes `--to` on its own machine), or a
    /// stopped store's (`--data-dir`). Incremental after the first backup into `--to`.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new, empty data directory, re-applying the erasures
    /// journalled after it and rebuilding the search index.
    Restore(backup::RestoreArgs),
    /// API keys: `idgraph keys new --name crm-sync --role ingest` prints a new random key
    /// (shown once) and the `[[auth.keys]]` entry to add to the configuration.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Graph database schema (Bolt store): `idgraph schema apply` creates the constraints
    /// and indexes of the configured `graph.bolt.flavour`, idempotently.
    Schema {
        #[command(subcommand)]
        action: SchemaAction,
    },
    /// Resolution quality on a labelled CSV: ingest it into a fresh store and score the
    /// clusters against the truth (pairwise and B-cubed precision/recall/F1).
    Eval(crate::eval::EvalArgs),
    /// Measure resolved ingest, lookups and storage footprint on generated data.
    Bench(bench::BenchArgs),
    /// Measure the search index at scale: build time, size, queries/s and latency while
    /// ingest runs, and how soon a change is searchable.
    BenchSearch(bench_search::SearchBenchArgs),
    /// Measure the live server over HTTP with wrk: ingest window by window as the store
    /// grows, lookups, search, `/health`, memory, disk, WAL and restart after kill -9.
    BenchHttp(bench_http::HttpBenchArgs),
    /// One side of a partner overlap without raw data (see README "Partner overlap (clean
    /// room)"): exchanges only blinded tokens of consented profiles' identifiers with the
    /// other side and prints counts, small ones suppressed. Reads the embedded store
    /// read-only: it runs beside a serving server.
    Overlap(overlap::OverlapArgs),
    /// Print the API's OpenAPI 3.1 document (`idgraph openapi > schema/openapi.json`).
    Openapi,
    /// Propensity scores: `idgraph score train --label purchase --horizon 30d` learns from
    /// the store's history, reports held-out AUC and calibration against a
    /// recency/frequency baseline, and writes a `score` trait to consenting profiles.
    Score {
        #[command(subcommand)]
        action: score::ScoreAction,
    },
    /// Write everything the store holds about one person (golden profile, identifiers,
    /// trait values, consents, audiences, links, events, merge history) as the JSON
    /// document `POST /v1/subject-access` answers. Reads the embedded store read-only.
    SubjectAccess(subject_access::SubjectAccessArgs),
}

#[derive(Subcommand, Debug)]
pub enum KeysAction {
    /// Generate a key.
    New {
        /// Who will hold it (shown in logs and the audit trail).
        #[arg(long)]
        name: String,
        /// ingest, service, agent, analyst or admin.
        #[arg(long)]
        role: String,
        /// Agents only: see personal values unmasked.
        #[arg(long)]
        unmask: bool,
    },
    /// Encryption at rest: re-wrap the data key of the data directory (and of each
    /// tenant's under `<data_dir>/tenants/`) under a new key-encryption key, without
    /// rewriting any data. The current KEK comes from `[encryption.kek]`; afterwards,
    /// point `[encryption.kek]` at the new one. Safe while a server runs.
    RotateKek {
        /// The new KEK's file (32 bytes: raw, hex or base64; owner-only).
        #[arg(long, conflicts_with_all = ["new_env", "new_aws_kms_key_id"])]
        new_file: Option<PathBuf>,
        /// The environment variable holding the new KEK (hex or base64).
        #[arg(long, conflicts_with = "new_aws_kms_key_id")]
        new_env: Option<String>,
        /// The new KEK is this AWS KMS key (id, ARN or alias of a symmetric key); with
        /// --new-aws-kms-region.
        #[arg(long, requires = "new_aws_kms_region")]
        new_aws_kms_key_id: Option<String>,
        /// The region of --new-aws-kms-key-id.
        #[arg(long, requires = "new_aws_kms_key_id")]
        new_aws_kms_region: Option<String>,
        /// Another KMS endpoint than the region's (a VPC endpoint, or a KMS-compatible
        /// server on this machine).
        #[arg(long, requires = "new_aws_kms_key_id")]
        new_aws_kms_endpoint: Option<String>,
        /// Data directory [default: storage.data_dir of --config or
        /// IDGRAPH_STORAGE__DATA_DIR, else ./idgraph-data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchemaAction {
    /// Create the constraints and indexes (safe to run again).
    Apply,
    /// Print the statements `apply` would send.
    Show,
}

/// `s`, if its data directory exists (commands that read a store never create one).
pub(crate) fn existing(s: Settings) -> anyhow::Result<Settings> {
    if !s.storage.data_dir.is_dir() {
        anyhow::bail!(
            "data directory {} does not exist",
            s.storage.data_dir.display()
        );
    }
    Ok(s)
}

/// The command line as given.
pub fn parse() -> Cli {
    Cli::parse()
}

impl Cli {
    /// The trace-export settings of a serving command (`serve`, `replica`, `demo` unless
    /// `--no-serve`), read before logging starts; `None` for other commands, or when the
    /// settings do not load (the command then reports that itself).
    pub fn telemetry(&self) -> Option<crate::config::TelemetrySettings> {
        match self.command {
            Command::Serve { .. }
            | Command::Replica { .. }
            | Command::Demo {
                no_serve: false, ..
            } => Settings::load(self.config.as_deref())
                .ok()
                .map(|s| s.telemetry),
            _ => None,
        }
    }
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::errln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn settings(
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    bind: Option<String>,
) -> anyhow::Result<Settings> {
    let mut s = Settings::load(config.map(|p| p.as_path()))?;
    if let Some(d) = data_dir {
        s.storage.data_dir = d;
    }
    if let Some(b) = bind {
        s.server.bind = b;
    }
    Ok(s)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Serves `engine` until Ctrl-C / SIGTERM.
pub fn serve(engine: Arc<Engine>) -> anyhow::Result<()> {
    let bind = engine.settings().server.bind.clone();
    let served = runtime()?.block_on({
        let engine = engine.clone();
        async move {
            // Signal handlers first: a stop request sent as soon as `listening on` is
            // printed must find them installed.
            let stop = crate::serve::Shutdown::listen()
                .map_err(|e| anyhow::anyhow!("cannot install the SIGTERM/SIGINT handlers: {e}"))?;
            let app = Application::with_engine(engine, &bind)?;
            let _reload = app.reload_tls_on_hangup();
            tracing::info!(port = app.port(), "idgraph listening");
            // Machine-readable for scripts and tests that start the binary on port 0.
            crate::outln!(
                "listening on {}://{}",
                app.scheme(),
                bind_with_port(&bind, app.port())
            );
            app.run_until_stopped(stop).await?;
            anyhow::Ok(())
        }
    });
    // The runtime is gone: its tasks are dropped and its blocking tasks have finished.
    tracing::info!(target: crate::telemetry::SHUTDOWN, "background tasks stopped");
    close(engine);
    served
}

/// Closes the engine on this (the main) thread: the HTTP workers release their handles as
/// they stop, and the store must be closed before the process exits, never by the last
/// worker while exit handlers already run.
pub(crate) fn close(engine: Arc<Engine>) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while Arc::strong_count(&engine) > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    if Arc::strong_count(&engine) > 1 {
        tracing::warn!("HTTP workers still hold the engine after 30 s; closing anyway");
    } else {
        tracing::info!(target: crate::telemetry::SHUTDOWN, "engine released; stopping the writer and the indexer");
    }
    drop(engine);
    tracing::info!(target: crate::telemetry::SHUTDOWN, "store closed");
}

pub(crate) fn bind_with_port(bind: &str, port: u16) -> String {
    match bind.rsplit_once(':') {
        Some((host, _)) => format!("{host}:{port}"),
        None => format!("{bind}:{port}"),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config.as_ref();
    match cli.command {
        Command::Serve { data_dir, bind } => {
            let s = settings(config, data_dir, bind)?;
            tracing::info!(data_dir = %s.storage.data_dir.display(), bind = %s.server.bind, "starting idgraph");
            serve(Arc::new(Engine::open(s)?))
        }
        Command::Replica {
            follow,
            data_dir,
            bind,
        } => {
            let mut s = settings(config, data_dir, bind)?;
            s.replica.follow = follow;
            tracing::info!(data_dir = %s.storage.data_dir.display(), bind = %s.server.bind, "starting an idgraph read replica");
            crate::replica::run(s)
        }
        Command::Import {
            file,
            source,
            mapping,
            format,
            data_dir,
            server,
            key,
            retry_seconds,
            json,
            max_rejects,
        } => {
            let args = import::ImportArgs {
                file: &file,
                source: source.as_deref(),
                mapping: mapping.as_deref(),
                format: format.as_deref(),
                progress: true,
            };
            let summary = match server {
                Some(url) => {
                    let remote = import::Remote::new(
                        &url,
                        key.as_deref().unwrap_or_default(),
                        std::time::Duration::from_secs(retry_seconds),
                    )?;
                    import::import_file(import::Target::Server(remote), &args)?
                }
                None => {
                    let engine = Engine::open(settings(config, data_dir, None)?)?;
                    import::import_file(import::Target::Engine(&engine), &args)?
                }
            };
            if json {
                crate::outln!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                crate::out!("{}", summary.human());
            }
            if summary.rejected > max_rejects {
                anyhow::bail!(
                    "{} of {} records were rejected, more than --max-rejects {max_rejects} allows (the summary lists the reasons; the accepted ones are stored)",
                    summary.rejected,
                    summary.records
                );
            }
            Ok(())
        }
        Command::Demo {
            people,
            data_dir,
            bind,
            no_serve,
            seed,
        } => {
            let s = settings(config, Some(data_dir), bind)?;
            demo::run(s, people, seed, !no_serve)
        }
        Command::Profile {
            identifier,
            data_dir,
        } => {
            let s = existing(settings(config, data_dir, None)?)?;
            let engine = Engine::open(s)?;
            let key = engine.parse_identifier("identifier", &identifier)?;
            let bytes = engine.lookup_key_bytes(&key)?;
            let profile: serde_json::Value = serde_json::from_slice(&bytes)?;
            crate::outln!("{}", serde_json::to_string_pretty(&profile)?);
            Ok(())
        }
        Command::Export {
            kind,
            format,
            out,
            since,
            force,
            data_dir,
        } => {
            let s = existing(settings(config, data_dir, None)?)?;
            if s.graph.store != crate::config::GraphBackend::Embedded {
                anyhow::bail!(
                    "idgraph export reads the embedded store; on a graph database, export \
                     from the database's own tools (not supported here yet)"
                );
            }
            let store = crate::store::rocks::RocksStore::open_read_only(
                &s.storage.data_dir,
                crate::crypto::for_settings(&s)?,
            )?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_message("rows written");
            let started = std::time::Instant::now();
            let manifest =
                crate::export::export(&store, kind, format, &out, since, force, &mut |rows| {
                    bar.set_position(rows)
                })?;
            bar.finish_and_clear();
            crate::errln!(
                "exported {} rows to {} in {:.1}s",
                manifest.rows,
                manifest.file.display(),
                started.elapsed().as_secs_f64()
            );
            crate::outln!("{}", serde_json::to_string_pretty(&manifest)?);
            Ok(())
        }
        Command::Reresolve {
            server: Some(server),
            key,
            data_dir: None,
            rematch,
        } => {
            let key = key.ok_or_else(|| {
                anyhow::anyhow!("--server needs an admin key: pass --key or set IDGRAPH_KEY")
            })?;
            reresolve::remote(&server, &key, rematch)
        }
        Command::Reresolve {
            server: Some(_),
            data_dir: Some(_),
            ..
        } => anyhow::bail!(
            "give either --server (a running server) or --data-dir (a stopped store), not both"
        ),
        Command::Reresolve {
            server: None,
            data_dir,
            rematch,
            ..
        } => reresolve::local(existing(settings(config, data_dir, None)?)?, rematch),
        Command::Reindex { data_dir } => {
            let s = existing(settings(config, data_dir, None)?)?;
            let started = std::time::Instant::now();
            let profiles = Engine::reindex(&s)?;
            crate::outln!(
                "reindexed {profiles} profiles in {:.1}s into {}",
                started.elapsed().as_secs_f64(),
                crate::engine::search_dir(&s).display()
            );
            Ok(())
        }
        Command::Train {
            data_dir,
            sample,
            seed,
            json,
        } => {
            let s = existing(settings(config, data_dir, None)?)?;
            if sample < crate::matching::train::MIN_RECORDS {
                anyhow::bail!(
                    "--sample must be at least {}",
                    crate::matching::train::MIN_RECORDS
                );
            }
            let started = std::time::Instant::now();
            let store = Engine::open_store(&s)?;
            let (file, labels) = crate::matching::train::train_store(
                store.as_ref(),
                sample,
                seed,
                s.matching.threshold,
            )?;
            drop(store);
            let path = s.matching.model_path(&s.storage.data_dir);
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(&file)?)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot move the model to {}", path.display()))?;
            let summary = serde_json::json!({
                "model": path,
                "records": file.records,
                "blocked_pairs": file.blocked_pairs,
                "em_iterations": file.em_iterations,
                "prior": file.model.prior,
                "prior_estimate": file.prior,
                "untrained_fields": file.untrained_fields,
                "labels": labels,
                "seconds": started.elapsed().as_secs_f64(),
            });
            if json {
                crate::outln!("{summary}");
            } else {
                crate::outln!(
                    "trained on {} records ({} blocked pairs, {} EM iterations) in {:.1}s; wrote {}",
                    file.records,
                    file.blocked_pairs,
                    file.em_iterations,
                    started.elapsed().as_secs_f64(),
                    path.display()
                );
                if let Some(p) = &file.prior {
                    crate::outln!(
                        "prior {:.3e} ({}); EM over the blocked pairs: {:.3e}; {}",
                        file.model.prior,
                        p.used,
                        p.em,
                        match (&p.rule, p.deterministic) {
                            (Some(rule), Some(d)) =>
                                format!("rule \"{rule}\" ({} pairs): {d:.3e}", p.rule_pairs),
                            _ => "no deterministic rule links enough pairs".to_owned(),
                        }
                    );
                }
                match &labels {
                    Some(l) => crate::outln!(
                        "stewards' decisions as labels: {} accepted, {} rejected; accepted pairs over the threshold {} -> {}, rejected under it {} -> {}; largest weight change per field (bits): {}",
                        l.accepted,
                        l.rejected,
                        l.accepted_over_threshold.0,
                        l.accepted_over_threshold.1,
                        l.rejected_under_threshold.0,
                        l.rejected_under_threshold.1,
                        l.weight_change
                            .iter()
                            .map(|(f, c)| format!("{f} {c}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => crate::outln!("no stewards' review decisions in the store: trained without labels"),
                }
                if !file.untrained_fields.is_empty() {
                    crate::outln!(
                        "not estimated (no pairs hold them): {}",
                        file.untrained_fields.join(", ")
                    );
                }
            }
            Ok(())
        }
        Command::Keys {
            action:
                KeysAction::RotateKek {
                    new_file,
                    new_env,
                    new_aws_kms_key_id,
                    new_aws_kms_region,
                    new_aws_kms_endpoint,
                    data_dir,
                },
        } => {
            let s = existing(settings(config, data_dir, None)?)?;
            let new = crate::crypto::KekSettings {
                file: new_file,
                env: new_env,
                aws_kms: new_aws_kms_key_id.map(|key_id| crate::crypto::kek::AwsKmsSettings {
                    key_id,
                    region: new_aws_kms_region.unwrap_or_default(),
                    endpoint: new_aws_kms_endpoint,
                }),
            };
            for (dir, key_id) in crate::crypto::rotate(&s, &new)? {
                crate::outln!("re-wrapped data key {key_id} of {}", dir.display());
            }
            crate::errln!(
                "done: set [encryption.kek] to the new key-encryption key before the next start"
            );
            Ok(())
        }
        Command::Keys {
            action: KeysAction::New { name, role, unmask },
        } => {
            use crate::governance::keys::{generate_key, hash_key, KeyRing, KeySettings, Role};
            let role: Role = serde_json::from_value(serde_json::Value::String(role.clone()))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--role {role:?}: expected ingest, service, agent, analyst, admin or operator"
                    )
                })?;
            let key = generate_key();
            let entry = KeySettings {
                name,
                role,
                hash: hash_key(&key),
                unmask,
                rate_per_second: 100.0,
                burst: 200,
                sources: Vec::new(),
                tenant: None,
            };
            KeyRing::new(std::slice::from_ref(&entry)).map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::outln!("key (shown once; give it to {}): {key}\n", entry.name);
            crate::outln!("[[auth.keys]]");
            crate::outln!("name = {:?}", entry.name);
            crate::outln!("role = {:?}", role.name());
            crate::outln!("hash = {:?}", entry.hash);
            if unmask {
                crate::outln!("unmask = true");
            }
            crate::outln!("rate_per_second = 100.0");
            crate::outln!("burst = 200");
            Ok(())
        }
        Command::Schema { action } => {
            let s = settings(config, None, None)?;
            let flavour = s.graph.bolt.flavour;
            if s.graph.store != crate::config::GraphBackend::Bolt {
                anyhow::bail!(
                    "graph.store is `embedded`, which needs no schema; set graph.store = \"bolt\" (IDGRAPH_GRAPH__STORE=bolt) to manage a graph database's schema"
                );
            }
            match action {
                SchemaAction::Show => {
                    for statement in crate::store::bolt::schema::statements(flavour) {
                        crate::outln!("{statement};");
                    }
                }
                SchemaAction::Apply => {
                    let n = crate::store::bolt::schema::apply(&s.graph.bolt)?;
                    if n == 0 {
                        crate::outln!("{flavour:?}: no user-defined constraints or indexes to apply (see schema/graph/)");
                    } else {
                        crate::outln!("{flavour:?}: applied {n} schema statements");
                    }
                }
            }
            Ok(())
        }
        Command::Eval(args) => {
            let s = settings(config, None, None)?;
            let report = crate::eval::run(s, &args)?;
            if args.json {
                crate::outln!("{}", serde_json::to_string(&report)?);
            } else {
                crate::out!("{}", report.human(&args.file));
            }
            Ok(())
        }
        Command::Bench(args) => {
            let s = settings(config, None, None)?;
            bench::run(s, args)
        }
        Command::BenchSearch(args) => {
            let s = settings(config, None, None)?;
            bench_search::run(s, args)
        }
        Command::BenchHttp(args) => bench_http::run(args),
        Command::Backup(args) => backup::backup(config, args),
        Command::Restore(args) => backup::restore(config, args),
        Command::Overlap(args) => overlap::run(config, args),
        Command::Openapi => {
            crate::out!("{}", crate::serve::openapi::document());
            Ok(())
        }
        Command::Score { action } => score::run(config, action),
        Command::SubjectAccess(args) => subject_access::run(config, args),
    }
}
