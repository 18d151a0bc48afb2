//! Real-time probabilistic matching inside the resolver: after an event is resolved by its
//! identifiers, its person traits (names, birth date, address, email) are compared with the
//! records of other profiles that share a blocking key, and a match above the threshold
//! becomes a **probable edge** that merges the two profiles.
//!
//! - **Records.** The attributes last seen with an event's anchor identifier (its
//!   highest-priority identifier) are its [`MatchRecord`], indexed under its blocking keys
//!   (`matching::blocking`, tight and wide keys). A key already shared by more than
//!   `max_block` records is neither searched nor extended: it says too little.
//! - **Scoring.** Each candidate is scored with the Fellegi-Sunter model (`matching::model`);
//!   at most `max_candidates` are compared per event, those sharing the most keys first.
//! - **Deterministic rules win.** A probable link never joins two profiles holding
//!   different values of an exclusive kind (`customer_id` by default) nor breaks a per-kind
//!   limit: it is kept as a refused edge with the rule and the evidence, and recorded as a
//!   conflict. A link an operator deleted (kept as a refused edge) is never re-created.
//! - **Guard against chaining.** Two profiles join only if their records match *as
//!   clusters*: the mean probability over up to [`GUARD_SAMPLE`] records of each must reach
//!   `guard`, not just the one pair. One record resembling two people cannot glue their
//!   profiles together, and a town of look-alikes does not collapse into one profile.
//! - **Explainable, reversible.** The edge carries the probability, the weight and each
//!   field's contribution; the merge is a history entry with rule `probable_match`. Deleting
//!   the edge splits the profile like any other link.

/// The rule name of a merge decided by the matcher (history, explain, the change feed).
pub const RULE: &str = "probable_match";
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::{link, merge_into, Rules, Session};
use crate::config::MatchingSettings;
use crate::ingest::event::NormalizedEvent;
use crate::matching::batch::traits_attributes;
use crate::matching::blocking;
use crate::matching::compare::{compare_all, Attributes};
use crate::matching::frequency::Frequencies;
use crate::matching::model::{Model, ModelFile};
use crate::model::{FieldContribution, ProbableLink};
use crate::store::{
    EdgeStatus, HistoryKind, IdentKey, MatchRecord, ProfileId, ProfileState, StoreError,
};

/// Records of each profile compared by the guard.
pub const GUARD_SAMPLE: usize = 8;
/// A record needs this many present fields to be matched at all.
pub const MIN_FIELDS: usize = 2;

/// Whether a pair may merge on its score: when either record holds nothing but names, some
/// other field must be present on both and speak for the match. A name-only record is
/// kept, but names alone, however rare, never merge it in real time: it waits for stronger
/// evidence, and a high-scoring pair goes to the review queue instead.
pub fn corroborated(a: &Attributes, b: &Attributes, evidence: &ProbableLink) -> bool {
    let names_only = |r: &Attributes| {
        r.present() == usize::from(r.first_name.is_some()) + usize::from(r.last_name.is_some())
    };
    if !names_only(a) && !names_only(b) {
        return true;
    }
    evidence
        .fields
        .iter()
        .any(|f| f.field != "first_name" && f.field != "last_name" && f.weight > 0.0)
}

/// Running totals of what matching did (reported by `/metrics` and `idgraph eval`).
#[derive(Debug, Default)]
pub struct MatchCounters {
    pub records: AtomicU64,
    pub compared: AtomicU64,
    pub merged: AtomicU64,
    pub refused: AtomicU64,
    pub guarded: AtomicU64,
    pub queued_for_review: AtomicU64,
    /// Candidate scores compared, in twenty buckets of 0.05.
    pub scores: [AtomicU64; 20],
}

