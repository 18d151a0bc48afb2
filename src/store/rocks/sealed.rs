//! Encryption at rest at the store boundary (`[encryption]`, see `crypto`): the one place
//! the embedded store turns personal key segments and values into ciphertext and back.
//! Part of `store::rocks`.
//!
//! With a cipher:
//! - every non-empty value of every column family but `meta` is sealed with a random nonce
//!   and bound to its column family and stored key (`meta` holds counters, profile ids of
//!   the change log, keyed hashes of the suppression list: no personal value), but the
//!   event id a `q` (arrival order) or `i` (identifier's events) row of `events` points
//!   to: that id is in clear in the event's own `e` key already, and sealing it would add
//!   28 bytes of nonce and tag to a value of a dozen, five times per event (stores
//!   encrypted before [`CLEAR_EVENT_IDS`] seal them, and go on doing so);
//! - key segments holding personal data (identifier keys `kind:value` wherever they are a
//!   key, addresses of the household index, blocking keys, feed subjects) are encrypted
//!   deterministically, so point reads and prefix scans find them; tags, profile ids,
//!   event ids and sequence numbers stay in clear;
//! - of those, the segments only ever looked up and never read back (the first segment
//!   of an edge row, the identifier of an event-index, feed-index or review-index row,
//!   the address of a household row, the blocking key of a match-index row) are blind
//!   indexes in stores marked [`BLIND_INDEX`] ([`RocksStore::blind`]): a keyed 16-byte
//!   tag, not the value plus 16 bytes. The segments read back (an identifier row's key,
//!   an edge row's second segment, a match record's and a match-index row's identifier)
//!   stay deterministic ciphertext ([`RocksStore::seg`]).
//!
//! Without a cipher every function here is the identity.

use std::borrow::Cow;

use super::{joined, packed, RocksStore, ALL_CFS, CF_EVENTS, CF_META};
use crate::store::StoreError;

/// The meta key recording the data key's id (hex) of an encrypted store.
pub(super) const MARKER: &[u8] = b"encryption";
/// The meta key holding a sealed known value: the data key opens this store.
const CHECK: &[u8] = b"encryption_check";
const CHECK_VALUE: &[u8] = b"idgraph encrypted store";
/// The meta key present (value `1`) in an encrypted store whose `q` and `i` rows hold
/// their event id in clear.
const CLEAR_EVENT_IDS: &[u8] = b"encryption_clear_event_ids";
/// The meta key present (value `1`) in an encrypted store whose lookup-only key segments
/// are blind indexes ([`RocksStore::blind`]); stores encrypted before it seal them as
/// [`RocksStore::seg`] does, and go on doing so.
const BLIND_INDEX: &[u8] = b"encryption_blind_index";

/// Whether `key` of `cf` is a row whose value is an event id (`q` or `i` of `events`).
fn holds_event_id(cf: &str, key: &[u8]) -> bool {
    cf == CF_EVENTS && (key.starts_with(b"q\0") || key.starts_with(b"i\0"))
}

fn crypto_error(e: crate::crypto::CryptoError) -> StoreError {
    StoreError::Corrupt {
        key: "<encrypted record>".into(),
        reason: e.to_string(),
    }
}

/// Runs `f` on the associated data of a value: its column family, `\0`, its stored key
/// (on the stack when short, as nearly every key is).
fn with_aad<R>(cf: &str, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    const STACK: usize = 256;
    let len = cf.len() + 1 + key.len();
    if len <= STACK {
        let mut buf = [0u8; STACK];
        buf[..cf.len()].copy_from_slice(cf.as_bytes());
        buf[cf.len() + 1..len].copy_from_slice(key);
        f(&buf[..len])
    } else {
        f(&[cf.as_bytes(), &[0], key].concat())
    }
}

impl RocksStore {
    /// Whether the value of `key` in `cf` is sealed (with a cipher; see the module notes).
    fn sealed_value(&self, cf: &str, key: &[u8], value: &[u8]) -> bool {
        cf != CF_META && !value.is_empty() && !(self.clear_event_ids && holds_event_id(cf, key))
    }

    /// Whether this store is encrypted and was marked with the layout flag `marker` (a
    /// `meta` key) when it was made: [`CLEAR_EVENT_IDS`], [`BLIND_INDEX`].
    fn marked(&self, marker: &[u8]) -> Result<bool, StoreError> {
        Ok(self.cipher.is_some() && self.get_raw(CF_META, marker)?.is_some())
    }

