//! Probabilistic matching over HTTP and the CLI: the cluster guard, the per-source switch,
//! the matching counters in /metrics, and `idgraph train`. (The merge itself, its evidence,
//! the customer_id rule and undo are in the conformance suite, on both stores.)

use serde_json::{json, Value};

use crate::helpers::{assert_error, event, idgraph_command, json_ok, spawn_app_with, TestApp};

pub(crate) fn traits(
    first: &str,
    last: &str,
    dob: &str,
    street: &str,
    city: &str,
    pc: &str,
) -> Value {
    json!({"first_name": first, "last_name": last, "birth_date": dob,
           "address": {"street": street, "city": city, "postal_code": pc}})
}

fn anna() -> Value {
    traits(
        "Anna",
        "Kowalski",
        "1980-01-01",
        "1 Elm Street",
        "Boston",
        "02108",
    )
}

fn brian() -> Value {
    traits(
        "Brian",
        "O'Hara",
        "1955-12-31",
        "9 Palm Drive",
        "Los Angeles",
        "90210",
    )
}

/// A profile holding records of two different people (a shared family email), and a new
/// record that is the very image of one of them.
pub(crate) async fn family_and_lookalike(app: &TestApp) -> (String, Value) {
    let family = app
        .ingest_pid(&event(
            "g1",
            "crm",
            json!({"customer_id": "A1", "email": "family@example.com"}),
            anna(),
        ))
        .await;
    let again = app
        .ingest_pid(&event(
            "g2",
            "crm",
            json!({"email": "family@example.com", "phone": "+1 617 555 0101"}),
            brian(),
        ))
        .await;
    assert_eq!(
        again, family,
        "the shared email joins them deterministically"
    );
    let outcome = app
        .ingest(&event(
            "g3",
            "pos",
            json!({"phone": "+1 617 555 0199"}),
            brian(),
        ))
        .await;
    (family, outcome)
}

async fn matching_total(app: &TestApp, what: &str) -> u64 {
    let text = app
        .get("/metrics")
        .await
        .text()
        .await
        .expect("metrics body");
    let prefix = format!("idgraph_matching_total{{what=\"{what}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{text}"))
        .parse()
        .expect("a counter value")
}

/// The guard compares the profiles as clusters: with a strict guard, a record matching one
/// of a profile's two people does not pull it in; with the default guard (0.2) it does.
#[tokio::test]
async fn the_cluster_guard_decides_on_the_whole_profile_not_one_record() {
    let strict = spawn_app_with(|s| {
        s.matching.enabled = true;
        s.matching.guard = 0.9;
    })
    .await;
    let (family, outcome) = family_and_lookalike(&strict).await;
    assert_ne!(outcome["profile_id"], family.as_str(), "{outcome}");
    assert!(outcome.get("probable").is_none(), "{outcome}");
    assert_eq!(matching_total(&strict, "guarded").await, 1);
    assert_eq!(matching_total(&strict, "merged").await, 0);

    let default = spawn_app_with(|s| s.matching.enabled = true).await;
    let (family, outcome) = family_and_lookalike(&default).await;
    assert_eq!(outcome["profile_id"], family.as_str(), "{outcome}");
    assert_eq!(outcome["probable"].as_array().map(Vec::len), Some(1));
    assert_eq!(matching_total(&default, "merged").await, 1);
    assert!(matching_total(&default, "compared").await >= 1);
}

