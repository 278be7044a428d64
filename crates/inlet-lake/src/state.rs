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
    ///
    /// An error does not always mean the change did not land: the history entry (the
    /// commit point) may have been written before a later step or a response was lost.
    /// So on an error this re-reads the state, and returns the entry when it is ours; a
    /// caller MUST NOT redo the work of a change this reports as committed, and MAY redo
    /// it after an error (nothing of it is in the state).
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
        if let Err(e) = self.write_entry(&entry, &bytes).await {
            // Reading again from an older resume point after a commit that happened would
            // land rows twice: find out whether it happened.
            if !self.landed(entry.seq, &bytes).await? {
                return Err(e);
            }
            tracing::warn!(connection = %self.connection, seq = entry.seq, error = %e, "the commit went through despite an error");
        }
        Ok(entry)
    }

    /// Steps 1 to 3 of the commit protocol for `entry`, serialised as `bytes`.
    async fn write_entry(&mut self, entry: &HistoryEntry, bytes: &[u8]) -> Result<(), LakeError> {
        let key = layout::history_key(&self.connection, entry.seq);
        let created = self
            .storage
            .put_if(&key, Bytes::from(bytes.to_vec()), Precondition::Absent)
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
        let next = apply(&self.current, entry);
        self.write_state(next).await?;
        crate::failpoint("after-state");
        // Committed: a failure to publish now is finished by the next commit or reload.
        if let Err(e) = self.publish_pending().await {
            tracing::warn!(connection = %self.connection, seq = entry.seq, error = %e, "committed, but publishing its files failed; the next commit or run publishes them");
        }
        Ok(())
    }

    /// After an error: whether history entry `seq` holds exactly `bytes` (the commit
    /// point was passed), having re-read the state, which rolls such a commit forward.
    async fn landed(&mut self, seq: u64, bytes: &[u8]) -> Result<bool, LakeError> {
        self.reload().await?;
        let key = layout::history_key(&self.connection, seq);
        Ok(self
            .storage
            .get(&key)
            .await?
            .is_some_and(|(b, _)| b[..] == bytes[..]))
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
        let history = self.history().await?;
        let floor = self.restorable_from().await?;
        if seq < floor {
            return Err(LakeError::Invalid(format!(
                "version {seq} can no longer be restored: the history before version {floor} was pruned (the connection's `state_history_keep`); the oldest version that can be restored is {floor}"
            )));
        }
        let mut state = ConnectionState::default();
        for entry in history {
            if entry.seq > seq {
                break;
            }
            state = apply(&state, &entry);
        }
        Ok(state.streams)
    }

    /// Keep the newest `keep` history entries (at least 1) and, from the older ones, only
    /// the newest entry of each stream: what rebuilding any kept version needs, so a
    /// rollback to any of the last `keep` versions works as before. Returns how many
    /// entries were deleted. Only the lease holder may prune.
    pub async fn prune_history(&self, keep: usize) -> Result<usize, LakeError> {
        let keep = keep.max(1);
        // The sequence numbers come from the listing: the kept window is never read, and
        // below the recorded floor only the entries an earlier prune kept remain.
        let mut seqs: Vec<u64> = self
            .storage
            .list(&layout::history_prefix(&self.connection))
            .await?
            .iter()
            .filter_map(|o| {
                o.key
                    .rsplit('/')
                    .next()?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        seqs.sort_unstable();
        if seqs.len() <= keep {
            return Ok(0);
        }
        let cutoff = seqs[seqs.len() - keep];
        let floor = self.restorable_from().await?;
        if !seqs.iter().any(|s| (floor..cutoff).contains(s)) {
            return Ok(0);
        }
        let mut history = Vec::new();
        for seq in seqs.into_iter().filter(|s| *s < cutoff) {
            if let Some(entry) = self.read_entry(seq).await? {
                history.push(entry);
            }
        }
        // The newest older entry of each stream carries its state into the kept window.
        let mut base: BTreeMap<&str, u64> = BTreeMap::new();
        for entry in &history {
            for stream in entry.changes.keys() {
                base.insert(stream, entry.seq);
            }
        }
        let needed: std::collections::BTreeSet<u64> = base.into_values().collect();
        // Versions before the cutoff cannot be rebuilt once entries go: say so first.
        if floor < cutoff {
            let bytes = serde_json::to_vec(&serde_json::json!({ "restorable_from": cutoff }))
                .map_err(|e| LakeError::Invalid(e.to_string()))?;
            self.storage
                .put(
                    &layout::history_floor_key(&self.connection),
                    Bytes::from(bytes),
                )
                .await?;
        }
        let mut removed = 0;
        // Oldest first: a prune cut short leaves a shorter, still consistent history.
        for entry in &history {
            if !needed.contains(&entry.seq) {
                self.storage
                    .delete(&layout::history_key(&self.connection, entry.seq))
                    .await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The oldest version a rollback can restore (0 until the history is pruned).
    pub async fn restorable_from(&self) -> Result<u64, LakeError> {
        let key = layout::history_floor_key(&self.connection);
        let Some((bytes, _)) = self.storage.get(&key).await? else {
            return Ok(0);
        };
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["restorable_from"].as_u64())
            .ok_or_else(|| LakeError::Corrupt {
                resource: key,
                message: "expected {\"restorable_from\": N}".into(),
            })
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
    async fn pruning_keeps_every_version_of_the_window_restorable_and_names_the_floor() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(LocalStorage::new(dir.path()).unwrap());
        let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
        // `rare` changes once, early; `busy` at every other version.
        s.commit(change("rare", json!({"n": 0}))).await.unwrap();
        for n in 1..=20 {
            s.commit(change("busy", json!({"n": n}))).await.unwrap();
        }
        assert_eq!(s.current().seq, 21);
        let mut expected = BTreeMap::new();
        for v in 0..=21 {
            expected.insert(v, s.streams_at(v).await.unwrap());
        }
        assert_eq!(s.prune_history(5).await.unwrap(), 14);
        let left: Vec<u64> = s.history().await.unwrap().iter().map(|e| e.seq).collect();
        // The window (17..=21), and the newest older entry of each stream (1 and 16).
        assert_eq!(left, vec![1, 16, 17, 18, 19, 20, 21]);
        assert_eq!(s.restorable_from().await.unwrap(), 17);
        for v in 17..=21 {
            assert_eq!(s.streams_at(v).await.unwrap(), expected[&v], "version {v}");
        }
        assert_eq!(
            s.streams_at(21).await.unwrap()["rare"].cursor,
            Some(json!({"n": 0}))
        );
        let e = s.streams_at(10).await.unwrap_err().to_string();
        assert!(
            e.contains("version 10") && e.contains("state_history_keep") && e.contains("17"),
            "{e}"
        );
        // Pruning again with nothing new removes nothing; state itself is untouched.
        assert_eq!(s.prune_history(5).await.unwrap(), 0);
        let reopened = StateStore::open(storage, "c").await.unwrap();
        assert_eq!(reopened.current(), s.current());
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

    /// A local lake whose next conditional write to a key ending in `suffix` fails:
    /// after writing it (`lands`: the response was lost) or before.
    #[derive(Debug)]
    struct FailsOnce {
        inner: LocalStorage,
        suffix: &'static str,
        lands: bool,
        armed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Storage for FailsOnce {
        fn url(&self) -> String {
            self.inner.url()
        }
        async fn get(&self, key: &str) -> Result<Option<(Bytes, Version)>, LakeError> {
            self.inner.get(key).await
        }
        async fn put(&self, key: &str, bytes: Bytes) -> Result<Version, LakeError> {
            self.inner.put(key, bytes).await
        }
        async fn put_if(
            &self,
            key: &str,
            bytes: Bytes,
            condition: Precondition,
        ) -> Result<Version, LakeError> {
            use std::sync::atomic::Ordering;
            if !key.ends_with(self.suffix) || !self.armed.swap(false, Ordering::SeqCst) {
                return self.inner.put_if(key, bytes, condition).await;
            }
            if self.lands {
                self.inner.put_if(key, bytes, condition).await?;
            }
            Err(LakeError::io(
                key,
                std::io::Error::new(std::io::ErrorKind::TimedOut, "response lost"),
            ))
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
        async fn publish(&self, staged: &StagedObject) -> Result<(), LakeError> {
            self.inner.publish(staged).await
        }
        async fn discard(&self, staged: &StagedObject) -> Result<(), LakeError> {
            self.inner.discard(staged).await
        }
        async fn list_staged(&self, source: &str) -> Result<Vec<StagedObject>, LakeError> {
            self.inner.list_staged(source).await
        }
    }

    fn failing_once(dir: &std::path::Path, suffix: &'static str, lands: bool) -> Arc<dyn Storage> {
        Arc::new(FailsOnce {
            inner: LocalStorage::new(dir).unwrap(),
            suffix,
            lands,
            armed: true.into(),
        })
    }

    #[tokio::test]
    async fn a_commit_whose_response_was_lost_after_the_commit_point_is_reported_committed() {
        // The history entry (the commit point) or state.json was written, and then the
        // answer was lost: redoing the work from the older state would land rows twice.
        for suffix in ["history/00000000000000000001.json", "state.json"] {
            let dir = tempfile::tempdir().unwrap();
            let storage = failing_once(dir.path(), suffix, true);
            let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
            let entry = s.commit(change("x", json!(1))).await.unwrap();
            assert_eq!(entry.seq, 1, "{suffix}");
            assert_eq!(s.current().seq, 1, "{suffix}");
            assert_eq!(s.stream("x").cursor, Some(json!(1)), "{suffix}");
            let reopened = StateStore::open(storage, "c").await.unwrap();
            assert_eq!(reopened.current(), s.current(), "{suffix}");
        }
    }

    #[tokio::test]
    async fn a_commit_that_failed_before_the_commit_point_is_an_error_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let storage = failing_once(dir.path(), ".json", false);
        let mut s = StateStore::open(storage.clone(), "c").await.unwrap();
        let err = s.commit(change("x", json!(1))).await.unwrap_err();
        assert!(matches!(err, LakeError::Io { .. }), "{err}");
        assert_eq!(s.current().seq, 0);
        assert_eq!(s.stream("x").cursor, None);
        // The next attempt commits normally.
        s.commit(change("x", json!(1))).await.unwrap();
        assert_eq!(s.current().seq, 1);
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
