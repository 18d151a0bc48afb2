//! Audience destinations over HTTP: a signed webhook receiver that fails at first
//! (`tests/support/webhook_receiver.py`), CSV and Parquet files for ad platforms, with
//! hashed identifiers normalized per platform and only the allowed fields; incremental
//! enters, updates and exits (after a merge and an erasure too) whose replay equals the
//! audience, retries that lose nothing, audit entries, `/metrics` and a resync that
//! delivers nothing twice. (The Kafka destination is tested in `kafka.rs`, against the
//! real broker.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use idgraph::config::{DestinationFile, DestinationSettings, DestinationWebhook, Secret};
use idgraph::destinations::rows::{FileFormat, Preset};
use idgraph::ingest::identifier::sha256_hex;
use serde_json::{json, Value};

use crate::helpers::{assert_error, event, json_ok, spawn_app_with, TestApp};
use crate::webhooks::{eventually, receiver, SECRET};

fn person(id: &str, ids: Value, tier: &str, consent: Value) -> Value {
    let mut ev = event(
        id,
        "crm",
        ids,
        json!({ "tier": tier, "first_name": "Zed", "address": { "country": "us", "postal_code": "60601" } }),
    );
    ev["consent"] = consent;
    ev
}

async fn define(app: &TestApp, id: &str, filter: &str, destinations: &[&str]) {
    let resp = app
        .client
        .post(app.url("/v1/audiences"))
        .json(&json!({
            "id": id, "filter": filter, "purpose": "marketing_email",
            "destinations": destinations,
        }))
        .send()
        .await
        .expect("POST /v1/audiences");
    assert_eq!(resp.status().as_u16(), 201, "{:?}", resp.text().await);
    for _ in 0..300 {
        let v = json_ok(app.get(&format!("/v1/audiences/{id}")).await).await;
        if v["status"] == "ready" {
            assert_eq!(v["destinations"], json!(destinations), "{v}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("audience {id} never became ready");
}

/// The email hashes of each current member of `audience` (the admin sees plain values).
async fn member_hashes(app: &TestApp, audience: &str) -> BTreeSet<BTreeSet<String>> {
    let page = json_ok(
        app.get(&format!("/v1/audiences/{audience}/members?limit=1000"))
            .await,
    )
    .await;
    page["members"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            m["identifiers"]["email"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|e| e.as_str().map(sha256_hex))
                .collect()
        })
        .collect()
}

fn hashes(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|h| h.as_str().map(str::to_owned))
        .collect()
}

/// Members as the deliveries leave them: member id → email hashes.
fn replay(deliveries: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for d in deliveries {
        let member = d["member"].as_str().unwrap_or_default().to_owned();
        let emails = hashes(&d["fields"]["email_sha256"]);
        match d["action"].as_str() {
            Some("enter") => assert!(out.insert(member, emails).is_none(), "entered twice: {d}"),
            Some("update") => assert!(
                out.insert(member, emails).is_some(),
                "updated before entering: {d}"
            ),
            Some("exit") => {
                let was = out.remove(&member);
                assert_eq!(
                    was,
                    Some(emails),
                    "an exit carries the keys it entered with: {d}"
                );
            }
            other => panic!("unknown action {other:?}"),
        }
    }
    out
}

fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn a_webhook_destination_gets_signed_incremental_hashed_deliveries_that_replay_to_the_audience(
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // The first three POSTs fail: deliveries are retried and nothing is lost.
    let rx = receiver(dir.path(), &["--fail-first", "3"]);
    let url = format!("https://127.0.0.1:{}/audiences", rx.port);
    let ca = dir.path().join("ca.pem");
    let app = spawn_app_with(|s| {
        s.destinations.push(DestinationSettings {
            name: "crm-hook".into(),
            fields: vec![
                "email_sha256".into(),
                "phone_sha256".into(),
                "trait.tier".into(),
            ],
            batch_size: 4,
            webhook: Some(DestinationWebhook {
                url,
                secret: Secret::new(SECRET),
                ca_file: Some(ca),
                ..Default::default()
            }),
            ..Default::default()
        });
    })
    .await;
    let granted = json!({ "marketing_email": "granted" });
    define(&app, "gold", r#"trait.tier = "gold""#, &["crm-hook"]).await;
    for (i, (ids, tier)) in [
        (
            json!({"email": "Ann@Example.com", "phone": "+1 415 555 0101"}),
            "gold",
        ),
        (json!({"email": "bob@example.com"}), "silver"),
        (json!({"email": "cy@example.com"}), "gold"),
        (json!({"email": "dee@example.com"}), "gold"),
    ]
    .into_iter()
    .enumerate()
    {
        // Ingest answers while the destination fails.
        app.ingest(&person(&format!("p-{i}"), ids, tier, granted.clone()))
            .await;
    }
    let deliveries = || -> Vec<Value> {
        rx.bodies()
            .iter()
            .flat_map(|b| b["deliveries"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    // Deliveries follow the current state: wait until the first three members are
    // delivered before they change (a member who came and went before a delivery is
    // never delivered at all).
    eventually("ann, cy and dee are delivered", || {
        replay(&deliveries()).len() == 3
    })
    .await;
    // Dee withdraws consent: she leaves the audience.
    app.ingest(&person(
        "p-dee-2",
        json!({"email": "dee@example.com"}),
        "gold",
        json!({ "marketing_email": "denied" }),
    ))
    .await;
    // Ann gains an email: an update. Bob turns gold: an enter.
    app.ingest(&person(
        "p-ann-2",
        json!({"email": "ann@example.com", "cookie_id": "ck-1"}),
        "gold",
        granted.clone(),
    ))
    .await;
    app.ingest(&event(
        "p-ann-3",
        "web",
        json!({"cookie_id": "ck-1", "email": "ann.work@example.org"}),
        json!({}),
    ))
    .await;
    app.ingest(&person(
        "p-bob-2",
        json!({"email": "bob@example.com"}),
        "gold",
        granted.clone(),
    ))
    .await;
    // Cy is erased: an exit with the keys Cy was delivered with.
    json_ok(
        app.client
            .post(app.url("/v1/erasure"))
            .json(&json!({"identifier": "email:cy@example.com"}))
            .send()
            .await
            .expect("POST /v1/erasure"),
    )
    .await;

    let want = member_hashes(&app, "gold").await;
    assert_eq!(want.len(), 2, "ann and bob: {want:?}");
    eventually("the deliveries replay to the audience", || {
        replay(&deliveries()).into_values().collect::<BTreeSet<_>>() == want
    })
    .await;
    let got = deliveries();
    let ann = sha256_hex("ann@example.com");
    let cy = sha256_hex("cy@example.com");
    let dee = sha256_hex("dee@example.com");
    let of = |h: &str, action: &str| {
        got.iter()
            .filter(|d| d["action"] == action && hashes(&d["fields"]["email_sha256"]).contains(h))
            .count()
    };
    assert_eq!(of(&ann, "enter"), 1, "{got:#?}");
    assert!(
        of(&ann, "update") >= 1,
        "ann's new email is an update: {got:#?}"
    );
    assert_eq!((of(&cy, "enter"), of(&cy, "exit")), (1, 1), "{got:#?}");
    assert_eq!((of(&dee, "enter"), of(&dee, "exit")), (1, 1), "{got:#?}");
    assert_eq!(of(&sha256_hex("bob@example.com"), "enter"), 1, "{got:#?}");
    // Ann's enter: her phone hashed in E.164, the tier; nothing else.
    let enter = got
        .iter()
        .find(|d| d["action"] == "enter" && hashes(&d["fields"]["email_sha256"]).contains(&ann))
        .expect("ann entered");
    assert_eq!(
        hashes(&enter["fields"]["phone_sha256"]),
        BTreeSet::from([sha256_hex("+14155550101")])
    );
    assert_eq!(enter["fields"]["trait.tier"], "gold");
    assert_eq!(enter["audience"], "gold");
    let keys: BTreeSet<&str> = enter["fields"]
        .as_object()
        .expect("fields")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["email_sha256", "phone_sha256", "trait.tier"])
    );
    // Exits carry the keys only.
    for d in got.iter().filter(|d| d["action"] == "exit") {
        assert!(d["fields"].get("trait.tier").is_none(), "{d}");
    }
    // No personal value in plain text, no profile id (not an allowed field).
    let text = serde_json::to_string(&rx.bodies()).expect("JSON");
    for plain in ["example.com", "example.org", "4155550101", "Zed", "60601"] {
        assert!(!text.contains(plain), "{plain} was delivered in plain text");
    }
    let pid = app.pid_of("email", "bob@example.com").await;
    assert!(
        !text.contains(&pid),
        "the profile id is not an allowed field"
    );

    // Signed (the receiver answers 401 otherwise); the first three attempts failed.
    let statuses = rx.statuses();
    assert!(!statuses.contains(&401), "{statuses:?}");
    assert_eq!(&statuses[..3], &[503, 503, 503], "{statuses:?}");

    // Status, metrics, audit.
    let view = json_ok(app.get("/v1/destinations").await).await["destinations"][0].clone();
    assert_eq!(view["name"], "crm-hook");
    assert_eq!(view["kind"], "webhook");
    let count = |a: &str| got.iter().filter(|d| d["action"] == a).count() as u64;
    assert_eq!(view["entered"], count("enter"), "{view}");
    assert_eq!(view["exited"], count("exit"), "{view}");
    assert!(view["failed_attempts"].as_u64() >= Some(3), "{view}");
    let m = app.get("/metrics").await.text().await.unwrap_or_default();
    assert_eq!(
        sample(
            &m,
            "idgraph_destination_deliveries_total{destination=\"crm-hook\",action=\"enter\"}"
        ),
        Some(count("enter") as f64),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "idgraph_destination_failed_attempts_total{destination=\"crm-hook\"}"
        ) >= Some(3.0),
        "{m}"
    );
    let audit = json_ok(
        app.get("/v1/audit?key=destination:crm-hook&limit=1000")
            .await,
    )
    .await;
    let entries = audit["entries"].as_array().cloned().unwrap_or_default();
    assert!(!entries.is_empty(), "{audit}");
    assert!(
        entries.iter().any(|e| e["profiles"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == &json!(pid)))),
        "the audit names the delivered profiles: {audit}"
    );
    assert!(entries.iter().all(|e| e["method"] == "DELIVER"));

    // A resync compares everything again and delivers nothing twice.
    let before = got.len();
    let resp = app
        .client
        .post(app.url("/v1/destinations/crm-hook/resync"))
        .send()
        .await
        .expect("POST resync");
    assert_eq!(resp.status().as_u16(), 202);
    let mut done = false;
    for _ in 0..200 {
        let v = json_ok(app.get("/v1/destinations").await).await;
        if v["destinations"][0]["resyncing"] == false {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(done, "the resync finished");
    assert_eq!(
        deliveries().len(),
        before,
        "a resync of a destination in step delivers nothing"
    );
    assert_error(
        app.client
            .post(app.url("/v1/destinations/nope/resync"))
            .send()
            .await
            .expect("POST"),
        404,
        "not_found",
    )
    .await;
}

fn files(dir: &Path, audience: &str, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir.join(audience))
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    out.retain(|p: &std::path::PathBuf| p.to_string_lossy().ends_with(suffix));
    out.sort();
    out
}

/// Every row of the CSV files ending in `suffix`, as column → value.
fn csv_rows(dir: &Path, audience: &str, suffix: &str) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for path in files(dir, audience, suffix) {
        let mut r = csv::Reader::from_path(&path).expect("a CSV file");
        let header: Vec<String> = r
            .headers()
            .expect("a header")
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header, ["Email", "Phone", "Country", "Zip"], "{path:?}");
        for rec in r.records() {
            let rec = rec.expect("a record");
            out.push(
                header
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(str::to_owned))
                    .collect(),
            );
        }
    }
    out
}

