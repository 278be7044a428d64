//! Change data capture: a stream read from a logical replication slot **on the standby**
//! (PostgreSQL 16+), with the built-in `pgoutput` plugin over the streaming replication
//! protocol (the session in [`replication`], built on the pieces of [`pgwire_replication`]:
//! framing, SCRAM; its socket read by a thread, [`socket`]).
//!
//! ```text
//!  first run:  make slot (position C) ─┬─ key ranges by COPY, each labelled with the replay
//!                                       │  position R read just before its statement (R ≥ C)
//!                                       └─ changes from C up to T (the replay position at plan)
//!  next runs:  advance the slot to the saved position, changes from it up to T
//! ```
//!
//! Every landed row carries `_inlet_lsn` (the commit LSN of its transaction; a snapshot
//! row: R) and `_inlet_seq` (its order in the transaction; 0 for a snapshot row), so
//! "the latest row per key by (`_inlet_lsn`, `_inlet_seq`), dropping deletes and rows
//! before the last truncate" is the table: a change committed before R is in the
//! snapshot row that outranks it, one committed at or after R outranks the snapshot row
//! and is streamed (it committed after C). Rows re-landed after a crash carry the same
//! position. The slot's confirmed position moves only to a position the lake holds (the
//! committed state), at the start of the next run.

pub mod pgoutput;
mod replication;
pub mod slot;
mod socket;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use inlet_core::{EventStream, Partition, ReadEvent, ReadRequest, SourceError, producer::Emitter};
use pgwire_replication::Lsn;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    PostgresSource,
    catalog::Table,
    plan::PartSpec,
    session::Session,
    state::StreamState,
    types::{BatchBuilder, ColumnType, Kind},
};
use pgoutput::{Message, Relation};
use replication::{Event, ReplicationSession};

/// The method name of a CDC stream's state.
pub const METHOD: &str = "cdc";

/// The columns every CDC row carries after the table's own.
pub const META_COLUMNS: [&str; 5] = [
    "_inlet_lsn",
    "_inlet_seq",
    "_inlet_op",
    "_inlet_commit_ts",
    "_inlet_unchanged",
];

/// The metadata columns, as decoded.
pub(crate) fn meta_columns() -> Vec<ColumnType> {
    let col = |name: &str, pg_type: &str, kind: Kind, nullable: bool| ColumnType {
        name: name.to_string(),
        pg_type: pg_type.to_string(),
        kind,
        cast_to_text: false,
        nullable,
        type_id: None,
    };
    vec![
        col("_inlet_lsn", "bigint", Kind::Int8, false),
        col("_inlet_seq", "bigint", Kind::Int8, false),
        col("_inlet_op", "text", Kind::Text, false),
        col(
            "_inlet_commit_ts",
            "timestamp with time zone",
            Kind::Timestamptz,
            true,
        ),
        col(
            "_inlet_unchanged",
            "text[]",
            Kind::Array(Box::new(Kind::Text)),
            true,
        ),
    ]
}

/// The columns a CDC stream lands: the table's, each nullable (a delete lands only the
/// key, a truncate nothing), then the metadata.
pub(crate) fn landed_columns(table: &[ColumnType]) -> Vec<ColumnType> {
    let mut cols: Vec<ColumnType> = table
        .iter()
        .cloned()
        .map(|c| ColumnType {
            nullable: true,
            ..c
        })
        .collect();
    cols.extend(meta_columns());
    cols
}

/// The SELECT list's tail of a snapshot row taken at `lsn`.
pub(crate) fn snapshot_select(lsn: Lsn) -> String {
    format!(
        ", {}::int8, 0::int8, 'snapshot'::text, NULL::timestamptz, NULL::text[]",
        lsn.as_u64() as i64
    )
}

/// What the changes partition reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CdcSpec {
    /// The slot.
    pub(crate) slot: String,
    /// Start here (`X/Y`).
    pub(crate) from: String,
    /// Read until every transaction committed before this position is landed.
    pub(crate) to: String,
    /// The stream's state after the read, when each checkpoint is the stream's state (an
    /// incremental run); absent when the checkpoints are the partition's (the first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) state: Option<Value>,
    /// Stop at a commit after this many changes (incremental runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_changes: Option<u64>,
}

fn parse_lsn(stream: &str, what: &str, text: &str) -> Result<Lsn, SourceError> {
    Lsn::parse(text)
        .map_err(|_| SourceError::state(stream, format!("{what} `{text}` is not an LSN")))
}

/// The position a checkpoint of the changes partition resumes from.
fn resume_lsn(stream: &str, resume: Option<&Value>) -> Result<Option<Lsn>, SourceError> {
    match resume.and_then(|v| v.get("lsn")).and_then(Value::as_str) {
        Some(t) => parse_lsn(stream, "checkpoint lsn", t).map(Some),
        None => Ok(None),
    }
}

