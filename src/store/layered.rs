//! A read-only view of a store with one in-flight [`Changes`] on top.
//!
//! The writer pipelines group commits: while the committer thread writes group N, the
//! resolver already resolves group N+1 and must see N's effects. [`Layered`] answers reads
//! from N's changes first and from the store otherwise. Whether or not N has reached the
//! store yet, the answers are the same (N's values win, duplicates from both are merged).

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{
    ActivationRow, ChangeRecord, Changes, Counters, Edge, FeedBounds, GraphStore, HistoryEntry,
    IdentKey, MatchRecord, Node, ProfileId, ProfileState, ReviewItem, StoreError, StoredEvent,
};
use crate::model::edge_pair;

/// `base` plus the not-yet-durable `pending` changes.
pub struct Layered {
    base: Arc<dyn GraphStore>,
    pending: Arc<Changes>,
    /// Endpoint -> canonical pairs of the pending edges touching it.
    adjacency: HashMap<IdentKey, Vec<(IdentKey, IdentKey)>>,
    /// Event id -> index into `pending.events`.
    events: HashMap<String, usize>,
    /// Blocking key -> pending candidate index rows, in order.
    match_rows: HashMap<String, Vec<(IdentKey, bool)>>,
}

impl Layered {
    pub fn new(base: Arc<dyn GraphStore>, pending: Arc<Changes>) -> Layered {
        let mut adjacency: HashMap<IdentKey, Vec<(IdentKey, IdentKey)>> = HashMap::default();
        for pair in pending.edges.keys() {
            adjacency
                .entry(pair.0.clone())
                .or_default()
                .push(pair.clone());
            adjacency
                .entry(pair.1.clone())
                .or_default()
                .push(pair.clone());
        }
        let events = pending
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| (e.event_id.clone(), i))
            .collect();
        let mut match_rows: HashMap<String, Vec<(IdentKey, bool)>> = HashMap::default();
        for (block, ident, present) in &pending.match_index {
            match_rows
                .entry(block.clone())
                .or_default()
                .push((ident.clone(), *present));
        }
        Layered {
            base,
            pending,
            adjacency,
            events,
            match_rows,
        }
    }
}