/// Matching off for a source: its events are neither matched nor anchored without an
/// identifier; other sources still are. With matching off entirely, look-alikes stay apart.
#[tokio::test]
async fn probable_links_can_be_switched_off_per_source() {
    let app = spawn_app_with(|s| {
        s.matching.enabled = true;
        s.matching.disabled_sources = vec!["web".into()];
    })
    .await;
    let crm = app
        .ingest_pid(&event("d1", "crm", json!({"customer_id": "B1"}), brian()))
        .await;
    let web = app
        .ingest_pid(&event("d2", "web", json!({"cookie_id": "ck-9"}), brian()))
        .await;
    assert_ne!(web, crm, "web takes no part in probable links");
    let no_ids = json!({"event_id": "d3", "source": "web", "traits": brian()});
    let err = assert_error(app.post_events(&no_ids).await, 422, "invalid_field").await;
    assert_eq!(err["field"], "identifiers", "{err}");
    let row = json!({"event_id": "d4", "source": "third_party", "traits": brian()});
    let outcome = json_ok(app.post_events(&row).await).await;
    assert_eq!(outcome["profile_id"], crm.as_str(), "{outcome}");
    let golden = json_ok(app.lookup("record", "d4").await).await;
    assert_eq!(golden["profile_id"], crm.as_str());
    // The record kind is idgraph's own: events cannot send it.
    let forged = event("d5", "crm", json!({"record": "d4"}), json!({}));
    let err = assert_error(app.post_events(&forged).await, 422, "invalid_field").await;
    assert!(err.to_string().contains("identifiers.record"), "{err}");

    let off = spawn_app_with(|_| {}).await;
    let a = off
        .ingest_pid(&event("o1", "crm", json!({"customer_id": "B1"}), brian()))
        .await;
    let b = off
        .ingest_pid(&event(
            "o2",
            "pos",
            json!({"phone": "+1 617 555 0199"}),
            brian(),
        ))
        .await;
    assert_ne!(a, b, "matching is off by default");
    assert_error(off.post_events(&row).await, 422, "invalid_field").await;
    // A name and nothing else is kept as a record of its own; names alone never merge it
    // (however well they agree): the pair waits for a steward in the review queue.
    let name_only = json!({"event_id": "d6", "source": "third_party", "identifiers": {},
                           "traits": {"first_name": "Brian", "last_name": "O'Hara"}});
    let outcome = json_ok(app.post_events(&name_only).await).await;
    assert_eq!(outcome["status"], "accepted", "{outcome}");
    assert_ne!(outcome["profile_id"], crm.as_str(), "{outcome}");
    // Nothing to compare at all (no name) is still no person.
    let nameless = json!({"event_id": "d7", "source": "third_party", "identifiers": {},
                          "traits": {"address": {"city": "Boston"}}});
    assert_error(
        app.post_events(&nameless).await,
        422,
        "no_linkable_identifier",
    )
    .await;
    let metrics = off.get("/metrics").await.text().await.expect("metrics");
    assert!(!metrics.contains("idgraph_matching_total"));
}

const FEBRL1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/febrl1.csv");
const FEBRL_MAPPING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/quality/febrl.toml");

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("idgraph.toml");
    std::fs::write(
        &path,
        format!("[identifiers]\ncustom_kinds = [\"national_id\"]\n\n[matching]\nenabled = true\n{extra}"),
    )
    .expect("write config");
    path
}

/// `idgraph train` estimates a model from the store's records and the resolver then loads
/// it; a store without records and a damaged model file are refused with the reason.
#[test]
fn train_writes_a_model_the_resolver_loads() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let config = write_config(dir.path(), "");
    let import = |data: &std::path::Path| {
        idgraph_command()
            .args(["--config"])
            .arg(&config)
            .args([
                "import",
                FEBRL1,
                "--source",
                "third_party",
                "--mapping",
                FEBRL_MAPPING,
            ])
            .arg("--data-dir")
            .arg(data)
            .arg("--json")
            .output()
            .expect("run idgraph import")
    };
    crate::helpers::assert_succeeded(&import(&data), "idgraph import");

    let train = |data: &std::path::Path| {
        idgraph_command()
            .args(["--config"])
            .arg(&config)
            .arg("train")
            .arg("--data-dir")
            .arg(data)
            .arg("--json")
            .output()
            .expect("run idgraph train")
    };
    let out = train(&data);
    crate::helpers::assert_succeeded(&out, "idgraph train");
    let summary: Value = serde_json::from_slice(&out.stdout).expect("train prints JSON");
    // One record per anchor identifier: duplicates sharing a soc_sec_id share one.
    let records = summary["records"].as_u64().unwrap();
    assert!((500..1000).contains(&records), "{summary}");
    assert!(summary["blocked_pairs"].as_u64().unwrap() > 10, "{summary}");
    let prior = summary["prior"].as_f64().unwrap();
    assert!(prior > 0.0 && prior < 0.01, "{summary}");
    // FEBRL holds names and birth dates: the prior comes from the pairs that agree on all
    // three, and EM's estimate is reported beside it.
    let estimate = &summary["prior_estimate"];
    assert_eq!(estimate["used"], "deterministic", "{summary}");
    assert_eq!(estimate["deterministic"].as_f64(), Some(prior), "{summary}");
    assert!(estimate["rule_pairs"].as_u64().unwrap() >= 10, "{summary}");
    assert!(estimate["em"].as_f64().unwrap() > 0.0, "{summary}");
    // No steward has decided anything in this store: trained without labels.
    assert!(summary["labels"].is_null(), "{summary}");
    // FEBRL has no emails: that field's `m` cannot be learned, and the report says so.
    assert_eq!(
        summary["untrained_fields"],
        serde_json::json!(["email"]),
        "{summary}"
    );
    let file: Value = serde_json::from_slice(
        &std::fs::read(data.join("matching-model.json")).expect("the model file"),
    )
    .expect("the model file is JSON");
    assert_eq!(file["version"], 2);
    assert_eq!(file["model"]["m"].as_array().map(Vec::len), Some(7));

    // The resolver loads it: a second import on the same store runs with it.
    crate::helpers::assert_succeeded(&import(&data), "idgraph import");

    // A damaged model is refused, naming the file.
    std::fs::write(data.join("matching-model.json"), b"{\"version\": 1}").expect("damage");
    let out = import(&data);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("matching-model.json"), "{err}");

    // Nothing to learn from.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).expect("empty data dir");
    let out = train(&empty);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("match records"), "{err}");
}

