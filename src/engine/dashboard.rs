//! The numbers of the console's analytics dashboard (`GET /v1/stats`), never computed by
//! scanning the store per request:
//!
//! - **Per day** (incremental): profiles created, merges, splits, conflicts (merges a rule
//!   refused) and deleted links per UTC day, folded from the history entries of every
//!   committed write group (a [`CommitListener`] on the writer thread) and saved to
//!   `<data_dir>/dashboard.json` every few seconds while they change (a crash loses at
//!   most the groups since the last save); at most [`MAX_DAYS`] days are kept.
//! - **Snapshot** (cached): profile and identifier totals, identifiers per profile and
//!   household sizes as distributions, which sources see the same people, and the largest
//!   profiles, computed by one pass over the golden profiles ([`DashboardPass`]) in the
//!   background at most every `server.stats_refresh_seconds`, and only when write groups
//!   were committed since the last pass began; each pass also records the day's totals
//!   (profiles and identifiers over time). The snapshot is saved to
//!   `<data_dir>/dashboard-snapshot.json` with the store's commit sequence number when its
//!   pass began (a replica's store carries the writer's), so a restart serves it at once
//!   and passes again only once the store changes. A pass reads
//!   a page at a time, so that `serve` can pace it (a share of one core, not a core for
//!   minutes at millions of profiles) and stop it between pages when the server stops.
//! - **Match scores** (since start): the probabilistic matcher's candidate scores in
//!   twenty buckets, with the thresholds (`resolve::probable::MatchCounters`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::writer::CommitListener;
use super::{Engine, EngineError};
use crate::model::{GoldenProfile, HistoryKind, ProfileId};
use crate::store::Changes;

/// Days of per-day counts kept.
pub const MAX_DAYS: usize = 400;
/// Largest profiles listed.
const LARGEST: usize = 10;
/// Golden profiles a pass reads per step.
const PAGE: usize = 1000;

/// One day's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    pub created: u64,
    pub merges: u64,
    pub splits: u64,
    pub conflicts: u64,
    pub links_deleted: u64,
}

/// Profiles and identifiers at the last snapshot of a day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayTotals {
    pub profiles: u64,
    pub identifiers: u64,
}

/// What is saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Daily {
    /// The highest history sequence number counted.
    pub seen_history: u64,
    /// `YYYY-MM-DD` → counts.
    pub days: BTreeMap<String, DayCounts>,
    /// `YYYY-MM-DD` → totals at the day's last snapshot.
    pub totals: BTreeMap<String, DayTotals>,
}

/// A bucket of a distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub label: String,
    pub count: u64,
}

/// A profile of the mega-profile watch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Largest {
    pub profile_id: ProfileId,
    pub identifiers: u64,
    pub events: u64,
    pub sources: usize,
}

/// The cached pass over every profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// RFC 3339.
    pub computed_at: String,
    pub profiles: u64,
    pub identifiers: u64,
    pub identifiers_by_kind: BTreeMap<String, u64>,
    pub identifiers_per_profile: Vec<Bucket>,
    /// Households (two or more profiles) by their number of profiles.
    pub household_sizes: Vec<Bucket>,
    pub profiles_in_households: u64,
    /// Profiles seen by each pair of sources (the diagonal: by the source).
    pub source_overlap: SourceOverlap,
    pub largest: Vec<Largest>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceOverlap {
    pub sources: Vec<String>,
    pub matrix: Vec<Vec<u64>>,
}

/// `<data_dir>/dashboard-snapshot.json`: the last snapshot and the store's commit
/// sequence number when its pass began.
#[derive(Debug, Serialize, Deserialize)]
struct SavedSnapshot {
    commit_seq: u64,
    snapshot: Snapshot,
}

/// The dashboard's state: the per-day counts and the cached snapshot.
pub struct Dashboard {
    daily: Mutex<Daily>,
    dirty: AtomicBool,
    path: PathBuf,
    snapshot_path: PathBuf,
    /// The snapshot and the commit sequence number its pass began at.
    snapshot: RwLock<Option<(u64, Arc<Snapshot>)>>,
}

fn day_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Where `n` falls among `edges` (upper bounds, inclusive; the last bucket is open).
fn bucket(n: u64, edges: &[(u64, &str)], last: &str) -> String {
    edges
        .iter()
        .find(|(max, _)| n <= *max)
        .map_or(last, |(_, l)| l)
        .to_owned()
}

const PER_PROFILE: [(u64, &str); 6] = [
    (1, "1"),
    (2, "2"),
    (3, "3"),
    (5, "4-5"),
    (10, "6-10"),
    (20, "11-20"),
];
const HOUSEHOLD: [(u64, &str); 4] = [(2, "2"), (3, "3"), (4, "4"), (6, "5-6")];

