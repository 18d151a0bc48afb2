//! The web console end to end: the real server on loopback with a small realistic
//! scenario, and `node --test` driving Debian's chromium (playwright-core) against it:
//! search with a typo, profile page, the identity graph, edge provenance and explain
//! (`console/e2e/console.test.mjs`, an agent's key); the steward's review queue, merge,
//! split, why-not and value history with pins (`console/e2e/steward.test.mjs`, an admin's
//! key), whose writes are then checked over HTTP; a profile's consents, audiences and
//! score (`console/e2e/marketing.test.mjs`, an agent's key). A missing node, chromium or npm package
//! fails the test; it never skips.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{event, json_ok, spawn_app, spawn_app_with, TestApp};

const CHROMIUM: &str = "/usr/bin/chromium";
const MARKUP: &str = "<img src=x onerror=alert(1)>";

fn at(mut ev: Value, timestamp: &str) -> Value {
    ev["timestamp"] = json!(timestamp);
    ev
}

/// Ximena Quarterfield, seen by web, crm, pos and mobile over a few weeks (an anonymous web
/// visitor first, merged into her CRM record when she logs in), and Tobias Quarterfield,
/// who lives at the same address and once used her tablet in a shop (a refused link:
/// one customer id per profile). Returns Ximena's profile id.
async fn scenario(app: &TestApp) -> String {
    let address = json!({
        "street": "48 Lantern Row", "city": "Portland", "postal_code": "97205",
        "region": "OR", "country": "US"
    });
    let mut visit = at(
        event(
            "web-0001",
            "web",
            json!({ "cookie_id": "ck-xq-7f3a", "device_id": "dev-xq-tab" }),
            Value::Null,
        ),
        "2026-01-05T09:12:00Z",
    );
    visit["properties"] = json!({ "platform": "iOS" });
    let anonymous = app.ingest_pid(&visit).await;
    let crm = app
        .ingest(&at(
            event(
                "crm-0001",
                "crm",
                json!({ "customer_id": "C-9001", "email": "ximena.q@example.com", "phone": "(503) 234-7781" }),
                json!({
                    "first_name": "Ximena", "last_name": "Quarterfield", "birth_date": "1986-04-17",
                    "address": address, "note": MARKUP
                }),
            ),
            "2026-01-10T15:30:00Z",
        ))
        .await;
    assert_ne!(crm["profile_id"], anonymous.as_str(), "{crm}");
    let login = app
        .ingest(&at(
            event(
                "web-0002",
                "web",
                json!({ "email": "Ximena.Q@example.com", "cookie_id": "ck-xq-7f3a" }),
                Value::Null,
            ),
            "2026-01-12T19:01:00Z",
        ))
        .await;
    assert_eq!(
        login["profile_id"],
        anonymous.as_str(),
        "the oldest profile survives the merge: {login}"
    );
    for (id, ts) in [
        ("pos-0001", "2026-02-01T11:00:00Z"),
        ("pos-0002", "2026-02-20T17:45:00Z"),
    ] {
        app.ingest(&at(
            event(
                id,
                "pos",
                json!({ "customer_id": "C-9001", "loyalty_id": "LOY-4412", "phone": "503-234-7781", "email": "ximena.q@example.com" }),
                json!({ "first_name": "Ximena", "last_name": "Quarterfield" }),
            ),
            ts,
        ))
        .await;
    }
    let tobias = app
        .ingest_pid(&at(
            event(
                "crm-0002",
                "crm",
                json!({ "customer_id": "C-9002", "email": "tobias.q@example.com" }),
                json!({ "first_name": "Tobias", "last_name": "Quarterfield", "address": address }),
            ),
            "2026-01-20T10:00:00Z",
        ))
        .await;
    assert_ne!(tobias, anonymous);
    let shop = app
        .ingest(&at(
            event(
                "pos-0003",
                "pos",
                json!({ "customer_id": "C-9002", "device_id": "dev-xq-tab" }),
                Value::Null,
            ),
            "2026-03-02T12:00:00Z",
        ))
        .await;
    assert_eq!(shop["profile_id"], tobias.as_str(), "{shop}");
    assert_eq!(
        shop["conflicts"][0]["rule"], "max_per_profile:customer_id=1",
        "{shop}"
    );
    // Someone unrelated, so the search has something to leave out.
    app.ingest(&event(
        "crm-0003",
        "crm",
        json!({ "customer_id": "C-5000", "email": "marguerite.ollivander@example.org" }),
        json!({ "first_name": "Marguerite", "last_name": "Ollivander", "address": { "city": "Boise", "country": "US" } }),
    ))
    .await;

    let household = json_ok(
        app.get(&format!("/v1/profiles/{anonymous}/household"))
            .await,
    )
    .await;
    let members = household["members"].as_array().map_or(0, Vec::len);
    assert_eq!(
        members, 2,
        "Ximena and Tobias form a household: {household}"
    );
    anonymous
}