impl PostgresSource {
    /// Plan a CDC read: the first run makes the slot and reads the key ranges and the
    /// changes since the slot; later runs read the changes since the saved position.
    pub(crate) async fn plan_cdc(
        &self,
        session: &Session,
        table: &Table,
        snapshot_parts: impl AsyncFnOnce() -> Result<Vec<Partition>, SourceError>,
        previous: Option<&StreamState>,
        warnings: &mut Vec<String>,
        gauges: &mut std::collections::BTreeMap<String, f64>,
    ) -> Result<(Vec<Partition>, StreamState, bool), SourceError> {
        let cfg = self.connect.config();
        let Some(cdc) = cfg.cdc.as_ref() else {
            return Err(SourceError::other("plan_cdc without a cdc table"));
        };
        let stream = table.stream_name();
        let problems = slot::problems(&self.connect, session, &cdc.publication, &[table]).await?;
        if let Some(p) = problems.first() {
            let all = problems
                .iter()
                .map(|p| format!("{}: {}", p.what, p.fix))
                .collect::<Vec<_>>()
                .join("; ");
            let field = if p.what.contains("publication") {
                "cdc.publication"
            } else {
                "cdc"
            };
            return Err(SourceError::config(
                field,
                format!(
                    "{}: change data capture of `{stream}` cannot start: {all}. Nothing was read \
                     and the stream's state is unchanged (`inlet check` lists every problem)",
                    self.connect.resource()
                ),
            ));
        }
        let name = slot::slot_name(self.connect.connection(), &stream);
        let info = slot::inspect(&self.connect, session, &name).await?;
        let prev = previous.filter(|p| p.method == METHOD && p.slot.as_deref() == Some(&name));
        if let Some(info) = &info {
            if let Some(pid) = info.active_pid {
                return Err(SourceError::Other {
                    message: format!(
                        "{}: replication slot `{name}` is in use by server process {pid} \
                         (another inlet run of this stream, or another client). Wait for it to \
                         end, or stop it with `SELECT pg_terminate_backend({pid})` on the standby",
                        self.connect.resource()
                    ),
                    transient: true,
                });
            }
            if info.plugin.as_deref() != Some("pgoutput")
                || info.database.as_deref() != Some(cfg.database.as_str())
            {
                return Err(SourceError::state(
                    &stream,
                    format!(
                        "replication slot `{name}` on {} is not inlet's (plugin {}, database \
                         {}): drop or rename it on the standby, or rename the connection",
                        self.connect.resource(),
                        info.plugin.as_deref().unwrap_or("none: a physical slot"),
                        info.database.as_deref().unwrap_or("none")
                    ),
                ));
            }
        }
        let Some(prev) = prev else {
            return self
                .plan_first_cdc(session, table, &name, info.is_some(), snapshot_parts)
                .await;
        };
        let Some(saved) = prev.lsn.as_deref() else {
            return Err(SourceError::state(&stream, "a cdc state without `lsn`"));
        };
        let saved = parse_lsn(&stream, "state lsn", saved)?;
        let Some(info) = info else {
            return Err(SourceError::state(
                &stream,
                format!(
                    "replication slot `{name}` is missing on {} (dropped, or the standby was \
                     rebuilt or promoted): the changes after {} cannot be read. Nothing was \
                     read and the state is unchanged; `inlet state reset` of the stream makes a \
                     new slot and lands a new snapshot",
                    self.connect.resource(),
                    saved.to_pg_string()
                ),
            ));
        };
        if let Some(why) = &info.invalidated {
            return Err(SourceError::state(
                &stream,
                format!(
                    "replication slot `{name}` on {} was invalidated by the server ({why}: {}); \
                     the changes after {} are gone from it. Nothing was read and the state is \
                     unchanged; `inlet state reset` of the stream drops the slot, makes a new \
                     one and lands a new snapshot",
                    self.connect.resource(),
                    match why.as_str() {
                        "wal_removed" =>
                            "the WAL it needed was removed; raise max_slot_wal_keep_size or sync more often",
                        "wal_level_insufficient" =>
                            "wal_level was lowered below logical on the primary",
                        _ =>
                            "a recovery conflict: the primary removed catalog rows it needed; keep hot_standby_feedback = on with a physical slot",
                    },
                    saved.to_pg_string()
                ),
            ));
        }
        if info.confirmed_flush.is_some_and(|c| c > saved) {
            return Err(SourceError::state(
                &stream,
                format!(
                    "replication slot `{name}` has confirmed {} but the stream's state is at {}: \
                     the changes between were acknowledged by another reader and are lost to \
                     this stream. Reset the stream to land a new snapshot",
                    info.confirmed_flush
                        .map(|c| c.to_pg_string())
                        .unwrap_or_default(),
                    saved.to_pg_string()
                ),
            ));
        }
        if info.confirmed_flush.is_some_and(|c| c < saved) {
            // The lake holds everything before `saved`: the server may drop that WAL.
            if let Err(e) = slot::advance(&self.connect, session, &name, saved).await {
                tracing::warn!(stream = %stream, error = %e, "could not advance the slot; the read acknowledges it instead");
            }
        }
        if let Some(bytes) = info.retained_bytes {
            tracing::info!(stream = %stream, slot = %name, retained_bytes = bytes, "replication slot");
            gauges.insert("slot_retained_bytes".into(), bytes as f64);
            if bytes > 0 && bytes as u64 > cdc.max_retained_bytes {
                warnings.push(format!(
                    "replication slot `{name}` keeps {bytes} bytes of WAL on the standby (more \
                     than cdc.max_retained_bytes = {}): sync more often, or the standby's disk \
                     fills",
                    cdc.max_retained_bytes
                ));
            }
        }
        let to = slot::replay_lsn(&self.connect, session).await?;
        // How far the stream is behind the standby when the run starts.
        gauges.insert(
            "cdc_lag_bytes".into(),
            to.as_u64().saturating_sub(saved.as_u64()) as f64,
        );
        let mut state = StreamState {
            method: METHOD.into(),
            slot: Some(name.clone()),
            lsn: Some(saved.to_pg_string()),
            snapshot_at: prev.snapshot_at.clone(),
            ..Default::default()
        };
        if to <= saved {
            return Ok((Vec::new(), state, false));
        }
        state.lsn = Some(to.to_pg_string());
        let spec = PartSpec {
            cdc: Some(CdcSpec {
                slot: name,
                from: saved.to_pg_string(),
                to: to.to_pg_string(),
                // Filled by `plan_read` with the stream's state after the read.
                state: Some(Value::Null),
                max_changes: cdc.max_changes_per_run,
            }),
            ..Default::default()
        };
        Ok((
            vec![Partition {
                id: "changes".into(),
                spec: serde_json::to_value(spec).map_err(SourceError::other)?,
            }],
            state,
            false,
        ))
    }

