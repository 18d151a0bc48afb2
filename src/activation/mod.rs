//! Activation: audiences over golden profiles, kept current as the graph changes.
//!
//! - [`filter`]: the audience filter language (typed AST, checked at definition time,
//!   evaluated by our code only).
//! - [`activity`]: the per-profile event aggregates filters read.
//! - Here: an audience's stored definition and counts, the keys of the activation rows
//!   (`GraphStore::activation`), and the [`Registry`] of compiled audiences the writer
//!   evaluates every profile it renders against (`resolve::audiences`).
//!
//! Rows (see `Changes::activation`):
//! `d\0{audience}` definition, `c\0{audience}` counts, `m\0{audience}\0{profile}` a member,
//! `h\0{audience}\0{time be64}` a point of the size history.

pub mod activity;
pub mod filter;

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::model::{GoldenProfile, ProfileState};
use filter::{EventTypes, Expr, Subject};

/// Longest audience id.
pub const MAX_ID_CHARS: usize = 64;

/// An audience as defined (and stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceDef {
    pub id: String,
    #[serde(default)]
    pub description: String,
    /// The filter as written.
    pub filter: String,
    /// The consent purpose a member must have granted.
    pub purpose: String,
    /// Destinations (`[[destinations]]` names) members are delivered to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Name of the key that defined it.
    pub created_by: String,
    /// When the first full evaluation finished (`None`: members are still being computed).
    #[serde(default)]
    pub ready_at: Option<i64>,
}

/// An audience's counts, kept in the same write as its membership changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudienceCounts {
    /// Members (filter matched, purpose granted).
    pub size: u64,
    /// Profiles the filter matched that were left out: the purpose is not granted.
    pub excluded_no_consent: u64,
}

/// A valid audience id: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_ID_CHARS`].
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some('a'..='z' | '0'..='9'))
        && id.len() <= MAX_ID_CHARS
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

pub fn def_key(id: &str) -> Vec<u8> {
    [b"d\0", id.as_bytes()].concat()
}

pub fn counts_key(id: &str) -> Vec<u8> {
    [b"c\0", id.as_bytes()].concat()
}

pub fn member_prefix(id: &str) -> Vec<u8> {
    [b"m\0", id.as_bytes(), b"\0"].concat()
}

pub fn member_key(id: &str, profile: &str) -> Vec<u8> {
    [member_prefix(id), profile.as_bytes().to_vec()].concat()
}

pub fn history_prefix(id: &str) -> Vec<u8> {
    [b"h\0", id.as_bytes(), b"\0"].concat()
}

pub fn history_key(id: &str, at: i64) -> Vec<u8> {
    [history_prefix(id), at.to_be_bytes().to_vec()].concat()
}

/// A defined audience with its filter compiled.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub def: AudienceDef,
    pub expr: Expr,
}

/// The audiences the writer evaluates (compiled once, when defined or at start).
#[derive(Debug, Default)]
pub struct Registry {
    audiences: RwLock<Vec<Arc<Compiled>>>,
    /// Audiences being deleted: profiles still listing them are evaluated (and leave them)
    /// until the deletion's pass over every profile is done.
    retiring: RwLock<BTreeSet<String>>,
}

impl Registry {
    pub fn snapshot(&self) -> Vec<Arc<Compiled>> {
        self.audiences.read().map(|a| a.clone()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.audiences.read().map(|a| a.is_empty()).unwrap_or(true)
    }

    /// Adds or replaces the audience with the same id.
    pub fn insert(&self, compiled: Compiled) {
        if let Ok(mut a) = self.audiences.write() {
            a.retain(|c| c.def.id != compiled.def.id);
            a.push(Arc::new(compiled));
        }
    }

    /// Unregisters an audience whose members are about to leave it (see [`Registry::retired`]).
    pub fn retire(&self, id: &str) {
        if let Ok(mut a) = self.audiences.write() {
            a.retain(|c| c.def.id != id);
        }
        if let Ok(mut r) = self.retiring.write() {
            r.insert(id.to_owned());
        }
    }

    /// Every profile has left the retired audience.
    pub fn retired(&self, id: &str) {
        if let Ok(mut r) = self.retiring.write() {
            r.remove(id);
        }
    }

    /// Whether rendered profiles must be evaluated: an audience is defined or being deleted.
    /// When not, no profile holds a membership, and the write path skips audiences entirely.
    pub fn active(&self) -> bool {
        !self.is_empty() || self.retiring.read().map(|r| !r.is_empty()).unwrap_or(true)
    }

    pub fn ids(&self) -> BTreeSet<String> {
        self.snapshot().iter().map(|c| c.def.id.clone()).collect()
    }
}

/// One profile as a filter sees it: its golden profile (chosen traits, identifiers,
/// sources, consents), its state (event aggregates), and whether it shares an address or
/// a device with someone.
pub struct Profile<'a> {
    pub golden: &'a GoldenProfile,
    pub state: &'a ProfileState,
    pub household: bool,
}

impl Subject for Profile<'_> {
    fn trait_value(&self, name: &str) -> Option<serde_json::Value> {
        let t = &self.golden.traits;
        match name {
            "first_name" => t.first_name.clone(),
            "last_name" => t.last_name.clone(),
            "birth_date" => t.birth_date.clone(),
            "address" => t.address.clone(),
            other => t.extra.get(other).cloned(),
        }
    }

    fn has_kind(&self, kind: &str) -> bool {
        self.identifiers(kind) > 0
    }

    fn identifiers(&self, kind: &str) -> usize {
        self.golden.identifiers.get(kind).map_or(0, |v| v.len())
    }

    fn seen_by(&self, source: &str) -> bool {
        self.golden.sources.contains(source)
    }

    fn consented(&self, purpose: &str) -> bool {
        self.golden.consented(purpose)
    }

    fn in_household(&self) -> bool {
        self.household
    }

    fn event_count(&self) -> u64 {
        self.state.event_count
    }

    fn first_seen(&self) -> i64 {
        self.state.first_seen
    }

    fn last_seen(&self) -> i64 {
        self.state.last_seen
    }

    fn count(&self, types: &EventTypes, since: Option<i64>) -> f64 {
        activity::count(&self.state.activity, types, since)
    }

    fn sum(&self, types: &EventTypes, property: &str, since: Option<i64>) -> f64 {
        activity::sum(&self.state.activity, types, property, since)
    }

    fn last_of(&self, types: &EventTypes) -> Option<i64> {
        activity::last(&self.state.activity, types)
    }
}

/// Where a profile stands in an audience: a member, matched but left out for consent,
/// or neither.
pub fn standing(c: &Compiled, p: &Profile<'_>, now: i64) -> Option<bool> {
    filter::matches(&c.expr, p, now).then(|| p.golden.consented(&c.def.purpose))
}