fn parquet_rows(dir: &Path, audience: &str, suffix: &str) -> Vec<BTreeMap<String, String>> {
    use arrow_array::{Array, StringArray};
    let mut out = Vec::new();
    for path in files(dir, audience, suffix) {
        let file = std::fs::File::open(&path).expect("a file");
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .expect("a Parquet file")
            .build()
            .expect("a reader");
        for batch in reader {
            let batch = batch.expect("a batch");
            let schema = batch.schema();
            for row in 0..batch.num_rows() {
                let mut m = BTreeMap::new();
                for (i, f) in schema.fields().iter().enumerate() {
                    let col = batch
                        .column(i)
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .expect("string columns");
                    if !col.is_null(row) {
                        m.insert(f.name().clone(), col.value(row).to_owned());
                    }
                }
                out.push(m);
            }
        }
    }
    out
}

#[tokio::test]
async fn file_destinations_write_platform_ready_csv_and_parquet_with_only_allowed_fields() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let google = out.path().join("google");
    let meta = out.path().join("meta");
    let (g, m) = (google.clone(), meta.clone());
    let app = spawn_app_with(move |s| {
        s.destinations.push(DestinationSettings {
            name: "google".into(),
            preset: Preset::GoogleCustomerMatch,
            fields: ["email_sha256", "phone_sha256", "country", "postal_code"]
                .map(String::from)
                .to_vec(),
            file: Some(DestinationFile {
                dir: g,
                format: FileFormat::Csv,
            }),
            ..Default::default()
        });
        s.destinations.push(DestinationSettings {
            name: "meta".into(),
            preset: Preset::MetaCustomAudience,
            fields: ["email_sha256", "phone_sha256", "first_name_sha256"]
                .map(String::from)
                .to_vec(),
            purpose: Some("advertising".into()),
            file: Some(DestinationFile {
                dir: m,
                format: FileFormat::Parquet,
            }),
            ..Default::default()
        });
    })
    .await;
    define(&app, "vip", r#"trait.tier = "vip""#, &["google", "meta"]).await;
    let both = json!({ "marketing_email": "granted", "advertising": "granted" });
    app.ingest(&person(
        "f-1",
        json!({"email": "Jane.Doe@gmail.com", "phone": "+44 20 7946 0958"}),
        "vip",
        both.clone(),
    ))
    .await;
    // No advertising consent: Google gets him, Meta does not.
    app.ingest(&person(
        "f-2",
        json!({"email": "max@example.net"}),
        "vip",
        json!({ "marketing_email": "granted" }),
    ))
    .await;
    app.ingest(&person(
        "f-3",
        json!({"email": "lu@example.net"}),
        "vip",
        both.clone(),
    ))
    .await;
    eventually("lu is delivered to both", || {
        csv_rows(&google, "vip", "-add.csv")
            .iter()
            .any(|r| r["Email"] == sha256_hex("lu@example.net"))
            && parquet_rows(&meta, "vip", "-add.parquet")
                .iter()
                .any(|r| r.get("EMAIL") == Some(&sha256_hex("lu@example.net")))
    })
    .await;
    // Lu stops being a VIP: a remove file.
    app.ingest(&person(
        "f-4",
        json!({"email": "lu@example.net"}),
        "regular",
        both.clone(),
    ))
    .await;

    let jane_google = sha256_hex("janedoe@gmail.com");
    let lu = sha256_hex("lu@example.net");
    eventually("google's remove file names lu", || {
        csv_rows(&google, "vip", "-remove.csv")
            .iter()
            .any(|r| r["Email"] == lu)
    })
    .await;
    let added = csv_rows(&google, "vip", "-add.csv");
    let emails: BTreeSet<&str> = added.iter().map(|r| r["Email"].as_str()).collect();
    assert_eq!(
        emails,
        BTreeSet::from([
            jane_google.as_str(),
            sha256_hex("max@example.net").as_str(),
            lu.as_str()
        ]),
        "Google: Gmail dots removed before hashing: {added:?}"
    );
    let jane = added
        .iter()
        .find(|r| r["Email"] == jane_google)
        .expect("jane");
    assert_eq!(jane["Phone"], sha256_hex("+442079460958"));
    assert_eq!(jane["Country"], "US");
    assert_eq!(jane["Zip"], "60601");

    eventually("meta's files are written", || {
        parquet_rows(&meta, "vip", "-remove.parquet")
            .iter()
            .any(|r| r.get("EMAIL") == Some(&lu))
    })
    .await;
    let meta_added = parquet_rows(&meta, "vip", "-add.parquet");
    let meta_emails: BTreeSet<String> = meta_added
        .iter()
        .filter_map(|r| r.get("EMAIL").cloned())
        .collect();
    assert_eq!(
        meta_emails,
        BTreeSet::from([sha256_hex("jane.doe@gmail.com"), lu.clone()]),
        "Meta: dots kept; max has no advertising consent: {meta_added:?}"
    );
    let jane_meta = meta_added
        .iter()
        .find(|r| r.get("EMAIL") == Some(&sha256_hex("jane.doe@gmail.com")))
        .expect("jane");
    assert_eq!(jane_meta["PHONE"], sha256_hex("442079460958"));
    assert_eq!(jane_meta["FN"], sha256_hex("zed"));
    let columns: BTreeSet<&str> = jane_meta.keys().map(String::as_str).collect();
    assert_eq!(columns, BTreeSet::from(["EMAIL", "FN", "PHONE"]));
    // Nothing in plain text in any file.
    for entry in walk(out.path()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for plain in ["gmail", "example.net", "7946", "Zed", "zed"] {
            assert!(!text.contains(plain), "{plain} in {entry:?}");
        }
    }
    let v = json_ok(app.get("/v1/destinations").await).await;
    let meta_view = v["destinations"]
        .as_array()
        .and_then(|a| a.iter().find(|d| d["name"] == "meta").cloned())
        .expect("meta");
    assert!(
        meta_view["skipped_no_consent"].as_u64() >= Some(1),
        "{meta_view}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn bad_destinations_are_refused_at_definition_and_at_start() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let dir = out.path().to_path_buf();
    let app = spawn_app_with(move |s| {
        s.destinations.push(DestinationSettings {
            name: "files".into(),
            file: Some(DestinationFile {
                dir,
                format: FileFormat::Csv,
            }),
            ..Default::default()
        });
    })
    .await;
    let post = |body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/audiences"))
                .json(&body)
                .send()
                .await
                .expect("POST /v1/audiences")
        }
    };
    let body = assert_error(
        post(json!({"id": "a", "filter": "has(email)", "purpose": "marketing_email", "destinations": ["nope"]})).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope") && m.contains("files")),
        "{body}"
    );
    assert_error(
        post(json!({"id": "a", "filter": "has(email)", "purpose": "marketing_email", "destinations": ["files", "files"]})).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_eq!(
        app.get("/v1/audiences/a").await.status().as_u16(),
        404,
        "nothing was stored"
    );

    // Settings that cannot work stop start-up with the field named.
    let base = idgraph::config::Settings::default();
    let cases: Vec<(DestinationSettings, &str)> = vec![
        (
            DestinationSettings {
                name: "x".into(),
                ..Default::default()
            },
            "exactly one of webhook, kafka and file",
        ),
        (
            DestinationSettings {
                name: "x".into(),
                fields: vec!["email".into()],
                file: Some(DestinationFile::default()),
                ..Default::default()
            },
            "destinations[x].fields: unknown field \"email\"",
        ),
        (
            DestinationSettings {
                name: "x".into(),
                fields: vec!["trait.tier".into()],
                file: Some(DestinationFile {
                    dir: out.path().join("t"),
                    format: FileFormat::Csv,
                }),
                ..Default::default()
            },
            "must identify the person",
        ),
        (
            DestinationSettings {
                name: "x".into(),
                purpose: Some("spam".into()),
                file: Some(DestinationFile::default()),
                ..Default::default()
            },
            "destinations[x].purpose: unknown purpose",
        ),
        (
            DestinationSettings {
                name: "x".into(),
                webhook: Some(DestinationWebhook {
                    url: "http://example.com/hook".into(),
                    secret: Secret::new(SECRET),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "destinations[x].webhook.url: must be https://",
        ),
    ];
    for (d, want) in cases {
        let mut s = base.clone();
        s.storage.data_dir = out.path().join("data");
        s.destinations = vec![d];
        let err = idgraph::destinations::Destinations::new(&s, 0)
            .err()
            .unwrap_or_default();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
    }
}

/// Destinations of a live audience change without redefining it: a destination added
/// receives every current member, one removed receives their exits; the members stay.
#[tokio::test]
async fn adding_and_removing_a_destination_of_a_live_audience_delivers_enters_and_exits() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let (a, b) = (out.path().join("a"), out.path().join("b"));
    let (da, db) = (a.clone(), b.clone());
    let app = spawn_app_with(move |s| {
        for (name, dir) in [("first", da), ("second", db)] {
            s.destinations.push(DestinationSettings {
                name: name.into(),
                preset: Preset::GoogleCustomerMatch,
                fields: ["email_sha256", "phone_sha256", "country", "postal_code"]
                    .map(String::from)
                    .to_vec(),
                file: Some(DestinationFile {
                    dir,
                    format: FileFormat::Csv,
                }),
                ..Default::default()
            });
        }
    })
    .await;
    define(&app, "vip", r#"trait.tier = "vip""#, &["first"]).await;
    let granted = json!({ "marketing_email": "granted" });
    for (i, email) in ["one@example.net", "two@example.net"].iter().enumerate() {
        app.ingest(&person(
            &format!("d-{i}"),
            json!({ "email": email }),
            "vip",
            granted.clone(),
        ))
        .await;
    }
    let want: BTreeSet<String> = ["one@example.net", "two@example.net"]
        .iter()
        .map(|e| sha256_hex(e))
        .collect();
    let emails = |dir: &Path, suffix: &str| -> BTreeSet<String> {
        csv_rows(dir, "vip", suffix)
            .into_iter()
            .filter_map(|r| r.get("Email").cloned())
            .collect()
    };
    eventually("the first destination has both", || {
        emails(&a, "-add.csv") == want
    })
    .await;
    assert!(emails(&b, "-add.csv").is_empty());

    let put = |body: Value| {
        let app = &app;
        async move {
            app.client
                .put(app.url("/v1/audiences/vip/destinations"))
                .json(&body)
                .send()
                .await
                .expect("PUT destinations")
        }
    };
    let v = json_ok(put(json!({"destinations": ["first", "second"]})).await).await;
    assert_eq!(v["destinations"], json!(["first", "second"]), "{v}");
    eventually("the added destination gets the current members", || {
        emails(&b, "-add.csv") == want
    })
    .await;
    let v = json_ok(put(json!({"destinations": ["second"]})).await).await;
    assert_eq!(v["destinations"], json!(["second"]), "{v}");
    eventually("the removed destination gets their exits", || {
        emails(&a, "-remove.csv") == want
    })
    .await;
    assert!(
        emails(&b, "-remove.csv").is_empty(),
        "the kept destination keeps them"
    );
    assert_eq!(
        json_ok(app.get("/v1/audiences/vip").await).await["size"],
        2,
        "the audience itself is unchanged"
    );
    assert_error(
        put(json!({"destinations": ["nope"]})).await,
        400,
        "invalid_parameter",
    )
    .await;
    assert_error(
        app.client
            .put(app.url("/v1/audiences/missing/destinations"))
            .json(&json!({"destinations": []}))
            .send()
            .await
            .expect("PUT"),
        404,
        "not_found",
    )
    .await;
}
