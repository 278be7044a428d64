//! How a stream's state follows its read: a pure function of the stored state and an
//! event, with no I/O, so that every transition is tested here.
//!
//! A read of one partition without `state_after` keeps no progress: each checkpoint is
//! the stream's cursor. A partitioned read first records its plan (so that a crash
//! resumes the same plan), then each partition's checkpoints and completion, and when
//! the last partition is done the cursor becomes the plan's `state_after` and the
//! progress is dropped.

use inlet_core::{Partition, ReadPlan, SyncMode};
use inlet_lake::{PartitionProgress, StreamState};
use serde_json::Value;

/// How the stream's state follows a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One partition and no `state_after`: its checkpoints are the stream's cursor.
    Single,
    /// Several partitions, or a `state_after`: progress is kept in the state until every
    /// partition is done, and then the cursor becomes `state_after`.
    Partitioned,
}

impl Shape {
    /// The shape of `plan`. A plan of several partitions MUST say the state after them.
    pub(crate) fn of(plan: &ReadPlan) -> Result<Shape, ProgressError> {
        match (plan.partitions.len() > 1, plan.state_after.is_some()) {
            (false, false) => Ok(Shape::Single),
            (_, true) => Ok(Shape::Partitioned),
            (true, false) => Err(ProgressError::NoStateAfter),
        }
    }
}

/// Why a transition is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProgressError {
    /// The plan has several partitions and no state to move to after them.
    #[error("the source planned several partitions without `state_after` (a connector bug)")]
    NoStateAfter,
    /// A partitioned read's progress is no longer in the stored state.
    #[error("partition progress vanished during the run (was the state reset meanwhile?)")]
    Vanished,
}

/// What happened to a stream's read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event<'a> {
    /// A new plan was made for `mode` (not one resumed from the stored state).
    Planned {
        /// The plan.
        plan: &'a ReadPlan,
        /// The mode it was made for.
        mode: SyncMode,
    },
    /// A partition reached a checkpoint whose rows are about to land (`None`: no new
    /// checkpoint since the last commit).
    Checkpoint {
        /// The partition's id.
        partition: &'a str,
        /// Its resume point.
        cursor: Option<Value>,
    },
    /// A partition was read to its end; `cursor` is its last checkpoint.
    Done {
        /// The partition's id.
        partition: &'a str,
        /// Its last resume point.
        cursor: Option<Value>,
    },
}

/// The result of an event: the stream's next state, and whether it must be committed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Transition {
    /// The stream's state after the event.
    pub(crate) state: StreamState,
    /// Whether it differs from the stored state: a commit is needed even without files.
    pub(crate) changed: bool,
}

/// The stored plan to resume: the stream's read in flight, when it was made for `mode`.
pub(crate) fn resumable(stored: &StreamState, mode: SyncMode) -> Option<&ReadPlan> {
    stored
        .partitions
        .as_ref()
        .filter(|p| p.mode == mode)
        .map(|p| &p.plan)
}

/// The progress a read of `shape` follows once started from `state`.
pub(crate) fn in_flight(state: &StreamState, shape: Shape) -> Option<&PartitionProgress> {
    match shape {
        Shape::Single => None,
        Shape::Partitioned => state.partitions.as_ref(),
    }
}

/// The partitions still to read, with their index in the plan and where each resumes:
/// its last checkpoint under `progress`, or `start` when no progress is kept.
pub(crate) fn remaining(
    plan: &ReadPlan,
    progress: Option<&PartitionProgress>,
    start: &Option<Value>,
) -> Vec<(usize, Partition, Option<Value>)> {
    plan.partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| progress.is_none_or(|pr| !pr.done.contains(&p.id)))
        .map(|(i, p)| {
            let resume = match progress {
                Some(pr) => pr.checkpoints.get(&p.id).cloned(),
                None => start.clone(),
            };
            (i, p.clone(), resume)
        })
        .collect()
}

