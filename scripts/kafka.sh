#!/usr/bin/env bash
# Runs a throwaway Apache Kafka 4 broker (KRaft, single node) for the Kafka ingest and
# change-feed tests.
#
#   scripts/kafka.sh install     copies the broker's jars from Maven Central (kafka_2.13,
#                                pinned in scripts/kafka/pom.xml) into .cache/kafka/lib and
#                                compiles scripts/kafka/KafkaTestServer.java (no-op when
#                                already there); needs mvn and a JDK 17+
#   scripts/kafka.sh start DIR   starts a broker bound to 127.0.0.1 only, on a free port,
#                                SASL_PLAINTEXT with mechanism PLAIN, user idgraph with a
#                                fresh random password, data under DIR/data, log in
#                                DIR/server.log; waits until an authenticated client sees
#                                the cluster; writes DIR/env (shell lines, mode 600, see
#                                below) and prints the same lines
#   scripts/kafka.sh stop DIR    stops the broker started in DIR (TERM, then KILL)
#
# DIR/env:
#   KAFKA_BROKERS=127.0.0.1:PORT  KAFKA_USER=idgraph  KAFKA_PASSWORD=...  KAFKA_PID=...
#
# Environment knobs (all optional):
#   KAFKA_CACHE_DIR      where the jars go (default: <repo>/.cache/kafka)
#   KAFKA_HEAP           JVM -Xmx (default: 512m)
#   KAFKA_START_TIMEOUT  seconds to wait for the broker to be ready (default: 240)
#   KAFKA_STOP_TIMEOUT   seconds to wait after TERM before KILL (default: 30)
#   KAFKA_WATCH_PID      if set, a watcher stops the broker once that process is gone
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JS_NAME=kafka
JS_PREFIX=KAFKA
JS_MAIN=KafkaTestServer
JS_SRC="$repo_root/scripts/kafka"
JS_HEAP=512m
. "$repo_root/scripts/lib/java_server.sh"

js_ready() { tcp_open "$1"; }
js_env() { printf 'KAFKA_BROKERS=127.0.0.1:%s\nKAFKA_USER=idgraph\n' "$1"; }

js_main "$@"
