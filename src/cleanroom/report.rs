//! What an overlap run outputs: counts only, every one below the agreed minimum group
//! size suppressed. No row, profile id or identifier ever appears here.
//!
//! Breakdown cells under the minimum are dropped with their labels (a label such as a
//! rare city next to "fewer than k" would itself tell that someone there is shared); the
//! report says how many were dropped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::population::{Population, Selection};

/// One count, or nothing when it is under the minimum group size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub count: Option<u64>,
    pub suppressed: bool,
}

impl Cell {
    /// `count`, suppressed when under `min`.
    pub fn new(count: u64, min: u64) -> Cell {
        if count < min {
            Cell {
                count: None,
                suppressed: true,
            }
        } else {
            Cell {
                count: Some(count),
                suppressed: false,
            }
        }
    }

    /// The same cell with suppression applied again under `min` (for a peer's cells).
    pub fn enforce(self, min: u64) -> Cell {
        match self.count {
            Some(n) if n >= min && !self.suppressed => self,
            _ => Cell {
                count: None,
                suppressed: true,
            },
        }
    }
}

/// A party's totals: what each side reports to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Profiles holding at least one identifier of the compared kinds.
    pub profiles_considered: Cell,
    /// Of those, the ones left out for lack of consent for the purpose.
    pub excluded_no_consent: Cell,
    /// Consented profiles with at least one identifier the other side also holds.
    pub shared_profiles: Cell,
}

impl Totals {
    fn cells(&self) -> [Cell; 3] {
        [
            self.profiles_considered,
            self.excluded_no_consent,
            self.shared_profiles,
        ]
    }

    /// The same totals with suppression under `min` applied again.
    pub fn enforce(self, min: u64) -> Totals {
        Totals {
            profiles_considered: self.profiles_considered.enforce(min),
            excluded_no_consent: self.excluded_no_consent.enforce(min),
            shared_profiles: self.shared_profiles.enforce(min),
        }
    }
}

/// One shown cell of a breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakdownCell {
    /// The attribute's value; `null` for profiles without one.
    pub value: Option<String>,
    pub count: u64,
}

/// The shared profiles counted by one attribute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Breakdown {
    /// Cells at or over the minimum group size, by value.
    pub cells: Vec<BreakdownCell>,
    /// Cells under it, left out with their values.
    pub suppressed_cells: u64,
}

/// The output of one side.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub protocol: &'static str,
    pub collaboration: String,
    pub kinds: Vec<String>,
    pub purpose: String,
    /// The minimum group size both sides applied (the larger of their settings).
    pub min_group_size: u64,
    pub own: Totals,
    /// The other side's totals as it reported them (suppression applied again here).
    pub peer: Totals,
    /// This side's shared profiles by attribute (a profile with several sources counts
    /// under each).
    pub breakdowns: BTreeMap<String, Breakdown>,
    /// Cells of this side's totals and breakdowns that were suppressed.
    pub suppressed_cells: u64,
}

/// This side's totals, `shared[i]` telling whether member `i` is shared.
pub fn totals(population: &Population, shared: &[bool], min: u64) -> Totals {
    debug_assert_eq!(shared.len(), population.members.len());
    Totals {
        profiles_considered: Cell::new(population.considered, min),
        excluded_no_consent: Cell::new(population.excluded_no_consent, min),
        shared_profiles: Cell::new(shared.iter().filter(|s| **s).count() as u64, min),
    }
}

/// Everything a run outputs.
pub struct Outcome<'a> {
    pub protocol: &'static str,
    pub collaboration: &'a str,
    pub selection: &'a Selection,
    pub min_group_size: u64,
    pub own: Totals,
    pub peer: Totals,
}

/// The report of a run, with the breakdowns of this side's shared members.
pub fn report(outcome: Outcome<'_>, population: &Population, shared: &[bool]) -> Report {
    let min = outcome.min_group_size;
    let mut breakdowns = BTreeMap::new();
    for (i, name) in outcome.selection.breakdowns.iter().enumerate() {
        let mut counts: BTreeMap<Option<&str>, u64> = BTreeMap::new();
        for (member, _) in population
            .members
            .iter()
            .zip(shared)
            .filter(|(_, shared)| **shared)
        {
            for value in member.attributes.get(i).into_iter().flatten() {
                *counts.entry(value.as_deref()).or_default() += 1;
            }
        }
        let (shown, hidden): (Vec<_>, Vec<_>) = counts.into_iter().partition(|(_, n)| *n >= min);
        breakdowns.insert(
            name.clone(),
            Breakdown {
                cells: shown
                    .into_iter()
                    .map(|(value, count)| BreakdownCell {
                        value: value.map(str::to_owned),
                        count,
                    })
                    .collect(),
                suppressed_cells: hidden.len() as u64,
            },
        );
    }
    let suppressed_cells = outcome.own.cells().iter().filter(|c| c.suppressed).count() as u64
        + breakdowns.values().map(|b| b.suppressed_cells).sum::<u64>();
    Report {
        protocol: outcome.protocol,
        collaboration: outcome.collaboration.to_owned(),
        kinds: outcome.selection.kinds.clone(),
        purpose: outcome.selection.purpose.clone(),
        min_group_size: min,
        own: outcome.own,
        peer: outcome.peer.enforce(min),
        breakdowns,
        suppressed_cells,
    }
}

#[cfg(test)]
mod tests {
    use super::super::population::Member;
    use super::*;

    #[test]
    fn small_counts_are_suppressed_everywhere() {
        let member = |s: &str| Member {
            attributes: vec![vec![Some(s.to_owned())]],
        };
        let mut pop = Population {
            considered: 30,
            excluded_no_consent: 2,
            ..Population::default()
        };
        pop.members = (0..12)
            .map(|i| member(if i < 11 { "crm" } else { "kiosk" }))
            .collect();
        let shared = vec![true; 12];
        let selection = Selection {
            kinds: vec!["email".into()],
            purpose: "partner_sharing".into(),
            breakdowns: vec!["source".into()],
        };
        let own = totals(&pop, &shared, 10);
        let peer = Totals {
            profiles_considered: Cell {
                count: Some(3),
                suppressed: false,
            },
            ..own
        };
        let r = report(
            Outcome {
                protocol: "ecdh",
                collaboration: "c",
                selection: &selection,
                min_group_size: 10,
                own,
                peer,
            },
            &pop,
            &shared,
        );
        assert_eq!(r.own.profiles_considered.count, Some(30));
        assert_eq!(
            r.own.excluded_no_consent,
            Cell {
                count: None,
                suppressed: true
            }
        );
        assert_eq!(r.own.shared_profiles.count, Some(12));
        assert!(
            r.peer.profiles_considered.suppressed,
            "a peer's small count is suppressed here too"
        );
        let b = &r.breakdowns["source"];
        assert_eq!(
            b.cells,
            vec![BreakdownCell {
                value: Some("crm".into()),
                count: 11
            }]
        );
        assert_eq!(b.suppressed_cells, 1);
        assert_eq!(r.suppressed_cells, 2);
        let json = serde_json::to_string(&r).expect("json");
        assert!(
            !json.contains("kiosk"),
            "a suppressed cell's label is not shown: {json}"
        );
    }
}
