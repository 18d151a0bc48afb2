//! Search over HTTP (`GET /v1/search`): typo tolerance, exact identifiers ranked first,
//! addresses, filters, pagination, which fields matched, the index following every change
//! (new profiles, merges, unmerges), bad queries, and the index being rebuilt by the real
//! binary when it is missing, corrupt or behind the store (and by `idgraph reindex`).
//!
//! Index changes are committed by a background indexer, so every check that follows a
//! write polls the search until it holds or a generous deadline passes: these tests check
//! correctness, not timing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{
    assert_error, event, identifiers_of, idgraph_command, json_ok, pid, spawn_app, ServeProcess,
    TestApp,
};

/// Longest wait for a change to become searchable (the requirement is 1 s; the machine
/// running the tests may be busy).
const SEARCHABLE_WITHIN: Duration = Duration::from_secs(10);
/// Pause between two polls.
const POLL_EVERY: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------
// Search helpers (work against the in-process server and the real binary alike)
// ---------------------------------------------------------------------------------------

/// Query parameters of a search.
type Params<'a> = Vec<(&'a str, &'a str)>;

/// `GET {base}/v1/search` with URL-encoded `params`; asserts 200 and returns the body.
async fn search_at(client: &reqwest::Client, base: &str, params: &[(&str, &str)]) -> Value {
    let resp = client
        .get(format!("{base}/v1/search"))
        .query(params)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /v1/search {params:?}: {e}"));
    let status = resp.status();
    let text = resp.text().await.expect("search body");
    assert_eq!(
        status.as_u16(),
        200,
        "search {params:?} answered {status}: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("search {params:?}: body is not JSON ({e}): {text}"));
    check_shape(&body, params);
    body
}

/// The documented answer shape: `{query, total, limit, offset, hits: [{profile_id, score,
/// matched, profile}]}`, each hit's profile being the golden profile of its id.
fn check_shape(body: &Value, params: &[(&str, &str)]) {
    for key in ["query", "total", "limit", "offset", "hits"] {
        assert!(
            body.get(key).is_some(),
            "search {params:?}: no {key} in {body}"
        );
    }
    assert!(body["total"].is_u64(), "total: {body}");
    assert!(
        ["eq", "gte"].contains(&body["total_relation"].as_str().unwrap_or_default()),
        "total_relation is eq or gte: {body}"
    );
    let hits = body["hits"].as_array().expect("hits array");
    let limit = body["limit"].as_u64().expect("limit") as usize;
    assert!(hits.len() <= limit, "more hits than the limit: {body}");
    assert!(
        hits.len() as u64 <= body["total"].as_u64().unwrap(),
        "more hits than total: {body}"
    );
    for hit in hits {
        let id = hit["profile_id"].as_str().expect("hit profile_id");
        assert!(hit["score"].is_number(), "hit score: {hit}");
        assert!(
            ["identifier", "exact_words", "typo_or_prefix"]
                .contains(&hit["tier"].as_str().unwrap_or_default()),
            "hit tier: {hit}"
        );
        assert!(hit["matched"].is_array(), "hit matched: {hit}");
        assert_eq!(
            hit["profile"]["profile_id"], id,
            "a hit shows the golden profile of its own id: {hit}"
        );
    }
    let ids = hit_ids(body);
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a profile appears twice: {body}");
}

/// The profile ids of the hits, in order.
fn hit_ids(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .expect("hits array")
        .iter()
        .map(pid)
        .collect()
}

/// The hit of profile `id`, if any.
fn hit_of<'a>(body: &'a Value, id: &str) -> Option<&'a Value> {
    body["hits"]
        .as_array()
        .expect("hits array")
        .iter()
        .find(|h| h["profile_id"] == id)
}

/// The `matched` field names of the hit of `id`.
fn matched_of(body: &Value, id: &str) -> Vec<String> {
    hit_of(body, id).unwrap_or_else(|| panic!("{id} is not a hit: {body}"))["matched"]
        .as_array()
        .expect("matched array")
        .iter()
        .map(|m| m.as_str().expect("matched entries are strings").to_owned())
        .collect()
}

fn total(body: &Value) -> u64 {
    body["total"].as_u64().expect("total")
}

/// Polls the search until `ok` holds (every [`POLL_EVERY`], at most
/// [`SEARCHABLE_WITHIN`]); returns the first body that satisfies it.
async fn search_until(
    client: &reqwest::Client,
    base: &str,
    params: &[(&str, &str)],
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + SEARCHABLE_WITHIN;
    loop {
        let body = search_at(client, base, params).await;
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "search {params:?}: {what} did not hold within {SEARCHABLE_WITHIN:?}; last answer: {body}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls until `id` is the first hit of `q`.
async fn first_hit_eventually(client: &reqwest::Client, base: &str, q: &str, id: &str) -> Value {
    search_until(client, base, &[("q", q)], &format!("{id} first"), |b| {
        hit_ids(b).first().map(String::as_str) == Some(id)
    })
    .await
}

/// Polls until `q` finds nothing at all.
async fn nothing_eventually(client: &reqwest::Client, base: &str, q: &str) -> Value {
    search_until(client, base, &[("q", q)], "no hits", |b| {
        total(b) == 0 && hit_ids(b).is_empty()
    })
    .await
}

impl TestApp {
    async fn search(&self, params: &[(&str, &str)]) -> Value {
        search_at(&self.client, &self.address, params).await
    }

    async fn q(&self, q: &str) -> Value {
        self.search(&[("q", q)]).await
    }

    async fn search_until(
        &self,
        params: &[(&str, &str)],
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        search_until(&self.client, &self.address, params, what, ok).await
    }

    async fn first_hit_eventually(&self, q: &str, id: &str) -> Value {
        first_hit_eventually(&self.client, &self.address, q, id).await
    }

    async fn nothing_eventually(&self, q: &str) -> Value {
        nothing_eventually(&self.client, &self.address, q).await
    }

    /// `GET /v1/search` expecting a 400 `invalid_search` naming `field`.
    async fn search_rejected(&self, what: &str, params: &[(&str, &str)], field: &str) {
        let resp = self.get_query("/v1/search", params).await;
        let err = assert_error(resp, 400, "invalid_search").await;
        assert_eq!(err["field"], field, "{what}: {params:?} -> {err}");
    }
}

// ---------------------------------------------------------------------------------------
// The cast: several people share a surname, two share an address, and identifiers are
// chosen so that other profiles match the words of an identifier typed in.
// ---------------------------------------------------------------------------------------

/// Profile ids of the cast.
struct Cast {
    timothy: String,
    maria: String,
    bob: String,
    roberta: String,
    nora: String,
    samantha: String,
    jonathan: String,
}

fn address(street: &str, city: &str, postal_code: &str, country: &str) -> Value {
    json!({ "street": street, "city": city, "postal_code": postal_code, "country": country })
}

fn cast_events() -> Vec<Value> {
    vec![
        event(
            "cast-timothy",
            "crm",
            json!({
                "email": "timothy.garcia@example.com",
                "phone": "+1 (415) 555-0100",
                "loyalty_id": "LOY-5521",
            }),
            json!({
                "first_name": "Timothy", "last_name": "Garcia",
                "address": address("12 Main Street", "San Francisco", "94107", "US"),
            }),
        ),
        event(
            "cast-maria",
            "web",
            json!({
                "email": "maria.garcia@example.com",
                "phone": "(415) 555-0101",
                "cookie_id": "ck-maria-1",
            }),
            json!({
                "first_name": "Maria", "last_name": "Garcia",
                "address": address("12 Main Street", "San Francisco", "94107", "US"),
            }),
        ),
        event(
            "cast-bob",
            "pos",
            json!({
                "email": "bob@example.com",
                "phone": "415-555-0199",
                "customer_id": "C-1001",
            }),
            json!({
                "first_name": "Bob", "last_name": "Garcia",
                "address": address("77 Ocean Avenue", "Oakland", "94601", "US"),
            }),
        ),
        // Matches every word of `Bob@Example.com` and of `C-1001` without holding either.
        event(
            "cast-roberta",
            "mobile",
            json!({ "email": "bob.garcia@example.com", "device_id": "dev-roberta" }),
            json!({
                "first_name": "Roberta", "last_name": "Garcia",
                "address": address("1001 C Street", "Sacramento", "95814", "US"),
            }),
        ),
        // Her loyalty number is the postal code Timothy and Maria live at.
        event(
            "cast-nora",
            "contact_center",
            json!({ "loyalty_id": "94107", "email": "nora.quinn@example.net" }),
            json!({
                "first_name": "Nora", "last_name": "Quinn",
                "address": address("9 Cedar Lane", "Berkeley", "94704", "US"),
            }),
        ),
        event(
            "cast-samantha",
            "third_party",
            json!({ "email": "samantha.greene@example.org", "phone": "+44 20 7946 0958" }),
            json!({
                "first_name": "Samantha", "last_name": "Greene",
                "address": address("221B Baker Street", "London", "NW1 6XE", "GB"),
            }),
        ),
        // Same town as Timothy and Maria, another street.
        event(
            "cast-jonathan",
            "email",
            json!({ "email": "jonathan.smithers@example.com" }),
            json!({
                "first_name": "Jonathan", "last_name": "Smithers",
                "address": address("500 Howard Street", "San Francisco", "94105", "US"),
            }),
        ),
    ]
}

/// Ingests the cast (one request per person) and waits until all of it is searchable.
async fn cast(app: &TestApp) -> Cast {
    let mut ids = Vec::new();
    for ev in cast_events() {
        ids.push(app.ingest_pid(&ev).await);
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "every cast member is a person");
    let c = Cast {
        timothy: ids[0].clone(),
        maria: ids[1].clone(),
        bob: ids[2].clone(),
        roberta: ids[3].clone(),
        nora: ids[4].clone(),
        samantha: ids[5].clone(),
        jonathan: ids[6].clone(),
    };
    // The last person ingested is searchable: the indexer has caught up with the cast.
    app.first_hit_eventually("Jonathan Smithers", &c.jonathan)
        .await;
    c
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

fn id_set(body: &Value) -> BTreeSet<String> {
    hit_ids(body).into_iter().collect()
}

// ---------------------------------------------------------------------------------------
// Typos, prefixes, exact identifiers, addresses
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn names_are_found_despite_a_one_letter_slip() {
    let app = spawn_app().await;
    let c = cast(&app).await;

    // Exact name first, as a baseline.
    let body = app.q("Timothy Garcia").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.timothy), "{body}");

    for q in [
        "Timothy Gracia",  // transposition in the last name
        "Timothy Garcai",  // transposition at the end
        "Timothy Garca",   // deletion
        "Timothy Gargia",  // substitution
        "Timohty Garcia",  // transposition in the first name
        "Tmothy Garcia",   // deletion
        "Timothyy Garcia", // insertion
        "timothy GARCIA",  // case
    ] {
        let body = app.q(q).await;
        assert_eq!(
            hit_ids(&body).first(),
            Some(&c.timothy),
            "{q:?} should find Timothy Garcia first: {body}"
        );
    }

    // A slip in a single word still finds the person.
    for (q, who) in [
        ("Samnatha", &c.samantha),
        ("Greane", &c.samantha),
        ("Smihters", &c.jonathan),
        ("Quin", &c.nora),
    ] {
        let body = app.q(q).await;
        assert!(
            hit_ids(&body).contains(who),
            "{q:?} should find {who}: {body}"
        );
    }

    // A slip in the surname finds every Garcia, and only them.
    let body = app.q("Gracia").await;
    assert_eq!(
        id_set(&body),
        set(&[&c.timothy, &c.maria, &c.bob, &c.roberta]),
        "{body}"
    );
    assert_eq!(total(&body), 4, "{body}");

    // Two slips are not one: no Garcia for a word two edits away.
    let body = app.q("Grcaia").await;
    assert_eq!(total(&body), 0, "two edits away matches nothing: {body}");
}

#[tokio::test]
async fn emails_are_found_despite_a_one_letter_slip() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    for (q, who) in [
        ("timothy.garcia@exmaple.com", &c.timothy), // transposition in the domain
        ("timothy.garcai@example.com", &c.timothy), // transposition in the local part
        ("timothy.garca@example.com", &c.timothy),  // deletion
        ("samantha.greene@example.orj", &c.samantha), // substitution in the TLD
        ("samantha.greenne@example.org", &c.samantha), // insertion
        ("jonathan.smithers@exampel.com", &c.jonathan),
        ("TIMOTHY.GARCIA@EXAMPLE.COM", &c.timothy), // case
    ] {
        let body = app.q(q).await;
        assert_eq!(
            hit_ids(&body).first(),
            Some(who),
            "{q:?} should find {who} first: {body}"
        );
    }
}

