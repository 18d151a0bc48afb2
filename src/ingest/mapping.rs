//! CSV / Parquet → event mapping for `idgraph import data.csv --source crm --mapping crm.toml`.
//!
//! A mapping file (TOML) says which columns feed which parts of an event. Every data row
//! of a CSV (a header row is required) or of a Parquet file (columns by name; every value
//! is read as its text form, nulls are missing cells) becomes one event in idgraph's JSON
//! wire format. The mapping only moves values around: e-mails, phones etc. are
//! validated and normalised later by the service itself.
//!
//! ```toml
//! record_id = "rec_id"      # required: column whose value becomes event_id
//! id_prefix = "crm-"        # optional, default "": prepended to event_id
//! delimiter = ","           # optional, one ASCII character, default "," ("\t" for TSV)
//! trim = true               # optional, default true: trim whitespace around every cell
//! source = "channel"       # optional column naming each row's source; `--source` is
//!                           # the default for rows whose cell is missing (one of the two
//!                           # is required)
//! timestamp = "updated_at"  # optional column with an RFC3339 timestamp (passed through);
//!                           # without it (or when the cell is missing) no timestamp is sent
//! type = "import"           # optional constant event type, default "import"
//! null_values = ["", "NA", "null"]  # optional, default ["", "null", "NA", "N/A"]
//! truth = "cluster"         # optional ground-truth entity column (evaluation only;
//!                           # returned beside the event, never put into it)
//!
//! [identifiers]             # kind = column, or a list of columns (several values of a kind)
//! email = "email"
//! phone = ["phone", "mobile"]
//! national_id = "soc_sec_id"
//!
//! [traits]                  # trait = column | [columns] | { columns = [...], format = "..." }
//! first_name = "given_name"
//! last_name = "surname"
//! birth_date = { columns = ["date_of_birth"], format = "%Y%m%d" }
//! "address.street" = ["street_number", "address_1"]
//! "address.city" = "suburb"
//! "address.postal_code" = "postcode"
//! "address.region" = "state"
//! "address.country" = "country"
//! loyalty_tier = "tier"     # any other name is an extra trait with a string value
//! ```
//!
//! Rules:
//! - A cell is *missing* when it is absent (short row), empty after trimming, or equal
//!   (after trimming, ASCII case-insensitively) to one of `null_values`.
//! - A list of columns for a **trait** is joined with a single space, skipping missing
//!   cells. A list for an **identifier** gives one value per present cell (exact
//!   duplicates dropped): one value is sent as a string, several as an array.
//!   If every cell is missing the trait or identifier is left out of the event.
//! - `address.street`, `.city`, `.postal_code`, `.region` and `.country` go into
//!   `traits.address`; any other `address.*` key (or a bare `address`) is an error.
//! - `format` (a chrono strftime pattern) parses the joined value as a date, which is
//!   sent as `YYYY-MM-DD`; a value that does not match is sent as written (for
//!   `birth_date` the validator keeps it as `birth_date_raw`). Without `format` the value
//!   is sent as-is.
//! - A row whose `record_id` cell is missing, or that cannot be read as CSV, is a row
//!   error; the import goes on with the next row. Row errors never quote cell values.
//! - Every column named in the mapping must be in the header; unknown keys in the
//!   mapping file are errors, so typos are not silently ignored.
//!
//! Event produced for a row (`row` is the 1-based data row number, header excluded):
//! `{"event_id", "source", "timestamp"?, "type", "identifiers": {...},
//! "traits": {..., "address": {...}}, "properties": {"row": n}}`.

use std::collections::BTreeMap;
use std::io::Read;

use csv::StringRecord;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// A problem with the mapping file itself or with the CSV header.
#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error("invalid mapping TOML: {0}")]
    Toml(String),
    #[error("invalid mapping: {0}")]
    Invalid(String),
    #[error("column `{0}` named in the mapping is not in the CSV header")]
    MissingColumn(String),
    #[error("cannot read CSV: {0}")]
    Csv(String),
}

