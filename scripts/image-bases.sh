#!/usr/bin/env bash
# Makes the Dockerfile's two base images locally, for a machine that reaches Debian's
# package mirror but no container registry:
#
#   localhost/debian:bookworm-slim        Debian 12 (debootstrap, minbase)
#   localhost/rust:1.95-slim-bookworm     the same, with gcc and this machine's Rust toolchain
#
# then build the image with them:
#
#   bash scripts/image-bases.sh
#   podman build --network host --build-arg RUST_IMAGE=localhost/rust:1.95-slim-bookworm \
#     --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-slim -t registry.example/inlet:0.1.0 .
#
# Needs root, debootstrap and podman (Debian's packages). In a sandbox without cgroup
# support, PODMAN_BUILD_OPTS="--isolation chroot" runs the build steps in a chroot (and the
# image build above takes the same option). Where a registry is reachable the
# Dockerfile's defaults (docker.io/library/rust and debian) are the same images.
set -euo pipefail
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
work="${IMAGE_WORK:-$(mktemp -d)}"
podman=(podman ${PODMAN_OPTS:-})

rootfs="$work/rootfs"
if [ ! -x "$rootfs/bin/sh" ]; then
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror"
fi
# What debian:bookworm-slim leaves out too: apt lists, docs, man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar -C "$rootfs" -c . | "${podman[@]}" import \
  --change 'CMD ["bash"]' - localhost/debian:bookworm-slim

# The builder: gcc for ring and zstd, and the Rust toolchain this machine has (the
# workspace's rust-version), laid out as the official rust image lays it out.
toolchain=$(dirname "$(dirname "$(rustup which rustc)")")
version=$("$toolchain/bin/rustc" --version)
echo "image-bases: builder with $version from $toolchain" >&2
ctx="$work/rust"
mkdir -p "$ctx"
tar -C "$toolchain" --exclude=./share/doc -c . > "$ctx/toolchain.tar"
# This machine's own CA certificates (a TLS-inspecting proxy in front of crates.io, say), so
# that cargo in the build stage trusts what the host trusts. Only the builder has them.
mkdir -p "$ctx/ca"
cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
cat > "$ctx/Containerfile" <<'CONTAINERFILE'
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ADD toolchain.tar /usr/local/rust/
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo/bin && rustc --version && cargo --version
CONTAINERFILE
# shellcheck disable=SC2086
"${podman[@]}" build --network host ${PODMAN_BUILD_OPTS:-} -t localhost/rust:1.95-slim-bookworm "$ctx"
rm -f "$ctx/toolchain.tar"
