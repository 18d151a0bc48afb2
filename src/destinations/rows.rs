//! What a destination receives of a profile: the allowed [`Field`]s, with emails, phones
//! and names normalized as the destination's [`Preset`] requires and hashed (SHA-256, hex),
//! and how deliveries become CSV or Parquet files.
//!
//! | field | value | `generic` / `google_customer_match` | `meta_custom_audience` |
//! |---|---|---|---|
//! | `email_sha256` | every email of the profile | lowercase, trimmed (Google: dots removed before `@gmail.com`/`@googlemail.com`) | lowercase, trimmed |
//! | `phone_sha256` | every phone | E.164 with `+` | digits only, country code first, no `+` |
//! | `first_name_sha256`, `last_name_sha256` | golden name | lowercase, trimmed | lowercase, letters only |
//! | `country` | golden address's country | plain, uppercase | hashed, lowercase |
//! | `postal_code` | golden address's postal code | plain, trimmed | hashed, lowercase, no spaces |
//! | `profile_id` | the profile's id | plain | plain |
//! | `trait.<name>` | a golden trait as is | plain | plain |
//!
//! Identifiers that arrived hashed (`email_sha256`, `phone_sha256` kinds) are added to the
//! hash lists as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ingest::identifier::sha256_hex;
use crate::model::GoldenProfile;

/// How values are normalized before hashing, and the file column names.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[default]
    Generic,
    GoogleCustomerMatch,
    MetaCustomAudience,
}

/// The file format of a `[destinations.file]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    #[default]
    Csv,
    Parquet,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
        }
    }
}

/// A field a destination may be allowed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    ProfileId,
    EmailSha256,
    PhoneSha256,
    FirstNameSha256,
    LastNameSha256,
    Country,
    PostalCode,
    Trait(String),
}

/// The field names besides `trait.<name>`.
pub const FIELD_NAMES: [&str; 7] = [
    "profile_id",
    "email_sha256",
    "phone_sha256",
    "first_name_sha256",
    "last_name_sha256",
    "country",
    "postal_code",
];

impl Field {
    pub fn parse(name: &str) -> Result<Field, String> {
        Ok(match name {
            "profile_id" => Field::ProfileId,
            "email_sha256" => Field::EmailSha256,
            "phone_sha256" => Field::PhoneSha256,
            "first_name_sha256" => Field::FirstNameSha256,
            "last_name_sha256" => Field::LastNameSha256,
            "country" => Field::Country,
            "postal_code" => Field::PostalCode,
            other => match other.strip_prefix("trait.") {
                Some(t)
                    if !t.is_empty()
                        && t.len() <= 64
                        && t.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !matches!(t, "first_name" | "last_name" | "birth_date" | "address") =>
                {
                    Field::Trait(t.to_owned())
                }
                Some(_) => {
                    return Err(format!(
                        "{other:?}: trait.<name> takes a custom trait (letters, digits, '_', '-'); names, birth date and address go out only hashed or as country/postal_code"
                    ))
                }
                None => {
                    return Err(format!(
                        "unknown field {other:?}; known: {}, trait.<name>",
                        FIELD_NAMES.join(", ")
                    ))
                }
            },
        })
    }

    /// The key of the field in a delivery's `fields`.
    pub fn name(&self) -> String {
        match self {
            Field::ProfileId => "profile_id".into(),
            Field::EmailSha256 => "email_sha256".into(),
            Field::PhoneSha256 => "phone_sha256".into(),
            Field::FirstNameSha256 => "first_name_sha256".into(),
            Field::LastNameSha256 => "last_name_sha256".into(),
            Field::Country => "country".into(),
            Field::PostalCode => "postal_code".into(),
            Field::Trait(t) => format!("trait.{t}"),
        }
    }

    /// Whether the field identifies the person to the destination: exits carry these only.
    pub fn is_key(&self, preset: Preset) -> bool {
        match self {
            Field::ProfileId
            | Field::EmailSha256
            | Field::PhoneSha256
            | Field::FirstNameSha256
            | Field::LastNameSha256 => true,
            Field::Country | Field::PostalCode => preset == Preset::MetaCustomAudience,
            Field::Trait(_) => false,
        }
    }

