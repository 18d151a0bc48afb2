#!/usr/bin/env bash
# The change feed's cost on the live server: `idgraph bench-http` three times on the same
# generated events, one after the other: the feed off, the feed on, and the feed on with a
# webhook delivering every record to a local receiver (tests/support/webhook_receiver.py,
# which verifies each signature). Prints one line per run; the JSON reports stay in the
# work directory it names.
#
#   scripts/bench-feed.sh [EVENTS]      # default 500000; BIN picks the binary
set -euo pipefail
cd "$(dirname "$0")/.."
events="${1:-500000}"
bin="${BIN:-./target/debug/idgraph}"
secret="bench-feed-secret-0123456789"
work="$(mktemp -d /tmp/idgraph-bench-feed.XXXXXX)"
rx_pid=""
cleanup() { [[ -n "$rx_pid" ]] && kill "$rx_pid" 2>/dev/null || true; }
trap cleanup EXIT

run() {
    local label="$1"
    shift
    echo "== $label" >&2
    env "$@" "$bin" bench-http --events "$events" --window-secs 30 --read-secs 10 --json \
        --dir "$work/$label-data" >"$work/$label.json"
    rm -rf "$work/$label-data"
}

run feed-off IDGRAPH_FEED__ENABLED=false
run feed-on IDGRAPH_FEED__ENABLED=true

mkdir -p "$work/receiver"
python3 tests/support/webhook_receiver.py "$work/receiver" "$secret" &
rx_pid=$!
for _ in $(seq 100); do [[ -f "$work/receiver/port" ]] && break; sleep 0.1; done
port="$(cat "$work/receiver/port")"
run feed-webhook IDGRAPH_FEED__ENABLED=true \
    IDGRAPH_WEBHOOKS="[{name=\"bench\",url=\"http://127.0.0.1:$port/hook\",secret=\"$secret\",batch_size=1000}]"

python3 - "$work" <<'EOF'
import json, os, sys
work = sys.argv[1]
print(f"{'run':<14}{'events/s':>10}{'first->last window':>22}{'lookup/s':>10}{'p99 ms':>8}{'lookup while ingesting':>24}{'disk B/profile':>16}")
for label in ["feed-off", "feed-on", "feed-webhook"]:
    r = json.load(open(os.path.join(work, f"{label}.json")))
    w = [x["events_per_s"] for x in r["windows"]]
    busy = r["lookup_while_ingesting"]
    print(f"{label:<14}{r['ingest_events_per_s']:>10.0f}{w[0]:>12.0f} -> {w[-2] if len(w) > 1 else w[-1]:<7.0f}"
          f"{r['lookup']['requests_per_s']:>10.0f}{r['lookup']['p99_ms']:>8.1f}"
          f"{busy['requests_per_s']:>14.0f} p99 {busy['p99_ms']:>5.1f}{r['disk_bytes_per_profile']:>16.0f}")
received = os.path.join(work, "receiver", "received.jsonl")
records = batches = 0
if os.path.exists(received):
    for line in open(received):
        batches += 1
        records += len(json.loads(line)["body"]["changes"])
attempts = os.path.join(work, "receiver", "attempts.jsonl")
statuses = {}
if os.path.exists(attempts):
    for line in open(attempts):
        s = json.loads(line)["status"]
        statuses[s] = statuses.get(s, 0) + 1
print(f"webhook: {records} records in {batches} signed POSTs delivered; receiver statuses {statuses}")
print(f"reports: {work}")
EOF
