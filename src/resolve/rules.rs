//! Identity rules: the priority order of identifier kinds, per-kind limits of distinct values
//! per profile, source trust order and survivorship strategies, compiled from settings.
//!
//! A merge that would give a profile more distinct values of a kind than its limit is
//! refused; the rule is recorded as `max_per_profile:<kind>=<limit>`.

use rustc_hash::FxHashMap as HashMap;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::Settings;
use crate::profile::survivorship::Strategy;

/// Compiled identity and survivorship rules.
#[derive(Debug, Clone)]
pub struct Rules {
    kind_rank: HashMap<String, usize>,
    limits: HashMap<String, usize>,
    source_rank: HashMap<String, usize>,
    default_strategy: Strategy,
    strategies: HashMap<String, Strategy>,
    pub household_max_members: usize,
    untrusted: HashMap<String, ()>,
    verified_kinds: Vec<String>,
    /// Probabilistic matching, when enabled.
    pub matcher: Option<std::sync::Arc<super::probable::Matcher>>,
    /// The governance secret: erased identifiers are suppressed by their keyed hash.
    pub secret: Option<std::sync::Arc<Vec<u8>>>,
    /// Write change-feed records (`feed.enabled`).
    pub change_feed: bool,
    /// What event aggregates profiles keep (`[audiences]`).
    pub activity: crate::activation::activity::ActivityRules,
    /// The audiences every rendered profile is evaluated against.
    pub audiences: std::sync::Arc<crate::activation::Registry>,
}

