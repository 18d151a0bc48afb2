//! Command-line tests: run the real `idgraph` binary (`import`, `profile`, `demo`) as a
//! child process over a fresh temporary data directory, and check exit status, output and
//! the resulting data.
//!
//! `IDGRAPH_*` variables of the surrounding environment are removed from every child so
//! the settings layering under test is the only configuration in play.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::helpers::idgraph_command;

const FEBRL1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/febrl1-head.csv"
);

/// What a finished `idgraph` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    what: String,
}

impl Run {
    /// Asserts exit status 0 and no panic; returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        self.no_panic();
        &self.stdout
    }

    /// Asserts a clean failure (exit status 1, an `error:` line, nothing on stdout, no
    /// panic); returns stderr.
    fn fails(&self) -> &str {
        self.no_panic();
        assert_eq!(
            self.code,
            Some(1),
            "`{}` should fail with exit status 1\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains("error: "),
            "`{}`: no error message on stderr: {}",
            self.what,
            self.stderr
        );
        assert!(
            self.stdout.trim().is_empty(),
            "`{}`: a failed command printed to stdout: {}",
            self.what,
            self.stdout
        );
        &self.stderr
    }

    fn no_panic(&self) {
        assert!(
            !self.stderr.contains("panicked"),
            "`{}` panicked: {}",
            self.what,
            self.stderr
        );
    }

    /// stdout parsed as JSON (asserts success).
    fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("`{}`: stdout is not JSON ({e}): {out}", self.what))
    }
}

/// The binary with `args`, every inherited `IDGRAPH_*` variable removed.
fn idgraph<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_idgraph"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IDGRAPH_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args);
    cmd
}

fn run(cmd: &mut Command) -> Run {
    let what = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what,
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// `idgraph import FILE --source SOURCE --data-dir DATA --json EXTRA...`
fn import(data: &Path, file: &Path, source: &str, extra: &[&str]) -> Command {
    let mut cmd = idgraph(["import"]);
    cmd.arg(file)
        .args(["--source", source, "--json", "--data-dir"])
        .arg(data)
        .args(extra);
    cmd
}

/// `idgraph profile ID --data-dir DATA EXTRA...`
fn profile(data: &Path, id: &str, extra: &[&str]) -> Command {
    let mut cmd = idgraph(["profile", id, "--data-dir"]);
    cmd.arg(data).args(extra);
    cmd
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("not a string: {x}"))
                .to_owned()
        })
        .collect()
}

/// The one `reasons` entry whose key satisfies `pred`; returns (key, count, first_records).
fn reason(summary: &Value, pred: impl Fn(&str) -> bool) -> (String, u64, Vec<u64>) {
    let reasons = summary["reasons"]
        .as_object()
        .unwrap_or_else(|| panic!("no reasons object: {summary}"));
    let hits: Vec<_> = reasons.iter().filter(|(k, _)| pred(k)).collect();
    assert_eq!(hits.len(), 1, "expected one matching reason in {summary}");
    let (k, r) = hits[0];
    let first = r["first_records"]
        .as_array()
        .unwrap_or_else(|| panic!("no first_records: {r}"))
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    (k.clone(), r["count"].as_u64().unwrap(), first)
}

