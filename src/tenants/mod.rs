//! Tenants: isolated identity graphs served by one deployment.
//!
//! A tenant is a whole engine over its own directory: the default tenant is the
//! deployment's `storage.data_dir` itself (so a single-tenant configuration is unchanged),
//! every other tenant lives in `<data_dir>/tenants/<id>/` with its own store, search index,
//! suppression list, governance secret, audit log, change feed, audiences, rules and
//! matching model. Nothing is shared below the HTTP edge, so no read, write or derived
//! answer can cross tenants; the edge picks a request's engine from its key's tenant
//! (`serve::tenants`).
//!
//! This module is the part without transport: ids, the registry of tenants
//! (`<data_dir>/tenants/registry.json`), quotas and the settings a tenant runs with.
//! [`usage`] counts what each tenant uses and enforces its quotas.

pub mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Settings;
use crate::governance::keys::{KeySettings, DEFAULT_TENANT};

/// The longest tenant id.
pub const MAX_ID_LEN: usize = 32;

/// Checks a tenant id: 1 to 32 of lowercase ASCII letters, digits and `-`, starting with a
/// letter or digit and not ending with `-` (it names a directory and a metrics label).
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if id.is_empty() || id.len() > MAX_ID_LEN || !ok_chars {
        return Err(format!(
            "a tenant id is 1 to {MAX_ID_LEN} lowercase letters, digits and '-'"
        ));
    }
    if id.starts_with('-') || id.ends_with('-') {
        return Err("a tenant id starts and ends with a letter or digit".into());
    }
    Ok(())
}

/// What a tenant may use. `None`: no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Events accepted per UTC day; past it ingest answers 429 `quota_exceeded`.
    #[serde(default)]
    pub events_per_day: Option<u64>,
    /// Live profiles; once the tenant holds this many, ingest answers 429 until profiles
    /// are erased or the quota is raised.
    #[serde(default)]
    pub profiles: Option<u64>,
}

/// Whether a tenant's keys are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Active,
    /// Every key of the tenant gets 403 `tenant_suspended`; its data is kept.
    Suspended {
        since: String,
        reason: String,
    },
    /// Being deleted: a start-up finds this and finishes the deletion.
    Deleting,
}

/// The sections of the settings a tenant may set for itself (over the deployment's).
pub const TENANT_SECTIONS: [&str; 8] = [
    "identifiers",
    "sources",
    "rules",
    "blocklist",
    "survivorship",
    "households",
    "matching",
    "consent",
];

/// One tenant as the registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRecord {
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    pub status: Status,
    #[serde(default)]
    pub quotas: Quotas,
    /// The tenant's own settings: a JSON object of [`TENANT_SECTIONS`] over the
    /// deployment's settings.
    #[serde(default)]
    pub settings: serde_json::Map<String, Value>,
    /// The tenant's keys (hashes only), created by the operator.
    #[serde(default)]
    pub keys: Vec<KeySettings>,
}

/// The tenants of a deployment, kept in `<data_dir>/tenants/registry.json` (written to a
/// temporary file, fsync'd and renamed, so a crash leaves the old or the new registry).
#[derive(Debug)]
pub struct Registry {
    path: PathBuf,
    pub records: BTreeMap<String, TenantRecord>,
}

#[derive(Serialize, Deserialize)]
struct RegistryFile {
    format_version: u32,
    tenants: Vec<TenantRecord>,
}

impl Registry {
    /// Reads the registry of the deployment in `data_dir` (empty when there is none).
    pub fn open(data_dir: &Path) -> Result<Registry, String> {
        let path = data_dir.join("tenants").join("registry.json");
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: RegistryFile = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{} is not a tenant registry: {e}", path.display()))?;
                if file.format_version != 1 {
                    return Err(format!(
                        "{}: format_version {} is not supported (1 is)",
                        path.display(),
                        file.format_version
                    ));
                }
                file.tenants
                    .into_iter()
                    .map(|t| (t.id.clone(), t))
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Registry { path, records })
    }

    /// Writes the registry durably.
    pub fn save(&self) -> Result<(), String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let file = RegistryFile {
            format_version: 1,
            tenants: self.records.values().cloned().collect(),
        };
        crate::webhooks::save_json(&self.path, &file)
    }
}

/// Creates `dir` (and its parents) readable by the owner only.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The directory of tenant `id` in the deployment's `data_dir`.
pub fn tenant_dir(data_dir: &Path, id: &str) -> PathBuf {
    if id == DEFAULT_TENANT {
        data_dir.to_path_buf()
    } else {
        data_dir.join("tenants").join(id)
    }
}

