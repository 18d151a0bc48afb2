//! Encryption at rest (`[encryption]`, `idgraph::crypto`): lookups, search and profile
//! reads work over an encrypted store; no personal value reaches a store file (WAL, SST,
//! backups) in plaintext, while the same scan finds them in a plaintext store; start-up
//! refuses a missing or wrong key-encryption key, a plaintext store with encryption on
//! and an encrypted store with it off (the real binary's exit status and stderr);
//! `idgraph keys rotate-kek` re-wraps the data key so data written before reads with the
//! new KEK alone; destroying the data key (crypto-shredding) leaves the store, its copies
//! and its backups unreadable.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use idgraph::config::Compression;
use idgraph::crypto::{EncryptionSettings, KekSettings};
use idgraph::store::rocks::RocksStore;

use crate::helpers::*;

/// Personal values of the test person, as they are stored after normalization.
pub const EMAIL: &str = "zebulon.quixoteson@example.org";
const PHONE: &str = "+14155550187";
const FIRST: &str = "Zebulon";
const LAST: &str = "Quixoteson";
const STREET: &str = "17 Aardvarkstrasse";
const CITY: &str = "Wolkenkuckucksheim";
const PAYLOAD: &str = "loyalty-card-XK42Q9VV";

pub fn person_event(id: &str) -> Value {
    json!({
        "event_id": id,
        "source": "crm",
        "identifiers": {"email": EMAIL, "phone": PHONE, "customer_id": "crm-Q7Z3X9W1"},
        "traits": {
            "first_name": FIRST,
            "last_name": LAST,
            "dob": "1971-04-23",
            "address": {"street": STREET, "city": CITY, "postal_code": "ZZ9 9ZZ"}
        },
        "properties": {"card": PAYLOAD}
    })
}

/// The values no store file may hold in plaintext.
pub fn needles() -> Vec<&'static str> {
    vec![EMAIL, PHONE, "crm-Q7Z3X9W1", LAST, STREET, CITY, PAYLOAD]
}

/// An owner-only KEK file of 32 bytes as hex in `dir`.
pub fn kek_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{byte:02x}").repeat(32)).expect("write the KEK");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

