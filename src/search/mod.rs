//! Search for support agents: a tantivy index of golden profiles.
//!
//! - [`document`] turns a cached golden profile into an index document (names, emails whole
//!   and in parts, phones as E.164 and national digits, address, every identifier, sources).
//! - [`query`] validates a search request and builds the query: an exact identifier typed in
//!   ranks first; otherwise every word must match some field, exactly, with one typo, or as
//!   a prefix (the last word, for results as you type).
//! - [`SearchIndex`] owns the index: it applies the golden-profile changes of every write
//!   group (merged-away and deleted profiles are removed), commits in batches, and is
//!   rebuilt from the store when missing, corrupt, or behind the store.
//!
//! **Invariant:** the index holds only profile ids and analyzed terms; hits are always
//! rendered from the store, so a hit never shows stale or merged-away data. Each commit
//! carries the store's `commit_seq` of the last write group it reflects (the commit
//! payload); at start-up an index whose payload differs from the store is rebuilt.

pub mod document;
pub mod expand;
pub mod indexer;
pub mod nicknames;
pub mod query;

use std::path::Path;
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::indexer::{LogMergePolicy, NoMergePolicy};
use tantivy::schema::{Schema, Value as _};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term,
};

use crate::ingest::identifier::Normalizer;
use crate::store::{GraphStore, ProfileId, StoreError};
use document::Fields;
pub use query::{Matcher, SearchError, SearchRequest, Tier};

use std::collections::{HashMap, HashSet};

use tantivy::columnar::Column;
use tantivy::index::SegmentId;

/// Indexing memory budget of the (single) indexing thread.
const WRITER_MEMORY_BYTES: usize = 64 << 20;
/// The merge policy of the live index. Every query looks its terms up in every segment:
/// a level is merged once it holds [`MERGE_AT`] segments (tantivy's default is 8), keeping
/// the count low under a steady stream of small commits.
fn merge_policy() -> Box<LogMergePolicy> {
    let mut policy = LogMergePolicy::default();
    policy.set_min_num_segments(MERGE_AT);
    Box::new(policy)
}

/// Segments of one size level that trigger their merge (tantivy's default is 8: fewer
/// rewrites, but a fifth fewer queries/s at 465,000 profiles, measured).
const MERGE_AT: usize = 4;
/// Golden profiles read from the store per page when rebuilding.
const REBUILD_PAGE: usize = 2_000;

/// One search hit, before its profile is read from the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub profile_id: ProfileId,
    /// Score within the hit's tier.
    pub score: f32,
    /// The ranking tier that found the hit.
    pub tier: Tier,
}

