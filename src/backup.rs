//! Backup and restore of an embedded store (`idgraph backup`, `idgraph restore`,
//! `POST /v1/admin/backup`).
//!
//! A backup directory holds:
//! - `store/`: RocksDB's `BackupEngine` directory. Every backup shares the SST files it
//!   has in common with the ones before it, so backups after the first copy only what
//!   was written since.
//! - `files/<id>/backup.json`: what idgraph records of backup `<id>` ([`BackupRecord`]:
//!   its time, the store's last write group when it started, its size and new bytes).
//! - `files/<id>/data/`: the files the write path keeps outside RocksDB, copied as they
//!   were: `governance.secret` (the key of pseudonyms and of the suppression list),
//!   `survivorship.fingerprint`, `audit.jsonl`, `webhooks/` (delivery positions) and the
//!   matching model when it lives in the data directory.
//! - `suppressions.jsonl`: the suppression journal. A server that has written a backup
//!   into a directory remembers it (`<data_dir>/backup-targets`) and appends the keyed
//!   hashes of every later erasure to that directory's journal (fsync'd), so a restore
//!   of an older backup erases those people again: the suppression list wins.
//!
//! The search index is not copied: it is derived data, and restore rebuilds it from the
//! restored store (one consistent source instead of two snapshots to line up).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::engine::{Engine, EngineError};
use crate::store::{Changes, GraphStore, StoreError};

/// The `BackupEngine` directory inside a backup directory.
pub const STORE_DIR: &str = "store";
/// Per-backup records and copied files.
pub const FILES_DIR: &str = "files";
/// The suppression journal of a backup directory.
pub const JOURNAL: &str = "suppressions.jsonl";
/// The backup directories a data directory's erasures are journalled to.
pub const TARGETS_FILE: &str = "backup-targets";
/// Files of the data directory copied into each backup (when present).
const DATA_FILES: [&str; 3] = [
    "governance.secret",
    "survivorship.fingerprint",
    "audit.jsonl",
];
/// Directories of the data directory copied into each backup (when present).
const DATA_DIRS: [&str; 1] = ["webhooks"];
/// The matching model's default file name in the data directory.
const MODEL_FILE: &str = "matching-model.json";

/// Settings of `[backup]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    /// Where `POST /v1/admin/backup` writes when the request names no directory; when
    /// set, a directory the request names must lie inside it.
    pub dir: Option<PathBuf>,
}

/// What idgraph records of one backup (`files/<id>/backup.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    /// RocksDB's backup id (1, 2, ...).
    pub id: u32,
    /// When the backup started (milliseconds since the epoch): every write acknowledged
    /// before this is in it.
    pub at_ms: i64,
    /// The same time, RFC 3339.
    pub at: String,
    /// The store's last write group when the backup started (it may hold later ones that
    /// were written while it ran).
    pub commit_seq: u64,
    /// Bytes of the store files this backup uses (shared ones included).
    pub bytes: u64,
    pub files: u32,
    /// Bytes the backup directory grew by (what this backup did not share).
    pub new_bytes: u64,
    /// The backup directory.
    pub dir: PathBuf,
}

/// One line of the suppression journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at_ms: i64,
    /// Keyed hashes (HMAC) of the erased identifiers; never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    /// Keyed hashes taken off the suppression list (`DELETE /v1/suppressions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifted: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreOutcome {
    pub backup: BackupRecord,
    pub data_dir: PathBuf,
    /// The restored store's last write group.
    pub commit_seq: u64,
    /// Hashes of the journal put on the restored suppression list.
    pub suppressions_added: usize,
    /// People erased again because the journal names one of their identifiers.
    pub erasures_reapplied: usize,
    /// Profiles in the rebuilt search index.
    pub profiles_indexed: u64,
}

fn invalid(field: &str, message: impl Into<String>) -> EngineError {
    EngineError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn io(what: &Path, e: std::io::Error) -> EngineError {
    EngineError::Store(StoreError::Engine(format!("{}: {e}", what.display())))
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
            std::fs::File::open(&target)?.sync_all()?;
        }
    }
    Ok(())
}

