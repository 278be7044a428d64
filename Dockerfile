# The inlet image the manifests in deploy/ name: the `inlet` binary (release build, all
# features) on Debian 12 slim, run as an unprivileged user, the CLI as the entrypoint.
#
#   docker build -t registry.example/inlet:0.1.0 .
#   docker run --rm -v "$PWD/examples/quickstart:/project" -v "$PWD/lake:/lake" \
#     registry.example/inlet:0.1.0 --project /project/inlet.toml sync quickstart
#
# Both base images are arguments, for registries that mirror them under other names (and
# for machines with no registry at all: see "The container image" in the README).
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
# ring and zstd compile C; the Debian Rust images carry gcc, a bare toolchain may not.
RUN command -v cc >/dev/null || (apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*)
WORKDIR /src
COPY . .
# `--build-arg FEATURES="--no-default-features --features s3"` leaves parts out (see
# "Building a smaller inlet" in the README).
ARG FEATURES=""
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p inlet-cli ${FEATURES} \
    && install -D -m 0755 target/release/inlet /out/inlet

FROM ${RUNTIME_IMAGE}
# CA roots for S3, Glue and the SaaS APIs; nothing else is installed.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 inlet \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin inlet
COPY --from=build /out/inlet /usr/local/bin/inlet
# The manifests mount the project (inlet.toml, and plugins/ beside it) at /etc/inlet and
# a writable /tmp; the root filesystem can stay read-only.
WORKDIR /etc/inlet
USER 10001:10001
ENV HOME=/tmp
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/inlet"]
CMD ["--help"]