impl GraphStore for Layered {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        match self.pending.nodes.get(key) {
            Some(n) => Ok(n.clone()),
            None => self.base.node(key),
        }
    }

    fn prefers_batched_reads(&self) -> bool {
        self.base.prefers_batched_reads()
    }

    fn nodes(&self, keys: &[IdentKey]) -> Result<Vec<Option<Node>>, StoreError> {
        let missing: Vec<IdentKey> = keys
            .iter()
            .filter(|k| !self.pending.nodes.contains_key(*k))
            .cloned()
            .collect();
        let mut base = self.base.nodes(&missing)?.into_iter();
        keys.iter()
            .map(|k| match self.pending.nodes.get(k) {
                Some(n) => Ok(n.clone()),
                None => Ok(base.next().flatten()),
            })
            .collect()
    }

    fn edges(&self, pairs: &[(IdentKey, IdentKey)]) -> Result<Vec<Option<Edge>>, StoreError> {
        let missing: Vec<(IdentKey, IdentKey)> = pairs
            .iter()
            .map(|(a, b)| edge_pair(a, b))
            .filter(|p| !self.pending.edges.contains_key(p))
            .collect();
        let mut base = self.base.edges(&missing)?.into_iter();
        Ok(pairs
            .iter()
            .map(|(a, b)| match self.pending.edges.get(&edge_pair(a, b)) {
                Some(e) => e.clone(),
                None => base.next().flatten(),
            })
            .collect())
    }

    fn profiles(&self, ids: &[ProfileId]) -> Result<Vec<Option<ProfileState>>, StoreError> {
        let missing: Vec<ProfileId> = ids
            .iter()
            .filter(|id| !self.pending.profiles.contains_key(*id))
            .cloned()
            .collect();
        let mut base = self.base.profiles(&missing)?.into_iter();
        Ok(ids
            .iter()
            .map(|id| match self.pending.profiles.get(id) {
                Some(p) => p.clone(),
                None => base.next().flatten(),
            })
            .collect())
    }

    fn stored_events(&self, event_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let missing: Vec<String> = event_ids
            .iter()
            .filter(|id| !self.events.contains_key(*id))
            .cloned()
            .collect();
        let mut out = self.base.stored_events(&missing)?;
        out.extend(
            event_ids
                .iter()
                .filter(|id| self.events.contains_key(*id))
                .cloned(),
        );
        Ok(out)
    }

    fn profile_of(&self, key: &IdentKey) -> Result<Option<ProfileId>, StoreError> {
        match self.pending.nodes.get(key) {
            Some(n) => Ok(n.as_ref().map(|n| n.profile_id.clone())),
            None => self.base.profile_of(key),
        }
    }

    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        match self.pending.edges.get(&edge_pair(a, b)) {
            Some(e) => Ok(e.clone()),
            None => self.base.edge(a, b),
        }
    }

    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        let touched: HashSet<&(IdentKey, IdentKey)> = self
            .adjacency
            .get(key)
            .map(|pairs| pairs.iter().collect())
            .unwrap_or_default();
        let mut out: Vec<Edge> = self
            .base
            .edges_of(key, limit)?
            .into_iter()
            .filter(|e| !touched.contains(&edge_pair(&e.a, &e.b)))
            .collect();
        for pair in touched {
            if let Some(Some(e)) = self.pending.edges.get(pair) {
                out.push(e.clone());
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        match self.pending.profiles.get(id) {
            Some(p) => Ok(p.clone()),
            None => self.base.profile(id),
        }
    }

    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.goldens.get(id) {
            Some(g) => Ok(g.clone()),
            None => self.base.golden(id),
        }
    }

    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        if self.pending.delete_aliases.contains(id) {
            return Ok(None);
        }
        match self.pending.aliases.get(id) {
            Some(s) => Ok(Some(s.clone())),
            None => self.base.alias(id),
        }
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        if self.pending.delete_events.iter().any(|e| e == event_id) {
            return Ok(None);
        }
        match self.events.get(event_id) {
            Some(i) => Ok(self.pending.events.get(*i).cloned()),
            None => self.base.event(event_id),
        }
    }

    /// The base store's order: an event the pending group deleted or aged is still
    /// listed, and the caller reads it through [`Layered::event`] (gone, or aged).
    fn events_in_order(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.base.events_in_order(after, limit)
    }

    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut ids = if self.pending.drop_event_index.contains(key) {
            Vec::new()
        } else {
            self.base.event_ids_of(key, limit)?
        };
        // A deleted event leaves every index (the store's contract).
        ids.retain(|id| !self.pending.delete_events.contains(id));
        let mut seen: HashSet<String> = ids.iter().cloned().collect();
        for (k, _, id) in &self.pending.event_index {
            if k == key && seen.insert(id.clone()) {
                ids.push(id.clone());
            }
        }
        ids.truncate(limit);
        Ok(ids)
    }

    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        at_address_over(
            self.base.as_ref(),
            &self.pending.address_index,
            address_key,
            limit,
        )
    }

    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let base = if self.pending.drop_history.contains(id) {
            Vec::new()
        } else {
            self.base.history(id, limit)?
        };
        let mut by_seq: BTreeMap<u64, HistoryEntry> =
            base.into_iter().map(|e| (e.seq, e)).collect();
        for e in &self.pending.history {
            if e.profiles.contains(id) {
                by_seq.insert(e.seq, e.clone());
            }
        }
        Ok(by_seq.into_values().take(limit).collect())
    }

    fn counters(&self) -> Result<Counters, StoreError> {
        match self.pending.counters {
            Some(c) => Ok(c),
            None => self.base.counters(),
        }
    }

    /// The base store's goldens: used to rebuild indexes, never while groups are in flight.
    fn goldens_after(
        &self,
        after: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        self.base.goldens_after(after, limit)
    }

    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        match self
            .pending
            .suppression
            .iter()
            .rev()
            .find(|(h, _)| h == hash)
        {
            Some((_, present)) => Ok(*present),
            None => self.base.is_suppressed(hash),
        }
    }

    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        match self.pending.match_records.get(key) {
            Some(r) => Ok(r.clone()),
            None => self.base.match_record(key),
        }
    }

    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        let rows = self.match_rows.get(block).map(Vec::as_slice).unwrap_or(&[]);
        let base = self
            .base
            .match_candidates(block, limit.saturating_add(rows.len()))?;
        Ok(overlay(base, rows.iter().map(|(k, p)| (k, *p)), limit))
    }

    /// The base store's records: training reads a store at rest.
    fn match_records_after(
        &self,
        after: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        self.base.match_records_after(after, limit)
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut by_seq: BTreeMap<u64, ChangeRecord> = self
            .base
            .changes_after(after, limit)?
            .into_iter()
            .map(|r| (r.seq, r))
            .collect();
        for r in self.pending.feed.iter().filter(|r| r.seq > after) {
            by_seq.insert(r.seq, r.clone());
        }
        Ok(by_seq.into_values().take(limit).collect())
    }

    fn change(&self, seq: u64) -> Result<Option<ChangeRecord>, StoreError> {
        match self.pending.feed.iter().rev().find(|r| r.seq == seq) {
            Some(r) => Ok(Some(r.clone())),
            None => self.base.change(seq),
        }
    }

    fn change_seqs_of(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        let mut seqs: BTreeSet<u64> = if self.pending.drop_feed_index.iter().any(|s| s == subject) {
            BTreeSet::new()
        } else {
            self.base.change_seqs_of(subject)?.into_iter().collect()
        };
        seqs.extend(
            self.pending
                .feed_index
                .iter()
                .filter(|(s, _)| s == subject)
                .map(|(_, seq)| *seq),
        );
        Ok(seqs.into_iter().collect())
    }

    fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        self.base.feed_bounds()
    }

    fn review_items_after(&self, after: u64, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        let mut by_seq: BTreeMap<u64, ReviewItem> = self
            .base
            .review_items_after(after, limit)?
            .into_iter()
            .map(|r| (r.seq, r))
            .collect();
        for (item, present) in self.pending.reviews.iter().filter(|(r, _)| r.seq > after) {
            if *present {
                by_seq.insert(item.seq, item.clone());
            } else {
                by_seq.remove(&item.seq);
            }
        }
        Ok(by_seq.into_values().take(limit).collect())
    }

    fn activation(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.activation.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.activation(key),
        }
    }

    fn activation_scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<ActivationRow>, StoreError> {
        let pending = self
            .pending
            .activation
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_empty() || k.as_slice() > after);
        // Rows the pending changes delete may hide base rows: ask for that many more.
        let deletes = pending.clone().filter(|(_, v)| v.is_none()).count();
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = self
            .base
            .activation_scan(prefix, after, limit.saturating_add(deletes))?
            .into_iter()
            .collect();
        let last_base = rows.keys().next_back().cloned();
        let base_full = rows.len() >= limit.saturating_add(deletes);
        for (k, v) in pending {
            // Past the base page's end the base may hold rows not read: stop there.
            if base_full && last_base.as_ref().is_some_and(|l| k > l) {
                break;
            }
            match v {
                Some(v) => rows.insert(k.clone(), v.clone()),
                None => rows.remove(k),
            };
        }
        Ok(rows.into_iter().take(limit).collect())
    }

    fn review_item(&self, seq: u64) -> Result<Option<ReviewItem>, StoreError> {
        match self
            .pending
            .reviews
            .iter()
            .rev()
            .find(|(r, _)| r.seq == seq)
        {
            Some((item, present)) => Ok(present.then(|| item.clone())),
            None => self.base.review_item(seq),
        }
    }

    fn review_seqs_of(&self, key: &IdentKey) -> Result<Vec<u64>, StoreError> {
        let mut seqs: BTreeSet<u64> = self.base.review_seqs_of(key)?.into_iter().collect();
        for (item, present) in &self.pending.reviews {
            if item.a == *key || item.b == *key {
                if *present {
                    seqs.insert(item.seq);
                } else {
                    seqs.remove(&item.seq);
                }
            }
        }
        Ok(seqs.into_iter().collect())
    }

    fn apply(&self, _changes: &Changes) -> Result<(), StoreError> {
        Err(StoreError::Engine(
            "a layered view is read-only; writes go to the base store".into(),
        ))
    }
}

