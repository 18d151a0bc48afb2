//! A generated history with a known signal, for tests and demonstrations: each person's
//! chance to buy depends on a hidden taste that shows in their `tier` trait (noisily) and
//! in what they spent before, while how often they browse, and when they started or
//! stopped, is unrelated to it. So recency and frequency say little, the tier and the
//! amounts say much, and a model that sees them should clearly beat a recency/frequency
//! baseline. Deterministic for a seed.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// 2026-03-01T00:00:00Z: the generated history starts here.
pub const START_MS: i64 = 1_772_323_200_000;
/// Days the generated history spans.
pub const DAYS: i64 = 180;
const DAY_MS: i64 = 86_400_000;

/// One generated person.
#[derive(Debug, Clone)]
pub struct Person {
    pub email: String,
    pub customer_id: String,
    pub tier: &'static str,
    /// The hidden taste (standard normal) the purchase rate follows.
    pub taste: f64,
    /// `Some(true)` granted `analytics`, `Some(false)` denied it, `None` never said.
    pub consent: Option<bool>,
}

/// The generated events (native event JSON, in time order per person) and the people.
#[derive(Debug, Clone)]
pub struct Generated {
    pub events: Vec<Value>,
    pub people: Vec<Person>,
}

fn normal(rng: &mut StdRng) -> f64 {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

fn at(day: i64, rng: &mut StdRng) -> String {
    let ms = START_MS + day * DAY_MS + rng.gen_range(0..DAY_MS);
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `people` people over [`DAYS`] days. With `consent`, each person's first event states
/// their `analytics` consent (85 % granted, 10 % denied, 5 % silent); without it no event
/// carries consent.
pub fn generate(people: usize, seed: u64, consent: bool) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Generated {
        events: Vec::new(),
        people: Vec::with_capacity(people),
    };
    for i in 0..people {
        let taste = normal(&mut rng);
        let shown = taste + 0.6 * normal(&mut rng);
        let tier = if shown > 0.9 {
            "gold"
        } else if shown > -0.1 {
            "silver"
        } else {
            "bronze"
        };
        let stated = match rng.gen_range(0..100) {
            0..85 => Some(true),
            85..95 => Some(false),
            _ => None,
        };
        let person = Person {
            email: format!("person{i}@example.com"),
            customer_id: format!("C{i:05}"),
            tier,
            taste,
            consent: if consent { stated } else { None },
        };
        let cookie = format!("ck-{i:05}");
        let start = rng.gen_range(0..120);
        let stop = if rng.gen_bool(0.3) {
            rng.gen_range(start + 1..=DAYS)
        } else {
            DAYS
        };
        // Browsing: unrelated to taste.
        let views_per_day = (0.12f64.ln() + 0.7 * normal(&mut rng)).exp();
        // Buying: follows taste only.
        let buys_per_day = (0.0035 * (1.5 * taste).exp()).min(0.2);
        let mut identify = json!({
            "event_id": format!("g{i}-0"),
            "source": "crm",
            "type": "identify",
            "timestamp": at(start, &mut rng),
            "identifiers": {
                "email": person.email,
                "customer_id": person.customer_id,
                "cookie_id": cookie,
            },
            "traits": { "tier": tier, "newsletter": rng.gen_bool(0.5) },
        });
        if let Some(granted) = person.consent {
            identify["consent"] =
                json!({ "analytics": if granted { "granted" } else { "denied" } });
        }
        out.events.push(identify);
        let mut n = 1;
        for day in start..stop {
            let views =
                views_per_day.floor() as usize + usize::from(rng.gen_bool(views_per_day.fract()));
            for _ in 0..views {
                out.events.push(json!({
                    "event_id": format!("g{i}-{n}"),
                    "source": "web",
                    "type": "page_view",
                    "timestamp": at(day, &mut rng),
                    "identifiers": { "cookie_id": cookie },
                    "properties": { "page": "home" },
                }));
                n += 1;
            }
            if rng.gen_bool(buys_per_day) {
                let amount = (20.0 + 60.0 * (0.5 * taste).exp() * rng.gen_range(0.5..1.5)) as i64;
                out.events.push(json!({
                    "event_id": format!("g{i}-{n}"),
                    "source": "pos",
                    "type": "purchase",
                    "timestamp": at(day, &mut rng),
                    "identifiers": { "customer_id": person.customer_id },
                    "properties": { "amount": amount },
                }));
                n += 1;
            }
        }
        out.people.push(person);
    }
    out
}

/// The generated events as a [`super::history::History`], each person one profile, as
/// if every event had been stored and resolved (no store needed).
pub fn history_of(g: &Generated) -> super::history::History {
    use crate::model::{ident_key, ProfileId, StoredEvent};
    let mut h = super::history::History::default();
    for e in &g.events {
        let owner = e["event_id"]
            .as_str()
            .and_then(|id| id.strip_prefix('g'))
            .and_then(|id| id.split('-').next())
            .and_then(|i| i.parse::<u64>().ok())
            .unwrap_or_default();
        let timestamp = e["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(0, |t| t.timestamp_millis());
        let identifiers = e["identifiers"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| ident_key(k, v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        let event = StoredEvent {
            event_id: e["event_id"].as_str().unwrap_or_default().to_owned(),
            seq: 0,
            source: e["source"].as_str().unwrap_or_default().to_owned(),
            event_type: e["type"].as_str().unwrap_or_default().to_owned(),
            timestamp,
            received_at: timestamp,
            identifiers,
            traits: e["traits"]
                .as_object()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            properties: e["properties"].as_object().cloned().unwrap_or_default(),
            aged_at: None,
        };
        h.add(ProfileId::from_seq(owner + 1), &event);
    }
    h.sort();
    h
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Period;
    use crate::scoring::{train, Access, Plan};

    #[test]
    fn on_generated_data_the_model_beats_recency_and_frequency() {
        let g = generate(1200, 7, false);
        let h = history_of(&g);
        let everyone: BTreeMap<_, _> = h
            .profiles
            .keys()
            .map(|id| {
                let a = Access {
                    consented: true,
                    identifier: None,
                };
                (id.clone(), a)
            })
            .collect();
        let plan = Plan {
            label: "purchase".into(),
            horizon: Period::from_seconds(30 * 86_400),
            purpose: "analytics".into(),
        };
        let t = train(&h, &everyone, &plan).expect("trains");
        let r = &t.report;
        eprintln!(
            "model AUC {:.3} baseline AUC {:.3}; train {}/{} test {}/{}; brier {:.4} vs {:.4}; ece {:.4}; top {:?}",
            r.model.auc,
            r.baseline.auc,
            r.train.positives,
            r.train.profiles,
            r.test.positives,
            r.test.profiles,
            r.model.brier,
            r.baseline.brier,
            r.model.ece,
            r.top_weights
        );
        assert!(r.model.auc > 0.7, "{r:?}");
        assert!(r.model.auc > r.baseline.auc + 0.05, "{r:?}");
        assert!(t.scores.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
    }
}
