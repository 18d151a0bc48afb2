//! Criterion benchmarks of the resolver over the embedded store, on the shared fixture
//! generator (`idgraph::demo::generate::bench_events`, also used by `idgraph bench`).
//!
//! - `ingest/durable_batch_1000`: validation, resolution and one synced RocksDB write per
//!   batch of 1000 events (throughput in events).
//! - `lookup/by_identifier`: golden profile lookup of random known identifiers after
//!   ingesting [`LOOKUP_EVENTS`] events.
//!
//! Setup stays small so that `cargo test --all-targets` (one pass per benchmark) is quick.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tempfile::TempDir;

use idgraph::config::Settings;
use idgraph::demo::generate::bench_events;
use idgraph::engine::Engine;
use idgraph::ingest::event::NormalizedEvent;

/// Events per durable write.
const BATCH: usize = 1000;
/// Distinct fixture batches the ingest benchmark cycles through.
const INGEST_FIXTURE_BATCHES: usize = 4;
/// Events ingested before the lookup benchmark.
const LOOKUP_EVENTS: usize = 20_000;
const SEED: u64 = 7;

/// An engine over its own temporary directory (the engine is dropped first).
struct Bench {
    engine: Engine,
    _dir: TempDir,
}

fn open() -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let engine = Engine::open(settings).expect("open engine");
    Bench { engine, _dir: dir }
}

fn validate_all(engine: &Engine, raw: &[Value]) -> Vec<NormalizedEvent> {
    raw.iter()
        .map(|e| {
            engine.validate(e).unwrap_or_else(|err| {
                panic!("fixture event is invalid: {}: {}", err.field, err.message)
            })
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let fixture = bench_events(BATCH * INGEST_FIXTURE_BATCHES, SEED);
    let batches: Vec<Vec<Value>> = fixture.chunks(BATCH).map(<[Value]>::to_vec).collect();
    let bench = open();
    let mut round = 0usize;

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("durable_batch_1000", |b| {
        b.iter_batched(
            || {
                // A fresh copy of a fixture batch with event ids never used before, so every
                // iteration resolves (re-sent ids would be cheap duplicates).
                let mut batch = batches[round % batches.len()].clone();
                for e in &mut batch {
                    let id = e["event_id"].as_str().unwrap_or("e").to_owned();
                    e["event_id"] = Value::String(format!("{id}-r{round}"));
                }
                round += 1;
                batch
            },
            |batch| {
                let events = validate_all(&bench.engine, &batch);
                let outcomes = bench.engine.ingest(events).expect("ingest");
                assert_eq!(outcomes.len(), BATCH);
                outcomes
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn lookup(c: &mut Criterion) {
    let bench = open();
    let events = validate_all(&bench.engine, &bench_events(LOOKUP_EVENTS, SEED));
    let known: Vec<(String, String)> = events
        .iter()
        .flat_map(|e| {
            e.identifiers
                .iter()
                .map(|i| (i.kind.clone(), i.value.clone()))
        })
        .collect();
    let mut batch = Vec::with_capacity(BATCH);
    for e in events {
        batch.push(e);
        if batch.len() == BATCH {
            bench
                .engine
                .ingest(std::mem::take(&mut batch))
                .expect("ingest");
        }
    }
    if !batch.is_empty() {
        bench.engine.ingest(batch).expect("ingest");
    }
    assert!(!known.is_empty(), "the fixture has identifiers");
    let mut rng = SmallRng::seed_from_u64(SEED);

    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(1));
    group.bench_function("by_identifier", |b| {
        b.iter(|| {
            let (kind, value) = &known[rng.gen_range(0..known.len())];
            bench
                .engine
                .lookup(kind, value)
                .expect("lookup of a known identifier")
        })
    });
    group.finish();
}

criterion_group!(benches, ingest, lookup);
criterion_main!(benches);
