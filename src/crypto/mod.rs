//! Encryption at rest of the embedded store (`[encryption]`).
//!
//! Each data directory (the default tenant's, or a tenant's own) has one **data key**: 32
//! random bytes, kept only wrapped by the key-encryption key (KEK: AES-256-GCM-SIV under a
//! local KEK, or encrypted by AWS KMS, `kms.rs`) in `<data_dir>/data-key.json`, a file
//! RocksDB knows nothing of, so no checkpoint, backup or replication snapshot ever holds
//! it. From the data key, HKDF-SHA256 derives three subkeys:
//! - `values`: AES-256-GCM-SIV with a random 96-bit nonce (prepended), the associated data
//!   binding each value to its column family and stored key ([`StoreCipher::seal_value`]);
//! - `keys`: deterministic encryption of the key segments that are looked up or
//!   prefix-scanned (identifier values, addresses, blocking keys): AES-256-GCM-SIV under
//!   one fixed nonce, used as the deterministic AEAD RFC 8452 makes it (its synthetic IV is
//!   computed from the plaintext, so equal values give equal ciphertexts, which lookups
//!   need, and a repeated nonce reveals nothing but that equality). The ciphertext and tag
//!   are stored with `\0` and `\x01` escaped, so a segment never holds the `\0` key
//!   separator and is only about 1% longer than the ciphertext
//!   ([`StoreCipher::seal_key`]). The store uses it for the segments it reads back from
//!   keys (an identifier node's key, an edge's neighbour);
//! - `blind`: blind indexes of the segments only ever looked up (the identifier an edge or
//!   an index row is found by, addresses, blocking keys, feed subjects): the same
//!   construction's 16-byte tag alone, a keyed pseudorandom function of the value that
//!   cannot be decrypted and has one length whatever the value's
//!   ([`StoreCipher::blind_key`]).
//!
//! Rotating the KEK re-wraps the data key ([`rewrap`]); no record is rewritten.
//! Destroying the data key ([`destroy_data_key`]) makes every copy of the store's files
//! unreadable (crypto-shredding), backups included.

pub mod kek;
pub mod kms;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use idgraph_aead::{FixedNonceSiv, RandomNonceSiv, NONCE_LEN, TAG_LEN};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use kek::{EncryptionSettings, Kek, KekSettings};

/// The wrapped data key's file in a data directory.
pub const DATA_KEY_FILE: &str = "data-key.json";

/// Associated data of a wrapped data key (with its key id after it).
const WRAP_AAD: &[u8] = b"idgraph data key v1\0";
const HKDF_SALT: &[u8] = b"idgraph store encryption v1";

/// What can go wrong with keys. Messages name files and settings, never key material.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("encryption: {0}")]
    Config(String),
    #[error("encryption: {0}")]
    Io(String),
    /// A value or key that does not decrypt: altered, or written under another key.
    #[error("encryption: a stored record does not decrypt under this store's data key (altered, or written under another key)")]
    Tampered,
}

/// The file holding a wrapped data key.
#[derive(Debug, Serialize, Deserialize)]
struct WrappedKeyFile {
    version: u32,
    /// Hex; also recorded in the store, so a key file of another store is refused.
    key_id: String,
    /// `local` (a KEK from a file or the environment) or `aws_kms`.
    wrapped_by: String,
    /// Base64: nonce then AES-256-GCM-SIV ciphertext and tag of the 32 key bytes.
    wrapped: String,
}

/// 32 secret bytes, wiped when dropped.
pub type KeyBytes = Zeroizing<[u8; 32]>;

/// The ciphers of one store, derived from its data key.
pub struct StoreCipher {
    key_id: String,
    /// Values: AES-256-GCM-SIV under a random nonce.
    values: RandomNonceSiv,
    /// Key segments: AES-256-GCM-SIV under the zero nonce (deterministic).
    keys: FixedNonceSiv,
    /// Blind indexes of key segments only ever looked up: the tag alone, under a subkey
    /// of its own.
    blind: FixedNonceSiv,
    /// Whether the store compresses values before sealing them (`encryption.compress`).
    compress: bool,
}

