//! # The `postgres` source
//!
//! Lands tables of a PostgreSQL **hot standby** (never the primary, unless the connection
//! opts in) as Arrow batches, streamed with `COPY (SELECT ...) TO STDOUT (FORMAT binary)`
//! and decoded straight into Arrow builders ([`types`], [`copy`]).
//!
//! - **Replica guard** ([`session`]): every session checks `pg_is_in_recovery()`, is
//!   read-only, UTC, named, with `statement_timeout` and `lock_timeout`; the replay lag is
//!   checked before a read (wait or fail past `max_replay_lag_secs`).
//! - **Streams** ([`catalog`]): tables, partitioned tables (their leaves are read through
//!   the parent, under one watermark), views and materialized views, named `schema.table`.
//! - **Full refresh**: tables with a single integer primary key are split into key ranges
//!   of about `chunk_rows` rows, each its own short statement and partition (read in
//!   parallel with the connection's `parallelism`). A range that hits a hot-standby
//!   conflict (or any transient error) is retried from its last checkpoint in halves,
//!   then quarters... ([`inlet_core::ReadRequest::attempt`] says which retry it is).
//!   Composite and non-integer keys are split at bounds sampled with `TABLESAMPLE`.
//!   Tables without a key, and views (read only when named with a cursor), are read in one
//!   statement.
//! - **Incremental by cursor** (`cursor_field = "updated_at"`): each run reads
//!   `cursor >= saved - lookback AND cursor <= max(finite cursor) at plan time`, and
//!   saves that maximum, found by a backward scan of the cursor's index ([`cursor`]).
//!   Rows committed late with an older cursor value are caught by the lookback window;
//!   rows in the window may land again in the next run (never twice in one run). The
//!   state also keeps a hash of each row version at exactly the saved value (the
//!   boundary, up to `max_boundary_rows`), so the inclusive lower bound does not land
//!   them again unless they changed: a run with no change lands nothing. Rows whose
//!   cursor is NULL or ±infinity are read by the first run only.
//! - **Incremental by `xmin`** (`cursor_field = "xmin"`), for tables without a cursor
//!   column: the watermark is `pg_snapshot_xmin(pg_current_snapshot())` as a 64-bit xid
//!   (works on a standby); each run reads rows whose `xmin` is at or after the saved
//!   watermark (frozen rows keep their raw `xmin`). When the saved watermark is 2^31
//!   transactions old (32-bit xids wrap), ahead of the server, or the table's relations
//!   changed (a partition attached: its rows have older xmins), the run re-reads the whole
//!   table instead (a bounded re-sync) and says so.
//!   Deletes are not seen by cursor or xmin reads.
//! - **Change data capture** ([`cdc`], with a `cdc` table in the config): incremental
//!   streams without a cursor are read from a logical replication slot on the standby
//!   (PostgreSQL 16+): a snapshot by key ranges, then every insert, update, delete and
//!   truncate, each row with its position (`_inlet_lsn`, `_inlet_seq`) and operation.
//! - **Schema drift**: each run compares the catalog with the columns saved in the
//!   stream's state; `on_schema_change = "evolve"` lands the new shape and records the
//!   change in the state's `schema_changes`, `"fail"` stops with the change listed.
//!
//! The crate's own seams: `plan` (partitions and the state after them), `read` (a
//! partition's statements, COPY, checkpoints), `state` (the saved state's format),
//! `check` (`inlet check`); this file is the connector and the [`Source`] glue.
#![deny(missing_docs)]

pub mod catalog;
pub mod cdc;
pub mod config;
pub mod copy;
pub mod cursor;
pub mod session;
pub mod types;

mod check;
mod plan;
mod read;
mod state;

pub use state::{Boundary, STATE_VERSION, SchemaChange, StreamState};

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use inlet_core::{
    Catalog, CheckReport, ConnectorInfo, ConnectorKind, EventStream, Partition, ReadPlan,
    ReadRequest, Source, SourceContext, SourceError, StreamDescriptor, SyncMode, TypedConnector,
};
use serde_json::Value;

use crate::{
    catalog::{RelKind, Table},
    config::PostgresConfig,
    session::{Connect, Session},
};

/// The name of the pseudo cursor that reads by transaction id.
pub const XMIN: &str = "xmin";

