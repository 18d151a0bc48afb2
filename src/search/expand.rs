//! Expanding a query word into the indexed words it matches with one typo or as a prefix,
//! read from the term dictionaries of a searcher's segments.
//!
//! The looser search tiers match these expansions as whole terms of the `words` field, one
//! term each, rather than running a fuzzy or prefix query per field: a fuzzy query scans
//! every matching posting into a bitset per segment, while a term is read from its
//! (skippable) posting list, so an intersection with the other words of the query stays
//! cheap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::index::SegmentId;
use tantivy::schema::Field;
use tantivy::{Searcher, SegmentReader};

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

/// The [`MAX_EXPANSIONS`] most frequent of `found`, without `word` itself.
fn most_frequent(found: HashMap<String, u64>, word: &str) -> Vec<String> {
    let mut all: Vec<(String, u64)> = found.into_iter().filter(|(t, _)| t != word).collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(MAX_EXPANSIONS);
    all.into_iter().map(|(t, _)| t).collect()
}

/// How a word is expanded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mode {
    Typo,
    Prefix,
}

/// The matching words of one segment's dictionary, with their document frequencies.
type SegmentWords = Arc<Vec<(String, u32)>>;

/// Cached expansions by (segment, field, mode, word), and how many words they hold.
#[derive(Default)]
struct Cache {
    entries: HashMap<(SegmentId, Field, Mode, String), SegmentWords>,
    words: usize,
}

/// Segments of at least this many documents have their expansions cached (every
/// segment in unit tests, so they exercise the cache).
const CACHED_SEGMENT_DOCS: u32 = if cfg!(test) { 1 } else { 50_000 };
/// At most this many matching words of a segment are cached for one word (a short prefix
/// of a large segment can have thousands: walking them again is then the price).
const CACHED_WORDS_PER_ENTRY: usize = 1_000;
/// Words kept (over all entries; a few tens of MB) before the cache is emptied and starts
/// over.
const CACHE_WORDS: usize = 1_000_000;

/// Expansions of words in the large segments: walking a large dictionary is most of a
/// typo or prefix query's cost, and a segment never changes once written, so what a word
/// expands to in it is computed once. Keyed by segment id (unique per segment, across
/// indexes), so entries of merged-away segments are simply never asked for again; the
/// cache is emptied when it grows past [`CACHE_WORDS`] and by [`forget`] (erasure: no
/// erased person's words may stay in memory).
fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(Cache::default()))
}

/// Empties the expansion cache.
pub fn forget() {
    if let Ok(mut c) = cache().lock() {
        *c = Cache::default();
    }
}

/// The words of one segment's dictionary of `field` that `word` expands to by `mode`.
fn segment_words(
    segment: &SegmentReader,
    field: Field,
    mode: Mode,
    word: &str,
) -> tantivy::Result<SegmentWords> {
    // Only large segments are cached (the key, with its copy of the word, only for them).
    let key = (segment.num_docs() >= CACHED_SEGMENT_DOCS)
        .then(|| (segment.segment_id(), field, mode, word.to_owned()));
    if let Some(key) = &key {
        if let Some(hit) = cache()
            .lock()
            .ok()
            .and_then(|c| c.entries.get(key).cloned())
        {
            return Ok(hit);
        }
    }
    let index = segment.inverted_index(field)?;
    let mut out = Vec::new();
    match mode {
        Mode::Typo => {
            let dfa = Dfa(one_edit().build_dfa(word));
            let mut stream = index.terms().search(&dfa).into_stream()?;
            while stream.advance() {
                push_word(&mut out, stream.key(), stream.value().doc_freq);
            }
        }
        Mode::Prefix => {
            let mut stream = index.terms().range().ge(word.as_bytes()).into_stream()?;
            while stream.advance() && stream.key().starts_with(word.as_bytes()) {
                push_word(&mut out, stream.key(), stream.value().doc_freq);
            }
        }
    }
    let out = Arc::new(out);
    if let Some(key) = key.filter(|_| out.len() <= CACHED_WORDS_PER_ENTRY) {
        if let Ok(mut c) = cache().lock() {
            if c.words + out.len() > CACHE_WORDS {
                *c = Cache::default();
            }
            c.words += out.len();
            c.entries.insert(key, out.clone());
        }
    }
    Ok(out)
}