impl std::fmt::Debug for StoreCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreCipher({})", self.key_id)
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `raw` without a `\0`: `\0` becomes `\x01\x01` and `\x01` becomes `\x01\x02`; every other
/// byte stays. Injective, and 2 bytes in 256 grow, where base64 grows every 3 by a third.
/// The runs between escapes are copied whole (`memchr2` finds the next one).
fn escape_zeros(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 64 + 2);
    let mut from = 0;
    for at in memchr::memchr2_iter(0, 1, raw) {
        out.extend_from_slice(&raw[from..at]);
        out.extend_from_slice(if raw[at] == 0 { &[1, 1] } else { &[1, 2] });
        from = at + 1;
    }
    out.extend_from_slice(&raw[from..]);
    out
}

/// The bytes [`escape_zeros`] made `escaped` from; `None` for anything it cannot make.
fn unescape_zeros(escaped: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len());
    let mut from = 0;
    while let Some(found) = memchr::memchr2(0, 1, &escaped[from..]) {
        let at = from + found;
        out.extend_from_slice(&escaped[from..at]);
        match (escaped[at], escaped.get(at + 1)) {
            (1, Some(1)) => out.push(0),
            (1, Some(2)) => out.push(1),
            _ => return None,
        }
        from = at + 2;
    }
    out.extend_from_slice(&escaped[from..]);
    Some(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl StoreCipher {
    /// The ciphers of data key `key` (identified by `key_id`).
    pub fn new(key_id: &str, key: &KeyBytes) -> Result<StoreCipher, CryptoError> {
        let hk = hkdf::Hkdf::<Sha256>::new(Some(HKDF_SALT), key.as_slice());
        let derive = |info: &[u8]| -> Result<KeyBytes, CryptoError> {
            let mut out = Zeroizing::new([0u8; 32]);
            hk.expand(info, out.as_mut_slice())
                .map_err(|_| CryptoError::Config("cannot derive a subkey".into()))?;
            Ok(out)
        };
        let (values, keys, blind) = (derive(b"values")?, derive(b"keys")?, derive(b"blind")?);
        let bad = |_| CryptoError::Config("a subkey has the wrong length".into());
        Ok(StoreCipher {
            key_id: key_id.to_owned(),
            values: RandomNonceSiv::new(&values).map_err(bad)?,
            keys: FixedNonceSiv::new(&keys).map_err(bad)?,
            blind: FixedNonceSiv::new(&blind).map_err(bad)?,
            compress: true,
        })
    }

    /// This cipher, with values compressed before sealing (`on`) or not.
    pub fn with_compression(mut self, on: bool) -> StoreCipher {
        self.compress = on;
        self
    }

    /// Whether values are compressed before sealing (`encryption.compress`).
    pub fn compresses(&self) -> bool {
        self.compress
    }

    /// The data key's id (hex, not secret), recorded in the store.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `plain` encrypted with a fresh random nonce, bound to `aad` (nonce ‖ ciphertext ‖
    /// tag): 28 bytes more than `plain`.
    pub fn seal_value(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.values
            .seal(aad, plain)
            .map_err(|_| CryptoError::Config("a value is too long to encrypt".into()))
    }

    /// The plaintext of [`StoreCipher::seal_value`]'s output under the same `aad`.
    pub fn open_value(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open_value_owned(aad, sealed.to_vec())
    }

    /// [`StoreCipher::open_value`] in `sealed`'s own buffer (no copy of the ciphertext):
    /// the plaintext, or `Tampered` (the buffer is then dropped).
    pub fn open_value_owned(&self, aad: &[u8], sealed: Vec<u8>) -> Result<Vec<u8>, CryptoError> {
        self.values
            .open(aad, sealed)
            .map_err(|_| CryptoError::Tampered)
    }

    /// `plain` encrypted deterministically (equal inputs, equal outputs), `\0`-free: it
    /// can stand as one segment of a `\0`-joined key. 16 bytes (the tag) longer than
    /// `plain`, plus about 1% for the escapes.
    pub fn seal_key(&self, plain: &[u8]) -> Vec<u8> {
        let mut raw = Vec::with_capacity(plain.len() + TAG_LEN);
        raw.extend_from_slice(plain);
        let tag = self.keys.seal_in_place(&mut raw);
        raw.extend_from_slice(&tag);
        escape_zeros(&raw)
    }

    /// The blind index of `plain`: its keyed 16-byte tag under a subkey used for nothing
    /// else, `\0`-free. Equal inputs give equal outputs, as with
    /// [`StoreCipher::seal_key`], but `plain` cannot be read back and every output has the
    /// same length (about 16 bytes, whatever `plain`'s), so it stands for the key segments
    /// that are only looked up: the prefixes index rows are found by.
    pub fn blind_key(&self, plain: &[u8]) -> Vec<u8> {
        escape_zeros(&self.blind.prf(plain))
    }

    /// The plaintext of [`StoreCipher::seal_key`]'s output.
    pub fn open_key(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut raw = unescape_zeros(sealed).ok_or(CryptoError::Tampered)?;
        let Some(at) = raw.len().checked_sub(TAG_LEN) else {
            return Err(CryptoError::Tampered);
        };
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&raw[at..]);
        raw.truncate(at);
        self.keys
            .open_in_place(&mut raw, &tag)
            .map_err(|_| CryptoError::Tampered)?;
        Ok(raw)
    }
}

