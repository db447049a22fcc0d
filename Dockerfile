# PingPilot's container image: the relay built in a Rust image, run from Debian slim as a
# non-root user, with its SQLite database in the /data volume.
#
#   docker build -t pingpilot .
#   podman build --format docker -t pingpilot .    # docker format keeps HEALTHCHECK
#   docker run -d --name pingpilot -p 8080:8080 -v pingpilot-data:/data pingpilot
#   docker exec pingpilot pingpilot account create --name demo
#
# Settings come from the environment (PINGPILOT_<SECTION>__<KEY>, or <ENV NAME>_FILE naming a
# file such as a secret) or from a TOML file named by PINGPILOT_CONFIG; see README.md
# "Configuration" and deploy/compose.yaml. On SIGTERM the relay finishes in-flight work within
# server.shutdown_grace (10 s) and exits 0: give `docker stop` more than that (its default is 10 s).
#
# The build's cache mounts (crates.io downloads, target/) need BuildKit (docker's default builder)
# or buildah/podman; the legacy docker builder (DOCKER_BUILDKIT=0) does not read them.

FROM docker.io/library/rust:1.95-slim-bookworm AS build

# native-tls links OpenSSL; the image already has gcc for the C in libsqlite3-sys and mimalloc.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
# target/ lives in a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,id=pingpilot-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=pingpilot-target,target=/src/target,sharing=locked \
    cargo build --release --locked --bin pingpilot \
    && install -D -m 0755 target/release/pingpilot /out/pingpilot


FROM docker.io/library/debian:bookworm-slim

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pingpilot \
    && useradd --system --uid 10001 --gid pingpilot --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin pingpilot \
    && install -d -o pingpilot -g pingpilot -m 0700 /data

COPY --from=build /out/pingpilot /usr/local/bin/pingpilot

# A named volume starts as a copy of /data here, owned by pingpilot; a bind-mounted directory
# must be writable by uid 10001 (`chown 10001:10001 DIR`).
USER 10001:10001
WORKDIR /data
VOLUME /data

ENV PINGPILOT_SERVER__BIND=0.0.0.0:8080 \
    PINGPILOT_DATABASE__URL=sqlite:///data/pingpilot.db

EXPOSE 8080
STOPSIGNAL SIGTERM
# `pingpilot ready` asks this relay's /readyz (127.0.0.1 on server.bind's port) and exits 0
# only on 200: the database answers and the SQLite file is in place.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["pingpilot", "ready"]

ENTRYPOINT ["pingpilot"]
CMD ["serve"]
