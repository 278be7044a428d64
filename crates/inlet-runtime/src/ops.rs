//! State operations for engineers: show, reset, set, history, rollback. Every change is a
//! commit in the history, made while holding the connection's lease.

use std::collections::BTreeMap;

use inlet_core::Registry;
use inlet_lake::{
    ConnectionState, HistoryEntry, Lease, StateAction, StateStore, StreamState, state::Change,
};
use serde_json::Value;

use crate::{Project, RuntimeError, sync::Connection};

/// The streams a change would touch: their state before and after.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatePlan {
    /// The connection.
    pub connection: String,
    /// Per stream: (before, after); `None` means no state.
    pub changes: BTreeMap<String, (Option<StreamState>, Option<StreamState>)>,
    /// Whether it was applied (false for `--dry-run`).
    pub applied: bool,
    /// The version committed, when applied.
    pub seq: Option<u64>,
}

async fn open_store(conn: &Connection) -> Result<StateStore, RuntimeError> {
    StateStore::open(conn.storage.clone(), &conn.name)
        .await
        .map_err(|e| conn.lake_error(e))
}

/// The current state of a connection.
pub async fn show(project: &Project, connection: &str) -> Result<ConnectionState, RuntimeError> {
    let conn = Connection::open(project, connection).await?;
    Ok(open_store(&conn).await?.current().clone())
}

/// Every change of a connection's state, oldest first.
pub async fn history(
    project: &Project,
    connection: &str,
) -> Result<Vec<HistoryEntry>, RuntimeError> {
    let conn = Connection::open(project, connection).await?;
    open_store(&conn)
        .await?
        .history()
        .await
        .map_err(|e| conn.lake_error(e))
}

async fn apply(
    conn: &Connection,
    store: &mut StateStore,
    action: StateAction,
    changes: BTreeMap<String, Option<StreamState>>,
    dry_run: bool,
) -> Result<StatePlan, RuntimeError> {
    let mut plan = StatePlan {
        connection: conn.name.clone(),
        changes: BTreeMap::new(),
        applied: false,
        seq: None,
    };
    for (stream, after) in &changes {
        let before = store.current().streams.get(stream).cloned();
        if before != *after {
            plan.changes.insert(stream.clone(), (before, after.clone()));
        }
    }
    if dry_run || plan.changes.is_empty() {
        return Ok(plan);
    }
    let run_id = format!("manual-{}", uuid::Uuid::now_v7().simple());
    let lease = Lease::acquire(
        conn.storage.clone(),
        &conn.name,
        &run_id,
        chrono::Duration::seconds(60),
    )
    .await
    .map_err(|e| conn.lake_error(e))?;
    let result = async {
        store.reload().await?;
        store
            .commit(Change {
                action,
                actor: crate::sync::actor(),
                run_id: None,
                changes: plan
                    .changes
                    .iter()
                    .map(|(k, (_, a))| (k.clone(), a.clone()))
                    .collect(),
                pending: vec![],
            })
            .await
    }
    .await;
    lease.release().await.map_err(|e| conn.lake_error(e))?;
    let entry = result.map_err(|e| conn.lake_error(e))?;
    plan.applied = true;
    plan.seq = Some(entry.seq);
    Ok(plan)
}

/// Forget the state of one stream, or of every stream: the next sync re-extracts it.
pub async fn reset(
    project: &Project,
    connection: &str,
    stream: Option<&str>,
    dry_run: bool,
) -> Result<StatePlan, RuntimeError> {
    let conn = Connection::open(project, connection).await?;
    let mut store = open_store(&conn).await?;
    let streams: Vec<String> = match stream {
        Some(s) => {
            if !store.current().streams.contains_key(s) {
                let known: Vec<&str> = store.current().streams.keys().map(String::as_str).collect();
                return Err(RuntimeError::Config {
                    location: format!("connection `{connection}`"),
                    message: format!(
                        "stream `{s}` has no state; streams with state: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                });
            }
            vec![s.to_string()]
        }
        None => store.current().streams.keys().cloned().collect(),
    };
    let changes = streams.into_iter().map(|s| (s, None)).collect();
    apply(&conn, &mut store, StateAction::Reset, changes, dry_run).await
}

/// Set a stream's cursor by hand, after the connector validated it.
pub async fn set(
    project: &Project,
    registry: &Registry,
    connection: &str,
    stream: &str,
    cursor: Value,
    dry_run: bool,
) -> Result<StatePlan, RuntimeError> {
    let conn = Connection::open(project, connection).await?;
    let source = conn.build_source(project, registry).await?;
    let catalog = source
        .discover()
        .await
        .map_err(|e| conn.source_error(None, e))?;
    if catalog.stream(stream).is_none() {
        return Err(conn.source_error(
            None,
            inlet_core::SourceError::UnknownStream {
                stream: stream.to_string(),
                message: format!("the source has: {}", catalog.names().join(", ")),
            },
        ));
    }
    source
        .validate_state(stream, &cursor)
        .map_err(|e| conn.source_error(Some(stream), e))?;
    let mut store = open_store(&conn).await?;
    let changes = BTreeMap::from([(
        stream.to_string(),
        Some(StreamState {
            cursor: Some(cursor),
            partitions: None,
        }),
    )]);
    apply(&conn, &mut store, StateAction::Set, changes, dry_run).await
}

/// Restore the state as it was right after version `to` (all streams, or one).
pub async fn rollback(
    project: &Project,
    connection: &str,
    to: u64,
    stream: Option<&str>,
    dry_run: bool,
) -> Result<StatePlan, RuntimeError> {
    let conn = Connection::open(project, connection).await?;
    let mut store = open_store(&conn).await?;
    let then = store.streams_at(to).await.map_err(|e| conn.lake_error(e))?;
    let mut names: Vec<String> = store
        .current()
        .streams
        .keys()
        .chain(then.keys())
        .cloned()
        .collect();
    names.sort();
    names.dedup();
    if let Some(s) = stream {
        names.retain(|n| n == s);
    }
    let changes = names.into_iter().map(|n| {
        let v = then.get(&n).cloned();
        (n, v)
    });
    apply(
        &conn,
        &mut store,
        StateAction::Rollback { to },
        changes.collect(),
        dry_run,
    )
    .await
}
