//! How common each value of a field is, for the term-frequency adjustment of match weights
//! ([`super::model::Model::score`]): agreeing on "smith" says less than agreeing on a rare
//! name. Estimated without labels from the match records themselves, kept current as
//! records arrive, in bounded memory: one count-min sketch per adjusted field (4 rows of
//! 2^19 counters, 8 MiB, whatever the number of distinct values), with conservative update,
//! so a count is never below the true one and rarely far above it (a rare value may look
//! a little more common than it is, which only weakens its evidence).
//!
//! A value's share is its count over the number of records counted. Below
//! [`MIN_RECORDS`] records the shares say too little and no adjustment is made.

use std::borrow::Cow;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::compare::{Attributes, Field};
use crate::store::{GraphStore, IdentKey, StoreError};

/// Fewer records than this give no term-frequency adjustment.
pub const MIN_RECORDS: u64 = 1_000;
const DEPTH: usize = 4;
const WIDTH_LOG2: u32 = 19;
/// Match records read per store call when counting a store's records.
const PAGE: usize = 10_000;

/// A count-min sketch of string values.
#[derive(Debug)]
struct Sketch {
    cells: Vec<u32>,
}

impl Sketch {
    fn new() -> Sketch {
        // Zeroed allocation: pages are only touched as counters are.
        Sketch {
            cells: vec![0; DEPTH << WIDTH_LOG2],
        }
    }

    fn slots(value: &str) -> [usize; DEPTH] {
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(value);
        let (h1, h2) = (h as u32, ((h >> 32) as u32) | 1);
        let mask = (1u32 << WIDTH_LOG2) - 1;
        std::array::from_fn(|row| {
            let column = h1.wrapping_add((row as u32).wrapping_mul(h2)) & mask;
            (row << WIDTH_LOG2) + column as usize
        })
    }

    fn count(&self, value: &str) -> u32 {
        Sketch::slots(value)
            .iter()
            .map(|&i| self.cells.get(i).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }

    /// Conservative update: only the counters at the current minimum grow.
    fn add(&mut self, value: &str) {
        let slots = Sketch::slots(value);
        let next = self.count(value).saturating_add(1);
        for i in slots {
            if let Some(c) = self.cells.get_mut(i) {
                *c = (*c).max(next);
            }
        }
    }
}

/// The value of a field as counted (names and places as normalized for comparison).
pub fn value_of(field: Field, a: &Attributes) -> Option<Cow<'_, str>> {
    fn text(v: &Option<String>) -> Option<Cow<'_, str>> {
        v.as_deref().map(Cow::Borrowed)
    }
    match field {
        Field::FirstName => text(&a.first_name),
        Field::LastName => text(&a.last_name),
        Field::Postcode => text(&a.postcode),
        Field::City => text(&a.city),
        Field::Street => text(&a.street),
        Field::Email => text(&a.email),
        Field::BirthDate => a
            .birth_date
            .map(|d| Cow::Owned(d.format("%Y%m%d").to_string())),
    }
}

/// Value frequencies of the adjusted fields.
#[derive(Debug)]
pub struct Frequencies {
    sketches: Vec<(Field, Mutex<Sketch>)>,
    records: AtomicU64,
}

impl Frequencies {
    /// Frequencies of `fields` (none: no adjustment at all).
    pub fn new(fields: &[Field]) -> Frequencies {
        let mut sketches: Vec<(Field, Mutex<Sketch>)> = Vec::new();
        for &f in fields {
            if !sketches.iter().any(|(g, _)| *g == f) {
                sketches.push((f, Mutex::new(Sketch::new())));
            }
        }
        Frequencies {
            sketches,
            records: AtomicU64::new(0),
        }
    }

