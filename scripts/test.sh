#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test (unit, property, integration
# over HTTP, restart and crash tests, schema agreement, bench smoke runs, the graph-store
# conformance suite on the embedded store, on real ArcadeDB and Neo4j servers over Bolt and
# on a real Gremlin Server; Kafka ingest and the change feed on a real Kafka broker).
# Installs what it needs first. One cargo profile (dev) builds everything once.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
# The real ArcadeDB server (PyPI arcadedb-jvm: jars + a bundled Java runtime) the Bolt
# graph-store tests run against; the tests start and stop it themselves.
./scripts/arcadedb.sh install
# The real Neo4j 5 Community server (neo4j-harness jars from Maven Central, by mvn).
./scripts/neo4j.sh install
# The real Apache TinkerPop Gremlin Server (gremlin-server and TinkerGraph jars from Maven
# Central, by mvn).
./scripts/gremlin.sh install
# The real Apache Kafka 4 broker (KRaft; kafka_2.13 jars from Maven Central, by mvn).
./scripts/kafka.sh install
# The official Segment (Node, Python) and RudderStack (Node) SDKs the Segment API tests use.
./scripts/segment-sdks.sh
# local-kms (the AWS KMS API; Go module proxy) for the KMS key-encryption-key test.
./scripts/local-kms.sh install
# Schemathesis (PyPI, in a virtualenv) for the OpenAPI conformance test.
./scripts/schemathesis.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --all-targets --locked --no-fail-fast
