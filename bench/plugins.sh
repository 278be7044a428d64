#!/usr/bin/env bash
# WebAssembly plugin benchmark: the Hacker News plugin through the host vs the same record
# logic compiled natively, both fetching N items over loopback HTTP (a connection per
# item), plus compile / cached-load / instantiate times. Release builds.
#
#   bench/plugins.sh [N]      (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-5000}
cargo build --release -p inlet-wasm --example bench >/dev/null
(cd connectors/plugins && cargo build --release --example native_bench >/dev/null)
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
PTARGET=$(cd connectors/plugins && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys;print(json.load(sys.stdin)["target_directory"])')
echo "== host + plugin (wasm)"
"$TARGET/release/examples/bench" "$N"
echo "== native build of the same logic"
"$PTARGET/release/examples/native_bench" "$N"
