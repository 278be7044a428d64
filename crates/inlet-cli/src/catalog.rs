//! `inlet catalog ...`: raw streams as tables. `ddl` prints the statements that make a
//! connection's streams tables (and current-state views) in an engine without a catalog
//! inlet registers in; `sync` registers them in the destination's catalog (Glue) without
//! syncing data, `show` prints what the catalog holds; and the catalog probes of
//! `inlet check`.

use std::{collections::BTreeSet, path::Path};

use anyhow::Context;
use clap::Subcommand;
use inlet_catalog::{
    CatalogConfig, Engine, StreamTable, Table,
    glue::{GlueClient, GlueOptions, GlueTable},
    register,
};
use inlet_core::{CheckReport, Registry};
use inlet_lake::{SchemaRecord, SchemaStore};
use inlet_runtime::{Project, RuntimeError, sync::Connection};
use serde_json::json;

use crate::{exit, output::Output};

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
    /// Register every stream the connection landed in its destination's catalog, without
    /// syncing data (for existing lakes; the same as after a sync).
    Sync {
        /// Connection name.
        connection: String,
    },
    /// Print the connection's tables in the catalog: columns, version, partition projection.
    Show {
        /// Connection name.
        connection: String,
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
        CatalogCommand::Sync { connection } => {
            let project = Project::load(project_path)?;
            sync(&project, &Output { json }, connection).await
        }
        CatalogCommand::Show { connection } => {
            let project = Project::load(project_path)?;
            show(&project, &Output { json }, connection).await
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

/// The connection and its catalog; a config error when its destination has none.
async fn open(
    project: &Project,
    connection: &str,
) -> anyhow::Result<(Connection, CatalogConfig, GlueOptions)> {
    let conn = Connection::open(project, connection).await?;
    let Some((config, options)) = conn.catalog.clone() else {
        return Err(RuntimeError::Config {
            location: format!("connection `{connection}`"),
            message: "its destination has no catalog: add `catalog = { type = \"glue\", database = \"...\", region = \"...\" }` to the destination".into(),
        }
        .into());
    };
    Ok((conn, config, options))
}

/// `inlet catalog sync`: register, print, exit 4 when a stream was not registered.
async fn sync(project: &Project, out: &Output, connection: &str) -> anyhow::Result<u8> {
    let (conn, _, _) = open(project, connection).await?;
    let configured: Vec<String> = conn.config.streams.keys().cloned().collect();
    let results = conn.register_catalog(&configured).await;
    if out.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else if results.is_empty() {
        println!("{connection}: no stream has landed anything yet; nothing to register");
    } else {
        out.catalog_lines(&results);
    }
    let failed = results
        .values()
        .filter(|r| r.action == inlet_lake::CatalogAction::Failed)
        .count();
    if failed > 0 {
        eprintln!("error: {connection}: {failed} stream(s) not registered (see above)");
        return Ok(exit::CATALOG_FAILED);
    }
    Ok(exit::OK)
}

/// `inlet catalog show`: the connection's tables as the catalog holds them.
async fn show(project: &Project, out: &Output, connection: &str) -> anyhow::Result<u8> {
    let (_, config, options) = open(project, connection).await?;
    let glue = GlueClient::connect(options).await?;
    let database = inlet_catalog::database_name(connection, Some(&config));
    let mut tables: Vec<GlueTable> = glue
        .get_tables(&database)
        .await?
        .into_iter()
        .filter(|t| t.parameters.get("inlet.connection").map(String::as_str) == Some(connection))
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    print_tables(out, &database, &tables)?;
    Ok(exit::OK)
}

fn print_tables(out: &Output, database: &str, tables: &[GlueTable]) -> anyhow::Result<()> {
    if out.json {
        let v: Vec<_> = tables
            .iter()
            .map(|t| {
                json!({
                    "database": database,
                    "table": t.name,
                    "version": t.version_id,
                    "location": t.storage_descriptor.location,
                    "columns": t.storage_descriptor.columns,
                    "partition_keys": t.partition_keys,
                    "parameters": t.parameters,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if tables.is_empty() {
        println!("{database}: no table of this connection yet (run `inlet catalog sync`)");
    }
    for t in tables {
        let p = |k: &str| t.parameters.get(k).map_or("-", String::as_str);
        println!(
            "{database}.{} (version {}, schema version {}) at {}",
            t.name,
            t.version_id.as_deref().unwrap_or("-"),
            p("inlet.schema_version"),
            t.storage_descriptor.location.as_deref().unwrap_or("-"),
        );
        for c in &t.storage_descriptor.columns {
            println!(
                "  {:<28} {:<24} {}",
                c.name,
                c.ty,
                c.comment.as_deref().unwrap_or("")
            );
        }
        for k in &t.partition_keys {
            println!(
                "  {:<28} {:<24} partition, projected {} ({}), {}",
                k.name,
                k.ty,
                p("projection.extracted_at.range"),
                p("projection.extracted_at.format"),
                p("storage.location.template"),
            );
        }
    }
    Ok(())
}

/// The catalog's part of `inlet check`: reads, a write probe, and on a denial the IAM
/// policy to grant.
pub async fn check(
    report: &mut CheckReport,
    connection: &str,
    config: &CatalogConfig,
    options: &GlueOptions,
) {
    let glue = match GlueClient::connect(options.clone()).await {
        Ok(g) => g,
        Err(e) => {
            report.push("catalog: client", false, e.to_string());
            return;
        }
    };
    let probes = register::check(&glue, connection, config).await;
    let denied = probes.iter().any(|p| !p.ok);
    for p in probes {
        report.push(p.name, p.ok, p.detail);
    }
    if denied {
        report.push(
            "catalog: IAM policy",
            false,
            format!(
                "grant the credentials inlet uses this policy (replace ACCOUNT_ID):\n{}",
                register::iam_policy(connection, config, glue.region())
            ),
        );
    }
}
