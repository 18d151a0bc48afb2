//! Backups of the embedded store with RocksDB's `BackupEngine`: each backup is a set of
//! SST files shared with the backups before it (`shared_checksum/`, so a second backup
//! copies only the files written since), plus its own small MANIFEST and options; restore
//! copies one backup into an empty directory. Part of `store::rocks` (the only place
//! that touches `rocksdb`).

use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

use rocksdb::backup::{BackupEngine, BackupEngineOptions, RestoreOptions};
use rocksdb::{Env, IteratorMode};

use super::{engine, RocksStore, CF_IDENTIFIERS};
use crate::store::StoreError;

/// One backup held by a backup directory (RocksDB's own record of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBackup {
    pub id: u32,
    /// When RocksDB finished it, in seconds since the epoch.
    pub timestamp: i64,
    /// Bytes of the files it uses (shared ones included).
    pub bytes: u64,
    pub files: u32,
}

fn open_engine(dir: &Path) -> Result<BackupEngine, StoreError> {
    let env = Env::new().map_err(engine)?;
    let mut opts = BackupEngineOptions::new(dir).map_err(engine)?;
    // Every file of a backup reaches the disk before the backup is recorded.
    opts.set_sync(true);
    BackupEngine::open(&opts, &env).map_err(engine)
}

/// The backups in `dir` (a `BackupEngine` directory), oldest first.
pub fn list_backups(dir: &Path) -> Result<Vec<StoreBackup>, StoreError> {
    let mut out: Vec<StoreBackup> = open_engine(dir)?
        .get_backup_info()
        .into_iter()
        .map(|b| StoreBackup {
            id: b.backup_id,
            timestamp: b.timestamp,
            bytes: b.size,
            files: b.num_files,
        })
        .collect();
    out.sort_by_key(|b| b.id);
    Ok(out)
}

/// Copies backup `id` of `dir` into `to` (which must hold no store) and checks it first.
pub fn restore_backup(dir: &Path, id: u32, to: &Path) -> Result<(), StoreError> {
    let mut backups = open_engine(dir)?;
    backups.verify_backup(id).map_err(engine)?;
    backups
        .restore_from_backup(to, to, &RestoreOptions::default(), id)
        .map_err(engine)
}

impl RocksStore {
    /// A new backup of the live store into the `BackupEngine` directory `dir` (created
    /// when missing): memtables are flushed first, so the backup holds every write group
    /// acknowledged before the call, and no group in part (each is one atomic batch).
    /// Returns the new backup.
    pub fn backup_into(&self, dir: &Path) -> Result<StoreBackup, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Engine(format!("cannot create {}: {e}", dir.display())))?;
        let mut backups = open_engine(dir)?;
        // Not while an erasure's purge is running: the files it is about to rewrite still
        // hold the erased values. (An erasure written while the backup runs is in the
        // suppression journal, and restore erases the person again.)
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while self.purged_through.load(SeqCst) < self.last_erasure.load(SeqCst) {
            if std::time::Instant::now() > deadline {
                return Err(StoreError::Engine(
                    "an erasure's purge is still running; ask for the backup again".into(),
                ));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        backups
            .create_new_backup_flush(&self.db, true)
            .map_err(engine)?;
        let latest = backups
            .get_backup_info()
            .into_iter()
            .max_by_key(|b| b.backup_id)
            .ok_or_else(|| StoreError::Engine("the backup engine recorded no backup".into()))?;
        Ok(StoreBackup {
            id: latest.backup_id,
            timestamp: latest.timestamp,
            bytes: latest.size,
            files: latest.num_files,
        })
    }

    /// Every identifier key of the store (restore looks them up on the suppression list).
    pub fn identifier_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_IDENTIFIERS)?, IteratorMode::Start)
        {
            let (k, _) = item.map_err(engine)?;
            out.push(self.unseg(&k)?);
        }
        Ok(out)
    }
}
