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
//!   saves that maximum. Rows committed late with an older cursor value are caught by the
//!   lookback window; rows in the window may land again in the next run (never twice in
//!   one run). Rows whose cursor is NULL or ±infinity are read by the first run only.
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
pub mod session;
pub mod types;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use futures::StreamExt;
use inlet_core::{
    Catalog, CheckReport, Connector, ConnectorInfo, EventStream, Partition, ReadEvent, ReadPlan,
    ReadRequest, Source, SourceContext, SourceError, StreamDescriptor, SyncMode,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{
    catalog::{RelKind, Table, ident, literal},
    config::{PostgresConfig, SchemaChangePolicy},
    copy::CopyParser,
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
impl Connector for PostgresConnector {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            name: "postgres".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: "builtin".into(),
            description: "Tables of a PostgreSQL hot standby, streamed with COPY binary".into(),
            hosts: vec![],
        }
    }

    fn spec(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(PostgresConfig)).unwrap_or(Value::Null)
    }

    fn validate(&self, config: &Value) -> Result<(), SourceError> {
        config::parse(config).map(|_| ())
    }

    async fn build(
        &self,
        config: Value,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let cfg = Arc::new(config::parse(&config)?);
        let connect = Connect::new(cfg, &ctx.connection, &ctx.base_dir)?;
        Ok(Arc::new(PostgresSource {
            connect,
            tables: Mutex::new(None),
            conflicts: Arc::new(Mutex::new(HashMap::new())),
        }))
    }
}

/// A configured `postgres` source.
#[derive(Debug)]
pub struct PostgresSource {
    connect: Connect,
    /// The catalog read by the last `discover`, reused by `plan` and `read` of the run.
    tables: Mutex<Option<Arc<Vec<Table>>>>,
    /// Hot-standby conflicts per `stream/partition` in this process: each one halves the
    /// chunk the partition is read in.
    conflicts: Arc<Mutex<HashMap<String, u32>>>,
}

/// The saved state of a stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamState {
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<SchemaChange>,
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

/// The statements a partition is read in: the whole range, or after `conflicts`
/// hot-standby conflicts, 2^conflicts pieces of it (from the resume point on).
fn chunks(spec: &PartSpec, resume: Option<&PartCheckpoint>, conflicts: u32) -> Vec<Chunk> {
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
    let step = (width >> conflicts.min(20)).max(1);
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

/// The WHERE conditions of a partition other than its key range.
fn filters(spec: &PartSpec, table: &Table) -> Vec<String> {
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
    tx: &mpsc::Sender<Result<ReadEvent, SourceError>>,
) -> Result<bool, CopyError> {
    let stream = session.client.copy_out(sql).await.map_err(CopyError::Pg)?;
    let mut stream = std::pin::pin!(stream);
    let mut parser = CopyParser::new(builder, batch_rows);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CopyError::Pg)?;
        parser.feed(&chunk, &mut out).map_err(CopyError::Data)?;
        for batch in out.drain(..) {
            if tx.send(Ok(ReadEvent::Batch(batch))).await.is_err() {
                return Ok(false);
            }
        }
    }
    if let Some(batch) = parser.finish().map_err(CopyError::Data)?
        && tx.send(Ok(ReadEvent::Batch(batch))).await.is_err()
    {
        return Ok(false);
    }
    Ok(true)
}

impl PostgresSource {
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

