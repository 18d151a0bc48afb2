//! The event wire format and its validation into a [`NormalizedEvent`].
//!
//! The rules here are the ones `schema/event.schema.json` states; a test checks that the
//! schema and this validator agree on a table of valid and invalid events. Errors name the
//! offending field with a JSON-path-like string (`identifiers.email[1]`) and never echo the
//! value itself (it may be personal data).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::blocklist::Blocklist;
use super::identifier::{valid_kind_name, Identifier, NormalizeError, Normalizer};

/// Sources every deployment knows (`idgraph_score`: the scores `idgraph score` writes).
pub const BUILTIN_SOURCES: [&str; 8] = [
    "web",
    "mobile",
    "crm",
    "pos",
    "contact_center",
    "email",
    "third_party",
    "idgraph_score",
];

const TOP_LEVEL_FIELDS: [&str; 8] = [
    "event_id",
    "source",
    "timestamp",
    "type",
    "identifiers",
    "traits",
    "properties",
    "consent",
];

/// Prefix of the trait a purpose's consent is kept under (`consent:marketing_email`): `:`
/// is not allowed in trait names, so no event trait can collide with it. Its value is
/// `{"state": "granted"|"denied", "source": ...}`; survivorship keeps the most recent.
pub const CONSENT_TRAIT_PREFIX: &str = "consent:";

/// The consent trait name of `purpose`.
pub fn consent_trait(purpose: &str) -> String {
    format!("{CONSENT_TRAIT_PREFIX}{purpose}")
}
const ADDRESS_FIELDS: [&str; 5] = ["street", "city", "postal_code", "region", "country"];
const MAX_ID_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 200;
const MAX_EXTRA_TRAITS: usize = 50;
const MAX_TRAIT_BYTES: usize = 4096;
const MAX_PROPERTIES_BYTES: usize = 16 * 1024;
const MAX_VALUES_PER_KIND: usize = 10;

/// A rejected event: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
    /// Stable machine-readable code (`invalid_field`, `no_linkable_identifier`...).
    pub code: &'static str,
}

impl ValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            field: field.into(),
            message: message.into(),
            code: "invalid_field",
        }
    }
}

/// An identifier value dropped: on the blocklist (`blocklisted`), or malformed while
/// `identifiers.on_invalid = "drop"` (`invalid`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ignored {
    pub field: String,
    pub reason: &'static str,
}

/// A validated event with normalized identifiers and traits.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedEvent {
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Distinct identifiers, blocklisted values removed. Never empty.
    pub identifiers: Vec<Identifier>,
    pub ignored: Vec<Ignored>,
    pub traits: BTreeMap<String, Value>,
    pub properties: Map<String, Value>,
}

/// Validates wire events against the configured kinds, sources and blocklist.
#[derive(Debug, Clone)]
pub struct Validator {
    pub normalizer: Normalizer,
    pub blocklist: Blocklist,
    sources: BTreeSet<String>,
    max_identifiers: usize,
    /// Accept an event without identifiers when it describes a person (probabilistic
    /// matching is on): it is anchored on a `record` identifier named after the event.
    record_anchors: bool,
    /// Sources whose identifier-less events are still refused (matching is off for them).
    no_record_sources: BTreeSet<String>,
    /// Drop invalid identifier values instead of rejecting the event.
    drop_invalid: bool,
    /// Purposes an event may state consent for (`[consent] purposes`).
    purposes: BTreeSet<String>,
    /// Add the hashed form (`email_sha256`, `phone_sha256`) of every plain email and phone
    /// to its event (`identifiers.derive_hashes`).
    derive_hashes: bool,
}

/// The kind of the identifier that anchors an event without identifiers (its value is the
/// event id), so a third-party row with only a name, birth date and address is a node of
/// the graph that probabilistic matching can link.
pub const RECORD_KIND: &str = "record";

/// Comparable person attributes an identifier-less event needs (first name, last name,
/// birth date, street, city, postcode; one of them a name) to be accepted as a record. A
/// name alone is enough to keep the record: it is matched only once it holds two fields,
/// and merged only on evidence beyond names (`resolve::probable::corroborated`).
pub const RECORD_MIN_TRAITS: usize = 1;

fn str_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, ValidationError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ValidationError::new(name, "must be a string")),
    }
}

fn plain_text(field: &str, s: &str, max: usize) -> Result<String, ValidationError> {
    let t = s.trim();
    if t.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(t.to_owned())
}