/// A problem with one data row; the remaining rows are still processed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("row {row}: {message}")]
pub struct RowError {
    pub row: u64,
    pub message: String,
}

const ADDRESS_FIELDS: [&str; 5] = ["street", "city", "postal_code", "region", "country"];

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a column name or a list of column names"
)]
enum Columns {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraitSpecRaw {
    columns: Columns,
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "expected a column name, a list of column names, or { columns = [...], format = \"...\" }"
)]
enum TraitRaw {
    Columns(Columns),
    Spec(TraitSpecRaw),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingRaw {
    record_id: String,
    #[serde(default)]
    id_prefix: String,
    delimiter: Option<String>,
    trim: Option<bool>,
    source: Option<String>,
    timestamp: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    null_values: Option<Vec<String>>,
    truth: Option<String>,
    #[serde(default)]
    identifiers: BTreeMap<String, Columns>,
    #[serde(default)]
    traits: BTreeMap<String, TraitRaw>,
}

/// One `[traits]` entry; `in_address` puts it inside `traits.address`.
#[derive(Debug, Clone)]
struct TraitSpec {
    name: String,
    in_address: bool,
    columns: Vec<String>,
    format: Option<String>,
}

/// A parsed and validated mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    record_id: String,
    id_prefix: String,
    delimiter: u8,
    trim: bool,
    source: Option<String>,
    timestamp: Option<String>,
    event_type: String,
    null_values: Vec<String>,
    truth: Option<String>,
    identifiers: Vec<(String, Vec<String>)>,
    traits: Vec<TraitSpec>,
}

fn invalid<T>(msg: String) -> Result<T, MappingError> {
    Err(MappingError::Invalid(msg))
}

/// Turns a column spec into a list, rejecting empty lists and empty names.
fn columns(what: &str, cols: Columns) -> Result<Vec<String>, MappingError> {
    let cols = match cols {
        Columns::One(c) => vec![c],
        Columns::Many(v) => v,
    };
    if cols.is_empty() || cols.iter().any(|c| c.trim().is_empty()) {
        return invalid(format!("{what}: needs one or more non-empty column names"));
    }
    Ok(cols)
}

