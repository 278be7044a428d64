//! Planning a read: the partitions (key ranges, sampled ranges, a cursor or xmin delta)
//! and the state the stream moves to once they are read.

use inlet_core::{Partition, ReadPlan, ReadRequest, SourceError, SyncMode, state::SchemaHistory};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    PostgresSource, XMIN,
    catalog::{self, RelKind, Table, ident, literal},
    config::SchemaChangePolicy,
    cursor::{self, CursorSql},
    session::{self, Session},
    state::{Boundary, SchemaChange, StreamState, value_text},
    types::Kind,
};

/// The size of the 32-bit transaction id space (`xmin` wraps around it).
pub(crate) const XID_SPACE: i64 = 1 << 32;

/// What a partition reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PartSpec {
    /// Integer key range `[lo, hi)`; `None` is unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<KeyRange>,
    /// Cursor bounds: `after < cursor <= upto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cursor: Option<CursorBounds>,
    /// xmin window: rows whose 32-bit xmin is within `span` after `lo32`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) xmin: Option<XminWindow>,
    /// Range of a composite or non-integer primary key: `lo <= (key) < hi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tuple: Option<TupleRange>,
    /// A key range of a CDC stream's snapshot: its rows carry the replay position read
    /// just before the statement.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) cdc_snapshot: bool,
    /// The changes of a CDC stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cdc: Option<crate::cdc::CdcSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TupleRange {
    /// The key columns, in key order.
    pub(crate) columns: Vec<String>,
    /// Their SQL types (`format_type`), to cast the bounds.
    pub(crate) types: Vec<String>,
    /// Inclusive lower bound (each column's text), `None` unbounded.
    pub(crate) lo: Option<Vec<String>>,
    /// Exclusive upper bound, `None` unbounded.
    pub(crate) hi: Option<Vec<String>>,
}

impl TupleRange {
    pub(crate) fn conditions(&self) -> Vec<String> {
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
pub(crate) struct KeyRange {
    pub(crate) column: String,
    pub(crate) lo: Option<i64>,
    pub(crate) hi: Option<i64>,
    /// The key's min and max at plan time, to split an unbounded side.
    pub(crate) min: i64,
    pub(crate) max: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CursorBounds {
    pub(crate) column: String,
    pub(crate) pg_type: String,
    /// The saved cursor value: rows after it, less the lookback, are read.
    pub(crate) after: Option<String>,
    /// The lookback: seconds for time cursors, values for numeric ones.
    #[serde(default)]
    pub(crate) lookback: u64,
    /// Inclusive upper bound, as SQL text.
    pub(crate) upto: Option<String>,
    /// Whether rows with a NULL cursor are read too (first run only).
    pub(crate) include_null: bool,
    /// Rows at exactly `after` whose version hash is in the saved state's boundary were
    /// landed by an earlier run: they are not read again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) skip_landed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct XminWindow {
    pub(crate) lo32: i64,
    pub(crate) span: i64,
}

impl PostgresSource {
    /// The statements the last [`inlet_core::Source::plan`] ran against the server to
    /// plan its read (bounds, key ranges, boundary rows, replay lag; not the catalog
    /// queries), exactly as sent. Tests run `EXPLAIN` on them to prove that planning an incremental read
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
        let mut changes = catalog::diff(&prev.columns, &catalog::shape(&table.columns));
        let landed_before = if prev.landed.is_empty() {
            catalog::landed_before_record(&table.columns)
        } else {
            prev.landed.clone()
        };
        changes.extend(catalog::landed_diff(
            &prev.columns,
            &landed_before,
            &table.columns,
        ));
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
                    ..Default::default()
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
                    ..Default::default()
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
                    ..Default::default()
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
                        ..Default::default()
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
                    ..Default::default()
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

    /// Plan the read of a stream ([`inlet_core::Source::plan`]).
    pub(crate) async fn plan_read(&self, request: &ReadRequest) -> Result<ReadPlan, SourceError> {
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
                gauges: Default::default(),
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
        let mut gauges = std::collections::BTreeMap::new();
        let mut cdc_first = None;
        let (mut partitions, mut state) = match request.mode {
            SyncMode::FullRefresh => (
                self.key_partitions(&session, &table, None, None).await?,
                StreamState {
                    method: "full".into(),
                    ..Default::default()
                },
            ),
            SyncMode::Incremental
                if request.cursor_field.is_none() && self.connect.config().cdc.is_some() =>
            {
                let (parts, state, first) = self
                    .plan_cdc(
                        &session,
                        &table,
                        async || self.key_partitions(&session, &table, None, None).await,
                        state_prev.as_ref(),
                        &mut warnings,
                        &mut gauges,
                    )
                    .await?;
                cdc_first = Some(first);
                (parts, state)
            }
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
        state.landed = catalog::landed(&table.columns);
        state.schema_changes = history;
        let state_json = serde_json::to_value(&state).map_err(SourceError::other)?;
        if cdc_first == Some(false) {
            // An incremental CDC read is one partition whose checkpoints are the stream's
            // state (a run stopped early keeps what it landed).
            for p in &mut partitions {
                let mut spec: PartSpec =
                    serde_json::from_value(p.spec.clone()).map_err(SourceError::other)?;
                if let Some(c) = spec.cdc.as_mut() {
                    c.state = Some(state_json.clone());
                }
                p.spec = serde_json::to_value(spec).map_err(SourceError::other)?;
            }
            // No partition when nothing was replayed since the last run: the state stays.
            return Ok(ReadPlan {
                partitions,
                state_after: None,
                warnings,
                gauges,
            });
        }
        Ok(ReadPlan {
            partitions,
            state_after: Some(state_json),
            warnings,
            gauges,
        })
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