/// Waits until the search index (which follows writes asynchronously) has the profile
/// under its correctly spelled name, so the browser test measures the console, not the lag.
async fn wait_until_searchable(app: &TestApp, name: &str, pid: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let body = json_ok(app.get_query("/v1/search", &[("q", name)]).await).await;
        let found = body["hits"]
            .as_array()
            .is_some_and(|hits| hits.iter().any(|h| h["profile_id"] == pid));
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{pid} is not searchable as {name:?} after 15 s: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `node --version`, or a clear failure.
fn require_tools(root: &Path) {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`node --version` failed ({}); install Node.js (scripts/install-deps.sh does)",
            out.status
        ),
        Err(e) => panic!(
            "cannot run `node` ({e}): the console's browser tests need Node.js; run scripts/install-deps.sh"
        ),
    }
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the console's browser tests need Debian's chromium; run scripts/install-deps.sh"
    );
    assert!(
        root.join("console/node_modules/playwright-core/package.json")
            .exists(),
        "console/node_modules/playwright-core is missing: run scripts/install-deps.sh (npm ci in console/)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium_search_profile_graph_provenance_explain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);
    let app = spawn_app().await;
    let pid = scenario(&app).await;
    let profile = app.profile(&pid).await;
    assert_eq!(profile["traits"]["first_name"], "Ximena", "{profile}");
    wait_until_searchable(&app, "Ximena Quarterfield", &pid).await;

    let envs = [
        ("CONSOLE_URL", app.address.clone()),
        // A support agent's key: the console must work with the masked view.
        (
            "CONSOLE_KEY",
            crate::helpers::key_of("test-agent").to_owned(),
        ),
        // One letter wrong in the last name, typed key by key.
        ("CONSOLE_QUERY", "Ximena Quartarfield".to_owned()),
        ("CONSOLE_PROFILE_ID", pid.clone()),
        ("CONSOLE_NAME", "Ximena Quarterfield".to_owned()),
        ("CONSOLE_EXPLAIN_A", "device_id:dev-xq-tab".to_owned()),
        ("CONSOLE_EXPLAIN_B", "loyalty_id:LOY-4412".to_owned()),
        ("CONSOLE_MARKUP", MARKUP.to_owned()),
    ];
    run_browser_tests(
        root,
        "console/e2e/console.test.mjs",
        &envs,
        5,
        "/tmp/console-e2e.png",
    )
    .await;
}

/// A person with consent statements from two sources and a model's score trait; the
/// console (an agent's key) shows the consents and the score as the API gives them
/// (`console/e2e/marketing.test.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium_consents_audiences_score() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);
    let app = spawn_app().await;
    let mut signup = at(
        event(
            "cs-1",
            "web",
            json!({ "email": "consuela.m@example.com" }),
            json!({ "first_name": "Consuela", "last_name": "Marchetti" }),
        ),
        "2026-02-03T10:00:00Z",
    );
    signup["consent"] = json!({ "marketing_email": "granted", "analytics": true });
    let pid = app.ingest_pid(&signup).await;
    let mut call = at(
        event(
            "cs-2",
            "contact_center",
            json!({ "email": "consuela.m@example.com" }),
            Value::Null,
        ),
        "2026-03-15T16:20:00Z",
    );
    call["consent"] = json!({ "marketing_sms": "denied" });
    app.ingest(&call).await;
    let score = at(
        event(
            "cs-3",
            "third_party",
            json!({ "email": "consuela.m@example.com" }),
            json!({ "score": { "value": 0.87, "model": "churn-v3", "label": "high",
                               "scored_at": "2026-04-01T08:00:00Z" } }),
        ),
        "2026-04-01T08:00:00Z",
    );
    app.ingest(&score).await;
    let profile = app.profile(&pid).await;
    assert_eq!(
        profile["consents"]["marketing_sms"]["state"], "denied",
        "{profile}"
    );
    assert_eq!(
        profile["traits"]["extra"]["score"]["model"], "churn-v3",
        "{profile}"
    );

    let envs = [
        ("CONSOLE_URL", app.address.clone()),
        ("CONSOLE_KEY", crate::helpers::key_of("test-agent")),
        ("CONSOLE_PROFILE_ID", pid),
        ("CONSOLE_SCORE_MODEL", "churn-v3".to_owned()),
    ];
    run_browser_tests(
        root,
        "console/e2e/marketing.test.mjs",
        &envs,
        2,
        "/tmp/console-marketing-e2e.png",
    )
    .await;
}

