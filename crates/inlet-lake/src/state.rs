//! Per-connection stream state: versioned, committed with conditional writes, every change
//! kept in a history that can be listed and rolled back to.
//!
//! Commit protocol (the same on disk and on S3):
//! 1. create `history/<seq+1>.json` with `If-None-Match: *` (two writers cannot both
//!    create it: the loser gets [`LakeError::Conflict`]); this is the commit point;
//! 2. replace `state.json` with `If-Match` on the version read before;
//! 3. publish the staged files the commit lists (idempotent).
//!
//! A reader that finds `history/<seq+1>.json` beyond `state.json` rolls it forward (a
//! writer died between 1 and 2), and publishes whatever the current state still lists as
//! pending (a writer died between 2 and 3).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use inlet_core::{ReadPlan, SyncMode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{LakeError, Precondition, StagedObject, Storage, Version, layout};

/// The state of one stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamState {
    /// The connector's resume point (opaque JSON), `None` before the first commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    /// Progress of a partitioned read in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionProgress>,
}

/// A partitioned read that has not finished: its plan and each partition's progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionProgress {
    /// The plan being executed; a resumed run continues it instead of planning anew.
    pub plan: ReadPlan,
    /// The mode the plan was made for.
    pub mode: SyncMode,
    /// Partitions read to their end.
    #[serde(default)]
    pub done: BTreeSet<String>,
    /// The last durable checkpoint of partitions not done.
    #[serde(default)]
    pub checkpoints: BTreeMap<String, Value>,
}

/// All streams of a connection at one sequence number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionState {
    /// Number of the last change (0: never committed).
    pub seq: u64,
    /// When it changed.
    pub updated_at: Option<DateTime<Utc>>,
    /// State by stream name.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamState>,
    /// Files the last commit landed; published after the commit, idempotently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<StagedObject>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "version")]
enum StateFile {
    #[serde(rename = "1")]
    V1(ConnectionState),
}

/// Why the state changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateAction {
    /// A sync landed data up to a checkpoint.
    Checkpoint,
    /// An engineer reset streams.
    Reset,
    /// An engineer set a stream's cursor by hand.
    Set,
    /// An engineer rolled back to an earlier version.
    Rollback {
        /// The sequence number restored.
        to: u64,
    },
}