    async fn plan_first_cdc(
        &self,
        session: &Session,
        table: &Table,
        name: &str,
        exists: bool,
        snapshot_parts: impl AsyncFnOnce() -> Result<Vec<Partition>, SourceError>,
    ) -> Result<(Vec<Partition>, StreamState, bool), SourceError> {
        let cfg = self.connect.config();
        let wait = cfg.cdc.as_ref().map_or(120, |c| c.slot_wait_secs);
        if exists {
            // No saved position: a slot left by a reset stream, or by a first run that
            // did not commit. Its changes are not the lake's: start over.
            tracing::warn!(stream = %table.stream_name(), slot = name, "dropping the replication slot of a stream without state; a new one is made and a new snapshot lands");
            slot::drop(&self.connect, session, name).await?;
        }
        let from = slot::create(&self.connect, session, name, wait).await?;
        let to = slot::replay_lsn(&self.connect, session).await?;
        let to = to.max(from);
        let mut parts = Vec::new();
        for mut p in snapshot_parts().await? {
            let mut spec: PartSpec = serde_json::from_value(p.spec).map_err(SourceError::other)?;
            spec.cdc_snapshot = true;
            p.spec = serde_json::to_value(spec).map_err(SourceError::other)?;
            parts.push(p);
        }
        parts.push(Partition {
            id: "changes".into(),
            spec: serde_json::to_value(PartSpec {
                cdc: Some(CdcSpec {
                    slot: name.to_string(),
                    from: from.to_pg_string(),
                    to: to.to_pg_string(),
                    state: None,
                    max_changes: None,
                }),
                ..Default::default()
            })
            .map_err(SourceError::other)?,
        });
        Ok((
            parts,
            StreamState {
                method: METHOD.into(),
                slot: Some(name.to_string()),
                lsn: Some(to.to_pg_string()),
                snapshot_at: Some(from.to_pg_string()),
                ..Default::default()
            },
            true,
        ))
    }

    /// The position the committed state of `stream` holds, shared with its change read.
    fn durable_cell(&self, stream: &str) -> Arc<AtomicU64> {
        match self.durable.lock() {
            Ok(mut m) => m.entry(stream.to_string()).or_default().clone(),
            Err(_) => Arc::new(AtomicU64::new(0)),
        }
    }

    /// A committed state of a CDC stream: its position is in the lake, so the running
    /// change read may confirm it to the slot (the server can then drop that WAL).
    pub(crate) fn note_durable(&self, stream: &str, state: &Value) {
        if state.get("method").and_then(Value::as_str) != Some(METHOD) {
            return;
        }
        if let Some(lsn) = state
            .get("lsn")
            .and_then(Value::as_str)
            .and_then(|l| Lsn::parse(l).ok())
        {
            self.durable_cell(stream)
                .fetch_max(lsn.as_u64(), Ordering::SeqCst);
        }
    }

    /// Read the changes partition.
    pub(crate) async fn read_changes(
        &self,
        request: &ReadRequest,
        spec: CdcSpec,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        let stream = request.stream.clone();
        let from = parse_lsn(&stream, "from", &spec.from)?;
        let to = parse_lsn(&stream, "to", &spec.to)?;
        let start = resume_lsn(&stream, resume.as_ref())?.map_or(from, |r| r.max(from));
        // Acknowledge only what the committed state holds.
        let acked = Self::parse_state(&stream, request.state.as_ref())?
            .and_then(|s| s.lsn)
            .and_then(|l| Lsn::parse(&l).ok())
            .filter(|l| *l <= start);
        let session = self.open().await?;
        let table = self.table(&session, &stream, false).await?;
        let relations: Vec<u32> = session
            .client
            .query_one(
                "SELECT array_agg(DISTINCT r) FROM (SELECT $1::oid AS r \
                   UNION ALL SELECT relid::oid FROM pg_partition_tree($1::oid)) t",
                &[&table.oid],
            )
            .await
            .map_err(|e| self.connect.error(e))?
            .get(0);
        let types: HashMap<String, (u32, i32)> = table
            .columns
            .iter()
            .filter_map(|c| c.type_id.map(|t| (c.name.clone(), t)))
            .collect();
        let (mut tx, guard, events) = inlet_core::producer::channel(stream.clone(), 4);
        if start >= to {
            // Nothing to read: the partition ends at once (a finished producer).
            tokio::spawn(guard.run(async move {
                drop(tx);
                Ok(())
            }));
            return Ok(events);
        }
        let cfg = self.connect.config();
        let publication = cfg
            .cdc
            .as_ref()
            .map(|c| c.publication.clone())
            .unwrap_or_default();
        let start_within =
            Duration::from_secs(cfg.connect_timeout_secs + cfg.statement_timeout_secs);
        let settings = replication::Settings {
            resource: self.connect.resource(),
            host: cfg.host.clone(),
            port: cfg.port,
            user: cfg.user.clone(),
            password: self.connect.password().cloned(),
            database: cfg.database.clone(),
            application_name: self.connect.application_name().to_string(),
            ssl_mode: cfg.ssl_mode,
            tls: self.connect.tls_client_config(),
            slot: spec.slot.clone(),
            publication,
            start,
            confirmed: acked.unwrap_or(Lsn::ZERO),
            status_interval: Duration::from_secs(2),
        };
        let resource = self.connect.resource();
        let builder_cols = landed_columns(&table.columns);
        let reader = ChangeReader {
            stream: stream.clone(),
            resource: resource.clone(),
            slot: spec.slot.clone(),
            relations,
            table_columns: table.columns.clone(),
            builder: BatchBuilder::new(&builder_cols, request.batch_rows),
            batch_rows: request.batch_rows.max(1),
            known: HashMap::new(),
            to,
            max_changes: spec.max_changes,
            idle: Duration::from_secs(cfg.statement_timeout_secs),
            connect: self.connect.clone(),
            lookup: None,
            statements: HashMap::new(),
            types,
            durable: {
                // Start from what this read knows is committed (a cell of an earlier
                // read, before a reset, must not confirm past it).
                let cell = self.durable_cell(&stream);
                cell.store(acked.map_or(0, |l| l.as_u64()), Ordering::SeqCst);
                cell
            },
            confirmed: acked.map_or(0, |l| l.as_u64()),
        };
        let template = spec.state.clone();
        tokio::spawn(guard.run(async move {
            let session = match tokio::time::timeout(
                start_within,
                ReplicationSession::start(&settings),
            )
            .await
            {
                Ok(started) => {
                    started.map_err(|e| replication_error(&resource, &reader.slot, &e))?
                }
                Err(_) => {
                    return Err(SourceError::Other {
                        message: format!(
                            "{resource}: the replication session of slot `{}` did not start \
                             within {} s (connect_timeout_secs + statement_timeout_secs)",
                            reader.slot,
                            start_within.as_secs()
                        ),
                        transient: true,
                    });
                }
            };
            reader.run(session, &mut tx, start, template).await
        }));
        drop(session);
        Ok(events)
    }
}