fn ordered(counts: BTreeMap<String, u64>, edges: &[(u64, &str)], last: &str) -> Vec<Bucket> {
    edges
        .iter()
        .map(|(_, l)| *l)
        .chain(std::iter::once(last))
        .map(|l| Bucket {
            label: l.to_owned(),
            count: counts.get(l).copied().unwrap_or_default(),
        })
        .collect()
}

impl Dashboard {
    /// Loads the saved per-day counts from `<data_dir>/dashboard.json` (an unreadable file
    /// starts over, with a warning: these are statistics, not data).
    pub fn open(data_dir: &std::path::Path, history_seq: u64) -> Dashboard {
        let path = data_dir.join("dashboard.json");
        let daily = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "dashboard.json is unreadable; the per-day counts start over");
                Daily {
                    seen_history: history_seq,
                    ..Daily::default()
                }
            }),
            Err(_) => Daily {
                seen_history: history_seq,
                ..Daily::default()
            },
        };
        let snapshot_path = data_dir.join("dashboard-snapshot.json");
        let snapshot = match std::fs::read(&snapshot_path) {
            Ok(bytes) => match serde_json::from_slice::<SavedSnapshot>(&bytes) {
                Ok(saved) => Some((saved.commit_seq, Arc::new(saved.snapshot))),
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard-snapshot.json is unreadable; the next pass replaces it");
                    None
                }
            },
            Err(_) => None,
        };
        Dashboard {
            daily: Mutex::new(daily),
            dirty: AtomicBool::new(false),
            path,
            snapshot_path,
            snapshot: RwLock::new(snapshot),
        }
    }

    /// Whether a pass is due with the store at `commit_seq`: there is no snapshot yet, or
    /// write groups were committed since the current one's pass began.
    pub fn stale(&self, commit_seq: u64) -> bool {
        self.snapshot
            .read()
            .map(|s| s.as_ref().is_none_or(|(seen, _)| *seen != commit_seq))
            .unwrap_or(true)
    }

    pub fn daily(&self) -> Daily {
        self.daily.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.snapshot
            .read()
            .ok()
            .and_then(|s| s.as_ref().map(|(_, s)| s.clone()))
    }

    /// Saves the per-day counts when they changed since the last save.
    pub fn save(&self) -> Result<(), String> {
        if !self.dirty.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let daily = self.daily();
        crate::webhooks::save_json(&self.path, &daily).inspect_err(|_| {
            self.dirty.store(true, Ordering::SeqCst);
        })
    }

    fn trim(d: &mut Daily) {
        while d.days.len() > MAX_DAYS {
            d.days.pop_first();
        }
        while d.totals.len() > MAX_DAYS {
            d.totals.pop_first();
        }
    }
}

impl CommitListener for Dashboard {
    fn committed(&self, changes: &Arc<Changes>) {
        let Ok(mut d) = self.daily.lock() else {
            return;
        };
        let seen = d.seen_history;
        let mut newest = seen;
        let mut changed = false;
        for entry in changes.history.iter().filter(|e| e.seq > seen) {
            newest = newest.max(entry.seq);
            let day = d.days.entry(day_of(entry.at)).or_default();
            match entry.kind {
                HistoryKind::Created => day.created += 1,
                HistoryKind::Merged => day.merges += 1,
                HistoryKind::Split => day.splits += 1,
                HistoryKind::Conflict => day.conflicts += 1,
                HistoryKind::LinkDeleted => day.links_deleted += 1,
                _ => continue,
            }
            changed = true;
        }
        d.seen_history = newest;
        if changed {
            Dashboard::trim(&mut d);
            self.dirty.store(true, Ordering::SeqCst);
        }
    }
}

/// The matcher's candidate scores since start, against its thresholds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatchScores {
    pub threshold: f64,
    pub review_threshold: f64,
    /// Twenty buckets of 0.05: `[from, to)`.
    pub buckets: Vec<ScoreBucket>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreBucket {
    pub from: f64,
    pub to: f64,
    pub count: u64,
}

/// One day of the dashboard's series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayRow {
    pub day: String,
    #[serde(flatten)]
    pub counts: DayCounts,
    /// Totals at the day's last snapshot (none when no pass ran that day).
    pub profiles: Option<u64>,
    pub identifiers: Option<u64>,
}

/// What `GET /v1/stats` answers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub generated_at: String,
    pub daily: Vec<DayRow>,
    /// `null` until the first pass is done.
    pub snapshot: Option<Snapshot>,
    /// `null` without probabilistic matching.
    pub match_scores: Option<MatchScores>,
}

