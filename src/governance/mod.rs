//! Governance: who may call what (API keys, roles, rate limits), how personal values are
//! shown to each role (masking, in one place), and the audit trail. Transport-neutral: the
//! actix extractor that enforces it lives in `serve::auth`.

pub mod access;
pub mod audit;
pub mod keys;
pub mod lockout;
pub mod mask;
pub mod scope;

use std::path::Path;

use crate::config::AuthSettings;
use audit::AuditLog;
use keys::KeyRing;

/// Everything the HTTP edge needs to authorize, mask and audit requests.
pub struct Governance {
    /// Every tenant's keys (one ring, shared by the tenants' governances).
    pub keys: std::sync::Arc<KeyRing>,
    /// The tenant this governance serves: its audit log and pseudonym secret.
    pub tenant: String,
    pub audit: AuditLog,
    /// Failed authentications per client address (`auth.failed_auth_per_minute`; one
    /// count for the whole server).
    pub failed_auth: std::sync::Arc<lockout::FailedAuth>,
    pub protect_metrics: bool,
    /// Secret for analysts' pseudonyms (derived from the configured secret).
    pub pseudonym_key: Vec<u8>,
    /// What a read does when its audit entry cannot be written.
    pub audit_on_failure: crate::config::AuditFailure,
}

impl Governance {
    /// `secret` is the governance secret the engine loaded (see [`secret`]).
    pub fn new(
        settings: &AuthSettings,
        audit_settings: &crate::config::AuditSettings,
        data_dir: &Path,
        secret: Vec<u8>,
    ) -> Result<Governance, String> {
        let keys = KeyRing::new(&settings.keys)?;
        if keys.is_empty() {
            tracing::warn!(
                "no API keys are configured: every /v1 request will be refused; create one with `idgraph keys new`"
            );
        }
        let audit = AuditLog::open(data_dir, audit_settings.rotate_mb)
            .map_err(|e| format!("cannot open the audit log in {}: {e}", data_dir.display()))?;
        Ok(Governance {
            keys: std::sync::Arc::new(keys),
            tenant: keys::DEFAULT_TENANT.to_owned(),
            audit,
            failed_auth: std::sync::Arc::new(lockout::FailedAuth::new(
                settings.failed_auth_per_minute,
            )),
            protect_metrics: settings.protect_metrics,
            pseudonym_key: secret,
            audit_on_failure: audit_settings.on_failure,
        })
    }
}

impl Governance {
    /// The governance of tenant `tenant`, whose engine runs in `data_dir` with `secret`:
    /// its own audit log and pseudonyms, this server's keys and failed-authentication
    /// counts.
    pub fn for_tenant(
        &self,
        tenant: &str,
        audit_settings: &crate::config::AuditSettings,
        data_dir: &Path,
        secret: Vec<u8>,
    ) -> Result<Governance, String> {
        let audit = AuditLog::open(data_dir, audit_settings.rotate_mb)
            .map_err(|e| format!("cannot open the audit log in {}: {e}", data_dir.display()))?;
        Ok(Governance {
            keys: self.keys.clone(),
            tenant: tenant.to_owned(),
            audit,
            failed_auth: self.failed_auth.clone(),
            protect_metrics: self.protect_metrics,
            pseudonym_key: secret,
            audit_on_failure: audit_settings.on_failure,
        })
    }
}

/// The governance secret: `auth.secret`, or the one kept in the data directory.
pub fn secret(settings: &AuthSettings, data_dir: &Path) -> Result<Vec<u8>, String> {
    match settings.secret.expose() {
        "" => stored_secret(data_dir),
        s if s.len() < 16 => Err("auth.secret must be at least 16 characters".into()),
        s => Ok(s.as_bytes().to_vec()),
    }
}

/// HMAC-SHA256 of `text` under `secret`, hex (the suppression list's and pseudonyms' hash).
pub fn keyed_hash(secret: &[u8], text: &str) -> String {
    use hmac::{Hmac, Mac};
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(text.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret kept in `<data_dir>/governance.secret`, created on first use (owner-only).
fn stored_secret(data_dir: &Path) -> Result<Vec<u8>, String> {
    let path = data_dir.join("governance.secret");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(_) => {
            return Err(format!(
                "{} is too short; delete it to create a new one",
                path.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let secret = keys::generate_key().into_bytes();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&path).and_then(|mut f| {
        use std::io::Write;
        f.write_all(&secret)?;
        f.sync_all()
    });
    written.map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    Ok(secret)
}
