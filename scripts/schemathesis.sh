#!/usr/bin/env bash
# Schemathesis (PyPI `schemathesis`, pinned below) in its own virtualenv, for the API
# conformance test (tests/api/openapi.rs, `schemathesis_finds_no_server_error_or_violation`),
# which runs every operation of schema/openapi.json against a live server with every
# role's key.
#
#   scripts/schemathesis.sh install   creates .cache/schemathesis/venv and pip-installs it
#   scripts/schemathesis.sh path      prints the `st` executable's path
set -euo pipefail
SCHEMATHESIS_VERSION=4.32.5
repo_root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SCHEMATHESIS_VENV:-$repo_root/.cache/schemathesis/venv}"

case "${1:-}" in
  install)
    if [ -x "$venv/bin/st" ] && "$venv/bin/python" -m pip show schemathesis 2>/dev/null | grep -qx "Version: $SCHEMATHESIS_VERSION"; then
      exit 0
    fi
    command -v python3 >/dev/null 2>&1 || { echo "schemathesis.sh: python3 not found" >&2; exit 1; }
    echo "schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    ;;
  path)
    echo "$venv/bin/st"
    ;;
  *)
    echo "usage: scripts/schemathesis.sh install|path" >&2
    exit 2
    ;;
esac
