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
//!   conflict is retried from its last checkpoint in halves, then quarters...
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
//! - **Schema drift**: each run compares the catalog with the columns saved in the
//!   stream's state; `on_schema_change = "evolve"` lands the new shape and records the
//!   change in the state's `schema_changes`, `"fail"` stops with the change listed.
#![deny(missing_docs)]

pub mod catalog;
pub mod config;
pub mod copy;
pub mod cursor;
pub mod session;
pub mod types;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use inlet_core::{
    Catalog, CheckReport, ConnectorInfo, ConnectorKind, EventStream, Partition, ReadEvent,
    ReadPlan, ReadRequest, Source, SourceContext, SourceError, StreamDescriptor, SyncMode,
    TypedConnector,
    producer::Emitter,
    state::{self, SchemaHistory, TypedState},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    catalog::{RelKind, Table, ident, literal},
    config::{PostgresConfig, SchemaChangePolicy},
    copy::CopyParser,
    cursor::{CursorSql, base_type, finite_filter},
    session::{Connect, Session},
    types::{BatchBuilder, Kind},
};

/// The name of the pseudo cursor that reads by transaction id.
pub const XMIN: &str = "xmin";
const XID_SPACE: i64 = 1 << 32;

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
}

/// The format of [`StreamState`] written now. States without a `version` are version 1
/// (written before boundary sets) and load as they are.
pub const STATE_VERSION: u32 = 2;

fn state_v1() -> u32 {
    1
}

/// The saved state of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamState {
    /// State format ([`STATE_VERSION`]; absent in version 1).
    #[serde(default = "state_v1")]
    pub version: u32,
    /// `full`, `cursor` or `xmin`.
    pub method: String,
    /// The cursor column (`method = cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The cursor's saved value, exact: an integer, or text (`2026-01-02T03:04:05.123456Z`
    /// for timestamps, `2026-01-02` for dates, the exact decimal for numerics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The 64-bit xid watermark (`method = xmin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmin: Option<i64>,
    /// The relations (the table, or its leaf partitions) the xmin watermark covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<i64>,
    /// The columns landed, as `[name, type]`, to detect schema changes.
    #[serde(default)]
    pub columns: Vec<(String, String)>,
    /// Recorded schema changes, newest last (the last 50).
    #[serde(default, skip_serializing_if = "SchemaHistory::is_empty")]
    pub schema_changes: SchemaHistory<SchemaChange, 50>,
    /// The row versions at exactly `value` when it was saved (`method = cursor`): the
    /// next run's inclusive lower bound reads them again, and those already landed and
    /// unchanged are not landed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<Boundary>,
}

impl TypedState for StreamState {
    const NAME: &'static str = "postgres stream state";
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            version: STATE_VERSION,
            method: String::new(),
            column: None,
            value: None,
            xmin: None,
            relations: Vec::new(),
            columns: Vec::new(),
            schema_changes: SchemaHistory::default(),
            boundary: None,
        }
    }
}

/// The row versions found at the saved cursor value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boundary {
    /// How many rows were at the value (at most `max_boundary_rows + 1`).
    pub rows: u64,
    /// More than `max_boundary_rows` rows were at the value: no hashes are kept, and
    /// those rows land again on each run until a larger cursor value arrives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
    /// Their 64-bit version hashes ([`cursor::row_hash`]), sorted, 8 bytes each,
    /// base64 ([`cursor::encode_hashes`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hashes: String,
}

/// A schema change seen between two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// When it was seen (UTC).
    pub at: String,
    /// What changed.
    pub changes: Vec<String>,
}

/// What a partition reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartSpec {
    /// Integer key range `[lo, hi)`; `None` is unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<KeyRange>,
    /// Cursor bounds: `after < cursor <= upto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<CursorBounds>,
    /// xmin window: rows whose 32-bit xmin is within `span` after `lo32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xmin: Option<XminWindow>,
    /// Range of a composite or non-integer primary key: `lo <= (key) < hi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tuple: Option<TupleRange>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TupleRange {
    /// The key columns, in key order.
    columns: Vec<String>,
    /// Their SQL types (`format_type`), to cast the bounds.
    types: Vec<String>,
    /// Inclusive lower bound (each column's text), `None` unbounded.
    lo: Option<Vec<String>>,
    /// Exclusive upper bound, `None` unbounded.
    hi: Option<Vec<String>>,
}

