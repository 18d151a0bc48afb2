//! A unit of work over a [`GraphStore`]: reads see the store plus this session's own
//! uncommitted writes, and [`Session::finish`] turns everything into one atomic
//! [`Changes`]. Group commit resolves many events in one session and writes once.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::cell::RefCell;
use std::collections::BTreeSet;

use crate::model::edge_pair;
use crate::store::{
    Changes, Counters, Edge, GraphStore, HistoryEntry, HistoryKind, IdentKey, MatchRecord, Node,
    ProfileId, ProfileState, StoreError, StoredEvent,
};

/// Most events read back per identifier when a profile is rebuilt after a split.
pub const MAX_EVENTS_PER_IDENTIFIER: usize = 100_000;

/// Formats the id of the profile created with sequence number `seq`.
pub fn profile_id(seq: u64) -> ProfileId {
    ProfileId::from_seq(seq)
}

pub struct Session<'s> {
    store: &'s dyn GraphStore,
    ch: Changes,
    counters: Counters,
    /// Endpoints of edges written in this session, for `edges_of`.
    touched_adjacency: HashMap<IdentKey, BTreeSet<IdentKey>>,
    new_events: HashMap<String, usize>,
    dirty: BTreeSet<ProfileId>,
    /// Decoded store reads, so a record read twice in a group is decoded once.
    read_nodes: RefCell<HashMap<IdentKey, Option<Node>>>,
    read_profiles: RefCell<HashMap<ProfileId, Option<ProfileState>>>,
    /// Edges read back from the store (so their reverse adjacency entry exists already).
    stored_edges: RefCell<HashSet<(IdentKey, IdentKey)>>,
    /// Edges read ahead from the store (`prefetch`), absent ones as `None`.
    read_edges: RefCell<HashMap<(IdentKey, IdentKey), Option<Edge>>>,
    /// Events read ahead: which of them the store holds. Ids not in the map are unknown.
    read_events: RefCell<HashMap<String, bool>>,
    /// This session's candidate index rows by blocking key, in order.
    match_rows: HashMap<String, Vec<(IdentKey, bool)>>,
    /// The history sequence number before this session: entries above it are new.
    history_start: u64,
    /// Identifiers an erasure in this session removed.
    erased_identifiers: Vec<IdentKey>,
    pub now: i64,
}

impl<'s> Session<'s> {
    pub fn new(store: &'s dyn GraphStore, now: i64) -> Result<Self, StoreError> {
        let counters = store.counters()?;
        Ok(Session {
            store,
            counters,
            history_start: counters.history_seq,
            erased_identifiers: Vec::new(),
            ch: Changes::default(),
            touched_adjacency: HashMap::default(),
            new_events: HashMap::default(),
            dirty: BTreeSet::new(),
            read_nodes: RefCell::new(HashMap::default()),
            read_profiles: RefCell::new(HashMap::default()),
            stored_edges: RefCell::new(HashSet::default()),
            read_edges: RefCell::new(HashMap::default()),
            read_events: RefCell::new(HashMap::default()),
            match_rows: HashMap::default(),
            now,
        })
    }