/// Checks the directory a backup request names: absolute, no `..`, and inside
/// `backup.dir` when that is set. `None` means `backup.dir`.
pub fn target(settings: &Settings, to: Option<&str>) -> Result<PathBuf, EngineError> {
    let root = settings.backup.dir.as_ref();
    let dir =
        match (to, root) {
            (Some(t), _) if t.trim().is_empty() => return Err(invalid("to", "must not be empty")),
            (Some(t), _) => PathBuf::from(t),
            (None, Some(r)) => r.clone(),
            (None, None) => return Err(invalid(
                "to",
                "required: name the backup directory (on the server's machine) or set backup.dir",
            )),
        };
    if !dir.is_absolute() {
        return Err(invalid(
            "to",
            "must be an absolute path on the server's machine",
        ));
    }
    if dir
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(invalid("to", "must not contain `..`"));
    }
    if let Some(r) = root {
        if !dir.starts_with(r) {
            return Err(invalid("to", "must lie inside the configured backup.dir"));
        }
    }
    Ok(dir)
}

/// Makes a backup of `store` (whose data directory is `settings.storage.data_dir`) into
/// the backup directory `to`, and remembers `to` so later erasures are journalled there.
pub fn backup(
    store: &dyn GraphStore,
    settings: &Settings,
    to: &Path,
) -> Result<BackupRecord, EngineError> {
    let data_dir = &settings.storage.data_dir;
    let inside = |dir: &Path| {
        let data = data_dir.canonicalize().unwrap_or_else(|_| data_dir.clone());
        dir.starts_with(&data) || dir.starts_with(data_dir)
    };
    if inside(to) {
        return Err(invalid(
            "to",
            "must not lie inside the data directory being backed up",
        ));
    }
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    let to = to.canonicalize().map_err(|e| io(to, e))?;
    if inside(&to) {
        return Err(invalid(
            "to",
            "must not lie inside the data directory being backed up",
        ));
    }
    if to.join(STORE_DIR).exists() && !to.join(FILES_DIR).is_dir() {
        return Err(invalid(
            "to",
            "holds something that is not an idgraph backup",
        ));
    }
    // Remembered first: an erasure from now on is journalled there, even one written
    // while the backup runs (re-applying it is harmless).
    remember_target(data_dir, &to)?;
    let before = dir_bytes(&to);
    let at_ms = crate::engine::now_ms();
    let commit_seq = store.counters()?.commit_seq;
    let made = store.backup(&to.join(STORE_DIR))?;
    let files_dir = to.join(FILES_DIR).join(made.id.to_string());
    let data_copy = files_dir.join("data");
    std::fs::create_dir_all(&data_copy).map_err(|e| io(&data_copy, e))?;
    for name in DATA_FILES {
        let from = data_dir.join(name);
        if from.is_file() {
            std::fs::copy(&from, data_copy.join(name)).map_err(|e| io(&from, e))?;
        }
    }
    for name in DATA_DIRS {
        let from = data_dir.join(name);
        if from.is_dir() {
            copy_tree(&from, &data_copy.join(name)).map_err(|e| io(&from, e))?;
        }
    }
    let model = settings.matching.model_path(data_dir);
    if model.is_file() && model.starts_with(data_dir) {
        std::fs::copy(&model, data_copy.join(MODEL_FILE)).map_err(|e| io(&model, e))?;
    }
    let at = chrono::DateTime::from_timestamp_millis(at_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default();
    let mut record = BackupRecord {
        id: made.id,
        at_ms,
        at,
        commit_seq,
        bytes: made.bytes,
        files: made.files,
        new_bytes: 0,
        dir: to.clone(),
    };
    record.new_bytes = dir_bytes(&to).saturating_sub(before);
    let path = files_dir.join("backup.json");
    let json = serde_json::to_vec_pretty(&record)
        .map_err(|e| EngineError::Store(StoreError::Engine(e.to_string())))?;
    write_synced(&path, &json).map_err(|e| io(&path, e))?;
    tracing::info!(
        backup_id = record.id,
        commit_seq,
        bytes = record.bytes,
        new_bytes = record.new_bytes,
        "backup written"
    );
    Ok(record)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn targets(data_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(data_dir.join(TARGETS_FILE))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect()
}

fn remember_target(data_dir: &Path, to: &Path) -> Result<(), EngineError> {
    let mut known = targets(data_dir);
    if known.iter().any(|t| t == to) {
        return Ok(());
    }
    known.push(to.to_path_buf());
    let text: String = known.iter().map(|t| format!("{}\n", t.display())).collect();
    let path = data_dir.join(TARGETS_FILE);
    write_synced(&path, text.as_bytes()).map_err(|e| io(&path, e))
}

/// Appends an erasure's keyed hashes to the suppression journal of every backup
/// directory this data directory has been backed up to (fsync'd before returning).
pub fn journal_erasure(data_dir: &Path, hashes: &[String]) -> std::io::Result<usize> {
    append_journal(
        data_dir,
        JournalEntry {
            at_ms: crate::engine::now_ms(),
            hashes: hashes.to_vec(),
            lifted: Vec::new(),
        },
    )
}

/// Appends suppressions taken off the list, like [`journal_erasure`]: a restore replays
/// the journal in order, so a lifted suppression stays lifted.
pub fn journal_lifted(data_dir: &Path, hashes: &[String]) -> std::io::Result<usize> {
    append_journal(
        data_dir,
        JournalEntry {
            at_ms: crate::engine::now_ms(),
            hashes: Vec::new(),
            lifted: hashes.to_vec(),
        },
    )
}

fn append_journal(data_dir: &Path, entry: JournalEntry) -> std::io::Result<usize> {
    if entry.hashes.is_empty() && entry.lifted.is_empty() {
        return Ok(0);
    }
    let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut written = 0;
    for dir in targets(data_dir) {
        if !dir.is_dir() {
            continue;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(JOURNAL))?;
        f.write_all(&line)?;
        f.sync_all()?;
        written += 1;
    }
    Ok(written)
}

/// What a backup directory's suppression journal leaves of each hash it names
/// (`true`: suppressed, `false`: lifted), replayed in order (a torn last line, from a crash while appending, is skipped; any other bad line
/// is an error).
pub fn journal_hashes(dir: &Path) -> anyhow::Result<BTreeMap<String, bool>> {
    let path = dir.join(JOURNAL);
    let mut out = BTreeMap::new();
    let Ok(f) = std::fs::File::open(&path) else {
        return Ok(out);
    };
    let lines: Vec<String> = std::io::BufReader::new(f)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(e) => {
                out.extend(e.hashes.into_iter().map(|h| (h, true)));
                out.extend(e.lifted.into_iter().map(|h| (h, false)));
            }
            Err(_) if i + 1 == last => {}
            Err(e) => anyhow::bail!("{} line {}: {e}", path.display(), i + 1),
        }
    }
    Ok(out)
}

