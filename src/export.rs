//! Exports for a warehouse (`idgraph export`): golden profiles, the identifier -> profile
//! mapping, the graph's edges with provenance, and the change feed, as Parquet (zstd) or
//! JSON lines, with a `manifest.json` that says what was written and up to which
//! change-feed sequence number.
//!
//! - **Full** (no `since`): everything the store holds now.
//! - **Incremental** (`since = SEQ`): profiles, identifiers and edges of the profiles that
//!   change-feed records after `SEQ` concern, and those records; profiles those records
//!   name that no longer exist (absorbed, split away, erased) are listed in the manifest's
//!   `gone_profiles`. Feed the manifest's `through` to the next run's `since`.
//!
//! Every column is a plain type a warehouse loads without a schema of its own: strings,
//! integers, lists of strings, and JSON text for nested values (`*_json`). The schemas are
//! [`schema`] and the README's "Exports" table.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::{json, Value};

use crate::model::{codec, ChangeRecord, GoldenProfile, ProfileId};
use crate::store::{GraphStore, StoreError};

/// What to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Profiles,
    Identifiers,
    Graph,
    Changes,
}

/// The file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Parquet,
    Jsonl,
}

/// Rows a Parquet row group (and a progress step) holds.
const BATCH_ROWS: usize = 8192;
/// Profiles read from the store at a time.
const PAGE: usize = 1000;

/// A column's type.
#[derive(Debug, Clone, Copy)]
enum Col {
    Text,
    OptText,
    UInt,
    Int,
    TextList,
}

/// The columns of `kind`, in order.
fn schema(kind: Kind) -> &'static [(&'static str, Col)] {
    use Col::*;
    match kind {
        Kind::Profiles => &[
            ("profile_id", Text),
            ("first_name", OptText),
            ("last_name", OptText),
            ("birth_date", OptText),
            ("address_json", OptText),
            ("traits_json", OptText),
            ("identifiers_json", Text),
            ("sources", TextList),
            ("merged_ids", TextList),
            ("first_seen", Text),
            ("last_seen", Text),
            ("event_count", UInt),
        ],
        Kind::Identifiers => &[
            ("kind", Text),
            ("value", Text),
            ("profile_id", Text),
            ("first_seen_ms", Int),
            ("last_seen_ms", Int),
            ("event_count", UInt),
            ("sources", TextList),
            ("platform", OptText),
        ],
        Kind::Graph => &[
            ("a", Text),
            ("b", Text),
            ("profile_id", Text),
            ("status", Text),
            ("rule", OptText),
            ("count", UInt),
            ("first_seen_ms", Int),
            ("last_seen_ms", Int),
            ("sources", TextList),
            ("event_ids", TextList),
            ("probable_json", OptText),
        ],
        Kind::Changes => &[
            ("seq", UInt),
            ("at_ms", Int),
            ("type", Text),
            ("profile_id", Text),
            ("record_json", Text),
        ],
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub kind: Kind,
    pub format: Format,
    pub file: PathBuf,
    pub rows: u64,
    /// The `since` asked for (`None`: a full export).
    pub since: Option<u64>,
    /// The last change-feed record this export reflects: the next incremental run's `since`.
    pub through: u64,
    /// Profiles named by the records after `since` that no longer exist.
    pub gone_profiles: Vec<ProfileId>,
    pub columns: Vec<&'static str>,
}

/// Rows on their way to a file.
trait Sink {
    fn push(&mut self, row: Value) -> Result<(), String>;
    fn finish(self: Box<Self>) -> Result<(), String>;
}

struct Jsonl(BufWriter<File>);

impl Sink for Jsonl {
    fn push(&mut self, row: Value) -> Result<(), String> {
        serde_json::to_writer(&mut self.0, &row).map_err(|e| e.to_string())?;
        self.0.write_all(b"\n").map_err(|e| e.to_string())
    }
    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.0.flush().map_err(|e| e.to_string())?;
        self.0.get_ref().sync_all().map_err(|e| e.to_string())
    }
}