#[tokio::test]
async fn prefixes_find_people_as_the_agent_types() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    for (q, who) in [
        ("Timoth", &c.timothy),
        ("Tim", &c.timothy),
        ("Garcia Tim", &c.timothy),
        ("Robert", &c.roberta),
        ("Sama", &c.samantha),
        ("Jonathan Smi", &c.jonathan),
        ("samantha.gre", &c.samantha),
    ] {
        let body = app.q(q).await;
        assert!(
            hit_ids(&body).contains(who),
            "{q:?} should find {who} while typing: {body}"
        );
    }
    // The prefix is the person's, not everyone's.
    let body = app.q("Timoth").await;
    assert_eq!(hit_ids(&body), vec![c.timothy.clone()], "{body}");
    let body = app.q("Garcia Rob").await;
    assert_eq!(
        hit_ids(&body).first(),
        Some(&c.roberta),
        "Garcia Rob: {body}"
    );
    assert!(
        !hit_ids(&body).contains(&c.maria),
        "Maria does not match Rob: {body}"
    );
}

#[tokio::test]
async fn an_exact_identifier_ranks_its_profile_first() {
    let app = spawn_app().await;
    let c = cast(&app).await;

    // A phone written any way.
    for q in [
        "+1 (415) 555-0100",
        "415.555.0100",
        "4155550100",
        "(415) 555-0100",
        "+14155550100",
        "415 555 0100",
    ] {
        let body = app.q(q).await;
        assert_eq!(
            hit_ids(&body).first(),
            Some(&c.timothy),
            "phone {q:?} should find Timothy first: {body}"
        );
        assert!(
            !hit_ids(&body).contains(&c.maria),
            "phone {q:?} is Timothy's, not Maria's (one digit apart): {body}"
        );
    }
    let body = app.q("+44 20 7946 0958").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.samantha), "{body}");

    // An email in another case: Roberta (bob.garcia@example.com) matches every word of it,
    // Bob holds it.
    for q in ["Bob@Example.com", "BOB@EXAMPLE.COM", "bob@example.com"] {
        let body = app.q(q).await;
        assert_eq!(
            hit_ids(&body).first(),
            Some(&c.bob),
            "email {q:?} should find Bob first: {body}"
        );
    }
    // The words alone (no exact identifier) do find Roberta: the ranking above mattered.
    let body = app.q("bob example com").await;
    assert!(hit_ids(&body).contains(&c.roberta), "{body}");

    // A customer id: Roberta lives at 1001 C Street, which matches both of its words.
    for q in ["C-1001", "c-1001"] {
        let body = app.q(q).await;
        assert_eq!(
            hit_ids(&body).first(),
            Some(&c.bob),
            "customer id {q:?} should find Bob first: {body}"
        );
    }
    let body = app.q("1001 C").await;
    assert!(
        hit_ids(&body).contains(&c.roberta),
        "Roberta matches the words of C-1001: {body}"
    );

    // A loyalty number that is also the postal code of Timothy and Maria.
    let body = app.q("94107").await;
    assert_eq!(
        hit_ids(&body).first(),
        Some(&c.nora),
        "loyalty number 94107 should find Nora first: {body}"
    );
    assert!(
        hit_ids(&body).contains(&c.timothy) && hit_ids(&body).contains(&c.maria),
        "people living at 94107 still match below her: {body}"
    );
    for q in ["LOY-5521", "loy-5521"] {
        let body = app.q(q).await;
        assert_eq!(hit_ids(&body).first(), Some(&c.timothy), "{q:?}: {body}");
    }
    // A device id and a cookie id.
    let body = app.q("dev-roberta").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.roberta), "{body}");
    let body = app.q("ck-maria-1").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.maria), "{body}");
}

#[tokio::test]
async fn street_and_town_find_the_people_living_there() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    let home = set(&[&c.timothy, &c.maria]);
    for q in [
        "12 Main Street San Francisco",
        "12 main street, san francisco",
        "Main Street San Francisco",
        "12 Main Street 94107",
        "Main Street",
    ] {
        let body = app.q(q).await;
        assert_eq!(id_set(&body), home, "{q:?}: {body}");
        assert_eq!(total(&body), 2, "{q:?}: {body}");
    }
    let body = app.q("Howard Street San Francisco").await;
    assert_eq!(hit_ids(&body), vec![c.jonathan.clone()], "{body}");
    let body = app.q("221B Baker Street London").await;
    assert_eq!(hit_ids(&body), vec![c.samantha.clone()], "{body}");
    let body = app.q("Ocean Avenue Oakland").await;
    assert_eq!(hit_ids(&body), vec![c.bob.clone()], "{body}");
    // The town alone finds everyone living there.
    let body = app.q("San Francisco").await;
    assert_eq!(
        id_set(&body),
        set(&[&c.timothy, &c.maria, &c.jonathan]),
        "{body}"
    );
    // A street nobody lives on in that town finds nobody.
    let body = app.q("Main Street Oakland").await;
    assert_eq!(total(&body), 0, "{body}");
}