impl Engine {
    pub fn dashboard(&self) -> &Dashboard {
        &self.dashboard
    }

    /// The dashboard's numbers, from what is kept (no store scan).
    pub fn stats(&self) -> Stats {
        let d = self.dashboard.daily();
        let days: std::collections::BTreeSet<&String> =
            d.days.keys().chain(d.totals.keys()).collect();
        let daily = days
            .into_iter()
            .map(|day| DayRow {
                day: day.clone(),
                counts: d.days.get(day).copied().unwrap_or_default(),
                profiles: d.totals.get(day).map(|t| t.profiles),
                identifiers: d.totals.get(day).map(|t| t.identifiers),
            })
            .collect();
        let match_scores = self.rules.matcher.as_ref().map(|m| {
            let (threshold, review_threshold) = m.thresholds();
            MatchScores {
                threshold,
                review_threshold,
                buckets: m
                    .counters
                    .score_histogram()
                    .into_iter()
                    .enumerate()
                    .map(|(i, count)| ScoreBucket {
                        from: i as f64 / 20.0,
                        to: (i + 1) as f64 / 20.0,
                        count,
                    })
                    .collect(),
            }
        });
        Stats {
            generated_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            daily,
            snapshot: self.dashboard.snapshot().map(|s| (*s).clone()),
            match_scores,
        }
    }

    /// One whole pass over every golden profile ([`DashboardPass`]) at once. Blocking.
    pub fn refresh_dashboard(&self) -> Result<Arc<Snapshot>, EngineError> {
        let mut pass = self.begin_dashboard_pass()?;
        loop {
            if let Some(snapshot) = pass.step(self)? {
                return Ok(snapshot);
            }
        }
    }

    /// Whether the dashboard's snapshot is stale (see [`Dashboard::stale`]).
    pub fn dashboard_stale(&self) -> Result<bool, EngineError> {
        Ok(self.dashboard.stale(self.store.counters()?.commit_seq))
    }

    /// Starts a pass over every golden profile, at the write groups committed so far.
    pub fn begin_dashboard_pass(&self) -> Result<DashboardPass, EngineError> {
        Ok(DashboardPass {
            commit_seq: self.store.counters()?.commit_seq,
            started: Instant::now(),
            busy: std::time::Duration::ZERO,
            after: None,
            profiles: 0,
            identifiers: 0,
            by_kind: BTreeMap::new(),
            per_profile: BTreeMap::new(),
            households: BTreeMap::new(),
            sources: BTreeMap::new(),
            pairs: BTreeMap::new(),
            largest: Vec::new(),
        })
    }
}

/// A pass over every golden profile in progress, read a page at a time
/// ([`DashboardPass::step`]); its last step makes the dashboard's snapshot, caches and
/// saves it, and records the day's totals.
pub struct DashboardPass {
    /// The store's commit sequence number when the pass began.
    commit_seq: u64,
    started: Instant,
    /// Time spent in steps (the rest of `started.elapsed()` was pacing).
    busy: std::time::Duration,
    /// The last profile read.
    after: Option<ProfileId>,
    profiles: u64,
    identifiers: u64,
    by_kind: BTreeMap<String, u64>,
    per_profile: BTreeMap<String, u64>,
    /// Household id → profiles in it.
    households: BTreeMap<String, u64>,
    sources: BTreeMap<String, usize>,
    pairs: BTreeMap<(String, String), u64>,
    largest: Vec<Largest>,
}

impl DashboardPass {
    /// Reads the next page of golden profiles. Blocking. `Some(snapshot)` once every
    /// profile was read: the pass is done.
    pub fn step(&mut self, engine: &Engine) -> Result<Option<Arc<Snapshot>>, EngineError> {
        let began = Instant::now();
        let page = engine.store.goldens_after(self.after.as_ref(), PAGE)?;
        for (id, raw) in &page {
            self.count(engine, id, raw);
        }
        self.after = page.last().map(|(id, _)| id.clone()).or(self.after.take());
        self.busy += began.elapsed();
        if page.len() < PAGE {
            return Ok(Some(self.finish(engine)));
        }
        Ok(None)
    }

