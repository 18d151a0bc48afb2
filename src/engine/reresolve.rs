//! Re-resolving existing profiles in the background: every profile's golden record is
//! rendered again under the current survivorship rules, source priorities and pins (and
//! its household address, search document and change-feed record follow, as for any
//! changed profile). Pages of profiles go through the writer like any other write, so
//! ingest and reads carry on meanwhile (no downtime) and a page never sees half of a
//! concurrent merge.
//!
//! Started by `POST /v1/admin/reresolve` or `idgraph reresolve` (which calls it on a
//! running server, or runs it on a stopped store), and by `idgraph serve` itself when
//! the survivorship settings differ from those the store was last rendered with
//! (`<data_dir>/survivorship.fingerprint`). One run at a time; progress is
//! `GET /v1/admin/reresolve` and the `idgraph_reresolve_profiles` gauge.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::writer::{Op, OpResult};
use super::{Engine, EngineError};
use crate::store::ProfileId;

/// Profiles rendered per write.
const PAGE: usize = 500;
/// The file holding the fingerprint of the survivorship settings last applied.
const FINGERPRINT_FILE: &str = "survivorship.fingerprint";

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    #[default]
    Idle,
    Counting,
    Running,
    Done,
    Failed,
}

/// The progress of the current (or last) run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Progress {
    pub state: RunState,
    /// Why the run started: `api`, `cli` or `settings_changed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Whether records are matched again too (the model or matching settings changed).
    pub rematch: bool,
    pub profiles_done: u64,
    pub profiles_total: u64,
    pub profiles_per_second: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// In the answer to a start while a run was already on (no second run started).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub already_running: bool,
}

/// Shared progress of the engine's re-resolve runs.
#[derive(Default)]
pub struct Reresolver(Mutex<Progress>);

