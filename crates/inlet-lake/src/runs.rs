//! Run records: one JSON object per run in the lake's metadata area.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{LakeError, Storage, layout};

/// What one stream did in a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamRunStats {
    /// Sync mode used.
    pub mode: String,
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
    /// `running`, `succeeded`, `failed`, `interrupted`.
    pub outcome: String,
    /// Per stream.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamRunStats>,
    /// Error message of a failed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RunRecord {
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
