//! `idgraph bench-search`: the search index at scale.
//!
//! 1. Ingests `--profiles` generated people (one CRM record each: name, email, phone,
//!    loyalty id, address) through the library without a search index.
//! 2. Builds the index from the store (what start-up and `idgraph reindex` do): build time
//!    and size on disk.
//! 3. Runs exact-identifier, name and fuzzy-name queries on `--threads` threads for
//!    `--seconds` while new people are ingested at `--ingest-rate` events/s, and measures
//!    how long a newly ingested person takes to become searchable.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::bench::{dir_size, rss_bytes};
use crate::config::Settings;
use crate::demo::generate::{search_person, SearchIds, SearchKeys};
use crate::engine::{search_dir, Engine};
use crate::search::SearchRequest;
use crate::store::rocks::RocksStore;
use crate::store::GraphStore;

#[derive(clap::Args, Debug, Clone)]
pub struct SearchBenchArgs {
    /// Profiles in the store and index.
    #[arg(long, default_value_t = 1_000_000)]
    pub profiles: usize,
    /// Seconds of queries.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Seconds of queries (and ingest) run before measuring starts: lets the background
    /// work of opening a reused store (RocksDB compactions, index merges) settle.
    #[arg(long, default_value_t = 0)]
    pub warmup: u64,
    /// Threads running queries.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Events per second ingested (new people) while queries run.
    #[arg(long, default_value_t = 1000)]
    pub ingest_rate: usize,
    /// Hits per query (the API default).
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Scratch directory (deleted before and after); default: a temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub keep: bool,
    /// Reuse the store (and index) kept in `--dir` by an earlier `--keep` run when it holds
    /// at least `--profiles` people: skips populating (the index build is then measured
    /// only if the index is missing or behind). Implies `--keep`.
    #[arg(long, requires = "dir")]
    pub reuse: bool,
}

const CLASSES: [&str; 3] = ["exact_identifier", "name", "fuzzy_name"];

/// One query of class `class` for person keys `k`.
fn query_text(class: usize, k: &SearchKeys, n: usize) -> String {
    match class {
        // Alternate a typed phone and an email in another case.
        0 if n.is_multiple_of(2) && k.phone.len() == 12 => {
            let p = &k.phone;
            format!("+1 ({}) {}-{}", &p[2..5], &p[5..8], &p[8..])
        }
        0 => k.email.to_uppercase(),
        1 => format!("{} {}", k.first_name, k.last_name),
        // One substituted letter in the last name (Levenshtein distance 1).
        _ => {
            let mut last: Vec<char> = k.last_name.chars().collect();
            let at = 1 + n % (last.len() - 1).max(1);
            if let Some(c) = last.get_mut(at) {
                *c = if *c == 'x' { 'z' } else { 'x' };
            }
            format!("{} {}", k.first_name, last.into_iter().collect::<String>())
        }
    }
}

