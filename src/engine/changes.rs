//! The change feed's reads: pages of records after a sequence number, a signal that wakes
//! long-polling readers when a group with records is durable, and retention.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

use super::{now_ms, CommitListener, Engine, EngineError};
use crate::model::{ChangeRecord, ChangeType};
use crate::store::{Changes, StoreError};

/// Records a page scans at most while filtering by type, so one request stays bounded;
/// the page's `next` lets the reader go on from where the scan stopped.
const MAX_SCANNED: usize = 20_000;

/// Records one retention pass removes at a time.
const PRUNE_BATCH: usize = 10_000;

/// A page of the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangesPage {
    pub changes: Vec<ChangeRecord>,
    /// Where the next page starts: the last record scanned (returned or filtered out), or
    /// the request's `after` when there was none.
    pub next: u64,
}

/// Why a page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error("the change feed is off (feed.enabled = false)")]
    Disabled,
    /// Records after `after` were removed by retention: the reader must start over.
    #[error("records after {after} are no longer kept (retention removed up to {pruned_through})")]
    Expired { after: u64, pruned_through: u64 },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for ChangesError {
    fn from(e: StoreError) -> Self {
        ChangesError::Engine(EngineError::Store(e))
    }
}

/// The newest feed sequence number durable so far, for readers that wait for more.
pub(super) struct FeedSignal(pub(super) watch::Sender<u64>);

impl CommitListener for FeedSignal {
    fn committed(&self, changes: &Arc<Changes>) {
        if let Some(newest) = changes.feed.iter().map(|r| r.seq).max() {
            self.0.send_if_modified(|seen| {
                let newer = newest > *seen;
                if newer {
                    *seen = newest;
                }
                newer
            });
        }
    }
}

impl Engine {
    /// Records after `after`, at most `limit`, of the `types` asked for (all if `None`).
    pub fn changes(
        &self,
        after: u64,
        limit: usize,
        types: Option<&BTreeSet<ChangeType>>,
    ) -> Result<ChangesPage, ChangesError> {
        if !self.settings.feed.enabled {
            return Err(ChangesError::Disabled);
        }
        let bounds = self.store.feed_bounds()?;
        if after < bounds.pruned_through {
            return Err(ChangesError::Expired {
                after,
                pruned_through: bounds.pruned_through,
            });
        }
        let mut page = ChangesPage {
            changes: Vec::new(),
            next: after,
        };
        let mut scanned = 0;
        while page.changes.len() < limit && scanned < MAX_SCANNED {
            let want = match types {
                None => limit - page.changes.len(),
                Some(_) => (limit - page.changes.len()).max(500),
            };
            let batch = self.store.changes_after(page.next, want)?;
            let done = batch.len() < want;
            for record in batch {
                scanned += 1;
                page.next = record.seq;
                if types.is_none_or(|t| t.contains(&record.change)) {
                    page.changes.push(record);
                    if page.changes.len() == limit {
                        break;
                    }
                }
            }
            if done {
                break;
            }
        }
        Ok(page)
    }

    /// A receiver of the newest durable feed sequence number; subscribe before reading so
    /// that a record written in between still wakes the reader.
    pub fn feed_signal(&self) -> watch::Receiver<u64> {
        self.feed_signal.0.subscribe()
    }

    /// Removes the records older than `feed.retention_hours`; returns how many went.
    pub fn prune_changes(&self) -> Result<usize, StoreError> {
        if !self.settings.feed.enabled {
            return Ok(0);
        }
        let hours = i64::try_from(self.settings.feed.retention_hours).unwrap_or(i64::MAX / 2);
        let before = now_ms().saturating_sub(hours.saturating_mul(3_600_000));
        let mut total = 0;
        loop {
            let n = self.store.prune_changes(before, PRUNE_BATCH)?;
            total += n;
            if n < PRUNE_BATCH {
                return Ok(total);
            }
        }
    }
}
