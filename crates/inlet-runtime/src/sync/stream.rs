//! One stream within a run: its partitions (in parallel up to the connection's
//! `parallelism`), each partition's read attempts and retries from the last checkpoint,
//! and the commits that land files and then move the stream's state.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use arrow_schema::SchemaRef;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use inlet_core::{Partition, ReadEvent, ReadRequest, Source, SourceError, SyncMode};
use inlet_lake::{
    SchemaStore, StagedObject, StateAction, StateStore, StreamRunStats, StreamState, StreamWriter,
    state::Change,
};
use serde_json::Value;
use tokio::sync::Mutex;

use super::{
    Connection, Progress, ProgressFn,
    progress::{self, Event, ProgressError, Shape},
    stop_requested,
};
use crate::RuntimeError;

/// One stream's read in a run, and what it has done so far.
pub(super) struct StreamRun<'a> {
    pub(super) conn: &'a Connection,
    pub(super) source: Arc<dyn Source>,
    pub(super) store: Arc<Mutex<StateStore>>,
    pub(super) stats: Arc<Mutex<StreamRunStats>>,
    pub(super) run_id: &'a str,
    pub(super) stream: String,
    /// The stream's primary key as discovered, recorded with its schemas.
    pub(super) primary_key: Vec<String>,
    pub(super) progress: Option<ProgressFn>,
    pub(super) rows_read: AtomicU64,
    pub(super) stop: Option<Arc<AtomicBool>>,
    pub(super) lease_lost: Arc<AtomicBool>,
}