impl Validator {
    pub fn new(
        normalizer: Normalizer,
        blocklist: Blocklist,
        custom_sources: &[String],
        max_identifiers: usize,
    ) -> Result<Self, String> {
        let mut sources: BTreeSet<String> = BUILTIN_SOURCES.iter().map(|s| s.to_string()).collect();
        for s in custom_sources {
            if !valid_kind_name(s) {
                return Err(format!(
                    "sources.custom: {s:?} is not a valid source name ([a-z][a-z0-9_]*)"
                ));
            }
            sources.insert(s.clone());
        }
        Ok(Validator {
            normalizer,
            blocklist,
            sources,
            max_identifiers: max_identifiers.max(1),
            record_anchors: false,
            no_record_sources: BTreeSet::new(),
            drop_invalid: false,
            purposes: crate::config::ConsentSettings::default()
                .purposes
                .into_iter()
                .collect(),
            derive_hashes: false,
        })
    }

    /// Whether the hashed form of each plain email and phone is added to its event, so
    /// hashed-only events of third parties link to the person (`identifiers.derive_hashes`).
    pub fn with_derived_hashes(mut self, on: bool) -> Self {
        self.derive_hashes = on;
        self
    }

    /// The purposes events may state consent for; each must be a valid name.
    pub fn with_purposes(mut self, purposes: &[String]) -> Result<Self, String> {
        if let Some(bad) = purposes.iter().find(|p| !valid_kind_name(p)) {
            return Err(format!(
                "consent.purposes: {bad:?} is not a valid purpose name ([a-z][a-z0-9_]*)"
            ));
        }
        self.purposes = purposes.iter().cloned().collect();
        Ok(self)
    }

    /// Whether `purpose` is configured.
    pub fn knows_purpose(&self, purpose: &str) -> bool {
        self.purposes.contains(purpose)
    }

    /// The configured purposes.
    pub fn purposes(&self) -> impl Iterator<Item = &str> {
        self.purposes.iter().map(String::as_str)
    }

