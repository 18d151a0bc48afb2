//! idgraph: graph-native identity resolution.
//!
//! The data's path through the crate: [`ingest`] validates and normalizes events,
//! [`resolve`] links their identifiers into the identity graph and merges or splits
//! profiles, [`profile`] renders golden profiles and the analyst views, [`store`] keeps the
//! graph (embedded RocksDB by default), [`engine`] is the transport-neutral service, and
//! [`serve`] / [`cli`] are the HTTP and command-line edges. [`model`] holds the ids, records
//! and golden profile they all share, and the codec that turns records into bytes. See
//! ARCHITECTURE.md.

pub mod activation;
pub mod backup;
pub mod cleanroom;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod destinations;
pub mod engine;
pub mod eval;
pub mod export;
pub mod governance;
pub mod ingest;
pub mod kafka;
pub mod matching;
pub mod model;
pub mod profile;
pub mod replica;
pub mod replication;
pub mod resolve;
pub mod scoring;
pub mod search;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod webhooks;
