//! Field comparisons with graded levels, the inputs of the Fellegi-Sunter model
//! ([`super::model`]). Each comparison of two records yields one [`Level`] per field; the
//! model learns how much each level of each field says about "same person".
//!
//! Levels per field (the order is from strongest agreement to disagreement; `Missing` when
//! either side has no value, which the model treats as no evidence):
//! - names: exact, Jaro-Winkler >= 0.92, Jaro-Winkler >= 0.80, initial only (first names:
//!   one side is a single letter that starts the other), different;
//! - birth date: exact, day and month transposed, a typo (one digit of `YYYYMMDD` wrong, two
//!   adjacent digits swapped, or the year ten off with the same day and month: 1967 vs 1957
//!   is a keying error, not a different person), same year and month or within 1 year
//!   counted in days (<= 366), different;
//! - postcode: exact, different;
//! - city: exact, Jaro-Winkler >= 0.85 (typos), different;
//! - street: exact, token overlap (Jaccard >= 0.5 over words), different;
//! - email: exact, Jaro-Winkler >= 0.88 (a typo in either part), different. Identity by
//!   email is the identifier's job; here a mistyped address is evidence like a mistyped name.
//!
//! Strings are compared after [`normalize`]: lowercased, accents folded, punctuation to
//! spaces, whitespace collapsed. Similarity is `strsim` (Jaro-Winkler).

use chrono::{Datelike, NaiveDate};

pub use crate::model::Attributes;

/// The fields the probabilistic matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    FirstName,
    LastName,
    BirthDate,
    Postcode,
    City,
    Street,
    Email,
}

impl Field {
    /// The field's name in explanations and the API.
    pub fn name(self) -> &'static str {
        match self {
            Field::FirstName => "first_name",
            Field::LastName => "last_name",
            Field::BirthDate => "birth_date",
            Field::Postcode => "postcode",
            Field::City => "city",
            Field::Street => "street",
            Field::Email => "email",
        }
    }

    /// The field of a name (`first_name`, ...), as configuration and the API write it.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == name)
    }

    pub const ALL: [Field; 7] = [
        Field::FirstName,
        Field::LastName,
        Field::BirthDate,
        Field::Postcode,
        Field::City,
        Field::Street,
        Field::Email,
    ];

    /// Number of agreement levels of the field (excluding `Missing`).
    pub fn levels(self) -> usize {
        match self {
            Field::FirstName => 5,
            Field::LastName => 4,
            Field::BirthDate => 5,
            Field::Postcode => 2,
            Field::City | Field::Street | Field::Email => 3,
        }
    }
}

/// The outcome of comparing one field: `Agree(0)` is the strongest agreement, the highest
/// index is "different"; `Missing` carries no evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    Missing,
    Agree(u8),
}

impl Attributes {
    /// How many fields are present.
    pub fn present(&self) -> usize {
        [
            self.first_name.is_some(),
            self.last_name.is_some(),
            self.birth_date.is_some(),
            self.postcode.is_some(),
            self.city.is_some(),
            self.street.is_some(),
            self.email.is_some(),
        ]
        .iter()
        .filter(|p| **p)
        .count()
    }

    /// `self` with every field `newer` has replaced by `newer`'s value.
    pub fn updated_with(&self, newer: &Attributes) -> Attributes {
        fn pick<T: Clone>(old: &Option<T>, new: &Option<T>) -> Option<T> {
            new.clone().or_else(|| old.clone())
        }
        Attributes {
            first_name: pick(&self.first_name, &newer.first_name),
            last_name: pick(&self.last_name, &newer.last_name),
            birth_date: pick(&self.birth_date, &newer.birth_date),
            postcode: pick(&self.postcode, &newer.postcode),
            city: pick(&self.city, &newer.city),
            street: pick(&self.street, &newer.street),
            email: pick(&self.email, &newer.email),
        }
    }
}

/// Lowercases, folds common accents, turns punctuation into spaces and collapses
/// whitespace; `None` for a value with nothing left.
pub fn normalize(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut space = false;
    for c in value.chars().flat_map(char::to_lowercase) {
        let c = fold(c);
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        } else {
            space = true;
        }
    }
    (!out.is_empty()).then_some(out)
}

fn fold(c: char) -> char {
    match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' => 'a',
        'ç' => 'c',
        'è' | 'é' | 'ê' | 'ë' => 'e',
        'ì' | 'í' | 'î' | 'ï' => 'i',
        'ñ' => 'n',
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => 'o',
        'ù' | 'ú' | 'û' | 'ü' => 'u',
        'ý' | 'ÿ' => 'y',
        other => other,
    }
}

