//! The `postgres` source on a public sample database nobody here wrote: **pagila**
//! (<https://github.com/devrimgunduz/pagila>, PostgreSQL licence), loaded into the
//! harness's primary with `psql` exactly as published and synced from the hot standby by
//! the real `inlet` binary. Pagila has what a real schema has: a materialized view created
//! `WITH NO DATA`, a table partitioned by month, an enum and domains, `text[]`,
//! `tsvector`, `bytea`, `numeric`, views, and `last_update` columns that a bulk load gave
//! one value per table (the shape that made a quiet cursor run re-land every row).
//!
//! Pagila's files are kept, gzipped and unedited, in `tests/postgres/vendor/pagila/`
//! (commit 5ba5a57 of the upstream repository: pagila 3.x, for PostgreSQL 12 and later;
//! later revisions need PostgreSQL 18; its README there gives the licence and sha256 sums).
//! `scripts/test` unpacks them into `$INLET_CACHE/vendor/pagila`, checks the sums and sets
//! `INLET_PAGILA_DIR`, from which the tests read `pagila-schema.sql` and `pagila-data.sql`;
//! set it to use other copies. Run without it (a bare `cargo test`), the tests are skipped,
//! saying so. The files load unchanged: they need only the `postgres` superuser, which the
//! harness logs in as. `tests/postgres/cdc.rs` loads them too, for change data capture.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use arrow_array::{
    Array, BinaryArray, Decimal128Array, Int32Array, ListArray, RecordBatch, StringArray,
};
use arrow_schema::DataType;
use inlet_testkit::postgres::{PgPair, project};
use inlet_testkit::{
    TestProject,
    lake::{column, outside_python, python, read_batches},
};

const DB: &str = "pagila";

/// The folder holding pagila's SQL, or `None` (with a note) when it is not there. Under
/// CI (env `CI` set) it must be: the files are in the repository.
pub(crate) fn pagila_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("INLET_PAGILA_DIR").map(PathBuf::from);
    match dir {
        Some(d) if d.join("pagila-schema.sql").is_file() && d.join("pagila-data.sql").is_file() => {
            Some(d)
        }
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the pagila tests: scripts/test unpacks tests/postgres/vendor/pagila \
                 and sets INLET_PAGILA_DIR (it is {other:?})"
            );
            eprintln!(
                "skipping: pagila's pagila-schema.sql and pagila-data.sql not found (set \
                 INLET_PAGILA_DIR, as scripts/test does; it is {:?})",
                other.map(|p| p.display().to_string())
            );
            None
        }
    }
}

/// Load pagila from `dir` into a new database `db` on the primary of `pair`, exactly as
/// published, and wait until the standby has replayed it.
pub(crate) fn load_pagila(pair: &PgPair, db: &str, dir: &Path) {
    pair.create_db(db);
    pair.psql_file(db, &dir.join("pagila-schema.sql"));
    pair.psql_file(db, &dir.join("pagila-data.sql"));
    pair.wait_replay();
}

/// A primary and standby with pagila loaded on the primary and replayed by the standby.
fn pagila_pair(dir: &Path) -> PgPair {
    let pair = PgPair::start("");
    load_pagila(&pair, DB, dir);
    pair
}

/// A project with one `postgres` connection `c` reading the standby.
fn standby_project(pair: &PgPair, streams: &str) -> TestProject {
    project(&pair.config_toml(pair.standby_port, DB), "", streams)
}

/// `inlet --json sync c`, required to exit 0, parsed.
fn sync(p: &TestProject) -> serde_json::Value {
    let out = p.inlet(&["--json", "sync", "c"]);
    assert!(
        out.status.success(),
        "inlet sync failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    report
}

/// A sync with no change at the source: every one of `streams` lands 0 rows, warning-free.
fn assert_quiet_run<'a>(p: &TestProject, streams: impl IntoIterator<Item = &'a str>) {
    let quiet = sync(p);
    for t in streams {
        assert_eq!(rows(&quiet, t), 0, "{t}: {quiet}");
        assert!(
            quiet["streams"][t].get("warnings").is_none(),
            "{t}: {quiet}"
        );
    }
}