/// What the changes partition keeps while it reads.
struct ChangeReader {
    stream: String,
    resource: String,
    slot: String,
    /// The table and its partitions.
    relations: Vec<u32>,
    table_columns: Vec<ColumnType>,
    builder: BatchBuilder,
    batch_rows: usize,
    /// Each relation's columns as last described: index in `table_columns` per tuple
    /// column, and whether the relation's identity is FULL.
    known: HashMap<u32, Known>,
    /// Each column's type (oid, modifier) in the read's catalog.
    types: HashMap<String, (u32, i32)>,
    to: Lsn,
    max_changes: Option<u64>,
    idle: Duration,
    /// Opens the session that looks unchanged values up (rarely needed).
    connect: crate::session::Connect,
    lookup: Option<Session>,
    /// The statements of [`Known::convert`], prepared.
    statements: HashMap<String, tokio_postgres::Statement>,
    /// What the committed state holds ([`PostgresSource::note_durable`]), and what this
    /// read has confirmed to the slot so far.
    durable: Arc<AtomicU64>,
    confirmed: u64,
}

/// A parameter passed in the binary form pgoutput sent it in.
#[derive(Debug)]
struct RawIn<'a>(&'a [u8]);

impl tokio_postgres::types::ToSql for RawIn<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0);
        Ok(tokio_postgres::types::IsNull::No)
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
    tokio_postgres::types::to_sql_checked!();
}

/// A value in its binary form, whatever its type.
struct RawOut(Option<Vec<u8>>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawOut {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawOut(Some(raw.to_vec())))
    }
    fn from_sql_null(
        _: &tokio_postgres::types::Type,
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawOut(None))
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// A relation as its last description in the stream says.
struct Known {
    rel: Relation,
    /// Per tuple column, its index in the read's columns (`None`: a column dropped since).
    map: Vec<Option<usize>>,
    /// Per tuple column, the statement that turns its binary value into what the read's
    /// column takes, run on the standby: the text of a type inlet has no binary decoder
    /// for (as a snapshot casts it), or a value of the column's type before it changed
    /// cast to its type in the read's catalog.
    convert: Vec<Option<String>>,
}

/// What one message did.
enum Applied {
    /// Rows landed.
    Rows(u64),
    /// The table changed shape after the read's catalog was taken (columns added or
    /// retyped; what changed, for the message).
    Reshaped(String),
}

/// Where a transaction is.
struct Txn {
    lsn: Lsn,
    commit_micros: i64,
    seq: i64,
}