    pub fn store(&self) -> &'s dyn GraphStore {
        self.store
    }

    // ---- nodes ----

    pub fn node(&self, key: &str) -> Result<Option<Node>, StoreError> {
        if let Some(n) = self.ch.nodes.get(key) {
            return Ok(n.clone());
        }
        if let Some(n) = self.read_nodes.borrow().get(key) {
            return Ok(n.clone());
        }
        let n = self.store.node(&IdentKey::from(key))?;
        self.read_nodes
            .borrow_mut()
            .insert(IdentKey::from(key), n.clone());
        Ok(n)
    }

    /// Reads the nodes of `keys` not known yet in one store call (a round trip for remote
    /// stores), so the resolution that follows finds them in the session. Worth it only
    /// where the store `prefers_batched_reads`; callers decide.
    pub fn prefetch_nodes(&self, keys: &[IdentKey]) -> Result<(), StoreError> {
        let missing: Vec<IdentKey> = {
            let read = self.read_nodes.borrow();
            let mut seen = HashSet::default();
            keys.iter()
                .filter(|k| !self.ch.nodes.contains_key(*k) && !read.contains_key(*k))
                .filter(|k| seen.insert(*k))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let found = self.store.nodes(&missing)?;
        let mut read = self.read_nodes.borrow_mut();
        for (key, node) in missing.into_iter().zip(found) {
            read.insert(key, node);
        }
        Ok(())
    }

    pub fn put_node(&mut self, node: Node) {
        self.ch.nodes.insert(node.key(), Some(node));
    }

    pub fn delete_node(&mut self, key: &str) {
        self.ch.nodes.insert(IdentKey::from(key), None);
    }

    // ---- edges ----

    pub fn edge(&self, a: &str, b: &str) -> Result<Option<Edge>, StoreError> {
        let pair = edge_pair(a, b);
        match self.ch.edges.get(&pair) {
            Some(e) => Ok(e.clone()),
            None => {
                let read = self.read_edges.borrow().get(&pair).cloned();
                let e = match read {
                    Some(e) => e,
                    None => self.store.edge(&pair.0, &pair.1)?,
                };
                if e.is_some() {
                    self.stored_edges.borrow_mut().insert(pair);
                }
                Ok(e)
            }
        }
    }

    pub fn put_edge(&mut self, edge: Edge) {
        let pair = edge_pair(&edge.a, &edge.b);
        self.touch(&pair);
        self.ch.edges.insert(pair, Some(edge));
    }

    pub fn delete_edge(&mut self, a: &str, b: &str) {
        let pair = edge_pair(a, b);
        self.touch(&pair);
        self.stored_edges.borrow_mut().remove(&pair);
        self.ch.edges.insert(pair, None);
    }

    fn touch(&mut self, pair: &(IdentKey, IdentKey)) {
        self.touched_adjacency
            .entry(pair.0.clone())
            .or_default()
            .insert(pair.1.clone());
        self.touched_adjacency
            .entry(pair.1.clone())
            .or_default()
            .insert(pair.0.clone());
    }

    /// Every edge incident to `key`, this session's writes included.
    pub fn edges_of(&self, key: &str) -> Result<Vec<Edge>, StoreError> {
        let mut out: Vec<Edge> = self
            .store
            .edges_of(&IdentKey::from(key), usize::MAX)?
            .into_iter()
            .filter(|e| {
                !self
                    .touched_adjacency
                    .get(key)
                    .is_some_and(|t| t.contains(e.other(key)))
            })
            .collect();
        if let Some(touched) = self.touched_adjacency.get(key) {
            for other in touched {
                if let Some(Some(e)) = self.ch.edges.get(&edge_pair(key, other)) {
                    out.push(e.clone());
                }
            }
        }
        Ok(out)
    }

    // ---- profiles ----

    pub fn profile(&self, id: &str) -> Result<Option<ProfileState>, StoreError> {
        if let Some(p) = self.ch.profiles.get(id) {
            return Ok(p.clone());
        }
        if let Some(p) = self.read_profiles.borrow().get(id) {
            return Ok(p.clone());
        }
        let p = self.store.profile(&ProfileId::from(id))?;
        self.read_profiles
            .borrow_mut()
            .insert(ProfileId::from(id), p.clone());
        Ok(p)
    }

    /// The profile as the store holds it, before this session's changes.
    pub fn stored_profile(&self, id: &str) -> Result<Option<ProfileState>, StoreError> {
        if let Some(p) = self.read_profiles.borrow().get(id) {
            return Ok(p.clone());
        }
        self.store.profile(&ProfileId::from(id))
    }

    /// The profile a node points to; a missing one means the store is inconsistent.
    pub fn existing_profile(&self, id: &str) -> Result<ProfileState, StoreError> {
        self.profile(id)?.ok_or_else(|| StoreError::Corrupt {
            key: id.to_owned(),
            reason: "an identifier points to a profile that does not exist".into(),
        })
    }

    pub fn put_profile(&mut self, state: ProfileState) {
        self.dirty.insert(state.id.clone());
        self.ch.profiles.insert(state.id.clone(), Some(state));
    }

    pub fn delete_profile(&mut self, id: &str) -> Result<(), StoreError> {
        if let Some(old) = self.profile(id)? {
            if let Some(addr) = old.address_key {
                self.ch
                    .address_index
                    .push((addr, ProfileId::from(id), false));
            }
        }
        self.dirty.remove(id);
        self.ch.profiles.insert(ProfileId::from(id), None);
        self.ch.goldens.insert(ProfileId::from(id), None);
        Ok(())
    }

    pub fn new_profile(&mut self, at: i64) -> ProfileState {
        self.counters.profile_seq += 1;
        let seq = self.counters.profile_seq;
        ProfileState::new(profile_id(seq), seq, at)
    }

    pub fn set_alias(&mut self, absorbed: &str, survivor: &str) {
        self.ch
            .aliases
            .insert(ProfileId::from(absorbed), ProfileId::from(survivor));
    }

    pub fn mark_dirty(&mut self, id: &str) {
        self.dirty.insert(ProfileId::from(id));
    }

    // ---- events ----

    pub fn event_exists(&self, event_id: &str) -> Result<bool, StoreError> {
        if self.new_events.contains_key(event_id) {
            return Ok(true);
        }
        if let Some(stored) = self.read_events.borrow().get(event_id) {
            return Ok(*stored);
        }
        Ok(self.store.event(event_id)?.is_some())
    }

    /// Reads ahead, in a few store calls (one round trip each on a remote store), what
    /// resolving a group of events will ask for: which events are stored already, the nodes
    /// of their identifiers, the profiles those belong to, and the edges between the
    /// identifiers of each event.
    pub fn prefetch(
        &self,
        event_ids: &[String],
        identifier_sets: &[Vec<IdentKey>],
    ) -> Result<(), StoreError> {
        let unknown: Vec<String> = {
            let read = self.read_events.borrow();
            event_ids
                .iter()
                .filter(|id| !self.new_events.contains_key(*id) && !read.contains_key(*id))
                .cloned()
                .collect()
        };
        if !unknown.is_empty() {
            let stored = self.store.stored_events(&unknown)?;
            let mut read = self.read_events.borrow_mut();
            for id in unknown {
                let present = stored.contains(&id);
                read.insert(id, present);
            }
        }
        let keys: Vec<IdentKey> = identifier_sets.iter().flatten().cloned().collect();
        self.prefetch_nodes(&keys)?;
        let profile_ids: Vec<ProfileId> = {
            let read = self.read_nodes.borrow();
            let profiles = self.read_profiles.borrow();
            let mut seen = HashSet::default();
            keys.iter()
                .filter_map(|k| read.get(k).and_then(|n| n.as_ref()))
                .map(|n| n.profile_id.clone())
                .filter(|id| !profiles.contains_key(id) && !self.ch.profiles.contains_key(id))
                .filter(|id| seen.insert(id.clone()))
                .collect()
        };
        if !profile_ids.is_empty() {
            let found = self.store.profiles(&profile_ids)?;
            let mut profiles = self.read_profiles.borrow_mut();
            for (id, p) in profile_ids.into_iter().zip(found) {
                profiles.insert(id, p);
            }
        }
        let pairs: Vec<(IdentKey, IdentKey)> = {
            let read = self.read_edges.borrow();
            let mut seen = HashSet::default();
            identifier_sets
                .iter()
                .flat_map(|set| {
                    set.iter()
                        .enumerate()
                        .flat_map(move |(i, a)| set[i + 1..].iter().map(move |b| edge_pair(a, b)))
                })
                .filter(|p| !self.ch.edges.contains_key(p) && !read.contains_key(p))
                .filter(|p| seen.insert(p.clone()))
                .collect()
        };
        if !pairs.is_empty() {
            let found = self.store.edges(&pairs)?;
            let mut read = self.read_edges.borrow_mut();
            for (pair, e) in pairs.into_iter().zip(found) {
                read.insert(pair, e);
            }
        }
        Ok(())
    }

    pub fn event(&self, event_id: &str) -> Result<Option<StoredEvent>, StoreError> {
        if self.ch.delete_events.iter().any(|e| e == event_id) {
            return Ok(None);
        }
        match self.new_events.get(event_id) {
            Some(i) => Ok(self.ch.events.get(*i).cloned()),
            None => self.store.event(event_id),
        }
    }

    pub fn next_event_seq(&mut self) -> u64 {
        self.counters.event_seq += 1;
        self.counters.event_seq
    }

    pub fn put_event(&mut self, event: StoredEvent) {
        for key in &event.identifiers {
            self.ch
                .event_index
                .push((key.clone(), event.seq, event.event_id.clone()));
        }
        self.new_events
            .insert(event.event_id.clone(), self.ch.events.len());
        self.ch.events.push(event);
    }

    /// Rewrites a stored event as aged (no payload, see `resolve::retention`): its index
    /// rows stay, so it is written without them.
    pub fn put_aged_event(&mut self, event: StoredEvent) {
        self.new_events
            .insert(event.event_id.clone(), self.ch.events.len());
        self.ch.events.push(event);
    }

    /// Ids of the events that carried `key` (stored and new in this session).
    pub fn event_ids_of(&self, key: &str) -> Result<Vec<String>, StoreError> {
        let mut ids = if self.ch.drop_event_index.iter().any(|k| k == key) {
            Vec::new()
        } else {
            self.store
                .event_ids_of(&IdentKey::from(key), MAX_EVENTS_PER_IDENTIFIER)?
        };
        // A deleted event leaves every index (the store's contract).
        ids.retain(|id| !self.ch.delete_events.contains(id));
        ids.extend(
            self.ch
                .event_index
                .iter()
                .filter(|(k, _, _)| k == key)
                .map(|(_, _, id)| id.clone()),
        );
        Ok(ids)
    }

    pub fn drop_event_index(&mut self, key: &str) {
        self.ch.event_index.retain(|(k, _, _)| k != key);
        self.ch.drop_event_index.push(IdentKey::from(key));
    }

    // ---- erasure and suppression ----

    /// Deletes a stored event, or one written earlier in this session (which would
    /// otherwise be written after the deletion and outlive an erasure).
    pub fn delete_event(&mut self, event_id: &str) {
        if let Some(i) = self.new_events.remove(event_id) {
            self.ch.events.remove(i);
            for at in self.new_events.values_mut() {
                if *at > i {
                    *at -= 1;
                }
            }
        }
        self.ch.delete_events.push(event_id.to_owned());
    }

    pub fn delete_alias(&mut self, id: &str) {
        self.ch.aliases.remove(id);
        self.ch.delete_aliases.push(ProfileId::from(id));
    }

    /// Deletes every history entry stored under `id` (entries written in this session
    /// afterwards are kept).
    pub fn drop_history(&mut self, id: &str) {
        self.ch
            .history
            .retain(|h| !h.profiles.iter().any(|p| p == id));
        self.ch.drop_history.push(ProfileId::from(id));
    }

    /// History entries recorded under `id`: the stored ones and this session's (a
    /// session's copy of an entry replaces the stored one with the same sequence number).
    pub fn history(&self, id: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut by_seq: std::collections::BTreeMap<u64, HistoryEntry> = self
            .store
            .history(&ProfileId::from(id), limit)?
            .into_iter()
            .map(|e| (e.seq, e))
            .collect();
        for e in self
            .ch
            .history
            .iter()
            .filter(|e| e.profiles.iter().any(|p| p == id))
        {
            by_seq.insert(e.seq, e.clone());
        }
        Ok(by_seq.into_values().take(limit).collect())
    }

    /// Re-writes a stored history entry (same sequence number) under its `profiles`.
    pub fn rewrite_history(&mut self, entry: HistoryEntry) {
        self.ch.history.push(entry);
    }

    pub fn suppressed_count(&self) -> u64 {
        self.counters.suppressed
    }

    pub fn is_suppressed(&self, hash: &str) -> Result<bool, StoreError> {
        match self.ch.suppression.iter().rev().find(|(h, _)| h == hash) {
            Some((_, present)) => Ok(*present),
            None => self.store.is_suppressed(hash),
        }
    }

    /// Adds a keyed hash to (or removes it from) the suppression list.
    pub fn set_suppressed(&mut self, hash: &str, present: bool) -> Result<bool, StoreError> {
        if self.is_suppressed(hash)? == present {
            return Ok(false);
        }
        if present {
            self.counters.suppressed += 1;
        } else {
            self.counters.suppressed = self.counters.suppressed.saturating_sub(1);
        }
        self.ch.suppression.push((hash.to_owned(), present));
        Ok(true)
    }

    // ---- probabilistic matching ----

    // ---- review queue ----

    /// The review item at queue position `seq`, as this session left it.
    pub fn review_item(&self, seq: u64) -> Result<Option<crate::model::ReviewItem>, StoreError> {
        match self.ch.reviews.iter().rev().find(|(r, _)| r.seq == seq) {
            Some((item, present)) => Ok(present.then(|| item.clone())),
            None => self.store.review_item(seq),
        }
    }

    /// The review items naming identifier `key`.
    pub fn review_items_of(&self, key: &str) -> Result<Vec<crate::model::ReviewItem>, StoreError> {
        let mut seqs: BTreeSet<u64> = self
            .store
            .review_seqs_of(&IdentKey::from(key))?
            .into_iter()
            .collect();
        for (item, _) in &self.ch.reviews {
            if item.a == key || item.b == key {
                seqs.insert(item.seq);
            }
        }
        let mut out = Vec::new();
        for seq in seqs {
            if let Some(item) = self.review_item(seq)? {
                out.push(item);
            }
        }
        Ok(out)
    }

    /// The next queue position (shared with history entries: one ordering of decisions).
    pub fn next_review_seq(&mut self) -> u64 {
        self.counters.history_seq += 1;
        self.counters.history_seq
    }

    /// Writes (`true`) or deletes a review item.
    pub fn put_review(&mut self, item: crate::model::ReviewItem, present: bool) {
        self.ch.reviews.push((item, present));
    }

    pub fn match_record(&self, key: &str) -> Result<Option<MatchRecord>, StoreError> {
        match self.ch.match_records.get(key) {
            Some(r) => Ok(r.clone()),
            None => self.store.match_record(&IdentKey::from(key)),
        }
    }

    /// Sets (or with `None` removes) the match record of `key` and moves its entries in the
    /// candidate index to the record's blocking keys.
    pub fn put_match_record(
        &mut self,
        key: &str,
        record: Option<MatchRecord>,
    ) -> Result<(), StoreError> {
        let existing = self.match_record(key)?;
        if record.is_none() && existing.is_none() {
            return Ok(());
        }
        let old = existing.map(|r| r.keys).unwrap_or_default();
        let new = record.as_ref().map(|r| r.keys.clone()).unwrap_or_default();
        let mut rows: Vec<(String, bool)> = old
            .iter()
            .filter(|k| !new.contains(k))
            .map(|k| (k.clone(), false))
            .collect();
        rows.extend(
            new.iter()
                .filter(|k| !old.contains(k))
                .map(|k| (k.clone(), true)),
        );
        for (block, present) in rows {
            self.match_rows
                .entry(block.clone())
                .or_default()
                .push((IdentKey::from(key), present));
            self.ch
                .match_index
                .push((block, IdentKey::from(key), present));
        }
        self.ch.match_records.insert(IdentKey::from(key), record);
        Ok(())
    }

    /// Identifiers indexed under a blocking key, this session's changes included.
    pub fn match_candidates(&self, block: &str, limit: usize) -> Result<Vec<IdentKey>, StoreError> {
        let rows = self.match_rows.get(block).map(Vec::as_slice).unwrap_or(&[]);
        let base = self
            .store
            .match_candidates(block, limit.saturating_add(rows.len()))?;
        Ok(crate::store::layered::overlay(
            base,
            rows.iter().map(|(k, p)| (k, *p)),
            limit,
        ))
    }

    // ---- history ----

    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        kind: HistoryKind,
        profiles: Vec<ProfileId>,
        survivor: Option<ProfileId>,
        absorbed: Vec<ProfileId>,
        event_id: Option<String>,
        rule: String,
        identifiers: Vec<IdentKey>,
        detail: Option<String>,
    ) {
        self.counters.history_seq += 1;
        self.ch.history.push(HistoryEntry {
            seq: self.counters.history_seq,
            at: self.now,
            kind,
            profiles,
            survivor,
            absorbed,
            event_id,
            rule,
            identifiers,
            detail,
            steward: None,
        });
    }

    /// The sequence number the next history entry will get (steward actions name their
    /// provenance after it).
    pub fn next_history_seq(&self) -> u64 {
        self.counters.history_seq + 1
    }

    /// Marks the entries recorded in this session from sequence `from` on as a steward's.
    pub fn note_steward(&mut self, from: u64, note: &crate::model::StewardNote) {
        for e in self.ch.history.iter_mut().filter(|e| e.seq >= from) {
            e.steward = Some(note.clone());
        }
    }

    /// History entries recorded in this session (not the stored ones it re-wrote).
    pub fn new_history(&self) -> impl Iterator<Item = &HistoryEntry> {
        self.ch
            .history
            .iter()
            .filter(move |e| e.seq > self.history_start)
    }

    // ---- change feed ----

    /// Notes identifiers an erasure removed (their feed records lose their values).
    pub fn note_erased_identifiers(&mut self, keys: &[IdentKey]) {
        self.erased_identifiers.extend_from_slice(keys);
    }

    pub fn erased_identifiers(&self) -> &[IdentKey] {
        &self.erased_identifiers
    }

    /// The `commit_seq` this session's group will be written with.
    pub fn commit_seq(&self) -> u64 {
        self.counters.commit_seq + 1
    }

    /// Writes a feed record (by its sequence number), indexed under its subjects when
    /// `index` is set.
    pub fn push_change(&mut self, record: crate::model::ChangeRecord, index: bool) {
        if index {
            for subject in record.subjects() {
                self.ch.feed_index.push((subject, record.seq));
            }
        }
        self.ch.feed.push(record);
    }

    /// Drops every feed index row of `subject`.
    pub fn drop_change_index(&mut self, subject: String) {
        self.ch.feed_index.retain(|(s, _)| *s != subject);
        self.ch.drop_feed_index.push(subject);
    }

    // ---- activation rows ----

    /// The activation row under `key`, as this session left it.
    pub fn activation(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.ch.activation.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.store.activation(key),
        }
    }

    /// Writes (`Some`) or deletes an activation row.
    pub fn put_activation(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.ch.activation.insert(key, value);
    }

    /// Profiles this session deleted (absorbed by a merge, erased, replaced by a split).
    pub fn deleted_profiles(&self) -> Vec<ProfileId> {
        self.ch
            .profiles
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    // ---- finishing ----

    /// Profiles whose golden copy must be re-rendered before commit.
    pub fn take_dirty(&mut self) -> BTreeSet<ProfileId> {
        std::mem::take(&mut self.dirty)
    }

    pub fn put_golden(&mut self, id: &str, json: Vec<u8>) {
        self.ch.goldens.insert(ProfileId::from(id), Some(json));
    }

    /// The cached golden profile of `id` (hint byte + JSON), this session's copy first.
    pub fn golden(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.ch.goldens.get(id) {
            Some(pending) => Ok(pending.clone()),
            None => self.store.golden(&ProfileId::from(id)),
        }
    }

    /// Profiles registered under `address_key`, this session's changes included, at
    /// most `limit`.
    pub fn profiles_at_address(
        &self,
        address_key: &str,
        limit: usize,
    ) -> Result<Vec<ProfileId>, StoreError> {
        crate::store::layered::at_address_over(
            self.store,
            &self.ch.address_index,
            address_key,
            limit,
        )
    }

    pub fn set_address(&mut self, state: &mut ProfileState, key: Option<String>) {
        if state.address_key == key {
            return;
        }
        if let Some(old) = state.address_key.take() {
            self.ch.address_index.push((old, state.id.clone(), false));
        }
        if let Some(new) = &key {
            self.ch
                .address_index
                .push((new.clone(), state.id.clone(), true));
        }
        state.address_key = key;
    }

    /// Stores a profile without marking it dirty (used while rendering).
    pub fn put_profile_clean(&mut self, state: ProfileState) {
        self.ch.profiles.insert(state.id.clone(), Some(state));
    }

    /// Brings the live counts of profiles and identifiers up to date with what this
    /// session writes (what existed before is the store's value, read by the session or
    /// now), where the store keeps them.
    pub fn count_live(&mut self) -> Result<(), StoreError> {
        if !self.counters.live_counted {
            return Ok(());
        }
        let (mut profiles, mut identifiers) = (0i64, 0i64);
        for (key, after) in &self.ch.nodes {
            let cached = self.read_nodes.borrow().get(key).map(Option::is_some);
            let before = match cached {
                Some(b) => b,
                None => self.store.node(key)?.is_some(),
            };
            identifiers += i64::from(after.is_some()) - i64::from(before);
        }
        for (id, after) in &self.ch.profiles {
            let cached = self.read_profiles.borrow().get(id).map(Option::is_some);
            let before = match cached {
                Some(b) => b,
                None => self.store.profile(id)?.is_some(),
            };
            profiles += i64::from(after.is_some()) - i64::from(before);
        }
        let apply = |n: u64, d: i64| n.saturating_add_signed(d);
        self.counters.profiles = apply(self.counters.profiles, profiles);
        self.counters.identifiers = apply(self.counters.identifiers, identifiers);
        Ok(())
    }

    pub fn into_changes(mut self) -> Changes {
        self.counters.commit_seq += 1;
        self.ch.counters = Some(self.counters);
        let stored = self.stored_edges.into_inner();
        self.ch.stored_edges = stored
            .into_iter()
            .filter(|pair| matches!(self.ch.edges.get(pair), Some(Some(_))))
            .collect();
        self.ch
    }
}
