//! `idgraph bench-http`: the live server measured as its users meet it. Starts
//! `idgraph serve` (this binary) on a fresh data directory and drives it over HTTP with
//! wrk (Lua scripts in `benches/http/`, compiled in):
//!
//! 1. durable ingest of generated people (names, addresses, 3 to 5 identifiers an event,
//!    merges) in batches, window by window, so decay as the store grows is visible;
//! 2. at the final size: `/health` (the ceiling), lookups by email, search by name, then
//!    lookups while ingest runs at 5,000 events/s and search while it runs at 1,000;
//! 3. the server's resident memory, bytes on disk (per profile created), write-ahead log
//!    bytes and the store's table-file and flush/compaction bytes;
//! 4. once the store has settled (no flush or compaction running or waiting, from the
//!    server's `/metrics`, at most `--settle-secs`): `/health`, lookups and search again,
//!    and the bytes on disk then: reads apart from the backlog a bulk load leaves;
//! 5. the time to be ready again after `kill -9`, with every acknowledged event still
//!    there.
//!
//! Figures are printed (and with `--json`, one JSON object); nothing is asserted here.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::demo::generate::BenchStream;
use crate::governance::keys::{generate_key, hash_key};

const INGEST_LUA: &str = include_str!("../../benches/http/ingest.lua");
const READ_LUA: &str = include_str!("../../benches/http/read.lua");

#[derive(clap::Args, Debug, Clone)]
pub struct HttpBenchArgs {
    /// Events to ingest (the full size is 10,000,000).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// People the events are drawn from (default: 32 for every 100 events, about 3.1
    /// events a person, so 10M events give over 3M profiles).
    #[arg(long)]
    pub people: Option<usize>,
    /// Events per request.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Concurrent ingest connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Length of one ingest window, in seconds.
    #[arg(long, default_value_t = 30)]
    pub window_secs: u64,
    /// Length of each read phase (health, lookups, search, each under ingest, and the
    /// settled ones).
    #[arg(long, default_value_t = 20)]
    pub read_secs: u64,
    /// After the read phases, wait at most this long (at least 3 s: settling is three
    /// quiet samples a second apart) for the store's flushes and compactions to finish
    /// (the server's `/metrics`), then measure `/health`, lookups and search again on the
    /// settled store. 0: no settled phases.
    #[arg(long, default_value_t = 600)]
    pub settle_secs: u64,
    /// Connections of the read phases.
    #[arg(long, default_value_t = 16)]
    pub read_connections: usize,
    /// Scratch directory (emptied first, removed afterwards unless `--keep`); default: a
    /// directory in the system's temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the scratch directory afterwards.
    #[arg(long)]
    pub keep: bool,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// The wrk binary.
    #[arg(long, default_value = "wrk")]
    pub wrk: String,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Read replicas to run beside the server (`idgraph replica --follow`): their lag is
    /// sampled during ingest, and lookups are measured on the first one too.
    #[arg(long, default_value_t = 0)]
    pub replicas: usize,
}

/// One `BENCH {...}` line of a wrk script.
fn bench_line(out: &str) -> anyhow::Result<Value> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .ok_or_else(|| anyhow!("wrk printed no BENCH line:\n{out}"))?;
    Ok(serde_json::from_str(line)?)
}

fn ms(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(0.0) / 1000.0
}

/// Requests per second of a wrk result.
fn rate(v: &Value) -> f64 {
    let secs = v["duration_us"].as_f64().unwrap_or(0.0) / 1e6;
    if secs > 0.0 {
        v["requests"].as_f64().unwrap_or(0.0) / secs
    } else {
        0.0
    }
}

/// Sum of the sizes of the files under `dir` whose name passes `keep`.
fn bytes_under(dir: &Path, keep: &dyn Fn(&Path) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let path = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => bytes_under(&path, keep),
                Ok(m) if keep(&path) => m.len(),
                _ => 0,
            }
        })
        .sum()
}

