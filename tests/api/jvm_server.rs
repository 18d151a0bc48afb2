//! Starting the real test servers (`scripts/neo4j.sh`, `scripts/gremlin.sh`,
//! `scripts/kafka.sh` on the JVM; `scripts/local-kms.sh`, a Go binary): one
//! server per test process and script, started on first use, stopped by the script's
//! watcher when this process exits. If a server cannot be started the tests that need it
//! fail and say why; they are never skipped.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Deletes the server directories `idgraph-<name>-<pid>` that earlier test processes left
/// in the temporary directory (their servers stopped with them), so runs do not pile up
/// data on the disk.
pub fn sweep(name: &str) {
    let prefix = format!("idgraph-{name}-");
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Runs `scripts/<name>.sh start` in a fresh directory and returns the lines of the env
/// file it writes (`<PREFIX>_URI=...`, `<PREFIX>_PASSWORD=...`, ...).
pub fn start(name: &str, prefix: &str) -> Result<HashMap<String, String>, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    sweep(name);
    let dir = std::env::temp_dir().join(format!("idgraph-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let script = repo.join(format!("scripts/{name}.sh"));
    let out = Command::new(&script)
        .arg("start")
        .arg(&dir)
        .env(
            format!("{prefix}_WATCH_PID"),
            std::process::id().to_string(),
        )
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/{name}.sh start failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let env = std::fs::read_to_string(dir.join("env")).map_err(|e| e.to_string())?;
    Ok(env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// One variable of a started server's env file.
pub fn var(env: &HashMap<String, String>, name: &str) -> Result<String, String> {
    env.get(name)
        .cloned()
        .ok_or_else(|| format!("the server script wrote no {name}"))
}
