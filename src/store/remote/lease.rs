//! The writer lease: one idgraph process writes a given graph database, and the database
//! itself says which.
//!
//! idgraph's resolver must be the only writer of its graph (its profile cache and its
//! read-ahead assume nothing else changes the graph). A lease record in the graph
//! (`Meta {name: "writer_lease"}` over Bolt, vertex `meta:lease` over Gremlin) names the
//! holder, a label for people (host, pid, data directory) and when it expires:
//!
//! - **Claim** at start-up: taken when the record is missing, expired, or already this
//!   holder's; otherwise the process refuses to start, naming the holder.
//! - **Heartbeat**: a thread renews it every third of `graph.lease_seconds`. A renewal that
//!   finds another holder marks this process *fenced*.
//! - **Fencing**: every write transaction first locks the lease record and checks it is
//!   still this holder's, and renews it, in the same transaction. A process that was paused
//!   or cut off past its lease, while another took the graph over, therefore cannot write
//!   one more record: its write fails whole with [`StoreError::Fenced`], it answers writes
//!   with 503 and `/ready` fails until it is restarted (its cache and read-ahead are stale).
//! - **Release** on a clean stop, so the next writer starts at once.
//!
//! The holder id is kept in `<data_dir>/writer.id`, so a process restarted on the same data
//! directory (after `kill -9` too) is the same holder and takes its lease back at once; a
//! process on another data directory waits for the lease to expire. Expiry compares the
//! writers' clocks (the database has no clock every backend can read): keep hosts
//! NTP-synchronized, well within the lease length.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::RemoteGraph;
use crate::store::StoreError;

/// The shortest lease `graph.lease_seconds` accepts.
pub const MIN_LEASE_SECONDS: u64 = 3;
const WRITER_ID_FILE: &str = "writer.id";

/// A holder's claim at one instant: who, and until when the lease is theirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub holder: String,
    pub label: String,
    pub now_ms: u64,
    pub expires_ms: u64,
}

/// The lease record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Holder {
    pub holder: String,
    pub label: String,
    pub expires_ms: u64,
}

/// The message of a write refused because another process holds the lease.
pub const FENCED: &str = "another idgraph process took over this graph's writer lease; \
                          this one no longer writes (restart it to take the lease back once \
                          the other stops)";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This process's lease: its identity, the lease length, and whether it was fenced.
pub struct Lease {
    holder: String,
    label: String,
    ttl: Duration,
    fenced: AtomicBool,
    stop: AtomicBool,
    /// When the lease was last extended (by a write or the heartbeat), in ms.
    renewed_ms: AtomicU64,
    /// Held by a fenced write and by a renewal, so the two never run at once: both change
    /// the lease record, and a database with optimistic concurrency (ArcadeDB, Neptune)
    /// would fail one of them as a conflict.
    turn: Mutex<()>,
}

