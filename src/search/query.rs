//! Search requests: validation and query building.
//!
//! Ranking, highest first:
//! 1. an exact identifier typed in: a whole email (`Bob@Example.com`), a phone written any
//!    way (`+1 (415) 555-0100`, normalized like ingest), or any identifier value;
//! 2. otherwise every word of `q` must match some field (name, email words, address, phone
//!    digits, identifier value), in tiers ([`Tier`]): every hit whose words all match
//!    whole indexed words ranks above every hit that needs a typo (Levenshtein distance 1,
//!    a transposition counting as one) or, for the last word only, a prefix (results while
//!    the agent is still typing); in between rank the hits where only the words found
//!    nowhere as typed needed one. A whole email with one typo matches in the last tier.
//!    Within each of these levels, the profiles whose name reads as the words, in the order
//!    typed, come first (the proximity rule; a tier of its own, answered from pairs of
//!    consecutive name words).
//!    Words are matched as whole terms of one field holding every word of a profile
//!    (names, email words, canonical address words, identifier values, phone digits); a
//!    typo or prefix is first expanded into the indexed words it stands for
//!    ([`super::expand`], at most 50 each, the most frequent). Within a tier, hits are
//!    ordered by score: BM25 over those words (a word found in two places, say the name
//!    and the email, counts twice), a whole word weighing more than a typo, a typo more
//!    than a prefix.
//!
//! Filters (`source`, `kind`, `city`) restrict the hits without changing their order.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};

use tantivy::{Searcher, Term};

use super::document::{self, address_words, filter_term, Fields};
use super::expand;
use crate::ingest::identifier::Normalizer;

/// Most hits per page.
pub const MAX_LIMIT: usize = 100;
/// Deepest page start (deep paging is a scraping pattern, not an agent's).
pub const MAX_OFFSET: usize = 10_000;
/// Longest accepted `q`, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Most words of `q` used (the rest is ignored).
const MAX_WORDS: usize = 12;
/// Words shorter than this are matched exactly or as a prefix, never with a typo.
const MIN_FUZZY_CHARS: usize = 4;
/// A last word shorter than this is matched whole only, never as a prefix.
const MIN_PREFIX_CHARS: usize = 2;

/// A request rejected before it reached the index.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SearchError {
    pub field: &'static str,
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> SearchError {
    SearchError {
        field,
        message: message.into(),
    }
}

/// A validated search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub q: String,
    pub limit: usize,
    pub offset: usize,
    pub source: Option<String>,
    pub kind: Option<String>,
    pub city: Option<String>,
    /// Row-level scope of the caller: only profiles with one of these sources (set by the
    /// API from the key, never from the query string).
    pub scope: Option<Vec<String>>,
}

impl SearchRequest {
    /// Validates the raw parameters; every rejection names the parameter and the reason.
    pub fn new(
        q: Option<&str>,
        limit: Option<usize>,
        offset: Option<usize>,
        source: Option<&str>,
        kind: Option<&str>,
        city: Option<&str>,
    ) -> Result<SearchRequest, SearchError> {
        let q = q.map(str::trim).unwrap_or_default();
        if q.is_empty() {
            return Err(invalid(
                "q",
                "q is empty; type a name, email, phone, address or id",
            ));
        }
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(invalid(
                "q",
                format!("q is longer than {MAX_QUERY_CHARS} characters"),
            ));
        }
        if q.chars().any(char::is_control) {
            return Err(invalid("q", "q contains control characters"));
        }
        if q.chars().filter(|c| *c == '"').count() % 2 == 1 {
            return Err(invalid("q", "q has an unbalanced double quote"));
        }
        let limit = limit.unwrap_or(20);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(invalid(
                "limit",
                format!("limit must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let offset = offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(invalid(
                "offset",
                format!("offset must be at most {MAX_OFFSET}"),
            ));
        }
        let filter =
            |field: &'static str, v: Option<&str>| -> Result<Option<String>, SearchError> {
                match v.map(str::trim) {
                    None => Ok(None),
                    Some("") => Err(invalid(field, format!("{field} is empty"))),
                    Some(v) if v.chars().count() > MAX_QUERY_CHARS => Err(invalid(
                        field,
                        format!("{field} is longer than {MAX_QUERY_CHARS} characters"),
                    )),
                    Some(v) => Ok(Some(filter_term(v))),
                }
            };
        Ok(SearchRequest {
            q: q.to_owned(),
            limit,
            offset,
            source: filter("source", source)?,
            scope: None,
            kind: filter("kind", kind)?,
            city: filter("city", city)?,
        })
    }
}

