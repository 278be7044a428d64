//! `inlet catalog`: the streams of a connection as tables (`sync`, `show`), and the
//! catalog probes of `inlet check`.

use clap::Subcommand;
use inlet_catalog::{
    CatalogConfig,
    glue::{GlueClient, GlueOptions, GlueTable},
    register,
};
use inlet_core::CheckReport;
use inlet_runtime::{Project, RuntimeError, sync::Connection};
use serde_json::json;

use crate::{exit, output::Output};

/// The `catalog` commands.
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
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

/// Run a `catalog` command.
pub async fn run(project: &Project, out: &Output, cmd: &CatalogCommand) -> anyhow::Result<u8> {
    match cmd {
        CatalogCommand::Sync { connection } => {
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
        CatalogCommand::Show { connection } => {
            let (_, config, options) = open(project, connection).await?;
            let glue = GlueClient::connect(options).await?;
            let database = inlet_catalog::database_name(connection, Some(&config));
            let mut tables: Vec<GlueTable> = glue
                .get_tables(&database)
                .await?
                .into_iter()
                .filter(|t| {
                    t.parameters.get("inlet.connection").map(String::as_str) == Some(connection)
                })
                .collect();
            tables.sort_by(|a, b| a.name.cmp(&b.name));
            show(out, &database, &tables)?;
            Ok(exit::OK)
        }
    }
}

fn show(out: &Output, database: &str, tables: &[GlueTable]) -> anyhow::Result<()> {
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