    /// The event's `consent` object as consent traits (see [`CONSENT_TRAIT_PREFIX`]).
    fn consent(
        &self,
        value: Option<&Value>,
        source: &str,
        traits: &mut BTreeMap<String, Value>,
    ) -> Result<(), ValidationError> {
        let obj = match value {
            None | Some(Value::Null) => return Ok(()),
            Some(Value::Object(o)) => o,
            Some(_) => {
                return Err(ValidationError::new(
                    "consent",
                    "must be an object mapping a purpose to \"granted\" or \"denied\"",
                ))
            }
        };
        for (purpose, v) in obj {
            let field = format!("consent.{purpose}");
            if !self.purposes.contains(purpose) {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "unknown purpose; configured purposes (consent.purposes): {}",
                        self.purposes.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            let state = match v {
                Value::String(s) if s == "granted" => "granted",
                Value::String(s) if s == "denied" => "denied",
                Value::Bool(true) => "granted",
                Value::Bool(false) => "denied",
                Value::Null => continue,
                _ => {
                    return Err(ValidationError::new(
                        field,
                        "must be \"granted\" or \"denied\" (or true/false)",
                    ))
                }
            };
            traits.insert(
                consent_trait(purpose),
                serde_json::json!({"state": state, "source": source}),
            );
        }
        Ok(())
    }

    /// Drops invalid identifier values (listed as ignored) instead of rejecting the event.
    pub fn with_drop_invalid(mut self, on: bool) -> Self {
        self.drop_invalid = on;
        self
    }

    /// Accepts events without identifiers that carry person traits (see [`RECORD_KIND`]),
    /// except from `except` sources.
    pub fn with_record_anchors(mut self, on: bool, except: &[String]) -> Self {
        self.record_anchors = on;
        self.no_record_sources = except.iter().cloned().collect();
        self
    }

    pub fn knows_source(&self, source: &str) -> bool {
        self.sources.contains(source)
    }

    /// Validates one wire event. `now` (ms) stamps events that carry no timestamp.
    pub fn validate(&self, value: &Value, now: i64) -> Result<NormalizedEvent, ValidationError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ValidationError::new("", "an event must be a JSON object"))?;
        if let Some(unknown) = obj.keys().find(|k| !TOP_LEVEL_FIELDS.contains(&k.as_str())) {
            return Err(ValidationError::new(
                unknown.as_str(),
                format!("unknown field; allowed: {}", TOP_LEVEL_FIELDS.join(", ")),
            ));
        }
        let event_id = str_field(obj, "event_id")?
            .ok_or_else(|| ValidationError::new("event_id", "is required"))?;
        let event_id = plain_text("event_id", event_id, MAX_ID_CHARS)?;
        if event_id.is_empty() {
            return Err(ValidationError::new("event_id", "must not be empty"));
        }
        let source = str_field(obj, "source")?
            .ok_or_else(|| ValidationError::new("source", "is required"))?;
        if !self.knows_source(source) {
            return Err(ValidationError::new(
                "source",
                format!(
                    "unknown source; declared sources: {}",
                    self.sources.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let event_type = match str_field(obj, "type")? {
            Some(t) => {
                let t = plain_text("type", t, 64)?;
                if t.is_empty() {
                    return Err(ValidationError::new("type", "must not be empty"));
                }
                t
            }
            None => "identify".to_owned(),
        };
        let timestamp = parse_timestamp(obj.get("timestamp"), now)?;
        let (identifiers, mut ignored) = self.identifiers(obj.get("identifiers"))?;
        let mut traits = match obj.get("traits") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(t)) => normalize_traits(t, now, &mut ignored)?,
            Some(_) => return Err(ValidationError::new("traits", "must be an object")),
        };
        self.consent(obj.get("consent"), source, &mut traits)?;
        let properties = match obj.get("properties") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(p)) => {
                if serde_json::to_vec(p).map(|b| b.len()).unwrap_or(usize::MAX)
                    > MAX_PROPERTIES_BYTES
                {
                    return Err(ValidationError::new(
                        "properties",
                        format!("larger than {MAX_PROPERTIES_BYTES} bytes"),
                    ));
                }
                p.clone()
            }
            Some(_) => return Err(ValidationError::new("properties", "must be an object")),
        };
        let mut identifiers = identifiers;
        if identifiers.is_empty() {
            // What the matcher can compare (names, birth date, address parts); a name is
            // required, so an address alone is never a person.
            let attrs = crate::matching::batch::traits_attributes(|name| traits.get(name), None);
            let named = attrs.first_name.is_some() || attrs.last_name.is_some();
            let person = if named { attrs.present() } else { 0 };
            let anchored = self.record_anchors && !self.no_record_sources.contains(source);
            if !anchored && matches!(obj.get("identifiers"), None | Some(Value::Null)) {
                return Err(ValidationError::new("identifiers", "is required"));
            }
            if !anchored || person < RECORD_MIN_TRAITS {
                return Err(ValidationError {
                    field: "identifiers".into(),
                    message: if ignored.is_empty() {
                        "at least one identifier is required".into()
                    } else if ignored.iter().all(|i| i.reason == "blocklisted") {
                        "every identifier is a blocklisted placeholder value; nothing to resolve"
                            .into()
                    } else {
                        "every identifier was dropped (blocklisted or invalid); nothing to resolve"
                            .into()
                    },
                    code: "no_linkable_identifier",
                });
            }
            identifiers.push(Identifier {
                kind: RECORD_KIND.into(),
                value: event_id.clone(),
            });
        }
        Ok(NormalizedEvent {
            event_id,
            source: source.to_owned(),
            event_type,
            timestamp,
            identifiers,
            ignored,
            traits,
            properties,
        })
    }

    fn identifiers(
        &self,
        value: Option<&Value>,
    ) -> Result<(Vec<Identifier>, Vec<Ignored>), ValidationError> {
        let obj = match value {
            Some(Value::Object(o)) => o,
            None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
            Some(_) => {
                return Err(ValidationError::new(
                    "identifiers",
                    "must be an object mapping kind to a value or a list of values",
                ))
            }
        };
        let mut out = BTreeSet::new();
        let mut ignored = Vec::new();
        let mut total = 0usize;
        for (kind, v) in obj {
            let field = format!("identifiers.{kind}");
            if kind == RECORD_KIND {
                return Err(ValidationError::new(
                    field,
                    "is reserved: idgraph gives this kind to events without identifiers",
                ));
            }
            if !self.normalizer.knows(kind) {
                return Err(ValidationError::new(
                    field,
                    format!(
                        "unknown identifier kind; known kinds: {}",
                        self.normalizer
                            .kinds()
                            .filter(|k| *k != RECORD_KIND)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            let values: Vec<(String, &Value)> = match v {
                Value::Array(items) => {
                    if items.is_empty() {
                        return Err(ValidationError::new(
                            field,
                            "is an empty list; omit the kind or give at least one value",
                        ));
                    }
                    if items.len() > MAX_VALUES_PER_KIND {
                        return Err(ValidationError::new(
                            field,
                            format!("at most {MAX_VALUES_PER_KIND} values per kind"),
                        ));
                    }
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| (format!("{field}[{i}]"), x))
                        .collect()
                }
                other => vec![(field.clone(), other)],
            };
            for (field, item) in values {
                let raw = match item {
                    Value::String(s) => s.as_str(),
                    Value::Null => {
                        ignored.push(Ignored {
                            field,
                            reason: "blocklisted",
                        });
                        continue;
                    }
                    _ => return Err(ValidationError::new(field, "must be a string")),
                };
                total += 1;
                if total > self.max_identifiers {
                    return Err(ValidationError::new(
                        "identifiers",
                        format!(
                            "more than {} identifier values in one event",
                            self.max_identifiers
                        ),
                    ));
                }
                if self.blocklist.is_junk_raw(kind, raw) {
                    ignored.push(Ignored {
                        field,
                        reason: "blocklisted",
                    });
                    continue;
                }
                match self.normalizer.normalize(kind, raw) {
                    Ok(id) if self.blocklist.is_junk(&id.kind, &id.value) => {
                        ignored.push(Ignored {
                            field,
                            reason: "blocklisted",
                        })
                    }
                    Ok(id) => {
                        // The hashed form is not counted against the event's limit: it is
                        // the same value, not one more the client sent.
                        if self.derive_hashes {
                            out.extend(id.hashed());
                        }
                        out.insert(id);
                    }
                    Err(NormalizeError::Invalid(_)) if self.drop_invalid => ignored.push(Ignored {
                        field,
                        reason: "invalid",
                    }),
                    Err(NormalizeError::Invalid(why)) => {
                        return Err(ValidationError::new(field, why))
                    }
                    Err(NormalizeError::UnknownKind) => {
                        return Err(ValidationError::new(field, "unknown identifier kind"))
                    }
                }
            }
        }
        Ok((out.into_iter().collect(), ignored))
    }
}

fn parse_timestamp(value: Option<&Value>, now: i64) -> Result<i64, ValidationError> {
    let ms = match value {
        None | Some(Value::Null) => return Ok(now),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s.trim())
            .map_err(|_| {
                ValidationError::new(
                    "timestamp",
                    "must be an RFC 3339 date-time such as 2026-01-31T12:00:00Z",
                )
            })?
            .with_timezone(&Utc)
            .timestamp_millis(),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            ValidationError::new("timestamp", "must be integer milliseconds since the epoch")
        })?,
        Some(_) => {
            return Err(ValidationError::new(
                "timestamp",
                "must be an RFC 3339 string or integer milliseconds since the epoch",
            ))
        }
    };
    // 1970-01-01 .. now + 1 day (clock skew).
    if ms < 0 || ms > now + 86_400_000 {
        return Err(ValidationError::new(
            "timestamp",
            "is out of range (before 1970 or more than a day in the future)",
        ));
    }
    Ok(ms)
}