fn term(field: Field, text: &str) -> Box<dyn Query> {
    Box::new(TermQuery::new(
        Term::from_field_text(field, text),
        IndexRecordOption::WithFreqs,
    ))
}

fn boost(q: Box<dyn Query>, by: f32) -> Box<dyn Query> {
    Box::new(BoostQuery::new(q, by))
}

/// A union of `clauses` (a single clause is returned as it is).
fn any(mut clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    if clauses.len() == 1 {
        return clauses.remove(0);
    }
    Box::new(BooleanQuery::new(
        clauses.into_iter().map(|q| (Occur::Should, q)).collect(),
    ))
}

/// The words of `q`, analyzed like the indexed text (at most [`MAX_WORDS`]).
fn words(q: &str) -> Vec<String> {
    let mut w = document::words(q);
    w.truncate(MAX_WORDS);
    w
}

/// The digits typed in `q`, if there are as many as a phone number has (a national number
/// typed without its country code).
fn typed_digits(q: &str) -> Option<String> {
    let digits: String = q.chars().filter(char::is_ascii_digit).collect();
    (6..=15).contains(&digits.len()).then_some(digits)
}

/// `q` read as a phone number: E.164 digits, if it looks like one.
fn phone_digits(normalizer: &Normalizer, q: &str) -> Option<String> {
    let phone_chars = q
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c));
    let digits = q.chars().filter(char::is_ascii_digit).count();
    if !phone_chars || !(6..=15).contains(&digits) {
        return None;
    }
    normalizer
        .normalize("phone", q)
        .ok()
        .map(|id| id.value.trim_start_matches('+').to_owned())
}

/// Terms (text, boost) of the `words` field one query word stands for.
type WordTerms = Vec<(String, f32)>;

/// How far the words of `q` may stray from the indexed words.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Relax {
    /// Every word matches a whole indexed word.
    None,
    /// Words found nowhere as typed may match with one typo or, the last word, as a
    /// prefix; the others match whole words.
    Unknown,
    /// Every word may match with one typo or (the last word) as a prefix.
    All,
}

/// A ranking tier.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Tier {
    /// `q` as a whole is an identifier (an email or a phone typed in).
    Identifier,
    /// The words (relaxed as allowed) read as the profile's name, in the order typed
    /// (consecutive words are consecutive name words): the proximity rule.
    Name(Relax),
    /// Every word (relaxed as allowed) matches some word of the profile. With
    /// [`Relax::All`], a whole email with one typo matches too.
    Words(Relax),
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Identifier => "identifier",
            Tier::Name(Relax::None) | Tier::Words(Relax::None) => "exact_words",
            Tier::Name(_) | Tier::Words(_) => "typo_or_prefix",
        }
    }
}

/// Most name-pair terms one pair of consecutive words may stand for (a relaxed word times
/// its relaxed neighbour); beyond it the name tier is skipped for the words tier.
const MAX_PAIR_TERMS: usize = 64;

/// The queries of a request, one per ranking tier, loosest last, each built only when it
/// runs. Every hit of a tier ranks above the hits only a later tier finds (Meilisearch's
/// "fewer typos first" and "proximity" bucket rules), so a page is answered by the first
/// tiers that fill it and the looser, costlier tiers (which expand words into their typos
/// and prefixes) often never run. The words tiers form a chain of supersets, and each name
/// tier is a subset of the words tier of its level, so the last tier run counts every hit
/// of the tiers before it.
pub struct Plan {
    pub tiers: Vec<Tier>,
    /// Whether tier [`Tier::Identifier`], when it finds anything, is the whole answer (`q`
    /// is shaped like an email or a phone: what an agent typing one wants).
    pub identifier_only: bool,
    /// `q` lowercased (quotes and outer spaces trimmed).
    lower: String,
    /// Whole-identifier clauses of tier [`Tier::Identifier`].
    identifier: Vec<Box<dyn Query>>,
    /// Whole-identifier clauses of every word tier (also national digits typed in).
    exact: Vec<Box<dyn Query>>,
    /// The words of `q`, each with the whole indexed words it is (itself, its canonical
    /// address form) that have postings: none for a word found nowhere as typed.
    words: Vec<(String, Vec<(String, f32)>)>,
    filters: Vec<(Occur, Box<dyn Query>)>,
    /// Terms (text, boost) of the `words` field each word stands for, by (word, loose):
    /// expanded once, used by the name and the words tier alike.
    terms: RefCell<HashMap<(usize, bool), Rc<WordTerms>>>,
}

