//! Resolution counters for `/metrics`: merges, splits and conflicts recorded since the
//! process started, counted from the history entries of each committed write group (no
//! store scan per scrape).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::model::HistoryKind;
use crate::store::Changes;

use super::writer::CommitListener;

/// Counts of history entries by kind, since start.
#[derive(Debug, Default)]
pub struct ResolutionStats {
    /// The highest history sequence number counted: entries at or below it (rewritten by
    /// an erasure) are not counted twice.
    seen: AtomicU64,
    merges: AtomicU64,
    splits: AtomicU64,
    conflicts: AtomicU64,
    created: AtomicU64,
}

/// A copy of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResolutionTotals {
    pub merges: u64,
    pub splits: u64,
    pub conflicts: u64,
    pub profiles_created: u64,
}

impl ResolutionStats {
    /// Counts entries after history sequence number `history_seq` (the store's at open).
    pub fn after(history_seq: u64) -> ResolutionStats {
        ResolutionStats {
            seen: AtomicU64::new(history_seq),
            ..Default::default()
        }
    }

    pub fn totals(&self) -> ResolutionTotals {
        ResolutionTotals {
            merges: self.merges.load(Ordering::Relaxed),
            splits: self.splits.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
            profiles_created: self.created.load(Ordering::Relaxed),
        }
    }
}

impl CommitListener for ResolutionStats {
    fn committed(&self, changes: &Arc<Changes>) {
        // Called from the single writer thread, in commit order.
        let seen = self.seen.load(Ordering::Relaxed);
        let mut newest = seen;
        for entry in changes.history.iter().filter(|e| e.seq > seen) {
            newest = newest.max(entry.seq);
            let counter = match entry.kind {
                HistoryKind::Merged => &self.merges,
                HistoryKind::Split => &self.splits,
                HistoryKind::Conflict => &self.conflicts,
                HistoryKind::Created => &self.created,
                _ => continue,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        self.seen.store(newest, Ordering::Relaxed);
    }
}