/// The `postgres` connector.
#[derive(Debug, Default)]
pub struct PostgresConnector;

#[async_trait]
impl TypedConnector for PostgresConnector {
    type Config = PostgresConfig;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Builtin,
            description: "Tables of a PostgreSQL hot standby, streamed with COPY binary".into(),
            hosts: vec![],
        }
    }

    fn check_config(&self, config: &PostgresConfig) -> Result<(), SourceError> {
        config::check(config)
    }

    async fn build(
        &self,
        config: PostgresConfig,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let connect = Connect::new(Arc::new(config), &ctx.connection, &ctx.base_dir)?;
        Ok(Arc::new(PostgresSource::new(connect)))
    }
}

/// A configured `postgres` source.
#[derive(Debug)]
pub struct PostgresSource {
    connect: Connect,
    /// The catalog read by the last `discover`, reused by `plan` and `read` of the run.
    tables: Mutex<Option<Arc<Vec<Table>>>>,
    /// The statements the last `plan` ran on the server, in order (see
    /// [`PostgresSource::planning_queries`]).
    planned: Mutex<Vec<String>>,
    /// Per CDC stream, the position its committed state holds: the running change read
    /// confirms it to the slot ([`Source::committed`]).
    durable: Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicU64>>>,
}

impl PostgresSource {
    /// A source reading through `connect`.
    pub fn new(connect: Connect) -> Self {
        PostgresSource {
            connect,
            tables: Mutex::new(None),
            planned: Mutex::new(Vec::new()),
            durable: Mutex::new(std::collections::HashMap::new()),
        }
    }

    async fn open(&self) -> Result<Session, SourceError> {
        self.connect.open().await
    }

    async fn catalog(
        &self,
        session: &Session,
        refresh: bool,
    ) -> Result<Arc<Vec<Table>>, SourceError> {
        if !refresh
            && let Ok(guard) = self.tables.lock()
            && let Some(t) = guard.as_ref()
        {
            return Ok(t.clone());
        }
        let tables = Arc::new(catalog::tables(&self.connect, &session.client).await?);
        if let Ok(mut guard) = self.tables.lock() {
            *guard = Some(tables.clone());
        }
        Ok(tables)
    }

    async fn table(
        &self,
        session: &Session,
        stream: &str,
        refresh: bool,
    ) -> Result<Table, SourceError> {
        let tables = self.catalog(session, refresh).await?;
        tables
            .iter()
            .find(|t| t.stream_name() == stream)
            .cloned()
            .ok_or_else(|| SourceError::UnknownStream {
                stream: stream.to_string(),
                message: format!(
                    "no table or view `{stream}` in {} (dropped, renamed, or excluded by \
                     `tables`/`exclude`?). Remove it from the connection's streams, or reset its \
                     state after a rename",
                    self.connect.resource()
                ),
            })
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        self.check_source().await
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        let session = self.open().await?;
        let tables = self.catalog(&session, true).await?;
        let streams = tables
            .iter()
            .map(|t| {
                let mut candidates = t.cursor_candidates();
                if t.kind.has_xmin() {
                    candidates.push(XMIN.to_string());
                }
                // A view is read only with an explicit cursor: it has no key to split
                // by and no xmin, and reading all of it runs its whole query on the
                // standby. It is listed, but synced only when configured.
                let view = t.kind == RelKind::View;
                StreamDescriptor {
                    name: t.stream_name(),
                    schema: types::arrow_schema(&t.columns),
                    primary_key: t.primary_key.clone(),
                    cursor_candidates: candidates,
                    sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
                    default_mode: if view {
                        SyncMode::Incremental
                    } else {
                        SyncMode::FullRefresh
                    },
                    opt_in: view,
                }
            })
            .collect();
        Ok(Catalog { streams })
    }

    async fn plan(&self, request: &ReadRequest) -> Result<ReadPlan, SourceError> {
        self.plan_read(request).await
    }

    async fn read(
        &self,
        request: &ReadRequest,
        partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        self.read_partition(request, partition, resume).await
    }

    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        Self::parse_state(stream, Some(state)).map(|_| ())
    }

    async fn committed(&self, stream: &str, state: &Value) {
        self.note_durable(stream, state);
    }
}
