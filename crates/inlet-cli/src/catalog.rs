//! `inlet catalog ...`: raw streams as tables. `ddl` prints the statements that make a
//! connection's streams tables (and current-state views) in an engine without a catalog
//! inlet registers in.

use std::{collections::BTreeSet, path::Path};

use anyhow::Context;
use clap::Subcommand;
use inlet_catalog::{Engine, StreamTable, Table};
use inlet_core::Registry;
use inlet_lake::{SchemaRecord, SchemaStore};
use inlet_runtime::{Project, sync::Connection};

/// `inlet catalog` subcommands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Print CREATE TABLE (or view) statements and current-state views for a connection's
    /// streams, for engines inlet does not register tables in.
    Ddl {
        /// Connection name.
        connection: String,
        /// Only this stream (repeatable; default: every stream the connection has landed).
        #[arg(long = "stream", short = 's')]
        streams: Vec<String>,
        /// The SQL dialect: athena, trino, spark, hive, duckdb.
        #[arg(long, value_parser = parse_engine)]
        engine: Engine,
    },
}

fn parse_engine(s: &str) -> Result<Engine, String> {
    s.parse()
}

/// One stream's statements.
#[derive(Debug, serde::Serialize)]
struct StreamDdl {
    stream: String,
    table: String,
    primary_key: Vec<String>,
    ddl: String,
    current_state_view: Option<String>,
}

/// Run an `inlet catalog` subcommand.
pub async fn run(
    project_path: &Path,
    registry: &Registry,
    json: bool,
    cmd: &CatalogCommand,
) -> anyhow::Result<u8> {
    match cmd {
        CatalogCommand::Ddl {
            connection,
            streams,
            engine,
        } => {
            let project = Project::load(project_path)?;
            let conn = Connection::open(&project, connection).await?;
            let config = project
                .destination_of(connection, &conn.config)?
                .1
                .catalog
                .clone();
            let tables = tables(&project, registry, &conn, streams, config.as_ref()).await?;
            let out: Vec<StreamDdl> = tables
                .iter()
                .map(|(stream, t)| StreamDdl {
                    stream: stream.clone(),
                    table: t.qualified_name(),
                    primary_key: t.primary_key.clone(),
                    ddl: inlet_catalog::ddl(t, *engine),
                    current_state_view: inlet_catalog::current_state_view(t, *engine),
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for s in &out {
                    println!("-- {connection}/{}: table {}", s.stream, s.table);
                    println!("{}", s.ddl);
                    match &s.current_state_view {
                        Some(view) => {
                            println!("-- the latest row per primary key");
                            println!("{view}");
                        }
                        None => println!("-- no primary key: no current-state view\n"),
                    }
                }
            }
            Ok(0)
        }
    }
}

/// The tables of a connection's streams (the named ones, or every stream with a schema
/// record or in the state), built from their schema records, or from the files' footers
/// where a lake has no record yet.
pub async fn tables(
    project: &Project,
    registry: &Registry,
    conn: &Connection,
    only: &[String],
    config: Option<&inlet_catalog::CatalogConfig>,
) -> anyhow::Result<Vec<(String, Table)>> {
    let store = SchemaStore::new(conn.storage.clone());
    let names: BTreeSet<String> = if only.is_empty() {
        let mut names: BTreeSet<String> = store
            .streams(&conn.name)
            .await
            .map_err(|e| conn.lake_error(e))?
            .into_iter()
            .collect();
        let state = inlet_runtime::ops::show(project, &conn.name).await?;
        names.extend(state.streams.keys().cloned());
        names
    } else {
        only.iter().cloned().collect()
    };
    inlet_catalog::check_table_names(&conn.name, names.iter().map(String::as_str), config)?;
    let mut out = Vec::new();
    let mut discovered: Option<inlet_core::Catalog> = None;
    for stream in names {
        let record = match store
            .load(&conn.name, &stream)
            .await
            .map_err(|e| conn.lake_error(e))?
        {
            Some(r) => r,
            None => {
                let Some(mut r) = store
                    .scan(&conn.name, &stream)
                    .await
                    .map_err(|e| conn.lake_error(e))?
                else {
                    if only.is_empty() {
                        continue;
                    }
                    anyhow::bail!(
                        "stream `{stream}` of connection `{}` has landed no files yet; sync it first",
                        conn.name
                    );
                };
                // A lake from before schema records: the source knows the primary key.
                if discovered.is_none() {
                    discovered = discover(project, registry, conn).await;
                }
                if let Some(d) = discovered
                    .as_ref()
                    .and_then(|c| c.streams.iter().find(|d| d.name == stream))
                {
                    r.primary_key = d.primary_key.clone();
                }
                r
            }
        };
        let table = table_of(conn, &stream, &record, config)
            .with_context(|| format!("stream `{stream}` of connection `{}`", conn.name))?;
        out.push((stream, table));
    }
    Ok(out)
}

fn table_of(
    conn: &Connection,
    stream: &str,
    record: &SchemaRecord,
    config: Option<&inlet_catalog::CatalogConfig>,
) -> Result<Table, inlet_catalog::CatalogError> {
    let url = conn.storage.url();
    Table::for_stream(&StreamTable {
        connection: &conn.name,
        stream,
        record,
        primary_key: &record.primary_key,
        lake_url: &url,
        config,
    })
}

async fn discover(
    project: &Project,
    registry: &Registry,
    conn: &Connection,
) -> Option<inlet_core::Catalog> {
    let result = async {
        let source = conn.build_source(project, registry).await?;
        source
            .discover()
            .await
            .map_err(|e| conn.source_error(None, e))
    }
    .await;
    match result {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(connection = %conn.name, error = %e, "no schema record and the source cannot be discovered: streams get no primary key (no current-state view)");
            None
        }
    }
}
