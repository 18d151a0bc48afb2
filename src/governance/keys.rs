//! API keys, roles and permissions, and per-key rate limits.
//!
//! A key is a random secret (`idg_` + 43 base62 characters, 256 bits) shown once by
//! `idgraph keys new`; the configuration holds only its SHA-256 (`sha256:<hex>`), a name
//! and a role. A fast unsalted hash is the right tool for high-entropy random secrets (as
//! for GitHub tokens): there is nothing to brute-force, and it costs microseconds per
//! request. Keys are never logged; a key is named by its `name` in logs and the audit trail.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a route needs. Every `/v1` handler takes an extractor typed by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// `POST /v1/events`.
    Ingest,
    /// `GET /v1/lookup`: a golden profile by any raw identifier value (services only: a
    /// caller shown masked or pseudonymized values must not confirm raw guesses).
    Lookup,
    /// `GET /v1/profiles/{id}`: a golden profile by profile id.
    ReadProfile,
    /// `GET /v1/search` (the console's search box).
    Search,
    /// Graph, explain, devices, households, history.
    Views,
    /// `GET /v1/changes`: the change feed (what changed in the identity graph, with
    /// identifier values shown as the role shows them).
    Changes,
    /// Audiences: define, list, estimate, members (masked as the role shows profiles).
    Audiences,
    /// `GET /v1/stats`: the dashboard's aggregates (counts only, no person).
    Stats,
    /// Links, identifiers, erasure, suppression, audit.
    Admin,
    /// `/v1/tenants`: create, list, suspend and delete tenants, their keys and quotas
    /// (the deployment's operator; no tenant's data).
    Tenants,
}

impl Permission {
    /// Every permission (the role table and the matrix test walk them).
    pub const ALL: [Permission; 10] = [
        Permission::Ingest,
        Permission::Lookup,
        Permission::ReadProfile,
        Permission::Search,
        Permission::Views,
        Permission::Changes,
        Permission::Audiences,
        Permission::Stats,
        Permission::Admin,
        Permission::Tenants,
    ];
}

/// A key's role: the permissions it grants and how personal values are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Writes events, reads nothing.
    Ingest,
    /// Other services: lookups by identifier and full golden profiles.
    Service,
    /// Support agents: search and the console, personal values masked unless `unmask`.
    Agent,
    /// Analysts: graph, household and device views, identifier values pseudonymized.
    Analyst,
    /// Everything of its tenant, including unmerge, erasure and the audit trail.
    Admin,
    /// The deployment's operator: manages tenants (create, list, suspend, delete with
    /// all data, keys, quotas, usage); reads no tenant's data. Belongs to no tenant.
    Operator,
}

impl Role {
    /// Every role, in the order the role table lists them.
    pub const ALL: [Role; 6] = [
        Role::Ingest,
        Role::Service,
        Role::Agent,
        Role::Analyst,
        Role::Admin,
        Role::Operator,
    ];

    pub fn allows(self, p: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Ingest => p == P::Ingest,
            Role::Service => matches!(p, P::Lookup | P::ReadProfile | P::Changes),
            Role::Agent => matches!(p, P::Search | P::ReadProfile | P::Views),
            Role::Analyst => matches!(p, P::Views | P::Changes | P::Audiences | P::Stats),
            Role::Admin => p != P::Tenants,
            Role::Operator => p == P::Tenants,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Service => "service",
            Role::Agent => "agent",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }
}

/// How personal values appear in a key's responses (applied in one place, `mask`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Full,
    /// Emails, phones, addresses and birth dates masked (`j***@example.com`).
    Masked,
    /// Identifier values replaced by stable keyed pseudonyms; traits masked.
    Pseudonymized,
}

/// One configured key (`[[auth.keys]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Who holds it (logged and audited instead of the key).
    pub name: String,
    pub role: Role,
    /// `sha256:<64 hex digits>` of the key.
    pub hash: String,
    /// Agents only: see personal values unmasked.
    #[serde(default)]
    pub unmask: bool,
    /// Requests per second allowed on average.
    #[serde(default = "default_rate")]
    pub rate_per_second: f64,
    /// Requests allowed at once above the rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Row-level scope: when set, the key only sees profiles holding data from one of
    /// these sources (and may only send events from them); every other profile is
    /// invisible to it, in search counts too.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The tenant the key belongs to (default: the default tenant; an operator key
    /// belongs to none and must not name one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

fn default_rate() -> f64 {
    100.0
}

fn default_burst() -> u32 {
    200
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub visibility: Visibility,
    /// The sources the key is limited to (`None`: every profile).
    pub scope: Option<std::collections::BTreeSet<String>>,
    /// The tenant whose data the key reaches (`None`: an operator key, no tenant's).
    pub tenant: Option<String>,
}

impl Caller {
    /// Whether a profile with these sources is visible to the caller.
    pub fn sees<'a>(&self, sources: impl IntoIterator<Item = &'a str>) -> bool {
        match &self.scope {
            None => true,
            Some(scope) => sources.into_iter().any(|s| scope.contains(s)),
        }
    }
}

/// A new random key.
pub fn generate_key() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let body: String = (0..43)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect();
    format!("idg_{body}")
}

/// The configured form of a key's hash.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

struct Entry {
    caller: Caller,
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Denied {
    /// No key, or one that is not configured.
    Unauthenticated,
    /// The key's role does not grant the permission.
    Forbidden { role: Role, permission: Permission },
    /// Over the key's rate; retry after this many seconds.
    RateLimited { retry_after: u64 },
}

/// The keys, by hash: the configured ones and those the operator created for tenants.
/// One ring serves every tenant (a key names its tenant); keys are added and removed
/// while the server runs.
pub struct KeyRing {
    keys: std::sync::RwLock<HashMap<String, std::sync::Arc<Entry>>>,
}

/// The id of the default tenant: the deployment's own data directory, which every key
/// that names no tenant belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// Checks one key's settings (`at` names it in errors) and makes its entry.
fn entry(at: &str, k: &KeySettings) -> Result<(String, Entry), String> {
    if k.name.trim().is_empty() || k.name.len() > 64 || k.name.chars().any(char::is_control) {
        return Err(format!("{at}.name must be 1 to 64 printable characters"));
    }
    let hex = k.hash.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{at}.hash must be \"sha256:\" and 64 hex digits (idgraph keys new prints it)"
        ));
    }
    if !(k.rate_per_second > 0.0 && k.rate_per_second.is_finite()) || k.burst == 0 {
        return Err(format!("{at}: rate_per_second and burst must be positive"));
    }
    if k.unmask && k.role != Role::Agent && k.role != Role::Admin {
        return Err(format!("{at}.unmask only applies to the agent role"));
    }
    let tenant = match (k.role, &k.tenant) {
        (Role::Operator, Some(_)) => {
            return Err(format!(
                "{at}.tenant: an operator key belongs to no tenant (it manages them all)"
            ))
        }
        (Role::Operator, None) => None,
        (_, None) => Some(DEFAULT_TENANT.to_owned()),
        (_, Some(t)) => {
            crate::tenants::validate_id(t).map_err(|e| format!("{at}.tenant: {e}"))?;
            Some(t.clone())
        }
    };
    if k.role == Role::Operator && !k.sources.is_empty() {
        return Err(format!(
            "{at}.sources: an operator key reads no profiles, so it cannot be scoped"
        ));
    }
    let visibility = match (k.role, k.unmask) {
        (Role::Agent, false) => Visibility::Masked,
        (Role::Analyst, _) => Visibility::Pseudonymized,
        _ => Visibility::Full,
    };
    let burst = f64::from(k.burst);
    Ok((
        format!("sha256:{}", hex.to_ascii_lowercase()),
        Entry {
            caller: Caller {
                name: k.name.clone(),
                role: k.role,
                visibility,
                scope: (!k.sources.is_empty()).then(|| k.sources.iter().cloned().collect()),
                tenant,
            },
            rate: k.rate_per_second,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        },
    ))
}