    /// The adjusted fields.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.sketches.iter().map(|(f, _)| *f)
    }

    /// Records counted.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Counts a record as it is now (`new`) against what was counted of it before (`old`,
    /// `None` for a record not counted yet): a value it gained is counted once.
    pub fn observe(&self, old: Option<&Attributes>, new: &Attributes) {
        if self.sketches.is_empty() {
            return;
        }
        if old.is_none() {
            self.records.fetch_add(1, Ordering::Relaxed);
        }
        for (field, sketch) in &self.sketches {
            let Some(v) = value_of(*field, new) else {
                continue;
            };
            if old.and_then(|o| value_of(*field, o)).as_deref() == Some(&*v) {
                continue;
            }
            if let Ok(mut s) = sketch.lock() {
                s.add(&v);
            }
        }
    }

    /// The share of records holding `a`'s value of `field`; `None` when the field is not
    /// adjusted, `a` has no value, or too few records were counted.
    pub fn share(&self, field: Field, a: &Attributes) -> Option<f64> {
        let records = self.records();
        if records < MIN_RECORDS {
            return None;
        }
        let (_, sketch) = self.sketches.iter().find(|(f, _)| *f == field)?;
        let v = value_of(field, a)?;
        let count = sketch.lock().ok()?.count(&v).max(1);
        Some((f64::from(count) / records as f64).min(1.0))
    }

    /// Counts every match record of a store (at start-up); returns how many were read.
    pub fn count_store(&self, store: &dyn GraphStore) -> Result<u64, StoreError> {
        if self.sketches.is_empty() {
            return Ok(0);
        }
        let mut after: Option<IdentKey> = None;
        let mut read = 0u64;
        loop {
            let page = store.match_records_after(after.as_ref(), PAGE)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.clone());
            for (_, record) in &page {
                self.observe(None, &record.attributes);
                read += 1;
            }
        }
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(last: &str) -> Attributes {
        Attributes {
            last_name: Some(last.to_owned()),
            first_name: Some("ann".to_owned()),
            ..Attributes::default()
        }
    }

    #[test]
    fn shares_follow_the_counts_and_never_undercount() {
        let f = Frequencies::new(&[Field::LastName]);
        for i in 0..10_000 {
            let last = if i % 10 < 7 {
                "smith".to_owned()
            } else {
                format!("rare{i}")
            };
            f.observe(None, &named(&last));
        }
        assert_eq!(f.records(), 10_000);
        let smith = f.share(Field::LastName, &named("smith")).unwrap_or(0.0);
        assert!((smith - 0.7).abs() < 1e-9, "{smith}");
        let rare = f.share(Field::LastName, &named("rare17")).unwrap_or(1.0);
        assert!(
            (1e-4..5e-4).contains(&rare),
            "a value seen once is about one in ten thousand: {rare}"
        );
        // A field that is not adjusted, or a missing value, has no share.
        assert_eq!(f.share(Field::FirstName, &named("smith")), None);
        assert_eq!(f.share(Field::LastName, &Attributes::default()), None);
    }

    #[test]
    fn a_record_is_counted_once_and_its_changes_add_only_new_values() {
        let f = Frequencies::new(&[Field::LastName]);
        for i in 0..MIN_RECORDS {
            f.observe(None, &named(&format!("n{i}")));
        }
        let before = named("lee");
        f.observe(None, &before);
        f.observe(Some(&before), &before);
        assert_eq!(f.records(), MIN_RECORDS + 1);
        let one = f.share(Field::LastName, &before).unwrap_or(0.0);
        assert!((one * (MIN_RECORDS + 1) as f64 - 1.0).abs() < 1e-9);
        f.observe(Some(&before), &named("kim"));
        assert_eq!(
            f.records(),
            MIN_RECORDS + 1,
            "an updated record is no new record"
        );
        assert!(f.share(Field::LastName, &named("kim")).is_some());
    }

    #[test]
    fn too_few_records_give_no_share() {
        let f = Frequencies::new(&[Field::LastName]);
        for _ in 0..MIN_RECORDS - 1 {
            f.observe(None, &named("smith"));
        }
        assert_eq!(f.share(Field::LastName, &named("smith")), None);
        f.observe(None, &named("smith"));
        assert!(f.share(Field::LastName, &named("smith")).is_some());
    }
}
