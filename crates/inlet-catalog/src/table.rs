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
