//! `idgraph bench`: resolved ingest through the library with durable (synced) writes,
//! in-process profile lookups, and bytes on disk / resident memory per profile, on
//! generated events of 3 to 5 identifiers with realistic overlap. Prints a table and,
//! with `--json`, one JSON object.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::config::Settings;
use crate::demo::generate::bench_events;
use crate::engine::Engine;
use crate::ingest::event::NormalizedEvent;
use crate::resolve::EventOutcome;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Events to ingest (about 4 events per person, so events/4 profiles).
    #[arg(long, default_value_t = 400_000)]
    pub events: usize,
    /// Events per request (batch) submitted to the writer.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent clients submitting batches.
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Lookups to run after ingest.
    #[arg(long, default_value_t = 1_000_000)]
    pub lookups: usize,
    /// Threads running lookups.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Scratch directory (deleted before and after); default: a temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch directory (e.g. to serve it and measure a serving process).
    #[arg(long)]
    pub keep: bool,
    /// Run without the search index (the core path alone); by default ingest also feeds
    /// the search indexer, as `idgraph serve` does.
    #[arg(long)]
    pub no_search: bool,
}

/// A memory figure of this process from `/proc/self/status` (Linux; 0 elsewhere), in
/// bytes: `VmRSS` (resident now) or `VmHWM` (peak resident).
pub fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Resident set size of this process in bytes (Linux), 0 elsewhere.
pub fn rss_bytes() -> u64 {
    status_bytes("VmRSS")
}