/// Keeps `term` if it is a word: letters and digits, not only digits (whole identifier
/// values and numbers are not expanded to).
fn push_word(out: &mut Vec<(String, u32)>, term: &[u8], doc_freq: u32) {
    let Ok(t) = std::str::from_utf8(term) else {
        return;
    };
    if t.chars().all(char::is_alphanumeric) && !t.bytes().all(|b| b.is_ascii_digit()) {
        out.push((t.to_owned(), doc_freq));
    }
}

/// The [`MAX_EXPANSIONS`] most frequent words `word` expands to by `mode` over every
/// segment (document frequencies summed), without `word` itself.
fn expand(
    searcher: &Searcher,
    field: Field,
    mode: Mode,
    word: &str,
) -> tantivy::Result<Vec<String>> {
    let mut found: HashMap<String, u64> = HashMap::new();
    for segment in searcher.segment_readers() {
        for (t, df) in segment_words(segment, field, mode, word)?.iter() {
            match found.get_mut(t.as_str()) {
                Some(n) => *n += u64::from(*df),
                None => {
                    found.insert(t.clone(), u64::from(*df));
                }
            }
        }
    }
    Ok(most_frequent(found, word))
}

/// Indexed words of `field` one edit away from `word` (insertion, deletion, substitution
/// or transposition of two neighbours).
pub fn typos(searcher: &Searcher, field: Field, word: &str) -> tantivy::Result<Vec<String>> {
    expand(searcher, field, Mode::Typo, word)
}

/// Indexed words of `field` that start with `prefix`.
pub fn prefixed(searcher: &Searcher, field: Field, prefix: &str) -> tantivy::Result<Vec<String>> {
    expand(searcher, field, Mode::Prefix, prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, STRING};
    use tantivy::{doc, Index, IndexWriter};

    fn index_of(words: &[&str]) -> (Index, Field) {
        let mut schema = Schema::builder();
        let field = schema.add_text_field("words", STRING);
        let index = Index::create_in_ram(schema.build());
        let mut writer: IndexWriter = index.writer(15_000_000).expect("writer");
        for w in words {
            writer.add_document(doc!(field => *w)).expect("add");
        }
        writer.commit().expect("commit");
        (index, field)
    }

    fn cached_entries(segment: SegmentId) -> usize {
        let cache = cache().lock().expect("cache");
        cache.entries.keys().filter(|(s, ..)| *s == segment).count()
    }

    #[test]
    fn expansions_are_cached_per_segment_and_forgotten_on_request() {
        let (index, field) = index_of(&["smith", "smith", "smyth", "smithers", "jones", "12345"]);
        let searcher = index.reader().expect("reader").searcher();
        let segment = searcher.segment_readers()[0].segment_id();
        let first = typos(&searcher, field, "smith").expect("typos");
        assert_eq!(first, vec!["smyth".to_owned()]);
        assert_eq!(cached_entries(segment), 1);
        // Served from the cache: the same answer.
        assert_eq!(typos(&searcher, field, "smith").expect("typos"), first);
        assert_eq!(
            prefixed(&searcher, field, "smi").expect("prefix"),
            vec!["smith".to_owned(), "smithers".to_owned()],
            "most frequent first"
        );
        assert_eq!(cached_entries(segment), 2);
        // Numbers are never expansions.
        assert!(prefixed(&searcher, field, "123")
            .expect("prefix")
            .is_empty());

        // Another index's segment has its own entries.
        let (other, other_field) = index_of(&["smythe"]);
        let other_searcher = other.reader().expect("reader").searcher();
        assert_eq!(
            typos(&other_searcher, other_field, "smyth").expect("typos"),
            vec!["smythe".to_owned()]
        );

        forget();
        assert_eq!(cached_entries(segment), 0);
        assert_eq!(typos(&searcher, field, "smith").expect("typos"), first);
    }
}
