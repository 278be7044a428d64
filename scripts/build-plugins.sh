#!/usr/bin/env bash
# Rebuild the plugin fixtures from source (connectors/plugins/*/plugin.wasm) and, with
# --check, re-run the plugin tests against the fresh builds instead of the kept ones.
#
# Needs the wasm32-unknown-unknown target (tried with rustup; without it the kept
# fixtures stay as they are and the script says so). The wasip2 red-team variant (a
# component importing WASI, which the host must refuse) needs wasm32-wasip2.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PLUGIN_TARGET=${PLUGIN_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/plugins}
OUT=${PLUGIN_OUT:-$ROOT/connectors/plugins}

if ! rustup target list --installed | grep -q wasm32-unknown-unknown; then
  timeout 300 rustup target add wasm32-unknown-unknown || {
    echo "build-plugins: no wasm32-unknown-unknown target; keeping the built fixtures" >&2
    exit 0
  }
fi
(cd connectors/plugins && CARGO_TARGET_DIR=$PLUGIN_TARGET cargo build --locked --release --target wasm32-unknown-unknown)
for name in hackernews redteam; do
  mkdir -p "$OUT/$name"
  [ "$OUT" = "$ROOT/connectors/plugins" ] || cp "connectors/plugins/$name/plugin.toml" "$OUT/$name/"
  # The test profile: the build scripts/test makes next anyway, so nothing is built twice.
  cargo run --quiet --profile test -p inlet-wasm --example componentize -- \
    "$PLUGIN_TARGET/wasm32-unknown-unknown/release/inlet_plugin_$name.wasm" "$OUT/$name/plugin.wasm"
  echo "build-plugins: $OUT/$name/plugin.wasm ($(stat -c %s "$OUT/$name/plugin.wasm") bytes)"
done
if rustup target list --installed | grep -q wasm32-wasip2 || timeout 300 rustup target add wasm32-wasip2; then
  (cd connectors/plugins && CARGO_TARGET_DIR=$PLUGIN_TARGET cargo build --locked --release --target wasm32-wasip2 -p inlet-plugin-redteam)
  mkdir -p "$OUT/redteam/wasi"
  cp "$PLUGIN_TARGET/wasm32-wasip2/release/inlet_plugin_redteam.wasm" "$OUT/redteam/wasi/plugin.wasm"
fi
if [ "${1:-}" = "--check" ]; then
  INLET_PLUGIN_FIXTURES=$OUT cargo test -p inlet-wasm --test sandbox
fi