/// AES-256-GCM-SIV of the 32 data-key bytes under `kek`, bound to the key id.
fn wrap_local(kek: &KeyBytes, key_id: &str, key: &KeyBytes) -> Result<Vec<u8>, CryptoError> {
    let cipher = RandomNonceSiv::new(kek)
        .map_err(|_| CryptoError::Config("the key-encryption key must be 32 bytes".into()))?;
    let aad = [WRAP_AAD, key_id.as_bytes()].concat();
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    cipher
        .seal_with_nonce(&nonce, &aad, key.as_slice())
        .map_err(|_| CryptoError::Config("cannot wrap the data key".into()))
}

fn unwrap_local(kek: &KeyBytes, key_id: &str, wrapped: &[u8]) -> Result<KeyBytes, CryptoError> {
    let cipher = RandomNonceSiv::new(kek)
        .map_err(|_| CryptoError::Config("the key-encryption key must be 32 bytes".into()))?;
    let aad = [WRAP_AAD, key_id.as_bytes()].concat();
    let plain = Zeroizing::new(
        cipher
            .open(&aad, wrapped.to_vec())
            .map_err(|_| CryptoError::Tampered)?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != 32 {
        return Err(CryptoError::Tampered);
    }
    key.copy_from_slice(&plain);
    Ok(key)
}

/// Where the wrapped data key of `data_dir` lives.
pub fn data_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATA_KEY_FILE)
}

/// Whether `data_dir` holds a RocksDB store already.
fn holds_store(data_dir: &Path) -> bool {
    data_dir.join("CURRENT").is_file()
}

/// The store cipher of `data_dir` under `settings`: `None` when encryption is off (and
/// refused if the directory holds a data key: its store is encrypted). When on, the
/// KEK is loaded and the data key unwrapped, or created for a directory that holds no
/// store yet. Every refusal stops start-up; nothing falls back to plaintext.
pub fn store_cipher(
    settings: &EncryptionSettings,
    data_dir: &Path,
) -> Result<Option<Arc<StoreCipher>>, CryptoError> {
    let path = data_key_path(data_dir);
    if !settings.enabled {
        if path.exists() {
            return Err(CryptoError::Config(format!(
                "{} holds a data key: this store is encrypted, but encryption.enabled is false; set encryption.enabled = true with its key-encryption key (idgraph never reads or writes an encrypted store as plaintext)",
                data_dir.display()
            )));
        }
        return Ok(None);
    }
    let kek = Kek::load(&settings.kek)?;
    if !path.exists() {
        if holds_store(data_dir) {
            return Err(CryptoError::Config(format!(
                "{} holds a store but no data key ({DATA_KEY_FILE}): either the store was written without encryption (encryption.enabled = true cannot take over a plaintext store; turn it off, or import the data into a new encrypted data directory), or its data key was destroyed, and then its data can never be read",
                data_dir.display()
            )));
        }
        return create_data_key(&kek, data_dir)
            .map(|c| Some(Arc::new(c.with_compression(settings.compress))));
    }
    // The key file and the search index (which holds words) live here: owner-only.
    owner_only_dir(data_dir)?;
    load_data_key(&kek, data_dir).map(|c| Some(Arc::new(c.with_compression(settings.compress))))
}