/// Earliest birth date taken as one (historical records go back a long way).
const MIN_BIRTH_YEAR: i32 = 1800;
/// The trait that keeps a birth date as written when it is not a plausible date.
pub const BIRTH_DATE_RAW: &str = "birth_date_raw";

/// A birth date as idgraph keeps it (`YYYY-MM-DD`), from `YYYY-MM-DD` or `YYYYMMDD`,
/// between [`MIN_BIRTH_YEAR`] and today; `None` for anything else.
fn birth_date(text: &str, now: i64) -> Option<String> {
    let t = text.trim();
    let d = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(t, "%Y%m%d"))
        .ok()?;
    let today = DateTime::from_timestamp_millis(now).map(|t| t.date_naive());
    (d.year() >= MIN_BIRTH_YEAR && today.is_none_or(|t| d <= t))
        .then(|| d.format("%Y-%m-%d").to_string())
}

/// One trait's value normalized as ingest would keep it (a steward's pin): the value, or
/// the error naming what is wrong with it (`value` when it is not a value ingest keeps,
/// such as an impossible birth date).
pub fn normalize_trait(name: &str, value: &Value, now: i64) -> Result<Value, ValidationError> {
    if value.is_null() {
        return Err(ValidationError::new("value", "must not be null"));
    }
    if name == BIRTH_DATE_RAW {
        return Err(ValidationError::new(
            "name",
            format!("{BIRTH_DATE_RAW} keeps values as written; pin birth_date instead"),
        ));
    }
    let mut one = Map::new();
    one.insert(name.to_owned(), value.clone());
    let mut ignored = Vec::new();
    let rename = |mut e: ValidationError| {
        e.field = e.field.replacen(&format!("traits.{name}"), "value", 1);
        if e.field == "traits" {
            e.field = "value".into();
        }
        e
    };
    let mut out = normalize_traits(&one, now, &mut ignored).map_err(rename)?;
    out.remove(name).ok_or_else(|| {
        ValidationError::new(
            "value",
            match ignored.first() {
                Some(_) => "not a valid value for this trait (a birth date is YYYY-MM-DD, 1800 or later, not in the future)",
                None => "empty",
            },
        )
    })
}

