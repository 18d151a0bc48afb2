//! Blocking keys: a new record is compared only with records sharing at least one key, so
//! the number of comparisons per record stays bounded instead of growing with the store.
//! Several keys, so one typo does not hide a true match:
//! - `sx:` Soundex of the last name and the birth year (catches spelling variants);
//! - `pc:` postcode and the first initial (people who moved keep neither, the others do);
//! - `nm:` the first three letters of first and last name (catches birth date typos);
//! - `dob:` the exact birth date and the last name's first letter (catches name changes).
//!
//! A key is only built when all its parts are present. [`wide_keys`] adds one-field keys
//! (first name, last name, birth date) that find more candidates; `batch::link` trains the
//! model on the tight keys' pairs only.

use chrono::Datelike;

use super::compare::Attributes;

/// American Soundex (letter + 3 digits) of the ASCII letters of `s`; `None` without any.
pub fn soundex(s: &str) -> Option<String> {
    fn code(c: char) -> Option<char> {
        match c {
            'b' | 'f' | 'p' | 'v' => Some('1'),
            'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => Some('2'),
            'd' | 't' => Some('3'),
            'l' => Some('4'),
            'm' | 'n' => Some('5'),
            'r' => Some('6'),
            _ => None,
        }
    }
    let mut letters = s
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_ascii_lowercase());
    let first = letters.next()?;
    let mut out = String::with_capacity(4);
    out.push(first.to_ascii_uppercase());
    let mut last = code(first);
    for c in letters {
        let d = code(c);
        match d {
            Some(digit) if d != last => {
                out.push(digit);
                if out.len() == 4 {
                    break;
                }
            }
            _ => {}
        }
        // 'h' and 'w' do not separate equal codes; vowels do.
        if c != 'h' && c != 'w' {
            last = d;
        }
    }
    while out.len() < 4 {
        out.push('0');
    }
    Some(out)
}

fn prefix(s: &str, n: usize) -> String {
    s.chars().filter(|c| !c.is_whitespace()).take(n).collect()
}

/// The blocking keys of a record.
pub fn keys(a: &Attributes) -> Vec<String> {
    let mut out = Vec::with_capacity(4);
    if let (Some(last), Some(dob)) = (&a.last_name, &a.birth_date) {
        if let Some(sx) = soundex(last) {
            out.push(format!("sx:{sx}:{}", dob.year()));
        }
    }
    if let (Some(pc), Some(first)) = (&a.postcode, &a.first_name) {
        out.push(format!("pc:{pc}:{}", prefix(first, 1)));
    }
    if let (Some(first), Some(last)) = (&a.first_name, &a.last_name) {
        out.push(format!("nm:{}:{}", prefix(first, 3), prefix(last, 3)));
    }
    if let (Some(dob), Some(last)) = (&a.birth_date, &a.last_name) {
        out.push(format!("dob:{}:{}", dob.format("%Y%m%d"), prefix(last, 1)));
    }
    out
}

/// Wider keys, one field each (first name, last name, birth date): they find the
/// duplicates whose other fields are blank or wrong, at the cost of many more candidate
/// pairs. Used to find candidates, not to train the model (see `batch::link`).
pub fn wide_keys(a: &Attributes) -> Vec<String> {
    let mut out = Vec::with_capacity(3);
    if let Some(dob) = &a.birth_date {
        out.push(format!("bd:{}", dob.format("%Y%m%d")));
    }
    if let Some(first) = &a.first_name {
        out.push(format!("fn:{first}"));
    }
    if let Some(last) = &a.last_name {
        out.push(format!("ln:{last}"));
    }
    out
}

/// The names of every blocking key, as `matching.blocking_keys` lists them: the tight keys
/// `sx`, `pc`, `nm`, `dob` and the wide one-field keys `bd`, `fn`, `ln`.
pub const KEY_NAMES: [&str; 7] = ["sx", "pc", "nm", "dob", "bd", "fn", "ln"];

/// The name of a key (`sx:S530:1984` -> `sx`).
pub fn key_name(key: &str) -> &str {
    key.split_once(':').map_or(key, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matching::compare::normalize;
    use chrono::NaiveDate;

    #[test]
    fn soundex_matches_the_reference_codes() {
        for (name, code) in [
            ("Robert", "R163"),
            ("Rupert", "R163"),
            ("Ashcraft", "A261"),
            ("Tymczak", "T522"),
            ("Pfister", "P236"),
            ("Lee", "L000"),
            ("Smith", "S530"),
            ("Smyth", "S530"),
        ] {
            assert_eq!(soundex(name).as_deref(), Some(code), "{name}");
        }
        assert_eq!(soundex("123"), None);
    }

    #[test]
    fn spelling_variants_share_a_key_and_strangers_do_not() {
        let person = |first: &str, last: &str, dob: (i32, u32, u32), pc: &str| Attributes {
            first_name: normalize(first),
            last_name: normalize(last),
            birth_date: NaiveDate::from_ymd_opt(dob.0, dob.1, dob.2),
            postcode: normalize(pc),
            ..Attributes::default()
        };
        let a = keys(&person("Jonathan", "Smith", (1980, 3, 7), "4011"));
        let b = keys(&person("Jonathon", "Smyth", (1980, 7, 3), "4012"));
        let c = keys(&person("Mary", "Brown", (1955, 1, 1), "2000"));
        assert_eq!(a.len(), 4);
        assert!(a.iter().any(|k| b.contains(k)), "{a:?} / {b:?}");
        assert!(!a.iter().any(|k| c.contains(k)));
        assert!(keys(&Attributes::default()).is_empty());
        // A duplicate whose last name and birth date are blank still shares a wide key.
        let blank = person("Jonathan", "", (1, 1, 1), "");
        assert!(keys(&blank).is_empty());
        assert!(wide_keys(&blank).iter().any(|k| wide_keys(&person(
            "Jonathan",
            "Smith",
            (1980, 3, 7),
            "4011"
        ))
        .contains(k)));
    }
}
