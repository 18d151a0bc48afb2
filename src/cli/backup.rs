//! `idgraph backup` and `idgraph restore` (see `crate::backup`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::Value;

#[derive(clap::Args, Debug)]
pub struct BackupArgs {
    /// The backup directory. With --server it is a path on the server's machine
    /// (absolute; inside `backup.dir` when that is set; defaults to `backup.dir`).
    #[arg(long)]
    pub to: Option<String>,
    /// Base URL of a running idgraph server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: Option<String>,
    /// An admin API key of that server.
    #[arg(long, env = "IDGRAPH_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// A stopped store's data directory (when no server holds it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The backup directory `idgraph backup --to` wrote.
    #[arg(long)]
    pub from: PathBuf,
    /// The new data directory (must not exist or be empty).
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Restore the latest backup taken at or before this time (RFC 3339); events after
    /// it are not replayed (see README "Backup and restore").
    #[arg(long)]
    pub at: Option<String>,
}

/// `idgraph backup`.
pub fn backup(config: Option<&PathBuf>, args: BackupArgs) -> anyhow::Result<()> {
    match (&args.server, &args.data_dir) {
        (Some(_), Some(_)) => bail!(
            "give either --server (a running server) or --data-dir (a stopped store), not both"
        ),
        (Some(server), None) => {
            let key = args.key.as_deref().ok_or_else(|| {
                anyhow::anyhow!("--server needs an admin key: pass --key or set IDGRAPH_KEY")
            })?;
            let record = remote(server, key, args.to.as_deref())?;
            crate::outln!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
        (None, data_dir) => {
            let s = super::existing(super::settings(config, data_dir.clone(), None)?)?;
            if s.graph.store != crate::config::GraphBackend::Embedded {
                bail!("idgraph backup backs up the embedded store; back up a graph database with its own tools");
            }
            let to = args
                .to
                .as_deref()
                .map(PathBuf::from)
                .or_else(|| s.backup.dir.clone())
                .ok_or_else(|| anyhow::anyhow!("--to: name the backup directory"))?;
            let store = crate::store::rocks::RocksStore::open_with_cache(
                &s.storage.data_dir,
                s.storage.block_cache_mb,
                s.storage.bottommost_compression,
                crate::crypto::for_settings(&s)?,
            )?;
            let record = crate::backup::backup(&store, &s, &to)?;
            crate::outln!("{}", serde_json::to_string_pretty(&record)?);
            Ok(())
        }
    }
}

fn remote(base: &str, key: &str, to: Option<&str>) -> anyhow::Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP client")?;
    rt.block_on(async {
        let url = format!("{}/v1/admin/backup", base.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3600))
            .build()
            .context("cannot build the HTTP client")?;
        let body = match to {
            Some(t) => serde_json::json!({ "to": t }),
            None => serde_json::json!({}),
        };
        let resp = client
            .post(&url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "the server refused the backup ({status}): {}",
                body["error"]["message"].as_str().unwrap_or("no message")
            );
        }
        Ok(body)
    })
}

/// `idgraph restore`.
pub fn restore(config: Option<&PathBuf>, args: RestoreArgs) -> anyhow::Result<()> {
    let at = args
        .at
        .as_deref()
        .map(crate::backup::parse_at)
        .transpose()?;
    let s = super::settings(config, Some(args.data_dir), None)?;
    if s.graph.store != crate::config::GraphBackend::Embedded {
        bail!("idgraph restore restores the embedded store only");
    }
    let outcome = crate::backup::restore(s, &args.from, at)?;
    crate::errln!(
        "restored backup {} (taken {}) into {}: {} profiles indexed, {} erasures re-applied",
        outcome.backup.id,
        outcome.backup.at,
        outcome.data_dir.display(),
        outcome.profiles_indexed,
        outcome.erasures_reapplied
    );
    crate::outln!("{}", serde_json::to_string_pretty(&outcome)?);
    Ok(())
}
