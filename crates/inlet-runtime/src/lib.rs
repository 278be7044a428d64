//! # inlet-runtime: runs a sync
//!
//! The only place where sources and the lake meet. For each selected stream it loads the
//! stream's state, asks the source for a plan, reads each partition, writes batches to
//! staged Parquet files, and at checkpoints commits the files and the state together
//! (files first made durable, then the state commit that lists them, then publication).
//! It never matches on a connector's kind: connectors come from a [`inlet_core::Registry`].
#![deny(missing_docs)]

mod config;
pub mod daemon;
mod error;
mod metrics;
pub mod ops;
pub mod schedule;
pub mod sync;

pub use config::{ConnectionConfig, Project, ProjectFile, StreamSelection};
pub use error::RuntimeError;
pub use sync::{Progress, SyncOptions, sync_connection};
