//! One sync of one connection: lease, state, plan, read, land, commit.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use inlet_core::{
    Partition, ReadEvent, ReadRequest, Registry, Source, SourceContext, SourceError, SyncMode,
};
use inlet_lake::{
    Lease, LocalStorage, PartitionProgress, RunRecord, RunStore, StateAction, StateStore, Storage,
    StreamRunStats, StreamState, StreamWriter, WriterOptions, state::Change,
};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{ConnectionConfig, Project, RuntimeError, config::config_json};

/// A progress report, sent after every batch.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The stream.
    pub stream: String,
    /// Rows read so far in this run (landed or not yet).
    pub rows_read: u64,
    /// Rows committed so far.
    pub rows_landed: u64,
}

/// Receives progress reports.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What to sync and how.
#[derive(Clone, Default)]
pub struct SyncOptions {
    /// Only these streams (default: the connection's selection, or all).
    pub streams: Vec<String>,
    /// Ignore saved state and read everything.
    pub full_refresh: bool,
    /// Progress receiver.
    pub progress: Option<ProgressFn>,
    /// When set, the run commits at the next checkpoint and stops (graceful shutdown).
    pub stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("streams", &self.streams)
            .field("full_refresh", &self.full_refresh)
            .finish_non_exhaustive()
    }
}

/// A connection ready to use: config, lake, and the builder of its source.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its name (the `<source>` folder of the lake).
    pub name: String,
    /// Its config.
    pub config: ConnectionConfig,
    /// Its lake.
    pub storage: Arc<dyn Storage>,
    /// How files are cut.
    pub writer: WriterOptions,
    base_dir: PathBuf,
}

impl Connection {
    /// Resolve a connection of the project: its destination's storage and writer options.
    pub async fn open(project: &Project, name: &str) -> Result<Connection, RuntimeError> {
        let config = project.connection(name)?.clone();
        let (dest_name, dest) = project.destination_of(name, &config)?;
        let storage = open_storage(project, dest_name, dest).await?;
        let mut writer = WriterOptions::default();
        if let Some(mb) = dest.target_file_mb {
            writer.target_file_bytes = mb.max(1) * 1024 * 1024;
        }
        if let Some(mb) = dest.row_group_mb {
            writer.row_group_bytes = (mb.max(1) * 1024 * 1024) as usize;
        }
        if let Some(level) = dest.zstd_level {
            writer.zstd_level = level;
        }
        // Small test lakes want small files; INLET_TARGET_FILE_BYTES overrides the size.
        if let Some(bytes) = std::env::var("INLET_TARGET_FILE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            writer.target_file_bytes = bytes;
        }
        Ok(Connection {
            name: name.to_string(),
            config,
            storage,
            writer,
            base_dir: project.base_dir.clone(),
        })
    }

    /// Validate the connector config (pure) and build the source (I/O allowed).
    pub async fn build_source(
        &self,
        project: &Project,
        registry: &Registry,
    ) -> Result<Arc<dyn Source>, RuntimeError> {
        let connector = registry.get(&self.config.connector).ok_or_else(|| {
            project.error_at(
                &["connections", &self.name, "connector"],
                format!(
                    "unknown connector `{}`; available: {}",
                    self.config.connector,
                    registry.names().join(", ")
                ),
            )
        })?;
        let json = config_json(&self.config.config);
        let located = |e: SourceError| match e {
            SourceError::Config { field, message } => {
                let mut path = vec!["connections", self.name.as_str(), "config"];
                path.extend(field.split('.').filter(|s| !s.is_empty()));
                project.error_at(&path, message)
            }
            other => self.source_error(None, other),
        };
        connector.validate(&json).map_err(located)?;
        let ctx = SourceContext {
            connection: self.name.clone(),
            base_dir: self.base_dir.clone(),
        };
        connector.build(json, ctx).await.map_err(located)
    }

    /// Wrap a source error with this connection's name.
    pub fn source_error(&self, stream: Option<&str>, source: SourceError) -> RuntimeError {
        RuntimeError::Source {
            connection: self.name.clone(),
            stream: stream.map(str::to_string),
            source: Box::new(source),
        }
    }

    /// Wrap a lake error with this connection's name and lake.
    pub fn lake_error(&self, source: inlet_lake::LakeError) -> RuntimeError {
        match source {
            busy @ inlet_lake::LakeError::Busy { .. } => RuntimeError::Busy(Box::new(busy)),
            source => RuntimeError::Lake {
                connection: self.name.clone(),
                url: self.storage.url(),
                source: Box::new(source),
            },
        }
    }
}