fn percentile(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

fn ingest_people(
    engine: &Engine,
    ids: &SearchIds,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(range.len());
    for i in range {
        let (raw, _) = search_person(ids, i);
        batch.push(
            engine.validate(&raw).map_err(|e| {
                anyhow::anyhow!("generated event invalid: {}: {}", e.field, e.message)
            })?,
        );
    }
    engine.ingest(batch)?;
    Ok(())
}

pub fn run(mut settings: Settings, args: SearchBenchArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("idgraph-bench-search-{}", std::process::id()))
    });
    if !args.reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    settings.storage.data_dir = dir.clone();
    let ids = Arc::new(SearchIds::new(args.seed));

    // 1. The population, without an index (two clients keep the writer pipelined).
    let store: Arc<dyn GraphStore> = Arc::new(RocksStore::open(&dir)?);
    let stored = usize::try_from(store.counters()?.profile_seq)?;
    let reused = args.reuse && stored >= args.profiles;
    let t = Instant::now();
    if !reused {
        let engine = Engine::with_store(settings.clone(), store.clone(), None)?;
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| -> anyhow::Result<()> {
                        loop {
                            let start = next.fetch_add(1000, Ordering::Relaxed);
                            if start >= args.profiles {
                                return Ok(());
                            }
                            let end = (start + 1000).min(args.profiles);
                            ingest_people(&engine, &ids, start..end)?;
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("ingest client panicked"))??;
            }
            Ok(())
        })?;
    }
    let populate_s = t.elapsed().as_secs_f64();

    // 2. Index build from the store.
    let t = Instant::now();
    let index = Engine::open_search(&settings, store.as_ref())?;
    let build_s = t.elapsed().as_secs_f64();
    let indexed = index.len();
    let index_bytes = dir_size(&search_dir(&settings));

    // 3. Queries while ingest runs.
    let engine = Arc::new(Engine::with_store(
        settings.clone(),
        store.clone(),
        Some(index),
    )?);
    let stop = Arc::new(AtomicBool::new(false));
    let (fresh_tx, fresh_rx) = channel::<(String, Instant)>();
    let ingested = Arc::new(AtomicUsize::new(0));
    let ingester = {
        let (engine, ids, stop, ingested) =
            (engine.clone(), ids.clone(), stop.clone(), ingested.clone());
        // New people continue after everyone stored (a reused store grew in earlier runs).
        let first = if reused { stored } else { args.profiles };
        let rate = args.ingest_rate.max(10);
        std::thread::spawn(move || -> anyhow::Result<()> {
            let per_tick = rate / 10;
            let mut next = first;
            let started = Instant::now();
            let mut tick = 0u32;
            while !stop.load(Ordering::Relaxed) {
                ingest_people(&engine, &ids, next..next + per_tick)?;
                // The first person of every 5th batch is a freshness probe.
                if tick.is_multiple_of(5) {
                    let _ = fresh_tx.send((search_person(&ids, next).1.email, Instant::now()));
                }
                next += per_tick;
                ingested.fetch_add(per_tick, Ordering::Relaxed);
                tick += 1;
                let due = started + Duration::from_millis(100) * tick;
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            Ok(())
        })
    };
    let freshness = {
        let engine = engine.clone();
        std::thread::spawn(move || -> Vec<u64> {
            let mut out = Vec::new();
            for (email, acked) in fresh_rx {
                let Ok(req) = SearchRequest::new(Some(&email), Some(1), None, None, None, None)
                else {
                    continue;
                };
                while acked.elapsed() < Duration::from_secs(10) {
                    let found = engine
                        .search(&req)
                        .map(|v| v["total"].as_u64().unwrap_or(0) > 0)
                        .unwrap_or(false);
                    if found {
                        out.push(acked.elapsed().as_micros() as u64);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            out
        })
    };

    let measured_from = Instant::now() + Duration::from_secs(args.warmup);
    let deadline = measured_from + Duration::from_secs(args.seconds);
    let workers: Vec<_> = (0..args.threads.max(1))
        .map(|w| {
            let (engine, ids) = (engine.clone(), ids.clone());
            let (profiles, limit, seed) = (args.profiles, args.limit, args.seed);
            std::thread::spawn(move || -> anyhow::Result<(Vec<Vec<u64>>, usize)> {
                let mut lat = vec![Vec::new(); CLASSES.len()];
                let mut exact_first = 0;
                let mut rng = SmallRng::seed_from_u64(seed ^ w as u64);
                let mut n = w;
                while Instant::now() < deadline {
                    let person = rng.gen_range(0..profiles);
                    let (_, keys) = search_person(&ids, person);
                    let class = n % CLASSES.len();
                    let q = query_text(class, &keys, n / CLASSES.len());
                    let req = SearchRequest::new(Some(&q), Some(limit), None, None, None, None)
                        .map_err(|e| anyhow::anyhow!("bench query rejected: {e}"))?;
                    let t = Instant::now();
                    let res = engine.search(&req)?;
                    if t < measured_from {
                        n += 1;
                        continue;
                    }
                    lat[class].push(t.elapsed().as_micros() as u64);
                    if class == 0 {
                        let first = res["hits"][0]["profile"]["identifiers"]["email"][0].as_str();
                        exact_first += usize::from(first == Some(keys.email.as_str()));
                    }
                    n += 1;
                }
                Ok((lat, exact_first))
            })
        })
        .collect();
    let mut lat = vec![Vec::new(); CLASSES.len()];
    let mut exact_first = 0;
    for w in workers {
        let (l, e) = w
            .join()
            .map_err(|_| anyhow::anyhow!("query thread panicked"))??;
        for (all, mine) in lat.iter_mut().zip(l) {
            all.extend(mine);
        }
        exact_first += e;
    }
    let q_s = measured_from.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    ingester
        .join()
        .map_err(|_| anyhow::anyhow!("ingest thread panicked"))??;
    let ingest_rate = ingested.load(Ordering::Relaxed) as f64 / (q_s + args.warmup as f64);
    drop(engine);
    let mut fresh = freshness
        .join()
        .map_err(|_| anyhow::anyhow!("freshness thread panicked"))?;
    fresh.sort_unstable();
    let rss = rss_bytes();
    if !args.keep && !args.reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let total_q: usize = lat.iter().map(Vec::len).sum();
    let mut all: Vec<u64> = lat.iter().flatten().copied().collect();
    all.sort_unstable();
    let mut classes = serde_json::Map::new();
    for (name, l) in CLASSES.iter().zip(lat.iter_mut()) {
        l.sort_unstable();
        classes.insert(
            (*name).to_owned(),
            json!({
                "queries": l.len(),
                "p50_ms": percentile(l, 0.50),
                "p99_ms": percentile(l, 0.99),
            }),
        );
    }
    let report = json!({
        "profiles": args.profiles,
        "indexed": indexed,
        "populate_seconds": populate_s,
        "reused_store": reused,
        "index_build_seconds": build_s,
        "index_bytes": index_bytes,
        "index_bytes_per_profile": index_bytes as f64 / indexed.max(1) as f64,
        "query_threads": args.threads,
        "query_seconds": q_s,
        "warmup_seconds": args.warmup,
        "queries": total_q,
        "queries_per_s": total_q as f64 / q_s,
        "p50_ms": percentile(&all, 0.50),
        "p99_ms": percentile(&all, 0.99),
        "classes": classes,
        "exact_identifier_first": exact_first,
        "ingest_events_per_s_during_queries": ingest_rate,
        "freshness_probes": fresh.len(),
        "freshness_p50_ms": percentile(&fresh, 0.50),
        "freshness_max_ms": percentile(&fresh, 1.0),
        "rss_bytes": rss,
    });
    if args.json {
        crate::outln!("{report}");
    } else {
        crate::outln!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