impl ChangeReader {
    async fn run(
        mut self,
        mut session: ReplicationSession,
        tx: &mut Emitter,
        start: Lsn,
        template: Option<Value>,
    ) -> Result<(), SourceError> {
        let mut txn: Option<Txn> = None;
        let mut landed_since_checkpoint = false;
        let mut last_checkpoint = std::time::Instant::now();
        let mut changes: u64 = 0;
        let mut position = start;
        loop {
            let ev = match tokio::time::timeout(self.idle, session.next()).await {
                Err(_) => {
                    return Err(SourceError::Other {
                        message: format!(
                            "{}: the replication stream of slot `{}` sent nothing for {} s \
                             (statement_timeout_secs) before reaching {}",
                            self.resource,
                            self.slot,
                            self.idle.as_secs(),
                            self.to.to_pg_string()
                        ),
                        transient: true,
                    });
                }
                Ok(Err(e)) => return Err(replication_error(&self.resource, &self.slot, &e)),
                Ok(Ok(ev)) => ev,
            };
            match ev {
                Event::Begin {
                    final_lsn,
                    commit_micros,
                } => {
                    txn = Some(Txn {
                        lsn: final_lsn,
                        commit_micros,
                        seq: 0,
                    });
                }
                Event::Change(data) => {
                    let Some(t) = txn.as_mut() else {
                        continue;
                    };
                    let n = match self.apply(&data, t).await? {
                        Applied::Rows(n) => n,
                        Applied::Reshaped(what) => {
                            let message = format!(
                                "{}: `{}` {what} at {}: the next run lands the new shape and \
                                 records the change",
                                self.resource,
                                self.stream,
                                t.lsn.to_pg_string()
                            );
                            if template.is_none() {
                                // The first run's plan promised its end position: fail
                                // (the retry or the next run reads the new catalog).
                                return Err(SourceError::Other {
                                    message,
                                    transient: true,
                                });
                            }
                            // Stop at the last commit. The rows of this transaction built
                            // so far land now and again with the next run, at the same
                            // positions: the latest row by position is the same.
                            tracing::warn!("{message}");
                            if !self.flush(tx, &mut session).await? {
                                return Ok(());
                            }
                            checkpoint(tx, &mut session, position, template.as_ref()).await?;
                            break;
                        }
                    };
                    changes += n;
                    if self.builder.rows() >= self.batch_rows {
                        if !self.flush(tx, &mut session).await? {
                            return Ok(());
                        }
                        landed_since_checkpoint = true;
                    }
                }
                Event::Commit { end_lsn } => {
                    txn = None;
                    // The lake holds everything before the committed state's position:
                    // confirm it, so a long read does not make the standby keep its WAL.
                    let durable = self.durable.load(Ordering::SeqCst);
                    if durable > self.confirmed {
                        self.confirmed = durable;
                        session.confirm(Lsn::from_u64(durable));
                    }
                    position = position.max(end_lsn);
                    let done = end_lsn >= self.to || self.max_changes.is_some_and(|m| changes >= m);
                    if done
                        || landed_since_checkpoint
                        || self.builder.rows() >= self.batch_rows
                        || last_checkpoint.elapsed() > Duration::from_secs(10)
                    {
                        if !self.flush(tx, &mut session).await? {
                            return Ok(());
                        }
                        if !checkpoint(tx, &mut session, position, template.as_ref()).await? {
                            return Ok(());
                        }
                        landed_since_checkpoint = false;
                        last_checkpoint = std::time::Instant::now();
                    }
                    if done {
                        break;
                    }
                }
                Event::KeepAlive { wal_end } => {
                    if txn.is_none() && wal_end >= self.to {
                        position = position.max(self.to);
                        if !self.flush(tx, &mut session).await? {
                            return Ok(());
                        }
                        if !checkpoint(tx, &mut session, position, template.as_ref()).await? {
                            return Ok(());
                        }
                        break;
                    }
                }
            }
        }
        session.stop().await;
        Ok(())
    }

    /// Land the rows built so far; `false` when the reader went away.
    async fn flush(
        &mut self,
        tx: &mut Emitter,
        session: &mut ReplicationSession,
    ) -> Result<bool, SourceError> {
        if self.builder.rows() == 0 {
            return Ok(true);
        }
        let batch = self
            .builder
            .finish()
            .map_err(|m| SourceError::data(&self.stream, m))?;
        let sent = send(tx, session, ReadEvent::Batch(batch)).await?;
        inlet_core::producer::panic_point("postgres-cdc-batch");
        Ok(sent)
    }

    /// Apply one pgoutput message of transaction `t`; returns the changes it landed.
    async fn apply(&mut self, data: &[u8], t: &mut Txn) -> Result<Applied, SourceError> {
        let msg = pgoutput::decode(data).map_err(|e| SourceError::data(&self.stream, e))?;
        match msg {
            Message::Relation(rel) => {
                if self.relations.contains(&rel.oid) {
                    let map: Vec<Option<usize>> = rel
                        .columns
                        .iter()
                        .map(|c| self.table_columns.iter().position(|t| t.name == c.name))
                        .collect();
                    let unknown: Vec<String> = rel
                        .columns
                        .iter()
                        .filter(|c| !self.table_columns.iter().any(|t| t.name == c.name))
                        .map(|c| c.name.clone())
                        .collect();
                    if !unknown.is_empty() {
                        // A column the read's catalog lacks: dropped since this change
                        // (its values are gone with it), or added after the plan (the next
                        // run lands the new shape).
                        let now = self.current_columns(rel.oid).await?;
                        let added: Vec<String> =
                            unknown.into_iter().filter(|u| now.contains(u)).collect();
                        if !added.is_empty() {
                            return Ok(Applied::Reshaped(format!(
                                "gained column(s) {}",
                                added.join(", ")
                            )));
                        }
                    }
                    let mut convert = vec![None; rel.columns.len()];
                    let mut retyped = Vec::new();
                    for (j, c) in rel.columns.iter().enumerate() {
                        let Some(i) = map.get(j).copied().flatten() else {
                            continue;
                        };
                        let (pg_type, text) = (
                            self.table_columns[i].pg_type.clone(),
                            if self.table_columns[i].cast_to_text {
                                "::text"
                            } else {
                                ""
                            },
                        );
                        let sent = (c.type_oid, c.type_mod);
                        if self.types.get(&c.name).is_some_and(|t| *t != sent) {
                            if self.current_type(rel.oid, &c.name).await? == Some(sent) {
                                // Retyped after the read's catalog was taken: the next run
                                // reads the new type.
                                retyped.push(c.name.clone());
                                continue;
                            }
                            // A change from before the column was retyped, read after: its
                            // value cast to the type the read lands (as the retype did).
                            let old = self.format_type(sent).await?;
                            convert[j] =
                                Some(format!("SELECT CAST(CAST($1 AS {old}) AS {pg_type}){text}"));
                        } else if !text.is_empty() {
                            convert[j] = Some(format!("SELECT $1::{pg_type}::text"));
                        }
                    }
                    if !retyped.is_empty() {
                        return Ok(Applied::Reshaped(format!(
                            "changed the type of column(s) {}",
                            retyped.join(", ")
                        )));
                    }
                    self.known.insert(rel.oid, Known { rel, map, convert });
                }
                Ok(Applied::Rows(0))
            }
            Message::Insert { oid, new } => {
                if !self.relations.contains(&oid) {
                    return Ok(Applied::Rows(0));
                }
                let converted = self.converted(oid, &new).await?;
                let new = with_converted(new, &converted);
                self.row(oid, t, "insert", &new, None)?;
                Ok(Applied::Rows(1))
            }
            Message::Update { oid, old, new } => {
                if !self.relations.contains(&oid) {
                    return Ok(Applied::Rows(0));
                }
                let converted = self.converted(oid, &new).await?;
                let new = with_converted(new, &converted);
                let old_converted = match &old {
                    Some((_, o)) => self.converted(oid, o).await?,
                    None => Vec::new(),
                };
                let old = old.map(|(k, o)| (k, with_converted(o, &old_converted)));
                let full = old.as_ref().filter(|(k, _)| *k == b'O').map(|(_, v)| v);
                if let Some((b'K', key)) = &old {
                    // The key changed: the old key's row is gone.
                    self.row(oid, t, "delete", key, None)?;
                    if new.contains(&pgoutput::Value::UnchangedToast) {
                        // The new key has no row before this one to take the unchanged
                        // values from: read them from the standby, which has replayed
                        // this change (a later change to them outranks this row).
                        let found = self.lookup_unchanged(oid, &new).await?;
                        let vals: Vec<pgoutput::Value<'_>> = found
                            .iter()
                            .map(|v| match v {
                                // Looked up as text where there is no binary decoder.
                                Some(Some((b, false))) => pgoutput::Value::Binary(b),
                                Some(Some((b, true))) => pgoutput::Value::Text(b),
                                Some(None) => pgoutput::Value::Null,
                                None => pgoutput::Value::UnchangedToast,
                            })
                            .collect();
                        self.row(oid, t, "update", &new, Some(&vals))?;
                        return Ok(Applied::Rows(1));
                    }
                }
                self.row(oid, t, "update", &new, full.map(|v| v.as_slice()))?;
                Ok(Applied::Rows(1))
            }
            Message::Delete { oid, old, .. } => {
                if !self.relations.contains(&oid) {
                    return Ok(Applied::Rows(0));
                }
                let converted = self.converted(oid, &old).await?;
                let old = with_converted(old, &converted);
                self.row(oid, t, "delete", &old, None)?;
                Ok(Applied::Rows(1))
            }
            Message::Truncate { oids, .. } => {
                if !oids.iter().any(|o| self.relations.contains(o)) {
                    return Ok(Applied::Rows(0));
                }
                t.seq += 1;
                let width = self.table_columns.len();
                for i in 0..width {
                    self.push(i, None)?;
                }
                self.meta(t, "truncate", &[])?;
                Ok(Applied::Rows(1))
            }
            Message::Other(_) => Ok(Applied::Rows(0)),
        }
    }