/// The project treats `Street` and `St` (`Avenue` and `Ave`, `Road` and `Rd`, ...) as the
/// same street (`household::normalize_street`, README "Households"); an agent typing the
/// street the other way than it was stored finds the people living there too.
#[tokio::test]
async fn street_abbreviations_find_the_same_address() {
    let app = spawn_app().await;
    // Stored abbreviated, as in the README's example event.
    let bob = app
        .ingest_pid(&event(
            "abbr-1",
            "crm",
            json!({ "email": "bob.smith@example.com" }),
            json!({
                "first_name": "Bob", "last_name": "Smith",
                "address": address("12 Main St", "San Francisco", "94107", "US"),
            }),
        ))
        .await;
    // Stored in full.
    let ada = app
        .ingest_pid(&event(
            "abbr-2",
            "crm",
            json!({ "email": "ada.jones@example.com" }),
            json!({
                "first_name": "Ada", "last_name": "Jones",
                "address": address("77 Ocean Avenue", "Oakland", "94601", "US"),
            }),
        ))
        .await;
    // As stored: found (the control).
    app.search_until(&[("q", "12 Main St San Francisco")], "Bob", |b| {
        hit_ids(b) == vec![bob.clone()]
    })
    .await;
    app.search_until(&[("q", "77 Ocean Avenue Oakland")], "Ada", |b| {
        hit_ids(b) == vec![ada.clone()]
    })
    .await;
    // The other way round.
    for (q, who) in [
        ("12 Main Street San Francisco", &bob),
        ("12 Main Street", &bob),
        ("77 Ocean Ave Oakland", &ada),
    ] {
        let body = app.q(q).await;
        assert_eq!(hit_ids(&body), vec![who.clone()], "{q:?}: {body}");
    }
}

// ---------------------------------------------------------------------------------------
// Filters, pagination, matched fields
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn filters_restrict_hits_and_total() {
    let app = spawn_app().await;
    let c = cast(&app).await;

    let all = app.q("Garcia").await;
    assert_eq!(total(&all), 4, "{all}");

    let cases: Vec<(Params, BTreeSet<String>)> = vec![
        (vec![("source", "crm")], set(&[&c.timothy])),
        (vec![("source", "CRM")], set(&[&c.timothy])),
        (vec![("source", "mobile")], set(&[&c.roberta])),
        (vec![("source", "email")], set(&[])),
        (vec![("kind", "customer_id")], set(&[&c.bob])),
        (vec![("kind", "loyalty_id")], set(&[&c.timothy])),
        (vec![("kind", "device_id")], set(&[&c.roberta])),
        (
            vec![("kind", "phone")],
            set(&[&c.timothy, &c.maria, &c.bob]),
        ),
        (
            vec![("city", "San Francisco")],
            set(&[&c.timothy, &c.maria]),
        ),
        (
            vec![("city", "san francisco")],
            set(&[&c.timothy, &c.maria]),
        ),
        (vec![("city", "Oakland")], set(&[&c.bob])),
        (vec![("city", "London")], set(&[])),
        (
            vec![("city", "San Francisco"), ("source", "web")],
            set(&[&c.maria]),
        ),
        (
            vec![("city", "San Francisco"), ("kind", "loyalty_id")],
            set(&[&c.timothy]),
        ),
        (vec![("city", "Oakland"), ("source", "crm")], set(&[])),
    ];
    for (filters, expected) in cases {
        let mut params = vec![("q", "Garcia")];
        params.extend(filters.iter().copied());
        let body = app.search(&params).await;
        assert_eq!(id_set(&body), expected, "{params:?}: {body}");
        assert_eq!(
            total(&body),
            expected.len() as u64,
            "total counts only filtered hits, {params:?}: {body}"
        );
    }

    // Filters apply to identifier queries too: Nora's loyalty number, people of 94107.
    let body = app.search(&[("q", "94107"), ("city", "Berkeley")]).await;
    assert_eq!(hit_ids(&body), vec![c.nora.clone()], "{body}");
    let body = app
        .search(&[("q", "94107"), ("city", "San Francisco")])
        .await;
    let ids = hit_ids(&body);
    assert!(!ids.contains(&c.nora), "{body}");
    assert_eq!(
        ids.iter().take(2).cloned().collect::<BTreeSet<_>>(),
        set(&[&c.timothy, &c.maria]),
        "the people of 94107 come first: {body}"
    );

    // A filter with a small limit still reports the filtered total.
    let body = app
        .search(&[("q", "Garcia"), ("kind", "phone"), ("limit", "1")])
        .await;
    assert_eq!(total(&body), 3, "{body}");
    assert_eq!(hit_ids(&body).len(), 1, "{body}");
}

#[tokio::test]
async fn pages_do_not_overlap_and_total_stays_constant() {
    let app = spawn_app().await;
    const PEOPLE: usize = 23;
    let first_names = [
        "Anh", "Bao", "Chi", "Dung", "Hoa", "Khanh", "Lan", "Minh", "Ngoc", "Phuong", "Quang",
        "Thanh",
    ];
    let mut everyone = BTreeSet::new();
    let batch: Vec<Value> = (0..PEOPLE)
        .map(|i| {
            event(
                &format!("page-{i}"),
                "web",
                json!({ "email": format!("nguyen.{i}@example.com") }),
                json!({ "first_name": first_names[i % first_names.len()], "last_name": "Nguyen" }),
            )
        })
        .collect();
    let out = json_ok(app.post_events(&Value::Array(batch)).await).await;
    assert_eq!(out["accepted"], PEOPLE, "{out}");
    for r in out["results"].as_array().expect("results") {
        everyone.insert(pid(r));
    }
    assert_eq!(everyone.len(), PEOPLE);
    // A bystander who must never show up; once it is searchable, the index holds everyone
    // and stays unchanged while we page.
    let other = app
        .ingest_pid(&event(
            "page-other",
            "web",
            json!({ "email": "someone.else@example.com" }),
            json!({ "first_name": "Someone", "last_name": "Else" }),
        ))
        .await;
    app.first_hit_eventually("Someone Else", &other).await;

    let full = app
        .search_until(
            &[("q", "Nguyen"), ("limit", "100")],
            "all the Nguyens",
            |b| total(b) == PEOPLE as u64,
        )
        .await;
    assert_eq!(id_set(&full), everyone, "{full}");
    let full_order = hit_ids(&full);

    for limit in [1usize, 5, 10, 7] {
        let mut seen = Vec::new();
        let mut offset = 0;
        loop {
            let (l, o) = (limit.to_string(), offset.to_string());
            let body = app
                .search(&[
                    ("q", "Nguyen"),
                    ("limit", l.as_str()),
                    ("offset", o.as_str()),
                ])
                .await;
            assert_eq!(
                total(&body),
                PEOPLE as u64,
                "total changes with paging: {body}"
            );
            assert_eq!(body["limit"], limit, "{body}");
            assert_eq!(body["offset"], offset, "{body}");
            let page = hit_ids(&body);
            let expected_len = PEOPLE.saturating_sub(offset).min(limit);
            assert_eq!(
                page.len(),
                expected_len,
                "limit {limit} offset {offset}: {body}"
            );
            if page.is_empty() {
                break;
            }
            for id in page {
                assert!(
                    !seen.contains(&id),
                    "{id} on two pages (limit {limit}, offset {offset})"
                );
                seen.push(id);
            }
            offset += limit;
        }
        assert_eq!(
            seen, full_order,
            "paging with limit {limit} walks the same ranking as one big page"
        );
    }

    // Past the end: no hits, same total.
    let body = app
        .search(&[("q", "Nguyen"), ("limit", "10"), ("offset", "10000")])
        .await;
    assert_eq!(total(&body), PEOPLE as u64, "{body}");
    assert!(hit_ids(&body).is_empty(), "{body}");
    // The default page.
    let body = app.q("Nguyen").await;
    assert_eq!(body["limit"], 20, "{body}");
    assert_eq!(body["offset"], 0, "{body}");
    assert_eq!(hit_ids(&body), full_order[..20].to_vec(), "{body}");
    assert_eq!(body["query"], "Nguyen", "{body}");
}