#[test]
fn import_jsonl_reports_exact_counts_and_reasons_then_profile_shows_the_merge() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    // Line numbers matter: the summary reports them (1-based, blank lines counted).
    let lines = [
        /* 1 */
        r#"{"event_id":"e1","source":"web","identifiers":{"email":"Alice@Example.com","cookie_id":"ck_alice"},"traits":{"first_name":"Alice"}}"#,
        /* 2 */
        r#"{"event_id":"e2","source":"web","identifiers":{"phone":"(415) 234-5678","cookie_id":"ck_phone"},"traits":{"last_name":"Smith"}}"#,
        /* 3 */
        r#"{"event_id":"e3","source":"web","identifiers":{"email":"bob@example.com"}}"#,
        /* 4 */
        r#"{"event_id":"e4","source":"web","identifiers":{"email":"carol@example.com"}}"#,
        /* 5 */ r#"{"event_id":"e5","source":"web","identifiers":{"device_id":"dev-5"}}"#,
        /* 6 */ "",
        /* 7: duplicate event id, different content: must change nothing */
        r#"{"event_id":"e1","source":"web","identifiers":{"email":"mallory@example.com"}}"#,
        /* 8 */ r#"{"event_id":"bad-json","source":"web","identifiers":"#,
        /* 9 */ r#"{"event_id":"e6","source":"web","identifiers":{"email":"not-an-email"}}"#,
        /* 10 */ r#"{"event_id":"e7","source":"web","identifiers":{"customer_id":"C-7"}}"#,
        /* 11 */ r#"{"event_id":"e8","source":"web","identifiers":{"loyalty_id":"L-8"}}"#,
        /* 12 */ r#"{"event_id":"e9","source":"web","identifiers":{"cookie_id":"ck_9"}}"#,
        /* 13: shares Alice's email (as e1) and e2's phone: e2's profile merges into e1's */
        r#"{"event_id":"e10","source":"web","identifiers":{"email":" alice@EXAMPLE.com ","phone":"+1 415 234 5678"}}"#,
        /* 14 */
        r#"{"event_id":"e11","source":"web","identifiers":{"email":"dave@example.com"}}"#,
    ];
    let file = write(tmp.path(), "events.jsonl", &(lines.join("\n") + "\n"));

    // Two rejected rows: the summary is printed, and the command fails (--max-rejects 0).
    let out = import(&data, &file, "web", &[])
        .output()
        .expect("run idgraph import");
    assert!(
        !out.status.success(),
        "rejections fail the import by default"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("2 of 13 records were rejected, more than --max-rejects 0"),
        "{err}"
    );
    let first: Value = serde_json::from_slice(&out.stdout).expect("the summary first");
    assert_eq!(first["accepted"], 10, "{first}");
    // Allowed: the same file again is all duplicates and the two rejections.
    let summary = run(&mut import(&data, &file, "web", &["--max-rejects", "2"])).json();
    assert_eq!(summary["duplicate"], 11, "{summary}");
    let summary = first;
    for (k, want) in [
        ("records", 13),
        ("accepted", 10),
        ("duplicate", 1),
        ("rejected", 2),
        ("merges", 1),
    ] {
        assert_eq!(summary[k], want, "{k} in {summary}");
    }
    assert!(summary["seconds"].is_f64(), "{summary}");
    assert_eq!(
        summary["reasons"].as_object().unwrap().len(),
        2,
        "{summary}"
    );
    let (key, count, first) = reason(&summary, |k| k.starts_with("identifiers.email"));
    assert_eq!((count, first), (1, vec![9]), "{key}");
    let (key, count, first) = reason(&summary, |k| k.starts_with("invalid JSON"));
    assert_eq!((count, first), (1, vec![8]), "{key}");
    // Reasons never quote the rejected values.
    assert!(
        !summary.to_string().contains("not-an-email"),
        "a reason quotes the value: {summary}"
    );

    // The merged golden profile, found by the shared email in any spelling.
    let p = run(&mut profile(&data, "email:ALICE@example.com", &[])).json();
    assert_eq!(strings(&p["identifiers"]["email"]), ["alice@example.com"]);
    assert_eq!(strings(&p["identifiers"]["phone"]), ["+14152345678"]);
    assert_eq!(
        strings(&p["identifiers"]["cookie_id"]),
        ["ck_alice", "ck_phone"]
    );
    assert_eq!(
        p["identifiers"].as_object().unwrap().len(),
        3,
        "unexpected identifier kinds: {p}"
    );
    assert_eq!(p["traits"]["first_name"], "Alice", "{p}");
    assert_eq!(p["traits"]["last_name"], "Smith", "{p}");
    assert_eq!(p["event_count"], 3, "{p}");
    assert_eq!(p["merged_ids"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(strings(&p["sources"]), ["web"]);
    // The phone resolves to the same (surviving) profile.
    let by_phone = run(&mut profile(&data, "phone:(415) 234-5678", &[])).json();
    assert_eq!(by_phone["profile_id"], p["profile_id"]);

    // The duplicate (line 7) stored nothing; the invalid event stored nothing.
    let err = run(&mut profile(&data, "email:mallory@example.com", &[]))
        .fails()
        .to_owned();
    assert!(err.contains("not found"), "{err}");
    // Another accepted event has its own profile.
    let bob = run(&mut profile(&data, "email:bob@example.com", &[])).json();
    assert_ne!(bob["profile_id"], p["profile_id"]);

    // Importing the same file again: every good event is now a duplicate.
    let again = run(&mut import(&data, &file, "web", &["--max-rejects", "2"])).json();
    assert_eq!(
        (
            &again["accepted"],
            &again["duplicate"],
            &again["rejected"],
            &again["merges"]
        ),
        (
            &Value::from(0),
            &Value::from(11),
            &Value::from(2),
            &Value::from(0)
        ),
        "{again}"
    );
}

/// The FEBRL columns, in file order.
const FEBRL_COLUMNS: [&str; 11] = [
    "rec_id",
    "given_name",
    "surname",
    "street_number",
    "address_1",
    "address_2",
    "suburb",
    "postcode",
    "state",
    "date_of_birth",
    "soc_sec_id",
];

const FEBRL_MAPPING: &str = r#"
record_id = "rec_id"
id_prefix = "febrl-"

[identifiers]
national_id = "soc_sec_id"

[traits]
first_name = "given_name"
last_name = "surname"
birth_date = { columns = ["date_of_birth"], format = "%Y%m%d" }
"address.street" = ["street_number", "address_1"]
"address.city" = "suburb"
"address.postal_code" = "postcode"
"address.region" = "state"
locality = "address_2"
"#;

const NATIONAL_ID_CONFIG: &str = "[identifiers]\ncustom_kinds = [\"national_id\"]\n";

#[test]
fn import_febrl_csv_with_mapping_and_custom_kind_from_config() {
    let text = std::fs::read_to_string(FEBRL1).unwrap_or_else(|e| {
        panic!("fixture {FEBRL1} is required by this test and cannot be read: {e}")
    });
    let mut lines = text.lines();
    let header = lines.next().expect("febrl1.csv is empty");
    let header_cols: Vec<&str> = header.split(", ").collect();
    assert_eq!(header_cols, FEBRL_COLUMNS, "unexpected febrl1.csv header");
    let col = |name: &str| FEBRL_COLUMNS.iter().position(|c| *c == name).unwrap();
    let mut rows: Vec<Vec<String>> = lines
        .take(20)
        .map(|l| l.split(", ").map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), 20, "febrl1.csv has fewer than 20 data rows");
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 11, "febrl1.csv data row {} is not 11 cells", i + 1);
    }
    // These 20 rows all carry a soc_sec_id and a valid date: damage three copies so the
    // rejection paths run too (a row without any identifier, a row whose date does not
    // match the mapping's format).
    rows[3][col("soc_sec_id")] = String::new();
    rows[12][col("soc_sec_id")] = " ".into();
    rows[8][col("date_of_birth")] = "19561309".into();
    let csv_text = std::iter::once(header.to_owned())
        .chain(rows.iter().map(|r| r.join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";

    // Expected outcome, computed from the CSV as written.
    let cell = |r: &Vec<String>, name: &str| r[col(name)].trim().to_owned();
    let bad_date = |r: &Vec<String>| {
        let d = cell(r, "date_of_birth");
        !d.is_empty() && chrono::NaiveDate::parse_from_str(&d, "%Y%m%d").is_err()
    };
    let (mut date_rows, mut no_id_rows, mut ok_rows) = (Vec::new(), Vec::new(), Vec::new());
    for (i, r) in rows.iter().enumerate() {
        let row = i as u64 + 1;
        if bad_date(r) {
            date_rows.push(row);
        } else if cell(r, "soc_sec_id").is_empty() {
            no_id_rows.push(row);
        } else {
            ok_rows.push(r);
        }
    }
    // A date that does not match the mapping's format no longer costs the row: it is
    // accepted with the date kept as written (`birth_date_raw`).
    let with_soc_sec_id = rows
        .iter()
        .filter(|r| !cell(r, "soc_sec_id").is_empty())
        .count();
    assert_eq!(date_rows.len(), 1);
    let no_id_rows: Vec<u64> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| cell(r, "soc_sec_id").is_empty())
        .map(|(i, _)| i as u64 + 1)
        .collect();

    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let csv = write(tmp.path(), "febrl20.csv", &csv_text);
    let mapping = write(tmp.path(), "febrl.toml", FEBRL_MAPPING);
    let config = write(tmp.path(), "idgraph.toml", NATIONAL_ID_CONFIG);
    let cfg = config.to_str().unwrap();

    let mut cmd = import(&data, &csv, "crm", &["--max-rejects", "20", "--mapping"]);
    cmd.arg(&mapping).args(["--config", cfg]);
    let summary = run(&mut cmd).json();
    assert_eq!(summary["records"], 20, "{summary}");
    assert_eq!(summary["accepted"], with_soc_sec_id as u64, "{summary}");
    assert_eq!(summary["duplicate"], 0, "{summary}");
    assert_eq!(summary["rejected"], no_id_rows.len() as u64, "{summary}");
    assert_eq!(
        summary["reasons"].as_object().unwrap().len(),
        1,
        "{summary}"
    );
    let (key, count, first) = reason(&summary, |k| k.starts_with("identifiers"));
    assert!(key.contains("identifier"), "{key}");
    assert_eq!(
        (count, first),
        (no_id_rows.len() as u64, no_id_rows.clone()),
        "{key}"
    );
    assert!(!summary.to_string().contains("19561309"), "{summary}");
    // The row with the bad date is there, its date as written.
    let bad = &rows[date_rows[0] as usize - 1];
    if !cell(bad, "soc_sec_id").is_empty() {
        let id = format!("national_id:{}", cell(bad, "soc_sec_id"));
        let p = run(&mut profile(&data, &id, &["--config", cfg])).json();
        assert_eq!(
            p["traits"]["extra"]["birth_date_raw"],
            cell(bad, "date_of_birth"),
            "{p}"
        );
    }

    // One person: the first accepted row with names, a date and a soc_sec_id of its own.
    let soc_count = |id: &str| {
        ok_rows
            .iter()
            .filter(|r| cell(r, "soc_sec_id") == id)
            .count()
    };
    let person = ok_rows
        .iter()
        .find(|r| {
            [
                "given_name",
                "surname",
                "date_of_birth",
                "street_number",
                "suburb",
            ]
            .iter()
            .all(|c| !cell(r, c).is_empty())
                && soc_count(&cell(r, "soc_sec_id")) == 1
        })
        .expect("no complete row among the first 20 of febrl1.csv");
    let id = format!("national_id:{}", cell(person, "soc_sec_id"));
    let p = run(&mut profile(&data, &id, &["--config", cfg])).json();
    let dob = cell(person, "date_of_birth");
    let t = &p["traits"];
    assert_eq!(t["first_name"], cell(person, "given_name"), "{p}");
    assert_eq!(t["last_name"], cell(person, "surname"), "{p}");
    assert_eq!(
        t["birth_date"],
        format!("{}-{}-{}", &dob[..4], &dob[4..6], &dob[6..]),
        "{p}"
    );
    assert_eq!(
        t["address"]["street"],
        format!(
            "{} {}",
            cell(person, "street_number"),
            cell(person, "address_1")
        ),
        "{p}"
    );
    assert_eq!(t["address"]["city"], cell(person, "suburb"), "{p}");
    assert_eq!(t["address"]["postal_code"], cell(person, "postcode"), "{p}");
    assert_eq!(t["address"]["region"], cell(person, "state"), "{p}");
    assert_eq!(t["extra"]["locality"], cell(person, "address_2"), "{p}");
    assert_eq!(
        strings(&p["identifiers"]["national_id"]),
        [cell(person, "soc_sec_id")]
    );
    assert_eq!(strings(&p["sources"]), ["crm"]);
    assert_eq!(p["event_count"], 1, "{p}");

    // Rows sharing a soc_sec_id (an original and its duplicate) resolve to one profile.
    if let Some(shared) = ok_rows
        .iter()
        .map(|r| cell(r, "soc_sec_id"))
        .find(|s| soc_count(s) > 1)
    {
        let p = run(&mut profile(
            &data,
            &format!("national_id:{shared}"),
            &["--config", cfg],
        ))
        .json();
        assert_eq!(p["event_count"], soc_count(&shared) as u64, "{p}");
    }

    // Without the config file the custom kind is unknown: a clear error, no panic.
    let err = run(&mut profile(&data, &id, &[])).fails().to_owned();
    assert!(err.contains("national_id"), "{err}");
}