/// The blocking keys are configurable: with only the exact-first-name key, a record with a
/// typo in the first name is never a candidate; an unknown key is refused at start.
#[tokio::test]
async fn blocking_keys_are_configurable() {
    let typo = |first: &str| {
        traits(
            first,
            "Kowalczyk",
            "1984-03-07",
            "12 Oak Street",
            "Springfield",
            "62704",
        )
    };
    let only_first_name = spawn_app_with(|s| {
        s.matching.enabled = true;
        s.matching.blocking_keys = vec!["fn".into()];
    })
    .await;
    let a = only_first_name
        .ingest_pid(&event(
            "bk1",
            "crm",
            json!({"customer_id": "BK1"}),
            typo("Jonathan"),
        ))
        .await;
    let b = only_first_name
        .ingest_pid(&event(
            "bk2",
            "pos",
            json!({"phone": "+1 415 555 0111"}),
            typo("Jonathon"),
        ))
        .await;
    assert_ne!(a, b, "no shared key, no candidate");
    let c = only_first_name
        .ingest_pid(&event(
            "bk3",
            "pos",
            json!({"phone": "+1 415 555 0112"}),
            typo("Jonathan"),
        ))
        .await;
    assert_eq!(c, a, "the exact first name is a key: found and merged");

    let mut settings = idgraph::config::Settings::default();
    settings.matching.enabled = true;
    settings.matching.blocking_keys = vec!["soundex".into()];
    let dir = tempfile::tempdir().expect("temp dir");
    settings.storage.data_dir = dir.path().to_path_buf();
    let err = idgraph::engine::Engine::open(settings)
        .err()
        .expect("an unknown blocking key is refused")
        .to_string();
    assert!(
        err.contains("matching.blocking_keys") && err.contains("soundex"),
        "{err}"
    );
}

