//! One run of a connection under its lease: the streams selected, one stream run each,
//! the run record, and garbage collection of what an interrupted run staged.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use chrono::Utc;
use inlet_core::{Registry, Source, SourceError, SyncMode};
use inlet_lake::{Lease, RunOutcome, RunRecord, RunStore, StateStore, StreamRunStats};
use tokio::sync::Mutex;
use tracing::Instrument as _;

use super::{Connection, SyncOptions, stop_requested, stream::StreamRun};
use crate::{Project, RuntimeError};

const DEFAULT_LEASE_TTL_SECS: u64 = 300;

/// Run one sync of `name`. Returns the run record, also when streams failed (its
/// `outcome` says so); returns an error when the run could not start.
pub async fn sync_connection(
    project: &Project,
    registry: &Registry,
    name: &str,
    options: &SyncOptions,
) -> Result<RunRecord, RuntimeError> {
    let started_at = Utc::now();
    let run_id = inlet_lake::layout::new_run_id(started_at);
    // Every log line of the run, also from connectors' producer tasks and threads, carries
    // the connection and the run (`--log-format json` puts them on each line).
    let span = tracing::info_span!("run", connection = %name, run_id = %run_id);
    sync_in_span(project, registry, name, options, started_at, run_id)
        .instrument(span)
        .await
}

async fn sync_in_span(
    project: &Project,
    registry: &Registry,
    name: &str,
    options: &SyncOptions,
    started_at: chrono::DateTime<Utc>,
    run_id: String,
) -> Result<RunRecord, RuntimeError> {
    let conn = Connection::open(project, name).await?;
    let source = conn.build_source(project, registry).await?;
    let ttl = conn.config.lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL_SECS);
    let lease = Lease::acquire(
        conn.storage.clone(),
        name,
        &run_id,
        chrono::Duration::seconds(ttl as i64),
    )
    .await
    .map_err(|e| conn.lake_error(e))?;
    let lease = Arc::new(Mutex::new(lease));
    // Renew the lease while the run goes on, so that only a dead holder's lease lapses.
    let lease_lost = Arc::new(AtomicBool::new(false));
    let renewer = tokio::spawn({
        let lease = lease.clone();
        let lost = lease_lost.clone();
        let connection = name.to_string();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(ttl * 1000 / 3)).await;
                if let Err(e) = lease.lock().await.renew().await {
                    tracing::error!(connection, error = %e, "could not renew the lease; this run stops before its next commit");
                    lost.store(true, Ordering::SeqCst);
                    break;
                }
            }
        }
        .in_current_span()
    });
    let result = run_with_lease(
        project, &conn, source, &run_id, started_at, options, lease_lost,
    )
    .await;
    renewer.abort();
    let _ = renewer.await;
    if let Ok(lease) = Arc::try_unwrap(lease) {
        lease
            .into_inner()
            .release()
            .await
            .map_err(|e| conn.lake_error(e))?;
    }
    result
}

async fn run_with_lease(
    project: &Project,
    conn: &Connection,
    source: Arc<dyn Source>,
    run_id: &str,
    started_at: chrono::DateTime<Utc>,
    options: &SyncOptions,
    lease_lost: Arc<AtomicBool>,
) -> Result<RunRecord, RuntimeError> {
    let store = StateStore::open(conn.storage.clone(), &conn.name)
        .await
        .map_err(|e| conn.lake_error(e))?;
    collect_garbage(conn, &store).await?;
    let runs = RunStore::new(conn.storage.clone());
    let store = Arc::new(Mutex::new(store));
    let mut record = RunRecord {
        run_id: run_id.to_string(),
        connection: conn.name.clone(),
        started_at,
        finished_at: None,
        outcome: RunOutcome::Running,
        streams: BTreeMap::new(),
        error: None,
        catalog: BTreeMap::new(),
    };
    runs.save(&record).await.map_err(|e| conn.lake_error(e))?;

    let outcome = async {
        let catalog = source.discover().await.map_err(|e| conn.source_error(None, e))?;
        let selected = select_streams(project, conn, &catalog, options)?;
        let mut failures = Vec::new();
        let mut interrupted = false;
        for (stream, mode, cursor_field) in selected {
            if stop_requested(&options.stop) {
                interrupted = true;
                break;
            }
            tracing::info!(connection = %conn.name, stream = %stream, mode = %mode, run_id, "syncing stream");
            let stats = Arc::new(Mutex::new(StreamRunStats::new(mode)));
            let runner = StreamRun {
                conn,
                source: source.clone(),
                store: store.clone(),
                stats: stats.clone(),
                run_id,
                stream: stream.clone(),
                primary_key: catalog
                    .streams
                    .iter()
                    .find(|d| d.name == stream)
                    .map(|d| d.primary_key.clone())
                    .unwrap_or_default(),
                progress: options.progress.clone(),
                rows_read: Default::default(),
                stop: options.stop.clone(),
                lease_lost: lease_lost.clone(),
            };
            let result = runner
                .run(mode, cursor_field)
                .instrument(tracing::info_span!("stream", stream = %stream))
                .await;
            let mut s = stats.lock().await.clone();
            if let Err(RuntimeError::Interrupted { .. }) = &result {
                tracing::info!(connection = %conn.name, stream = %stream, "stopped at a checkpoint");
                interrupted = true;
                record.streams.insert(stream, s);
                break;
            }
            if let Err(e) = &result {
                tracing::error!(connection = %conn.name, stream = %stream, error = %e, "stream failed");
                s.error = Some(e.to_string());
                failures.push(e.to_string());
            }
            record.streams.insert(stream, s);
        }
        // Data first, tables after: what landed stays landed whatever the catalog says.
        let ran: Vec<String> = record.streams.keys().cloned().collect();
        record.catalog = conn.register_catalog(&ran).await;
        Ok::<_, RuntimeError>((failures, interrupted))
    }
    .await;

    record.finished_at = Some(Utc::now());
    let result = match outcome {
        Ok((failures, true)) => {
            record.outcome = RunOutcome::Interrupted;
            if !failures.is_empty() {
                record.error = Some(failures.join("; "));
            }
            Ok(())
        }
        Ok((failures, false)) if failures.is_empty() => {
            record.outcome = RunOutcome::Succeeded;
            Ok(())
        }
        Ok((failures, false)) => {
            record.outcome = RunOutcome::Failed;
            record.error = Some(failures.join("; "));
            Ok(())
        }
        Err(e) => {
            record.outcome = RunOutcome::Failed;
            record.error = Some(e.to_string());
            Err(e)
        }
    };
    runs.save(&record).await.map_err(|e| conn.lake_error(e))?;
    // Still holding the lease: bound the metadata this run and its predecessors wrote.
    apply_retention(conn, &*store.lock().await, &runs, Utc::now()).await;
    result.map(|()| record)
}

