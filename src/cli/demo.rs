//! `idgraph demo`: a realistic sample of people across sources (shared devices,
//! households, junk identifiers), ingested into a fresh data directory and served, with
//! example requests printed for the operator.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};

use crate::config::Settings;
use crate::demo::generate::{generate, DemoConfig, DemoData};
use crate::engine::Engine;
use crate::resolve::EventOutcome;

const MARKER: &str = ".idgraph-demo";

/// Empties `dir` if it is an earlier demo directory; refuses any other non-empty directory.
fn fresh_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if dir.join(MARKER).exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        } else if !empty {
            bail!(
                "{} is not empty and is not an idgraph demo directory; pass --data-dir with a new path",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(MARKER),
        b"created by idgraph demo; deleted by the next demo run\n",
    )?;
    Ok(())
}

/// Ingests the generated sample; returns (accepted, duplicate, rejected, merges).
pub fn ingest(engine: &Engine, data: &DemoData) -> anyhow::Result<(u64, u64, u64, u64)> {
    let (mut accepted, mut duplicate, mut rejected, mut merges) = (0, 0, 0, 0);
    for chunk in data.events.chunks(1000) {
        let mut valid = Vec::with_capacity(chunk.len());
        for ev in chunk {
            match engine.validate(ev) {
                Ok(e) => valid.push(e),
                Err(_) => rejected += 1,
            }
        }
        for o in engine.ingest(valid)? {
            match o {
                EventOutcome::Accepted { merged, .. } => {
                    accepted += 1;
                    merges += merged.len() as u64;
                }
                EventOutcome::Duplicate { .. } => duplicate += 1,
                EventOutcome::Suppressed { .. } => rejected += 1,
            }
        }
    }
    Ok((accepted, duplicate, rejected, merges))
}

fn examples(engine: &Engine, data: &DemoData, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    let person = data
        .people
        .iter()
        .find(|p| !p.emails.is_empty() && !p.phones.is_empty() && !p.devices.is_empty());
    let Some(p) = person else { return out };
    let email = &p.emails[0];
    let Ok(profile) = engine.lookup("email", email) else {
        return out;
    };
    let pid = profile["profile_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let phone = p.phones[0].trim_start_matches("+1");
    let national = if phone.len() == 10 {
        format!("({}) {}-{}", &phone[..3], &phone[3..6], &phone[6..])
    } else {
        p.phones[0].clone()
    };
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/lookup?kind=email&value={}'",
        email.to_uppercase()
    ));
    out.push(format!("curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" -G '{base}/v1/lookup' --data-urlencode kind=phone --data-urlencode 'value={national}'"));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/profiles/{pid}'"
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/profiles/{pid}/devices'"
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/profiles/{pid}/household'"
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/profiles/{pid}/graph?depth=1&limit=100'"
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" '{base}/v1/profiles/{pid}/history'"
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" -G '{base}/v1/profiles/{pid}/explain' --data-urlencode 'a=email:{email}' --data-urlencode 'b=device_id:{}'",
        p.devices[0]
    ));
    out.push(format!(
        "curl -s -H \"Authorization: Bearer $IDGRAPH_KEY\" -X POST '{base}/v1/events' -H 'content-type: application/json' -d '{{\"event_id\":\"try-1\",\"source\":\"web\",\"type\":\"identify\",\"identifiers\":{{\"email\":\"{email}\",\"cookie_id\":\"ck_new_browser\"}}}}'"
    ));
    out
}

/// Runs the demo: fresh data dir, generate, ingest, print examples, serve.
pub fn run(mut settings: Settings, people: usize, seed: u64, serve: bool) -> anyhow::Result<()> {
    fresh_dir(&settings.storage.data_dir)?;
    // Out of the box: keys for this run only (an admin and a support agent), unless the
    // configuration brings its own.
    let demo_keys = if settings.auth.keys.is_empty() {
        use crate::governance::keys::{generate_key, hash_key, KeySettings, Role};
        let keys: Vec<(String, Role)> =
            vec![(generate_key(), Role::Admin), (generate_key(), Role::Agent)];
        for (key, role) in &keys {
            settings.auth.keys.push(KeySettings {
                name: format!("demo-{}", role.name()),
                role: *role,
                hash: hash_key(key),
                unmask: false,
                rate_per_second: 1000.0,
                burst: 2000,
                sources: Vec::new(),
                tenant: None,
            });
        }
        keys
    } else {
        Vec::new()
    };
    let bind = settings.server.bind.clone();
    let engine = Engine::open(settings)?;
    let started = std::time::Instant::now();
    let data = generate(&DemoConfig { people, seed });
    let (accepted, duplicate, rejected, merges) = ingest(&engine, &data)?;
    let counters = engine.store().counters()?;
    crate::outln!(
        "demo: {} people, {} events ingested in {:.1}s (accepted {accepted}, duplicate {duplicate}, rejected {rejected}), {} merges, {} profiles",
        data.people.len(),
        data.events.len(),
        started.elapsed().as_secs_f64(),
        merges,
        counters.profile_seq.saturating_sub(merges),
    );
    let base = format!("http://{bind}");
    if let [(admin, _), (agent, _)] = demo_keys.as_slice() {
        crate::outln!("\nAPI keys of this demo run (every /v1 request needs one):");
        crate::outln!("  admin: {admin}");
        crate::outln!(
            "  agent: {agent}   (the console's support view: emails, phones, addresses masked)"
        );
        crate::outln!("  export IDGRAPH_KEY={admin}");
    }
    crate::outln!("\nTry:");
    for line in examples(&engine, &data, &base) {
        crate::outln!("  {line}");
    }
    if serve {
        crate::outln!("\nServing on {base} (Ctrl-C to stop)");
        crate::cli::serve(Arc::new(engine))?;
    }
    Ok(())
}