#[tokio::test]
async fn matched_names_the_fields_that_matched() {
    let app = spawn_app().await;
    let c = cast(&app).await;

    let body = app.q("+1 (415) 555-0100").await;
    let m = matched_of(&body, &c.timothy);
    assert!(m.contains(&"phone".to_owned()), "phone query: {m:?}");
    assert!(!m.contains(&"name".to_owned()), "phone query: {m:?}");
    assert!(!m.contains(&"address".to_owned()), "phone query: {m:?}");

    let body = app.q("4155550100").await;
    let m = matched_of(&body, &c.timothy);
    assert!(m.contains(&"phone".to_owned()), "digits query: {m:?}");

    let body = app.q("Samantha").await;
    let m = matched_of(&body, &c.samantha);
    assert!(m.contains(&"name".to_owned()), "name query: {m:?}");
    assert!(!m.contains(&"phone".to_owned()), "name query: {m:?}");
    assert!(!m.contains(&"address".to_owned()), "name query: {m:?}");

    // A typo in a name still names the name.
    let body = app.q("Samnatha").await;
    let m = matched_of(&body, &c.samantha);
    assert!(m.contains(&"name".to_owned()), "name typo: {m:?}");

    let body = app.q("samantha.greene@example.org").await;
    let m = matched_of(&body, &c.samantha);
    assert!(m.contains(&"email".to_owned()), "email query: {m:?}");
    assert!(!m.contains(&"phone".to_owned()), "email query: {m:?}");

    let body = app.q("Baker Street London").await;
    let m = matched_of(&body, &c.samantha);
    assert!(m.contains(&"address".to_owned()), "address query: {m:?}");
    assert!(!m.contains(&"phone".to_owned()), "address query: {m:?}");
    assert!(!m.contains(&"email".to_owned()), "address query: {m:?}");

    let body = app.q("LOY-5521").await;
    let m = matched_of(&body, &c.timothy);
    assert!(m.contains(&"identifier".to_owned()), "loyalty id: {m:?}");
    assert!(!m.contains(&"name".to_owned()), "loyalty id: {m:?}");

    let body = app.q("94107").await;
    assert!(
        matched_of(&body, &c.nora).contains(&"identifier".to_owned()),
        "{body}"
    );
    assert!(
        matched_of(&body, &c.timothy).contains(&"address".to_owned()),
        "{body}"
    );
    assert!(
        !matched_of(&body, &c.timothy).contains(&"identifier".to_owned()),
        "Timothy's match on 94107 is his postal code: {body}"
    );
}

#[tokio::test]
async fn quoted_queries_are_accepted() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    let body = app.q("\"Timothy Garcia\"").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.timothy), "{body}");
    assert_eq!(body["query"], "\"Timothy Garcia\"", "{body}");
    let body = app.q("\"bob@example.com\"").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.bob), "{body}");
}

// ---------------------------------------------------------------------------------------
// The index follows every change
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_profile_becomes_searchable() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    let body = app.q("Ophelia Winterbottom").await;
    assert_eq!(total(&body), 0, "{body}");

    let id = app
        .ingest_pid(&event(
            "new-1",
            "web",
            json!({ "email": "ophelia.w@example.com", "phone": "+1 646 555 0177" }),
            json!({ "first_name": "Ophelia", "last_name": "Winterbottom" }),
        ))
        .await;
    for q in [
        "Ophelia Winterbottom",
        "Winterbotom",
        "ophelia.w@example.com",
        "(646) 555-0177",
        "Ophel",
    ] {
        let body = app.first_hit_eventually(q, &id).await;
        assert_eq!(
            body["hits"][0]["profile"]["traits"]["last_name"], "Winterbottom",
            "{body}"
        );
    }
    // Others are unaffected.
    let body = app.q("Garcia").await;
    assert_eq!(total(&body), 4, "{body}");
    assert!(!hit_ids(&body).contains(&id), "{body}");
    assert!(hit_ids(&body).contains(&c.timothy), "{body}");

    // A change to an existing profile (a new trait and identifier) is searchable too.
    app.ingest(&event(
        "new-2",
        "crm",
        json!({ "email": "ophelia.w@example.com", "loyalty_id": "LOY-OPH-9" }),
        json!({ "address": address("3 Harbor Road", "Portland", "97201", "US") }),
    ))
    .await;
    app.first_hit_eventually("LOY-OPH-9", &id).await;
    let body = app
        .search_until(&[("q", "Harbor Road Portland")], "the new address", |b| {
            hit_ids(b) == vec![id.clone()]
        })
        .await;
    assert_eq!(
        identifiers_of(&body["hits"][0]["profile"], "loyalty_id"),
        ["LOY-OPH-9"]
    );
    let body = app
        .search_until(
            &[("q", "Ophelia"), ("city", "Portland")],
            "city filter",
            |b| hit_ids(b) == vec![id.clone()],
        )
        .await;
    assert_eq!(total(&body), 1, "{body}");
}

#[tokio::test]
async fn after_a_merge_only_the_survivor_is_found_with_the_union() {
    let app = spawn_app().await;
    let a = app
        .ingest_pid(&event(
            "merge-a",
            "web",
            json!({ "email": "quentin.blake@example.com", "cookie_id": "ck-quentin" }),
            json!({ "first_name": "Quentin", "last_name": "Blake" }),
        ))
        .await;
    let b = app
        .ingest_pid(&event(
            "merge-b",
            "pos",
            json!({ "phone": "+1 212 555 0142", "loyalty_id": "LOY-Q-77" }),
            json!({ "address": address("8 Hudson Street", "New York", "10013", "US") }),
        ))
        .await;
    assert_ne!(a, b);
    app.first_hit_eventually("quentin.blake@example.com", &a)
        .await;
    app.first_hit_eventually("LOY-Q-77", &b).await;
    app.first_hit_eventually("Hudson Street New York", &b).await;

    // The linking event.
    let out = app
        .ingest(&event(
            "merge-c",
            "crm",
            json!({ "email": "quentin.blake@example.com", "phone": "(212) 555-0142" }),
            Value::Null,
        ))
        .await;
    assert_eq!(out["profile_id"], a.as_str(), "the oldest survives: {out}");
    assert_eq!(out["merged"], json!([b]), "{out}");

    let queries = [
        "LOY-Q-77",
        "2125550142",
        "+1 212 555 0142",
        "quentin.blake@example.com",
        "Quentin Blake",
        "Hudson Street New York",
        "ck-quentin",
    ];
    // Right after the merge is answered (before or after the index commits), the
    // merged-away id is never a hit.
    for q in queries {
        let body = app.q(q).await;
        assert!(
            !hit_ids(&body).contains(&b),
            "merged-away {b} is a hit for {q:?}: {body}"
        );
    }
    // Then each query finds the survivor, holding the union of both profiles.
    for q in queries {
        let body = app.first_hit_eventually(q, &a).await;
        assert_eq!(total(&body), 1, "{q:?}: {body}");
        let profile = &body["hits"][0]["profile"];
        assert_eq!(
            identifiers_of(profile, "email"),
            ["quentin.blake@example.com"]
        );
        assert_eq!(identifiers_of(profile, "phone"), ["+12125550142"]);
        assert_eq!(identifiers_of(profile, "loyalty_id"), ["LOY-Q-77"]);
        assert_eq!(identifiers_of(profile, "cookie_id"), ["ck-quentin"]);
        assert_eq!(profile["merged_ids"], json!([b]), "{profile}");
        assert_eq!(profile["traits"]["first_name"], "Quentin", "{profile}");
        assert_eq!(
            profile["traits"]["address"]["city"], "New York",
            "{profile}"
        );
    }
    // Filters see the union too: the survivor now has a loyalty id and a pos source.
    let body = app
        .search_until(
            &[("q", "Quentin"), ("kind", "loyalty_id"), ("source", "pos")],
            "survivor filtered by the absorbed profile's kind and source",
            |b| hit_ids(b) == vec![a.clone()],
        )
        .await;
    assert_eq!(total(&body), 1, "{body}");
    let body = app
        .search_until(
            &[("q", "Quentin"), ("city", "New York")],
            "survivor filtered by the absorbed profile's city",
            |b| hit_ids(b) == vec![a.clone()],
        )
        .await;
    assert_eq!(total(&body), 1, "{body}");
    // And the absorbed id stays out for good.
    for q in queries {
        let body = app.q(q).await;
        assert!(!hit_ids(&body).contains(&b), "{q:?}: {body}");
    }
}

