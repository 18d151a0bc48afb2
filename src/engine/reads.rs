//! Reads: blocking calls (from a blocking thread) straight to the store and the search
//! index, from any thread.

use serde_json::{json, Value};

use super::{not_found, parse_golden, Engine, EngineError};
use crate::config::Settings;
use crate::profile::golden;
use crate::profile::household::{household_of, profile_of_household_id, Household};
use crate::profile::views::{self, Device, ExplainError};
use crate::search::SearchRequest;
use crate::store::{HistoryEntry, IdentKey, ProfileId, ProfileState, StoreError};

/// Which review items a page shows.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter {
    /// Items after this queue position.
    pub after: u64,
    pub limit: usize,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Items proposed by an event of this source.
    pub source: Option<String>,
    /// Items touching this profile (either side, now).
    pub profile: Option<String>,
}

impl Engine {
    /// Reads `read` of the live profile `id` names, following aliases of absorbed ids
    /// (bounded, so a corrupt alias cycle cannot spin).
    fn follow_aliases<T>(
        &self,
        id: &str,
        read: impl Fn(&ProfileId) -> Result<Option<T>, EngineError>,
    ) -> Result<T, EngineError> {
        let mut current = ProfileId::from(id);
        for _ in 0..64 {
            if let Some(found) = read(&current)? {
                return Ok(found);
            }
            match self.store.alias(&current)? {
                Some(next) => current = next,
                None => break,
            }
        }
        Err(not_found("profile"))
    }

    /// The live profile for `id`, following aliases of absorbed ids.
    pub fn profile_state(&self, id: &str) -> Result<ProfileState, EngineError> {
        self.follow_aliases(id, |p| Ok(self.store.profile(p)?))
    }

    /// The golden profile of `id` (an absorbed id answers with its survivor).
    pub fn profile(&self, id: &str) -> Result<Value, EngineError> {
        parse_golden(id, &self.profile_bytes(id)?)
    }

    /// The golden profile JSON of `id`, served from the cache without re-encoding when the
    /// profile cannot belong to a household.
    pub fn profile_bytes(&self, id: &str) -> Result<Vec<u8>, EngineError> {
        self.follow_aliases(id, |p| self.golden_bytes(p))
    }

