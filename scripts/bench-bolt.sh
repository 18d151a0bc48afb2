#!/usr/bin/env bash
# Embedded store vs Bolt store, side by side in one run: resolved ingest (events/s) and
# lookups (per s) for the same generated events, first on the embedded RocksDB store, then
# on the Bolt store against a local ArcadeDB server started here (scripts/arcadedb.sh) with
# the schema applied. Prints both `idgraph bench --json` reports and a comparison.
#
#   scripts/bench-bolt.sh [EVENTS]        (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-100000}"
lookups="${BENCH_LOOKUPS:-200000}"

cargo build --locked --bin idgraph
bin=target/debug/idgraph
work="$(mktemp -d)"
trap 'scripts/arcadedb.sh stop "$work/arcadedb" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

echo "== embedded store: $events events"
"$bin" bench --events "$events" --lookups "$lookups" --no-search --json --dir "$work/embedded" | tee "$work/embedded.json"

echo "== Bolt store on ArcadeDB: $events events"
ARCADEDB_WATCH_PID=$$ scripts/arcadedb.sh start "$work/arcadedb" >/dev/null
# shellcheck disable=SC1091
. "$work/arcadedb/env"
export IDGRAPH_GRAPH__STORE=bolt IDGRAPH_GRAPH__BOLT__FLAVOUR=arcadedb
export IDGRAPH_GRAPH__BOLT__URI="$ARCADEDB_BOLT_URI" IDGRAPH_GRAPH__BOLT__USER="$ARCADEDB_USER"
export IDGRAPH_GRAPH__BOLT__PASSWORD="$ARCADEDB_PASSWORD" IDGRAPH_GRAPH__BOLT__DATABASE="$ARCADEDB_DATABASE"
export IDGRAPH_GRAPH__BOLT__TIMEOUT_MS=120000
"$bin" schema apply
"$bin" bench --events "$events" --lookups "$lookups" --no-search --json --dir "$work/bolt" | tee "$work/bolt.json"

python3 - "$work/embedded.json" "$work/bolt.json" <<'PY'
import json, sys
e, b = (json.load(open(p)) for p in sys.argv[1:3])
rows = [
    ("resolved ingest, events/s", "ingest_events_per_s"),
    ("golden-profile lookups by key, /s", "lookups_by_key_per_s"),
    ("golden-profile lookups by value, /s", "lookups_per_s"),
    ("identifier node reads from the graph store, /s", "graph_node_reads_per_s"),
]
print(f"\n| {'measure':<48} | {'embedded':>10} | {'Bolt (ArcadeDB)':>15} | {'embedded / Bolt':>15} |")
print(f"|{'-'*50}|{'-'*12}|{'-'*17}|{'-'*17}|")
for label, key in rows:
    print(f"| {label:<48} | {e[key]:>10.0f} | {b[key]:>15.0f} | {e[key] / b[key]:>14.1f}x |")
print(f"\nprofiles: embedded {e['profiles']}, Bolt {b['profiles']}; merges: {e['merges']} / {b['merges']}")
PY