/// The profiles at `address_key` in `base` with the pending address-index `rows` applied,
/// at most `limit`. The base is read only as far as the pending removals can need (a
/// bounded read: a graph database takes the limit as a signed 64-bit `LIMIT`).
pub fn at_address_over(
    base: &dyn GraphStore,
    rows: &[(String, ProfileId, bool)],
    address_key: &str,
    limit: usize,
) -> Result<Vec<ProfileId>, StoreError> {
    let rows = rows.iter().filter(|(a, _, _)| a == address_key);
    let stored =
        base.profiles_at_address(address_key, limit.saturating_add(rows.clone().count()))?;
    Ok(overlay(
        stored,
        rows.map(|(_, id, present)| (id, *present)),
        limit,
    ))
}

/// `base` with pending `(member, present?)` rows applied in order, sorted, at most `limit`.
pub fn overlay<'a, T: Ord + Clone + 'a>(
    base: Vec<T>,
    rows: impl Iterator<Item = (&'a T, bool)>,
    limit: usize,
) -> Vec<T> {
    let mut set: BTreeSet<T> = base.into_iter().collect();
    for (member, present) in rows {
        if present {
            set.insert(member.clone());
        } else {
            set.remove(member);
        }
    }
    set.into_iter().take(limit).collect()
}
