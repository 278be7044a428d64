//! What a source offers: streams, their Arrow schemas, keys and sync modes.

use arrow_schema::SchemaRef;
use serde::{Deserialize, Serialize};

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Read everything the stream has now; the saved state is ignored and replaced.
    FullRefresh,
    /// Read what changed since the saved state (a cursor column, `xmin`, files seen).
    Incremental,
}

impl SyncMode {
    /// The name used in config files and output.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
        }
    }
}

impl std::fmt::Display for SyncMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stream a source can read: a table, an API endpoint, a set of files.
#[derive(Debug, Clone)]
pub struct StreamDescriptor {
    /// Name, unique within the source; it becomes a folder of the raw layer.
    pub name: String,
    /// The Arrow schema of its records as far as it is known before reading. A source
    /// whose schema evolves (files, APIs) may emit batches with more columns later.
    pub schema: SchemaRef,
    /// Columns of the primary key, empty when there is none.
    pub primary_key: Vec<String>,
    /// Columns usable as an incremental cursor, best first.
    pub cursor_candidates: Vec<String>,
    /// The sync modes this stream supports.
    pub sync_modes: Vec<SyncMode>,
    /// The mode used when the connection does not choose one.
    pub default_mode: SyncMode,
    /// Synced only when the connection names it in its `streams` table (a Postgres view:
    /// it needs an explicit cursor); otherwise a connection without a `streams` table
    /// syncs every stream.
    pub opt_in: bool,
}

impl StreamDescriptor {
    /// Whether `mode` is supported.
    pub fn supports(&self, mode: SyncMode) -> bool {
        self.sync_modes.contains(&mode)
    }
}

/// Every stream a source offers.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The streams, in the order the source lists them.
    pub streams: Vec<StreamDescriptor>,
}

impl Catalog {
    /// The stream called `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamDescriptor> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Names of all streams, for messages.
    pub fn names(&self) -> Vec<&str> {
        self.streams.iter().map(|s| s.name.as_str()).collect()
    }
}