fn rows(report: &serde_json::Value, stream: &str) -> u64 {
    report["streams"][stream]["rows"]
        .as_u64()
        .unwrap_or_else(|| panic!("no row count for {stream} in {report}"))
}

/// `schema.name` of every relation of pagila's schemas with one of `kinds` (`pg_class.relkind`),
/// partitions left out, as the primary lists them.
fn relations(pair: &PgPair, kinds: &str) -> BTreeSet<String> {
    pair.primary(
        DB,
        &format!(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = ANY ('{{{kinds}}}') AND NOT c.relispartition \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%'"
        ),
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

/// The value of an Int32 key column at `row`.
fn key(batch: &RecordBatch, name: &str, row: usize) -> i32 {
    column::<Int32Array>(batch, name).value(row)
}

#[test]
fn every_pagila_stream_lands_from_the_standby_with_the_primarys_rows_and_values() {
    let Some(dir) = pagila_dir() else { return };
    let pair = pagila_pair(&dir);
    let tables = relations(&pair, "r,p");
    let matviews = relations(&pair, "m");
    let views = relations(&pair, "v");
    // What pagila is made of, so that a different revision of it fails here, not below.
    assert!(
        tables.contains("public.payment") && tables.len() == 15,
        "{tables:?}"
    );
    assert_eq!(
        matviews,
        BTreeSet::from(["public.rental_by_category".to_string()])
    );
    assert_eq!(views.len(), 7, "{views:?}");

    // No `streams` table: the default selection, every table and the materialized view;
    // views are opt-in (they need a cursor) and partitions are read through `payment`.
    let p = standby_project(&pair, "");
    let report = sync(&p);
    let landed: BTreeSet<String> = report["streams"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let selected: BTreeSet<String> = tables.union(&matviews).cloned().collect();
    assert_eq!(landed, selected, "{report}");

    // The unpopulated view is skipped with its warning, not retried, not failed.
    let mv = &report["streams"]["public.rental_by_category"];
    assert_eq!(mv["rows"], 0, "{report}");
    assert_eq!(mv["retries"], 0, "{report}");
    let warnings = mv["warnings"].as_array().expect("a warning");
    assert_eq!(warnings.len(), 1, "{report}");
    let warning = warnings[0].as_str().unwrap();
    assert!(
        warning.contains("not been populated")
            && warning.contains(r#"REFRESH MATERIALIZED VIEW "public"."rental_by_category""#),
        "{warning}"
    );
    assert!(!p.stream_dir("public.rental_by_category").exists());

    // Every table: the report, our reader and DuckDB agree with count(*) on the primary.
    let py = outside_python();
    for table in &tables {
        let expected: u64 = pair
            .scalar(DB, &format!("SELECT count(*) FROM {table}"))
            .parse()
            .unwrap();
        assert!(expected > 0, "{table} is empty on the primary");
        assert_eq!(rows(&report, table), expected, "{table}: {report}");
        let batches = read_batches(&p.stream_dir(table));
        let read: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(read as u64, expected, "{table} as read back");
        assert!(
            report["streams"][table].get("warnings").is_none(),
            "{table}: {report}"
        );
        if let Some(py) = &py {
            let n = python(
                py,
                &format!(
                    "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}/**/*.parquet')\").fetchone()[0])",
                    p.stream_dir(table).display()
                ),
            );
            assert_eq!(n, expected.to_string(), "{table} read by DuckDB");
        }
    }
    assert_eq!(rows(&report, "public.customer"), 599);

    // film: the enum, the domain, numeric, text[] and tsvector of every row, exactly.
    let expected: BTreeMap<i32, Vec<Option<String>>> = pair
        .primary(
            DB,
            "SELECT film_id, rating::text, release_year::text, rental_rate::text, \
                    replacement_cost::text, array_to_json(special_features)::text, fulltext::text \
             FROM public.film",
        )
        .into_iter()
        .map(|r| (r[0].as_deref().unwrap().parse().unwrap(), r[1..].to_vec()))
        .collect();
    let batches = read_batches(&p.stream_dir("public.film"));
    let schema = batches[0].schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    assert_eq!(ty("rating"), DataType::Utf8);
    assert_eq!(ty("release_year"), DataType::Int32);
    assert_eq!(ty("rental_rate"), DataType::Decimal128(4, 2));
    assert_eq!(ty("replacement_cost"), DataType::Decimal128(5, 2));
    assert!(
        matches!(ty("special_features"), DataType::List(f) if f.data_type() == &DataType::Utf8)
    );
    assert_eq!(ty("fulltext"), DataType::Utf8);
    let text = |b: &RecordBatch, name: &str, i: usize| {
        let c = column::<StringArray>(b, name);
        (!c.is_null(i)).then(|| c.value(i).to_string())
    };
    let decimal = |b: &RecordBatch, name: &str, i: usize| {
        let c = column::<Decimal128Array>(b, name);
        (!c.is_null(i)).then(|| c.value_as_string(i))
    };
    let mut landed = BTreeMap::new();
    for b in &batches {
        let years = column::<Int32Array>(b, "release_year");
        let features = column::<ListArray>(b, "special_features");
        for i in 0..b.num_rows() {
            let features = (!features.is_null(i)).then(|| {
                let list = features.value(i);
                let list = list.as_any().downcast_ref::<StringArray>().unwrap();
                let items: Vec<&str> = (0..list.len()).map(|j| list.value(j)).collect();
                serde_json::to_string(&items).unwrap()
            });
            let row = vec![
                text(b, "rating", i),
                (!years.is_null(i)).then(|| years.value(i).to_string()),
                decimal(b, "rental_rate", i),
                decimal(b, "replacement_cost", i),
                features,
                text(b, "fulltext", i),
            ];
            assert!(landed.insert(key(b, "film_id", i), row).is_none());
        }
    }
    assert_eq!(landed.len(), 1000);
    for (id, want) in &expected {
        assert_eq!(landed.get(id), Some(want), "film {id}");
    }

    // staff.picture is bytea: Binary, its NULLs where the primary has them.
    let batches = read_batches(&p.stream_dir("public.staff"));
    let pictures: usize = batches
        .iter()
        .map(|b| column::<BinaryArray>(b, "picture").null_count())
        .sum();
    assert_eq!(
        pictures.to_string(),
        pair.scalar(
            DB,
            "SELECT count(*) FROM public.staff WHERE picture IS NULL"
        )
    );

    // payment, read through its monthly partitions: the exact sum by two outside readers.
    let sum = pair.scalar(DB, "SELECT sum(amount)::text FROM public.payment");
    if let Some(py) = &py {
        let out = python(
            py,
            &format!(
                "import duckdb, pyarrow.dataset as ds, pyarrow.compute as pc\n\
                 d = '{}'\n\
                 print(duckdb.sql(f\"SELECT sum(amount)::VARCHAR FROM read_parquet('{{d}}/**/*.parquet')\").fetchone()[0])\n\
                 t = ds.dataset(d, format='parquet', partitioning='hive').to_table()\n\
                 print(t.num_rows, pc.sum(t['amount']).as_py())",
                p.stream_dir("public.payment").display()
            ),
        );
        let count = pair.scalar(DB, "SELECT count(*) FROM public.payment");
        assert_eq!(
            out,
            format!("{sum}\n{count} {sum}"),
            "payment by DuckDB, pyarrow"
        );
    }

    // Refreshed on the primary, the view lands in the next run of the same selection,
    // with no warning, holding what the primary holds.
    pair.primary(DB, "REFRESH MATERIALIZED VIEW public.rental_by_category");
    pair.wait_replay();
    let report = sync(&p);
    let expected: BTreeMap<String, String> = pair
        .primary(
            DB,
            "SELECT category, total_sales::text FROM public.rental_by_category",
        )
        .into_iter()
        .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
        .collect();
    assert_eq!(expected.len(), 16);
    let mv = &report["streams"]["public.rental_by_category"];
    assert_eq!(mv["rows"], 16, "{report}");
    assert!(mv.get("warnings").is_none(), "{report}");
    let mut landed = BTreeMap::new();
    for b in read_batches(&p.stream_dir("public.rental_by_category")) {
        // sum(numeric) has no declared precision: the exact text.
        for i in 0..b.num_rows() {
            landed.insert(
                text(&b, "category", i).unwrap(),
                text(&b, "total_sales", i).unwrap(),
            );
        }
    }
    assert_eq!(landed, expected);
}

/// The keys landed by run `run_id` of `stream`.
fn keys_of_run(p: &TestProject, stream: &str, key_column: &str, run_id: &str) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for b in read_batches(&p.stream_dir(stream)) {
        let runs = column::<StringArray>(&b, "_inlet_run_id");
        for i in 0..b.num_rows() {
            if runs.value(i) == run_id {
                assert!(out.insert(key(&b, key_column, i)), "{stream}: a key twice");
            }
        }
    }
    out
}

#[test]
fn cursor_runs_on_pagilas_last_update_land_zero_rows_when_quiet_and_only_what_changed() {
    let Some(dir) = pagila_dir() else { return };
    let pair = pagila_pair(&dir);
    // (stream, key, rows); the bulk load gave actor, film and customer one `last_update`
    // each, so every row is at the saved cursor value after the first run.
    let tables = [
        ("public.actor", "actor_id", 200),
        ("public.film", "film_id", 1000),
        ("public.customer", "customer_id", 599),
        ("public.rental", "rental_id", 16044),
    ];
    let mut streams = String::new();
    for (t, _, _) in &tables {
        streams.push_str(&format!(
            "[connections.c.streams.\"{t}\"]\nmode = \"incremental\"\ncursor_field = \"last_update\"\n"
        ));
    }
    let p = standby_project(&pair, &streams);

    let first = sync(&p);
    for (t, _, n) in &tables {
        assert_eq!(rows(&first, t), *n, "{t}: {first}");
    }
    let state: serde_json::Value = {
        let out = p.inlet(&["state", "show", "c"]);
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for (t, _, _) in &tables {
        let at_max = pair.scalar(
            DB,
            &format!(
                "SELECT count(*) FROM {t} WHERE last_update = (SELECT max(last_update) FROM {t})"
            ),
        );
        assert_eq!(
            state["streams"][t]["cursor"]["boundary"]["rows"].to_string(),
            at_max,
            "{t}: {state}"
        );
    }

    assert_quiet_run(&p, tables.iter().map(|(t, ..)| *t));

    // Three rows of each table change (pagila's trigger, and the statement, set
    // last_update = now()): the next run lands exactly those.
    let changed: Vec<[i32; 3]> = vec![
        [1, 100, 200],
        [7, 500, 1000],
        [3, 30, 599],
        [1, 8000, 16049],
    ];
    for ((t, k, _), ids) in tables.iter().zip(&changed) {
        pair.primary(
            DB,
            &format!(
                "UPDATE {t} SET last_update = now() WHERE {k} IN ({}, {}, {})",
                ids[0], ids[1], ids[2]
            ),
        );
    }
    pair.wait_replay();
    let third = sync(&p);
    let run_id = third["run_id"].as_str().unwrap().to_string();
    for ((t, k, _), ids) in tables.iter().zip(&changed) {
        assert_eq!(rows(&third, t), 3, "{t}: {third}");
        assert_eq!(keys_of_run(&p, t, k, &run_id), BTreeSet::from(*ids), "{t}");
    }

    assert_quiet_run(&p, tables.iter().map(|(t, ..)| *t));
}
