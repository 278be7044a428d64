//! The runtime against a source that splits its read into partitions (as the Postgres
//! connector splits a table into primary-key ranges): parallel partitions, per-partition
//! progress, `state_after` once all are done, and retries of transient failures.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use async_trait::async_trait;
use inlet_core::{
    Catalog, CheckReport, Connector, ConnectorInfo, EventStream, Partition, ReadEvent, ReadPlan,
    ReadRequest, Registry, Source, SourceContext, SourceError, StreamDescriptor, SyncMode,
};
use inlet_lake::RunOutcome;
use inlet_runtime::{Project, SyncOptions, sync_connection};
use serde_json::{Value, json};

/// Ids 0..total in `parts` ranges; partition 1 fails once with a transient error after
/// its first checkpoint.
#[derive(Debug)]
struct RangeConnector {
    failures: Arc<AtomicU32>,
}

#[derive(Debug)]
struct RangeSource {
    total: i64,
    parts: i64,
    failures: Arc<AtomicU32>,
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]))
}

#[async_trait]
impl Connector for RangeConnector {
    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            name: "range".into(),
            version: "0".into(),
            kind: inlet_core::ConnectorKind::Builtin,
            description: "test ranges".into(),
            hosts: vec![],
        }
    }
    fn spec(&self) -> Value {
        json!({})
    }
    fn validate(&self, config: &Value) -> Result<(), SourceError> {
        config["total"]
            .as_i64()
            .map(|_| ())
            .ok_or_else(|| SourceError::config("total", "required"))
    }
    async fn build(
        &self,
        config: Value,
        _ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(RangeSource {
            total: config["total"].as_i64().unwrap(),
            parts: config["parts"].as_i64().unwrap(),
            failures: self.failures.clone(),
        }))
    }
}

#[async_trait]
impl Source for RangeSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        Ok(CheckReport::default())
    }
    async fn discover(&self) -> Result<Catalog, SourceError> {
        Ok(Catalog {
            streams: vec![StreamDescriptor {
                name: "ids".into(),
                schema: schema(),
                primary_key: vec!["id".into()],
                cursor_candidates: vec!["id".into()],
                sync_modes: vec![SyncMode::FullRefresh, SyncMode::Incremental],
                default_mode: SyncMode::Incremental,
                opt_in: false,
            }],
        })
    }
    async fn plan(&self, request: &ReadRequest) -> Result<ReadPlan, SourceError> {
        let start = request
            .state
            .as_ref()
            .and_then(|s| s["next"].as_i64())
            .unwrap_or(0);
        let step = ((self.total - start) / self.parts).max(1);
        let partitions = (0..self.parts)
            .map(|i| {
                let lo = start + i * step;
                let hi = if i == self.parts - 1 {
                    self.total
                } else {
                    lo + step
                };
                Partition {
                    id: format!("p{i}"),
                    spec: json!({"lo": lo, "hi": hi}),
                }
            })
            .collect();
        Ok(ReadPlan {
            partitions,
            state_after: Some(json!({"next": self.total})),
            warnings: vec![],
            gauges: Default::default(),
        })
    }
    async fn read(
        &self,
        _request: &ReadRequest,
        partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        let lo = resume
            .as_ref()
            .and_then(|r| r["at"].as_i64())
            .unwrap_or(partition.spec["lo"].as_i64().unwrap());
        let hi = partition.spec["hi"].as_i64().unwrap();
        let fail = partition.id == "p1" && self.failures.fetch_add(1, Ordering::SeqCst) == 0;
        let mut events: Vec<Result<ReadEvent, SourceError>> = Vec::new();
        let mut at = lo;
        while at < hi {
            let end = (at + 100).min(hi);
            let batch = RecordBatch::try_new(
                schema(),
                vec![Arc::new(Int64Array::from_iter_values(at..end))],
            )
            .unwrap();
            events.push(Ok(ReadEvent::Batch(batch)));
            events.push(Ok(ReadEvent::Checkpoint(json!({"at": end}))));
            at = end;
            if fail && events.len() == 4 {
                events.push(Err(SourceError::Unavailable {
                    resource: "range".into(),
                    message: "flaky".into(),
                }));
                break;
            }
        }
        Ok(Box::pin(futures::stream::iter(events)))
    }
}

fn project(dir: &Path, total: i64) -> Project {
    let text = format!(
        "version = 1\n[destinations.d]\nurl = \"lake\"\n[connections.r]\nconnector = \"range\"\nparallelism = 2\ncommit_interval_secs = 0\nmax_retries = 2\n[connections.r.config]\ntotal = {total}\nparts = 4\n"
    );
    Project::parse(&text, &dir.join("inlet.toml"), dir).unwrap()
}

fn landed_ids(dir: &Path) -> Vec<i64> {
    let mut ids = Vec::new();
    let mut stack = vec![dir.join("lake/r/ids")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let f = std::fs::File::open(&p).unwrap();
                for b in parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                    .unwrap()
                    .build()
                    .unwrap()
                {
                    let b = b.unwrap();
                    let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                    ids.extend(col.values().iter().copied());
                }
            }
        }
    }
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_land_in_parallel_survive_a_transient_failure_and_end_in_state_after() {
    let dir = tempfile::tempdir().unwrap();
    let failures = Arc::new(AtomicU32::new(0));
    let mut registry = Registry::new();
    registry.register(Arc::new(RangeConnector {
        failures: failures.clone(),
    }));

    let record = sync_connection(
        &project(dir.path(), 1000),
        &registry,
        "r",
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(record.outcome, RunOutcome::Succeeded, "{record:?}");
    let stats = &record.streams["ids"];
    assert_eq!(stats.rows, 1000);
    assert_eq!(stats.retries, 1, "partition p1 failed once");
    assert_eq!(
        landed_ids(dir.path()),
        (0..1000).collect::<Vec<_>>(),
        "no gap, no duplicate after the retry"
    );

    let state = inlet_runtime::ops::show(&project(dir.path(), 1000), "r")
        .await
        .unwrap();
    let ids = &state.streams["ids"];
    assert_eq!(ids.cursor, Some(json!({"next": 1000})));
    assert!(
        ids.partitions.is_none(),
        "progress is cleared once every partition is done"
    );

    // The next incremental run plans from state_after and lands only new ids.
    let record = sync_connection(
        &project(dir.path(), 1500),
        &registry,
        "r",
        &SyncOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(record.streams["ids"].rows, 500);
    assert_eq!(landed_ids(dir.path()), (0..1500).collect::<Vec<_>>());
}