impl KeyRing {
    pub fn new(keys: &[KeySettings]) -> Result<KeyRing, String> {
        let mut map = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, k) in keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            let (hash, e) = entry(&at, k)?;
            if !names.insert(k.name.clone()) {
                return Err(format!("{at}.name {:?} is used twice", k.name));
            }
            map.insert(hash, std::sync::Arc::new(e));
        }
        Ok(KeyRing {
            keys: std::sync::RwLock::new(map),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, std::sync::Arc<Entry>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, std::sync::Arc<Entry>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Adds a key (a tenant's, created by the operator); refused when its name or hash is
    /// taken or its settings are invalid (`at` names it in the error).
    pub fn add(&self, at: &str, k: &KeySettings) -> Result<(), String> {
        let (hash, e) = entry(at, k)?;
        let mut keys = self.write();
        if keys.values().any(|other| other.caller.name == k.name) {
            return Err(format!("{at}.name {:?} is taken", k.name));
        }
        if keys.contains_key(&hash) {
            return Err(format!("{at}: this key is already configured"));
        }
        keys.insert(hash, std::sync::Arc::new(e));
        Ok(())
    }

    /// Removes the key named `name` of `tenant`; whether it was there.
    pub fn remove(&self, tenant: &str, name: &str) -> bool {
        let mut keys = self.write();
        let before = keys.len();
        keys.retain(|_, e| !(e.caller.name == name && e.caller.tenant.as_deref() == Some(tenant)));
        keys.len() != before
    }

    /// Removes every key of `tenant`; how many there were.
    pub fn remove_tenant(&self, tenant: &str) -> usize {
        let mut keys = self.write();
        let before = keys.len();
        keys.retain(|_, e| e.caller.tenant.as_deref() != Some(tenant));
        before - keys.len()
    }

    /// Whether a key is named `name` (names are unique over every tenant: they name the
    /// key in logs and audit entries).
    pub fn has_name(&self, name: &str) -> bool {
        self.read().values().any(|e| e.caller.name == name)
    }

    /// Who holds `key`, if it is configured (to audit refused requests by name).
    pub fn identify(&self, key: Option<&str>) -> Option<Caller> {
        key.and_then(|k| self.read().get(&hash_key(k)).map(|e| e.caller.clone()))
    }

    /// Authenticates `key`, checks `permission` and takes one token of the key's rate.
    pub fn authorize(&self, key: Option<&str>, permission: Permission) -> Result<Caller, Denied> {
        let entry = key
            .and_then(|k| self.read().get(&hash_key(k)).cloned())
            .ok_or(Denied::Unauthenticated)?;
        if !entry.caller.role.allows(permission) {
            return Err(Denied::Forbidden {
                role: entry.caller.role,
                permission,
            });
        }
        let mut b = entry
            .bucket
            .lock()
            .map_err(|_| Denied::RateLimited { retry_after: 1 })?;
        let now = Instant::now();
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * entry.rate).min(entry.burst);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = ((1.0 - b.tokens) / entry.rate).ceil().max(1.0);
            return Err(Denied::RateLimited {
                retry_after: wait as u64,
            });
        }
        b.tokens -= 1.0;
        Ok(entry.caller.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(role: Role, rate: f64, burst: u32) -> (KeyRing, String) {
        let key = generate_key();
        let ring = KeyRing::new(&[KeySettings {
            name: "k".into(),
            role,
            hash: hash_key(&key),
            unmask: false,
            rate_per_second: rate,
            burst,
            sources: Vec::new(),
            tenant: None,
        }])
        .expect("valid key settings");
        (ring, key)
    }

    #[test]
    fn a_key_is_known_by_its_hash_only() {
        let (ring, key) = ring(Role::Service, 100.0, 10);
        assert!(key.starts_with("idg_") && key.len() == 47);
        assert!(ring.authorize(Some(&key), Permission::ReadProfile).is_ok());
        assert_eq!(
            ring.authorize(Some("idg_wrong"), Permission::ReadProfile),
            Err(Denied::Unauthenticated)
        );
        assert_eq!(
            ring.authorize(None, Permission::ReadProfile),
            Err(Denied::Unauthenticated)
        );
        assert!(matches!(
            ring.authorize(Some(&key), Permission::Admin),
            Err(Denied::Forbidden { .. })
        ));
    }

    #[test]
    fn the_burst_then_the_rate_limit_requests() {
        let (ring, key) = ring(Role::Ingest, 0.5, 3);
        for _ in 0..3 {
            assert!(ring.authorize(Some(&key), Permission::Ingest).is_ok());
        }
        assert_eq!(
            ring.authorize(Some(&key), Permission::Ingest),
            Err(Denied::RateLimited { retry_after: 2 })
        );
    }

    #[test]
    fn bad_key_settings_are_refused_with_the_reason() {
        let good = KeySettings {
            name: "a".into(),
            role: Role::Agent,
            hash: hash_key("x"),
            unmask: false,
            rate_per_second: 1.0,
            burst: 1,
            sources: Vec::new(),
            tenant: None,
        };
        let bad_hash = KeySettings {
            hash: "md5:abc".into(),
            ..good.clone()
        };
        assert!(KeyRing::new(&[bad_hash]).err().unwrap().contains("hash"));
        assert!(KeyRing::new(&[good.clone(), good.clone()])
            .err()
            .unwrap()
            .contains("twice"));
        let unmask_service = KeySettings {
            role: Role::Service,
            unmask: true,
            ..good
        };
        assert!(KeyRing::new(&[unmask_service])
            .err()
            .unwrap()
            .contains("unmask"));
    }

    #[test]
    fn roles_grant_what_the_issue_lists() {
        use Permission as P;
        assert!(Role::Ingest.allows(P::Ingest) && !Role::Ingest.allows(P::ReadProfile));
        assert!(Role::Service.allows(P::ReadProfile) && !Role::Service.allows(P::Search));
        assert!(Role::Service.allows(P::Lookup) && !Role::Agent.allows(P::Lookup));
        assert!(Role::Agent.allows(P::Search) && !Role::Agent.allows(P::Admin));
        assert!(Role::Analyst.allows(P::Views) && !Role::Analyst.allows(P::Search));
        assert!(P::ALL
            .iter()
            .all(|p| Role::Admin.allows(*p) == (*p != P::Tenants)));
        assert!(P::ALL
            .iter()
            .all(|p| Role::Operator.allows(*p) == (*p == P::Tenants)));
    }
}
