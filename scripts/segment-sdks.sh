#!/usr/bin/env bash
# Installs the official tracking SDKs the Segment API tests (tests/api/segment.rs) point at
# idgraph: @segment/analytics-node and @rudderstack/rudder-sdk-node from npm (`npm ci`
# against the committed lock file in tests/fixtures/segment/), and segment-analytics-python
# from PyPI into a virtualenv at .cache/segment-venv (gitignored). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=tests/fixtures/segment
if [ ! -d "$dir/node_modules/@segment/analytics-node" ] \
  || [ ! -d "$dir/node_modules/@rudderstack/rudder-sdk-node" ] \
  || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
  echo "segment-sdks: npm ci in $dir/"
  (cd "$dir" && npm ci --no-audit --no-fund)
fi

venv=.cache/segment-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import segment.analytics' 2>/dev/null; then
  echo "segment-sdks: segment-analytics-python into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'segment-analytics-python==2.4.0'
fi
