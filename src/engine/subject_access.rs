//! Subject access on the engine: which person a request names (a profile id, following
//! merges as lookups do, or an identifier) and the parts of the document that need the
//! survivorship rules; `profile::subject_access` builds the rest from store reads. The
//! HTTP route and `idgraph subject-access` both call [`Engine::subject_access`].

use std::collections::BTreeMap;

use super::{not_found, Engine, EngineError};
use crate::activation::AudienceDef;
use crate::profile::subject_access::{self, Parts, SubjectAccess};
use crate::store::{IdentKey, ProfileId};

/// Whom a subject access request names.
#[derive(Debug, Clone)]
pub enum SubjectTarget {
    /// A profile id; an id merged away names its survivor.
    Profile(ProfileId),
    /// An identifier, already normalized.
    Identifier(IdentKey),
}

impl Engine {
    /// Everything the store holds about the person `target` names (see
    /// `profile::subject_access`), stamped `generated_at` (ms). Reads only.
    pub fn subject_access(
        &self,
        target: &SubjectTarget,
        generated_at: i64,
    ) -> Result<SubjectAccess, EngineError> {
        let state = match target {
            SubjectTarget::Profile(id) => self.profile_state(id)?,
            SubjectTarget::Identifier(key) => {
                let pid = self
                    .store
                    .profile_of(key)?
                    .ok_or_else(|| not_found("identifier"))?;
                self.profile_state(&pid)?
            }
        };
        let golden = self.profile(&state.id)?;
        let traits = self
            .values(&state.id)?
            .get_mut("traits")
            .map(serde_json::Value::take)
            .unwrap_or_default();
        let consents = crate::profile::golden::consents(&state, &self.rules);
        let mut audience_defs = BTreeMap::new();
        for id in state.audiences.keys() {
            let Some(bytes) = self.store.activation(&crate::activation::def_key(id))? else {
                continue;
            };
            // A definition that does not decode is left out; the membership still shows.
            if let Ok(def) = serde_json::from_slice::<AudienceDef>(&bytes) {
                audience_defs.insert(id.clone(), (def.purpose, def.description));
            }
        }
        Ok(subject_access::build(
            self.store.as_ref(),
            Parts {
                state,
                golden,
                traits,
                consents,
                audience_defs,
                generated_at,
            },
        )?)
    }
}