/// Runs `node --test <file>` with `envs` and asserts that its `tests` browser tests pass.
async fn run_browser_tests(
    root: &Path,
    file: &str,
    envs: &[(&str, String)],
    tests: usize,
    screenshot: &str,
) {
    let dir = root.to_path_buf();
    let owned: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let args = ["--test", "--test-reporter=tap", file].map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args(args)
            .current_dir(&dir)
            .envs(owned)
            .env_remove("NODE_OPTIONS")
            .output()
    })
    .await
    .expect("the node runner thread panicked")
    .unwrap_or_else(|e| panic!("cannot run `node --test {file}`: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`node --test {file}` failed ({}); a screenshot of the failing page is in {screenshot}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!("# pass {tests}")) && stdout.contains("# fail 0"),
        "expected the {tests} browser tests of {file} to pass:\n{stdout}"
    );
}

/// What the steward's scenario made.
struct StewardScenario {
    /// The profile of the first phone (it survives the review's accept).
    pid: String,
    /// The device's profile, merged by hand.
    device_pid: String,
}

const PHONE_A: &str = "+16175550111";
const PHONE_B: &str = "+16175550112";
const EMAIL: &str = "anna.k@example.com";
const DEVICE: &str = "dev-anna-tab";
const PIOTR_A: &str = "+16175550121";
const PIOTR_B: &str = "+16175550122";
const BRIAN_A: &str = "C-7001";
const BRIAN_B: &str = "C-7002";

fn person(first: &str, last: &str, birth_date: &str, city: &str) -> Value {
    json!({"first_name": first, "last_name": last, "birth_date": birth_date,
           "address": {"city": city}})
}

fn anna(city: &str) -> Value {
    person("Anna", "Kowalski", "1980-01-01", city)
}

/// Anna Kowalski in two profiles that probabilistic matching is unsure of (same names and
/// birth date, Boston by crm and Denver by pos: one review item); an event links an email
/// to the Denver phone (a link a split needs an override to cut); her tablet is a profile
/// of its own, with markup in a trait. Piotr Nowak, in Chicago and Austin, is a second
/// review item (queued after Anna's), which the steward rejects; Brian O'Hara's two CRM
/// records, each with its own customer id, a third, which only an override accepts.
async fn steward_scenario(app: &TestApp) -> StewardScenario {
    let pid = app
        .ingest_pid(&event(
            "r1",
            "crm",
            json!({"phone": PHONE_A}),
            anna("Boston"),
        ))
        .await;
    let outcome = app
        .ingest(&event(
            "r2",
            "pos",
            json!({"phone": PHONE_B}),
            anna("Denver"),
        ))
        .await;
    assert_ne!(outcome["profile_id"], pid.as_str(), "{outcome}");
    app.ingest(&event(
        "r3",
        "web",
        json!({"phone": PHONE_B, "email": EMAIL}),
        Value::Null,
    ))
    .await;
    let device_pid = app
        .ingest_pid(&event(
            "r4",
            "mobile",
            json!({"device_id": DEVICE}),
            json!({"note": MARKUP}),
        ))
        .await;
    assert_ne!(device_pid, pid);
    for (id, source, phone, city) in [
        ("r5", "crm", PIOTR_A, "Chicago"),
        ("r6", "pos", PIOTR_B, "Austin"),
    ] {
        app.ingest(&event(
            id,
            source,
            json!({ "phone": phone }),
            person("Piotr", "Nowak", "1975-05-05", city),
        ))
        .await;
    }
    for (id, customer, city) in [("r7", BRIAN_A, "Boston"), ("r8", BRIAN_B, "Denver")] {
        app.ingest(&event(
            id,
            "crm",
            json!({ "customer_id": customer }),
            person("Brian", "O'Hara", "1969-09-09", city),
        ))
        .await;
    }
    let queue = json_ok(app.get("/v1/review").await).await;
    assert_eq!(
        queue["items"].as_array().map_or(0, Vec::len),
        3,
        "three review items: {queue}"
    );
    StewardScenario { pid, device_pid }
}

