//! Change data capture from a hot standby (PostgreSQL 16 and 18): a logical slot on the
//! standby, a writer on the primary (inserts, updates that leave TOASTed values alone,
//! deletes, a truncate), syncs killed at random moments, and the lake read back with
//! DuckDB by the README's query equal to the primary's table, value by value; the same on
//! pagila, a schema nobody here wrote, through rounds of its own business.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use inlet_testkit::{
    lake::{kill_after_files, outside_python, parquet_files, python},
    postgres::{PgOptions, PgPair},
};

/// The README's "current table from raw" query, for the test table's columns.
const CURRENT_SQL: &str = "
WITH raw AS (
  SELECT *, _inlet_lsn::HUGEINT * 4294967296 + _inlet_seq AS pos
  FROM read_parquet('{dir}/**/*.parquet', hive_partitioning = true, union_by_name = true)
),
cut AS (SELECT coalesce(max(pos), -1) AS cut_pos FROM raw WHERE _inlet_op = 'truncate'),
filled AS (
  SELECT raw.* REPLACE (
    last_value(CASE WHEN list_contains(coalesce(_inlet_unchanged, []), 'note') THEN NULL
                    ELSE {'v': note} END IGNORE NULLS)
      OVER (PARTITION BY id ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW).v
      AS note)
  FROM raw, cut WHERE pos > cut_pos
)
SELECT id, customer_id, status, amount, note FROM filled
QUALIFY row_number() OVER (PARTITION BY id ORDER BY pos DESC) = 1 AND _inlet_op <> 'delete'
ORDER BY id";

fn cdc_pair(version: u32) -> PgPair {
    let pair = PgPair::start_opts(PgOptions {
        version: Some(version),
        logical: true,
        ..Default::default()
    });
    assert_eq!(pair.version(), version);
    pair.seed(
        "shop",
        "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int NOT NULL,
                              status text NOT NULL, amount numeric(12,2) NOT NULL, note text);
         ALTER TABLE orders ALTER note SET STORAGE EXTERNAL;
         INSERT INTO orders (customer_id, status, amount, note)
           SELECT g % 1000, 'new', g / 100.0,
                  CASE WHEN g % 10 = 0 THEN repeat(md5(g::text), 200)
                       WHEN g % 7 = 0 THEN NULL ELSE md5(g::text) END
             FROM generate_series(1, 20000) g;
         CREATE TABLE other (id int PRIMARY KEY, v int);
         CREATE PUBLICATION inlet FOR TABLE orders;
         ANALYZE;",
    );
    pair
}

/// A project reading database `shop` on the standby by CDC through publication `inlet`:
/// `config` goes in the connection's config, `connection` in the connection, and each of
/// `streams` is an incremental stream (read by CDC: no cursor).
fn cdc_project(
    pair: &PgPair,
    config: &str,
    connection: &str,
    streams: &[&str],
) -> inlet_testkit::project::TestProject {
    let streams: String = streams
        .iter()
        .map(|s| format!("[connections.c.streams.\"{s}\"]\nmode = \"incremental\"\n"))
        .collect();
    pair.standby_project(
        "shop",
        &format!("{config}[connections.c.config.cdc]\npublication = \"inlet\"\n"),
        connection,
        &streams,
    )
}

fn project(pair: &PgPair) -> inlet_testkit::project::TestProject {
    cdc_project(
        pair,
        "chunk_rows = 4000\n",
        "parallelism = 2\nbatch_rows = 3000\ncommit_interval_secs = 0",
        &["public.orders"],
    )
}

/// The primary's table, as the query prints it.
fn primary_rows(pair: &PgPair) -> Vec<String> {
    pair.primary(
        "shop",
        "SELECT id, customer_id, status, amount::text, md5(note) FROM orders ORDER BY id",
    )
    .into_iter()
    .map(|r| {
        r.into_iter()
            .map(|v| v.unwrap_or_else(|| "None".into()))
            .collect::<Vec<_>>()
            .join("|")
    })
    .collect()
}

/// The current table read from the lake with DuckDB.
fn lake_rows(py: &str, dir: &std::path::Path) -> Vec<String> {
    let sql = CURRENT_SQL.replace("{dir}", &dir.display().to_string());
    let code = format!(
        "import duckdb, hashlib\n\
         for r in duckdb.sql('''{sql}''').fetchall():\n\
         \x20   note = None if r[4] is None else hashlib.md5(r[4].encode()).hexdigest()\n\
         \x20   print('|'.join([str(r[0]), str(r[1]), r[2], str(r[3]), str(note)]))\n"
    );
    python(py, &code).lines().map(str::to_string).collect()
}

fn compare(pair: &PgPair, py: &str, dir: &std::path::Path) {
    let want = primary_rows(pair);
    let got = lake_rows(py, dir);
    if want != got {
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
        let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
        panic!(
            "the lake's current table differs from the primary's: {} vs {} rows; missing {missing:?}; extra {extra:?}",
            got.len(),
            want.len()
        );
    }
}

