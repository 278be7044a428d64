//! Run records: one JSON object per run in the lake's metadata area.

use std::{collections::BTreeMap, sync::Arc};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_core::SyncMode;
use serde::{Deserialize, Serialize};

use crate::{LakeError, Storage, layout};

/// How a run ended, or that it has not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// The outcome called `name` (`succeeded`, `failed`, `interrupted`, `running`).
    pub fn parse(name: &str) -> Option<RunOutcome> {
        [
            RunOutcome::Running,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Interrupted,
        ]
        .into_iter()
        .find(|o| o.as_str() == name)
    }

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
    /// Measurements of the source when the read was planned (`slot_retained_bytes`...).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub gauges: std::collections::BTreeMap<String, f64>,
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
            gauges: Default::default(),
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

    /// Write (or overwrite) a record. A finished record is also indexed by its outcome.
    pub async fn save(&self, record: &RunRecord) -> Result<(), LakeError> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| LakeError::Invalid(e.to_string()))?;
        self.storage
            .put(
                &layout::run_key(&record.connection, &record.run_id),
                Bytes::from(bytes),
            )
            .await?;
        if record.outcome != RunOutcome::Running {
            self.mark(&record.connection, record.outcome, &record.run_id)
                .await?;
        }
        Ok(())
    }

    async fn mark(&self, source: &str, outcome: RunOutcome, run_id: &str) -> Result<(), LakeError> {
        self.storage
            .put(
                &layout::run_outcome_key(source, outcome.as_str(), run_id),
                Bytes::from_static(b"{}"),
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
        let mut keys: Vec<String> = self
            .storage
            .list(&layout::runs_prefix(connection))
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| k.ends_with(".json"))
            .collect();
        // Keys end in the run id, which sorts by start time.
        keys.sort_by(|a, b| file_name(b).cmp(file_name(a)));
        self.read_all(keys.into_iter().take(limit)).await
    }

    /// The records of `connection` that ended with `outcome`, newest first, at most
    /// `limit`: only those records are read (the outcome index names them). `Running`
    /// lists the records without an outcome: runs going on, or whose process died.
    pub async fn list_outcome(
        &self,
        connection: &str,
        outcome: RunOutcome,
        limit: usize,
    ) -> Result<Vec<RunRecord>, LakeError> {
        let index = self.index(connection).await?;
        let mut ids: Vec<&String> = index
            .runs
            .iter()
            .filter(|id| {
                index.outcome_of.get(*id).copied() == Some(outcome)
                    || (outcome == RunOutcome::Running && !index.outcome_of.contains_key(*id))
            })
            .collect();
        ids.sort_by(|a, b| b.cmp(a));
        let keys = ids
            .into_iter()
            .take(limit)
            .map(|id| layout::run_key(connection, id));
        self.read_all(keys).await
    }

    /// When `connection` last succeeded and how many of its runs failed in a row since,
    /// from the outcome index: one listing and at most one record read.
    pub async fn summary(&self, connection: &str) -> Result<RunSummary, LakeError> {
        let index = self.index(connection).await?;
        let mut ids: Vec<&String> = index.outcome_of.keys().collect();
        ids.sort_by(|a, b| b.cmp(a));
        let mut consecutive_failures = 0u32;
        let mut last_success = None;
        for id in ids {
            match index.outcome_of[id] {
                RunOutcome::Succeeded => {
                    last_success = Some(id);
                    break;
                }
                RunOutcome::Failed => consecutive_failures += 1,
                RunOutcome::Interrupted | RunOutcome::Running => {}
            }
        }
        let last_success = match last_success {
            Some(id) => self
                .read_all(std::iter::once(layout::run_key(connection, id)))
                .await?
                .pop(),
            None => None,
        };
        Ok(RunSummary {
            last_success,
            consecutive_failures,
        })
    }

    /// Delete the records (and their outcome markers) of `connection` whose run started
    /// before `before`, keeping the newest record of each outcome however old, so that
    /// "when did it last succeed" survives. Old records without an outcome (a process that
    /// died mid-run) go too. Records written before the outcome index
    /// existed are indexed on the way (read once). Returns how many records went.
    pub async fn prune(&self, connection: &str, before: DateTime<Utc>) -> Result<usize, LakeError> {
        let mut index = self.index(connection).await?;
        // Index what older versions wrote without a marker (finished runs only).
        let unindexed: Vec<String> = index
            .runs
            .iter()
            .filter(|id| !index.outcome_of.contains_key(*id))
            .cloned()
            .collect();
        for id in unindexed {
            let key = layout::run_key(connection, &id);
            if let Some((bytes, _)) = self.storage.get(&key).await?
                && let Ok(record) = serde_json::from_slice::<RunRecord>(&bytes)
                && record.outcome != RunOutcome::Running
            {
                self.mark(connection, record.outcome, &id).await?;
                index.outcome_of.insert(id, record.outcome);
            }
        }
        let mut newest: BTreeMap<RunOutcome, &String> = BTreeMap::new();
        for id in &index.runs {
            if let Some(o) = index.outcome_of.get(id) {
                let e = newest.entry(*o).or_insert(id);
                if id > *e {
                    *e = id;
                }
            }
        }
        let keep: std::collections::BTreeSet<&String> = newest.into_values().collect();
        let mut removed = 0;
        for id in &index.runs {
            let Some(started) = run_started(id) else {
                continue;
            };
            if started >= before || keep.contains(id) {
                continue;
            }
            // The marker first: a record without one is never lost from `list`.
            if let Some(o) = index.outcome_of.get(id) {
                self.storage
                    .delete(&layout::run_outcome_key(connection, o.as_str(), id))
                    .await?;
            }
            self.storage
                .delete(&layout::run_key(connection, id))
                .await?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The run ids of `connection` and the outcome of each indexed one: listings only.
    async fn index(&self, connection: &str) -> Result<RunIndex, LakeError> {
        let mut index = RunIndex::default();
        let outcome_root = format!("{}outcome/", layout::runs_prefix(Some(connection)));
        for o in self
            .storage
            .list(&layout::runs_prefix(Some(connection)))
            .await?
        {
            if let Some(rest) = o.key.strip_prefix(&outcome_root) {
                let mut parts = rest.splitn(2, '/');
                let (Some(outcome), Some(id)) = (parts.next(), parts.next()) else {
                    continue;
                };
                if let Some(outcome) = RunOutcome::parse(outcome) {
                    index.outcome_of.insert(id.to_string(), outcome);
                }
            } else if let Some(name) = o.key.strip_suffix(".json") {
                index.runs.push(file_name(name).to_string());
            }
        }
        // A marker whose record is gone (a prune cut between the two deletes) is ignored.
        let runs: std::collections::BTreeSet<&String> = index.runs.iter().collect();
        index.outcome_of.retain(|id, _| runs.contains(id));
        Ok(index)
    }

    async fn read_all(
        &self,
        keys: impl Iterator<Item = String>,
    ) -> Result<Vec<RunRecord>, LakeError> {
        let mut out = Vec::new();
        for key in keys {
            if let Some((bytes, _)) = self.storage.get(&key).await? {
                out.push(
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::Corrupt {
                        resource: key.clone(),
                        message: e.to_string(),
                    })?,
                );
            }
        }
        Ok(out)
    }
}