#[tokio::test]
async fn after_deleting_a_link_the_parts_are_found_separately() {
    let app = spawn_app().await;
    let p = app
        .ingest_pid(&event(
            "split-1",
            "web",
            json!({ "email": "xena.warrior@example.com", "device_id": "dev-xena" }),
            json!({ "first_name": "Xena" }),
        ))
        .await;
    let p2 = app
        .ingest_pid(&event(
            "split-2",
            "mobile",
            json!({ "device_id": "dev-xena", "cookie_id": "ck-zedd" }),
            json!({ "last_name": "Zedd" }),
        ))
        .await;
    assert_eq!(p, p2);
    let body = app.first_hit_eventually("Xena Zedd", &p).await;
    assert_eq!(total(&body), 1, "{body}");

    let out = json_ok(
        app.delete_link("email:xena.warrior@example.com", "device_id:dev-xena")
            .await,
    )
    .await;
    assert_eq!(out["split"], true, "{out}");
    let parts: Vec<String> = out["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parts.len(), 2, "{out}");
    assert_eq!(parts[0], p, "{out}");
    let other = parts[1].clone();

    // Each part is found by its own identifiers and traits, and only by them.
    for (q, who, not) in [
        ("xena.warrior@example.com", &p, &other),
        ("Xena", &p, &other),
        ("dev-xena", &other, &p),
        ("ck-zedd", &other, &p),
        ("Zedd", &other, &p),
    ] {
        let body = app
            .search_until(&[("q", q)], &format!("{who} and not {not}"), |b| {
                hit_ids(b) == vec![who.clone()]
            })
            .await;
        assert_eq!(total(&body), 1, "{q:?}: {body}");
    }
    // No part holds both names any more.
    app.nothing_eventually("Xena Zedd").await;
    // The split-off part is filtered by its own kinds only.
    let body = app
        .search_until(
            &[("q", "Xena"), ("kind", "device_id")],
            "Xena has no device now",
            |b| total(b) == 0,
        )
        .await;
    assert!(hit_ids(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn after_deleting_an_identifier_it_finds_nothing_and_the_parts_are_found() {
    let app = spawn_app().await;
    let p = app
        .ingest_pid(&event(
            "del-1",
            "crm",
            json!({ "email": "wanda.maximoff@example.com", "device_id": "dev-shared-w" }),
            json!({ "first_name": "Wanda", "last_name": "Maximoff" }),
        ))
        .await;
    let p2 = app
        .ingest_pid(&event(
            "del-2",
            "mobile",
            json!({ "device_id": "dev-shared-w", "phone": "+1 312 555 0188" }),
            json!({ "first_name": "Vision", "last_name": "Synthezoid" }),
        ))
        .await;
    assert_eq!(p, p2);
    app.first_hit_eventually("dev-shared-w", &p).await;
    app.first_hit_eventually("3125550188", &p).await;

    let out = json_ok(app.delete("/v1/identifiers/device_id/dev-shared-w").await).await;
    assert_eq!(out["split"], true, "{out}");
    let parts: Vec<String> = out["profiles"]
        .as_array()
        .expect("profiles")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(parts.len(), 2, "{out}");
    let (email_part, phone_part) = (
        app.pid_of("email", "wanda.maximoff@example.com").await,
        app.pid_of("phone", "+13125550188").await,
    );
    assert_ne!(email_part, phone_part);
    assert!(
        parts.contains(&email_part) && parts.contains(&phone_part),
        "{out}"
    );

    // The deleted identifier finds nothing, typed any way.
    app.nothing_eventually("dev-shared-w").await;
    app.nothing_eventually("DEV-SHARED-W").await;
    let body = app
        .search_until(
            &[("q", "Wanda"), ("kind", "device_id")],
            "no device left",
            |b| total(b) == 0,
        )
        .await;
    assert!(hit_ids(&body).is_empty(), "{body}");

    // The parts are found separately.
    for (q, who, not) in [
        ("wanda.maximoff@example.com", &email_part, &phone_part),
        ("Wanda Maximoff", &email_part, &phone_part),
        ("3125550188", &phone_part, &email_part),
        ("(312) 555-0188", &phone_part, &email_part),
        ("Vision Synthezoid", &phone_part, &email_part),
    ] {
        let body = app
            .search_until(&[("q", q)], &format!("{who} and not {not}"), |b| {
                hit_ids(b) == vec![who.clone()]
            })
            .await;
        let profile = &body["hits"][0]["profile"];
        assert!(
            identifiers_of(profile, "device_id").is_empty(),
            "{q:?}: the deleted device is gone: {profile}"
        );
    }

    // Deleting the last identifier of the email part deletes that profile: it is no longer
    // found at all, by its old email or by its name; the phone part is untouched.
    let out = json_ok(
        app.delete("/v1/identifiers/email/wanda.maximoff@example.com")
            .await,
    )
    .await;
    assert_eq!(out["profiles"], json!([]), "{out}");
    app.nothing_eventually("wanda.maximoff@example.com").await;
    app.nothing_eventually("Wanda Maximoff").await;
    let body = app
        .search_until(&[("q", "Vision")], "the phone part", |b| {
            hit_ids(b) == vec![phone_part.clone()]
        })
        .await;
    assert_eq!(total(&body), 1, "{body}");
}

// ---------------------------------------------------------------------------------------
// Bad queries
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_queries_are_400_naming_the_field() {
    let app = spawn_app().await;
    cast(&app).await;
    let long_201 = "a".repeat(201);
    let long_201_accented = "é".repeat(201);
    let ten_kb = "x".repeat(10 * 1024);
    let ten_kb_words = "Timothy Garcia ".repeat(10 * 1024 / 15);
    let long_filter = "s".repeat(201);
    let cases: Vec<(&str, Params, &str)> = vec![
        ("q missing", vec![], "q"),
        ("q missing with a limit", vec![("limit", "5")], "q"),
        ("q empty", vec![("q", "")], "q"),
        ("q blank", vec![("q", "   ")], "q"),
        ("q only a newline", vec![("q", "\n")], "q"),
        ("unbalanced quote", vec![("q", "\"Timothy Garcia")], "q"),
        (
            "unbalanced closing quote",
            vec![("q", "Timothy Garcia\"")],
            "q",
        ),
        ("three quotes", vec![("q", "\"Timothy\" \"Garcia")], "q"),
        ("q of 201 characters", vec![("q", long_201.as_str())], "q"),
        (
            "q of 201 accented characters",
            vec![("q", long_201_accented.as_str())],
            "q",
        ),
        ("q of 10 KB", vec![("q", ten_kb.as_str())], "q"),
        (
            "q of 10 KB of words",
            vec![("q", ten_kb_words.as_str())],
            "q",
        ),
        ("NUL in q", vec![("q", "Tim\u{0}othy")], "q"),
        ("bell in q", vec![("q", "Timothy\u{7}")], "q"),
        (
            "escape sequence in q",
            vec![("q", "\u{1b}[31mTimothy")],
            "q",
        ),
        ("newline inside q", vec![("q", "Timothy\nGarcia")], "q"),
        ("tab inside q", vec![("q", "Timothy\tGarcia")], "q"),
        ("DEL in q", vec![("q", "Timothy\u{7f}")], "q"),
        ("C1 control in q", vec![("q", "Tim\u{85}othy")], "q"),
        ("limit 0", vec![("q", "Garcia"), ("limit", "0")], "limit"),
        (
            "limit 101",
            vec![("q", "Garcia"), ("limit", "101")],
            "limit",
        ),
        (
            "huge limit",
            vec![("q", "Garcia"), ("limit", "1000000")],
            "limit",
        ),
        (
            "limit near usize::MAX",
            vec![("q", "Garcia"), ("limit", "18446744073709551615")],
            "limit",
        ),
        (
            "offset 10001",
            vec![("q", "Garcia"), ("offset", "10001")],
            "offset",
        ),
        (
            "huge offset",
            vec![("q", "Garcia"), ("offset", "18446744073709551615")],
            "offset",
        ),
        (
            "empty source",
            vec![("q", "Garcia"), ("source", "")],
            "source",
        ),
        (
            "blank source",
            vec![("q", "Garcia"), ("source", "  ")],
            "source",
        ),
        ("empty kind", vec![("q", "Garcia"), ("kind", "")], "kind"),
        ("empty city", vec![("q", "Garcia"), ("city", "")], "city"),
        (
            "blank city",
            vec![("q", "Garcia"), ("city", " \t ")],
            "city",
        ),
        (
            "source of 201 characters",
            vec![("q", "Garcia"), ("source", long_filter.as_str())],
            "source",
        ),
    ];
    for (what, params, field) in &cases {
        app.search_rejected(what, params, field).await;
    }
    // The limits themselves are accepted.
    let exactly_200 = "é".repeat(200);
    let accepted: Vec<Params> = vec![
        vec![("q", exactly_200.as_str())],
        vec![("q", "Garcia"), ("limit", "1")],
        vec![("q", "Garcia"), ("limit", "100")],
        vec![("q", "Garcia"), ("offset", "10000")],
        vec![("q", "Garcia"), ("limit", "100"), ("offset", "10000")],
        vec![("q", "  Garcia  ")],
    ];
    for params in &accepted {
        app.search(params).await;
    }
}

/// Odd but well-formed queries are answered (200, or a 400 naming `q`), never a 500.
#[tokio::test]
async fn odd_queries_never_fail_the_server() {
    let app = spawn_app().await;
    let c = cast(&app).await;
    let long_word = "x".repeat(200);
    let long_email = format!("{}@example.com", "y".repeat(180));
    let many_words = "a b c d e f g h i j k l m n o p q r s t u v w x y z ".repeat(3);
    let many_words = many_words.trim();
    let odd = [
        "\"\"",
        "\" \"",
        "***",
        "@",
        "@@@",
        "%",
        "%25",
        "'",
        "\\",
        "a",
        "+",
        "()",
        "-",
        "--",
        ".",
        "+1",
        "+1 (",
        "0",
        "000000000000000000",
        "999999999999999999999999",
        "😀",
        "王小明",
        "Zoë",
        "Ærøskøbing",
        "ǅ",
        "e\u{301}",
        "bob@",
        "@example.com",
        "a@b",
        "OR AND NOT",
        "title:foo",
        "Garcia~2",
        "Gar*",
        "[a TO z]",
        "field:\"x\"",
        "*:*",
        long_word.as_str(),
        long_email.as_str(),
        many_words,
    ];
    for q in odd {
        let resp = app.get_query("/v1/search", &[("q", q)]).await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_ne!(status, 500, "q={q:?} answered 500: {text}");
        match status {
            200 => {
                let body: Value = serde_json::from_str(&text).expect("JSON");
                check_shape(&body, &[("q", q)]);
            }
            400 => {
                let body: Value = serde_json::from_str(&text).expect("JSON");
                assert_eq!(body["error"]["field"], "q", "q={q:?}: {body}");
            }
            _ => panic!("q={q:?}: unexpected status {status}: {text}"),
        }
    }
    // Query syntax is not interpreted: it does not widen the search.
    for q in ["*:*", "Gar*", "Garcia~2", "OR AND NOT"] {
        let body = app.q(q).await;
        assert!(total(&body) <= 4, "{q:?} must not match everyone: {body}");
    }
    // The server is still fine.
    let body = app.q("Timothy").await;
    assert_eq!(hit_ids(&body).first(), Some(&c.timothy), "{body}");
}

/// Non-numeric paging parameters are bad queries too: 400 naming the parameter.
#[tokio::test]
async fn non_numeric_paging_is_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("limit", "ten"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("limit", ""),
        ("limit", "99999999999999999999999"),
        ("offset", "abc"),
        ("offset", "-5"),
    ];
    for (field, value) in cases {
        let resp = app
            .get_query("/v1/search", &[("q", "Garcia"), (field, value)])
            .await;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 400, "{field}={value:?}: {text}");
        let body: Value = serde_json::from_str(&text).expect("JSON error body");
        let code = body["error"]["code"].as_str().unwrap_or_default();
        assert!(
            code == "invalid_search" || code == "invalid_query",
            "{field}={value:?}: {body}"
        );
        assert_eq!(
            body["error"]["field"], field,
            "{field}={value:?}: the error names the parameter: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Rebuilding the index: the real binary on a data directory
// ---------------------------------------------------------------------------------------

/// A running `idgraph serve` with a client for it.
struct Server {
    process: ServeProcess,
    base: String,
    client: reqwest::Client,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let process = ServeProcess::start(data_dir);
        let client = crate::helpers::http_client();
        Server {
            base: process.address.clone(),
            stderr: process.stderr.clone(),
            process,
            client,
        }
    }

    fn stderr(&self) -> String {
        self.process.stderr()
    }

    async fn post(&self, body: &Value) -> Value {
        let resp = self
            .client
            .post(format!("{}/v1/events", self.base))
            .json(body)
            .send()
            .await
            .expect("POST /v1/events");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "ingest: {body}");
        body
    }

    async fn search(&self, params: &[(&str, &str)]) -> Value {
        search_at(&self.client, &self.base, params).await
    }

    async fn first_hit_eventually(&self, q: &str, id: &str) -> Value {
        first_hit_eventually(&self.client, &self.base, q, id).await
    }

    /// Sends SIGTERM and waits for the process to exit; returns how it exited. (Whether a
    /// graceful stop exits 0 is checked by one test of its own,
    /// `graceful_stops_always_exit_cleanly`; the rebuild tests only need the process gone.)
    fn stop(mut self) -> ExitStatus {
        let status = self.process.terminate();
        // Let the stderr thread collect the last lines.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !self.stderr().contains("panicked"),
            "the server panicked:\n{}",
            self.stderr()
        );
        status
    }

    /// SIGKILL: no chance to commit anything.
    fn kill(mut self) {
        self.process.kill();
    }
}

/// `n` people for the restart tests: surname `<Prefix>sson`, loyalty id `<PREFIX>-<i>`,
/// all at postal code 101 (so the words of `<PREFIX>-1` match every one of them).
fn people(prefix: &str, n: usize) -> Vec<Value> {
    let first = [
        "Alma", "Bruno", "Cleo", "Dario", "Elsa", "Fabio", "Greta", "Hugo",
    ];
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-{i}"),
                "crm",
                json!({
                    "email": format!("{}.{prefix}{i}@example.com", first[i % first.len()].to_lowercase()),
                    "loyalty_id": format!("{}-{i}", prefix.to_uppercase()),
                }),
                json!({
                    "first_name": first[i % first.len()],
                    "last_name": format!("{}{}", capitalize(prefix), "sson"),
                    "address": address(&format!("{} Fjord Street", 10 + i), "Reykjavik", "101", "IS"),
                }),
            )
        })
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Ingests `events` in one batch on `server`; returns the profile ids in order.
async fn ingest_all(server: &Server, events: Vec<Value>) -> Vec<String> {
    let n = events.len();
    let out = server.post(&Value::Array(events)).await;
    assert_eq!(out["accepted"], n, "{out}");
    out["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(pid)
        .collect()
}

/// Everyone of `prefix` is found: by surname (all of them, `total` exact), and each one
/// first by loyalty id.
async fn all_found(server: &Server, prefix: &str, ids: &[String]) {
    let surname = format!("{}sson", capitalize(prefix));
    let body = search_until(
        &server.client,
        &server.base,
        &[("q", surname.as_str()), ("limit", "100")],
        &format!("all {} of {surname}", ids.len()),
        |b| total(b) == ids.len() as u64,
    )
    .await;
    let expected: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(id_set(&body), expected, "{surname}: {body}");
    for (i, id) in ids.iter().enumerate() {
        let loyalty = format!("{}-{i}", prefix.to_uppercase());
        server.first_hit_eventually(&loyalty, id).await;
    }
}

/// Starts on `dir`, ingests the first people, waits until they are searchable, stops.
async fn prepare(dir: &Path) -> Vec<String> {
    let server = Server::start(dir);
    let ids = ingest_all(&server, people("olaf", 6)).await;
    all_found(&server, "olaf", &ids).await;
    server.stop();
    assert!(
        search_dir(dir).join("meta.json").is_file(),
        "an index was written"
    );
    ids
}

fn search_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("search")
}

