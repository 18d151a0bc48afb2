#!/usr/bin/env bash
# Runs a throwaway local-kms (github.com/nsmithuk/local-kms: a server speaking the AWS
# KMS API, fetched from the Go module proxy) for the tests of encryption.kek.aws_kms.
#
#   scripts/local-kms.sh install     builds scripts/local-kms/main.go (local-kms pinned in
#                                    scripts/local-kms/go.mod) into .cache/local-kms/bin
#                                    (no-op when already there); needs go
#   scripts/local-kms.sh start DIR   starts it bound to 127.0.0.1 only, on a free port,
#                                    keys under DIR/data, log in DIR/server.log; writes
#                                    DIR/env (shell lines, mode 600, see below) and prints
#                                    the same lines
#   scripts/local-kms.sh stop DIR    stops the server started in DIR (TERM, then KILL)
#
# DIR/env:
#   LOCAL_KMS_ENDPOINT=http://127.0.0.1:PORT  LOCAL_KMS_REGION=eu-west-1  LOCAL_KMS_PID=...
#
# Environment knobs (all optional):
#   LOCAL_KMS_CACHE_DIR      where the binary goes (default: <repo>/.cache/local-kms)
#   LOCAL_KMS_START_TIMEOUT  seconds to wait for the server to be ready (default: 60)
#   LOCAL_KMS_WATCH_PID      if set, a watcher stops the server once that process is gone
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$repo_root/scripts/local-kms"
cache_dir="${LOCAL_KMS_CACHE_DIR:-$repo_root/.cache/local-kms}"
region=eu-west-1
# stop_when_gone, recorded_pid, runs_as, stop_pid
. "$repo_root/scripts/lib/servers.sh"

die() {
  echo "local-kms: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

install() {
  local stamp
  stamp="$cache_dir/.installed-$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  command -v go >/dev/null 2>&1 || die "go not found (scripts/install-deps.sh installs golang)"
  mkdir -p "$cache_dir"
  [ -f "$cache_dir/.gitignore" ] || echo '*' >"$cache_dir/.gitignore"
  exec 9>"$cache_dir/.install.lock"
  flock 9
  if [ ! -f "$stamp" ]; then
    echo "local-kms: building from the Go module proxy into $cache_dir/bin" >&2
    rm -f "$cache_dir"/.installed-*
    (cd "$src" && GOFLAGS=-mod=readonly go build -o "$cache_dir/bin/local-kms-loopback" .) >&2 ||
      die "go could not build local-kms (is the Go module proxy reachable?)"
    touch "$stamp"
  fi
  exec 9>&-
}

env_pid() { recorded_pid "$1" LOCAL_KMS; }

is_ours() { runs_as "$1" local-kms-loopback; }

start() {
  [ $# -eq 1 ] || usage
  mkdir -p "$1"
  local dir pid port="" deadline
  dir="$(cd "$1" && pwd)"
  if is_ours "$(env_pid "$dir" || true)"; then
    die "a server started in $dir is already running; run: $0 stop $dir"
  fi
  rm -f "$dir/env"
  install
  mkdir -p "$dir/data"
  echo "==== $(date -u +%FT%TZ) start" >>"$dir/server.log"
  (KMS_REGION="$region" exec setsid "$cache_dir/bin/local-kms-loopback" "$dir/data" \
    </dev/null >>"$dir/server.log" 2>&1) &
  pid=$!
  deadline=$((SECONDS + ${LOCAL_KMS_START_TIMEOUT:-60}))
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$pid" 2>/dev/null || break
    port="$(sed -n 's/^ready \([0-9][0-9]*\)$/\1/p' "$dir/server.log" | tail -n 1)"
    [ -n "$port" ] && break
    sleep 0.2
  done
  if [ -z "$port" ]; then
    kill -KILL "$pid" 2>/dev/null || true
    echo "local-kms: server in $dir not ready; last lines of $dir/server.log:" >&2
    tail -n 40 "$dir/server.log" >&2
    exit 1
  fi
  if [ -n "${LOCAL_KMS_WATCH_PID:-}" ]; then
    stop_when_gone "$LOCAL_KMS_WATCH_PID" "$pid" 10
  fi
  (
    umask 077
    printf 'LOCAL_KMS_ENDPOINT=http://127.0.0.1:%s\nLOCAL_KMS_REGION=%s\nLOCAL_KMS_PID=%s\n' "$port" "$region" "$pid"
  ) >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
}

stop() {
  [ $# -eq 1 ] || usage
  local pid
  pid="$(env_pid "$1" || true)"
  if ! is_ours "$pid"; then
    echo "local-kms: no running server recorded in $1/env" >&2
    return 0
  fi
  stop_pid "$pid" 10 || true
  echo "local-kms: stopped server $pid" >&2
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
  install) [ $# -eq 0 ] || usage; install ;;
  start) start "$@" ;;
  stop) stop "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