#[test]
fn import_argument_and_mapping_errors_fail_clearly() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let csv = write(
        tmp.path(),
        "people.csv",
        "id, email, name\n1, a@example.com, Ann\n",
    );

    // CSV without --mapping.
    let err = run(&mut import(&data, &csv, "crm", &[])).fails().to_owned();
    assert!(err.contains("--mapping"), "{err}");

    // Unknown --format.
    let err = run(&mut import(&data, &csv, "crm", &["--format", "xml"]))
        .fails()
        .to_owned();
    assert!(
        err.contains("xml") && err.contains("jsonl") && err.contains("csv"),
        "{err}"
    );

    // Extension that does not tell the format, and no --format.
    let txt = write(tmp.path(), "people.txt", "id\n1\n");
    let err = run(&mut import(&data, &txt, "crm", &[])).fails().to_owned();
    assert!(err.contains("--format"), "{err}");

    // Missing input file (JSONL and CSV).
    let missing = tmp.path().join("nope.jsonl");
    let err = run(&mut import(&data, &missing, "web", &[]))
        .fails()
        .to_owned();
    assert!(err.contains("nope.jsonl"), "{err}");
    let missing_csv = tmp.path().join("nope.csv");
    let mapping_ok = write(
        tmp.path(),
        "ok.toml",
        "record_id = \"id\"\n[identifiers]\nemail = \"email\"\n",
    );
    let mut cmd = import(&data, &missing_csv, "crm", &["--mapping"]);
    cmd.arg(&mapping_ok);
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("nope.csv"), "{err}");

    // Missing mapping file.
    let mut cmd = import(&data, &csv, "crm", &["--mapping"]);
    cmd.arg(tmp.path().join("absent.toml"));
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("absent.toml"), "{err}");

    // A mapping naming a column that is not in the header.
    let mapping = write(
        tmp.path(),
        "bad.toml",
        "record_id = \"id\"\n[identifiers]\nemail = \"email\"\n[traits]\nfirst_name = \"given_name\"\n",
    );
    let mut cmd = import(&data, &csv, "crm", &["--mapping"]);
    cmd.arg(&mapping);
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("given_name"), "{err}");
    assert!(err.contains("header"), "{err}");

    // A mapping with an unknown key.
    let typo = write(
        tmp.path(),
        "typo.toml",
        "record_id = \"id\"\ndelimeter = \";\"\n[identifiers]\nemail = \"email\"\n",
    );
    let mut cmd = import(&data, &csv, "crm", &["--mapping"]);
    cmd.arg(&typo);
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("delimeter"), "{err}");

    // The good mapping still imports the file (nothing above left the store unusable).
    let mut cmd = import(&data, &csv, "crm", &["--mapping"]);
    cmd.arg(&mapping_ok);
    let summary = run(&mut cmd).json();
    assert_eq!(summary["accepted"], 1, "{summary}");
}