impl Reresolver {
    pub fn progress(&self) -> Progress {
        self.0.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        if let Ok(mut p) = self.0.lock() {
            f(&mut p);
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The fingerprints of what decides golden values (survivorship and source settings) and
/// of what decides merges (matching settings and the model file), as stored in
/// `survivorship.fingerprint` (a file of an earlier version holds the first alone).
fn fingerprint(engine: &Engine) -> String {
    let s = engine.settings();
    let golden = sha256_hex(
        serde_json::json!({"survivorship": s.survivorship, "sources": s.sources})
            .to_string()
            .as_bytes(),
    );
    let model = std::fs::read(s.matching.model_path(&s.storage.data_dir)).unwrap_or_default();
    let matching =
        sha256_hex(format!("{}{}", serde_json::json!(s.matching), sha256_hex(&model)).as_bytes());
    format!("{golden}\n{matching}")
}

/// What changed between a stored fingerprint and the current one: (golden values,
/// matching).
fn changes(old: &str, now: &str) -> (bool, bool) {
    let mut old = old.lines();
    let mut now = now.lines();
    let (og, ng) = (
        old.next().unwrap_or_default(),
        now.next().unwrap_or_default(),
    );
    // An old file without the matching line: matching is not known to have changed.
    let (om, nm) = (old.next(), now.next().unwrap_or_default());
    (
        og.trim() != ng.trim(),
        om.is_some_and(|o| o.trim() != nm.trim()),
    )
}

impl Engine {
    /// The progress of the current or last re-resolve run.
    pub fn reresolve_progress(&self) -> Progress {
        self.reresolver.progress()
    }

    /// Whether the survivorship settings, and whether the matching settings or model,
    /// differ from the ones the store was last resolved with (a store without a record of
    /// them has never been resolved with different ones: it records the current ones and
    /// answers no to both).
    pub fn resolution_changed(&self) -> Result<(bool, bool), EngineError> {
        let path = self.settings().storage.data_dir.join(FINGERPRINT_FILE);
        let now = fingerprint(self);
        match std::fs::read_to_string(&path) {
            Ok(old) => Ok(changes(&old, &now)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_fingerprint(&path, &now)?;
                Ok((false, false))
            }
            Err(e) => Err(EngineError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    /// Starts a background run re-rendering every profile. While one runs, no second one
    /// starts: the running one's progress is answered with `already_running`.
    /// With `rematch`, every record is also matched again under the current model and
    /// matching settings (new probable merges, review items), not only re-rendered.
    pub fn start_reresolve(
        self: &Arc<Self>,
        trigger: &str,
        rematch: bool,
    ) -> Result<Progress, EngineError> {
        {
            let mut p = self
                .reresolver
                .0
                .lock()
                .map_err(|_| EngineError::ShuttingDown)?;
            if matches!(p.state, RunState::Counting | RunState::Running) {
                let mut running = p.clone();
                running.already_running = true;
                return Ok(running);
            }
            *p = Progress {
                state: RunState::Counting,
                trigger: Some(trigger.to_owned()),
                rematch,
                started_at: Some(crate::profile::golden::iso(super::now_ms())),
                ..Progress::default()
            };
        }
        let engine = self.clone();
        std::thread::Builder::new()
            .name("reresolve".into())
            .spawn(move || {
                let result = engine.run_reresolve(rematch);
                engine.reresolver.update(|p| {
                    p.finished_at = Some(crate::profile::golden::iso(super::now_ms()));
                    match result {
                        Ok(()) => p.state = RunState::Done,
                        Err(e) => {
                            p.state = RunState::Failed;
                            p.error = Some(e.to_string());
                        }
                    }
                });
                let p = engine.reresolve_progress();
                tracing::info!(
                    state = ?p.state,
                    profiles = p.profiles_done,
                    "re-resolve finished"
                );
            })
            .map_err(|e| EngineError::Config(format!("cannot start the re-resolve thread: {e}")))?;
        Ok(self.reresolve_progress())
    }

    /// Runs one re-resolve to the end on this thread.
    fn run_reresolve(&self, rematch: bool) -> Result<(), EngineError> {
        let fingerprint_now = fingerprint(self);
        let total = self.count_profiles()?;
        self.reresolver.update(|p| {
            p.profiles_total = total;
            p.state = RunState::Running;
        });
        let started = Instant::now();
        self.for_each_profile_page(|page| {
            let n = page.len();
            self.rerender(page, rematch)?;
            let rate = |done: u64| done as f64 / started.elapsed().as_secs_f64().max(1e-3);
            self.reresolver.update(|p| {
                p.profiles_done += n as u64;
                p.profiles_total = p.profiles_total.max(p.profiles_done);
                p.profiles_per_second = rate(p.profiles_done);
            });
            Ok(())
        })?;
        let path = self.settings().storage.data_dir.join(FINGERPRINT_FILE);
        write_fingerprint(&path, &fingerprint_now)
    }

    /// Calls `f` with every profile id in the store, a page of [`PAGE`] at a time, in id
    /// order (re-resolve runs and audience passes).
    pub(super) fn for_each_profile_page(
        &self,
        mut f: impl FnMut(Vec<ProfileId>) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let mut after: Option<ProfileId> = None;
        loop {
            let page: Vec<ProfileId> = self
                .store
                .goldens_after(after.as_ref(), PAGE)?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            let Some(last) = page.last().cloned() else {
                return Ok(());
            };
            let n = page.len();
            f(page)?;
            if n < PAGE {
                return Ok(());
            }
            after = Some(last);
        }
    }

    /// Profiles in the store (one pass over the golden records' keys).
    fn count_profiles(&self) -> Result<u64, EngineError> {
        let mut after: Option<ProfileId> = None;
        let mut count = 0u64;
        loop {
            let page = self.store.goldens_after(after.as_ref(), 10_000)?;
            count += page.len() as u64;
            match page.last() {
                Some((id, _)) if page.len() == 10_000 => after = Some(id.clone()),
                _ => return Ok(count),
            }
        }
    }

    /// Re-renders one page of profiles through the writer, waiting while it is full.
    pub(super) fn rerender(
        &self,
        ids: Vec<ProfileId>,
        rematch: bool,
    ) -> Result<usize, EngineError> {
        let mut pause = Duration::from_millis(10);
        loop {
            match self.submit(Op::Rerender(ids.clone(), rematch)) {
                Ok(rx) => {
                    return match rx
                        .blocking_recv()
                        .map_err(|_| EngineError::ShuttingDown)??
                    {
                        OpResult::Rerendered(n) => Ok(n),
                        _ => Err(EngineError::ShuttingDown),
                    }
                }
                Err(EngineError::Overloaded) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

fn write_fingerprint(path: &std::path::Path, value: &str) -> Result<(), EngineError> {
    std::fs::write(path, value)
        .map_err(|e| EngineError::Config(format!("cannot write {}: {e}", path.display())))
}