/// The backups of backup directory `from`, oldest first.
pub fn list(from: &Path) -> anyhow::Result<Vec<BackupRecord>> {
    let store_dir = from.join(STORE_DIR);
    if !store_dir.is_dir() {
        anyhow::bail!(
            "{} holds no idgraph backup (no {STORE_DIR}/ directory); give the directory `idgraph backup --to` wrote",
            from.display()
        );
    }
    let known = crate::store::rocks::list_backups(&store_dir)?;
    let mut out = Vec::new();
    for b in known {
        let path = from
            .join(FILES_DIR)
            .join(b.id.to_string())
            .join("backup.json");
        // A backup whose record is missing was cut short before it finished.
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let record: BackupRecord = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        out.push(record);
    }
    if out.is_empty() {
        anyhow::bail!("{} holds no finished backup", from.display());
    }
    Ok(out)
}

/// Parses `--at`: RFC 3339 (`2026-12-05T17:00:00Z`), into milliseconds.
pub fn parse_at(text: &str) -> anyhow::Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| anyhow::anyhow!("--at: not an RFC 3339 time like 2026-12-05T17:00:00Z ({e})"))
}

/// Restores the latest backup of `from` (at or before `at_ms` when given) into
/// `settings.storage.data_dir`, which must not exist or be empty; re-applies the
/// journal's erasures and rebuilds the search index.
pub fn restore(
    settings: Settings,
    from: &Path,
    at_ms: Option<i64>,
) -> anyhow::Result<RestoreOutcome> {
    let data_dir = settings.storage.data_dir.clone();
    if !from.is_dir() {
        anyhow::bail!("backup directory {} does not exist", from.display());
    }
    let backups = list(from)?;
    let chosen = match at_ms {
        None => backups.last(),
        Some(t) => backups.iter().rev().find(|b| b.at_ms <= t),
    };
    let Some(chosen) = chosen.cloned() else {
        let first = backups.first().map(|b| b.at.clone()).unwrap_or_default();
        anyhow::bail!(
            "no backup in {} was taken at or before the --at time; the first one is from {first}",
            from.display()
        );
    };
    if data_dir.exists() {
        let entries = std::fs::read_dir(&data_dir)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", data_dir.display()))?;
        // The one file allowed: the data key of the encrypted store being restored
        // (backups never hold it; see `crypto`).
        let mut others = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name() != std::ffi::OsStr::new(crate::crypto::DATA_KEY_FILE));
        if others.next().is_some() {
            anyhow::bail!(
                "{} is not empty: restore into a new or empty directory (a restore never overwrites a store; only the encrypted store's {} may be there)",
                data_dir.display(),
                crate::crypto::DATA_KEY_FILE
            );
        }
    }
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    // RocksDB's restore empties the directory: the data key put there is kept aside.
    let key_path = crate::crypto::data_key_path(&data_dir);
    let data_key = std::fs::read(&key_path).ok();
    crate::store::rocks::restore_backup(&from.join(STORE_DIR), chosen.id, &data_dir)?;
    if let Some(bytes) = data_key {
        if !key_path.exists() {
            write_synced(&key_path, &bytes)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", key_path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    let copied = from
        .join(FILES_DIR)
        .join(chosen.id.to_string())
        .join("data");
    if copied.is_dir() {
        copy_tree(&copied, &data_dir)
            .map_err(|e| anyhow::anyhow!("cannot copy {}: {e}", copied.display()))?;
    }
    let hashes = journal_hashes(from)?;
    let (suppressions_added, to_erase) = suppress(&settings, &hashes)?;
    // Opening the engine rebuilds the search index (there is none in the new directory).
    let engine = Arc::new(Engine::open(settings.clone())?);
    let mut erasures_reapplied = 0;
    if !to_erase.is_empty() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        for key in to_erase {
            let target = crate::resolve::erase::ErasureTarget::Identifier(key.as_str().into());
            match rt.block_on(engine.erase(target)) {
                Ok(_) => erasures_reapplied += 1,
                // Erased already, with another identifier of the same person.
                Err(EngineError::NotFound { .. }) | Err(EngineError::Missing { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let commit_seq = engine.store().counters()?.commit_seq;
    let profiles_indexed = engine.search_index().map(|i| i.len()).unwrap_or(0);
    crate::cli::close(engine);
    Ok(RestoreOutcome {
        backup: chosen,
        data_dir,
        commit_seq,
        suppressions_added,
        erasures_reapplied,
        profiles_indexed,
    })
}

/// Puts the journal's hashes on the restored store's suppression list; returns how many
/// were new and the stored identifier keys they name.
fn suppress(
    settings: &Settings,
    journal: &BTreeMap<String, bool>,
) -> anyhow::Result<(usize, Vec<String>)> {
    if journal.is_empty() {
        return Ok((0, Vec::new()));
    }
    let data_dir = &settings.storage.data_dir;
    let store = crate::store::rocks::RocksStore::open_with_cache(
        data_dir,
        settings.storage.block_cache_mb,
        settings.storage.bottommost_compression,
        crate::crypto::for_settings(settings)?,
    )?;
    // Each hash as the journal left it: added when suppressed and not on the restored
    // list, removed when lifted and still on it.
    let mut changed = Vec::new();
    for (h, suppressed) in journal {
        if store.is_suppressed(h)? != *suppressed {
            changed.push((h.clone(), *suppressed));
        }
    }
    let added = changed.iter().filter(|(_, s)| *s).count();
    if !changed.is_empty() {
        let mut counters = store.counters()?;
        counters.suppressed =
            (counters.suppressed + added as u64).saturating_sub((changed.len() - added) as u64);
        store.apply(&Changes {
            suppression: changed,
            counters: Some(counters),
            ..Default::default()
        })?;
    }
    let hashes: std::collections::BTreeSet<&String> = journal
        .iter()
        .filter(|(_, s)| **s)
        .map(|(h, _)| h)
        .collect();
    let secret = crate::governance::secret(&settings.auth, data_dir).map_err(anyhow::Error::msg)?;
    let named: Vec<String> = store
        .identifier_keys()?
        .into_iter()
        .filter(|k| {
            hashes.contains(&crate::governance::keyed_hash(
                &secret,
                &format!("suppress:{k}"),
            ))
        })
        .collect();
    Ok((added, named))
}
