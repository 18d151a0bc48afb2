//! The audience filter language: parsed into a typed AST, checked against what the
//! deployment knows (identifier kinds, sources, purposes, summed properties) when the
//! audience is defined, and evaluated by this code over one profile. Nothing of a filter
//! is ever handed to a template or script engine: the only operations are the ones below.
//!
//! ```text
//! filter     := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" filter ")" | predicate | comparison
//! predicate  := "has" "(" KIND ")" | "source" "(" SOURCE ")" | "consent" "(" PURPOSE ")"
//!             | "in_household"
//! comparison := value OP literal | value "in" "(" literal ("," literal)* ")"
//! value      := "trait." NAME ("." FIELD)?          golden trait (address.city, tier, ...)
//!             | "score"                             the propensity score's value (0..1)
//!             | "event_count" | "days_since_seen" | "days_since_first_seen"
//!             | "count" "(" TYPE ("," WINDOW)? ")"  events of a type (`*`: any type)
//!             | "sum" "(" TYPE "," PROPERTY ("," WINDOW)? ")"
//!             | "days_since" "(" TYPE ")"           days since the type's last event
//!             | "identifiers" "(" KIND ")"          how many identifiers of a kind
//! OP         := "=" | "!=" | "<" | "<=" | ">" | ">="
//! literal    := "string" | number | true | false
//! WINDOW     := whole number and unit: 30d, 12h
//! ```
//!
//! A comparison with a missing value (a trait never seen, no event of the type) is false,
//! whatever the operator: `not (trait.tier = "gold")` includes profiles without a tier.

use std::collections::BTreeSet;

use serde_json::Value;

/// Longest filter accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting of parentheses and `not`.
const MAX_DEPTH: usize = 32;
/// Most terms (predicates and comparisons) in one filter.
const MAX_TERMS: usize = 64;
const DAY_MS: i64 = 86_400_000;

/// A filter that could not be parsed or checked: what and where (a byte offset into the
/// filter, 0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub position: usize,
    pub message: String,
}

impl std::fmt::Display for FilterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

fn err<T>(position: usize, message: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError {
        position,
        message: message.into(),
    })
}

/// What a filter may name: checked when an audience is defined.
#[derive(Debug, Clone, Default)]
pub struct Vocabulary {
    pub kinds: BTreeSet<String>,
    pub sources: BTreeSet<String>,
    pub purposes: BTreeSet<String>,
    /// Event properties whose numeric values are summed per day (`sum(...)`).
    pub sum_properties: BTreeSet<String>,
    /// Longest window a `count`/`sum` may use (days of activity kept per profile).
    pub activity_days: u32,
}

/// The comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A literal of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// Event types a `count`/`sum`/`days_since` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypes {
    Any,
    One(String),
}

/// A value of a profile a comparison reads.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// A golden trait, and for an object trait (address) one of its fields.
    Trait(String, Option<String>),
    Score,
    EventCount,
    DaysSinceSeen,
    DaysSinceFirstSeen,
    /// Events of the types within the window (ms; `None`: all time).
    Count(EventTypes, Option<i64>),
    Sum(EventTypes, String, Option<i64>),
    DaysSince(EventTypes),
    Identifiers(String),
}

/// The typed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Has(String),
    Source(String),
    Consent(String),
    InHousehold,
    Compare(Field, Op, Literal),
    In(Field, Vec<Literal>),
}

impl Expr {
    /// Whether the result can change with time alone (windows, days since): such
    /// audiences are re-evaluated by the periodic refresh, not only when profiles change.
    pub fn time_relative(&self) -> bool {
        match self {
            Expr::And(v) | Expr::Or(v) => v.iter().any(Expr::time_relative),
            Expr::Not(e) => e.time_relative(),
            Expr::Compare(f, ..) | Expr::In(f, _) => matches!(
                f,
                Field::DaysSinceSeen
                    | Field::DaysSinceFirstSeen
                    | Field::DaysSince(_)
                    | Field::Count(_, Some(_))
                    | Field::Sum(_, _, Some(_))
            ),
            _ => false,
        }
    }
}