/// The store cipher of `settings.storage.data_dir` (see [`store_cipher`]), after
/// refusing what encryption does not cover: a graph database (its local profile cache
/// would hold plaintext; use the database's own encryption at rest). A writer with
/// `replication.enabled` ships its wrapped data key in every snapshot; its replicas
/// unwrap it with their own `[encryption.kek]` (see `replica`).
pub fn for_settings(
    settings: &crate::config::Settings,
) -> Result<Option<Arc<StoreCipher>>, CryptoError> {
    if settings.encryption.enabled && settings.graph.store != crate::config::GraphBackend::Embedded
    {
        return Err(CryptoError::Config(
            "encryption.enabled covers the embedded store only; with a graph database (graph.store), use the database's own encryption at rest and leave encryption.enabled off".into(),
        ));
    }
    store_cipher(&settings.encryption, &settings.storage.data_dir)
}

impl From<CryptoError> for crate::store::StoreError {
    fn from(e: CryptoError) -> Self {
        crate::store::StoreError::Engine(e.to_string())
    }
}

fn read_key_file(data_dir: &Path) -> Result<WrappedKeyFile, CryptoError> {
    let path = data_key_path(data_dir);
    let text = std::fs::read(&path)
        .map_err(|e| CryptoError::Io(format!("cannot read {}: {e}", path.display())))?;
    let file: WrappedKeyFile = serde_json::from_slice(&text).map_err(|e| {
        CryptoError::Config(format!("{} is not a wrapped data key: {e}", path.display()))
    })?;
    if file.version != 1 {
        return Err(CryptoError::Config(format!(
            "{} has version {}, this build reads 1",
            path.display(),
            file.version
        )));
    }
    Ok(file)
}

/// The data key of `data_dir` unwrapped with `kek`.
fn unwrap_file(kek: &Kek, data_dir: &Path) -> Result<(String, KeyBytes), CryptoError> {
    let path = data_key_path(data_dir);
    let file = read_key_file(data_dir)?;
    let wrapped = b64()
        .decode(&file.wrapped)
        .map_err(|_| CryptoError::Config(format!("{}: `wrapped` is not base64", path.display())))?;
    let key = kek.unwrap_key(&file.wrapped_by, &file.key_id, &wrapped).map_err(|e| match e {
        CryptoError::Tampered => CryptoError::Config(format!(
            "the key-encryption key ({}) does not open the data key in {}: it is the wrong key-encryption key, or the file was altered; idgraph does not start without the right one",
            kek.describe(),
            path.display()
        )),
        other => other,
    })?;
    Ok((file.key_id, key))
}

fn load_data_key(kek: &Kek, data_dir: &Path) -> Result<StoreCipher, CryptoError> {
    let (key_id, key) = unwrap_file(kek, data_dir)?;
    StoreCipher::new(&key_id, &key)
}

fn create_data_key(kek: &Kek, data_dir: &Path) -> Result<StoreCipher, CryptoError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| CryptoError::Io(format!("cannot create {}: {e}", data_dir.display())))?;
    owner_only_dir(data_dir)?;
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut_slice());
    let mut id = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut id);
    let key_id = hex(&id);
    write_key_file(kek, data_dir, &key_id, &key, true)?;
    tracing::info!(key_id = %key_id, "created the data key of a new encrypted store");
    StoreCipher::new(&key_id, &key)
}

