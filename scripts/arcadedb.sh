#!/usr/bin/env bash
# Runs a throwaway ArcadeDB server (Bolt/openCypher) for the graph-store backend's tests.
#
#   scripts/arcadedb.sh install       pip-installs the pinned arcadedb-jvm wheel (server jars +
#                                     a bundled Java runtime) into .cache/arcadedb/ (no-op when
#                                     already there)
#   scripts/arcadedb.sh start DIR     starts a server bound to 127.0.0.1 only, on free ports,
#                                     with a random root password, data under DIR/root,
#                                     database `identity`, log in DIR/server.log; waits until
#                                     it answers; writes DIR/env (shell lines, see below) and
#                                     prints the same lines
#   scripts/arcadedb.sh stop DIR      stops the server started in DIR (TERM, then KILL)
#   scripts/arcadedb.sh create-db DIR NAME
#                                     creates the empty database NAME on the server of DIR
#
# DIR/env:
#   ARCADEDB_BOLT_URI=bolt://127.0.0.1:PORT  ARCADEDB_USER=root  ARCADEDB_PASSWORD=...
#   ARCADEDB_DATABASE=identity  ARCADEDB_PID=...  ARCADEDB_HTTP_PORT=...
#
# Environment knobs (all optional):
#   ARCADEDB_CACHE_DIR      where the wheel is installed (default: <repo>/.cache/arcadedb)
#   ARCADEDB_HEAP           JVM -Xmx (default: 512m)
#   ARCADEDB_START_TIMEOUT  seconds to wait for the server to be ready (default: 120)
#   ARCADEDB_STOP_TIMEOUT   seconds to wait after TERM before KILL (default: 30)
#   ARCADEDB_BOLT_PORT, ARCADEDB_HTTP_PORT
#                           listen on these ports instead of free ones chosen at random
#   ARCADEDB_WATCH_PID      if set, a watcher stops the server once that process is gone
#                           (so a test run that dies without calling `stop` leaks nothing)
set -euo pipefail

ARCADEDB_VERSION="26.11.1.dev2" # PyPI arcadedb-jvm; ArcadeDB 26.11.1-SNAPSHOT, JRE 25
DATABASE="identity"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# free_ports, bolt_handshake_ok, stop_when_gone
. "$repo_root/scripts/lib/servers.sh"
cache_dir="${ARCADEDB_CACHE_DIR:-$repo_root/.cache/arcadedb}"
pkg_dir="$cache_dir/arcadedb-jvm-$ARCADEDB_VERSION"
java_bin="$pkg_dir/arcadedb/jre/bin/java"
jars_dir="$pkg_dir/arcadedb/jars"

die() {
  echo "arcadedb: $*" >&2
  exit 1
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

is_installed() {
  [ -f "$pkg_dir/.installed" ] && [ -x "$java_bin" ] && [ -d "$jars_dir" ]
}

# Prints a command prefix (one word per line) that runs pip, bootstrapping one if needed.
find_pip() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed to pip-install arcadedb-jvm)"
  if python3 -m pip --version >/dev/null 2>&1; then
    printf '%s\n' python3 -m pip
    return
  fi
  # No pip for the system python: a private venv brings its own (needs python3-venv on Debian).
  local venv="$cache_dir/bootstrap-venv"
  if [ ! -x "$venv/bin/pip" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      rm -rf "$venv"
      local sudo=""
      if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "python3 has neither pip nor venv; install python3-pip (needs root)"
        sudo="sudo"
      fi
      echo "arcadedb: installing python3-pip and python3-venv with apt-get" >&2
      $sudo apt-get update -qq >&2
      DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip python3-venv >&2
      if python3 -m pip --version >/dev/null 2>&1; then
        printf '%s\n' python3 -m pip
        return
      fi
      python3 -m venv "$venv" >&2 || die "could not create a python venv in $venv"
    fi
  fi
  printf '%s\n' "$venv/bin/pip"
}