impl Mapping {
    /// Parses and validates a mapping file's text.
    pub fn from_toml_str(s: &str) -> Result<Mapping, MappingError> {
        let raw: MappingRaw = toml::from_str(s).map_err(|e| MappingError::Toml(e.to_string()))?;
        let delimiter = match raw.delimiter.as_deref().unwrap_or(",").as_bytes() {
            [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => *b,
            _ => {
                return invalid(
                    "delimiter must be one ASCII character, not a quote or newline".into(),
                )
            }
        };
        let event_type = raw.event_type.unwrap_or_else(|| "import".to_owned());
        if event_type.trim().is_empty() {
            return invalid("type must not be empty".into());
        }
        // Record-only data (names, birth dates, addresses) is the usual case in record
        // linkage: such rows become records that probabilistic matching compares.
        if raw.identifiers.is_empty() && raw.traits.is_empty() {
            return invalid(
                "the mapping maps nothing: map at least one identifier kind ([identifiers]) or trait ([traits])"
                    .into(),
            );
        }
        let mut identifiers = Vec::new();
        for (kind, cols) in raw.identifiers {
            if kind.trim().is_empty() {
                return invalid("identifier kinds must not be empty".into());
            }
            identifiers.push((kind.clone(), columns(&format!("identifiers.{kind}"), cols)?));
        }
        let mut traits = Vec::new();
        for (key, spec) in raw.traits {
            let what = format!("traits.{key}");
            let (columns, format) = match spec {
                TraitRaw::Columns(c) => (columns(&what, c)?, None),
                TraitRaw::Spec(s) => (columns(&what, s.columns)?, s.format),
            };
            if let Some(f) = &format {
                use chrono::format::{Item, StrftimeItems};
                if f.is_empty() || StrftimeItems::new(f).any(|i| matches!(i, Item::Error)) {
                    return invalid(format!("{what}: invalid date format {f:?}"));
                }
            }
            let (name, in_address) = match key.strip_prefix("address.") {
                Some(sub) if ADDRESS_FIELDS.contains(&sub) => (sub.to_owned(), true),
                Some(_) => {
                    return invalid(format!(
                        "{what}: unknown address field (allowed: {})",
                        ADDRESS_FIELDS.join(", ")
                    ))
                }
                None if key == "address" || key.trim().is_empty() => {
                    return invalid(format!("{what}: invalid trait name (use address.<field>)"))
                }
                None => (key, false),
            };
            traits.push(TraitSpec {
                name,
                in_address,
                columns,
                format,
            });
        }
        let null_values = raw
            .null_values
            .unwrap_or_else(|| ["", "null", "NA", "N/A"].map(String::from).to_vec());
        Ok(Mapping {
            record_id: raw.record_id,
            id_prefix: raw.id_prefix,
            delimiter,
            trim: raw.trim.unwrap_or(true),
            source: raw.source,
            timestamp: raw.timestamp,
            event_type,
            null_values: null_values.iter().map(|n| n.trim().to_owned()).collect(),
            truth: raw.truth,
            identifiers,
            traits,
        })
    }

    /// The CSV field delimiter as a byte.
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The ground-truth entity column, if the mapping names one.
    pub fn truth(&self) -> Option<&str> {
        self.truth.as_deref()
    }

    /// The same mapping with `column` as its ground-truth column.
    pub fn with_truth(mut self, column: &str) -> Mapping {
        self.truth = Some(column.to_owned());
        self
    }

    /// The identifier kinds the mapping feeds.
    pub fn identifier_kinds(&self) -> impl Iterator<Item = &str> {
        self.identifiers.iter().map(|(kind, _)| kind.as_str())
    }

    /// The cell's value, or `None` when it is missing (absent, empty or a null value).
    fn cell<'a>(&self, rec: &'a StringRecord, idx: usize) -> Option<&'a str> {
        let raw = rec.get(idx)?;
        let t = raw.trim();
        let null = t.is_empty() || self.null_values.iter().any(|n| n.eq_ignore_ascii_case(t));
        (!null).then_some(if self.trim { t } else { raw })
    }
}

/// One data row as text cells, or why it could not be read; `fatal` ends the rows (an
/// I/O error may repeat forever, a malformed record does not).
pub struct RecordError {
    pub message: String,
    pub fatal: bool,
}

type Records = Box<dyn Iterator<Item = Result<StringRecord, RecordError>> + Send>;

/// Reads rows (a CSV with a header row, or a Parquet file) and yields one item per data
/// row: Ok((event, truth_value_if_mapping_has_truth)) or Err(RowError). Header problems
/// (a mapped column missing from the header) are returned up-front as MappingError.
pub struct RowEvents {
    records: Records,
    mapping: Mapping,
    /// The default source (`--source`), for rows whose source column is missing.
    source: Option<String>,
    source_col: Option<usize>,
    record_id: usize,
    timestamp: Option<usize>,
    truth: Option<usize>,
    identifiers: Vec<Vec<usize>>,
    traits: Vec<Vec<usize>>,
    row: u64,
    done: bool,
}

