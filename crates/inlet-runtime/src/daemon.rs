//! `inlet daemon`: runs every scheduled connection on its schedule, a bounded number at a
//! time, serves `/metrics` and `/healthz`, and shuts down gracefully: on a stop request
//! each run in flight commits at its next checkpoint and ends; nothing is lost and the
//! next start resumes.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use inlet_core::Registry;
use inlet_lake::{RunOutcome, RunRecord};
use tokio::sync::{Notify, Semaphore, mpsc};

use crate::{
    Project, RuntimeError, SyncOptions, metrics::Metrics, schedule::Schedule, sync_connection,
};

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// Connections running at once, across all connections (default 4).
    pub max_concurrent: usize,
    /// Where to serve `/metrics` and `/healthz` (none: no server).
    pub metrics_addr: Option<SocketAddr>,
    /// How long to wait for runs to reach a checkpoint after a stop request.
    pub shutdown_timeout: Duration,
    /// Only these connections (default: every connection with a schedule).
    pub connections: Vec<String>,
}

/// What to do when a run overran one or more due times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedRuns {
    /// Skip them: the next run is at the next due time after now.
    #[default]
    Skip,
    /// Run once right away to catch up, then follow the schedule.
    CatchUp,
}

/// A stop request, shared with signal handlers.
#[derive(Debug, Default, Clone)]
pub struct Stop {
    flag: Arc<AtomicBool>,
    notify: Arc<Notify>,
}

impl Stop {
    /// Ask everything to stop at the next checkpoint.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// The flag given to syncs.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    async fn wait(&self) {
        let notified = self.notify.notified();
        if self.requested() {
            return;
        }
        notified.await;
    }
}

struct Slot {
    name: String,
    schedule: Schedule,
    missed: MissedRuns,
    jitter: Duration,
    next_due: DateTime<Utc>,
    running: bool,
    failures: u32,
}

fn jitter(max: Duration) -> chrono::Duration {
    if max.is_zero() {
        return chrono::Duration::zero();
    }
    let nanos = u128::from(std::process::id()) * 7919 + Utc::now().timestamp_subsec_nanos() as u128;
    let ms = (nanos % max.as_millis().max(1)) as i64;
    chrono::Duration::milliseconds(ms)
}

/// Run the daemon until `stop` is requested. Returns when every run has ended (or the
/// shutdown timeout passed).
pub async fn run_daemon(
    project: Arc<Project>,
    registry: Arc<Registry>,
    options: DaemonOptions,
    stop: Stop,
) -> Result<(), RuntimeError> {
    let metrics = Arc::new(Metrics::new());
    let mut slots = Vec::new();
    let now = Utc::now();
    for (name, conn) in &project.file.connections {
        if !options.connections.is_empty() && !options.connections.contains(name) {
            continue;
        }
        let Some(text) = &conn.schedule else { continue };
        let schedule = schedule_of(&project, name, text, conn.timezone.as_deref())?;
        let jitter_max = Duration::from_secs(conn.jitter_secs.unwrap_or(0));
        let first = due_after(&schedule, now) + jitter(jitter_max);
        slots.push(Slot {
            name: name.clone(),
            schedule,
            missed: conn.missed_runs.unwrap_or_default(),
            jitter: jitter_max,
            next_due: first,
            running: false,
            failures: 0,
        });
    }
    // What the run records say (from this daemon before a restart, or another replica), so
    // that every process reports the same last success and failures in a row; read for
    // several connections at once (one listing and one read each).
    let seeds: Vec<inlet_lake::RunSummary> =
        futures::stream::iter(slots.iter().map(|slot| run_summary(&project, &slot.name)))
            .buffered(SEED_CONCURRENCY)
            .collect()
            .await;
    for (slot, seed) in slots.iter_mut().zip(seeds) {
        metrics.register(&slot.name, &seed);
        slot.failures = seed.consecutive_failures;
    }
    if slots.is_empty() {
        return Err(RuntimeError::Config {
            location: project.path.display().to_string(),
            message: "no connection has a `schedule`: nothing for the daemon to run".into(),
        });
    }
    if let Some(addr) = options.metrics_addr {
        crate::metrics::serve(addr, metrics.clone(), stop.clone())
            .await
            .map_err(|e| RuntimeError::Config {
                location: "--metrics-addr".into(),
                message: format!("cannot listen on {addr}: {e}"),
            })?;
    }
    tracing::info!(connections = slots.len(), "daemon started");
    let permits = Arc::new(Semaphore::new(options.max_concurrent.max(1)));
    let (done_tx, mut done_rx) =
        mpsc::unbounded_channel::<(usize, Result<RunRecord, RuntimeError>)>();
    let mut in_flight = 0usize;

    loop {
        if stop.requested() {
            break;
        }
        let now = Utc::now();
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.running || slot.next_due > now {
                continue;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            slot.running = true;
            in_flight += 1;
            let (project, registry, done_tx, name) = (
                project.clone(),
                registry.clone(),
                done_tx.clone(),
                slot.name.clone(),
            );
            let sync_options = SyncOptions {
                stop: Some(stop.flag()),
                ..Default::default()
            };
            tracing::info!(connection = %name, due = %slot.next_due, "starting a scheduled run");
            tokio::spawn(async move {
                let result = sync_connection(&project, &registry, &name, &sync_options).await;
                drop(permit);
                let _ = done_tx.send((i, result));
            });
        }
        // Slots already due are waiting for a permit: a finishing run (done_rx) frees one.
        let now = Utc::now();
        let next = slots
            .iter()
            .filter(|s| !s.running && s.next_due > now)
            .map(|s| s.next_due)
            .min();
        let sleep = next
            .map(|n| (n - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(60));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            Some((i, result)) = done_rx.recv() => {
                in_flight -= 1;
                finish(&project, &mut slots[i], result, &metrics).await;
            }
            _ = stop.wait() => {}
        }
    }

    tracing::info!(
        runs = in_flight,
        "stopping: runs in flight commit at their next checkpoint"
    );
    let deadline = tokio::time::Instant::now() + options.shutdown_timeout;
    while in_flight > 0 {
        match tokio::time::timeout_at(deadline, done_rx.recv()).await {
            Ok(Some((i, result))) => {
                in_flight -= 1;
                finish(&project, &mut slots[i], result, &metrics).await;
            }
            _ => {
                tracing::warn!(
                    runs = in_flight,
                    "shutdown timeout: leaving runs mid-way (their uncommitted data is discarded by the next run)"
                );
                break;
            }
        }
    }
    Ok(())
}

