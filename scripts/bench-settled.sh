#!/usr/bin/env bash
# Settled lookups of two kept stores, each served ALONE by one binary: what a deployment
# sees once ingest and compaction are over. Made for the encryption-cost comparison
# (docs/benchmarks.md, "settled lookups without it"), usable for any two configurations.
#
#   scripts/bench-settled.sh A_DIR B_DIR [ROUNDS]
#
# A_DIR and B_DIR are work directories of `idgraph bench-http --keep --dir ...` (their
# `data/`, `lookups.txt`, `bodies.jsonl` and `scripts/read.lua` are used). ROUNDS (default
# 8) alternate which store goes first. Per server: the page cache is dropped (as root;
# otherwise the script says so and goes on), then one round of a cold list (emails of
# A_DIR's events the bench's own list does not hold, so neither cache has seen them), two
# discarded warm-up rounds of the bench's hot list, and one hot round. Each round is
# `wrk -t2 -c16 -d${SECS:-15}s`. Environment for each side: A_ENV and B_ENV (e.g.
# B_ENV="IDGRAPH_ENCRYPTION__ENABLED=true IDGRAPH_ENCRYPTION__KEK__FILE=/path/kek");
# BIN picks the binary (default ./target/debug/idgraph). Prints one line per measured
# round, then each list's per-round ratios B/A and their mean.
set -euo pipefail
cd "$(dirname "$0")/.."
a_dir="${1:?usage: scripts/bench-settled.sh A_DIR B_DIR [ROUNDS]}"
b_dir="${2:?usage: scripts/bench-settled.sh A_DIR B_DIR [ROUNDS]}"
rounds="${3:-8}"
bin="${BIN:-./target/debug/idgraph}"
secs="${SECS:-15}"
port="${PORT:-18399}"
for d in "$a_dir" "$b_dir"; do
    [[ -d "$d/data" && -f "$d/lookups.txt" && -f "$d/scripts/read.lua" ]] ||
        { echo "$d is not a kept bench-http directory (data/, lookups.txt, scripts/read.lua)" >&2; exit 2; }
done
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 2; }
work="$(mktemp -d /tmp/idgraph-bench-settled.XXXXXX)"
server=""
cleanup() { [[ -n "$server" ]] && kill -9 "$server" 2>/dev/null || true; }
trap cleanup EXIT

# The cold list: every third batch's first email, those the hot list lacks, shuffled.
python3 - "$a_dir" "$work/cold.txt" <<'EOF'
import json, random, sys, urllib.parse
src, out = sys.argv[1], sys.argv[2]
hot = set(open(f"{src}/lookups.txt").read().split())
seen, emails = set(), []
with open(f"{src}/bodies.jsonl") as f:
    for n, line in enumerate(f):
        if n % 3:
            continue
        for ev in json.loads(line):
            e = ev.get("identifiers", {}).get("email")
            if isinstance(e, list):
                e = e[0] if e else None
            q = urllib.parse.quote(e, safe="") if e else None
            if q and q not in hot and q not in seen:
                seen.add(q)
                emails.append(q)
random.Random(7).shuffle(emails)
open(out, "w").write("".join(e + "\n" for e in emails[:400000]))
print(f"cold list: {min(len(emails), 400000)} emails", file=sys.stderr)
EOF

key="bench-settled-$(date +%s%N)"
hash="$(printf %s "$key" | sha256sum | cut -d' ' -f1)"
export IDGRAPH_AUTH__KEYS="[{name=\"bench\",role=\"admin\",hash=\"sha256:$hash\",rate_per_second=1000000000.0,burst=1000000000}]"
export IDGRAPH_BENCH_KEY="$key"

measure() { # list -> "requests p99_us"
    wrk -t2 -c16 -d"${secs}s" -s "$a_dir/scripts/read.lua" "http://127.0.0.1:$port" -- "$1" \
        '/v1/lookup?kind=email&value=' | sed -n 's/.*BENCH .*"requests":\([0-9]*\).*"p99_us":\([0-9]*\).*/\1 \2/p'
}

serve() { # side round
    local side="$1" round="$2" dir extra
    if [[ "$side" == A ]]; then dir="$a_dir"; extra="${A_ENV:-}"; else dir="$b_dir"; extra="${B_ENV:-}"; fi
    sync
    if ! { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
        echo "note: cannot drop the page cache (not root): rounds start warm" >&2
    fi
    # shellcheck disable=SC2086
    env $extra "$bin" serve --data-dir "$dir/data" --bind "127.0.0.1:$port" >/dev/null 2>"$work/$side.log" &
    server=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.5; done
    local cold_list="$work/cold.txt"
    read -r cold cold_p99 <<<"$(measure "$cold_list")"
    measure "$a_dir/lookups.txt" >/dev/null
    measure "$a_dir/lookups.txt" >/dev/null
    read -r hot hot_p99 <<<"$(measure "$a_dir/lookups.txt")"
    kill -9 "$server"; wait "$server" 2>/dev/null || true; server=""
    echo "round $round $side cold $cold $cold_p99 hot $hot $hot_p99" | tee -a "$work/rounds.txt"
}

for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then order="A B"; else order="B A"; fi
    for side in $order; do serve "$side" "$r"; done
done

python3 - "$work/rounds.txt" "$secs" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    _, r, side, _, cold, cold_p99, _, hot, hot_p99 = line.split()
    rows.setdefault(int(r), {})[side] = (int(cold), int(cold_p99), int(hot), int(hot_p99))
secs = float(sys.argv[2])
for name, i in (("cold", 0), ("hot", 2)):
    ratios = [v["B"][i] / v["A"][i] for _, v in sorted(rows.items()) if v["A"][i] and "B" in v]
    per = ", ".join(f"{x:.2f}" for x in ratios)
    mean = sum(ratios) / len(ratios) if ratios else float("nan")
    a = [v["A"][i] / secs for v in rows.values()]
    b = [v["B"][i] / secs for v in rows.values() if "B" in v]
    print(f"{name}: B/A per round {per}; mean {mean:.2f}; A {min(a):,.0f}-{max(a):,.0f} /s, B {min(b):,.0f}-{max(b):,.0f} /s")
EOF
echo "rounds: $work/rounds.txt" >&2
