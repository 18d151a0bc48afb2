//! The writer's side of read replicas: the latest write groups, kept in memory as the
//! exact bytes the embedded store wrote (RocksDB write batches), for replicas to fetch and
//! apply in order, and snapshots (RocksDB checkpoints) for replicas that start or fall too
//! far behind.
//!
//! - **Positions are write groups.** A replica's position is the `commit_seq` of the last
//!   group it applied (the store's own counter, written in the same batch), so it resumes
//!   after a restart of either side from its own store: nothing else to keep.
//! - **The backlog is memory only** (`replication.backlog_mb`, oldest groups dropped
//!   first), as Redis keeps its replication backlog: no file of the writer holds a copy of
//!   its writes, so erasure stays a matter of the store's own files. A replica asking for
//!   groups the backlog no longer holds (it was down too long, or the writer restarted
//!   while it was behind) gets `410 replication_behind` and starts again from a snapshot.
//! - **Erasure.** An erasure's group carries the erased profile ids; every earlier group
//!   (which may hold the person's values) is dropped from the backlog at once, and the
//!   writer's snapshots are deleted by the purge. A replica applying the erasure purges its
//!   own files (compaction, index merge) the same way the writer does.
//! - **Snapshots** are RocksDB checkpoints (hard links of the store's files; never while
//!   an erasure's purge is pending) in `<data_dir>/replication/snapshots/<id>`, listed by
//!   `GET /v1/replication/snapshot` and fetched file by file; at most [`KEEP_SNAPSHOTS`] are
//!   kept.
//!
//! Wire format of `GET /v1/replication/log`: a sequence of frames, each
//! `commit_seq: u64 BE | at_ms: i64 BE | erased: u32 BE count, then per id u16 BE length + UTF-8 |
//! batch: u32 BE length + bytes`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::store::ProfileId;

/// Snapshots kept on the writer (older ones are deleted when a new one is made).
pub const KEEP_SNAPSHOTS: usize = 2;

/// Where the writer's snapshots are, under its data directory.
pub const SNAPSHOTS_DIR: &str = "replication/snapshots";

/// One write group as the store wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub commit_seq: u64,
    /// When the writer wrote it (ms since the epoch): a replica's lag is measured from it.
    pub at_ms: i64,
    /// Profiles an erasure removed in this group (empty otherwise).
    pub erased: Vec<ProfileId>,
    /// The RocksDB write batch, as written.
    pub batch: Arc<Vec<u8>>,
}

/// Why the backlog cannot serve a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The groups after `after` were dropped: only those after `floor` are kept.
    Behind { floor: u64 },
    /// The replica is ahead of the writer (a writer restored from an older backup).
    Ahead { latest: u64 },
}

struct Inner {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Groups up to this one are not in the backlog.
    floor: u64,
    /// The last group written.
    latest: u64,
}

/// The backlog of write groups (see the module documentation).
pub struct Backlog {
    inner: Mutex<Inner>,
    max_bytes: usize,
    signal: tokio::sync::watch::Sender<u64>,
}

impl Backlog {
    /// An empty backlog of a store whose last group is `latest`.
    pub fn new(latest: u64, max_bytes: usize) -> Backlog {
        Backlog {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                bytes: 0,
                floor: latest,
                latest,
            }),
            max_bytes,
            signal: tokio::sync::watch::channel(latest).0,
        }
    }

    /// The groups after `after`, up to about `max_bytes` (at least one).
    pub fn after(&self, after: u64, max_bytes: usize) -> Result<Vec<Entry>, Unavailable> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if after > inner.latest {
            return Err(Unavailable::Ahead {
                latest: inner.latest,
            });
        }
        if after < inner.floor {
            return Err(Unavailable::Behind { floor: inner.floor });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        // Entries are in commit order: skip to the first after `after`.
        let start = inner.entries.partition_point(|e| e.commit_seq <= after);
        for e in inner.entries.iter().skip(start) {
            if !out.is_empty() && bytes + e.batch.len() > max_bytes {
                break;
            }
            bytes += e.batch.len();
            out.push(e.clone());
        }
        Ok(out)
    }

    /// The last group written.
    pub fn latest(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).latest
    }

    /// Records a written group (the store, after its write). An erasure drops every
    /// earlier group.
    pub fn push(&self, entry: Entry) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.latest = entry.commit_seq;
        if !entry.erased.is_empty() {
            inner.entries.clear();
            inner.bytes = 0;
            inner.floor = entry.commit_seq.saturating_sub(1);
        }
        inner.bytes += entry.batch.len();
        inner.entries.push_back(entry);
        while inner.bytes > self.max_bytes && inner.entries.len() > 1 {
            if let Some(old) = inner.entries.pop_front() {
                inner.bytes -= old.batch.len();
                inner.floor = old.commit_seq;
            }
        }
        self.signal.send_replace(inner.latest);
    }

    /// Wakes when a group is recorded (long polls).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.signal.subscribe()
    }
}