/// How many connections' run records the daemon reads at once when it starts.
const SEED_CONCURRENCY: usize = 8;

/// The run records' summary of a connection; a lake that cannot be read yet gives an empty
/// one (the run itself will report the error).
async fn run_summary(project: &Project, name: &str) -> inlet_lake::RunSummary {
    let summary = async {
        let conn = crate::sync::Connection::open(project, name).await?;
        inlet_lake::RunStore::new(conn.storage.clone())
            .summary(name)
            .await
            .map_err(|e| conn.lake_error(e))
    };
    match summary.await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(connection = %name, error = %e, "cannot read the run records; metrics start empty");
            inlet_lake::RunSummary::default()
        }
    }
}

async fn finish(
    project: &Project,
    slot: &mut Slot,
    result: Result<RunRecord, RuntimeError>,
    m: &Metrics,
) {
    slot.running = false;
    let now = Utc::now();
    match &result {
        Ok(record) => {
            m.record_run(&slot.name, record);
            if record.outcome == RunOutcome::Failed {
                slot.failures += 1;
            } else if record.outcome == RunOutcome::Succeeded {
                slot.failures = 0;
            }
            tracing::info!(connection = %slot.name, run_id = %record.run_id, outcome = %record.outcome, rows = record.rows(), "run ended");
        }
        Err(RuntimeError::Busy(e)) => {
            m.record_skip(&slot.name, "busy");
            // Another process runs it: take its outcomes from the run records.
            let seed = run_summary(project, &slot.name).await;
            slot.failures = seed.consecutive_failures;
            m.refresh(&slot.name, &seed);
            tracing::info!(connection = %slot.name, reason = %e, "skipped: another process holds the connection");
        }
        Err(e) => {
            m.record_error(&slot.name);
            slot.failures += 1;
            tracing::error!(connection = %slot.name, error = %e, "run failed");
        }
    }
    m.set_failing(&slot.name, slot.failures);
    // The next due time after the one that just ran.
    let mut next = due_after(&slot.schedule, slot.next_due) + jitter(slot.jitter);
    if next <= now {
        next = match slot.missed {
            MissedRuns::CatchUp => now,
            MissedRuns::Skip => due_after(&slot.schedule, now) + jitter(slot.jitter),
        };
    }
    if slot.failures >= 3 {
        // A connection that keeps failing is retried with growing pauses, not in a loop.
        let pause = chrono::Duration::seconds(30 * 2i64.pow((slot.failures - 3).min(7)));
        tracing::warn!(connection = %slot.name, failures = slot.failures, pause_secs = pause.num_seconds(), "connection keeps failing; pausing it");
        next = next.max(now + pause);
    }
    slot.next_due = next;
}

/// The first due time after `t`. A cron expression with no further match (only past the
/// year 5000) is never due again.
fn due_after(schedule: &Schedule, t: DateTime<Utc>) -> DateTime<Utc> {
    schedule.next_after(t).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A connection's schedule, parsed in its time zone; errors name the field.
fn schedule_of(
    project: &Project,
    name: &str,
    text: &str,
    timezone: Option<&str>,
) -> Result<Schedule, RuntimeError> {
    crate::schedule::parse_timezone(timezone)
        .map_err(|m| project.error_at(&["connections", name, "timezone"], m))?;
    Schedule::parse_in(text, timezone)
        .map_err(|m| project.error_at(&["connections", name, "schedule"], m))
}

/// One scheduled connection and its next due times, for `inlet daemon --dry-run`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedConnection {
    /// The connection.
    pub connection: String,
    /// Its `schedule`, as written.
    pub schedule: String,
    /// The time zone its cron fields are read in.
    pub timezone: String,
    /// The next due times (UTC), before jitter.
    pub next: Vec<DateTime<Utc>>,
}

/// Every connection the daemon would run (all with a `schedule`, or only `only` when it is
/// not empty) and its next `count` due times after `from`.
pub fn plan(
    project: &Project,
    only: &[String],
    from: DateTime<Utc>,
    count: usize,
) -> Result<Vec<PlannedConnection>, RuntimeError> {
    let mut out = Vec::new();
    for name in only {
        if !project.file.connections.contains_key(name) {
            return Err(RuntimeError::Config {
                location: "--connection".into(),
                message: format!("no connection `{name}` in the project"),
            });
        }
    }
    for (name, conn) in &project.file.connections {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        if let Some(text) = &conn.schedule {
            let s = schedule_of(project, name, text, conn.timezone.as_deref())?;
            out.push(PlannedConnection {
                connection: name.clone(),
                schedule: text.clone(),
                timezone: s.timezone().name().to_string(),
                next: s.upcoming(from, count),
            });
        }
    }
    Ok(out)
}
