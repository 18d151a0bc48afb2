//! Write requests: each is queued to the resolver thread (`writer`) and answered once its
//! group is durable.

use std::sync::mpsc::TrySendError;
use std::sync::Arc;

use super::writer::{Job, Op, OpResult};
use super::{Engine, EngineError};
use crate::ingest::event::NormalizedEvent;
use crate::resolve::split::SplitOutcome;
use crate::resolve::{self, EventOutcome};
use crate::store::{Changes, IdentKey, ProfileId, StoreError};

impl Engine {
    pub(super) fn submit(
        &self,
        op: Op,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<OpResult, EngineError>>, EngineError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let queue = self.queue.as_ref().ok_or(EngineError::ShuttingDown)?;
        match queue.try_send(Job { op, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(EngineError::Overloaded),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::ShuttingDown),
        }
    }

    /// Resolves events durably; returns one outcome per event, in order. Async form.
    pub async fn ingest_async(
        &self,
        events: Vec<NormalizedEvent>,
    ) -> Result<Vec<EventOutcome>, EngineError> {
        let n = self.admit(&events)?;
        let result = async {
            let rx = self.submit(Op::Ingest(events))?;
            match rx.await.map_err(|_| EngineError::ShuttingDown)?? {
                OpResult::Ingested(o) => Ok(o),
                _ => Err(EngineError::ShuttingDown),
            }
        }
        .await;
        self.admitted(n, &result);
        result
    }

    /// Resolves events durably (blocking form, for the CLI, benches and tests).
    pub fn ingest(&self, events: Vec<NormalizedEvent>) -> Result<Vec<EventOutcome>, EngineError> {
        let n = self.admit(&events)?;
        let result = (|| {
            let rx = self.submit(Op::Ingest(events))?;
            match rx
                .blocking_recv()
                .map_err(|_| EngineError::ShuttingDown)??
            {
                OpResult::Ingested(o) => Ok(o),
                _ => Err(EngineError::ShuttingDown),
            }
        })();
        self.admitted(n, &result);
        result
    }

    /// Reserves a batch against the tenant's quotas (`tenants::usage`).
    fn admit(&self, events: &[NormalizedEvent]) -> Result<u64, EngineError> {
        let n = events.len() as u64;
        self.usage
            .admit(n, super::now_ms().max(0) as u64, || {
                self.store.counters().map(|c| c.profiles).unwrap_or(0)
            })
            .map_err(EngineError::QuotaExceeded)?;
        Ok(n)
    }

    /// Counts a reserved batch as written, or gives its reservation back.
    fn admitted<T>(&self, n: u64, result: &Result<T, EngineError>) {
        match result {
            Ok(_) => self.usage.written(n),
            Err(_) => self.usage.release(n, super::now_ms().max(0) as u64),
        }
    }

