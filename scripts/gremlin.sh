#!/usr/bin/env bash
# Runs a throwaway Apache TinkerPop Gremlin Server (TinkerGraph with transactions) for the
# Gremlin graph-store tests.
#
#   scripts/gremlin.sh install     copies the server's jars from Maven Central (gremlin-server
#                                  and tinkergraph-gremlin, pinned in scripts/gremlin/pom.xml)
#                                  into .cache/gremlin/lib and compiles
#                                  scripts/gremlin/GremlinTestServer.java (no-op when already
#                                  there); needs mvn and a JDK 17+
#   scripts/gremlin.sh start DIR   starts a server bound to 127.0.0.1 only, on a free port,
#                                  user idgraph with a fresh random password (SASL PLAIN),
#                                  log in DIR/server.log; waits until it answers; writes
#                                  DIR/env (shell lines, mode 600, see below) and prints them
#   scripts/gremlin.sh stop DIR    stops the server started in DIR (TERM, then KILL)
#
# DIR/env:
#   GREMLIN_URI=ws://127.0.0.1:PORT/gremlin  GREMLIN_USER=idgraph  GREMLIN_PASSWORD=...
#   GREMLIN_PID=...
#
# Environment knobs (all optional):
#   GREMLIN_CACHE_DIR      where the jars go (default: <repo>/.cache/gremlin)
#   GREMLIN_HEAP           JVM -Xmx (default: 768m)
#   GREMLIN_START_TIMEOUT  seconds to wait for the server to be ready (default: 240)
#   GREMLIN_STOP_TIMEOUT   seconds to wait after TERM before KILL (default: 30)
#   GREMLIN_WATCH_PID      if set, a watcher stops the server once that process is gone
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JS_NAME=gremlin
JS_PREFIX=GREMLIN
JS_MAIN=GremlinTestServer
JS_SRC="$repo_root/scripts/gremlin"
JS_HEAP=768m
. "$repo_root/scripts/lib/java_server.sh"

js_ready() { tcp_open "$1"; }
js_env() { printf 'GREMLIN_URI=ws://127.0.0.1:%s/gremlin\nGREMLIN_USER=idgraph\n' "$1"; }

js_main "$@"