pub fn build(
    f: &Fields,
    normalizer: &Normalizer,
    req: &SearchRequest,
    searcher: &Searcher,
) -> Result<Plan, tantivy::TantivyError> {
    let q = req.q.trim_matches('"').trim();
    let lower = q.to_lowercase();
    // An email's domain words (`example`, `com`) are in a large share of all profiles and
    // say little: only the local part's words are matched word by word.
    let words = match lower.split_once('@') {
        Some((local, _)) => words(local),
        None => words(q),
    };

    // 1. The whole of q as an identifier.
    let mut exact = vec![(Term::from_field_text(f.ident_value, &lower), 50.0)];
    let mut shaped = false;
    if lower.contains('@') {
        shaped = true;
        exact.push((Term::from_field_text(f.email, &lower), 50.0));
    }
    if let Some(digits) = phone_digits(normalizer, q) {
        shaped = true;
        exact.push((Term::from_field_text(f.phone, &digits), 50.0));
    }
    let identifier_terms = exact.len();
    if let Some(digits) = typed_digits(q) {
        exact.push((Term::from_field_text(f.phone, &digits), 20.0));
    }
    // Terms found nowhere are left out: each clause costs a lookup per segment, and a
    // union over them, for nothing.
    let mut identifier = Vec::new();
    let mut exact_clauses = Vec::new();
    for (i, (t, by)) in exact.into_iter().enumerate() {
        if searcher.doc_freq(&t)? == 0 {
            continue;
        }
        let clause = boost(
            Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)),
            by,
        );
        if i < identifier_terms {
            identifier.push(clause.box_clone());
        }
        exact_clauses.push(clause);
    }
    let exact = exact_clauses;
    let filters: Vec<(Occur, Box<dyn Query>)> = [
        (f.source, &req.source),
        (f.kind, &req.kind),
        (f.city, &req.city),
    ]
    .into_iter()
    .filter_map(|(field, value)| value.as_ref().map(|v| (Occur::Must, term(field, v))))
    .chain(req.scope.as_ref().map(|sources| {
        (
            Occur::Must,
            any(sources.iter().map(|s| term(f.source, s)).collect()),
        )
    }))
    .collect();

    // 2. Every word somewhere: whole words first, then typos and prefixes of the words
    // found nowhere as typed, then of every word.
    let mut present = Vec::with_capacity(words.len());
    let n = words.len();
    for (i, w) in words.into_iter().enumerate() {
        let whole = indexed_whole_words(f, &w, nicknames_apply(i, n), searcher)?;
        present.push((w, whole));
    }
    let words = present;
    let mut tiers = Vec::new();
    if shaped {
        tiers.push(Tier::Identifier);
    }
    let mut levels = vec![Relax::None];
    let known = |w: &(String, Vec<(String, f32)>)| !w.1.is_empty();
    if words.iter().any(|w| !known(w)) && words.iter().any(known) {
        levels.push(Relax::Unknown);
    }
    levels.push(Relax::All);
    for level in levels {
        if words.len() >= 2 {
            tiers.push(Tier::Name(level));
        }
        tiers.push(Tier::Words(level));
    }
    Ok(Plan {
        tiers,
        identifier_only: shaped,
        lower,
        identifier,
        exact,
        words,
        filters,
        terms: RefCell::default(),
    })
}

impl Plan {
    fn with_filters(&self, q: Box<dyn Query>) -> Box<dyn Query> {
        if self.filters.is_empty() {
            return q;
        }
        let mut must = vec![(Occur::Must, q)];
        must.extend(self.filters.iter().map(|(o, q)| (*o, q.box_clone())));
        Box::new(BooleanQuery::new(must))
    }

