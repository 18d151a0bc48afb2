//! Batch linking over a set of records with the unsupervised model: blocking, `u` from
//! random pairs, `m` and the prior by EM over the blocked pairs, then every blocked pair
//! whose match probability reaches the threshold is a link. `idgraph eval --probabilistic`
//! uses it to measure what the model achieves on labelled data before it runs inside the
//! resolver.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::blocking;
use super::compare::{compare_all, normalize, Attributes, Field, Level};
use super::frequency::Frequencies;
use super::model::{Model, PriorEstimate};

/// Blocks larger than this are skipped: a key shared by that many records (a common name
/// in a big city) says too little to be worth the comparisons.
pub const MAX_BLOCK: usize = 200;
/// Random pairs used to estimate `u`.
pub const RANDOM_PAIRS: usize = 50_000;

/// Reads a birth date written `YYYY-MM-DD` or `YYYYMMDD`; anything else is missing.
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let t = text.trim();
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y%m%d"))
        .ok()
}

/// The comparable attributes of an event in idgraph's wire format: `traits.first_name`,
/// `last_name`, `birth_date` (or an extra `dob` trait, read leniently) and
/// `traits.address.{street, city, postal_code}`.
pub fn attributes(event: &Value) -> Attributes {
    let traits = event.get("traits").and_then(Value::as_object);
    let email = email(event);
    match traits {
        Some(t) => traits_attributes(|name| t.get(name), email),
        None => traits_attributes(|_| None, email),
    }
}

/// The comparable attributes of a trait map (`name -> value`, the address an object) and
/// an email: `first_name`, `last_name`, `birth_date` (or an extra `dob` trait, read
/// leniently), `address.{street, city, postal_code}`.
pub fn traits_attributes<'a>(
    get: impl Fn(&str) -> Option<&'a Value>,
    email: Option<String>,
) -> Attributes {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).and_then(normalize);
    let address = |field: &str| text(get("address").and_then(|a| a.get(field)));
    let dob = ["birth_date", "dob", crate::ingest::event::BIRTH_DATE_RAW]
        .iter()
        .find_map(|name| get(name).and_then(Value::as_str).and_then(parse_date));
    Attributes {
        first_name: text(get("first_name")),
        last_name: text(get("last_name")),
        birth_date: dob,
        postcode: address("postal_code"),
        city: address("city"),
        street: address("street"),
        email,
    }
}

/// The first email identifier of an event, lowercased.
fn email(event: &Value) -> Option<String> {
    let v = event.pointer("/identifiers/email")?;
    let first = match v {
        Value::Array(a) => a.first()?.as_str()?,
        other => other.as_str()?,
    };
    let t = first.trim().to_lowercase();
    (!t.is_empty()).then_some(t)
}

/// What a batch run found.
#[derive(Debug)]
pub struct Linked {
    pub model: Model,
    /// How the model's prior was estimated.
    pub prior: PriorEstimate,
    /// The records' value frequencies the scores were adjusted with.
    pub tf: Frequencies,
    /// `(i, j, probability)` for every blocked pair at or above the threshold.
    pub links: Vec<(usize, usize, f64)>,
    /// Distinct candidate pairs compared.
    pub compared: usize,
}

/// The distinct pairs of records sharing a key (blocks over [`MAX_BLOCK`] skipped).
fn blocked_pairs(
    records: &[Attributes],
    keys: impl Fn(&Attributes) -> Vec<String>,
) -> Vec<(usize, usize)> {
    let mut blocks: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        for key in keys(r) {
            blocks.entry(key).or_default().push(i);
        }
    }
    let mut pairs: HashSet<(usize, usize)> = HashSet::new();
    for members in blocks.values().filter(|m| m.len() <= MAX_BLOCK) {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                if i != j {
                    pairs.insert((i.min(j), i.max(j)));
                }
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs
}

/// A model estimated from records.
#[derive(Debug)]
pub struct Trained {
    pub model: Model,
    pub blocked_pairs: usize,
    pub em_iterations: usize,
    pub prior: PriorEstimate,
    /// Fields no training key could estimate `m` for (no key's pairs hold them); they keep
    /// the conservative model's `m`.
    pub untrained: Vec<Field>,
}

impl Trained {
    /// The model file of this training run over `records` records.
    pub fn into_file(self, records: usize) -> super::model::ModelFile {
        super::model::ModelFile {
            version: super::model::MODEL_FILE_VERSION,
            model: self.model,
            records,
            blocked_pairs: self.blocked_pairs,
            em_iterations: self.em_iterations,
            trained_at: chrono::Utc::now().to_rfc3339(),
            prior: Some(self.prior),
            untrained_fields: self.untrained.iter().map(|f| f.name().to_owned()).collect(),
        }
    }
}

/// The training keys (by prefix) and the fields each one fixes: pairs that share a key
/// agree on its fields by construction (and on the city, given the postcode), so those
/// pairs say nothing about how often true matches agree on them. Every field is left free
/// by some key: the four tight blocking keys all hold the last name, so `fd:` (first name
/// and birth date, a training key only) is where the last name's `m` is learned.
const KEY_FIELDS: [(&str, &[Field]); 5] = [
    ("sx:", &[Field::LastName, Field::BirthDate]),
    ("pc:", &[Field::Postcode, Field::FirstName, Field::City]),
    ("nm:", &[Field::FirstName, Field::LastName]),
    ("dob:", &[Field::BirthDate, Field::LastName]),
    ("fd:", &[Field::FirstName, Field::BirthDate]),
];

/// The keys training blocks on: the tight blocking keys and `fd:` (see [`KEY_FIELDS`]).
fn training_keys(a: &Attributes) -> Vec<String> {
    let mut keys = blocking::keys(a);
    if let (Some(first), Some(dob)) = (&a.first_name, &a.birth_date) {
        keys.push(format!("fd:{first}:{}", dob.format("%Y%m%d")));
    }
    keys
}

/// Pairs a deterministic rule links, needed before its estimate of the prior is used.
const MIN_RULE_PAIRS: u64 = 10;

/// The deterministic rules the prior is estimated from, in order of preference: the fields
/// that must all agree exactly.
const PRIOR_RULES: [(&str, &[Field]); 3] = [
    (
        "same first name, last name and birth date",
        &[Field::FirstName, Field::LastName, Field::BirthDate],
    ),
    (
        "same first name, last name and postcode",
        &[Field::FirstName, Field::LastName, Field::Postcode],
    ),
    ("same email", &[Field::Email]),
];

/// The prior implied by a deterministic rule, as Splink's
/// `estimate_probability_two_random_records_match`, without an assumed recall: among the
/// records holding the rule's fields, the rule links `k` of `n` pairs; true matches pass
/// it with probability `r = Π m_exact`, strangers with `c = Π u_exact`, so the true pairs
/// are `(k - n·c) / (r - c)`, over `n`. `None` for a rule too few pairs pass.
fn deterministic_prior(records: &[Attributes], model: &Model) -> Option<(f64, &'static str, u64)> {
    for (rule, fields) in PRIOR_RULES {
        let mut groups: HashMap<Vec<String>, u64> = HashMap::new();
        let mut holders = 0u64;
        for r in records {
            let key: Option<Vec<String>> = fields
                .iter()
                .map(|f| super::frequency::value_of(*f, r).map(|v| v.into_owned()))
                .collect();
            if let Some(key) = key {
                holders += 1;
                *groups.entry(key).or_default() += 1;
            }
        }
        let linked: u64 = groups.values().map(|c| c * (c - 1) / 2).sum();
        if linked < MIN_RULE_PAIRS {
            continue;
        }
        let n = (holders * (holders - 1) / 2) as f64;
        let (mut recall, mut chance) = (1.0, 1.0);
        for f in fields {
            let i = *f as usize;
            recall *= model.m[i][0];
            chance *= model.u[i][0];
        }
        if recall <= chance {
            continue;
        }
        let matches = ((linked as f64 - n * chance) / (recall - chance)).max(linked as f64 * 0.5);
        return Some(((matches / n).clamp(1e-9, 0.5), rule, linked));
    }
    None
}

/// Estimates a model from `records` without labels, as Splink does: `u` from random
/// pairs; `m` by EM once per tight blocking key over that key's pairs, with the key's own
/// fields masked (they agree by construction, so EM would otherwise latch onto them: in a
/// dense town, "same postcode" looks like a class of its own), each field's `m` averaged
/// over the keys that do not fix it; then the share of matches among all tight pairs with
/// `m` and `u` fixed, restated against all pairs (as Splink's "two random records
/// match"), so blocking does not inflate a pair's probability.
pub fn train(records: &[Attributes], seed: u64) -> Trained {
    // EM finds *a* two-class split; starting from typical match rates points it at
    // "same person" rather than, say, "same town".
    let mut model = Model {
        prior: 0.1,
        ..Model::conservative()
    };
    if records.len() >= 2 {
        let mut rng = StdRng::seed_from_u64(seed);
        let random: Vec<Vec<Level>> = (0..RANDOM_PAIRS)
            .filter_map(|_| {
                let (i, j) = (
                    rng.gen_range(0..records.len()),
                    rng.gen_range(0..records.len()),
                );
                (i != j).then(|| compare_all(&records[i], &records[j]).to_vec())
            })
            .collect();
        model.estimate_u(&random);
    }
    let mut sums: Vec<Option<Vec<f64>>> = vec![None; Field::ALL.len()];
    let mut runs = vec![0usize; Field::ALL.len()];
    let mut em_iterations = 0;
    for (prefix, fixed) in KEY_FIELDS {
        let pairs = blocked_pairs(records, |r| {
            training_keys(r)
                .into_iter()
                .filter(|k| k.starts_with(prefix))
                .collect()
        });
        if pairs.is_empty() {
            continue;
        }
        let masked: Vec<Vec<Level>> = pairs
            .iter()
            .map(|&(i, j)| {
                let mut v = compare_all(&records[i], &records[j]);
                for f in fixed {
                    v[*f as usize] = Level::Missing;
                }
                v.to_vec()
            })
            .collect();
        let mut run = model.clone();
        em_iterations += run.train_m(&masked, 100);
        for (f, field) in Field::ALL.iter().enumerate() {
            // A field this key fixes, or that no pair holds, learns nothing here.
            if fixed.contains(field) || masked.iter().all(|v| v[f] == Level::Missing) {
                continue;
            }
            let sum = sums[f].get_or_insert_with(|| vec![0.0; field.levels()]);
            for (total, m) in sum.iter_mut().zip(&run.m[f]) {
                *total += m;
            }
            runs[f] += 1;
        }
    }
    let mut untrained = Vec::new();
    for (f, sum) in sums.into_iter().enumerate() {
        match sum {
            Some(sum) => model.m[f] = sum.into_iter().map(|t| t / runs[f] as f64).collect(),
            None => untrained.push(Field::ALL[f]),
        }
    }
    let pairs = blocked_pairs(records, blocking::keys);
    let vectors: Vec<Vec<Level>> = pairs
        .iter()
        .map(|&(i, j)| compare_all(&records[i], &records[j]).to_vec())
        .collect();
    model.estimate_prior(&vectors, 100);
    let n = records.len() as f64;
    let all_pairs = (n * (n - 1.0) / 2.0).max(1.0);
    let em = (model.prior * pairs.len() as f64 / all_pairs).clamp(1e-9, 0.5);
    // EM's share of matches among blocked pairs counts every pair of look-alikes that
    // agree on common names as half a match; the pairs a strict rule links, corrected for
    // that rule's recall and chance agreements, say how many matches there are directly.
    let deterministic = deterministic_prior(records, &model);
    model.prior = deterministic.map_or(em, |(p, _, _)| p);
    Trained {
        model,
        blocked_pairs: pairs.len(),
        em_iterations,
        prior: PriorEstimate {
            em,
            deterministic: deterministic.map(|(p, _, _)| p),
            rule: deterministic.map(|(_, rule, _)| rule.to_owned()),
            rule_pairs: deterministic.map_or(0, |(_, _, k)| k),
            used: if deterministic.is_some() {
                "deterministic"
            } else {
                "em"
            }
            .to_owned(),
        },
        untrained,
    }
}

/// The value frequencies of `records` for the term-frequency adjusted `fields`.
pub fn frequencies(records: &[Attributes], fields: &[Field]) -> Frequencies {
    let f = Frequencies::new(fields);
    for r in records {
        f.observe(None, r);
    }
    f
}

/// The match probability of two records with term-frequency adjustments.
pub fn probability(model: &Model, tf: &Frequencies, a: &Attributes, b: &Attributes) -> f64 {
    model
        .score(&compare_all(a, b), &|f| tf.share(f, a))
        .probability
}

/// Links `records` with a model trained on them (no labels, see [`train`]); candidates
/// also come from the wide keys.
pub fn link(records: &[Attributes], threshold: f64, seed: u64, tf_fields: &[Field]) -> Linked {
    let trained = train(records, seed);
    let tf = frequencies(records, tf_fields);
    let candidates = blocked_pairs(records, |r| {
        let mut k = blocking::keys(r);
        k.extend(blocking::wide_keys(r));
        k
    });
    let links = candidates
        .iter()
        .filter_map(|&(i, j)| {
            let p = probability(&trained.model, &tf, &records[i], &records[j]);
            (p >= threshold).then_some((i, j, p))
        })
        .collect();
    Linked {
        model: trained.model,
        prior: trained.prior,
        tf,
        links,
        compared: candidates.len(),
    }
}

/// Mean match probability two clusters must have (over up to [`GUARD_SAMPLE`] members of
/// each) for a link between one member of each to join them. Chosen on the datasets of
/// docs/quality.md: 0.2 leaves FEBRL unchanged and raises fake_1000's precision; 0.5 cost
/// fake_1000 a tenth of its recall (records with blank names resemble their cluster weakly).
pub const GUARD: f64 = 0.2;
/// Members of each cluster compared by the guard.
pub const GUARD_SAMPLE: usize = 8;

fn root(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Joins the clusters `labels` (e.g. from shared identifiers) along `links`, strongest
/// first, with a guard against chaining: two clusters join only if their members match on
/// average ([`GUARD`]), not just the two records of the link. So one record that resembles
/// two different people cannot glue their clusters together, and a town of look-alikes
/// does not collapse into one profile.
pub fn cluster(
    labels: &[usize],
    records: &[Attributes],
    model: &Model,
    tf: &Frequencies,
    links: &[(usize, usize, f64)],
) -> Vec<usize> {
    let count = labels.iter().max().map_or(0, |m| m + 1);
    let mut parent: Vec<usize> = (0..count).collect();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (record, &label) in labels.iter().enumerate() {
        members[label].push(record);
    }
    let mut order: Vec<&(usize, usize, f64)> = links.iter().collect();
    order.sort_by(|x, y| y.2.total_cmp(&x.2));
    for &&(i, j, _) in &order {
        let (a, b) = (root(&mut parent, labels[i]), root(&mut parent, labels[j]));
        if a == b {
            continue;
        }
        let (sa, sb) = (
            &members[a][..members[a].len().min(GUARD_SAMPLE)],
            &members[b][..members[b].len().min(GUARD_SAMPLE)],
        );
        let mut total = 0.0;
        for &x in sa {
            for &y in sb {
                total += probability(model, tf, &records[x], &records[y]);
            }
        }
        if total / ((sa.len() * sb.len()).max(1) as f64) < GUARD {
            continue;
        }
        let (big, small) = if members[a].len() >= members[b].len() {
            (a, b)
        } else {
            (b, a)
        };
        let moved = std::mem::take(&mut members[small]);
        members[big].extend(moved);
        parent[small] = big;
    }
    labels.iter().map(|&l| root(&mut parent, l)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_guard_refuses_a_link_the_clusters_do_not_support() {
        let rec = |first: &str, last: &str, dob: &str, pc: &str| {
            attributes(
                &json!({"traits": {"first_name": first, "last_name": last, "dob": dob,
                                           "address": {"postal_code": pc}}}),
            )
        };
        let records = vec![
            rec("anna", "kowalski", "19800101", "1000"),
            rec("anna", "kowalski", "19800101", "1000"),
            rec("brian", "o'hara", "19551231", "9000"),
            rec("brian", "o'hara", "19551231", "9000"),
        ];
        let model = Model::default();
        let tf = Frequencies::new(&[]);
        // Two clusters (e.g. from shared identifiers) and one strong link between them
        // (a record that resembles both): the clusters as a whole do not match.
        let glued = cluster(&[0, 0, 1, 1], &records, &model, &tf, &[(1, 2, 0.99)]);
        assert_ne!(glued[0], glued[2]);
        // A link between records that do match joins their clusters.
        let joined = cluster(&[0, 1, 2, 2], &records, &model, &tf, &[(0, 1, 0.99)]);
        assert_eq!(joined[0], joined[1]);
        assert_ne!(joined[0], joined[2]);
    }

    #[test]
    fn attributes_come_from_the_wire_traits() {
        let e = json!({"traits": {"first_name": "Ann", "last_name": "Lee", "dob": "19800307",
                                  "address": {"street": "12 Oak St", "city": "Springfield", "postal_code": "12345"}}});
        let a = attributes(&e);
        assert_eq!(a.first_name.as_deref(), Some("ann"));
        assert_eq!(a.birth_date, NaiveDate::from_ymd_opt(1980, 3, 7));
        assert_eq!(a.postcode.as_deref(), Some("12345"));
        assert_eq!(
            attributes(&json!({"traits": {"dob": "19801307"}})).birth_date,
            None
        );
    }

    /// People with a name and birth date only, common surnames, half of them recorded
    /// twice (a typo in the last name now and then): the true pairs, and the records.
    fn names_and_dates(seed: u64) -> (usize, Vec<Attributes>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let surnames = ["smith", "jones", "taylor", "brown", "wilson"];
        let mut records = Vec::new();
        let mut pairs = 0;
        for i in 0..3_000 {
            let first: String = (0..6)
                .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
                .collect();
            let last = if i % 3 == 0 {
                surnames[i % surnames.len()].to_owned()
            } else {
                format!("{}son", &first[..3])
            };
            let dob = NaiveDate::from_ymd_opt(rng.gen_range(1950..1990), rng.gen_range(1..13), 7);
            let record = |last: &str| Attributes {
                first_name: Some(first.clone()),
                last_name: Some(last.to_owned()),
                birth_date: dob,
                ..Attributes::default()
            };
            records.push(record(&last));
            if i % 2 == 0 {
                let noisy = if i % 10 == 0 {
                    format!("{last}e")
                } else {
                    last
                };
                records.push(record(&noisy));
                pairs += 1;
            }
        }
        (pairs, records)
    }

    #[test]
    fn every_field_is_trained_and_the_prior_follows_the_deterministic_links() {
        let (pairs, records) = names_and_dates(5);
        let trained = train(&records, 1);
        // The last name is fixed by every tight blocking key; the training key `fd:`
        // frees it, so its `m` is learned: a typo in 1 of 5 duplicates' surnames.
        assert!(!trained.untrained.contains(&Field::LastName));
        let m_last = trained.model.m[Field::LastName as usize][0];
        assert!(
            (0.75..0.95).contains(&m_last),
            "m(last name exact) {m_last}"
        );
        assert!(
            trained.untrained.contains(&Field::Email),
            "no record has one"
        );
        let n = records.len() as f64;
        let truth = pairs as f64 / (n * (n - 1.0) / 2.0);
        let p = &trained.prior;
        assert_eq!(p.used, "deterministic");
        assert_eq!(Some(trained.model.prior), p.deterministic);
        let ratio = trained.model.prior / truth;
        assert!(
            (0.7..1.5).contains(&ratio),
            "prior {} truth {truth}",
            trained.model.prior
        );
    }

    #[test]
    fn duplicates_with_typos_are_linked_and_strangers_are_not() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut word = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(b'a' + rng.gen_range(0..26u8)))
                .collect()
        };
        let mut records = Vec::new();
        let mut duplicates = Vec::new();
        for i in 0..400 {
            let (first, last) = (word(6), word(7));
            let dob = format!("19{:02}0{}1{}", 40 + i % 50, 1 + i % 9, i % 10);
            let pc = format!("{}", 1000 + i);
            let person = |first: &str| {
                attributes(
                    &json!({"traits": {"first_name": first, "last_name": last, "dob": dob,
                                               "address": {"postal_code": pc}}}),
                )
            };
            records.push(person(&first));
            if i % 4 == 0 {
                // A duplicate with a one-letter typo in the first name.
                let typo = format!(
                    "{}{}",
                    &first[..5],
                    if first.ends_with('z') { 'y' } else { 'z' }
                );
                records.push(person(&typo));
                duplicates.push((records.len() - 2, records.len() - 1));
            }
        }
        let linked = link(&records, 0.9, 1, &[Field::FirstName, Field::LastName]);
        assert!(linked.compared >= duplicates.len());
        let links: HashSet<(usize, usize)> = linked.links.iter().map(|&(i, j, _)| (i, j)).collect();
        for d in &duplicates {
            assert!(links.contains(d), "duplicate {d:?} not linked");
        }
        // Random names collide now and then (same year, similar last name): at most 2 of
        // the ~500 records' links may join strangers.
        let strangers = links.iter().filter(|p| !duplicates.contains(p)).count();
        assert!(strangers <= 2, "{strangers} strangers linked");
    }
}
