//! A stream as a catalog table: columns, partitioning, location and parameters, and how a
//! table evolves when the stream's schema changes.

use std::collections::BTreeMap;

use arrow_schema::Schema;
use inlet_lake::SchemaRecord;

use crate::{CatalogConfig, CatalogError, HiveType, config};

/// Parquet SerDe of every table.
pub const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// Input format of every table.
pub const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
/// Output format of every table.
pub const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
/// The partition column: the UTC extraction date of the `extracted_at=YYYY-MM-DD` folders.
pub const PARTITION_COLUMN: &str = "extracted_at";
/// Lineage column: when the row was extracted.
pub const EXTRACTED_AT: &str = "_inlet_extracted_at";
/// Lineage column: the run that extracted the row.
pub const RUN_ID: &str = "_inlet_run_id";
/// CDC column (issue 11): the change's log position, a string that sorts in log order.
pub const LSN: &str = "_inlet_lsn";
/// CDC column (issue 11): `snapshot`, `insert`, `update`, `delete` or `truncate`.
pub const OP: &str = "_inlet_op";
/// The field metadata key whose value becomes the column comment.
pub const SOURCE_TYPE_KEY: &str = "pg_type";

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The name, as the Parquet files have it.
    pub name: String,
    /// The type.
    pub ty: HiveType,
    /// The source's type (`pg_type` field metadata), or what a lineage column holds.
    pub comment: Option<String>,
}

/// A stream as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The database (Glue) or schema.
    pub database: String,
    /// The table's name.
    pub name: String,
    /// The stream's folder; ends in `/`.
    pub location: String,
    /// Data and lineage columns, in file order; columns added later come after.
    pub columns: Vec<Column>,
    /// The partition column (`extracted_at`, a date).
    pub partition_key: Column,
    /// The stream's primary key (empty: none).
    pub primary_key: Vec<String>,
    /// Table parameters: `classification`, `projection.*`, `storage.location.template`,
    /// `inlet.*` (see [`Table::for_stream`]).
    pub parameters: BTreeMap<String, String>,
}

/// What a stream landed, for building its table.
#[derive(Debug, Clone, Copy)]
pub struct StreamTable<'a> {
    /// The connection (source) name.
    pub connection: &'a str,
    /// The stream.
    pub stream: &'a str,
    /// Every schema it landed.
    pub record: &'a SchemaRecord,
    /// Its primary key (empty: none).
    pub primary_key: &'a [String],
    /// `Storage::url()` of the raw root (`s3://bucket/raw`, `file:///srv/lake`).
    pub lake_url: &'a str,
    /// The destination's catalog settings (names).
    pub config: Option<&'a CatalogConfig>,
}

/// A change [`Table::evolve`] made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnChange {
    /// A column was appended.
    Added(String),
    /// A column's type was widened.
    Widened {
        /// The column.
        column: String,
        /// Its type before.
        from: HiveType,
        /// Its type now.
        to: HiveType,
    },
}

impl std::fmt::Display for ColumnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ColumnChange::Added(c) => write!(f, "added `{c}`"),
            ColumnChange::Widened { column, from, to } => {
                write!(f, "widened `{column}` from {from} to {to}")
            }
        }
    }
}

/// The columns of one schema; all-null columns are left out.
fn columns(table: &str, schema: &Schema) -> Result<Vec<Column>, CatalogError> {
    let mut out = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let ty = HiveType::from_arrow(field.data_type()).map_err(|e| match e {
            CatalogError::UnsupportedType { arrow, hint } => CatalogError::Unrepresentable {
                table: table.to_string(),
                column: field.name().clone(),
                arrow,
                hint,
            },
            other => other,
        })?;
        let Some(ty) = ty else { continue };
        let comment = match field.name().as_str() {
            EXTRACTED_AT => Some("inlet: when the row was extracted (UTC)".to_string()),
            RUN_ID => Some("inlet: the run that extracted the row".to_string()),
            _ => field.metadata().get(SOURCE_TYPE_KEY).cloned(),
        };
        out.push(Column {
            name: field.name().clone(),
            ty,
            comment,
        });
    }
    check_case(table, &out)?;
    Ok(out)
}

