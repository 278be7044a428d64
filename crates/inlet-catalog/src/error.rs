/// Errors of the catalog model: names, types, schema changes a catalog cannot hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// An Arrow type that Hive, Glue, Athena, Trino and Spark have no type for.
    #[error(
        "table `{table}`, column `{column}`: Arrow type {arrow} has no catalog type (Glue, Athena, Trino, Spark, Hive): {hint}"
    )]
    Unrepresentable {
        /// The table.
        table: String,
        /// The column (a dotted path inside structs).
        column: String,
        /// The Arrow type, as Arrow prints it.
        arrow: String,
        /// What to do.
        hint: String,
    },
    /// An Arrow type with no catalog type, before it is placed in a column
    /// ([`crate::HiveType::from_arrow`]); [`crate::Table::for_stream`] names the column.
    #[error("Arrow type {arrow} has no catalog type (Glue, Athena, Trino, Spark, Hive): {hint}")]
    UnsupportedType {
        /// The Arrow type, as Arrow prints it.
        arrow: String,
        /// What to do.
        hint: String,
    },
    /// Two columns (or struct fields) whose names differ only by case: Glue and Athena
    /// lowercase names, so they would be one column.
    #[error(
        "table `{table}`: columns `{first}` and `{second}` differ only by case, and Glue, Athena and Hive lowercase column names; rename one at the source (a view or a column alias) before it lands"
    )]
    CaseClash {
        /// The table.
        table: String,
        /// The first column.
        first: String,
        /// The second column.
        second: String,
    },
    /// Two streams of one connection map to one table name.
    #[error(
        "connection `{connection}`: streams `{first}` and `{second}` both map to table `{table}`; rename one of the streams (table names keep only a-z, 0-9 and '_')"
    )]
    NameClash {
        /// The connection.
        connection: String,
        /// The first stream.
        first: String,
        /// The second stream.
        second: String,
        /// The table name both map to.
        table: String,
    },
    /// A schema change the catalog cannot apply safely (a narrowed or changed type).
    #[error(
        "table `{table}`, column `{column}`: the table has `{existing}` but the stream landed `{landed}`, which older files cannot be read as; the table is left as it was. {hint}"
    )]
    Unsafe {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The column's type in the table.
        existing: String,
        /// The type that landed.
        landed: String,
        /// What to do.
        hint: String,
    },
    /// A type string (as Glue stores it) that is not a Hive type.
    #[error("catalog type `{text}`: {message}")]
    Parse {
        /// The text.
        text: String,
        /// What is wrong.
        message: String,
    },
    /// A stream that cannot become a table (no columns, a bad record).
    #[error("table `{table}`: {message}")]
    Invalid {
        /// The table.
        table: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A call to the Glue Data Catalog failed (after its retries).
    #[error(transparent)]
    Glue(#[from] crate::glue::GlueError),
    /// The table exists in the catalog but another connection (or not inlet) made it.
    #[error(
        "table `{table}` exists in the catalog but belongs to {owner}, not connection `{connection}`; the table is left as it was. Set `table_prefix` or `database` in the destination's catalog to register under another name, or drop the other table"
    )]
    Owned {
        /// `database.table`.
        table: String,
        /// Who made it (`connection \`x\`` or `something other than inlet`).
        owner: String,
        /// The connection registering.
        connection: String,
    },
    /// What a stream landed could not be read from the lake.
    #[error("stream `{stream}`: cannot read what it landed: {message}")]
    Lake {
        /// The stream.
        stream: String,
        /// The lake's error.
        message: String,
    },
}
