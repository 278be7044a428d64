#!/usr/bin/env bash
# WebAssembly plugin benchmark: the Hacker News plugin through the host, in Rust and in
# Python (the port, CPython inside the component), vs the same record logic compiled
# natively, all fetching N items over loopback HTTP (a connection per item), plus compile
# / cached-load / instantiate times and the process's peak RSS. Release builds.
#
#   bench/plugins.sh [N]      (default 5000)
#   PROFILE=test bench/plugins.sh   (the test profile's build: dependencies at opt-level 2)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -p inlet-wasm --example bench >/dev/null
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
dir=$PROFILE
[ "$PROFILE" = test ] && dir=debug
for plugin in hackernews hackernews-py; do
  echo "== host + plugin (wasm): $plugin"
  BENCH_PLUGIN_DIR="$PWD/connectors/plugins/$plugin" "$TARGET/$dir/examples/bench" "$N"
done
if rustup target list --installed 2>/dev/null | grep -q . && (cd connectors/plugins && cargo build --release --example native_bench >/dev/null 2>&1); then
  PTARGET=$(cd connectors/plugins && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
  echo "== native build of the same logic"
  "$PTARGET/release/examples/native_bench" "$N"
fi
