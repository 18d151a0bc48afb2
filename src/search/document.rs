//! The index schema and the document of one golden profile.

use std::cell::RefCell;

use serde_json::Value;
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};
use tantivy::tokenizer::TokenStream;
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::TantivyDocument;

use crate::profile::household::street_word;

use crate::profile::golden::GoldenProfile;

/// Name of the profile id field.
pub const ID: &str = "id";
/// Name of the profile sequence-number field.
pub const SEQ: &str = "seq";

/// The sequence number of profile id `id`, if it has the usual form (formatting the
/// number gives the id back).
pub fn id_seq(id: &str) -> Option<u64> {
    let seq: u64 = id.strip_prefix("p_")?.parse().ok()?;
    (crate::resolve::session::profile_id(seq) == id).then_some(seq)
}

/// The fields of the index.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// Profile id (indexed, to delete a profile's document; stored, read only for an id
    /// that is not of the usual form).
    pub id: Field,
    /// The sequence number of an id of the usual form `p_<seq>` (a fast numeric field:
    /// reading it is much cheaper than reading the id's text).
    pub seq: Field,
    /// Whole emails, lowercased (exact and one-typo matches of a typed email).
    pub email: Field,
    /// Phones as E.164 digits and as national significant digits.
    pub phone: Field,
    /// Every identifier value, lowercased (an id typed in without its kind).
    pub ident_value: Field,
    /// Every word a query word can match, whatever it is in: name words (folded) and their
    /// initials, email
    /// words (local part and domain split: `bob.smith@x.com` = bob, smith, x, com),
    /// canonical address words (street, city, postal code, region, country), identifier
    /// values, phone digits; one term each, a word in two places counting twice. A query's
    /// words are matched here, one term per word (typos and prefixes expanded into terms).
    pub words: Field,
    /// Consecutive words of the name (first name then last name) as `first second`, and
    /// the first's initial with the second (`n torres`): a query's words read as the name,
    /// in order (the proximity rule).
    pub name_pairs: Field,
    /// Filters: city (lowercased), sources, identifier kinds.
    pub city: Field,
    pub source: Field,
    pub kind: Field,
}

/// Puts a space between letters and digits (`smith123` -> `smith 123`, `12b` -> `12 b`), so a
/// name inside an email matches the name, and a prefix of it does not expand to one term per
/// person. Applied to every word field and to queries alike.
pub fn split_letters_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut prev: Option<char> = None;
    for c in text.chars() {
        if let Some(p) = prev {
            if (p.is_alphabetic() && c.is_ascii_digit())
                || (p.is_ascii_digit() && c.is_alphabetic())
            {
                out.push(' ');
            }
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

/// Words of this many bytes or more are not indexed (nor matched).
const MAX_WORD_BYTES: usize = 64;

pub fn folded_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_WORD_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

pub fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let exact_words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("raw")
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fields = Fields {
        id: b.add_text_field(ID, STRING | STORED),
        seq: b.add_u64_field(SEQ, FAST),
        email: b.add_text_field("email", STRING),
        phone: b.add_text_field("phone", STRING),
        ident_value: b.add_text_field("ident_value", STRING),
        words: b.add_text_field("words", exact_words.clone()),
        name_pairs: b.add_text_field("name_pairs", exact_words),
        city: b.add_text_field("city", STRING),
        source: b.add_text_field("source", STRING),
        kind: b.add_text_field("kind", STRING),
    };
    (b.build(), fields)
}

fn text(v: &Value) -> Option<&str> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// Filter value (city, source, kind) as indexed and as queried: folded words joined by
/// one space (`Zürich` = `zurich`, ` New  York ` = `new york`).
pub fn filter_term(s: &str) -> String {
    words(s).join(" ")
}

/// Most words of a text used.
const MAX_WORDS: usize = 64;

/// The words of a text, analyzed like the word fields (letters and digits apart, folded).
pub fn words(text: &str) -> Vec<String> {
    if text.is_ascii() {
        return ascii_words(text);
    }
    analyzed_words(text)
}

/// [`words`] of ASCII text without the analyzer (the common case, on every indexed
/// profile and every hit): runs of letters and digits, split where letters meet digits,
/// lowercased, long ones dropped, as the analyzer does.
fn ascii_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for run in text.split(|c: char| !c.is_ascii_alphanumeric()) {
        let bytes = run.as_bytes();
        let mut start = 0;
        for end in 1..=bytes.len() {
            let boundary = end == bytes.len()
                || bytes[end].is_ascii_digit() != bytes[end - 1].is_ascii_digit();
            if boundary {
                let token = &run[start..end];
                if token.len() < MAX_WORD_BYTES {
                    if out.len() == MAX_WORDS {
                        return out;
                    }
                    out.push(token.to_ascii_lowercase());
                }
                start = end;
            }
        }
    }
    out
}