fn settings_with(kek: &Path) -> EncryptionSettings {
    EncryptionSettings {
        enabled: true,
        kek: KekSettings {
            file: Some(kek.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// An encrypted embedded store in `<dir>/data` (KEK in `<dir>/kek`) with a small record
/// cache (1 MiB): the store contract runs on it.
pub fn encrypted_store(dir: &Path) -> RocksStore {
    encrypted_store_in(dir, "data")
}

/// An encrypted embedded store in `<dir>/<name>` under the data key of `<dir>/data`
/// (made if missing), with a 1 MiB record cache: a replica holds its writer's key.
pub fn encrypted_store_in(dir: &Path, name: &str) -> RocksStore {
    let kek = kek_file(dir, "kek", 0x5a);
    let cipher = idgraph::crypto::store_cipher(&settings_with(&kek), &dir.join("data"))
        .expect("data key")
        .expect("encryption is on");
    RocksStore::open_with_cache(&dir.join(name), 64, Compression::default(), Some(cipher))
        .and_then(|s| s.with_record_cache(1 << 20))
        .expect("open the encrypted store")
}

/// Every hit outside `<data_dir>/search` (the search index holds words by design).
fn outside_search(data_dir: &Path, hits: Vec<(PathBuf, String)>) -> Vec<(PathBuf, String)> {
    let search = data_dir.join("search");
    hits.into_iter()
        .filter(|(p, _)| !p.starts_with(&search))
        .collect()
}

fn copy_dir(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let name = entry.file_name();
        if skip.iter().any(|s| name == std::ffi::OsStr::new(s)) {
            continue;
        }
        let target = to.join(&name);
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// `idgraph serve` that must not start: waits for its exit (at most a minute), asserts
/// it failed, returns its stderr.
pub fn refused_start(data_dir: &Path, env: &[(&str, String)]) -> String {
    refused_run(&["serve"], data_dir, env)
}

/// `idgraph <args>` (a server: `serve`, `replica --follow URL`) that must not start, as
/// [`refused_start`].
pub fn refused_run(args: &[&str], data_dir: &Path, env: &[(&str, String)]) -> String {
    use std::io::Read;
    let mut child = idgraph_command()
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:0"])
        .envs([test_keys_env()])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start idgraph");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("idgraph {args:?} started (or hung) where it must refuse to start");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "start-up must fail; stderr:\n{stderr}");
    stderr
}

pub fn enc_env(kek: &Path) -> Vec<(String, String)> {
    vec![
        ("IDGRAPH_ENCRYPTION__ENABLED".into(), "true".into()),
        (
            "IDGRAPH_ENCRYPTION__KEK__FILE".into(),
            kek.display().to_string(),
        ),
    ]
}

pub fn borrowed(env: &[(String, String)]) -> Vec<(&str, String)> {
    env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

async fn lookup_at(base: &str, kind: &str, value: &str) -> (u16, Value) {
    let client = http_client();
    let resp = client
        .get(format!("{base}/v1/lookup"))
        .query(&[("kind", kind), ("value", value)])
        .send()
        .await
        .expect("GET /v1/lookup");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_store_answers_lookups_search_and_profiles_and_its_files_hold_no_plaintext() {
    let keys = tempfile::tempdir().expect("tmp");
    let kek = kek_file(keys.path(), "kek", 0x11);
    let app = spawn_app_with(|s| {
        s.encryption = settings_with(&kek);
        s.matching.enabled = true;
    })
    .await;
    let p = app.ingest_pid(&person_event("enc-1")).await;
    app.ingest(&person_event("enc-2")).await;
    app.ingest(&event(
        "enc-3",
        "web",
        json!({"email": EMAIL, "cookie_id": "ck-99887766"}),
        json!({"first_name": FIRST}),
    ))
    .await;

    // Reads over HTTP: lookup by each identifier, the profile, search by name and email.
    for (kind, value) in [
        ("email", EMAIL),
        ("phone", PHONE),
        ("cookie_id", "ck-99887766"),
    ] {
        let found = json_ok(app.lookup(kind, value).await).await;
        assert_eq!(pid(&found), p, "lookup {kind}");
    }
    let profile = app.profile(&p).await;
    let text = profile.to_string();
    for v in [EMAIL, FIRST, LAST, CITY] {
        assert!(text.contains(v), "the profile shows {v}: {text}");
    }
    let history = json_ok(app.get(&format!("/v1/profiles/{p}/history")).await).await;
    assert!(!history.to_string().is_empty());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let hits = json_ok(
            app.get_query("/v1/search", &[("q", &format!("{FIRST} {LAST}"))])
                .await,
        )
        .await;
        if hits["hits"].as_array().is_some_and(|h| {
            h.iter()
                .any(|hit| hit["profile_id"].as_str() == Some(p.as_str()))
        }) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "search never found the person: {hits}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The person's events carry their payload back (subject access reads them all).
    let access = json_ok(
        app.client
            .post(app.url("/v1/subject-access"))
            .json(&json!({"identifier": format!("email:{EMAIL}")}))
            .send()
            .await
            .expect("POST /v1/subject-access"),
    )
    .await;
    assert!(access.to_string().contains(PAYLOAD), "{access}");

    // The write-ahead log and memtables first (nothing flushed yet): no plaintext.
    let dir = app.data_dir().to_owned();
    let hits = outside_search(&dir, files_holding(&dir, &needles()));
    assert!(
        hits.is_empty(),
        "plaintext in store files before a flush: {hits:?}"
    );
    // Flushed and compacted into SST files (and a backup): still none.
    app.engine.store().compact().expect("flush and compact");
    let backups = tempfile::tempdir().expect("tmp");
    let made = json_ok(
        app.client
            .post(app.url("/v1/admin/backup"))
            .json(&json!({"to": backups.path()}))
            .send()
            .await
            .expect("POST /v1/admin/backup"),
    )
    .await;
    assert!(made["id"].as_u64().is_some(), "{made}");
    let hits = outside_search(&dir, files_holding(&dir, &needles()));
    assert!(
        hits.is_empty(),
        "plaintext in store files after compaction: {hits:?}"
    );
    let hits = files_holding(backups.path(), &needles());
    assert!(hits.is_empty(), "plaintext in the backup: {hits:?}");
    assert!(
        files_holding(backups.path(), &["\"wrapped\""]).is_empty()
            && !backups
                .path()
                .join("files/1/data")
                .join("data-key.json")
                .exists(),
        "a backup never holds the data key"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o700,
            "the data directory (search index, key file) is owner-only"
        );
    }
}

/// The control: the same scan finds the values in a store written without encryption,
/// so the scan above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_scan_finds_plaintext_in_an_unencrypted_store() {
    let app = spawn_app().await;
    app.ingest(&person_event("plain-1")).await;
    let dir = app.data_dir().to_owned();
    let hits = outside_search(&dir, files_holding(&dir, &needles()));
    let found: std::collections::BTreeSet<&str> = hits.iter().map(|(_, n)| n.as_str()).collect();
    for n in [EMAIL, STREET, PAYLOAD] {
        assert!(
            found.contains(n),
            "{n} not found in a plaintext store: {hits:?}"
        );
    }
}

#[test]
fn start_up_refuses_a_missing_or_wrong_kek_and_a_store_of_the_other_kind() {
    let root = tempfile::tempdir().expect("tmp");
    let kek = kek_file(root.path(), "kek", 0x21);
    let wrong = kek_file(root.path(), "wrong", 0x22);

    // Encryption on without a KEK: stops naming the settings, creates no store.
    let fresh = root.path().join("fresh");
    let err = refused_start(&fresh, &[("IDGRAPH_ENCRYPTION__ENABLED", "true".into())]);
    assert!(err.contains("encryption.kek.file"), "{err}");
    assert!(
        !fresh.join("CURRENT").exists(),
        "no store was created in plaintext"
    );
    // A KEK file others can read.
    let open = kek_file(root.path(), "open", 0x23);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = refused_start(&fresh, &borrowed(&enc_env(&open)));
        assert!(err.contains("owner-only"), "{err}");
    }
    // An environment variable that is not set.
    let err = refused_start(
        &fresh,
        &[
            ("IDGRAPH_ENCRYPTION__ENABLED", "true".into()),
            ("IDGRAPH_ENCRYPTION__KEK__ENV", "IDGRAPH_KEK".into()),
        ],
    );
    assert!(
        err.contains("IDGRAPH_KEK") && err.contains("not set"),
        "{err}"
    );
    assert!(!fresh.join("CURRENT").exists());

    // An encrypted store: written with the right KEK...
    let enc = root.path().join("enc");
    let mut server = ServeProcess::start_with_env(&enc, &enc_env(&kek));
    server.terminate();
    assert!(enc.join("data-key.json").is_file());
    // ...refused with the wrong one, and with encryption off.
    let err = refused_start(&enc, &borrowed(&enc_env(&wrong)));
    assert!(err.contains("wrong key-encryption key"), "{err}");
    let err = refused_start(&enc, &[]);
    assert!(err.contains("encryption.enabled is false"), "{err}");
    // The data key of another store: refused by the store's own record of its key.
    let other = root.path().join("other");
    let mut server = ServeProcess::start_with_env(&other, &enc_env(&kek));
    server.terminate();
    std::fs::copy(other.join("data-key.json"), enc.join("data-key.json")).expect("swap keys");
    let err = refused_start(&enc, &borrowed(&enc_env(&kek)));
    assert!(err.contains("not the key of the store"), "{err}");

    // A plaintext store with encryption turned on: refused, and left as it was.
    let plain = root.path().join("plain");
    let mut server = ServeProcess::start(&plain);
    server.terminate();
    let err = refused_start(&plain, &borrowed(&enc_env(&kek)));
    assert!(err.contains("written without encryption"), "{err}");
    assert!(!plain.join("data-key.json").exists());
    let mut server = ServeProcess::start(&plain);
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_kek_keeps_every_record_readable_with_the_new_kek_alone() {
    let root = tempfile::tempdir().expect("tmp");
    let data = root.path().join("data");
    let old_hex = "31".repeat(32);
    let new = kek_file(root.path(), "new", 0x32);
    let old_env = vec![
        ("IDGRAPH_ENCRYPTION__ENABLED".to_owned(), "true".to_owned()),
        (
            "IDGRAPH_ENCRYPTION__KEK__ENV".to_owned(),
            "IDGRAPH_KEK".to_owned(),
        ),
        ("IDGRAPH_KEK".to_owned(), old_hex.clone()),
    ];
    let mut server = ServeProcess::start_with_env(&data, &old_env);
    let client = http_client();
    let (status, body) = post_json(&client, &server.url("/v1/events"), &person_event("r-1")).await;
    assert_eq!(status, 200, "{body}");
    let (_, before) = lookup_at(&server.address, "email", EMAIL).await;
    server.terminate();

    let out = idgraph_command()
        .args(["keys", "rotate-kek", "--data-dir"])
        .arg(&data)
        .arg("--new-file")
        .arg(&new)
        .envs(old_env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("run rotate-kek");
    assert_succeeded(&out, "idgraph keys rotate-kek");
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-wrapped data key"));

    let mut server = ServeProcess::start_with_env(&data, &enc_env(&new));
    let (status, after) = lookup_at(&server.address, "email", EMAIL).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["profile_id"], before["profile_id"]);
    assert_eq!(
        after.to_string(),
        before.to_string(),
        "the same golden profile reads back"
    );
    server.terminate();
    let err = refused_start(&data, &borrowed(&old_env));
    assert!(
        err.contains("wrong key-encryption key"),
        "the old KEK no longer opens it: {err}"
    );

    // Offline readers open the store through the same checks: `idgraph export` reads
    // the identifiers back with the KEK, and refuses without encryption settings.
    let export = |env: &[(String, String)], to: &str| {
        idgraph_command()
            .args(["export", "identifiers", "--format", "jsonl", "--out"])
            .arg(root.path().join(to))
            .arg("--data-dir")
            .arg(&data)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run idgraph export")
    };
    let out = export(&enc_env(&new), "out");
    assert_succeeded(&out, "idgraph export of an encrypted store");
    let mut exported = String::new();
    for entry in std::fs::read_dir(root.path().join("out"))
        .expect("export dir")
        .flatten()
    {
        exported.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(
        exported.contains(EMAIL),
        "the export holds the identifiers: {exported}"
    );
    let out = export(&[], "plain-out");
    assert!(
        !out.status.success(),
        "an encrypted store is never read as plaintext"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encryption.enabled is false"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroying_the_data_key_shreds_the_store_its_copies_and_its_backups() {
    let root = tempfile::tempdir().expect("tmp");
    let kek = kek_file(root.path(), "kek", 0x41);
    let data = root.path().join("data");
    let backups = root.path().join("backups");
    let mut server = ServeProcess::start_with_env(&data, &enc_env(&kek));
    let client = http_client();
    for id in ["s-1", "s-2"] {
        let (status, body) = post_json(&client, &server.url("/v1/events"), &person_event(id)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = post_json(
        &client,
        &server.url("/v1/admin/backup"),
        &json!({"to": backups}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server.terminate();
    // An old copy of the store's files (what a disk image or a file backup would hold).
    let copy = root.path().join("copy");
    copy_dir(&data, &copy, &["data-key.json", "search"]);

    // While the key exists, the backup restores (with the key file put in place first).
    let restored = root.path().join("restored");
    std::fs::create_dir_all(&restored).expect("mkdir");
    std::fs::copy(data.join("data-key.json"), restored.join("data-key.json")).expect("key");
    let out = idgraph_command()
        .args(["restore", "--from"])
        .arg(&backups)
        .arg("--data-dir")
        .arg(&restored)
        .envs(enc_env(&kek))
        .output()
        .expect("restore");
    assert_succeeded(&out, "idgraph restore of an encrypted backup");
    let mut server = ServeProcess::start_with_env(&restored, &enc_env(&kek));
    let (status, found) = lookup_at(&server.address, "email", EMAIL).await;
    assert_eq!(status, 200, "the restored store reads: {found}");
    server.terminate();
    idgraph::crypto::destroy_data_key(&restored).expect("destroy the restored copy's key");

    // Crypto-shredding.
    assert!(idgraph::crypto::destroy_data_key(&data).expect("destroy"));
    assert!(!data.join("data-key.json").exists());
    for dir in [&data, &copy, &backups, &restored] {
        let hits = outside_search(dir, files_holding(dir, &needles()));
        assert!(hits.is_empty(), "plaintext in {}: {hits:?}", dir.display());
    }
    let err = refused_start(&data, &borrowed(&enc_env(&kek)));
    assert!(
        err.contains("no data key") && err.contains("destroyed"),
        "{err}"
    );
    let err = refused_start(&copy, &borrowed(&enc_env(&kek)));
    assert!(err.contains("no data key"), "{err}");
    // Read as plaintext, bypassing the engine: refused, never decoded.
    let raw = RocksStore::open_read_only(&copy, None)
        .err()
        .expect("refused");
    assert!(raw.to_string().contains("is encrypted"), "{raw}");
    // And the backup restores into nothing readable.
    let again = root.path().join("again");
    let out = idgraph_command()
        .args(["restore", "--from"])
        .arg(&backups)
        .arg("--data-dir")
        .arg(&again)
        .envs(enc_env(&kek))
        .output()
        .expect("restore");
    assert!(!out.status.success(), "a shredded backup must not restore");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no data key"), "{err}");
}

/// Deleting a tenant destroys its data key: an old copy of its files and of its backup,
/// taken before the deletion, hold no plaintext and cannot be opened or restored with the
/// deployment's KEK.
#[tokio::test]
async fn deleting_a_tenant_shreds_its_data_key_so_old_copies_and_backups_stay_unreadable() {
    let root = tempfile::tempdir().expect("tmp");
    let kek = kek_file(root.path(), "kek", 0x33);
    let data = root.path().join("data");
    let backups = root.path().join("backups");
    let mut env = enc_env(&kek);
    env.push(("IDGRAPH_BACKUP__DIR".into(), backups.display().to_string()));
    let mut server = ServeProcess::start_with_env(&data, &env);
    let client = http_client();
    let op = format!("Bearer {}", key_of("test-operator"));
    let created: Value = client
        .post(server.url("/v1/tenants"))
        .header("authorization", &op)
        .json(&json!({"id": "shred"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let key = created["admin_key"]["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let bearer = format!("Bearer {key}");
    for id in ["t-1", "t-2"] {
        let resp = client
            .post(server.url("/v1/events"))
            .header("authorization", &bearer)
            .json(&person_event(id))
            .send()
            .await
            .expect("ingest");
        assert_eq!(resp.status(), 200);
    }
    let resp = client
        .post(server.url("/v1/admin/backup"))
        .header("authorization", &bearer)
        .json(&json!({}))
        .send()
        .await
        .expect("backup");
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    let tenant_dir = data.join("tenants/shred");
    assert!(
        idgraph::crypto::data_key_path(&tenant_dir).exists(),
        "the tenant has its own data key"
    );
    assert_ne!(
        std::fs::read(idgraph::crypto::data_key_path(&tenant_dir)).expect("tenant key"),
        std::fs::read(idgraph::crypto::data_key_path(&data)).expect("default key"),
        "each tenant's data key is its own"
    );
    // Old copies of its files and its backup (what an off-site copy would hold).
    let copy = root.path().join("copy");
    copy_dir(&tenant_dir, &copy, &["data-key.json", "search"]);
    let backup_copy = root.path().join("backup-copy");
    copy_dir(&backups.join("tenants/shred"), &backup_copy, &[]);

    // The key never leaves the tenant's directory: not in its backup.
    assert!(files_named(&backup_copy, "data-key.json").is_empty());
    // While the key exists, the backup copy restores (the key file put in place first).
    let restored = root.path().join("restored");
    std::fs::create_dir_all(&restored).expect("mkdir");
    std::fs::copy(
        idgraph::crypto::data_key_path(&tenant_dir),
        idgraph::crypto::data_key_path(&restored),
    )
    .expect("key");
    let out = idgraph_command()
        .args(["restore", "--from"])
        .arg(&backup_copy)
        .arg("--data-dir")
        .arg(&restored)
        .envs(enc_env(&kek))
        .output()
        .expect("restore");
    assert_succeeded(&out, "restoring the tenant's backup while its key exists");
    idgraph::crypto::destroy_data_key(&restored).expect("destroy the restored copy's key");

    let resp = client
        .delete(server.url("/v1/tenants/shred"))
        .header("authorization", &op)
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), 200);
    assert!(!tenant_dir.exists() && !backups.join("tenants/shred").exists());
    // No data key of the tenant is left anywhere under the deployment's directories.
    let left: Vec<PathBuf> = files_named(&data, "data-key.json")
        .into_iter()
        .chain(files_named(&backups, "data-key.json"))
        .collect();
    assert_eq!(
        left,
        vec![idgraph::crypto::data_key_path(&data)],
        "only the default tenant's key"
    );
    server.terminate();

    for dir in [&copy, &backup_copy] {
        let hits = files_holding(dir, &needles());
        assert!(hits.is_empty(), "plaintext in {}: {hits:?}", dir.display());
    }
    let err = refused_start(&copy, &borrowed(&enc_env(&kek)));
    assert!(err.contains("no data key"), "{err}");
    let again = root.path().join("again");
    let out = idgraph_command()
        .args(["restore", "--from"])
        .arg(&backup_copy)
        .arg("--data-dir")
        .arg(&again)
        .envs(enc_env(&kek))
        .output()
        .expect("restore");
    assert!(
        !out.status.success(),
        "a shredded tenant's backup must not restore"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no data key"));
}

/// Every file named `name` under `root`.
fn files_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name() == std::ffi::OsStr::new(name) {
                found.push(path);
            }
        }
    }
    found
}

/// Settings of an engine over the encrypted store in `dir` (KEK file `kek`), compressing
/// values before sealing them or not (`encryption.compress`).
fn engine_settings(dir: &Path, kek: &Path, compress: bool) -> idgraph::config::Settings {
    let mut s = idgraph::config::Settings::default();
    s.storage.data_dir = dir.to_owned();
    s.encryption = settings_with(kek);
    s.encryption.compress = compress;
    s
}

/// Person `i` of a crowd: an email, a phone, a customer id and a name; two events each.
fn crowd_events(n: usize) -> Vec<Value> {
    const FIRST_NAMES: [&str; 8] = [
        "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Niklaus",
    ];
    const LAST_NAMES: [&str; 6] = [
        "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth",
    ];
    (0..n)
        .flat_map(|i| {
            let email = format!("crowd.person{i}@mail{}.example.net", i % 7);
            let first = FIRST_NAMES[i % FIRST_NAMES.len()];
            let last = LAST_NAMES[i % LAST_NAMES.len()];
            let source = ["web", "crm", "pos"][i % 3];
            let city = ["Lyon", "Porto", "Graz"][i % 3];
            [
                json!({
                    "event_id": format!("crowd-{i}-a"),
                    "source": source,
                    "identifiers": {"email": email, "customer_id": format!("CUST-{i:07}")},
                    "traits": {"first_name": first, "last_name": last,
                               "address": {"city": city}},
                }),
                json!({
                    "event_id": format!("crowd-{i}-b"),
                    "source": "mobile",
                    "identifiers": {"email": email, "phone": format!("+1415555{:04}", i % 10_000),
                                    "cookie_id": format!("ck-{i:010}")},
                }),
            ]
        })
        .collect()
}

/// Values are compressed before sealing with dictionaries trained on the store's own
/// values: the same events take far fewer bytes than with `encryption.compress = false`,
/// every value reads back (after a restart, where the dictionaries come from the store,
/// and with compression turned off later), and the dictionaries, which hold fragments of
/// personal values, are never in a file in plaintext.
#[test]
fn compressed_values_shrink_an_encrypted_store_and_read_back_after_a_restart() {
    let keys = tempfile::tempdir().expect("tmp");
    let kek = kek_file(keys.path(), "kek", 0x21);
    let (packed_dir, unpacked_dir) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    const PEOPLE: usize = 3_000;
    let events = crowd_events(PEOPLE);
    let ingest = |engine: &idgraph::engine::Engine, events: &[Value]| {
        let normalized = events
            .iter()
            .map(|e| engine.validate(e).expect("valid test event"))
            .collect();
        engine.ingest(normalized).expect("ingest");
    };
    let person = |engine: &idgraph::engine::Engine, i: usize| -> Value {
        engine
            .lookup(
                "email",
                &format!("crowd.person{i}@mail{}.example.net", i % 7),
            )
            .expect("lookup")
    };
    let mut sizes = Vec::new();
    for (dir, compress) in [(packed_dir.path(), true), (unpacked_dir.path(), false)] {
        let engine = idgraph::engine::Engine::open(engine_settings(dir, &kek, compress))
            .expect("open the encrypted engine");
        for chunk in events.chunks(250) {
            ingest(&engine, chunk);
        }
        engine.store().compact().expect("flush and compact");
        sizes.push(sst_bytes(dir));
        let p = person(&engine, 17);
        assert_eq!(p["identifiers"]["customer_id"][0], "CUST-0000017", "{p}");
    }
    let (packed, unpacked) = (sizes[0], sizes[1]);
    assert!(
        packed * 10 < unpacked * 7,
        "compressed values take at least 30% fewer bytes: {packed} against {unpacked}"
    );

    // Reopened, with compression on and then off: every value reads back.
    for compress in [true, false] {
        let engine =
            idgraph::engine::Engine::open(engine_settings(packed_dir.path(), &kek, compress))
                .expect("reopen the encrypted engine");
        for i in [0, 17, 1_234, PEOPLE - 1] {
            let p = person(&engine, i);
            assert_eq!(
                p["identifiers"]["customer_id"][0],
                format!("CUST-{i:07}"),
                "person {i} after a restart (compress = {compress}): {p}"
            );
            assert_eq!(
                p["identifiers"]["cookie_id"][0],
                format!("ck-{i:010}"),
                "{p}"
            );
        }
        let more = crowd_events(PEOPLE + 20)[2 * PEOPLE..].to_vec();
        ingest(&engine, &more);
        let p = person(&engine, PEOPLE + 19);
        assert_eq!(
            p["identifiers"]["customer_id"][0],
            format!("CUST-{:07}", PEOPLE + 19)
        );
    }

    // No personal value in any file: not in the values, not in the dictionaries.
    let needles: Vec<String> = (0..40)
        .flat_map(|i| {
            [
                format!("crowd.person{i}@mail{}.example.net", i % 7),
                format!("CUST-{i:07}"),
            ]
        })
        .chain(["example.net".to_owned(), "Dijkstra".to_owned()])
        .collect();
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let hits = outside_search(
        packed_dir.path(),
        files_holding(packed_dir.path(), &needles),
    );
    assert!(
        hits.is_empty(),
        "plaintext in an encrypted store's files: {hits:?}"
    );
}
