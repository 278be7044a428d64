//! The saved state of a stream: its format, versions, and the values it keeps.

use inlet_core::{
    SourceError,
    state::{self, SchemaHistory, TypedState},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::PostgresSource;

/// The format of [`StreamState`] written now. States without a `version` are version 1
/// (written before boundary sets) and load as they are; version 3 adds `landed` (states
/// without it landed the defaults before it: wide numerics as Decimal256, `time` as Time64);
/// version 4 adds `slot`, `lsn` and `snapshot_at` (`method = cdc`).
pub const STATE_VERSION: u32 = 4;

fn state_v1() -> u32 {
    1
}

/// The saved state of a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamState {
    /// State format ([`STATE_VERSION`]; absent in version 1).
    #[serde(default = "state_v1")]
    pub version: u32,
    /// `full`, `cursor`, `xmin` or `cdc`.
    pub method: String,
    /// The cursor column (`method = cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The cursor's saved value, exact: an integer, or text (`2026-01-02T03:04:05.123456Z`
    /// for timestamps, `2026-01-02` for dates, the exact decimal for numerics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// The 64-bit xid watermark (`method = xmin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmin: Option<i64>,
    /// The relations (the table, or its leaf partitions) the xmin watermark covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<i64>,
    /// The columns landed, as `[name, type]`, to detect schema changes.
    #[serde(default)]
    pub columns: Vec<(String, String)>,
    /// The Arrow type each column landed as, as `[name, type]` (version 3): a change of
    /// the landed type alone (a new default, a changed setting) is a schema change too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub landed: Vec<(String, String)>,
    /// Recorded schema changes, newest last (the last 50).
    #[serde(default, skip_serializing_if = "SchemaHistory::is_empty")]
    pub schema_changes: SchemaHistory<SchemaChange, 50>,
    /// The row versions at exactly `value` when it was saved (`method = cursor`): the
    /// next run's inclusive lower bound reads them again, and those already landed and
    /// unchanged are not landed twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boundary: Option<Boundary>,
    /// The replication slot on the standby (`method = cdc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// The position the next read starts from (`method = cdc`): every transaction that
    /// committed before it is in the lake, and the slot may be advanced to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// Where the slot began, when the stream's snapshot was taken (`method = cdc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_at: Option<String>,
}

impl TypedState for StreamState {
    const NAME: &'static str = "postgres stream state";
}

impl Default for StreamState {
    fn default() -> Self {
        StreamState {
            version: STATE_VERSION,
            method: String::new(),
            column: None,
            value: None,
            xmin: None,
            relations: Vec::new(),
            columns: Vec::new(),
            landed: Vec::new(),
            schema_changes: SchemaHistory::default(),
            boundary: None,
            slot: None,
            lsn: None,
            snapshot_at: None,
        }
    }
}

/// The row versions found at the saved cursor value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boundary {
    /// How many rows were at the value (at most `max_boundary_rows + 1`).
    pub rows: u64,
    /// More than `max_boundary_rows` rows were at the value: no hashes are kept, and
    /// those rows land again on each run until a larger cursor value arrives.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub overflow: bool,
    /// Their 64-bit version hashes ([`cursor::row_hash`]), sorted, 8 bytes each,
    /// base64 ([`cursor::encode_hashes`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hashes: String,
}

/// A schema change seen between two runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaChange {
    /// When it was seen (UTC).
    pub at: String,
    /// What changed.
    pub changes: Vec<String>,
}

impl PostgresSource {
    pub(crate) fn parse_state(
        stream: &str,
        state: Option<&Value>,
    ) -> Result<Option<StreamState>, SourceError> {
        state.map(|v| state::decode(stream, v)).transpose()
    }
}

/// A saved cursor value as SQL text.
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use crate::cursor;

    #[test]
    fn a_boundary_of_100000_rows_keeps_about_a_megabyte_of_state() {
        // Distinct pseudo-random hashes, like hashtextextended's.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut hashes: Vec<i64> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as i64
            })
            .collect();
        let state = StreamState {
            method: "cursor".into(),
            column: Some("updated_at".into()),
            value: Some(Value::from("2026-01-01T00:00:00.000000Z")),
            boundary: Some(Boundary {
                rows: 100_000,
                overflow: false,
                hashes: cursor::encode_hashes(&mut hashes),
            }),
            ..Default::default()
        };
        let bytes = serde_json::to_vec(&state).unwrap().len();
        eprintln!("state of a 100,000-row boundary: {bytes} bytes");
        assert!((1_066_668..1_070_000).contains(&bytes), "{bytes}");
    }
}