/// Default of `state_history_keep`.
const DEFAULT_STATE_HISTORY_KEEP: usize = 1000;
/// Default of `runs_keep_days`.
const DEFAULT_RUNS_KEEP_DAYS: u64 = 90;

/// Bound the lake's own metadata: prune the state history and old run records. Only the
/// lease holder does this; a failure is logged and retried by the next run, never fatal.
async fn apply_retention(
    conn: &Connection,
    store: &StateStore,
    runs: &RunStore,
    now: chrono::DateTime<Utc>,
) {
    let keep = conn
        .config
        .state_history_keep
        .unwrap_or(DEFAULT_STATE_HISTORY_KEEP);
    match store.prune_history(keep).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, keep, "pruned the state history"),
        Err(e) => {
            tracing::warn!(error = %e, "could not prune the state history; the next run tries again")
        }
    }
    let days = conn.config.runs_keep_days.unwrap_or(DEFAULT_RUNS_KEEP_DAYS);
    if days == 0 {
        return;
    }
    let before = now - chrono::Duration::days(i64::try_from(days).unwrap_or(i64::MAX / 86_400));
    match runs.prune(&conn.name, before).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, days, "pruned old run records"),
        Err(e) => {
            tracing::warn!(error = %e, "could not prune old run records; the next run tries again")
        }
    }
}

/// Delete staged files that no commit lists: leftovers of a process that died before
/// its commit. Only the lease holder may do this.
async fn collect_garbage(conn: &Connection, store: &StateStore) -> Result<(), RuntimeError> {
    let pending: HashSet<&str> = store
        .current()
        .pending
        .iter()
        .map(|p| p.staging.as_str())
        .collect();
    for staged in conn
        .storage
        .list_staged(&conn.name)
        .await
        .map_err(|e| conn.lake_error(e))?
    {
        if !pending.contains(staged.staging.as_str()) {
            tracing::info!(connection = %conn.name, file = %staged.final_key, "discarding a file staged by an interrupted run");
            conn.storage
                .discard(&staged)
                .await
                .map_err(|e| conn.lake_error(e))?;
        }
    }
    Ok(())
}

fn select_streams(
    project: &Project,
    conn: &Connection,
    catalog: &inlet_core::Catalog,
    options: &SyncOptions,
) -> Result<Vec<(String, SyncMode, Option<String>)>, RuntimeError> {
    let configured: Vec<String> = if conn.config.streams.is_empty() {
        catalog
            .streams
            .iter()
            .filter(|s| !s.opt_in)
            .map(|s| s.name.clone())
            .collect()
    } else {
        conn.config.streams.keys().cloned().collect()
    };
    let wanted: Vec<String> = if options.streams.is_empty() {
        configured.clone()
    } else {
        for s in &options.streams {
            if !configured.contains(s) {
                return Err(conn.source_error(
                    None,
                    SourceError::UnknownStream {
                        stream: s.clone(),
                        message: format!("the connection syncs: {}", configured.join(", ")),
                    },
                ));
            }
        }
        options.streams.clone()
    };
    let mut out = Vec::new();
    for name in wanted {
        let descriptor = catalog.stream(&name).ok_or_else(|| {
            project.error_at(
                &["connections", &conn.name, "streams", &name],
                format!(
                    "the source has no stream `{name}`; it has: {}",
                    catalog.names().join(", ")
                ),
            )
        })?;
        inlet_lake::layout::check_name("stream", &name)
            .map_err(|m| conn.source_error(None, SourceError::other(m)))?;
        let selection = conn.config.streams.get(&name).cloned().unwrap_or_default();
        let mode = if options.full_refresh {
            SyncMode::FullRefresh
        } else {
            selection.mode.unwrap_or(descriptor.default_mode)
        };
        if !descriptor.supports(mode) {
            return Err(project.error_at(
                &["connections", &conn.name, "streams", &name, "mode"],
                format!("stream `{name}` does not support {mode}"),
            ));
        }
        out.push((name, mode, selection.cursor_field));
    }
    Ok(out)
}
