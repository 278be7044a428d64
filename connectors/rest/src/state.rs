//! The state of a REST stream, and cursor values.

use std::collections::BTreeMap;

use arrow_array::{
    Array, ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray, TimestampMillisecondArray,
    TimestampNanosecondArray, TimestampSecondArray,
};
use arrow_schema::{DataType, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use inlet_core::state::{SchemaHistory, TypedState};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::CursorFormat;

/// The state of one stream (what `inlet state show` prints).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestState {
    /// State format version (1).
    #[serde(default = "one")]
    pub version: u32,
    /// Per slice (`for_each` value; `""` without one): the cursor reached by the last
    /// complete pass.
    #[serde(default)]
    pub slices: BTreeMap<String, SliceState>,
    /// The pass in progress, when a run stopped in the middle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Progress>,
    /// The schema landed so far (it only widens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
    /// The last schema changes: when, what was added, what widened.
    #[serde(default, skip_serializing_if = "SchemaHistory::is_empty")]
    pub schema_changes: SchemaHistory<Value, SCHEMA_CHANGES_KEPT>,
}

/// How many schema changes a stream's state remembers.
pub const SCHEMA_CHANGES_KEPT: usize = 20;

impl TypedState for RestState {
    const NAME: &'static str = "REST stream state";
}

fn one() -> u32 {
    1
}

/// The cursor of one slice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceState {
    /// Largest cursor value landed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Value>,
    /// Primary keys of the records at exactly that cursor (so an inclusive `since`
    /// does not land them twice).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_at_cursor: Vec<String>,
}

/// Where a pass stopped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Slices finished in this pass.
    #[serde(default)]
    pub done: Vec<String>,
    /// The slice being read.
    pub slice: String,
    /// The cursor bound this pass asks for (kept so a resumed pass asks the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<Value>,
    /// The next page of the slice (or of the current parent's children).
    pub next: PageToken,
    /// Largest cursor seen in this slice so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cursor: Option<Value>,
    /// Keys of the records at `max_cursor`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys_at_max: Vec<String>,
    /// For a child stream: the parent page being walked and the next parent record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentProgress>,
    /// Pages read in this slice (for messages).
    #[serde(default)]
    pub pages: u64,
}

/// A child stream's position among its parents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParentProgress {
    /// The parent page.
    pub page: PageToken,
    /// Index of the parent record whose children are being read.
    pub index: usize,
}

/// A page to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PageToken {
    /// The first page.
    #[default]
    Start,
    /// A full URL (Link header, next-URL in the body).
    Url(String),
    /// A cursor parameter value.
    Cursor(String),
    /// An offset.
    Offset(u64),
    /// A page number.
    Page(u64),
}

/// A cursor value, comparable within its kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cursor {
    /// An integer (ids, unix seconds).
    Int(i64),
    /// A point in time, microseconds since the epoch.
    Time(i64),
    /// Text, compared as text.
    Text(String),
}

impl Cursor {
    /// As stored in state.
    pub fn to_json(&self) -> Value {
        match self {
            Cursor::Int(i) => Value::from(*i),
            Cursor::Time(us) => Value::from(format_time(*us)),
            Cursor::Text(s) => Value::from(s.clone()),
        }
    }

    /// From state, in the kind of a column of type `data_type`.
    pub fn from_json(v: &Value, data_type: Option<&DataType>) -> Option<Cursor> {
        match (v, data_type) {
            (Value::Number(n), Some(DataType::Timestamp(unit, _))) => {
                n.as_i64().map(|x| Cursor::Time(to_micros(x, *unit)))
            }
            (Value::Number(n), _) => n.as_i64().map(Cursor::Int),
            (Value::String(s), Some(DataType::Utf8)) => Some(Cursor::Text(s.clone())),
            (Value::String(s), _) => Some(
                parse_time(s)
                    .map(Cursor::Time)
                    .unwrap_or_else(|| Cursor::Text(s.clone())),
            ),
            _ => None,
        }
    }

    /// This cursor minus `secs`, for a lookback.
    pub fn minus(&self, secs: i64, format: CursorFormat) -> Cursor {
        match self {
            Cursor::Time(us) => Cursor::Time(us - secs * 1_000_000),
            Cursor::Int(i) if format == CursorFormat::Unix => Cursor::Int(i - secs),
            other => other.clone(),
        }
    }

    /// As a request parameter.
    pub fn param(&self, format: CursorFormat) -> String {
        match (self, format) {
            (Cursor::Time(us), CursorFormat::Rfc3339) => {
                // Whole seconds, rounded down: an inclusive bound stays inclusive.
                format_time(us.div_euclid(1_000_000) * 1_000_000)
            }
            (Cursor::Time(us), CursorFormat::Unix) => us.div_euclid(1_000_000).to_string(),
            (Cursor::Int(i), _) => i.to_string(),
            (Cursor::Text(s), _) => s.clone(),
        }
    }
}

/// RFC 3339 text of a microsecond timestamp (`Z`, fractional part only when needed).
pub fn format_time(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

/// Microseconds of an RFC 3339 text.
pub fn parse_time(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

fn to_micros(v: i64, unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => v.saturating_mul(1_000_000),
        TimeUnit::Millisecond => v.saturating_mul(1_000),
        TimeUnit::Microsecond => v,
        TimeUnit::Nanosecond => v / 1_000,
    }
}

/// The cursor of row `i` of `array`, if the type is one a cursor can have.
pub fn cursor_at(array: &ArrayRef, i: usize) -> Option<Cursor> {
    if array.is_null(i) {
        return None;
    }
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(Cursor::Int(a.value(i)));
    }
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(Cursor::Text(a.value(i).to_string()));
    }
    if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
        return Some(Cursor::Time(a.value(i)));
    }
    if let Some(a) = any.downcast_ref::<TimestampSecondArray>() {
        return Some(Cursor::Time(to_micros(a.value(i), TimeUnit::Second)));
    }
    if let Some(a) = any.downcast_ref::<TimestampMillisecondArray>() {
        return Some(Cursor::Time(to_micros(a.value(i), TimeUnit::Millisecond)));
    }
    if let Some(a) = any.downcast_ref::<TimestampNanosecondArray>() {
        return Some(Cursor::Time(to_micros(a.value(i), TimeUnit::Nanosecond)));
    }
    None
}

/// Text of a key cell (primary keys, cursor pagination, parent fields).
pub fn text_at(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    match cursor_at(array, i)? {
        Cursor::Int(v) => Some(v.to_string()),
        Cursor::Text(s) => Some(s),
        Cursor::Time(us) => Some(format_time(us)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn cursors_round_trip_and_format_for_requests() {
        let t = Cursor::from_json(&Value::from("2026-11-20T10:00:00.5Z"), None).unwrap();
        assert_eq!(t.to_json(), Value::from("2026-11-20T10:00:00.500Z"));
        assert_eq!(t.param(CursorFormat::Rfc3339), "2026-11-20T10:00:00Z");
        assert_eq!(
            t.minus(300, CursorFormat::Rfc3339)
                .param(CursorFormat::Rfc3339),
            "2026-11-20T09:55:00Z"
        );
        let unix = Cursor::from_json(
            &Value::from(1_700_000_000),
            Some(&DataType::Timestamp(TimeUnit::Second, None)),
        )
        .unwrap();
        assert_eq!(unix.param(CursorFormat::Unix), "1700000000");
        assert_eq!(Cursor::Int(5).minus(2, CursorFormat::Unix), Cursor::Int(3));
        let token = serde_json::to_value(PageToken::Url("https://x/?page=2".into())).unwrap();
        assert_eq!(token["kind"], "url");
    }
}
