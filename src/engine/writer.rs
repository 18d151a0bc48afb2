//! The write path: one resolver thread folds every waiting request into one group
//! ([`Session`]), a commit thread writes each group in one synced write and only then
//! answers its requests, and then hands the group to every [`CommitListener`] (the search
//! indexer; a change feed or replicas next). The two threads are pipelined one group deep:
//! while group N is written, group N+1 is resolved over a [`Layered`] view (store + N's
//! changes), and is handed over only once N is durable.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use super::{not_found, now_ms, EngineError};
use crate::ingest::event::NormalizedEvent;
use crate::resolve::split::{self, SplitOutcome, UnmergeError};
use crate::resolve::{self, EventOutcome, Rules, Session};
use crate::store::layered::Layered;
use crate::store::{Changes, GraphStore, IdentKey, StoreError};

/// Sees every write group once it is durable, in commit order, on the commit thread (so
/// it must be quick: hand the group to a thread of its own). The group's `Changes` hold
/// everything it wrote and deleted, and its `counters.commit_seq`. The search indexer is
/// one; the change feed and replicas are the next.
pub trait CommitListener: Send + Sync {
    fn committed(&self, changes: &Arc<Changes>);
}

/// Most requests folded into one group commit.
const MAX_GROUP_REQUESTS: usize = 512;
/// Most events folded into one group commit.
const MAX_GROUP_EVENTS: usize = 20_000;
/// Queue length of the writer; a full queue answers 503 instead of piling up memory.
pub(super) const QUEUE_DEPTH: usize = 4096;

pub(super) enum Op {
    Ingest(Vec<NormalizedEvent>),
    DeleteLink(IdentKey, IdentKey),
    DeleteIdentifier(IdentKey),
    Erase(resolve::erase::ErasureTarget),
    Unsuppress(IdentKey),
    Review(ReviewRequest),
    Merge(Vec<crate::store::ProfileId>, crate::model::StewardNote),
    /// Re-render these profiles' golden records, and with `true` match their records
    /// again under the current model (see `engine::reresolve`).
    Rerender(Vec<crate::store::ProfileId>, bool),
    Pin(
        crate::store::ProfileId,
        String,
        Option<serde_json::Value>,
        crate::model::StewardNote,
    ),
    Split(
        crate::store::ProfileId,
        resolve::steward::SplitPlan,
        crate::model::StewardNote,
    ),
    /// Age at most `max` events that arrived before `before_ms`, after event sequence
    /// number `after` (see `resolve::retention`).
    AgeEvents {
        after: u64,
        before_ms: i64,
        max: usize,
    },
    /// Write (`Some`) or delete activation rows (see `activation`).
    Activation(Vec<(Vec<u8>, Option<Vec<u8>>)>),
}

/// A steward's decision on a review item.
pub(super) struct ReviewRequest {
    pub(super) seq: u64,
    pub(super) decision: resolve::review::Decision,
    pub(super) actor: String,
    pub(super) reason: String,
    pub(super) overrides: Vec<String>,
}

/// Result of a write request.
#[derive(Debug)]
pub enum OpResult {
    Ingested(Vec<EventOutcome>),
    Unmerged(SplitOutcome),
    /// The erasure, and (once written) the group it was written in, whose keys the
    /// purge compacts.
    Erased(resolve::erase::ErasureOutcome, Option<Arc<Changes>>),
    Unsuppressed(bool),
    Reviewed(resolve::review::ReviewOutcome),
    Merged(resolve::steward::MergeOutcome),
    Pinned(crate::store::ProfileId),
    Rerendered(usize),
    Split(resolve::steward::StewardSplitOutcome),
    Aged(resolve::retention::AgeOutcome),
    Written,
}

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<OpResult, EngineError>>;

pub(super) struct Job {
    pub(super) op: Op,
    pub(super) reply: Reply,
}

/// Set when a write failed, until one succeeds again: while it is set, readiness probes
/// the store (see [`Engine::writable`]).
#[derive(Default)]
pub(super) struct WriteFault(std::sync::atomic::AtomicBool);

