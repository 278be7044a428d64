//! A Postgres stream registered in a real Glue Data Catalog (moto in server mode serving
//! Glue and S3): exact types from the source, `pg_type` as each column's comment, the
//! partition key with projection; a column added on the primary is a new table version.

use inlet_testkit::{moto::MotoServer, postgres::PgPair};

#[test]
fn a_postgres_table_lands_on_s3_and_is_a_glue_table_with_its_types_and_comments() {
    let Some(moto) = MotoServer::shared() else {
        return;
    };
    let pair = PgPair::start("");
    pair.seed(
        "shop",
        "CREATE TABLE orders (id int PRIMARY KEY, total numeric(12,2), huge numeric(60,10),
           tags text[], placed timestamptz, seen date, n bigint, ok boolean, doc jsonb,
           wait interval, body bytea);
         INSERT INTO orders VALUES (1, 9.99, 1.5, '{a,b}', '2026-12-01 10:00:00+00', '2026-12-01',
           5, true, '{\"k\": 1}', '1 day', '\\x00ff');",
    );
    let p = pair.standby_project("shop", "", "destination = \"raw\"", "");
    p.write_toml(p.config_text() + &moto.destination_toml("raw", "lake-pg", "raw_shop"));
    let run = p.sync_json(&[]);
    assert_eq!(run["outcome"], "succeeded", "{run}");
    assert_eq!(run["streams"]["public.orders"]["rows"], 1, "{run}");
    assert_eq!(
        run["catalog"]["public.orders"]["action"], "created",
        "{run}"
    );

    let t = moto.glue_table("raw_shop", "public_orders");
    let columns: Vec<(String, String, Option<String>)> =
        serde_json::from_value(t["columns"].clone()).unwrap();
    let col = |n: &str| {
        columns
            .iter()
            .find(|(c, _, _)| c == n)
            .unwrap_or_else(|| panic!("no column {n} in {columns:?}"))
            .clone()
    };
    for (name, ty, pg) in [
        ("id", "int", "integer"),
        ("total", "decimal(12,2)", "numeric(12,2)"),
        ("huge", "string", "numeric(60,10)"),
        ("tags", "array<string>", "text[]"),
        ("placed", "timestamp", "timestamp with time zone"),
        ("seen", "date", "date"),
        ("n", "bigint", "bigint"),
        ("ok", "boolean", "boolean"),
        ("doc", "string", "jsonb"),
        ("body", "binary", "bytea"),
    ] {
        let (_, t, comment) = col(name);
        assert_eq!(t, ty, "{name}");
        assert_eq!(comment.as_deref(), Some(pg), "{name}");
    }
    assert_eq!(
        col("wait").1,
        "struct<months:int,days:int,microseconds:bigint>"
    );
    assert_eq!(col("_inlet_extracted_at").1, "timestamp");
    assert_eq!(col("_inlet_run_id").1, "string");
    assert_eq!(
        t["partition_keys"],
        serde_json::json!([["extracted_at", "date"]])
    );
    assert_eq!(
        t["serde"],
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(t["location"], "s3://lake-pg/raw/c/public.orders/");
    let params = &t["parameters"];
    assert_eq!(params["projection.enabled"], "true");
    assert_eq!(params["projection.extracted_at.type"], "date");
    assert!(
        params["projection.extracted_at.range"]
            .as_str()
            .unwrap()
            .ends_with(",NOW"),
        "{params}"
    );
    assert_eq!(
        params["storage.location.template"],
        "s3://lake-pg/raw/c/public.orders/extracted_at=${extracted_at}/"
    );
    assert_eq!(params["inlet.connection"], "c");
    assert_eq!(params["inlet.primary_key"], "id");
    assert_eq!(params["classification"], "parquet");
    let versions = t["versions"].as_u64().unwrap();

    // A column added on the primary reaches the standby, lands, and becomes a new version.
    pair.primary(
        "shop",
        "ALTER TABLE orders ADD COLUMN note varchar(40); INSERT INTO orders (id, note) VALUES (2, 'x');",
    );
    pair.wait_replay();
    let run = p.sync_json(&[]);
    assert_eq!(
        run["catalog"]["public.orders"]["action"], "updated",
        "{run}"
    );
    let t = moto.glue_table("raw_shop", "public_orders");
    let columns: Vec<(String, String, Option<String>)> =
        serde_json::from_value(t["columns"].clone()).unwrap();
    assert!(
        columns.iter().any(|(c, ty, pg)| c == "note"
            && ty == "string"
            && pg.as_deref() == Some("character varying(40)")),
        "{columns:?}"
    );
    assert!(t["versions"].as_u64().unwrap() > versions, "{t}");
    assert_eq!(t["parameters"]["inlet.schema_version"], "2");
}
