#!/usr/bin/env bash
# Lands a generated JSON-lines file of SIZE_GB (default 2) through the `files` source and
# reports wall time, throughput and peak RSS (GNU time -v). Memory must stay bounded by
# batch and row-group size, not by input size.
#
#   bench/files_rss.sh [SIZE_GB]        PROFILE=release|dev (default release)
#   LAKE=s3 bench/files_rss.sh 1        the same, landing on a local S3 server (s3s-fs)
set -euo pipefail
cd "$(dirname "$0")/.."
size_gb="${1:-2}"
profile="${PROFILE:-release}"
work="${BENCH_DIR:-/tmp/inlet-bench-files}"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

if [ "$profile" = release ]; then cargo build --release --bin inlet -q; bin="${CARGO_TARGET_DIR:-target}/release/inlet";
else cargo build --bin inlet -q; bin="${CARGO_TARGET_DIR:-target}/debug/inlet"; fi
lake_toml='url = "file://./lake"'
if [ "${LAKE:-local}" = s3 ]; then
  if [ "$profile" = release ]; then cargo build --release -q -p inlet-testkit --example s3_test_server; dir=release;
  else cargo build -q -p inlet-testkit --example s3_test_server; dir=debug; fi
  rm -rf "$work/s3"; mkdir -p "$work/s3"
  "${CARGO_TARGET_DIR:-target}/$dir/examples/s3_test_server" "$work/s3" > "$work/s3.endpoint" &
  server=$!; trap 'kill $server 2>/dev/null' EXIT
  for _ in $(seq 50); do [ -s "$work/s3.endpoint" ] && break; sleep 0.1; done
  lake_toml="url = \"s3://lake/raw\"
endpoint = \"$(cat "$work/s3.endpoint")\"
path_style = true
region = \"us-east-1\"
access_key_id = \"inlet\"
secret_access_key = \"inlet-secret\""
fi

mkdir -p "$work/data/events"
input="$work/data/events/big.jsonl"
want=$(( size_gb * 1024 * 1024 * 1024 ))
if [ ! -f "$input" ] || [ "$(stat -c %s "$input")" -lt "$want" ]; then
  echo "generating $size_gb GB of click events in $input" >&2
  python3 - "$input" "$want" <<'PY'
import sys, json
path, want = sys.argv[1], int(sys.argv[2])
pages = ["/", "/pricing", "/docs/getting-started", "/blog/launch", "/signup", "/checkout"]
with open(path, "w", buffering=1 << 22) as f:
    n = written = 0
    while written < want:
        lines = []
        for _ in range(10000):
            n += 1
            lines.append(json.dumps({"event_id": n, "user_id": n % 100003, "session": f"s-{n // 17:x}",
                "page": pages[n % 6], "ts": f"2026-11-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}Z",
                "duration_ms": (n * 37) % 20000, "device": {"os": ["ios", "android", "linux"][n % 3], "mobile": n % 5 == 0},
                "referrer": None if n % 4 else "https://news.example/item?id=%d" % n}))
        chunk = "\n".join(lines) + "\n"
        f.write(chunk)
        written += len(chunk)
PY
fi
cat > "$work/inlet.toml" <<TOML
version = 1
[destinations.local]
$lake_toml
[connections.bench]
connector = "files"
[connections.bench.config]
path = "data"
[connections.bench.config.streams.events]
glob = "events/*.jsonl"
TOML
rm -rf "$work/lake"
bytes=$(stat -c %s "$input")
/usr/bin/time -v "$bin" --project "$work/inlet.toml" --json sync bench > "$work/run.json" 2> "$work/time.txt"
rows=$(python3 -c "import json; print(json.load(open('$work/run.json'))['streams']['events']['rows'])")
wall=$(grep -a 'Elapsed (wall clock)' "$work/time.txt" | awk '{print $NF}')
rss_kb=$(grep -a 'Maximum resident set size' "$work/time.txt" | awk '{print $NF}')
user=$(grep -a 'User time' "$work/time.txt" | awk '{print $NF}')
sys=$(grep -a 'System time' "$work/time.txt" | awk '{print $NF}')
if [ "${LAKE:-local}" = s3 ]; then out_bytes=$(du -sb "$work/s3/lake/raw/bench" | cut -f1); else out_bytes=$(du -sb "$work/lake/bench" | cut -f1); fi
python3 - <<PY
wall = "$wall".split(":"); secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall)))
cpu = $user + $sys
print(f"input {$bytes/2**30:.2f} GiB, {$rows:,} rows -> {$out_bytes/2**20:.0f} MiB Parquet")
print(f"wall {secs:.1f} s ({$bytes/2**20/secs:.0f} MiB/s, {$rows/secs:,.0f} rows/s), CPU {cpu:.1f} s ({$rows/cpu:,.0f} rows per CPU-s)")
print(f"peak RSS {$rss_kb/1024:.0f} MiB")
PY
