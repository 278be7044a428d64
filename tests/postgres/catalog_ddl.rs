//! `inlet catalog ddl`: the printed DuckDB and Spark statements run in DuckDB and in a real
//! Spark (pyspark) over a lake landed in two runs, with changed rows and an added column;
//! the Athena, Trino and Hive forms are checked against the same table as text.

use std::time::Instant;

use inlet_testkit::{lake::outside_python, lake::python, postgres::PgPair};

const SETUP: &str = "
CREATE TABLE public.orders (id int PRIMARY KEY, total numeric(12,2), note text, placed timestamptz, tags text[]);
INSERT INTO public.orders VALUES
  (1, 10.50, 'first', '2026-01-01 10:00:00.123456+00', '{x,y}'),
  (2, 20.00, 'it''s', '2026-02-01 23:59:59+02', '{}'),
  (3, NULL, NULL, NULL, NULL);
";

const CHANGE: &str = "
ALTER TABLE public.orders ADD COLUMN status text;
UPDATE public.orders SET total = 11.25, note = 'changed' WHERE id = 1;
UPDATE public.orders SET status = 'paid' WHERE id = 2;
INSERT INTO public.orders VALUES (4, 0.01, 'new', '2026-03-01 00:00:00+00', '{z}', 'open');
";

/// Postgres' rows as the engines are asked to render them.
const PG_ROWS: &str = "SELECT id::text, total::text, note, to_char(placed AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), array_to_string(tags, '|'), status FROM public.orders ORDER BY id";

