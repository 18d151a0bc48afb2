//! `idgraph overlap` (the real binary), both sides as separate processes on two data
//! directories built by `idgraph import` from generated people: the shared counts equal
//! the true intersection among consented profiles on each side, consent exclusions are
//! counted, small cells are suppressed, HMAC agrees with ecdh, and a relay that records
//! every byte both ways finds no identifier value and no unsalted SHA-256 of one in the
//! traffic or in either process's output. Mismatched settings and garbage are refused.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_succeeded, idgraph_command};

/// One generated person on one side.
struct Person {
    email: Option<String>,
    phone: Option<String>,
    /// `Some("granted")`, `Some("denied")` or never stated.
    consent: Option<&'static str>,
    source: &'static str,
    tier: &'static str,
}

impl Person {
    fn identifiers(&self) -> Vec<String> {
        self.email.iter().chain(&self.phone).cloned().collect()
    }
}

fn email(i: usize) -> String {
    format!("person{i}@example.com")
}

fn phone(i: usize) -> String {
    format!("+1415555{i:04}")
}

/// Side a holds people 0..400, side b people 250..560: 150 in both. In the overlap, every
/// third person is on a with email and phone but on b with the phone only, the next on a
/// with the email only but on b with both.
fn side_a() -> Vec<Person> {
    (0..400)
        .map(|i| Person {
            email: Some(email(i)),
            phone: (!(250..400).contains(&i) || i % 3 != 1).then(|| phone(i)),
            consent: match i % 10 {
                7 => None,
                3 => Some("denied"),
                _ => Some("granted"),
            },
            source: if i % 40 == 0 { "pos" } else { "crm" },
            tier: if i % 2 == 0 { "gold" } else { "silver" },
        })
        .collect()
}

fn side_b() -> Vec<Person> {
    (250..560)
        .map(|i| Person {
            email: (!(250..400).contains(&i) || i % 3 != 0).then(|| email(i)),
            phone: Some(phone(i)),
            consent: if i % 8 == 5 { None } else { Some("granted") },
            source: "web",
            tier: "bronze",
        })
        .collect()
}

/// A data directory holding `people` (one event each), built by `idgraph import`.
fn data_dir(root: &Path, name: &str, people: &[Person]) -> PathBuf {
    let mut lines = String::new();
    for (n, p) in people.iter().enumerate() {
        let mut ids = json!({});
        if let Some(e) = &p.email {
            ids["email"] = json!(e);
        }
        if let Some(ph) = &p.phone {
            ids["phone"] = json!(ph);
        }
        let mut ev = json!({
            "event_id": format!("{name}-{n}"),
            "source": p.source,
            "identifiers": ids,
            "traits": {"tier": p.tier},
        });
        if let Some(state) = p.consent {
            ev["consent"] = json!({ "partner_sharing": state });
        }
        lines.push_str(&ev.to_string());
        lines.push('\n');
    }
    let file = root.join(format!("{name}.jsonl"));
    std::fs::write(&file, lines).expect("write events");
    let dir = root.join(name);
    let out = idgraph_command()
        .arg("import")
        .arg(&file)
        .args(["--json", "--data-dir"])
        .arg(&dir)
        .output()
        .expect("run idgraph import");
    assert_succeeded(&out, "idgraph import");
    dir
}

/// Consented people of `side` holding an identifier that a consented person of `other`
/// holds too.
fn true_shared(side: &[Person], other: &[Person]) -> u64 {
    let theirs: HashSet<String> = other
        .iter()
        .filter(|p| p.consent == Some("granted"))
        .flat_map(Person::identifiers)
        .collect();
    side.iter()
        .filter(|p| p.consent == Some("granted"))
        .filter(|p| p.identifiers().iter().any(|i| theirs.contains(i)))
        .count() as u64
}

fn excluded(side: &[Person]) -> u64 {
    side.iter().filter(|p| p.consent != Some("granted")).count() as u64
}