/// The settings tenant `id` runs with: the deployment's, over its own directory and with
/// its own governance secret and matching model, without the deployment's sinks and
/// sources (webhooks, Kafka, destinations, replication belong to the default tenant),
/// and with the tenant's own sections ([`TENANT_SECTIONS`]) merged over them.
pub fn tenant_settings(
    base: &Settings,
    id: &str,
    own: &serde_json::Map<String, Value>,
) -> Result<Settings, String> {
    let mut s = base.clone();
    s.storage.data_dir = tenant_dir(&base.storage.data_dir, id);
    s.auth.secret = Default::default();
    s.auth.keys = Vec::new();
    s.webhooks = Vec::new();
    s.destinations = Vec::new();
    s.feed.kafka = None;
    s.ingest.kafka = None;
    s.replication = Default::default();
    s.replica = Default::default();
    s.matching.model = None;
    s.backup.dir = base.backup.dir.as_ref().map(|d| d.join("tenants").join(id));
    if own.is_empty() {
        return Ok(s);
    }
    for (section, v) in own {
        if !TENANT_SECTIONS.contains(&section.as_str()) {
            return Err(format!(
                "settings.{section}: a tenant may set only {}",
                TENANT_SECTIONS.join(", ")
            ));
        }
        if !v.is_object() {
            return Err(format!("settings.{section} must be an object"));
        }
        if section == "matching" && v.get("model").is_some() {
            return Err(
                "settings.matching.model: a tenant's model is its own directory's matching-model.json (idgraph train writes it)".into(),
            );
        }
    }
    let mut tree = serde_json::to_value(&s).map_err(|e| e.to_string())?;
    for (section, v) in own {
        if let Some(slot) = tree.get_mut(section) {
            merge(slot, v);
        }
    }
    serde_json::from_value::<Settings>(tree).map_err(|e| format!("settings: {e}"))
}

/// Deep-merges `over` into `base` (objects key by key; anything else replaced).
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_short_lowercase_names() {
        for good in ["acme", "a", "brand-2", "0x", &"a".repeat(32)] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Acme",
            "acme corp",
            "../etc",
            "a/b",
            "-acme",
            "acme-",
            "ac_me",
            "é",
            &"a".repeat(33),
        ] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_runs_in_its_own_directory_without_the_deployments_sinks() {
        let mut base = Settings::default();
        base.storage.data_dir = PathBuf::from("/data");
        base.auth.secret = crate::config::Secret::new("a deployment secret, long enough");
        base.backup.dir = Some(PathBuf::from("/backups"));
        let own: serde_json::Map<String, Value> = serde_json::from_value(serde_json::json!({
            "rules": {"limits": {"email": 3}},
            "matching": {"threshold": 0.97}
        }))
        .unwrap();
        let s = tenant_settings(&base, "acme", &own).unwrap();
        assert_eq!(s.storage.data_dir, PathBuf::from("/data/tenants/acme"));
        assert_eq!(s.auth.secret.expose(), "");
        assert_eq!(s.backup.dir, Some(PathBuf::from("/backups/tenants/acme")));
        assert_eq!(s.rules.limits.get("email"), Some(&3));
        assert!((s.matching.threshold - 0.97).abs() < 1e-9);
        // Untouched sections keep the deployment's values.
        assert_eq!(s.survivorship, base.survivorship);
        let d = tenant_settings(&base, DEFAULT_TENANT, &Default::default()).unwrap();
        assert_eq!(d.storage.data_dir, PathBuf::from("/data"));

        for (bad, named) in [
            (
                serde_json::json!({"server": {"bind": "0.0.0.0:1"}}),
                "settings.server",
            ),
            (serde_json::json!({"rules": 3}), "settings.rules"),
            (serde_json::json!({"rules": {"nope": 1}}), "nope"),
            (
                serde_json::json!({"matching": {"model": "/etc/passwd"}}),
                "settings.matching.model",
            ),
        ] {
            let own: serde_json::Map<String, Value> = serde_json::from_value(bad).unwrap();
            let e = tenant_settings(&base, "acme", &own).unwrap_err();
            assert!(e.contains(named), "{e}");
        }
    }

    #[test]
    fn the_registry_round_trips_durably() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Registry::open(dir.path()).unwrap();
        assert!(r.records.is_empty());
        r.records.insert(
            "acme".into(),
            TenantRecord {
                id: "acme".into(),
                created_at: "2026-12-06T00:00:00Z".into(),
                status: Status::Suspended {
                    since: "2026-12-06T01:00:00Z".into(),
                    reason: "unpaid".into(),
                },
                quotas: Quotas {
                    events_per_day: Some(10),
                    profiles: None,
                },
                settings: Default::default(),
                keys: Vec::new(),
            },
        );
        r.save().unwrap();
        let again = Registry::open(dir.path()).unwrap();
        assert_eq!(again.records, r.records);
        std::fs::write(dir.path().join("tenants/registry.json"), b"{").unwrap();
        assert!(Registry::open(dir.path())
            .unwrap_err()
            .contains("not a tenant registry"));
    }
}
