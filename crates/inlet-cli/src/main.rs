//! The `inlet` command: arguments, wiring, output. Everything it does is in the
//! libraries; this file only chooses what to call and how to print it.

mod catalog;
mod output;
mod plugin;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use inlet_core::Registry;
use inlet_lake::RunOutcome;
use inlet_runtime::{Project, RuntimeError, SyncOptions, daemon::Stop, ops, sync::Connection};

/// inlet: land data from databases, APIs and files as partitioned Parquet in a lake.
#[derive(Debug, Parser)]
#[command(name = "inlet", version, about)]
struct Cli {
    /// The project file.
    #[arg(
        long,
        short = 'p',
        global = true,
        env = "INLET_PROJECT",
        default_value = "inlet.toml"
    )]
    project: PathBuf,
    /// Print JSON instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// The folder of installed plugins (default: `plugins` beside the project file).
    #[arg(long, global = true, env = "INLET_PLUGINS")]
    plugins: Option<PathBuf>,
    /// Log filter (error, warn, info, debug, or a tracing filter); also RUST_LOG.
    #[arg(long, global = true, env = "INLET_LOG", default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the connectors this inlet knows.
    Connectors,
    /// Print a connector's config schema (JSON Schema).
    Spec {
        /// Connector name.
        connector: String,
    },
    /// Check that a connection can be read (and its lake written).
    Check {
        /// Connection name.
        connection: String,
    },
    /// List a connection's streams, schemas and sync modes.
    Discover {
        /// Connection name.
        connection: String,
    },
    /// Sync one connection, or all.
    Sync {
        /// Connection name (omit with --all).
        connection: Option<String>,
        /// Sync every connection of the project.
        #[arg(long, conflicts_with = "connection")]
        all: bool,
        /// Only this stream (repeatable).
        #[arg(long = "stream", short = 's')]
        streams: Vec<String>,
        /// Ignore saved state and re-extract everything.
        #[arg(long)]
        full_refresh: bool,
    },
    /// Inspect and change connection state.
    #[command(subcommand)]
    State(StateCommand),
    /// Make, build and install WebAssembly plugin connectors.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Raw streams as tables: register them in the catalog, show them, DDL for engines.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Run every scheduled connection on its schedule until SIGTERM/SIGINT.
    Daemon {
        /// Connections running at once.
        #[arg(long, default_value_t = 4)]
        max_concurrent: usize,
        /// Serve /metrics and /healthz on this address (e.g. 127.0.0.1:9464).
        #[arg(long, env = "INLET_METRICS_ADDR")]
        metrics_addr: Option<std::net::SocketAddr>,
        /// After a stop signal, wait this long for runs to reach a checkpoint (30s, 2m).
        #[arg(long, default_value = "60s")]
        shutdown_timeout: String,
        /// Only this connection (repeatable; default: every connection with a schedule).
        #[arg(long = "connection")]
        connections: Vec<String>,
    },
    /// List past runs.
    Runs {
        /// Only this connection.
        connection: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs with this outcome (succeeded, failed, interrupted, running).
        #[arg(long)]
        outcome: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create a plugin project from the template.
    New {
        /// The plugin's name (the connector name connections use).
        name: String,
        /// Where to create it (default: ./<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The inlet-pdk crate to depend on (default: the one of this inlet's source tree).
        #[arg(long)]
        pdk: Option<PathBuf>,
    },
    /// Build a plugin project into a component (`plugin.wasm`).
    Build {
        /// The plugin project (default: the current folder).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check a built plugin and copy it into the plugins folder.
    Install {
        /// The folder with plugin.toml and the built component.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum StateCommand {
    /// Print the current state of a connection.
    Show {
        /// Connection name.
        connection: String,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
    },
    /// Forget the state of one stream or all streams; the next sync re-extracts them.
    Reset {
        /// Connection name.
        connection: String,
        /// Only this stream (default: every stream).
        #[arg(long)]
        stream: Option<String>,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set a stream's cursor by hand (validated by the connector).
    Set {
        /// Connection name.
        connection: String,
        /// Stream name.
        #[arg(long)]
        stream: String,
        /// The new state, as JSON.
        #[arg(long)]
        value: String,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List every change of a connection's state.
    History {
        /// Connection name.
        connection: String,
    },
    /// Restore the state as it was right after version N.
    Rollback {
        /// Connection name.
        connection: String,
        /// The version to restore (see `inlet state history`).
        #[arg(long)]
        to: u64,
        /// Only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn plugin_command(cli: &Cli, cmd: &PluginCommand) -> anyhow::Result<u8> {
    match cmd {
        PluginCommand::New { name, dir, pdk } => {
            let at = plugin::new(name, dir.as_deref(), pdk.as_deref())?;
            println!("created plugin `{name}` in {}", at.display());
            println!(
                "next: edit src/lib.rs and plugin.toml, then `inlet plugin build {}`",
                at.display()
            );
        }
        PluginCommand::Build { dir } => {
            let out = plugin::build(dir)?;
            println!("built {}", out.display());
        }
        PluginCommand::Install { dir } => {
            let target = plugins_dir(cli);
            let m = plugin::install(&plugin_host(cli)?, dir, &target)?;
            println!(
                "installed plugin `{}` {} into {} (hosts: {})",
                m.name,
                m.version,
                target.join(&m.name).display(),
                m.hosts.join(", ")
            );
        }
    }
    Ok(exit::OK)
}

/// Exit codes scripts can rely on.
mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const CONFIG: u8 = 2;
    pub const CHECK_FAILED: u8 = 3;
    /// The data landed, but registering a stream in the catalog failed (the next sync
    /// tries again).
    pub const CATALOG_FAILED: u8 = 4;
    pub const BUSY: u8 = 75;
    pub const INTERRUPTED: u8 = 130;
}

/// The plugins folder: `--plugins`, or `plugins` beside the project file.
fn plugins_dir(cli: &Cli) -> PathBuf {
    cli.plugins.clone().unwrap_or_else(|| {
        cli.project
            .parent()
            .map(|p| p.join("plugins"))
            .unwrap_or_else(|| PathBuf::from("plugins"))
    })
}

/// The plugin host, caching compiled plugins in `<plugins>/.cache`.
fn plugin_host(cli: &Cli) -> anyhow::Result<inlet_wasm::PluginHost> {
    Ok(inlet_wasm::PluginHost::new(Some(
        plugins_dir(cli).join(".cache"),
    ))?)
}

/// Built-in connectors and the installed plugins, by name. A plugin that cannot be
/// loaded is reported and left out; the others still register.
fn registry(cli: &Cli) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(inlet_connector_files::FilesConnector));
    r.register(Arc::new(inlet_connector_postgres::PostgresConnector));
    r.register(Arc::new(inlet_connector_rest::ManifestConnector::rest()));
    // The compiled-in manifests are checked by the rest crate's tests; an invalid one is a
    // build defect, reported without taking the other connectors down.
    for built in [
        inlet_connector_rest::ManifestConnector::github(),
        inlet_connector_rest::ManifestConnector::stripe(),
    ] {
        match built {
            Ok(c) => r.register(Arc::new(c)),
            Err(e) => tracing::error!(error = %e, "a built-in manifest is invalid"),
        }
    }
    let dir = plugins_dir(cli);
    if dir.is_dir() {
        match plugin_host(cli) {
            Ok(host) => {
                let (plugins, failed) = inlet_wasm::load_plugins(&host, &dir);
                for p in plugins {
                    r.register(Arc::new(p));
                }
                for e in failed {
                    eprintln!("warning: {e} (skipped)");
                }
            }
            Err(e) => eprintln!("warning: plugins in {} not loaded: {e}", dir.display()),
        }
    }
    r
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let stop = Stop::default();
    let result = runtime.block_on(async {
        watch_signals(stop.clone());
        run(&cli, &stop).await
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::from(code_of(&e))
        }
    }
}

/// First SIGINT/SIGTERM: stop at the next checkpoint (committing what was read). Second:
/// exit at once (safe too: uncommitted data is discarded by the next run).
fn watch_signals(stop: Stop) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        for n in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if n == 0 {
                eprintln!("inlet: stopping at the next checkpoint (signal again to exit now)");
                stop.request();
            } else {
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

fn code_of(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<RuntimeError>() {
        Some(RuntimeError::Config { .. }) => exit::CONFIG,
        Some(RuntimeError::Busy(_)) => exit::BUSY,
        Some(RuntimeError::CheckFailed { .. }) => exit::CHECK_FAILED,
        Some(RuntimeError::Interrupted { .. }) => exit::INTERRUPTED,
        Some(RuntimeError::Source { source, .. })
            if matches!(**source, inlet_core::SourceError::Config { .. }) =>
        {
            exit::CONFIG
        }
        _ => exit::FAILED,
    }
}

async fn run(cli: &Cli, stop: &Stop) -> anyhow::Result<u8> {
    let registry = registry(cli);
    let out = output::Output { json: cli.json };
    match &cli.command {
        Command::Connectors => {
            let infos: Vec<_> = registry.all().map(|c| c.info()).collect();
            out.connectors(&infos)?;
            Ok(exit::OK)
        }
        Command::Spec { connector } => {
            let c = registry
                .get(connector)
                .ok_or_else(|| RuntimeError::Config {
                    location: "inlet spec".into(),
                    message: format!(
                        "unknown connector `{connector}`; available: {}",
                        registry.names().join(", ")
                    ),
                })?;
            println!("{}", serde_json::to_string_pretty(&c.spec())?);
            Ok(exit::OK)
        }
        Command::Check { connection } => {
            let project = Project::load(&cli.project)?;
            let conn = Connection::open(&project, connection).await?;
            let source = conn.build_source(&project, &registry).await?;
            let mut report = source
                .check()
                .await
                .map_err(|e| conn.source_error(None, e))?;
            match conn.storage.probe().await {
                Ok(()) => report.push("lake writable", true, conn.storage.url()),
                Err(e) => report.push(
                    "lake writable",
                    false,
                    format!("{}: {e}", conn.storage.url()),
                ),
            }
            if let Some((config, options)) = &conn.catalog {
                catalog::check(&mut report, connection, config, options).await;
            }
            out.check(connection, &report)?;
            if report.ok() {
                Ok(exit::OK)
            } else {
                Ok(exit::CHECK_FAILED)
            }
        }
        Command::Discover { connection } => {
            let project = Project::load(&cli.project)?;
            let conn = Connection::open(&project, connection).await?;
            let source = conn.build_source(&project, &registry).await?;
            let catalog = source
                .discover()
                .await
                .map_err(|e| conn.source_error(None, e))?;
            out.catalog(&catalog)?;
            Ok(exit::OK)
        }
        Command::Sync {
            connection,
            all,
            streams,
            full_refresh,
        } => {
            let project = Project::load(&cli.project)?;
            let names: Vec<String> = match (connection, all) {
                (Some(c), _) => vec![c.clone()],
                (None, true) => project.file.connections.keys().cloned().collect(),
                (None, false) => {
                    return Err(RuntimeError::Config {
                        location: "inlet sync".into(),
                        message: "name a connection, or pass --all".into(),
                    }
                    .into());
                }
            };
            let mut code = exit::OK;
            let single = names.len() == 1;
            for name in names {
                if stop.requested() {
                    code = exit::INTERRUPTED;
                    break;
                }
                let bar = (!cli.json && std::io::stderr().is_terminal())
                    .then(|| output::progress_bar(&name));
                let options = SyncOptions {
                    stop: Some(stop.flag()),
                    streams: streams.clone(),
                    full_refresh: *full_refresh,
                    progress: bar.clone().map(|b| {
                        Arc::new(move |p: &inlet_runtime::Progress| {
                            b.set_message(format!(
                                "{}: {} rows read, {} landed",
                                p.stream, p.rows_read, p.rows_landed
                            ));
                            b.tick();
                        }) as inlet_runtime::sync::ProgressFn
                    }),
                };
                let result =
                    inlet_runtime::sync_connection(&project, &registry, &name, &options).await;
                if let Some(b) = bar {
                    b.finish_and_clear();
                }
                match result {
                    Ok(record) => {
                        out.run(&record)?;
                        if record.outcome == RunOutcome::Interrupted {
                            code = exit::INTERRUPTED;
                        } else if record.outcome != RunOutcome::Succeeded && code == exit::OK {
                            code = exit::FAILED;
                        }
                        for (stream, c) in record.catalog_failures() {
                            eprintln!(
                                "error: {name}: stream `{stream}` landed, but its catalog table {} was not registered (the next sync tries again): {}",
                                c.table,
                                c.error.as_deref().unwrap_or("unknown error")
                            );
                            if code == exit::OK {
                                code = exit::CATALOG_FAILED;
                            }
                        }
                    }
                    Err(e) if single => return Err(e.into()),
                    Err(e) => {
                        let e = anyhow::Error::new(e);
                        eprintln!("error: {}", one_line(&e));
                        if code == exit::OK {
                            code = code_of(&e);
                        }
                    }
                }
            }
            Ok(code)
        }
        Command::State(cmd) => state(cli, &registry, &out, cmd).await,
        Command::Plugin(cmd) => plugin_command(cli, cmd),
        Command::Catalog(cmd) => catalog::run(&cli.project, &registry, cli.json, cmd).await,
        Command::Daemon {
            max_concurrent,
            metrics_addr,
            shutdown_timeout,
            connections,
        } => {
            let project = Arc::new(Project::load(&cli.project)?);
            let shutdown_timeout = inlet_runtime::schedule::parse_duration(shutdown_timeout)
                .map_err(|m| RuntimeError::Config {
                    location: "--shutdown-timeout".into(),
                    message: m,
                })?;
            let options = inlet_runtime::daemon::DaemonOptions {
                max_concurrent: *max_concurrent,
                metrics_addr: *metrics_addr,
                shutdown_timeout,
                connections: connections.clone(),
            };
            inlet_runtime::daemon::run_daemon(project, Arc::new(registry), options, stop.clone())
                .await?;
            Ok(exit::OK)
        }
        Command::Runs {
            connection,
            limit,
            outcome,
        } => {
            let project = Project::load(&cli.project)?;
            let mut all = Vec::new();
            let names: Vec<String> = match connection {
                Some(c) => vec![c.clone()],
                None => project.file.connections.keys().cloned().collect(),
            };
            for name in names {
                let conn = Connection::open(&project, &name).await?;
                let runs = inlet_lake::RunStore::new(conn.storage.clone());
                let fetch = if outcome.is_some() {
                    usize::MAX
                } else {
                    *limit
                };
                all.extend(
                    runs.list(Some(&name), fetch)
                        .await
                        .map_err(|e| conn.lake_error(e))?,
                );
            }
            all.retain(|r| outcome.as_ref().is_none_or(|o| r.outcome.as_str() == o));
            all.sort_by(|a, b| (b.started_at, &b.run_id).cmp(&(a.started_at, &a.run_id)));
            all.truncate(*limit);
            out.runs(&all)?;
            Ok(exit::OK)
        }
    }
}

async fn state(
    cli: &Cli,
    registry: &Registry,
    out: &output::Output,
    cmd: &StateCommand,
) -> anyhow::Result<u8> {
    let project = Project::load(&cli.project)?;
    match cmd {
        StateCommand::Show { connection, stream } => {
            let state = ops::show(&project, connection).await?;
            out.state(&state, stream.as_deref())?;
        }
        StateCommand::Reset {
            connection,
            stream,
            dry_run,
        } => {
            let plan = ops::reset(&project, connection, stream.as_deref(), *dry_run).await?;
            out.state_plan(&plan)?;
        }
        StateCommand::Set {
            connection,
            stream,
            value,
            dry_run,
        } => {
            let value: serde_json::Value =
                serde_json::from_str(value).map_err(|e| RuntimeError::Config {
                    location: "--value".into(),
                    message: format!("not JSON: {e}"),
                })?;
            let plan = ops::set(&project, registry, connection, stream, value, *dry_run).await?;
            out.state_plan(&plan)?;
        }
        StateCommand::History { connection } => {
            let history = ops::history(&project, connection).await?;
            out.history(&history)?;
        }
        StateCommand::Rollback {
            connection,
            to,
            stream,
            dry_run,
        } => {
            let plan =
                ops::rollback(&project, connection, *to, stream.as_deref(), *dry_run).await?;
            out.state_plan(&plan)?;
        }
    }
    Ok(exit::OK)
}
