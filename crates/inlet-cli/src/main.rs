//! The `inlet` command: arguments, wiring, output. Everything it does is in the
//! libraries; this file only chooses what to call and how to print it.

mod catalog;
mod logging;
mod output;
#[cfg(feature = "plugins")]
mod plugin;

use std::{io::IsTerminal, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use inlet_core::Registry;
use inlet_lake::RunOutcome;
use inlet_runtime::{Project, RuntimeError, SyncOptions, daemon::Stop, ops, sync::Connection};

/// inlet: land data from databases, APIs and files as partitioned Parquet in a lake.
#[derive(Debug, Parser)]
#[command(name = "inlet", version, about, after_help = EXIT_CODES)]
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
    /// Log filter: error, warn, info, debug, trace, or a tracing filter
    /// (`inlet_runtime=debug`). Takes precedence over RUST_LOG; default: warn, moved by -q/-v.
    #[arg(long, global = true, env = "INLET_LOG")]
    log: Option<String>,
    /// Log line format on stderr: text (coloured only on a terminal, never with NO_COLOR)
    /// or json (one object per line, with the run's connection, run_id and stream).
    #[arg(long, global = true, env = "INLET_LOG_FORMAT", value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    /// More log lines (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Fewer log lines (errors only).
    #[arg(long, short = 'q', global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
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
        /// When another run holds the connection: `fail` (exit 75, the default) or `skip`
        /// (exit 0, for schedulers that start a run on every tick: Kubernetes CronJobs,
        /// Airflow).
        #[arg(long, value_enum, default_value_t = IfBusy::Fail)]
        if_busy: IfBusy,
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
        /// Run nothing: print each scheduled connection's next due times and exit.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: how many due times per connection.
        #[arg(long, default_value_t = 5, requires = "dry_run")]
        count: usize,
    },
    /// Print a shell completion script (`inlet completions bash > /etc/bash_completion.d/inlet`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `inlet man > inlet.1 && man ./inlet.1`.
    Man,
    /// List past runs.
    Runs {
        /// Only this connection.
        connection: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs with this outcome (succeeded, failed, interrupted, running).
        #[arg(long, value_parser = parse_outcome)]
        outcome: Option<RunOutcome>,
    },
}

/// What `inlet sync` does when another run holds the connection's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum IfBusy {
    /// Exit 75 (EX_TEMPFAIL): try again later.
    Fail,
    /// Say so and exit 0: the run that holds the lease does the work.
    Skip,
}

/// The language of a new plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Lang {
    /// A Rust crate on inlet-pdk, built for wasm32-unknown-unknown.
    Rust,
    /// A Python module on inlet_pdk, built by componentize-py.
    Python,
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
        /// The inlet-pdk crate to depend on (default: the one of this inlet's source tree;
        /// Rust plugins only).
        #[arg(long)]
        pdk: Option<PathBuf>,
        /// The plugin's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
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

/// A build without the `plugins` feature has no plugin host.
#[cfg(not(feature = "plugins"))]
fn plugin_command(_: &Cli, _: &PluginCommand) -> anyhow::Result<u8> {
    Err(RuntimeError::Config {
        location: "inlet plugin".into(),
        message: without_plugins(),
    }
    .into())
}

/// What plugin commands and a plugins folder say in a build without the `plugins` feature.
#[cfg(not(feature = "plugins"))]
fn without_plugins() -> String {
    inlet_core::left_out_of_build("plugin support", "plugins")
}