pub fn dir_size(path: &std::path::Path) -> u64 {
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

pub fn run(mut settings: Settings, args: BenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("idgraph-bench-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&dir);
    settings.storage.data_dir = dir.clone();
    let rss_before = rss_bytes();

    let t = Instant::now();
    let raw = bench_events(args.events, args.seed);
    let generate_s = t.elapsed().as_secs_f64();

    let engine = if args.no_search {
        let store = Engine::open_store(&settings)?;
        Engine::with_store(settings, store, None)?
    } else {
        Engine::open(settings)?
    };
    let t = Instant::now();
    let mut events: Vec<NormalizedEvent> = Vec::with_capacity(raw.len());
    for e in &raw {
        events.push(
            engine.validate(e).map_err(|e| {
                anyhow::anyhow!("generated event invalid: {}: {}", e.field, e.message)
            })?,
        );
    }
    drop(raw);
    let validate_s = t.elapsed().as_secs_f64();

    let keys: Vec<(String, String, crate::model::IdentKey)> = events
        .iter()
        .step_by(3)
        .flat_map(|e| {
            e.identifiers
                .iter()
                .map(|i| (i.kind.clone(), i.value.clone(), i.key()))
        })
        .collect();
    let total = events.len();
    let t = Instant::now();
    // Clients submit batches concurrently (as HTTP clients do), so the writer can resolve
    // one group while the previous one is being written.
    let mut batches: Vec<Vec<NormalizedEvent>> = Vec::new();
    let mut batch = Vec::with_capacity(args.batch);
    for e in events {
        batch.push(e);
        if batch.len() >= args.batch {
            batches.push(std::mem::take(&mut batch));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    let queue = std::sync::Mutex::new(batches.into_iter());
    let merges: u64 = std::thread::scope(|scope| -> anyhow::Result<u64> {
        let workers: Vec<_> = (0..args.clients.max(1))
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<u64> {
                    let mut merges = 0;
                    loop {
                        let next = match queue.lock() {
                            Ok(mut q) => q.next(),
                            Err(_) => None,
                        };
                        let Some(batch) = next else { return Ok(merges) };
                        merges += count_merges(engine.ingest(batch)?);
                    }
                })
            })
            .collect();
        let mut total = 0;
        for w in workers {
            total += w
                .join()
                .map_err(|_| anyhow::anyhow!("ingest client panicked"))??;
        }
        Ok(total)
    })?;
    let ingest_s = t.elapsed().as_secs_f64();
    let profiles = engine
        .store()
        .counters()?
        .profile_seq
        .saturating_sub(merges)
        .max(1);

    let engine = Arc::new(engine);
    let keys = Arc::new(keys);
    // In process, by normalized key: what a service holding canonical ids pays.
    let (found_by_key, by_key_s) =
        run_lookups(&engine, &keys, args.lookups, args.threads, Lookup::Key)?;
    // By the raw value, normalized like the HTTP API does (phones parsed again).
    let (found, lookup_s) = run_lookups(&engine, &keys, args.lookups, args.threads, Lookup::Value)?;
    // Point reads of identifier nodes from the graph store (a round trip each on Bolt).
    let node_reads = (args.lookups / 20).max(1);
    let (nodes_found, nodes_s) =
        run_lookups(&engine, &keys, node_reads, args.threads, Lookup::GraphNode)?;
    let rss_after = rss_bytes();
    // Steady state on disk: memtables flushed, overwritten versions compacted away.
    engine.store().compact()?;
    drop(engine);
    let disk = dir_size(&dir);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let report = json!({
        "events": total,
        "search_index": !args.no_search,
        "profiles": profiles,
        "merges": merges,
        "batch": args.batch,
        "generate_seconds": generate_s,
        "validate_events_per_s": total as f64 / validate_s,
        "ingest_seconds": ingest_s,
        "ingest_events_per_s": total as f64 / ingest_s,
        "ingest_with_validation_events_per_s": total as f64 / (ingest_s + validate_s),
        "lookups": args.lookups,
        "lookup_threads": args.threads,
        "lookups_found": found,
        "lookups_by_key_found": found_by_key,
        "lookups_by_key_per_s": args.lookups as f64 / by_key_s,
        "lookups_per_s": args.lookups as f64 / lookup_s,
        "graph_node_reads": node_reads,
        "graph_node_reads_found": nodes_found,
        "graph_node_reads_per_s": node_reads as f64 / nodes_s,
        "disk_bytes": disk,
        "disk_bytes_per_profile": disk as f64 / profiles as f64,
        "rss_bytes": rss_after,
        "rss_growth_bytes_per_profile": rss_after.saturating_sub(rss_before) as f64 / profiles as f64,
    });
    if args.json {
        crate::outln!("{report}");
    } else {
        crate::outln!(
            "idgraph bench ({} events, {} profiles, batches of {})",
            total,
            profiles,
            args.batch
        );
        crate::outln!(
            "  validate:        {:>12.0} events/s",
            total as f64 / validate_s
        );
        crate::outln!(
            "  resolve+fsync:   {:>12.0} events/s ({:.2}s)",
            total as f64 / ingest_s,
            ingest_s
        );
        crate::outln!(
            "  lookups by key:  {:>12.0} /s on {} threads ({found_by_key} found)",
            args.lookups as f64 / by_key_s,
            args.threads
        );
        crate::outln!(
            "  lookups by value:{:>12.0} /s on {} threads, normalized like the API ({found} found)",
            args.lookups as f64 / lookup_s,
            args.threads
        );
        crate::outln!(
            "  graph node reads:{:>12.0} /s on {} threads ({nodes_found} of {node_reads} found)",
            node_reads as f64 / nodes_s,
            args.threads
        );
        crate::outln!(
            "  disk:            {:>12.0} bytes/profile ({} bytes)",
            disk as f64 / profiles as f64,
            disk
        );
        crate::outln!(
            "  resident memory: {:>12.0} bytes/profile growth (RSS {} bytes)",
            rss_after.saturating_sub(rss_before) as f64 / profiles as f64,
            rss_after
        );
    }
    Ok(())
}

/// Runs `n` lookups over `threads` threads; returns (found, seconds).
/// What a lookup reads.
#[derive(Clone, Copy)]
enum Lookup {
    /// The golden profile by normalized key (profile cache on the Bolt store).
    Key,
    /// The golden profile by raw value, normalized like the API.
    Value,
    /// The identifier's node from the graph store itself (the resolver's reads).
    GraphNode,
}

fn run_lookups(
    engine: &Arc<Engine>,
    keys: &Arc<Vec<(String, String, crate::model::IdentKey)>>,
    n: usize,
    threads: usize,
    mode: Lookup,
) -> anyhow::Result<(usize, f64)> {
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..threads.max(1) {
        let (engine, keys, next) = (engine.clone(), keys.clone(), next.clone());
        handles.push(std::thread::spawn(move || -> anyhow::Result<usize> {
            let mut found = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n || keys.is_empty() {
                    return Ok(found);
                }
                let (kind, value, key) = &keys[i % keys.len()];
                found += match mode {
                    Lookup::Key => usize::from(!engine.lookup_key_bytes(key)?.is_empty()),
                    Lookup::Value => usize::from(!engine.lookup_bytes(kind, value)?.is_empty()),
                    Lookup::GraphNode => usize::from(engine.store().node(key)?.is_some()),
                };
            }
        }));
    }
    let mut found = 0;
    for h in handles {
        found += h
            .join()
            .map_err(|_| anyhow::anyhow!("lookup thread panicked"))??;
    }
    Ok((found, t.elapsed().as_secs_f64()))
}

fn count_merges(outcomes: Vec<EventOutcome>) -> u64 {
    outcomes
        .iter()
        .map(|o| match o {
            EventOutcome::Accepted { merged, .. } => merged.len() as u64,
            EventOutcome::Duplicate { .. } | EventOutcome::Suppressed { .. } => 0,
        })
        .sum()
}