// ---- lexer ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    /// A window: milliseconds.
    Window(i64),
    Op(Op),
    LParen,
    RParen,
    Comma,
    Star,
    End,
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push((start, Tok::LParen));
                i += 1;
            }
            b')' => {
                out.push((start, Tok::RParen));
                i += 1;
            }
            b',' => {
                out.push((start, Tok::Comma));
                i += 1;
            }
            b'*' => {
                out.push((start, Tok::Star));
                i += 1;
            }
            b'=' => {
                out.push((start, Tok::Op(Op::Eq)));
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push((start, Tok::Op(Op::Ne)));
                i += 2;
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                let op = match (c, eq) {
                    (b'<', true) => Op::Le,
                    (b'<', false) => Op::Lt,
                    (_, true) => Op::Ge,
                    _ => Op::Gt,
                };
                out.push((start, Tok::Op(op)));
                i += if eq { 2 } else { 1 };
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let Some(ch) = text[i..].chars().next() else {
                        return err(start, "unterminated string");
                    };
                    i += ch.len_utf8();
                    match ch {
                        '"' => break,
                        '\\' => {
                            let Some(next) = text[i..].chars().next() else {
                                return err(start, "unterminated string");
                            };
                            i += next.len_utf8();
                            match next {
                                '"' | '\\' => s.push(next),
                                _ => return err(i - 2, "only \\\" and \\\\ escapes are allowed"),
                            }
                        }
                        c if c.is_control() => return err(i - 1, "control character in a string"),
                        c => s.push(c),
                    }
                }
                out.push((start, Tok::Str(s)));
            }
            b'0'..=b'9' | b'-' | b'.' => {
                i += 1;
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let digits = &text[start..i];
                if i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    let unit_start = i;
                    while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
                        i += 1;
                    }
                    let unit = &text[unit_start..i];
                    let n: i64 = match digits.parse() {
                        Ok(n) if n > 0 => n,
                        _ => {
                            return err(
                                start,
                                "a window is a whole number above 0 and a unit (30d, 12h)",
                            )
                        }
                    };
                    let ms = match unit {
                        "d" => n.checked_mul(DAY_MS),
                        "h" => n.checked_mul(3_600_000),
                        _ => {
                            return err(
                                unit_start,
                                format!("unknown window unit {unit:?}; use d (days) or h (hours)"),
                            )
                        }
                    };
                    let Some(ms) = ms else {
                        return err(start, "window too long");
                    };
                    out.push((start, Tok::Window(ms)));
                } else {
                    match digits.parse::<f64>() {
                        Ok(n) if n.is_finite() => out.push((start, Tok::Num(n))),
                        _ => return err(start, format!("not a number: {digits:?}")),
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
                {
                    i += 1;
                }
                out.push((start, Tok::Ident(text[start..i].to_owned())));
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return err(start, format!("unexpected character {ch:?}"));
            }
        }
    }
    out.push((text.len(), Tok::End));
    Ok(out)
}

// ---- parser ----

struct Parser<'v> {
    toks: Vec<(usize, Tok)>,
    at: usize,
    depth: usize,
    terms: usize,
    vocab: &'v Vocabulary,
}

/// Parses and checks `text` against `vocab`.
pub fn parse(text: &str, vocab: &Vocabulary) -> Result<Expr, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return err(
            MAX_FILTER_BYTES,
            format!("a filter is at most {MAX_FILTER_BYTES} bytes"),
        );
    }
    if text.trim().is_empty() {
        return err(0, "the filter is empty");
    }
    let mut p = Parser {
        toks: lex(text)?,
        at: 0,
        depth: 0,
        terms: 0,
        vocab,
    };
    let e = p.or()?;
    match p.peek() {
        (_, Tok::End) => Ok(e),
        (pos, t) => err(
            pos,
            format!("expected `and`, `or` or the end, found {}", describe(&t)),
        ),
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Str(_) => "a string".into(),
        Tok::Num(_) => "a number".into(),
        Tok::Window(_) => "a window".into(),
        Tok::Op(_) => "an operator".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Comma => "`,`".into(),
        Tok::Star => "`*`".into(),
        Tok::End => "the end of the filter".into(),
    }
}

impl Parser<'_> {
    fn peek(&self) -> (usize, Tok) {
        self.toks.get(self.at).cloned().unwrap_or((0, Tok::End))
    }

    fn next(&mut self) -> (usize, Tok) {
        let t = self.peek();
        self.at += 1;
        t
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(&self.peek().1, Tok::Ident(s) if s == word)
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<usize, FilterError> {
        let (pos, t) = self.next();
        if t == want {
            Ok(pos)
        } else {
            err(pos, format!("expected {what}, found {}", describe(&t)))
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.and()?];
        while self.keyword("or") {
            self.next();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.unary()?];
        while self.keyword("and") {
            self.next();
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let (pos, t) = self.peek();
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(pos, format!("nested more than {MAX_DEPTH} levels deep"));
        }
        let out = match t {
            Tok::Ident(w) if w == "not" => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Tok::LParen => {
                self.next();
                let e = self.or()?;
                self.expect(Tok::RParen, "`)`")?;
                Ok(e)
            }
            Tok::Ident(_) => self.term(),
            other => err(
                pos,
                format!("expected a condition, found {}", describe(&other)),
            ),
        };
        self.depth -= 1;
        out
    }

    /// The single argument of `name(...)`: a name (identifier or string).
    fn name_arg(&mut self) -> Result<(usize, String), FilterError> {
        let (pos, t) = self.next();
        match t {
            Tok::Ident(s) | Tok::Str(s) => Ok((pos, s)),
            other => err(pos, format!("expected a name, found {}", describe(&other))),
        }
    }

    fn types_arg(&mut self) -> Result<EventTypes, FilterError> {
        if self.peek().1 == Tok::Star {
            self.next();
            return Ok(EventTypes::Any);
        }
        let (pos, name) = self.name_arg()?;
        if name.is_empty() || name.chars().count() > 64 {
            return err(pos, "an event type is 1 to 64 characters");
        }
        Ok(EventTypes::One(name))
    }

    fn window_arg(&mut self) -> Result<Option<i64>, FilterError> {
        if self.peek().1 != Tok::Comma {
            return Ok(None);
        }
        self.next();
        let (pos, t) = self.next();
        let Tok::Window(ms) = t else {
            return err(
                pos,
                format!("expected a window such as 30d, found {}", describe(&t)),
            );
        };
        let max = i64::from(self.vocab.activity_days) * DAY_MS;
        if ms > max {
            return err(
                pos,
                format!(
                    "a window is at most {} days (audiences.activity_days)",
                    self.vocab.activity_days
                ),
            );
        }
        Ok(Some(ms))
    }

    fn term(&mut self) -> Result<Expr, FilterError> {
        let (pos, t) = self.next();
        let Tok::Ident(word) = t else {
            return err(pos, "expected a condition");
        };
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return err(pos, format!("more than {MAX_TERMS} conditions"));
        }
        let field = match word.as_str() {
            "in_household" => return Ok(Expr::InHousehold),
            "has" | "source" | "consent" => {
                self.expect(Tok::LParen, "`(`")?;
                let (apos, name) = self.name_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                let (known, what, setting) = match word.as_str() {
                    "has" => (&self.vocab.kinds, "identifier kind", "identifiers.custom_kinds"),
                    "source" => (&self.vocab.sources, "source", "sources.custom"),
                    _ => (&self.vocab.purposes, "purpose", "consent.purposes"),
                };
                if !known.contains(&name) {
                    return err(
                        apos,
                        format!(
                            "unknown {what} {name:?}; known ({setting}): {}",
                            known.iter().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    );
                }
                return Ok(match word.as_str() {
                    "has" => Expr::Has(name),
                    "source" => Expr::Source(name),
                    _ => Expr::Consent(name),
                });
            }
            "score" => Field::Score,
            "event_count" => Field::EventCount,
            "days_since_seen" => Field::DaysSinceSeen,
            "days_since_first_seen" => Field::DaysSinceFirstSeen,
            "count" => {
                self.expect(Tok::LParen, "`(`")?;
                let types = self.types_arg()?;
                let window = self.window_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                Field::Count(types, window)
            }
            "sum" => {
                self.expect(Tok::LParen, "`(`")?;
                let types = self.types_arg()?;
                self.expect(Tok::Comma, "`,` and a property")?;
                let (ppos, prop) = self.name_arg()?;
                if !self.vocab.sum_properties.contains(&prop) {
                    return err(
                        ppos,
                        format!(
                            "{prop:?} is not a summed property; summed (audiences.sum_properties): {}",
                            self.vocab
                                .sum_properties
                                .iter()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                let window = self.window_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                Field::Sum(types, prop, window)
            }
            "days_since" => {
                self.expect(Tok::LParen, "`(`")?;
                let types = self.types_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                Field::DaysSince(types)
            }
            "identifiers" => {
                self.expect(Tok::LParen, "`(`")?;
                let (apos, kind) = self.name_arg()?;
                self.expect(Tok::RParen, "`)`")?;
                if !self.vocab.kinds.contains(&kind) {
                    return err(apos, format!("unknown identifier kind {kind:?}"));
                }
                Field::Identifiers(kind)
            }
            w if w.starts_with("trait.") => {
                let rest = &w["trait.".len()..];
                let (name, sub) = match rest.split_once('.') {
                    Some((n, s)) => (n, Some(s)),
                    None => (rest, None),
                };
                if !crate::ingest::event::valid_trait_name(name) {
                    return err(pos, "a trait name is 1 to 64 letters, digits, '_' or '-'");
                }
                match (name, sub) {
                    ("address", Some(s)) if ADDRESS_FIELDS.contains(&s) => {}
                    ("address", _) => {
                        return err(
                            pos,
                            format!("name an address field: trait.address.{}", ADDRESS_FIELDS.join("|")),
                        )
                    }
                    (_, Some(_)) if CORE_STRINGS.contains(&name) => {
                        return err(pos, format!("trait.{name} has no fields"))
                    }
                    _ => {}
                }
                Field::Trait(name.to_owned(), sub.map(str::to_owned))
            }
            other => {
                return err(
                    pos,
                    format!(
                        "unknown field `{other}`; fields: trait.NAME, score, event_count, days_since_seen, days_since_first_seen, count(TYPE[, WINDOW]), sum(TYPE, PROPERTY[, WINDOW]), days_since(TYPE), identifiers(KIND); conditions: has(KIND), source(NAME), consent(PURPOSE), in_household"
                    ),
                )
            }
        };
        self.comparison(field)
    }

    fn comparison(&mut self, field: Field) -> Result<Expr, FilterError> {
        let kind = field_type(&field);
        if self.keyword("in") {
            self.next();
            self.expect(Tok::LParen, "`(` and a list of values")?;
            let mut items = Vec::new();
            loop {
                items.push(self.literal(kind)?);
                let (pos, t) = self.next();
                match t {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    other => {
                        return err(
                            pos,
                            format!("expected `,` or `)`, found {}", describe(&other)),
                        )
                    }
                }
            }
            return Ok(Expr::In(field, items));
        }
        let (pos, t) = self.next();
        let Tok::Op(op) = t else {
            return err(
                pos,
                format!(
                    "expected a comparison (=, !=, <, <=, >, >=, in), found {}",
                    describe(&t)
                ),
            );
        };
        let lit = self.literal(kind)?;
        if matches!(lit, Literal::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
            return err(pos, "true and false compare with = and != only");
        }
        Ok(Expr::Compare(field, op, lit))
    }

    fn literal(&mut self, kind: Kind) -> Result<Literal, FilterError> {
        let (pos, t) = self.next();
        let lit = match t {
            Tok::Str(s) => Literal::Str(s),
            Tok::Num(n) => Literal::Num(n),
            Tok::Ident(w) if w == "true" => Literal::Bool(true),
            Tok::Ident(w) if w == "false" => Literal::Bool(false),
            other => {
                return err(
                    pos,
                    format!(
                        "expected a value (\"text\", a number, true or false), found {}",
                        describe(&other)
                    ),
                )
            }
        };
        let fits = matches!(
            (kind, &lit),
            (Kind::Any, _) | (Kind::Num, Literal::Num(_)) | (Kind::Str, Literal::Str(_))
        );
        if !fits {
            let want = if kind == Kind::Num {
                "a number"
            } else {
                "a \"string\""
            };
            return err(pos, format!("this field compares with {want}"));
        }
        Ok(lit)
    }
}

const ADDRESS_FIELDS: [&str; 5] = ["street", "city", "postal_code", "region", "country"];
const CORE_STRINGS: [&str; 3] = ["first_name", "last_name", "birth_date"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Num,
    Str,
    Any,
}

fn field_type(f: &Field) -> Kind {
    match f {
        Field::Trait(name, _) if CORE_STRINGS.contains(&name.as_str()) || name == "address" => {
            Kind::Str
        }
        Field::Trait(..) => Kind::Any,
        _ => Kind::Num,
    }
}

// ---- evaluation ----

/// What a filter reads of one profile.
pub trait Subject {
    /// The chosen value of a golden trait.
    fn trait_value(&self, name: &str) -> Option<Value>;
    fn has_kind(&self, kind: &str) -> bool;
    fn identifiers(&self, kind: &str) -> usize;
    fn seen_by(&self, source: &str) -> bool;
    fn consented(&self, purpose: &str) -> bool;
    fn in_household(&self) -> bool;
    fn event_count(&self) -> u64;
    fn first_seen(&self) -> i64;
    fn last_seen(&self) -> i64;
    /// Events of the types since `since` (ms; `None`: all time).
    fn count(&self, types: &EventTypes, since: Option<i64>) -> f64;
    fn sum(&self, types: &EventTypes, property: &str, since: Option<i64>) -> f64;
    /// Time of the latest event of the types.
    fn last_of(&self, types: &EventTypes) -> Option<i64>;
}

/// Whether the profile matches, at time `now` (ms).
pub fn matches(e: &Expr, p: &dyn Subject, now: i64) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|x| matches(x, p, now)),
        Expr::Or(v) => v.iter().any(|x| matches(x, p, now)),
        Expr::Not(x) => !matches(x, p, now),
        Expr::Has(k) => p.has_kind(k),
        Expr::Source(s) => p.seen_by(s),
        Expr::Consent(c) => p.consented(c),
        Expr::InHousehold => p.in_household(),
        Expr::Compare(f, op, lit) => value(f, p, now).is_some_and(|v| compare(&v, *op, lit)),
        Expr::In(f, items) => {
            value(f, p, now).is_some_and(|v| items.iter().any(|lit| compare(&v, Op::Eq, lit)))
        }
    }
}

