#!/usr/bin/env bash
# Runs a throwaway Neo4j 5 Community server (Bolt/Cypher) for the graph-store tests.
#
#   scripts/neo4j.sh install     copies the server's jars from Maven Central (neo4j-harness,
#                                pinned in scripts/neo4j/pom.xml) into .cache/neo4j/lib and
#                                compiles scripts/neo4j/Neo4jTestServer.java (no-op when
#                                already there); needs mvn and a JDK 17+
#   scripts/neo4j.sh start DIR   starts a server bound to 127.0.0.1 only, on a free port,
#                                authentication off, data under DIR/data, log in
#                                DIR/server.log; waits until Bolt answers; writes DIR/env
#                                (shell lines, see below) and prints the same lines
#   scripts/neo4j.sh stop DIR    stops the server started in DIR (TERM, then KILL)
#
# DIR/env:
#   NEO4J_BOLT_URI=bolt://127.0.0.1:PORT  NEO4J_PID=...
#
# Environment knobs (all optional):
#   NEO4J_CACHE_DIR      where the jars go (default: <repo>/.cache/neo4j)
#   NEO4J_HEAP           JVM -Xmx (default: 768m)
#   NEO4J_START_TIMEOUT  seconds to wait for the server to be ready (default: 240)
#   NEO4J_STOP_TIMEOUT   seconds to wait after TERM before KILL (default: 30)
#   NEO4J_WATCH_PID      if set, a watcher stops the server once that process is gone
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# free_ports, bolt_handshake_ok, stop_when_gone
. "$repo_root/scripts/lib/servers.sh"
src_dir="$repo_root/scripts/neo4j"
cache_dir="${NEO4J_CACHE_DIR:-$repo_root/.cache/neo4j}"
stamp="$cache_dir/.installed-$(cat "$src_dir/pom.xml" "$src_dir/Neo4jTestServer.java" | sha256sum | cut -c1-16)"

die() {
  echo "neo4j: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

cmd_install() {
  [ -f "$stamp" ] && return 0
  command -v mvn >/dev/null 2>&1 || die "mvn not found (scripts/install-deps.sh installs maven)"
  command -v javac >/dev/null 2>&1 || die "javac not found (scripts/install-deps.sh installs a JDK)"
  mkdir -p "$cache_dir"
  [ -f "$cache_dir/.gitignore" ] || echo '*' >"$cache_dir/.gitignore"
  exec 9>"$cache_dir/.install.lock"
  flock 9
  if [ -f "$stamp" ]; then
    exec 9>&-
    return 0
  fi
  echo "neo4j: copying the Neo4j server jars from Maven Central into $cache_dir/lib" >&2
  rm -rf "$cache_dir/lib" "$cache_dir/classes" "$cache_dir"/.installed-*
  mvn -q -B -f "$src_dir/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$cache_dir/lib" >&2 || die "mvn could not fetch neo4j-harness (is Maven Central reachable?)"
  mkdir -p "$cache_dir/classes"
  javac -cp "$cache_dir/lib/*" -d "$cache_dir/classes" "$src_dir/Neo4jTestServer.java" >&2 ||
    die "could not compile Neo4jTestServer.java"
  touch "$stamp"
  exec 9>&-
  echo "neo4j: installed" >&2
}

read_env_pid() {
  [ -f "$1/env" ] || return 1
  sed -n 's/^NEO4J_PID=\([0-9][0-9]*\)$/\1/p' "$1/env"
}

is_our_server() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q Neo4jTestServer
}

cmd_start() {
  [ $# -eq 1 ] || usage
  command -v setsid >/dev/null 2>&1 || die "setsid not found (util-linux)"
  mkdir -p "$1"
  local dir
  dir="$(cd "$1" && pwd)"
  if is_our_server "$(read_env_pid "$dir" || true)"; then
    die "a server started in $dir is already running; run: $0 stop $dir"
  fi
  rm -f "$dir/env"
  cmd_install
  local timeout="${NEO4J_START_TIMEOUT:-240}" port pid ready="" attempt
  for attempt in 1 2 3; do
    port="$(free_ports 1)"
    echo "==== $(date -u +%FT%TZ) start attempt $attempt: bolt 127.0.0.1:$port" >>"$dir/server.log"
    mkdir -p "$dir/data"
    (cd "$dir" && exec setsid java "-Xmx${NEO4J_HEAP:-768m}" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
      -cp "$cache_dir/classes:$cache_dir/lib/*" Neo4jTestServer "$port" "$dir/data" \
      </dev/null >>"$dir/server.log" 2>&1) &
    pid=$!
    local deadline=$((SECONDS + timeout)) died=""
    while [ $SECONDS -lt $deadline ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        died=1
        break
      fi
      if grep -q '^ready bolt://' "$dir/server.log" && bolt_handshake_ok "$port"; then
        ready=1
        break
      fi
      sleep 0.5
    done
    [ -n "$ready" ] && break
    if [ -n "$died" ] && tail -n 200 "$dir/server.log" | grep -qiE 'address already in use|BindException'; then
      echo "neo4j: port taken meanwhile, retrying" >&2
      continue
    fi
    [ -z "$died" ] && kill -KILL "$pid" 2>/dev/null
    echo "neo4j: server in $dir not ready (exited or timed out after ${timeout}s); last lines of $dir/server.log:" >&2
    tail -n 40 "$dir/server.log" >&2
    exit 1
  done
  [ -n "$ready" ] || die "could not start the server in $dir (ports kept being taken)"
  if [ -n "${NEO4J_WATCH_PID:-}" ]; then
    stop_when_gone "$NEO4J_WATCH_PID" "$pid" "${NEO4J_STOP_TIMEOUT:-30}"
  fi
  printf 'NEO4J_BOLT_URI=bolt://127.0.0.1:%s\nNEO4J_PID=%s\n' "$port" "$pid" >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local pid
  pid="$(read_env_pid "$1" || true)"
  if ! is_our_server "$pid"; then
    echo "neo4j: no running server recorded in $1/env" >&2
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local waited=0 timeout="${NEO4J_STOP_TIMEOUT:-30}"
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((timeout * 10)) ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  echo "neo4j: stopped server $pid" >&2
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
  install) [ $# -eq 0 ] || usage; cmd_install ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
