#!/usr/bin/env bash
# CDC benchmark: change data capture from a PostgreSQL 18 hot standby against its physical
# floor, PostgreSQL's own pg_recvlogical draining the same changes (pgoutput, binary) from
# a slot on the same standby to /dev/null. Workload: changes to a table shaped like the
# reference `orders` (inserts, updates, deletes in transactions of 1 to 10,000 rows),
# first 100,000 changes, then 1,000,000; then a quiet run (no change).
# Figures: wall, client CPU (per million changes), peak RSS.
#
#   bench/cdc.sh                    # the release build of inlet
#   PROFILE=test bench/cdc.sh       # the test profile's build (dependencies at opt-level 2)
#
# Env: CHANGES ("100000 1000000"), KEEP=1 keeps the work dir, INLET_WRAP="perf stat ..."
# runs each measured inlet sync under that command (for profiling), TRANSPORT=tcp (default:
# both clients over TCP to 127.0.0.1, as to a remote standby) or socket (both over the
# standby's Unix socket: no TCP stack in the figures).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=${PROFILE:-release}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
dir=$PROFILE
[ "$PROFILE" = test ] && dir=debug
BIN=${BIN:-$TARGET/$dir/inlet}
if [ "$PROFILE" = test ]; then
  (cd "$ROOT" && cargo test -p inlet-cli --test postgres --no-run >/dev/null 2>&1)
else
  (cd "$ROOT" && cargo build --release -p inlet-cli >/dev/null)
fi
[ -x /usr/bin/time ] || { echo "need /usr/bin/time (apt-get install time)" >&2; exit 1; }
PG=$(bash "$ROOT/scripts/ensure-postgres-version" 18)
WORK=$(mktemp -d /tmp/inlet-cdc-bench.XXXXXX)
chmod 755 "$WORK"
OSUSER=()
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; OSUSER=(runuser -u postgres --); fi
P1=$((20000 + RANDOM % 10000)); P2=$((P1 + 1))
stop() {
  "${OSUSER[@]}" "$PG/pg_ctl" -D "$WORK/standby" -m immediate stop >/dev/null 2>&1 || true
  "${OSUSER[@]}" "$PG/pg_ctl" -D "$WORK/primary" -m immediate stop >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap stop EXIT
"${OSUSER[@]}" "$PG/initdb" -D "$WORK/primary" -U postgres --auth=trust -E UTF8 >/dev/null
cat >> "$WORK/primary/postgresql.auto.conf" <<CONF
port = $P1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
wal_level = logical
max_wal_size = 4GB
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
autovacuum = off
CONF
"${OSUSER[@]}" "$PG/pg_ctl" -D "$WORK/primary" -l "$WORK/primary.log" -w start >/dev/null
"${OSUSER[@]}" "$PG/pg_basebackup" -h "$WORK" -p "$P1" -U postgres -D "$WORK/standby" -R -X stream -C -S standby1
sed -i "s/^port = $P1/port = $P2/" "$WORK/standby/postgresql.auto.conf"
printf "port = %s\nhot_standby_feedback = on\n" "$P2" >> "$WORK/standby/postgresql.auto.conf"
"${OSUSER[@]}" "$PG/pg_ctl" -D "$WORK/standby" -l "$WORK/standby.log" -w start >/dev/null
PRIMARY=("${OSUSER[@]}" "$PG/psql" -X -q -h "$WORK" -p "$P1" -U postgres -d bench -v ON_ERROR_STOP=1)
STANDBY=("${OSUSER[@]}" "$PG/psql" -X -q -h "$WORK" -p "$P2" -U postgres -d bench -tA)
STANDBY_ADMIN=("${OSUSER[@]}" "$PG/psql" -X -q -h "$WORK" -p "$P2" -U postgres -d postgres -tA)
"${OSUSER[@]}" "$PG/psql" -X -q -h "$WORK" -p "$P1" -U postgres -d postgres -c "CREATE DATABASE bench"
"${PRIMARY[@]}" <<'SQL'
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
  amount numeric(12,2) NOT NULL, currency char(3) NOT NULL, note text,
  tags text[] NOT NULL, payload jsonb NOT NULL, is_paid boolean NOT NULL,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE PUBLICATION inlet FOR TABLE orders;
CREATE SEQUENCE ids;
SQL
wait_replay() {
  local lsn
  lsn=$("${PRIMARY[@]}" -tAc "SELECT pg_current_wal_insert_lsn()")
  until [ "$("${STANDBY_ADMIN[@]}" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'" 2>/dev/null)" = t ]; do
    sleep 0.2
  done
}
wait_replay

TRANSPORT=${TRANSPORT:-tcp}
if [ "$TRANSPORT" = socket ]; then HOST=$WORK; else HOST=127.0.0.1; fi
cat > "$WORK/inlet.toml" <<TOML
version = 1
[destinations.local]
url = "file://./lake"
[connections.cdc]
connector = "postgres"
batch_rows = 50000
[connections.cdc.config]
host = "$HOST"
port = $P2
database = "bench"
user = "postgres"
ssl_mode = "disable"
[connections.cdc.config.cdc]
publication = "inlet"
[connections.cdc.streams."public.orders"]
mode = "incremental"
TOML

# make_changes N: about N changed rows on the primary, in transactions of 1 to 10,000 rows
# (60% inserts, 30% updates, 10% deletes), then wait for the standby.
make_changes() {
  sed "s/:n/$1/g" <<'SQL' | "${PRIMARY[@]}"
DO $$
DECLARE done bigint := 0; size int; kind float8; lo bigint; hi bigint; start bigint;
BEGIN
  PERFORM setseed(0.42);
  WHILE done < :n LOOP
    size := least(1 + floor(random() ^ 3 * 10000)::int, :n - done);
    kind := random();
    SELECT coalesce(min(id), 0), coalesce(max(id), 0) INTO lo, hi FROM orders;
    start := lo + floor(random() * greatest(hi - lo, 1))::bigint;
    IF kind < 0.6 OR hi - lo < 2 * size THEN
      INSERT INTO orders SELECT nextval('ids'), g % 100000, 'pending', (g % 5000) / 7.0, 'EUR',
             md5(g::text), ARRAY['a', 'b'], jsonb_build_object('k', g), false, now(), now()
        FROM generate_series(1, size) g;
    ELSIF kind < 0.9 THEN
      UPDATE orders SET status = 'paid', is_paid = true, updated_at = now(), amount = amount + 1
       WHERE id IN (SELECT id FROM orders WHERE id >= start ORDER BY id LIMIT size);
    ELSE
      DELETE FROM orders WHERE id IN (SELECT id FROM orders WHERE id >= start ORDER BY id LIMIT size);
    END IF;
    done := done + size;
    COMMIT;
  END LOOP;
END $$;
SQL
  "${PRIMARY[@]}" -c "SELECT pg_log_standby_snapshot()" >/dev/null
  wait_replay
}

measure() { # LABEL CHANGES CMD...: wall, client CPU, CPU per 1M changes, peak RSS
  local label=$1 n=$2; shift 2
  /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@" > "$WORK/out" 2> "$WORK/err" || {
    echo "$label failed:"; cat "$WORK/err" "$WORK/out"; exit 1; }
  read -r wall user sys rss < "$WORK/time"
  awk -v l="$label" -v w="$wall" -v u="$user" -v s="$sys" -v r="$rss" -v n="$n" 'BEGIN {
    printf "| %-44s | %7.2f s | %6.2f s | %5.2f s/M | %5.0f MiB |\n", l, w, u+s, (n > 0 ? (u+s)/(n/1e6) : 0), r/1024 }'
  echo "$wall" > "$WORK/last_wall"
}