#[cfg(feature = "plugins")]
fn plugin_command(cli: &Cli, cmd: &PluginCommand) -> anyhow::Result<u8> {
    match cmd {
        PluginCommand::New {
            name,
            dir,
            pdk,
            lang,
        } => {
            let at = plugin::new(name, dir.as_deref(), pdk.as_deref(), *lang)?;
            if cli.json {
                output::json_line(&serde_json::json!({"created": name, "path": at}))?;
                return Ok(exit::OK);
            }
            println!("created plugin `{name}` in {}", at.display());
            let (code, test) = match lang {
                Lang::Rust => ("src/lib.rs", String::new()),
                Lang::Python => (
                    "plugin.py",
                    format!(
                        " (test it with `python3 {}`)",
                        at.join("test_plugin.py").display()
                    ),
                ),
            };
            println!(
                "next: edit {code} and plugin.toml{test}, then `inlet plugin build {}`",
                at.display()
            );
        }
        PluginCommand::Build { dir } => {
            let out = plugin::build(dir)?;
            if cli.json {
                output::json_line(&serde_json::json!({"built": out}))?;
                return Ok(exit::OK);
            }
            println!("built {}", out.display());
        }
        PluginCommand::Install { dir } => {
            let target = plugins_dir(cli);
            let m = plugin::install(&plugin_host(cli)?, dir, &target)?;
            if cli.json {
                output::json_line(&serde_json::json!({
                    "installed": m.name,
                    "version": m.version,
                    "path": target.join(&m.name),
                    "hosts": m.hosts,
                }))?;
                return Ok(exit::OK);
            }
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

/// The exit codes, for `--help` and the man page (keep in step with [`exit`]).
const EXIT_CODES: &str = "\
Exit codes:
  0    success (also a busy connection under `sync --if-busy skip`)
  1    a sync or stream failed
  2    configuration or usage error
  3    `check` found a problem
  4    the data landed, but a stream's catalog table was not registered (retried next sync)
  75   the connection is being synced by another process (try again later)
  130  interrupted (SIGINT/SIGTERM); the next run resumes from the last commit";

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

    /// The name of a code, for `--json` errors.
    pub fn kind(code: u8) -> &'static str {
        match code {
            OK => "ok",
            CONFIG => "config",
            CHECK_FAILED => "check_failed",
            CATALOG_FAILED => "catalog_failed",
            BUSY => "busy",
            INTERRUPTED => "interrupted",
            _ => "failed",
        }
    }
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
#[cfg(feature = "plugins")]
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
    #[cfg(feature = "postgres")]
    r.register(Arc::new(inlet_connector_postgres::PostgresConnector));
    #[cfg(not(feature = "postgres"))]
    r.left_out("postgres", "postgres");
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
    #[cfg(not(feature = "plugins"))]
    if dir.is_dir() {
        eprintln!(
            "warning: plugins in {} not loaded: {}",
            dir.display(),
            without_plugins()
        );
    }
    #[cfg(feature = "plugins")]
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
    let verbosity =
        i8::try_from(cli.verbose).unwrap_or(i8::MAX) - i8::try_from(cli.quiet).unwrap_or(i8::MAX);
    if let Err(message) = logging::init(cli.log.as_deref(), verbosity, cli.log_format) {
        eprintln!("error: {message}");
        return ExitCode::from(exit::CONFIG);
    }
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
            let code = code_of(&e);
            eprintln!("error: {}", one_line(&e));
            if cli.json {
                output::error_json(&one_line(&e), code, exit::kind(code));
            }
            ExitCode::from(code)
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

fn parse_outcome(s: &str) -> Result<RunOutcome, String> {
    RunOutcome::parse(s).ok_or_else(|| {
        format!("`{s}` is not an outcome: use succeeded, failed, interrupted or running")
    })
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
            if_busy,
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
            // `--all` reports each connection (NDJSON under --json) and goes on past errors.
            let single = !*all;
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
                        if *all && cli.json {
                            output::json_line(&serde_json::to_value(&record)?)?;
                        } else {
                            out.run(&record)?;
                        }
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
                    Err(RuntimeError::Busy(why)) if *if_busy == IfBusy::Skip => {
                        out.skipped_busy(&name, &why)?;
                    }
                    Err(e) if single => return Err(e.into()),
                    Err(e) => {
                        let e = anyhow::Error::new(e);
                        eprintln!("error: {}", one_line(&e));
                        if cli.json {
                            let c = code_of(&e);
                            output::json_line(&serde_json::json!({
                                "connection": name,
                                "outcome": "error",
                                "error": output::error_value(&one_line(&e), c, exit::kind(c)),
                            }))?;
                        }
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
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "inlet", &mut std::io::stdout());
            Ok(exit::OK)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(exit::OK)
        }
        Command::Daemon {
            max_concurrent,
            metrics_addr,
            shutdown_timeout,
            connections,
            dry_run,
            count,
        } => {
            let project = Arc::new(Project::load(&cli.project)?);
            if *dry_run {
                let plan =
                    inlet_runtime::daemon::plan(&project, connections, chrono::Utc::now(), *count)?;
                out.plan(&plan)?;
                return Ok(exit::OK);
            }
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
                // One outcome: the index names its records, no other record is read.
                let found = match outcome {
                    Some(o) => runs.list_outcome(&name, *o, *limit).await,
                    None => runs.list(Some(&name), *limit).await,
                };
                all.extend(found.map_err(|e| conn.lake_error(e))?);
            }
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
