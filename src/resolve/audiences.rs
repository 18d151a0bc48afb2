//! Audience membership kept current in the write group that changes a profile (see
//! `activation`): every rendered profile is evaluated against every audience, and each
//! profile the group deletes (merged into another, split, erased) leaves its audiences.
//! Enter and exit records go on the change feed, members' index rows and each audience's
//! counts are written in the same synced write, so membership, counts and the feed never
//! disagree.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Session;
use crate::activation::{self, AudienceCounts, Compiled, Profile};
use crate::model::feed::{ChangeRecord, ChangeType};
use crate::model::{GoldenProfile, ProfileId, ProfileState};
use crate::store::StoreError;

/// What one write group changed in audiences.
#[derive(Default)]
pub(super) struct Tally {
    /// Audience -> (members, left out for consent) added (negative: removed).
    deltas: BTreeMap<String, (i64, i64)>,
    pub records: Vec<ChangeRecord>,
}

impl Tally {
    fn note(
        &mut self,
        s: &mut Session<'_>,
        id: &ProfileId,
        audience: &str,
        before: Option<bool>,
        after: Option<bool>,
    ) {
        let d = self.deltas.entry(audience.to_owned()).or_default();
        let as_delta = |x: Option<bool>| (i64::from(x == Some(true)), i64::from(x == Some(false)));
        let (b, a) = (as_delta(before), as_delta(after));
        d.0 += a.0 - b.0;
        d.1 += a.1 - b.1;
        let (was, is) = (before == Some(true), after == Some(true));
        if was == is {
            return;
        }
        let key = activation::member_key(audience, id);
        s.put_activation(key, is.then(Vec::new));
        let change = if is {
            ChangeType::AudienceEntered
        } else {
            ChangeType::AudienceExited
        };
        let mut r = ChangeRecord::new(change, id.clone(), s.now);
        r.audience = Some(audience.to_owned());
        self.records.push(r);
    }

    /// Evaluates a rendered profile against `audiences`, updating its memberships. What
    /// it was a member of is read from the store as it was before the group (a split may
    /// rebuild a profile's state from scratch).
    pub fn evaluate(
        &mut self,
        s: &mut Session<'_>,
        state: &mut ProfileState,
        golden: &GoldenProfile,
        household: bool,
        audiences: &[Arc<Compiled>],
    ) -> Result<(), StoreError> {
        let now = s.now;
        let p = Profile {
            golden,
            state,
            household,
        };
        let after: BTreeMap<String, bool> = audiences
            .iter()
            .filter_map(|c| activation::standing(c, &p, now).map(|m| (c.def.id.clone(), m)))
            .collect();
        let before = s
            .stored_profile(&state.id)?
            .map(|p| p.audiences)
            .unwrap_or_default();
        let mut ids: Vec<&String> = before.keys().chain(after.keys()).collect();
        ids.sort();
        ids.dedup();
        for aud in ids {
            self.note(
                s,
                &state.id,
                aud,
                before.get(aud).copied(),
                after.get(aud).copied(),
            );
        }
        state.audiences = after;
        Ok(())
    }

    /// A profile the group deleted leaves every audience it was in.
    pub fn left(&mut self, s: &mut Session<'_>, id: &ProfileId) -> Result<(), StoreError> {
        let Some(before) = s.stored_profile(id)? else {
            return Ok(());
        };
        for (aud, member) in &before.audiences {
            self.note(s, id, aud, Some(*member), None);
        }
        Ok(())
    }

    /// Writes the counts of the audiences that changed (those still defined).
    pub fn write_counts(
        &self,
        s: &mut Session<'_>,
        defined: &[Arc<Compiled>],
    ) -> Result<(), StoreError> {
        for (aud, (members, excluded)) in &self.deltas {
            if (*members, *excluded) == (0, 0) || !defined.iter().any(|c| c.def.id == *aud) {
                continue;
            }
            let key = activation::counts_key(aud);
            let mut counts: AudienceCounts = match s.activation(&key)? {
                Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
                None => AudienceCounts::default(),
            };
            counts.size = counts.size.saturating_add_signed(*members);
            counts.excluded_no_consent =
                counts.excluded_no_consent.saturating_add_signed(*excluded);
            let bytes = serde_json::to_vec(&counts)
                .map_err(|e| StoreError::Engine(format!("encode audience counts: {e}")))?;
            s.put_activation(key, Some(bytes));
        }
        Ok(())
    }
}
