//! Background data retention (`[retention]`): raw events past `retention.events` lose
//! their payload through the write path (see `resolve::retention`), in groups of
//! [`AGE_BATCH`] so ingest keeps flowing between them. The audit log's side is in
//! `governance::audit`; `serve` runs both on its maintenance timer and `/metrics` shows
//! what they did.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use super::writer::{Op, OpResult};
use super::{now_ms, Engine, EngineError};

/// Most events aged in one write group.
const AGE_BATCH: usize = 1_000;

/// What retention did since start (for `/metrics`).
#[derive(Debug, Default)]
pub struct RetentionStats {
    events_aged: AtomicU64,
    audit_removed: AtomicU64,
    failures: AtomicU64,
    /// When the last pass finished without error (ms since the epoch; 0 before).
    last_success_ms: AtomicI64,
    /// Where the next pass over the events starts (the last sequence number looked at):
    /// aged events leave the order, so this only skips their deletion markers.
    cursor: AtomicU64,
}

/// A snapshot of [`RetentionStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionTotals {
    pub events_aged: u64,
    pub audit_removed: u64,
    pub failures: u64,
    pub last_success_ms: i64,
}

impl RetentionStats {
    pub fn totals(&self) -> RetentionTotals {
        RetentionTotals {
            events_aged: self.events_aged.load(Ordering::Relaxed),
            audit_removed: self.audit_removed.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_success_ms: self.last_success_ms.load(Ordering::Relaxed),
        }
    }

    pub fn audit_removed(&self, n: u64) {
        self.audit_removed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn succeeded(&self) {
        self.last_success_ms.store(now_ms(), Ordering::Relaxed);
    }
}

impl Engine {
    /// What retention did since start.
    pub fn retention(&self) -> &RetentionStats {
        &self.retention
    }

    /// Ages every event that arrived longer than `retention.events` ago; how many were
    /// aged. Nothing without the setting.
    pub async fn age_events(&self) -> Result<u64, EngineError> {
        let Some(keep) = self.settings.retention.events else {
            return Ok(0);
        };
        let before_ms = now_ms().saturating_sub(keep.as_millis());
        let mut total = 0;
        loop {
            let after = self.retention.cursor.load(Ordering::Relaxed);
            let op = Op::AgeEvents {
                after,
                before_ms,
                max: AGE_BATCH,
            };
            let outcome = match self
                .submit(op)?
                .await
                .map_err(|_| EngineError::ShuttingDown)??
            {
                OpResult::Aged(o) => o,
                _ => return Err(EngineError::ShuttingDown),
            };
            let aged = outcome.aged as u64;
            total += aged;
            self.retention
                .events_aged
                .fetch_add(aged, Ordering::Relaxed);
            // The next pass starts again at the first event still too young.
            self.retention
                .cursor
                .store(outcome.last_seq, Ordering::Relaxed);
            if outcome.done {
                return Ok(total);
            }
        }
    }
}