impl RowEvents {
    /// The rows of a CSV file (header row required).
    pub fn csv<R: Read + Send + 'static>(
        reader: R,
        mapping: &Mapping,
        source: Option<&str>,
    ) -> Result<Self, MappingError> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .delimiter(mapping.delimiter)
            .trim(csv::Trim::Headers)
            .from_reader(reader);
        let header = rdr
            .headers()
            .map_err(|e| MappingError::Csv(e.to_string()))?
            .clone();
        let records = rdr.into_records().map(|r| {
            r.map_err(|e| RecordError {
                fatal: matches!(e.kind(), csv::ErrorKind::Io(_)),
                message: format!("unreadable CSV record: {e}"),
            })
        });
        Self::new(&header, Box::new(records), mapping, source)
    }

    /// The rows of a Parquet file: columns by name, each value in its text form (dates
    /// and timestamps as ISO 8601), nulls as missing cells. Also returns the row count.
    pub fn parquet(
        file: std::fs::File,
        mapping: &Mapping,
        source: Option<&str>,
    ) -> Result<(Self, u64), MappingError> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| MappingError::Csv(format!("not a readable Parquet file: {e}")))?;
        let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        let header: StringRecord = builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let reader = builder
            .with_batch_size(1024)
            .build()
            .map_err(|e| MappingError::Csv(format!("cannot read the Parquet file: {e}")))?;
        let records = reader.flat_map(|batch| {
            match batch
                .map_err(|e| e.to_string())
                .and_then(|b| parquet_batch(&b))
            {
                Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                Err(e) => vec![Err(RecordError {
                    message: format!("unreadable Parquet row group: {e}"),
                    fatal: true,
                })],
            }
        });
        Ok((
            Self::new(&header, Box::new(records), mapping, source)?,
            rows,
        ))
    }

    /// Rows from any source of text records under `header`.
    pub fn new(
        header: &StringRecord,
        records: Records,
        mapping: &Mapping,
        source: Option<&str>,
    ) -> Result<Self, MappingError> {
        if source.is_none() && mapping.source.is_none() {
            return invalid(
                "rows need a source: pass --source or name a `source` column in the mapping".into(),
            );
        }
        let find = |col: &String| -> Result<usize, MappingError> {
            let mut hits = header
                .iter()
                .enumerate()
                .filter(|(_, h)| *h == col.as_str());
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Ok(i),
                (None, _) => Err(MappingError::MissingColumn(col.clone())),
                (Some(_), Some(_)) => Err(MappingError::Csv(format!(
                    "column `{col}` appears more than once in the header"
                ))),
            }
        };
        let find_all = |cols: &[String]| cols.iter().map(find).collect::<Result<Vec<_>, _>>();
        Ok(RowEvents {
            record_id: find(&mapping.record_id)?,
            source_col: mapping.source.as_ref().map(find).transpose()?,
            timestamp: mapping.timestamp.as_ref().map(find).transpose()?,
            truth: mapping.truth.as_ref().map(find).transpose()?,
            identifiers: mapping
                .identifiers
                .iter()
                .map(|(_, c)| find_all(c))
                .collect::<Result<_, _>>()?,
            traits: mapping
                .traits
                .iter()
                .map(|t| find_all(&t.columns))
                .collect::<Result<_, _>>()?,
            records,
            mapping: mapping.clone(),
            source: source.map(str::to_owned),
            row: 0,
            done: false,
        })
    }

    fn event(&self, rec: &StringRecord) -> Result<(Value, Option<String>), RowError> {
        let m = &self.mapping;
        let row = self.row;
        let err = |message: String| RowError { row, message };
        let id = m
            .cell(rec, self.record_id)
            .ok_or_else(|| err(format!("column {}: missing record id", m.record_id)))?;
        let source = match self.source_col.and_then(|i| m.cell(rec, i)) {
            Some(s) => s,
            None => self.source.as_deref().ok_or_else(|| {
                err(format!(
                    "column {}: missing source and no --source default",
                    m.source.as_deref().unwrap_or_default()
                ))
            })?,
        };
        let mut identifiers = Map::new();
        for ((kind, _), idxs) in m.identifiers.iter().zip(&self.identifiers) {
            let mut values: Vec<&str> = Vec::new();
            for v in idxs.iter().filter_map(|&i| m.cell(rec, i)) {
                if !values.contains(&v) {
                    values.push(v);
                }
            }
            let value = match values[..] {
                [] => continue,
                [one] => json!(one),
                _ => json!(values),
            };
            identifiers.insert(kind.clone(), value);
        }
        let mut traits = Map::new();
        let mut address = Map::new();
        for (spec, idxs) in m.traits.iter().zip(&self.traits) {
            let parts: Vec<&str> = idxs.iter().filter_map(|&i| m.cell(rec, i)).collect();
            if parts.is_empty() {
                continue;
            }
            let mut value = parts.join(" ");
            // A value that does not match the format is sent as written: the row is
            // kept (the validator keeps an implausible birth date as `birth_date_raw`).
            if let Some(fmt) = &spec.format {
                if let Ok(date) = chrono::NaiveDate::parse_from_str(&value, fmt) {
                    value = date.format("%Y-%m-%d").to_string();
                }
            }
            let dest = if spec.in_address {
                &mut address
            } else {
                &mut traits
            };
            dest.insert(spec.name.clone(), Value::String(value));
        }
        if !address.is_empty() {
            traits.insert("address".into(), Value::Object(address));
        }
        let mut event = json!({
            "event_id": format!("{}{id}", m.id_prefix), "source": source,
            "type": m.event_type, "identifiers": identifiers, "traits": traits,
            "properties": { "row": row },
        });
        if let (Some(ts), Some(obj)) = (
            self.timestamp.and_then(|i| m.cell(rec, i)),
            event.as_object_mut(),
        ) {
            obj.insert("timestamp".into(), json!(ts));
        }
        let truth = self.truth.and_then(|i| m.cell(rec, i)).map(str::to_owned);
        Ok((event, truth))
    }
}