cd "$WORK"
# The first sync makes inlet's slot and lands the (empty) snapshot; the floor's slot is
# made beside it, so both see the same changes.
"${PRIMARY[@]}" -c "SELECT pg_log_standby_snapshot()" >/dev/null
(sleep 1; "${PRIMARY[@]}" -c "SELECT pg_log_standby_snapshot()" >/dev/null) &
"$BIN" -p inlet.toml sync cdc >/dev/null
(sleep 1; "${PRIMARY[@]}" -c "SELECT pg_log_standby_snapshot()" >/dev/null) &
"${STANDBY[@]}" -c "SELECT pg_create_logical_replication_slot('floor', 'pgoutput')" >/dev/null
echo "inlet: $BIN ($PROFILE); PostgreSQL: $("$PG/postgres" --version); both clients over $TRANSPORT; work dir: $WORK"
echo "| case | wall | client CPU | CPU per 1M changes | peak RSS |"
echo "|---|---|---|---|---|"
for n in ${CHANGES:-100000 1000000}; do
  make_changes "$n"
  end=$("${STANDBY[@]}" -c "SELECT pg_last_wal_replay_lsn()")
  measure "pg_recvlogical > /dev/null, $n changes (floor)" "$n" \
    "${OSUSER[@]}" "$PG/pg_recvlogical" -h "$HOST" -p "$P2" -U postgres -d bench --slot floor \
    --start -o proto_version=1 -o publication_names=inlet -o binary=true -E "$end" -f /dev/null
  floor=$(cat "$WORK/last_wall")
  # shellcheck disable=SC2086
  measure "inlet sync, $n changes" "$n" ${INLET_WRAP:-} "$BIN" -p inlet.toml --json sync cdc
  landed=$(grep -o '"rows": [0-9]*' "$WORK/out" | head -1)
  awk -v w="$(cat "$WORK/last_wall")" -v f="$floor" -v l="$landed" 'BEGIN {
    printf "|   ratio to the floor: %.2fx (%s) | | | | |\n", w/f, l }'
done
# The first quiet run advances the slot past the last run's changes (the standby decodes
# that WAL once more); the second is the steady state.
measure "inlet sync, quiet (after the 1M run)" 0 "$BIN" -p inlet.toml --json sync cdc
measure "inlet sync, quiet (steady state)" 0 "$BIN" -p inlet.toml --json sync cdc