/// After a restart on `dir`, everything is found and the index still follows changes.
async fn works_after_restart(dir: &Path, ids: &[String]) {
    let server = Server::start(dir);
    all_found(&server, "olaf", ids).await;
    // Typos still work on the rebuilt index.
    let body = server.search(&[("q", "Olafsosn")]).await;
    assert_eq!(total(&body), ids.len() as u64, "{body}");
    // New changes are indexed after a rebuild.
    let more = ingest_all(&server, people("ingrid", 3)).await;
    all_found(&server, "ingrid", &more).await;
    server.stop();
}

/// Servers started and stopped side by side (a busy machine makes shutdown races show).
const STOP_LANES: usize = 4;
/// Start/stop cycles per lane.
const STOP_CYCLES: usize = 12;

/// One lane of [`graceful_stops_always_exit_cleanly`]: start, check everything of the
/// earlier cycles is found, ingest, stop at once; returns the failed stops.
async fn stop_cycles(lane: usize) -> Vec<String> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let aside = tempfile::tempdir().expect("tempdir");
    let old = aside.path().join("search");
    let mut ids: Vec<String> = Vec::new();
    let mut failures = Vec::new();
    for cycle in 0..STOP_CYCLES {
        // Every other start rebuilds an index left behind the store (stops after such a
        // rebuild crashed most often).
        if cycle == 1 {
            copy_dir(&search_dir(tmp.path()), &old);
        } else if cycle % 2 == 1 {
            std::fs::remove_dir_all(search_dir(tmp.path())).expect("delete the search index");
            copy_dir(&old, &search_dir(tmp.path()));
        }
        let server = Server::start(tmp.path());
        let everyone: BTreeSet<String> = ids.iter().cloned().collect();
        if !everyone.is_empty() {
            search_until(
                &server.client,
                &server.base,
                &[("q", "Cyclesson"), ("limit", "100")],
                "everyone of the earlier cycles",
                |b| id_set(b) == everyone,
            )
            .await;
        }
        let out = server
            .post(&event(
                &format!("cycle-{lane}-{cycle}"),
                "web",
                json!({ "loyalty_id": format!("CYCLE-{lane}-{cycle}") }),
                json!({ "first_name": "Cyc", "last_name": "Cyclesson" }),
            ))
            .await;
        ids.push(pid(&out));
        for (i, id) in ids.iter().enumerate() {
            server
                .first_hit_eventually(&format!("CYCLE-{lane}-{i}"), id)
                .await;
        }
        let stderr = server.stderr.clone();
        let status = server.stop();
        if !status.success() {
            let log = without_colours(&stderr.lock().unwrap());
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            failures.push(format!(
                "lane {lane} cycle {cycle}: {status:?}; stderr ends {tail:?}"
            ));
        }
    }
    failures
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A graceful stop (SIGTERM) exits 0 every time, also right after a write the indexer
/// has not committed yet: the engine (store and index) is closed before the process
/// exits. Each next start finds everything acknowledged before.
#[test]
fn graceful_stops_always_exit_cleanly() {
    let lanes: Vec<_> = (0..STOP_LANES)
        .map(|lane| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(stop_cycles(lane))
            })
        })
        .collect();
    let failures: Vec<String> = lanes
        .into_iter()
        .flat_map(|l| l.join().expect("a lane panicked"))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} graceful stops did not exit 0:\n{}",
        failures.len(),
        STOP_LANES * STOP_CYCLES,
        failures.join("\n")
    );
}

