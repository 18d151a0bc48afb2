//! `schema/event.schema.json` and the service's validator agree.
//!
//! A table of valid and structurally invalid events is checked with the `jsonschema` crate
//! and with [`Engine::validate`]; both must give the verdict the table states.
//!
//! Only rules the schema CAN express are in the table. Left out on purpose, because the
//! schema documents them in prose only: email syntax and phone number validity, real
//! calendar dates and the 1900..today range of birth dates, timestamps at most a day in the
//! future, blocklisted placeholder values (an event whose only identifier is `"null"`), the
//! limit of 32 identifier values per event, the 4 KiB / 16 KiB size limits of traits and
//! properties, the 50 extra traits (the schema's `maxProperties: 54` also counts the four
//! core traits), whitespace trimming before length checks, and custom identifier kinds and
//! sources (which depend on the configuration).

use serde_json::{json, Map, Value};

use idgraph::config::Settings;
use idgraph::engine::Engine;

fn schema() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/event.schema.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

/// A minimal valid event with `field` set to `value` (`Value::Null` keeps an explicit null).
fn with(field: &str, value: Value) -> Value {
    let mut e = base();
    e[field] = value;
    e
}

/// A minimal valid event without `field`.
fn without(field: &str) -> Value {
    let mut e = base();
    e.as_object_mut().unwrap().remove(field);
    e
}

fn base() -> Value {
    json!({
        "event_id": "evt-1",
        "source": "web",
        "identifiers": { "email": "ann@example.com" }
    })
}

/// A minimal valid event with these traits.
fn traits(t: Value) -> Value {
    with("traits", t)
}

/// A minimal valid event with these identifiers.
fn ids(i: Value) -> Value {
    with("identifiers", i)
}

fn cookies(n: usize) -> Value {
    Value::Array((0..n).map(|i| json!(format!("ck-{i}"))).collect())
}

fn extra_traits(n: usize) -> Value {
    let mut m = Map::new();
    for i in 0..n {
        m.insert(format!("extra_{i}"), json!(i));
    }
    Value::Object(m)
}

/// (case, event, valid?)
fn cases() -> Vec<(&'static str, Value, bool)> {
    vec![
        // ---- valid ----
        ("minimal event", base(), true),
        (
            "every field",
            json!({
                "event_id": "evt-full",
                "source": "crm",
                "timestamp": "2024-05-01T12:00:00Z",
                "type": "identify",
                "identifiers": {
                    "email": ["ann@example.com", "Ann.Lee@Example.org"],
                    "cookie_id": "ck-1",
                    "device_id": null
                },
                "traits": {
                    "first_name": "Ann",
                    "last_name": "Lee",
                    "birth_date": "1990-04-12",
                    "address": {
                        "street": "1 Main St", "city": "Springfield", "postal_code": "62701",
                        "region": "IL", "country": "us"
                    },
                    "plan": "gold",
                    "loyalty.tier": 3
                },
                "properties": { "platform": "ios", "page": "/home" }
            }),
            true,
        ),
        (
            "timestamp as integer milliseconds",
            with("timestamp", json!(1_714_564_800_000i64)),
            true,
        ),
        (
            "timestamp with fraction and offset",
            with("timestamp", json!("2024-05-01T12:00:00.123+02:00")),
            true,
        ),
        ("timestamp null", with("timestamp", Value::Null), true),
        ("properties null", with("properties", Value::Null), true),
        (
            "consent of configured purposes",
            with(
                "consent",
                json!({ "marketing_email": "granted", "analytics": false, "advertising": null }),
            ),
            true,
        ),
        ("consent null", with("consent", Value::Null), true),
        (
            "10 values of one kind",
            ids(json!({ "cookie_id": cookies(10) })),
            true,
        ),
        (
            "a null identifier beside a real one",
            ids(json!({ "email": "ann@example.com", "phone": null })),
            true,
        ),
        (
            "null traits and address fields",
            traits(json!({ "first_name": null, "address": { "city": null, "country": "us" } })),
            true,
        ),
        ("address null", traits(json!({ "address": null })), true),
        (
            "birth_date with surrounding spaces",
            traits(json!({ "birth_date": " 1990-04-12 " })),
            true,
        ),
        // Kept as written (birth_date_raw), never a rejection.
        (
            "birth_date of another shape",
            traits(json!({ "birth_date": "12/04/1990" })),
            true,
        ),
        (
            "birth_date a number",
            traits(json!({ "birth_date": 19_900_412 })),
            true,
        ),
        // ---- invalid: required fields ----
        ("missing event_id", without("event_id"), false),
        ("missing source", without("source"), false),
        ("missing identifiers", without("identifiers"), false),
        ("event_id null", with("event_id", Value::Null), false),
        ("source null", with("source", Value::Null), false),
        ("identifiers null", with("identifiers", Value::Null), false),
        // ---- invalid: shape of top-level fields ----
        ("not an object", json!([base()]), false),
        (
            "unknown top-level field",
            with("user_id", json!("u1")),
            false,
        ),
        ("event_id empty", with("event_id", json!("")), false),
        (
            "consent not an object",
            with("consent", json!("granted")),
            false,
        ),
        (
            "consent state not granted or denied",
            with("consent", json!({ "marketing_email": "yes" })),
            false,
        ),
        (
            "event_id longer than 128",
            with("event_id", json!("x".repeat(129))),
            false,
        ),
        (
            "event_id with a control character",
            with("event_id", json!("evt\u{1}1")),
            false,
        ),
        (
            "event_id with a C1 control character",
            with("event_id", json!("evt\u{85}1")),
            false,
        ),
        (
            "event_id with DEL",
            with("event_id", json!("evt\u{7f}1")),
            false,
        ),
        (
            "event_id with a character just past the C1 range",
            with("event_id", json!("evt\u{a0}1")),
            true,
        ),
        ("source not a string", with("source", json!(5)), false),
        (
            "source not a source name",
            with("source", json!("WEB")),
            false,
        ),
        ("type empty", with("type", json!("")), false),
        (
            "type longer than 64",
            with("type", json!("t".repeat(65))),
            false,
        ),
        ("timestamp boolean", with("timestamp", json!(true)), false),
        ("timestamp negative", with("timestamp", json!(-1)), false),
        (
            "timestamp fractional number",
            with("timestamp", json!(1_714_564_800_000.5f64)),
            false,
        ),
        (
            "timestamp not a date-time",
            with("timestamp", json!("yesterday")),
            false,
        ),
        (
            "properties not an object",
            with("properties", json!("x")),
            false,
        ),
        // ---- invalid: identifiers ----
        (
            "identifiers an array",
            ids(json!(["ann@example.com"])),
            false,
        ),
        ("identifiers a string", ids(json!("ann@example.com")), false),
        ("identifiers empty", ids(json!({})), false),
        (
            "identifier kind not a kind name",
            ids(json!({ "Email": "ann@example.com" })),
            false,
        ),
        (
            "identifier value a number",
            ids(json!({ "cookie_id": 12345 })),
            false,
        ),
        (
            "identifier value a boolean",
            ids(json!({ "cookie_id": true })),
            false,
        ),
        (
            "identifier value an object",
            ids(json!({ "cookie_id": { "v": "ck-1" } })),
            false,
        ),
        (
            "a number inside an identifier list",
            ids(json!({ "cookie_id": ["ck-1", 7] })),
            false,
        ),
        (
            "11 values of one kind",
            ids(json!({ "cookie_id": cookies(11) })),
            false,
        ),
        (
            "identifier value longer than 256",
            ids(json!({ "cookie_id": "c".repeat(257) })),
            false,
        ),
        // ---- invalid: traits ----
        ("traits an array", traits(json!(["Ann"])), false),
        (
            "first_name a number",
            traits(json!({ "first_name": 42 })),
            false,
        ),
        (
            "first_name longer than 200",
            traits(json!({ "first_name": "n".repeat(201) })),
            false,
        ),
        (
            "birth_date an object",
            traits(json!({ "birth_date": {"year": 1990} })),
            false,
        ),
        (
            "birth_date longer than 200",
            traits(json!({ "birth_date": "1".repeat(201) })),
            false,
        ),
        (
            "address a string",
            traits(json!({ "address": "1 Main St" })),
            false,
        ),
        (
            "address with an unknown field",
            traits(json!({ "address": { "city": "Springfield", "zip": "62701" } })),
            false,
        ),
        (
            "address field a number",
            traits(json!({ "address": { "street": 1 } })),
            false,
        ),
        (
            "address field longer than 200",
            traits(json!({ "address": { "city": "c".repeat(201) } })),
            false,
        ),
        (
            "extra trait name with a space",
            traits(json!({ "bad name": 1 })),
            false,
        ),
        (
            "extra trait name longer than 64",
            traits(json!({ "t".repeat(65): 1 })),
            false,
        ),
        ("55 extra traits", traits(extra_traits(55)), false),
        // ---- null means absent for every optional field, in the schema and the service ----
        ("type null", with("type", Value::Null), true),
        ("traits null", with("traits", Value::Null), true),
        // An empty list of one kind: both require at least one value per list.
        (
            "an empty identifier list beside a real one",
            ids(json!({ "email": "ann@example.com", "cookie_id": [] })),
            false,
        ),
    ]
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema = schema();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("schema/event.schema.json is not a valid JSON Schema: {e}");
    }
}

#[test]
fn the_schema_and_the_validator_agree_on_every_case() {
    let schema = schema();
    let validator =
        jsonschema::draft202012::new(&schema).expect("compile schema/event.schema.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::default();
    settings.storage.data_dir = dir.path().to_path_buf();
    let engine = Engine::open(settings).expect("open engine");

    let mut failures = Vec::new();
    for (name, event, expected) in cases() {
        let schema_errors: Vec<String> = validator
            .iter_errors(&event)
            .map(|e| e.to_string())
            .collect();
        let schema_ok = schema_errors.is_empty();
        let service = engine.validate(&event);
        let service_ok = service.is_ok();
        if schema_ok != expected || service_ok != expected {
            failures.push(format!(
                "{name}: expected {}, schema says {} {:?}, service says {} {}",
                verdict(expected),
                verdict(schema_ok),
                schema_errors,
                verdict(service_ok),
                match &service {
                    Ok(_) => String::new(),
                    Err(e) => format!("({}: {})", e.field, e.message),
                },
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "schema and validator disagree:\n{}",
        failures.join("\n")
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "valid"
    } else {
        "invalid"
    }
}