/// Names that differ only by case are one name to Glue; in structs too.
fn check_case(table: &str, columns: &[Column]) -> Result<(), CatalogError> {
    fn check<'a>(
        table: &str,
        prefix: &str,
        names: impl Iterator<Item = (&'a str, &'a HiveType)>,
    ) -> Result<(), CatalogError> {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, ty) in names {
            let path = format!("{prefix}{name}");
            if let Some(first) = seen.insert(name.to_ascii_lowercase(), path.clone()) {
                return Err(CatalogError::CaseClash {
                    table: table.to_string(),
                    first,
                    second: path,
                });
            }
            nested(table, &path, ty)?;
        }
        Ok(())
    }
    fn nested(table: &str, path: &str, ty: &HiveType) -> Result<(), CatalogError> {
        match ty {
            HiveType::Struct(fields) => check(
                table,
                &format!("{path}."),
                fields.iter().map(|(n, t)| (n.as_str(), t)),
            ),
            HiveType::Array(t) => nested(table, path, t),
            HiveType::Map(k, v) => {
                nested(table, path, k)?;
                nested(table, path, v)
            }
            _ => Ok(()),
        }
    }
    check(table, "", columns.iter().map(|c| (c.name.as_str(), &c.ty)))
}

impl Table {
    /// The table of a stream: its name and database ([`crate::table_name`],
    /// [`crate::database_name`]), the columns of every schema it landed (oldest first,
    /// folded as [`Table::evolve`] folds them: added columns appended, widened widened,
    /// vanished kept), `extracted_at` as a date partition with projection parameters from
    /// the first landed date to `NOW`, and the parameters naming inlet, the connection,
    /// the stream, the schema version and the primary key.
    pub fn for_stream(s: &StreamTable<'_>) -> Result<Table, CatalogError> {
        let name = config::table_name(s.stream, s.config);
        let database = config::database_name(s.connection, s.config);
        let location = format!(
            "{}/{}",
            s.lake_url.trim_end_matches('/'),
            inlet_lake::layout::stream_prefix(s.connection, s.stream)
        );
        let mut versions = s.record.versions.iter();
        let Some(first) = versions.next() else {
            return Err(CatalogError::Invalid {
                table: name,
                message: "the stream has landed no schema yet; sync it first".into(),
            });
        };
        let mut table = Table {
            database,
            name: name.clone(),
            location: location.clone(),
            columns: columns(&name, &first.schema)?,
            partition_key: Column {
                name: PARTITION_COLUMN.to_string(),
                ty: HiveType::Date,
                comment: Some("inlet: the UTC extraction date (partition)".to_string()),
            },
            primary_key: s.primary_key.to_vec(),
            parameters: BTreeMap::new(),
        };
        for version in versions {
            let landed = Table {
                columns: columns(&name, &version.schema)?,
                ..table.clone()
            };
            table = Table::evolve(&table, &landed)?.0;
        }
        let first_date = s.record.first_date.format("%Y-%m-%d").to_string();
        let p = &mut table.parameters;
        for (k, v) in [
            ("classification", "parquet".to_string()),
            ("EXTERNAL", "TRUE".to_string()),
            ("projection.enabled", "true".to_string()),
            ("projection.extracted_at.type", "date".to_string()),
            ("projection.extracted_at.format", "yyyy-MM-dd".to_string()),
            ("projection.extracted_at.range", format!("{first_date},NOW")),
            ("projection.extracted_at.interval", "1".to_string()),
            ("projection.extracted_at.interval.unit", "DAYS".to_string()),
            (
                "storage.location.template",
                format!("{location}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/"),
            ),
            ("inlet.connection", s.connection.to_string()),
            ("inlet.stream", s.stream.to_string()),
            (
                "inlet.schema_version",
                s.record.latest().version.to_string(),
            ),
            ("inlet.primary_key", s.primary_key.join(",")),
            ("created_by", "inlet".to_string()),
        ] {
            p.insert(k.to_string(), v);
        }
        Ok(table)
    }

