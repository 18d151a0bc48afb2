//! TLS on the API (`[server.tls]`): the certificate chain and private key read from PEM
//! files, served by rustls (ring provider) through a certificate resolver that can swap
//! them while the server runs.
//!
//! On SIGHUP ([`reload_on_hangup`]) both files are read again; a valid pair replaces the
//! served one for new connections (connections already open keep theirs), an invalid one
//! is refused with a warning naming the file, and the previous certificate stays. At
//! start-up a missing, unreadable or invalid file is an error naming it: a server told to
//! use TLS never answers in plain HTTP.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A problem with one of the two files, naming the setting and the file.
#[derive(Debug, thiserror::Error)]
#[error("server.tls.{setting} {}: {problem}", path.display())]
pub struct TlsError {
    /// `cert_file` or `key_file`.
    pub setting: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl TlsError {
    fn cert(path: &Path, problem: impl Into<String>) -> TlsError {
        TlsError {
            setting: "cert_file",
            path: path.to_owned(),
            problem: problem.into(),
        }
    }

    fn key(path: &Path, problem: impl Into<String>) -> TlsError {
        TlsError {
            setting: "key_file",
            path: path.to_owned(),
            problem: problem.into(),
        }
    }
}

/// What is logged about a served certificate: never its subject (it may name people).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial number in hex.
    pub serial: String,
    /// The end of its validity (RFC 3339).
    pub not_after: String,
}

/// The rustls provider: ring, the one compiled in.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair: a PEM chain (leaf first) and a PEM private key (PKCS#8,
/// RSA or SEC1) that belongs to the leaf.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<(CertifiedKey, CertInfo), TlsError> {
    let pem = std::fs::read(cert_file)
        .map_err(|e| TlsError::cert(cert_file, format!("cannot be read ({e})")))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::cert(cert_file, format!("is not valid PEM ({e})")))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::cert(
            cert_file,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        ));
    };
    let info = describe(leaf).map_err(|e| TlsError::cert(cert_file, e))?;
    let pem = std::fs::read(key_file)
        .map_err(|e| TlsError::key(key_file, format!("cannot be read ({e})")))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            TlsError::key(key_file, "holds no PEM private key (PKCS#8, RSA or SEC1)")
        }
        e => TlsError::key(key_file, format!("is not a valid PEM private key ({e})")),
    })?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::key(
            key_file,
            format!(
                "is not the key of the certificate in {}",
                cert_file.display()
            ),
        ),
        e => TlsError::key(key_file, format!("cannot be used ({e})")),
    })?;
    Ok((certified, info))
}

/// The serial and expiry of a DER certificate.
fn describe(der: &CertificateDer<'_>) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("its first certificate cannot be parsed ({e})"))?;
    let serial = cert
        .raw_serial()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let not_after = cert.validity().not_after;
    let not_after = chrono::DateTime::from_timestamp(not_after.timestamp(), 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| not_after.to_string());
    Ok(CertInfo { serial, not_after })
}

/// The served certificate, replaceable while the server runs.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Loads the pair, or says which file is wrong.
    pub fn open(cert_file: &Path, key_file: &Path) -> Result<(ReloadingCert, CertInfo), TlsError> {
        let (certified, info) = load(cert_file, key_file)?;
        Ok((
            ReloadingCert {
                cert_file: cert_file.to_owned(),
                key_file: key_file.to_owned(),
                current: RwLock::new(Arc::new(certified)),
            },
            info,
        ))
    }

    /// Reads both files again and serves them from the next handshake on; on an error the
    /// certificate served so far stays.
    pub fn reload(&self) -> Result<CertInfo, TlsError> {
        let (certified, info) = load(&self.cert_file, &self.key_file)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        Ok(info)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// The rustls server configuration over `cert` (TLS 1.2 and 1.3, no client certificates;
/// actix-web adds the ALPN protocol).
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    Ok(rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cert))
}

/// Reloads `cert` on every SIGHUP, logging the outcome, for as long as the task runs.
pub fn reload_on_hangup(cert: Arc<ReloadingCert>) -> impl std::future::Future<Output = ()> {
    // The SIGHUP handler is installed now, not when the future first runs: a hangup sent
    // as soon as the server says it is listening must reload, not kill the process.
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let mut hangups = match hangups {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGHUP; the TLS certificate will not be reloaded");
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                let c = cert.clone();
                match tokio::task::spawn_blocking(move || c.reload()).await {
                    Ok(Ok(info)) => tracing::info!(
                        serial = %info.serial,
                        not_after = %info.not_after,
                        "TLS certificate reloaded"
                    ),
                    Ok(Err(e)) => tracing::warn!(
                        error = %e,
                        "TLS certificate not reloaded; still serving the previous one"
                    ),
                    Err(_) => return,
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = cert;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn errors_name_the_file_and_reload_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair(dir.path(), "a");
        let (served, info) = ReloadingCert::open(&cert, &key).unwrap();
        assert!(!info.serial.is_empty());
        let before = served.current.read().unwrap().cert.clone();

        let missing = dir.path().join("missing.key");
        let e = load(&cert, &missing).unwrap_err().to_string();
        assert!(e.starts_with("server.tls.key_file "), "{e}");
        assert!(
            e.contains("missing.key") && e.contains("cannot be read"),
            "{e}"
        );

        let (other_cert, _) = pair(dir.path(), "b");
        let e = load(&other_cert, &key).unwrap_err().to_string();
        assert!(e.contains("is not the key of the certificate"), "{e}");

        std::fs::write(&cert, "garbage").unwrap();
        let e = served.reload().unwrap_err().to_string();
        assert!(
            e.starts_with("server.tls.cert_file ") && e.contains("no PEM certificate"),
            "{e}"
        );
        assert_eq!(served.current.read().unwrap().cert, before);

        std::fs::write(&key, "garbage").unwrap();
        let e = load(&other_cert, &key).unwrap_err().to_string();
        assert!(e.contains("no PEM private key"), "{e}");
    }
}