/// The stream's state after `event`, given the stored state and the read's shape.
pub(crate) fn transition(
    stored: &StreamState,
    shape: Shape,
    event: Event<'_>,
) -> Result<Transition, ProgressError> {
    let state = match (shape, event) {
        // Nothing to record: the first checkpoint moves the cursor.
        (Shape::Single, Event::Planned { .. }) => stored.clone(),
        (Shape::Single, Event::Checkpoint { cursor, .. } | Event::Done { cursor, .. }) => {
            StreamState {
                cursor: cursor.or(stored.cursor.clone()),
                partitions: None,
            }
        }
        // Record the plan before reading so that a crash resumes this plan.
        (Shape::Partitioned, Event::Planned { plan, mode }) => StreamState {
            cursor: stored.cursor.clone(),
            partitions: Some(PartitionProgress {
                plan: plan.clone(),
                mode,
                done: Default::default(),
                checkpoints: Default::default(),
            }),
        },
        (Shape::Partitioned, event) => {
            let mut progress = stored.partitions.clone().ok_or(ProgressError::Vanished)?;
            match event {
                Event::Done { partition, .. } => {
                    progress.done.insert(partition.to_string());
                    progress.checkpoints.remove(partition);
                }
                Event::Checkpoint {
                    partition,
                    cursor: Some(c),
                } => {
                    progress.checkpoints.insert(partition.to_string(), c);
                }
                Event::Checkpoint { cursor: None, .. } | Event::Planned { .. } => {}
            }
            if progress.done.len() >= progress.plan.partitions.len() {
                StreamState {
                    cursor: progress.plan.state_after.clone(),
                    partitions: None,
                }
            } else {
                StreamState {
                    cursor: stored.cursor.clone(),
                    partitions: Some(progress),
                }
            }
        }
    };
    Ok(Transition {
        changed: state != *stored,
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(ids: &[&str], state_after: Option<Value>) -> ReadPlan {
        ReadPlan {
            partitions: ids
                .iter()
                .map(|id| Partition {
                    id: id.to_string(),
                    spec: Value::Null,
                })
                .collect(),
            state_after,
            warnings: vec![],
            gauges: Default::default(),
        }
    }

    fn at(cursor: Option<Value>) -> StreamState {
        StreamState {
            cursor,
            partitions: None,
        }
    }

    /// The state right after planning `p` from a stream at `cursor`.
    fn planned(p: &ReadPlan, cursor: Option<Value>) -> StreamState {
        transition(
            &at(cursor),
            Shape::Partitioned,
            Event::Planned {
                plan: p,
                mode: SyncMode::Incremental,
            },
        )
        .unwrap()
        .state
    }

    #[test]
    fn the_shape_follows_the_plan_and_several_partitions_need_state_after() {
        assert_eq!(Shape::of(&plan(&["all"], None)), Ok(Shape::Single));
        assert_eq!(
            Shape::of(&plan(&["all"], Some(json!(1)))),
            Ok(Shape::Partitioned)
        );
        assert_eq!(
            Shape::of(&plan(&["a", "b"], Some(json!(1)))),
            Ok(Shape::Partitioned)
        );
        assert_eq!(
            Shape::of(&plan(&["a", "b"], None)),
            Err(ProgressError::NoStateAfter)
        );
    }

    #[test]
    fn a_single_read_records_no_plan() {
        let stored = at(Some(json!(1)));
        let p = plan(&["all"], None);
        let t = transition(
            &stored,
            Shape::Single,
            Event::Planned {
                plan: &p,
                mode: SyncMode::Incremental,
            },
        )
        .unwrap();
        assert_eq!(t.state, stored);
        assert!(!t.changed);
    }

    #[test]
    fn a_single_reads_checkpoints_and_end_move_the_cursor() {
        let stored = at(Some(json!(1)));
        for event in [
            Event::Checkpoint {
                partition: "all",
                cursor: Some(json!(2)),
            },
            Event::Done {
                partition: "all",
                cursor: Some(json!(2)),
            },
        ] {
            let t = transition(&stored, Shape::Single, event).unwrap();
            assert_eq!(t.state, at(Some(json!(2))));
            assert!(t.changed);
        }
    }

    #[test]
    fn a_single_read_without_a_new_checkpoint_keeps_the_cursor() {
        let t = transition(
            &at(Some(json!(1))),
            Shape::Single,
            Event::Done {
                partition: "all",
                cursor: None,
            },
        )
        .unwrap();
        assert_eq!(t.state, at(Some(json!(1))));
        assert!(!t.changed);
    }

    #[test]
    fn a_single_read_drops_the_progress_of_a_plan_for_another_mode() {
        let mut stored = planned(&plan(&["a", "b"], Some(json!(9))), Some(json!(1)));
        stored.partitions.as_mut().unwrap().mode = SyncMode::FullRefresh;
        assert_eq!(resumable(&stored, SyncMode::Incremental), None);
        let t = transition(
            &stored,
            Shape::Single,
            Event::Checkpoint {
                partition: "all",
                cursor: None,
            },
        )
        .unwrap();
        assert_eq!(t.state, at(Some(json!(1))));
        assert!(t.changed);
    }

    #[test]
    fn a_partitioned_plan_is_recorded_before_reading_and_resumed_for_its_mode() {
        let p = plan(&["a", "b"], Some(json!(9)));
        let state = planned(&p, Some(json!(1)));
        assert_eq!(state.cursor, Some(json!(1)), "the cursor waits for the end");
        let progress = state.partitions.as_ref().unwrap();
        assert_eq!(progress.plan, p);
        assert_eq!(progress.mode, SyncMode::Incremental);
        assert!(progress.done.is_empty() && progress.checkpoints.is_empty());
        assert_eq!(resumable(&state, SyncMode::Incremental), Some(&p));
        assert_eq!(resumable(&state, SyncMode::FullRefresh), None);
        assert_eq!(in_flight(&state, Shape::Partitioned), Some(progress));
        assert_eq!(in_flight(&state, Shape::Single), None);
    }

    #[test]
    fn a_partition_checkpoint_is_kept_for_that_partition_only() {
        let p = plan(&["a", "b"], Some(json!(9)));
        let stored = planned(&p, Some(json!(1)));
        let t = transition(
            &stored,
            Shape::Partitioned,
            Event::Checkpoint {
                partition: "a",
                cursor: Some(json!({"a": 5})),
            },
        )
        .unwrap();
        assert!(t.changed);
        assert_eq!(t.state.cursor, Some(json!(1)));
        let progress = t.state.partitions.as_ref().unwrap();
        assert_eq!(progress.checkpoints["a"], json!({"a": 5}));
        assert!(!progress.checkpoints.contains_key("b") && progress.done.is_empty());
        // No new checkpoint: nothing changes.
        let again = transition(
            &t.state,
            Shape::Partitioned,
            Event::Checkpoint {
                partition: "a",
                cursor: None,
            },
        )
        .unwrap();
        assert_eq!(again.state, t.state);
        assert!(!again.changed);
    }

    #[test]
    fn a_partition_done_forgets_its_checkpoint_and_the_last_one_moves_to_state_after() {
        let p = plan(&["a", "b"], Some(json!(9)));
        let mut state = planned(&p, Some(json!(1)));
        state = transition(
            &state,
            Shape::Partitioned,
            Event::Checkpoint {
                partition: "a",
                cursor: Some(json!(5)),
            },
        )
        .unwrap()
        .state;
        let t = transition(
            &state,
            Shape::Partitioned,
            Event::Done {
                partition: "a",
                cursor: Some(json!(6)),
            },
        )
        .unwrap();
        assert!(t.changed);
        let progress = t.state.partitions.as_ref().unwrap();
        assert!(progress.done.contains("a") && progress.checkpoints.is_empty());
        assert_eq!(t.state.cursor, Some(json!(1)));
        let work = remaining(&p, Some(progress), &Some(json!(1)));
        assert_eq!(work.len(), 1);
        assert_eq!(
            (work[0].0, work[0].1.id.as_str(), &work[0].2),
            (1, "b", &None)
        );
        let end = transition(
            &t.state,
            Shape::Partitioned,
            Event::Done {
                partition: "b",
                cursor: None,
            },
        )
        .unwrap();
        assert_eq!(
            end.state,
            at(Some(json!(9))),
            "all done: the plan's state_after"
        );
        assert!(end.changed);
    }

    #[test]
    fn a_single_partition_with_state_after_ends_at_state_after() {
        let p = plan(&["all"], Some(json!("after")));
        let state = planned(&p, None);
        let t = transition(
            &state,
            Shape::Partitioned,
            Event::Done {
                partition: "all",
                cursor: Some(json!("own")),
            },
        )
        .unwrap();
        assert_eq!(t.state, at(Some(json!("after"))));
    }

    #[test]
    fn progress_that_vanished_during_the_run_is_an_error() {
        for event in [
            Event::Checkpoint {
                partition: "a",
                cursor: Some(json!(1)),
            },
            Event::Done {
                partition: "a",
                cursor: None,
            },
        ] {
            assert_eq!(
                transition(&at(None), Shape::Partitioned, event),
                Err(ProgressError::Vanished)
            );
        }
    }

    #[test]
    fn without_progress_every_partition_starts_at_the_streams_state() {
        let p = plan(&["all"], None);
        let work = remaining(&p, None, &Some(json!(3)));
        assert_eq!(work.len(), 1);
        assert_eq!(work[0].2, Some(json!(3)));
    }

    #[test]
    fn with_progress_partitions_resume_at_their_checkpoint() {
        let p = plan(&["a", "b", "c"], Some(json!(9)));
        let mut state = planned(&p, None);
        let progress = state.partitions.as_mut().unwrap();
        progress.done.insert("a".into());
        progress.checkpoints.insert("b".into(), json!(7));
        let work = remaining(&p, state.partitions.as_ref(), &Some(json!(0)));
        let got: Vec<(usize, &str, Option<Value>)> = work
            .iter()
            .map(|(i, p, r)| (*i, p.id.as_str(), r.clone()))
            .collect();
        assert_eq!(got, vec![(1, "b", Some(json!(7))), (2, "c", None)]);
    }
}
