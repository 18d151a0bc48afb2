#!/usr/bin/env bash
# Installs what building and testing idgraph needs on a fresh Debian machine:
# libclang (bindgen for the rocksdb crate), a C++ compiler, wrk (the HTTP load benchmark),
# and for the web console Node.js + npm, the console's npm packages (Cytoscape.js, bundled
# into the binary, and playwright-core for the browser tests) and Debian's chromium (the
# browser tests drive it), Maven with a JDK for the Neo4j and Gremlin test servers, and
# OpenSSL's headers (the gremlin-client crate's TLS is native-tls; librdkafka's TLS), cmake
# (librdkafka's build) and Maven with a JDK for the Kafka test broker too, and Go for the
# AWS KMS test server (scripts/local-kms.sh).
# Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

console_dir=console
# npm ci when the console's packages are missing or older than the lock file.
needs_npm_ci() {
  [ ! -d "$console_dir/node_modules" ] || [ "$console_dir/package-lock.json" -nt "$console_dir/node_modules" ]
}

need=()
if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
  need+=(libclang-dev)
fi
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# The rdkafka crate builds librdkafka (Kafka ingest and the feed on Kafka) with cmake.
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v node >/dev/null 2>&1 || need+=(nodejs)
if needs_npm_ci && ! command -v npm >/dev/null 2>&1; then need+=(npm); fi
[ -x /usr/bin/chromium ] || need+=(chromium)
# scripts/arcadedb.sh (the graph-database test server) waits on it with curl and python3.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
# `idgraph bench-http` (and its smoke run in the test suite) drives the server with wrk.
command -v wrk >/dev/null 2>&1 || need+=(wrk)
# scripts/neo4j.sh and scripts/gremlin.sh fetch the test servers' jars with Maven and
# compile their launchers with a JDK (17+).
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
# The Bolt-over-TLS test makes a throwaway CA and server certificate with openssl.
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# openssl-sys (under gremlin-client's native-tls) links OpenSSL, found by pkg-config.
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# scripts/local-kms.sh builds the KMS test server (local-kms, from the Go module proxy).
command -v go >/dev/null 2>&1 || need+=(golang-go)

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      echo "install-deps: need root (or sudo) to install: ${need[*]}" >&2; exit 1
    fi
  fi
  echo "install-deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

if needs_npm_ci; then
  echo "install-deps: npm ci in $console_dir/"
  (cd "$console_dir" && npm ci --no-audit --no-fund)
  touch "$console_dir/node_modules"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "install-deps: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi
