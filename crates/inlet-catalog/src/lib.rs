//! # inlet-catalog: raw streams as tables
//!
//! Every stream inlet lands is a folder of Parquet files partitioned by extraction date.
//! Athena, Trino, Spark SQL, Hive and Redshift Spectrum need a *table* over such a
//! folder. This crate is the table model they share, built from what a stream landed
//! (its [`inlet_lake::SchemaRecord`]), and knows no connector:
//!
//! ```text
//! SchemaRecord (every schema landed) --Table::for_stream--> Table --ddl(engine)--> SQL
//!                                      Table::evolve(catalog's, landed) --> Glue (register)
//! ```
//!
//! - names: a database per connection (or the configured one), a table per stream, with
//!   characters catalogs refuse replaced ([`sanitize`]);
//! - types: the Arrow schema as written mapped to Hive/Glue types ([`HiveType`]);
//! - partitioning: `extracted_at` (date) with partition projection parameters, so no
//!   engine that reads them needs a per-partition call;
//! - evolution: added columns appended, widened widened, vanished kept, anything else
//!   refused ([`Table::evolve`]);
//! - registration: [`register`] makes each stream a table of the Glue Data Catalog
//!   through the small client in [`glue`], creating or updating it only when something
//!   changed.
#![deny(missing_docs)]

mod config;
mod ddl;
mod error;
pub mod glue;
pub mod register;
mod table;
mod types;

pub use config::{
    CatalogConfig, CatalogKind, check_table_names, database_name, sanitize, table_name,
};
pub use ddl::{create_database, current_state_view, ddl, type_sql};
pub use error::CatalogError;
pub use table::{
    Column, ColumnChange, EXTRACTED_AT, INPUT_FORMAT, LSN, OP, OUTPUT_FORMAT, PARTITION_COLUMN,
    RUN_ID, SERDE, SOURCE_TYPE_KEY, StreamTable, Table,
};
pub use types::{HiveType, MAX_DECIMAL_PRECISION};

/// The engines `ddl` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Amazon Athena (Hive DDL for the table, Trino SQL for views).
    Athena,
    /// Trino with the Hive connector.
    Trino,
    /// Apache Spark SQL 3.5+.
    Spark,
    /// Apache Hive.
    Hive,
    /// DuckDB (views over `read_parquet`).
    Duckdb,
}

impl Engine {
    /// Every engine.
    pub const ALL: [Engine; 5] = [
        Engine::Athena,
        Engine::Trino,
        Engine::Spark,
        Engine::Hive,
        Engine::Duckdb,
    ];

    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Athena => "athena",
            Engine::Trino => "trino",
            Engine::Spark => "spark",
            Engine::Hive => "hive",
            Engine::Duckdb => "duckdb",
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("engine `{s}`: use one of athena, trino, spark, hive, duckdb"))
    }
}
