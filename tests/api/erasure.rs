//! Erasure and suppression through the real binary, proven on the files: after
//! `POST /v1/erasure`, neither the RocksDB data (read back key by key and scanned byte by
//! byte, write-ahead log included), nor the search index (its terms and stored documents),
//! nor the golden-profile cache holds any of the person's values; a later event carrying an
//! erased identifier is refused as `suppressed` until an admin lifts the suppression.

use std::path::Path;

use serde_json::{json, Value};

use crate::helpers::{files_holding, get_json, http_client, post_json, ServeProcess};

const EMAIL: &str = "erase.me.canary@example.com";
const PHONE: &str = "+14155550142";
const CUSTOMER: &str = "ERASE-CANARY-9";
const DEVICE: &str = "dev-erase-canary";
const LAST: &str = "Zwieblecanary";
const STREET: &str = "12 Erasure Canary Row";
const OTHER_CUSTOMER: &str = "KEEP-C-1";

fn values() -> [&'static str; 6] {
    [EMAIL, "4155550142", CUSTOMER, DEVICE, LAST, STREET]
}

/// Walks every term of every field and every stored document (deleted ones included) of
/// the search index in `data`: none may contain one of `values`.
fn assert_index_free_of(data: &Path, values: &[&str]) {
    let index = tantivy::Index::open_in_dir(data.join("search")).expect("open the index");
    let searcher = index.reader().expect("reader").searcher();
    let lower: Vec<String> = values.iter().map(|v| v.to_lowercase()).collect();
    for segment in searcher.segment_readers() {
        // Segments holding the person were merged; others may keep deleted documents of
        // other people (the purge follows the person, not the index): every document,
        // deleted or not, is read below.
        for (field, _) in index.schema().fields() {
            let Ok(inverted) = segment.inverted_index(field) else {
                continue;
            };
            let mut terms = inverted.terms().stream().expect("terms");
            while terms.advance() {
                let term = String::from_utf8_lossy(terms.key()).to_lowercase();
                for v in &lower {
                    assert!(
                        !term.contains(v.as_str()),
                        "the index still has the term {term}"
                    );
                }
            }
        }
        let store = segment.get_store_reader(0).expect("doc store");
        for doc in store.iter::<tantivy::TantivyDocument>(None) {
            let doc = doc.expect("stored doc");
            let text = format!("{doc:?}").to_lowercase();
            for v in &lower {
                assert!(
                    !text.contains(v.as_str()),
                    "a stored document still holds {v}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_leaves_no_value_in_any_file_and_suppresses_the_identifiers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = ServeProcess::start(&data);
    let client = http_client();
    let base = server.address.clone();
    let events = json!([
        {"event_id": "er-1", "source": "crm",
         "identifiers": {"customer_id": CUSTOMER, "email": EMAIL},
         "traits": {"first_name": "Ada", "last_name": LAST, "birth_date": "1980-05-06",
                    "address": {"street": STREET, "city": "Oakland", "postal_code": "94607"}}},
        {"event_id": "er-2", "source": "mobile",
         "identifiers": {"phone": PHONE, "device_id": DEVICE}, "properties": {"platform": "ios"}},
        // Joins the two: a merge, with history.
        {"event_id": "er-3", "source": "web", "identifiers": {"email": EMAIL, "device_id": DEVICE}},
        // Another customer with the same email: refused, so the other profile's history
        // names the erased person's email.
        {"event_id": "er-4", "source": "crm",
         "identifiers": {"customer_id": OTHER_CUSTOMER, "email": EMAIL},
         "traits": {"first_name": "Bea", "last_name": "Keepme"}},
    ]);
    let (status, body) = post_json(&client, &format!("{base}/v1/events"), &events).await;
    assert_eq!(status, 200, "{body}");
    let (_, person) = get_json(
        &client,
        &format!("{base}/v1/lookup?kind=customer_id&value={CUSTOMER}"),
    )
    .await;
    let pid = person["profile_id"].as_str().expect("pid").to_owned();
    let (_, other) = get_json(
        &client,
        &format!("{base}/v1/lookup?kind=customer_id&value={OTHER_CUSTOMER}"),
    )
    .await;
    let other_pid = other["profile_id"].as_str().expect("other pid").to_owned();
    assert_ne!(pid, other_pid);
    let (_, history) = get_json(&client, &format!("{base}/v1/profiles/{other_pid}/history")).await;
    assert!(
        history.to_string().contains(EMAIL),
        "the conflict names the email: {history}"
    );
    // Searchable before.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, found) = get_json(&client, &format!("{base}/v1/search?q={LAST}")).await;
        if found["total"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not searchable: {found}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The scan sees the values before (the write-ahead log holds them as written).
    assert!(
        !files_holding(&data, &[EMAIL]).is_empty(),
        "the scan finds an ingested value before the erasure"
    );

    // Bad requests name the problem.
    let (status, err) = post_json(&client, &format!("{base}/v1/erasure"), &json!({})).await;
    assert_eq!(status, 400, "{err}");
    let (status, err) = post_json(
        &client,
        &format!("{base}/v1/erasure"),
        &json!({"identifier": "email:nobody@example.com"}),
    )
    .await;
    assert_eq!(status, 404, "{err}");

    let (status, out) = post_json(
        &client,
        &format!("{base}/v1/erasure"),
        &json!({"identifier": format!("email:{EMAIL}")}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["profile_id"], pid.as_str());
    assert_eq!(out["identifiers"], 4, "{out}");
    assert_eq!(out["events"], 4, "{out}");
    assert!(!out.to_string().contains(EMAIL), "{out}");

    // The answer came once no file holds the values: every byte of every file of the
    // running server (write-ahead log, SSTs, the live MANIFEST, search index, audit log),
    // before any restart rewrites anything.
    let leftovers = files_holding(&data, &values());
    assert!(
        leftovers.is_empty(),
        "values left in files while the server runs: {leftovers:?}"
    );

    // Gone from every read path; the other customer stays, without the email.
    for (kind, value) in [
        ("email", EMAIL),
        ("customer_id", CUSTOMER),
        ("device_id", DEVICE),
    ] {
        let (status, _) = get_json(
            &client,
            &format!("{base}/v1/lookup?kind={kind}&value={value}"),
        )
        .await;
        assert_eq!(status, 404, "{kind} still resolves");
    }
    let (status, _) = get_json(&client, &format!("{base}/v1/profiles/{pid}")).await;
    assert_eq!(status, 404);
    let (_, found) = get_json(&client, &format!("{base}/v1/search?q={LAST}")).await;
    assert_eq!(found["total"], 0, "{found}");
    let (status, other) = get_json(&client, &format!("{base}/v1/profiles/{other_pid}")).await;
    assert_eq!(status, 200);
    assert!(!other.to_string().contains(EMAIL), "{other}");
    let (_, history) = get_json(&client, &format!("{base}/v1/profiles/{other_pid}/history")).await;
    assert!(!history.to_string().contains(EMAIL), "{history}");

    // Suppressed: a later event carrying an erased identifier is refused, clearly.
    let again = json!({"event_id": "er-5", "source": "web", "identifiers": {"email": EMAIL, "cookie_id": "ck-new"}});
    let (status, err) = post_json(&client, &format!("{base}/v1/events"), &again).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"]["code"], "suppressed", "{err}");
    assert!(!err.to_string().contains(EMAIL), "{err}");
    let (status, batch) = post_json(&client, &format!("{base}/v1/events"), &json!([again])).await;
    assert_eq!(status, 200);
    assert_eq!(batch["results"][0]["status"], "suppressed", "{batch}");

    // The audit trail names the erasure, not the values.
    let (_, audit) = get_json(&client, &format!("{base}/v1/audit?route=/v1/erasure")).await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["status"] == 200 && e["profiles"][0] == pid.as_str()),
        "{audit}"
    );

    server.terminate();

    // The files: every live record, and every byte of every file (WAL, SSTs, MANIFEST,
    // search index, audit log).
    let store = idgraph::store::rocks::RocksStore::open(&data).expect("reopen the store");
    for (cf, k, v) in store.dump().expect("dump") {
        let (k, v) = (String::from_utf8_lossy(&k), String::from_utf8_lossy(&v));
        for value in values() {
            assert!(
                !k.contains(value) && !v.contains(value),
                "{value} is still in column family {cf}: {k} = {v}"
            );
        }
    }
    drop(store);
    let leftovers = files_holding(&data, &values());
    assert!(leftovers.is_empty(), "values left in files: {leftovers:?}");
    // The search index, term by term and document by document.
    assert_index_free_of(&data, &values());

    // Restarted, the suppression holds; an admin lifts it and the identifier is accepted.
    let server = ServeProcess::start(&data);
    let base = server.address.clone();
    let (status, _) = post_json(
        &client,
        &format!("{base}/v1/events"),
        &json!({"event_id": "er-6", "source": "web", "identifiers": {"email": EMAIL}}),
    )
    .await;
    assert_eq!(status, 422);
    let resp = client
        .delete(format!("{base}/v1/suppressions"))
        .query(&[("identifier", format!("email:{EMAIL}"))])
        .send()
        .await
        .expect("delete suppression");
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .delete(format!("{base}/v1/suppressions"))
        .query(&[("identifier", format!("email:{EMAIL}"))])
        .send()
        .await
        .expect("delete suppression again");
    assert_eq!(resp.status().as_u16(), 404);
    let (status, body) = post_json(
        &client,
        &format!("{base}/v1/events"),
        &json!({"event_id": "er-7", "source": "web", "identifiers": {"email": EMAIL}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let _: Value = body;
}

/// Erasure in a busy group: an event resolved earlier in the same session (the same group
/// commit) recorded a conflict between the person and someone else and carried one of the
/// person's identifiers. After the erasure, that event is gone and the other person's
/// history keeps the conflict without the erased identifiers. (The session is driven by
/// hand over the engine's store, so both certainly share one group.)
#[test]
fn an_erasure_in_the_same_group_as_a_conflict_leaves_no_residue() {
    use idgraph::engine::Engine;
    use idgraph::resolve::erase::{erase, ErasureTarget};
    use idgraph::resolve::{apply_event, finish, Rules, Session};

    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = idgraph::config::Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let engine = Engine::open(settings.clone()).expect("engine");
    let validate = |v: Value| engine.validate(&v).expect("a valid event");
    let person = json!({"event_id": "busy-1", "source": "crm",
        "identifiers": {"customer_id": CUSTOMER, "email": EMAIL, "device_id": DEVICE}});
    let other = json!({"event_id": "busy-2", "source": "crm",
        "identifiers": {"customer_id": OTHER_CUSTOMER}});
    let out = engine
        .ingest(vec![validate(person), validate(other)])
        .expect("ingest");
    let pid = |o: &idgraph::resolve::EventOutcome| match o {
        idgraph::resolve::EventOutcome::Accepted { profile_id, .. } => profile_id.clone(),
        other => panic!("not accepted: {other:?}"),
    };
    let (p, q) = (pid(&out[0]), pid(&out[1]));

    // One session: the other person is seen on the person's device (refused: one customer
    // id per profile), then the person is erased.
    let rules = Rules::from_settings(&settings).expect("rules");
    let mut s = Session::new(engine.store(), idgraph::engine::now_ms()).expect("session");
    let conflict = json!({"event_id": "busy-3", "source": "web",
        "identifiers": {"customer_id": OTHER_CUSTOMER, "device_id": DEVICE}});
    apply_event(&mut s, &rules, &validate(conflict)).expect("resolve");
    erase(&mut s, &rules, &ErasureTarget::Profile(p.clone()), "test").expect("erase");
    let changes = finish(s, &rules).expect("finish");
    engine.store().apply(&changes).expect("apply");

    let (_, history) = engine
        .history(&q, 100)
        .expect("history of the other person");
    let text = serde_json::to_string(&history).expect("json");
    assert!(
        history
            .iter()
            .any(|e| e.kind == idgraph::store::HistoryKind::Conflict),
        "the conflict stays in the other person's history: {text}"
    );
    for value in [EMAIL, CUSTOMER, DEVICE] {
        assert!(
            !text.contains(value),
            "{value} outlived the erasure: {text}"
        );
    }
    assert!(
        engine.store().event("busy-3").expect("read").is_none(),
        "the event carrying the person's device outlived the erasure"
    );
    assert!(engine
        .store()
        .node(&format!("device_id:{DEVICE}").into())
        .expect("read")
        .is_none());
}

/// The search index purge follows the person: after a split, the part that keeps the old
/// profile id still has older (deleted) index documents holding the other part's email.
/// Erasing that other part must purge those documents too, while the kept part stays
/// searchable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_after_a_split_purges_older_copies_of_the_other_part() {
    const SPLIT_EMAIL: &str = "split.erase.canary@example.com";
    const SPLIT_PHONE: &str = "+14155550177";
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ServeProcess::start(&data);
    let client = http_client();
    let base = server.address.clone();
    let events = json!([
        {"event_id": "sp-1", "source": "crm",
         "identifiers": {"customer_id": "SPLIT-KEEP-1", "email": SPLIT_EMAIL},
         "traits": {"first_name": "Keeper", "last_name": "Splitkeeper"}},
        {"event_id": "sp-2", "source": "web",
         "identifiers": {"email": SPLIT_EMAIL, "phone": SPLIT_PHONE}},
        // Someone else in the same index segment, so that segment outlives the split
        // (tantivy drops a segment whose documents are all deleted).
        {"event_id": "sp-3", "source": "crm",
         "identifiers": {"customer_id": "SPLIT-BYSTANDER"},
         "traits": {"first_name": "Bystander", "last_name": "Splitbystander"}},
    ]);
    let (status, body) = post_json(&client, &format!("{base}/v1/events"), &events).await;
    assert_eq!(status, 200, "{body}");
    // Searchable together first (the index commits every 200 ms).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, found) = get_json(&client, &format!("{base}/v1/search?q=Splitkeeper")).await;
        if found["total"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{found}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let resp = client
        .delete(format!(
            "{base}/v1/links?a=customer_id%3ASPLIT-KEEP-1&b=email%3A{}",
            SPLIT_EMAIL.replace('@', "%40")
        ))
        .send()
        .await
        .expect("delete link");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, erased) = post_json(
        &client,
        &format!("{base}/v1/erasure"),
        &json!({"identifier": format!("email:{SPLIT_EMAIL}")}),
    )
    .await;
    assert_eq!(status, 200, "{erased}");
    let (_, found) = get_json(&client, &format!("{base}/v1/search?q=Splitkeeper")).await;
    assert_eq!(found["total"], 1, "the kept part is still found: {found}");
    drop(server);
    assert_index_free_of(&data, &[SPLIT_EMAIL, "4155550177"]);
}

/// A person whose profiles were merged in a chain (P3 into P2, then P2 into P1): the
/// profile lists only the id merged into it directly, and the erasure still removes the
/// history and alias of the id merged away twice (no value left in any file, the old id
/// answers 404 like the others).
#[tokio::test]
async fn erasure_after_a_chain_of_merges_reaches_the_id_merged_away_twice() {
    const CHAIN_EMAIL: &str = "chain.erase.canary@example.com";
    const CHAIN_PHONE: &str = "+14155550188";
    const CHAIN_DEVICE: &str = "dev-chain-canary";
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let server = ServeProcess::start(&data);
    let client = http_client();
    let base = server.address.clone();
    let mut pids = Vec::new();
    for (id, ids) in [
        ("ch-1", json!({"device_id": CHAIN_DEVICE})),
        ("ch-2", json!({"email": CHAIN_EMAIL})),
        ("ch-3", json!({"phone": CHAIN_PHONE})),
    ] {
        let (status, body) = post_json(
            &client,
            &format!("{base}/v1/events"),
            &json!({"event_id": id, "source": "web", "identifiers": ids}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        pids.push(body["profile_id"].as_str().expect("pid").to_owned());
    }
    // The email's and the phone's profiles merge, then that one merges with the device's.
    for (id, ids) in [
        ("ch-4", json!({"email": CHAIN_EMAIL, "phone": CHAIN_PHONE})),
        (
            "ch-5",
            json!({"phone": CHAIN_PHONE, "device_id": CHAIN_DEVICE}),
        ),
    ] {
        let (status, body) = post_json(
            &client,
            &format!("{base}/v1/events"),
            &json!({"event_id": id, "source": "web", "identifiers": ids}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, person) = get_json(
        &client,
        &format!("{base}/v1/lookup?kind=email&value={CHAIN_EMAIL}"),
    )
    .await;
    let survivor = person["profile_id"].as_str().expect("pid").to_owned();
    let absorbed: Vec<&String> = pids.iter().filter(|p| **p != survivor).collect();
    assert_eq!(absorbed.len(), 2, "{person}");
    // A chain: the survivor lists only the id merged into it directly.
    assert_eq!(
        person["merged_ids"].as_array().map(Vec::len),
        Some(1),
        "{person}"
    );
    // Every old id resolves to the survivor before.
    for p in &absorbed {
        let (status, _) = get_json(&client, &format!("{base}/v1/profiles/{p}")).await;
        assert_eq!(status, 200);
    }
    let (status, out) = post_json(
        &client,
        &format!("{base}/v1/erasure"),
        &json!({"identifier": format!("email:{CHAIN_EMAIL}")}),
    )
    .await;
    assert_eq!(status, 200, "{out}");
    for p in absorbed.iter().copied().chain(std::iter::once(&survivor)) {
        let (status, body) = get_json(&client, &format!("{base}/v1/profiles/{p}")).await;
        assert_eq!(status, 404, "{p}: {body}");
        let (_, history) = get_json(&client, &format!("{base}/v1/profiles/{p}/history")).await;
        assert!(
            !history.to_string().contains("4155550188")
                && !history.to_string().contains(CHAIN_EMAIL),
            "{p}'s history keeps a value: {history}"
        );
    }
    let leftovers = files_holding(&data, &[CHAIN_EMAIL, "4155550188", CHAIN_DEVICE]);
    assert!(leftovers.is_empty(), "values left in files: {leftovers:?}");
}