impl TupleRange {
    fn conditions(&self) -> Vec<String> {
        let cols = self
            .columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let row = |vals: &[String]| {
            vals.iter()
                .zip(&self.types)
                .map(|(v, t)| format!("{}::{t}", literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = Vec::new();
        if let Some(lo) = &self.lo {
            out.push(format!("ROW({cols}) >= ROW({})", row(lo)));
        }
        if let Some(hi) = &self.hi {
            out.push(format!("ROW({cols}) < ROW({})", row(hi)));
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRange {
    column: String,
    lo: Option<i64>,
    hi: Option<i64>,
    /// The key's min and max at plan time, to split an unbounded side.
    min: i64,
    max: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorBounds {
    column: String,
    pg_type: String,
    /// The saved cursor value: rows after it, less the lookback, are read.
    after: Option<String>,
    /// The lookback: seconds for time cursors, values for numeric ones.
    #[serde(default)]
    lookback: u64,
    /// Inclusive upper bound, as SQL text.
    upto: Option<String>,
    /// Whether rows with a NULL cursor are read too (first run only).
    include_null: bool,
    /// Rows at exactly `after` whose version hash is in the saved state's boundary were
    /// landed by an earlier run: they are not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    skip_landed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct XminWindow {
    lo32: i64,
    span: i64,
}

/// A partition's resume point: the next key to read, or done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartCheckpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
    #[serde(default)]
    done: bool,
}

/// One statement of a partition's read.
#[derive(Debug, Clone, PartialEq)]
struct Chunk {
    lo: Option<i64>,
    hi: Option<i64>,
    /// The checkpoint after it: the next key, or `None` when the partition is done.
    next: Option<i64>,
}

/// The statements a partition is read in: the whole range, or on its `attempt`-th retry
/// (after a hot-standby conflict, say), 2^attempt pieces of it (from the resume point on).
fn chunks(spec: &PartSpec, resume: Option<&PartCheckpoint>, attempt: u32) -> Vec<Chunk> {
    if resume.is_some_and(|r| r.done) {
        return vec![];
    }
    let Some(k) = &spec.key else {
        return vec![Chunk {
            lo: None,
            hi: None,
            next: None,
        }];
    };
    let lo_f = i128::from(k.lo.unwrap_or(k.min));
    let hi_f = i128::from(k.hi.unwrap_or(k.max)) + i128::from(k.hi.is_none());
    let width = (hi_f - lo_f).max(1);
    let step = (width >> attempt.min(20)).max(1);
    let start = resume.and_then(|r| r.next).map(i128::from);
    let mut cur = start.unwrap_or(lo_f);
    let mut out = Vec::new();
    loop {
        let end = cur + step;
        let first = start.is_none() && cur == lo_f;
        let last = end >= hi_f;
        out.push(Chunk {
            lo: if first { k.lo } else { Some(cur as i64) },
            hi: if last { k.hi } else { Some(end as i64) },
            next: (!last).then_some(end as i64),
        });
        if last {
            return out;
        }
        cur = end;
    }
}

/// The WHERE conditions of a partition other than its key range. `landed` are the
/// version hashes of the rows at the saved cursor value that earlier runs landed.
fn filters(spec: &PartSpec, table: &Table, landed: &[i64]) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(c) = &spec.cursor {
        let col = ident(&c.column);
        let kind = table
            .column(&c.column)
            .map(|x| x.kind.clone())
            .unwrap_or(Kind::Text);
        let ty = base_type(&kind);
        if let Some(after) = &c.after {
            let back = match kind {
                Kind::Timestamp | Kind::Timestamptz | Kind::Date => {
                    format!("interval '{} seconds'", c.lookback)
                }
                _ => c.lookback.to_string(),
            };
            // Inclusive: rows at the saved value that committed after the last plan are
            // read (and rows already landed at it land again, never twice in a run).
            out.push(format!("{col} >= ({}::{ty} - {back})", literal(after)));
            if c.skip_landed && !landed.is_empty() {
                // One array constant: PostgreSQL hashes it, so the test is O(1) per row,
                // and only rows at the boundary value compute their hash.
                let list = landed
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                out.push(format!(
                    "NOT ({col} = {}::{ty} AND {} = ANY('{{{list}}}'::int8[]))",
                    literal(after),
                    cursor::row_hash(table)
                ));
            }
        }
        if let Some(upto) = &c.upto {
            let bound = format!("{col} <= {}::{ty}", literal(upto));
            out.push(if c.include_null {
                let finite = finite_filter(&kind, &col);
                format!("({bound} OR {col} IS NULL OR NOT ({finite}))")
            } else {
                bound
            });
        }
    }
    if let Some(t) = &spec.tuple {
        out.extend(t.conditions());
    }
    if let Some(x) = &spec.xmin {
        out.push(format!(
            "((xmin::text::int8 - {} + {XID_SPACE}) % {XID_SPACE}) < {}",
            x.lo32, x.span
        ));
    }
    out
}

#[derive(Debug)]
enum CopyError {
    Pg(tokio_postgres::Error),
    Data(String),
}

/// Run one COPY and send its batches; `Ok(false)` when the reader went away.
async fn copy_chunk(
    session: &Session,
    sql: &str,
    builder: BatchBuilder,
    batch_rows: usize,
    tx: &mut Emitter,
) -> Result<bool, CopyError> {
    let stream = session.client.copy_out(sql).await.map_err(CopyError::Pg)?;
    let mut stream = std::pin::pin!(stream);
    let mut parser = CopyParser::new(builder, batch_rows);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CopyError::Pg)?;
        parser.feed(&chunk, &mut out).map_err(CopyError::Data)?;
        for batch in out.drain(..) {
            if tx.send(ReadEvent::Batch(batch)).await.is_err() {
                return Ok(false);
            }
            inlet_core::producer::panic_point("postgres-batch");
        }
    }
    if let Some(batch) = parser.finish().map_err(CopyError::Data)?
        && tx.send(ReadEvent::Batch(batch)).await.is_err()
    {
        return Ok(false);
    }
    Ok(true)
}

impl PostgresSource {
    /// A source reading through `connect`.
    pub fn new(connect: Connect) -> Self {
        PostgresSource {
            connect,
            tables: Mutex::new(None),
            planned: Mutex::new(Vec::new()),
        }
    }

    /// The statements the last [`Source::plan`] ran against the server to plan its read
    /// (bounds, key ranges, boundary rows, replay lag; not the catalog queries), exactly
    /// as sent. Tests run `EXPLAIN` on them to prove that planning an incremental read
    /// does not scan the table.
    pub fn planning_queries(&self) -> Vec<String> {
        self.planned.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn record(&self, sql: &str) {
        if let Ok(mut p) = self.planned.lock() {
            p.push(sql.to_string());
        }
    }

    /// Run a planning statement, and remember it for [`Self::planning_queries`].
    async fn plan_query(
        &self,
        session: &Session,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::Row>, SourceError> {
        self.record(sql);
        session
            .client
            .query(sql, &[])
            .await
            .map_err(|e| self.connect.error(e))
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

    /// The version hashes of the rows that earlier runs landed at the saved cursor value,
    /// when the partition skips them. They come from the committed state, which the
    /// runtime keeps until every partition of the plan is read; a state whose value is
    /// not the partition's lower bound has none to skip (everything is read).
    fn landed(
        stream: &str,
        spec: &PartSpec,
        state: Option<&Value>,
    ) -> Result<Vec<i64>, SourceError> {
        let Some(bounds) = spec.cursor.as_ref().filter(|c| c.skip_landed) else {
            return Ok(Vec::new());
        };
        let Some(state) = Self::parse_state(stream, state)? else {
            return Ok(Vec::new());
        };
        match (&state.value, &state.boundary, &bounds.after) {
            (Some(v), Some(b), Some(after)) if !b.overflow && value_text(v) == *after => {
                cursor::decode_hashes(&b.hashes).map_err(|m| SourceError::state(stream, m))
            }
            _ => Ok(Vec::new()),
        }
    }

    fn parse_state(
        stream: &str,
        state: Option<&Value>,
    ) -> Result<Option<StreamState>, SourceError> {
        state.map(|v| state::decode(stream, v)).transpose()
    }

    /// Compare the table with the previous run's columns; apply the policy.
    fn schema_changes(
        &self,
        table: &Table,
        previous: Option<&StreamState>,
    ) -> Result<SchemaHistory<SchemaChange, 50>, SourceError> {
        let mut history = previous
            .map(|p| p.schema_changes.clone())
            .unwrap_or_default();
        let Some(prev) = previous.filter(|p| !p.columns.is_empty()) else {
            return Ok(history);
        };
        let changes = catalog::diff(&prev.columns, &catalog::shape(&table.columns));
        if changes.is_empty() {
            return Ok(history);
        }
        let stream = table.stream_name();
        if self.connect.config().on_schema_change == SchemaChangePolicy::Fail {
            return Err(SourceError::state(
                &stream,
                format!(
                    "the table changed since the last run: {}. Nothing was read. Set \
                     `on_schema_change = \"evolve\"` to land the new shape, or reset the stream",
                    changes.join("; ")
                ),
            ));
        }
        tracing::warn!(stream = %stream, changes = %changes.join("; "), "schema change: landing the new shape");
        history.record(SchemaChange {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            changes,
        });
        Ok(history)
    }

    /// Key-range partitions covering the table, optionally filtered.
    async fn key_partitions(
        &self,
        session: &Session,
        table: &Table,
        cursor: Option<CursorBounds>,
        xmin: Option<XminWindow>,
    ) -> Result<Vec<Partition>, SourceError> {
        let one = |cursor, xmin| {
            vec![Partition {
                id: "all".into(),
                spec: serde_json::to_value(PartSpec {
                    key: None,
                    cursor,
                    xmin,
                    tuple: None,
                })
                .unwrap_or(Value::Null),
            }]
        };
        let Some(key) = table.integer_key() else {
            if table.primary_key.is_empty()
                || table.est_rows <= self.connect.config().chunk_rows as f64
            {
                return Ok(one(cursor, xmin));
            }
            return self.sampled_partitions(session, table, cursor, xmin).await;
        };
        let rows = self
            .plan_query(session, &cursor::key_bounds(table, &key.name))
            .await?;
        let (Some(min), Some(max)) = rows.first().map_or((None, None), |row| {
            (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        }) else {
            return Ok(one(cursor, xmin));
        };
        let chunk = self.connect.config().chunk_rows as f64;
        let span = i128::from(max) - i128::from(min) + 1;
        let est = if table.est_rows > 0.0 {
            table.est_rows
        } else {
            span as f64
        };
        // Without statistics (never analyzed) the key span may be far larger than the row
        // count: keep the number of ranges modest then.
        let most = if table.est_rows > 0.0 { 100_000 } else { 64 };
        let n = ((est / chunk).ceil() as i128).clamp(1, most).min(span);
        let width = (span + n - 1) / n;
        let mut parts = Vec::new();
        for i in 0..n {
            let start = i128::from(min) + i * width;
            if start > i128::from(max) {
                // Stale statistics made more ranges than keys: the previous range is
                // open-ended and covers the rest.
                break;
            }
            let end = i128::from(min) + (i + 1) * width;
            let last = i == n - 1 || end > i128::from(max);
            let lo = (i > 0).then_some(start as i64);
            let hi = (!last).then_some(end as i64);
            parts.push(Partition {
                id: format!("k{i:05}"),
                spec: serde_json::to_value(PartSpec {
                    key: Some(KeyRange {
                        column: key.name.clone(),
                        lo,
                        hi,
                        min,
                        max,
                    }),
                    cursor: cursor.clone(),
                    xmin: xmin.clone(),
                    tuple: None,
                })
                .unwrap_or(Value::Null),
            });
        }
        Ok(parts)
    }

    /// Ranges of a composite or non-integer primary key, with bounds taken from a
    /// `TABLESAMPLE` of the key (pages of a big table, rows of a small one): about
    /// `chunk_rows` rows each.
    async fn sampled_partitions(
        &self,
        session: &Session,
        table: &Table,
        cursor: Option<CursorBounds>,
        xmin: Option<XminWindow>,
    ) -> Result<Vec<Partition>, SourceError> {
        let chunk = self.connect.config().chunk_rows as f64;
        let n = ((table.est_rows / chunk).ceil() as usize).clamp(1, 10_000);
        let percent = (100.0 * (n as f64 * 50.0) / table.est_rows).clamp(0.01, 100.0);
        // Page sampling is cheap on big tables but too coarse on small ones.
        let method = if table.est_rows > 2_000_000.0 {
            "SYSTEM"
        } else {
            "BERNOULLI"
        };
        let columns = table.primary_key.clone();
        let types: Vec<String> = columns
            .iter()
            .map(|c| {
                table
                    .column(c)
                    .map(|c| c.pg_type.clone())
                    .unwrap_or_else(|| "text".into())
            })
            .collect();
        let keys = columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let texts = columns
            .iter()
            .map(|c| format!("{}::text", ident(c)))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = self
            .plan_query(
                session,
                &format!(
                    "SELECT {texts} FROM {} TABLESAMPLE {method} ({percent}) ORDER BY {keys}",
                    table.sql_name()
                ),
            )
            .await?;
        let sample: Vec<Vec<String>> = rows
            .iter()
            .map(|r| (0..columns.len()).map(|i| r.get::<_, String>(i)).collect())
            .collect();
        let mut bounds: Vec<Vec<String>> = Vec::new();
        for i in 1..n {
            if let Some(b) = sample.get(i * sample.len() / n)
                && bounds.last() != Some(b)
            {
                bounds.push(b.clone());
            }
        }
        let mut parts = Vec::new();
        for i in 0..=bounds.len() {
            let tuple = TupleRange {
                columns: columns.clone(),
                types: types.clone(),
                lo: i.checked_sub(1).and_then(|j| bounds.get(j).cloned()),
                hi: bounds.get(i).cloned(),
            };
            parts.push(Partition {
                id: format!("t{i:05}"),
                spec: serde_json::to_value(PartSpec {
                    key: None,
                    cursor: cursor.clone(),
                    xmin: xmin.clone(),
                    tuple: Some(tuple),
                })
                .unwrap_or(Value::Null),
            });
        }
        Ok(parts)
    }

    async fn plan_cursor(
        &self,
        session: &Session,
        table: &Table,
        column: &str,
        previous: Option<&StreamState>,
        warnings: &mut Vec<String>,
    ) -> Result<(Vec<Partition>, StreamState), SourceError> {
        let stream = table.stream_name();
        let (Some(col), Some(sql)) = (table.column(column), CursorSql::new(table, column)) else {
            return Err(SourceError::config(
                format!("streams.{stream}.cursor_field"),
                format!(
                    "`{stream}` has no column `{column}`; cursor candidates: {}, or \"xmin\"",
                    table.cursor_candidates().join(", ")
                ),
            ));
        };
        if !col.kind.is_cursor_type() {
            return Err(SourceError::config(
                format!("streams.{stream}.cursor_field"),
                format!(
                    "`{column}` is {}, which cannot be a cursor (use an integer, numeric, date or \
                     timestamp column, or \"xmin\")",
                    col.pg_type
                ),
            ));
        }
        if !table.indexed.iter().any(|c| c == column) {
            tracing::warn!(stream = %stream, column, "the cursor column leads no index: each incremental run scans the table");
        }
        if col.nullable {
            tracing::warn!(stream = %stream, column, "the cursor column is nullable: rows whose cursor is NULL are read by the first run only");
        }
        // The upper bound is the largest finite value: an `infinity` sentinel would stop
        // the cursor for good (rows at ±infinity are read by the first run, like NULLs).
        let hi: Option<String> = self
            .plan_query(session, &sql.upper_bound())
            .await?
            .first()
            .and_then(|r| r.get(0));
        let hi_value = hi.as_deref().map(|h| cursor_json(&col.kind, h));
        let prev_state =
            previous.filter(|p| p.method == "cursor" && p.column.as_deref() == Some(column));
        let prev_value = prev_state.and_then(|p| p.value.clone());
        let cfg = self.connect.config();
        let (parts, saved) = match prev_value {
            None => {
                let bounds = CursorBounds {
                    column: column.to_string(),
                    pg_type: col.pg_type.clone(),
                    after: None,
                    lookback: 0,
                    upto: hi.clone(),
                    include_null: true,
                    skip_landed: false,
                };
                (
                    self.key_partitions(session, table, Some(bounds), None)
                        .await?,
                    hi_value,
                )
            }
            Some(prev) => {
                let prev_text = value_text(&prev);
                let lookback = match col.kind {
                    Kind::Timestamp | Kind::Timestamptz | Kind::Date => cfg.lookback_secs,
                    _ => cfg.lookback_values,
                };
                let bounds = CursorBounds {
                    column: column.to_string(),
                    pg_type: col.pg_type.clone(),
                    after: Some(prev_text.clone()),
                    lookback,
                    upto: hi.clone().or(Some(prev_text.clone())),
                    include_null: false,
                    // The read takes the hashes from the committed state (request.state),
                    // which is this `previous` for as long as this plan runs.
                    skip_landed: prev_state
                        .and_then(|p| p.boundary.as_ref())
                        .is_some_and(|b| !b.overflow && !b.hashes.is_empty()),
                };
                let parts = vec![Partition {
                    id: "delta".into(),
                    spec: serde_json::to_value(PartSpec {
                        key: None,
                        cursor: Some(bounds),
                        xmin: None,
                        tuple: None,
                    })
                    .unwrap_or(Value::Null),
                }];
                // Never move the cursor back (rows deleted, clock moved).
                let saved = match (&hi_value, &prev) {
                    (Some(h), p) if cursor_greater(h, p) => Some(h.clone()),
                    _ => Some(prev),
                };
                (parts, saved)
            }
        };
        // The row versions at the saved value, taken now: every one of them is landed by
        // this plan's read (or an earlier run), or was replaced or deleted before the read,
        // and then its hash can never match again (a new version has a new xmin).
        let boundary = match &saved {
            Some(v) if cfg.max_boundary_rows > 0 => {
                let value = value_text(v);
                let rows = self
                    .plan_query(
                        session,
                        &sql.boundary_rows(&value, cfg.max_boundary_rows + 1),
                    )
                    .await?;
                let mut hashes: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                let n = hashes.len() as u64;
                if n > cfg.max_boundary_rows {
                    warnings.push(format!(
                        "more than max_boundary_rows = {} rows have the saved cursor value \
                         {column} = {value}: they are landed again by every run until a row \
                         with a larger value arrives. Raise max_boundary_rows (each row keeps \
                         about 11 bytes of state), or sync by cursor_field = \"xmin\"",
                        cfg.max_boundary_rows
                    ));
                    Some(Boundary {
                        rows: n,
                        overflow: true,
                        hashes: String::new(),
                    })
                } else {
                    Some(Boundary {
                        rows: n,
                        overflow: false,
                        hashes: cursor::encode_hashes(&mut hashes),
                    })
                }
            }
            _ => None,
        };
        Ok((
            parts,
            StreamState {
                method: "cursor".into(),
                column: Some(column.to_string()),
                value: saved,
                boundary,
                ..Default::default()
            },
        ))
    }

    async fn plan_xmin(
        &self,
        session: &Session,
        table: &Table,
        previous: Option<&StreamState>,
    ) -> Result<(Vec<Partition>, StreamState), SourceError> {
        let stream = table.stream_name();
        if !table.kind.has_xmin() {
            return Err(SourceError::config(
                format!("streams.{stream}.cursor_field"),
                format!("`{stream}` is a view: it has no xmin; name a cursor column"),
            ));
        }
        let row = session
            .client
            .query_one(
                "SELECT pg_snapshot_xmin(s)::text::int8, pg_snapshot_xmax(s)::text::int8 \
                   FROM pg_current_snapshot() s",
                &[],
            )
            .await
            .map_err(|e| self.connect.error(e))?;
        let (snap_xmin, next): (i64, i64) = (row.get(0), row.get(1));
        // The relations whose rows the watermark covers: the table, or its leaves. A leaf
        // attached (or a table swapped in) later brings rows with older xmins.
        let relations: Vec<i64> = session
            .client
            .query_one(
                "SELECT COALESCE(array_agg(relid::oid::int8 ORDER BY relid::oid::int8), '{}') \
                   FROM pg_partition_tree($1::oid) WHERE isleaf",
                &[&table.oid],
            )
            .await
            .map_err(|e| self.connect.error(e))?
            .get(0);
        let prev_state = previous.filter(|p| p.method == "xmin");
        let prev = prev_state.and_then(|p| p.xmin);
        // Frozen rows keep their raw xmin (since 9.4), so freezing hides nothing; what can
        // is a watermark so old that 32-bit xids wrap, or another cluster.
        let resync_reason = match prev {
            None => None,
            Some(w) if w > next => Some(format!(
                "the saved xmin watermark {w} is ahead of the server's next xid {next} (a different or restored cluster)"
            )),
            Some(w) if next - w >= (1i64 << 31) => Some(format!(
                "the saved xmin watermark {w} is {} transactions old: 32-bit xids may have wrapped",
                next - w
            )),
            Some(_)
                if prev_state.is_some_and(|p| !p.relations.is_empty() && p.relations != relations) =>
            {
                Some("the table's relations changed (a partition attached or detached, or the table replaced): their rows' xmins predate the watermark".to_string())
            }
            Some(_) => None,
        };
        let parts = match (prev, &resync_reason) {
            (Some(w), None) => vec![Partition {
                id: "delta".into(),
                spec: serde_json::to_value(PartSpec {
                    key: None,
                    cursor: None,
                    tuple: None,
                    xmin: Some(XminWindow {
                        lo32: w.rem_euclid(XID_SPACE),
                        span: next - w,
                    }),
                })
                .unwrap_or(Value::Null),
            }],
            (_, reason) => {
                if let Some(r) = reason {
                    tracing::warn!(stream = %stream, "bounded re-sync of the whole table: {r}");
                }
                self.key_partitions(session, table, None, None).await?
            }
        };
        Ok((
            parts,
            StreamState {
                method: XMIN.into(),
                xmin: Some(snap_xmin),
                relations,
                ..Default::default()
            },
        ))
    }
}

/// A saved cursor value as SQL text.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The saved JSON of a cursor value: integers as numbers, the rest as exact text.
fn cursor_json(kind: &Kind, text: &str) -> Value {
    match kind {
        Kind::Int2 | Kind::Int4 | Kind::Int8 => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
        _ => Value::String(text.to_string()),
    }
}

fn cursor_greater(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_i64() > y.as_i64(),
        // ISO timestamps and dates compare as text; numerics are compared by value.
        (Value::String(x), Value::String(y)) => match (x.parse::<f64>(), y.parse::<f64>()) {
            (Ok(p), Ok(q)) if !x.contains('-') || x.starts_with('-') => p > q,
            _ => x > y,
        },
        _ => true,
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        let mut report = CheckReport::default();
        let resource = self.connect.resource();
        let session = match self.connect.open_unguarded().await {
            Ok(s) => {
                report.push("connects", true, format!("{resource} accepted the login"));
                s
            }
            Err(e) => {
                report.push("connects", false, e.to_string());
                return Ok(report);
            }
        };
        let cfg = self.connect.config();
        match (session.in_recovery, cfg.allow_primary) {
            (true, _) => report.push("is a replica", true, "pg_is_in_recovery() is true"),
            (false, true) => report.push(
                "is a replica",
                true,
                "a primary, read because allow_primary = true: syncs load production",
            ),
            (false, false) => report.push(
                "is a replica",
                false,
                format!(
                    "{resource} is a primary; inlet refuses to read it. Point `host` at a hot \
                     standby, or set `allow_primary = true`"
                ),
            ),
        }
        match self.connect.replay_lag(&session).await {
            Ok(lag) => report.push(
                "replay lag",
                lag <= cfg.max_replay_lag_secs as f64,
                format!(
                    "{lag:.1} s (limit max_replay_lag_secs = {})",
                    cfg.max_replay_lag_secs
                ),
            ),
            Err(e) => report.push("replay lag", false, e.to_string()),
        }
        let read_only = session
            .client
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .map(|r| r.get::<_, String>(0) == "on")
            .unwrap_or(false);
        report.push(
            "read-only session",
            read_only,
            "default_transaction_read_only = on",
        );
        match catalog::tables(&self.connect, &session.client).await {
            Ok(tables) => {
                let names: Vec<String> = tables.iter().map(|t| t.stream_name()).collect();
                // One query for every table (a catalog may hold thousands).
                let oids: Vec<u32> = tables.iter().map(|t| t.oid).collect();
                let privileges = session
                    .client
                    .query(
                        "SELECT o FROM unnest($1::oid[]) o \
                          WHERE NOT has_table_privilege(o, 'SELECT')",
                        &[&oids],
                    )
                    .await;
                let (ok, detail) = match privileges {
                    Err(e) => (
                        false,
                        format!(
                            "cannot check the SELECT privilege: {}",
                            self.connect.error(e)
                        ),
                    ),
                    Ok(_) if names.is_empty() => {
                        (false, "no table matches `tables`/`exclude`".to_string())
                    }
                    Ok(rows) => {
                        let refused: Vec<u32> = rows.iter().map(|r| r.get(0)).collect();
                        let denied: Vec<String> = tables
                            .iter()
                            .filter(|t| refused.contains(&t.oid))
                            .map(|t| t.stream_name())
                            .collect();
                        if denied.is_empty() {
                            (
                                true,
                                format!("{} tables: {}", names.len(), names.join(", ")),
                            )
                        } else {
                            (
                                false,
                                format!(
                                    "no SELECT privilege on {}: GRANT pg_read_all_data TO {}",
                                    denied.join(", "),
                                    cfg.user
                                ),
                            )
                        }
                    }
                };
                report.push("tables readable", ok, detail);
            }
            Err(e) => report.push("tables readable", false, e.to_string()),
        }
        Ok(report)
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
        if let Ok(mut p) = self.planned.lock() {
            p.clear();
        }
        let session = self.open().await?;
        if session.in_recovery {
            self.record(session::REPLAY_LAG_SQL);
        }
        let lag = self.connect.wait_for_lag(&session).await?;
        tracing::info!(stream = %request.stream, replay_lag_secs = lag, "planning a read");
        let table = self.table(&session, &request.stream, false).await?;
        if table.kind == RelKind::MaterializedView && !table.populated {
            // Reading it fails until it is refreshed (SQLSTATE 55000), and it holds no rows
            // to land: skip it, keep its state, and say so in the run report.
            return Ok(ReadPlan {
                partitions: vec![],
                state_after: None,
                warnings: vec![format!(
                    "skipped `{}`: the materialized view has not been populated (created or \
                     refreshed WITH NO DATA). Run `REFRESH MATERIALIZED VIEW {}` on the \
                     primary; the next run reads it, and its state is kept until then",
                    request.stream,
                    table.sql_name()
                )],
            });
        }
        let previous = Self::parse_state(&request.stream, request.previous.as_ref())?;
        let history = self.schema_changes(&table, previous.as_ref())?;
        let state_prev = Self::parse_state(&request.stream, request.state.as_ref())?;
        if table.kind == RelKind::View && request.cursor_field.is_none() {
            return Err(SourceError::config(
                format!("streams.{}.cursor_field", request.stream),
                format!(
                    "`{}` is a view: inlet reads a view only with an explicit cursor (it has \
                     no key to split by, and a whole read runs its query on the standby); set \
                     `cursor_field` to a column of the view that grows with new rows, with \
                     `mode = \"incremental\"`",
                    request.stream
                ),
            ));
        }
        let mut warnings = Vec::new();
        let (partitions, mut state) = match request.mode {
            SyncMode::FullRefresh => (
                self.key_partitions(&session, &table, None, None).await?,
                StreamState {
                    method: "full".into(),
                    ..Default::default()
                },
            ),
            SyncMode::Incremental => match request.cursor_field.as_deref() {
                Some(XMIN) => {
                    self.plan_xmin(&session, &table, state_prev.as_ref())
                        .await?
                }
                Some(column) => {
                    self.plan_cursor(&session, &table, column, state_prev.as_ref(), &mut warnings)
                        .await?
                }
                None => {
                    let mut c = table.cursor_candidates();
                    if table.kind.has_xmin() {
                        c.push(XMIN.into());
                    }
                    return Err(SourceError::config(
                        format!("streams.{}.cursor_field", request.stream),
                        format!(
                            "incremental reads of `{}` need a cursor: one of {}",
                            request.stream,
                            if c.is_empty() {
                                "(none: the table has no indexed cursor column)".to_string()
                            } else {
                                c.join(", ")
                            }
                        ),
                    ));
                }
            },
        };
        state.columns = catalog::shape(&table.columns);
        state.schema_changes = history;
        Ok(ReadPlan {
            partitions,
            state_after: Some(serde_json::to_value(&state).map_err(SourceError::other)?),
            warnings,
        })
    }

    async fn read(
        &self,
        request: &ReadRequest,
        partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        let stream = request.stream.clone();
        let spec: PartSpec = if partition.spec.is_null() {
            PartSpec::default()
        } else {
            serde_json::from_value(partition.spec.clone()).map_err(|e| {
                SourceError::state(
                    &stream,
                    format!(
                        "partition `{}` is not a postgres partition: {e}",
                        partition.id
                    ),
                )
            })?
        };
        let resume: Option<PartCheckpoint> = resume
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| SourceError::state(&stream, format!("bad partition checkpoint: {e}")))?;
        let session = self.open().await?;
        self.connect.wait_for_lag(&session).await?;
        let table = self.table(&session, &stream, false).await?;
        let key = format!("{stream}/{}", partition.id);
        let chunks = chunks(&spec, resume.as_ref(), request.attempt);
        let select = table.select_list();
        let from = table.sql_name();
        let landed = Self::landed(&stream, &spec, request.state.as_ref())?;
        let filters = filters(&spec, &table, &landed);
        let timeout = std::time::Duration::from_secs(self.connect.config().statement_timeout_secs);
        let splittable = spec.key.is_some();
        let batch_rows = request.batch_rows;
        let columns = table.columns.clone();
        let connect = self.connect.clone();
        let (mut tx, guard, events) = inlet_core::producer::channel(stream.clone(), 4);
        // The guard ends the stream as the task ended: a panic is an error naming the
        // stream, never a finished stream (the runtime would mark the partition done).
        tokio::spawn(guard.run(async move {
            for chunk in chunks {
                let mut conds = filters.clone();
                if let Some(k) = &spec.key {
                    let c = ident(&k.column);
                    if let Some(lo) = chunk.lo {
                        conds.push(format!("{c} >= {lo}"));
                    }
                    if let Some(hi) = chunk.hi {
                        conds.push(format!("{c} < {hi}"));
                    }
                }
                let where_sql = if conds.is_empty() {
                    String::new()
                } else {
                    format!(" WHERE {}", conds.join(" AND "))
                };
                let sql = format!(
                    "COPY (SELECT {select} FROM {from}{where_sql}) TO STDOUT (FORMAT binary)"
                );
                tracing::debug!(%sql, "copy");
                let builder = BatchBuilder::new(&columns, batch_rows);
                let started = std::time::Instant::now();
                match copy_chunk(&session, &sql, builder, batch_rows, &mut tx).await {
                    Ok(true) => {}
                    Ok(false) => return Ok(()), // the reader went away
                    Err(CopyError::Pg(e)) => {
                        // statement_timeout and a DBA's cancel share SQLSTATE 57014. A
                        // statement that ran its whole allowance and cannot be read in
                        // smaller pieces would only time out again: say so, don't retry.
                        if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
                            && !splittable
                            && started.elapsed() + std::time::Duration::from_secs(1) >= timeout
                        {
                            return Err(SourceError::Other {
                                    message: format!(
                                        "{}: reading {stream} ran for {} s and was canceled by \
                                         statement_timeout_secs = {}; this read is one statement \
                                         (no integer key to split it by), so a retry would time \
                                         out again. Raise statement_timeout_secs",
                                        connect.resource(),
                                        started.elapsed().as_secs(),
                                        timeout.as_secs()
                                    ),
                                    transient: false,
                                });
                        }
                        if session::is_conflict(&e) {
                            tracing::warn!(stream = %stream, partition = %key, error = %e, "hot-standby conflict or lost session; the retry reads smaller chunks");
                        }
                        return Err(connect.error(e));
                    }
                    Err(CopyError::Data(m)) => {
                        return Err(SourceError::data(format!("{stream} ({from})"), m));
                    }
                }
                let checkpoint = match chunk.next {
                    Some(next) => PartCheckpoint {
                        next: Some(next),
                        done: false,
                    },
                    None => PartCheckpoint {
                        next: None,
                        done: true,
                    },
                };
                let value = serde_json::to_value(&checkpoint).unwrap_or(Value::Null);
                if tx.send(ReadEvent::Checkpoint(value)).await.is_err() {
                    return Ok(());
                }
            }
            Ok(())
        }));
        Ok(events)
    }

    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        Self::parse_state(stream, Some(state)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn states_written_before_boundaries_still_load() {
        // A version-1 state, as the connector wrote it before boundary sets.
        let v1 = serde_json::json!({
            "method": "cursor",
            "column": "updated_at",
            "value": "2026-01-01T00:00:00.000000Z",
            "columns": [["id", "integer"], ["updated_at", "timestamp with time zone"]]
        });
        let s = PostgresSource::parse_state("public.t", Some(&v1))
            .unwrap()
            .unwrap();
        assert_eq!(s.version, 1);
        assert_eq!(s.boundary, None);
        assert_eq!(s.value, Some(Value::from("2026-01-01T00:00:00.000000Z")));
        // A state without a boundary skips nothing.
        let spec = PartSpec {
            cursor: Some(CursorBounds {
                column: "updated_at".into(),
                pg_type: "timestamp with time zone".into(),
                after: Some("2026-01-01T00:00:00.000000Z".into()),
                lookback: 0,
                upto: None,
                include_null: false,
                skip_landed: true,
            }),
            ..Default::default()
        };
        assert!(
            PostgresSource::landed("public.t", &spec, Some(&v1))
                .unwrap()
                .is_empty()
        );
        let xmin_v1 = serde_json::json!({"method": "xmin", "xmin": 757, "relations": [16384]});
        let s = PostgresSource::parse_state("public.t", Some(&xmin_v1))
            .unwrap()
            .unwrap();
        assert_eq!((s.version, s.xmin), (1, Some(757)));
    }

    #[test]
    fn boundary_hashes_are_skipped_only_at_the_value_they_were_taken_at() {
        let mut hashes = vec![3, 1, 2];
        let state = StreamState {
            method: "cursor".into(),
            column: Some("n".into()),
            value: Some(Value::from(10)),
            boundary: Some(Boundary {
                rows: 3,
                overflow: false,
                hashes: cursor::encode_hashes(&mut hashes),
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["version"], STATE_VERSION);
        let spec = |after: &str| PartSpec {
            cursor: Some(CursorBounds {
                column: "n".into(),
                pg_type: "bigint".into(),
                after: Some(after.into()),
                lookback: 0,
                upto: None,
                include_null: false,
                skip_landed: true,
            }),
            ..Default::default()
        };
        assert_eq!(
            PostgresSource::landed("s", &spec("10"), Some(&json)).unwrap(),
            vec![1, 2, 3]
        );
        assert!(
            PostgresSource::landed("s", &spec("9"), Some(&json))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_boundary_of_100000_rows_keeps_about_a_megabyte_of_state() {
        // Distinct pseudo-random hashes, like hashtextextended's.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut hashes: Vec<i64> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as i64
            })
            .collect();
        let state = StreamState {
            method: "cursor".into(),
            column: Some("updated_at".into()),
            value: Some(Value::from("2026-01-01T00:00:00.000000Z")),
            boundary: Some(Boundary {
                rows: 100_000,
                overflow: false,
                hashes: cursor::encode_hashes(&mut hashes),
            }),
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&state).unwrap().len();
        eprintln!("state of a 100,000-row boundary: {bytes} bytes");
        assert!((1_066_668..1_070_000).contains(&bytes), "{bytes}");
    }
}