/// A restart after a graceful stop reuses the index as it is (a rebuild reads every
/// profile: it must not happen on every start); a missing one is rebuilt, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_current_index_is_reused_at_start_and_a_missing_one_rebuilt() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let server = Server::start(tmp.path());
    all_found(&server, "olaf", &ids).await;
    let log = server.stderr();
    server.stop();
    assert!(
        !log.contains("rebuilt"),
        "a graceful restart rebuilt a current index:\n{log}"
    );

    std::fs::remove_dir_all(search_dir(tmp.path())).expect("delete the search index");
    let server = Server::start(tmp.path());
    all_found(&server, "olaf", &ids).await;
    let log = server.stderr();
    server.stop();
    assert!(
        log.contains("search index rebuilt"),
        "a missing index is rebuilt and logged:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_a_deleted_index() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    std::fs::remove_dir_all(search_dir(tmp.path())).expect("delete the search index");
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_a_garbage_meta_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    std::fs::write(
        search_dir(tmp.path()).join("meta.json"),
        b"\x00\xffthis is not an index {{{",
    )
    .expect("overwrite meta.json");
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_an_empty_meta_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    std::fs::write(search_dir(tmp.path()).join("meta.json"), b"").expect("truncate meta.json");
    works_after_restart(tmp.path(), &ids).await;
}

/// The segment files of the index (everything but tantivy's metadata and lock files).
fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the search dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n != "meta.json")
        })
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_truncated_segment_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let files = segment_files(&search_dir(tmp.path()));
    assert!(!files.is_empty(), "the index has segment files");
    for f in &files {
        let len = std::fs::metadata(f).expect("metadata").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(f)
            .expect("open segment file");
        file.set_len(len / 2).expect("truncate segment file");
    }
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_emptied_segment_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let files = segment_files(&search_dir(tmp.path()));
    assert!(!files.is_empty(), "the index has segment files");
    for f in &files {
        std::fs::write(f, b"").expect("empty segment file");
    }
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_missing_segment_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let files = segment_files(&search_dir(tmp.path()));
    assert!(!files.is_empty(), "the index has segment files");
    for f in &files {
        std::fs::remove_file(f).expect("remove segment file");
    }
    works_after_restart(tmp.path(), &ids).await;
}

/// Overwrites the middle of every segment file ending in `.{ext}` (size and footer kept),
/// as a bad disk or a torn copy would.
fn corrupt_segment_bytes(search: &Path, ext: &str, region: impl Fn(usize) -> (usize, usize)) {
    let files: Vec<PathBuf> = segment_files(search)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert!(!files.is_empty(), "the index has .{ext} files");
    for f in &files {
        let mut bytes = std::fs::read(f).expect("read segment file");
        let (start, len) = region(bytes.len());
        for (i, b) in bytes[start..start + len].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(73).wrapping_add(0xA5);
        }
        std::fs::write(f, &bytes).expect("write segment file");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_corrupted_postings() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    corrupt_segment_bytes(&search_dir(tmp.path()), "idx", |n| (n / 8, n / 3));
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_corrupted_terms() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    corrupt_segment_bytes(&search_dir(tmp.path()), "term", |n| (n / 8, n / 3));
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_with_corrupted_stored_ids() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    corrupt_segment_bytes(&search_dir(tmp.path()), "store", |n| (8, n / 4));
    works_after_restart(tmp.path(), &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_an_index_left_behind_the_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let aside = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let old = aside.path().join("search");
    copy_dir(&search_dir(tmp.path()), &old);

    // More people (and a merge of two earlier ones) while the copy sits aside.
    let server = Server::start(tmp.path());
    let later = ingest_all(&server, people("ingrid", 4)).await;
    all_found(&server, "ingrid", &later).await;
    let out = server
        .post(&event(
            "olaf-merge",
            "web",
            json!({ "loyalty_id": "OLAF-0", "email": "bruno.olaf1@example.com" }),
            Value::Null,
        ))
        .await;
    assert_eq!(out["status"], "accepted", "{out}");
    let absorbed = ids[1].clone();
    assert_eq!(out["merged"], json!([absorbed]), "{out}");
    server.stop();

    // Put the old index back: it reflects an earlier write than the store.
    std::fs::remove_dir_all(search_dir(tmp.path())).expect("remove the current index");
    copy_dir(&old, &search_dir(tmp.path()));

    let server = Server::start(tmp.path());
    all_found(&server, "ingrid", &later).await;
    // The merge is reflected: the absorbed Olaf is not a hit, the survivor holds both.
    let body = search_until(
        &server.client,
        &server.base,
        &[("q", "Olafsson"), ("limit", "100")],
        "five Olafs after the merge",
        |b| total(b) == (ids.len() - 1) as u64,
    )
    .await;
    assert!(!hit_ids(&body).contains(&absorbed), "{body}");
    let body = server.first_hit_eventually("OLAF-1", &ids[0]).await;
    assert!(!hit_ids(&body).contains(&absorbed), "{body}");
    let body = server
        .first_hit_eventually("bruno.olaf1@example.com", &ids[0])
        .await;
    assert!(!hit_ids(&body).contains(&absorbed), "{body}");
    server.stop();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_a_crash_finds_everything_acknowledged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;
    let server = Server::start(tmp.path());
    // Acknowledged (durable in the store), then killed before the indexer may commit.
    let later = ingest_all(&server, people("ingrid", 5)).await;
    server.kill();
    let server = Server::start(tmp.path());
    all_found(&server, "ingrid", &later).await;
    all_found(&server, "olaf", &ids).await;
    server.stop();
}

/// Runs `idgraph reindex --data-dir DIR`; returns (exit code, stdout, stderr).
fn reindex(dir: &Path) -> (Option<i32>, String, String) {
    let out = idgraph_command()
        .arg("reindex")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("cannot run idgraph reindex");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first number on stdout of `idgraph reindex`.
fn reindexed_count(stdout: &str) -> u64 {
    stdout
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| !w.is_empty())
        .unwrap_or_else(|| panic!("no number in the reindex output: {stdout:?}"))
        .parse()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reindex_prints_the_profile_count_and_search_works_after() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids = prepare(tmp.path()).await;

    let (code, stdout, stderr) = reindex(tmp.path());
    assert_eq!(
        code,
        Some(0),
        "reindex failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        reindexed_count(&stdout),
        ids.len() as u64,
        "reindex reports the number of profiles: {stdout:?}"
    );
    assert!(stdout.contains("profiles"), "{stdout:?}");
    works_after_restart(tmp.path(), &ids).await;

    // After a merge, the count is that of live profiles (the absorbed one is not indexed).
    let server = Server::start(tmp.path());
    server
        .post(&event(
            "olaf-merge-2",
            "web",
            json!({ "loyalty_id": "OLAF-2", "email": "dario.olaf3@example.com" }),
            Value::Null,
        ))
        .await;
    server.stop();
    let (code, stdout, stderr) = reindex(tmp.path());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        reindexed_count(&stdout),
        (ids.len() + 3 - 1) as u64,
        "6 Olafs + 3 Ingrids - 1 merged away: {stdout:?}"
    );
    // Also from a deleted index.
    std::fs::remove_dir_all(search_dir(tmp.path())).unwrap();
    let (code, stdout, stderr) = reindex(tmp.path());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        reindexed_count(&stdout),
        (ids.len() + 2) as u64,
        "{stdout:?}"
    );
    let server = Server::start(tmp.path());
    let body = server.search(&[("q", "Olafsson"), ("limit", "100")]).await;
    assert_eq!(total(&body), (ids.len() - 1) as u64, "{body}");
    assert!(!hit_ids(&body).contains(&ids[3]), "merged away: {body}");
    server.stop();

    // A data directory that does not exist fails cleanly.
    let missing = tmp.path().join("no-such-dir");
    let (code, stdout, stderr) = reindex(&missing);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("error"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!missing.exists(), "reindex created the missing data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuilds_page_through_more_than_two_thousand_profiles() {
    const PEOPLE: usize = 2_345;
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = Server::start(tmp.path());
    let mut ids = Vec::with_capacity(PEOPLE);
    for chunk in (0..PEOPLE).collect::<Vec<_>>().chunks(1000) {
        let events: Vec<Value> = chunk
            .iter()
            .map(|i| {
                event(
                    &format!("bulk-{i}"),
                    "web",
                    json!({ "customer_id": format!("BULK-{i}") }),
                    json!({ "first_name": "Bulk", "last_name": format!("Person{i}") }),
                )
            })
            .collect();
        ids.extend(ingest_all(&server, events).await);
    }
    server.stop();

    let (code, stdout, stderr) = reindex(tmp.path());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(reindexed_count(&stdout), PEOPLE as u64, "{stdout:?}");

    // And at start-up from a deleted index: the people on both sides of a page boundary
    // and the last one are found.
    std::fs::remove_dir_all(search_dir(tmp.path())).unwrap();
    let server = Server::start(tmp.path());
    for i in [0, 1, 1_998, 1_999, 2_000, 2_001, PEOPLE - 1] {
        server
            .first_hit_eventually(&format!("BULK-{i}"), &ids[i])
            .await;
    }
    let body = server.search(&[("q", "Bulk"), ("limit", "1")]).await;
    assert_eq!(total(&body), PEOPLE as u64, "{body}");
    server.stop();
}