impl Rules {
    pub fn from_settings(settings: &Settings) -> Result<Self, String> {
        let mut kind_rank = HashMap::default();
        for (i, k) in settings.rules.priority.iter().enumerate() {
            if kind_rank.insert(k.clone(), i).is_some() {
                return Err(format!("rules.priority: kind {k:?} is listed twice"));
            }
        }
        for (k, l) in &settings.rules.limits {
            if *l == 0 {
                return Err(format!("rules.limits.{k}: a limit must be at least 1"));
            }
        }
        if settings.feed.retention_hours == 0 {
            return Err("feed.retention_hours: must be at least 1".into());
        }
        if settings.server.body_idle_timeout_seconds == 0 {
            return Err("server.body_idle_timeout_seconds: must be at least 1".into());
        }
        if settings.retention.interval_seconds == 0 {
            return Err("retention.interval_seconds: must be at least 1".into());
        }
        if settings.audit.rotate_mb == 0 {
            return Err("audit.rotate_mb: must be at least 1".into());
        }
        if settings.retention.events.is_some()
            && settings.graph.store != crate::config::GraphBackend::Embedded
        {
            return Err("retention.events: ageing raw events needs the embedded store (graph.store = \"embedded\"); a graph database's events are kept by its own retention".into());
        }
        Ok(Rules {
            change_feed: settings.feed.enabled,
            kind_rank,
            limits: settings
                .rules
                .limits
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            source_rank: settings
                .sources
                .priority
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i))
                .collect(),
            default_strategy: settings.survivorship.default,
            strategies: settings
                .survivorship
                .traits
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            household_max_members: settings.households.max_members.max(1),
            untrusted: settings
                .sources
                .untrusted
                .iter()
                .map(|s| (s.clone(), ()))
                .collect(),
            verified_kinds: settings.rules.verified_kinds.clone(),
            matcher: match settings.matching.enabled {
                true => Some(std::sync::Arc::new(
                    super::probable::Matcher::from_settings(
                        &settings.matching,
                        &settings.storage.data_dir,
                    )?,
                )),
                false => None,
            },
            secret: None,
            activity: {
                let a = &settings.audiences;
                if a.activity_days == 0 || a.activity_days > 3660 {
                    return Err("audiences.activity_days: between 1 and 3660 days".into());
                }
                if let Some(bad) = a
                    .sum_properties
                    .iter()
                    .find(|p| !crate::ingest::event::valid_trait_name(p))
                {
                    return Err(format!(
                        "audiences.sum_properties: {bad:?} is not a property name (1 to 64 letters, digits, '_', '-' or '.')"
                    ));
                }
                if a.refresh_seconds == 0 {
                    return Err("audiences.refresh_seconds: at least 1".into());
                }
                crate::activation::activity::ActivityRules {
                    sum_properties: a.sum_properties.iter().cloned().collect(),
                    days: a.activity_days,
                }
            },
            audiences: Default::default(),
        })
    }

    /// Lower is more important; unlisted kinds rank after every listed one.
    pub fn kind_rank(&self, kind: &str) -> usize {
        self.kind_rank.get(kind).copied().unwrap_or(usize::MAX)
    }

    pub fn limit(&self, kind: &str) -> Option<usize> {
        self.limits.get(kind).copied()
    }

    pub fn source_rank(&self, source: &str) -> usize {
        self.source_rank.get(source).copied().unwrap_or(usize::MAX)
    }

    pub fn strategy(&self, trait_name: &str) -> Strategy {
        // A purpose's consent is always its latest statement, whatever the settings.
        if trait_name.starts_with(crate::ingest::event::CONSENT_TRAIT_PREFIX) {
            return Strategy::MostRecent;
        }
        self.strategies
            .get(trait_name)
            .copied()
            .unwrap_or(self.default_strategy)
    }

    pub fn is_untrusted(&self, source: &str) -> bool {
        self.untrusted.contains_key(source)
    }

    /// Whether identifiers (kind -> values) include a verified kind.
    pub fn holds_verified<'a, V: IsEmpty + 'a>(
        &self,
        identifiers: impl IntoIterator<Item = (&'a String, &'a V)>,
    ) -> bool {
        identifiers
            .into_iter()
            .any(|(k, v)| !v.is_empty_set() && self.verified_kinds.contains(k))
    }

    /// The rule an untrusted source breaks by merging these two groups, if it does.
    /// (The verification checks only run for untrusted sources.)
    pub fn poisoning(
        &self,
        source: &str,
        a_verified: impl FnOnce() -> bool,
        b_verified: impl FnOnce() -> bool,
    ) -> Option<String> {
        (self.is_untrusted(source) && a_verified() && b_verified())
            .then(|| format!("untrusted_source:{source}"))
    }

    /// The suppression-list hash of an identifier key (`None` without a secret).
    pub fn suppression_hash(&self, key: &str) -> Option<String> {
        self.secret
            .as_ref()
            .map(|s| crate::governance::keyed_hash(s, &format!("suppress:{key}")))
    }

    pub fn limit_rule(&self, kind: &str) -> String {
        format!(
            "max_per_profile:{kind}={}",
            self.limit(kind).unwrap_or(usize::MAX)
        )
    }

    /// The rule a union of `have` and `add` would break, if any.
    pub fn violation(
        &self,
        have: &HashMap<String, BTreeSet<String>>,
        add: &BTreeMap<String, BTreeSet<String>>,
    ) -> Option<String> {
        for (kind, values) in add {
            let Some(limit) = self.limit(kind) else {
                continue;
            };
            let union = match have.get(kind) {
                Some(h) => h.len() + values.iter().filter(|v| !h.contains(*v)).count(),
                None => values.len(),
            };
            if union > limit {
                return Some(self.limit_rule(kind));
            }
        }
        None
    }
}

impl Default for Rules {
    fn default() -> Self {
        // The default settings always compile.
        match Rules::from_settings(&Settings::default()) {
            Ok(r) => r,
            Err(e) => unreachable!("default rules are valid: {e}"),
        }
    }
}

/// A set of identifier values (`BTreeSet` in profiles, `BTreeSet` in a merge group).
pub trait IsEmpty {
    fn is_empty_set(&self) -> bool;
}

impl IsEmpty for BTreeSet<String> {
    fn is_empty_set(&self) -> bool {
        self.is_empty()
    }
}
