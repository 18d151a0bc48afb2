//! The audit trail: one JSON line per `/v1` request that reads personal data or changes
//! the graph by hand (everything but event ingest), and per refused request. An entry says
//! who (the key's name and role), when, which route pattern, the status and which profile
//! ids were touched; never a personal value, a query string or a key.
//!
//! Entries are appended to `<data_dir>/audit.jsonl`, written through to the operating
//! system per entry and fsync'd by [`AuditLog::sync`] (every second while serving), at
//! rotation and when the log is closed. Once the active file holds `audit.rotate_mb`, it
//! is fsync'd and renamed `audit.<first seq, 20 digits>.jsonl` (the directory fsync'd
//! too) and a new one started. `retention.audit` removes entries older than the period
//! ([`AuditLog::remove_before`]): whole files when every entry is old, otherwise the file
//! is rewritten without them (a synced temporary file renamed over it). `GET /v1/audit`
//! reads the rotated files and then the active one.

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
    dir: PathBuf,
    path: PathBuf,
    rotate_bytes: u64,
    state: Mutex<Active>,
}

/// The active file and what appending to it needs.
struct Active {
    file: File,
    /// The last sequence number given.
    last_seq: u64,
    /// The length of the file's complete lines.
    len: u64,
    /// The sequence number of the file's first entry (0 while it has none).
    first_seq: u64,
    /// Entries written since the last fsync.
    dirty: bool,
}

const ACTIVE: &str = "audit.jsonl";

/// The name of a rotated file whose first entry is `first_seq`.
fn segment_name(first_seq: u64) -> String {
    format!("audit.{first_seq:020}.jsonl")
}

/// The first sequence number of a rotated file, from its name.
fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit.")?.strip_suffix(".jsonl")?;
    (digits.len() == 20).then(|| digits.parse().ok()).flatten()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The entries of a file (lines that are not entries, such as a torn last line, skipped).
fn entries(path: &Path) -> std::io::Result<impl Iterator<Item = std::io::Result<AuditEntry>>> {
    let lines = BufReader::new(File::open(path)?).lines();
    Ok(lines.filter_map(|line| match line {
        Ok(l) => serde_json::from_str::<AuditEntry>(&l).ok().map(Ok),
        Err(e) => Some(Err(e)),
    }))
}

