#!/usr/bin/env bash
# Runs a throwaway Neo4j 5 Community server (Bolt/Cypher) for the graph-store tests.
#
#   scripts/neo4j.sh install     copies the server's jars from Maven Central (neo4j-harness,
#                                pinned in scripts/neo4j/pom.xml) into .cache/neo4j/lib and
#                                compiles scripts/neo4j/Neo4jTestServer.java (no-op when
#                                already there); needs mvn and a JDK 17+
#   scripts/neo4j.sh start DIR   starts a server bound to 127.0.0.1 only, on a free port,
#                                user neo4j with a fresh random password, data under
#                                DIR/data, log in DIR/server.log; waits until Bolt answers;
#                                writes DIR/env (shell lines, mode 600, see below) and
#                                prints the same lines
#   scripts/neo4j.sh stop DIR    stops the server started in DIR (TERM, then KILL)
#
# DIR/env:
#   NEO4J_BOLT_URI=bolt://127.0.0.1:PORT  NEO4J_USER=neo4j  NEO4J_PASSWORD=...  NEO4J_PID=...
#
# Environment knobs (all optional):
#   NEO4J_CACHE_DIR      where the jars go (default: <repo>/.cache/neo4j)
#   NEO4J_HEAP           JVM -Xmx (default: 768m)
#   NEO4J_START_TIMEOUT  seconds to wait for the server to be ready (default: 240)
#   NEO4J_STOP_TIMEOUT   seconds to wait after TERM before KILL (default: 30)
#   NEO4J_WATCH_PID      if set, a watcher stops the server once that process is gone
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JS_NAME=neo4j
JS_PREFIX=NEO4J
JS_MAIN=Neo4jTestServer
JS_SRC="$repo_root/scripts/neo4j"
JS_HEAP=768m
. "$repo_root/scripts/lib/java_server.sh"

js_ready() { bolt_handshake_ok "$1"; }
js_env() { printf 'NEO4J_BOLT_URI=bolt://127.0.0.1:%s\nNEO4J_USER=neo4j\n' "$1"; }

js_main "$@"