/// Customer C-1 with one email and one phone, then a second email and a second phone for
/// the same customer in separate events.
const LIMIT_EVENTS: &str = r#"{"event_id":"l1","source":"crm","identifiers":{"customer_id":"C-1","email":"one@example.com","phone":"+14155550101"}}
{"event_id":"l2","source":"crm","identifiers":{"customer_id":"C-1","email":"two@example.com"}}
{"event_id":"l3","source":"crm","identifiers":{"customer_id":"C-1","phone":"+14155550102"}}
"#;

#[test]
fn config_file_and_environment_limits_both_apply() {
    let tmp = TempDir::new().unwrap();
    let events = write(tmp.path(), "limits.jsonl", LIMIT_EVENTS);
    let config = write(tmp.path(), "limits.toml", "[rules.limits]\nemail = 1\n");
    let cfg = config.to_str().unwrap();
    const PHONE_ENV: (&str, &str) = ("IDGRAPH_RULES__LIMITS__PHONE", "1");

    // File (email = 1) + environment (phone = 1).
    let data = tmp.path().join("both");
    let mut cmd = import(&data, &events, "crm", &["--config", cfg]);
    cmd.env(PHONE_ENV.0, PHONE_ENV.1);
    let summary = run(&mut cmd).json();
    assert_eq!(summary["accepted"], 3, "{summary}");
    assert_eq!(summary["merges"], 0, "{summary}");
    let get = |id: &str| {
        let mut cmd = profile(&data, id, &["--config", cfg]);
        cmd.env(PHONE_ENV.0, PHONE_ENV.1);
        run(&mut cmd).json()
    };
    let customer = get("customer_id:C-1");
    assert_eq!(
        strings(&customer["identifiers"]["email"]),
        ["one@example.com"],
        "the file's email limit did not apply: {customer}"
    );
    assert_eq!(
        strings(&customer["identifiers"]["phone"]),
        ["+14155550101"],
        "the environment's phone limit did not apply: {customer}"
    );
    let email2 = get("email:two@example.com");
    let phone2 = get("phone:+14155550102");
    assert_ne!(email2["profile_id"], customer["profile_id"]);
    assert_ne!(phone2["profile_id"], customer["profile_id"]);
    assert_ne!(email2["profile_id"], phone2["profile_id"]);
    assert_eq!(
        strings(&email2["identifiers"]["email"]),
        ["two@example.com"]
    );
    assert_eq!(strings(&phone2["identifiers"]["phone"]), ["+14155550102"]);

    // Control: the file alone keeps the default phone limit (5), so the second phone
    // joins the customer; the second email still does not.
    let data = tmp.path().join("file-only");
    run(&mut import(&data, &events, "crm", &["--config", cfg])).json();
    let customer = run(&mut profile(&data, "customer_id:C-1", &["--config", cfg])).json();
    assert_eq!(
        strings(&customer["identifiers"]["phone"]),
        ["+14155550101", "+14155550102"],
        "{customer}"
    );
    assert_eq!(
        strings(&customer["identifiers"]["email"]),
        ["one@example.com"],
        "{customer}"
    );
}

