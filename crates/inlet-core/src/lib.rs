//! # inlet-core: the contract every connector and the runtime agree on
//!
//! inlet moves data from a system (a Postgres replica, a SaaS API, files, a WebAssembly
//! plugin) into the raw layer of a data lake. This crate is the contract between the two
//! halves and nothing else: it has no network and no storage code.
//!
//! ```text
//!   Connector (by name, in a Registry)
//!       │  build(config)          pure config in, I/O starts here
//!       ▼
//!   Source ── check / discover ──> CheckReport / Catalog (streams, Arrow schemas, keys)
//!       │
//!       │  plan(ReadRequest)     ──> ReadPlan { partitions, state_after }
//!       │  read(request, partition, resume)
//!       ▼
//!   EventStream:  Batch, Batch, Checkpoint(state), Batch, ..., end
//!       │
//!       ▼  (inlet-runtime: the only place that joins source and lake)
//!   lake writer: Parquet files staged ──> on checkpoint: durable, then state committed
//! ```
//!
//! A connector knows one system. It describes its configuration ([`Connector::spec`]),
//! builds a [`Source`] from a validated configuration, and the source lists its streams
//! ([`Source::discover`]) and reads one stream as Arrow [`RecordBatch`]es interleaved with
//! [`ReadEvent::Checkpoint`]s. A checkpoint is a resume point: the opaque JSON value that,
//! given back to [`Source::read`], continues right after the last batch before it.
//!
//! The runtime decides when checkpoints become durable state (only after the data before
//! them is durable in the lake), so a connector may emit them as often as it likes.
//! A read can be split into [`Partition`]s (primary-key ranges of a table, say), the unit
//! of parallelism; the runtime keeps each partition's progress and moves the stream's
//! state to [`ReadPlan::state_after`] once every partition is done.
//!
//! A source whose reading runs in a task or a thread of its own builds its stream with
//! [`producer::channel`], so that a producer that panics ends the stream with an error
//! instead of looking finished.
//!
//! The rest of what every connector needs is written once here: a connector with a
//! typed configuration implements [`TypedConnector`] and gets `spec`, `validate` and
//! `build` ([`kit`]); a stream's state is read back with [`state::decode`] and keeps its
//! schema changes in a [`state::SchemaHistory`]; a retried read knows its attempt
//! ([`ReadRequest::attempt`]).
//!
//! Errors say whether they are transient ([`SourceError::is_transient`]) so that the
//! runtime knows what to retry. Secrets are [`secret::SecretValue`]s in configuration
//! and `secrecy` types once resolved; neither prints its value.
//!
//! [`RecordBatch`]: arrow_array::RecordBatch
#![deny(missing_docs)]

pub mod catalog;
pub mod error;
pub mod kit;
pub mod number;
pub mod producer;
pub mod read;
pub mod registry;
pub mod schema;
pub mod secret;
pub mod source;
pub mod state;

pub use catalog::{Catalog, StreamDescriptor, SyncMode};
pub use error::SourceError;
pub use kit::TypedConnector;
pub use read::{EventStream, Partition, ReadEvent, ReadPlan, ReadRequest};
pub use registry::{Registry, left_out_of_build};
pub use source::{
    CheckItem, CheckReport, Connector, ConnectorInfo, ConnectorKind, Source, SourceContext,
};