    /// The file column of the field under `preset`.
    pub fn column(&self, preset: Preset) -> String {
        let named = |google: &str, meta: &str| match preset {
            Preset::Generic => self.name(),
            Preset::GoogleCustomerMatch => google.to_owned(),
            Preset::MetaCustomAudience => meta.to_owned(),
        };
        match self {
            Field::EmailSha256 => named("Email", "EMAIL"),
            Field::PhoneSha256 => named("Phone", "PHONE"),
            Field::FirstNameSha256 => named("First Name", "FN"),
            Field::LastNameSha256 => named("Last Name", "LN"),
            Field::Country => named("Country", "COUNTRY"),
            Field::PostalCode => named("Zip", "ZIP"),
            Field::ProfileId => "profile_id".into(),
            Field::Trait(t) => t.clone(),
        }
    }

    /// Whether the field holds a list (every email, every phone).
    fn is_list(&self) -> bool {
        matches!(self, Field::EmailSha256 | Field::PhoneSha256)
    }
}

/// A delivery's fields: name → value (a list of hashes for emails and phones).
pub type Row = BTreeMap<String, Value>;

/// An email normalized for `preset` (the stored value is lowercase and trimmed already).
pub fn email_for(preset: Preset, email: &str) -> String {
    let email = email.trim().to_lowercase();
    if preset == Preset::GoogleCustomerMatch {
        if let Some((local, domain)) = email.rsplit_once('@') {
            if domain == "gmail.com" || domain == "googlemail.com" {
                return format!("{}@{domain}", local.replace('.', ""));
            }
        }
    }
    email
}

/// A phone normalized for `preset` (the stored value is E.164).
pub fn phone_for(preset: Preset, phone: &str) -> String {
    match preset {
        Preset::MetaCustomAudience => phone.chars().filter(char::is_ascii_digit).collect(),
        _ => phone.trim().to_owned(),
    }
}