    /// Cached golden JSON of a live profile, with its household id filled in.
    fn golden_bytes(&self, id: &str) -> Result<Option<Vec<u8>>, EngineError> {
        let pid = ProfileId::from(id);
        let Some(raw) = self.store.golden(&pid)? else {
            return Ok(None);
        };
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: id.to_owned(),
            reason: reason.to_owned(),
        };
        let (hint, json) = crate::model::codec::split_golden_cache(&raw)
            .ok_or_else(|| corrupt("empty golden record"))?;
        if hint == golden::ALONE {
            return Ok(Some(json.to_vec()));
        }
        let household = self
            .store
            .profile(&pid)
            .map_err(EngineError::Store)
            .and_then(|state| {
                let state = state.ok_or_else(|| corrupt("golden profile without state"))?;
                self.household_state(&state)
            });
        let hh = match household {
            Ok(hh) => hh,
            // The graph database is down: the cached golden profile is served without its
            // household id rather than not at all.
            Err(EngineError::Store(StoreError::Unavailable(why))) => {
                tracing::warn!(profile_id = id, reason = %why, "household skipped: graph store unavailable");
                return Ok(Some(json.to_vec()));
            }
            Err(e) => return Err(e),
        };
        if hh.members.len() < 2 {
            return Ok(Some(json.to_vec()));
        }
        let mut golden = parse_golden(id, json)?;
        golden["household_id"] = Value::String(hh.household_id);
        Ok(Some(
            serde_json::to_vec(&golden).map_err(|e| corrupt(&e.to_string()))?,
        ))
    }

    /// Searches profiles. Each hit carries its golden profile read from the store, so a
    /// hit is never stale; a profile merged away or deleted since the index's last commit
    /// (at most [`indexer::COMMIT_EVERY`] ago) is left out.
    pub fn search(&self, req: &SearchRequest) -> Result<Value, EngineError> {
        let index = self
            .search
            .as_ref()
            .ok_or_else(|| EngineError::Config("search is not enabled on this engine".into()))?;
        let started = std::time::Instant::now();
        let found = index
            .search(req)
            .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
        let searched = started.elapsed();
        let matcher = index.matcher(req);
        let mut total = found.total;
        let mut hits = Vec::with_capacity(found.hits.len());
        let ids: Vec<ProfileId> = found.hits.iter().map(|h| h.profile_id.clone()).collect();
        let goldens = self.store.goldens(&ids)?;
        let read = started.elapsed();
        for (hit, cached) in found.hits.into_iter().zip(goldens) {
            // The cached golden profile, without the household (computed on read; the
            // profile and household endpoints serve it).
            let Some(cached) = cached else {
                total = total.saturating_sub(1);
                continue;
            };
            let mut profile = parse_golden(&hit.profile_id, cached.get(1..).unwrap_or_default())?;
            if let Some(o) = profile.as_object_mut() {
                o.remove("household_id");
            }
            // Built field by field, as is the answer: `json!` copies every value it is
            // given through `to_value` (the profiles: a tenth of a query's time).
            let matched = matcher.matched(&profile);
            let mut h = serde_json::Map::with_capacity(5);
            h.insert(
                "profile_id".into(),
                Value::String(hit.profile_id.into_string()),
            );
            h.insert("score".into(), Value::from(hit.score));
            h.insert("tier".into(), Value::from(hit.tier.name()));
            h.insert("matched".into(), Value::from(matched));
            h.insert("profile".into(), profile);
            hits.push(Value::Object(h));
        }
        tracing::trace!(
            hits = hits.len(),
            index_us = searched.as_micros() as u64,
            read_us = (read - searched).as_micros() as u64,
            render_us = (started.elapsed() - read).as_micros() as u64,
            "search answered"
        );
        let mut answer = serde_json::Map::with_capacity(6);
        answer.insert("query".into(), Value::from(req.q.as_str()));
        answer.insert("total".into(), Value::from(total));
        answer.insert(
            "total_relation".into(),
            Value::from(if found.total_is_exact { "eq" } else { "gte" }),
        );
        answer.insert("limit".into(), Value::from(req.limit));
        answer.insert("offset".into(), Value::from(req.offset));
        answer.insert("hits".into(), Value::Array(hits));
        Ok(Value::Object(answer))
    }

    /// Rebuilds the search index of the store in `settings.storage.data_dir` (the server
    /// must not be running on it); returns the number of profiles indexed.
    pub fn reindex(settings: &Settings) -> Result<usize, EngineError> {
        let store = Engine::open_store(settings)?;
        let index = Engine::open_search(settings, store.as_ref())?;
        index
            .rebuild_from(store.as_ref())
            .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))
    }

    /// The golden profile holding identifier `kind`/`value` (normalized like ingest).
    pub fn lookup(&self, kind: &str, value: &str) -> Result<Value, EngineError> {
        parse_golden("<golden record>", &self.lookup_bytes(kind, value)?)
    }

    /// Like [`Engine::lookup`], as JSON bytes.
    pub fn lookup_bytes(&self, kind: &str, value: &str) -> Result<Vec<u8>, EngineError> {
        let key = self.normalize("value", kind, value)?;
        self.lookup_key_bytes(&key)
    }

    /// The golden profile JSON holding an already normalized identifier key.
    pub fn lookup_key_bytes(&self, key: &IdentKey) -> Result<Vec<u8>, EngineError> {
        let profile_id = self
            .store
            .profile_of(key)?
            .ok_or_else(|| not_found("identifier"))?;
        self.golden_bytes(&profile_id)?.ok_or_else(|| {
            EngineError::Store(StoreError::Corrupt {
                key: profile_id.to_string(),
                reason: "an identifier points to a profile without a golden record".into(),
            })
        })
    }

    pub fn devices(&self, id: &str) -> Result<(ProfileId, Vec<Device>), EngineError> {
        let state = self.profile_state(id)?;
        Ok((
            state.id.clone(),
            views::devices(self.store.as_ref(), &state)?,
        ))
    }

    fn household_state(&self, state: &ProfileState) -> Result<Household, EngineError> {
        Ok(household_of(
            self.store.as_ref(),
            state,
            self.rules.household_max_members,
        )?)
    }

    pub fn household(&self, id: &str) -> Result<Household, EngineError> {
        let state = self.profile_state(id)?;
        self.household_state(&state)
    }

    /// The household named by `hid` (`hh_<seq>`), now identified by its current oldest member.
    pub fn household_by_id(&self, hid: &str) -> Result<Household, EngineError> {
        let pid = profile_of_household_id(hid).ok_or_else(|| not_found("household"))?;
        // An unknown profile is an unknown household; a store failure stays what it is.
        let state = self.profile_state(&pid).map_err(|e| match e {
            EngineError::NotFound { .. } => not_found("household"),
            other => other,
        })?;
        let hh = self.household_state(&state)?;
        if hh.members.len() < 2 {
            return Err(not_found("household"));
        }
        Ok(hh)
    }

    pub fn graph(&self, id: &str, depth: usize, limit: usize) -> Result<Value, EngineError> {
        let state = self.profile_state(id)?;
        Ok(views::graph(self.store.as_ref(), &state, depth, limit)?)
    }

    pub fn explain(&self, id: &str, a: &IdentKey, b: &IdentKey) -> Result<Value, EngineError> {
        let state = self.profile_state(id)?;
        views::explain(self.store.as_ref(), &state, a, b).map_err(|e| match e {
            ExplainError::NotInProfile(which) => {
                not_found(format!("identifier {which} in this profile"))
            }
            ExplainError::Store(s) => EngineError::Store(s),
        })
    }

    /// Why identifiers `a` and `b` are not in one profile (`resolve::why_not`).
    pub fn why_not(&self, a: &IdentKey, b: &IdentKey) -> Result<Value, EngineError> {
        let store = self.store.as_ref();
        let suppressed = |k: &IdentKey| -> Result<bool, StoreError> {
            match self.rules.suppression_hash(k) {
                Some(hash) => store.is_suppressed(&hash),
                None => Ok(false),
            }
        };
        Ok(crate::resolve::why_not::why_not(
            store,
            self.rules.matcher.as_deref(),
            &suppressed,
            a,
            b,
        )?)
    }

    /// A page of the review queue, oldest first (see [`ReviewFilter`]). Each item shows
    /// both identifiers' current profiles (golden) and whether it is still `open` or
    /// `stale` (an identifier gone, or both already in one profile).
    pub fn review_queue(&self, f: &ReviewFilter) -> Result<Value, EngineError> {
        const SCAN: usize = 10_000;
        let mut items = Vec::new();
        let mut after = f.after;
        let mut scanned = 0;
        let mut more = true;
        while items.len() < f.limit && scanned < SCAN && more {
            let page = self.store.review_items_after(after, 500)?;
            more = page.len() == 500;
            for item in page {
                after = item.seq;
                scanned += 1;
                let p = item.evidence.probability;
                if f.min_score.is_some_and(|m| p < m)
                    || f.max_score.is_some_and(|m| p > m)
                    || f.source.as_ref().is_some_and(|s| *s != item.source)
                {
                    continue;
                }
                let side = |key: &IdentKey| -> Result<Value, EngineError> {
                    let profile = self.store.profile_of(key)?;
                    let golden = match &profile {
                        Some(id) => Some(self.profile(id)?),
                        None => None,
                    };
                    Ok(json!({"identifier": key, "profile_id": profile, "profile": golden}))
                };
                let (a, b) = (side(&item.a)?, side(&item.b)?);
                if f.profile.as_ref().is_some_and(|id| {
                    a["profile_id"] != id.as_str() && b["profile_id"] != id.as_str()
                }) {
                    continue;
                }
                let open = !a["profile_id"].is_null()
                    && !b["profile_id"].is_null()
                    && a["profile_id"] != b["profile_id"];
                items.push(json!({
                    "seq": item.seq,
                    "at": golden::iso(item.at),
                    "status": if open { "open" } else { "stale" },
                    "score": p,
                    "weight": item.evidence.weight,
                    "fields": item.evidence.fields,
                    "event_id": item.event_id,
                    "source": item.source,
                    "a": a,
                    "b": b,
                }));
                if items.len() == f.limit {
                    break;
                }
            }
        }
        let next = (items.len() == f.limit || (more && scanned >= SCAN)).then_some(after);
        Ok(json!({"items": items, "next_after": next}))
    }

    /// Every observed value of each trait of profile `id` with its sources, first and last
    /// seen, count and latest event; which one the golden profile shows (by survivorship or
    /// a steward's pin) and why.
    pub fn values(&self, id: &str) -> Result<Value, EngineError> {
        use crate::profile::golden::iso;
        let st = self.profile_state(id)?;
        let rules = &self.rules;
        let names: std::collections::BTreeSet<&str> = st
            .traits
            .names()
            .chain(st.pins.keys().map(String::as_str))
            .collect();
        let mut traits = Vec::with_capacity(names.len());
        for name in names {
            let strategy = rules.strategy(name);
            let winner = st.traits.winner(name, strategy, &|s| rules.source_rank(s));
            let pin = st.pins.get(name);
            let mut values: Vec<&crate::model::Observation> =
                st.traits.0.get(name).into_iter().flatten().collect();
            values.sort_by_key(|o| std::cmp::Reverse(o.last_seen));
            let values: Vec<Value> = values
                .into_iter()
                .map(|o| {
                    serde_json::json!({
                        "value": o.value,
                        "count": o.count,
                        "sources": o.sources,
                        "first_seen": iso(o.first_seen.unwrap_or(o.last_seen)),
                        "last_seen": iso(o.last_seen),
                        "event_id": o.last_event,
                        "chosen": pin.is_none() && winner.is_some_and(|w| std::ptr::eq(w, o)),
                    })
                })
                .collect();
            traits.push(serde_json::json!({
                "name": name,
                "strategy": strategy,
                "chosen": pin.map(|p| &p.value).or(winner.map(|w| &w.value)),
                "chosen_by": if pin.is_some() { "pin" } else { "survivorship" },
                "winner": winner.filter(|_| pin.is_none()).map(|w| serde_json::json!({
                    "sources": w.sources,
                    "event_id": w.last_event,
                })),
                "pinned": pin.map(|p| serde_json::json!({
                    "value": p.value,
                    "actor": p.actor,
                    "reason": p.reason,
                    "at": iso(p.at),
                })),
                "values": values,
            }));
        }
        Ok(serde_json::json!({"profile_id": st.id, "traits": traits}))
    }

    pub fn history(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<(ProfileId, Vec<HistoryEntry>), EngineError> {
        let live = self.profile_state(id)?;
        Ok((
            live.id.clone(),
            views::history(self.store.as_ref(), &live.id, limit)?,
        ))
    }

    /// Runs `f` with the row-level scope (`governance::scope`) of a key limited to
    /// `sources`; one scope serves a whole answer, remembering what it has looked up.
    pub fn with_row_scope<T>(
        &self,
        sources: &std::collections::BTreeSet<String>,
        f: impl FnOnce(&mut crate::governance::scope::RowScope<'_>) -> Result<T, StoreError>,
    ) -> Result<T, EngineError> {
        let kinds = self.identifier_kinds();
        Ok(f(&mut crate::governance::scope::RowScope::new(
            sources, &kinds, self,
        ))?)
    }
}
