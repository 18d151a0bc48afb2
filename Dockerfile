# syntax=docker/dockerfile:1
#
# idgraph server image: `docker build -t idgraph .`, or `docker compose up --build` with the
# repository's docker-compose.yml (Neo4j + idgraph on the Bolt graph store).
#
# The image runs `idgraph serve` on 0.0.0.0:8080 with its data directory in the /data volume.
# With the embedded store /data holds everything; with the Bolt store (graph.store = "bolt")
# it holds the RocksDB profile cache and the search index, so keep it on a volume either way.

# ---- build ------------------------------------------------------------------------------
# Cargo.toml says rust-version 1.85, but the locked dependencies (actix-web 4.18, ...) need
# Rust 1.89 or newer.
FROM rust:1.93-bookworm AS builder

# libclang-dev: bindgen for the rocksdb crate; g++/make: RocksDB's C++; cmake: librdkafka
# (Kafka); nodejs/npm: the web console's npm packages (build.rs refuses to build without
# console/node_modules/cytoscape).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libclang-dev g++ make cmake libssl-dev pkg-config nodejs npm \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The console's packages first, so source changes do not re-run npm. Only the runtime
# dependency (Cytoscape.js, bundled into the binary) is needed; the browser-test
# devDependencies are not.
COPY console/package.json console/package-lock.json console/
RUN cd console && npm ci --omit=dev --no-audit --no-fund

COPY . .

# The cargo registry and target/ are BuildKit cache mounts: a rebuild after a source change
# does not recompile RocksDB (the first build does, which takes a while). The binary is
# copied out of the cache mount in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idgraph \
 && install -m 0755 target/release/idgraph /usr/local/bin/idgraph

# ---- runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates: the system roots that verify bolt+s:// / neo4j+s:// servers (Neptune);
# curl: health checks; libstdc++6: RocksDB's C++ runtime.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl libstdc++6 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 idgraph \
 && useradd --system --uid 10001 --gid idgraph --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin idgraph \
 && mkdir -p /data \
 && chown idgraph:idgraph /data

COPY --from=builder /usr/local/bin/idgraph /usr/local/bin/idgraph

ENV IDGRAPH_SERVER__BIND=0.0.0.0:8080 \
    IDGRAPH_STORAGE__DATA_DIR=/data

USER idgraph
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080

# idgraph stops cleanly on SIGTERM (docker stop); allow it the time to drain (see
# stop_grace_period in docker-compose.yml).
ENTRYPOINT ["idgraph"]
CMD ["serve"]
