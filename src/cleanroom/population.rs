//! One party's side of an overlap, taken from its golden profiles: which profiles take
//! part (consent for the purpose), their identifiers of the chosen kinds, and the values of
//! the attributes the aggregates break down by. Nothing here leaves the process.

use serde_json::Value;

use crate::model::GoldenProfile;

/// What to take from each profile.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Identifier kinds compared (`email`, `phone`, ...).
    pub kinds: Vec<String>,
    /// The consent purpose a profile needs to take part.
    pub purpose: String,
    /// Attributes the shared profiles are counted by: `source`, or a trait name (a trait
    /// of `traits.extra`, else a field of the address such as `city`).
    pub breakdowns: Vec<String>,
}

/// A consented profile that holds at least one identifier of the chosen kinds.
#[derive(Debug, Clone)]
pub struct Member {
    /// Per breakdown (in [`Selection::breakdowns`] order), the profile's values: several
    /// for `source` when it came from several sources, `[None]` when it has none.
    pub attributes: Vec<Vec<Option<String>>>,
}

/// One identifier of a member: the kind's index in [`Selection::kinds`], its normalized
/// value and the member's index.
#[derive(Debug, Clone)]
pub struct MemberIdentifier {
    pub kind: usize,
    pub value: String,
    pub member: usize,
}

/// A party's profiles as the overlap sees them.
#[derive(Debug, Clone, Default)]
pub struct Population {
    /// Profiles holding at least one identifier of the chosen kinds.
    pub considered: u64,
    /// Of those, the ones without consent for the purpose: left out, never tokenized.
    pub excluded_no_consent: u64,
    pub members: Vec<Member>,
    pub identifiers: Vec<MemberIdentifier>,
}

impl Population {
    /// Adds one golden profile.
    pub fn add(&mut self, selection: &Selection, golden: &GoldenProfile) {
        let held: Vec<(usize, &String)> = selection
            .kinds
            .iter()
            .enumerate()
            .flat_map(|(i, kind)| {
                golden
                    .identifiers
                    .get(kind)
                    .into_iter()
                    .flatten()
                    .map(move |v| (i, v))
            })
            .collect();
        if held.is_empty() {
            return;
        }
        self.considered += 1;
        if !golden.consented(&selection.purpose) {
            self.excluded_no_consent += 1;
            return;
        }
        let member = self.members.len();
        self.members.push(Member {
            attributes: selection
                .breakdowns
                .iter()
                .map(|name| attribute(golden, name))
                .collect(),
        });
        self.identifiers
            .extend(held.into_iter().map(|(kind, value)| MemberIdentifier {
                kind,
                value: value.clone(),
                member,
            }));
    }
}

/// The values of breakdown attribute `name` of a profile.
fn attribute(golden: &GoldenProfile, name: &str) -> Vec<Option<String>> {
    if name == "source" {
        if golden.sources.is_empty() {
            return vec![None];
        }
        return golden.sources.iter().cloned().map(Some).collect();
    }
    let value = golden
        .traits
        .extra
        .get(name)
        .or_else(|| golden.traits.address.as_ref().and_then(|a| a.get(name)));
    vec![value.and_then(label)]
}

/// A trait value as a breakdown label (`None` for null).
fn label(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn golden(v: Value) -> GoldenProfile {
        serde_json::from_value(v).expect("a golden profile")
    }

    fn profile(id: &str, identifiers: Value, consent: Option<&str>, extra: Value) -> GoldenProfile {
        let mut consents = json!({});
        if let Some(state) = consent {
            consents["partner_sharing"] =
                json!({"state": state, "source": "crm", "at": "2026-01-01T00:00:00Z"});
        }
        golden(json!({
            "profile_id": id,
            "identifiers": identifiers,
            "traits": {"address": {"city": "Lyon"}, "extra": extra},
            "first_seen": "2026-01-01T00:00:00Z",
            "last_seen": "2026-01-01T00:00:00Z",
            "event_count": 1,
            "sources": ["crm", "web"],
            "devices": [],
            "merged_ids": [],
            "consents": consents,
        }))
    }

    #[test]
    fn consent_kinds_and_attributes() {
        let sel = Selection {
            kinds: vec!["email".into(), "phone".into()],
            purpose: "partner_sharing".into(),
            breakdowns: vec!["source".into(), "city".into(), "tier".into()],
        };
        let mut pop = Population::default();
        pop.add(
            &sel,
            &profile(
                "p_1",
                json!({"email": ["a@x.io"], "phone": ["+1"]}),
                Some("granted"),
                json!({"tier": "gold"}),
            ),
        );
        pop.add(
            &sel,
            &profile(
                "p_2",
                json!({"email": ["b@x.io"]}),
                Some("denied"),
                json!({}),
            ),
        );
        pop.add(
            &sel,
            &profile("p_3", json!({"phone": ["+2"]}), None, json!({})),
        );
        pop.add(
            &sel,
            &profile(
                "p_4",
                json!({"cookie_id": ["c"]}),
                Some("granted"),
                json!({}),
            ),
        );
        assert_eq!(pop.considered, 3);
        assert_eq!(pop.excluded_no_consent, 2);
        assert_eq!(pop.members.len(), 1);
        assert_eq!(pop.identifiers.len(), 2);
        assert_eq!(
            pop.members[0].attributes,
            vec![
                vec![Some("crm".to_owned()), Some("web".to_owned())],
                vec![Some("Lyon".to_owned())],
                vec![Some("gold".to_owned())],
            ]
        );
    }
}
