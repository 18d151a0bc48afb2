//! Search requests: validation and query building.
//!
//! Ranking, highest first:
//! 1. an exact identifier typed in: a whole email (`Bob@Example.com`), a phone written any
//!    way (`+1 (415) 555-0100`, normalized like ingest), or any identifier value;
//! 2. otherwise every word of `q` must match some field (name, email words, address, phone
//!    digits, identifier value), scored best for an exact word, then one typo (Levenshtein
//!    distance 1, a transposition counting as one), then, for the last word only, a prefix
//!    (results while the agent is still typing). A whole email with one typo matches too.
//!
//! Filters (`source`, `kind`, `city`) restrict the hits without changing their order.

use tantivy::query::{BooleanQuery, BoostQuery, FuzzyTermQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::Term;

use super::document::{self, address_words, filter_term, Fields};
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

fn any(clauses: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(
        clauses.into_iter().map(|q| (Occur::Should, q)).collect(),
    ))
}

/// How a word may match a word field.
#[derive(Clone, Copy)]
struct Matching {
    weight: f32,
    typo: bool,
    /// Shortest last word matched as a prefix (`None`: no prefix matching).
    prefix_from: Option<usize>,
}

/// Exact word, one typo, and (last word) prefix matches of `word` in a word field.
fn word_in(field: Field, word: &str, last: bool, m: Matching) -> Vec<Box<dyn Query>> {
    let t = Term::from_field_text(field, word);
    let chars = word.chars().count();
    let mut out = vec![boost(term(field, word), 3.0 * m.weight)];
    let digits = word.chars().all(|c| c.is_ascii_digit());
    if m.typo && !digits && chars >= MIN_FUZZY_CHARS {
        out.push(boost(
            Box::new(FuzzyTermQuery::new(t.clone(), 1, true)),
            1.5 * m.weight,
        ));
    }
    // A number's prefix or one-digit neighbours are other numbers: digits match whole.
    if last && !digits && m.prefix_from.is_some_and(|min| chars >= min) {
        out.push(boost(
            Box::new(FuzzyTermQuery::new_prefix(t, 0, true)),
            m.weight,
        ));
    }
    out
}

const NAME: Matching = Matching {
    weight: 2.0,
    typo: true,
    prefix_from: Some(2),
};
const EMAIL_WORDS: Matching = Matching {
    weight: 1.5,
    typo: true,
    prefix_from: Some(3),
};
const ADDRESS: Matching = Matching {
    weight: 1.0,
    typo: false,
    prefix_from: Some(3),
};

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

/// The queries of a request.
pub struct Plan {
    /// When `q` is shaped like an email or a phone: exact identifier matches only. If it
    /// finds anything, that is the answer (cheap, and what an agent typing a whole email or
    /// number wants); otherwise `full` runs.
    pub exact_only: Option<Box<dyn Query>>,
    pub full: Box<dyn Query>,
}

pub fn build(
    f: &Fields,
    normalizer: &Normalizer,
    req: &SearchRequest,
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
    let mut exact: Vec<Box<dyn Query>> = vec![boost(term(f.ident_value, &lower), 50.0)];
    let mut shaped = false;
    if lower.contains('@') {
        shaped = true;
        exact.push(boost(term(f.email, &lower), 50.0));
    }
    if let Some(digits) = phone_digits(normalizer, q) {
        shaped = true;
        exact.push(boost(term(f.phone, &digits), 50.0));
    }
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
    let with_filters = |q: Box<dyn Query>| -> Box<dyn Query> {
        let mut must = vec![(Occur::Must, q)];
        must.extend(filters.iter().map(|(o, q)| (*o, q.box_clone())));
        Box::new(BooleanQuery::new(must))
    };
    let exact_only =
        shaped.then(|| with_filters(any(exact.iter().map(|q| q.box_clone()).collect())));
    if lower.contains('@') {
        exact.push(boost(
            Box::new(FuzzyTermQuery::new(
                Term::from_field_text(f.email, &lower),
                1,
                true,
            )),
            10.0,
        ));
    }
    if let Some(digits) = typed_digits(q) {
        exact.push(boost(term(f.phone, &digits), 20.0));
    }

    // 2. Every word somewhere.
    let mut all_words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        let name = word_in(f.name, w, last, NAME);
        let email = word_in(f.email_part, w, last, EMAIL_WORDS);
        let street = crate::profile::household::street_word(w);
        let address = if street.is_empty() {
            Vec::new()
        } else {
            word_in(f.address, street, last, ADDRESS)
        };
        let mut clauses = Vec::new();
        clauses.extend(name);
        clauses.extend(email);
        clauses.extend(address);
        clauses.push(boost(term(f.ident_value, w), 4.0));
        if w.chars().all(|c| c.is_ascii_digit()) && w.len() >= 6 {
            clauses.push(boost(term(f.phone, w), 4.0));
        }
        all_words.push((Occur::Must, any(clauses)));
    }

    let mut top: Vec<Box<dyn Query>> = exact.iter().map(|q| q.box_clone()).collect();
    if !all_words.is_empty() {
        top.push(Box::new(BooleanQuery::new(all_words)));
    }
    Ok(Plan {
        exact_only,
        full: with_filters(any(top)),
    })
}

fn word_matches(q: &str, w: &str, last: bool, m: Matching) -> bool {
    let chars = q.chars().count();
    let digits = q.chars().all(|c| c.is_ascii_digit());
    q == w
        || (m.typo && !digits && chars >= MIN_FUZZY_CHARS && strsim::osa_distance(q, w) <= 1)
        || (last && !digits && m.prefix_from.is_some_and(|min| chars >= min) && w.starts_with(q))
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

    fn any_word(&self, texts: &[&str], m: Matching) -> bool {
        let indexed: Vec<String> = texts.iter().flat_map(|t| words(t)).collect();
        let n = self.words.len();
        self.words
            .iter()
            .enumerate()
            .any(|(i, q)| indexed.iter().any(|w| word_matches(q, w, i + 1 == n, m)))
    }

    fn any_address_word(&self, texts: &[&str]) -> bool {
        let indexed: Vec<String> = texts.iter().flat_map(|t| address_words(t)).collect();
        let n = self.words.len();
        self.words.iter().enumerate().any(|(i, q)| {
            let q = crate::profile::household::street_word(q);
            !q.is_empty()
                && indexed
                    .iter()
                    .any(|w| word_matches(q, w, i + 1 == n, ADDRESS))
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
        if self.any_word(&names, NAME) {
            out.push("name");
        }
        let email_typo = self.lower.contains('@')
            && emails
                .iter()
                .any(|e| strsim::osa_distance(e, &self.lower) <= 1);
        if email_typo || self.any_word(&emails, EMAIL_WORDS) {
            out.push("email");
        }
        let phone_hit = values("phone").iter().any(|p| {
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
