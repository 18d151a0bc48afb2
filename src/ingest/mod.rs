//! Ingest: the event wire format, validation and normalization of identifiers and traits,
//! the junk-value blocklist, and the CSV column mapping used by `idgraph import`.

pub mod blocklist;
pub mod event;
pub mod identifier;
pub mod mapping;
