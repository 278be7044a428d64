#!/usr/bin/env bash
# Rebuild the plugin fixtures from source (connectors/plugins/*/plugin.wasm) and, with
# --check, re-run the plugin tests against the fresh builds instead of the kept ones.
#
# Rust plugins need the wasm32-unknown-unknown target (tried with rustup; without it the
# kept fixtures stay as they are and the script says so). The wasip2 red-team variant (a
# Rust component importing WASI, which the host links locked down) needs wasm32-wasip2.
# Python plugins (connectors/plugins/*-py) are built by `inlet plugin build`, which
# installs componentize-py into inlet's cache from PyPI; where that cannot be installed
# the kept Python fixtures stay as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PLUGIN_TARGET=${PLUGIN_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/plugins}
OUT=${PLUGIN_OUT:-$ROOT/connectors/plugins}
rebuilt_rust=0
rebuilt_python=0

# TRY_RUSTUP=0 (scripts/test) uses the target only where it is installed already.
if rustup target list --installed | grep -q wasm32-unknown-unknown \
  || { [ "${TRY_RUSTUP:-1}" = 1 ] && timeout 300 rustup target add wasm32-unknown-unknown; }; then
  (cd connectors/plugins && CARGO_TARGET_DIR=$PLUGIN_TARGET cargo build --locked --release --target wasm32-unknown-unknown)
  for name in hackernews redteam; do
    mkdir -p "$OUT/$name"
    [ "$OUT" = "$ROOT/connectors/plugins" ] || cp "connectors/plugins/$name/plugin.toml" "$OUT/$name/"
    # The test profile: the build scripts/test makes next anyway, so nothing is built twice.
    cargo run --quiet --profile test -p inlet-wasm --example componentize -- \
      "$PLUGIN_TARGET/wasm32-unknown-unknown/release/inlet_plugin_$name.wasm" "$OUT/$name/plugin.wasm"
    echo "build-plugins: $OUT/$name/plugin.wasm ($(stat -c %s "$OUT/$name/plugin.wasm") bytes)"
  done
  if rustup target list --installed | grep -q wasm32-wasip2 \
    || { [ "${TRY_RUSTUP:-1}" = 1 ] && timeout 300 rustup target add wasm32-wasip2; }; then
    (cd connectors/plugins && CARGO_TARGET_DIR=$PLUGIN_TARGET cargo build --locked --release --target wasm32-wasip2 -p inlet-plugin-redteam)
    mkdir -p "$OUT/redteam/wasi"
    cp "$PLUGIN_TARGET/wasm32-wasip2/release/inlet_plugin_redteam.wasm" "$OUT/redteam/wasi/plugin.wasm"
  fi
  rebuilt_rust=1
else
  echo "build-plugins: no wasm32-unknown-unknown target; keeping the built Rust fixtures" >&2
  if [ "$OUT" != "$ROOT/connectors/plugins" ]; then
    for name in hackernews redteam; do
      mkdir -p "$OUT/$name" && cp -r "connectors/plugins/$name/." "$OUT/$name/"
    done
  fi
fi

# Python plugins, with the inlet CLI of this tree: the binary the test suite builds (the
# same command as scripts/test's, so the suite after this builds nothing again).
cargo test --workspace --locked --no-run --quiet
inlet() { "${CARGO_TARGET_DIR:-$ROOT/target}/debug/inlet" "$@"; }
for dir in connectors/plugins/*-py; do
  name=$(basename "$dir")
  dest="$OUT/$name"
  if [ "$OUT" != "$ROOT/connectors/plugins" ]; then
    rm -rf "$dest" && mkdir -p "$dest"
    cp "$dir"/*.py "$dir/plugin.toml" "$dest/"
  fi
  if inlet plugin build "$dest"; then
    echo "build-plugins: $dest/plugin.wasm ($(stat -c %s "$dest/plugin.wasm") bytes)"
    rebuilt_python=1
  else
    echo "build-plugins: cannot build $name (componentize-py could not be installed?); keeping the built fixture" >&2
    [ "$OUT" = "$ROOT/connectors/plugins" ] || cp "$dir/plugin.wasm" "$dest/"
  fi
  rm -rf "$dest/.inlet" "$dest/__pycache__"
done

if [ "${1:-}" = "--check" ] && [ $((rebuilt_rust + rebuilt_python)) -gt 0 ]; then
  # --workspace: the features of the whole suite, so nothing is compiled a second time.
  INLET_PLUGIN_FIXTURES=$OUT cargo test --workspace --locked --test sandbox --test python --test plugins
fi
