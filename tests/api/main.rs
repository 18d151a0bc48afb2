//! HTTP integration tests: one test binary that drives the real server over loopback.
//!
//! Every test starts its own server (`helpers::spawn_app`) on a free port with a fresh
//! data directory, so tests are independent and run in parallel.

mod arcadedb;
mod audiences;
mod backup;
mod bolt;
mod changes;
mod cli;
mod conformance;
mod consent;
mod console;
mod demo_quality;
mod destinations;
mod durability;
mod encryption;
mod erasure;
mod errors;
mod eval;
mod export;
mod full_disk;
mod governance;
mod gremlin;
mod hashed;
mod helpers;
mod import_remote;
mod ingest;
mod jvm_server;
mod kafka;
mod matching;
mod neo4j;
mod openapi;
mod operations;
mod otlp;
mod overlap;
mod pipeline;
mod properties;
mod readme;
mod replicas;
mod resolution;
mod retention;
mod review;
mod schema;
mod scope;
mod score;
mod search;
mod segment;
mod stewards;
mod store_contract;
mod subject_access;
mod tls;
mod unmerge;
mod views;
mod webhooks;
mod why_not;
mod writer_lease;