#[test]
fn bad_configuration_fails_naming_the_problem() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let events = write(tmp.path(), "e.jsonl", LIMIT_EVENTS);

    // Unknown key in a known section, and an unknown section.
    for (name, text, key) in [
        (
            "typo-key.toml",
            "[rules]\nmax_identifiers_per_evnt = 3\n",
            "max_identifiers_per_evnt",
        ),
        ("typo-section.toml", "[rulez.limits]\nemail = 1\n", "rulez"),
    ] {
        let cfg = write(tmp.path(), name, text);
        let mut cmd = import(&data, &events, "crm", &["--config"]);
        cmd.arg(&cfg);
        let err = run(&mut cmd).fails().to_owned();
        assert!(
            err.contains(key),
            "{name}: error does not name {key}: {err}"
        );
        let mut cmd = profile(&data, "email:one@example.com", &["--config"]);
        cmd.arg(&cfg);
        let err = run(&mut cmd).fails().to_owned();
        assert!(
            err.contains(key),
            "{name}: error does not name {key}: {err}"
        );
    }
    // Unknown key through the environment.
    let mut cmd = import(&data, &events, "crm", &[]);
    cmd.env("IDGRAPH_RULES__LIMITZ__PHONE", "1");
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.to_lowercase().contains("limitz"), "{err}");

    // A block cache too small to shard is refused, naming the setting; a small valid one
    // works.
    let mut cmd = import(&data, &events, "crm", &[]);
    cmd.env("IDGRAPH_STORAGE__BLOCK_CACHE_MB", "4");
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("storage.block_cache_mb"), "{err}");
    let mut cmd = import(&tmp.path().join("data-small-cache"), &events, "crm", &[]);
    cmd.env("IDGRAPH_STORAGE__BLOCK_CACHE_MB", "32");
    run(&mut cmd).ok();

    // Nonexistent --config path, as a flag and through IDGRAPH_CONFIG.
    let absent = tmp.path().join("absent.toml");
    let mut cmd = import(&data, &events, "crm", &["--config"]);
    cmd.arg(&absent);
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("absent.toml"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let mut cmd = import(&data, &events, "crm", &[]);
    cmd.env("IDGRAPH_CONFIG", &absent);
    let err = run(&mut cmd).fails().to_owned();
    assert!(err.contains("absent.toml"), "{err}");

    // Settings are checked before anything is written.
    assert!(
        !data.exists(),
        "a failed configuration created the data dir"
    );
}

