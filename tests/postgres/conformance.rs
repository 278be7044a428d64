//! The `postgres` source runs the source conformance suite on the standby: a keyed table
//! read by key ranges (5000 rows in ranges of 1000, so several partitions and
//! checkpoints), by full refresh, incrementally by `updated_at` (ten rows share each
//! value, the last one too) and by `xmin`, and a keyless table. A retry (attempt 2) reads
//! each range in four statements, with a checkpoint after each: resumed mid-range too.

use inlet_connector_postgres::PostgresConnector;
use inlet_core::{Connector, SyncMode};
use inlet_testkit::conformance::{self, Options};
use inlet_testkit::postgres::{PASSWORD, PgPair};
use serde_json::{Value, json};

fn config(port: u16) -> Value {
    json!({
        "host": "127.0.0.1", "port": port, "database": "conf", "user": "postgres",
        "password": PASSWORD, "ssl_mode": "disable", "chunk_rows": 1000,
        // The lookback window re-reads rows by design (landed again by the next run); the
        // suite holds the connector to reading nothing twice.
        "lookback_secs": 0,
    })
}

fn options(stream: &str, mode: SyncMode, cursor: Option<&str>, attempt: u32) -> Options {
    Options {
        cursor_field: cursor.map(str::to_string),
        batch_rows: 300,
        attempt,
        // No key to split by: one statement, one checkpoint at its end.
        min_checkpoints: if stream == "public.keyless" {
            1
        } else {
            5 * 2usize.pow(attempt)
        },
        ..Options::new(stream).mode(mode)
    }
}

#[test]
fn postgres_tables_conform_on_the_standby() {
    let pair = PgPair::start("");
    pair.seed(
        "conf",
        "CREATE TABLE items (id bigint PRIMARY KEY, note text, updated_at timestamptz NOT NULL);
         CREATE INDEX ON items (updated_at);
         INSERT INTO items SELECT g, 'n' || g, '2026-01-01'::timestamptz + ((g - 1) / 10) * interval '1 second'
           FROM generate_series(1, 5000) g;
         CREATE TABLE keyless (n int, note text);
         INSERT INTO keyless SELECT g, 'k' || g FROM generate_series(1, 700) g;
         ANALYZE;",
    );
    let dir = tempfile::tempdir().unwrap();
    pair.block_on(async {
        let source =
            conformance::build(&PostgresConnector, config(pair.standby_port), dir.path()).await;
        for (stream, mode, cursor, attempt, rows) in [
            ("public.items", SyncMode::FullRefresh, None, 0, 5000),
            ("public.items", SyncMode::FullRefresh, None, 2, 5000),
            (
                "public.items",
                SyncMode::Incremental,
                Some("updated_at"),
                0,
                5000,
            ),
            (
                "public.items",
                SyncMode::Incremental,
                Some("updated_at"),
                2,
                5000,
            ),
            ("public.items", SyncMode::Incremental, Some("xmin"), 0, 5000),
            ("public.keyless", SyncMode::FullRefresh, None, 0, 700),
            (
                "public.keyless",
                SyncMode::Incremental,
                Some("xmin"),
                0,
                700,
            ),
        ] {
            let options = options(stream, mode, cursor, attempt);
            let report = conformance::run(&source, &options).await;
            assert_eq!(
                report.read.rows().len(),
                rows,
                "{stream} {mode:?} {cursor:?}"
            );
            if stream == "public.items" {
                assert_eq!(
                    report.read.partitions.len(),
                    5,
                    "{stream} {mode:?} {cursor:?}"
                );
            }
        }
    });
}

#[tokio::test]
async fn postgres_errors_say_whether_they_are_transient() {
    let dir = tempfile::tempdir().unwrap();
    // An unknown field is a bad config: permanent.
    let mut bad = config(5432);
    bad["chunk_row"] = json!(10);
    conformance::assert_transient(&PostgresConnector.validate(&bad).unwrap_err(), false);
    // Nothing listens on the port: transient.
    let mut closed = config(inlet_testkit::CLOSED_PORT);
    closed["connect_timeout_secs"] = json!(2);
    let source = conformance::build(&PostgresConnector, closed, dir.path()).await;
    conformance::assert_read_fails(&source, &Options::new("public.items"), true).await;
}