fn writer(pair: Arc<PgPair>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n: u64 = 0;
        while !stop.load(Ordering::SeqCst) {
            let k = n % 97;
            let sql = if n == 40 {
                // A truncate, then new rows: the reader must drop what came before.
                "BEGIN; TRUNCATE orders; INSERT INTO orders (customer_id, status, amount, note)
                   SELECT g, 'after', g, repeat(md5(g::text), 150) FROM generate_series(1, 3000) g;
                 COMMIT;"
                    .to_string()
            } else {
                format!(
                    "INSERT INTO orders (customer_id, status, amount, note)
                       SELECT g, 'new', {n}, CASE WHEN g % 3 = 0 THEN repeat(md5(g::text), 150) END
                         FROM generate_series(1, 40) g;
                     UPDATE orders SET status = 'paid{n}' WHERE id % 97 = {k};
                     UPDATE orders SET amount = amount + 1, note = md5(note) WHERE id % 389 = {k};
                     DELETE FROM orders WHERE id % 211 = {k};
                     BEGIN; UPDATE orders SET id = id + 1000000 WHERE id % 1999 = {k} AND id < 1000000; COMMIT;"
                )
            };
            pair.primary("shop", &sql);
            if n.is_multiple_of(5) {
                // What a busy primary does every 15 s: it lets a new slot on the standby
                // become consistent.
                pair.primary("shop", "SELECT pg_log_standby_snapshot()");
            }
            n += 1;
            std::thread::sleep(Duration::from_millis(30));
        }
        n
    })
}