fn days(ms: i64) -> f64 {
    ms as f64 / DAY_MS as f64
}

fn value(f: &Field, p: &dyn Subject, now: i64) -> Option<Value> {
    let num = |x: f64| serde_json::Number::from_f64(x).map(Value::Number);
    match f {
        Field::Trait(name, sub) => {
            let v = p.trait_value(name)?;
            match sub {
                Some(s) => v.get(s.as_str()).cloned(),
                None => Some(v),
            }
        }
        Field::Score => {
            let v = p.trait_value("score")?;
            match v {
                Value::Number(_) => Some(v),
                Value::Object(o) => o.get("value").filter(|x| x.is_number()).cloned(),
                _ => None,
            }
        }
        Field::EventCount => Some(Value::from(p.event_count())),
        Field::DaysSinceSeen => num(days(now - p.last_seen())),
        Field::DaysSinceFirstSeen => num(days(now - p.first_seen())),
        Field::Count(t, w) => num(p.count(t, w.map(|w| now - w))),
        Field::Sum(t, prop, w) => num(p.sum(t, prop, w.map(|w| now - w))),
        Field::DaysSince(t) => p.last_of(t).and_then(|at| num(days(now - at))),
        Field::Identifiers(k) => Some(Value::from(p.identifiers(k) as u64)),
    }
}

