#!/usr/bin/env bash
# Probabilistic matching at scale: generates RECORDS labelled people with realistic noise
# (benches/quality/generate_people.py), then runs `idgraph eval --probabilistic` on them
# (a model trained on the records without labels, then every record resolved in real time
# with matching on) and on FEBRL3. Prints the JSON reports: quality, wall time, training
# time, candidates compared, peak RSS.
#
#   scripts/bench-matching.sh [RECORDS]        (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-1000000}"

cargo build --locked --bin idgraph
bin=target/debug/idgraph
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== generating $records people records"
python3 benches/quality/generate_people.py --records "$records" --out "$work/people.csv"

echo "== febrl3 (5,000 records)"
RUST_LOG=warn "$bin" eval ../shared/data/benchmarks/febrl3.csv --mapping benches/quality/febrl.toml \
  --truth 'rec_id~^rec-(\d+)-' --probabilistic --json

echo "== generated people ($records records)"
RUST_LOG=warn "$bin" eval "$work/people.csv" --mapping benches/quality/people.toml \
  --truth entity_id --probabilistic --json