    /// `existing` (as read back from a catalog) brought up to what `landed`: columns it
    /// lacks are appended, columns whose type widens ([`HiveType::widens_to`]) are
    /// widened, columns that vanished are kept (older files hold them). Names match
    /// case-insensitively, as Glue stores them lowercase. Any other change is
    /// [`CatalogError::Unsafe`] naming the column and both types. Everything but the
    /// columns is taken from `landed`.
    pub fn evolve(
        existing: &Table,
        landed: &Table,
    ) -> Result<(Table, Vec<ColumnChange>), CatalogError> {
        let mut columns = existing.columns.clone();
        let mut changes = Vec::new();
        for new in &landed.columns {
            match columns
                .iter_mut()
                .find(|c| c.name.eq_ignore_ascii_case(&new.name))
            {
                Some(old) if old.ty == new.ty => {
                    if new.comment.is_some() {
                        old.comment = new.comment.clone();
                    }
                }
                Some(old) if old.ty.widens_to(&new.ty) => {
                    changes.push(ColumnChange::Widened {
                        column: old.name.clone(),
                        from: old.ty.clone(),
                        to: new.ty.clone(),
                    });
                    old.ty = new.ty.clone();
                    if new.comment.is_some() {
                        old.comment = new.comment.clone();
                    }
                }
                // Narrowing back to what older files hold: the wider type reads both.
                Some(old) if new.ty.widens_to(&old.ty) => {}
                Some(old) => {
                    return Err(CatalogError::Unsafe {
                        table: format!("{}.{}", landed.database, landed.name),
                        column: old.name.clone(),
                        existing: old.ty.to_string(),
                        landed: new.ty.to_string(),
                        hint: "Land the stream under a new name (or a new connection) so the new type is a new table, or cast the column to its old type in the source query.".to_string(),
                    });
                }
                None => {
                    changes.push(ColumnChange::Added(new.name.clone()));
                    columns.push(new.clone());
                }
            }
        }
        if columns
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&landed.partition_key.name))
        {
            return Err(CatalogError::Invalid {
                table: format!("{}.{}", landed.database, landed.name),
                message: format!(
                    "a column is named `{}`, the partition column; rename it in the source query",
                    landed.partition_key.name
                ),
            });
        }
        check_case(&landed.name, &columns)?;
        Ok((
            Table {
                columns,
                ..landed.clone()
            },
            changes,
        ))
    }

    /// Whether the table has the CDC columns (`_inlet_lsn` and `_inlet_op`).
    pub fn is_cdc(&self) -> bool {
        let has = |n: &str| self.columns.iter().any(|c| c.name == n);
        has(LSN) && has(OP)
    }

    /// `<database>.<table>`, for messages.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use arrow_schema::{DataType, Field, TimeUnit};
    use chrono::{NaiveDate, Utc};
    use inlet_lake::{SchemaRecord, SchemaVersion};

    use super::*;
    use crate::{Engine, current_state_view, ddl};

    fn version(n: u64, fields: Vec<Field>) -> SchemaVersion {
        let mut fields = fields;
        fields.push(Field::new(
            EXTRACTED_AT,
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ));
        fields.push(Field::new(RUN_ID, DataType::Utf8, false));
        let schema = Schema::new(fields);
        SchemaVersion {
            version: n,
            fingerprint: format!("f{n}"),
            schema,
            run_id: format!("r{n}"),
            at: Utc::now(),
        }
    }

    fn record(versions: Vec<SchemaVersion>) -> SchemaRecord {
        SchemaRecord {
            stream: "public.orders".into(),
            first_date: NaiveDate::from_ymd_opt(2026, 11, 3).unwrap(),
            versions,
            primary_key: vec!["id".into()],
        }
    }

    fn pg(name: &str, ty: DataType, pg_type: &str) -> Field {
        Field::new(name, ty, true).with_metadata(HashMap::from([(
            "pg_type".to_string(),
            pg_type.to_string(),
        )]))
    }

    fn table(r: &SchemaRecord) -> Result<Table, CatalogError> {
        Table::for_stream(&StreamTable {
            connection: "shop-eu",
            stream: "public.orders",
            record: r,
            primary_key: &r.primary_key,
            lake_url: "s3://bucket/raw/",
            config: None,
        })
    }

    #[test]
    fn a_stream_becomes_a_partitioned_projected_table() {
        let r = record(vec![
            version(
                1,
                vec![
                    pg("id", DataType::Int32, "integer"),
                    pg("total", DataType::Decimal128(12, 2), "numeric(12,2)"),
                    Field::new("gone", DataType::Utf8, true),
                    Field::new("nothing", DataType::Null, true),
                ],
            ),
            version(
                2,
                vec![
                    pg("id", DataType::Int64, "bigint"),
                    pg("total", DataType::Decimal128(12, 2), "numeric(12,2)"),
                    Field::new("note", DataType::Utf8, true),
                ],
            ),
        ]);
        let t = table(&r).unwrap();
        assert_eq!(
            (t.database.as_str(), t.name.as_str()),
            ("shop_eu", "public_orders")
        );
        assert_eq!(t.location, "s3://bucket/raw/shop-eu/public.orders/");
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{}:{}", c.name, c.ty))
            .collect();
        assert_eq!(
            cols,
            [
                "id:bigint",
                "total:decimal(12,2)",
                "gone:string",
                "_inlet_extracted_at:timestamp",
                "_inlet_run_id:string",
                "note:string"
            ]
        );
        assert_eq!(t.columns[0].comment.as_deref(), Some("bigint"));
        assert_eq!(t.partition_key.name, "extracted_at");
        assert_eq!(t.partition_key.ty, HiveType::Date);
        let p = |k: &str| t.parameters.get(k).map(String::as_str);
        assert_eq!(p("projection.extracted_at.range"), Some("2026-11-03,NOW"));
        assert_eq!(
            p("storage.location.template"),
            Some("s3://bucket/raw/shop-eu/public.orders/extracted_at=${extracted_at}/")
        );
        assert_eq!(p("inlet.schema_version"), Some("2"));
        assert_eq!(p("inlet.primary_key"), Some("id"));
        assert_eq!(p("classification"), Some("parquet"));
        assert_eq!(p("EXTERNAL"), Some("TRUE"));
        assert_eq!(p("created_by"), Some("inlet"));
        for key in [
            "projection.enabled",
            "projection.extracted_at.type",
            "projection.extracted_at.format",
            "projection.extracted_at.interval",
            "projection.extracted_at.interval.unit",
            "inlet.connection",
            "inlet.stream",
        ] {
            assert!(p(key).is_some(), "{key}");
        }
    }

    #[test]
    fn unsafe_changes_and_case_clashes_are_refused_with_names() {
        let r = record(vec![
            version(1, vec![Field::new("id", DataType::Int64, true)]),
            version(2, vec![Field::new("id", DataType::Utf8, true)]),
        ]);
        let err = table(&r).unwrap_err().to_string();
        assert!(
            err.contains("`id`") && err.contains("bigint") && err.contains("string"),
            "{err}"
        );
        let r = record(vec![version(
            1,
            vec![
                Field::new("Id", DataType::Int64, true),
                Field::new("id", DataType::Int64, true),
            ],
        )]);
        let err = table(&r).unwrap_err().to_string();
        assert!(
            err.contains("`Id`") && err.contains("`id`") && err.contains("case"),
            "{err}"
        );
        let r = record(vec![version(
            1,
            vec![Field::new(
                "t",
                DataType::Time64(TimeUnit::Microsecond),
                true,
            )],
        )]);
        let err = table(&r).unwrap_err().to_string();
        assert!(err.contains("column `t`") && err.contains("text"), "{err}");
    }

    #[test]
    fn evolve_reports_what_it_changed_and_keeps_vanished_columns() {
        let old = table(&record(vec![version(
            1,
            vec![
                Field::new("a", DataType::Int32, true),
                Field::new("b", DataType::Utf8, true),
            ],
        )]))
        .unwrap();
        let new = table(&record(vec![version(
            1,
            vec![
                Field::new("a", DataType::Int64, true),
                Field::new("c", DataType::Float64, true),
            ],
        )]))
        .unwrap();
        let (t, changes) = Table::evolve(&old, &new).unwrap();
        assert_eq!(
            changes,
            [
                ColumnChange::Widened {
                    column: "a".into(),
                    from: HiveType::Int,
                    to: HiveType::BigInt
                },
                ColumnChange::Added("c".into())
            ]
        );
        let names: Vec<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["a", "b", "_inlet_extracted_at", "_inlet_run_id", "c"]
        );
        let (again, none) = Table::evolve(&t, &new).unwrap();
        assert!(none.is_empty());
        assert_eq!(again, t);
    }

    #[test]
    fn every_engine_gets_the_same_columns_and_partitioning() {
        let mut r = record(vec![version(
            1,
            vec![
                pg("id", DataType::Int64, "bigint"),
                Field::new("it's", DataType::Utf8, true),
                Field::new(
                    "tags",
                    DataType::List(Arc::new(Field::new("element", DataType::Utf8, true))),
                    true,
                ),
            ],
        )]);
        let t = table(&r).unwrap();
        for engine in Engine::ALL {
            let sql = ddl(&t, engine);
            for c in [
                "id",
                "it's",
                "tags",
                "_inlet_extracted_at",
                "_inlet_run_id",
                "extracted_at",
            ] {
                assert!(sql.contains(c), "{engine}: {c} in {sql}");
            }
            assert!(
                sql.contains("shop_eu") && sql.contains("public_orders"),
                "{engine}: {sql}"
            );
            let view = current_state_view(&t, engine).unwrap();
            assert!(view.contains("public_orders_current"), "{engine}: {view}");
            assert!(
                view.contains("PARTITION BY")
                    && view.contains("_inlet_run_id")
                    && view.contains("DESC"),
                "{engine}: {view}"
            );
            assert!(
                !view.contains("delete"),
                "{engine}: no CDC columns, no delete filter"
            );
        }
        let athena = ddl(&t, Engine::Athena);
        assert!(
            athena.contains("CREATE EXTERNAL TABLE IF NOT EXISTS `shop_eu`.`public_orders`"),
            "{athena}"
        );
        assert!(
            athena.contains("PARTITIONED BY (`extracted_at` date"),
            "{athena}"
        );
        assert!(athena.contains("`tags` array<string>"), "{athena}");
        assert!(athena.contains("`id` bigint COMMENT 'bigint'"), "{athena}");
        assert!(
            athena.contains(&format!("ROW FORMAT SERDE '{SERDE}'")),
            "{athena}"
        );
        assert!(
            athena.contains("'projection.extracted_at.range'='2026-11-03,NOW'"),
            "{athena}"
        );
        assert!(
            athena.contains("LOCATION 's3://bucket/raw/shop-eu/public.orders/'"),
            "{athena}"
        );
        assert!(!athena.contains("'EXTERNAL'"), "{athena}");
        assert!(!athena.contains("MSCK"), "{athena}");
        assert!(
            current_state_view(&t, Engine::Athena)
                .unwrap()
                .contains("\"shop_eu\".\"public_orders_current\"")
        );
        let hive = ddl(&t, Engine::Hive);
        assert!(
            hive.contains("MSCK REPAIR TABLE `shop_eu`.`public_orders`;"),
            "{hive}"
        );
        let trino = ddl(&t, Engine::Trino);
        assert!(
            trino.contains("\"tags\" array(varchar)") && trino.contains("\"id\" bigint"),
            "{trino}"
        );
        assert!(
            trino.contains("partitioned_by = ARRAY['extracted_at']"),
            "{trino}"
        );
        assert!(
            trino.contains("external_location = 's3://bucket/raw/shop-eu/public.orders/'"),
            "{trino}"
        );
        assert!(
            trino.contains("partition_projection_range = ARRAY['2026-11-03', 'NOW']"),
            "{trino}"
        );
        let spark = ddl(&t, Engine::Spark);
        assert!(
            spark.contains("USING parquet") && spark.contains("PARTITIONED BY (`extracted_at`)"),
            "{spark}"
        );
        let duck = ddl(&t, Engine::Duckdb);
        assert!(
            duck.contains("read_parquet('s3://bucket/raw/shop-eu/public.orders/*/*.parquet'"),
            "{duck}"
        );
        assert!(
            duck.contains("CAST(\"tags\" AS VARCHAR[]) AS \"tags\""),
            "{duck}"
        );
        assert!(
            duck.contains("hive_types = {'extracted_at': DATE}"),
            "{duck}"
        );

        r.primary_key.clear();
        let keyless = table(&r).unwrap();
        assert!(current_state_view(&keyless, Engine::Duckdb).is_none());

        let cdc = table(&record(vec![version(
            1,
            vec![
                Field::new("id", DataType::Int64, true),
                Field::new(LSN, DataType::Utf8, true),
                Field::new(OP, DataType::Utf8, true),
            ],
        )]))
        .unwrap();
        let view = current_state_view(&cdc, Engine::Spark).unwrap();
        assert!(
            view.contains("`_inlet_extracted_at` DESC, `_inlet_lsn` DESC"),
            "{view}"
        );
        assert!(view.contains("`_inlet_op` <> 'delete'"), "{view}");
    }
}