fn compare(v: &Value, op: Op, lit: &Literal) -> bool {
    use std::cmp::Ordering;
    let ord = match (v, lit) {
        (Value::Number(n), Literal::Num(x)) => n.as_f64().and_then(|n| n.partial_cmp(x)),
        (Value::String(s), Literal::Str(x)) => Some(s.as_str().cmp(x.as_str())),
        (Value::Bool(b), Literal::Bool(x)) => Some(b.cmp(x)),
        _ => None,
    };
    let Some(ord) = ord else {
        return false;
    };
    match op {
        Op::Eq => ord == Ordering::Equal,
        Op::Ne => ord != Ordering::Equal,
        Op::Lt => ord == Ordering::Less,
        Op::Le => ord != Ordering::Greater,
        Op::Gt => ord == Ordering::Greater,
        Op::Ge => ord != Ordering::Less,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn vocab() -> Vocabulary {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Vocabulary {
            kinds: set(&["email", "phone", "device_id"]),
            sources: set(&["web", "pos", "crm"]),
            purposes: set(&["marketing_email"]),
            sum_properties: set(&["amount"]),
            activity_days: 90,
        }
    }

    struct P {
        traits: BTreeMap<String, Value>,
        events: Vec<(String, i64, f64)>,
    }

    impl Subject for P {
        fn trait_value(&self, name: &str) -> Option<Value> {
            self.traits.get(name).cloned()
        }
        fn has_kind(&self, kind: &str) -> bool {
            kind == "email"
        }
        fn identifiers(&self, kind: &str) -> usize {
            usize::from(kind == "email")
        }
        fn seen_by(&self, source: &str) -> bool {
            source == "pos"
        }
        fn consented(&self, purpose: &str) -> bool {
            purpose == "marketing_email"
        }
        fn in_household(&self) -> bool {
            false
        }
        fn event_count(&self) -> u64 {
            self.events.len() as u64
        }
        fn first_seen(&self) -> i64 {
            self.events.iter().map(|e| e.1).min().unwrap_or(0)
        }
        fn last_seen(&self) -> i64 {
            self.events.iter().map(|e| e.1).max().unwrap_or(0)
        }
        fn count(&self, t: &EventTypes, since: Option<i64>) -> f64 {
            self.events
                .iter()
                .filter(|e| matches!(t, EventTypes::Any) || *t == EventTypes::One(e.0.clone()))
                .filter(|e| since.is_none_or(|s| e.1 >= s))
                .count() as f64
        }
        fn sum(&self, t: &EventTypes, _: &str, since: Option<i64>) -> f64 {
            self.events
                .iter()
                .filter(|e| matches!(t, EventTypes::Any) || *t == EventTypes::One(e.0.clone()))
                .filter(|e| since.is_none_or(|s| e.1 >= s))
                .map(|e| e.2)
                .sum()
        }
        fn last_of(&self, t: &EventTypes) -> Option<i64> {
            self.events
                .iter()
                .filter(|e| matches!(t, EventTypes::Any) || *t == EventTypes::One(e.0.clone()))
                .map(|e| e.1)
                .max()
        }
    }

    const NOW: i64 = 1_000 * DAY_MS;

    fn person() -> P {
        P {
            traits: [
                ("tier".to_owned(), json!("gold")),
                ("address".to_owned(), json!({"city": "Chicago"})),
                ("score".to_owned(), json!({"value": 0.81, "model": "m1"})),
                ("visits".to_owned(), json!(12)),
            ]
            .into_iter()
            .collect(),
            events: vec![
                ("purchase".into(), NOW - 10 * DAY_MS, 40.0),
                ("purchase".into(), NOW - 50 * DAY_MS, 100.0),
                ("page".into(), NOW - DAY_MS, 0.0),
            ],
        }
    }

    fn eval(text: &str) -> bool {
        let e = parse(text, &vocab()).unwrap_or_else(|e| panic!("{text}: {e}"));
        matches(&e, &person(), NOW)
    }

    #[test]
    fn the_campaign_example_evaluates() {
        assert!(eval(
            r#"trait.tier in ("gold", "platinum") and trait.address.city = "Chicago" and count(purchase, 30d) >= 1"#
        ));
        assert!(!eval(r#"trait.tier = "gold" and count(purchase, 5d) >= 1"#));
        assert!(eval(
            "sum(purchase, amount, 60d) > 139.5 and sum(purchase, amount, 30d) < 41"
        ));
        assert!(eval(
            "score > 0.7 and consent(marketing_email) and has(email) and source(pos)"
        ));
        assert!(!eval(
            "score > 0.9 or has(phone) or source(web) or in_household"
        ));
        assert!(eval(
            "days_since(purchase) < 11 and days_since(*) <= 1 and count(*) = 3"
        ));
        assert!(eval(
            "not (trait.missing = \"x\") and trait.visits >= 12 and identifiers(email) = 1"
        ));
        // A missing value compares false whatever the operator.
        assert!(!eval("trait.missing != \"x\""));
        assert!(!eval("days_since(refund) > 0"));
        assert!(eval(
            "event_count = 3 and days_since_seen < 2 and days_since_first_seen >= 50"
        ));
    }

    #[test]
    fn errors_name_the_position() {
        let v = vocab();
        let at = |text: &str| parse(text, &v).map(|_| ()).unwrap_err();
        assert_eq!(at("trait.tier = ").position, 13);
        assert_eq!(at("trait.tier == \"gold\" and").position, 24);
        assert_eq!(at("has(fax)").position, 4);
        assert!(at("has(fax)").message.contains("unknown identifier kind"));
        assert_eq!(at("count(purchase, 30d) > \"x\"").position, 23);
        assert_eq!(at("count(purchase, 400d) > 1").position, 16);
        assert_eq!(at("sum(purchase, price) > 1").position, 14);
        assert_eq!(at("consent(sms)").position, 8);
        assert_eq!(at("trait.tier = \"gold\" trait.x = 1").position, 20);
        assert_eq!(at("bogus > 1").position, 0);
        assert_eq!(at("(has(email)").position, 11);
        assert_eq!(at("trait.first_name > 3").position, 19);
        assert_eq!(at("\"unterminated").position, 0);
        assert_eq!(at("count(purchase, 3w) > 1").position, 17);
        assert_eq!(at("{{7*7}}").position, 0);
        assert!(parse(&"not ".repeat(40), &v).is_err());
        assert!(parse(&"(".repeat(5000), &v).is_err());
        assert!(parse("", &v).is_err());
    }

    #[test]
    fn time_relative_filters_are_known() {
        let v = vocab();
        let rel = |t: &str| parse(t, &v).map(|e| e.time_relative()).unwrap_or(false);
        assert!(rel("count(purchase, 30d) > 1"));
        assert!(rel("has(email) and not (days_since(purchase) < 3)"));
        assert!(!rel("count(purchase) > 1 and trait.tier = \"gold\""));
    }
}