struct Parquet {
    kind: Kind,
    schema: Arc<Schema>,
    rows: Vec<Value>,
    writer: ArrowWriter<File>,
}

fn arrow_schema(kind: Kind) -> Schema {
    Schema::new(
        schema(kind)
            .iter()
            .map(|(name, col)| match col {
                Col::Text => Field::new(*name, DataType::Utf8, false),
                Col::OptText => Field::new(*name, DataType::Utf8, true),
                Col::UInt => Field::new(*name, DataType::UInt64, false),
                Col::Int => Field::new(*name, DataType::Int64, false),
                Col::TextList => Field::new(
                    *name,
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    false,
                ),
            })
            .collect::<Vec<_>>(),
    )
}

impl Parquet {
    fn flush(&mut self) -> Result<(), String> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (name, col) in schema(self.kind) {
            let values = self.rows.iter().map(|r| &r[*name]);
            let array: ArrayRef = match col {
                Col::Text | Col::OptText => Arc::new(StringArray::from(
                    values
                        .map(|v| match v {
                            Value::Null => None,
                            Value::String(s) => Some(s.clone()),
                            other => Some(other.to_string()),
                        })
                        .collect::<Vec<Option<String>>>(),
                )),
                Col::UInt => Arc::new(UInt64Array::from(
                    values
                        .map(|v| v.as_u64().unwrap_or(0))
                        .collect::<Vec<u64>>(),
                )),
                Col::Int => Arc::new(Int64Array::from(
                    values
                        .map(|v| v.as_i64().unwrap_or(0))
                        .collect::<Vec<i64>>(),
                )),
                Col::TextList => {
                    let mut b = ListBuilder::new(StringBuilder::new());
                    for v in values {
                        for item in v.as_array().into_iter().flatten() {
                            b.values().append_option(item.as_str());
                        }
                        b.append(true);
                    }
                    Arc::new(b.finish())
                }
            };
            columns.push(array);
        }
        let batch =
            RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| e.to_string())?;
        self.writer.write(&batch).map_err(|e| e.to_string())?;
        self.rows.clear();
        Ok(())
    }
}

impl Sink for Parquet {
    fn push(&mut self, row: Value) -> Result<(), String> {
        self.rows.push(row);
        if self.rows.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }
    fn finish(mut self: Box<Self>) -> Result<(), String> {
        self.flush()?;
        let file = self.writer.into_inner().map_err(|e| e.to_string())?;
        file.sync_all().map_err(|e| e.to_string())
    }
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("{0}")]
    Invalid(String),
}

fn sink(kind: Kind, format: Format, path: &Path) -> Result<Box<dyn Sink>, ExportError> {
    let file_err = |why: String| ExportError::File {
        path: path.to_path_buf(),
        why,
    };
    let file = File::create(path).map_err(|e| file_err(e.to_string()))?;
    Ok(match format {
        Format::Jsonl => Box::new(Jsonl(BufWriter::new(file))),
        Format::Parquet => {
            let schema = Arc::new(arrow_schema(kind));
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
                .map_err(|e| file_err(e.to_string()))?;
            Box::new(Parquet {
                kind,
                schema,
                rows: Vec::new(),
                writer,
            })
        }
    })
}

