# syntax=docker/dockerfile:1
#
# ocimirror container image.
#
#   docker build -t ocimirror .
#   docker run -d --name ocimirror -p 9110:9110 \
#     -v "$PWD/config.toml:/etc/ocimirror/config.toml:ro" \
#     -v ocimirror-state:/var/lib/ocimirror ocimirror
#
# The build needs no database (sqlx queries are checked at run time) and no
# network beyond crates.io. BuildKit cache mounts keep the cargo registry
# and target dir between builds, so a source change does not rebuild every
# dependency.

ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --locked --release --bin ocimirror \
 && install -D -m 0755 target/release/ocimirror /out/ocimirror

FROM debian:bookworm-slim
ARG VERSION=dev
# ca-certificates: TLS to registries. curl: the HEALTHCHECK below (about
# 0.5 MB with its libraries; wget would do too, but curl's -f turns any
# non-2xx status into a failure without extra flags).
# DL3008: versions are not pinned: bookworm's security updates replace the
# pinned version in the archive and the build would break; the suite is fixed
# by the base image tag.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# A fixed UID/GID so volume ownership is predictable on the host and in
# Kubernetes (runAsUser: 10001, fsGroup: 10001).
RUN groupadd --system --gid 10001 ocimirror \
 && useradd --system --uid 10001 --gid ocimirror --home-dir /var/lib/ocimirror \
      --shell /usr/sbin/nologin ocimirror \
 && install -d -o ocimirror -g ocimirror -m 0750 /etc/ocimirror /var/lib/ocimirror

COPY --from=builder /out/ocimirror /usr/local/bin/ocimirror

# The metrics and health listener defaults to 127.0.0.1:9110, unreachable
# from outside a container: listen on every interface here. The environment
# overrides server.listen from the config file.
ENV OCIMIRROR_SERVER__LISTEN=0.0.0.0:9110
# A relative database path (the default "ocimirror.db") lands in the volume.
WORKDIR /var/lib/ocimirror
VOLUME ["/etc/ocimirror", "/var/lib/ocimirror"]
EXPOSE 9110
# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001

# /healthz answers 200 while the process serves; the port follows
# OCIMIRROR_SERVER__LISTEN when it is changed at `docker run`.
# DL3025: the shell form is needed to expand that variable.
# hadolint ignore=DL3025
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD curl -fsS --max-time 4 "http://127.0.0.1:${OCIMIRROR_SERVER__LISTEN##*:}/healthz" >/dev/null || exit 1

LABEL org.opencontainers.image.title="ocimirror" \
      org.opencontainers.image.description="Mirrors OCI images between registries together with their referrers (signatures, SBOMs, attestations)." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

ENTRYPOINT ["ocimirror"]
CMD ["serve", "--config", "/etc/ocimirror/config.toml"]
