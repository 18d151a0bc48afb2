//! Why two identifiers are NOT in one profile (`GET /v1/explain?a=&b=`): the answer a data
//! steward needs before merging by hand or changing a rule. In order, the first that holds
//! is the verdict:
//!
//! 1. `same_profile`: they are linked after all (the path is `GET
//!    /v1/profiles/{id}/explain`'s);
//! 2. `suppressed` / `unknown`: one of them was erased (its keyed hash is on the
//!    suppression list) or was never seen;
//! 3. `refused`: a deterministic rule or a steward refused a link between the two profiles
//!    (refused edges between them with their rule: per-kind limit, exclusive kind,
//!    untrusted source, a deleted link, a steward's split), and the conflicts history
//!    recorded;
//! 4. `matching_off`: probabilistic matching is off, and nothing else links them;
//! 5. `no_record`: one side has no match record (no person traits to compare);
//! 6. `no_candidate`: their records share no usable blocking key (each side's keys are
//!    listed, and keys too common to be searched are named);
//! 7. `below_threshold`: the best pair of records scores under `matching.threshold` (each
//!    field's weight and term-frequency adjustment, and the margin it missed by);
//! 8. `names_only`: the best pair scores over the threshold on names alone (a name-only
//!    record, nothing else they both hold agrees): never merged automatically, queued
//!    for review;
//! 9. `guard`: the records match but the profiles as clusters do not (the cluster guard);
//! 10. `would_match`: none of the above: the match was not seen when the later record
//!     arrived (more than `max_candidates` candidates, or the other record came later
//!     through a source with matching off); a new event of either links them.
//!
//! Only reads; never values in errors.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::probable::Matcher;
use crate::matching::blocking;
use crate::matching::compare::Attributes;
use crate::model::{Edge, EdgeStatus, HistoryKind, IdentKey, ProfileState};
use crate::store::{GraphStore, StoreError};

/// Identifiers of a profile whose edges are read looking for refusals.
const MAX_IDENTIFIERS: usize = 2_000;
/// Refused edges and conflicts listed at most.
const MAX_LISTED: usize = 50;
/// History entries read for conflicts.
const HISTORY: usize = 1_000;
/// Records of each profile compared.
const SAMPLE: usize = 8;

/// One side of the question: the identifier, its profile (when it exists) and its record.
struct Side {
    key: IdentKey,
    profile: Option<ProfileState>,
}