/// A page of hits and the number of matching profiles.
#[derive(Debug, Clone, PartialEq)]
pub struct Hits {
    /// Matching profiles; a lower bound when `total_is_exact` is false (the looser tiers
    /// were not needed for the page, so their matches were not counted).
    pub total: usize,
    pub total_is_exact: bool,
    pub hits: Vec<Hit>,
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the index was rebuilt at start-up (logged; no personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// The index was present and in step with the store.
    Current,
    /// Rebuilt from the store, with the reason.
    Rebuilt { reason: String, profiles: usize },
    /// It was behind the store (a crash before its last commit) and caught up from the
    /// store's change log: the profiles changed in the groups it missed were re-indexed.
    CaughtUp { groups: u64, profiles: usize },
}

/// The search index of one data directory.
pub struct SearchIndex {
    index: Index,
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    normalizer: Normalizer,
    /// The `seq` fast field of each segment, opened once per segment rather than once per
    /// query (see [`SearchIndex::seq_columns`]).
    seq_columns: Mutex<HashMap<SegmentId, Option<Column<u64>>>>,
}

/// Version of the documents' analysis; bump it when what is indexed changes, so indexes
/// built by an older version are rebuilt at start-up.
const INDEX_FORMAT: u64 = 8;

fn payload(commit_seq: u64) -> String {
    format!("{{\"store_commit\":{commit_seq},\"format\":{INDEX_FORMAT}}}")
}

/// The store write an index commit reflects, if it was written by this index format.
fn payload_seq(payload: Option<&str>) -> Result<Option<u64>, String> {
    let Some(text) = payload else { return Ok(None) };
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|_| "unreadable commit marker".to_owned())?;
    match v.get("format").and_then(|f| f.as_u64()) {
        Some(INDEX_FORMAT) => Ok(v.get("store_commit").and_then(|s| s.as_u64())),
        _ => Err("built by another version".to_owned()),
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, rebuilding it from `store` when it is missing, unreadable,
    /// built with another schema, or not in step with the store's last write.
    pub fn open(
        dir: &Path,
        store: &dyn GraphStore,
        normalizer: Normalizer,
    ) -> Result<(SearchIndex, Opened), IndexError> {
        let commit_seq = store.counters()?.commit_seq;
        let (schema, fields) = document::schema();
        let reason = match Self::try_open(dir, &schema, fields, normalizer.clone()) {
            Ok(idx) => {
                let metas = idx.index.load_metas()?;
                match payload_seq(metas.payload.as_deref()) {
                    Ok(Some(seq)) => match idx.catch_up_from(store, seq, commit_seq)? {
                        Ok(opened) => return Ok((idx, opened)),
                        Err(why) => why,
                    },
                    Ok(None) if commit_seq == 0 && metas.segments.is_empty() => {
                        return Ok((idx, Opened::Current))
                    }
                    Ok(None) => "index has no commit marker".to_owned(),
                    Err(why) => why,
                }
            }
            Err(e) => e,
        };
        let idx = Self::create(dir, &schema, fields, normalizer)?;
        let profiles = idx.rebuild_from(store)?;
        Ok((idx, Opened::Rebuilt { reason, profiles }))
    }

    fn try_open(
        dir: &Path,
        schema: &Schema,
        fields: Fields,
        normalizer: Normalizer,
    ) -> Result<SearchIndex, String> {
        if !dir.join("meta.json").exists() {
            return Err("no index yet".into());
        }
        let mmap = MmapDirectory::open(dir).map_err(|e| format!("cannot open: {e}"))?;
        let index = Index::open(mmap).map_err(|e| format!("unreadable: {e}"))?;
        if index.schema() != *schema {
            return Err("built with another schema".into());
        }
        // Every index file ends with a checksum of its content: a file damaged inside (not
        // just truncated) is caught here rather than by a failing or panicking search.
        match index.validate_checksum() {
            Ok(bad) if bad.is_empty() => {}
            Ok(bad) => return Err(format!("{} index file(s) fail their checksum", bad.len())),
            Err(e) => return Err(format!("checksums unreadable: {e}")),
        }
        Self::finish(index, fields, normalizer).map_err(|e| format!("unusable: {e}"))
    }

    fn create(
        dir: &Path,
        schema: &Schema,
        fields: Fields,
        normalizer: Normalizer,
    ) -> Result<SearchIndex, IndexError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .map_err(|e| IndexError::Io(format!("cannot clear {}: {e}", dir.display())))?;
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| IndexError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let mmap = MmapDirectory::open(dir)
            .map_err(|e| IndexError::Io(format!("cannot open {}: {e}", dir.display())))?;
        let index = Index::create(mmap, schema.clone(), Default::default())?;
        Self::finish(index, fields, normalizer)
    }

    fn finish(
        index: Index,
        fields: Fields,
        normalizer: Normalizer,
    ) -> Result<SearchIndex, IndexError> {
        // Merges keep tantivy's four threads at normal priority: fewer threads, or merges
        // at a lower priority, made ingest up to a quarter faster but left merges behind
        // and search at the final size 20-55% slower (docs/benchmarks.md).
        let writer: IndexWriter = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        writer.set_merge_policy(merge_policy());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(SearchIndex {
            index,
            reader,
            writer: Mutex::new(writer),
            fields,
            normalizer,
            seq_columns: Mutex::new(HashMap::new()),
        })
    }