impl WriteFault {
    pub(super) fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn clear(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn run(
    s: &mut Session<'_>,
    rules: &Rules,
    op: &Op,
) -> Result<Result<OpResult, EngineError>, StoreError> {
    Ok(match op {
        Op::Ingest(events) => {
            let mut out = Vec::with_capacity(events.len());
            for ev in events {
                out.push(resolve::apply_event(s, rules, ev)?);
            }
            Ok(OpResult::Ingested(out))
        }
        Op::DeleteLink(a, b) => match split::delete_link(s, rules, a, b, "api") {
            Ok(o) => Ok(OpResult::Unmerged(o)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::DeleteIdentifier(key) => match split::delete_identifier(s, rules, key, "api") {
            Ok(o) => Ok(OpResult::Unmerged(o)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::Erase(target) => match resolve::erase::erase(s, rules, target, "api") {
            Ok(o) => Ok(OpResult::Erased(o, None)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
        Op::Review(r) => {
            use resolve::review::ReviewError;
            match resolve::review::decide(
                s,
                rules,
                r.seq,
                r.decision,
                &r.actor,
                &r.reason,
                &r.overrides,
            ) {
                Ok(o) => Ok(OpResult::Reviewed(o)),
                Err(ReviewError::NotFound(what)) => Err(not_found(what)),
                Err(ReviewError::Conflict(code, message)) => {
                    Err(EngineError::Conflict { code, message })
                }
                Err(ReviewError::Store(e)) => return Err(e),
            }
        }
        Op::Merge(profiles, note) => match resolve::steward::merge(s, rules, profiles, note) {
            Ok(o) => Ok(OpResult::Merged(o)),
            Err(e) => Err(steward_error(e)?),
        },
        Op::Activation(rows) => {
            for (k, v) in rows {
                s.put_activation(k.clone(), v.clone());
            }
            Ok(OpResult::Written)
        }
        Op::Rerender(ids, rematch) => {
            let mut n = 0;
            for id in ids {
                // A profile merged or erased since the page was read has nothing to render.
                let Some(state) = s.profile(id)? else {
                    continue;
                };
                s.mark_dirty(id);
                n += 1;
                if let (true, Some(m)) = (*rematch, &rules.matcher) {
                    let ev = resolve::reresolve_event(id, s.now);
                    for key in state.identifier_keys() {
                        // An earlier key's match may have moved this one's profile.
                        if let Some(node) = s.node(&key)? {
                            resolve::probable::rematch(s, rules, m, &ev, &key, &node.profile_id)?;
                        }
                    }
                }
            }
            Ok(OpResult::Rerendered(n))
        }
        Op::Pin(id, name, value, note) => {
            match resolve::steward::set_pin(s, id, name, value.clone(), note) {
                Ok(o) => Ok(OpResult::Pinned(o)),
                Err(e) => Err(steward_error(e)?),
            }
        }
        Op::Split(id, plan, note) => {
            match resolve::steward::split_profile(s, rules, id, plan, note) {
                Ok(o) => Ok(OpResult::Split(o)),
                Err(e) => Err(steward_error(e)?),
            }
        }
        Op::AgeEvents {
            after,
            before_ms,
            max,
        } => Ok(OpResult::Aged(resolve::retention::age_events(
            s, *after, *before_ms, *max,
        )?)),
        Op::Unsuppress(key) => match resolve::erase::unsuppress(s, rules, key) {
            Ok(found) => Ok(OpResult::Unsuppressed(found)),
            Err(UnmergeError::NotFound(what)) => Err(not_found(what)),
            Err(UnmergeError::Store(e)) => return Err(e),
        },
    })
}

/// The answer to a steward's request that was refused; a store error fails the group.
fn steward_error(e: resolve::steward::StewardError) -> Result<EngineError, StoreError> {
    use resolve::steward::StewardError;
    Ok(match e {
        StewardError::NotFound { field, message } => EngineError::Missing { field, message },
        StewardError::Conflict(code, message) => EngineError::Conflict { code, message },
        StewardError::Unprocessable {
            code,
            field,
            message,
        } => EngineError::Unprocessable {
            code,
            field,
            message,
        },
        StewardError::Store(e) => return Err(e),
    })
}

/// A resolved group on its way to the store.
struct Commit {
    changes: Arc<Changes>,
    jobs: Vec<Job>,
    results: Vec<Result<OpResult, EngineError>>,
    events: usize,
    resolve_us: u64,
}

/// Fails every request of a group with `why`, keeping its kind: a graph database that is
/// down or slow is a 503 and a full disk a 507, both retryable; anything else a 500.
fn failed(jobs: Vec<Job>, why: &StoreError) {
    for job in jobs {
        let e = match why {
            StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::Fenced(_) => why.clone(),
            other => StoreError::Engine(other.to_string()),
        };
        let _ = job.reply.send(Err(EngineError::Store(e)));
    }
}

/// Writes one group durably, then answers its requests. Returns why it was not stored.
fn commit(
    store: &dyn GraphStore,
    c: Commit,
    listeners: &[Arc<dyn CommitListener>],
    fault: &WriteFault,
) -> Option<StoreError> {
    let started = std::time::Instant::now();
    match store.apply(&c.changes) {
        Ok(()) => {
            fault.clear();
            tracing::debug!(
                requests = c.jobs.len(),
                events = c.events,
                resolve_us = c.resolve_us,
                write_us = started.elapsed().as_micros() as u64,
                "group committed"
            );
            for (job, result) in c.jobs.into_iter().zip(c.results) {
                let result = match result {
                    Ok(OpResult::Erased(o, _)) => Ok(OpResult::Erased(o, Some(c.changes.clone()))),
                    other => other,
                };
                let _ = job.reply.send(result);
            }
            for listener in listeners {
                listener.committed(&c.changes);
            }
            None
        }
        Err(e) => {
            tracing::error!(error = %e, requests = c.jobs.len(), "write group failed; nothing of it was stored");
            fault.set();
            failed(c.jobs, &e);
            Some(e)
        }
    }
}

/// Resolves a group of jobs in one session over `view`.
#[allow(clippy::type_complexity)]
fn resolve_group(
    view: &dyn GraphStore,
    rules: &Rules,
    jobs: &[Job],
) -> Result<(Changes, Vec<Result<OpResult, EngineError>>), StoreError> {
    let mut session = Session::new(view, now_ms())?;
    // On a remote graph store, read ahead what the group's events need (a few round trips)
    // before they are resolved one by one.
    if view.prefers_batched_reads() {
        let events: Vec<&NormalizedEvent> = jobs
            .iter()
            .filter_map(|job| match &job.op {
                Op::Ingest(events) => Some(events),
                _ => None,
            })
            .flatten()
            .collect();
        let event_ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let identifier_sets: Vec<Vec<IdentKey>> = events
            .iter()
            .map(|e| e.identifiers.iter().map(|i| i.key()).collect())
            .collect();
        session.prefetch(&event_ids, &identifier_sets)?;
    }
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        results.push(run(&mut session, rules, &job.op)?);
    }
    Ok((resolve::finish(session, rules)?, results))
}

/// The resolver thread. Group commits are pipelined one deep: while the committer thread
/// writes group N, this thread resolves group N+1 over a [`Layered`] view (the store plus
/// N's changes). N+1 is handed over only once N is durable; if N failed, N+1 (built on
/// it) fails too and nothing of either is stored.
pub(super) fn writer_loop(
    store: Arc<dyn GraphStore>,
    rules: &Rules,
    rx: Receiver<Job>,
    listeners: Vec<Arc<dyn CommitListener>>,
    fault: Arc<WriteFault>,
) {
    let (commit_tx, commit_rx) = sync_channel::<Commit>(1);
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Option<StoreError>>();
    let committer_store = store.clone();
    let committer = std::thread::Builder::new()
        .name("idgraph-commit".into())
        .spawn(move || {
            for c in commit_rx {
                if done_tx
                    .send(commit(committer_store.as_ref(), c, &listeners, &fault))
                    .is_err()
                {
                    break;
                }
            }
        });
    let committer = match committer {
        Ok(handle) => handle,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the commit thread; writes are refused");
            while let Ok(job) = rx.recv() {
                failed(
                    vec![job],
                    &StoreError::Engine("the commit thread could not start".into()),
                );
            }
            return;
        }
    };
    let mut in_flight: Option<Arc<Changes>> = None;
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut events = jobs.iter().map(job_events).sum::<usize>();
        while jobs.len() < MAX_GROUP_REQUESTS && events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    events += job_events(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let started = std::time::Instant::now();
        let view: Arc<dyn GraphStore> = match &in_flight {
            Some(pending) => Arc::new(Layered::new(store.clone(), pending.clone())),
            None => store.clone(),
        };
        let resolved = resolve_group(view.as_ref(), rules, &jobs);
        let resolve_us = started.elapsed().as_micros() as u64;
        let earlier = match in_flight.take() {
            Some(_) => done_rx.recv().unwrap_or_else(|_| {
                Some(StoreError::Engine("the commit thread has stopped".into()))
            }),
            None => None,
        };
        if let Some(e) = earlier {
            let why =
                format!("an earlier write failed ({e}); nothing of this request was stored, retry");
            failed(jobs, &e.with_message(why));
            continue;
        }
        match resolved {
            Ok((changes, results)) => {
                let changes = Arc::new(changes);
                in_flight = Some(changes.clone());
                let c = Commit {
                    changes,
                    jobs,
                    results,
                    events,
                    resolve_us,
                };
                if let Err(unsent) = commit_tx.send(c) {
                    failed(
                        unsent.0.jobs,
                        &StoreError::Engine("the commit thread has stopped".into()),
                    );
                    in_flight = None;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = jobs.len(), "resolving a write group failed; nothing of it was stored");
                failed(jobs, &e);
            }
        }
    }
    drop(commit_tx);
    let _ = committer.join();
}

fn job_events(job: &Job) -> usize {
    match &job.op {
        Op::Ingest(e) => e.len(),
        _ => 1,
    }
}