    fn count(&mut self, engine: &Engine, id: &ProfileId, raw: &[u8]) {
        let Some((hint, json)) = crate::model::codec::split_golden_cache(raw) else {
            return;
        };
        let Ok(g) = serde_json::from_slice::<GoldenProfile>(json) else {
            return;
        };
        self.profiles += 1;
        let n: u64 = g.identifiers.values().map(|v| v.len() as u64).sum();
        self.identifiers += n;
        for (kind, values) in &g.identifiers {
            *self.by_kind.entry(kind.clone()).or_default() += values.len() as u64;
        }
        *self
            .per_profile
            .entry(bucket(n, &PER_PROFILE, "21+"))
            .or_default() += 1;
        if hint != crate::profile::golden::ALONE {
            if let Ok(bytes) = engine.profile_bytes(id) {
                if let Some(h) = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["household_id"].as_str().map(str::to_owned))
                {
                    *self.households.entry(h).or_default() += 1;
                }
            }
        }
        let seen: Vec<&String> = g.sources.iter().collect();
        for (i, a) in seen.iter().enumerate() {
            self.sources.entry((*a).clone()).or_default();
            for b in &seen[i..] {
                *self.pairs.entry(((*a).clone(), (*b).clone())).or_default() += 1;
            }
        }
        // Only a profile that beats the smallest of a full list is placed.
        let beats = self.largest.len() < LARGEST
            || self
                .largest
                .last()
                .is_some_and(|l| (n, g.event_count) > (l.identifiers, l.events));
        if beats {
            self.largest.push(Largest {
                profile_id: g.profile_id.clone(),
                identifiers: n,
                events: g.event_count,
                sources: g.sources.len(),
            });
            self.largest.sort_by(|a, b| {
                b.identifiers
                    .cmp(&a.identifiers)
                    .then_with(|| b.events.cmp(&a.events))
                    .then_with(|| a.profile_id.cmp(&b.profile_id))
            });
            self.largest.truncate(LARGEST);
        }
    }

    fn finish(&mut self, engine: &Engine) -> Arc<Snapshot> {
        let mut sizes: BTreeMap<String, u64> = BTreeMap::new();
        let mut in_households = 0;
        for n in self.households.values().filter(|n| **n >= 2) {
            in_households += n;
            *sizes.entry(bucket(*n, &HOUSEHOLD, "7+")).or_default() += 1;
        }
        let names: Vec<String> = self.sources.keys().cloned().collect();
        let matrix = names
            .iter()
            .map(|a| {
                names
                    .iter()
                    .map(|b| {
                        let key = if a <= b {
                            (a.clone(), b.clone())
                        } else {
                            (b.clone(), a.clone())
                        };
                        self.pairs.get(&key).copied().unwrap_or_default()
                    })
                    .collect()
            })
            .collect();
        let (profiles, identifiers) = (self.profiles, self.identifiers);
        let snapshot = Arc::new(Snapshot {
            computed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            profiles,
            identifiers,
            identifiers_by_kind: std::mem::take(&mut self.by_kind),
            identifiers_per_profile: ordered(
                std::mem::take(&mut self.per_profile),
                &PER_PROFILE,
                "21+",
            ),
            household_sizes: ordered(sizes, &HOUSEHOLD, "7+"),
            profiles_in_households: in_households,
            source_overlap: SourceOverlap {
                sources: names,
                matrix,
            },
            largest: std::mem::take(&mut self.largest),
        });
        let dashboard = &engine.dashboard;
        let saved = SavedSnapshot {
            commit_seq: self.commit_seq,
            snapshot: (*snapshot).clone(),
        };
        if let Err(e) = crate::webhooks::save_json(&dashboard.snapshot_path, &saved) {
            tracing::warn!(error = %e, "cannot save the dashboard's snapshot; the next start passes again");
        }
        if let Ok(mut s) = dashboard.snapshot.write() {
            *s = Some((self.commit_seq, snapshot.clone()));
        }
        if let Ok(mut d) = dashboard.daily.lock() {
            d.totals.insert(
                day_of(super::now_ms()),
                DayTotals {
                    profiles,
                    identifiers,
                },
            );
            Dashboard::trim(&mut d);
            dashboard.dirty.store(true, Ordering::SeqCst);
        }
        tracing::info!(
            profiles,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            busy_ms = self.busy.as_millis() as u64,
            "dashboard pass done"
        );
        snapshot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_open_ended() {
        assert_eq!(bucket(1, &PER_PROFILE, "21+"), "1");
        assert_eq!(bucket(4, &PER_PROFILE, "21+"), "4-5");
        assert_eq!(bucket(21, &PER_PROFILE, "21+"), "21+");
        let counts = BTreeMap::from([("4-5".to_owned(), 2), ("21+".to_owned(), 1)]);
        let b = ordered(counts, &PER_PROFILE, "21+");
        assert_eq!(b.len(), 7);
        assert_eq!(b[3].count, 2);
        assert_eq!(b[6].label, "21+");
    }

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(day_of(0), "1970-01-01");
        assert_eq!(day_of(86_400_000 - 1), "1970-01-01");
        assert_eq!(day_of(86_400_000), "1970-01-02");
    }
}
