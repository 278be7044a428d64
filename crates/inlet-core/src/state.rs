//! A stream's state, typed: one decode of the JSON value the runtime keeps, and one
//! history of schema changes.
//!
//! The runtime stores a stream's state as opaque JSON (it is what `inlet state show`
//! prints). A connector reads it back as its own type with [`decode`] (or
//! [`decode_or_default`] when a missing state means "start from nothing"); a value that
//! does not fit says which stream and how to repair it, the same way for every
//! connector.

use std::ops::Deref;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::SourceError;

/// A connector's typed stream state.
///
/// Contract: the type MUST keep reading every state an earlier release wrote (new fields
/// get defaults; a `version` field says which format it is).
pub trait TypedState: DeserializeOwned {
    /// What the state is called in messages: `files state`, `postgres stream state`.
    const NAME: &'static str;
}

/// Decode `state`, the state of stream `stream`, as `T`.
pub fn decode<T: TypedState>(stream: &str, state: &Value) -> Result<T, SourceError> {
    T::deserialize(state).map_err(|e| {
        SourceError::state(
            stream,
            format!(
                "not a {}: {e} (fix it with `inlet state set` or `inlet state reset`)",
                T::NAME
            ),
        )
    })
}

/// [`decode`], with no state (or JSON `null`) read as `T::default()`.
pub fn decode_or_default<T: TypedState + Default>(
    stream: &str,
    state: Option<&Value>,
) -> Result<T, SourceError> {
    match state {
        None | Some(Value::Null) => Ok(T::default()),
        Some(v) => decode(stream, v),
    }
}

/// The schema changes a stream's state remembers, oldest first, at most `KEEP` of them
/// (older ones are dropped as new ones are recorded). `C` is the connector's description
/// of one change. Serialised as a plain JSON array, so states written as one read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SchemaHistory<C, const KEEP: usize> {
    changes: Vec<C>,
}

impl<C, const KEEP: usize> Default for SchemaHistory<C, KEEP> {
    fn default() -> Self {
        SchemaHistory {
            changes: Vec::new(),
        }
    }
}

impl<C, const KEEP: usize> SchemaHistory<C, KEEP> {
    /// Whether no change is recorded (for `skip_serializing_if`).
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Record `change` as the newest, dropping the oldest beyond `KEEP`.
    pub fn record(&mut self, change: C) {
        self.changes.push(change);
        let excess = self.changes.len().saturating_sub(KEEP);
        self.changes.drain(..excess);
    }
}

impl<C, const KEEP: usize> From<Vec<C>> for SchemaHistory<C, KEEP> {
    fn from(changes: Vec<C>) -> Self {
        SchemaHistory { changes }
    }
}

// The history is a list to its readers; it grows only through `record`.
impl<C, const KEEP: usize> Deref for SchemaHistory<C, KEEP> {
    type Target = Vec<C>;

    fn deref(&self) -> &Vec<C> {
        &self.changes
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[derive(Debug, Default, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[serde(default)]
        n: u64,
    }

    impl TypedState for Demo {
        const NAME: &'static str = "demo state";
    }

    #[test]
    fn a_state_that_does_not_fit_names_the_stream_and_the_repair() {
        let s: Demo = decode("s", &serde_json::json!({"n": 3})).unwrap();
        assert_eq!(s, Demo { n: 3 });
        assert_eq!(
            decode_or_default::<Demo>("s", None).unwrap(),
            Demo::default()
        );
        assert_eq!(
            decode_or_default::<Demo>("s", Some(&Value::Null)).unwrap(),
            Demo::default()
        );
        let e = decode::<Demo>("clicks", &serde_json::json!({"m": 1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "state of stream `clicks`: not a demo state: unknown field `m`, expected `n` \
             (fix it with `inlet state set` or `inlet state reset`)"
        );
    }

    #[test]
    fn a_schema_history_keeps_the_newest_and_reads_back_as_a_list() {
        let mut h = SchemaHistory::<u32, 3>::default();
        for i in 0..5 {
            h.record(i);
        }
        assert_eq!(h.as_slice(), &[2, 3, 4]);
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json, serde_json::json!([2, 3, 4]));
        // A longer list written under another limit still reads.
        let long: SchemaHistory<u32, 2> = serde_json::from_value(json).unwrap();
        assert_eq!(long.len(), 3);
    }
}
