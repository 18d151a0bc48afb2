//! What a tenant uses (events, profiles, storage bytes, requests), for cost allocation,
//! and its quotas enforced at ingest.
//!
//! Every engine has one [`Usage`] (one engine per tenant): ingest reserves the batch's
//! events against `events_per_day` before the batch is written and gives them back when
//! the write fails, so concurrent batches cannot overshoot the quota. The counts are kept
//! in `<tenant dir>/usage.json` (saved every few seconds while they change, so a restart
//! keeps the day's count; a crash can lose the last few seconds of it).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::Quotas;

const DAY_MS: u64 = 86_400_000;

/// A quota that refused a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    /// `events_per_day` or `profiles`.
    pub quota: &'static str,
    pub limit: u64,
    /// Seconds until the quota frees up by itself (the next UTC day), if it does.
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.quota {
            "events_per_day" => write!(
                f,
                "the tenant's quota events_per_day ({}) is used up for today (UTC); it resets at midnight UTC",
                self.limit
            ),
            q => write!(
                f,
                "the tenant holds its quota of {q} ({}); erase profiles or ask the operator to raise it",
                self.limit
            ),
        }
    }
}

/// The counts as saved and as reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageCounts {
    /// The UTC day `events_today` counts (days since the epoch).
    pub day: u64,
    pub events_today: u64,
    pub events_total: u64,
    pub requests_total: u64,
}

/// One tenant's usage and quotas.
pub struct Usage {
    path: PathBuf,
    quotas: RwLock<Quotas>,
    counts: Mutex<UsageCounts>,
    /// Bytes of the tenant's directory, measured by [`Usage::measure_storage`].
    storage_bytes: AtomicU64,
    requests: AtomicU64,
    dirty: AtomicBool,
}

fn today(now_ms: u64) -> u64 {
    now_ms / DAY_MS
}

impl Usage {
    /// The usage saved in `data_dir` (zero when there is none or it is unreadable).
    pub fn open(data_dir: &Path) -> Usage {
        let path = data_dir.join("usage.json");
        let counts: UsageCounts = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Usage {
            path,
            quotas: RwLock::new(Quotas::default()),
            requests: AtomicU64::new(counts.requests_total),
            counts: Mutex::new(counts),
            storage_bytes: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        }
    }

    pub fn set_quotas(&self, q: Quotas) {
        if let Ok(mut w) = self.quotas.write() {
            *w = q;
        }
    }

    pub fn quotas(&self) -> Quotas {
        self.quotas.read().map(|q| *q).unwrap_or_default()
    }

    /// Reserves `n` events of today's quota and checks the profiles quota (`profiles` is
    /// asked only when that quota is set). Give them back with [`Usage::release`] when the
    /// batch is not written.
    pub fn admit(
        &self,
        n: u64,
        now_ms: u64,
        profiles: impl FnOnce() -> u64,
    ) -> Result<(), QuotaExceeded> {
        let q = self.quotas();
        if let Some(limit) = q.profiles {
            if profiles() >= limit {
                return Err(QuotaExceeded {
                    quota: "profiles",
                    limit,
                    retry_after: None,
                });
            }
        }
        let Ok(mut c) = self.counts.lock() else {
            return Ok(());
        };
        let day = today(now_ms);
        if c.day != day {
            c.day = day;
            c.events_today = 0;
        }
        if let Some(limit) = q.events_per_day {
            if c.events_today.saturating_add(n) > limit {
                let next = (day + 1) * DAY_MS;
                return Err(QuotaExceeded {
                    quota: "events_per_day",
                    limit,
                    retry_after: Some(next.saturating_sub(now_ms).div_ceil(1000).max(1)),
                });
            }
        }
        c.events_today += n;
        self.dirty.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Gives back `n` events [`Usage::admit`] reserved for a batch that was not written.
    pub fn release(&self, n: u64, now_ms: u64) {
        if let Ok(mut c) = self.counts.lock() {
            if c.day == today(now_ms) {
                c.events_today = c.events_today.saturating_sub(n);
            }
        }
    }

    /// `n` admitted events were written.
    pub fn written(&self, n: u64) {
        if let Ok(mut c) = self.counts.lock() {
            c.events_total += n;
        }
        self.dirty.store(true, Ordering::Relaxed);
    }

    /// One authorized request of the tenant's keys.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.dirty.store(true, Ordering::Relaxed);
    }