/// Writes the wrapped key file: through a temporary file renamed over it, file and
/// directory fsync'd; `create` refuses an existing file.
fn write_key_file(
    kek: &Kek,
    data_dir: &Path,
    key_id: &str,
    key: &KeyBytes,
    create: bool,
) -> Result<(), CryptoError> {
    let (wrapped_by, wrapped) = kek.wrap_key(key_id, key)?;
    let file = WrappedKeyFile {
        version: 1,
        key_id: key_id.to_owned(),
        wrapped_by: wrapped_by.into(),
        wrapped: b64().encode(wrapped),
    };
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| CryptoError::Config(format!("cannot encode the key file: {e}")))?;
    let path = data_key_path(data_dir);
    if create && path.exists() {
        return Err(CryptoError::Config(format!(
            "{} exists already",
            path.display()
        )));
    }
    let tmp = data_dir.join(format!("{DATA_KEY_FILE}.tmp"));
    let io = |e: std::io::Error| CryptoError::Io(format!("cannot write {}: {e}", path.display()));
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    {
        use std::io::Write;
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(&json).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, &path).map_err(io)?;
    sync_dir(data_dir).map_err(io)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes `dir` readable by its owner only (the search index and key file live there).
pub fn owner_only_dir(dir: &Path) -> Result<(), CryptoError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
            CryptoError::Io(format!("cannot make {} owner-only: {e}", dir.display()))
        })?;
    }
    Ok(())
}

/// Re-wraps the data key of `data_dir` (unwrapped with `old`) under `new`; no record is
/// rewritten. Data written before reads after with `new` alone.
pub fn rewrap(old: &Kek, new: &Kek, data_dir: &Path) -> Result<String, CryptoError> {
    let (key_id, key) = unwrap_file(old, data_dir)?;
    write_key_file(new, data_dir, &key_id, &key, false)?;
    // The new file opens with the new key before the old one is forgotten.
    unwrap_file(new, data_dir)?;
    Ok(key_id)
}

/// `idgraph keys rotate-kek`: re-wraps, under the KEK `new` names, the data key of the
/// data directory and of every tenant directory under `<data_dir>/tenants/` (unwrapped
/// with the configured KEK). Returns each directory with its key id.
pub fn rotate(
    settings: &crate::config::Settings,
    new: &KekSettings,
) -> Result<Vec<(PathBuf, String)>, CryptoError> {
    if !settings.encryption.enabled {
        return Err(CryptoError::Config(
            "encryption.enabled is false: there is no data key to re-wrap".into(),
        ));
    }
    if new.file.is_none() && new.env.is_none() && new.aws_kms.is_none() {
        return Err(CryptoError::Config(
            "name the new key-encryption key: --new-file, --new-env or --new-aws-kms-key-id".into(),
        ));
    }
    let old = Kek::load(&settings.encryption.kek)?;
    let new = Kek::load(new)?;
    let root = &settings.storage.data_dir;
    let mut dirs = vec![root.clone()];
    if let Ok(entries) = std::fs::read_dir(root.join("tenants")) {
        let mut tenants: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| data_key_path(p).is_file())
            .collect();
        tenants.sort();
        dirs.extend(tenants);
    }
    let mut out = Vec::new();
    for dir in dirs {
        if !data_key_path(&dir).is_file() {
            return Err(CryptoError::Config(format!(
                "{} holds no data key ({DATA_KEY_FILE})",
                dir.display()
            )));
        }
        let id = rewrap(&old, &new, &dir)?;
        tracing::info!(key_id = %id, "data key re-wrapped under the new key-encryption key");
        out.push((dir, id));
    }
    Ok(out)
}

/// Crypto-shredding: overwrites the wrapped data key of `data_dir` with zeros, syncs it,
/// deletes it and syncs the directory. Every copy of the store's files (backups,
/// snapshots, old disks) is unreadable from then on. Returns whether there was a key.
pub fn destroy_data_key(data_dir: &Path) -> std::io::Result<bool> {
    let path = data_key_path(data_dir);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(&path)?;
        f.write_all(&vec![0u8; usize::try_from(len).unwrap_or(0)])?;
        f.sync_all()?;
    }
    std::fs::remove_file(&path)?;
    let _ = std::fs::remove_file(data_dir.join(format!("{DATA_KEY_FILE}.tmp")));
    sync_dir(data_dir)?;
    Ok(true)
}

#[cfg(test)]
mod tests;