fn demo(dir: &Path) -> Command {
    let mut cmd = idgraph(["demo", "--people", "200", "--no-serve", "--data-dir"]);
    cmd.arg(dir);
    cmd
}

#[test]
fn demo_ingests_prints_examples_and_only_reuses_its_own_directories() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path().join("demo");

    let first = run(&mut demo(&dir));
    let out = first.ok();
    let summary = out
        .lines()
        .find(|l| l.starts_with("demo: "))
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    assert!(summary.contains("200 people"), "{summary}");
    assert!(summary.contains("profiles"), "{summary}");
    let curls: Vec<&str> = out
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl "))
        .collect();
    assert!(
        curls.iter().any(|l| l.contains("/v1/lookup")),
        "no lookup example: {out}"
    );
    assert!(curls.iter().any(|l| l.contains("/v1/profiles/")), "{out}");
    // The example lookup's email resolves in the generated data.
    let lookup = curls
        .iter()
        .find(|l| l.contains("/v1/lookup?kind=email&value="))
        .unwrap_or_else(|| panic!("no email lookup example: {out}"));
    let email = lookup
        .split("value=")
        .nth(1)
        .and_then(|v| v.split('\'').next())
        .unwrap();
    let p = run(&mut profile(&dir, &format!("email:{email}"), &[])).json();
    assert!(p["profile_id"].is_string(), "{p}");

    // Again on the same directory: recreated from scratch.
    std::fs::write(dir.join("stale.txt"), "left by an earlier run").unwrap();
    let second = run(&mut demo(&dir));
    assert!(second.ok().contains("200 people"), "{}", second.stdout);
    assert!(
        !dir.join("stale.txt").exists(),
        "demo dir was not recreated"
    );
    run(&mut profile(&dir, &format!("email:{email}"), &[])).json();

    // An empty existing directory is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    run(&mut demo(&empty)).ok();

    // A non-empty directory that is not a demo directory: refused, left untouched.
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(mine.join("sub")).unwrap();
    std::fs::write(mine.join("keep.txt"), "precious").unwrap();
    std::fs::write(mine.join("sub/also.txt"), "precious too").unwrap();
    let err = run(&mut demo(&mine)).fails().to_owned();
    assert!(err.contains("not empty"), "{err}");
    assert!(err.contains("mine"), "{err}");
    assert_eq!(
        std::fs::read_to_string(mine.join("keep.txt")).unwrap(),
        "precious"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("sub/also.txt")).unwrap(),
        "precious too"
    );
    let mut names: Vec<_> = std::fs::read_dir(&mine)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["keep.txt", "sub"],
        "demo wrote into a foreign directory"
    );
}

#[test]
fn profile_with_bad_or_unknown_identifiers_fails_cleanly() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let events = write(
        tmp.path(),
        "e.jsonl",
        r#"{"event_id":"p1","source":"web","identifiers":{"email":"known@example.com"}}"#,
    );
    run(&mut import(&data, &events, "web", &[])).json();
    run(&mut profile(&data, "email:known@example.com", &[])).json();

    let cases: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("nocolon", &["kind:value"][..]),
        ("email:unknown@example.com", &["not found"][..]),
        ("customer_id:NOPE", &["not found"][..]),
        ("foo:bar", &["unknown identifier kind", "foo"][..]),
        ("email:", &["empty"][..]),
        ("email:not-an-email", &["email"][..]),
        ("phone:abc", &["phone"][..]),
    ]);
    for (id, wants) in cases {
        let r = run(&mut profile(&data, id, &[]));
        let err = r.fails();
        for want in wants {
            assert!(err.contains(want), "profile {id:?}: {want:?} not in {err}");
        }
    }
}

/// `idgraph bench-search` at a small scale, the way the documented figures are produced: a
/// first run keeps its store and index, a second reuses them (after a warm-up). Both answer
/// every exact identifier with its own profile first and find freshly ingested people.
#[test]
fn bench_search_runs_then_reuses_its_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("bench");
    let data = data.to_str().expect("utf-8 path");
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = idgraph_command()
            .args(["bench-search", "--profiles", "3000", "--seconds", "1"])
            .args(["--ingest-rate", "200", "--dir", data, "--json"])
            .args(extra)
            .output()
            .expect("run idgraph bench-search");
        crate::helpers::assert_succeeded(&out, "bench-search");
        serde_json::from_slice(&out.stdout).expect("one JSON report on stdout")
    };
    let first = run(&["--keep"]);
    let second = run(&["--reuse", "--warmup", "1"]);
    for (r, reused) in [(&first, false), (&second, true)] {
        assert_eq!(r["reused_store"], reused, "{r}");
        assert!(r["indexed"].as_u64().expect("indexed") >= 3000, "{r}");
        assert!(r["queries"].as_u64().expect("queries") > 0, "{r}");
        let exact = r["classes"]["exact_identifier"]["queries"]
            .as_u64()
            .expect("exact");
        assert!(exact > 0, "{r}");
        assert_eq!(
            r["exact_identifier_first"], exact,
            "every exact id ranks first: {r}"
        );
        assert!(r["freshness_probes"].as_u64().expect("probes") > 0, "{r}");
    }
    assert_eq!(second["warmup_seconds"], 1, "{second}");
    // The reused store kept the first run's people (and those ingested while it ran).
    assert!(
        second["indexed"].as_u64() >= first["indexed"].as_u64(),
        "{first} then {second}"
    );
}