/// A snapshot of [`MatchCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MatchTotals {
    /// Events whose records were matched.
    pub records: u64,
    /// Candidate records compared.
    pub compared: u64,
    /// Probable links that merged two profiles.
    pub merged: u64,
    /// Probable links refused by a deterministic rule.
    pub refused: u64,
    /// Probable links the cluster guard stopped.
    pub guarded: u64,
    /// Candidate pairs scoring between `review_threshold` and `threshold`, queued for review.
    pub queued_for_review: u64,
}

impl MatchCounters {
    /// The score histogram: counts of candidate scores in `[i/20, (i+1)/20)`.
    pub fn score_histogram(&self) -> Vec<u64> {
        self.scores
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub fn totals(&self) -> MatchTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MatchTotals {
            records: get(&self.records),
            compared: get(&self.compared),
            merged: get(&self.merged),
            refused: get(&self.refused),
            guarded: get(&self.guarded),
            queued_for_review: get(&self.queued_for_review),
        }
    }
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// The compiled matching settings and model.
#[derive(Debug)]
pub struct Matcher {
    pub model: Model,
    /// Where the model came from (a file, or the built-in conservative model).
    pub model_source: String,
    threshold: f64,
    review_threshold: f64,
    guard: f64,
    disabled_sources: HashSet<String>,
    max_block: usize,
    max_candidates: usize,
    max_merges: usize,
    exclusive_kinds: Vec<String>,
    blocking_keys: HashSet<String>,
    /// How common each value of the term-frequency adjusted fields is among the records.
    pub frequencies: Frequencies,
    pub counters: MatchCounters,
    /// Hashes of blocking keys found shared by more than `max_block` records: they are
    /// skipped without reading the index again. Blocks only grow on ingest, so the set is
    /// exact until records are deleted (then a key may stay skipped until restart).
    saturated: Mutex<HashSet<u64>>,
}

/// At most this many saturated keys are remembered (8 bytes each).
const SATURATED_MEMORY: usize = 4_000_000;

fn key_hash(key: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(key)
}

impl Matcher {
    /// `(threshold, review_threshold)`.
    pub fn thresholds(&self) -> (f64, f64) {
        (self.threshold, self.review_threshold)
    }