    /// The terms word `i` stands for (see [`word_terms`]), expanded once per plan.
    fn terms_of(
        &self,
        f: &Fields,
        i: usize,
        loose: bool,
        searcher: &Searcher,
    ) -> tantivy::Result<Rc<WordTerms>> {
        if let Some(t) = self.terms.borrow().get(&(i, loose)) {
            return Ok(t.clone());
        }
        let Some((w, whole)) = self.words.get(i) else {
            return Ok(Rc::default());
        };
        let last = i + 1 == self.words.len();
        let terms = Rc::new(word_terms(f, w, whole, last, loose, searcher)?);
        self.terms.borrow_mut().insert((i, loose), terms.clone());
        Ok(terms)
    }

    /// The query of `tier`; `None` when the tier would stand for too many terms (a name
    /// tier over words with many expansions) and is skipped.
    pub fn query(
        &self,
        f: &Fields,
        tier: Tier,
        searcher: &Searcher,
    ) -> tantivy::Result<Option<Box<dyn Query>>> {
        let clone = |qs: &[Box<dyn Query>]| qs.iter().map(|q| q.box_clone()).collect();
        let level = match tier {
            Tier::Identifier => return Ok(Some(self.with_filters(any(clone(&self.identifier))))),
            Tier::Name(level) | Tier::Words(level) => level,
        };
        let loose = |i: usize| match level {
            Relax::All => true,
            Relax::Unknown => self.words[i].1.is_empty(),
            Relax::None => false,
        };
        let mut top: Vec<Box<dyn Query>> = clone(&self.exact);
        if tier == Tier::Words(Relax::All) && self.lower.contains('@') {
            top.push(boost(
                Box::new(FuzzyTermQuery::new(
                    Term::from_field_text(f.email, &self.lower),
                    1,
                    true,
                )),
                10.0,
            ));
        }
        let mut all_words: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(self.words.len());
        if matches!(tier, Tier::Name(_)) {
            // Each pair of consecutive words is a pair of consecutive name words.
            for i in 1..self.words.len() {
                let a = self.terms_of(f, i - 1, loose(i - 1), searcher)?;
                let b = self.terms_of(f, i, loose(i), searcher)?;
                if a.len() * b.len() > MAX_PAIR_TERMS {
                    return Ok(None);
                }
                let mut pairs = Vec::with_capacity(a.len() * b.len());
                for (x, bx) in a.iter() {
                    for (y, by) in b.iter() {
                        let t = Term::from_field_text(f.name_pairs, &format!("{x} {y}"));
                        pairs.push(boost(
                            Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)),
                            bx + by,
                        ));
                    }
                }
                all_words.push((Occur::Must, any(pairs)));
            }
        } else {
            for i in 0..self.words.len() {
                let terms = self.terms_of(f, i, loose(i), searcher)?;
                let clauses = terms
                    .iter()
                    .map(|(t, by)| {
                        let t = Term::from_field_text(f.words, t);
                        boost(
                            Box::new(TermQuery::new(t, IndexRecordOption::WithFreqs)),
                            *by,
                        )
                    })
                    .collect();
                all_words.push((Occur::Must, any(clauses)));
            }
        }
        if !all_words.is_empty() {
            top.push(Box::new(BooleanQuery::new(all_words)));
        }
        Ok(Some(self.with_filters(any(top))))
    }
}

/// The whole indexed words query word `w` is, with their boosts, among itself (a name,
/// email or address word, an identifier value, phone digits, an initial), its canonical
/// address form, and the names it is a nickname of or has as nicknames (`bob`: `robert`,
/// ranked a little below the word itself): those with postings in the `words` field.
/// Empty for a word found nowhere as typed.
fn indexed_whole_words(
    f: &Fields,
    w: &str,
    nicknames: bool,
    searcher: &Searcher,
) -> tantivy::Result<Vec<(String, f32)>> {
    let mut whole = vec![(w, WHOLE_BOOST)];
    let street = crate::profile::household::street_word(w);
    if !street.is_empty() && street != w {
        whole.push((street, WHOLE_BOOST));
    }
    if nicknames {
        whole.extend(
            super::nicknames::related(w)
                .iter()
                .map(|n| (n.as_str(), NICKNAME_BOOST)),
        );
    }
    let mut present = Vec::with_capacity(whole.len());
    for (t, by) in whole {
        if searcher.doc_freq(&Term::from_field_text(f.words, t))? > 0 {
            present.push((t.to_owned(), by));
        }
    }
    Ok(present)
}