fn both<'a, T>(a: &'a Option<T>, b: &'a Option<T>) -> Option<(&'a T, &'a T)> {
    Some((a.as_ref()?, b.as_ref()?))
}

fn name(a: &str, b: &str, initials: bool) -> u8 {
    if a == b {
        return 0;
    }
    let jw = strsim::jaro_winkler(a, b);
    if jw >= 0.92 {
        1
    } else if jw >= 0.80 {
        2
    } else if initials
        && (a.chars().count() == 1 || b.chars().count() == 1)
        && a.chars().next() == b.chars().next()
    {
        3
    } else if initials {
        4
    } else {
        3
    }
}

fn date(a: &NaiveDate, b: &NaiveDate) -> u8 {
    if a == b {
        return 0;
    }
    if a.year() == b.year() && a.month() == b.day() && a.day() == b.month() {
        return 1;
    }
    if date_typo(a, b) {
        return 2;
    }
    if (a.year() == b.year() && a.month() == b.month()) || (*a - *b).num_days().abs() <= 366 {
        return 3;
    }
    4
}

/// Two different dates one keying error apart: one digit of `YYYYMMDD` wrong, two adjacent
/// digits swapped, or the year ten off (same day and month).
fn date_typo(a: &NaiveDate, b: &NaiveDate) -> bool {
    if a.month() == b.month() && a.day() == b.day() && (a.year() - b.year()).abs() == 10 {
        return true;
    }
    let digits = |d: &NaiveDate| -> [u8; 8] {
        let mut out = [0u8; 8];
        let mut n = (d.year().clamp(0, 9999) as u32) * 10_000 + d.month() * 100 + d.day();
        for slot in out.iter_mut().rev() {
            *slot = (n % 10) as u8;
            n /= 10;
        }
        out
    };
    let (x, y) = (digits(a), digits(b));
    let differ: Vec<usize> = (0..8).filter(|&i| x[i] != y[i]).collect();
    match differ.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i],
        _ => false,
    }
}

fn words(s: &str) -> std::collections::BTreeSet<&str> {
    s.split(' ').filter(|w| !w.is_empty()).collect()
}

fn street(a: &str, b: &str) -> u8 {
    if a == b {
        return 0;
    }
    let (wa, wb) = (words(a), words(b));
    let inter = wa.intersection(&wb).count();
    let union = wa.union(&wb).count();
    if union > 0 && inter * 2 >= union {
        1
    } else {
        2
    }
}

/// Exact (0), Jaro-Winkler at least `close` (1), different (2).
fn similar(a: &str, b: &str, close: f64) -> u8 {
    if a == b {
        0
    } else if strsim::jaro_winkler(a, b) >= close {
        1
    } else {
        2
    }
}

/// Compares one field of two records.
pub fn compare(field: Field, a: &Attributes, b: &Attributes) -> Level {
    let level = match field {
        Field::FirstName => both(&a.first_name, &b.first_name).map(|(x, y)| name(x, y, true)),
        Field::LastName => both(&a.last_name, &b.last_name).map(|(x, y)| name(x, y, false)),
        Field::BirthDate => both(&a.birth_date, &b.birth_date).map(|(x, y)| date(x, y)),
        Field::Postcode => both(&a.postcode, &b.postcode).map(|(x, y)| u8::from(x != y)),
        Field::City => both(&a.city, &b.city).map(|(x, y)| similar(x, y, 0.85)),
        Field::Email => both(&a.email, &b.email).map(|(x, y)| similar(x, y, 0.88)),
        Field::Street => both(&a.street, &b.street).map(|(x, y)| street(x, y)),
    };
    level.map_or(Level::Missing, Level::Agree)
}

