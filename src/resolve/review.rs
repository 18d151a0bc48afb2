//! The review queue's decisions. Probabilistic matching queues the candidate pairs it was
//! unsure of (`resolve::probable`, between `matching.review_threshold` and
//! `matching.threshold`) as [`ReviewItem`]s; a steward decides each one:
//!
//! - **accept**: the two identifiers are linked by an active edge carrying the item's
//!   evidence and their profiles merge (history rule `steward`, the key name and reason in
//!   the detail) — unless a deterministic rule forbids it (an exclusive kind, a per-kind
//!   limit), which the steward may force only by naming the rule in `override`, recorded
//!   in the history entry;
//! - **reject**: the link is stored refused (rule `steward_rejected`) with the evidence, and
//!   a conflict is recorded, so matching never proposes or makes it again.
//!
//! Either way the item leaves the queue, in the same write. Nothing is written unless the
//! whole decision can be made: stale items (an identifier deleted, or the two already in
//! one profile) are refused with 409 and left for the steward to dismiss by rejecting.

use super::{link, merge_into, Rules, Session};
use crate::ingest::event::NormalizedEvent;
use crate::model::{EdgeStatus, HistoryKind, ProfileId, ReviewItem};
use crate::store::StoreError;

/// The rule of a merge a steward decided.
pub const ACCEPT_RULE: &str = super::steward::MERGE_RULE;
/// The rule of a link a steward rejected.
pub const REJECT_RULE: &str = "steward_rejected";

/// A steward's decision on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Accept,
    Reject,
}

/// What a decision did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReviewOutcome {
    pub seq: u64,
    pub decision: Decision,
    /// The profile both identifiers are in after an accept; `None` after a reject.
    pub profile_id: Option<ProfileId>,
    /// The profile absorbed by an accept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absorbed: Option<ProfileId>,
    /// The rule an accept overrode, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overridden: Option<String>,
}

/// Why a decision was not made.
#[derive(Debug)]
pub enum ReviewError {
    NotFound(String),
    /// 409 with a code and a message naming the problem.
    Conflict(&'static str, String),
    Store(StoreError),
}

impl From<StoreError> for ReviewError {
    fn from(e: StoreError) -> Self {
        ReviewError::Store(e)
    }
}

/// Decides review item `seq` for steward `actor` (an API key name) with `reason`.
pub fn decide(
    s: &mut Session<'_>,
    rules: &Rules,
    seq: u64,
    decision: Decision,
    actor: &str,
    reason: &str,
    overrides: &[String],
) -> Result<ReviewOutcome, ReviewError> {
    let item = s
        .review_item(seq)?
        .ok_or_else(|| ReviewError::NotFound("review item".into()))?;
    let (Some(na), Some(nb)) = (s.node(&item.a)?, s.node(&item.b)?) else {
        // An identifier was deleted since: only rejecting makes sense, and it needs no link.
        if decision == Decision::Reject {
            s.put_review(item, false);
            return Ok(ReviewOutcome {
                seq,
                decision,
                profile_id: None,
                absorbed: None,
                overridden: None,
            });
        }
        return Err(ReviewError::Conflict(
            "stale_review",
            "an identifier of this item no longer exists; reject it to dismiss it".into(),
        ));
    };
    let provenance = steward_event(s, &item);
    let from = s.next_history_seq();
    let note = |overrides: Vec<String>| crate::model::StewardNote {
        actor: actor.to_owned(),
        reason: reason.to_owned(),
        overrides,
    };
    let detail = |what: &str| format!("review {seq} {what} by {actor}: {reason}");
    match decision {
        Decision::Reject => {
            link(
                s,
                &item.a,
                &item.b,
                EdgeStatus::Refused {
                    rule: REJECT_RULE.into(),
                },
                &provenance,
                Some(item.evidence.clone()),
            )?;
            s.record(
                HistoryKind::Conflict,
                vec![na.profile_id.clone(), nb.profile_id.clone()],
                None,
                vec![],
                Some(provenance.event_id.clone()),
                REJECT_RULE.into(),
                vec![item.a.clone(), item.b.clone()],
                Some(detail("rejected")),
            );
            s.note_steward(from, &note(vec![]));
            s.put_review(item, false);
            Ok(ReviewOutcome {
                seq,
                decision,
                profile_id: None,
                absorbed: None,
                overridden: None,
            })
        }
        Decision::Accept => {
            if na.profile_id == nb.profile_id {
                return Err(ReviewError::Conflict(
                    "already_merged",
                    format!(
                        "both identifiers are already in profile {}; reject the item to dismiss it",
                        na.profile_id
                    ),
                ));
            }
            let ours = s.existing_profile(&na.profile_id)?;
            let theirs = s.existing_profile(&nb.profile_id)?;
            let broken = super::probable::rule_conflict(rules, &ours, &theirs);
            let overridden = match broken {
                Some(rule) if overrides.contains(&rule) => Some(rule),
                Some(rule) => {
                    return Err(ReviewError::Conflict(
                        "rule_conflict",
                        format!(
                            "merging would break rule {rule}; to merge anyway, send \"override\": [\"{rule}\"]"
                        ),
                    ))
                }
                None => None,
            };
            let (survivor, gone) = if theirs.seq < ours.seq {
                (theirs.id.clone(), ours.id.clone())
            } else {
                (ours.id.clone(), theirs.id.clone())
            };
            link(
                s,
                &item.a,
                &item.b,
                EdgeStatus::Active,
                &provenance,
                Some(item.evidence.clone()),
            )?;
            let mut text = detail("accepted");
            if let Some(rule) = &overridden {
                text.push_str(&format!(" (overriding {rule})"));
            }
            merge_into(
                s,
                &survivor,
                &gone,
                &provenance,
                vec![item.a.clone(), item.b.clone()],
                ACCEPT_RULE,
                text,
            )?;
            let mut merged = s.existing_profile(&survivor)?;
            merged.collapse_split_marks();
            s.put_profile(merged);
            s.note_steward(from, &note(overridden.iter().cloned().collect()));
            s.put_review(item, false);
            Ok(ReviewOutcome {
                seq,
                decision,
                profile_id: Some(survivor),
                absorbed: Some(gone),
                overridden,
            })
        }
    }
}

/// The provenance a steward's decision leaves on edges and history: event id
/// `review:<seq>`, source `steward`.
fn steward_event(s: &Session<'_>, item: &ReviewItem) -> NormalizedEvent {
    super::provenance_event(format!("review:{}", item.seq), "steward", "review", s.now)
}
