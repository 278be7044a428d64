//! Run records: one JSON object per run in the lake's metadata area.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_core::SyncMode;
use serde::{Deserialize, Serialize};

use crate::{LakeError, Storage, layout};

/// How a run ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Still going (or its process died before recording the end).
    Running,
    /// Every selected stream was read to its end and committed.
    Succeeded,
    /// A stream failed, or the run could not go on.
    Failed,
    /// Stopped at a checkpoint on request (graceful shutdown).
    Interrupted,
}

impl RunOutcome {
    /// The name used in run records and output.
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Running => "running",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, so that tables can align it like a string.
        f.pad(self.as_str())
    }
}

/// What one stream did in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamRunStats {
    /// Sync mode used.
    pub mode: SyncMode,
    /// Rows landed (committed).
    pub rows: u64,
    /// Bytes of Parquet landed.
    pub bytes: u64,
    /// Files landed.
    pub files: u64,
    /// Records skipped under the bad-record policy.
    pub skipped: u64,
    /// Checkpoints committed.
    pub commits: u64,
    /// Transient failures retried.
    pub retries: u64,
    /// Its error, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Warnings of the source about this read (a stream skipped, a bound exceeded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl StreamRunStats {
    /// A stream's stats before it has done anything.
    pub fn new(mode: SyncMode) -> Self {
        StreamRunStats {
            mode,
            rows: 0,
            bytes: 0,
            files: 0,
            skipped: 0,
            commits: 0,
            retries: 0,
            error: None,
            warnings: Vec::new(),
        }
    }
}

/// What catalog registration did with one stream's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogAction {
    /// The table did not exist and was created.
    Created,
    /// The table existed and got a new version (columns added or widened).
    Updated,
    /// The table already matched what landed: no call changed it.
    Unchanged,
    /// Registration failed; the landed data stays and the next sync tries again.
    Failed,
}

impl CatalogAction {
    /// The name used in run records and output.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogAction::Created => "created",
            CatalogAction::Updated => "updated",
            CatalogAction::Unchanged => "unchanged",
            CatalogAction::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CatalogAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One stream's table in the catalog after a run (or `inlet catalog sync`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogStreamResult {
    /// `database.table`.
    pub table: String,
    /// What registration did.
    pub action: CatalogAction,
    /// The changes of an update (`added column x`, `widened y int -> bigint`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Why it failed, what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run of one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id (sortable by start time).
    pub run_id: String,
    /// The connection.
    pub connection: String,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, once finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How it ended (`running` until it does).
    pub outcome: RunOutcome,
    /// Per stream.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamRunStats>,
    /// Error message of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Catalog registration after the streams, per stream; empty without a catalog.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub catalog: BTreeMap<String, CatalogStreamResult>,
}

impl RunRecord {
    /// The streams whose catalog registration failed.
    pub fn catalog_failures(&self) -> impl Iterator<Item = (&String, &CatalogStreamResult)> {
        self.catalog
            .iter()
            .filter(|(_, r)| r.action == CatalogAction::Failed)
    }

    /// Total rows landed.
    pub fn rows(&self) -> u64 {
        self.streams.values().map(|s| s.rows).sum()
    }
    /// Total bytes landed.
    pub fn bytes(&self) -> u64 {
        self.streams.values().map(|s| s.bytes).sum()
    }
    /// Total files landed.
    pub fn files(&self) -> u64 {
        self.streams.values().map(|s| s.files).sum()
    }
    /// Duration in seconds, if finished.
    pub fn duration_secs(&self) -> Option<f64> {
        self.finished_at
            .map(|f| (f - self.started_at).num_milliseconds() as f64 / 1000.0)
    }
}

/// Reads and writes run records.
#[derive(Debug, Clone)]
pub struct RunStore {
    storage: Arc<dyn Storage>,
}

impl RunStore {
    /// Run records in this lake.
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        RunStore { storage }
    }

    /// Write (or overwrite) a record.
    pub async fn save(&self, record: &RunRecord) -> Result<(), LakeError> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| LakeError::Invalid(e.to_string()))?;
        self.storage
            .put(
                &layout::run_key(&record.connection, &record.run_id),
                Bytes::from(bytes),
            )
            .await?;
        Ok(())
    }

    /// Records of one connection or all, newest first, at most `limit`.
    pub async fn list(
        &self,
        connection: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, LakeError> {
        let mut objects = self.storage.list(&layout::runs_prefix(connection)).await?;
        objects.retain(|o| o.key.ends_with(".json"));
        // Keys end in the run id, which sorts by start time.
        objects.sort_by(|a, b| file_name(&b.key).cmp(file_name(&a.key)));
        let mut out = Vec::new();
        for o in objects.into_iter().take(limit) {
            if let Some((bytes, _)) = self.storage.get(&o.key).await? {
                out.push(
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::Corrupt {
                        resource: o.key.clone(),
                        message: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_and_modes_are_written_and_read_as_the_same_strings() {
        let text = json!({
            "run_id": "r", "connection": "c", "started_at": "2026-01-01T00:00:00Z",
            "outcome": "interrupted",
            "streams": {"s": {"mode": "full_refresh", "rows": 1, "bytes": 2, "files": 1,
                              "skipped": 0, "commits": 1, "retries": 0}}
        });
        let record: RunRecord = serde_json::from_value(text.clone()).unwrap();
        assert_eq!(record.outcome, RunOutcome::Interrupted);
        assert_eq!(record.streams["s"].mode, SyncMode::FullRefresh);
        assert_eq!(serde_json::to_value(&record).unwrap(), text);
        for o in [
            RunOutcome::Running,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Interrupted,
        ] {
            assert_eq!(serde_json::to_value(o).unwrap(), json!(o.as_str()));
            assert_eq!(format!("{o:<12}|"), format!("{:<12}|", o.as_str()));
        }
    }
}