/// What the run records say of a connection's health (see [`RunStore::summary`]).
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// The newest run that succeeded.
    pub last_success: Option<RunRecord>,
    /// Runs that failed after it (interrupted runs do not count either way).
    pub consecutive_failures: u32,
}

#[derive(Default)]
struct RunIndex {
    /// Every run id with a record.
    runs: Vec<String>,
    /// The outcome of each indexed run.
    outcome_of: BTreeMap<String, RunOutcome>,
}

/// When run `id` started, from its id (`20261202T054944Z-…`, see `layout::new_run_id`).
fn run_started(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..16)?;
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

fn file_name(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(id: &str, outcome: RunOutcome) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            connection: "c".into(),
            started_at: run_started(id).unwrap(),
            finished_at: None,
            outcome,
            streams: BTreeMap::new(),
            error: None,
            catalog: Default::default(),
        }
    }

    /// Counts reads, so a test can tell that a listing read only what it returns.
    #[derive(Debug)]
    struct CountingGets {
        inner: crate::LocalStorage,
        gets: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Storage for CountingGets {
        fn url(&self) -> String {
            self.inner.url()
        }
        async fn get(&self, key: &str) -> Result<Option<(Bytes, crate::Version)>, LakeError> {
            self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, bytes: Bytes) -> Result<crate::Version, LakeError> {
            self.inner.put(key, bytes).await
        }
        async fn put_if(
            &self,
            key: &str,
            bytes: Bytes,
            condition: crate::Precondition,
        ) -> Result<crate::Version, LakeError> {
            self.inner.put_if(key, bytes, condition).await
        }
        async fn list(&self, prefix: &str) -> Result<Vec<crate::ObjectMeta>, LakeError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> Result<(), LakeError> {
            self.inner.delete(key).await
        }
        async fn stage(&self, final_key: &str) -> Result<Box<dyn crate::StagedUpload>, LakeError> {
            self.inner.stage(final_key).await
        }
        async fn publish(&self, staged: &crate::StagedObject) -> Result<(), LakeError> {
            self.inner.publish(staged).await
        }
        async fn discard(&self, staged: &crate::StagedObject) -> Result<(), LakeError> {
            self.inner.discard(staged).await
        }
        async fn list_staged(&self, source: &str) -> Result<Vec<crate::StagedObject>, LakeError> {
            self.inner.list_staged(source).await
        }
    }

    #[tokio::test]
    async fn the_summary_reads_one_record_and_counts_failures_since_the_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(CountingGets {
            inner: crate::LocalStorage::new(dir.path()).unwrap(),
            gets: Default::default(),
        });
        let runs = RunStore::new(storage.clone());
        assert!(runs.summary("c").await.unwrap().last_success.is_none());
        let start = DateTime::parse_from_rfc3339("2026-03-01T06:00:00Z")
            .unwrap()
            .to_utc();
        let outcomes = [
            RunOutcome::Failed,
            RunOutcome::Succeeded,
            RunOutcome::Failed,
            RunOutcome::Interrupted,
            RunOutcome::Failed,
            RunOutcome::Running,
        ];
        let mut ids = Vec::new();
        for (i, o) in outcomes.into_iter().enumerate() {
            let id = crate::layout::new_run_id(start + chrono::Duration::hours(i as i64));
            runs.save(&record(&id, o)).await.unwrap();
            ids.push(id);
        }
        storage.gets.store(0, std::sync::atomic::Ordering::SeqCst);
        let s = runs.summary("c").await.unwrap();
        assert_eq!(s.last_success.unwrap().run_id, ids[1]);
        assert_eq!(s.consecutive_failures, 2);
        assert_eq!(storage.gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn listing_one_outcome_reads_only_its_records_and_pruning_keeps_the_newest_of_each() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(CountingGets {
            inner: crate::LocalStorage::new(dir.path()).unwrap(),
            gets: Default::default(),
        });
        let runs = RunStore::new(storage.clone());
        // 300 days of daily runs, every tenth one failed; the last one still running.
        let start = DateTime::parse_from_rfc3339("2026-01-01T06:00:00Z")
            .unwrap()
            .to_utc();
        for day in 0..300 {
            let id = crate::layout::new_run_id(start + chrono::Duration::days(day));
            let outcome = if day == 299 {
                RunOutcome::Running
            } else if day % 10 == 3 {
                RunOutcome::Failed
            } else {
                RunOutcome::Succeeded
            };
            runs.save(&record(&id, outcome)).await.unwrap();
        }
        storage.gets.store(0, std::sync::atomic::Ordering::SeqCst);
        let failed = runs.list_outcome("c", RunOutcome::Failed, 5).await.unwrap();
        assert_eq!(failed.len(), 5);
        assert!(failed.iter().all(|r| r.outcome == RunOutcome::Failed));
        assert!(
            failed.windows(2).all(|w| w[0].run_id > w[1].run_id),
            "newest first"
        );
        assert_eq!(
            storage.gets.load(std::sync::atomic::Ordering::SeqCst),
            5,
            "read only what it returns"
        );
        let running = runs
            .list_outcome("c", RunOutcome::Running, 10)
            .await
            .unwrap();
        assert_eq!(running.len(), 1);

        // Keep 90 days: older records and markers go, except the newest failed one... which
        // is recent anyway; make the only interrupted run old, so it is kept.
        let old = crate::layout::new_run_id(start - chrono::Duration::days(400));
        runs.save(&record(&old, RunOutcome::Interrupted))
            .await
            .unwrap();
        let cutoff = start + chrono::Duration::days(299 - 90);
        let removed = runs.prune("c", cutoff).await.unwrap();
        assert_eq!(removed, 209);
        let left = runs.list(Some("c"), usize::MAX).await.unwrap();
        assert_eq!(left.len(), 300 - 209 + 1);
        assert!(
            left.iter().any(|r| r.run_id == old),
            "the newest interrupted run is kept"
        );
        assert_eq!(
            runs.list_outcome("c", RunOutcome::Failed, 100)
                .await
                .unwrap()
                .len(),
            9
        );
        // Records from before the outcome index are indexed by the next prune.
        let legacy = crate::layout::new_run_id(start + chrono::Duration::days(298));
        let bytes = serde_json::to_vec(&record(&legacy, RunOutcome::Failed)).unwrap();
        storage
            .put(&crate::layout::run_key("c", &legacy), Bytes::from(bytes))
            .await
            .unwrap();
        assert_eq!(runs.prune("c", cutoff).await.unwrap(), 0);
        let failed = runs.list_outcome("c", RunOutcome::Failed, 1).await.unwrap();
        assert_eq!(failed[0].run_id, legacy);
    }

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