/// The variables the CLI, the logger and the demo's instructions use are not settings:
/// with all of them set, `idgraph serve` starts, takes its configuration from
/// `IDGRAPH_CONFIG` and logs JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_logger_variables_are_not_read_as_settings() {
    let tmp = TempDir::new().expect("temp dir");
    let config = write(
        tmp.path(),
        "idgraph.toml",
        "[server]\nmax_batch_events = 7\n",
    );
    let data = tmp.path().join("data");
    let env: Vec<(String, String)> = [
        ("IDGRAPH_CONFIG", config.display().to_string()),
        ("IDGRAPH_LOG_FORMAT", "json".to_owned()),
        (
            "IDGRAPH_KEY",
            "idg_what_the_demo_tells_users_to_export".to_owned(),
        ),
        (
            "IDGRAPH_BENCH_KEY",
            "idg_what_the_load_scripts_read".to_owned(),
        ),
        // What `encryption.kek.env` conventionally names (unused here: encryption off).
        ("IDGRAPH_KEK", "ab".repeat(32)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for name in idgraph::config::NOT_SETTINGS {
        assert!(
            env.iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(&format!("IDGRAPH_{name}"))),
            "IDGRAPH_{name} is set by this test"
        );
    }
    let server = crate::helpers::ServeProcess::start_with_env(&data, &env);
    let client = crate::helpers::http_client();
    let health = client
        .get(server.url("/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    // The file named by IDGRAPH_CONFIG applies: a batch of 8 is over its limit of 7.
    let batch: Vec<Value> = (0..8)
        .map(|i| {
            serde_json::json!({"event_id": format!("cfg-{i}"), "source": "web",
                               "identifiers": {"cookie_id": format!("ck-cfg-{i}")}})
        })
        .collect();
    let resp = client
        .post(server.url("/v1/events"))
        .json(&batch)
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let body = resp.text().await.expect("body");
    assert!(body.contains("at most 7"), "{body}");
    // IDGRAPH_LOG_FORMAT=json: the log lines are JSON objects.
    let logs = server.stderr();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the server logged nothing");
    for line in lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v.is_object(), "{line}");
    }
}