/// Whether word `i` of `n` stands also for its nicknames: every word but the last of a
/// query of several words, which is still being typed (`Garcia Rob` is Roberta as typed
/// so far, not Bob through `rob`); a single word does.
fn nicknames_apply(i: usize, n: usize) -> bool {
    n == 1 || i + 1 < n
}

/// Boost of a word matched as typed (or in its canonical address form).
const WHOLE_BOOST: f32 = 6.0;
/// Boost of a name matched through the nickname list: under the name as typed, above a
/// typo.
const NICKNAME_BOOST: f32 = 4.5;

/// The terms of the `words` field word `w` stands for, with their boosts: the whole words
/// it is (`whole`, see [`indexed_whole_words`]; a word found nowhere stands for nothing
/// until relaxed) or, `loose`, also the indexed words one typo away and, for the last
/// word, the words it (or its canonical address form) starts (at most
/// [`expand::MAX_EXPANSIONS`] each).
fn word_terms(
    f: &Fields,
    w: &str,
    whole: &[(String, f32)],
    last: bool,
    loose: bool,
    searcher: &Searcher,
) -> tantivy::Result<WordTerms> {
    let mut terms: WordTerms = whole.to_vec();
    let chars = w.chars().count();
    // A number's prefix or one-digit neighbours are other numbers: digits match whole.
    let digits = w.chars().all(|c| c.is_ascii_digit());
    if loose && !digits {
        if chars >= MIN_FUZZY_CHARS {
            for t in expand::typos(searcher, f.words, w)? {
                terms.push((t, 3.0));
            }
        }
        if last && chars >= MIN_PREFIX_CHARS {
            let street = crate::profile::household::street_word(w);
            let mut prefixes = vec![w];
            if !street.is_empty() && street != w {
                prefixes.push(street);
            }
            for prefix in prefixes {
                for t in expand::prefixed(searcher, f.words, prefix)? {
                    terms.push((t, 2.0));
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    terms.retain(|(t, _)| seen.insert(t.clone()));
    Ok(terms)
}

/// Whether `a` and `b` are at most one edit apart (a transposition counting as one). The
/// lengths are compared first: most pairs differ by more than one character.
fn one_edit(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return one_edit_bytes(a.as_bytes(), b.as_bytes());
    }
    a.len().abs_diff(b.len()) <= 4
        && a.chars().count().abs_diff(b.chars().count()) <= 1
        && strsim::osa_distance(a, b) <= 1
}

/// [`one_edit`] of ASCII words, in one pass and without allocating: after the common
/// prefix, the rests must be equal once one substitution, insertion, deletion or swap of
/// neighbours is undone.
fn one_edit_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let i = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a[i..], &b[i..]);
    match ra.len().cmp(&rb.len()) {
        std::cmp::Ordering::Equal => {
            ra.is_empty()
                || ra[1..] == rb[1..]
                || (ra.len() >= 2 && ra[0] == rb[1] && ra[1] == rb[0] && ra[2..] == rb[2..])
        }
        std::cmp::Ordering::Less => ra == &rb[1..],
        std::cmp::Ordering::Greater => &ra[1..] == rb,
    }
}

/// Whether query word `q` matches indexed word `w` in a loose tier: whole, with one typo
/// (words of [`MIN_FUZZY_CHARS`] or more), or, the last word, as a prefix; digits match
/// whole only.
fn word_matches(q: &str, w: &str, last: bool) -> bool {
    let chars = q.chars().count();
    let digits = q.chars().all(|c| c.is_ascii_digit());
    q == w
        || (!digits && chars >= MIN_FUZZY_CHARS && one_edit(q, w))
        || (last && !digits && chars >= MIN_PREFIX_CHARS && w.starts_with(q))
}

/// Tells which fields of a hit's golden profile match a request, by the same rules as the
/// query (exact word, one typo, last-word prefix), for the `matched` list of a hit.
pub struct Matcher {
    lower: String,
    words: Vec<String>,
    phones: Vec<String>,
}

impl Matcher {
    pub fn new(normalizer: &Normalizer, req: &SearchRequest) -> Matcher {
        let q = req.q.trim_matches('"').trim();
        let mut phones: Vec<String> = phone_digits(normalizer, q).into_iter().collect();
        phones.extend(typed_digits(q));
        Matcher {
            lower: q.to_lowercase(),
            words: words(q),
            phones,
        }
    }

    fn any_word(&self, texts: &[&str]) -> bool {
        let indexed: Vec<String> = texts.iter().flat_map(|t| words(t)).collect();
        let n = self.words.len();
        self.words
            .iter()
            .enumerate()
            .any(|(i, q)| indexed.iter().any(|w| word_matches(q, w, i + 1 == n)))
    }

    /// Like [`Matcher::any_word`], where a one-letter word is also an initial and a name
    /// also matches its nicknames (and the names it is a nickname of).
    fn any_name_word(&self, texts: &[&str]) -> bool {
        let indexed: Vec<String> = texts.iter().flat_map(|t| words(t)).collect();
        let n = self.words.len();
        self.words.iter().enumerate().any(|(i, q)| {
            indexed.iter().any(|w| {
                word_matches(q, w, i + 1 == n)
                    || super::document::initial(w).as_deref() == Some(q.as_str())
                    || (nicknames_apply(i, n) && super::nicknames::are_related(q, w))
            })
        })
    }

    fn any_address_word(&self, texts: &[&str]) -> bool {
        let indexed: Vec<String> = texts.iter().flat_map(|t| address_words(t)).collect();
        let n = self.words.len();
        self.words.iter().enumerate().any(|(i, q)| {
            let q = crate::profile::household::street_word(q);
            !q.is_empty() && indexed.iter().any(|w| word_matches(q, w, i + 1 == n))
        })
    }

    /// `identifier`, `name`, `email`, `phone`, `address`: the fields of `golden` (a golden
    /// profile's JSON) that match.
    pub fn matched(&self, golden: &serde_json::Value) -> Vec<&'static str> {
        let ids = &golden["identifiers"];
        let values = |kind: &str| -> Vec<&str> {
            ids[kind]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default()
        };
        let all_ids: Vec<&str> = ids
            .as_object()
            .map(|o| {
                o.values()
                    .filter_map(|v| v.as_array())
                    .flatten()
                    .filter_map(|v| v.as_str())
                    .collect()
            })
            .unwrap_or_default();
        let traits = &golden["traits"];
        let names: Vec<&str> = ["first_name", "last_name"]
            .iter()
            .filter_map(|k| traits[*k].as_str())
            .collect();
        let address: Vec<&str> = traits["address"]
            .as_object()
            .map(|a| a.values().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let emails = values("email");
        let mut out = Vec::new();
        if all_ids.iter().any(|v| {
            let v = v.to_lowercase();
            v == self.lower || self.words.contains(&v)
        }) {
            out.push("identifier");
        }
        if self.any_name_word(&names) {
            out.push("name");
        }
        let email_typo =
            self.lower.contains('@') && emails.iter().any(|e| one_edit(e, &self.lower));
        if email_typo || self.any_word(&emails) {
            out.push("email");
        }
        // Parsing a phone for its national digits is costly: only when digits were typed.
        let digits_typed = !self.phones.is_empty()
            || self
                .words
                .iter()
                .any(|w| w.bytes().all(|b| b.is_ascii_digit()));
        let phone_hit = digits_typed
            && values("phone").iter().any(|p| {
                let e164 = p.trim_start_matches('+');
                let national = super::document::national_digits(p).unwrap_or_default();
                self.phones.iter().any(|d| d == e164 || *d == national)
                    || self.words.iter().any(|w| w == e164 || *w == national)
            });
        if phone_hit {
            out.push("phone");
        }
        if self.any_address_word(&address) {
            out.push("address");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(q: &str) -> Result<SearchRequest, SearchError> {
        SearchRequest::new(Some(q), None, None, None, None, None)
    }

    proptest::proptest! {
        /// The allocation-free check agrees with the optimal string alignment distance
        /// (a swap of neighbours is one edit) on short words over a small alphabet, where
        /// near misses of every kind are frequent.
        #[test]
        fn one_edit_agrees_with_osa_distance(a in "[abc]{0,6}", b in "[abc]{0,6}") {
            proptest::prop_assert_eq!(
                one_edit_bytes(a.as_bytes(), b.as_bytes()),
                strsim::osa_distance(&a, &b) <= 1,
                "{} / {}", a, b
            );
        }
    }

    #[test]
    fn one_edit_examples() {
        assert!(one_edit("smith", "smith"));
        assert!(one_edit("smith", "smyth"));
        assert!(one_edit("smith", "smiht"));
        assert!(one_edit("smith", "smth"));
        assert!(one_edit("smith", "smitht"));
        assert!(!one_edit("smith", "smyht"));
        assert!(!one_edit("smith", "smi"));
        assert!(one_edit("müller", "muller"));
        assert!(!one_edit("müller", "mahler"));
    }

    #[test]
    fn rejects_bad_requests_naming_the_parameter() {
        assert_eq!(req("   ").unwrap_err().field, "q");
        assert_eq!(req("\"bob").unwrap_err().field, "q");
        assert_eq!(
            req(&"a".repeat(MAX_QUERY_CHARS + 1)).unwrap_err().field,
            "q"
        );
        assert_eq!(req("a\u{0}b").unwrap_err().field, "q");
        let big = SearchRequest::new(Some("bob"), Some(MAX_LIMIT + 1), None, None, None, None);
        assert_eq!(big.unwrap_err().field, "limit");
        let zero = SearchRequest::new(Some("bob"), Some(0), None, None, None, None);
        assert_eq!(zero.unwrap_err().field, "limit");
        let deep = SearchRequest::new(Some("bob"), None, Some(MAX_OFFSET + 1), None, None, None);
        assert_eq!(deep.unwrap_err().field, "offset");
        let empty_filter = SearchRequest::new(Some("bob"), None, None, Some(" "), None, None);
        assert_eq!(empty_filter.unwrap_err().field, "source");
    }

    #[test]
    fn accepts_balanced_quotes_and_normalizes_filters() {
        let r = SearchRequest::new(
            Some(" \"Zoë Smith\" "),
            Some(5),
            Some(10),
            Some("CRM"),
            None,
            Some(" Springfield "),
        )
        .unwrap();
        assert_eq!(r.q, "\"Zoë Smith\"");
        assert_eq!((r.limit, r.offset), (5, 10));
        assert_eq!(r.source.as_deref(), Some("crm"));
        assert_eq!(r.city.as_deref(), Some("springfield"));
    }

    #[test]
    fn matcher_names_the_fields_that_match() {
        let n = Normalizer::new("US", &[]).unwrap();
        let golden = serde_json::json!({
            "identifiers": {
                "email": ["bob.smith@example.com"],
                "phone": ["+14155550100"],
                "loyalty_id": ["LOY-123"],
            },
            "traits": {
                "first_name": "Robert",
                "last_name": "Smith",
                "address": {"street": "12 Mill Rd", "city": "Chicago"},
            },
        });
        let m = |q: &str| Matcher::new(&n, &req(q).unwrap()).matched(&golden);
        assert_eq!(m("Robert Smiht"), vec!["name", "email"]);
        assert_eq!(m("Rob"), vec!["name"]);
        assert_eq!(m("+1 (415) 555-0100"), vec!["phone"]);
        assert_eq!(
            m("Bob.Smith@Example.com"),
            vec!["identifier", "name", "email"]
        );
        assert_eq!(m("bob.smiht@example.com"), vec!["name", "email"]);
        assert_eq!(m("loy-123"), vec!["identifier"]);
        assert_eq!(m("mill chic"), vec!["address"]);
        assert!(m("Alice").is_empty());
    }

    #[test]
    fn words_are_folded_like_the_index() {
        assert_eq!(
            words("Zoë  O'Brien-SMITH"),
            vec!["zoe", "o", "brien", "smith"]
        );
        assert_eq!(words("smith123 12B"), vec!["smith", "123", "12", "b"]);
    }

    #[test]
    fn phones_typed_any_way_read_as_e164_digits() {
        let n = Normalizer::new("US", &[]).unwrap();
        assert_eq!(
            phone_digits(&n, "+1 (415) 555-0100").as_deref(),
            Some("14155550100")
        );
        assert_eq!(
            phone_digits(&n, "415.555.0100").as_deref(),
            Some("14155550100")
        );
        assert_eq!(phone_digits(&n, "Bob Smith"), None);
        assert_eq!(phone_digits(&n, "12"), None);
    }
}