/// [`words`] through the folding analyzer (any script).
fn analyzed_words(text: &str) -> Vec<String> {
    thread_local! {
        // Building an analyzer allocates its filter chain: one per thread, reused.
        static ANALYZER: RefCell<TextAnalyzer> = RefCell::new(folded_analyzer());
    }
    let text = split_letters_digits(text);
    ANALYZER.with_borrow_mut(|analyzer| {
        let mut stream = analyzer.token_stream(&text);
        let mut out = Vec::new();
        while stream.advance() && out.len() < MAX_WORDS {
            out.push(stream.token().text.clone());
        }
        out
    })
}

/// Address words in canonical form (`Street` = `St`), as the household rule reads them.
pub fn address_words(text: &str) -> Vec<String> {
    words(text)
        .iter()
        .map(|w| street_word(w))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// National significant digits of an E.164 number (`+14155550100` -> `4155550100`).
pub fn national_digits(e164: &str) -> Option<String> {
    let n = phonenumber::parse(None, e164).ok()?;
    Some(n.national().value().to_string())
}

fn add_words(doc: &mut TantivyDocument, field: Field, words: Vec<String>) {
    for w in words {
        doc.add_text(field, w);
    }
}

/// The initial of a name word of two or more letters (`nicole` → `n`), indexed so an
/// agent may type a first name as its initial.
pub fn initial(word: &str) -> Option<String> {
    let mut chars = word.chars();
    let first = chars.next().filter(|c| c.is_alphabetic())?;
    chars.next().map(|_| first.to_string())
}

/// The document of a cached golden profile (hint byte + JSON). `None` if the cached value
/// cannot be read; the caller skips it (the profile stays reachable by lookup).
pub fn build(f: &Fields, id: &str, cached: &[u8]) -> Option<TantivyDocument> {
    let json = cached.get(1..)?;
    let golden: GoldenProfile = serde_json::from_slice(json).ok()?;
    let mut doc = TantivyDocument::default();
    doc.add_text(f.id, id);
    if let Some(seq) = id_seq(id) {
        doc.add_u64(f.seq, seq);
    }
    let mut name_words = Vec::new();
    for name in [&golden.traits.first_name, &golden.traits.last_name]
        .into_iter()
        .flatten()
        .filter_map(text)
    {
        name_words.extend(words(name));
    }
    for pair in name_words.windows(2) {
        doc.add_text(f.name_pairs, format!("{} {}", pair[0], pair[1]));
        // An initial and the next word: `n torres` reads as the name Nicole Torres.
        if let Some(i) = initial(&pair[0]) {
            doc.add_text(f.name_pairs, format!("{i} {}", pair[1]));
        }
    }
    let initials: Vec<String> = name_words.iter().filter_map(|w| initial(w)).collect();
    add_words(&mut doc, f.words, name_words);
    add_words(&mut doc, f.words, initials);
    if let Some(Value::Object(addr)) = &golden.traits.address {
        for part in ["street", "city", "postal_code", "region", "country"] {
            if let Some(t) = addr.get(part).and_then(text) {
                let canonical = address_words(t);
                add_words(&mut doc, f.words, canonical);
            }
        }
        if let Some(city) = addr.get("city").and_then(text) {
            doc.add_text(f.city, filter_term(city));
        }
    }
    for (kind, values) in &golden.identifiers {
        doc.add_text(f.kind, filter_term(kind));
        for value in values {
            doc.add_text(f.ident_value, value.to_lowercase());
            doc.add_text(f.words, value.to_lowercase());
            match kind.as_str() {
                "email" => {
                    doc.add_text(f.email, value);
                    add_words(&mut doc, f.words, words(value));
                }
                "phone" => {
                    let e164 = value.trim_start_matches('+');
                    doc.add_text(f.phone, e164);
                    doc.add_text(f.words, e164);
                    if let Some(national) = national_digits(value) {
                        doc.add_text(f.words, &national);
                        doc.add_text(f.phone, national);
                    }
                }
                _ => {}
            }
        }
    }
    for source in &golden.sources {
        doc.add_text(f.source, filter_term(source));
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The ASCII fast path splits, lowercases and drops words exactly as the analyzer.
        #[test]
        fn ascii_words_agree_with_the_analyzer(text in "[ -~]{0,120}") {
            proptest::prop_assert_eq!(ascii_words(&text), analyzed_words(&text));
        }

        #[test]
        fn ascii_words_agree_on_long_and_many_words(
            parts in proptest::collection::vec("[a-zA-Z0-9]{1,70}", 0..80)
        ) {
            let text = parts.join(" ");
            proptest::prop_assert_eq!(ascii_words(&text), analyzed_words(&text));
        }
    }

    #[test]
    fn words_examples() {
        assert_eq!(words("12 Baker St."), ["12", "baker", "st"]);
        assert_eq!(words("Apt4B"), ["apt", "4", "b"]);
        assert_eq!(words("Zürich"), ["zurich"]);
        assert_eq!(words("O'Brien-Smith"), ["o", "brien", "smith"]);
    }
}
