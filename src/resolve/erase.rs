//! Erasure (GDPR art. 17 / CCPA deletion): a person's identifiers, edges, events, match
//! records, cached golden profile, aliases and merge-history values are removed in one
//! atomic write, leaving a tombstone history entry with no personal value. The erased
//! identifiers go on the suppression list as keyed hashes (HMAC-SHA256 with the governance
//! secret), so a later event carrying one of them is refused (`suppressed`) instead of
//! re-creating the person. History entries of *other* profiles that named the person's
//! identifiers (refused links, shared devices) lose those identifiers too.
//!
//! An erased email or phone is suppressed in its hashed form too (`email_sha256` of the
//! value, whether or not the graph held that node), so a third party's hashed-only event
//! for the person is refused like the plain one; lifting the plain value's suppression
//! lifts its hashed form's.

use std::collections::BTreeSet;

use serde::Serialize;

use super::split::UnmergeError;
use super::{Rules, Session};
use crate::model::split_key;
use crate::store::{HistoryKind, IdentKey, ProfileId};

/// Most history entries read back to clean other profiles' copies.
const MAX_HISTORY: usize = 100_000;

/// What an erasure removed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErasureOutcome {
    pub profile_id: ProfileId,
    /// Profile ids merged into it earlier, erased with it.
    pub absorbed: Vec<ProfileId>,
    pub identifiers: usize,
    pub events: usize,
    /// Identifiers put on the suppression list (by kind; values are never returned).
    pub suppressed: Vec<String>,
    /// The erased identifier keys, for purging derived files (never serialized).
    #[serde(skip)]
    pub erased_keys: Vec<IdentKey>,
}

/// Who to erase.
#[derive(Debug, Clone)]
pub enum ErasureTarget {
    Profile(ProfileId),
    Identifier(IdentKey),
}

/// Erases a person inside `s`.
pub fn erase(
    s: &mut Session<'_>,
    rules: &Rules,
    target: &ErasureTarget,
    actor: &str,
) -> Result<ErasureOutcome, UnmergeError> {
    let pid = match target {
        ErasureTarget::Identifier(key) => {
            s.node(key)?
                .ok_or_else(|| UnmergeError::NotFound("identifier".into()))?
                .profile_id
        }
        ErasureTarget::Profile(id) => match s.profile(id)? {
            Some(_) => id.clone(),
            None => s
                .store()
                .alias(id)?
                .ok_or_else(|| UnmergeError::NotFound("profile".into()))?,
        },
    };
    let state = s.existing_profile(&pid)?;
    let keys: Vec<IdentKey> = state.identifier_keys().collect();
    s.note_erased_identifiers(&keys);
    // The hashed forms of plain emails and phones the graph does not hold (events before
    // hashes were derived, or `derive_hashes = false`): suppressed and purged as well.
    let held: BTreeSet<&IdentKey> = keys.iter().collect();
    let hashed_only: Vec<IdentKey> = keys
        .iter()
        .filter_map(|k| crate::ingest::identifier::hashed_key(k))
        .filter(|h| !held.contains(h))
        .collect();

    // Events carrying any of the person's identifiers.
    let mut events = BTreeSet::new();
    for key in &keys {
        events.extend(s.event_ids_of(key)?);
    }
    for id in &events {
        s.delete_event(id);
    }

    // Identifiers: their edges (to anyone), nodes, event index, match records; then the
    // suppression list.
    let mut suppressed = Vec::with_capacity(keys.len());
    for key in &keys {
        for e in s.edges_of(key)? {
            s.delete_edge(&e.a, &e.b);
        }
        s.delete_node(key);
        s.drop_event_index(key);
        s.put_match_record(key, None)?;
        for item in s.review_items_of(key)? {
            s.put_review(item, false);
        }
        if let Some(hash) = rules.suppression_hash(key) {
            s.set_suppressed(&hash, true)?;
        }
        suppressed.push(split_key(key).0.to_owned());
    }
    for key in &hashed_only {
        if let Some(hash) = rules.suppression_hash(key) {
            s.set_suppressed(&hash, true)?;
        }
        suppressed.push(split_key(key).0.to_owned());
    }

    // History: every copy under the person's ids goes; entries shared with other profiles
    // are re-written there without the person's identifiers and details.
    let mut ids: Vec<ProfileId> = vec![pid.clone()];
    ids.extend(state.absorbed.iter().cloned());
    let erased: BTreeSet<&str> = keys.iter().map(IdentKey::as_str).collect();
    let mut rewritten = BTreeSet::new();
    for id in &ids {
        // This session's entries too: an event earlier in the same group may have
        // recorded a conflict between the person and someone else.
        for mut entry in s.history(id, MAX_HISTORY)? {
            let others: Vec<ProfileId> = entry
                .profiles
                .iter()
                .filter(|p| !ids.contains(p))
                .cloned()
                .collect();
            if others.is_empty() || !rewritten.insert(entry.seq) {
                continue;
            }
            entry.profiles = others;
            entry.identifiers.retain(|k| !erased.contains(k.as_str()));
            entry.detail = Some("details removed by an erasure".into());
            entry.absorbed.retain(|p| !ids.contains(p));
            if entry.survivor.as_ref().is_some_and(|p| ids.contains(p)) {
                entry.survivor = None;
            }
            s.rewrite_history(entry);
        }
    }
    for id in &ids {
        s.drop_history(id);
    }
    for absorbed in &state.absorbed {
        s.delete_alias(absorbed);
    }
    s.delete_profile(&pid)?;
    s.record(
        HistoryKind::Erased,
        vec![pid.clone()],
        None,
        state.absorbed.iter().cloned().collect(),
        None,
        format!("erasure:{actor}"),
        vec![],
        Some(format!(
            "erased: {} identifiers, {} events; identifiers suppressed",
            keys.len(),
            events.len()
        )),
    );
    Ok(ErasureOutcome {
        profile_id: pid,
        absorbed: state.absorbed.iter().cloned().collect(),
        identifiers: keys.len(),
        events: events.len(),
        suppressed,
        erased_keys: keys.into_iter().chain(hashed_only).collect(),
    })
}

/// Takes an identifier off the suppression list; `false` if it was not on it.
pub fn unsuppress(s: &mut Session<'_>, rules: &Rules, key: &str) -> Result<bool, UnmergeError> {
    let hash = rules.suppression_hash(key).ok_or_else(|| {
        UnmergeError::NotFound("suppression list (none is kept without a secret)".into())
    })?;
    let lifted = s.set_suppressed(&hash, false)?;
    // A plain email's or phone's hashed form was suppressed with it.
    if let Some(hashed) = crate::ingest::identifier::hashed_key(key) {
        if let Some(hash) = rules.suppression_hash(&hashed) {
            s.set_suppressed(&hash, false)?;
        }
    }
    Ok(lifted)
}
