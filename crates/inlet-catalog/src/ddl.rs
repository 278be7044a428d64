//! `CREATE` statements for a table and its current-state view, per engine.
//!
//! Every engine gets the same names, column types and partitioning. How each finds new
//! `extracted_at=` partitions without a statement per partition:
//! - Athena: partition projection (the table's `projection.*` properties).
//! - Trino (Hive connector): partition projection too, from the same properties
//!   (the catalog's `hive.partition-projection-enabled`); a Trino without it runs the
//!   printed `system.sync_partition_metadata` after each sync.
//! - Spark: the table is created with the catalog not tracking its partitions
//!   (`spark.sql.hive.manageFilesourcePartitions=false` while it is created), so Spark lists
//!   the folders at each query, as for a path.
//! - Hive: no projection; the printed `MSCK REPAIR TABLE` adds new partitions and must run
//!   after each sync.
//! - DuckDB: a view over `read_parquet` with Hive partitioning, which lists at each query.

use std::fmt::Write as _;

use crate::{Engine, HiveType, Table, table};

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// An identifier, quoted as the engine quotes them.
fn ident(name: &str, engine: Engine) -> String {
    match engine {
        Engine::Athena | Engine::Spark | Engine::Hive => {
            format!("`{}`", name.replace('`', "``"))
        }
        Engine::Trino | Engine::Duckdb => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A struct field name inside a Hive type string: bare when it is a plain identifier.
fn hive_field(name: &str) -> String {
    if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// The type as the engine spells it in DDL.
pub fn type_sql(ty: &HiveType, engine: Engine) -> String {
    match engine {
        Engine::Athena | Engine::Hive | Engine::Spark => hive_type(ty),
        Engine::Trino => trino_type(ty),
        Engine::Duckdb => duckdb_type(ty),
    }
}

fn hive_type(ty: &HiveType) -> String {
    match ty {
        HiveType::Array(t) => format!("array<{}>", hive_type(t)),
        HiveType::Map(k, v) => format!("map<{},{}>", hive_type(k), hive_type(v)),
        HiveType::Struct(fields) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(n, t)| format!("{}:{}", hive_field(n), hive_type(t)))
                .collect();
            format!("struct<{}>", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn trino_type(ty: &HiveType) -> String {
    match ty {
        HiveType::Boolean => "boolean".into(),
        HiveType::TinyInt => "tinyint".into(),
        HiveType::SmallInt => "smallint".into(),
        HiveType::Int => "integer".into(),
        HiveType::BigInt => "bigint".into(),
        HiveType::Float => "real".into(),
        HiveType::Double => "double".into(),
        HiveType::Decimal(p, s) => format!("decimal({p},{s})"),
        HiveType::String => "varchar".into(),
        HiveType::Binary => "varbinary".into(),
        HiveType::Date => "date".into(),
        // The Hive connector's precision is its `timestamp_precision` setting.
        HiveType::Timestamp => "timestamp".into(),
        HiveType::Array(t) => format!("array({})", trino_type(t)),
        HiveType::Map(k, v) => format!("map({}, {})", trino_type(k), trino_type(v)),
        HiveType::Struct(fields) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(n, t)| format!("{} {}", ident(n, Engine::Trino), trino_type(t)))
                .collect();
            format!("row({})", parts.join(", "))
        }
    }
}

fn duckdb_type(ty: &HiveType) -> String {
    match ty {
        HiveType::Boolean => "BOOLEAN".into(),
        HiveType::TinyInt => "TINYINT".into(),
        HiveType::SmallInt => "SMALLINT".into(),
        HiveType::Int => "INTEGER".into(),
        HiveType::BigInt => "BIGINT".into(),
        HiveType::Float => "FLOAT".into(),
        HiveType::Double => "DOUBLE".into(),
        HiveType::Decimal(p, s) => format!("DECIMAL({p},{s})"),
        HiveType::String => "VARCHAR".into(),
        HiveType::Binary => "BLOB".into(),
        HiveType::Date => "DATE".into(),
        HiveType::Timestamp => "TIMESTAMPTZ".into(),
        HiveType::Array(t) => format!("{}[]", duckdb_type(t)),
        HiveType::Map(k, v) => format!("MAP({}, {})", duckdb_type(k), duckdb_type(v)),
        HiveType::Struct(fields) => {
            let parts: Vec<String> = fields
                .iter()
                .map(|(n, t)| format!("{} {}", ident(n, Engine::Duckdb), duckdb_type(t)))
                .collect();
            format!("STRUCT({})", parts.join(", "))
        }
    }
}

fn qualified(table: &Table, name: &str, engine: Engine) -> String {
    format!("{}.{}", ident(&table.database, engine), ident(name, engine))
}

/// The statement creating the table's database (schema), if missing.
pub fn create_database(database: &str, engine: Engine) -> String {
    match engine {
        Engine::Athena | Engine::Hive | Engine::Spark => {
            format!("CREATE DATABASE IF NOT EXISTS {};", ident(database, engine))
        }
        Engine::Trino | Engine::Duckdb => {
            format!("CREATE SCHEMA IF NOT EXISTS {};", ident(database, engine))
        }
    }
}

fn table_comment(table: &Table) -> String {
    format!(
        "inlet raw stream {}.{} (schema version {})",
        table
            .parameters
            .get("inlet.connection")
            .map(String::as_str)
            .unwrap_or(""),
        table
            .parameters
            .get("inlet.stream")
            .map(String::as_str)
            .unwrap_or(""),
        table
            .parameters
            .get("inlet.schema_version")
            .map(String::as_str)
            .unwrap_or("")
    )
}

/// Column definitions, one a line, with comments.
fn column_lines(table: &Table, engine: Engine, with_partition: bool) -> Vec<String> {
    let mut cols: Vec<&table::Column> = table.columns.iter().collect();
    if with_partition {
        cols.push(&table.partition_key);
    }
    cols.iter()
        .map(|c| {
            let mut line = format!("  {} {}", ident(&c.name, engine), type_sql(&c.ty, engine));
            if let Some(comment) = &c.comment {
                let _ = write!(line, " COMMENT {}", lit(comment));
            }
            line
        })
        .collect()
}

/// Table properties for `TBLPROPERTIES`: all but `EXTERNAL`, which `CREATE EXTERNAL
/// TABLE` sets itself (Hive refuses it as a property).
fn tblproperties(table: &Table) -> String {
    let props: Vec<String> = table
        .parameters
        .iter()
        .filter(|(k, _)| k.as_str() != "EXTERNAL")
        .map(|(k, v)| format!("  {}={}", lit(k), lit(v)))
        .collect();
    format!("TBLPROPERTIES (\n{}\n)", props.join(",\n"))
}

/// `CREATE EXTERNAL TABLE` (or, for DuckDB, a view) over the stream's files, in the
/// engine's dialect, with the statement that creates its database first.
pub fn ddl(table: &Table, engine: Engine) -> String {
    let mut out = String::new();
    let name = qualified(table, &table.name, engine);
    let _ = writeln!(out, "{}", create_database(&table.database, engine));
    match engine {
        Engine::Athena | Engine::Hive => {
            let _ = writeln!(out, "CREATE EXTERNAL TABLE IF NOT EXISTS {name} (");
            let _ = writeln!(out, "{}", column_lines(table, engine, false).join(",\n"));
            let _ = writeln!(out, ")");
            let _ = writeln!(out, "COMMENT {}", lit(&table_comment(table)));
            let p = &table.partition_key;
            let _ = writeln!(
                out,
                "PARTITIONED BY ({} {}{})",
                ident(&p.name, engine),
                type_sql(&p.ty, engine),
                p.comment
                    .as_deref()
                    .map(|c| format!(" COMMENT {}", lit(c)))
                    .unwrap_or_default()
            );
            let _ = writeln!(out, "ROW FORMAT SERDE {}", lit(table::SERDE));
            let _ = writeln!(
                out,
                "STORED AS INPUTFORMAT {}\n  OUTPUTFORMAT {}",
                lit(table::INPUT_FORMAT),
                lit(table::OUTPUT_FORMAT)
            );
            let _ = writeln!(out, "LOCATION {}", lit(&table.location));
            let _ = writeln!(out, "{};", tblproperties(table));
            if engine == Engine::Hive {
                let _ = writeln!(
                    out,
                    "-- Hive has no partition projection: run this after each sync to add new extracted_at partitions."
                );
                let _ = writeln!(out, "MSCK REPAIR TABLE {name};");
            }
        }
        Engine::Trino => {
            let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {name} (");
            let mut lines = column_lines(table, engine, true);
            // Partition projection from the same properties Athena reads.
            if let Some(last) = lines.last_mut() {
                let range = table
                    .parameters
                    .get("projection.extracted_at.range")
                    .map(String::as_str)
                    .unwrap_or("NOW,NOW");
                let bounds: Vec<String> = range.split(',').map(lit).collect();
                let _ = write!(
                    last,
                    " WITH (partition_projection_type = 'DATE', partition_projection_format = 'yyyy-MM-dd', partition_projection_range = ARRAY[{}], partition_projection_interval = 1, partition_projection_interval_unit = 'DAYS')",
                    bounds.join(", ")
                );
            }
            let _ = writeln!(out, "{}", lines.join(",\n"));
            let _ = writeln!(out, ")");
            let _ = writeln!(out, "COMMENT {}", lit(&table_comment(table)));
            let _ = writeln!(out, "WITH (");
            let _ = writeln!(out, "  external_location = {},", lit(&table.location));
            let _ = writeln!(out, "  format = 'PARQUET',");
            let _ = writeln!(
                out,
                "  partitioned_by = ARRAY[{}],",
                lit(&table.partition_key.name)
            );
            let _ = writeln!(out, "  partition_projection_enabled = true,");
            let _ = writeln!(
                out,
                "  partition_projection_location_template = {}",
                lit(table
                    .parameters
                    .get("storage.location.template")
                    .map(String::as_str)
                    .unwrap_or(&table.location))
            );
            let _ = writeln!(out, ");");
            let _ = writeln!(
                out,
                "-- Without partition projection (hive.partition-projection-enabled=false, or a Trino without it), run this after each sync:"
            );
            let _ = writeln!(
                out,
                "-- CALL system.sync_partition_metadata({}, {}, 'ADD');",
                lit(&table.database),
                lit(&table.name)
            );
        }
        Engine::Spark => {
            let _ = writeln!(
                out,
                "-- The catalog does not track this table's partitions: Spark lists extracted_at= folders at each query."
            );
            let _ = writeln!(out, "SET spark.sql.hive.manageFilesourcePartitions=false;");
            let _ = writeln!(out, "CREATE TABLE IF NOT EXISTS {name} (");
            let _ = writeln!(out, "{}", column_lines(table, engine, true).join(",\n"));
            let _ = writeln!(out, ")");
            let _ = writeln!(out, "USING parquet");
            let _ = writeln!(
                out,
                "PARTITIONED BY ({})",
                ident(&table.partition_key.name, engine)
            );
            let _ = writeln!(out, "LOCATION {}", lit(&table.location));
            let _ = writeln!(out, "COMMENT {}", lit(&table_comment(table)));
            let _ = writeln!(out, "{};", tblproperties(table));
            let _ = writeln!(out, "RESET spark.sql.hive.manageFilesourcePartitions;");
        }
        Engine::Duckdb => {
            let _ = writeln!(out, "CREATE OR REPLACE VIEW {name} AS");
            let _ = writeln!(out, "SELECT");
            let mut cols: Vec<String> = table
                .columns
                .iter()
                .map(|c| {
                    let q = ident(&c.name, engine);
                    // Timestamps are left as the files have them: a UTC instant reads as
                    // TIMESTAMPTZ, a zone-less one as TIMESTAMP; a cast would apply the
                    // session's time zone.
                    if c.ty.has_timestamp() {
                        format!("  {q}")
                    } else {
                        format!("  CAST({q} AS {}) AS {q}", duckdb_type(&c.ty))
                    }
                })
                .collect();
            cols.push(format!("  {}", ident(&table.partition_key.name, engine)));
            let _ = writeln!(out, "{}", cols.join(",\n"));
            let _ = writeln!(
                out,
                "FROM read_parquet({}, hive_partitioning = true, union_by_name = true, hive_types = {{{}: {}}});",
                lit(&format!("{}*/*.parquet", duckdb_path(&table.location))),
                lit(&table.partition_key.name),
                duckdb_type(&table.partition_key.ty)
            );
        }
    }
    out
}

/// DuckDB reads local files by path (`file://` URLs are not globbed) and S3 by URL.
fn duckdb_path(location: &str) -> &str {
    location.strip_prefix("file://").unwrap_or(location)
}

/// The current-state view of a table with a primary key: the latest row per key
/// (newest extraction, then newest run; for CDC tables newest change position, with
/// deleted keys dropped). `None` without a primary key.
pub fn current_state_view(table: &Table, engine: Engine) -> Option<String> {
    if table.primary_key.is_empty() {
        return None;
    }
    let q = |n: &str| ident(n, view_dialect(engine));
    let view = qualified_view(table, engine);
    let source = qualified_view_source(table, engine);
    let keys: Vec<String> = table.primary_key.iter().map(|k| q(k)).collect();
    let cdc = table.is_cdc();
    let order = if cdc {
        format!("{} DESC, {} DESC", q(table::EXTRACTED_AT), q(table::LSN))
    } else {
        format!("{} DESC, {} DESC", q(table::EXTRACTED_AT), q(table::RUN_ID))
    };
    let mut cols: Vec<String> = table.columns.iter().map(|c| q(&c.name)).collect();
    cols.push(q(&table.partition_key.name));
    let rank = q("_inlet_rank");
    let mut out = String::new();
    let create = match engine {
        Engine::Hive => format!("DROP VIEW IF EXISTS {view};\nCREATE VIEW {view} AS"),
        _ => format!("CREATE OR REPLACE VIEW {view} AS"),
    };
    let _ = writeln!(out, "{create}");
    let _ = writeln!(out, "SELECT {}", cols.join(", "));
    let _ = writeln!(out, "FROM (");
    let _ = writeln!(
        out,
        "  SELECT *, row_number() OVER (PARTITION BY {} ORDER BY {order}) AS {rank}",
        keys.join(", ")
    );
    let _ = writeln!(out, "  FROM {source}");
    let _ = writeln!(out, ") latest");
    let mut filter = format!("WHERE {rank} = 1");
    if cdc {
        let _ = write!(filter, " AND {} <> 'delete'", q(table::OP));
    }
    let _ = writeln!(out, "{filter};");
    Some(out)
}

/// Athena's views are Trino SQL: double-quoted names.
fn view_dialect(engine: Engine) -> Engine {
    match engine {
        Engine::Athena => Engine::Trino,
        other => other,
    }
}

fn qualified_view(table: &Table, engine: Engine) -> String {
    qualified(
        table,
        &format!("{}_current", table.name),
        view_dialect(engine),
    )
}

fn qualified_view_source(table: &Table, engine: Engine) -> String {
    qualified(table, &table.name, view_dialect(engine))
}
