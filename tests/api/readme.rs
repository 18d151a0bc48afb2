//! The README's API tour runs as written: its shell block (marked `<!-- tour: ... -->`)
//! makes its own key, config and data, starts the real server, and every `curl -f` in it
//! must succeed. Only the port is changed (a free one instead of 8080).

use std::process::Command;

use crate::helpers::assert_succeeded;

/// `bash -c script` in `dir` (killed after `seconds`), with the `idgraph` binary under
/// test first on PATH and every inherited `IDGRAPH_*` variable removed.
fn bash(script: &str, dir: &std::path::Path, seconds: u32) -> std::process::Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_idgraph"))
        .parent()
        .expect("the binary's directory")
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("timeout");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("IDGRAPH_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg(seconds.to_string())
        .args(["bash", "-c", script])
        .current_dir(dir)
        .env("PATH", path)
        .output()
        .expect("run bash")
}

fn tour_block() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- tour:")
        .expect("the README marks its tour block with <!-- tour: ... -->");
    let rest = &readme[start..];
    let open = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let close = rest[open..].find("\n```").expect("the block is closed") + open;
    rest[open..close].to_owned()
}

#[test]
fn the_readme_api_tour_runs_as_written() {
    let block = tour_block();
    assert!(
        block.contains("idgraph keys new"),
        "the tour makes its own key"
    );
    assert!(
        !block.contains("p_000000000001"),
        "no hard-coded ids the block did not create"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = format!(
        "set -euo pipefail\n{}\n",
        block.replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"))
    );
    let tmp = tempfile::TempDir::new().unwrap();
    let out = bash(&script, tmp.path(), 180);
    let log = std::fs::read_to_string(tmp.path().join("tour-serve.log")).unwrap_or_default();
    assert_succeeded(&out, &format!("the README tour (server log:\n{log})"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // What the tour shows: Bob's golden profile with both sources, a household of two,
    // the typo search finding him, and the event counter.
    assert!(stdout.contains(r#""first_name":"Bob""#), "{stdout}");
    assert!(stdout.contains(r#""sources":["crm","web"]"#), "{stdout}");
    assert!(stdout.contains("shared_address"), "{stdout}");
    assert!(stdout.contains(r#""tier":"typo_or_prefix""#), "{stdout}");
    assert!(stdout.contains("idgraph_events_total"), "{stdout}");
    assert!(
        stdout.contains(r#""format":"idgraph.subject_access""#),
        "{stdout}"
    );
    let written = std::fs::read_to_string(tmp.path().join("bob.json")).unwrap_or_default();
    assert!(written.contains("bob@example.com"), "{written}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn docker_compose_serves_with_a_mounted_config_holding_keys() {
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .expect("docker-compose.yml");
    assert!(
        compose.contains("IDGRAPH_CONFIG: /etc/idgraph/idgraph.toml"),
        "{compose}"
    );
    assert!(
        compose.contains("./idgraph.toml:/etc/idgraph/idgraph.toml:ro"),
        "{compose}"
    );
    // The documented way to make that file gives a config the server accepts with a key
    // that works.
    let line = compose
        .lines()
        .find(|l| l.contains("keys new") && l.contains("> idgraph.toml"))
        .expect("the compose file documents how to make idgraph.toml");
    let command = line.trim_start_matches('#').trim();
    let tmp = tempfile::TempDir::new().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The documented command, then a server on that config alone: its key is accepted
    // (404: nobody yet), a wrong one is not (401).
    let script = format!(
        r#"set -euo pipefail
{{ {command} ; }} 2> shown.txt
KEY=$(grep -o 'idg_[A-Za-z0-9_]*' shown.txt | head -1)
grep -q '^\[\[auth.keys\]\]' idgraph.toml
! grep -q "$KEY" idgraph.toml
idgraph serve --config idgraph.toml --data-dir ./data --bind 127.0.0.1:{port} > serve.log 2>&1 &
SERVER=$!
until curl -fsS http://127.0.0.1:{port}/ready > /dev/null 2>&1; do sleep 0.2; done
ok=$(curl -s -o /dev/null -w '%{{http_code}}' -H "Authorization: Bearer $KEY" 'http://127.0.0.1:{port}/v1/lookup?kind=email&value=a@b.c')
bad=$(curl -s -o /dev/null -w '%{{http_code}}' -H 'Authorization: Bearer idg_wrong' 'http://127.0.0.1:{port}/v1/lookup?kind=email&value=a@b.c')
kill $SERVER; wait $SERVER
echo "ok=$ok bad=$bad"
"#
    );
    let out = bash(&script, tmp.path(), 120);
    assert_succeeded(&out, "the documented compose config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ok=404 bad=401"), "{stdout}");
}