/// Explains why `a` and `b` are not one person (see the module docs).
pub fn why_not(
    store: &dyn GraphStore,
    matcher: Option<&Matcher>,
    suppressed: &dyn Fn(&IdentKey) -> Result<bool, StoreError>,
    a: &IdentKey,
    b: &IdentKey,
) -> Result<Value, StoreError> {
    let side = |key: &IdentKey| -> Result<Side, StoreError> {
        let profile = match store.profile_of(key)? {
            Some(id) => store.profile(&id)?,
            None => None,
        };
        Ok(Side {
            key: key.clone(),
            profile,
        })
    };
    let (x, y) = (side(a)?, side(b)?);
    let mut out = json!({
        "a": a,
        "b": b,
        "profiles": {
            "a": x.profile.as_ref().map(|p| &p.id),
            "b": y.profile.as_ref().map(|p| &p.id),
        },
    });
    let (px, py) = match (&x.profile, &y.profile) {
        (Some(px), Some(py)) => (px, py),
        _ => {
            let missing = if x.profile.is_none() { &x } else { &y };
            let which = if x.profile.is_none() { "a" } else { "b" };
            let erased = suppressed(&missing.key)?;
            out["verdict"] = json!(if erased { "suppressed" } else { "unknown" });
            out["reason"] = json!(if erased {
                format!("identifier {which} was erased: it is on the suppression list, so no event can bring it back or link it")
            } else {
                format!("identifier {which} has never been seen")
            });
            return Ok(out);
        }
    };
    if px.id == py.id {
        out["verdict"] = json!("same_profile");
        out["reason"] = json!(format!(
            "both are in profile {}; GET /v1/profiles/{}/explain shows the path",
            px.id, px.id
        ));
        return Ok(out);
    }

    // Refusals between the two profiles: refused edges and recorded conflicts.
    let theirs: BTreeSet<IdentKey> = py.identifier_keys().collect();
    let mut refused: Vec<Value> = Vec::new();
    for key in px.identifier_keys().take(MAX_IDENTIFIERS) {
        for e in store.edges_of(&key, 10_000)? {
            if let (EdgeStatus::Refused { rule }, true) =
                (&e.status, theirs.contains(e.other(&key)))
            {
                refused.push(refusal(&e, rule));
                if refused.len() >= MAX_LISTED {
                    break;
                }
            }
        }
    }
    let conflicts: Vec<Value> = store
        .history(&px.id, HISTORY)?
        .into_iter()
        .filter(|h| h.kind == HistoryKind::Conflict && h.profiles.contains(&py.id))
        .take(MAX_LISTED)
        .map(|h| {
            json!({"seq": h.seq, "at": crate::profile::golden::iso(h.at), "rule": h.rule,
                   "event_id": h.event_id, "identifiers": h.identifiers, "detail": h.detail})
        })
        .collect();
    if !refused.is_empty() || !conflicts.is_empty() {
        let rules: BTreeSet<&str> = refused
            .iter()
            .chain(&conflicts)
            .filter_map(|r| r["rule"].as_str())
            .collect();
        out["verdict"] = json!("refused");
        out["reason"] = json!(format!(
            "a link between the profiles was refused by: {}",
            rules.into_iter().collect::<Vec<_>>().join(", ")
        ));
        out["refused_links"] = json!(refused);
        out["conflicts"] = json!(conflicts);
        return Ok(out);
    }

    let Some(m) = matcher else {
        out["verdict"] = json!("matching_off");
        out["reason"] =
            json!("no identifier links them, and probabilistic matching is off (matching.enabled)");
        return Ok(out);
    };
    let (rx, ry) = (records(store, &x.key, px)?, records(store, &y.key, py)?);
    if rx.is_empty() || ry.is_empty() {
        let which = if rx.is_empty() { "a" } else { "b" };
        out["verdict"] = json!("no_record");
        out["reason"] = json!(format!(
            "profile {which} has no match record (no person traits to compare), and no identifier links them"
        ));
        return Ok(out);
    }

    // Blocking: the keys each side's own record is indexed under.
    let keys_of = |r: &Attributes| -> Vec<String> { m.usable_keys(r) };
    let (kx, ky) = (keys_of(&rx[0].1), keys_of(&ry[0].1));
    let shared: Vec<&String> = kx.iter().filter(|k| ky.contains(k)).collect();
    let mut saturated = Vec::new();
    for k in &shared {
        if store.match_candidates(k, m.max_block() + 1)?.len() > m.max_block() {
            saturated.push(blocking::key_name(k).to_owned());
        }
    }
    out["blocking"] = json!({
        "a": kx.iter().map(|k| blocking::key_name(k)).collect::<Vec<_>>(),
        "b": ky.iter().map(|k| blocking::key_name(k)).collect::<Vec<_>>(),
        "shared": shared.iter().map(|k| blocking::key_name(k)).collect::<Vec<_>>(),
        "too_common": saturated,
        "max_block": m.max_block(),
    });

    // The best-scoring pair of records, and the clusters as the guard sees them.
    let mut best: Option<(f64, &IdentKey, &IdentKey, crate::model::ProbableLink, bool)> = None;
    let mut total = 0.0;
    for (ka, ra) in &rx {
        for (kb, rb) in &ry {
            let (p, evidence) = m.evidence(ra, rb);
            total += p;
            if best.as_ref().is_none_or(|b| p > b.0) {
                let corroborated = super::probable::corroborated(ra, rb, &evidence);
                best = Some((p, ka, kb, evidence, corroborated));
            }
        }
    }
    let together = total / ((rx.len() * ry.len()).max(1) as f64);
    if let Some((p, ka, kb, evidence, _)) = &best {
        out["match"] = json!({
            "records": [ka, kb],
            "probability": p,
            "weight": evidence.weight,
            "threshold": m.threshold(),
            "fields": evidence.fields,
            "cluster_probability": together,
            "guard": m.guard(),
        });
    }
    let p = best.as_ref().map_or(0.0, |b| b.0);
    let (verdict, reason) = if shared.is_empty() {
        (
            "no_candidate",
            "no candidate: their records share no blocking key, so they were never compared"
                .to_owned(),
        )
    } else if shared.len() == saturated.len() {
        (
            "no_candidate",
            format!(
                "no candidate: every blocking key they share is held by more than {} records and is not searched",
                m.max_block()
            ),
        )
    } else if p < m.threshold() {
        (
            "below_threshold",
            format!(
                "the best pair of records scores {p:.4}, under the threshold {} (missed by {:.4})",
                m.threshold(),
                m.threshold() - p
            ),
        )
    } else if best.as_ref().is_some_and(|b| !b.4) {
        (
            "names_only",
            format!(
                "the best pair of records scores {p:.4}, but only on names: nothing else they both hold agrees, and names alone never merge two records (the pair goes to the review queue)"
            ),
        )
    } else if together < m.guard() {
        (
            "guard",
            format!(
                "the records match ({p:.4}) but the profiles as clusters do not: mean {together:.3} under the guard {}",
                m.guard()
            ),
        )
    } else {
        (
            "would_match",
            "they match now: the later record did not see the other as a candidate when it arrived (more candidates than matching.max_candidates, or a record that came later through a source with matching off); a new event of either links them".to_owned(),
        )
    };
    out["verdict"] = json!(verdict);
    out["reason"] = json!(reason);
    Ok(out)
}

fn refusal(e: &Edge, rule: &str) -> Value {
    json!({
        "a": e.a,
        "b": e.b,
        "rule": rule,
        "sources": e.sources,
        "event_ids": e.event_ids,
        "probable": e.probable,
    })
}

/// The match records to compare for one side: the identifier's own first, then others of
/// its profile, up to [`SAMPLE`].
fn records(
    store: &dyn GraphStore,
    key: &IdentKey,
    p: &ProfileState,
) -> Result<Vec<(IdentKey, Attributes)>, StoreError> {
    let mut out = Vec::new();
    if let Some(r) = store.match_record(key)? {
        out.push((key.clone(), r.attributes));
    }
    for k in p.identifier_keys().take(SAMPLE * 4) {
        if out.len() >= SAMPLE {
            break;
        }
        if k == *key {
            continue;
        }
        if let Some(r) = store.match_record(&k)? {
            out.push((k, r.attributes));
        }
    }
    Ok(out)
}
