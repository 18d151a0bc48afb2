//! `idgraph reresolve`: re-render every golden profile under the current survivorship
//! settings (see `engine::reresolve`), on a running server over its API
//! (`--server URL --key K`) or on a stopped store (`--data-dir`), with a progress bar.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::config::Settings;
use crate::engine::reresolve::{Progress, RunState};
use crate::engine::Engine;

fn bar() -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} profiles, {per_sec}, eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn summary(done: u64, rate: f64, state: &str) -> String {
    format!("re-resolve {state}: {done} profiles re-rendered ({rate:.0} profiles/s)")
}

/// Runs on a stopped store, in this process.
pub fn local(settings: Settings, rematch: bool) -> anyhow::Result<()> {
    let engine = Arc::new(Engine::open(settings)?);
    engine.start_reresolve("cli", rematch)?;
    let bar = bar();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let p: Progress = engine.reresolve_progress();
        bar.set_length(p.profiles_total);
        bar.set_position(p.profiles_done);
        match p.state {
            RunState::Done => {
                bar.finish_and_clear();
                crate::outln!(
                    "{}",
                    summary(p.profiles_done, p.profiles_per_second, "done")
                );
                return Ok(());
            }
            RunState::Failed => {
                bar.abandon();
                bail!(
                    "re-resolve failed after {} profiles: {}",
                    p.profiles_done,
                    p.error.unwrap_or_default()
                );
            }
            _ => {}
        }
    }
}

/// Starts a run on the server at `base` with admin key `key` and follows it.
pub fn remote(base: &str, key: &str, rematch: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the HTTP client")?;
    rt.block_on(async {
        let url = format!("{}/v1/admin/reresolve", base.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?;
        let resp = client
            .post(&url)
            .query(&[("rematch", rematch)])
            .bearer_auth(key)
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            bail!(
                "the server refused the re-resolve ({status}): {}",
                body["error"]["message"].as_str().unwrap_or("no message")
            );
        }
        let bar = bar();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let p: Value = client
                .get(&url)
                .bearer_auth(key)
                .send()
                .await
                .with_context(|| format!("cannot reach {base}"))?
                .error_for_status()
                .context("cannot read the re-resolve's progress")?
                .json()
                .await
                .context("the progress is not JSON")?;
            let done = p["profiles_done"].as_u64().unwrap_or(0);
            bar.set_length(p["profiles_total"].as_u64().unwrap_or(0));
            bar.set_position(done);
            let rate = p["profiles_per_second"].as_f64().unwrap_or(0.0);
            match p["state"].as_str() {
                Some("done") => {
                    bar.finish_and_clear();
                    crate::outln!("{}", summary(done, rate, "done"));
                    return Ok(());
                }
                Some("failed") => {
                    bar.abandon();
                    bail!(
                        "re-resolve failed after {done} profiles: {}",
                        p["error"].as_str().unwrap_or("no reason given")
                    );
                }
                _ => {}
            }
        }
    })
}