impl StreamRun<'_> {
    /// Read the stream to its end (or to a stop), committing as it goes.
    pub(super) async fn run(
        &self,
        mode: SyncMode,
        cursor_field: Option<String>,
    ) -> Result<(), RuntimeError> {
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
        let resumed = progress::resumable(&current, mode).cloned();
        let fresh = resumed.is_none();
        let plan = match resumed {
            Some(plan) => plan,
            None => self.source.plan(&request).await.map_err(|e| self.src(e))?,
        };
        for warning in &plan.warnings {
            tracing::warn!(connection = %self.conn.name, stream = %self.stream, "{warning}");
        }
        {
            let mut stats = self.stats.lock().await;
            stats.warnings.extend(plan.warnings.iter().cloned());
            stats
                .gauges
                .extend(plan.gauges.iter().map(|(k, v)| (k.clone(), *v)));
        }
        let shape = Shape::of(&plan).map_err(|e| self.progress_error(e))?;
        let started = if fresh {
            let step = progress::transition(&current, shape, Event::Planned { plan: &plan, mode })
                .map_err(|e| self.progress_error(e))?;
            if step.changed {
                self.commit_state(step.state.clone(), vec![]).await?;
            }
            step.state
        } else {
            current
        };
        let parallelism = self.conn.config.parallelism.unwrap_or(1);
        let work = progress::remaining(&plan, progress::in_flight(&started, shape), &request.state);
        futures::stream::iter(work.into_iter().map(|(i, p, resume)| {
            let request = &request;
            async move { self.read_partition(request, i, p, resume, shape).await }
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

    fn progress_error(&self, e: ProgressError) -> RuntimeError {
        let message = e.to_string();
        self.src(match e {
            ProgressError::NoStateAfter => SourceError::other(message),
            ProgressError::Vanished => SourceError::state(&self.stream, message),
        })
    }

    async fn read_partition(
        &self,
        request: &ReadRequest,
        index: usize,
        partition: Partition,
        mut resume: Option<Value>,
        shape: Shape,
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
            // A retry tells the source which attempt it is (Postgres reads smaller chunks);
            // only a retry clones the request, so a first read never copies a large state.
            let retry;
            let request = match attempt {
                0 => request,
                n => {
                    retry = request.retry(n);
                    &retry
                }
            };
            let result = self
                .read_attempt(request, &partition, &mut resume, &mut writer, shape)
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
        shape: Shape,
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
                        self.commit(writer, partition, cp.clone(), false, shape)
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
        self.commit(writer, partition, cp.clone(), true, shape)
            .await?;
        *resume = cp;
        Ok(())
    }

    async fn report(&self, rows: u64) {
        let total = self.rows_read.fetch_add(rows, Ordering::Relaxed) + rows;
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
        shape: Shape,
    ) -> Result<(), RuntimeError> {
        let staged = writer.take_staged().await.map_err(|e| self.lake(e))?;
        inlet_lake::failpoint("after-stage");
        // Read, merge and commit under one lock: partitions commit in parallel, and a
        // state read before another partition's commit would erase that commit.
        let mut store = self.store.lock().await;
        let current = store.stream(&self.stream);
        let partition = partition.id.as_str();
        let event = if done {
            Event::Done { partition, cursor }
        } else {
            Event::Checkpoint { partition, cursor }
        };
        let step =
            progress::transition(&current, shape, event).map_err(|e| self.progress_error(e))?;
        if staged.is_empty() && !step.changed {
            return Ok(());
        }
        let (rows, bytes, files) = (
            staged.iter().map(|s| s.rows).sum::<u64>(),
            staged.iter().map(|s| s.size).sum::<u64>(),
            staged.len() as u64,
        );
        let moved = step
            .state
            .cursor
            .clone()
            .filter(|c| current.cursor.as_ref() != Some(c));
        self.commit_locked(&mut store, step.state, staged).await?;
        drop(store);
        if let Some(cursor) = moved {
            self.source.committed(&self.stream, &cursor).await;
        }
        if files > 0 {
            self.record_schemas(writer.written()).await;
        }
        let mut stats = self.stats.lock().await;
        stats.rows += rows;
        stats.bytes += bytes;
        stats.files += files;
        stats.commits += 1;
        tracing::debug!(connection = %self.conn.name, stream = %self.stream, rows, files, "committed a checkpoint");
        Ok(())
    }

    /// Record the schemas of the files the writer has landed in the lake's
    /// [`SchemaStore`]. A failure is logged and does not fail the sync: the next commit
    /// (or `SchemaStore::scan`) repairs the record.
    async fn record_schemas(&self, written: Vec<(SchemaRef, chrono::NaiveDate)>) {
        let Some(first_date) = written.iter().map(|(_, d)| *d).min() else {
            return;
        };
        let mut schemas: Vec<SchemaRef> = Vec::new();
        for (schema, _) in written {
            if !schemas.iter().any(|s| s.fields() == schema.fields()) {
                schemas.push(schema);
            }
        }
        let result = SchemaStore::new(self.conn.storage.clone())
            .record_keyed(
                &self.conn.name,
                &self.stream,
                &schemas,
                first_date,
                self.run_id,
                Some(&self.primary_key),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(connection = %self.conn.name, stream = %self.stream, error = %e, "could not record the stream's schemas; the next sync records them again");
        }
    }

    async fn commit_state(
        &self,
        state: StreamState,
        pending: Vec<StagedObject>,
    ) -> Result<(), RuntimeError> {
        let mut store = self.store.lock().await;
        self.commit_locked(&mut store, state, pending).await
    }

    async fn commit_locked(
        &self,
        store: &mut StateStore,
        state: StreamState,
        pending: Vec<StagedObject>,
    ) -> Result<(), RuntimeError> {
        if self.lease_lost.load(Ordering::SeqCst) {
            return Err(self.lake(inlet_lake::LakeError::Invalid(format!(
                "connection `{}`: the lease was lost (another process may have taken over); nothing after the last commit was landed",
                self.conn.name
            ))));
        }
        store
            .commit(Change {
                action: StateAction::Checkpoint,
                actor: "sync".into(),
                run_id: Some(self.run_id.to_string()),
                changes: BTreeMap::from([(self.stream.clone(), Some(state))]),
                pending,
            })
            .await
            .map_err(|e| self.lake(e))?;
        Ok(())
    }
}
