//! An in-memory graph store: the [`GraphStore`] contract in plain ordered maps, nothing
//! durable. It is the reference the conformance suite holds every other store to (the
//! contract is easiest to read here), and, as a [`RemoteGraph`], it lets the profile cache
//! of the remote backends be tested without a server.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::remote::lease::{Claim, Holder, FENCED};
use super::remote::RemoteGraph;
use super::{
    ActivationRow, ChangeRecord, Changes, Counters, Edge, FeedBounds, GraphStore, HistoryEntry,
    IdentKey, MatchRecord, Node, ProfileId, ProfileState, ReviewItem, StoreError, StoredEvent,
};
use crate::model::edge_pair;

#[derive(Default)]
struct Graph {
    nodes: BTreeMap<IdentKey, Node>,
    /// Keyed by the canonical (ordered) pair.
    edges: BTreeMap<(IdentKey, IdentKey), Edge>,
    adjacency: BTreeMap<IdentKey, BTreeSet<IdentKey>>,
    profiles: BTreeMap<ProfileId, ProfileState>,
    goldens: BTreeMap<ProfileId, Vec<u8>>,
    aliases: BTreeMap<ProfileId, ProfileId>,
    events: BTreeMap<String, StoredEvent>,
    event_index: BTreeMap<IdentKey, BTreeMap<u64, String>>,
    addresses: BTreeMap<String, BTreeSet<ProfileId>>,
    match_records: BTreeMap<IdentKey, MatchRecord>,
    match_index: BTreeMap<String, BTreeSet<IdentKey>>,
    history: BTreeMap<ProfileId, BTreeMap<u64, HistoryEntry>>,
    suppressed: BTreeSet<String>,
    feed: BTreeMap<u64, ChangeRecord>,
    feed_index: BTreeMap<String, BTreeSet<u64>>,
    feed_bounds: FeedBounds,
    reviews: BTreeMap<u64, ReviewItem>,
    review_index: BTreeMap<IdentKey, BTreeSet<u64>>,
    activation: BTreeMap<Vec<u8>, Vec<u8>>,
    counters: Counters,
    instance: Option<String>,
    lease: Option<Holder>,
}

/// See the module docs.
#[derive(Default)]
pub struct MemoryStore {
    graph: RwLock<Graph>,
}

