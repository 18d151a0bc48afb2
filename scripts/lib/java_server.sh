# The life cycle every real test server on the JVM shares (neo4j.sh, gremlin.sh): jars
# from Maven Central by `mvn dependency:copy-dependencies`, a small Java launcher compiled
# against them, started on a free loopback port with a fresh random password, stopped by
# TERM then KILL. Sourced, never run. The sourcing script sets:
#
#   JS_NAME     short name for messages and the cache directory (neo4j, gremlin)
#   JS_PREFIX   prefix of the knobs and of the DIR/env lines (NEO4J, GREMLIN)
#   JS_MAIN     the launcher's Java class; its source is $JS_SRC/$JS_MAIN.java
#   JS_SRC      directory holding pom.xml and the launcher
#   JS_HEAP     default -Xmx
#
# and defines:
#
#   js_ready PORT       succeeds once the server answers on 127.0.0.1:PORT
#   js_env PORT         prints the DIR/env lines naming the server's address
#
# The launcher is run as `java ... $JS_MAIN PORT DIR` with the password in the
# environment variable ${JS_PREFIX}_PASSWORD, prints a line starting with "ready " once it
# serves, and must exit on TERM.

# free_ports, stop_when_gone, recorded_pid, runs_as, stop_pid
. "$(dirname "${BASH_SOURCE[0]}")/servers.sh"

js_cache_dir() {
  local var="${JS_PREFIX}_CACHE_DIR"
  echo "${!var:-$repo_root/.cache/$JS_NAME}"
}

js_knob() {
  local var="${JS_PREFIX}_$1"
  echo "${!var:-$2}"
}

js_die() {
  echo "$JS_NAME: $*" >&2
  exit 1
}

js_usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit "${1:-2}"
}

js_install() {
  local cache_dir stamp
  cache_dir="$(js_cache_dir)"
  stamp="$cache_dir/.installed-$(cat "$JS_SRC/pom.xml" "$JS_SRC/$JS_MAIN.java" | sha256sum | cut -c1-16)"
  [ -f "$stamp" ] && return 0
  command -v mvn >/dev/null 2>&1 || js_die "mvn not found (scripts/install-deps.sh installs maven)"
  command -v javac >/dev/null 2>&1 || js_die "javac not found (scripts/install-deps.sh installs a JDK)"
  mkdir -p "$cache_dir"
  [ -f "$cache_dir/.gitignore" ] || echo '*' >"$cache_dir/.gitignore"
  exec 9>"$cache_dir/.install.lock"
  flock 9
  if [ -f "$stamp" ]; then
    exec 9>&-
    return 0
  fi
  echo "$JS_NAME: copying the server's jars from Maven Central into $cache_dir/lib" >&2
  rm -rf "$cache_dir/lib" "$cache_dir/classes" "$cache_dir"/.installed-*
  mvn -q -B -f "$JS_SRC/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$cache_dir/lib" >&2 || js_die "mvn could not fetch the server's jars (is Maven Central reachable?)"
  mkdir -p "$cache_dir/classes"
  javac -cp "$cache_dir/lib/*" -d "$cache_dir/classes" "$JS_SRC/$JS_MAIN.java" >&2 ||
    js_die "could not compile $JS_MAIN.java"
  touch "$stamp"
  exec 9>&-
  echo "$JS_NAME: installed" >&2
}

js_env_pid() { recorded_pid "$1" "$JS_PREFIX"; }

js_is_ours() { runs_as "$1" "$JS_MAIN"; }

js_start() {
  [ $# -eq 1 ] || js_usage
  command -v setsid >/dev/null 2>&1 || js_die "setsid not found (util-linux)"
  mkdir -p "$1"
  local dir cache_dir
  dir="$(cd "$1" && pwd)"
  cache_dir="$(js_cache_dir)"
  if js_is_ours "$(js_env_pid "$dir" || true)"; then
    js_die "a server started in $dir is already running; run: $0 stop $dir"
  fi
  rm -f "$dir/env"
  js_install
  local timeout port pid ready="" attempt password
  timeout="$(js_knob START_TIMEOUT 240)"
  password="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
  for attempt in 1 2 3; do
    port="$(free_ports 1)"
    echo "==== $(date -u +%FT%TZ) start attempt $attempt: 127.0.0.1:$port" >>"$dir/server.log"
    mkdir -p "$dir/data"
    (cd "$dir" && export "${JS_PREFIX}_PASSWORD=$password" &&
      exec setsid java "-Xmx$(js_knob HEAP "$JS_HEAP")" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
        -cp "$cache_dir/classes:$cache_dir/lib/*" "$JS_MAIN" "$port" "$dir/data" \
        </dev/null >>"$dir/server.log" 2>&1) &
    pid=$!
    local deadline=$((SECONDS + timeout)) died=""
    while [ $SECONDS -lt $deadline ]; do
      if ! kill -0 "$pid" 2>/dev/null; then
        died=1
        break
      fi
      if grep -q '^ready ' "$dir/server.log" && js_ready "$port"; then
        ready=1
        break
      fi
      sleep 0.5
    done
    [ -n "$ready" ] && break
    if [ -n "$died" ] && tail -n 200 "$dir/server.log" | grep -qiE 'address already in use|BindException'; then
      echo "$JS_NAME: port taken meanwhile, retrying" >&2
      continue
    fi
    [ -z "$died" ] && kill -KILL "$pid" 2>/dev/null
    echo "$JS_NAME: server in $dir not ready (exited or timed out after ${timeout}s); last lines of $dir/server.log:" >&2
    tail -n 40 "$dir/server.log" >&2
    exit 1
  done
  [ -n "$ready" ] || js_die "could not start the server in $dir (ports kept being taken)"
  local watch
  watch="$(js_knob WATCH_PID "")"
  if [ -n "$watch" ]; then
    stop_when_gone "$watch" "$pid" "$(js_knob STOP_TIMEOUT 30)"
  fi
  (
    umask 077
    js_env "$port"
    printf '%s_PASSWORD=%s\n%s_PID=%s\n' "$JS_PREFIX" "$password" "$JS_PREFIX" "$pid"
  ) >"$dir/env.tmp"
  mv "$dir/env.tmp" "$dir/env"
  cat "$dir/env"
}

js_stop() {
  [ $# -eq 1 ] || js_usage
  local pid
  pid="$(js_env_pid "$1" || true)"
  if ! js_is_ours "$pid"; then
    echo "$JS_NAME: no running server recorded in $1/env" >&2
    return 0
  fi
  stop_pid "$pid" "$(js_knob STOP_TIMEOUT 30)" || true
  echo "$JS_NAME: stopped server $pid" >&2
}

js_main() {
  [ $# -ge 1 ] || js_usage
  local cmd="$1"
  shift
  case "$cmd" in
    install) [ $# -eq 0 ] || js_usage; js_install ;;
    start) js_start "$@" ;;
    stop) js_stop "$@" ;;
    -h | --help | help) js_usage 0 ;;
    *) js_usage ;;
  esac
}
