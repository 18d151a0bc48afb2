//! Expanding a query word into the indexed words it matches with one typo or as a prefix,
//! read from the term dictionaries of a searcher's segments.
//!
//! The looser search tiers match these expansions as whole terms of the `words` field, one
//! term each, rather than running a fuzzy or prefix query per field: a fuzzy query scans
//! every matching posting into a bitset per segment, while a term is read from its
//! (skippable) posting list, so an intersection with the other words of the query stays
//! cheap.

use std::collections::HashMap;
use std::sync::OnceLock;

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::schema::Field;
use tantivy::Searcher;

/// Most expansions of one word kept: the most frequent (a two-letter prefix can start
/// thousands of words).
pub const MAX_EXPANSIONS: usize = 50;

/// A Levenshtein automaton over term bytes.
struct Dfa(DFA);

impl tantivy_fst::Automaton for Dfa {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// Builder of distance-1 automata, transpositions counting as one edit (costly to build,
/// so built once).
fn one_edit() -> &'static LevenshteinAutomatonBuilder {
    static BUILDER: OnceLock<LevenshteinAutomatonBuilder> = OnceLock::new();
    BUILDER.get_or_init(|| LevenshteinAutomatonBuilder::new(1, true))
}

/// Adds the document frequency of `term` (summed over segments), if it is a word: letters
/// and digits, not only digits (whole identifier values and numbers are not expanded to).
fn count(found: &mut HashMap<String, u64>, term: &[u8], doc_freq: u32) {
    let Ok(t) = std::str::from_utf8(term) else {
        return;
    };
    let word = t.chars().all(char::is_alphanumeric) && !t.bytes().all(|b| b.is_ascii_digit());
    if word {
        *found.entry(t.to_owned()).or_default() += u64::from(doc_freq);
    }
}

/// The [`MAX_EXPANSIONS`] most frequent of `found`, without `word` itself.
fn most_frequent(found: HashMap<String, u64>, word: &str) -> Vec<String> {
    let mut all: Vec<(String, u64)> = found.into_iter().filter(|(t, _)| t != word).collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(MAX_EXPANSIONS);
    all.into_iter().map(|(t, _)| t).collect()
}

/// Indexed words of `field` one edit away from `word` (insertion, deletion, substitution
/// or transposition of two neighbours).
pub fn typos(searcher: &Searcher, field: Field, word: &str) -> tantivy::Result<Vec<String>> {
    let mut found = HashMap::new();
    let dfa = Dfa(one_edit().build_dfa(word));
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().search(&dfa).into_stream()?;
        while stream.advance() {
            count(&mut found, stream.key(), stream.value().doc_freq);
        }
    }
    Ok(most_frequent(found, word))
}

/// Indexed words of `field` that start with `prefix`.
pub fn prefixed(searcher: &Searcher, field: Field, prefix: &str) -> tantivy::Result<Vec<String>> {
    let mut found = HashMap::new();
    for segment in searcher.segment_readers() {
        let index = segment.inverted_index(field)?;
        let mut stream = index.terms().range().ge(prefix.as_bytes()).into_stream()?;
        while stream.advance() && stream.key().starts_with(prefix.as_bytes()) {
            count(&mut found, stream.key(), stream.value().doc_freq);
        }
    }
    Ok(most_frequent(found, prefix))
}