fn name_for(preset: Preset, name: &str) -> String {
    let lower = name.trim().to_lowercase();
    match preset {
        Preset::MetaCustomAudience => lower.chars().filter(|c| c.is_alphabetic()).collect(),
        _ => lower,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Hashes of a profile's identifiers of `kind` normalized by `norm`, plus those that
/// arrived hashed as `hashed_kind`; sorted, no duplicates.
fn hashes(
    golden: &GoldenProfile,
    kind: &str,
    hashed_kind: &str,
    norm: impl Fn(&str) -> String,
) -> Value {
    let mut out: std::collections::BTreeSet<String> = golden
        .identifiers
        .get(kind)
        .into_iter()
        .flatten()
        .map(|v| sha256_hex(&norm(v)))
        .collect();
    out.extend(
        golden
            .identifiers
            .get(hashed_kind)
            .into_iter()
            .flatten()
            .cloned(),
    );
    Value::Array(out.into_iter().map(Value::String).collect())
}

/// The row of `golden` with the `fields` a destination is allowed, normalized and hashed
/// for `preset`. A field the profile has no value for is `null` (an empty list for lists).
pub fn row(golden: &GoldenProfile, fields: &[Field], preset: Preset) -> Row {
    let address = golden.traits.address.as_ref();
    let part = |key: &str| text(address.and_then(|a| a.get(key)));
    let mut out = Row::new();
    for f in fields {
        let v = match f {
            Field::ProfileId => Value::String(golden.profile_id.to_string()),
            Field::EmailSha256 => hashes(golden, "email", "email_sha256", |e| email_for(preset, e)),
            Field::PhoneSha256 => hashes(golden, "phone", "phone_sha256", |p| phone_for(preset, p)),
            Field::FirstNameSha256 | Field::LastNameSha256 => {
                let raw = if *f == Field::FirstNameSha256 {
                    &golden.traits.first_name
                } else {
                    &golden.traits.last_name
                };
                text(raw.as_ref())
                    .map(|n| name_for(preset, &n))
                    .filter(|n| !n.is_empty())
                    .map_or(Value::Null, |n| Value::String(sha256_hex(&n)))
            }
            Field::Country => part("country").map_or(Value::Null, |c| match preset {
                Preset::MetaCustomAudience => Value::String(sha256_hex(&c.to_lowercase())),
                _ => Value::String(c.to_uppercase()),
            }),
            Field::PostalCode => part("postal_code").map_or(Value::Null, |z| match preset {
                Preset::MetaCustomAudience => Value::String(sha256_hex(
                    &z.to_lowercase().replace(char::is_whitespace, ""),
                )),
                _ => Value::String(z),
            }),
            Field::Trait(t) => golden.traits.extra.get(t).cloned().unwrap_or(Value::Null),
        };
        out.insert(f.name(), v);
    }
    out
}

/// The part of a row an exit carries: the fields that identify the person.
pub fn keys(row: &Row, fields: &[Field], preset: Preset) -> Row {
    fields
        .iter()
        .filter(|f| f.is_key(preset))
        .filter_map(|f| row.get(&f.name()).map(|v| (f.name(), v.clone())))
        .collect()
}

/// Lowercase hex SHA-256 of a row's canonical JSON (sorted keys): whether it changed.
pub fn digest(row: &Row) -> String {
    sha256_hex(&serde_json::to_string(row).unwrap_or_default())
}

/// The values of `old`'s list fields that `new` no longer has (what an update removes).
pub fn removed(old: &Row, new: &Row) -> Row {
    let mut out = Row::new();
    for (k, v) in old {
        let gone: Vec<Value> = match (v, new.get(k)) {
            (Value::Array(was), Some(Value::Array(now))) => {
                was.iter().filter(|x| !now.contains(x)).cloned().collect()
            }
            (Value::Array(was), _) => was.clone(),
            _ => continue,
        };
        if !gone.is_empty() {
            out.insert(k.clone(), Value::Array(gone));
        }
    }
    out
}

/// File rows of a delivery row: one per email/phone position (the longest list), the
/// single-valued fields repeated; a cell is `None` when there is no value.
pub fn file_rows(row: &Row, fields: &[Field]) -> Vec<Vec<Option<String>>> {
    let lists: Vec<usize> = fields
        .iter()
        .filter(|f| f.is_list())
        .map(|f| match row.get(&f.name()) {
            Some(Value::Array(a)) => a.len(),
            _ => 0,
        })
        .collect();
    let n = lists.iter().copied().max().unwrap_or(0).max(1);
    let cell = |v: Option<&Value>| match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    (0..n)
        .map(|i| {
            fields
                .iter()
                .map(|f| match row.get(&f.name()) {
                    Some(Value::Array(a)) if f.is_list() => cell(a.get(i)),
                    v => cell(v),
                })
                .collect()
        })
        .collect()
}

/// A CSV file of `rows` under the `fields`' columns.
pub fn csv_bytes(
    fields: &[Field],
    preset: Preset,
    rows: &[Vec<Option<String>>],
) -> Result<Vec<u8>, String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let header: Vec<String> = fields.iter().map(|f| f.column(preset)).collect();
    w.write_record(&header).map_err(|e| e.to_string())?;
    for r in rows {
        w.write_record(r.iter().map(|c| c.as_deref().unwrap_or("")))
            .map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// A Parquet file (string columns, nullable, zstd) of `rows` under the `fields`' columns.
pub fn parquet_bytes(
    fields: &[Field],
    preset: Preset,
    rows: &[Vec<Option<String>>],
) -> Result<Vec<u8>, String> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field as ArrowField, Schema};

    let schema = Arc::new(Schema::new(
        fields
            .iter()
            .map(|f| ArrowField::new(f.column(preset), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..fields.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.get(i).cloned().flatten())
                    .collect::<Vec<Option<String>>>(),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
        .build();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))
        .map_err(|e| e.to_string())?;
    w.write(&batch).map_err(|e| e.to_string())?;
    w.close().map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn golden() -> GoldenProfile {
        serde_json::from_value(json!({
            "profile_id": "p1",
            "identifiers": {
                "email": ["ann.lee@gmail.com", "ann@work.example"],
                "phone": ["+15551234567"],
                "email_sha256": ["aa".repeat(32)]
            },
            "traits": {
                "first_name": " Ann-Marie ",
                "last_name": "Lee",
                "address": {"country": "us", "postal_code": "60601 "},
                "extra": {"tier": "gold"}
            },
            "first_seen": "", "last_seen": "", "event_count": 1,
            "sources": [], "devices": [], "merged_ids": []
        }))
        .unwrap()
    }

    fn fields(names: &[&str]) -> Vec<Field> {
        names.iter().map(|n| Field::parse(n).unwrap()).collect()
    }

    #[test]
    fn emails_and_phones_are_normalized_per_preset_then_hashed() {
        let g = golden();
        let f = fields(&["email_sha256", "phone_sha256"]);
        let generic = row(&g, &f, Preset::Generic);
        let google = row(&g, &f, Preset::GoogleCustomerMatch);
        let meta = row(&g, &f, Preset::MetaCustomAudience);
        let has = |r: &Row, k: &str, plain: &str| {
            r[k].as_array().unwrap().contains(&json!(sha256_hex(plain)))
        };
        assert!(has(&generic, "email_sha256", "ann.lee@gmail.com"));
        assert!(has(&google, "email_sha256", "annlee@gmail.com"));
        assert!(!has(&google, "email_sha256", "ann.lee@gmail.com"));
        // Dots are kept outside Gmail.
        assert!(has(&google, "email_sha256", "ann@work.example"));
        assert!(has(&meta, "email_sha256", "ann.lee@gmail.com"));
        assert!(has(&generic, "phone_sha256", "+15551234567"));
        assert!(has(&google, "phone_sha256", "+15551234567"));
        assert!(has(&meta, "phone_sha256", "15551234567"));
        // An identifier that arrived hashed is passed on as it is.
        assert!(generic["email_sha256"]
            .as_array()
            .unwrap()
            .contains(&json!("aa".repeat(32))));
        assert_eq!(generic["email_sha256"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn only_allowed_fields_are_present_and_names_are_hashed() {
        let g = golden();
        let r = row(
            &g,
            &fields(&["first_name_sha256", "country", "postal_code", "trait.tier"]),
            Preset::Generic,
        );
        assert_eq!(r.len(), 4);
        assert_eq!(r["first_name_sha256"], json!(sha256_hex("ann-marie")));
        assert_eq!(r["country"], json!("US"));
        assert_eq!(r["postal_code"], json!("60601"));
        assert_eq!(r["trait.tier"], json!("gold"));
        let text = serde_json::to_string(&r).unwrap();
        assert!(!text.contains("Ann") && !text.contains("ann"));
        let meta = row(
            &g,
            &fields(&["first_name_sha256", "country"]),
            Preset::MetaCustomAudience,
        );
        assert_eq!(meta["first_name_sha256"], json!(sha256_hex("annmarie")));
        assert_eq!(meta["country"], json!(sha256_hex("us")));
    }

    #[test]
    fn unknown_and_plain_personal_fields_are_refused() {
        assert!(Field::parse("email").unwrap_err().contains("unknown field"));
        assert!(Field::parse("trait.first_name").is_err());
        assert!(Field::parse("trait.address").is_err());
        assert!(Field::parse("trait.").is_err());
        assert!(Field::parse("trait.a b").is_err());
        assert_eq!(
            Field::parse("trait.tier").unwrap(),
            Field::Trait("tier".into())
        );
    }

    #[test]
    fn exits_carry_keys_only_and_updates_name_what_went() {
        let g = golden();
        let f = fields(&["email_sha256", "trait.tier", "profile_id"]);
        let r = row(&g, &f, Preset::Generic);
        let k = keys(&r, &f, Preset::Generic);
        assert!(k.contains_key("email_sha256") && k.contains_key("profile_id"));
        assert!(!k.contains_key("trait.tier"));
        let mut newer = r.clone();
        newer.insert(
            "email_sha256".into(),
            json!([sha256_hex("ann@work.example")]),
        );
        let gone = removed(&r, &newer);
        assert_eq!(gone["email_sha256"].as_array().unwrap().len(), 2);
        assert_ne!(digest(&r), digest(&newer));
    }

    #[test]
    fn files_have_one_row_per_list_position_and_the_preset_columns() {
        let g = golden();
        let f = fields(&["email_sha256", "phone_sha256", "country"]);
        let r = row(&g, &f, Preset::GoogleCustomerMatch);
        let rows = file_rows(&r, &f);
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|row| row[2].as_deref() == Some("US")));
        assert!(rows[0][1].is_some() && rows[1][1].is_none());
        let csv =
            String::from_utf8(csv_bytes(&f, Preset::GoogleCustomerMatch, &rows).unwrap()).unwrap();
        assert!(csv.starts_with("Email,Phone,Country\n"));
        assert_eq!(csv.lines().count(), 4);
        let pq = parquet_bytes(&f, Preset::MetaCustomAudience, &rows).unwrap();
        assert_eq!(&pq[..4], b"PAR1");
    }
}