fn cdc_lands_the_table_through_writes_truncates_and_kills(version: u32) {
    let Some(py) = outside_python() else { return };
    let pair = Arc::new(cdc_pair(version));
    let p = project(&pair);
    let dir = p.stream_dir("public.orders");
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(pair.clone(), stop.clone());

    let first = p.sync_json(&[]);
    // The snapshot (20,000 rows less what the writer deleted first) and the changes.
    assert!(
        first["streams"]["public.orders"]["rows"].as_u64().unwrap() > 15000,
        "{first}"
    );
    let state = p.ok(&["state", "show", "c"]);
    assert!(state.contains("\"method\": \"cdc\""), "{state}");
    assert!(state.contains("inlet_c_public_orders"), "{state}");
    // The run record carries what the slot keeps on the standby and how far behind it is.
    let second = p.sync_json(&[]);
    let gauges = &second["streams"]["public.orders"]["gauges"];
    assert!(
        gauges["slot_retained_bytes"].as_f64().unwrap() > 0.0,
        "{second}"
    );
    assert!(gauges["cdc_lag_bytes"].as_f64().unwrap() > 0.0, "{second}");

    // Syncs killed at moments tied to their progress.
    let mut next = inlet_testkit::seeded_rng();
    // Until 30 runs were killed: half when a new Parquet file appears (plus up to 40 ms),
    // half at a random moment of the first 400 ms (connecting, planning, streaming).
    let mut kills = 0;
    let mut runs = 0;
    while kills < 30 && runs < 300 {
        runs += 1;
        let by_file = next(2) == 0;
        let target = parquet_files(&dir).len() + 1;
        let extra = Duration::from_millis(if by_file { next(40) } else { next(400) });
        let child = p
            .command(&["sync", "c"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let files = by_file.then_some(target);
        if kill_after_files(child, &dir, files, Duration::from_secs(60), extra) {
            kills += 1;
        }
    }
    println!("{kills} of {runs} syncs killed mid-run");
    assert!(kills >= 30, "too few syncs were killed ({kills} of {runs})");

    let writes = {
        stop.store(true, Ordering::SeqCst);
        w.join().unwrap()
    };
    assert!(
        writes > 40,
        "the writer ran {writes} rounds: the truncate never ran"
    );
    pair.wait_replay();
    let last = p.sync_json(&[]);
    assert_eq!(last["outcome"], "succeeded", "{last}");
    compare(&pair, &py, &dir);

    // A quiet run lands nothing and keeps the state.
    let before = p.ok(&["state", "show", "c"]);
    let quiet = p.sync_json(&[]);
    assert_eq!(quiet["streams"]["public.orders"]["rows"], 0, "{quiet}");
    let _ = before;
    compare(&pair, &py, &dir);
}

#[test]
fn cdc_on_postgres_16_lands_the_table_through_writes_truncates_and_kills() {
    cdc_lands_the_table_through_writes_truncates_and_kills(16);
}

#[test]
fn cdc_on_postgres_18_lands_the_table_through_writes_truncates_and_kills() {
    cdc_lands_the_table_through_writes_truncates_and_kills(18);
}

/// `inlet --json sync c`, failing: the stream's error.
fn sync_error(p: &inlet_testkit::project::TestProject, stream: &str) -> String {
    let out = p.inlet(&["--json", "sync", "c"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    report["streams"][stream]["error"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            panic!(
                "no error for {stream}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Keep the primary logging snapshots of its running transactions (what a busy primary
/// does every 15 s), so slots made on the standby become consistent at once.
fn snapshots(pair: Arc<PgPair>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            pair.primary("shop", "SELECT pg_log_standby_snapshot()");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
}

#[test]
fn cdc_failures_are_typed_actionable_and_leave_the_state_as_it_was() {
    let pair = Arc::new(PgPair::start_opts(PgOptions {
        version: Some(18),
        logical: true,
        // A slot may keep little WAL on the standby: one that falls behind is invalidated.
        standby_conf: "max_slot_wal_keep_size = 1MB\n".into(),
        ..Default::default()
    }));
    pair.seed(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, note text);
         INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 1000) g;
         CREATE TABLE unpublished (id int PRIMARY KEY);
         CREATE PUBLICATION inlet FOR TABLE orders;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let logger = snapshots(pair.clone(), stop.clone());
    let p = cdc_project(&pair, "", "", &["public.orders", "public.unpublished"]);
    let check = p.ok(&["check", "c"]);
    assert!(check.contains("change data capture"), "{check}");
    assert!(check.contains("publishes public.orders"), "{check}");

    // A table the publication lacks: its stream fails with the SQL for the primary; the
    // other lands.
    let err = sync_error(&p, "public.unpublished");
    assert!(
        err.contains("ALTER PUBLICATION \"inlet\" ADD TABLE \"public\".\"unpublished\""),
        "{err}"
    );
    let state = p.state_json();
    assert!(state["streams"]["public.unpublished"].is_null(), "{state}");
    assert_eq!(
        state["streams"]["public.orders"]["cursor"]["method"], "cdc",
        "{state}"
    );
    let slot = state["streams"]["public.orders"]["cursor"]["slot"]
        .as_str()
        .unwrap()
        .to_string();
    let check = p.ok(&["check", "c"]);
    assert!(check.contains(&format!("slot {slot}")), "{check}");

    // The slot dropped behind inlet's back: a typed error, the state as it was.
    pair.standby(
        "shop",
        &format!("SELECT pg_drop_replication_slot('{slot}')"),
    );
    let before = p.state_json()["streams"]["public.orders"].clone();
    let err = sync_error(&p, "public.orders");
    assert!(
        err.contains("is missing") && err.contains("inlet state reset"),
        "{err}"
    );
    assert_eq!(p.state_json()["streams"]["public.orders"], before);

    // A reset says what it does to the slot, then a new slot and a new snapshot.
    let dry = p.ok(&[
        "state",
        "reset",
        "c",
        "--stream",
        "public.orders",
        "--dry-run",
    ]);
    assert!(dry.contains(&slot), "{dry}");
    p.ok(&["state", "reset", "c", "--stream", "public.orders"]);
    pair.primary("shop", "INSERT INTO orders VALUES (1001, 'x')");
    pair.wait_replay();
    let err = sync_error(&p, "public.unpublished");
    assert!(err.contains("ALTER PUBLICATION"), "{err}");
    let state = p.state_json();
    assert_eq!(state["streams"]["public.orders"]["cursor"]["method"], "cdc");

    // The slot invalidated for real: the standby removes the WAL it needs.
    pair.primary(
        "shop",
        "CREATE TABLE filler AS SELECT g, md5(g::text) AS m FROM generate_series(1, 200000) g;
         DROP TABLE filler; CHECKPOINT;",
    );
    pair.primary("shop", "SELECT pg_switch_wal(); CHECKPOINT;");
    pair.wait_replay();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        pair.standby("shop", "CHECKPOINT");
        let status = pair.standby(
            "shop",
            &format!("SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        );
        if status.first().and_then(|r| r[0].as_deref()) == Some("lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot was not invalidated: {status:?}"
        );
        pair.primary("shop", "SELECT pg_switch_wal(); CHECKPOINT;");
        pair.wait_replay();
    }
    let before = p.state_json()["streams"]["public.orders"].clone();
    let err = sync_error(&p, "public.orders");
    assert!(
        err.contains("was invalidated") && err.contains("wal_removed"),
        "{err}"
    );
    assert_eq!(p.state_json()["streams"]["public.orders"], before);

    // The standby promoted: inlet refuses the new primary, the state stays.
    stop.store(true, Ordering::SeqCst);
    logger.join().unwrap();
    pair.standby("postgres", "SELECT pg_promote()");
    let err = p.fails(&["sync", "c"]);
    assert!(
        err.contains("is a primary") && err.contains("point `host` at a replica"),
        "{err}"
    );
    assert_eq!(p.state_json()["streams"]["public.orders"], before);
}

#[test]
fn check_lists_what_a_wrong_setup_lacks_and_cdc_on_15_points_to_xmin() {
    // PostgreSQL 16 set up wrong: wal_level = replica, no hot_standby_feedback, no
    // publication.
    let pair = PgPair::start_opts(PgOptions {
        version: Some(16),
        ..Default::default()
    });
    pair.seed("shop", "CREATE TABLE orders (id bigint PRIMARY KEY);");
    let p = cdc_project(&pair, "", "", &["public.orders"]);
    let out = p.inlet(&["check", "c"]);
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    for want in [
        "hot_standby_feedback = on",
        "ALTER SYSTEM SET wal_level = logical",
        "CREATE PUBLICATION \"inlet\" FOR TABLE",
    ] {
        assert!(said.contains(want), "check does not say {want:?}: {said}");
    }
    let err = sync_error(&p, "public.orders");
    assert!(err.contains("hot_standby_feedback"), "{err}");
    assert!(p.state_json()["streams"]["public.orders"].is_null());
    drop(pair);

    // PostgreSQL 15 (Debian's): CDC needs 16, and says what to use instead.
    let pair = PgPair::start("");
    pair.seed("shop", "CREATE TABLE orders (id bigint PRIMARY KEY);");
    let p = cdc_project(&pair, "", "", &["public.orders"]);
    let err = sync_error(&p, "public.orders");
    assert!(
        err.contains("needs PostgreSQL 16") && err.contains("cursor_field = \\\"xmin\\\"")
            || err.contains("cursor_field = \"xmin\""),
        "{err}"
    );
    assert!(p.state_json()["streams"]["public.orders"].is_null());
}

/// Columns added, dropped and retyped between syncs (with changes before and after each
/// ALTER in one transaction) land as the new shape, the changes recorded in the stream's
/// schema history, and DuckDB's latest rows equal the primary's.
#[test]
fn columns_added_dropped_and_retyped_between_syncs_land_as_the_new_shape_and_are_recorded() {
    let Some(py) = outside_python() else { return };
    let pair = Arc::new(PgPair::start_opts(PgOptions {
        version: Some(18),
        logical: true,
        ..Default::default()
    }));
    pair.seed(
        "shop",
        "CREATE TABLE orders (id bigint PRIMARY KEY, v int, gone text);
         INSERT INTO orders SELECT g, g, 'x' FROM generate_series(1, 100) g;
         CREATE PUBLICATION inlet FOR TABLE orders;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let logger = snapshots(pair.clone(), stop.clone());
    let p = cdc_project(&pair, "", "", &["public.orders"]);
    p.sync_json(&[]);
    // Changes before, between and after two ALTERs, all read by one run.
    pair.primary(
        "shop",
        "UPDATE orders SET v = -v WHERE id <= 10;
         ALTER TABLE orders ADD COLUMN extra text;
         INSERT INTO orders VALUES (101, 101, 'y', 'new');
         ALTER TABLE orders DROP COLUMN gone;
         UPDATE orders SET extra = 'e' || id WHERE id > 95;
         DELETE FROM orders WHERE id = 1;",
    );
    pair.wait_replay();
    let second = p.sync_json(&[]);
    assert_eq!(second["outcome"], "succeeded", "{second}");
    let state = p.state_json();
    let changes = state["streams"]["public.orders"]["cursor"]["schema_changes"].to_string();
    assert!(
        changes.contains("extra") && changes.contains("gone"),
        "{state}"
    );
    // Another column, and two more runs: the new shape lands and nothing repeats wrongly.
    pair.primary(
        "shop",
        "ALTER TABLE orders ADD COLUMN later int; UPDATE orders SET later = 7 WHERE id = 2;",
    );
    pair.wait_replay();
    p.sync_json(&[]);
    p.sync_json(&[]);
    // A column retyped (int to bigint) with changes before and after it in one transaction,
    // read after it: the change from before is cast to the new type, as the retype did.
    pair.primary(
        "shop",
        "UPDATE orders SET v = v * 2 WHERE id = 4;
         ALTER TABLE orders ALTER v TYPE bigint;
         UPDATE orders SET v = 5000000000 WHERE id = 3;",
    );
    pair.wait_replay();
    let retyped = p.sync_json(&[]);
    assert_eq!(retyped["outcome"], "succeeded", "{retyped}");
    assert_eq!(retyped["streams"]["public.orders"]["rows"], 2, "{retyped}");
    let state = p.state_json();
    let changes = state["streams"]["public.orders"]["cursor"]["schema_changes"].to_string();
    assert!(changes.contains("bigint"), "{state}");
    p.sync_json(&[]);
    stop.store(true, Ordering::SeqCst);
    logger.join().unwrap();
    let dir = p.stream_dir("public.orders");
    let sql = format!(
        "WITH raw AS (SELECT *, _inlet_lsn::HUGEINT * 4294967296 + _inlet_seq AS pos \
           FROM read_parquet('{}/**/*.parquet', union_by_name = true)) \
         SELECT id, v, extra, later FROM raw \
         QUALIFY row_number() OVER (PARTITION BY id ORDER BY pos DESC) = 1 AND _inlet_op <> 'delete' \
         ORDER BY id",
        dir.display()
    );
    let got = python(
        &py,
        &format!(
            "import duckdb\nfor r in duckdb.sql(\"{sql}\").fetchall(): print('|'.join(map(str, r)))\n"
        ),
    );
    let want: Vec<String> = pair
        .primary("shop", "SELECT id, v, extra, later FROM orders ORDER BY id")
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "None".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    assert_eq!(got.lines().collect::<Vec<_>>(), want, "{got}");
}

/// How a column of a pagila table is printed on both sides of a comparison.
#[derive(Debug, Clone, Copy)]
enum Shown {
    /// As text: integers, `boolean` as `true`/`false`, `numeric(p,s)` with its scale,
    /// `date`, `text`.
    Text,
    /// `character(n)` as its type prints it, padded to `n`, as it is sent and lands
    /// (`::text` would trim it).
    Char,
    /// `timestamptz` as microseconds since 1970 (free of time zones and date styles).
    Micros,
    /// `bytea` as the md5 of its bytes.
    Md5,
    /// A `text[]` as its items joined by `|` (the two print lists differently).
    List,
}

impl Shown {
    /// The expression printing column `c` on the primary.
    fn primary(self, c: &str) -> String {
        match self {
            Shown::Text => format!("{c}::text"),
            Shown::Char => format!("CASE WHEN {c} IS NULL THEN NULL ELSE concat({c}) END"),
            Shown::Micros => format!("(extract(epoch FROM {c}) * 1000000)::bigint::text"),
            Shown::Md5 => format!("md5({c})"),
            Shown::List => format!("array_to_string({c}, '|')"),
        }
    }

    /// The expression printing column `c` in DuckDB.
    fn duckdb(self, c: &str) -> String {
        match self {
            Shown::Text | Shown::Char => format!("CAST({c} AS VARCHAR)"),
            Shown::Micros => format!("CAST(epoch_us({c}) AS VARCHAR)"),
            Shown::Md5 => format!("md5({c})"),
            Shown::List => format!("array_to_string({c}, '|')"),
        }
    }
}

/// A pagila table read by CDC: its stream, its primary key and every column.
#[derive(Debug)]
struct PagilaTable {
    stream: &'static str,
    key: &'static [&'static str],
    columns: &'static [(&'static str, Shown)],
}

/// The pagila tables the CDC test reads: a partitioned table (`payment`, seven monthly
/// partitions), a composite key (`film_actor`), `bytea` (`staff.picture`), `character(20)`
/// (`language.name`), `tsvector` (`film.fulltext`, which inlet has no binary decoder for),
/// an enum (`film.rating`), a domain (`film.release_year`), `text[]`, `numeric(5,2)`,
/// `date`, `boolean` and `timestamptz`.
const PAGILA: &[PagilaTable] = &[
    PagilaTable {
        stream: "public.film",
        key: &["film_id"],
        columns: &[
            ("film_id", Shown::Text),
            ("title", Shown::Text),
            ("description", Shown::Text),
            ("release_year", Shown::Text),
            ("language_id", Shown::Text),
            ("original_language_id", Shown::Text),
            ("rental_duration", Shown::Text),
            ("rental_rate", Shown::Text),
            ("length", Shown::Text),
            ("replacement_cost", Shown::Text),
            ("rating", Shown::Text),
            ("last_update", Shown::Micros),
            ("special_features", Shown::List),
            ("fulltext", Shown::Text),
        ],
    },
    PagilaTable {
        stream: "public.customer",
        key: &["customer_id"],
        columns: &[
            ("customer_id", Shown::Text),
            ("store_id", Shown::Text),
            ("first_name", Shown::Text),
            ("last_name", Shown::Text),
            ("email", Shown::Text),
            ("address_id", Shown::Text),
            ("activebool", Shown::Text),
            ("create_date", Shown::Text),
            ("last_update", Shown::Micros),
            ("active", Shown::Text),
        ],
    },
    PagilaTable {
        stream: "public.film_actor",
        key: &["actor_id", "film_id"],
        columns: &[
            ("actor_id", Shown::Text),
            ("film_id", Shown::Text),
            ("last_update", Shown::Micros),
        ],
    },
    PagilaTable {
        stream: "public.language",
        key: &["language_id"],
        columns: &[
            ("language_id", Shown::Text),
            ("name", Shown::Char),
            ("last_update", Shown::Micros),
        ],
    },
    PagilaTable {
        stream: "public.payment",
        key: &["payment_date", "payment_id"],
        columns: &[
            ("payment_id", Shown::Text),
            ("customer_id", Shown::Text),
            ("staff_id", Shown::Text),
            ("rental_id", Shown::Text),
            ("amount", Shown::Text),
            ("payment_date", Shown::Micros),
        ],
    },
    PagilaTable {
        stream: "public.rental",
        key: &["rental_id"],
        columns: &[
            ("rental_id", Shown::Text),
            ("rental_date", Shown::Micros),
            ("inventory_id", Shown::Text),
            ("customer_id", Shown::Text),
            ("return_date", Shown::Micros),
            ("staff_id", Shown::Text),
            ("last_update", Shown::Micros),
        ],
    },
    PagilaTable {
        stream: "public.staff",
        key: &["staff_id"],
        columns: &[
            ("staff_id", Shown::Text),
            ("first_name", Shown::Text),
            ("last_name", Shown::Text),
            ("address_id", Shown::Text),
            ("email", Shown::Text),
            ("store_id", Shown::Text),
            ("active", Shown::Text),
            ("username", Shown::Text),
            ("password", Shown::Text),
            ("last_update", Shown::Micros),
            ("picture", Shown::Md5),
        ],
    },
];

/// Round `n` of pagila's business on the primary, one transaction per statement: 50
/// rentals with their payments (spread over `payment`'s seven monthly partitions),
/// returns, price changes (film's triggers rewrite `fulltext` and `last_update`), a new
/// film (its `fulltext` made by the trigger, two special features), refunds
/// (payments deleted), a recast (`film_actor` rows deleted, others moved to the next
/// actor: their key changes), customers (de)activated, a new language, staff e-mails
/// changed, and staff photos set, one of 9,600 incompressible bytes: stored out of line
/// (TOAST), and left unchanged by the next rounds' e-mail changes.
fn pagila_round(n: u32) -> Vec<String> {
    vec![
        format!(
            "WITH r AS (
               INSERT INTO public.rental (rental_date, inventory_id, customer_id, staff_id)
               SELECT timestamptz '2022-01-03 09:00:00+00' + g * interval '4 days 3 hours'
                        + {n} * interval '1 minute',
                      (g * 89 + {n}) % 4581 + 1, (g * 13 + {n}) % 599 + 1, g % 2 + 1
                 FROM generate_series(1, 50) g
               RETURNING rental_id, rental_date, customer_id, staff_id)
             INSERT INTO public.payment (customer_id, staff_id, rental_id, amount, payment_date)
             SELECT customer_id, staff_id, rental_id, rental_id % 10 + 0.99,
                    rental_date + interval '1 hour'
               FROM r"
        ),
        format!(
            "UPDATE public.rental SET return_date = rental_date + interval '3 days 2 hours'
              WHERE return_date IS NULL AND rental_id % 3 = {n} % 3"
        ),
        format!("UPDATE public.film SET rental_rate = rental_rate + 1 WHERE film_id % 37 = {n}"),
        format!(
            "INSERT INTO public.film (title, description, language_id, rating, special_features)
             VALUES ('ROUND {n} CAPTURE', 'A Thoughtful Tale of a Slot Who Must Confirm a Standby',
                     1, 'PG-13', '{{Trailers,\"Deleted Scenes\"}}')"
        ),
        format!("DELETE FROM public.payment WHERE payment_id % 97 = {n}"),
        format!("DELETE FROM public.film_actor WHERE (actor_id + film_id) % 53 = {n}"),
        format!(
            "UPDATE public.customer SET activebool = NOT activebool WHERE customer_id % 41 = {n}"
        ),
        format!("INSERT INTO public.language (name) VALUES ('Round {n}')"),
        format!("UPDATE public.staff SET email = 'round{n}.' || email WHERE staff_id IN (1, 2, 3)"),
        format!(
            "UPDATE public.staff
                SET picture = (SELECT decode(string_agg(md5(g || '-' || {n}), ''), 'hex')
                                 FROM generate_series(1, 600) g)
              WHERE staff_id = {n}"
        ),
        format!(
            "UPDATE public.staff SET picture = '\\x89504e470d0a1a0a'::bytea WHERE staff_id = 10 + {n}"
        ),
        format!(
            "UPDATE public.film_actor fa SET actor_id = fa.actor_id % 200 + 1
              WHERE fa.film_id % 50 = {n}
                AND NOT EXISTS (SELECT 1 FROM public.film_actor o
                                 WHERE o.actor_id = fa.actor_id % 200 + 1 AND o.film_id = fa.film_id)"
        ),
    ]
}

/// The README's "current table from raw" query for `t` in `dir`, each column printed as
/// [`Shown::duckdb`] says; every column outside the key takes the value before where an
/// update left it unchanged.
fn pagila_current_sql(t: &PagilaTable, dir: &Path) -> String {
    let key = t.key.join(", ");
    let filled: Vec<String> = t
        .columns
        .iter()
        .filter(|(c, _)| !t.key.contains(c))
        .map(|(c, _)| {
            format!(
                "last_value(CASE WHEN list_contains(coalesce(_inlet_unchanged, []), '{c}') THEN NULL
                                 ELSE {{'v': {c}}} END IGNORE NULLS)
                   OVER (PARTITION BY {key} ORDER BY pos ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW).v
                   AS {c}"
            )
        })
        .collect();
    let select: Vec<String> = t.columns.iter().map(|(c, s)| s.duckdb(c)).collect();
    format!(
        "WITH raw AS (
           SELECT *, _inlet_lsn::HUGEINT * 4294967296 + _inlet_seq AS pos
           FROM read_parquet('{}/**/*.parquet', hive_partitioning = true, union_by_name = true)
         ),
         cut AS (SELECT coalesce(max(pos), -1) AS cut_pos FROM raw WHERE _inlet_op = 'truncate'),
         filled AS (SELECT raw.* REPLACE ({}) FROM raw, cut WHERE pos > cut_pos)
         SELECT {} FROM filled
         QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY pos DESC) = 1
             AND _inlet_op <> 'delete'
         ORDER BY {key}",
        dir.display(),
        filled.join(",\n"),
        select.join(", ")
    )
}

/// The current table of each pagila stream, read from the lake by DuckDB: stream -> its
/// rows, each its columns printed as [`Shown::duckdb`] says, joined by `|`, sorted.
fn pagila_lake_rows(
    py: &str,
    p: &inlet_testkit::project::TestProject,
) -> BTreeMap<String, Vec<String>> {
    let mut code = String::from("import duckdb\nfor name, sql in [\n");
    for t in PAGILA {
        let sql = pagila_current_sql(t, &p.stream_dir(t.stream));
        code.push_str(&format!("    ('{}', r'''{sql}'''),\n", t.stream));
    }
    code.push_str(
        "]:\n\
         \x20   for r in duckdb.sql(sql).fetchall():\n\
         \x20       print(name + '\\t' + '|'.join('None' if v is None else v for v in r))\n",
    );
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in python(py, &code).lines() {
        let (stream, row) = line.split_once('\t').expect("a stream, a tab, a row");
        out.entry(stream.to_string())
            .or_default()
            .push(row.to_string());
    }
    for rows in out.values_mut() {
        rows.sort();
    }
    out
}

/// The primary's rows of `t`, each its columns printed as [`Shown::primary`] says, joined
/// by `|`, sorted.
fn pagila_primary_rows(pair: &PgPair, t: &PagilaTable) -> Vec<String> {
    let select: Vec<String> = t.columns.iter().map(|(c, s)| s.primary(c)).collect();
    let mut rows: Vec<String> = pair
        .primary(
            "shop",
            &format!("SELECT {} FROM {}", select.join(", "), t.stream),
        )
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| v.unwrap_or_else(|| "None".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    rows
}

/// Every pagila stream's current table, read from the lake by DuckDB, is the primary's
/// table, value by value.
fn compare_pagila(pair: &PgPair, py: &str, p: &inlet_testkit::project::TestProject) {
    let lake = pagila_lake_rows(py, p);
    for t in PAGILA {
        let want = pagila_primary_rows(pair, t);
        let got = lake.get(t.stream).cloned().unwrap_or_default();
        if want != got {
            let want_set: BTreeSet<&String> = want.iter().collect();
            let got_set: BTreeSet<&String> = got.iter().collect();
            let missing: Vec<_> = want_set.difference(&got_set).take(5).collect();
            let extra: Vec<_> = got_set.difference(&want_set).take(5).collect();
            panic!(
                "{}: the lake's current table differs from the primary's: {} vs {} rows; \
                 missing {missing:?}; extra {extra:?}",
                t.stream,
                got.len(),
                want.len()
            );
        }
    }
}

/// CDC of pagila, loaded as published, on PostgreSQL 16: the first sync lands a snapshot
/// of seven of its tables, `payment` through its seven monthly partitions (published by
/// their root, `publish_via_partition_root`), and each of three rounds of pagila's own
/// business ([`pagila_round`]: rentals and payments, returns, refunds, a recast that
/// changes keys, a photo stored out of line and then left unchanged) lands with the next
/// sync; after every sync DuckDB's current table by the README's query is the primary's,
/// value by value (`film.fulltext`, a `tsvector` inlet has no binary decoder for, turned
/// to text by the standby as a snapshot casts it), and a quiet sync then lands nothing.
/// Every session, the replication one included, is TLS with the certificate checked.
#[test]
fn cdc_on_pagila_lands_seven_tables_through_rentals_returns_refunds_and_key_changes() {
    let Some(dir) = crate::sample_db::pagila_dir() else {
        return;
    };
    let Some(py) = outside_python() else { return };
    let pair = Arc::new(PgPair::start_opts(PgOptions {
        // 16: the PostgreSQL 18 of the PyPI wheel is built without TLS.
        version: Some(16),
        logical: true,
        tls: true,
        ..Default::default()
    }));
    crate::sample_db::load_pagila(&pair, "shop", &dir);
    let streams: Vec<&str> = PAGILA.iter().map(|t| t.stream).collect();
    pair.primary(
        "shop",
        &format!(
            "CREATE PUBLICATION inlet FOR TABLE {}
               WITH (publish_via_partition_root = true)",
            streams.join(", ")
        ),
    );
    pair.wait_replay();

    // The snapshot: every row of each table, once.
    let stop = Arc::new(AtomicBool::new(false));
    let logger = snapshots(pair.clone(), stop.clone());
    // Over TLS, the certificate and host name checked: the replication session's own
    // socket and handshake, not the SQL sessions'.
    let config = pair
        .config_toml(pair.standby_port, "shop")
        .replace("\"disable\"", "\"verify_full\"")
        .replace("127.0.0.1", "localhost")
        + &format!(
            "ssl_root_cert = \"{}\"\n[connections.c.config.cdc]\npublication = \"inlet\"\n",
            pair.ca_cert().display()
        );
    let streams_toml: String = streams
        .iter()
        .map(|s| format!("[connections.c.streams.\"{s}\"]\nmode = \"incremental\"\n"))
        .collect();
    let p = inlet_testkit::postgres::project(&config, "", &streams_toml);
    let first = p.sync_json(&[]);
    stop.store(true, Ordering::SeqCst);
    logger.join().unwrap();
    assert_eq!(first["outcome"], "succeeded", "{first}");
    for t in PAGILA {
        let count = pair.scalar("shop", &format!("SELECT count(*) FROM {}", t.stream));
        assert_eq!(
            first["streams"][t.stream]["rows"].to_string(),
            count,
            "{}: {first}",
            t.stream
        );
    }
    compare_pagila(&pair, &py, &p);

    for n in 1..=3 {
        for sql in pagila_round(n) {
            pair.primary("shop", &sql);
        }
        pair.wait_replay();
        let report = p.sync_json(&[]);
        assert_eq!(report["outcome"], "succeeded", "{report}");
        for t in PAGILA {
            assert!(
                report["streams"][t.stream]["rows"].as_u64().unwrap() > 0,
                "round {n}, {}: {report}",
                t.stream
            );
        }
        compare_pagila(&pair, &py, &p);
    }

    // Later updates left the big photo unchanged, and the query took it from the row
    // before: the comparison went through the README's filling step.
    let unchanged = python(
        &py,
        &format!(
            "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}/**/*.parquet') \
             WHERE list_contains(coalesce(_inlet_unchanged, []), 'picture')\").fetchone()[0])",
            p.stream_dir("public.staff").display()
        ),
    );
    assert_ne!(unchanged, "0", "no update left staff.picture unchanged");

    let quiet = p.sync_json(&[]);
    for t in PAGILA {
        assert_eq!(
            quiet["streams"][t.stream]["rows"], 0,
            "{}: {quiet}",
            t.stream
        );
    }
    compare_pagila(&pair, &py, &p);
}

/// `inlet --json sync c` with its peak RSS: the stream's landed rows and the RSS in MiB.
fn sync_rows_and_rss(p: &inlet_testkit::project::TestProject, stream: &str) -> (u64, u64) {
    let out = p.root().join("sync.json");
    let child = p
        .command(&["--json", "sync", "c"])
        .stdout(std::fs::File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let (status, rss_kib) = inlet_testkit::wait_peak_rss(child);
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert!(status.success(), "{report}");
    assert!(rss_kib > 0, "could not read the sync's peak RSS");
    (
        report["streams"][stream]["rows"].as_u64().unwrap(),
        rss_kib / 1024,
    )
}

/// One transaction of 400,000 inserted rows (about 210 MB of values) is not held in
/// memory: the sync streams it to the lake in batches, its peak RSS within 100 MiB of the
/// peak of a 20,000-row transaction's sync (holding the transaction would take more than
/// its 210 MB; what grows is the Parquet file being written: 52 -> 90 MiB when measured),
/// and every row lands.
#[test]
fn a_transaction_of_400k_rows_streams_through_in_batches_not_held_in_memory() {
    let pair = Arc::new(PgPair::start_opts(PgOptions {
        version: Some(18),
        logical: true,
        ..Default::default()
    }));
    pair.seed(
        "shop",
        "CREATE TABLE big (id bigint PRIMARY KEY, body text NOT NULL);
         CREATE PUBLICATION inlet FOR TABLE big;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let logger = snapshots(pair.clone(), stop.clone());
    let p = cdc_project(&pair, "", "batch_rows = 5000", &["public.big"]);
    let first = p.sync_json(&[]);
    stop.store(true, Ordering::SeqCst);
    logger.join().unwrap();
    assert_eq!(first["outcome"], "succeeded", "{first}");

    let insert = |from: u64, n: u64| {
        // 512 characters a row: stored in line, so every change carries its whole value.
        pair.primary(
            "shop",
            &format!(
                "INSERT INTO big SELECT g, repeat(md5(g::text), 16)
                   FROM generate_series({from}, {}) g",
                from + n - 1
            ),
        );
        pair.wait_replay();
    };
    insert(1, 20_000);
    let (rows, small) = sync_rows_and_rss(&p, "public.big");
    assert_eq!(rows, 20_000);
    insert(20_001, 400_000);
    let (rows, large) = sync_rows_and_rss(&p, "public.big");
    assert_eq!(rows, 400_000);
    eprintln!("peak RSS: {small} MiB for 20,000 rows in one transaction, {large} MiB for 400,000");
    assert!(
        large < small + 100,
        "peak RSS {large} MiB for a 400,000-row transaction, {small} MiB for 20,000"
    );
}

/// A lake slower to take a run's batches than the standby's `wal_sender_timeout` (writes of
/// data files to the S3 destination held 10 s; the timeout 3 s) does not lose the replication
/// session: while the reader waits for the lake it keeps reporting its status, the
/// standby ends no walsender for a replication timeout (without that status it did, 3 s
/// in: checked), and the sync lands every change.
#[test]
fn a_lake_slower_than_wal_sender_timeout_keeps_the_replication_session() {
    // Data files only: the run's plan writes its own records first.
    let gate = inlet_testkit::s3::WriteGate::new("extracted_at=");
    let server = inlet_testkit::s3::S3Server::builder("inlet-gate-key", "inlet-gate-secret")
        .bucket("raw")
        .access(gate.clone())
        .start();
    let pair = Arc::new(PgPair::start_opts(PgOptions {
        version: Some(18),
        logical: true,
        standby_conf: "wal_sender_timeout = '3s'\n".into(),
        ..Default::default()
    }));
    pair.seed(
        "shop",
        "CREATE TABLE t (id bigint PRIMARY KEY, body text NOT NULL);
         CREATE PUBLICATION inlet FOR TABLE t;",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let logger = snapshots(pair.clone(), stop.clone());
    let p = cdc_project(
        &pair,
        "",
        "destination = \"raw\"\nbatch_rows = 200\ncommit_interval_secs = 0",
        &["public.t"],
    );
    p.write_toml(
        p.config_text()
            + &format!(
                "\n[destinations.raw]\nurl = \"s3://raw/lake\"\nendpoint = \"{}\"\npath_style = true\n\
                 region = \"us-east-1\"\naccess_key_id = \"inlet-gate-key\"\n\
                 secret_access_key = \"inlet-gate-secret\"\n",
                server.endpoint()
            ),
    );
    let first = p.sync_json(&[]);
    stop.store(true, Ordering::SeqCst);
    logger.join().unwrap();
    assert_eq!(first["outcome"], "succeeded", "{first}");

    // 20 transactions of 500 rows: 50 batches, far more than the run's queue holds.
    pair.primary(
        "shop",
        "DO $$ BEGIN FOR i IN 0..19 LOOP
           INSERT INTO t SELECT g, md5(g::text) FROM generate_series(i * 500 + 1, i * 500 + 500) g;
           COMMIT;
         END LOOP; END $$",
    );
    pair.wait_replay();
    gate.close();
    let opener = {
        let gate = gate.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            gate.open();
        })
    };
    let started = Instant::now();
    let report = p.sync_json(&[]);
    opener.join().unwrap();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    assert_eq!(report["streams"]["public.t"]["rows"], 10_000, "{report}");
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "the held writes did not hold the run ({:?})",
        started.elapsed()
    );
    let log = std::fs::read_to_string(pair.dir.path().join("standby/server.log")).unwrap();
    assert!(
        !log.contains("replication timeout"),
        "the standby ended a walsender for a replication timeout:\n{log}"
    );
}