/// The rows of one live profile for `kind` (not `Changes`): flat columns, or with
/// `native` the API's own shapes (the golden profile; identifiers and edge ends as
/// `{kind, value}`), which the API masks like every answer.
fn profile_rows(
    store: &dyn GraphStore,
    kind: Kind,
    id: &ProfileId,
    native: bool,
    out: &mut Vec<Value>,
) -> Result<bool, StoreError> {
    match kind {
        Kind::Profiles => {
            let Some(raw) = store.golden(id)? else {
                return Ok(false);
            };
            let Some((_, json)) = codec::split_golden_cache(&raw) else {
                return Ok(false);
            };
            if native {
                let v: Value = serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
                    key: id.to_string(),
                    reason: format!("golden profile: malformed JSON at column {}", e.column()),
                })?;
                out.push(v);
                return Ok(true);
            }
            let g: GoldenProfile =
                serde_json::from_slice(json).map_err(|e| StoreError::Corrupt {
                    key: id.to_string(),
                    reason: format!("golden profile: malformed JSON at column {}", e.column()),
                })?;
            let text = |v: &Option<Value>| match v {
                Some(Value::String(s)) => json!(s),
                Some(other) => json!(other.to_string()),
                None => Value::Null,
            };
            out.push(json!({
                "profile_id": g.profile_id,
                "first_name": text(&g.traits.first_name),
                "last_name": text(&g.traits.last_name),
                "birth_date": text(&g.traits.birth_date),
                "address_json": g.traits.address.as_ref().map(|a| a.to_string()),
                "traits_json": (!g.traits.extra.is_empty())
                    .then(|| serde_json::to_string(&g.traits.extra).unwrap_or_default()),
                "identifiers_json": serde_json::to_string(&g.identifiers).unwrap_or_default(),
                "sources": g.sources,
                "merged_ids": g.merged_ids,
                "first_seen": g.first_seen,
                "last_seen": g.last_seen,
                "event_count": g.event_count,
            }));
            Ok(true)
        }
        Kind::Identifiers | Kind::Graph => {
            let Some(state) = store.profile(id)? else {
                return Ok(false);
            };
            let keys: Vec<_> = state.identifier_keys().collect();
            if kind == Kind::Identifiers {
                for node in store.nodes(&keys)?.into_iter().flatten() {
                    out.push(json!({
                        "kind": node.kind,
                        "value": node.value,
                        "profile_id": id,
                        "first_seen_ms": node.first_seen,
                        "last_seen_ms": node.last_seen,
                        "event_count": node.event_count,
                        "sources": node.sources,
                        "platform": node.platform,
                    }));
                }
                return Ok(true);
            }
            for key in &keys {
                for edge in store.edges_of(key, usize::MAX)? {
                    // Each edge once: from its first endpoint.
                    if edge.a != *key {
                        continue;
                    }
                    let (status, rule) = match &edge.status {
                        crate::model::EdgeStatus::Active => ("active", None),
                        crate::model::EdgeStatus::Refused { rule } => ("refused", Some(rule)),
                    };
                    let end = |k: &crate::model::IdentKey| -> Value {
                        if native {
                            json!({"kind": k.kind(), "value": k.value()})
                        } else {
                            json!(k)
                        }
                    };
                    out.push(json!({
                        "a": end(&edge.a),
                        "b": end(&edge.b),
                        "profile_id": id,
                        "status": status,
                        "rule": rule,
                        "count": edge.count,
                        "first_seen_ms": edge.first_seen,
                        "last_seen_ms": edge.last_seen,
                        "sources": edge.sources,
                        "event_ids": edge.event_ids,
                        "probable_json": edge.probable.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()),
                    }));
                }
            }
            Ok(true)
        }
        Kind::Changes => Ok(false),
    }
}

fn change_row(r: &ChangeRecord) -> Value {
    json!({
        "seq": r.seq,
        "at_ms": r.at,
        "type": r.change.name(),
        "profile_id": r.profile_id,
        "record_json": serde_json::to_string(r).unwrap_or_default(),
    })
}