/// A Parquet record batch as text records (nested values in their display form).
fn parquet_batch(batch: &arrow_array::RecordBatch) -> Result<Vec<StringRecord>, String> {
    use arrow_cast::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("");
    let columns = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut rec = StringRecord::new();
        for col in &columns {
            rec.push_field(&col.value(row).to_string());
        }
        out.push(rec);
    }
    Ok(out)
}

impl Iterator for RowEvents {
    type Item = Result<(Value, Option<String>), RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rec = self.records.next()?;
        self.row += 1;
        Some(match rec {
            Ok(rec) => self.event(&rec),
            Err(e) => {
                self.done |= e.fatal;
                Err(RowError {
                    row: self.row,
                    message: e.message,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEBRL: &str = "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id
rec-0-org, michaela, neumann, 8, stanley street, miami, winston hills, 4223, nsw, 19151111, 5304218
rec-1-dup-0, courtney, NA, , , , , 2560, N/A, 19560409, 
rec-2-org, , , , , , , , , 19561309, 1234
, anne, , , , , , , , , 
rec-3-org, short
";

    const MAP: &str = r#"
record_id = "rec_id"
id_prefix = "febrl-"
delimiter = ","
[identifiers]
national_id = "soc_sec_id"
postcode = ["postcode", "street_number"]
[traits]
first_name = "given_name"
last_name = "surname"
birth_date = { columns = ["date_of_birth"], format = "%Y%m%d" }
"address.street" = ["street_number", "address_1"]
"address.city" = "suburb"
"address.postal_code" = "postcode"
"address.region" = "state"
locality = "address_2"
"#;

    fn run(csv: &str, map: &str) -> Vec<Result<(Value, Option<String>), RowError>> {
        let m = Mapping::from_toml_str(map).unwrap();
        RowEvents::csv(
            std::io::Cursor::new(csv.as_bytes().to_vec()),
            &m,
            Some("febrl"),
        )
        .unwrap()
        .collect()
    }

    #[test]
    fn febrl_rows_become_events() {
        let out = run(FEBRL, MAP);
        assert_eq!(out.len(), 5);
        let (e0, t0) = out[0].clone().unwrap();
        assert_eq!(t0, None);
        assert_eq!(
            e0,
            json!({
                "event_id": "febrl-rec-0-org", "source": "febrl", "type": "import",
                "identifiers": { "national_id": "5304218", "postcode": ["4223", "8"] },
                "traits": {
                    "first_name": "michaela", "last_name": "neumann",
                    "birth_date": "1915-11-11", "locality": "miami",
                    "address": { "street": "8 stanley street", "city": "winston hills",
                                 "postal_code": "4223", "region": "nsw" }
                },
                "properties": { "row": 1 }
            })
        );
        // Missing / null cells are omitted; one identifier value is a plain string.
        let (e1, _) = out[1].clone().unwrap();
        assert_eq!(e1["identifiers"], json!({ "postcode": "2560" }));
        assert_eq!(
            e1["traits"],
            json!({ "first_name": "courtney", "birth_date": "1956-04-09",
                    "address": { "postal_code": "2560" } })
        );
        assert_eq!(e1["properties"]["row"], 2);
        assert!(e1.get("timestamp").is_none());
        // A date that does not match the format: the row is kept, the value as written.
        let (e2, _) = out[2].clone().unwrap();
        assert_eq!(e2["traits"]["birth_date"], "19561309");
        // Missing record id.
        let e3 = out[3].clone().unwrap_err();
        assert_eq!(e3.row, 4);
        assert!(e3.message.contains("rec_id"), "{e3}");
        // Short row: missing cells, not a crash; no address at all.
        let (e4, _) = out[4].clone().unwrap();
        assert_eq!(e4["traits"], json!({ "first_name": "short" }));
        assert_eq!(e4["identifiers"], json!({}));
        assert_eq!(e4["properties"]["row"], 5);
    }

    #[test]
    fn options_truth_timestamp_nulls_and_no_trim() {
        let map = r#"
record_id = "id"
delimiter = "\t"
trim = false
type = "signup"
timestamp = "ts"
truth = "cluster"
null_values = ["-", "none"]
[identifiers]
email = ["email", "email2"]
"#;
        let csv = "id\tts\temail\temail2\tcluster\n\
                   a1\t2024-01-02T03:04:05Z\t a@x.org \ta@x.org\tC7\n\
                   a2\t\tNONE\t-\t\n\
                   a3\t\tNA\ta@x.org\ta@x.org\n";
        let out = run(csv, map);
        let (e, truth) = out[0].clone().unwrap();
        assert_eq!(truth.as_deref(), Some("C7"));
        assert!(!e.to_string().contains("C7"));
        assert_eq!(e["event_id"], "a1");
        assert_eq!(e["type"], "signup");
        assert_eq!(e["timestamp"], "2024-01-02T03:04:05Z");
        assert_eq!(e["identifiers"]["email"], json!([" a@x.org ", "a@x.org"]));
        let (e, truth) = out[1].clone().unwrap();
        assert_eq!(truth, None);
        assert_eq!(e["identifiers"], json!({}));
        assert!(e.get("timestamp").is_none());
        // "NA" is not a null value here; duplicate values collapse to one string.
        let (e, _) = out[2].clone().unwrap();
        assert_eq!(e["identifiers"]["email"], json!(["NA", "a@x.org"]));
        let m = Mapping::from_toml_str(map).unwrap();
        assert_eq!((m.delimiter(), m.truth()), (b'\t', Some("cluster")));
    }

    #[test]
    fn source_column_with_the_flag_as_default() {
        let m = Mapping::from_toml_str(
            "record_id = \"id\"\nsource = \"src\"\n[identifiers]\ne = \"e\"",
        )
        .unwrap();
        let data = b"id,src,e\n1,pos,a\n2,,b\n";
        let rows = |default| {
            RowEvents::csv(std::io::Cursor::new(data.to_vec()), &m, default)
                .unwrap()
                .collect::<Vec<_>>()
        };
        let with_default = rows(Some("crm"));
        assert_eq!(with_default[0].clone().unwrap().0["source"], "pos");
        assert_eq!(with_default[1].clone().unwrap().0["source"], "crm");
        let without = rows(None);
        assert_eq!(without[0].clone().unwrap().0["source"], "pos");
        let err = without[1].clone().unwrap_err();
        assert_eq!(err.row, 2);
        assert!(err.message.contains("missing source"), "{err}");
        // Neither a column nor a default: refused up-front.
        let plain = Mapping::from_toml_str("record_id = \"id\"\n[identifiers]\ne = \"e\"").unwrap();
        let r = RowEvents::csv(&b"id,e\n1,a\n"[..], &plain, None);
        assert!(matches!(r, Err(MappingError::Invalid(m)) if m.contains("--source")));
    }

    #[test]
    fn unreadable_row_is_skipped() {
        let m = Mapping::from_toml_str("record_id = \"id\"\n[identifiers]\ne = \"e\"").unwrap();
        let mut data = b"id,e\n1,a\n2,".to_vec();
        data.extend_from_slice(&[0xff, 0xfe]);
        data.extend_from_slice(b"\n3,c\n");
        let out: Vec<_> = RowEvents::csv(std::io::Cursor::new(data.to_vec()), &m, Some("s"))
            .unwrap()
            .collect();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok());
        assert_eq!(out[1].clone().unwrap_err().row, 2);
        assert_eq!(out[2].clone().unwrap().0["identifiers"]["e"], "c");
    }

    #[test]
    fn a_mapping_of_traits_only_gives_record_events() {
        let m = Mapping::from_toml_str(
            "record_id = \"id\"\n[traits]\nfirst_name = \"given\"\nbirth_date = { columns = [\"dob\"], format = \"%Y%m%d\" }",
        )
        .unwrap();
        let out: Vec<_> = RowEvents::csv(&b"id,given,dob\n1,ann,19800230\n"[..], &m, Some("s"))
            .unwrap()
            .collect();
        let (e, _) = out[0].clone().unwrap();
        assert_eq!(e["identifiers"], json!({}));
        assert_eq!(e["traits"]["first_name"], "ann");
        assert_eq!(e["traits"]["birth_date"], "19800230", "kept as written");
        let err = Mapping::from_toml_str("record_id = \"id\"").unwrap_err();
        assert!(
            err.to_string().contains("[identifiers]") && err.to_string().contains("[traits]"),
            "{err}"
        );
    }

    #[test]
    fn header_and_mapping_errors() {
        let m = Mapping::from_toml_str("record_id = \"id\"\n[identifiers]\ne = [\"e\", \"f\"]")
            .unwrap();
        let r = RowEvents::csv(&b"id, e\n1,x\n"[..], &m, Some("s"));
        assert!(matches!(r, Err(MappingError::MissingColumn(c)) if c == "f"));
        let r = RowEvents::csv(&b""[..], &m, Some("s"));
        assert!(matches!(r, Err(MappingError::MissingColumn(c)) if c == "id"));

        let err = |s: &str| Mapping::from_toml_str(s).unwrap_err();
        assert!(matches!(err("record_id = "), MappingError::Toml(_)));
        assert!(matches!(
            err("[identifiers]\ne = \"e\""),
            MappingError::Toml(_)
        ));
        assert!(matches!(
            err("record_id = \"id\"\nidentifier = {}"),
            MappingError::Toml(_)
        ));
        assert!(matches!(
            err("record_id = \"id\"\n[identifiers]"),
            MappingError::Invalid(_)
        ));
        assert!(matches!(
            err("record_id = \"id\""),
            MappingError::Invalid(_)
        ));
        let base = "record_id = \"id\"\n[identifiers]\ne = \"e\"\n";
        for extra in [
            "[traits]\n\"address.planet\" = \"p\"",
            "[traits]\naddress = \"p\"",
            "[traits]\nx = []",
            "[traits]\nx = { columns = [\"d\"], format = \"%Q\" }",
        ] {
            let e = err(&format!("{base}{extra}"));
            assert!(matches!(e, MappingError::Invalid(_)), "{extra}: {e}");
        }
        assert!(matches!(
            err(&format!("{base}[traits]\nx = 3")),
            MappingError::Toml(_)
        ));
        for d in [";;", "", "é", "\""] {
            let e = err(&format!("delimiter = {d:?}\n{base}"));
            assert!(matches!(e, MappingError::Invalid(_)), "{d:?}: {e}");
        }
    }
}
