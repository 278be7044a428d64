//! # inlet-lake: the raw layer
//!
//! Everything inlet writes lives under one root (a local directory or an S3 bucket and
//! prefix, behind the same [`Storage`] trait):
//!
//! ```text
//! <root>/<source>/<stream>/extracted_at=YYYY-MM-DD/part-<run>-<n>.parquet   data (immutable)
//! <root>/_inlet/connections/<source>/state.json                            current state
//! <root>/_inlet/connections/<source>/history/<seq>.json                    every state change
//! <root>/_inlet/connections/<source>/lease.json                            one run at a time
//! <root>/_inlet/connections/<source>/schemas/<stream>.json                 schemas landed
//! <root>/_inlet/runs/<source>/<run>.json                                   run records
//! <root>/_inlet/staging/...                                                files not yet landed
//! ```
//!
//! Landing is atomic: Parquet files are written to staging (never named `*.parquet`, and
//! under `_inlet/`, which Hive-style readers skip), made durable, and only *published*
//! (renamed into the partition folder) after the state commit that lists them. The state
//! commit is the single commit point; publishing is idempotent and finished by the next
//! run if a process dies in between. Staged files that no commit lists are garbage.
#![deny(missing_docs)]

mod error;
pub mod layout;
mod lease;
mod runs;
mod schemas;
pub mod state;
mod storage;
mod writer;

pub use error::LakeError;
pub use lease::{Lease, LeaseInfo};
pub use runs::{
    CatalogAction, CatalogStreamResult, RunOutcome, RunRecord, RunStore, RunSummary, StreamRunStats,
};
pub use schemas::{SchemaRecord, SchemaStore, SchemaVersion};
pub use state::{
    ConnectionState, HistoryEntry, PartitionProgress, StateAction, StateStore, StreamState,
};
pub use storage::{
    LocalStorage, ObjectMeta, Precondition, StagedObject, StagedUpload, Storage, Version,
};
#[cfg(feature = "s3")]
pub use storage::{S3Options, S3Storage, ServerSideEncryption};
pub use writer::{StreamWriter, WriterOptions, lineage_schema, portable_schema};

/// Crash-test hook: when `INLET_CRASH_AT` names this point, the process aborts here, as a
/// `kill -9` would stop it. The crash tests use it to hit each step of a commit exactly.
pub fn failpoint(name: &str) {
    if std::env::var_os("INLET_CRASH_AT").is_some_and(|v| v == name) {
        eprintln!("INLET_CRASH_AT={name}: aborting");
        std::process::abort();
    }
}