impl Lease {
    /// The holder identity of `data_dir` (created on first use) and the lease length.
    pub fn for_data_dir(data_dir: &Path, lease_seconds: u64) -> Result<Lease, StoreError> {
        if lease_seconds < MIN_LEASE_SECONDS {
            return Err(StoreError::Engine(format!(
                "graph.lease_seconds must be at least {MIN_LEASE_SECONDS}; got {lease_seconds}"
            )));
        }
        let path = data_dir.join(WRITER_ID_FILE);
        let holder = match std::fs::read_to_string(&path) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_owned(),
            _ => {
                let id = format!("w_{:032x}", rand::random::<u128>());
                std::fs::create_dir_all(data_dir)
                    .and_then(|()| std::fs::write(&path, &id))
                    .map_err(|e| {
                        StoreError::Engine(format!("cannot write {}: {e}", path.display()))
                    })?;
                id
            }
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "unknown host".into());
        let label = format!(
            "host {host}, pid {}, data_dir {}",
            std::process::id(),
            data_dir.display()
        );
        Ok(Lease {
            holder,
            label,
            ttl: Duration::from_secs(lease_seconds),
            fenced: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            renewed_ms: AtomicU64::new(0),
            turn: Mutex::new(()),
        })
    }

    /// A claim made now.
    pub fn claim(&self) -> Claim {
        let now_ms = now_ms();
        Claim {
            holder: self.holder.clone(),
            label: self.label.clone(),
            now_ms,
            expires_ms: now_ms + self.ttl.as_millis() as u64,
        }
    }

    /// The turn to change the lease record (see the `turn` field).
    pub fn turn(&self) -> MutexGuard<'_, ()> {
        self.turn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `claim` extended the lease (a write or a renewal committed).
    pub fn renewed(&self, claim: &Claim) {
        self.renewed_ms.fetch_max(claim.now_ms, Ordering::AcqRel);
    }

    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Records that another process holds the lease now (it never clears: see the module
    /// docs).
    pub fn fence(&self) {
        if !self.fenced.swap(true, Ordering::AcqRel) {
            tracing::error!("{FENCED}");
        }
    }

    /// `Err(Fenced)` once fenced.
    pub fn check(&self) -> Result<(), StoreError> {
        if self.is_fenced() {
            Err(StoreError::Fenced(FENCED.into()))
        } else {
            Ok(())
        }
    }

    /// Takes the lease at start-up, or says who holds it.
    pub fn acquire<G: RemoteGraph>(&self, graph: &G) -> Result<(), StoreError> {
        let claim = self.claim();
        let held = graph.claim_lease(&claim)?;
        if held.holder == self.holder {
            self.renewed(&claim);
            tracing::info!(lease_seconds = self.ttl.as_secs(), "writer lease taken");
            return Ok(());
        }
        let left = held.expires_ms.saturating_sub(claim.now_ms).div_ceil(1000);
        Err(StoreError::Engine(format!(
            "another idgraph process writes this graph ({}); its writer lease runs for {left} \
             more seconds unless renewed. Stop it first (a clean stop releases the lease), or \
             wait for the lease to expire if it is gone (graph.lease_seconds)",
            held.label
        )))
    }

    /// Stops the heartbeat and, unless fenced, releases the lease.
    pub fn release<G: RemoteGraph>(&self, graph: &G) {
        self.stop.store(true, Ordering::Release);
        if self.is_fenced() {
            return;
        }
        match graph.release_lease(&self.holder) {
            Ok(()) => tracing::info!("writer lease released"),
            Err(e) => {
                tracing::warn!(error = %e, "could not release the writer lease; it expires by itself")
            }
        }
    }

    /// Starts the heartbeat thread: it renews the lease every third of its length until the
    /// lease is released, the graph is dropped, or a renewal finds another holder.
    pub fn start_heartbeat<G: RemoteGraph + Send + Sync + 'static>(
        self: &Arc<Lease>,
        graph: Weak<G>,
    ) -> Result<(), StoreError> {
        let lease = Arc::downgrade(self);
        let every = self.ttl / 3;
        std::thread::Builder::new()
            .name("idgraph-lease".into())
            .spawn(move || heartbeat(lease, graph, every))
            .map(|_| ())
            .map_err(|e| StoreError::Engine(format!("cannot start the lease heartbeat: {e}")))
    }
}

fn heartbeat<G: RemoteGraph>(lease: Weak<Lease>, graph: Weak<G>, every: Duration) {
    let tick = Duration::from_millis(100).min(every);
    let mut waited = Duration::ZERO;
    loop {
        std::thread::sleep(tick);
        waited += tick;
        let (Some(lease), Some(graph)) = (lease.upgrade(), graph.upgrade()) else {
            return;
        };
        if lease.stop.load(Ordering::Acquire) || lease.is_fenced() {
            return;
        }
        if waited < every {
            continue;
        }
        waited = Duration::ZERO;
        let _turn = lease.turn();
        let claim = lease.claim();
        // Writes extend the lease too: under steady ingest the heartbeat has nothing to do.
        let since = claim
            .now_ms
            .saturating_sub(lease.renewed_ms.load(Ordering::Acquire));
        if since < every.as_millis() as u64 {
            continue;
        }
        match graph.renew_lease(&claim) {
            Ok(true) => lease.renewed(&claim),
            Ok(false) => {
                lease.fence();
                return;
            }
            // The database is unreachable: writes fail anyway; keep trying. Another
            // process can take the lease once it expires, and the next renewal or write
            // then finds out.
            Err(e) => tracing::warn!(error = %e, "writer lease not renewed"),
        }
    }
}
