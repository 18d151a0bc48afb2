#!/usr/bin/env bash
# Runs idgraph's main job on the embedded store: generates a realistic sample of people,
# ingests it into a fresh data directory (./idgraph-demo-data) and serves the API on
# 127.0.0.1:8080. Extra arguments go to `idgraph demo` (e.g. --people 10000 --bind 0.0.0.0:8080).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo run --locked --bin idgraph -- demo "$@"
