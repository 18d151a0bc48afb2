//! The indexing thread: follows the store's write groups and commits them to the search
//! index in batches.
//!
//! The commit thread of the engine hands over every durably written group; this thread
//! stages its golden-profile changes and commits at most every [`COMMIT_EVERY`], so a change
//! is searchable well within a second without a tantivy commit per event. If indexing
//! fails (a full disk), the index is caught up from the store (which holds everything),
//! again every few seconds until that works, so it never stays out of step for long.

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::SearchIndex;
use crate::store::{Changes, GraphStore, ProfileId};
use rustc_hash::FxHashMap as HashMap;

/// Longest time between a change being staged and committed. Each commit makes a new
/// segment that merges later rewrite: 500 ms instead of 200 ms made ingest, lookups and
/// search faster at 1M events (docs/benchmarks.md) and keeps a change searchable within
/// about 0.6 s (the target is 1 s).
pub const COMMIT_EVERY: Duration = Duration::from_millis(500);
/// Most waiting groups staged together (each profile once, as the last left it).
const MAX_COALESCED: usize = 64;
/// How often a failed index (a full disk) tries to recover.
const RETRY_EVERY: Duration = Duration::from_secs(5);
/// Write groups waiting for the indexer before the commit thread waits (back-pressure).
const QUEUE_DEPTH: usize = 256;

/// Hands written groups to the indexing thread.
#[derive(Clone)]
pub struct IndexFeed {
    tx: SyncSender<Arc<Changes>>,
}

impl crate::engine::CommitListener for IndexFeed {
    /// Queues a durably written group. Never fails the write: if the indexer has stopped,
    /// the index is caught up at the next start (its commit marker is behind the store).
    fn committed(&self, changes: &Arc<Changes>) {
        if self.tx.send(changes.clone()).is_err() {
            tracing::error!("search indexer has stopped; the index is caught up at next start");
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
    // Set while indexing has failed and recovery did not work yet (a full disk): groups
    // that arrive meanwhile are dropped (the recovery reads them from the store) and
    // recovery is tried again every [`RETRY_EVERY`].
    let mut broken: Option<Instant> = None;
    loop {
        if broken.is_some_and(|since| since.elapsed() >= RETRY_EVERY) {
            broken = (!recover(index, store, "retrying after a failure")).then(Instant::now);
        }
        // Commit on time even while groups keep coming.
        if let Some((seq, since)) = staged {
            if since.elapsed() >= COMMIT_EVERY {
                staged = None;
                broken = (!commit(index, store, seq)).then(Instant::now);
            }
        }
        let wait = match (broken, staged) {
            (Some(since), _) => RETRY_EVERY.saturating_sub(since.elapsed()),
            (None, Some((_, since))) => COMMIT_EVERY.saturating_sub(since.elapsed()),
            (None, None) => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(_) if broken.is_some() => {}
            Ok(first) => {
                // Every group already waiting is taken too, and each profile they changed
                // is indexed once, as the last of them left it: when the indexer is
                // behind, it does less work per group, not more.
                let mut groups = vec![first];
                while groups.len() < MAX_COALESCED {
                    match rx.try_recv() {
                        Ok(next) => groups.push(next),
                        Err(_) => break,
                    }
                }
                let seq = groups
                    .last()
                    .and_then(|c| c.counters)
                    .map(|c| c.commit_seq)
                    .unwrap_or_default();
                let mut latest: HashMap<&ProfileId, Option<&[u8]>> = HashMap::default();
                for changes in &groups {
                    for (id, golden) in &changes.goldens {
                        latest.insert(id, golden.as_deref());
                    }
                }
                match index.stage(latest.into_iter()) {
                    Ok(()) => {
                        let since = staged.map_or_else(Instant::now, |(_, since)| since);
                        staged = Some((seq, since));
                    }
                    Err(e) => {
                        staged = None;
                        broken = (!recover(index, store, &e.to_string())).then(Instant::now);
                    }
                }
            }
            // What is due (a commit, a retry) is done at the top of the loop.
            Err(RecvTimeoutError::Timeout) => {}
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

/// Brings the index back in step with the store after a failure. Returns whether that
/// worked; if not, the indexer tries again later.
fn recover(index: &SearchIndex, store: &dyn GraphStore, why: &str) -> bool {
    tracing::error!(
        error = why,
        "search indexing failed; catching the index up from the store"
    );
    match index.recover(store) {
        Ok(how) => {
            tracing::info!(?how, "search index back in step with the store");
            true
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                retry_in_s = RETRY_EVERY.as_secs(),
                "search index recovery failed; searches see the index as of its last commit until it works"
            );
            false
        }
    }
}