/// Milliseconds since the epoch of an entry's time (`None` when unreadable: kept).
fn entry_ms(e: &AuditEntry) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(&e.at)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`, continuing its sequence numbers; the active
    /// file is rotated once it holds `rotate_mb` MiB.
    pub fn open(dir: &Path, rotate_mb: u64) -> std::io::Result<AuditLog> {
        AuditLog::open_rotating_at(dir, rotate_mb.saturating_mul(1 << 20))
    }

    /// Like [`AuditLog::open`], rotating at `rotate_bytes`.
    fn open_rotating_at(dir: &Path, rotate_bytes: u64) -> std::io::Result<AuditLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(ACTIVE);
        let (mut last_seq, mut first_seq) = (0, 0);
        // Only a regular file is read back (not, say, a device standing in for a full disk).
        let regular = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if regular {
            for e in entries(&path)? {
                let e = e?;
                if first_seq == 0 {
                    first_seq = e.seq;
                }
                last_seq = e.seq;
            }
        }
        let log_dir = dir.to_path_buf();
        if last_seq == 0 {
            // A fresh active file continues after the newest rotated one.
            if let Some(newest) = segments(&log_dir)?.last() {
                for e in entries(newest)? {
                    last_seq = last_seq.max(e?.seq);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let len = file.metadata()?.len();
        Ok(AuditLog {
            dir: log_dir,
            path,
            rotate_bytes: rotate_bytes.max(1),
            state: Mutex::new(Active {
                file,
                last_seq,
                len,
                first_seq,
                dirty: false,
            }),
        })
    }

    fn lock(&self) -> std::io::Result<std::sync::MutexGuard<'_, Active>> {
        self.state
            .lock()
            .map_err(|_| std::io::Error::other("audit log lock poisoned"))
    }

    /// Appends an entry, giving it the next sequence number; an error when it could not
    /// be written (the caller decides whether the request may still be answered).
    pub fn append(&self, mut entry: AuditEntry) -> std::io::Result<()> {
        let mut guard = self.lock()?;
        let seq = guard.last_seq + 1;
        entry.seq = seq;
        let mut line = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = guard.file.write_all(&line) {
            // A line written in part (a full disk) is cut off again, so the next entry
            // starts on a line of its own instead of being lost with the torn one.
            let len = guard.len;
            let _ = guard.file.set_len(len);
            return Err(e);
        }
        guard.last_seq = seq;
        guard.len += line.len() as u64;
        guard.dirty = true;
        if guard.first_seq == 0 {
            guard.first_seq = seq;
        }
        if guard.len >= self.rotate_bytes {
            // The entry is written: a rotation that fails is retried at the next one.
            if let Err(e) = self.rotate(&mut guard) {
                tracing::warn!(error = %e, "cannot rotate the audit log; appending to the current file");
            }
        }
        Ok(())
    }

    /// Closes the active file (fsync'd), renames it after its first entry, and starts a
    /// new one; the directory is fsync'd so both names survive a crash.
    fn rotate(&self, active: &mut Active) -> std::io::Result<()> {
        active.file.sync_all()?;
        let rotated = self.dir.join(segment_name(active.first_seq));
        std::fs::rename(&self.path, &rotated)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        sync_dir(&self.dir)?;
        active.file = file;
        active.len = 0;
        active.first_seq = 0;
        active.dirty = false;
        Ok(())
    }

    /// Makes every entry written so far durable (fsync), when any was written since the
    /// last call.
    pub fn sync(&self) -> std::io::Result<()> {
        // The fsync runs on a second handle of the file, outside the lock: requests keep
        // appending their entries while it waits for the disk (under ingest, that wait is
        // long enough to stall every audited read behind it).
        let file = {
            let mut guard = self.lock()?;
            if !guard.dirty {
                return Ok(());
            }
            guard.dirty = false;
            guard.file.try_clone()?
        };
        if let Err(e) = file.sync_data() {
            self.lock()?.dirty = true;
            return Err(e);
        }
        Ok(())
    }

    /// The log's files, oldest first: the rotated ones, then the active one.
    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files = segments(&self.dir)?;
        files.push(self.path.clone());
        Ok(files)
    }

    /// Removes every entry written before `before_ms` (ms since the epoch); how many went.
    /// Files are visited oldest first and the pass stops at the first one whose first entry
    /// is young enough, so a pass over a log with nothing to remove reads one line.
    pub fn remove_before(&self, before_ms: i64) -> std::io::Result<u64> {
        let mut removed = 0;
        for path in segments(&self.dir)? {
            match self.prune_file(&path, before_ms, None)? {
                Pruned::Young => return Ok(removed),
                Pruned::Removed(n) => removed += n,
            }
        }
        let mut guard = self.lock()?;
        if let Pruned::Removed(n) =
            self.prune_file(&self.path.clone(), before_ms, Some(&mut guard))?
        {
            removed += n;
        }
        Ok(removed)
    }

    /// Removes the old entries of one file: the whole file when all are old (the active
    /// file is emptied instead), a rewrite without them when some are.
    fn prune_file(
        &self,
        path: &Path,
        before_ms: i64,
        active: Option<&mut Active>,
    ) -> std::io::Result<Pruned> {
        let old = |e: &AuditEntry| entry_ms(e).is_some_and(|ms| ms < before_ms);
        let first = entries(path)?.next().transpose()?;
        if !first.as_ref().is_some_and(old) {
            return Ok(Pruned::Young);
        }
        let (mut kept, mut removed) = (Vec::new(), 0u64);
        for e in entries(path)? {
            let e = e?;
            if old(&e) {
                removed += 1;
            } else {
                kept.push(e);
            }
        }
        if kept.is_empty() && active.is_none() {
            std::fs::remove_file(path)?;
            sync_dir(&self.dir)?;
            return Ok(Pruned::Removed(removed));
        }
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for e in &kept {
            serde_json::to_writer(&mut out, e).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(&self.dir)?;
        if let Some(active) = active {
            active.file = OpenOptions::new().append(true).open(path)?;
            active.len = active.file.metadata()?.len();
            active.first_seq = kept.first().map_or(0, |e| e.seq);
            active.dirty = false;
        }
        Ok(Pruned::Removed(removed))
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
        let files = self.files()?;
        let mut out = std::collections::VecDeque::new();
        for (i, path) in files.iter().enumerate() {
            // A rotated file holds the entries before the next file's first one.
            let next_first = files
                .get(i + 1)
                .and_then(|p| p.file_name()?.to_str().and_then(segment_seq));
            if let (Some(after), Some(next)) = (filter.after, next_first) {
                if next <= after.saturating_add(1) {
                    continue;
                }
            }
            let found = match entries(path) {
                Ok(found) => found,
                // Removed by retention since it was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in found {
                let mut e = e?;
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
        }
        Ok(out.into())
    }
}

/// What pruning a file found.
enum Pruned {
    /// Its first entry is young enough: so are the later files'.
    Young,
    Removed(u64),
}

/// The rotated files in `dir`, oldest first.
fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(seq) = entry.file_name().to_str().and_then(segment_seq) {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        if let Ok(guard) = self.state.lock() {
            let _ = guard.file.sync_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: &str, key: &str) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at: at.to_owned(),
            key: key.to_owned(),
            role: Some("admin".to_owned()),
            method: "GET".to_owned(),
            route: "/v1/profiles/{id}".to_owned(),
            status: 200,
            profiles: vec![],
        }
    }

    fn all(log: &AuditLog) -> Vec<AuditEntry> {
        let filter = AuditFilter {
            limit: usize::MAX,
            ..Default::default()
        };
        log.query(&filter).unwrap()
    }

    fn rotated(dir: &Path) -> Vec<String> {
        segments(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    const OLD: &str = "2020-01-01T00:00:00Z";
    const NEW: &str = "2030-01-01T00:00:00Z";
    /// Between OLD and NEW.
    const CUT_MS: i64 = 1_700_000_000_000;

    #[test]
    fn rotation_keeps_every_entry_in_order_and_the_sequence_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open_rotating_at(dir.path(), 600).unwrap();
            for i in 0..20 {
                log.append(entry(NEW, &format!("k{i}"))).unwrap();
            }
            let seqs: Vec<u64> = all(&log).iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
            let files = rotated(dir.path());
            assert!(files.len() >= 3, "{files:?}");
            assert_eq!(files[0], "audit.00000000000000000001.jsonl");
            // Only entries after 15: earlier files are skipped, the answer is the same.
            let after = AuditFilter {
                after: Some(15),
                limit: 100,
                ..Default::default()
            };
            let seqs: Vec<u64> = log.query(&after).unwrap().iter().map(|e| e.seq).collect();
            assert_eq!(seqs, vec![16, 17, 18, 19, 20]);
        }
        // Reopened right after a rotation (an empty active file), numbering continues
        // from the newest rotated file.
        let dir = tempfile::tempdir().unwrap();
        {
            let log = AuditLog::open_rotating_at(dir.path(), 1).unwrap();
            log.append(entry(NEW, "a")).unwrap();
            log.append(entry(NEW, "b")).unwrap();
        }
        assert_eq!(std::fs::metadata(dir.path().join(ACTIVE)).unwrap().len(), 0);
        assert_eq!(rotated(dir.path()).len(), 2);
        let log = AuditLog::open_rotating_at(dir.path(), 1 << 20).unwrap();
        log.append(entry(NEW, "next")).unwrap();
        let seqs: Vec<(u64, String)> = all(&log).into_iter().map(|e| (e.seq, e.key)).collect();
        assert_eq!(
            seqs,
            vec![(1, "a".into()), (2, "b".into()), (3, "next".into())]
        );
    }

    #[test]
    fn retention_removes_old_entries_only_from_rotated_and_active_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open_rotating_at(dir.path(), 600).unwrap();
        for i in 0..10 {
            log.append(entry(OLD, &format!("old{i}"))).unwrap();
        }
        for i in 0..3 {
            log.append(entry(NEW, &format!("new{i}"))).unwrap();
        }
        let before = rotated(dir.path());
        assert_eq!(log.remove_before(CUT_MS).unwrap(), 10);
        let left: Vec<String> = all(&log).into_iter().map(|e| e.key).collect();
        assert_eq!(left, vec!["new0", "new1", "new2"]);
        assert!(
            rotated(dir.path()).len() < before.len(),
            "files holding only old entries are deleted: {before:?}"
        );
        // Nothing older is left: a second pass removes nothing, appending continues.
        assert_eq!(log.remove_before(CUT_MS).unwrap(), 0);
        log.append(entry(NEW, "after")).unwrap();
        let last = all(&log).last().cloned().unwrap();
        assert_eq!((last.seq, last.key.as_str()), (14, "after"));
        assert!(!dir.path().read_dir().unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp")));
    }

    #[test]
    fn retention_of_the_active_file_keeps_appending_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open_rotating_at(dir.path(), 1 << 20).unwrap();
        log.append(entry(OLD, "old")).unwrap();
        log.append(entry(NEW, "new")).unwrap();
        assert_eq!(log.remove_before(CUT_MS).unwrap(), 1);
        log.append(entry(NEW, "later")).unwrap();
        log.sync().unwrap();
        let left: Vec<(u64, String)> = all(&log).into_iter().map(|e| (e.seq, e.key)).collect();
        assert_eq!(left, vec![(2, "new".to_owned()), (3, "later".to_owned())]);
        assert!(rotated(dir.path()).is_empty());
    }
}
