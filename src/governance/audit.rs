//! The audit trail: one JSON line per `/v1` request that reads personal data or changes
//! the graph by hand (everything but event ingest), and per refused request. An entry says
//! who (the key's name and role), when, which route pattern, the status and which profile
//! ids were touched; never a personal value, a query string or a key.
//!
//! Entries are appended to `<data_dir>/audit.jsonl` and written through to the operating
//! system per entry (fsync'd when the log is closed). `GET /v1/audit` reads it back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One audited request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    /// RFC 3339 time.
    pub at: String,
    /// The key's name; `-` when no valid key was presented.
    pub key: String,
    pub role: Option<String>,
    pub method: String,
    /// The route pattern (`/v1/profiles/{id}`), never the raw path.
    pub route: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
}

/// What `GET /v1/audit` filters on.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub key: Option<String>,
    pub profile: Option<String>,
    pub route: Option<String>,
    /// Entries with `seq` greater than this.
    pub after: Option<u64>,
    pub limit: usize,
}

pub struct AuditLog {
    path: PathBuf,
    /// The open log, the last sequence number and the length of the log's complete lines.
    file: Mutex<(File, u64, u64)>,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, continuing its sequence numbers.
    pub fn open(dir: &Path) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("audit.jsonl");
        let mut last = 0;
        // Only a regular file is read back (not, say, a device standing in for a full disk).
        let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if let Some(f) = regular.then(|| File::open(&path).ok()).flatten() {
            for line in BufReader::new(f).lines() {
                if let Ok(e) = serde_json::from_str::<AuditEntry>(&line?) {
                    last = e.seq;
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(AuditLog {
            path,
            file: Mutex::new((file, last, len)),
        })
    }

    /// Appends an entry, giving it the next sequence number; an error when it could not
    /// be written (the caller decides whether the request may still be answered).
    pub fn append(&self, mut entry: AuditEntry) -> std::io::Result<()> {
        let mut guard = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))?;
        let seq = guard.1 + 1;
        entry.seq = seq;
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = guard.0.write_all(&line) {
            // A line written in part (a full disk) is cut off again, so the next entry
            // starts on a line of its own instead of being lost with the torn one.
            let _ = guard.0.set_len(guard.2);
            return Err(e);
        }
        guard.1 = seq;
        guard.2 += line.len() as u64;
        Ok(())
    }

    /// Entries matching `filter`, oldest first, at most `filter.limit` (the latest ones).
    pub fn query(&self, filter: &AuditFilter) -> std::io::Result<Vec<AuditEntry>> {
        self.query_with(filter, |_| Ok(true))
    }

    /// Like [`AuditLog::query`], keeping only the entries `keep` accepts (it may redact
    /// them; a scoped caller's row-level scope), before the limit is counted.
    pub fn query_with(
        &self,
        filter: &AuditFilter,
        mut keep_entry: impl FnMut(&mut AuditEntry) -> std::io::Result<bool>,
    ) -> std::io::Result<Vec<AuditEntry>> {
        if !std::fs::metadata(&self.path)?.is_file() {
            return Err(std::io::Error::other("the audit log is not a regular file"));
        }
        let f = File::open(&self.path)?;
        let mut out = std::collections::VecDeque::new();
        for line in BufReader::new(f).lines() {
            let Ok(mut e) = serde_json::from_str::<AuditEntry>(&line?) else {
                continue;
            };
            let keep = filter.key.as_ref().is_none_or(|k| *k == e.key)
                && filter.route.as_ref().is_none_or(|r| *r == e.route)
                && filter.after.is_none_or(|a| e.seq > a)
                && filter
                    .profile
                    .as_ref()
                    .is_none_or(|p| e.profiles.contains(p));
            if keep && keep_entry(&mut e)? {
                out.push_back(e);
                if out.len() > filter.limit {
                    out.pop_front();
                }
            }
        }
        Ok(out.into())
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Ok(guard) = self.file.lock() {
            let _ = guard.0.sync_all();
        }
    }
}