    /// The current values, on the standby, of the columns `new` leaves unchanged, by the
    /// key in `new`: per tuple column, `Some(value)` where looked up, `None` elsewhere
    /// (and everywhere when the row is gone).
    async fn lookup_unchanged(
        &mut self,
        oid: u32,
        new: &[pgoutput::Value<'_>],
    ) -> Result<Vec<Option<Option<(Vec<u8>, bool)>>>, SourceError> {
        let Some(Known { rel, map, .. }) = self.known.get(&oid) else {
            return Ok(vec![None; new.len()]);
        };
        let mut keys = Vec::new();
        let mut wanted = Vec::new();
        for (j, (c, v)) in rel.columns.iter().zip(new).enumerate() {
            if c.key {
                match v {
                    pgoutput::Value::Binary(b) => keys.push((c.name.clone(), *b)),
                    _ => return Ok(vec![None; new.len()]),
                }
            }
            if *v == pgoutput::Value::UnchangedToast {
                let text = map
                    .get(j)
                    .copied()
                    .flatten()
                    .is_some_and(|i| self.table_columns[i].cast_to_text);
                wanted.push((j, c.name.clone(), text));
            }
        }
        if keys.is_empty() || wanted.is_empty() {
            return Ok(vec![None; new.len()]);
        }
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {}",
            wanted
                .iter()
                .map(|(_, n, text)| {
                    let col = crate::catalog::ident(n);
                    if *text { format!("{col}::text") } else { col }
                })
                .collect::<Vec<_>>()
                .join(", "),
            crate::catalog::ident(&rel.namespace),
            crate::catalog::ident(&rel.name),
            keys.iter()
                .enumerate()
                .map(|(i, (n, _))| format!("{} = ${}", crate::catalog::ident(n), i + 1))
                .collect::<Vec<_>>()
                .join(" AND ")
        );
        let session = lookup_session(&mut self.lookup, &self.connect).await?;
        let params: Vec<RawIn<'_>> = keys.iter().map(|(_, b)| RawIn(b)).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        let rows = session
            .client
            .query(&sql, &refs)
            .await
            .map_err(|e| self.connect.error(e))?;
        let mut out = vec![None; new.len()];
        if let Some(row) = rows.first() {
            for (i, (j, _, text)) in wanted.iter().enumerate() {
                let v: RawOut = row
                    .try_get(i)
                    .map_err(|e| SourceError::data(&self.stream, e))?;
                out[*j] = Some(v.0.map(|b| (b, *text)));
            }
        }
        Ok(out)
    }