/// `idgraph overlap` on `dir` with `args`, stdout and stderr piped, logging at info.
fn overlap(dir: &Path, args: &[&str]) -> Child {
    idgraph_command()
        .env("RUST_LOG", "info")
        .arg("overlap")
        .args(args)
        .args(["--timeout-secs", "60", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start idgraph overlap")
}

/// A listening side: the child, its address, and its stderr so far (collected on).
struct Listener {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Listener {
    fn start(dir: &Path, args: &[&str]) -> Listener {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut child = overlap(dir, &all);
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().expect("stderr piped");
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("overlap: listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
                let mut s = collected.lock().unwrap_or_else(|p| p.into_inner());
                s.push_str(&line);
                s.push('\n');
            }
        });
        let addr = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no listening line: {}", stderr.lock().expect("lock")));
        Listener {
            child,
            addr,
            stderr,
        }
    }

    /// Waits for the exit: (success, stdout, stderr).
    fn finish(self) -> (bool, String, String) {
        let out = self
            .child
            .wait_with_output()
            .expect("wait for the listener");
        // The reader thread sees EOF once the process has exited; give it a moment.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let err = self.stderr.lock().expect("lock").clone();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    }
}

fn text(out: &Output) -> (bool, String, String) {
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A TCP relay on a free loopback port to `target` for one connection, recording every
/// byte in both directions.
fn relay(target: String) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let addr = listener.local_addr().expect("relay address").to_string();
    let handle = std::thread::spawn(move || {
        let (inbound, _) = listener.accept().expect("relay accept");
        let outbound = TcpStream::connect(&target).expect("relay connect");
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let pipe = |mut from: TcpStream, to: TcpStream, rec: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut to = to;
                let mut buf = [0u8; 64 * 1024];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            rec.lock().expect("lock").extend_from_slice(&buf[..n]);
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            })
        };
        let a = pipe(
            inbound.try_clone().expect("clone"),
            outbound.try_clone().expect("clone"),
            recorded.clone(),
        );
        let b = pipe(outbound, inbound, recorded.clone());
        a.join().expect("relay direction");
        b.join().expect("relay direction");
        let bytes = recorded.lock().expect("lock").clone();
        bytes
    });
    (addr, handle)
}