fn rows(json: &str) -> Vec<Vec<Option<String>>> {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

#[test]
fn printed_ddl_and_current_state_views_run_in_duckdb_and_spark() {
    let Some(py) = outside_python() else { return };
    let pair = PgPair::start("");
    pair.seed("shop", SETUP);
    let p = pair.standby_project("shop", "", "", "");
    let first = p.sync_json(&[]);
    assert_eq!(first["outcome"], "succeeded", "{first}");
    pair.primary("shop", CHANGE);
    pair.wait_replay();
    let second = p.sync_json(&[]);
    assert_eq!(second["outcome"], "succeeded", "{second}");
    let landed: u64 = [&first, &second]
        .iter()
        .map(|r| r["streams"]["public.orders"]["rows"].as_u64().unwrap())
        .sum();
    let expected = pair.primary("shop", PG_ROWS);
    assert_eq!(expected.len(), 4);

    let ddl = |engine: &str| {
        p.ok(&[
            "catalog",
            "ddl",
            "c",
            "--stream",
            "public.orders",
            "--engine",
            engine,
        ])
    };
    let duck = ddl("duckdb");
    let spark = ddl("spark");
    let dir = p.root().to_path_buf();
    std::fs::write(dir.join("duck.sql"), &duck).unwrap();
    std::fs::write(dir.join("spark.sql"), &spark).unwrap();

    // DuckDB: the view and the current-state view, types and every value.
    let out = python(
        &py,
        &format!(
            r#"
import duckdb, json
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(open({sql:?}).read())
types = [(r[0], r[1]) for r in con.execute('DESCRIBE c.public_orders').fetchall()]
q = "SELECT id::VARCHAR, total::VARCHAR, note, strftime(placed, '%Y-%m-%d %H:%M:%S.%f'), array_to_string(tags, '|'), status FROM c.{{}} ORDER BY id"
current = con.execute(q.format('public_orders_current')).fetchall()
total = con.execute('SELECT count(*), count(DISTINCT _inlet_run_id) FROM c.public_orders').fetchone()
print(json.dumps({{"types": types, "current": current, "total": total}}))
"#,
            sql = dir.join("duck.sql").display().to_string()
        ),
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let types: Vec<(String, String)> = serde_json::from_value(v["types"].clone()).unwrap();
    let types: Vec<String> = types.iter().map(|(n, t)| format!("{n} {t}")).collect();
    assert_eq!(
        types,
        [
            "id INTEGER",
            "total DECIMAL(12,2)",
            "note VARCHAR",
            "placed TIMESTAMP WITH TIME ZONE",
            "tags VARCHAR[]",
            "_inlet_extracted_at TIMESTAMP WITH TIME ZONE",
            "_inlet_run_id VARCHAR",
            "status VARCHAR",
            "extracted_at DATE",
        ]
    );
    assert_eq!(
        rows(&v["current"].to_string()),
        expected,
        "duckdb: one row per key, newest values"
    );
    assert_eq!(v["total"], serde_json::json!([landed, 2]));

    // Spark 3.5: the same statements, one at a time, in a local session.
    let started = Instant::now();
    let out = python(
        &py,
        &format!(
            r#"
import json
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master('local[1]').appName('inlet-ddl')
         .config('spark.sql.session.timeZone', 'UTC').config('spark.ui.enabled', 'false')
         .config('spark.sql.warehouse.dir', {wh:?}).config('spark.driver.extraJavaOptions', '-Dderby.system.home={wh}')
         .getOrCreate())
spark.sparkContext.setLogLevel('ERROR')
text = '\n'.join(l for l in open({sql:?}).read().splitlines() if not l.startswith('--'))
for stmt in text.split(';\n'):
    if stmt.strip():
        spark.sql(stmt.strip().rstrip(';'))
types = [(r.col_name, r.data_type) for r in spark.sql('DESCRIBE c.public_orders').collect() if r.col_name and not r.col_name.startswith('#')]
q = "SELECT CAST(id AS STRING), CAST(total AS STRING), note, date_format(placed, 'yyyy-MM-dd HH:mm:ss.SSSSSS'), array_join(tags, '|'), status FROM c.{{}} ORDER BY id"
current = [list(r) for r in spark.sql(q.format('public_orders_current')).collect()]
total = list(spark.sql('SELECT count(*), count(DISTINCT _inlet_run_id) FROM c.public_orders').collect()[0])
print(json.dumps({{"types": types, "current": current, "total": total}}))
"#,
            sql = dir.join("spark.sql").display().to_string(),
            wh = dir.join("spark-warehouse").display().to_string()
        ),
    );
    eprintln!(
        "the Spark check took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap();
    let types: Vec<(String, String)> = serde_json::from_value(v["types"].clone()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let types: Vec<String> = types
        .iter()
        .filter(|(n, _)| seen.insert(n.clone()))
        .map(|(n, t)| format!("{n} {t}"))
        .collect();
    assert_eq!(
        types,
        [
            "id int",
            "total decimal(12,2)",
            "note string",
            "placed timestamp",
            "tags array<string>",
            "_inlet_extracted_at timestamp",
            "_inlet_run_id string",
            "status string",
            "extracted_at date",
        ]
    );
    assert_eq!(
        rows(&v["current"].to_string()),
        expected,
        "spark: one row per key, newest values"
    );
    assert_eq!(v["total"], serde_json::json!([landed, 2]));

    // Athena, Trino, Hive: the same table as text.
    let athena = ddl("athena");
    for part in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `c`.`public_orders`",
        "`total` decimal(12,2) COMMENT 'numeric(12,2)'",
        "`tags` array<string>",
        "`status` string",
        "PARTITIONED BY (`extracted_at` date",
        "'projection.enabled'='true'",
        "'inlet.primary_key'='id'",
        "'inlet.schema_version'='2'",
        "CREATE OR REPLACE VIEW \"c\".\"public_orders_current\"",
    ] {
        assert!(athena.contains(part), "athena lacks {part}: {athena}");
    }
    let location = format!(
        "LOCATION 'file://{}/c/public.orders/'",
        p.lake().canonicalize().unwrap().display()
    );
    assert!(athena.contains(&location), "{location} in {athena}");
    let trino = ddl("trino");
    for part in [
        "\"total\" decimal(12,2)",
        "\"tags\" array(varchar)",
        "\"id\" integer",
        "partitioned_by = ARRAY['extracted_at']",
    ] {
        assert!(trino.contains(part), "trino lacks {part}: {trino}");
    }
    let hive = ddl("hive");
    assert!(
        hive.contains("MSCK REPAIR TABLE `c`.`public_orders`;"),
        "{hive}"
    );
}