    /// Per tuple column, the value [`Known::convert`] made of a binary value, where it
    /// says to; empty when the relation needs no conversion.
    async fn converted(
        &mut self,
        oid: u32,
        vals: &[pgoutput::Value<'_>],
    ) -> Result<Vec<Option<Vec<u8>>>, SourceError> {
        let Some(known) = self.known.get(&oid) else {
            return Ok(Vec::new());
        };
        let wanted: Vec<(usize, String)> = vals
            .iter()
            .zip(&known.convert)
            .enumerate()
            .filter_map(|(j, (v, sql))| match (v, sql) {
                (pgoutput::Value::Binary(_), Some(sql)) => Some((j, sql.clone())),
                _ => None,
            })
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let session = lookup_session(&mut self.lookup, &self.connect).await?;
        let mut out = vec![None; vals.len()];
        for (j, sql) in wanted {
            let pgoutput::Value::Binary(b) = vals[j] else {
                continue;
            };
            // A value the standby cannot convert (a retype with USING, or to a type
            // without a cast from the old one) stops the stream; it cannot be replayed.
            let failed = |e: &dyn std::fmt::Display| {
                let column = self
                    .known
                    .get(&oid)
                    .and_then(|k| k.rel.columns.get(j))
                    .map_or("?", |c| c.name.as_str());
                SourceError::data(
                    &self.stream,
                    format!(
                        "column `{column}`: the standby could not convert a changed value \
                         (`{sql}`): {e}. Reset the stream to land a new snapshot"
                    ),
                )
            };
            // The server's refusal is the value's; a lost session is transient.
            let refused = |e: tokio_postgres::Error| {
                if e.as_db_error().is_some() {
                    failed(&e)
                } else {
                    self.connect.error(e)
                }
            };
            let statement = match self.statements.get(&sql) {
                Some(s) => s.clone(),
                None => {
                    let s = session.client.prepare(&sql).await.map_err(refused)?;
                    self.statements.insert(sql.clone(), s.clone());
                    s
                }
            };
            let row = session
                .client
                .query_one(&statement, &[&RawIn(b)])
                .await
                .map_err(refused)?;
            let value: RawOut = row.try_get(0).map_err(|e| failed(&e))?;
            out[j] = value.0;
        }
        Ok(out)
    }

    /// The type (oid, modifier) column `name` of relation `oid` has now on the standby.
    async fn current_type(
        &mut self,
        oid: u32,
        name: &str,
    ) -> Result<Option<(u32, i32)>, SourceError> {
        let session = lookup_session(&mut self.lookup, &self.connect).await?;
        let rows = session
            .client
            .query(
                "SELECT atttypid, atttypmod FROM pg_attribute \
                  WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
                &[&oid, &name],
            )
            .await
            .map_err(|e| self.connect.error(e))?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// `format_type` of a type (oid, modifier), for SQL.
    async fn format_type(&mut self, (oid, typmod): (u32, i32)) -> Result<String, SourceError> {
        let session = lookup_session(&mut self.lookup, &self.connect).await?;
        let row = session
            .client
            .query_one("SELECT format_type($1, $2)", &[&oid, &typmod])
            .await
            .map_err(|e| self.connect.error(e))?;
        Ok(row.get(0))
    }

    /// The columns relation `oid` has now on the standby.
    async fn current_columns(&mut self, oid: u32) -> Result<Vec<String>, SourceError> {
        let session = lookup_session(&mut self.lookup, &self.connect).await?;
        let rows = session
            .client
            .query(
                "SELECT attname::text FROM pg_attribute \
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                &[&oid],
            )
            .await
            .map_err(|e| self.connect.error(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn push(&mut self, i: usize, v: Option<&[u8]>) -> Result<(), SourceError> {
        self.builder
            .push(i, v)
            .map_err(|m| SourceError::data(&self.stream, m))
    }

    /// One landed row of tuple `vals` of relation `oid`.
    fn row(
        &mut self,
        oid: u32,
        t: &mut Txn,
        op: &str,
        vals: &[pgoutput::Value<'_>],
        old: Option<&[pgoutput::Value<'_>]>,
    ) -> Result<(), SourceError> {
        let Some(Known { rel, map, .. }) = self.known.get(&oid) else {
            return Err(SourceError::data(
                &self.stream,
                format!("a row of relation {oid} before its description"),
            ));
        };
        let width = self.table_columns.len();
        let mut cells: Vec<Option<&[u8]>> = vec![None; width];
        let mut unchanged = Vec::new();
        for (j, v) in vals.iter().enumerate() {
            let Some(Some(i)) = map.get(j).copied() else {
                continue;
            };
            cells[i] = match v {
                pgoutput::Value::Null => None,
                pgoutput::Value::Binary(b) | pgoutput::Value::Text(b) => Some(b),
                pgoutput::Value::UnchangedToast => match old.and_then(|o| o.get(j)) {
                    Some(pgoutput::Value::Binary(b)) | Some(pgoutput::Value::Text(b)) => Some(b),
                    Some(pgoutput::Value::Null) => None,
                    _ => {
                        unchanged.push(rel.columns[j].name.clone());
                        None
                    }
                },
            };
        }
        t.seq += 1;
        for (i, c) in cells.into_iter().enumerate() {
            self.builder
                .push(i, c)
                .map_err(|m| SourceError::data(&self.stream, m))?;
        }
        self.meta(t, op, &unchanged)
    }

    fn meta(&mut self, t: &Txn, op: &str, unchanged: &[String]) -> Result<(), SourceError> {
        let base = self.table_columns.len();
        let lsn = (t.lsn.as_u64() as i64).to_be_bytes();
        let seq = t.seq.to_be_bytes();
        let ts = t.commit_micros.to_be_bytes();
        self.push(base, Some(&lsn))?;
        self.push(base + 1, Some(&seq))?;
        self.push(base + 2, Some(op.as_bytes()))?;
        self.push(base + 3, Some(&ts))?;
        if unchanged.is_empty() {
            self.push(base + 4, None)?;
        } else {
            let arr = text_array(unchanged);
            self.push(base + 4, Some(&arr))?;
        }
        self.builder.end_row();
        Ok(())
    }
}

/// The session that looks values up on the standby (rarely needed), opened on first use.
async fn lookup_session<'a>(
    slot: &'a mut Option<Session>,
    connect: &crate::session::Connect,
) -> Result<&'a Session, SourceError> {
    let session = match slot.take() {
        Some(s) => s,
        None => connect.open().await?,
    };
    Ok(slot.insert(session))
}

/// `vals` with the values [`ChangeReader::converted`] made.
fn with_converted<'a>(
    mut vals: Vec<pgoutput::Value<'a>>,
    converted: &'a [Option<Vec<u8>>],
) -> Vec<pgoutput::Value<'a>> {
    for (v, c) in vals.iter_mut().zip(converted) {
        if let Some(c) = c {
            *v = pgoutput::Value::Binary(c);
        }
    }
    vals
}

/// A one-dimensional `text[]` in PostgreSQL's binary array format.
fn text_array(items: &[String]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(1i32.to_be_bytes());
    v.extend(0i32.to_be_bytes());
    v.extend(25u32.to_be_bytes());
    v.extend((items.len() as i32).to_be_bytes());
    v.extend(1i32.to_be_bytes());
    for s in items {
        v.extend((s.len() as i32).to_be_bytes());
        v.extend(s.as_bytes());
    }
    v
}

/// Send a checkpoint at `lsn`: the stream's state (`template` with `lsn`), or the
/// partition's resume point. `false` when the reader went away.
async fn checkpoint(
    tx: &mut Emitter,
    session: &mut ReplicationSession,
    lsn: Lsn,
    template: Option<&Value>,
) -> Result<bool, SourceError> {
    let value = match template {
        Some(Value::Object(m)) => {
            let mut m = m.clone();
            m.insert("lsn".into(), Value::from(lsn.to_pg_string()));
            Value::Object(m)
        }
        _ => serde_json::json!({ "lsn": lsn.to_pg_string() }),
    };
    send(tx, session, ReadEvent::Checkpoint(value)).await
}

/// Send `event` to the run; `false` when the reader went away. While the lake is slow to
/// take it, the session keeps reporting its status (the walsender ends a session silent
/// for `wal_sender_timeout`).
async fn send(
    tx: &mut Emitter,
    session: &mut ReplicationSession,
    event: ReadEvent,
) -> Result<bool, SourceError> {
    let sending = tx.send(event);
    tokio::pin!(sending);
    loop {
        tokio::select! {
            sent = &mut sending => return Ok(sent.is_ok()),
            () = tokio::time::sleep(session.status_interval()) => {
                session
                    .keep_alive()
                    .await
                    .map_err(|e| replication_error(&session.resource, &session.slot, &e))?;
            }
        }
    }
}

/// What a replication error means, with what to do.
fn replication_error(
    resource: &str,
    slot: &str,
    e: &pgwire_replication::PgWireError,
) -> SourceError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    if lower.contains("does not exist") && lower.contains("slot") {
        return SourceError::Other {
            message: format!(
                "{resource}: replication slot `{slot}` is missing ({text}). Reset the stream to \
                 make a new slot and land a new snapshot"
            ),
            transient: false,
        };
    }
    if lower.contains("invalidated") || lower.contains("can no longer") {
        return SourceError::Other {
            message: format!(
                "{resource}: replication slot `{slot}` was invalidated ({text}). Reset the stream \
                 to make a new slot and land a new snapshot"
            ),
            transient: false,
        };
    }
    if lower.contains("is active for pid") {
        return SourceError::Other {
            message: format!("{resource}: replication slot `{slot}` is in use ({text})"),
            transient: true,
        };
    }
    if e.is_auth() {
        return SourceError::Auth {
            resource: resource.to_string(),
            message: text,
        };
    }
    SourceError::Other {
        message: format!("{resource}: replication of slot `{slot}`: {text}"),
        transient: e.is_transient() || e.is_io(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn source() -> PostgresSource {
        let cfg: crate::config::PostgresConfig = serde_json::from_value(serde_json::json!({
            "host": "127.0.0.1", "database": "d", "user": "u",
            "cdc": { "publication": "p" }
        }))
        .unwrap();
        let connect =
            crate::session::Connect::new(std::sync::Arc::new(cfg), "c", std::path::Path::new("."))
                .unwrap();
        PostgresSource::new(connect)
    }

    #[test]
    fn only_committed_cdc_positions_are_confirmed_and_never_backwards() {
        let s = source();
        let cell = s.durable_cell("public.t");
        s.note_durable(
            "public.t",
            &serde_json::json!({"method": "xmin", "lsn": "0/500"}),
        );
        assert_eq!(cell.load(Ordering::SeqCst), 0);
        s.note_durable(
            "public.t",
            &serde_json::json!({"method": "cdc", "lsn": "0/500"}),
        );
        assert_eq!(cell.load(Ordering::SeqCst), 0x500);
        s.note_durable(
            "public.t",
            &serde_json::json!({"method": "cdc", "lsn": "0/400"}),
        );
        assert_eq!(cell.load(Ordering::SeqCst), 0x500);
        s.note_durable(
            "public.u",
            &serde_json::json!({"method": "cdc", "lsn": "1/0"}),
        );
        assert_eq!(cell.load(Ordering::SeqCst), 0x500);
        assert_eq!(s.durable_cell("public.u").load(Ordering::SeqCst), 1 << 32);
    }

    #[test]
    fn a_snapshot_row_is_labelled_with_its_position_and_seq_zero() {
        let tail = snapshot_select(Lsn::from_u64(0x1_0000_0010));
        assert_eq!(
            tail,
            ", 4294967312::int8, 0::int8, 'snapshot'::text, NULL::timestamptz, NULL::text[]"
        );
        let cols = landed_columns(&[ColumnType {
            name: "id".into(),
            pg_type: "bigint".into(),
            kind: Kind::Int8,
            cast_to_text: false,
            nullable: false,
            type_id: None,
        }]);
        assert!(
            cols[0].nullable,
            "a delete lands only the key, a truncate nothing"
        );
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names[1..], META_COLUMNS);
    }
}
