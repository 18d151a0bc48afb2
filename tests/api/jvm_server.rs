//! Starting the real JVM test servers (`scripts/neo4j.sh`, `scripts/gremlin.sh`): one
//! server per test process and script, started on first use, stopped by the script's
//! watcher when this process exits. If a server cannot be started the tests that need it
//! fail and say why; they are never skipped.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Runs `scripts/<name>.sh start` in a fresh directory and returns the lines of the env
/// file it writes (`<PREFIX>_URI=...`, `<PREFIX>_PASSWORD=...`, ...).
pub fn start(name: &str, prefix: &str) -> Result<HashMap<String, String>, String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
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