    /// Validates the settings and loads the model (from its file when there is one).
    pub fn from_settings(m: &MatchingSettings, data_dir: &Path) -> Result<Matcher, String> {
        if !(m.threshold > 0.0 && m.threshold <= 1.0) {
            return Err("matching.threshold must be in (0, 1]".into());
        }
        if !(m.review_threshold > 0.0 && m.review_threshold <= m.threshold) {
            return Err("matching.review_threshold must be in (0, matching.threshold]".into());
        }
        if !(0.0..=1.0).contains(&m.guard) {
            return Err("matching.guard must be in [0, 1]".into());
        }
        for (name, v) in [
            ("max_block", m.max_block),
            ("max_candidates", m.max_candidates),
            ("max_merges_per_event", m.max_merges_per_event),
        ] {
            if v == 0 {
                return Err(format!("matching.{name} must be at least 1"));
            }
        }
        if m.blocking_keys.is_empty() {
            return Err("matching.blocking_keys: at least one key is needed".into());
        }
        for k in &m.blocking_keys {
            if !blocking::KEY_NAMES.contains(&k.as_str()) {
                return Err(format!(
                    "matching.blocking_keys: unknown key {k:?}; known keys: {}",
                    blocking::KEY_NAMES.join(", ")
                ));
            }
        }
        let tf_fields = m.tf_fields()?;
        let path = m.model_path(data_dir);
        let (model, model_source) = match std::fs::read(&path) {
            Ok(bytes) => {
                let file = ModelFile::from_slice(&bytes)
                    .map_err(|e| format!("matching model {}: {e}", path.display()))?;
                (file.model, path.display().to_string())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && m.model.is_none() => {
                (Model::conservative(), "built-in conservative model".into())
            }
            Err(e) => return Err(format!("matching model {}: {e}", path.display())),
        };
        Ok(Matcher {
            model,
            model_source,
            threshold: m.threshold,
            review_threshold: m.review_threshold,
            guard: m.guard,
            disabled_sources: m.disabled_sources.iter().cloned().collect(),
            max_block: m.max_block,
            max_candidates: m.max_candidates,
            max_merges: m.max_merges_per_event,
            exclusive_kinds: m.exclusive_kinds.clone(),
            blocking_keys: m.blocking_keys.iter().cloned().collect(),
            frequencies: Frequencies::new(&tf_fields),
            counters: MatchCounters::default(),
            saturated: Mutex::new(HashSet::new()),
        })
    }

    fn is_saturated(&self, hash: u64) -> bool {
        self.saturated.lock().is_ok_and(|s| s.contains(&hash))
    }

    fn remember_saturated(&self, hash: u64) {
        if let Ok(mut s) = self.saturated.lock() {
            if s.len() < SATURATED_MEMORY {
                s.insert(hash);
            }
        }
    }

    pub fn applies_to(&self, source: &str) -> bool {
        !self.disabled_sources.contains(source)
    }

    /// The blocking keys of a record that this configuration searches.
    pub fn usable_keys(&self, a: &Attributes) -> Vec<String> {
        let mut keys = blocking::keys(a);
        keys.extend(blocking::wide_keys(a));
        keys.retain(|k| self.blocking_keys.contains(blocking::key_name(k)));
        keys
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn review_threshold(&self) -> f64 {
        self.review_threshold
    }

    pub fn guard(&self) -> f64 {
        self.guard
    }

    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// The match probability of two records, term-frequency adjusted.
    pub fn probability(&self, a: &Attributes, b: &Attributes) -> f64 {
        crate::matching::batch::probability(&self.model, &self.frequencies, a, b)
    }

    /// The evidence for "same person" between two records: each field's weight with its
    /// term-frequency adjustment.
    pub fn evidence(&self, a: &Attributes, b: &Attributes) -> (f64, ProbableLink) {
        let score = self
            .model
            .score(&compare_all(a, b), &|f| self.frequencies.share(f, a));
        let round = |x: f64| (x * 1000.0).round() / 1000.0;
        let fields = score
            .parts
            .iter()
            .map(|p| FieldContribution {
                field: p.field.name().to_owned(),
                level: p.level,
                weight: round(p.weight + p.tf),
                tf_adjustment: (p.tf != 0.0).then(|| round(p.tf)),
            })
            .collect();
        (
            score.probability,
            ProbableLink {
                probability: score.probability,
                weight: score.weight,
                fields,
                cluster_probability: 0.0,
            },
        )
    }
}

/// The comparable attributes of a validated event (its traits and first email).
pub fn event_attributes(ev: &NormalizedEvent) -> Attributes {
    let email = ev
        .identifiers
        .iter()
        .find(|i| i.kind == "email")
        .map(|i| i.value.clone());
    traits_attributes(|name| ev.traits.get(name), email)
}

/// What probabilistic matching did for one event.
#[derive(Debug, Default)]
pub struct Matched {
    /// The event's profile afterwards (the oldest of the merged ones).
    pub profile_id: Option<ProfileId>,
    /// Profiles absorbed by probable links.
    pub absorbed: Vec<ProfileId>,
    /// Probable links refused by a deterministic rule.
    pub refused: Vec<(ProfileId, String)>,
}

/// Matches the event (already resolved into `target` with anchor `anchor`) against the
/// records of other profiles, merging on strong, guarded, rule-abiding matches.
pub fn match_event(
    s: &mut Session<'_>,
    rules: &Rules,
    m: &Matcher,
    ev: &NormalizedEvent,
    anchor: &IdentKey,
    target: &ProfileId,
) -> Result<Matched, StoreError> {
    let out = Matched::default();
    if !m.applies_to(&ev.source) {
        return Ok(out);
    }
    let fresh = event_attributes(ev);
    if fresh.present() == 0 {
        return Ok(out);
    }
    let old = s.match_record(anchor)?.map(|r| r.attributes);
    let attrs = match &old {
        Some(old) => old.updated_with(&fresh),
        None => fresh,
    };
    if attrs.present() < MIN_FIELDS {
        return Ok(out);
    }
    let (shared, indexed) = candidates(s, m, &attrs, anchor)?;
    s.put_match_record(
        anchor,
        Some(MatchRecord {
            attributes: attrs.clone(),
            keys: indexed,
        }),
    )?;
    m.frequencies.observe(old.as_ref(), &attrs);
    decide(s, rules, m, ev, anchor, target, &attrs, shared)
}

/// Matches the stored record of `anchor` (in profile `target`) again under the current
/// model and settings, as if its last event had just arrived (see `engine::reresolve`):
/// the record and its index are left as they are.
pub fn rematch(
    s: &mut Session<'_>,
    rules: &Rules,
    m: &Matcher,
    ev: &NormalizedEvent,
    anchor: &IdentKey,
    target: &ProfileId,
) -> Result<Matched, StoreError> {
    let Some(record) = s.match_record(anchor)? else {
        return Ok(Matched::default());
    };
    if record.attributes.present() < MIN_FIELDS {
        return Ok(Matched::default());
    }
    let (shared, _) = candidates(s, m, &record.attributes, anchor)?;
    decide(s, rules, m, ev, anchor, target, &record.attributes, shared)
}

/// Candidates of a record: the records sharing each usable blocking key (with how many
/// keys each shares), and the keys searched (those not too common).
fn candidates(
    s: &Session<'_>,
    m: &Matcher,
    attrs: &Attributes,
    anchor: &IdentKey,
) -> Result<(HashMap<IdentKey, usize>, Vec<String>), StoreError> {
    let keys = m.usable_keys(attrs);
    let mut indexed = Vec::with_capacity(keys.len());
    let mut shared: HashMap<IdentKey, usize> = HashMap::new();
    for key in keys {
        let hash = key_hash(&key);
        if m.is_saturated(hash) {
            continue;
        }
        let members = s.match_candidates(&key, m.max_block + 1)?;
        if members.len() > m.max_block {
            m.remember_saturated(hash);
            continue;
        }
        for ident in members {
            if ident != *anchor {
                *shared.entry(ident).or_default() += 1;
            }
        }
        indexed.push(key);
    }
    Ok((shared, indexed))
}

/// Scores the candidates, merges on strong, guarded, rule-abiding matches, queues the
/// unsure ones for review.
#[allow(clippy::too_many_arguments)]
fn decide(
    s: &mut Session<'_>,
    rules: &Rules,
    m: &Matcher,
    ev: &NormalizedEvent,
    anchor: &IdentKey,
    target: &ProfileId,
    attrs: &Attributes,
    shared: HashMap<IdentKey, usize>,
) -> Result<Matched, StoreError> {
    let mut out = Matched::default();
    let mut ranked: Vec<(IdentKey, usize)> = shared.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(m.max_candidates);
    bump(&m.counters.records, 1);
    bump(&m.counters.compared, ranked.len() as u64);

    // The best record of each other profile at or above the threshold, and of those in
    // the review band.
    let mut best: BTreeMap<ProfileId, (f64, IdentKey, ProbableLink)> = BTreeMap::new();
    let mut unsure: BTreeMap<ProfileId, (f64, IdentKey, ProbableLink)> = BTreeMap::new();
    for (ident, _) in ranked {
        let (Some(node), Some(record)) = (s.node(&ident)?, s.match_record(&ident)?) else {
            continue;
        };
        if node.profile_id == *target {
            continue;
        }
        let (p, evidence) = m.evidence(attrs, &record.attributes);
        if p.is_finite() {
            let i = ((p.clamp(0.0, 1.0) * 20.0) as usize).min(19);
            bump(&m.counters.scores[i], 1);
        }
        let band = if p >= m.threshold && corroborated(attrs, &record.attributes, &evidence) {
            &mut best
        } else if p >= m.review_threshold {
            &mut unsure
        } else {
            continue;
        };
        if band.get(&node.profile_id).is_none_or(|b| p > b.0) {
            band.insert(node.profile_id, (p, ident, evidence));
        }
    }
    let mut order: Vec<(f64, IdentKey, ProbableLink)> = best.into_values().collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));