const REASONS: [(&str, &str); 7] = [
    ("CONSOLE_REASON_ACCEPT", "same customer, moved to Denver"),
    ("CONSOLE_REASON_REJECT", "father and son, both Piotr"),
    (
        "CONSOLE_REASON_OVERRIDE",
        "CRM created a second customer id",
    ),
    ("CONSOLE_REASON_MERGE", "her tablet, confirmed at the store"),
    ("CONSOLE_REASON_SPLIT", "shared family email, not hers"),
    (
        "CONSOLE_REASON_PIN",
        "customer confirmed the address by phone",
    ),
    ("CONSOLE_REASON_UNPIN", "pinned by mistake"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium_steward_review_merge_split_why_not_values() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);
    let app = spawn_app_with(|s| s.matching.enabled = true).await;
    let scenario = steward_scenario(&app).await;

    let mut envs = vec![
        ("CONSOLE_URL", app.address.clone()),
        ("CONSOLE_ADMIN_KEY", crate::helpers::key_of("test-admin")),
        ("CONSOLE_AGENT_KEY", crate::helpers::key_of("test-agent")),
        ("CONSOLE_PROFILE_ID", scenario.pid.clone()),
        ("CONSOLE_PHONE_A", format!("phone:{PHONE_A}")),
        ("CONSOLE_PHONE_B", format!("phone:{PHONE_B}")),
        ("CONSOLE_EMAIL", format!("email:{EMAIL}")),
        ("CONSOLE_OTHER_A", format!("phone:{PIOTR_A}")),
        ("CONSOLE_OTHER_B", format!("phone:{PIOTR_B}")),
        ("CONSOLE_CONFLICT_A", format!("customer_id:{BRIAN_A}")),
        ("CONSOLE_CONFLICT_B", format!("customer_id:{BRIAN_B}")),
        ("CONSOLE_MERGE_ID", scenario.device_pid.clone()),
        ("CONSOLE_MARKUP", MARKUP.to_owned()),
    ];
    envs.extend(REASONS.iter().map(|(k, v)| (*k, (*v).to_owned())));
    run_browser_tests(
        root,
        "console/e2e/steward.test.mjs",
        &envs,
        6,
        "/tmp/console-steward-e2e.png",
    )
    .await;

    // The browser really made the writes: the accept joined the phones, the reject kept
    // Piotr's apart, the split moved the email out, the merge brought the tablet in, and
    // history has every reason typed.
    let piotr = app.pid_of("phone", PIOTR_A).await;
    assert_ne!(app.pid_of("phone", PIOTR_B).await, piotr, "rejected");
    let brian = app.pid_of("customer_id", BRIAN_A).await;
    assert_eq!(
        app.pid_of("customer_id", BRIAN_B).await,
        brian,
        "accepted, overriding"
    );
    let pid = app.pid_of("phone", PHONE_A).await;
    assert_eq!(app.pid_of("phone", PHONE_B).await, pid, "accepted");
    assert_eq!(app.pid_of("device_id", DEVICE).await, pid, "merged");
    let email_pid = app.pid_of("email", EMAIL).await;
    assert_ne!(email_pid, pid, "split out");
    let queue = json_ok(app.get("/v1/review").await).await;
    assert_eq!(queue["items"], json!([]), "decided: {queue}");
    let mut entries = Vec::new();
    for id in [&pid, &email_pid, &piotr, &brian] {
        let history = json_ok(app.get(&format!("/v1/profiles/{id}/history")).await).await;
        entries.extend(history["history"].as_array().cloned().unwrap_or_default());
    }
    let text = Value::Array(entries.clone()).to_string();
    for (_, reason) in REASONS {
        assert!(text.contains(reason), "{reason:?} in history: {text}");
    }
    let kinds: Vec<&str> = entries.iter().filter_map(|h| h["kind"].as_str()).collect();
    for kind in ["merged", "split", "pinned", "unpinned"] {
        assert!(kinds.contains(&kind), "{kind} in history: {kinds:?}");
    }
    assert!(
        text.contains("overriding probable_conflict:customer_id"),
        "the override is recorded: {text}"
    );
    let values = json_ok(app.get(&format!("/v1/profiles/{pid}/values")).await).await;
    let address = values["traits"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "address"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(address["chosen_by"], "survivorship", "unpinned: {address}");
}

/// The analytics dashboard: `GET /v1/stats` checked against the scenario over HTTP, then
/// its charts in the real Chromium (`console/e2e/dashboard.test.mjs`, an analyst's and an
/// agent's key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_headless_chromium_dashboard_charts_the_stats() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    require_tools(root);
    let app = spawn_app_with(|s| {
        s.matching.enabled = true;
        s.server.stats_refresh_seconds = 1;
    })
    .await;
    steward_scenario(&app).await;
    let ximena = scenario(&app).await;
    // A pass that started after every write above.
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    let mut stats = Value::Null;
    for _ in 0..200 {
        stats = json_ok(app.get("/v1/stats").await).await;
        let done = stats["snapshot"]["computed_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > after);
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let snap = &stats["snapshot"];
    assert!(snap["profiles"].as_u64() > Some(0), "{stats}");
    // Totals and distributions agree with the profiles themselves.
    let per_profile: u64 = snap["identifiers_per_profile"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .sum();
    assert_eq!(Some(per_profile), snap["profiles"].as_u64(), "{snap}");
    let by_kind: u64 = snap["identifiers_by_kind"]
        .as_object()
        .expect("kinds")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(Some(by_kind), snap["identifiers"].as_u64(), "{snap}");
    let largest = snap["largest"].as_array().cloned().unwrap_or_default();
    assert!(!largest.is_empty(), "{snap}");
    let mut previous = u64::MAX;
    for l in &largest {
        let p = app
            .profile(l["profile_id"].as_str().unwrap_or_default())
            .await;
        let n: usize = p["identifiers"]
            .as_object()
            .expect("identifiers")
            .values()
            .map(|v| v.as_array().map_or(0, Vec::len))
            .sum();
        assert_eq!(l["identifiers"].as_u64(), Some(n as u64), "{l} vs {p}");
        assert!(n as u64 <= previous, "largest first: {largest:?}");
        previous = n as u64;
    }
    // Ximena (web, crm, pos, mobile) shares an address with Tobias: one household of two at
    // least, and web × crm counts her.
    let hh: u64 = snap["household_sizes"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .sum();
    assert!(hh >= 1, "{snap}");
    let x = app.profile(&ximena).await;
    assert!(x["sources"].as_array().is_some_and(|s| s.len() >= 2), "{x}");
    let overlap = &snap["source_overlap"];
    let sources: Vec<&str> = overlap["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let (w, c) = (
        sources.iter().position(|s| *s == "web").expect("web"),
        sources.iter().position(|s| *s == "crm").expect("crm"),
    );
    assert!(overlap["matrix"][w][c].as_u64() >= Some(1), "{overlap}");
    assert_eq!(overlap["matrix"][w][c], overlap["matrix"][c][w]);
    // Per day: merges and conflicts of the scenarios; the matcher's scores were counted.
    let sum = |k: &str| -> u64 {
        stats["daily"]
            .as_array()
            .expect("days")
            .iter()
            .filter_map(|d| d[k].as_u64())
            .sum()
    };
    assert!(
        sum("merges") >= 1 && sum("conflicts") >= 1 && sum("created") >= 4,
        "{stats}"
    );
    let scored: u64 = stats["match_scores"]["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .filter_map(|b| b["count"].as_u64())
        .sum();
    assert!(scored >= 1, "{stats}");
    // Agents may not read it; nothing about people is in it.
    let agent = reqwest::Client::new()
        .get(app.url("/v1/stats"))
        .bearer_auth(crate::helpers::key_of("test-agent"))
        .send()
        .await
        .expect("GET /v1/stats");
    assert_eq!(agent.status().as_u16(), 403);
    let text = stats.to_string();
    assert!(
        !text.contains("Ximena") && !text.contains("@example.com"),
        "{text}"
    );

    let envs = [
        ("CONSOLE_URL", app.address.clone()),
        (
            "CONSOLE_ANALYST_KEY",
            crate::helpers::key_of("test-analyst"),
        ),
        ("CONSOLE_AGENT_KEY", crate::helpers::key_of("test-agent")),
    ];
    run_browser_tests(
        root,
        "console/e2e/dashboard.test.mjs",
        &envs,
        2,
        "/tmp/console-dashboard-e2e.png",
    )
    .await;
}