/// Hits whose words all match whole indexed words rank above hits that need a typo, and
/// within each, profiles whose name reads as the words typed rank above profiles that have
/// the words elsewhere, even when the others match more fields; the looser tiers run only
/// when the page needs them, and `total_relation` says when `total` is then a lower bound.
#[tokio::test]
async fn tiers_rank_exact_names_then_exact_words_then_typos_and_total_says_when_it_is_a_lower_bound(
) {
    let app = spawn_app().await;
    let mara = app
        .ingest_pid(&event(
            "tier-mara",
            "crm",
            json!({ "email": "a1@example.com" }),
            json!({ "first_name": "Mara", "last_name": "Smith" }),
        ))
        .await;
    // Mara Lee has both words too, "mara" twice (name and email), but not as her name.
    let lee = app
        .ingest_pid(&event(
            "tier-lee",
            "crm",
            json!({ "email": "mara.smith@example.com" }),
            json!({ "first_name": "Mara", "last_name": "Lee" }),
        ))
        .await;
    // "Maria" is one typo from "Mara", and her email repeats both words: under one flat
    // score she would outrank Mara Smith.
    let maria = app
        .ingest_pid(&event(
            "tier-maria",
            "crm",
            json!({ "email": "maria.smith@example.com" }),
            json!({ "first_name": "Maria", "last_name": "Smith" }),
        ))
        .await;
    app.search_until(
        &[("q", "Mara Smith"), ("limit", "5")],
        "all three indexed",
        |b| total(b) == 3,
    )
    .await;

    // A page the first tier fills: the others are not run, the total is a lower bound.
    let body = app.search(&[("q", "Mara Smith"), ("limit", "1")]).await;
    assert_eq!(hit_ids(&body), vec![mara.clone()], "{body}");
    assert_eq!(body["hits"][0]["tier"], "exact_words", "{body}");
    assert_eq!(body["total_relation"], "gte", "{body}");
    assert_eq!(total(&body), 1, "{body}");

    // A page that reaches every tier: the name, then the words, then the typo; exact total.
    let body = app.search(&[("q", "Mara Smith"), ("limit", "5")]).await;
    let all = vec![mara.clone(), lee.clone(), maria.clone()];
    assert_eq!(hit_ids(&body), all, "{body}");
    let tiers: Vec<&str> = body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["tier"].as_str().expect("tier"))
        .collect();
    assert_eq!(
        tiers,
        ["exact_words", "exact_words", "typo_or_prefix"],
        "{body}"
    );
    assert_eq!(body["total_relation"], "eq", "{body}");
    assert_eq!(total(&body), 3, "{body}");
    // Pages of one hit walk the same ranking.
    for (offset, who) in all.iter().enumerate() {
        let o = offset.to_string();
        let body = app
            .search(&[("q", "Mara Smith"), ("limit", "1"), ("offset", o.as_str())])
            .await;
        assert_eq!(hit_ids(&body), vec![who.clone()], "offset {offset}: {body}");
    }

    // The words in another order are not the name: the name tier finds no one, and every
    // profile with both words follows by score.
    let body = app.search(&[("q", "Smith Mara"), ("limit", "5")]).await;
    assert_eq!(id_set(&body), set(&[&mara, &lee, &maria]), "{body}");
    assert_eq!(body["hits"][2]["profile_id"], maria.as_str(), "{body}");

    // A word found nowhere ("Smiht") is relaxed first, alone: Mara Smith (mara + smith~ as
    // her name), then Mara Lee (mara + smith~ anywhere), then Maria, who needs both words
    // relaxed.
    let body = app.search(&[("q", "Mara Smiht"), ("limit", "1")]).await;
    assert_eq!(hit_ids(&body), vec![mara.clone()], "{body}");
    assert_eq!(body["total_relation"], "gte", "{body}");
    let body = app.search(&[("q", "Mara Smiht"), ("limit", "5")]).await;
    assert_eq!(hit_ids(&body), vec![mara, lee, maria], "{body}");
    assert_eq!(body["total_relation"], "eq", "{body}");
    assert_eq!(total(&body), 3, "{body}");
}

/// A search index left behind the store (writes it never saw, as after a crash before its
/// commit) catches up from the store's change log at the next start instead of being
/// rebuilt, and finds what it missed.
#[test]
fn an_index_behind_the_store_catches_up_from_the_change_log() {
    use idgraph::engine::{search_dir, Engine};
    use idgraph::search::{Opened, SearchIndex};
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = idgraph::config::Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let person = |id: &str, ids: serde_json::Value, last: &str| {
        serde_json::json!({"event_id": id, "source": "crm", "identifiers": ids,
                           "traits": {"first_name": "Quentin", "last_name": last}})
    };
    {
        let engine = Engine::open(settings.clone()).expect("engine");
        let ev = engine
            .validate(&person(
                "cu-1",
                serde_json::json!({"customer_id": "CU-1"}),
                "Catchupfirst",
            ))
            .expect("valid");
        engine.ingest(vec![ev]).expect("ingest");
    }
    // Writes the index never sees: the same store served without a search index.
    {
        let store = Engine::open_store(&settings).expect("store");
        let engine = Engine::with_store(settings.clone(), store, None).expect("engine");
        let events = [
            person(
                "cu-2",
                serde_json::json!({"customer_id": "CU-2", "email": "q2@example.com"}),
                "Catchupsecond",
            ),
            person(
                "cu-3",
                serde_json::json!({"email": "q3@example.com"}),
                "Catchupthird",
            ),
        ];
        let valid = events
            .iter()
            .map(|e| engine.validate(e).expect("valid"))
            .collect();
        engine.ingest(valid).expect("ingest");
    }
    let store = Engine::open_store(&settings).expect("store");
    let normalizer = idgraph::ingest::identifier::Normalizer::new(
        &settings.identifiers.default_region,
        &settings.identifiers.custom_kinds,
    )
    .expect("normalizer");
    let (index, opened) =
        SearchIndex::open(&search_dir(&settings), store.as_ref(), normalizer).expect("open");
    match opened {
        Opened::CaughtUp { groups, profiles } => {
            assert_eq!(groups, 1, "one write group was missed");
            assert_eq!(profiles, 2, "two profiles changed in it");
        }
        other => panic!("the index was not caught up: {other:?}"),
    }
    for (q, expected) in [
        ("Catchupfirst", 1),
        ("Catchupsecond", 1),
        ("Catchupthird", 1),
    ] {
        let req = idgraph::search::SearchRequest::new(Some(q), None, None, None, None, None)
            .expect("request");
        let found = index.search(&req).expect("search");
        assert_eq!(found.total, expected, "{q}");
    }
}

#[tokio::test]
async fn an_initial_and_surname_or_a_nickname_finds_the_person() {
    let app = spawn_app().await;
    let person = |id: &str, first: &str, last: &str| {
        event(
            id,
            "crm",
            json!({ "customer_id": format!("CUST{id}") }),
            json!({ "first_name": first, "last_name": last }),
        )
    };
    let robert = app.ingest_pid(&person("1", "Robert", "Williams")).await;
    let nicole = app.ingest_pid(&person("2", "Nicole", "Torres")).await;
    let nathan = app.ingest_pid(&person("3", "Nathan", "Torres")).await;
    let maria = app.ingest_pid(&person("4", "Maria", "Torres")).await;
    let peggy = app.ingest_pid(&person("5", "Peggy", "Olson")).await;
    app.first_hit_eventually("Peggy Olson", &peggy).await;

    // An initial plus the surname: every Torres whose first name starts with N, no other.
    let body = app.q("n torres").await;
    assert_eq!(id_set(&body), set(&[&nicole, &nathan]), "{body}");
    assert!(
        matched_of(&body, &nicole).contains(&"name".to_owned()),
        "{body}"
    );
    let body = app.q("N. Torres").await;
    assert_eq!(id_set(&body), set(&[&nicole, &nathan]), "{body}");
    assert!(!id_set(&body).contains(&maria));

    // A nickname finds the given name, and the given name the nickname.
    let body = app.q("bob williams").await;
    assert_eq!(hit_ids(&body).first(), Some(&robert), "{body}");
    assert!(
        matched_of(&body, &robert).contains(&"name".to_owned()),
        "{body}"
    );
    let body = app.q("margaret olson").await;
    assert_eq!(hit_ids(&body), vec![peggy.clone()], "{body}");
    // Not a nickname of anyone here: nothing.
    assert_eq!(total(&app.q("zelda williams").await), 0);
}
