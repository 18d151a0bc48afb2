//! `[encryption]` settings and the key-encryption key (KEK) that wraps each data
//! directory's data key: 32 bytes from a file (owner-only) or an environment variable, or
//! a key of AWS KMS. Exactly one source; anything else stops start-up naming the setting.

use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::{CryptoError, KeyBytes};

/// `[encryption]`: encryption at rest of the embedded store (see `crypto`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionSettings {
    /// Off by default: a store is encrypted from its creation or never (an existing
    /// plaintext store is refused when this is turned on, and an encrypted one when off).
    pub enabled: bool,
    /// Where the key-encryption key comes from: exactly one of `file`, `env`, `aws_kms`.
    pub kek: KekSettings,
    /// Compress values (zstd, with dictionaries trained on the store's own values) before
    /// sealing them: on by default. A sealed value does not compress, so without it the
    /// store is several times larger on disk. Off: each value's stored length is its
    /// plaintext length plus a constant, never dependent on how its content compresses
    /// (for deployments that rule out any compression length channel). Changing it later
    /// only changes how new values are written.
    pub compress: bool,
}

impl Default for EncryptionSettings {
    fn default() -> Self {
        EncryptionSettings {
            enabled: false,
            kek: KekSettings::default(),
            compress: true,
        }
    }
}

/// `[encryption.kek]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct KekSettings {
    /// A file of 32 random bytes (raw, 64 hex characters, or base64), readable by its
    /// owner only.
    pub file: Option<PathBuf>,
    /// The name of an environment variable holding 32 bytes as hex or base64 (e.g.
    /// `IDGRAPH_KEK`, which is not read as a setting).
    pub env: Option<String>,
    /// A symmetric key of AWS KMS that encrypts and decrypts the data key.
    pub aws_kms: Option<AwsKmsSettings>,
}

/// `[encryption.kek.aws_kms]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AwsKmsSettings {
    /// Key id, ARN or alias of a symmetric KMS key.
    pub key_id: String,
    /// Its region, e.g. `eu-west-1`.
    pub region: String,
    /// Another endpoint than the region's public one: a VPC endpoint (`https://...`) or a
    /// KMS-compatible server on this machine (`http://127.0.0.1:...`; plain HTTP is
    /// refused for any other host, the data key would cross the network readable).
    pub endpoint: Option<String>,
}

/// A loaded key-encryption key.
pub enum Kek {
    /// 32 bytes from a file or the environment; `source` names the setting.
    Local { key: KeyBytes, source: String },
    /// A key of AWS KMS, with its client.
    AwsKms(std::sync::Arc<super::kms::KmsClient>),
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.describe())
    }
}

/// 32 key bytes from text: 64 hex characters or base64; raw bytes when exactly 32 long.
pub fn parse_key(bytes: &[u8], what: &str) -> Result<KeyBytes, CryptoError> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let bad = || {
        CryptoError::Config(format!(
            "{what} must hold a 32-byte key: 32 raw bytes, 64 hex characters or base64 (make one with `openssl rand -hex 32`)"
        ))
    };
    let text = std::str::from_utf8(bytes).map_err(|_| bad())?.trim();
    let decoded: Zeroizing<Vec<u8>> =
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Zeroizing::new(
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| bad())?,
            )
        } else {
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| bad())?,
            )
        };
    if decoded.len() != 32 {
        return Err(bad());
    }
    key.copy_from_slice(&decoded);
    Ok(key)
}

impl Kek {
    /// The KEK `settings` name. Refuses no source, several sources, a missing or
    /// malformed key, and a key file others can read.
    pub fn load(settings: &KekSettings) -> Result<Kek, CryptoError> {
        let named: Vec<&str> = [
            settings.file.as_ref().map(|_| "file"),
            settings.env.as_ref().map(|_| "env"),
            settings.aws_kms.as_ref().map(|_| "aws_kms"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match named.as_slice() {
            [] => Err(CryptoError::Config(
                "encryption.enabled is true but no key-encryption key is configured: set exactly one of encryption.kek.file, encryption.kek.env or encryption.kek.aws_kms".into(),
            )),
            [_] => Kek::load_one(settings),
            several => Err(CryptoError::Config(format!(
                "encryption.kek: set exactly one of file, env and aws_kms (found {})",
                several.join(" and ")
            ))),
        }
    }

    fn load_one(settings: &KekSettings) -> Result<Kek, CryptoError> {
        if let Some(path) = &settings.file {
            let what = format!("encryption.kek.file {}", path.display());
            let meta = std::fs::metadata(path).map_err(|e| {
                CryptoError::Config(format!("{what}: cannot read the key-encryption key: {e}"))
            })?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(CryptoError::Config(format!(
                        "{what} is readable by group or others (mode {mode:o}); make it owner-only (chmod 600)"
                    )));
                }
            }
            #[cfg(not(unix))]
            let _ = meta;
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
                CryptoError::Config(format!("{what}: cannot read the key-encryption key: {e}"))
            })?);
            return Ok(Kek::Local {
                key: parse_key(&bytes, &what)?,
                source: what,
            });
        }
        if let Some(name) = &settings.env {
            let what = format!("encryption.kek.env {name}");
            let value = Zeroizing::new(std::env::var(name).map_err(|_| {
                CryptoError::Config(format!(
                    "{what}: the environment variable {name} is not set (or not UTF-8)"
                ))
            })?);
            return Ok(Kek::Local {
                key: parse_key(value.as_bytes(), &what)?,
                source: what,
            });
        }
        match &settings.aws_kms {
            Some(kms) => {
                if kms.key_id.trim().is_empty() || kms.region.trim().is_empty() {
                    return Err(CryptoError::Config(
                        "encryption.kek.aws_kms needs key_id and region".into(),
                    ));
                }
                if let Some(endpoint) = &kms.endpoint {
                    check_endpoint(endpoint)?;
                }
                Ok(Kek::AwsKms(super::kms::KmsClient::for_settings(kms)?))
            }
            None => Err(CryptoError::Config(
                "encryption.kek: no key-encryption key".into(),
            )),
        }
    }

    /// The setting the key came from (never the key).
    pub fn describe(&self) -> String {
        match self {
            Kek::Local { source, .. } => source.clone(),
            Kek::AwsKms(kms) => format!("encryption.kek.aws_kms {}", kms.settings().key_id),
        }
    }

    /// The data key wrapped: (`wrapped_by`, bytes).
    pub(super) fn wrap_key(
        &self,
        key_id: &str,
        key: &KeyBytes,
    ) -> Result<(&'static str, Vec<u8>), CryptoError> {
        match self {
            Kek::Local { key: kek, .. } => Ok(("local", super::wrap_local(kek, key_id, key)?)),
            Kek::AwsKms(kms) => Ok(("aws_kms", kms.encrypt(key_id, key)?)),
        }
    }

    /// The data key a key file holds.
    pub(super) fn unwrap_key(
        &self,
        wrapped_by: &str,
        key_id: &str,
        wrapped: &[u8],
    ) -> Result<KeyBytes, CryptoError> {
        match (self, wrapped_by) {
            (Kek::Local { key: kek, .. }, "local") => super::unwrap_local(kek, key_id, wrapped),
            (Kek::AwsKms(kms), "aws_kms") => kms.decrypt(key_id, wrapped),
            (_, other) => Err(CryptoError::Config(format!(
                "the data key was wrapped by `{other}`, but the configured key-encryption key is {}; configure the key that wrapped it",
                self.describe()
            ))),
        }
    }
}

/// `encryption.kek.aws_kms.endpoint`: an http(s) URL; plain HTTP to this machine only.
fn check_endpoint(endpoint: &str) -> Result<(), CryptoError> {
    let bad = |why: &str| {
        CryptoError::Config(format!(
            "encryption.kek.aws_kms.endpoint {endpoint:?}: {why}"
        ))
    };
    let url = url::Url::parse(endpoint).map_err(|e| bad(&format!("not a URL ({e})")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(bad("no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(bad(
            "plain HTTP to another machine would send the data key readable; use https",
        )),
        other => Err(bad(&format!("scheme {other} is not http or https"))),
    }
}
