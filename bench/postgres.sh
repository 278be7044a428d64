#!/usr/bin/env bash
# Postgres -> Parquet benchmark on the shared perf-anchor cluster (public.orders, 10M rows):
# the COPY-binary floor, inlet's full refresh (parallelism 1 and 2), and inlet's
# incremental sync after 10,000 rows changed. Figures: wall, client CPU, peak RSS.
#
#   bench/postgres.sh [table]          # default: orders (orders_1m for the 1M-row table)
#
# Env: ANCHORS (../shared/bench/anchors), ANCHOR_PGPORT (55432), BIN (release inlet),
#      PARALLELISM ("1 2"), RUNS (3 incremental rounds), KEEP=1 keeps the work dir.
# The anchor cluster is a primary, so the connection sets allow_primary = true.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHORS=${ANCHORS:-$ROOT/../shared/bench/anchors}
TABLE=${1:-orders}
PORT=${ANCHOR_PGPORT:-55432}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/inlet}
PAR=${PARALLELISM:-"1 2"}
RUNS=${RUNS:-3}
[ -x "$BIN" ] || (cd "$ROOT" && cargo build --release -p inlet-cli)
[ -x /usr/bin/time ] || { echo "need /usr/bin/time (apt-get install time)" >&2; exit 1; }
bash "$ANCHORS/setup_pg.sh" >/dev/null
PSQL=(psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres -d bench)
WORK=$(mktemp -d /tmp/inlet-pg-bench.XXXXXX)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$WORK"' EXIT
rows=$("${PSQL[@]}" -tAc "select count(*) from $TABLE")
echo "table $TABLE: $rows rows; inlet: $BIN; work dir: $WORK"

# measure LABEL CMD...: prints wall s, client CPU s, CPU s per million rows, peak RSS MiB
measure() {
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || {
    echo "$label failed:"; cat "$WORK/err"; exit 1; }
  read -r wall user sys rss < "$WORK/time"
  awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v n="$rows" 'BEGIN {
    printf "| %-34s | %7.2f s | %7.2f s | %5.2f s/M rows | %6.0f MiB |\n", l, w, u+s, (u+s)/(n/1e6), r/1024 }'
  echo "$wall" > "$WORK/last_wall"
}

cat > "$WORK/inlet.toml" <<TOML
version = 1
[destinations.local]
url = "file://./lake"
TOML
for p in $PAR; do
cat >> "$WORK/inlet.toml" <<TOML
[connections.full$p]
connector = "postgres"
parallelism = $p
[connections.full$p.config]
host = "127.0.0.1"
port = $PORT
database = "bench"
user = "postgres"
ssl_mode = "disable"
allow_primary = true
tables = ["public.$TABLE"]
TOML
done
cat >> "$WORK/inlet.toml" <<TOML
[connections.inc]
connector = "postgres"
[connections.inc.config]
host = "127.0.0.1"
port = $PORT
database = "bench"
user = "postgres"
ssl_mode = "disable"
allow_primary = true
tables = ["public.$TABLE"]
lookback_secs = 0   # like the anchors' hand-kept watermark
[connections.inc.streams."public.$TABLE"]
mode = "incremental"
cursor_field = "updated_at"
TOML

echo "| case | wall | client CPU | client CPU per 1M rows | peak RSS |"
echo "|---|---|---|---|---|"
measure "COPY binary > /dev/null (floor)" "${PSQL[@]}" -c "COPY (SELECT * FROM $TABLE) TO STDOUT (FORMAT binary)"
floor=$(cat "$WORK/last_wall")
for p in $PAR; do
  rm -rf "$WORK/lake"
  measure "inlet full refresh, parallelism $p" "$BIN" -p "$WORK/inlet.toml" sync "full$p"
  awk -v w="$(cat "$WORK/last_wall")" -v f="$floor" 'BEGIN { printf "|   ratio to the floor | %.2fx | | | |\n", w/f }'
done
landed=$(find "$WORK/lake/full${PAR##* }" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s/1048576}')
echo "(landed Parquet: $landed MiB)"

# Incremental: start from the current maximum (a hand-kept watermark, as the anchors do),
# change 10,000 rows (untimed), then time the whole `inlet sync` process.
for i in $(seq 1 "$RUNS"); do
  wm=$("${PSQL[@]}" -tAc "select to_char(max(updated_at) at time zone 'UTC','YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') from $TABLE")
  "$BIN" -p "$WORK/inlet.toml" state set inc --stream "public.$TABLE" \
    --value "{\"method\":\"cursor\",\"column\":\"updated_at\",\"value\":\"$wm\"}" > /dev/null
  bash "$ANCHORS/lib/update_rows.sh" psql "$PORT" "$TABLE" "$WORK/counter"
  rows=10000 measure "inlet incremental, 10k changed ($i)" "$BIN" -p "$WORK/inlet.toml" --json sync inc
  grep -o '"rows": [0-9]*' "$WORK/out" | head -1
done
