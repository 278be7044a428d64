#!/usr/bin/env bash
# Lands N (default 100,000) real-shaped GitHub issues (about 6.5 KB each: nested user,
# labels, assignees, milestone, reactions), served page by page (100 per page, Link
# headers) by a local replay server, through the `github` connector: JSON -> Arrow ->
# Parquet (zstd). Reports records per CPU-second of the inlet process and its peak RSS
# (GNU time -v), then the HTTP layer alone: small pages per second against the same server.
#
#   bench/github_issues.sh [N]          PROFILE=release|dev (default release)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-100000}"
profile="${PROFILE:-release}"
work="${BENCH_DIR:-/tmp/inlet-bench-github}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
target="${CARGO_TARGET_DIR:-target}"
if [ "$profile" = release ]; then flag=--release; dir=release; else flag=; dir=debug; fi
cargo build $flag -q --bin inlet
cargo build $flag -q -p inlet-connector-rest --example github_replay
cargo build $flag -q -p inlet-http --example pages

rm -rf "$work"; mkdir -p "$work"
"$target/$dir/examples/github_replay" "$n" "$work/addr" &
server=$!; trap 'kill $server 2>/dev/null' EXIT
for _ in $(seq 100); do [ -s "$work/addr" ] && break; sleep 0.05; done
base=$(cat "$work/addr")

cat > "$work/inlet.toml" <<TOML
version = 1
[destinations.local]
url = "file://./lake"
[connections.bench]
connector = "github"
[connections.bench.config]
token = "bench-token-not-secret"
repos = ["bench/big"]
base_url = "$base"
[connections.bench.streams.issues]
TOML
/usr/bin/time -v "$target/$dir/inlet" --project "$work/inlet.toml" --json sync bench > "$work/run.json" 2> "$work/time.txt"
rows=$(python3 -c "import json; print(json.load(open('$work/run.json'))['streams']['issues']['rows'])")
bytes_in=$(python3 -c "
import json, urllib.request
body = urllib.request.urlopen('$base/repos/bench/big/issues?per_page=100&page=1').read()
print(len(body) // 100)")
wall=$(grep -a 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
rss_kb=$(grep -a 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
user=$(grep -a 'User time' "$work/time.txt" | awk '{print $NF}')
sys=$(grep -a 'System time' "$work/time.txt" | awk '{print $NF}')
out_bytes=$(du -sb "$work/lake/bench" | cut -f1)
python3 - <<PY
wall = "$wall".split(":"); secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
cpu = $user + $sys
print(f"github issues: {$rows:,} records of ~{$bytes_in:,} B JSON -> {$out_bytes/2**20:.0f} MiB Parquet (zstd)")
print(f"wall {secs:.1f} s ({$rows/secs:,.0f} records/s), CPU {cpu:.2f} s (user $user, sys $sys): {$rows/cpu:,.0f} records per CPU-second")
print(f"peak RSS {$rss_kb/1024:.0f} MiB")
PY

pages=${PAGES:-20000}
/usr/bin/time -v "$target/$dir/examples/pages" "$base" "$pages" > "$work/pages.txt" 2> "$work/pages_time.txt"
cat "$work/pages.txt"
puser=$(grep -a 'User time' "$work/pages_time.txt" | awk '{print $NF}')
psys=$(grep -a 'System time' "$work/pages_time.txt" | awk '{print $NF}')
python3 -c "cpu = $puser + $psys; print(f'http layer: CPU {cpu:.2f} s for $pages pages ({$pages/cpu:,.0f} pages per CPU-second of the client)')"