/// The storage of a destination: a local directory, or an S3 bucket.
pub async fn open_storage(
    project: &Project,
    dest: &str,
    config: &crate::config::DestinationConfig,
) -> Result<Arc<dyn Storage>, RuntimeError> {
    let url = config.url.as_str();
    if config.is_s3() {
        let mut options = inlet_lake::S3Options::from_url(url)
            .map_err(|m| project.error_at(&["destinations", dest, "url"], m))?;
        options.region = config.region.clone();
        options.endpoint = config.endpoint.clone();
        options.path_style = config.path_style;
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            let resolve = |field: &str, v: &inlet_core::secret::SecretValue| {
                v.resolve(field, &project.base_dir).map_err(|e| match e {
                    SourceError::Config { message, .. } => {
                        project.error_at(&["destinations", dest, field], message)
                    }
                    other => project.error_at(&["destinations", dest, field], other.to_string()),
                })
            };
            let id = resolve("access_key_id", id)?;
            let secret = resolve("secret_access_key", secret)?;
            let token = match &config.session_token {
                Some(t) => Some(resolve("session_token", t)?),
                None => None,
            };
            use secrecy::ExposeSecret;
            options.credentials = Some((id.expose_secret().to_string(), secret, token));
        }
        options.sse = match config.server_side_encryption.as_deref() {
            Some("AES256") => Some(inlet_lake::ServerSideEncryption::S3),
            Some("aws:kms") => Some(inlet_lake::ServerSideEncryption::Kms(
                config.sse_kms_key_id.clone(),
            )),
            _ => None,
        };
        options.storage_class = config.storage_class.clone();
        if let Some(mb) = config.part_size_mb {
            options.part_size = (mb * 1024 * 1024) as usize;
        }
        let storage = inlet_lake::S3Storage::connect(options)
            .await
            .map_err(|e| project.error_at(&["destinations", dest, "url"], e.to_string()))?;
        return Ok(Arc::new(storage));
    }
    let path = if let Some(rest) = url.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if url.contains("://") {
        return Err(project.error_at(
            &["destinations", dest, "url"],
            format!("`{url}`: use s3://BUCKET/PREFIX, file://PATH or a plain path"),
        ));
    } else {
        PathBuf::from(url)
    };
    let path = if path.is_absolute() {
        path
    } else {
        project.base_dir.join(path)
    };
    let storage = LocalStorage::new(&path).map_err(|e| {
        project.error_at(
            &["destinations", dest, "url"],
            format!("cannot use {}: {e}", path.display()),
        )
    })?;
    Ok(Arc::new(storage))
}

pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

const DEFAULT_LEASE_TTL_SECS: u64 = 300;

/// Run one sync of `name`. Returns the run record, also when streams failed (its
/// `outcome` says so); returns an error when the run could not start.
pub async fn sync_connection(
    project: &Project,
    registry: &Registry,
    name: &str,
    options: &SyncOptions,
) -> Result<RunRecord, RuntimeError> {
    let conn = Connection::open(project, name).await?;
    let source = conn.build_source(project, registry).await?;
    let started_at = Utc::now();
    let run_id = inlet_lake::layout::new_run_id(started_at);
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
    let lease_lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewer = tokio::spawn({
        let lease = lease.clone();
        let lost = lease_lost.clone();
        let connection = name.to_string();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(ttl * 1000 / 3)).await;
                if let Err(e) = lease.lock().await.renew().await {
                    tracing::error!(connection, error = %e, "could not renew the lease; this run stops before its next commit");
                    lost.store(true, std::sync::atomic::Ordering::SeqCst);
                    break;
                }
            }
        }
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
    lease_lost: Arc<std::sync::atomic::AtomicBool>,
) -> Result<RunRecord, RuntimeError> {
    let store = StateStore::open(conn.storage.clone(), &conn.name)
        .await
        .map_err(|e| conn.lake_error(e))?;
    collect_garbage(conn, &store).await?;
    let store = Arc::new(Mutex::new(store));
    let runs = RunStore::new(conn.storage.clone());
    let mut record = RunRecord {
        run_id: run_id.to_string(),
        connection: conn.name.clone(),
        started_at,
        finished_at: None,
        outcome: "running".into(),
        streams: BTreeMap::new(),
        error: None,
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
            let stats = Arc::new(Mutex::new(StreamRunStats { mode: mode.to_string(), ..Default::default() }));
            let runner = StreamRun {
                conn,
                source: source.clone(),
                store: store.clone(),
                stats: stats.clone(),
                run_id,
                stream: stream.clone(),
                progress: options.progress.clone(),
                rows_read: Default::default(),
                stop: options.stop.clone(),
                lease_lost: lease_lost.clone(),
            };
            let result = runner.run(mode, cursor_field).await;
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
        Ok::<_, RuntimeError>((failures, interrupted))
    }
    .await;

    record.finished_at = Some(Utc::now());
    let result = match outcome {
        Ok((failures, true)) => {
            record.outcome = "interrupted".into();
            if !failures.is_empty() {
                record.error = Some(failures.join("; "));
            }
            Ok(())
        }
        Ok((failures, false)) if failures.is_empty() => {
            record.outcome = "succeeded".into();
            Ok(())
        }
        Ok((failures, false)) => {
            record.outcome = "failed".into();
            record.error = Some(failures.join("; "));
            Ok(())
        }
        Err(e) => {
            record.outcome = "failed".into();
            record.error = Some(e.to_string());
            Err(e)
        }
    };
    runs.save(&record).await.map_err(|e| conn.lake_error(e))?;
    result.map(|()| record)
}

