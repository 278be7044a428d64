//! The Hacker News item: JSON in, typed columns out. No host calls here, so the same code
//! runs natively (the benchmark compares the two).

use inlet_pdk::{BatchBuilder, ColumnType, Field, PluginError, field};
use serde::Deserialize;

/// An item of `/v0/item/<id>.json`.
#[derive(Debug, Deserialize)]
pub struct Item {
    /// Unique, increasing.
    pub id: i64,
    /// story, comment, job, poll, pollopt.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Author.
    pub by: Option<String>,
    /// Unix seconds.
    pub time: Option<i64>,
    /// Story title.
    pub title: Option<String>,
    /// Story URL.
    pub url: Option<String>,
    /// Comment or story text (HTML).
    pub text: Option<String>,
    /// Votes.
    pub score: Option<i64>,
    /// Comment count.
    pub descendants: Option<i64>,
    /// Parent item of a comment.
    pub parent: Option<i64>,
    /// Direct replies.
    pub kids: Option<Vec<i64>>,
    /// Whether deleted.
    pub deleted: Option<bool>,
    /// Whether dead.
    pub dead: Option<bool>,
}

/// The columns of the `items` stream.
pub fn item_fields() -> Vec<Field> {
    vec![
        field("id", ColumnType::Int64, false),
        field("type", ColumnType::Utf8, true),
        field("by", ColumnType::Utf8, true),
        field("time", ColumnType::TimestampMicros, true),
        field("title", ColumnType::Utf8, true),
        field("url", ColumnType::Utf8, true),
        field("text", ColumnType::Utf8, true),
        field("score", ColumnType::Int64, true),
        field("descendants", ColumnType::Int64, true),
        field("parent", ColumnType::Int64, true),
        field("kids", ColumnType::Int64, true),
        field("deleted", ColumnType::Boolean, true),
        field("dead", ColumnType::Boolean, true),
    ]
}

/// The columns of the `top_stories` stream: the rank, then the item's.
pub fn top_fields() -> Vec<Field> {
    let mut f = vec![field("rank", ColumnType::Int64, false)];
    f.extend(item_fields());
    f
}

/// Parse an item body; `Ok(None)` for `null` (an id that does not exist).
pub fn parse(body: &[u8], id: i64) -> Result<Option<Item>, PluginError> {
    serde_json::from_slice::<Option<Item>>(body)
        .map_err(|e| PluginError::Data(format!("item {id}: {e}")))
}

/// Append an item as a row starting at column `first` (0 for `items`, 1 for
/// `top_stories`), without ending the row.
pub fn append(b: &mut BatchBuilder, first: usize, item: &Item) -> Result<(), PluginError> {
    let c = first;
    b.int64(c, item.id)?;
    if let Some(v) = &item.kind {
        b.utf8(c + 1, v.as_str())?;
    }
    if let Some(v) = &item.by {
        b.utf8(c + 2, v.as_str())?;
    }
    if let Some(v) = item.time {
        b.timestamp_micros(c + 3, v.saturating_mul(1_000_000))?;
    }
    if let Some(v) = &item.title {
        b.utf8(c + 4, v.as_str())?;
    }
    if let Some(v) = &item.url {
        b.utf8(c + 5, v.as_str())?;
    }
    if let Some(v) = &item.text {
        b.utf8(c + 6, v.as_str())?;
    }
    if let Some(v) = item.score {
        b.int64(c + 7, v)?;
    }
    if let Some(v) = item.descendants {
        b.int64(c + 8, v)?;
    }
    if let Some(v) = item.parent {
        b.int64(c + 9, v)?;
    }
    if let Some(v) = &item.kids {
        b.int64(c + 10, v.len() as i64)?;
    }
    if let Some(v) = item.deleted {
        b.boolean(c + 11, v)?;
    }
    if let Some(v) = item.dead {
        b.boolean(c + 12, v)?;
    }
    Ok(())
}