/// Term-frequency adjustment, live: after 1,200 people of whom most are called Smith, two
/// records agreeing on a rare name and birth date merge (the rare surname counts for more
/// than an average one, and explain shows by how much), while two Smiths agreeing on first
/// name and birth date stay apart (with the built-in model they would merge). Each record
/// has its own phone (an identifier that is no matching evidence).
#[tokio::test]
async fn a_common_surname_agreeing_says_less_than_a_rare_one() {
    let pair = |app_events: &mut Vec<Value>, id: &str, phone: &str, first: &str, last: &str| {
        app_events.push(event(
            id,
            "crm",
            json!({ "phone": phone }),
            json!({"first_name": first, "last_name": last, "birth_date": "1971-04-12"}),
        ));
    };
    let outcome = |adjusted: bool| async move {
        let app = spawn_app_with(|s| {
            s.matching.enabled = true;
            if !adjusted {
                s.matching.tf_fields.clear();
            }
        })
        .await;
        let mut crowd = Vec::new();
        for i in 0..1_200 {
            let last = if i % 10 < 7 {
                "Smith".to_owned()
            } else {
                format!("Name{i}")
            };
            crowd.push(event(
                &format!("crowd{i}"),
                "crm",
                json!({ "email": format!("person{i}@example.com") }),
                json!({"first_name": format!("First{i}"), "last_name": last,
                       "birth_date": format!("19{:02}-0{}-1{}", 40 + i % 50, 1 + i % 9, i % 10)}),
            ));
        }
        for chunk in crowd.chunks(400) {
            json_ok(app.post_events(&json!(chunk)).await).await;
        }
        let mut events = Vec::new();
        pair(&mut events, "rare1", "+16175550101", "John", "Qwertyuk");
        pair(&mut events, "rare2", "+16175550102", "John", "Qwertyuk");
        pair(&mut events, "smith1", "+16175550103", "John", "Smith");
        pair(&mut events, "smith2", "+16175550104", "John", "Smith");
        for e in &events {
            app.ingest(e).await;
        }
        let rare = (
            app.pid_of("phone", "+16175550101").await,
            app.pid_of("phone", "+16175550102").await,
        );
        let smiths = (
            app.pid_of("phone", "+16175550103").await,
            app.pid_of("phone", "+16175550104").await,
        );
        (app, rare, smiths)
    };

    let (plain, rare, smiths) = outcome(false).await;
    assert_eq!(rare.0, rare.1, "rare name and birth date merge");
    assert_eq!(
        smiths.0, smiths.1,
        "without the adjustment, the Smiths merge too"
    );
    drop(plain);

    let (app, rare, smiths) = outcome(true).await;
    assert_eq!(rare.0, rare.1, "rare name and birth date still merge");
    assert_ne!(smiths.0, smiths.1, "a common surname is weak evidence");
    let explained = json_ok(
        app.get_query(
            &format!("/v1/profiles/{}/explain", rare.0),
            &[("a", "phone:+16175550101"), ("b", "phone:+16175550102")],
        )
        .await,
    )
    .await;
    let fields = explained["edges"]
        .as_array()
        .and_then(|edges| {
            edges
                .iter()
                .find_map(|e| e["probable"]["fields"].as_array())
        })
        .unwrap_or_else(|| panic!("no probable evidence in {explained}"));
    let last = fields
        .iter()
        .find(|f| f["field"] == "last_name")
        .unwrap_or_else(|| panic!("no last_name in {explained}"));
    let adjustment = last["tf_adjustment"].as_f64().expect("an adjustment");
    assert!(adjustment > 0.0, "a rare name counts for more: {last}");
    let first = fields.iter().find(|f| f["field"] == "first_name");
    assert!(
        first.is_some_and(|f| f["tf_adjustment"].as_f64().is_some()),
        "{explained}"
    );
}

/// Names alone never merge a name-only record, however high they score: with a threshold
/// the names clear, the pair is queued for review and why-not says `names_only`; once the
/// record's person is seen with a birth date that agrees, the same names merge.
#[tokio::test]
async fn names_alone_never_merge_a_name_only_record() {
    let app = spawn_app_with(|s| {
        s.matching.enabled = true;
        // Low enough that agreeing names alone clear it with the built-in model.
        s.matching.threshold = 0.02;
        s.matching.review_threshold = 0.01;
    })
    .await;
    let crm = app
        .ingest_pid(&event("n1", "crm", json!({"customer_id": "B1"}), brian()))
        .await;
    let name_only = json!({"event_id": "n2", "source": "third_party", "identifiers": {},
                           "traits": {"first_name": "Brian", "last_name": "O'Hara"}});
    let outcome = json_ok(app.post_events(&name_only).await).await;
    assert_eq!(outcome["status"], "accepted", "{outcome}");
    assert_ne!(outcome["profile_id"], crm.as_str(), "{outcome}");
    let why = json_ok(
        app.get_query(
            "/v1/explain",
            &[("a", "record:n2"), ("b", "customer_id:B1")],
        )
        .await,
    )
    .await;
    assert_eq!(why["verdict"], "names_only", "{why}");
    let queued = json_ok(app.get("/v1/review").await).await;
    let items = queued["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{queued}");
    // With a birth date that agrees, the same names are evidence enough.
    let dated = json!({"event_id": "n3", "source": "third_party", "identifiers": {},
                       "traits": {"first_name": "Brian", "last_name": "O'Hara",
                                  "birth_date": "1955-12-31"}});
    let outcome = json_ok(app.post_events(&dated).await).await;
    assert_eq!(outcome["profile_id"], crm.as_str(), "{outcome}");
}