impl StateAction {
    /// A short name for listings.
    pub fn label(&self) -> String {
        match self {
            StateAction::Checkpoint => "checkpoint".into(),
            StateAction::Reset => "reset".into(),
            StateAction::Set => "set".into(),
            StateAction::Rollback { to } => format!("rollback to {to}"),
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    /// Its sequence number.
    pub seq: u64,
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub action: StateAction,
    /// Who (`user@host` for manual changes, `sync` for runs).
    pub actor: String,
    /// The run that made it, for checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// Streams changed: their new state, or `null` when removed.
    pub changes: BTreeMap<String, Option<StreamState>>,
    /// Files landed by this change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<StagedObject>,
}

/// A change to commit.
#[derive(Debug, Clone)]
pub struct Change {
    /// Why.
    pub action: StateAction,
    /// Who.
    pub actor: String,
    /// The run, if any.
    pub run_id: Option<String>,
    /// New state of each changed stream (`None` removes it).
    pub changes: BTreeMap<String, Option<StreamState>>,
    /// Files to publish once committed.
    pub pending: Vec<StagedObject>,
}

/// The state of one connection in a lake.
#[derive(Debug)]
pub struct StateStore {
    storage: Arc<dyn Storage>,
    connection: String,
    current: ConnectionState,
    version: Option<Version>,
}

impl StateStore {
    /// Open the state of `connection`, finishing any commit a dead writer left half done.
    pub async fn open(storage: Arc<dyn Storage>, connection: &str) -> Result<Self, LakeError> {
        let mut store = StateStore {
            storage,
            connection: connection.to_string(),
            current: ConnectionState::default(),
            version: None,
        };
        store.reload().await?;
        Ok(store)
    }

    /// The current state.
    pub fn current(&self) -> &ConnectionState {
        &self.current
    }

    /// The state of one stream (default when never committed).
    pub fn stream(&self, stream: &str) -> StreamState {
        self.current
            .streams
            .get(stream)
            .cloned()
            .unwrap_or_default()
    }

    /// Re-read the state from storage and roll forward.
    pub async fn reload(&mut self) -> Result<(), LakeError> {
        let key = layout::state_key(&self.connection);
        match self.storage.get(&key).await? {
            Some((bytes, version)) => {
                let file: StateFile =
                    serde_json::from_slice(&bytes).map_err(|e| LakeError::Corrupt {
                        resource: key.clone(),
                        message: format!(
                            "{e} (restore it with `inlet state rollback`, or repair it by hand)"
                        ),
                    })?;
                let StateFile::V1(state) = file;
                self.current = state;
                self.version = Some(version);
            }
            None => {
                self.current = ConnectionState::default();
                self.version = None;
            }
        }
        // Roll forward commits whose state.json write never happened.
        while let Some(entry) = self.read_entry(self.current.seq + 1).await? {
            tracing::warn!(connection = %self.connection, seq = entry.seq, "finishing a state commit an earlier process left half done");
            let next = apply(&self.current, &entry);
            self.write_state(next).await?;
        }
        self.publish_pending().await
    }

    /// Publish the files the current state lists as pending. Idempotent.
    pub async fn publish_pending(&self) -> Result<(), LakeError> {
        for staged in &self.current.pending {
            self.storage.publish(staged).await?;
        }
        Ok(())
    }

    /// Commit a change: history entry, then state, then publish its files.
    pub async fn commit(&mut self, change: Change) -> Result<HistoryEntry, LakeError> {
        // The previous commit's files must be visible before its entry stops being the
        // one that lists them; otherwise a later garbage collection would drop them.
        self.publish_pending().await?;
        let entry = HistoryEntry {
            seq: self.current.seq + 1,
            at: Utc::now(),
            action: change.action,
            actor: change.actor,
            run_id: change.run_id,
            changes: change.changes,
            pending: change.pending,
        };
        let bytes =
            serde_json::to_vec_pretty(&entry).map_err(|e| LakeError::Invalid(e.to_string()))?;
        let key = layout::history_key(&self.connection, entry.seq);
        let created = self
            .storage
            .put_if(&key, Bytes::from(bytes.clone()), Precondition::Absent)
            .await;
        if let Err(e) = created {
            // A retried request whose first attempt succeeded also answers "exists":
            // the entry is ours if it holds exactly our bytes.
            let ours = matches!(e, LakeError::Conflict { .. })
                && self
                    .storage
                    .get(&key)
                    .await?
                    .is_some_and(|(b, _)| b[..] == bytes[..]);
            if !ours {
                return Err(match e {
                    LakeError::Conflict { resource, .. } => LakeError::Conflict {
                        resource,
                        message: format!(
                            "state version {} was committed by another process; reload and retry",
                            entry.seq
                        ),
                    },
                    other => other,
                });
            }
        }
        crate::failpoint("after-history");
        let next = apply(&self.current, &entry);
        self.write_state(next).await?;
        crate::failpoint("after-state");
        // Committed: a failure to publish now is finished by the next commit or reload.
        if let Err(e) = self.publish_pending().await {
            tracing::warn!(connection = %self.connection, seq = entry.seq, error = %e, "committed, but publishing its files failed; the next commit or run publishes them");
        }
        Ok(entry)
    }

    /// Every recorded change, oldest first.
    pub async fn history(&self) -> Result<Vec<HistoryEntry>, LakeError> {
        let mut out = Vec::new();
        for obj in self
            .storage
            .list(&layout::history_prefix(&self.connection))
            .await?
        {
            if !obj.key.ends_with(".json") {
                continue;
            }
            let Some((bytes, _)) = self.storage.get(&obj.key).await? else {
                continue;
            };
            out.push(parse_entry(&obj.key, &bytes)?);
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }

    /// The streams as they were right after change `seq`.
    pub async fn streams_at(&self, seq: u64) -> Result<BTreeMap<String, StreamState>, LakeError> {
        if seq > self.current.seq {
            return Err(LakeError::Invalid(format!(
                "version {seq} does not exist: the latest is {}",
                self.current.seq
            )));
        }
        let mut state = ConnectionState::default();
        for entry in self.history().await? {
            if entry.seq > seq {
                break;
            }
            state = apply(&state, &entry);
        }
        Ok(state.streams)
    }

    /// The history entry `seq`, if it exists.
    pub async fn read_entry(&self, seq: u64) -> Result<Option<HistoryEntry>, LakeError> {
        let key = layout::history_key(&self.connection, seq);
        match self.storage.get(&key).await? {
            Some((bytes, _)) => Ok(Some(parse_entry(&key, &bytes)?)),
            None => Ok(None),
        }
    }

    async fn write_state(&mut self, next: ConnectionState) -> Result<(), LakeError> {
        let key = layout::state_key(&self.connection);
        let bytes = serde_json::to_vec_pretty(&StateFile::V1(next.clone()))
            .map_err(|e| LakeError::Invalid(e.to_string()))?;
        let condition = match &self.version {
            Some(v) => Precondition::Matches(v.clone()),
            None => Precondition::Absent,
        };
        let version = match self
            .storage
            .put_if(&key, Bytes::from(bytes.clone()), condition)
            .await
        {
            Ok(v) => v,
            // A retried request whose first attempt succeeded: the object holds our bytes.
            Err(LakeError::Conflict { resource, message }) => match self.storage.get(&key).await? {
                Some((b, v)) if b[..] == bytes[..] => v,
                _ => return Err(LakeError::Conflict { resource, message }),
            },
            Err(e) => return Err(e),
        };
        self.current = next;
        self.version = Some(version);
        Ok(())
    }
}

fn parse_entry(key: &str, bytes: &[u8]) -> Result<HistoryEntry, LakeError> {
    serde_json::from_slice(bytes).map_err(|e| LakeError::Corrupt {
        resource: key.to_string(),
        message: e.to_string(),
    })
}

fn apply(state: &ConnectionState, entry: &HistoryEntry) -> ConnectionState {
    let mut next = state.clone();
    next.seq = entry.seq;
    next.updated_at = Some(entry.at);
    for (stream, change) in &entry.changes {
        match change {
            Some(s) => {
                next.streams.insert(stream.clone(), s.clone());
            }
            None => {
                next.streams.remove(stream);
            }
        }
    }
    next.pending = entry.pending.clone();
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalStorage;
    use serde_json::json;

    fn change(stream: &str, cursor: Value) -> Change {
        Change {
            action: StateAction::Checkpoint,
            actor: "test".into(),
            run_id: Some("r".into()),
            changes: BTreeMap::from([(
                stream.to_string(),
                Some(StreamState {
                    cursor: Some(cursor),
                    partitions: None,
                }),
            )]),
            pending: vec![],
        }
    }

    #[tokio::test]
    async fn commits_are_versioned_and_history_rebuilds_any_version() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
        s.commit(change("a", json!({"n": 1}))).await.unwrap();
        s.commit(change("b", json!({"n": 2}))).await.unwrap();
        s.commit(change("a", json!({"n": 3}))).await.unwrap();
        assert_eq!(s.current().seq, 3);
        let at2 = s.streams_at(2).await.unwrap();
        assert_eq!(at2["a"].cursor, Some(json!({"n": 1})));
        assert_eq!(at2["b"].cursor, Some(json!({"n": 2})));
        assert_eq!(s.history().await.unwrap().len(), 3);
        let reopened = StateStore::open(storage, "c").await.unwrap();
        assert_eq!(reopened.current(), s.current());
    }

    #[tokio::test]
    async fn two_writers_on_one_version_one_wins_the_other_gets_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let mut a = StateStore::open(storage.clone(), "c").await.unwrap();
        let mut b = StateStore::open(storage.clone(), "c").await.unwrap();
        a.commit(change("x", json!(1))).await.unwrap();
        let err = b.commit(change("x", json!(2))).await.unwrap_err();
        assert!(matches!(err, LakeError::Conflict { .. }), "{err}");
        b.reload().await.unwrap();
        assert_eq!(b.stream("x").cursor, Some(json!(1)));
    }

    #[tokio::test]
    async fn a_commit_cut_after_its_history_entry_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
        s.commit(change("x", json!(1))).await.unwrap();
        // Simulate a writer that died after creating history entry 2.
        let entry = HistoryEntry {
            seq: 2,
            at: Utc::now(),
            action: StateAction::Checkpoint,
            actor: "dead".into(),
            run_id: None,
            changes: BTreeMap::from([(
                "x".to_string(),
                Some(StreamState {
                    cursor: Some(json!(2)),
                    partitions: None,
                }),
            )]),
            pending: vec![],
        };
        storage
            .put(
                &layout::history_key("c", 2),
                Bytes::from(serde_json::to_vec(&entry).unwrap()),
            )
            .await
            .unwrap();
        let s = StateStore::open(storage, "c").await.unwrap();
        assert_eq!(s.current().seq, 2);
        assert_eq!(s.stream("x").cursor, Some(json!(2)));
    }

    #[tokio::test]
    async fn files_a_commit_could_not_publish_are_never_dropped_by_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
        let mut up = storage
            .stage("c/st/extracted_at=2026-01-01/part-r-00000.parquet")
            .await
            .unwrap();
        up.write(Bytes::from_static(b"data")).await.unwrap();
        let staged = up.finish().await.unwrap();
        // Make publishing fail: the staged file is briefly out of reach.
        let from = dir.path().join(&staged.staging);
        let aside = dir.path().join("aside");
        std::fs::rename(&from, &aside).unwrap();
        let mut first = change("st", json!(1));
        first.pending = vec![staged.clone()];
        s.commit(first).await.unwrap();
        assert_eq!(s.current().pending, vec![staged.clone()]);
        // The next commit must not replace the unpublished list.
        assert!(s.commit(change("st", json!(2))).await.is_err());
        assert_eq!(s.current().pending, vec![staged.clone()]);
        std::fs::rename(&aside, &from).unwrap();
        s.commit(change("st", json!(2))).await.unwrap();
        assert_eq!(
            storage.list("c/").await.unwrap().len(),
            1,
            "published before moving on"
        );
    }
}
