//! One sync of one connection: lease, state, plan, read, land, commit.
//!
//! Each concept has one owner:
//!
//! - `connection`: a connection ready to use, its storage opened and its source built;
//! - `run`: one run of a connection, under its lease: the streams selected, the run
//!   record, garbage collection of what an interrupted run staged;
//! - `stream`: one stream within a run: its partitions, read attempts and retries, and
//!   the commits that land files and move its state;
//! - `progress`: how a partitioned read's progress moves (a pure function of the stored
//!   state and an event), which the stream run commits.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

mod connection;
mod progress;
mod run;
mod stream;

pub use connection::{Connection, open_storage};
pub use run::sync_connection;

/// A progress report, sent after every batch.
#[derive(Debug, Clone)]
pub struct Progress {
    /// The stream.
    pub stream: String,
    /// Rows read so far in this run (landed or not yet).
    pub rows_read: u64,
    /// Rows committed so far.
    pub rows_landed: u64,
}

/// Receives progress reports.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// What to sync and how.
#[derive(Clone, Default)]
pub struct SyncOptions {
    /// Only these streams (default: the connection's selection, or all).
    pub streams: Vec<String>,
    /// Ignore saved state and read everything.
    pub full_refresh: bool,
    /// Progress receiver.
    pub progress: Option<ProgressFn>,
    /// When set, the run commits at the next checkpoint and stops (graceful shutdown).
    pub stop: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field("streams", &self.streams)
            .field("full_refresh", &self.full_refresh)
            .finish_non_exhaustive()
    }
}

/// Who makes a manual change: `user@host`.
pub(crate) fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host}")
}

/// Whether a graceful stop was asked for.
fn stop_requested(stop: &Option<Arc<AtomicBool>>) -> bool {
    stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
}
