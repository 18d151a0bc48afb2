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
use tantivy::tokenizer::TokenStream;
use tantivy::Term;

use super::document::{filter_term, folded_analyzer, Fields};
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
            kind: filter("kind", kind)?,
            city: filter("city", city)?,
        })
    }
}

/// The query of a request, and one probe query per field group, used to tell which
/// fields matched a hit.
pub struct Built {
    pub query: Box<dyn Query>,
    pub probes: Vec<(&'static str, Box<dyn Query>)>,
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

/// Exact word, one typo, and (last word) prefix matches of `word` in a word field.
fn word_in(field: Field, word: &str, last: bool, weight: f32) -> Vec<Box<dyn Query>> {
    let t = Term::from_field_text(field, word);
    let mut out = vec![boost(term(field, word), 3.0 * weight)];
    if word.chars().count() >= MIN_FUZZY_CHARS {
        out.push(boost(
            Box::new(FuzzyTermQuery::new(t.clone(), 1, true)),
            1.5 * weight,
        ));
    }
    if last {
        out.push(boost(
            Box::new(FuzzyTermQuery::new_prefix(t, 0, true)),
            weight,
        ));
    }
    out
}

/// The words of `q`, analyzed like the indexed text.
fn words(q: &str) -> Vec<String> {
    let mut analyzer = folded_analyzer();
    let mut stream = analyzer.token_stream(q);
    let mut out = Vec::new();
    while stream.advance() && out.len() < MAX_WORDS {
        out.push(stream.token().text.clone());
    }
    out
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

pub fn build(
    f: &Fields,
    normalizer: &Normalizer,
    req: &SearchRequest,
) -> Result<Built, tantivy::TantivyError> {
    let q = req.q.trim_matches('"').trim();
    let lower = q.to_lowercase();
    let words = words(q);

    // 1. The whole of q as an identifier.
    let mut exact: Vec<Box<dyn Query>> = vec![boost(term(f.ident_value, &lower), 50.0)];
    let mut email_probe: Vec<Box<dyn Query>> = Vec::new();
    let mut phone_probe: Vec<Box<dyn Query>> = Vec::new();
    if lower.contains('@') {
        exact.push(boost(term(f.email, &lower), 50.0));
        exact.push(boost(
            Box::new(FuzzyTermQuery::new(
                Term::from_field_text(f.email, &lower),
                1,
                true,
            )),
            10.0,
        ));
        email_probe.push(term(f.email, &lower));
        email_probe.push(Box::new(FuzzyTermQuery::new(
            Term::from_field_text(f.email, &lower),
            1,
            true,
        )));
    }
    if let Some(digits) = phone_digits(normalizer, q) {
        exact.push(boost(term(f.phone, &digits), 50.0));
        phone_probe.push(term(f.phone, &digits));
    }
    let typed_digits: String = q.chars().filter(char::is_ascii_digit).collect();
    if typed_digits.len() >= 6 && typed_digits.len() <= 15 {
        exact.push(boost(term(f.phone, &typed_digits), 20.0));
        phone_probe.push(term(f.phone, &typed_digits));
    }

    // 2. Every word somewhere.
    let mut name_probe = Vec::new();
    let mut address_probe = Vec::new();
    let mut all_words: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        let name = word_in(f.name, w, last, 2.0);
        let email = word_in(f.email_part, w, last, 1.5);
        let address = word_in(f.address, w, last, 1.0);
        name_probe.extend(name.iter().map(|q| q.box_clone()));
        email_probe.extend(email.iter().map(|q| q.box_clone()));
        address_probe.extend(address.iter().map(|q| q.box_clone()));
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
    let mut must: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, any(top))];
    for (field, value) in [
        (f.source, &req.source),
        (f.kind, &req.kind),
        (f.city, &req.city),
    ] {
        if let Some(v) = value {
            must.push((Occur::Must, term(field, v)));
        }
    }

    let mut ident_probe: Vec<Box<dyn Query>> = vec![term(f.ident_value, &lower)];
    ident_probe.extend(words.iter().map(|w| term(f.ident_value, w)));
    let mut probes: Vec<(&'static str, Box<dyn Query>)> = vec![("identifier", any(ident_probe))];
    for (name, clauses) in [
        ("name", name_probe),
        ("email", email_probe),
        ("phone", phone_probe),
        ("address", address_probe),
    ] {
        if !clauses.is_empty() {
            probes.push((name, any(clauses)));
        }
    }
    Ok(Built {
        query: Box::new(BooleanQuery::new(must)),
        probes,
    })
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
    fn words_are_folded_like_the_index() {
        assert_eq!(
            words("Zoë  O'Brien-SMITH"),
            vec!["zoe", "o", "brien", "smith"]
        );
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
