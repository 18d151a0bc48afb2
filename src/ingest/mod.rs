//! Ingest: the event wire format, validation and normalization of identifiers and traits,
//! the junk-value blocklist, the CSV column mapping used by `idgraph import`, and the
//! mapping of Segment/RudderStack tracking calls into native events.

pub mod blocklist;
pub mod event;
pub mod identifier;
pub mod mapping;
pub mod segment;