/// The comparison vector of two records, one level per field of [`Field::ALL`].
pub fn compare_all(a: &Attributes, b: &Attributes) -> [Level; 7] {
    Field::ALL.map(|f| compare(f, a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(first: &str, last: &str, dob: Option<(i32, u32, u32)>) -> Attributes {
        Attributes {
            first_name: normalize(first),
            last_name: normalize(last),
            birth_date: dob.and_then(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d)),
            ..Attributes::default()
        }
    }

    #[test]
    fn normalize_folds_case_accents_and_punctuation() {
        assert_eq!(
            normalize("  José-María  O'Neil ").as_deref(),
            Some("jose maria o neil")
        );
        assert_eq!(normalize(" -- "), None);
    }

    #[test]
    fn names_are_graded() {
        let a = person("jonathan", "smith", None);
        assert_eq!(
            compare(Field::FirstName, &a, &person("jonathan", "", None)),
            Level::Agree(0)
        );
        assert_eq!(
            compare(Field::FirstName, &a, &person("jonathon", "", None)),
            Level::Agree(1)
        );
        assert_eq!(
            compare(Field::FirstName, &a, &person("jon", "", None)),
            Level::Agree(2)
        );
        assert_eq!(
            compare(Field::FirstName, &a, &person("j", "", None)),
            Level::Agree(3)
        );
        assert_eq!(
            compare(Field::FirstName, &a, &person("mary", "", None)),
            Level::Agree(4)
        );
        assert_eq!(
            compare(Field::LastName, &a, &person("", "smithe", None)),
            Level::Agree(1)
        );
        assert_eq!(
            compare(Field::LastName, &a, &person("", "smyth", None)),
            Level::Agree(2)
        );
        assert_eq!(
            compare(Field::LastName, &a, &person("", "brown", None)),
            Level::Agree(3)
        );
        assert_eq!(
            compare(Field::LastName, &a, &person("", "", None)),
            Level::Missing
        );
    }

    #[test]
    fn birth_dates_are_graded() {
        let a = person("", "", Some((1980, 3, 7)));
        let lvl = |d| compare(Field::BirthDate, &a, &person("", "", Some(d)));
        assert_eq!(lvl((1980, 3, 7)), Level::Agree(0));
        assert_eq!(lvl((1980, 7, 3)), Level::Agree(1), "day and month swapped");
        assert_eq!(lvl((1980, 3, 17)), Level::Agree(2), "one digit of the day");
        assert_eq!(lvl((1970, 3, 7)), Level::Agree(2), "one digit of the year");
        assert_eq!(
            lvl((1908, 3, 7)),
            Level::Agree(2),
            "adjacent digits swapped"
        );
        assert_eq!(lvl((1990, 3, 7)), Level::Agree(2), "ten years off");
        assert_eq!(lvl((1980, 3, 28)), Level::Agree(3), "same year and month");
        assert_eq!(lvl((1981, 2, 1)), Level::Agree(3), "within a year");
        assert_eq!(lvl((1991, 3, 8)), Level::Agree(4));
        assert_eq!(lvl((1975, 6, 7)), Level::Agree(4), "two digits wrong");
        let b = person("", "", Some((1999, 5, 4)));
        assert_eq!(
            compare(Field::BirthDate, &b, &person("", "", Some((2009, 5, 4)))),
            Level::Agree(2),
            "ten years off across a century"
        );
        assert_eq!(
            compare(Field::BirthDate, &a, &person("", "", None)),
            Level::Missing
        );
    }

    #[test]
    fn cities_and_emails_tolerate_typos() {
        let r = |city: &str, email: &str| Attributes {
            city: normalize(city),
            email: Some(email.to_owned()),
            ..Attributes::default()
        };
        let a = r("Portsmouth", "evied56@harris-bailey.net");
        let b = r("Pootsmruth", "evihd56@earris-bailey.net");
        let c = r("London", "lola.b@martinez-jones.net");
        assert_eq!(compare(Field::City, &a, &a), Level::Agree(0));
        assert_eq!(compare(Field::City, &a, &b), Level::Agree(1));
        assert_eq!(compare(Field::City, &a, &c), Level::Agree(2));
        assert_eq!(compare(Field::Email, &a, &b), Level::Agree(1));
        assert_eq!(compare(Field::Email, &a, &c), Level::Agree(2));
    }

    #[test]
    fn streets_compare_by_word_overlap() {
        let s = |v: &str| Attributes {
            street: normalize(v),
            ..Attributes::default()
        };
        assert_eq!(
            compare(Field::Street, &s("12 Oak Street"), &s("12 oak street")),
            Level::Agree(0)
        );
        assert_eq!(
            compare(Field::Street, &s("12 Oak Street"), &s("12 Oak St")),
            Level::Agree(1)
        );
        assert_eq!(
            compare(Field::Street, &s("12 Oak Street"), &s("9 Elm Road")),
            Level::Agree(2)
        );
    }

    #[test]
    fn every_level_is_within_the_fields_level_count() {
        let a = person("ann", "lee", Some((1990, 1, 2)));
        let b = person("bob", "kim", Some((1950, 5, 6)));
        for (field, level) in Field::ALL.iter().zip(compare_all(&a, &b)) {
            if let Level::Agree(l) = level {
                assert!((l as usize) < field.levels(), "{field:?} {l}");
            }
        }
    }
}
