//! The indexing thread: follows the store's write groups and commits them to the search
//! index in batches.
//!
//! The commit thread of the engine hands over every durably written group; this thread
//! stages its golden-profile changes and commits at most every [`COMMIT_EVERY`], so a change
//! is searchable well within a second without a tantivy commit per event. If indexing
//! fails, the index is rebuilt from the store (which holds everything), so it never stays
//! silently out of step.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SearchIndex;
use crate::store::{Changes, GraphStore};

/// Longest time between a change being staged and committed.
pub const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// Write groups waiting for the indexer before the commit thread waits (back-pressure).
const QUEUE_DEPTH: usize = 256;

/// Hands written groups to the indexing thread.
#[derive(Clone)]
pub struct IndexFeed {
    tx: SyncSender<Arc<Changes>>,
}

impl IndexFeed {
    /// Queues a durably written group. Never fails the write: if the indexer has stopped,
    /// the index is rebuilt at the next start (its commit marker is behind the store).
    pub fn send(&self, changes: Arc<Changes>) {
        if self.tx.send(changes).is_err() {
            tracing::error!("search indexer has stopped; the index is rebuilt at next start");
        }
    }
}

/// Starts the indexing thread. It stops (after a last commit) when every [`IndexFeed`]
/// is dropped.
pub fn spawn(
    index: Arc<SearchIndex>,
    store: Arc<dyn GraphStore>,
) -> std::io::Result<(IndexFeed, JoinHandle<()>)> {
    let (tx, rx) = sync_channel(QUEUE_DEPTH);
    let handle = std::thread::Builder::new()
        .name("idgraph-indexer".into())
        .spawn(move || run(&index, store.as_ref(), rx))?;
    Ok((IndexFeed { tx }, handle))
}

fn run(index: &SearchIndex, store: &dyn GraphStore, rx: Receiver<Arc<Changes>>) {
    // (commit_seq of the last staged group, when the oldest uncommitted change was staged)
    let mut staged: Option<(u64, Instant)> = None;
    // Set when indexing and the rebuild both failed: the index then takes no more commits,
    // so its marker stays behind the store and the next start rebuilds it.
    let mut broken = false;
    loop {
        let wait = match staged {
            Some((_, since)) => COMMIT_EVERY.saturating_sub(since.elapsed()),
            None => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(_) if broken => {}
            Ok(changes) => {
                let seq = changes.counters.map(|c| c.commit_seq).unwrap_or_default();
                let goldens = changes.goldens.iter().map(|(id, g)| (id, g.as_deref()));
                match index.stage(goldens) {
                    Ok(()) => {
                        let since = staged.map_or_else(Instant::now, |(_, since)| since);
                        staged = Some((seq, since));
                    }
                    Err(e) => {
                        broken = !recover(index, store, &e.to_string());
                        staged = None;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some((seq, _)) = staged.take() {
                    broken = !commit(index, store, seq);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                if let Some((seq, _)) = staged.take() {
                    commit(index, store, seq);
                }
                return;
            }
        }
    }
}

/// Commits; on failure rebuilds. Returns whether the index is in step afterwards.
fn commit(index: &SearchIndex, store: &dyn GraphStore, seq: u64) -> bool {
    let started = Instant::now();
    match index.commit(seq) {
        Ok(()) => {
            tracing::debug!(
                commit_seq = seq,
                commit_us = started.elapsed().as_micros() as u64,
                "search index committed"
            );
            true
        }
        Err(e) => recover(index, store, &e.to_string()),
    }
}

/// Rebuilds the index from the store after a failure. Returns whether that worked.
fn recover(index: &SearchIndex, store: &dyn GraphStore, why: &str) -> bool {
    tracing::error!(
        error = why,
        "search indexing failed; rebuilding the index from the store"
    );
    match index.rebuild_from(store) {
        Ok(n) => {
            tracing::info!(profiles = n, "search index rebuilt");
            true
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                "search index rebuild failed; it stays behind and is rebuilt at next start"
            );
            false
        }
    }
}
