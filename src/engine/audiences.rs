//! Audiences through the engine: definitions checked and stored through the writer, the
//! full evaluation passes (at definition, after a deletion, and the periodic refresh of
//! time-relative audiences) as pages of re-renders through the writer, and the reads the
//! API serves (definitions with counts, members, size history, estimates).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::writer::{Op, OpResult};
use super::{now_ms, Engine, EngineError};
use crate::activation::filter::{self, Vocabulary};
use crate::activation::{self, AudienceCounts, AudienceDef, Compiled, Profile};
use crate::model::{GoldenProfile, ProfileId};

const PAGE: usize = 500;
/// Profiles an estimate evaluates at most.
pub const ESTIMATE_SAMPLE: usize = 10_000;
/// Size-history points kept per audience.
const HISTORY_POINTS: usize = 1000;

/// An audience as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AudienceView {
    #[serde(flatten)]
    pub def: AudienceDef,
    pub status: &'static str,
    #[serde(flatten)]
    pub counts: AudienceCounts,
}

/// A filter's estimated size.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Profiles evaluated (all of them when `exact`).
    pub sampled: u64,
    pub matched: u64,
    pub excluded_no_consent: u64,
    pub profiles: u64,
    /// Estimated members in the whole store.
    pub estimate: u64,
    pub exact: bool,
}