/// `idgraph bench-http` at smoke size: the real server driven by wrk. Speeds are printed
/// by the command and never asserted; what is checked is that the run is whole: every
/// event acknowledged and stored once, every lookup and search answered 200 (right after
/// ingest and once the store settled, which a store this small does), nothing lost across
/// the kill -9, and every figure present.
#[test]
fn bench_http_drives_the_real_server_and_reports_every_figure() {
    let tmp = TempDir::new().expect("temp dir");
    let mut cmd = idgraph([
        "bench-http",
        "--events",
        "6000",
        "--batch",
        "50",
        "--window-secs",
        "2",
        "--read-secs",
        "1",
        "--read-connections",
        "4",
        "--settle-secs",
        "120",
        "--json",
        "--dir",
    ]);
    cmd.arg(tmp.path().join("bench"));
    let report = run(&mut cmd).json();
    assert_eq!(report["events_stored"], 6000, "{report}");
    assert_eq!(report["ingest_non_2xx"], 0, "{report}");
    assert_eq!(report["events_rejected"], 0, "{report}");
    assert_eq!(
        report["events_after_restart"], report["events_before_kill"],
        "{report}"
    );
    assert!(
        report["windows"].as_array().is_some_and(|w| !w.is_empty()),
        "{report}"
    );
    // Each window reports its socket errors, and they add up to the run's.
    let windows = report["windows"].as_array().cloned().unwrap_or_default();
    let per_window: Option<u64> = windows.iter().map(|w| w["socket_errors"].as_u64()).sum();
    assert_eq!(
        per_window,
        report["ingest_socket_errors"].as_u64(),
        "{report}"
    );
    for phase in [
        "health",
        "lookup",
        "search",
        "lookup_while_ingesting",
        "search_while_ingesting",
        "settled_health",
        "settled_lookup",
        "settled_search",
    ] {
        assert!(
            report[phase]["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0,
            "{phase}: {report}"
        );
        assert_eq!(report[phase]["non_200"], 0, "{phase}: {report}");
        assert!(report[phase]["p99_ms"].is_number(), "{phase}: {report}");
    }
    for figure in [
        "rss_bytes",
        "disk_bytes",
        "profiles_created",
        "restart_seconds",
    ] {
        assert!(
            report[figure].as_f64().unwrap_or(0.0) > 0.0,
            "{figure}: {report}"
        );
    }
    assert!(report["wal_bytes"].is_u64(), "{report}");
    // A store this small finishes its flushes and compactions well within --settle-secs;
    // settling takes three quiet samples of /metrics a second apart.
    assert_eq!(report["settled"], true, "{report}");
    assert!(
        report["settle_seconds"]
            .as_f64()
            .is_some_and(|s| (2.0..120.0).contains(&s)),
        "{report}"
    );
    assert!(
        report["settled_disk_bytes"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    // The store's bytes, read from the server's /metrics: every column family's table
    // files and what flushes and compactions wrote.
    let store = &report["store"];
    for cf in idgraph::store::rocks::ALL_CFS {
        assert!(store["sst_bytes_by_cf"][cf].is_u64(), "{cf}: {report}");
    }
    for total in [
        "flush_write_bytes",
        "compaction_write_bytes",
        "compaction_read_bytes",
    ] {
        assert!(store[total].is_u64(), "{total}: {report}");
    }
    assert!(
        !tmp.path().join("bench").exists(),
        "the scratch directory is removed"
    );
}

/// A second process on a data directory in use gets one sentence naming the problem, not
/// RocksDB's lock-file message, and changes nothing.
#[test]
fn a_data_directory_in_use_is_named_in_one_sentence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = crate::helpers::ServeProcess::start(&data);
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"event_id\": \"busy-1\", \"identifiers\": {\"email\": \"busy@example.com\"}}\n",
    )
    .expect("write events");
    for args in [
        vec![
            "import",
            events.to_str().unwrap_or_default(),
            "--source",
            "web",
        ],
        vec!["reindex"],
    ] {
        let out = crate::helpers::idgraph_command()
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .expect("run idgraph");
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("is in use by another idgraph process"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("LOCK"), "{args:?}: {err}");
    }
    assert!(server.terminate().success());
}

/// `sh -c SCRIPT idgraph-binary ...`, every inherited `IDGRAPH_*` variable removed.
fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IDGRAPH_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("-c").arg(script).arg(env!("CARGO_BIN_EXE_idgraph"));
    cmd
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn serve_with_closed_stdout_and_stderr_serves_and_stops_on_sigterm() {
    let tmp = TempDir::new().unwrap();
    let port = free_port();
    // `>&-`: the process starts with stdout and stderr closed; printing the "listening on"
    // line or a log line must neither panic nor wedge it.
    let mut child = sh(r#"exec "$0" serve --data-dir "$1" --bind "127.0.0.1:$2" >&- 2>&-"#);
    child
        .arg(tmp.path().join("data"))
        .arg(port.to_string())
        .env("RUST_LOG", "info");
    let mut child = child.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let health = loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                Some(text)
            });
        if let Some(text) = got {
            break text;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the server exited with stdout closed"
        );
        assert!(std::time::Instant::now() < deadline, "never listened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGTERM did not stop a server whose stdout is closed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn output_into_a_closed_stdout_or_a_broken_pipe_is_not_a_panic() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let file = write(
        tmp.path(),
        "e.jsonl",
        r#"{"event_id":"p1","source":"web","identifiers":{"email":"pipe@example.com"}}"#,
    );
    run(&mut import(&data, &file, "web", &[])).ok();
    // stdout closed (`>&-`): the profile is printed to nowhere, and that is no panic.
    let out = sh(r#"exec "$0" profile email:pipe@example.com --data-dir "$1" >&-"#)
        .arg(&data)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
    // A broken pipe: stdout is a pipe whose reader is already gone (EPIPE on write).
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = idgraph(["profile", "email:pipe@example.com", "--data-dir"])
        .arg(&data)
        .stdout(writer)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn every_data_dir_and_bind_flag_has_help_and_its_default() {
    for cmd in [
        "serve",
        "import",
        "profile",
        "reindex",
        "reresolve",
        "train",
        "export",
        "demo",
        "replica",
        "overlap",
        "subject-access",
    ] {
        let help = run(&mut idgraph([cmd, "--help"])).ok().to_owned();
        let line = |flag: &str| {
            help.lines()
                .find(|l| l.trim_start().starts_with(flag))
                .map(str::to_owned)
        };
        let data = line("--data-dir").unwrap_or_else(|| panic!("{cmd}: no --data-dir:\n{help}"));
        assert!(
            data.contains("<DIR>") && data.contains("default"),
            "{cmd}: {data}"
        );
        if let Some(bind) = line("--bind") {
            assert!(
                bind.contains("<ADDR>") && bind.contains("127.0.0.1:8080"),
                "{cmd}: {bind}"
            );
        }
    }
    let serve = run(&mut idgraph(["serve", "--help"])).ok().to_owned();
    assert!(serve.contains("./idgraph-data"), "{serve}");
}
