//! Given names and their nicknames (`bob` and `robert`, `peggy` and `margaret`), from the
//! maintained, hand-curated `nicknames` dataset (Apache-2.0; see `nicknames/NOTICE`),
//! compiled into the binary. A search word that is a name stands also for the names it is
//! a nickname of and the nicknames it has: one step either way, never further (`bill` is
//! a nickname of `william`, not of everyone `william` is related to).

use std::collections::HashMap;
use std::sync::OnceLock;

const NAMES_CSV: &str = include_str!("nicknames/names.csv");

fn table() -> &'static HashMap<String, Vec<String>> {
    static TABLE: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        let mut add = |a: &str, b: &str| {
            let names = map.entry(a.to_owned()).or_default();
            if !names.iter().any(|n| n == b) {
                names.push(b.to_owned());
            }
        };
        // `name1,has_nickname,name2`; the header and anything malformed are skipped.
        for line in NAMES_CSV.lines().skip(1) {
            let mut cells = line.split(',').map(|c| c.trim().to_lowercase());
            let (Some(name), Some(rel), Some(nick)) = (cells.next(), cells.next(), cells.next())
            else {
                continue;
            };
            if rel != "has_nickname" || name.is_empty() || nick.is_empty() || name == nick {
                continue;
            }
            add(&name, &nick);
            add(&nick, &name);
        }
        for names in map.values_mut() {
            names.sort();
        }
        map
    })
}

/// The names `word` (a folded, lowercase word) is related to by one nickname step, in
/// alphabetical order; empty for a word that is no name of the list.
pub fn related(word: &str) -> &'static [String] {
    table().get(word).map_or(&[], Vec::as_slice)
}

/// Whether `a` and `b` are a name and one of its nicknames (either way round).
pub fn are_related(a: &str, b: &str) -> bool {
    related(a).iter().any(|n| n == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_go_both_ways_one_step() {
        assert!(related("bob").iter().any(|n| n == "robert"));
        assert!(related("robert").iter().any(|n| n == "bob"));
        assert!(are_related("peggy", "margaret"));
        assert!(are_related("william", "bill"));
        assert!(!are_related("bob", "bob"));
        assert!(related("torres").is_empty());
        // The list is large: a broken include or parser would leave it near-empty.
        assert!(table().len() > 1000, "{}", table().len());
    }
}