/// Delete staged files that no commit lists: leftovers of a process that died before
/// its commit. Only the lease holder may do this.
async fn collect_garbage(conn: &Connection, store: &StateStore) -> Result<(), RuntimeError> {
    let pending: std::collections::HashSet<&str> = store
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

struct StreamRun<'a> {
    conn: &'a Connection,
    source: Arc<dyn Source>,
    store: Arc<Mutex<StateStore>>,
    stats: Arc<Mutex<StreamRunStats>>,
    run_id: &'a str,
    stream: String,
    progress: Option<ProgressFn>,
    rows_read: std::sync::atomic::AtomicU64,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
    lease_lost: Arc<std::sync::atomic::AtomicBool>,
}

fn stop_requested(stop: &Option<Arc<std::sync::atomic::AtomicBool>>) -> bool {
    stop.as_ref()
        .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
}

impl StreamRun<'_> {
    async fn run(&self, mode: SyncMode, cursor_field: Option<String>) -> Result<(), RuntimeError> {
        let current = self.store.lock().await.stream(&self.stream);
        let request = ReadRequest {
            stream: self.stream.clone(),
            mode,
            cursor_field,
            state: match mode {
                SyncMode::Incremental => current.cursor.clone(),
                SyncMode::FullRefresh => None,
            },
            previous: current.cursor.clone(),
            batch_rows: self.conn.config.batch_rows.unwrap_or(8192),
            attempt: 0,
        };
        // Resume a partitioned read in flight, or plan a new one.
        let (plan, progress) = match &current.partitions {
            Some(p) if p.mode == mode => (p.plan.clone(), Some(p.clone())),
            _ => {
                let plan = self.source.plan(&request).await.map_err(|e| self.src(e))?;
                (plan, None)
            }
        };
        for warning in &plan.warnings {
            tracing::warn!(connection = %self.conn.name, stream = %self.stream, "{warning}");
        }
        self.stats
            .lock()
            .await
            .warnings
            .extend(plan.warnings.iter().cloned());
        let multi = plan.partitions.len() > 1 || plan.state_after.is_some();
        if multi && plan.state_after.is_none() {
            return Err(self.src(SourceError::other(
                "the source planned several partitions without `state_after` (a connector bug)",
            )));
        }
        let progress = match (multi, progress) {
            (false, _) => None,
            (true, Some(p)) => Some(p),
            (true, None) => {
                // Record the plan before reading so that a crash resumes this plan.
                let p = PartitionProgress {
                    plan: plan.clone(),
                    mode,
                    done: Default::default(),
                    checkpoints: Default::default(),
                };
                let state = StreamState {
                    cursor: current.cursor.clone(),
                    partitions: Some(p.clone()),
                };
                self.commit_state(state, vec![]).await?;
                Some(p)
            }
        };
        let parallelism = self.conn.config.parallelism.unwrap_or(1);
        let work: Vec<(usize, Partition, Option<Value>)> = plan
            .partitions
            .iter()
            .enumerate()
            .filter(|(_, p)| progress.as_ref().is_none_or(|pr| !pr.done.contains(&p.id)))
            .map(|(i, p)| {
                let resume = match &progress {
                    Some(pr) => pr.checkpoints.get(&p.id).cloned(),
                    None => request.state.clone(),
                };
                (i, p.clone(), resume)
            })
            .collect();
        futures::stream::iter(work.into_iter().map(|(i, p, resume)| {
            let request = &request;
            async move { self.read_partition(request, i, p, resume, multi).await }
        }))
        .buffer_unordered(parallelism)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(())
    }

    fn src(&self, e: SourceError) -> RuntimeError {
        self.conn.source_error(Some(&self.stream), e)
    }

    fn lake(&self, e: inlet_lake::LakeError) -> RuntimeError {
        self.conn.lake_error(e)
    }

    async fn read_partition(
        &self,
        request: &ReadRequest,
        index: usize,
        partition: Partition,
        mut resume: Option<Value>,
        multi: bool,
    ) -> Result<(), RuntimeError> {
        let mut writer = StreamWriter::new(
            self.conn.storage.clone(),
            &self.conn.name,
            &self.stream,
            self.run_id,
            self.conn.writer.clone(),
            index,
        );
        let max_retries = self.conn.config.max_retries.unwrap_or(3);
        let mut attempt = 0u32;
        loop {
            let retry;
            let request = match attempt {
                0 => request,
                n => {
                    retry = request.retry(n);
                    &retry
                }
            };
            let result = self
                .read_attempt(request, &partition, &mut resume, &mut writer, multi)
                .await;
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    writer.abort().await;
                    let interrupted = matches!(e, RuntimeError::Interrupted { .. });
                    if e.is_transient() && !interrupted && attempt < max_retries {
                        attempt += 1;
                        self.stats.lock().await.retries += 1;
                        let wait = Duration::from_millis(500 * 2u64.pow(attempt.min(6)));
                        tracing::warn!(connection = %self.conn.name, stream = %self.stream, partition = %partition.id, attempt, error = %e, "transient failure; retrying from the last checkpoint");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    async fn read_attempt(
        &self,
        request: &ReadRequest,
        partition: &Partition,
        resume: &mut Option<Value>,
        writer: &mut StreamWriter,
        multi: bool,
    ) -> Result<(), RuntimeError> {
        let mut events = self
            .source
            .read(request, partition, resume.clone())
            .await
            .map_err(|e| self.src(e))?;
        let commit_bytes = self.conn.writer.target_file_bytes;
        let interval = Duration::from_secs(self.conn.config.commit_interval_secs.unwrap_or(60));
        let mut last_commit = Instant::now();
        let mut last_checkpoint: Option<Value> = None;
        let mut rows_since_checkpoint = 0u64;
        while let Some(event) = events.next().await {
            match event.map_err(|e| self.src(e))? {
                ReadEvent::Batch(batch) => {
                    let n = batch.num_rows() as u64;
                    writer
                        .write(&batch, Utc::now())
                        .await
                        .map_err(|e| self.lake(e))?;
                    rows_since_checkpoint += n;
                    self.report(n).await;
                }
                ReadEvent::Checkpoint(value) => {
                    writer.note_checkpoint(&value);
                    last_checkpoint = Some(value);
                    rows_since_checkpoint = 0;
                    let stopping = stop_requested(&self.stop);
                    if stopping
                        || writer.pending_bytes() >= commit_bytes
                        || last_commit.elapsed() >= interval
                    {
                        let cp = last_checkpoint.take();
                        self.commit(writer, partition, cp.clone(), false, multi)
                            .await?;
                        if cp.is_some() {
                            *resume = cp;
                        }
                        last_commit = Instant::now();
                    }
                    if stopping {
                        return Err(RuntimeError::Interrupted {
                            connection: self.conn.name.clone(),
                        });
                    }
                }
                ReadEvent::Skipped(skipped) => {
                    let mut stats = self.stats.lock().await;
                    stats.skipped += 1;
                    if stats.skipped <= 20 {
                        tracing::warn!(connection = %self.conn.name, stream = %self.stream, location = %skipped.location, reason = %skipped.reason, "skipped a bad record");
                    }
                }
            }
        }
        if rows_since_checkpoint > 0 {
            tracing::warn!(connection = %self.conn.name, stream = %self.stream, rows = rows_since_checkpoint, "the source ended without a final checkpoint; those rows may be read again next time");
        }
        let cp = last_checkpoint.or_else(|| resume.clone());
        self.commit(writer, partition, cp.clone(), true, multi)
            .await?;
        *resume = cp;
        Ok(())
    }

    async fn report(&self, rows: u64) {
        let total = self
            .rows_read
            .fetch_add(rows, std::sync::atomic::Ordering::Relaxed)
            + rows;
        let Some(progress) = &self.progress else {
            return;
        };
        let landed = self.stats.lock().await.rows;
        progress(&Progress {
            stream: self.stream.clone(),
            rows_read: total,
            rows_landed: landed,
        });
    }

    /// Land what the writer holds and move the state to `cursor` (a partition's
    /// checkpoint, or the stream's), in that order.
    async fn commit(
        &self,
        writer: &mut StreamWriter,
        partition: &Partition,
        cursor: Option<Value>,
        done: bool,
        multi: bool,
    ) -> Result<(), RuntimeError> {
        let staged = writer.take_staged().await.map_err(|e| self.lake(e))?;
        inlet_lake::failpoint("after-stage");
        // Read, merge and commit under one lock: partitions commit in parallel, and a
        // state read before another partition's commit would erase that commit.
        let mut store = self.store.lock().await;
        let current = store.stream(&self.stream);
        let next = if !multi {
            StreamState {
                cursor: cursor.or(current.cursor.clone()),
                partitions: None,
            }
        } else {
            let mut progress = current.partitions.clone().ok_or_else(|| {
                self.src(SourceError::state(
                    &self.stream,
                    "partition progress vanished during the run (was the state reset meanwhile?)",
                ))
            })?;
            if done {
                progress.done.insert(partition.id.clone());
                progress.checkpoints.remove(&partition.id);
            } else if let Some(c) = cursor {
                progress.checkpoints.insert(partition.id.clone(), c);
            }
            if progress.done.len() >= progress.plan.partitions.len() {
                StreamState {
                    cursor: progress.plan.state_after.clone(),
                    partitions: None,
                }
            } else {
                StreamState {
                    cursor: current.cursor.clone(),
                    partitions: Some(progress),
                }
            }
        };
        if staged.is_empty() && next == current {
            return Ok(());
        }
        let (rows, bytes, files) = (
            staged.iter().map(|s| s.rows).sum::<u64>(),
            staged.iter().map(|s| s.size).sum::<u64>(),
            staged.len() as u64,
        );
        self.commit_locked(&mut store, next, staged).await?;
        drop(store);
        let mut stats = self.stats.lock().await;
        stats.rows += rows;
        stats.bytes += bytes;
        stats.files += files;
        stats.commits += 1;
        tracing::debug!(connection = %self.conn.name, stream = %self.stream, rows, files, "committed a checkpoint");
        Ok(())
    }

    async fn commit_state(
        &self,
        state: StreamState,
        pending: Vec<inlet_lake::StagedObject>,
    ) -> Result<(), RuntimeError> {
        let mut store = self.store.lock().await;
        self.commit_locked(&mut store, state, pending).await
    }

    async fn commit_locked(
        &self,
        store: &mut StateStore,
        state: StreamState,
        pending: Vec<inlet_lake::StagedObject>,
    ) -> Result<(), RuntimeError> {
        if self.lease_lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(self.lake(inlet_lake::LakeError::Invalid(format!(
                "connection `{}`: the lease was lost (another process may have taken over); nothing after the last commit was landed",
                self.conn.name
            ))));
        }
        let attempted = store.current().seq + 1;
        let result = store
            .commit(Change {
                action: StateAction::Checkpoint,
                actor: "sync".into(),
                run_id: Some(self.run_id.to_string()),
                changes: BTreeMap::from([(self.stream.clone(), Some(state))]),
                pending,
            })
            .await;
        if let Err(e) = result {
            // The commit point may have been passed before the error (the state write
            // or a response was lost): if our entry is there, the commit happened, and
            // reading again from the older resume point would land rows twice.
            store.reload().await.map_err(|e| self.lake(e))?;
            let ours = store
                .read_entry(attempted)
                .await
                .map_err(|e| self.lake(e))?
                .is_some_and(|entry| entry.run_id.as_deref() == Some(self.run_id));
            if !ours {
                return Err(self.lake(e));
            }
            tracing::warn!(connection = %self.conn.name, stream = %self.stream, seq = attempted, error = %e, "the commit went through despite an error");
        }
        Ok(())
    }
}