    fn conflicts(&self, key: &str) -> u32 {
        self.conflicts
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn parse_state(
        stream: &str,
        state: Option<&Value>,
    ) -> Result<Option<StreamState>, SourceError> {
        state
            .map(|v| {
                serde_json::from_value::<StreamState>(v.clone()).map_err(|e| {
                    SourceError::state(
                        stream,
                        format!(
                            "not a postgres stream state ({e}); `inlet state reset` starts over"
                        ),
                    )
                })
            })
            .transpose()
    }

    /// Compare the table with the previous run's columns; apply the policy.
    fn schema_changes(
        &self,
        table: &Table,
        previous: Option<&StreamState>,
    ) -> Result<Vec<SchemaChange>, SourceError> {
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
        history.push(SchemaChange {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            changes,
        });
        let excess = history.len().saturating_sub(50);
        history.drain(..excess);
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
        let k = ident(&key.name);
        let row = session
            .client
            .query_one(
                &format!(
                    "SELECT min({k})::int8, max({k})::int8 FROM {}",
                    table.sql_name()
                ),
                &[],
            )
            .await
            .map_err(|e| self.connect.error(e))?;
        let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
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
        let rows = session
            .client
            .query(
                &format!(
                    "SELECT {texts} FROM {} TABLESAMPLE {method} ({percent}) ORDER BY {keys}",
                    table.sql_name()
                ),
                &[],
            )
            .await
            .map_err(|e| self.connect.error(e))?;
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
    ) -> Result<(Vec<Partition>, StreamState), SourceError> {
        let stream = table.stream_name();
        let col = table.column(column).ok_or_else(|| {
            SourceError::config(
                format!("streams.{stream}.cursor_field"),
                format!(
                    "`{stream}` has no column `{column}`; cursor candidates: {}, or \"xmin\"",
                    table.cursor_candidates().join(", ")
                ),
            )
        })?;
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
        let c = ident(column);
        // The upper bound is the largest finite value: an `infinity` sentinel would stop
        // the cursor for good (rows at ±infinity are read by the first run, like NULLs).
        let finite = finite_filter(&col.kind, &c);
        let expr = cursor_text(&col.kind, &format!("max({c}) FILTER (WHERE {finite})"));
        let row = session
            .client
            .query_one(&format!("SELECT {expr} FROM {}", table.sql_name()), &[])
            .await
            .map_err(|e| self.connect.error(e))?;
        let hi: Option<String> = row.get(0);
        let hi_value = hi.as_deref().map(|h| cursor_json(&col.kind, h));
        let prev_value = previous
            .filter(|p| p.method == "cursor" && p.column.as_deref() == Some(column))
            .and_then(|p| p.value.clone());
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
                };
                (
                    self.key_partitions(session, table, Some(bounds), None)
                        .await?,
                    hi_value,
                )
            }
            Some(prev) => {
                let prev_text = match &prev {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                };
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
        Ok((
            parts,
            StreamState {
                method: "cursor".into(),
                column: Some(column.to_string()),
                value: saved,
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

/// SQL that is true for finite cursor values.
fn finite_filter(kind: &Kind, column: &str) -> String {
    match kind {
        Kind::Timestamp | Kind::Timestamptz | Kind::Date => format!("isfinite({column})"),
        Kind::Decimal128 { .. } | Kind::Decimal256 { .. } | Kind::NumericText => {
            format!("{column} NOT IN ('NaN', 'Infinity', '-Infinity')")
        }
        _ => "true".to_string(),
    }
}

/// SQL that renders a cursor value as exact text.
fn cursor_text(kind: &Kind, expr: &str) -> String {
    match kind {
        Kind::Timestamptz => {
            format!("to_char({expr} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
        }
        Kind::Timestamp => format!("to_char({expr}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"),
        _ => format!("({expr})::text"),
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

fn base_type(kind: &Kind) -> &'static str {
    match kind {
        Kind::Timestamptz => "timestamptz",
        Kind::Timestamp => "timestamp",
        Kind::Date => "date",
        Kind::Int2 | Kind::Int4 | Kind::Int8 => "int8",
        _ => "numeric",
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
        let session = self.open().await?;
        let lag = self.connect.wait_for_lag(&session).await?;
        tracing::info!(stream = %request.stream, replay_lag_secs = lag, "planning a read");
        // A new plan starts with full-size chunks (a daemon reuses partition ids).
        if let Ok(mut m) = self.conflicts.lock() {
            let prefix = format!("{}/", request.stream);
            m.retain(|k, _| !k.starts_with(&prefix));
        }
        let table = self.table(&session, &request.stream, false).await?;
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
                    self.plan_cursor(&session, &table, column, state_prev.as_ref())
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
        let conflicts = self.conflicts(&key);
        let chunks = chunks(&spec, resume.as_ref(), conflicts);
        let select = table.select_list();
        let from = table.sql_name();
        let filters = filters(&spec, &table);
        let batch_rows = request.batch_rows;
        let columns = table.columns.clone();
        let connect = self.connect.clone();
        let seen = self.conflicts.clone();
        let (tx, rx) = mpsc::channel::<Result<ReadEvent, SourceError>>(4);
        let task = tokio::spawn(async move {
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
                match copy_chunk(&session, &sql, builder, batch_rows, &tx).await {
                    Ok(true) => {}
                    Ok(false) => return, // the reader went away
                    Err(CopyError::Pg(e)) => {
                        if session::is_conflict(&e) {
                            if let Ok(mut m) = seen.lock() {
                                *m.entry(key.clone()).or_default() += 1;
                            }
                            tracing::warn!(stream = %stream, partition = %key, error = %e, "hot-standby conflict or lost session; the retry reads smaller chunks");
                        }
                        let _ = tx.send(Err(connect.error(e))).await;
                        return;
                    }
                    Err(CopyError::Data(m)) => {
                        let _ = tx
                            .send(Err(SourceError::data(format!("{stream} ({from})"), m)))
                            .await;
                        return;
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
                if tx.send(Ok(ReadEvent::Checkpoint(value))).await.is_err() {
                    return;
                }
            }
        });
        // If the task dies without saying how it ended (a panic), the stream must end in
        // an error, not look finished: the runtime would mark the partition done.
        let task = Some(task);
        Ok(Box::pin(futures::stream::unfold(
            (rx, task),
            |(mut rx, mut task)| async move {
                if let Some(item) = rx.recv().await {
                    return Some((item, (rx, task)));
                }
                let handle = task.take()?;
                match handle.await {
                    Ok(()) => None,
                    Err(e) => Some((
                        Err(SourceError::other(format!(
                            "the COPY reader stopped unexpectedly ({e}); nothing after the last \
                             checkpoint is kept"
                        ))),
                        (rx, None),
                    )),
                }
            },
        )))
    }

    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        Self::parse_state(stream, Some(state)).map(|_| ())
    }
}