/// Sets or clears the membership of `member` in the set under `key`, dropping empty sets.
fn index<K: Ord, M: Ord>(map: &mut BTreeMap<K, BTreeSet<M>>, key: K, member: M, present: bool) {
    if present {
        map.entry(key).or_default().insert(member);
    } else if let Some(set) = map.get_mut(&key) {
        set.remove(&member);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

/// The entries of an ordered map after `after` (from the start when `None`).
fn after<'a, K: Ord + std::borrow::Borrow<str>, V>(
    map: &'a BTreeMap<K, V>,
    from: Option<&'a str>,
) -> impl Iterator<Item = (&'a K, &'a V)> + 'a {
    let lower = match from {
        Some(key) => Bound::Excluded(key),
        None => Bound::Unbounded,
    };
    map.range::<str, _>((lower, Bound::Unbounded))
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Graph>, StoreError> {
        self.graph
            .read()
            .map_err(|_| StoreError::Engine("memory store lock poisoned".into()))
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Graph>, StoreError> {
        self.graph
            .write()
            .map_err(|_| StoreError::Engine("memory store lock poisoned".into()))
    }
}

/// Extends the lease if it is `claim.holder`'s.
fn renew(g: &mut Graph, claim: &Claim) -> bool {
    match g.lease.as_mut().filter(|l| l.holder == claim.holder) {
        Some(lease) => {
            lease.expires_ms = claim.expires_ms;
            true
        }
        None => false,
    }
}

impl GraphStore for MemoryStore {
    fn node(&self, key: &IdentKey) -> Result<Option<Node>, StoreError> {
        Ok(self.read()?.nodes.get(key).cloned())
    }

    fn edge(&self, a: &IdentKey, b: &IdentKey) -> Result<Option<Edge>, StoreError> {
        Ok(self.read()?.edges.get(&edge_pair(a, b)).cloned())
    }

    fn edges_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<Edge>, StoreError> {
        let g = self.read()?;
        let Some(others) = g.adjacency.get(key) else {
            return Ok(Vec::new());
        };
        Ok(others
            .iter()
            .filter_map(|other| g.edges.get(&edge_pair(key, other)).cloned())
            .take(limit)
            .collect())
    }

    fn profile(&self, id: &ProfileId) -> Result<Option<ProfileState>, StoreError> {
        Ok(self.read()?.profiles.get(id).cloned())
    }

    fn golden(&self, id: &ProfileId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.goldens.get(id).cloned())
    }

    fn alias(&self, id: &ProfileId) -> Result<Option<ProfileId>, StoreError> {
        Ok(self.read()?.aliases.get(id).cloned())
    }

    fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        Ok(self.read()?.events.get(event_id).cloned())
    }

    fn events_in_order(&self, after: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let mut out: Vec<(u64, String)> = self
            .read()?
            .events
            .values()
            .filter(|e| e.aged_at.is_none() && e.seq > after)
            .map(|e| (e.seq, e.event_id.clone()))
            .collect();
        out.sort_unstable();
        out.truncate(limit);
        Ok(out)
    }

    fn event_ids_of(&self, key: &IdentKey, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(self
            .read()?
            .event_index
            .get(key)
            .map(|events| events.values().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        Ok(self
            .read()?
            .addresses
            .get(address_key)
            .map(|ids| ids.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn history(&self, id: &ProfileId, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self
            .read()?
            .history
            .get(id)
            .map(|entries| entries.values().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn counters(&self) -> Result<Counters, StoreError> {
        Ok(self.read()?.counters)
    }

    fn goldens_after(
        &self,
        from: Option<&ProfileId>,
        limit: usize,
    ) -> Result<Vec<(ProfileId, Vec<u8>)>, StoreError> {
        let g = self.read()?;
        Ok(after(&g.goldens, from.map(ProfileId::as_str))
            .take(limit)
            .map(|(id, raw)| (id.clone(), raw.clone()))
            .collect())
    }

    fn match_record(&self, key: &IdentKey) -> Result<Option<MatchRecord>, StoreError> {
        Ok(self.read()?.match_records.get(key).cloned())
    }

    fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        Ok(self
            .read()?
            .match_index
            .get(block)
            .map(|keys| keys.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    fn match_records_after(
        &self,
        from: Option<&IdentKey>,
        limit: usize,
    ) -> Result<Vec<(IdentKey, MatchRecord)>, StoreError> {
        let g = self.read()?;
        Ok(after(&g.match_records, from.map(IdentKey::as_str))
            .take(limit)
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect())
    }

    fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self.read()?.suppressed.contains(hash))
    }

    fn changes_after(&self, after: u64, limit: usize) -> Result<Vec<ChangeRecord>, StoreError> {
        Ok(self
            .read()?
            .feed
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn change(&self, seq: u64) -> Result<Option<ChangeRecord>, StoreError> {
        Ok(self.read()?.feed.get(&seq).cloned())
    }

    fn change_seqs_of(&self, subject: &str) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .read()?
            .feed_index
            .get(subject)
            .map(|seqs| seqs.iter().copied().collect())
            .unwrap_or_default())
    }

    fn feed_bounds(&self) -> Result<FeedBounds, StoreError> {
        Ok(self.read()?.feed_bounds)
    }

    fn review_items_after(&self, after: u64, limit: usize) -> Result<Vec<ReviewItem>, StoreError> {
        Ok(self
            .read()?
            .reviews
            .range((Bound::Excluded(after), Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn activation(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read()?.activation.get(key).cloned())
    }

    fn activation_scan(
        &self,
        prefix: &[u8],
        after: &[u8],
        limit: usize,
    ) -> Result<Vec<ActivationRow>, StoreError> {
        let g = self.read()?;
        Ok(g.activation
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| after.is_empty() || k.as_slice() > after)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn review_item(&self, seq: u64) -> Result<Option<ReviewItem>, StoreError> {
        Ok(self.read()?.reviews.get(&seq).cloned())
    }

    fn review_seqs_of(&self, key: &IdentKey) -> Result<Vec<u64>, StoreError> {
        Ok(self
            .read()?
            .review_index
            .get(key)
            .map(|seqs| seqs.iter().copied().collect())
            .unwrap_or_default())
    }

    fn prune_changes(&self, before_ms: i64, max: usize) -> Result<usize, StoreError> {
        let mut g = self.write()?;
        let old: Vec<u64> = g
            .feed
            .values()
            .take(max)
            .take_while(|r| r.at < before_ms)
            .map(|r| r.seq)
            .collect();
        for seq in &old {
            if let Some(record) = g.feed.remove(seq) {
                for subject in record.subjects() {
                    index(&mut g.feed_index, subject, *seq, false);
                }
            }
        }
        if let Some(last) = old.last() {
            g.feed_bounds.pruned_through = g.feed_bounds.pruned_through.max(*last);
        }
        Ok(old.len())
    }

    /// Applies `changes` under one write lock: readers see all of it or none of it.
    fn apply(&self, changes: &Changes) -> Result<(), StoreError> {
        let mut guard = self.write()?;
        apply_to(&mut guard, changes);
        Ok(())
    }
}

/// Applies `changes` to the maps (under the caller's write lock).
fn apply_to(g: &mut Graph, changes: &Changes) {
    for (key, node) in &changes.nodes {
        match node {
            Some(n) => {
                let mut n = n.clone();
                (n.kind, n.value) = (key.kind().to_owned(), key.value().to_owned());
                g.nodes.insert(key.clone(), n)
            }
            None => g.nodes.remove(key),
        };
    }
    for ((a, b), edge) in &changes.edges {
        let pair = edge_pair(a, b);
        let present = edge.is_some();
        index(&mut g.adjacency, pair.0.clone(), pair.1.clone(), present);
        index(&mut g.adjacency, pair.1.clone(), pair.0.clone(), present);
        match edge {
            Some(e) => {
                let mut e = e.clone();
                (e.a, e.b) = pair.clone();
                g.edges.insert(pair, e)
            }
            None => g.edges.remove(&pair),
        };
    }
    for (id, state) in &changes.profiles {
        match state {
            Some(s) => g.profiles.insert(id.clone(), s.clone()),
            None => g.profiles.remove(id),
        };
    }
    for (id, golden) in &changes.goldens {
        match golden {
            Some(raw) => g.goldens.insert(id.clone(), raw.clone()),
            None => g.goldens.remove(id),
        };
    }
    for (absorbed, survivor) in &changes.aliases {
        g.aliases.insert(absorbed.clone(), survivor.clone());
    }
    for (address, id, present) in &changes.address_index {
        index(&mut g.addresses, address.clone(), id.clone(), *present);
    }
    for (key, record) in &changes.match_records {
        match record {
            Some(r) => g.match_records.insert(key.clone(), r.clone()),
            None => g.match_records.remove(key),
        };
    }
    for (block, key, present) in &changes.match_index {
        index(&mut g.match_index, block.clone(), key.clone(), *present);
    }
    for id in &changes.delete_events {
        // A deleted event leaves no identifier's index (like a deleted graph node).
        if let Some(event) = g.events.remove(id) {
            for ident in &event.identifiers {
                if let Some(index) = g.event_index.get_mut(ident) {
                    index.remove(&event.seq);
                    if index.is_empty() {
                        g.event_index.remove(ident);
                    }
                }
            }
        }
    }
    for id in &changes.delete_aliases {
        g.aliases.remove(id);
    }
    for id in &changes.drop_history {
        g.history.remove(id);
    }
    for (hash, present) in &changes.suppression {
        if *present {
            g.suppressed.insert(hash.clone());
        } else {
            g.suppressed.remove(hash);
        }
    }
    for event in &changes.events {
        g.events.insert(event.event_id.clone(), event.clone());
    }
    for key in &changes.drop_event_index {
        g.event_index.remove(key);
    }
    for (key, seq, event_id) in &changes.event_index {
        g.event_index
            .entry(key.clone())
            .or_default()
            .insert(*seq, event_id.clone());
    }
    for entry in &changes.history {
        for id in &entry.profiles {
            g.history
                .entry(id.clone())
                .or_default()
                .insert(entry.seq, entry.clone());
        }
    }
    for subject in &changes.drop_feed_index {
        g.feed_index.remove(subject);
    }
    for record in &changes.feed {
        g.feed.insert(record.seq, record.clone());
    }
    for (subject, seq) in &changes.feed_index {
        index(&mut g.feed_index, subject.clone(), *seq, true);
    }
    for (k, v) in &changes.activation {
        match v {
            Some(v) => g.activation.insert(k.clone(), v.clone()),
            None => g.activation.remove(k),
        };
    }
    for (item, present) in &changes.reviews {
        if *present {
            g.reviews.insert(item.seq, item.clone());
        } else {
            g.reviews.remove(&item.seq);
        }
        for ident in [&item.a, &item.b] {
            index(&mut g.review_index, ident.clone(), item.seq, *present);
        }
    }
    if let Some(counters) = changes.counters {
        g.counters = counters;
    }
}

impl RemoteGraph for MemoryStore {
    fn instance(&self, fresh: &str) -> Result<String, StoreError> {
        let mut g = self.write()?;
        Ok(g.instance.get_or_insert_with(|| fresh.to_owned()).clone())
    }

    fn claim_lease(&self, claim: &Claim) -> Result<Holder, StoreError> {
        let mut g = self.write()?;
        let lease = g.lease.get_or_insert_with(Holder::default);
        if lease.holder == claim.holder || lease.expires_ms < claim.now_ms {
            *lease = Holder {
                holder: claim.holder.clone(),
                label: claim.label.clone(),
                expires_ms: claim.expires_ms,
            };
        }
        Ok(lease.clone())
    }

    fn renew_lease(&self, claim: &Claim) -> Result<bool, StoreError> {
        let mut g = self.write()?;
        Ok(renew(&mut g, claim))
    }

    fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        let mut g = self.write()?;
        if let Some(lease) = g.lease.as_mut().filter(|l| l.holder == holder) {
            lease.expires_ms = 0;
        }
        Ok(())
    }

    fn apply_fenced(&self, changes: &Changes, claim: &Claim) -> Result<(), StoreError> {
        let mut g = self.write()?;
        if !renew(&mut g, claim) {
            return Err(StoreError::Fenced(FENCED.into()));
        }
        apply_to(&mut g, changes);
        Ok(())
    }

    fn identifiers_after(&self, from: &str, limit: usize) -> Result<Vec<Node>, StoreError> {
        let g = self.read()?;
        Ok(after(&g.nodes, (!from.is_empty()).then_some(from))
            .take(limit)
            .map(|(_, n)| n.clone())
            .collect())
    }

    fn aliases_after(
        &self,
        from: &str,
        limit: usize,
    ) -> Result<Vec<(ProfileId, ProfileId)>, StoreError> {
        let g = self.read()?;
        Ok(after(&g.aliases, (!from.is_empty()).then_some(from))
            .take(limit)
            .map(|(a, s)| (a.clone(), s.clone()))
            .collect())
    }
}