/// Both sides through a recording relay: (a's report, b's report, traffic, every output).
fn run_pair(
    a: &Path,
    a_args: &[&str],
    b: &Path,
    b_args: &[&str],
) -> (Value, Value, Vec<u8>, String) {
    let listener = Listener::start(a, a_args);
    let (relay_addr, recorded) = relay(listener.addr.clone());
    let mut args = vec!["--connect", relay_addr.as_str()];
    args.extend_from_slice(b_args);
    let (b_ok, b_out, b_err) = text(&overlap(b, &args).wait_with_output().expect("b"));
    let (a_ok, a_out, a_err) = listener.finish();
    assert!(a_ok, "side a failed: {a_err}");
    assert!(b_ok, "side b failed: {b_err}");
    let traffic = recorded.join().expect("relay");
    let report = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|e| panic!("{e}: {s}"));
    let outputs = format!("{a_out}\n{a_err}\n{b_out}\n{b_err}");
    (report(&a_out), report(&b_out), traffic, outputs)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Asserts that no identifier value of `people`, nor the unsalted SHA-256 of one (of the
/// value or of `kind:value`, as raw bytes or hex), is in `traffic` or `outputs`.
fn assert_no_leak(people: &[&Person], traffic: &[u8], outputs: &str) {
    let windows: HashSet<&[u8]> = traffic.windows(32).collect();
    let traffic_text = String::from_utf8_lossy(traffic).to_lowercase();
    let outputs = outputs.to_lowercase();
    let mut checked = 0;
    for p in people {
        for (kind, value) in [("email", &p.email), ("phone", &p.phone)] {
            let Some(value) = value else { continue };
            let local = value.split('@').next().unwrap_or(value);
            for needle in [
                value.to_lowercase(),
                local.to_owned(),
                value.trim_start_matches('+').to_owned(),
            ] {
                assert!(
                    !traffic_text.contains(&needle),
                    "an identifier value in the traffic"
                );
                assert!(
                    !outputs.contains(&needle),
                    "an identifier value in the output: {outputs}"
                );
            }
            for hashed in [value.clone(), format!("{kind}:{value}")] {
                let digest = Sha256::digest(hashed.as_bytes());
                assert!(
                    !windows.contains(digest.as_slice()),
                    "an unsalted SHA-256 in the traffic"
                );
                let h = hex(&digest);
                assert!(
                    !traffic_text.contains(&h) && !outputs.contains(&h),
                    "an unsalted SHA-256 as hex"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

fn count(cell: &Value) -> Option<u64> {
    cell["count"].as_u64()
}

#[test]
fn overlap_counts_the_true_intersection_without_raw_identifiers_leaving() {
    let root = tempfile::tempdir().expect("temp dir");
    let (pa, pb) = (side_a(), side_b());
    let (a, b) = (
        data_dir(root.path(), "a", &pa),
        data_dir(root.path(), "b", &pb),
    );
    let (shared_a, shared_b) = (true_shared(&pa, &pb), true_shared(&pb, &pa));
    assert!(shared_a >= 50 && shared_b >= 50, "{shared_a} {shared_b}");
    let everyone: Vec<&Person> = pa.iter().chain(&pb).collect();

    let common = [
        "--collaboration",
        "acme-x-globex.2026",
        "--breakdown",
        "source,tier",
    ];
    let (ra, rb, traffic, outputs) = run_pair(
        &a,
        &[&common[..], &["--min-group-size", "10"]].concat(),
        &b,
        &[&common[..], &["--min-group-size", "20"]].concat(),
    );
    for r in [&ra, &rb] {
        assert_eq!(r["protocol"], "ecdh", "{r}");
        assert_eq!(r["min_group_size"], 20, "the larger minimum applies: {r}");
        assert_eq!(r["purpose"], "partner_sharing");
    }
    assert_eq!(count(&ra["own"]["shared_profiles"]), Some(shared_a), "{ra}");
    assert_eq!(count(&rb["own"]["shared_profiles"]), Some(shared_b), "{rb}");
    assert_eq!(
        count(&ra["own"]["profiles_considered"]),
        Some(pa.len() as u64)
    );
    assert_eq!(
        count(&rb["own"]["profiles_considered"]),
        Some(pb.len() as u64)
    );
    assert_eq!(
        count(&ra["own"]["excluded_no_consent"]),
        Some(excluded(&pa))
    );
    assert_eq!(
        count(&rb["own"]["excluded_no_consent"]),
        Some(excluded(&pb))
    );
    assert_eq!(
        ra["peer"], rb["own"],
        "a shows b's totals as b reported them"
    );
    assert_eq!(rb["peer"], ra["own"]);

    // Breakdowns: a's tiny `pos` source is suppressed with its label; the tiers add up.
    let source = &ra["breakdowns"]["source"];
    assert_eq!(
        source["cells"],
        json!([{"value": "crm", "count": source["cells"][0]["count"]}]),
        "{ra}"
    );
    assert_eq!(source["suppressed_cells"], 1, "{ra}");
    assert!(!ra.to_string().contains("\"pos\""), "{ra}");
    let tiers: u64 = ra["breakdowns"]["tier"]["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| c["count"].as_u64().expect("count"))
        .sum();
    assert_eq!(tiers, shared_a, "{ra}");
    assert_eq!(ra["suppressed_cells"], 1, "{ra}");
    assert_eq!(
        rb["breakdowns"]["tier"]["cells"],
        json!([{"value": "bronze", "count": shared_b}])
    );
    for r in [&ra, &rb] {
        let s = r.to_string();
        assert!(
            !s.contains("p_0") && !s.contains("@"),
            "no row-level output: {s}"
        );
    }

    // The traffic is tokens only: hellos, a's and b's consented identifiers (once each way
    // and returned), totals; no value and no unsalted hash of one.
    let tokens = |people: &[Person]| -> usize {
        people
            .iter()
            .filter(|p| p.consent == Some("granted"))
            .map(|p| p.identifiers().len())
            .sum()
    };
    let token_bytes = 2 * 32 * (tokens(&pa) + tokens(&pb));
    assert!(
        traffic.len() >= token_bytes && traffic.len() < token_bytes + 4096,
        "{} bytes for {token_bytes} bytes of tokens",
        traffic.len()
    );
    assert_no_leak(&everyone, &traffic, &outputs);

    // HMAC with a key both sides hold: the same counts, and no leak either.
    let key = root.path().join("overlap.key");
    std::fs::write(
        &key,
        [0x5au8; 32]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ i as u8)
            .collect::<Vec<_>>(),
    )
    .expect("write key");
    let key = key.to_str().expect("utf-8 path");
    let hmac = [
        &common[..],
        &[
            "--protocol",
            "hmac",
            "--key-file",
            key,
            "--min-group-size",
            "20",
        ],
    ]
    .concat();
    let (ha, hb, traffic, outputs) = run_pair(&a, &hmac, &b, &hmac);
    assert_eq!(ha["protocol"], "hmac");
    assert_eq!(ha["own"], ra["own"], "{ha}");
    assert_eq!(hb["own"], rb["own"], "{hb}");
    assert_no_leak(&everyone, &traffic, &outputs);

    // A minimum over every count suppresses the totals too.
    let strict = [&common[..], &["--min-group-size", "1000"]].concat();
    let (sa, _, _, _) = run_pair(&a, &strict, &b, &common);
    assert_eq!(
        sa["own"]["shared_profiles"],
        json!({"count": null, "suppressed": true}),
        "{sa}"
    );
    assert_eq!(
        sa["peer"]["shared_profiles"],
        json!({"count": null, "suppressed": true})
    );
    assert_eq!(sa["breakdowns"]["tier"]["cells"], json!([]));
    assert_eq!(sa["suppressed_cells"], 3 + 2 + 2, "{sa}");
}

#[test]
fn overlap_refuses_mismatched_collaborations_and_garbage() {
    let root = tempfile::tempdir().expect("temp dir");
    let people: Vec<Person> = side_a().into_iter().take(30).collect();
    let dir = data_dir(root.path(), "a", &people);

    let listener = Listener::start(&dir, &["--collaboration", "alpha"]);
    let b = overlap(
        &dir,
        &["--connect", &listener.addr, "--collaboration", "beta"],
    );
    let (b_ok, _, b_err) = text(&b.wait_with_output().expect("b"));
    let (a_ok, a_out, a_err) = listener.finish();
    for (ok, err) in [(a_ok, &a_err), (b_ok, &b_err)] {
        assert!(!ok, "a mismatch must fail: {err}");
        assert!(err.contains("collaboration"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(a_out.trim().is_empty(), "no report: {a_out}");

    // Garbage to a listener: one clear error, no panic.
    let listener = Listener::start(&dir, &["--collaboration", "alpha"]);
    let mut s = TcpStream::connect(&listener.addr).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: idgraph\r\n\r\n")
        .expect("write");
    let (ok, out, err) = listener.finish();
    assert!(!ok, "{err}");
    assert!(
        err.contains("bad frame") && err.contains("does not speak"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.trim().is_empty(), "{out}");

    // Bad settings are named before anything is read or sent.
    for (args, named) in [
        (vec!["--collaboration", "no spaces"], "--collaboration"),
        (
            vec!["--collaboration", "c", "--protocol", "hmac"],
            "--key-file",
        ),
        (
            vec!["--collaboration", "c", "--min-group-size", "2"],
            "--min-group-size",
        ),
        (
            vec!["--collaboration", "c", "--purpose", "nope"],
            "--purpose",
        ),
    ] {
        let mut all = vec!["--listen", "127.0.0.1:0"];
        all.extend(args);
        let (ok, _, err) = text(&overlap(&dir, &all).wait_with_output().expect("run"));
        assert!(!ok && err.contains(named), "{named}: {err}");
    }
    let short = root.path().join("short.key");
    std::fs::write(&short, b"too short").expect("write key");
    let (ok, _, err) = text(
        &overlap(
            &dir,
            &[
                "--listen",
                "127.0.0.1:0",
                "--collaboration",
                "c",
                "--protocol",
                "hmac",
                "--key-file",
                short.to_str().expect("path"),
            ],
        )
        .wait_with_output()
        .expect("run"),
    );
    assert!(!ok && err.contains("at least 32"), "{err}");
}