    async fn unmerge(&self, op: Op) -> Result<SplitOutcome, EngineError> {
        match self
            .submit(op)?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Unmerged(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Deletes the link between two identifiers and splits the profile if it falls apart.
    pub async fn delete_link(&self, a: IdentKey, b: IdentKey) -> Result<SplitOutcome, EngineError> {
        self.unmerge(Op::DeleteLink(a, b)).await
    }

    /// Deletes an identifier (its node, edges and event index) and splits what falls apart.
    pub async fn delete_identifier(&self, key: IdentKey) -> Result<SplitOutcome, EngineError> {
        self.unmerge(Op::DeleteIdentifier(key)).await
    }

    /// Erases a person (see `resolve::erase`), then purges what storage keeps of deleted
    /// data: the store is flushed and compacted and the search index merged, so no file
    /// holds the erased values any more. The answer waits for both.
    pub async fn erase(
        self: &Arc<Self>,
        target: resolve::erase::ErasureTarget,
    ) -> Result<resolve::erase::ErasureOutcome, EngineError> {
        let (outcome, changes) = match self
            .submit(Op::Erase(target))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Erased(o, changes) => (o, changes),
            _ => return Err(EngineError::ShuttingDown),
        };
        let engine = self.clone();
        let profiles: Vec<ProfileId> = std::iter::once(outcome.profile_id.clone())
            .chain(outcome.absorbed.iter().cloned())
            .collect();
        let values: Vec<String> = outcome
            .erased_keys
            .iter()
            .map(|k| crate::model::split_key(k).1.to_owned())
            .collect();
        tokio::task::spawn_blocking(move || engine.purge(changes.as_deref(), &profiles, &values))
            .await
            .map_err(|_| EngineError::ShuttingDown)??;
        self.journal_erasure(&outcome);
        Ok(outcome)
    }

    /// Appends the erasure's keyed hashes to the suppression journal of every backup
    /// directory of this data directory (see `backup`), so restoring an older backup
    /// erases the person again. The erasure is already durable: a journal that cannot be
    /// written is logged (no values, only the count) and counted, not answered as an error.
    fn journal_erasure(&self, outcome: &resolve::erase::ErasureOutcome) {
        let hashes: Vec<String> = outcome
            .erased_keys
            .iter()
            .filter_map(|k| self.rules.suppression_hash(k))
            .collect();
        if let Err(e) = crate::backup::journal_erasure(&self.settings.storage.data_dir, &hashes) {
            tracing::error!(error = %e, identifiers = hashes.len(), "cannot append the erasure to a backup directory's suppression journal; restoring an older backup would not erase this person again");
        }
    }

    /// Physically removes an erased person's deleted data: the store compacts the files
    /// holding the keys the erasure's write group touched (`changes`; everything when it is
    /// not known) and the search index merges the segments holding the person's documents
    /// (`profiles`, or any of the identifier `values`).
    pub fn purge(
        &self,
        changes: Option<&Changes>,
        profiles: &[ProfileId],
        values: &[String],
    ) -> Result<(), EngineError> {
        let seq = self.store.counters()?.commit_seq;
        let started = std::time::Instant::now();
        match changes {
            Some(changes) => self.store.purge(changes)?,
            None => self.store.compact()?,
        }
        let store_ms = started.elapsed().as_millis() as u64;
        if let Some(index) = &self.search {
            index
                .purge(seq, std::time::Duration::from_secs(30), profiles, values)
                .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
        }
        tracing::info!(
            store_ms,
            index_ms = started.elapsed().as_millis() as u64 - store_ms,
            "erased data purged from the files"
        );
        Ok(())
    }

    /// A steward's decision on review item `seq` (see `resolve::review`).
    pub async fn review(
        &self,
        seq: u64,
        decision: resolve::review::Decision,
        actor: String,
        reason: String,
        overrides: Vec<String>,
    ) -> Result<resolve::review::ReviewOutcome, EngineError> {
        let op = Op::Review(super::writer::ReviewRequest {
            seq,
            decision,
            actor,
            reason,
            overrides,
        });
        match self
            .submit(op)?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Reviewed(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// A steward's merge of `profiles` into the oldest (see `resolve::steward`).
    pub async fn merge_profiles(
        &self,
        profiles: Vec<ProfileId>,
        note: crate::model::StewardNote,
    ) -> Result<resolve::steward::MergeOutcome, EngineError> {
        match self
            .submit(Op::Merge(profiles, note))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Merged(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// A steward pins (`Some`) or unpins (`None`) trait `name` of profile `id`; the live
    /// profile id.
    pub async fn pin(
        &self,
        id: ProfileId,
        name: String,
        value: Option<serde_json::Value>,
        note: crate::model::StewardNote,
    ) -> Result<ProfileId, EngineError> {
        let value = match value {
            Some(v) => Some(
                crate::ingest::event::normalize_trait(&name, &v, super::now_ms()).map_err(|e| {
                    EngineError::Invalid {
                        field: e.field,
                        message: e.message,
                    }
                })?,
            ),
            None => None,
        };
        match self
            .submit(Op::Pin(id, name, value, note))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Pinned(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// A steward's split of profile `id` (see `resolve::steward`).
    pub async fn split_profile(
        &self,
        id: ProfileId,
        plan: resolve::steward::SplitPlan,
        note: crate::model::StewardNote,
    ) -> Result<resolve::steward::StewardSplitOutcome, EngineError> {
        match self
            .submit(Op::Split(id, plan, note))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Split(o) => Ok(o),
            _ => Err(EngineError::ShuttingDown),
        }
    }

    /// Takes an identifier off the suppression list; whether it was on it.
    pub async fn unsuppress(&self, key: IdentKey) -> Result<bool, EngineError> {
        let hash = self.rules.suppression_hash(&key);
        match self
            .submit(Op::Unsuppress(key))?
            .await
            .map_err(|_| EngineError::ShuttingDown)??
        {
            OpResult::Unsuppressed(found) => {
                // Journalled too, so a restore does not put it back on the list.
                if let (true, Some(hash)) = (found, hash) {
                    let data_dir = &self.settings.storage.data_dir;
                    if let Err(e) = crate::backup::journal_lifted(data_dir, &[hash]) {
                        tracing::error!(error = %e, "cannot append a lifted suppression to a backup directory's journal; restoring an older backup would keep it suppressed");
                    }
                }
                Ok(found)
            }
            _ => Err(EngineError::ShuttingDown),
        }
    }
}