/// `VmRSS` of process `pid`, in bytes.
fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// `application/x-www-form-urlencoded` value.
fn form(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Writes `events` events of `people` people as request bodies (one batch a line);
/// returns a sample of emails and names that exist in them (for lookups and search).
fn write_bodies(
    path: &Path,
    stream: BenchStream,
    batch: usize,
    sample: usize,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let (mut emails, mut names) = (Vec::new(), Vec::new());
    let mut line = Vec::with_capacity(batch);
    for (n, (ev, _)) in stream.enumerate() {
        if n % 97 == 0 && emails.len() < sample {
            let email = match &ev["identifiers"]["email"] {
                Value::String(e) => Some(e.clone()),
                Value::Array(list) => list.first().and_then(Value::as_str).map(str::to_owned),
                _ => None,
            };
            emails.extend(email);
        }
        if names.len() < sample {
            if let (Some(f), Some(l)) = (
                ev["traits"]["first_name"].as_str(),
                ev["traits"]["last_name"].as_str(),
            ) {
                names.push(format!("{f} {l}"));
            }
        }
        line.push(ev);
        if line.len() == batch {
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
            line.clear();
        }
    }
    if !line.is_empty() {
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok((emails, names))
}

/// A running `idgraph serve`.
struct Server {
    child: Child,
    address: String,
    /// The admin key the server was started with (`/health` shows counts only to a key).
    key: String,
}

impl Server {
    fn start(data: &Path, key: &str, log: &Path) -> anyhow::Result<Server> {
        Server::spawn(&["serve".to_owned()], &[], data, key, log)
    }

    /// `idgraph <command> --data-dir data --bind 127.0.0.1:0` with `env`, once it listens.
    fn spawn(
        command: &[String],
        env: &[(String, String)],
        data: &Path,
        key: &str,
        log: &Path,
    ) -> anyhow::Result<Server> {
        let exe = std::env::current_exe()?;
        let key_hash = hash_key(key);
        let keys = format!(
            "[{{name=\"bench\",role=\"admin\",hash=\"{key_hash}\",rate_per_second=1000000000.0,burst=1000000000}}]"
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(exe)
            .args(command)
            .arg("--data-dir")
            .arg(data)
            .args(["--bind", "127.0.0.1:0"])
            .env("IDGRAPH_AUTH__KEYS", keys)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("cannot start idgraph serve")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout of idgraph serve"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(a) = line.trim().strip_prefix("listening on ") {
                        sent = tx.send(a.to_owned()).is_ok();
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(600)) {
            Ok(address) => Ok(Server {
                child,
                address,
                key: key.to_owned(),
            }),
            Err(_) => {
                let _ = child.kill();
                bail!("idgraph serve did not start listening (see its log)")
            }
        }
    }

    /// `GET path` with curl-like simplicity over a plain TCP socket: the status and body.
    fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        http_get(&self.address, path, Some(&self.key))
    }

    /// Events stored so far (`/health`).
    fn events(&self) -> anyhow::Result<u64> {
        let (_, v) = self.get("/health")?;
        Ok(v["events"].as_u64().unwrap_or(0))
    }

    /// Events stored once the server has finished what was sent (a request wrk gave up
    /// on at the end of a run may still be written): the count, when two reads 300 ms
    /// apart agree.
    fn settled_events(&self) -> anyhow::Result<u64> {
        let mut last = self.events()?;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.events()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` of the server at `address` (`http://host:port`) over a plain TCP socket:
/// the status and the body as JSON (`Null` when it is not JSON).
fn http_get(address: &str, path: &str, key: Option<&str>) -> anyhow::Result<(u16, Value)> {
    let (status, body) = http_get_text(address, path, key)?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// `GET path` as [`http_get`] does: the status and the body as text.
fn http_get_text(address: &str, path: &str, key: Option<&str>) -> anyhow::Result<(u16, String)> {
    use std::io::Read;
    let host = address
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("unexpected address {address}"))?;
    let mut s = std::net::TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

/// The value of the unlabelled series `name` in the Prometheus text `text`.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .find(|(series, _)| *series == name)
        .and_then(|(_, v)| v.trim().parse().ok())
}

/// Waits until the server's store has no flush or compaction running or waiting (three
/// samples of `/metrics` a second apart, all at zero), at most `limit` (at least 3 s): the
/// seconds waited, and whether the store settled within them. A failed sample counts as
/// busy (the run is not thrown away for one); a `/metrics` without the two gauges is an
/// error.
fn settle(server: &Server, limit: Duration) -> anyhow::Result<(f64, bool)> {
    let limit = limit.max(Duration::from_secs(3));
    let t = Instant::now();
    let mut quiet = 0;
    loop {
        let busy = match http_get_text(&server.address, "/metrics", Some(&server.key)) {
            Ok((200, text)) => {
                let mut busy = false;
                for name in [
                    "idgraph_rocksdb_running_jobs",
                    "idgraph_rocksdb_waiting_jobs",
                ] {
                    match gauge(&text, name) {
                        Some(v) => busy |= v > 0.0,
                        None => bail!("the server's /metrics has no {name}"),
                    }
                }
                busy
            }
            _ => true,
        };
        quiet = if busy { 0 } else { quiet + 1 };
        if quiet == 3 {
            return Ok((t.elapsed().as_secs_f64(), true));
        }
        if t.elapsed() >= limit {
            return Ok((t.elapsed().as_secs_f64(), false));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The store's bytes from the server's `/metrics`: table-file bytes per column family,
/// and bytes flushes and compactions wrote and read since the server started.
fn store_bytes(server: &Server) -> anyhow::Result<Value> {
    let (status, text) = http_get_text(&server.address, "/metrics", Some(&server.key))?;
    if status != 200 {
        bail!("GET /metrics answered {status}");
    }
    let mut by_cf = serde_json::Map::new();
    let mut totals = serde_json::Map::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(v) = v.parse::<f64>() else { continue };
        let name = match series {
            "idgraph_rocksdb_flush_bytes_total" => "flush_write_bytes",
            "idgraph_rocksdb_compaction_write_bytes_total" => "compaction_write_bytes",
            "idgraph_rocksdb_compaction_read_bytes_total" => "compaction_read_bytes",
            _ => {
                if let Some(cf) = series
                    .strip_prefix("idgraph_rocksdb_sst_bytes{cf=\"")
                    .and_then(|r| r.strip_suffix("\"}"))
                {
                    by_cf.insert(cf.to_owned(), json!(v as u64));
                }
                continue;
            }
        };
        totals.insert(name.to_owned(), json!(v as u64));
    }
    totals.insert("sst_bytes_by_cf".to_owned(), Value::Object(by_cf));
    Ok(Value::Object(totals))
}

/// Samples the replicas' lag (`/ready`) every 250 ms until `stop`: every sample, in
/// seconds.
fn sample_lag(
    replicas: Vec<String>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<f64>> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for r in &replicas {
                if let Ok((_, v)) = http_get(r, "/ready", None) {
                    if let Some(lag) = v["lag_seconds"].as_f64() {
                        samples.push(lag);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        samples
    })
}

/// p50, p99 and max of `samples`.
fn spread(samples: &mut [f64]) -> Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    json!({ "samples": samples.len(), "p50": at(0.5), "p99": at(0.99), "max": at(1.0) })
}

struct Wrk<'a> {
    bin: &'a str,
    scripts: &'a Path,
    key: &'a str,
    address: &'a str,
}

impl Wrk<'_> {
    fn command(&self, threads: usize, conns: usize, secs: u64, script: &str) -> Command {
        let mut c = Command::new(self.bin);
        c.args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
            "--timeout".into(),
            "30s".into(),
            "-s".into(),
        ])
        .arg(self.scripts.join(script))
        .arg(self.address)
        .arg("--")
        .env("IDGRAPH_BENCH_KEY", self.key);
        c
    }

    fn run(&self, mut c: Command) -> anyhow::Result<Value> {
        let out = c.output().with_context(|| {
            format!(
                "cannot run {} (scripts/install-deps.sh installs wrk)",
                self.bin
            )
        })?;
        if !out.status.success() {
            bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        bench_line(&String::from_utf8_lossy(&out.stdout))
    }

    /// A read phase: `prefix` + each line of `file` (or `prefix` alone).
    fn read(&self, conns: usize, secs: u64, file: &str, prefix: &str) -> anyhow::Result<Value> {
        let mut c = self.command(2, conns, secs, "read.lua");
        c.args([file, prefix]);
        self.run(c)
    }

    /// The read phases with no ingest beside them: `/health` (the ceiling), lookups by
    /// email from `lookups`, search by name from `searches`.
    fn at_rest(
        &self,
        conns: usize,
        secs: u64,
        lookups: &str,
        searches: &str,
    ) -> anyhow::Result<[Value; 3]> {
        Ok([
            self.read(conns, secs, "-", "/health")?,
            self.read(conns, secs, lookups, "/v1/lookup?kind=email&value=")?,
            self.read(conns, secs, searches, "/v1/search?q=")?,
        ])
    }

    /// Ingest from byte `start` of `bodies` (`delay_ms` between a connection's requests).
    fn ingest(&self, conns: usize, secs: u64, bodies: &Path, start: u64, delay_ms: u64) -> Command {
        let mut c = self.command(1, conns, secs, "ingest.lua");
        c.arg(bodies)
            .arg(start.to_string())
            .arg(delay_ms.to_string())
            .arg(conns.to_string());
        c
    }
}

/// A read phase while ingest runs at about `events_per_s` from `bodies`.
fn read_while_ingesting(
    wrk: &Wrk<'_>,
    reader: &Wrk<'_>,
    server: &Server,
    args: &HttpBenchArgs,
    (bodies, start): (&Path, u64),
    events_per_s: u64,
    (file, prefix): (&str, &str),
) -> anyhow::Result<(Value, f64, u64)> {
    // Four connections, each waiting this long before its next batch (wrk has no clock
    // to pace by; the rate reached is measured and reported).
    let delay = (4 * args.batch as u64 * 1000 / events_per_s.max(1)).max(1);
    let before = server.events()?;
    let t = Instant::now();
    let ingest = wrk
        .ingest(4, args.read_secs + 1, bodies, start, delay)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let reads = reader.read(args.read_connections, args.read_secs, file, prefix)?;
    let out = ingest.wait_with_output()?;
    let ingested = server.settled_events()?.saturating_sub(before);
    let result = bench_line(&String::from_utf8_lossy(&out.stdout))?;
    let next = result["resume"].as_u64().unwrap_or(start);
    Ok((reads, ingested as f64 / t.elapsed().as_secs_f64(), next))
}

pub fn run(args: HttpBenchArgs) -> anyhow::Result<()> {
    if args.events == 0 || args.batch == 0 || args.connections == 0 {
        bail!("--events, --batch and --connections must be positive");
    }
    let scratch = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("idgraph-bench-http-{}", std::process::id()))
    });
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("cannot empty {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch)?;
    let scripts = scratch.join("scripts");
    std::fs::create_dir_all(&scripts)?;
    std::fs::write(scripts.join("ingest.lua"), INGEST_LUA)?;
    std::fs::write(scripts.join("read.lua"), READ_LUA)?;
    let people = args.people.unwrap_or(args.events * 32 / 100).max(1);

    // Request bodies, and a second stream (another seed: new people) for ingest during
    // the read phases.
    let t = Instant::now();
    let bodies = scratch.join("bodies.jsonl");
    let stream = BenchStream::new(args.events, people, args.seed, true);
    let (emails, names) = write_bodies(&bodies, stream, args.batch, 100_000)?;
    let extra = scratch.join("extra.jsonl");
    let extra_events = (6_000 * (args.read_secs as usize + 2)).max(args.batch);
    let stream = BenchStream::new(extra_events, extra_events / 3, args.seed + 1, true);
    write_bodies(&extra, stream, args.batch, 0)?;
    let lookups = scratch.join("lookups.txt");
    std::fs::write(
        &lookups,
        emails
            .iter()
            .map(|e| format!("{}\n", form(e)))
            .collect::<String>(),
    )?;
    let searches = scratch.join("searches.txt");
    std::fs::write(
        &searches,
        names
            .iter()
            .map(|n| format!("{}\n", form(n)))
            .collect::<String>(),
    )?;
    let generated = t.elapsed();
    if !args.json {
        crate::outln!(
            "idgraph bench-http: {} events of {people} people in batches of {}, generated in {:.1} s",
            args.events,
            args.batch,
            generated.as_secs_f64()
        );
    }

    let key = generate_key();
    let data = scratch.join("data");
    let log = scratch.join("serve.log");
    let mut server = if args.replicas > 0 {
        Server::spawn(
            &["serve".to_owned()],
            &[("IDGRAPH_REPLICATION__ENABLED".into(), "true".into())],
            &data,
            &key,
            &log,
        )?
    } else {
        Server::start(&data, &key, &log)?
    };
    let address = server.address.clone();
    let mut replicas = Vec::new();
    for i in 0..args.replicas {
        replicas.push(Server::spawn(
            &["replica".to_owned(), "--follow".to_owned(), address.clone()],
            &[("IDGRAPH_REPLICA__KEY".into(), key.clone())],
            &scratch.join(format!("replica-{i}")),
            &key,
            &scratch.join(format!("replica-{i}.log")),
        )?);
    }
    let lag_stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let lag = (!replicas.is_empty()).then(|| {
        sample_lag(
            replicas.iter().map(|r| r.address.clone()).collect(),
            lag_stop.clone(),
        )
    });
    let wrk = Wrk {
        bin: &args.wrk,
        scripts: &scripts,
        key: &key,
        address: &address,
    };

    // 1. Ingest, window by window.
    let started = Instant::now();
    let mut offset = 0;
    let mut windows = Vec::new();
    let (mut non_2xx, mut socket_errors, mut rejected) = (0, 0, 0);
    // Events stored and time taken at the end of the last full window: the last window
    // runs its whole length even after the events ran out, so the run's rate is taken
    // over the full windows.
    let mut full: Option<(u64, f64)> = None;
    loop {
        let before = server.events()?;
        let t = Instant::now();
        let result = wrk.run(wrk.ingest(args.connections, args.window_secs, &bodies, offset, 0))?;
        let stored = server.settled_events()?;
        let secs = t.elapsed().as_secs_f64();
        // The batches in flight when wrk stopped are sent again (idempotent).
        offset = result["resume"].as_u64().unwrap_or(offset);
        non_2xx += result["non_2xx"].as_u64().unwrap_or(0);
        socket_errors += result["socket_errors"].as_u64().unwrap_or(0);
        rejected += result["rejected"].as_u64().unwrap_or(0);
        let w = json!({
            "window": windows.len() + 1,
            "seconds": secs,
            "events_total": stored,
            "events_per_s": stored.saturating_sub(before) as f64 / secs,
            "p50_ms": ms(&result, "p50_us"),
            "p99_ms": ms(&result, "p99_us"),
            "max_ms": ms(&result, "max_us"),
            "non_2xx": result["non_2xx"],
            "socket_errors": result["socket_errors"],
            "failed_status": result["failed_status"],
            "last": result["exhausted"] == true,
        });
        if !args.json {
            crate::outln!(
                "  window {:>3}: {:>10} events stored  {:>8.0} events/s  p50 {:>7.1} ms  p99 {:>7.1} ms  (non-2xx {})",
                w["window"], stored, w["events_per_s"].as_f64().unwrap_or(0.0),
                w["p50_ms"].as_f64().unwrap_or(0.0), w["p99_ms"].as_f64().unwrap_or(0.0),
                w["non_2xx"]
            );
        }
        windows.push(w);
        if result["exhausted"] == true {
            break;
        }
        full = Some((stored, started.elapsed().as_secs_f64()));
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    lag_stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut lag_samples = lag.and_then(|h| h.join().ok()).unwrap_or_default();
    // How long the replicas take to hold the writer's last group once ingest stopped.
    let t = Instant::now();
    for r in &replicas {
        loop {
            let (status, v) = r.get("/ready")?;
            if status == 200 && v["position"] == v["writer_position"] && v["lag_seconds"] == 0.0 {
                break;
            }
            if t.elapsed() > Duration::from_secs(600) {
                bail!("a replica did not catch up within 600 s of the end of ingest");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let catch_up = t.elapsed().as_secs_f64();
    let (_, health) = server.get("/health")?;
    let stored = health["events"].as_u64().unwrap_or(0);
    let profiles = health["profiles_created"].as_u64().unwrap_or(0);

    // 2. Reads at the final size.
    let conns = args.read_connections;
    let lookup_file = lookups.display().to_string();
    let search_file = searches.display().to_string();
    let [health_rate, lookup, search] =
        wrk.at_rest(conns, args.read_secs, &lookup_file, &search_file)?;
    let (lookup_busy, lookup_busy_rate, next) = read_while_ingesting(
        &wrk,
        &wrk,
        &server,
        &args,
        (&extra, 0),
        5_000,
        (&lookup_file, "/v1/lookup?kind=email&value="),
    )?;
    let (search_busy, search_busy_rate, next) = read_while_ingesting(
        &wrk,
        &wrk,
        &server,
        &args,
        (&extra, next),
        1_000,
        (&search_file, "/v1/search?q="),
    )?;

    // Lookups on the first replica, alone and while the writer ingests.
    let replica_reads = match replicas.first() {
        Some(r) => {
            let reader = Wrk {
                bin: &args.wrk,
                scripts: &scripts,
                key: &key,
                address: &r.address,
            };
            let alone = reader.read(
                conns,
                args.read_secs,
                &lookup_file,
                "/v1/lookup?kind=email&value=",
            )?;
            let (busy, busy_rate, _) = read_while_ingesting(
                &wrk,
                &reader,
                &server,
                &args,
                (&extra, next),
                5_000,
                (&lookup_file, "/v1/lookup?kind=email&value="),
            )?;
            Some((alone, busy, busy_rate))
        }
        None => None,
    };
    drop(replicas);

    // 3. Footprint at the end of the read phases.
    let rss = rss_of(server.child.id());
    let disk = bytes_under(&data, &|_| true);
    let wal = bytes_under(&data, &|p| {
        p.extension().is_some_and(|e| e == "log") && p.parent() == Some(data.as_path())
    });
    let store = store_bytes(&server)?;

    // 4. The same reads once the store's flushes and compactions have caught up: what a
    // lookup costs in steady state, apart from the backlog ingest leaves behind.
    let settled = if args.settle_secs > 0 {
        let (secs, done) = settle(&server, Duration::from_secs(args.settle_secs))?;
        let disk = bytes_under(&data, &|_| true);
        let reads = wrk.at_rest(conns, args.read_secs, &lookup_file, &search_file)?;
        Some((secs, done, disk, reads))
    } else {
        None
    };

    // 5. kill -9 and restart.
    let before_kill = server.settled_events()?;
    server.child.kill()?;
    server.child.wait()?;
    let t = Instant::now();
    server = Server::start(&data, &key, &log)?;
    loop {
        if matches!(server.get("/ready"), Ok((200, _))) {
            break;
        }
        if t.elapsed() > Duration::from_secs(600) {
            bail!("the server was not ready 600 s after the restart");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let restart = t.elapsed().as_secs_f64();
    let after_restart = server.events()?;
    drop(server);

    let read = |v: &Value| {
        json!({
            "requests_per_s": rate(v), "p50_ms": ms(v, "p50_us"), "p99_ms": ms(v, "p99_us"),
            "max_ms": ms(v, "max_us"), "non_200": v["non_200"], "socket_errors": v["socket_errors"],
        })
    };
    let first = windows
        .first()
        .and_then(|w| w["events_per_s"].as_f64())
        .unwrap_or(0.0);
    // The last window that ran out of events is partial: the one before it is the last
    // full one.
    let last = windows
        .iter()
        .rev()
        .find(|w| w["last"] != true)
        .or(windows.last())
        .and_then(|w| w["events_per_s"].as_f64())
        .unwrap_or(0.0);
    let report = json!({
        "events": args.events,
        "people": people,
        "batch": args.batch,
        "connections": args.connections,
        "events_stored": stored,
        "profiles_created": profiles,
        "ingest_seconds": ingest_secs,
        // Over the full windows (the last one idles once the events run out); a run of
        // one window: over that window.
        "ingest_events_per_s": match full {
            Some((events, secs)) if secs > 0.0 => events as f64 / secs,
            _ => stored as f64 / ingest_secs,
        },
        "last_full_window_vs_first": if first > 0.0 { last / first } else { 0.0 },
        "ingest_non_2xx": non_2xx,
        "ingest_socket_errors": socket_errors,
        "events_rejected": rejected,
        "windows": windows,
        "health": read(&health_rate),
        "lookup": read(&lookup),
        "search": read(&search),
        "lookup_while_ingesting": read(&lookup_busy),
        "lookup_while_ingesting_events_per_s": lookup_busy_rate,
        "search_while_ingesting": read(&search_busy),
        "search_while_ingesting_events_per_s": search_busy_rate,
        "settle_seconds": settled.as_ref().map(|s| s.0),
        "settled": settled.as_ref().map(|s| s.1),
        "settled_disk_bytes": settled.as_ref().map(|s| s.2),
        "settled_health": settled.as_ref().map(|s| read(&s.3[0])),
        "settled_lookup": settled.as_ref().map(|s| read(&s.3[1])),
        "settled_search": settled.as_ref().map(|s| read(&s.3[2])),
        "rss_bytes": rss,
        "disk_bytes": disk,
        "disk_bytes_per_profile": disk as f64 / profiles.max(1) as f64,
        "wal_bytes": wal,
        "store": store,
        "restart_seconds": restart,
        "events_before_kill": before_kill,
        "events_after_restart": after_restart,
        "replicas": args.replicas,
        "replica_lag_seconds_during_ingest": spread(&mut lag_samples),
        "replica_catch_up_seconds": catch_up,
        "replica_lookup": replica_reads.as_ref().map(|(a, _, _)| read(a)),
        "replica_lookup_while_ingesting": replica_reads.as_ref().map(|(_, b, _)| read(b)),
        "replica_lookup_while_ingesting_events_per_s": replica_reads.as_ref().map(|(_, _, r)| *r),
    });
    if args.json {
        crate::outln!("{report}");
    } else {
        let r = |name: &str, v: &Value| {
            crate::outln!(
                "  {name:<34} {:>9.0} /s  p50 {:>6.2} ms  p99 {:>7.2} ms  (non-200 {})",
                v["requests_per_s"].as_f64().unwrap_or(0.0),
                v["p50_ms"].as_f64().unwrap_or(0.0),
                v["p99_ms"].as_f64().unwrap_or(0.0),
                v["non_200"]
            )
        };
        crate::outln!(
            "  ingest: {stored} events stored ({rejected} rejected by validation), {profiles} profiles created, {:.0} events/s over {:.0} s; last full window {:.0}% of the first; non-2xx {non_2xx}",
            report["ingest_events_per_s"].as_f64().unwrap_or(0.0),
            ingest_secs,
            100.0 * report["last_full_window_vs_first"].as_f64().unwrap_or(0.0)
        );
        r("/health (ceiling)", &report["health"]);
        r("lookup by email", &report["lookup"]);
        r("search by name", &report["search"]);
        r(
            &format!("lookup, ingest at {lookup_busy_rate:.0} events/s"),
            &report["lookup_while_ingesting"],
        );
        r(
            &format!("search, ingest at {search_busy_rate:.0} events/s"),
            &report["search_while_ingesting"],
        );
        if let Some((secs, done, disk, _)) = &settled {
            crate::outln!(
                "  {} after {secs:.0} s, disk then {:.0} MB:",
                if *done {
                    "store settled (no flush or compaction running or waiting)"
                } else {
                    "store still compacting at --settle-secs"
                },
                *disk as f64 / 1e6
            );
            r("  /health (ceiling), settled", &report["settled_health"]);
            r("  lookup by email, settled", &report["settled_lookup"]);
            r("  search by name, settled", &report["settled_search"]);
        }
        crate::outln!(
            "  server RSS {:.0} MB; disk {:.0} MB ({:.0} bytes/profile); WAL {:.0} MB",
            rss as f64 / 1e6,
            disk as f64 / 1e6,
            report["disk_bytes_per_profile"].as_f64().unwrap_or(0.0),
            wal as f64 / 1e6
        );
        let mb = |v: &Value| v.as_f64().unwrap_or(0.0) / 1e6;
        let by_cf = report["store"]["sst_bytes_by_cf"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(cf, v)| format!("{cf} {:.0}", mb(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        crate::outln!(
            "  table files by column family (MB): {by_cf}; flushes wrote {:.0} MB, compactions {:.0} MB",
            mb(&report["store"]["flush_write_bytes"]),
            mb(&report["store"]["compaction_write_bytes"])
        );
        crate::outln!(
            "  restart after kill -9: ready in {restart:.2} s; events {before_kill} before, {after_restart} after"
        );
        if let Some((alone, busy, busy_rate)) = &replica_reads {
            let lag = &report["replica_lag_seconds_during_ingest"];
            crate::outln!(
                "  {} replicas: lag during ingest p50 {:.2} s, p99 {:.2} s, max {:.2} s ({} samples); caught up {catch_up:.2} s after ingest stopped",
                args.replicas,
                lag["p50"].as_f64().unwrap_or(0.0),
                lag["p99"].as_f64().unwrap_or(0.0),
                lag["max"].as_f64().unwrap_or(0.0),
                lag["samples"]
            );
            r("replica lookup by email", &read(alone));
            r(
                &format!("replica lookup, writer ingest at {busy_rate:.0} events/s"),
                &read(busy),
            );
        }
    }
    if args.keep {
        crate::errln!("kept {}", scratch.display());
    } else {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    Ok(())
}
