#!/usr/bin/env bash
# Every graph store side by side in one run: resolved ingest (events/s) and lookups (per s)
# for the same generated events on the embedded RocksDB store, the Bolt store on a real
# ArcadeDB and a real Neo4j 5, and the Gremlin store on a real Gremlin Server, each server
# started here on loopback by the project's own scripts (and stopped on exit). Prints each
# `idgraph bench --json` report and a table of the rates and their ratio to the embedded
# store's.
#
#   scripts/bench-graphdb.sh [EVENTS]   (default 5000; BENCH_LOOKUPS, default 20000;
#                                        BENCH_BATCH events per request, default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-5000}"
lookups="${BENCH_LOOKUPS:-20000}"
batch="${BENCH_BATCH:-100}"

cargo build --locked --bin idgraph
bin=target/debug/idgraph
work="$(mktemp -d)"
cleanup() {
  for s in arcadedb neo4j gremlin; do
    "scripts/$s.sh" stop "$work/$s" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
export ARCADEDB_WATCH_PID=$$ NEO4J_WATCH_PID=$$ GREMLIN_WATCH_PID=$$

run() { # name, then environment assignments for the store
  local name="$1"
  shift
  echo "== $name: $events events" >&2
  env "$@" IDGRAPH_STORAGE__DATA_DIR="$work/$name-data" "$bin" bench --events "$events" \
    --batch "$batch" --lookups "$lookups" --no-search --json --dir "$work/$name-data" >"$work/$name.json"
  cat "$work/$name.json" >&2
}

run embedded IDGRAPH_GRAPH__STORE=embedded

scripts/arcadedb.sh start "$work/arcadedb" >/dev/null
(
  . "$work/arcadedb/env"
  common=(IDGRAPH_GRAPH__STORE=bolt IDGRAPH_GRAPH__BOLT__FLAVOUR=arcadedb
    IDGRAPH_GRAPH__BOLT__URI="$ARCADEDB_BOLT_URI" IDGRAPH_GRAPH__BOLT__USER="$ARCADEDB_USER"
    IDGRAPH_GRAPH__BOLT__PASSWORD="$ARCADEDB_PASSWORD" IDGRAPH_GRAPH__BOLT__DATABASE="$ARCADEDB_DATABASE"
    IDGRAPH_GRAPH__BOLT__TIMEOUT_MS=120000)
  env "${common[@]}" "$bin" schema apply >/dev/null
  run arcadedb "${common[@]}"
)
scripts/arcadedb.sh stop "$work/arcadedb" >/dev/null 2>&1

scripts/neo4j.sh start "$work/neo4j" >/dev/null
(
  . "$work/neo4j/env"
  common=(IDGRAPH_GRAPH__STORE=bolt IDGRAPH_GRAPH__BOLT__FLAVOUR=neo4j
    IDGRAPH_GRAPH__BOLT__URI="$NEO4J_BOLT_URI" IDGRAPH_GRAPH__BOLT__USER="$NEO4J_USER"
    IDGRAPH_GRAPH__BOLT__PASSWORD="$NEO4J_PASSWORD" IDGRAPH_GRAPH__BOLT__DATABASE=neo4j
    IDGRAPH_GRAPH__BOLT__TIMEOUT_MS=120000)
  env "${common[@]}" "$bin" schema apply >/dev/null
  run neo4j "${common[@]}"
)
scripts/neo4j.sh stop "$work/neo4j" >/dev/null 2>&1

scripts/gremlin.sh start "$work/gremlin" >/dev/null
(
  . "$work/gremlin/env"
  run gremlin IDGRAPH_GRAPH__STORE=gremlin IDGRAPH_GRAPH__GREMLIN__URI="$GREMLIN_URI" \
    IDGRAPH_GRAPH__GREMLIN__USER="$GREMLIN_USER" IDGRAPH_GRAPH__GREMLIN__PASSWORD="$GREMLIN_PASSWORD" \
    IDGRAPH_GRAPH__GREMLIN__TIMEOUT_MS=120000
)

python3 - "$work" <<'PY'
import json, sys, os
work = sys.argv[1]
names = [("embedded", "embedded"), ("arcadedb", "Bolt/ArcadeDB"), ("neo4j", "Bolt/Neo4j"), ("gremlin", "Gremlin Server")]
reports = {n: json.load(open(os.path.join(work, n + ".json"))) for n, _ in names}
rows = [
    ("resolved ingest, events/s", "ingest_events_per_s"),
    ("golden-profile lookups by value, /s", "lookups_per_s"),
    ("identifier node reads from the graph store, /s", "graph_node_reads_per_s"),
]
print("\n| measure | " + " | ".join(label for _, label in names) + " |")
print("|---|" + "---:|" * len(names))
for label, key in rows:
    base = reports["embedded"][key]
    cells = [f"{reports[n][key]:,.0f}" + ("" if n == "embedded" else f" ({reports[n][key] / base:.3f}x)") for n, _ in names]
    print(f"| {label} | " + " | ".join(cells) + " |")
print("\nprofiles: " + ", ".join(f"{label} {reports[n]['profiles']}" for n, label in names))
print("merges: " + ", ".join(f"{label} {reports[n]['merges']}" for n, label in names))
PY