    /// Reads the layout this store was made with, once its key is checked
    /// ([`RocksStore::check_encryption`]): how values are framed, whether the `q` and `i`
    /// rows keep their event id in clear, whether lookup-only segments are blind indexes.
    pub(super) fn read_layout(&mut self) -> Result<(), StoreError> {
        self.packer = self.packer_for()?;
        self.clear_event_ids = self.marked(CLEAR_EVENT_IDS)?;
        self.blind_index = self.marked(BLIND_INDEX)?;
        Ok(())
    }

    /// A personal key segment as stored.
    pub(super) fn seg<'a>(&self, plain: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.cipher {
            None => Cow::Borrowed(plain),
            Some(c) => Cow::Owned(c.seal_key(plain)),
        }
    }

    /// A personal key segment that is only ever looked up, never read back from a stored
    /// key (see the module notes): its blind index in a store marked [`BLIND_INDEX`] (a
    /// keyed tag of about 16 bytes, whatever the segment's length), otherwise as
    /// [`RocksStore::seg`].
    pub(super) fn blind<'a>(&self, plain: &'a [u8]) -> Cow<'a, [u8]> {
        match &self.cipher {
            None => Cow::Borrowed(plain),
            Some(c) if self.blind_index => Cow::Owned(c.blind_key(plain)),
            Some(c) => Cow::Owned(c.seal_key(plain)),
        }
    }

    /// The `edges` row `from \0 to`: the record of the edge between `a <= b` is the row
    /// `(a, b)`, its reverse entry `(b, a)`. The first segment is looked up (a scan of it
    /// lists an identifier's edges), the second is read back (the neighbour).
    pub(super) fn edge_row(&self, from: &str, to: &str) -> Vec<u8> {
        joined(&[&self.blind(from.as_bytes()), &self.seg(to.as_bytes())])
    }

    /// Both `edges` rows of the edge between `a` and `b`, `(a, b)` and `(b, a)`, as
    /// [`RocksStore::edge_row`] lays them out, with each endpoint's segments computed
    /// once (in a store without blind indexes, the looked-up and read-back segments of an
    /// endpoint are the same).
    pub(super) fn edge_rows(&self, a: &str, b: &str) -> (Vec<u8>, Vec<u8>) {
        let (sa, sb) = (self.seg(a.as_bytes()), self.seg(b.as_bytes()));
        if !self.blind_index {
            return (joined(&[&sa, &sb]), joined(&[&sb, &sa]));
        }
        let (ba, bb) = (self.blind(a.as_bytes()), self.blind(b.as_bytes()));
        (joined(&[&ba, &sb]), joined(&[&bb, &sa]))
    }

    /// A personal key segment read back from a stored key, as text.
    pub(super) fn unseg(&self, stored: &[u8]) -> Result<String, StoreError> {
        let plain = match &self.cipher {
            None => return Ok(String::from_utf8_lossy(stored).into_owned()),
            Some(c) => c.open_key(stored).map_err(crypto_error)?,
        };
        String::from_utf8(plain).map_err(|_| crypto_error(crate::crypto::CryptoError::Tampered))
    }

    /// A value as stored under `key` in `cf`.
    pub(super) fn seal<'a>(
        &self,
        cf: &str,
        key: &[u8],
        value: &'a [u8],
    ) -> Result<Cow<'a, [u8]>, StoreError> {
        match &self.cipher {
            Some(c) if self.sealed_value(cf, key, value) => {
                let framed = self.packer.as_ref().map(|p| p.pack(cf, value));
                let plain = framed.as_deref().unwrap_or(value);
                with_aad(cf, key, |aad| c.seal_value(aad, plain))
                    .map(Cow::Owned)
                    .map_err(crypto_error)
            }
            _ => Ok(Cow::Borrowed(value)),
        }
    }

    /// A stored value of `key` in `cf`, opened.
    pub(super) fn unseal(
        &self,
        cf: &str,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        match &self.cipher {
            Some(c) if self.sealed_value(cf, key, &value) => {
                let opened = with_aad(cf, key, |aad| c.open_value_owned(aad, value)).map_err(|_| StoreError::Corrupt {
                    key: format!("<{cf} record>"),
                    reason: "does not decrypt under this store's data key (altered, or written under another key)".into(),
                })?;
                match &self.packer {
                    Some(p) => p.unpack(cf, opened, || self.load_dictionary(cf)),
                    None => Ok(opened),
                }
            }
            _ => Ok(value),
        }
    }

    /// The packer of this store if it is encrypted and framed (see `packed`).
    fn packer_for(&self) -> Result<Option<packed::Packer>, StoreError> {
        let Some(c) = &self.cipher else {
            return Ok(None);
        };
        if self.get_raw(CF_META, packed::FRAMED)?.is_none() {
            // Encrypted before values were framed: read and written as they are.
            return Ok(None);
        }
        let mut families = Vec::new();
        for cf in ALL_CFS.iter().copied().filter(|cf| *cf != CF_META) {
            families.push((cf, self.load_dictionary(cf)?));
        }
        Ok(Some(packed::Packer::new(c.compresses(), families)))
    }

    /// Column family `cf`'s value dictionary as stored (sealed in `meta`), opened.
    fn load_dictionary(&self, cf: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let (Some(c), key) = (&self.cipher, packed::dictionary_key(cf)) else {
            return Ok(None);
        };
        let Some(sealed) = self.get_raw(CF_META, &key)? else {
            return Ok(None);
        };
        with_aad(CF_META, &key, |aad| c.open_value_owned(aad, sealed))
            .map(Some)
            .map_err(|_| StoreError::Corrupt {
                key: format!("<{cf} dictionary>"),
                reason: "does not decrypt under this store's data key".into(),
            })
    }

    /// Puts the value dictionaries trained since the last write group into `batch`
    /// (sealed, in `meta`); returns their column families, for [`packed::Packer::written`]
    /// once the batch is written.
    pub(super) fn put_pending_dictionaries(
        &self,
        batch: &mut rocksdb::WriteBatch,
    ) -> Result<Vec<&'static str>, StoreError> {
        let (Some(p), Some(c)) = (&self.packer, &self.cipher) else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for (cf, dict) in p.take_pending() {
            if let Some(stored) = self.load_dictionary(cf)? {
                // Never replace a stored dictionary: values already written need it.
                p.adopt(cf, stored);
                continue;
            }
            let key = packed::dictionary_key(cf);
            let sealed =
                with_aad(CF_META, &key, |aad| c.seal_value(aad, &dict)).map_err(crypto_error)?;
            batch.put_cf(self.cf(CF_META)?, &key, sealed);
            names.push(cf);
        }
        Ok(names)
    }

    /// Checks, right after opening, that the store and the cipher agree: an encrypted
    /// store is never opened without its data key, a plaintext one never with a key, and
    /// a data key opens only the store it was made for. A `fresh` store (nothing written
    /// yet) with a cipher is marked encrypted (unless `read_only`).
    pub(super) fn check_encryption(&self, fresh: bool, read_only: bool) -> Result<(), StoreError> {
        let marker = self.get_raw(CF_META, MARKER)?;
        let refuse = |m: String| Err(StoreError::Engine(format!("encryption: {m}")));
        let path = self.db.path().display().to_string();
        match (&self.cipher, marker) {
            (None, None) => Ok(()),
            (None, Some(_)) => refuse(format!(
                "the store in {path} is encrypted; open it with encryption.enabled = true and its key-encryption key (it is never read as plaintext)"
            )),
            (Some(c), Some(id)) if id == c.key_id().as_bytes() => {
                let check = self.get_raw(CF_META, CHECK)?.unwrap_or_default();
                match c.open_value(CHECK, &check) {
                    Ok(v) if v == CHECK_VALUE => Ok(()),
                    _ => refuse(format!(
                        "the data key does not open the store in {path} (its check value does not decrypt)"
                    )),
                }
            }
            (Some(_), Some(_)) => refuse(format!(
                "the data key ({}) is not the key of the store in {path}; put back the store's own data-key.json",
                crate::crypto::DATA_KEY_FILE
            )),
            (Some(c), None) if fresh && !read_only => {
                // Framed (values compressed before sealing; see `packed`), with clear
                // event ids and blind indexes from its creation.
                self.put_raw(CF_META, packed::FRAMED, b"1")?;
                self.put_raw(CF_META, CLEAR_EVENT_IDS, b"1")?;
                self.put_raw(CF_META, BLIND_INDEX, b"1")?;
                let check = c.seal_value(CHECK, CHECK_VALUE).map_err(crypto_error)?;
                self.put_raw(CF_META, CHECK, &check)?;
                self.put_raw(CF_META, MARKER, c.key_id().as_bytes())
            }
            (Some(_), None) => refuse(format!(
                "the store in {path} was written without encryption; encryption.enabled = true cannot take over a plaintext store (turn it off, or import the data into a new data directory)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{with_aad, BLIND_INDEX, CLEAR_EVENT_IDS};
    use crate::config::Compression;
    use crate::crypto::StoreCipher;
    use crate::store::rocks::{RocksStore, CF_EVENTS, CF_IDENTIFIERS, CF_META};

    fn open(path: &std::path::Path) -> RocksStore {
        let key = zeroize::Zeroizing::new([7u8; 32]);
        let cipher = StoreCipher::new("0123456789abcdef", &key).expect("cipher");
        RocksStore::open_with_cache(path, 64, Compression::default(), Some(Arc::new(cipher)))
            .expect("open the encrypted store")
    }

    #[test]
    fn a_new_encrypted_store_keeps_event_ids_in_clear_and_an_older_one_seals_them() {
        let tmp = tempfile::tempdir().expect("tmp");
        let order = [b"q\0".as_slice(), &7u64.to_be_bytes()].concat();
        let index = [
            b"i\0".as_slice(),
            b"sealed-identifier\0",
            &7u64.to_be_bytes(),
        ]
        .concat();
        let event = b"e\0ev-7".to_vec();

        let store = open(tmp.path());
        assert!(store.marked(CLEAR_EVENT_IDS).expect("marker"));
        for key in [&order, &index] {
            let stored = store.seal(CF_EVENTS, key, b"ev-7").expect("seal");
            assert_eq!(&stored[..], b"ev-7", "an event id row's value is the id");
            let read = store.unseal(CF_EVENTS, key, stored.into_owned());
            assert_eq!(read.expect("unseal"), b"ev-7");
        }
        // Everything else is still sealed: the event itself, identifiers.
        for (cf, key) in [(CF_EVENTS, &event), (CF_IDENTIFIERS, &b"x".to_vec())] {
            let stored = store.seal(cf, key, b"ev-7 payload").expect("seal");
            assert!(!stored.windows(4).any(|w| w == b"ev-7"), "{cf} sealed");
        }

        // A store encrypted before the marker existed (no marker) seals the ids and reads
        // them back sealed.
        store
            .db
            .delete_cf(store.cf(CF_META).expect("meta"), CLEAR_EVENT_IDS)
            .expect("delete");
        drop(store);
        let store = open(tmp.path());
        assert!(!store.marked(CLEAR_EVENT_IDS).expect("marker"));
        for key in [&order, &index] {
            let stored = store
                .seal(CF_EVENTS, key, b"ev-7")
                .expect("seal")
                .into_owned();
            assert!(stored.len() > b"ev-7".len() + 16, "sealed: {stored:?}");
            assert_eq!(
                store.unseal(CF_EVENTS, key, stored).expect("unseal"),
                b"ev-7"
            );
            // ...and refuses a clear value there as altered.
            assert!(store.unseal(CF_EVENTS, key, b"ev-7".to_vec()).is_err());
        }
    }

    #[test]
    fn a_new_encrypted_store_looks_up_by_blind_index_and_an_older_one_by_sealed_segments() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (a, b) = ("email:ann.example.person@example.com", "phone:+15550100");
        let store = open(tmp.path());
        assert!(store.marked(BLIND_INDEX).expect("marker"));
        // Looked-up segments: sixteen bytes (and escapes) whatever the value's length.
        let blind = store.blind(a.as_bytes()).into_owned();
        assert!(blind.len() < 20 && !blind.contains(&0), "{blind:?}");
        assert_ne!(blind, store.seg(a.as_bytes()).into_owned());
        // An edge row: the first segment looked up, the second read back.
        let row = store.edge_row(a, b);
        let second = &row[blind.len() + 1..];
        assert_eq!(&row[..blind.len()], &blind[..]);
        assert_eq!(store.unseg(second).expect("the neighbour"), b);
        assert!(!row.windows(4).any(|w| w == b"5550" || w == b"ann."));
        assert_eq!(store.edge_rows(a, b), (row, store.edge_row(b, a)));

        // A store encrypted before the marker existed looks everything up by sealed
        // segments, as it was written.
        store
            .db
            .delete_cf(store.cf(CF_META).expect("meta"), BLIND_INDEX)
            .expect("delete");
        drop(store);
        let store = open(tmp.path());
        assert!(!store.marked(BLIND_INDEX).expect("marker"));
        assert_eq!(store.blind(a.as_bytes()), store.seg(a.as_bytes()));
        let row = store.edge_row(a, b);
        assert_eq!(store.edge_rows(a, b), (row.clone(), store.edge_row(b, a)));
        let first = store.seg(a.as_bytes()).into_owned();
        assert_eq!(&row[..first.len()], &first[..]);
        assert_eq!(
            store.unseg(&row[first.len() + 1..]).expect("the neighbour"),
            b
        );
    }

    #[test]
    fn associated_data_is_the_column_family_a_zero_and_the_key_at_any_length() {
        for len in [0usize, 1, 200, 246, 247, 248, 1000] {
            let key: Vec<u8> = (0..len).map(|i| (i % 250) as u8 + 1).collect();
            let expected = [b"profiles".as_slice(), &[0], &key].concat();
            assert_eq!(with_aad("profiles", &key, |a| a.to_vec()), expected);
        }
    }
}