/// Produces every row of `kind` (see [`export`] for `since`), flat or `native` (see
/// [`profile_rows`]), into `emit`; returns the feed position the rows reflect and the
/// profiles that are gone. `emit` may stop the walk with an error.
pub fn walk(
    store: &dyn GraphStore,
    kind: Kind,
    since: Option<u64>,
    native: bool,
    emit: &mut dyn FnMut(Value) -> Result<(), String>,
) -> Result<(u64, Vec<ProfileId>), ExportError> {
    let bounds = store.feed_bounds().unwrap_or_default();
    if let Some(s) = since {
        if s < bounds.pruned_through {
            return Err(ExportError::Invalid(format!(
                "since {s}: the change feed no longer keeps the records after it (retention \
                 removed everything up to {}); export everything instead",
                bounds.pruned_through
            )));
        }
    }
    let mut rows_buf = Vec::new();
    let mut gone = BTreeSet::new();
    // Every record up to `through` is in the store now (the next run's `since`).
    let through = crate::model::feed::seq(
        store.counters()?.commit_seq,
        crate::model::feed::MAX_GROUP_RECORDS - 1,
    )
    .unwrap_or(u64::MAX);
    // For an incremental run: the profiles the records after `since` concern.
    let mut touched: BTreeSet<ProfileId> = BTreeSet::new();
    if kind == Kind::Changes || since.is_some() {
        if store.changes_after(0, 1).is_err() {
            return Err(ExportError::Invalid(
                "this store keeps no change feed, so it has no changes and no incremental \
                 export"
                    .into(),
            ));
        }
        let mut after = since.unwrap_or(0);
        loop {
            let page = store.changes_after(after, PAGE)?;
            let Some(last) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                if kind == Kind::Changes {
                    emit(if native { json!(r) } else { change_row(r) })
                        .map_err(ExportError::Invalid)?;
                } else {
                    touched.extend(r.profiles().into_iter().cloned());
                }
            }
            after = last;
        }
    }
    if kind != Kind::Changes {
        match since {
            Some(_) => {
                for id in &touched {
                    if profile_rows(store, kind, id, native, &mut rows_buf)? {
                        for row in rows_buf.drain(..) {
                            emit(row).map_err(ExportError::Invalid)?;
                        }
                    } else {
                        gone.insert(id.clone());
                    }
                }
            }
            None => {
                let mut after: Option<ProfileId> = None;
                loop {
                    let page = store.goldens_after(after.as_ref(), PAGE)?;
                    for (id, _) in &page {
                        profile_rows(store, kind, id, native, &mut rows_buf)?;
                        for row in rows_buf.drain(..) {
                            emit(row).map_err(ExportError::Invalid)?;
                        }
                    }
                    if page.len() < PAGE {
                        break;
                    }
                    after = page.last().map(|(id, _)| id.clone());
                }
            }
        }
    }
    Ok((through, gone.into_iter().collect()))
}

/// Exports `kind` from `store` into `out_dir/<kind>.<format>` (refusing to overwrite a file
/// unless `force`), calling `progress` with the rows written so far.
pub fn export(
    store: &dyn GraphStore,
    kind: Kind,
    format: Format,
    out_dir: &Path,
    since: Option<u64>,
    force: bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest, ExportError> {
    let ext = match format {
        Format::Parquet => "parquet",
        Format::Jsonl => "jsonl",
    };
    let name = match kind {
        Kind::Profiles => "profiles",
        Kind::Identifiers => "identifiers",
        Kind::Graph => "graph",
        Kind::Changes => "changes",
    };
    std::fs::create_dir_all(out_dir).map_err(|e| ExportError::File {
        path: out_dir.to_path_buf(),
        why: e.to_string(),
    })?;
    let path = out_dir.join(format!("{name}.{ext}"));
    if path.exists() && !force {
        return Err(ExportError::Invalid(format!(
            "{} exists; choose another --out or pass --force to replace it",
            path.display()
        )));
    }
    let tmp = out_dir.join(format!(".{name}.{ext}.partial"));
    let mut sink = sink(kind, format, &tmp)?;
    let file_err = |why: String| ExportError::File {
        path: tmp.clone(),
        why,
    };
    let mut rows = 0u64;
    let walked = walk(store, kind, since, false, &mut |row| {
        sink.push(row)?;
        rows += 1;
        progress(rows);
        Ok(())
    });
    let (through, gone) = match walked {
        Ok(w) => w,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    sink.finish().map_err(file_err)?;
    std::fs::rename(&tmp, &path).map_err(|e| ExportError::File {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let manifest = Manifest {
        kind,
        format,
        file: path,
        rows,
        since,
        through,
        gone_profiles: gone,
        columns: schema(kind).iter().map(|(n, _)| *n).collect(),
    };
    let manifest_path = out_dir.join(format!("{name}.manifest.json"));
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
    )
    .map_err(|e| ExportError::File {
        path: manifest_path,
        why: e.to_string(),
    })?;
    Ok(manifest)
}