    /// Merges every searchable segment into one (also a single segment, to drop its
    /// deleted documents). A merge the policy started in the background may have taken
    /// some of those segments first; tantivy then refuses the merge, and the segments are
    /// listed again after that merge had time to finish.
    fn merge_all(&self, writer: &mut IndexWriter) -> Result<(), IndexError> {
        const ATTEMPTS: usize = 50;
        let mut attempt = 1;
        loop {
            let segments = self.index.searchable_segment_ids()?;
            if segments.is_empty() {
                return Ok(());
            }
            match writer.merge(&segments).wait() {
                Ok(_) => return Ok(()),
                Err(tantivy::TantivyError::InvalidArgument(why)) if attempt < ATTEMPTS => {
                    tracing::debug!(%why, attempt, "segments changed under the merge; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Tells which fields of a hit matched `req`.
    pub fn matcher(&self, req: &SearchRequest) -> Matcher {
        Matcher::new(&self.normalizer, req)
    }

    fn writer(&self) -> Result<std::sync::MutexGuard<'_, IndexWriter>, IndexError> {
        self.writer
            .lock()
            .map_err(|_| IndexError::Io("index writer lock poisoned".into()))
    }

    /// Drops everything and indexes every cached golden profile of `store`; returns how
    /// many profiles were indexed.
    pub fn rebuild_from(&self, store: &dyn GraphStore) -> Result<usize, IndexError> {
        let commit_seq = store.counters()?.commit_seq;
        let mut writer = self.writer()?;
        // The segments flushed while rebuilding are merged into one at the end, not
        // level by level on the way.
        writer.set_merge_policy(Box::new(NoMergePolicy));
        writer.delete_all_documents()?;
        let mut after: Option<ProfileId> = None;
        let mut count = 0;
        loop {
            let page = store.goldens_after(after.as_ref(), REBUILD_PAGE)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (id, cached) in &page {
                if let Some(doc) = document::build(&self.fields, id, cached) {
                    writer.add_document(doc)?;
                    count += 1;
                }
            }
            if page.len() < REBUILD_PAGE {
                break;
            }
        }
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload(commit_seq));
        prepared.commit()?;
        // A rebuild flushes a segment per memory budget: merge them into one.
        if self.index.searchable_segment_ids()?.len() > 1 {
            self.merge_all(&mut writer)?;
            // No cached expansion or mapped column of a merged-away segment may keep the
            // erased person's words.
            expand::forget();
            if let Ok(mut columns) = self.seq_columns.lock() {
                columns.clear();
            }
        }
        writer.set_merge_policy(merge_policy());
        drop(writer);
        self.reader.reload()?;
        Ok(count)
    }

    /// Brings the index back in step after a failed stage or commit (a full disk kills
    /// tantivy's writer): a fresh writer (what was staged and not committed is dropped),
    /// then the profiles changed since the last commit re-indexed from the store's change
    /// log, or the whole index rebuilt when the log does not reach back that far.
    pub fn recover(&self, store: &dyn GraphStore) -> Result<Opened, IndexError> {
        {
            let mut writer = self.writer()?;
            writer.rollback()?;
            writer.set_merge_policy(merge_policy());
        }
        let commit_seq = store.counters()?.commit_seq;
        let reason = match self.committed_seq() {
            Some(seq) => match self.catch_up_from(store, seq, commit_seq)? {
                Ok(opened) => return Ok(opened),
                Err(why) => why,
            },
            None => "the index's commit marker is unreadable".to_owned(),
        };
        let profiles = self.rebuild_from(store)?;
        Ok(Opened::Rebuilt { reason, profiles })
    }

    /// Brings the index up to the store's last write group from the store's change log,
    /// keeping the writer (a read replica, whose store is written from outside the
    /// engine); falls back to [`SearchIndex::recover`] when that cannot be done.
    pub fn catch_up_with(&self, store: &dyn GraphStore) -> Result<Opened, IndexError> {
        let commit_seq = store.counters()?.commit_seq;
        if let Some(seq) = self.committed_seq() {
            if let Ok(opened) = self.catch_up_from(store, seq, commit_seq)? {
                return Ok(opened);
            }
        }
        self.recover(store)
    }

    /// Brings an index whose last commit reflects store write `seq` in step with the
    /// store at `commit_seq`: nothing to do, or the profiles the store's change log names
    /// since `seq` re-indexed. `Err(reason)` when only a rebuild can do it (the index is
    /// ahead of the store, or the log does not reach back that far).
    fn catch_up_from(
        &self,
        store: &dyn GraphStore,
        seq: u64,
        commit_seq: u64,
    ) -> Result<Result<Opened, String>, IndexError> {
        if seq == commit_seq {
            return Ok(Ok(Opened::Current));
        }
        if seq > commit_seq {
            return Ok(Err(format!(
                "index reflects write {seq}, store is at {commit_seq}"
            )));
        }
        Ok(match store.profiles_changed_since(seq)? {
            Some(ids) => {
                self.catch_up(store, &ids, commit_seq)?;
                Ok(Opened::CaughtUp {
                    groups: commit_seq - seq,
                    profiles: ids.len(),
                })
            }
            None => Err(format!(
                "index reflects write {seq}, store is at {commit_seq}, and the store's change log does not reach back that far"
            )),
        })
    }

    /// Re-indexes profiles `ids` from the store (their golden copies, or their removal)
    /// and commits the index as reflecting the store's write `commit_seq`.
    fn catch_up(
        &self,
        store: &dyn GraphStore,
        ids: &[ProfileId],
        commit_seq: u64,
    ) -> Result<(), IndexError> {
        for chunk in ids.chunks(1000) {
            let goldens = store.goldens(chunk)?;
            self.stage(chunk.iter().zip(goldens.iter().map(|g| g.as_deref())))?;
        }
        self.commit(commit_seq)
    }

    /// Stages the golden-profile changes of one write group (`None` = profile gone).
    /// Nothing is searchable before [`SearchIndex::commit`].
    pub fn stage<'a>(
        &self,
        goldens: impl Iterator<Item = (&'a ProfileId, Option<&'a [u8]>)>,
    ) -> Result<(), IndexError> {
        let writer = self.writer()?;
        for (id, cached) in goldens {
            writer.delete_term(Term::from_field_text(self.fields.id, id));
            if let Some(doc) = cached.and_then(|c| document::build(&self.fields, id, c)) {
                writer.add_document(doc)?;
            }
        }
        Ok(())
    }

    /// Commits what was staged, marked as reflecting the store's write `commit_seq`, and
    /// makes it searchable.
    pub fn commit(&self, commit_seq: u64) -> Result<(), IndexError> {
        let mut writer = self.writer()?;
        let mut prepared = writer.prepare_commit()?;
        prepared.set_payload(&payload(commit_seq));
        prepared.commit()?;
        drop(writer);
        self.reader.reload()?;
        Ok(())
    }

    /// Runs a validated request: the plan's tiers in order, until the requested page is
    /// filled (see [`query::Plan`]).
    pub fn search(&self, req: &SearchRequest) -> Result<Hits, IndexError> {
        let started = std::time::Instant::now();
        let searcher = self.reader.searcher();
        let plan = query::build(&self.fields, &self.normalizer, req, &searcher)?;
        let planned = started.elapsed();
        let want = req.offset + req.limit;
        // Documents of the tiers run so far, in rank order.
        let mut ranked: Vec<(f32, DocAddress, Tier)> = Vec::new();
        let mut seen: HashSet<DocAddress> = HashSet::new();
        let mut total = 0;
        let mut exact = true;
        let last = plan.tiers.len().saturating_sub(1);
        for (i, tier) in plan.tiers.iter().enumerate() {
            let Some(query) = plan.query(&self.fields, *tier, &searcher)? else {
                continue;
            };
            // At most `ranked.len()` of this tier's best documents are already ranked, so
            // its best `want + ranked` hold the `want` best new ones.
            let collector = (TopDocs::with_limit(want + ranked.len()), Count);
            let started = std::time::Instant::now();
            let (top, count) = searcher.search(query.as_ref(), &collector)?;
            tracing::trace!(
                tier = ?tier,
                count,
                micros = started.elapsed().as_micros() as u64,
                "search tier run"
            );
            total = total.max(count);
            for (score, addr) in top {
                if ranked.len() < want && seen.insert(addr) {
                    ranked.push((score, addr, *tier));
                }
            }
            let identifier_answer = *tier == Tier::Identifier && plan.identifier_only;
            if identifier_answer && count > 0 {
                break;
            }
            if ranked.len() >= want && i < last {
                // Looser tiers would only add hits below this page: they are not run, so
                // the total is a lower bound.
                exact = false;
                break;
            }
        }
        let mut hits = Vec::with_capacity(req.limit);
        // Profile ids come from the `seq` fast field (cheap); an id not of the usual form
        // is read from the document store.
        let seqs = self.seq_columns(&searcher);
        for (score, addr, tier) in ranked.into_iter().skip(req.offset) {
            let column = seqs.get(addr.segment_ord as usize).and_then(Option::as_ref);
            let profile_id = match column.and_then(|c| c.first(addr.doc_id)) {
                Some(seq) => Some(crate::resolve::session::profile_id(seq)),
                None => {
                    let doc: TantivyDocument = searcher.doc(addr)?;
                    doc.get_first(self.fields.id)
                        .and_then(|v| v.as_str())
                        .map(ProfileId::from)
                }
            };
            if let Some(profile_id) = profile_id {
                hits.push(Hit {
                    profile_id,
                    score,
                    tier,
                });
            }
        }
        tracing::trace!(
            plan_us = planned.as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            tiers = plan.tiers.len(),
            "search index answered"
        );
        Ok(Hits {
            total,
            total_is_exact: exact,
            hits,
        })
    }

    /// The `seq` column of each of `searcher`'s segments, in segment order. Opening a
    /// column reads its header: done once per segment and kept while the segment lives.
    fn seq_columns(&self, searcher: &Searcher) -> Vec<Option<Column<u64>>> {
        let segments = searcher.segment_readers();
        let Ok(mut cached) = self.seq_columns.lock() else {
            return segments
                .iter()
                .map(|s| s.fast_fields().u64(document::SEQ).ok())
                .collect();
        };
        let columns: Vec<Option<Column<u64>>> = segments
            .iter()
            .map(|s| {
                cached
                    .entry(s.segment_id())
                    .or_insert_with(|| s.fast_fields().u64(document::SEQ).ok())
                    .clone()
            })
            .collect();
        // Drop the columns of merged-away segments (they keep the segment's file mapped).
        if cached.len() > 2 * segments.len() + 8 {
            let live: HashSet<SegmentId> = segments.iter().map(|s| s.segment_id()).collect();
            cached.retain(|id, _| live.contains(id));
        }
        columns
    }

    /// The store write the last index commit reflects.
    pub fn committed_seq(&self) -> Option<u64> {
        let metas = self.index.load_metas().ok()?;
        payload_seq(metas.payload.as_deref()).ok().flatten()
    }

    /// Physically removes an erased person from the index files: the segments holding a
    /// document (live or deleted) of profiles `profiles` or with one of the identifier
    /// values `values` (an older copy of someone the person was once merged with) are
    /// merged, so no segment keeps their terms; other segments are left alone, so the cost
    /// follows the person, not the index. Then deletes the files no longer used and
    /// empties the caches derived from segments. Waits (up to `wait`) for the index to
    /// reflect store write `seq` first.
    pub fn purge(
        &self,
        seq: u64,
        wait: std::time::Duration,
        profiles: &[ProfileId],
        values: &[String],
    ) -> Result<(), IndexError> {
        const ATTEMPTS: usize = 50;
        let deadline = std::time::Instant::now() + wait;
        while self.committed_seq().is_none_or(|s| s < seq) {
            if std::time::Instant::now() > deadline {
                return Err(IndexError::Io(
                    "the index did not catch up with the erasure in time".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let terms: Vec<Term> = profiles
            .iter()
            .map(|id| Term::from_field_text(self.fields.id, id))
            .chain(
                values
                    .iter()
                    .map(|v| Term::from_field_text(self.fields.ident_value, &v.to_lowercase())),
            )
            .collect();
        let mut writer = self.writer()?;
        let mut attempt = 1;
        loop {
            self.reader.reload()?;
            let searcher = self.reader.searcher();
            let mut holding = Vec::new();
            for reader in searcher.segment_readers() {
                let mut holds = false;
                for term in &terms {
                    let inverted = reader.inverted_index(term.field())?;
                    let info = inverted
                        .get_term_info(term)
                        .map_err(|e| IndexError::Io(format!("cannot read the index: {e}")))?;
                    if info.is_some() {
                        holds = true;
                        break;
                    }
                }
                if holds {
                    holding.push(reader.segment_id());
                }
            }
            if holding.is_empty() {
                break;
            }
            match writer.merge(&holding).wait() {
                Ok(_) => break,
                // A background merge took some of them first; look again (its result has
                // no deleted documents).
                Err(tantivy::TantivyError::InvalidArgument(why)) if attempt < ATTEMPTS => {
                    tracing::debug!(%why, attempt, "segments changed under the purge; retrying");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        writer.garbage_collect_files().wait()?;
        drop(writer);
        self.reader.reload()?;
        // No cached expansion or mapped column of a merged-away segment may keep the
        // erased person's words.
        expand::forget();
        if let Ok(mut columns) = self.seq_columns.lock() {
            columns.clear();
        }
        Ok(())
    }

    /// Number of indexed profiles (as of the last commit).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