cmd_install() {
  if is_installed; then
    return 0
  fi
  mkdir -p "$cache_dir"
  # Everything in the cache is generated: keep it out of git even without a .gitignore entry.
  [ -f "$cache_dir/.gitignore" ] || echo '*' >"$cache_dir/.gitignore"
  # Serialise concurrent installs (parallel test processes may all call `start`).
  exec 9>"$cache_dir/.install.lock"
  flock 9
  if is_installed; then
    exec 9>&-
    return 0
  fi
  local pip=()
  mapfile -t pip < <(find_pip)
  [ ${#pip[@]} -gt 0 ] || die "no pip available"
  local tmp="$cache_dir/.tmp-install.$$"
  rm -rf "$tmp"
  echo "arcadedb: installing arcadedb-jvm==$ARCADEDB_VERSION into $pkg_dir" >&2
  # --no-deps: only the jars and the bundled JRE are used, not the Python API (jpype1).
  # --target bypasses Debian's externally-managed-environment guard.
  if ! PIP_ROOT_USER_ACTION=ignore "${pip[@]}" install --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
    --target "$tmp" "arcadedb-jvm==$ARCADEDB_VERSION" >&2; then
    rm -rf "$tmp"
    die "pip install arcadedb-jvm==$ARCADEDB_VERSION failed (is PyPI reachable? see the pip output above)"
  fi
  [ -x "$tmp/arcadedb/jre/bin/java" ] || {
    rm -rf "$tmp"
    die "arcadedb-jvm==$ARCADEDB_VERSION has no arcadedb/jre/bin/java (not a manylinux x86_64 machine?)"
  }
  "$tmp/arcadedb/jre/bin/java" -version >/dev/null 2>&1 || {
    rm -rf "$tmp"
    die "the bundled Java runtime does not run on this machine"
  }
  touch "$tmp/.installed"
  rm -rf "$pkg_dir"
  mv "$tmp" "$pkg_dir"
  exec 9>&-
  echo "arcadedb: installed" >&2
}

random_password() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

# Succeeds once the database answers `RETURN 1` over Bolt 4.0 (the version neo4rs 0.8
# negotiates): handshake, HELLO with the root credentials, RUN with {db}, PULL.
bolt_query_ok() {
  ARCADEDB_CHECK_PASSWORD="$2" python3 - "$1" "$DATABASE" <<'EOF' >/dev/null 2>&1
import os, socket, struct, sys

def pstr(v):
    b = v.encode()
    if len(b) < 16:
        return bytes([0x80 | len(b)]) + b
    if len(b) < 256:
        return b"\xd0" + bytes([len(b)]) + b
    return b"\xd1" + struct.pack(">H", len(b)) + b

def pmap(d):  # values: str, or the integer -1
    return bytes([0xA0 | len(d)]) + b"".join(
        pstr(k) + (pstr(v) if isinstance(v, str) else b"\xff") for k, v in d.items())

def send(sock, msg):
    sock.sendall(struct.pack(">H", len(msg)) + msg + b"\x00\x00")

def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

def recv(sock):
    data = b""
    while True:
        n = struct.unpack(">H", read_exact(sock, 2))[0]
        if n == 0:
            if data:
                return data
            continue
        data += read_exact(sock, n)

port, db = int(sys.argv[1]), sys.argv[2]
SUCCESS, RECORD = 0x70, 0x71
with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
    s.sendall(bytes.fromhex("6060b017" "00000004" "00000000" "00000000" "00000000"))
    if read_exact(s, 4) != b"\x00\x00\x00\x04":
        sys.exit(1)
    send(s, b"\xb1\x01" + pmap({"user_agent": "arcadedb.sh", "scheme": "basic", "principal": "root",
                               "credentials": os.environ["ARCADEDB_CHECK_PASSWORD"]}))
    if recv(s)[1] != SUCCESS:
        sys.exit(1)
    send(s, b"\xb3\x10" + pstr("RETURN 1 AS ok") + pmap({}) + pmap({"db": db}))
    send(s, b"\xb1\x3f" + pmap({"n": -1}))
    if [recv(s)[1] for _ in range(3)] != [SUCCESS, RECORD, SUCCESS]:
        sys.exit(1)
    send(s, b"\xb0\x02")
EOF
}

# Succeeds once the database answers an openCypher command over HTTP.
http_query_ok() {
  local port="$1" password="$2"
  curl -fsS --max-time 5 -u "root:$password" -H 'Content-Type: application/json' \
    -d '{"language":"cypher","command":"RETURN 1 AS ok"}' \
    "http://127.0.0.1:$port/api/v1/command/$DATABASE" >/dev/null 2>&1
}

read_env_pid() {
  local dir="$1"
  [ -f "$dir/env" ] || return 1
  sed -n 's/^ARCADEDB_PID=\([0-9][0-9]*\)$/\1/p' "$dir/env"
}

# Is $1 alive and an ArcadeDB server (not a recycled pid)?
is_our_server() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  local cmdline
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
  [[ "$cmdline" == *com.arcadedb.server.ArcadeDBServer* ]]
}

# Starts one server process; prints its pid.
launch() {
  local dir="$1" bolt_port="$2" http_port="$3"
  local heap="${ARCADEDB_HEAP:-512m}"
  local args=(
    "-Xms64m" "-Xmx$heap" "-XX:+UseSerialGC" "-XX:+ExitOnOutOfMemoryError"
    "-Djava.awt.headless=true" "-Dfile.encoding=UTF-8"
    "-Darcadedb.server.rootPath=$dir/root"
    "-Darcadedb.server.logsDirectory=$dir/root/log"
    "-Darcadedb.server.rootPasswordPath=$dir/root-password"
    "-Darcadedb.server.defaultDatabases=${DATABASE}[root]"
    "-Darcadedb.server.httpIncomingHost=127.0.0.1"
    "-Darcadedb.server.httpIncomingPort=$http_port"
    "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin"
    "-Darcadedb.bolt.host=127.0.0.1"
    "-Darcadedb.bolt.port=$bolt_port"
    "-Darcadedb.bolt.defaultDatabase=$DATABASE"
    -cp "$jars_dir/*"
    com.arcadedb.server.ArcadeDBServer
  )
  # setsid: its own session, so it outlives this script and ignores the terminal's signals.
  (cd "$dir" && exec setsid "$java_bin" "${args[@]}" </dev/null >>"$dir/server.log" 2>&1) &
  echo $!
}

cmd_start() {
  [ $# -eq 1 ] || usage
  command -v curl >/dev/null 2>&1 || die "curl not found"
  command -v setsid >/dev/null 2>&1 || die "setsid not found (util-linux)"
  mkdir -p "$1"
  local dir
  dir="$(cd "$1" && pwd)"
  local old_pid
  old_pid="$(read_env_pid "$dir" || true)"
  if is_our_server "$old_pid"; then
    die "a server started in $dir is already running (pid $old_pid); run: $0 stop $dir"
  fi
  rm -f "$dir/env"
  cmd_install

  local timeout="${ARCADEDB_START_TIMEOUT:-120}"
  local password bolt_port http_port pid attempt
  # The root password is applied only when the server creates its users file, i.e. on the
  # first start in DIR; a restart on the same DIR (data kept) reuses it.
  if [ -f "$dir/root/config/server-users.jsonl" ]; then
    [ -s "$dir/root-password" ] || die "$dir/root holds a server whose root password is unknown; remove $dir/root"
    password="$(cat "$dir/root-password")"
  else
    password="$(random_password)"
    (umask 077 && printf '%s' "$password" >"$dir/root-password")
  fi
  for attempt in 1 2 3; do
    local ports=()
    if [ -n "${ARCADEDB_BOLT_PORT:-}" ] && [ -n "${ARCADEDB_HTTP_PORT:-}" ]; then
      # Pinned ports (a restart that clients must find at the same address).
      ports=("$ARCADEDB_BOLT_PORT" "$ARCADEDB_HTTP_PORT")
    else
      mapfile -t ports < <(free_ports 2)
    fi
    bolt_port="${ports[0]}"
    http_port="${ports[1]}"
    {
      echo "==== $(date -u +%FT%TZ) start attempt $attempt: bolt 127.0.0.1:$bolt_port, http 127.0.0.1:$http_port"
    } >>"$dir/server.log"
    pid="$(launch "$dir" "$bolt_port" "$http_port")"
    local deadline=$((SECONDS + timeout)) ready="" died=""
    while [ $SECONDS -lt $deadline ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        died=1
        break
      fi
      if bolt_handshake_ok "$bolt_port" && bolt_query_ok "$bolt_port" "$password" &&
        http_query_ok "$http_port" "$password"; then
        ready=1
        break
      fi
      sleep 0.5
    done
    [ -n "$ready" ] && break
    if [ -n "$died" ] && tail -n 200 "$dir/server.log" | grep -ciE 'address already in use|BindException' >/dev/null; then
      echo "arcadedb: port taken meanwhile, retrying with other ports" >&2
      continue
    fi
    if [ -z "$died" ]; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "arcadedb: server in $dir not ready after ${timeout}s; last lines of $dir/server.log:" >&2
    else
      echo "arcadedb: server in $dir exited during startup; last lines of $dir/server.log:" >&2
    fi
    tail -n 40 "$dir/server.log" >&2
    exit 1
  done
  [ -n "$ready" ] || die "could not start the server in $dir (ports kept being taken); see $dir/server.log"

  if [ -n "${ARCADEDB_WATCH_PID:-}" ]; then
    stop_when_gone "$ARCADEDB_WATCH_PID" "$pid" "${ARCADEDB_STOP_TIMEOUT:-30}"
  fi

  local envfile="$dir/env"
  umask 077
  cat >"$envfile.tmp" <<EOF
ARCADEDB_BOLT_URI=bolt://127.0.0.1:$bolt_port
ARCADEDB_USER=root
ARCADEDB_PASSWORD=$password
ARCADEDB_DATABASE=$DATABASE
ARCADEDB_PID=$pid
ARCADEDB_HTTP_PORT=$http_port
EOF
  mv "$envfile.tmp" "$envfile"
  cat "$envfile"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  local dir="$1" pid
  pid="$(read_env_pid "$dir" || true)"
  if [ -z "$pid" ]; then
    echo "arcadedb: no server recorded in $dir/env" >&2
    return 0
  fi
  if ! is_our_server "$pid"; then
    echo "arcadedb: server $pid from $dir is not running" >&2
    return 0
  fi
  local timeout="${ARCADEDB_STOP_TIMEOUT:-30}"
  stop_pid "$pid" "$timeout" ||
    echo "arcadedb: server $pid did not stop within ${timeout}s; killed it" >&2
  echo "arcadedb: stopped server $pid" >&2
}

cmd_create_db() {
  [ $# -eq 2 ] || usage
  local dir="$1" name="$2"
  [[ "$name" =~ ^[A-Za-z][A-Za-z0-9_]*$ ]] || die "database name must be letters, digits and _: $name"
  [ -f "$dir/env" ] || die "no server recorded in $dir/env"
  local port password
  port="$(sed -n 's/^ARCADEDB_HTTP_PORT=//p' "$dir/env")"
  password="$(sed -n 's/^ARCADEDB_PASSWORD=//p' "$dir/env")"
  curl -fsS --max-time 60 -u "root:$password" -H 'Content-Type: application/json' \
    -d "{\"command\":\"create database $name\"}" \
    "http://127.0.0.1:$port/api/v1/server" >/dev/null ||
    die "the server in $dir refused to create database $name"
}

[ $# -ge 1 ] || usage
cmd="$1"
shift
case "$cmd" in
  install) [ $# -eq 0 ] || usage; cmd_install ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  create-db) cmd_create_db "$@" ;;
  -h | --help | help) usage 0 ;;
  *) usage ;;
esac
