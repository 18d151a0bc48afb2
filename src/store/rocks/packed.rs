//! Compression of an encrypted store's values before they are sealed. Part of the
//! embedded store's encryption boundary (`sealed`).
//!
//! A sealed value does not compress: RocksDB's block compression, which shrinks a
//! plaintext store's JSON records several times over, finds nothing in ciphertext. So an
//! encrypted store compresses each value itself, before sealing it, with zstd and a
//! dictionary per column family trained on that store's own first values (records of a
//! few dozen to a few hundred bytes compress poorly alone, and about three times with a
//! dictionary). The dictionaries hold fragments of personal values, so they are stored
//! sealed like everything else.
//!
//! Every value of a framed store starts with one byte: [`RAW`] (the rest is the value)
//! or [`ZSTD_DICT`] (the rest is a zstd frame of the column family's dictionary). Stores
//! encrypted before framing existed are not framed and are read as before (the `meta`
//! key [`FRAMED`] tells).
//!
//! A dictionary is trained once enough values were sampled, written into the next write
//! group (`take_pending`, so a replica applying the groups in order and any checkpoint
//! hold it before any value that needs it) and used only after that group is written
//! (`written`). Until then values are stored raw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

use crate::store::StoreError;

/// The `meta` key present in a framed encrypted store (its value is `1`).
pub(super) const FRAMED: &[u8] = b"encryption_framed";
/// The first byte of a value stored as it is.
const RAW: u8 = 0;
/// The first byte of a value compressed with its column family's dictionary.
const ZSTD_DICT: u8 = 1;
/// zstd's level: for values this small the dictionary matters, the level little.
const LEVEL: i32 = 3;
/// The dictionary's size at most. On a store of the benchmark's records (1M events),
/// 8 KiB trained on 1,000 values compressed them to 0.287 of their size, 64 KiB on
/// 16,000 to 0.284 (zstd level 3, values one by one): field names and the commonest
/// fragments are learnt early.
const DICT_BYTES: usize = 8 * 1024;
/// Training starts when this many values were sampled...
const TRAIN_SAMPLES: usize = 1_000;
/// ...holding at least this many bytes (or at [`TRAIN_ENOUGH_BYTES`], whatever the count).
const TRAIN_MIN_BYTES: usize = 32 * 1024;
const TRAIN_ENOUGH_BYTES: usize = 1 << 20;
/// Longer values are compressed but not sampled.
const MAX_SAMPLE: usize = 4 * 1024;
/// A column family whose training failed this often stays uncompressed.
const MAX_TRAININGS: u32 = 3;
/// No value decompresses to more: every frame records its size (and is authenticated by
/// the seal), and stored values are far smaller than this.
const MAX_VALUE: usize = 256 << 20;

/// The `meta` key of column family `cf`'s dictionary.
pub(super) fn dictionary_key(cf: &str) -> Vec<u8> {
    [b"zdict\0".as_slice(), cf.as_bytes()].concat()
}

/// A trained dictionary with its pooled zstd contexts (a context is costly to set up
/// for each value; each holds its own digested copy of the dictionary).
struct Dictionary {
    bytes: Zeroizing<Vec<u8>>,
    compressors: Mutex<Vec<zstd::bulk::Compressor<'static>>>,
    decompressors: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
}

impl Dictionary {
    fn new(bytes: Vec<u8>) -> Dictionary {
        Dictionary {
            bytes: Zeroizing::new(bytes),
            compressors: Mutex::new(Vec::new()),
            decompressors: Mutex::new(Vec::new()),
        }
    }

