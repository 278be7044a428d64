//! Reading a stream: the request, the plan, partitions and the events a read yields.

use std::pin::Pin;

use arrow_array::RecordBatch;
use futures::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{SourceError, SyncMode};

/// What the runtime asks a source to read.
#[derive(Debug, Clone)]
pub struct ReadRequest {
    /// The stream, as named by [`crate::Source::discover`].
    pub stream: String,
    /// Full refresh or incremental.
    pub mode: SyncMode,
    /// The cursor column chosen by the connection, if the connector uses one.
    pub cursor_field: Option<String>,
    /// The stream's committed state: `None` on a first sync and on a full refresh.
    pub state: Option<Value>,
    /// The stream's committed state whatever the mode, for a source that compares runs
    /// (a schema recorded last time). Never a resume point: a full refresh starts over.
    pub previous: Option<Value>,
    /// A hint for the number of rows per batch; sources SHOULD stay near it so memory is
    /// bounded by batch size.
    pub batch_rows: usize,
    /// Which attempt at reading the partition this is: 0 for the first, `n` for the
    /// `n`-th retry after a transient error (from the partition's last durable
    /// checkpoint). A source MAY read differently when retried (smaller statements after
    /// a hot-standby conflict); the runtime MUST set it.
    pub attempt: u32,
}

impl ReadRequest {
    /// The same request for retry number `attempt` of a partition.
    pub fn retry(&self, attempt: u32) -> ReadRequest {
        ReadRequest {
            attempt,
            ..self.clone()
        }
    }
}

/// A unit of parallelism: a range of a table, a slice of an API. Opaque to the runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partition {
    /// Unique within its plan; stable so a resumed run finds its progress.
    pub id: String,
    /// What the source needs to read this partition (bounds, a page range...).
    #[serde(default)]
    pub spec: Value,
}

impl Partition {
    /// The single partition of a read that is not split.
    pub fn whole() -> Self {
        Partition {
            id: "all".to_string(),
            spec: Value::Null,
        }
    }
}

/// How a read is split.
///
/// With one partition and no `state_after`, each checkpoint of that partition *is* the
/// stream's new state. With several partitions, checkpoints are each partition's resume
/// point, the runtime keeps them beside the plan, and when every partition has finished
/// the stream's state becomes `state_after` (which MUST then be set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadPlan {
    /// The partitions, in the order they should start.
    pub partitions: Vec<Partition>,
    /// The stream's state once every partition has been read.
    pub state_after: Option<Value>,
    /// Things the person reading the run report should know about this read (a stream
    /// skipped, a bound exceeded). The runtime copies them into the stream's run record
    /// and logs them; they never fail the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Measurements of the source taken while planning (a replication slot's retained
    /// WAL in bytes, say), by name. The runtime copies them into the stream's run record
    /// and exports each as the metric `inlet_source_gauge{connection, stream, name}`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gauges: std::collections::BTreeMap<String, f64>,
}

impl ReadPlan {
    /// A read that is not split.
    pub fn single() -> Self {
        ReadPlan {
            partitions: vec![Partition::whole()],
            state_after: None,
            warnings: Vec::new(),
            gauges: Default::default(),
        }
    }
}

/// A record the source could not read and skipped under a "skip" policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Where: `file:line`, `page 3 item 7`.
    pub location: String,
    /// Why it could not be read.
    pub reason: String,
}

/// One item of a read.
#[derive(Debug, Clone)]
pub enum ReadEvent {
    /// Records. Batches of one stream MAY change schema (a column appears); the lake
    /// starts a new file when they do.
    Batch(RecordBatch),
    /// A resume point covering every batch before it.
    Checkpoint(Value),
    /// A record skipped under the connection's bad-record policy; counted in the run.
    Skipped(Skipped),
}

/// The events of one partition's read, ending when the partition is exhausted.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ReadEvent, SourceError>> + Send>>;