/// Appends one frame of the wire format to `out`.
pub fn encode(entry: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(&entry.commit_seq.to_be_bytes());
    out.extend_from_slice(&entry.at_ms.to_be_bytes());
    out.extend_from_slice(&(entry.erased.len() as u32).to_be_bytes());
    for id in &entry.erased {
        let id = id.to_string();
        let id = id.as_bytes();
        out.extend_from_slice(&(id.len() as u16).to_be_bytes());
        out.extend_from_slice(id);
    }
    out.extend_from_slice(&(entry.batch.len() as u32).to_be_bytes());
    out.extend_from_slice(&entry.batch);
}

/// Splits a body of frames; an error names what is malformed.
pub fn decode(mut body: &[u8]) -> Result<Vec<Entry>, String> {
    fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if body.len() < n {
            return Err("the replication log is truncated".into());
        }
        let (head, rest) = body.split_at(n);
        *body = rest;
        Ok(head)
    }
    fn uint<const N: usize>(body: &mut &[u8]) -> Result<[u8; N], String> {
        take(body, N)?
            .try_into()
            .map_err(|_| "the replication log is truncated".to_owned())
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let commit_seq = u64::from_be_bytes(uint::<8>(&mut body)?);
        let at_ms = i64::from_be_bytes(uint::<8>(&mut body)?);
        let count = u32::from_be_bytes(uint::<4>(&mut body)?) as usize;
        let mut erased = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            let len = u16::from_be_bytes(uint::<2>(&mut body)?) as usize;
            let id = std::str::from_utf8(take(&mut body, len)?)
                .map_err(|_| "a profile id in the replication log is not UTF-8".to_owned())?;
            erased.push(ProfileId::from(id.to_owned()));
        }
        let len = u32::from_be_bytes(uint::<4>(&mut body)?) as usize;
        let batch = take(&mut body, len)?.to_vec();
        out.push(Entry {
            commit_seq,
            at_ms,
            erased,
            batch: Arc::new(batch),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, bytes: usize, erased: &[&str]) -> Entry {
        Entry {
            commit_seq: seq,
            at_ms: 1_700_000_000_000 + seq as i64,
            erased: erased
                .iter()
                .map(|s| ProfileId::from((*s).to_owned()))
                .collect(),
            batch: Arc::new(vec![seq as u8; bytes]),
        }
    }

    #[test]
    fn frames_round_trip() {
        let entries = vec![entry(7, 3, &[]), entry(8, 0, &["p_1", "p_22"])];
        let mut body = Vec::new();
        for e in &entries {
            encode(e, &mut body);
        }
        assert_eq!(decode(&body), Ok(entries));
        assert!(decode(&body[..body.len() - 1]).is_err());
    }

    #[test]
    fn the_backlog_serves_what_it_holds_and_names_what_it_does_not() {
        let log = Backlog::new(10, 100);
        assert_eq!(log.after(10, 1000), Ok(vec![]));
        for seq in 11..=15 {
            log.push(entry(seq, 30, &[]));
        }
        // 150 bytes > 100: the oldest two went.
        assert_eq!(log.after(12, 1000).map(|v| v.len()), Ok(3));
        assert_eq!(log.after(11, 1000), Err(Unavailable::Behind { floor: 12 }));
        assert_eq!(log.after(16, 1000), Err(Unavailable::Ahead { latest: 15 }));
        // A page stops at max_bytes, but always holds one.
        assert_eq!(log.after(12, 40).map(|v| v.len()), Ok(1));
        assert_eq!(log.after(12, 1).map(|v| v[0].commit_seq), Ok(13));
    }

    #[test]
    fn an_erasure_drops_every_earlier_group() {
        let log = Backlog::new(0, 1 << 20);
        for seq in 1..=3 {
            log.push(entry(seq, 5, &[]));
        }
        log.push(entry(4, 5, &["p_9"]));
        assert_eq!(log.after(2, 1000), Err(Unavailable::Behind { floor: 3 }));
        let kept = log.after(3, 1000).expect("the erasure itself is kept");
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].erased, vec![ProfileId::from("p_9".to_owned())]);
    }
}