    fn compress(&self, value: &[u8]) -> std::io::Result<Vec<u8>> {
        let pooled = self.compressors.lock().ok().and_then(|mut p| p.pop());
        let mut c = match pooled {
            Some(c) => c,
            None => {
                let mut c = zstd::bulk::Compressor::with_dictionary(LEVEL, &self.bytes)?;
                // The frame need not name the dictionary (one per column family) nor
                // carry a checksum (the seal authenticates it); it records its size.
                c.set_parameter(zstd::zstd_safe::CParameter::DictIdFlag(false))?;
                c.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(false))?;
                c.set_parameter(zstd::zstd_safe::CParameter::ContentSizeFlag(true))?;
                c
            }
        };
        let out = c.compress(value);
        if let Ok(mut p) = self.compressors.lock() {
            p.push(c);
        }
        out
    }

    fn decompress(&self, frame: &[u8]) -> std::io::Result<Vec<u8>> {
        let pooled = self.decompressors.lock().ok().and_then(|mut p| p.pop());
        let mut d = match pooled {
            Some(d) => d,
            None => zstd::bulk::Decompressor::with_dictionary(&self.bytes)?,
        };
        let out = d.decompress(frame, MAX_VALUE);
        if let Ok(mut p) = self.decompressors.lock() {
            p.push(d);
        }
        out
    }
}

/// Values sampled for a column family's dictionary, until it is trained.
#[derive(Default)]
struct Trainer {
    samples: Vec<Zeroizing<Vec<u8>>>,
    bytes: usize,
    failures: u32,
    /// Trained, not yet written into a write group.
    pending: Option<Arc<Dictionary>>,
}

/// One column family's compression.
#[derive(Default)]
struct Family {
    /// Its dictionary once written (values may then use it) or read back.
    dictionary: OnceLock<Arc<Dictionary>>,
    trainer: Mutex<Trainer>,
}

