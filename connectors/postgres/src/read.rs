//! Reading a partition: its statements (chunks), their filters, COPY into batches and
//! checkpoints, through a producer task.

use futures::StreamExt;
use inlet_core::{EventStream, Partition, ReadEvent, ReadRequest, SourceError, producer::Emitter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    PostgresSource,
    catalog::{Table, ident, literal},
    copy::CopyParser,
    cursor::{self, base_type, finite_filter},
    plan::{PartSpec, XID_SPACE},
    session::{self, Session},
    state::value_text,
    types::{BatchBuilder, Kind},
};

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

    /// Read one partition ([`inlet_core::Source::read`]).
    pub(crate) async fn read_partition(
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
        if let Some(cdc) = spec.cdc.clone() {
            return self.read_changes(request, cdc, resume).await;
        }
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
        let cdc_snapshot = spec.cdc_snapshot;
        let columns = if cdc_snapshot {
            crate::cdc::landed_columns(&table.columns)
        } else {
            table.columns.clone()
        };
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
                // A snapshot row of a CDC stream is labelled with the replay position
                // read before its statement's snapshot is taken: every transaction that
                // committed before it is visible, so a change at or after it outranks it.
                let label = if cdc_snapshot {
                    let lsn = crate::cdc::slot::replay_lsn(&connect, &session).await?;
                    crate::cdc::snapshot_select(lsn)
                } else {
                    String::new()
                };
                let sql = format!(
                    "COPY (SELECT {select}{label} FROM {from}{where_sql}) TO STDOUT (FORMAT binary)"
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::{
        STATE_VERSION,
        plan::CursorBounds,
        state::{Boundary, StreamState},
    };

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
    fn each_retry_of_a_key_range_reads_it_in_smaller_statements_from_the_resume_point() {
        let spec = PartSpec {
            key: Some(crate::plan::KeyRange {
                column: "id".into(),
                lo: None,
                hi: None,
                min: 0,
                max: 99,
            }),
            ..Default::default()
        };
        let bounds = |attempt, resume: Option<&PartCheckpoint>| {
            chunks(&spec, resume, attempt)
                .iter()
                .map(|c| (c.lo, c.hi, c.next))
                .collect::<Vec<_>>()
        };
        assert_eq!(bounds(0, None), vec![(None, None, None)]);
        assert_eq!(
            bounds(1, None),
            vec![(None, Some(50), Some(50)), (Some(50), None, None)]
        );
        let resume = PartCheckpoint {
            next: Some(50),
            done: false,
        };
        assert_eq!(
            bounds(2, Some(&resume)),
            vec![(Some(50), Some(75), Some(75)), (Some(75), None, None)]
        );
        let done = PartCheckpoint {
            next: None,
            done: true,
        };
        assert!(bounds(3, Some(&done)).is_empty());
    }
}