/// What a new audience is.
#[derive(Debug, Clone)]
pub struct NewAudience {
    pub id: String,
    pub description: String,
    pub filter: String,
    pub purpose: String,
    /// Destinations (`[[destinations]]` names) members are delivered to.
    pub destinations: Vec<String>,
    pub created_by: String,
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, EngineError> {
    serde_json::from_slice(bytes).map_err(|e| {
        EngineError::Store(crate::store::StoreError::Corrupt {
            key: what.to_owned(),
            reason: e.to_string(),
        })
    })
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, EngineError> {
    serde_json::to_vec(v).map_err(|e| EngineError::Config(format!("encode: {e}")))
}

impl Engine {
    /// What filters may name in this deployment.
    pub fn audience_vocabulary(&self) -> Vocabulary {
        let s = self.settings();
        Vocabulary {
            kinds: self
                .validator
                .normalizer
                .kinds()
                .map(str::to_owned)
                .collect(),
            sources: crate::ingest::event::BUILTIN_SOURCES
                .iter()
                .map(|s| s.to_string())
                .chain(s.sources.custom.iter().cloned())
                .collect(),
            purposes: s.consent.purposes.iter().cloned().collect(),
            sum_properties: s.audiences.sum_properties.iter().cloned().collect(),
            activity_days: s.audiences.activity_days,
        }
    }

    /// Parses and checks a filter and its purpose (400 with the error's position).
    pub fn compile_filter(&self, text: &str, purpose: &str) -> Result<filter::Expr, EngineError> {
        let vocab = self.audience_vocabulary();
        if !vocab.purposes.contains(purpose) {
            return Err(EngineError::Invalid {
                field: "purpose".into(),
                message: format!(
                    "unknown purpose; configured purposes (consent.purposes): {}",
                    vocab
                        .purposes
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        filter::parse(text, &vocab).map_err(|e| EngineError::InvalidFilter {
            position: e.position,
            message: e.message,
        })
    }

    /// Loads the stored audiences into the writer's registry (at start).
    pub(super) fn load_audiences(&self) -> Result<(), EngineError> {
        let rows = match self.store.activation_scan(b"d\0", b"", usize::MAX) {
            Ok(rows) => rows,
            // A store without activation rows (a graph database's own) has no audiences.
            Err(crate::store::StoreError::Engine(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for (_, bytes) in rows {
            let def: AudienceDef = decode(&bytes, "audience")?;
            match self.compile_filter(&def.filter, &def.purpose) {
                Ok(expr) => self.rules.audiences.insert(Compiled { def, expr }),
                Err(e) => tracing::warn!(
                    audience = %def.id,
                    error = %e,
                    "a stored audience no longer compiles under the current settings; it is not evaluated"
                ),
            }
        }
        Ok(())
    }

    /// The audiences (defined, registered) that name destination `dest`.
    pub fn destination_audiences(&self, dest: &str) -> std::collections::BTreeSet<String> {
        self.rules
            .audiences
            .snapshot()
            .iter()
            .filter(|c| c.def.destinations.iter().any(|d| d == dest))
            .map(|c| c.def.id.clone())
            .collect()
    }

    /// Whether `profile` is a member of `audience` now.
    pub fn is_audience_member(
        &self,
        audience: &str,
        profile: &ProfileId,
    ) -> Result<bool, EngineError> {
        Ok(self
            .store
            .activation(&activation::member_key(audience, profile))?
            .is_some())
    }

    /// The golden profile of the live profile `id` (not following an absorbed id).
    pub fn live_golden(&self, id: &ProfileId) -> Result<Option<GoldenProfile>, EngineError> {
        let Some(raw) = self.store.golden(id)? else {
            return Ok(None);
        };
        let Some((_, json)) = crate::model::codec::split_golden_cache(&raw) else {
            return Ok(None);
        };
        Ok(Some(decode(json, "golden profile")?))
    }

    /// The sequence number past every change record written so far.
    pub fn feed_end(&self) -> Result<u64, EngineError> {
        Ok(crate::model::feed::seq(
            self.store.counters()?.commit_seq,
            crate::model::feed::MAX_GROUP_RECORDS - 1,
        )
        .unwrap_or(u64::MAX))
    }

    /// Checks destination names against `[[destinations]]` (400 naming the unknown or
    /// repeated one).
    fn check_destinations(&self, names: &[String]) -> Result<(), EngineError> {
        let mut seen = std::collections::BTreeSet::new();
        for d in names {
            if !self.settings().destinations.iter().any(|c| &c.name == d) {
                let known: Vec<&str> = self
                    .settings()
                    .destinations
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect();
                return Err(EngineError::Invalid {
                    field: "destinations".into(),
                    message: format!(
                        "unknown destination {d:?}; configured ([[destinations]]): {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                });
            }
            if !seen.insert(d) {
                return Err(EngineError::Invalid {
                    field: "destinations".into(),
                    message: format!("{d:?} is listed twice"),
                });
            }
        }
        Ok(())
    }

    /// Replaces the destinations an audience is delivered to; answers the audience and the
    /// destinations that were added or removed (each must then compare its members again).
    /// Blocking.
    pub fn set_audience_destinations(
        &self,
        id: &str,
        destinations: Vec<String>,
    ) -> Result<(AudienceView, Vec<String>), EngineError> {
        self.check_destinations(&destinations)?;
        let Some(bytes) = self.store.activation(&activation::def_key(id))? else {
            return Err(EngineError::NotFound {
                what: format!("audience {id:?}"),
            });
        };
        let mut def: AudienceDef = decode(&bytes, "audience")?;
        let old: std::collections::BTreeSet<String> = def.destinations.iter().cloned().collect();
        let new: std::collections::BTreeSet<String> = destinations.iter().cloned().collect();
        let changed: Vec<String> = old.symmetric_difference(&new).cloned().collect();
        if !changed.is_empty() {
            def.destinations = destinations;
            self.save_def(&def)?;
        }
        Ok((self.view(def)?, changed))
    }

    /// Writes activation rows (a destination's ledger) through the writer. Blocking.
    pub fn write_activation_rows(
        &self,
        rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), EngineError> {
        self.write_rows(rows)
    }

    fn write_rows(&self, rows: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), EngineError> {
        let mut pause = Duration::from_millis(10);
        loop {
            match self.submit(Op::Activation(rows.clone())) {
                Ok(rx) => {
                    return match rx
                        .blocking_recv()
                        .map_err(|_| EngineError::ShuttingDown)??
                    {
                        OpResult::Written => Ok(()),
                        _ => Err(EngineError::ShuttingDown),
                    }
                }
                Err(EngineError::Overloaded) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Defines an audience: stored, registered, and evaluated over every profile in the
    /// background (`status: building` until done). Blocking.
    /// Answers the audience and whether it was created (`false`: the same definition
    /// existed).
    pub fn define_audience(
        self: &Arc<Self>,
        new: NewAudience,
    ) -> Result<(AudienceView, bool), EngineError> {
        if !activation::valid_id(&new.id) {
            return Err(EngineError::Invalid {
                field: "id".into(),
                message: format!(
                    "1 to {} characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
                    activation::MAX_ID_CHARS
                ),
            });
        }
        if new.description.chars().count() > 500 {
            return Err(EngineError::Invalid {
                field: "description".into(),
                message: "at most 500 characters".into(),
            });
        }
        let expr = self.compile_filter(&new.filter, &new.purpose)?;
        self.check_destinations(&new.destinations)?;
        if let Some(bytes) = self.store.activation(&activation::def_key(&new.id))? {
            let old: AudienceDef = decode(&bytes, "audience")?;
            // The same definition again (a retried request) is the audience as it is.
            if (
                &old.filter,
                &old.purpose,
                &old.description,
                &old.destinations,
            ) == (
                &new.filter,
                &new.purpose,
                &new.description,
                &new.destinations,
            ) {
                return Ok((self.view(old)?, false));
            }
            return Err(EngineError::Conflict {
                code: "audience_exists",
                message: format!(
                    "audience {:?} exists with another definition; delete it first",
                    new.id
                ),
            });
        }
        let max = self.settings().audiences.max_audiences;
        if self.rules.audiences.snapshot().len() >= max {
            return Err(EngineError::Conflict {
                code: "too_many_audiences",
                message: format!("at most {max} audiences (audiences.max_audiences)"),
            });
        }
        let def = AudienceDef {
            id: new.id,
            description: new.description,
            filter: new.filter,
            purpose: new.purpose,
            destinations: new.destinations,
            created_at: now_ms(),
            created_by: new.created_by,
            ready_at: None,
        };
        self.write_rows(vec![
            (activation::def_key(&def.id), Some(encode(&def)?)),
            (
                activation::counts_key(&def.id),
                Some(encode(&AudienceCounts::default())?),
            ),
        ])?;
        self.rules.audiences.insert(Compiled {
            def: def.clone(),
            expr,
        });
        let engine = self.clone();
        let id = def.id.clone();
        std::thread::Builder::new()
            .name("audience".into())
            .spawn(move || {
                if let Err(e) = engine.evaluate_all().and_then(|()| engine.mark_ready(&id)) {
                    tracing::warn!(audience = %id, error = %e, "audience evaluation failed");
                }
            })
            .map_err(|e| EngineError::Config(format!("cannot start the audience thread: {e}")))?;
        Ok((self.audience(&def.id)?, true))
    }

    /// Stores a changed definition and registers it with the filter already compiled.
    fn save_def(&self, def: &AudienceDef) -> Result<(), EngineError> {
        self.write_rows(vec![(activation::def_key(&def.id), Some(encode(def)?))])?;
        if let Some(c) = self
            .rules
            .audiences
            .snapshot()
            .iter()
            .find(|c| c.def.id == def.id)
        {
            self.rules.audiences.insert(Compiled {
                def: def.clone(),
                expr: c.expr.clone(),
            });
        }
        Ok(())
    }

    fn mark_ready(&self, id: &str) -> Result<(), EngineError> {
        let Some(bytes) = self.store.activation(&activation::def_key(id))? else {
            return Ok(());
        };
        let mut def: AudienceDef = decode(&bytes, "audience")?;
        def.ready_at = Some(now_ms());
        // The first size point goes in before the audience reads as ready, so a reader
        // that sees `ready` also sees a size history.
        self.record_size(id)?;
        self.save_def(&def)
    }

    /// Re-renders every profile through the writer (which evaluates every audience).
    pub fn evaluate_all(&self) -> Result<(), EngineError> {
        self.for_each_profile_page(|page| self.rerender(page, false).map(|_| ()))
    }

    /// Deletes an audience: unregistered at once (members leave it as a pass re-renders
    /// every profile, with exit records), its definition and counts removed, then its
    /// remaining rows. Blocking.
    pub fn delete_audience(self: &Arc<Self>, id: &str) -> Result<(), EngineError> {
        if self.store.activation(&activation::def_key(id))?.is_none() {
            return Err(EngineError::NotFound {
                what: format!("audience {id:?}"),
            });
        }
        self.rules.audiences.retire(id);
        self.write_rows(vec![
            (activation::def_key(id), None),
            (activation::counts_key(id), None),
        ])?;
        let engine = self.clone();
        let id = id.to_owned();
        std::thread::Builder::new()
            .name("audience".into())
            .spawn(move || {
                let run = || -> Result<(), EngineError> {
                    engine.evaluate_all()?;
                    engine.rules.audiences.retired(&id);
                    for prefix in [
                        activation::member_prefix(&id),
                        activation::history_prefix(&id),
                    ] {
                        loop {
                            let rows = engine.store.activation_scan(&prefix, b"", 10_000)?;
                            if rows.is_empty() {
                                break;
                            }
                            engine
                                .write_rows(rows.into_iter().map(|(k, _)| (k, None)).collect())?;
                        }
                    }
                    Ok(())
                };
                if let Err(e) = run() {
                    tracing::warn!(audience = %id, error = %e, "audience deletion failed");
                }
            })
            .map_err(|e| EngineError::Config(format!("cannot start the audience thread: {e}")))?;
        Ok(())
    }

    /// One audience with its counts.
    pub fn audience(&self, id: &str) -> Result<AudienceView, EngineError> {
        let Some(bytes) = self.store.activation(&activation::def_key(id))? else {
            return Err(EngineError::NotFound {
                what: format!("audience {id:?}"),
            });
        };
        self.view(decode(&bytes, "audience")?)
    }

    fn view(&self, def: AudienceDef) -> Result<AudienceView, EngineError> {
        let counts = match self.store.activation(&activation::counts_key(&def.id))? {
            Some(b) => decode(&b, "audience counts")?,
            None => AudienceCounts::default(),
        };
        Ok(AudienceView {
            status: if def.ready_at.is_some() {
                "ready"
            } else {
                "building"
            },
            def,
            counts,
        })
    }

    /// Every audience with its counts, by id.
    pub fn audiences(&self) -> Result<Vec<AudienceView>, EngineError> {
        self.store
            .activation_scan(b"d\0", b"", usize::MAX)?
            .into_iter()
            .map(|(_, b)| decode(&b, "audience").and_then(|d| self.view(d)))
            .collect()
    }

    /// Member profile ids after `after`, at most `limit`, in id order.
    pub fn audience_members(
        &self,
        id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ProfileId>, EngineError> {
        self.audience(id)?;
        let prefix = activation::member_prefix(id);
        let after = after
            .map(|a| activation::member_key(id, a))
            .unwrap_or_default();
        Ok(self
            .store
            .activation_scan(&prefix, &after, limit)?
            .into_iter()
            .filter_map(|(k, _)| {
                std::str::from_utf8(k.get(prefix.len()..)?)
                    .ok()
                    .map(ProfileId::from)
            })
            .collect())
    }

    /// The audience's size history: (time ms, size), oldest first.
    pub fn audience_history(&self, id: &str) -> Result<Vec<(i64, u64)>, EngineError> {
        let prefix = activation::history_prefix(id);
        Ok(self
            .store
            .activation_scan(&prefix, b"", HISTORY_POINTS)?
            .into_iter()
            .filter_map(|(k, v)| {
                let at = i64::from_be_bytes(k.get(prefix.len()..)?.try_into().ok()?);
                let counts: AudienceCounts = serde_json::from_slice(&v).ok()?;
                Some((at, counts.size))
            })
            .collect())
    }

    /// Appends a point of the audience's size history (the oldest dropped past the cap).
    pub fn record_size(&self, id: &str) -> Result<(), EngineError> {
        let Some(counts) = self.store.activation(&activation::counts_key(id))? else {
            return Ok(());
        };
        let mut rows = vec![(activation::history_key(id, now_ms()), Some(counts))];
        let prefix = activation::history_prefix(id);
        let old = self.store.activation_scan(&prefix, b"", usize::MAX)?;
        if old.len() >= HISTORY_POINTS {
            let surplus = old.len() + 1 - HISTORY_POINTS;
            rows.extend(old.into_iter().take(surplus).map(|(k, _)| (k, None)));
        }
        self.write_rows(rows)
    }

    /// The periodic pass (from `serve`'s maintenance timer): time-relative audiences
    /// re-evaluated over every profile, and a size-history point for every audience.
    pub fn refresh_audiences(&self) -> Result<(), EngineError> {
        let defined = self.rules.audiences.snapshot();
        if defined.is_empty() {
            return Ok(());
        }
        // An audience still building when the server stopped is finished here.
        let unready: Vec<&str> = defined
            .iter()
            .filter(|c| c.def.ready_at.is_none())
            .map(|c| c.def.id.as_str())
            .collect();
        if defined.iter().any(|c| c.expr.time_relative()) || !unready.is_empty() {
            self.evaluate_all()?;
        }
        for id in unready {
            self.mark_ready(id)?;
        }
        for c in &defined {
            self.record_size(&c.def.id)?;
        }
        Ok(())
    }

    /// A filter's size over a sample of at most [`ESTIMATE_SAMPLE`] profiles, for the
    /// author editing it (nothing is stored).
    pub fn estimate_audience(&self, text: &str, purpose: &str) -> Result<Estimate, EngineError> {
        let expr = self.compile_filter(text, purpose)?;
        let c = Compiled {
            def: AudienceDef {
                id: "estimate".into(),
                description: String::new(),
                filter: text.to_owned(),
                purpose: purpose.to_owned(),
                destinations: Vec::new(),
                created_at: 0,
                created_by: String::new(),
                ready_at: None,
            },
            expr,
        };
        let now = now_ms();
        let (mut sampled, mut matched, mut excluded) = (0u64, 0u64, 0u64);
        let mut after: Option<ProfileId> = None;
        while (sampled as usize) < ESTIMATE_SAMPLE {
            let page = self
                .store
                .goldens_after(after.as_ref(), PAGE.min(ESTIMATE_SAMPLE - sampled as usize))?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            let n = page.len();
            let ids: Vec<ProfileId> = page.iter().map(|(id, _)| id.clone()).collect();
            let states = self.store.profiles(&ids)?;
            for ((_, raw), state) in page.iter().zip(states) {
                let Some(state) = state else { continue };
                let Some((_, json)) = crate::model::codec::split_golden_cache(raw) else {
                    continue;
                };
                let Ok(golden) = serde_json::from_slice::<GoldenProfile>(json) else {
                    continue;
                };
                let household = state.shared_device
                    || state.address_key.is_some() && golden.household_id.is_some();
                let p = Profile {
                    golden: &golden,
                    state: &state,
                    household,
                };
                sampled += 1;
                match activation::standing(&c, &p, now) {
                    Some(true) => matched += 1,
                    Some(false) => excluded += 1,
                    None => {}
                }
            }
            if n < PAGE {
                break;
            }
        }
        let profiles = self.store.counters()?.profiles.max(sampled);
        let exact = sampled >= profiles;
        let estimate = if sampled == 0 {
            0
        } else {
            ((matched as f64) * (profiles as f64) / (sampled as f64)).round() as u64
        };
        Ok(Estimate {
            sampled,
            matched,
            excluded_no_consent: excluded,
            profiles,
            estimate,
            exact,
        })
    }

    /// Golden profiles of `ids` (those still live), as JSON values.
    pub fn goldens_json(&self, ids: &[ProfileId]) -> Result<Vec<Value>, EngineError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.profile(id) {
                Ok(v) => out.push(v),
                Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