/// The compression of one framed encrypted store.
pub(super) struct Packer {
    /// Whether new values are compressed (`encryption.compress`); values already
    /// compressed are read either way.
    compress: bool,
    families: HashMap<&'static str, Family>,
    /// Values written compressed since open, their bytes before and after.
    compressed: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What [`Packer::counts`] reports for `/metrics`.
pub(super) struct PackerCounts {
    /// Column families whose new values are compressed with a dictionary.
    pub dictionaries: u64,
    pub compressed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Packer {
    /// The packer of a store whose sealed column families are `families`, each with the
    /// dictionary the store already holds for it, if any (in use from the start: a
    /// column family never trains a second one, which would replace the first).
    pub(super) fn new(compress: bool, families: Vec<(&'static str, Option<Vec<u8>>)>) -> Packer {
        let family = |stored: Option<Vec<u8>>| {
            let f = Family::default();
            if let Some(bytes) = stored {
                let _ = f.dictionary.set(Arc::new(Dictionary::new(bytes)));
            }
            f
        };
        Packer {
            compress,
            families: families
                .into_iter()
                .map(|(name, stored)| (name, family(stored)))
                .collect(),
            compressed: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
        }
    }

    /// `value` of column family `cf` framed: compressed if a dictionary is in use and
    /// compressing shrinks it, else as it is. Samples it for training until then.
    pub(super) fn pack(&self, cf: &str, value: &[u8]) -> Vec<u8> {
        let raw = |value: &[u8]| {
            let mut out = Vec::with_capacity(1 + value.len());
            out.push(RAW);
            out.extend_from_slice(value);
            out
        };
        let Some(family) = self.families.get(cf).filter(|_| self.compress) else {
            return raw(value);
        };
        match family.dictionary.get() {
            Some(dict) => match dict.compress(value) {
                Ok(frame) if frame.len() < value.len() => {
                    self.compressed.fetch_add(1, Relaxed);
                    self.bytes_in.fetch_add(value.len() as u64, Relaxed);
                    self.bytes_out.fetch_add(frame.len() as u64 + 1, Relaxed);
                    let mut out = Vec::with_capacity(1 + frame.len());
                    out.push(ZSTD_DICT);
                    out.extend_from_slice(&frame);
                    out
                }
                _ => raw(value),
            },
            None => {
                sample(family, value);
                raw(value)
            }
        }
    }

    /// The value framed by [`Packer::pack`] (`framed` as opened); `load` reads the column
    /// family's dictionary from the store when it is not in memory yet.
    pub(super) fn unpack(
        &self,
        cf: &str,
        mut framed: Vec<u8>,
        load: impl FnOnce() -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<Vec<u8>, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("<{cf} record>"),
            reason,
        };
        match framed.first() {
            Some(&RAW) => {
                framed.remove(0);
                Ok(framed)
            }
            Some(&ZSTD_DICT) => {
                let family = self
                    .families
                    .get(cf)
                    .ok_or_else(|| corrupt("compressed in a column family that never is".into()))?;
                let dict = match family.dictionary.get() {
                    Some(d) => d,
                    None => {
                        let bytes = load()?.ok_or_else(|| {
                            corrupt("compressed, but the store holds no dictionary for it".into())
                        })?;
                        family
                            .dictionary
                            .get_or_init(|| Arc::new(Dictionary::new(bytes)))
                    }
                };
                dict.decompress(&framed[1..])
                    .map_err(|e| corrupt(format!("does not decompress: {e}")))
            }
            Some(other) => Err(corrupt(format!("unknown value framing {other}"))),
            None => Err(corrupt("an empty framed value".into())),
        }
    }

    /// The dictionaries trained and not yet written: `(column family, dictionary)`, to
    /// be put (sealed) into the next write group; [`Packer::written`] after it is.
    pub(super) fn take_pending(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::new();
        for (name, family) in &self.families {
            if let Ok(t) = family.trainer.lock() {
                if let Some(d) = &t.pending {
                    out.push((*name, d.bytes.to_vec()));
                }
            }
        }
        out
    }

    /// Column family `cf` already has dictionary `stored` in the store (found when about to
    /// write a trained one): that one is used, the trained one dropped.
    pub(super) fn adopt(&self, cf: &str, stored: Vec<u8>) {
        if let Some(family) = self.families.get(cf) {
            if let Ok(mut t) = family.trainer.lock() {
                t.pending = None;
            }
            let _ = family.dictionary.set(Arc::new(Dictionary::new(stored)));
        }
    }

    /// The write group holding the dictionaries of `families` is written: values of
    /// these column families may use them from now on.
    pub(super) fn written(&self, families: &[&'static str]) {
        for name in families {
            let Some(family) = self.families.get(name) else {
                continue;
            };
            if let Ok(mut t) = family.trainer.lock() {
                if let Some(d) = t.pending.take() {
                    let _ = family.dictionary.set(d);
                }
            }
        }
    }

    /// The counts of `/metrics`.
    pub(super) fn counts(&self) -> PackerCounts {
        let on = self.compress;
        PackerCounts {
            dictionaries: self
                .families
                .values()
                .filter(|f| on && f.dictionary.get().is_some())
                .count() as u64,
            compressed: self.compressed.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
        }
    }

    /// Whether column family `cf` compresses new values with a dictionary.
    #[cfg(test)]
    pub(super) fn compressing(&self, cf: &str) -> bool {
        self.families
            .get(cf)
            .is_some_and(|f| f.dictionary.get().is_some())
    }
}

/// Adds `value` to `family`'s samples, and trains its dictionary once there are enough.
/// Skipped while another thread trains (the value is stored raw either way).
fn sample(family: &Family, value: &[u8]) {
    let Ok(mut t) = family.trainer.try_lock() else {
        return;
    };
    if t.pending.is_some() || t.failures >= MAX_TRAININGS || value.len() > MAX_SAMPLE {
        return;
    }
    t.bytes += value.len();
    t.samples.push(Zeroizing::new(value.to_vec()));
    let enough = (t.samples.len() >= TRAIN_SAMPLES && t.bytes >= TRAIN_MIN_BYTES)
        || t.bytes >= TRAIN_ENOUGH_BYTES;
    if !enough {
        return;
    }
    let trained = zstd::dict::from_samples(&t.samples, DICT_BYTES);
    t.samples = Vec::new();
    t.bytes = 0;
    match trained {
        Ok(bytes) if !bytes.is_empty() => t.pending = Some(Arc::new(Dictionary::new(bytes))),
        Ok(_) | Err(_) => {
            t.failures += 1;
            tracing::warn!(
                failures = t.failures,
                "a value dictionary could not be trained; values stay uncompressed for now"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Vec<u8> {
        format!(
            r#"{{"profile_id":"p_{i:012}","first_seen":17{i:011},"last_seen":17{:011},"sources":["web","pos"],"event_count":{},"platform":"web"}}"#,
            i * 7,
            i % 13
        )
        .into_bytes()
    }

    #[test]
    fn values_are_raw_until_a_trained_dictionary_is_written_then_compressed() {
        let p = Packer::new(true, vec![("identifiers", None), ("edges", None)]);
        let mut framed = Vec::new();
        for i in 0..TRAIN_SAMPLES + 10 {
            framed.push((i, p.pack("identifiers", &record(i))));
        }
        assert!(
            framed.iter().all(|(_, f)| f[0] == RAW),
            "raw before any write"
        );
        assert!(!p.compressing("identifiers"));
        let pending = p.take_pending();
        assert_eq!(pending.len(), 1, "one dictionary trained");
        assert_eq!(pending[0].0, "identifiers");
        assert!(
            !p.compressing("identifiers"),
            "not before its group is written"
        );
        p.written(&["identifiers"]);
        assert!(p.compressing("identifiers") && !p.compressing("edges"));
        assert!(p.take_pending().is_empty());
        let (mut raw, mut packed) = (0, 0);
        for i in 100_000..101_000 {
            let value = record(i);
            let f = p.pack("identifiers", &value);
            assert_eq!(f[0], ZSTD_DICT, "compressed once written");
            raw += value.len();
            packed += f.len();
            let back = p.unpack("identifiers", f, || Ok(None)).expect("unpack");
            assert_eq!(back, value);
        }
        assert!(packed * 2 < raw, "at least halved: {packed} of {raw} bytes");
        for (i, f) in framed {
            assert_eq!(
                p.unpack("identifiers", f, || Ok(None)).expect("raw"),
                record(i)
            );
        }
    }

    #[test]
    fn another_packer_reads_compressed_values_with_the_stored_dictionary_only() {
        let writer = Packer::new(true, vec![("identifiers", None)]);
        for i in 0..TRAIN_SAMPLES {
            writer.pack("identifiers", &record(i));
        }
        let (_, dict) = writer.take_pending().pop().expect("trained");
        writer.written(&["identifiers"]);
        let value = record(5_000_000);
        let f = writer.pack("identifiers", &value);
        assert_eq!(f[0], ZSTD_DICT);
        let reader = Packer::new(false, vec![("identifiers", None)]);
        assert!(matches!(
            reader.unpack("identifiers", f.clone(), || Ok(None)),
            Err(StoreError::Corrupt { .. })
        ));
        let back = reader.unpack("identifiers", f.clone(), || Ok(Some(dict.clone())));
        assert_eq!(back.expect("with the dictionary"), value);
        assert_eq!(
            reader
                .unpack("identifiers", f, || panic!("loaded once"))
                .expect("again"),
            value
        );
        assert_eq!(
            reader.pack("identifiers", &value)[0],
            RAW,
            "compress = false writes raw"
        );
        for bad in [vec![], vec![9, 1, 2]] {
            assert!(reader.unpack("identifiers", bad, || Ok(None)).is_err());
        }
    }

    #[test]
    fn a_packer_opened_with_a_stored_dictionary_uses_it_and_never_trains_another() {
        let first = Packer::new(true, vec![("identifiers", None)]);
        for i in 0..TRAIN_SAMPLES {
            first.pack("identifiers", &record(i));
        }
        let (_, dict) = first.take_pending().pop().expect("trained");
        let reopened = Packer::new(true, vec![("identifiers", Some(dict.clone()))]);
        assert!(reopened.compressing("identifiers"), "in use from the start");
        for i in 0..3 * TRAIN_SAMPLES {
            let value = record(i);
            let f = reopened.pack("identifiers", &value);
            assert_eq!(f[0], ZSTD_DICT);
            assert_eq!(
                reopened
                    .unpack("identifiers", f, || Ok(None))
                    .expect("unpack"),
                value
            );
        }
        assert!(reopened.take_pending().is_empty(), "no second dictionary");
        let other = Packer::new(true, vec![("identifiers", None)]);
        for i in 0..TRAIN_SAMPLES {
            other.pack("identifiers", &record(i + 7));
        }
        assert_eq!(other.take_pending().len(), 1);
        other.adopt("identifiers", dict);
        assert!(other.take_pending().is_empty() && other.compressing("identifiers"));
    }
}