    let mut current = target.clone();
    let mut merges = 0;
    for (_, ident, mut evidence) in order {
        if merges >= m.max_merges {
            break;
        }
        let Some(node) = s.node(&ident)? else {
            continue;
        };
        if node.profile_id == current {
            continue;
        }
        // A link an operator deleted stays deleted.
        if s.edge(anchor, &ident)?.is_some_and(|e| !e.is_active()) {
            continue;
        }
        let ours = s.existing_profile(&current)?;
        let theirs = s.existing_profile(&node.profile_id)?;
        let poisoning = rules.poisoning(
            &ev.source,
            || rules.holds_verified(&ours.identifiers),
            || rules.holds_verified(&theirs.identifiers),
        );
        let apart = ours
            .kept_apart(&theirs.split_marks)
            .then(|| super::steward::SPLIT_RULE.to_owned());
        if let Some(rule) = poisoning
            .or(apart)
            .or_else(|| conflict(rules, m, &ours, &theirs))
        {
            link(
                s,
                anchor,
                &ident,
                EdgeStatus::Refused { rule: rule.clone() },
                ev,
                Some(evidence),
            )?;
            s.record(
                HistoryKind::Conflict,
                vec![current.clone(), theirs.id.clone()],
                None,
                vec![],
                Some(ev.event_id.clone()),
                rule.clone(),
                vec![anchor.clone(), ident.clone()],
                Some("probable match refused: the profiles hold conflicting identifiers".into()),
            );
            out.refused.push((theirs.id.clone(), rule));
            bump(&m.counters.refused, 1);
            continue;
        }
        let together = cluster_probability(s, m, &ours, &theirs)?;
        if together < m.guard {
            bump(&m.counters.guarded, 1);
            continue;
        }
        evidence.cluster_probability = (together * 1000.0).round() / 1000.0;
        let (survivor, gone) = if theirs.seq < ours.seq {
            (theirs.id.clone(), ours.id.clone())
        } else {
            (ours.id.clone(), theirs.id.clone())
        };
        let detail = describe(&evidence);
        link(s, anchor, &ident, EdgeStatus::Active, ev, Some(evidence))?;
        merge_into(
            s,
            &survivor,
            &gone,
            ev,
            vec![anchor.clone(), ident.clone()],
            RULE,
            detail,
        )?;
        out.absorbed.push(gone);
        bump(&m.counters.merged, 1);
        current = survivor;
        merges += 1;
    }
    queue_for_review(s, m, ev, anchor, &current, unsure)?;
    out.profile_id = Some(current);
    Ok(out)
}

/// Review items proposed per event at most.
const MAX_REVIEWS_PER_EVENT: usize = 3;

/// Queues the candidates the model was unsure of for a steward (one item per pair of
/// profiles: none when the two are already linked, one of them already has an item
/// naming the other profile, or a link between the two identifiers was deleted or
/// rejected).
fn queue_for_review(
    s: &mut Session<'_>,
    m: &Matcher,
    ev: &NormalizedEvent,
    anchor: &IdentKey,
    current: &ProfileId,
    unsure: BTreeMap<ProfileId, (f64, IdentKey, ProbableLink)>,
) -> Result<(), StoreError> {
    if unsure.is_empty() {
        return Ok(());
    }
    let mut order: Vec<(f64, IdentKey, ProbableLink)> = unsure.into_values().collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let pending = s.review_items_of(anchor)?;
    let mut queued = 0;
    for (_, ident, evidence) in order {
        if queued >= MAX_REVIEWS_PER_EVENT {
            break;
        }
        let Some(node) = s.node(&ident)? else {
            continue;
        };
        if node.profile_id == *current || s.edge(anchor, &ident)?.is_some() {
            continue;
        }
        // A steward already split these people apart: not a question to ask again.
        if s.existing_profile(current)?
            .kept_apart(&s.existing_profile(&node.profile_id)?.split_marks)
        {
            continue;
        }
        let mut known = false;
        for item in &pending {
            let other = if item.a == *anchor { &item.b } else { &item.a };
            if s.node(other)?
                .is_some_and(|n| n.profile_id == node.profile_id)
            {
                known = true;
                break;
            }
        }
        if known {
            continue;
        }
        let seq = s.next_review_seq();
        s.put_review(
            crate::model::ReviewItem {
                seq,
                at: s.now,
                a: anchor.clone(),
                b: ident.clone(),
                profiles: vec![current.clone(), node.profile_id.clone()],
                event_id: ev.event_id.clone(),
                source: ev.source.clone(),
                evidence,
            },
            true,
        );
        bump(&m.counters.queued_for_review, 1);
        queued += 1;
    }
    Ok(())
}

/// The deterministic rule a link between the two profiles would break: an exclusive kind
/// of matching (when matching is on) or a per-kind limit.
pub(crate) fn rule_conflict(rules: &Rules, a: &ProfileState, b: &ProfileState) -> Option<String> {
    match &rules.matcher {
        Some(m) => conflict(rules, m, a, b),
        None => limits(rules, a, b),
    }
}

/// The deterministic rule a probable link between the two profiles would break.
fn conflict(rules: &Rules, m: &Matcher, a: &ProfileState, b: &ProfileState) -> Option<String> {
    for kind in &m.exclusive_kinds {
        if let (Some(x), Some(y)) = (a.identifiers.get(kind), b.identifiers.get(kind)) {
            if x != y {
                return Some(format!("probable_conflict:{kind}"));
            }
        }
    }
    limits(rules, a, b)
}

fn limits(rules: &Rules, a: &ProfileState, b: &ProfileState) -> Option<String> {
    let have = a
        .identifiers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    rules.violation(&have, &b.identifiers)
}

/// Mean match probability between up to [`GUARD_SAMPLE`] records of each profile.
fn cluster_probability(
    s: &Session<'_>,
    m: &Matcher,
    a: &ProfileState,
    b: &ProfileState,
) -> Result<f64, StoreError> {
    let (xs, ys) = (sample(s, a)?, sample(s, b)?);
    let mut total = 0.0;
    for x in &xs {
        for y in &ys {
            total += m.probability(x, y);
        }
    }
    Ok(total / ((xs.len() * ys.len()).max(1) as f64))
}

/// Up to [`GUARD_SAMPLE`] match records of a profile's identifiers (at most four times as
/// many identifiers are looked at: most devices and cookies carry none).
fn sample(s: &Session<'_>, p: &ProfileState) -> Result<Vec<Attributes>, StoreError> {
    let mut out = Vec::new();
    for key in p.identifier_keys().take(GUARD_SAMPLE * 4) {
        if let Some(r) = s.match_record(&key)? {
            out.push(r.attributes);
            if out.len() == GUARD_SAMPLE {
                break;
            }
        }
    }
    Ok(out)
}

/// A one-line account of the evidence for history (field names and weights, no values).
fn describe(e: &ProbableLink) -> String {
    let fields: Vec<String> = e
        .fields
        .iter()
        .map(|f| format!("{} level {} {:+.2}", f.field, f.level, f.weight))
        .collect();
    format!(
        "probable match p={:.4} (weight {:.2}; clusters {:.3}): {}",
        e.probability,
        e.weight,
        e.cluster_probability,
        fields.join(", ")
    )
}