fn normalize_traits(
    t: &Map<String, Value>,
    now: i64,
    ignored: &mut Vec<Ignored>,
) -> Result<BTreeMap<String, Value>, ValidationError> {
    let mut out = BTreeMap::new();
    let mut extra = 0usize;
    for (name, v) in t {
        let field = format!("traits.{name}");
        if v.is_null() {
            continue;
        }
        match name.as_str() {
            "first_name" | "last_name" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| ValidationError::new(&field, "must be a string"))?;
                let s = plain_text(&field, s, MAX_NAME_CHARS)?;
                if !s.is_empty() {
                    out.insert(
                        name.clone(),
                        Value::String(s.split_whitespace().collect::<Vec<_>>().join(" ")),
                    );
                }
            }
            "birth_date" => {
                // Customer data holds impossible and mistyped dates: the event is kept,
                // the value as written goes to `birth_date_raw` (compared leniently by
                // matching), and the outcome names the trait as ignored.
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
                    _ => {
                        return Err(ValidationError::new(
                            &field,
                            "must be a string (YYYY-MM-DD) or a number (YYYYMMDD)",
                        ))
                    }
                };
                match birth_date(&text, now) {
                    Some(d) => {
                        out.insert(name.clone(), Value::String(d));
                    }
                    None => {
                        let raw = plain_text(&field, &text, MAX_NAME_CHARS)?;
                        if !raw.is_empty() {
                            out.insert(BIRTH_DATE_RAW.to_owned(), Value::String(raw));
                            ignored.push(Ignored {
                                field: field.clone(),
                                reason: "invalid_date",
                            });
                        }
                    }
                }
            }
            "address" => {
                let a = v
                    .as_object()
                    .ok_or_else(|| ValidationError::new(&field, "must be an object"))?;
                let mut addr = Map::new();
                for (k, x) in a {
                    let f = format!("{field}.{k}");
                    if !ADDRESS_FIELDS.contains(&k.as_str()) {
                        return Err(ValidationError::new(
                            f,
                            format!(
                                "unknown address field; allowed: {}",
                                ADDRESS_FIELDS.join(", ")
                            ),
                        ));
                    }
                    if x.is_null() {
                        continue;
                    }
                    let s = x
                        .as_str()
                        .ok_or_else(|| ValidationError::new(&f, "must be a string"))?;
                    let mut s = plain_text(&f, s, MAX_NAME_CHARS)?;
                    if k == "country" || k == "postal_code" {
                        s = s.to_uppercase();
                    }
                    if !s.is_empty() {
                        addr.insert(k.clone(), Value::String(s));
                    }
                }
                if !addr.is_empty() {
                    out.insert(name.clone(), Value::Object(addr));
                }
            }
            _ => {
                extra += 1;
                if extra > MAX_EXTRA_TRAITS {
                    return Err(ValidationError::new(
                        "traits",
                        format!("more than {MAX_EXTRA_TRAITS} extra traits"),
                    ));
                }
                if !valid_trait_name(name) {
                    return Err(ValidationError::new(
                        &field,
                        "trait names are 1 to 64 characters of letters, digits, '_', '-' or '.'",
                    ));
                }
                if serde_json::to_vec(v).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_TRAIT_BYTES {
                    return Err(ValidationError::new(
                        &field,
                        format!("larger than {MAX_TRAIT_BYTES} bytes"),
                    ));
                }
                out.insert(name.clone(), v.clone());
            }
        }
    }
    Ok(out)
}

pub fn valid_trait_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}