    pub fn counts(&self, now_ms: u64) -> UsageCounts {
        let mut c = self.counts.lock().map(|c| *c).unwrap_or_default();
        if c.day != today(now_ms) {
            c.day = today(now_ms);
            c.events_today = 0;
        }
        c.requests_total = self.requests.load(Ordering::Relaxed);
        c
    }

    pub fn storage_bytes(&self) -> u64 {
        self.storage_bytes.load(Ordering::Relaxed)
    }

    /// Measures the bytes of the files under `dir`, leaving out `skip` (the default
    /// tenant's directory holds the other tenants' directories).
    pub fn measure_storage(&self, dir: &Path, skip: Option<&Path>) -> u64 {
        let bytes = dir_bytes(dir, skip);
        self.storage_bytes.store(bytes, Ordering::Relaxed);
        bytes
    }

    /// Saves the counts when they changed.
    pub fn save(&self, now_ms: u64) -> Result<(), String> {
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        let counts = self.counts(now_ms);
        crate::webhooks::save_json(&self.path, &counts).inspect_err(|_| {
            self.dirty.store(true, Ordering::Relaxed);
        })
    }
}

/// Bytes of the files under `dir`, leaving out `skip`.
pub fn dir_bytes(dir: &Path, skip: Option<&Path>) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut total = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if skip == Some(path.as_path()) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += dir_bytes(&path, skip),
            Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: u64 = 20_000 * DAY_MS + DAY_MS / 2;

    #[test]
    fn the_daily_quota_reserves_releases_and_resets_at_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let u = Usage::open(dir.path());
        u.set_quotas(Quotas {
            events_per_day: Some(10),
            profiles: None,
        });
        assert!(u.admit(6, NOON, || 0).is_ok());
        let e = u.admit(5, NOON, || 0).unwrap_err();
        assert_eq!(e.quota, "events_per_day");
        assert_eq!(e.retry_after, Some(DAY_MS / 2 / 1000));
        assert!(e.to_string().contains("events_per_day (10)"));
        // A failed batch gives its reservation back.
        u.release(6, NOON);
        assert!(u.admit(10, NOON, || 0).is_ok());
        u.written(10);
        assert!(u.admit(1, NOON, || 0).is_err());
        // The next day starts at zero; the total keeps counting.
        assert!(u.admit(10, NOON + DAY_MS, || 0).is_ok());
        let c = u.counts(NOON + DAY_MS);
        assert_eq!((c.events_today, c.events_total), (10, 10));
    }

    #[test]
    fn the_profiles_quota_refuses_once_reached_and_counts_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let u = Usage::open(dir.path());
        u.set_quotas(Quotas {
            events_per_day: None,
            profiles: Some(3),
        });
        assert!(u.admit(1, NOON, || 2).is_ok());
        let e = u.admit(1, NOON, || 3).unwrap_err();
        assert_eq!((e.quota, e.limit, e.retry_after), ("profiles", 3, None));
        u.written(1);
        u.request();
        u.save(NOON).unwrap();
        let again = Usage::open(dir.path());
        let c = again.counts(NOON);
        assert_eq!(
            (c.events_today, c.events_total, c.requests_total),
            (1, 1, 1)
        );
    }

    #[test]
    fn storage_is_measured_without_the_skipped_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir_all(dir.path().join("tenants/x")).unwrap();
        std::fs::write(dir.path().join("tenants/x/b"), [0u8; 50]).unwrap();
        let u = Usage::open(dir.path());
        assert_eq!(u.measure_storage(dir.path(), None), 150);
        let skip = dir.path().join("tenants");
        assert_eq!(u.measure_storage(dir.path(), Some(&skip)), 100);
        assert_eq!(u.storage_bytes(), 100);
    }
}
