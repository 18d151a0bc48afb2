//! Event retention (`retention.events`): a raw event that arrived before the cut-off loses
//! its payload (traits and properties) in the write path, like any other write. What
//! resolution still needs stays (see [`crate::model::StoredEvent::aged_at`]): the golden
//! profiles, the graph and its explanations are kept, a resent event is still a
//! duplicate, an erasure still reaches it.
//!
//! After ageing, a split rebuilds each part's traits from the events still holding them:
//! a value seen only in aged events cannot be attributed to one side any more and is left
//! out of both (the privacy-safe side); counts, first/last seen and sources stay exact.

use super::Session;
use crate::store::StoreError;

/// What one pass of [`age_events`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeOutcome {
    /// Events aged in this pass.
    pub aged: usize,
    /// The last event sequence number looked at (where the next pass starts).
    pub last_seq: u64,
    /// No older event is left to age (the next one arrived after the cut-off, or none).
    pub done: bool,
}

/// Ages at most `max` of the oldest events that arrived before `before_ms`, after
/// sequence number `after`.
pub fn age_events(
    s: &mut Session<'_>,
    after: u64,
    before_ms: i64,
    max: usize,
) -> Result<AgeOutcome, StoreError> {
    let rows = s.store().events_in_order(after, max)?;
    let mut out = AgeOutcome {
        aged: 0,
        last_seq: after,
        done: rows.len() < max,
    };
    for (seq, id) in rows {
        // Erased (or aged) by a write still on its way to the store: nothing to do.
        if let Some(event) = s.event(&id)?.filter(|e| e.aged_at.is_none()) {
            // Events are numbered in arrival order: the first one young enough ends it.
            if event.received_at >= before_ms {
                out.done = true;
                break;
            }
            let now = s.now;
            s.put_aged_event(event.aged(now));
            out.aged += 1;
        }
        out.last_seq = seq;
    }
    Ok(out)
}
