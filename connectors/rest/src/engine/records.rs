//! Records: a page fetched and its records selected, decoded, filtered by cursor and
//! landed as batches (page -> records -> batches).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use inlet_core::{ReadEvent, SourceError};
use inlet_http::Response;
use serde_json::{Value, value::RawValue};
use url::Url;

use super::{Failure, Reader, Vars, pagination::next_token};
use crate::{
    json::{JsonError, SchemaChange},
    manifest::StreamDef,
    state::{Cursor, PageToken, Progress, cursor_at, text_at},
};

/// One fetched and decoded page.
pub(super) struct Page {
    pub(super) response: Response,
    /// Byte range of the records in the body.
    pub(super) records: std::ops::Range<usize>,
    pub(super) batch: Option<RecordBatch>,
    pub(super) hash: u64,
}

impl Reader {
    /// Fetch and decode one page; a malformed page is asked for once more.
    pub(super) async fn fetch(
        &mut self,
        def: &StreamDef,
        url: &Url,
        page_no: u64,
        decode: bool,
    ) -> Result<Page, Failure> {
        let shown = self.inner.client.redact_url(url);
        let mut last = String::new();
        for attempt in 0..2 {
            let response = self.inner.client.get(url.clone()).await?;
            let selected = select(&response.body, def.record_selector.as_deref());
            let result = match selected {
                Ok(range) => {
                    let bytes = &response.body[range.clone()];
                    let hash = page_signature(bytes);
                    if decode {
                        match self.batcher.decode(bytes) {
                            Ok((batch, change)) => {
                                if let Some(change) = change {
                                    self.record_change(change, &shown);
                                }
                                Ok(Page {
                                    response,
                                    records: range,
                                    batch,
                                    hash,
                                })
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        match serde_json::from_slice::<&RawValue>(bytes) {
                            Ok(_) => Ok(Page {
                                response,
                                records: range,
                                batch: None,
                                hash,
                            }),
                            Err(e) => Err(JsonError::Malformed(e.to_string())),
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(page) => return Ok(page),
                Err(JsonError::Malformed(m)) if attempt == 0 => {
                    tracing::warn!(stream = %self.stream, url = %shown, page = page_no, error = %m, "malformed page; asking for it again");
                    last = m;
                }
                Err(JsonError::Malformed(m)) => last = m,
                Err(JsonError::Conflict(m)) => {
                    return Err(SourceError::data(
                        format!("stream `{}` page {page_no} ({shown})", self.stream),
                        m,
                    )
                    .into());
                }
            }
        }
        Err(SourceError::Other {
            message: format!(
                "stream `{}` page {page_no} ({shown}): malformed JSON twice in a row: {last}",
                self.stream
            ),
            transient: true,
        }
        .into())
    }

    fn record_change(&mut self, change: SchemaChange, shown: &str) {
        self.schema_json = None;
        let had_schema = self
            .state
            .schema
            .as_ref()
            .is_some_and(|s| !s.fields().is_empty());
        self.state.schema = Some(self.batcher.schema().as_ref().clone());
        if !had_schema {
            // The saved schema holds them; say so once, as later changes do in `untyped`.
            if !change.untyped.is_empty() {
                tracing::info!(stream = %self.stream, untyped = ?change.untyped, "fields with no type yet (only null, {{}} or []) are not in the Parquet files until a value arrives");
            }
            return;
        }
        tracing::info!(stream = %self.stream, added = ?change.added, widened = ?change.widened, untyped = ?change.untyped, "the stream's schema changed");
        self.state.schema_changes.record(serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "url": shown,
            "added": change.added,
            "widened": change.widened.iter().map(|(p, a, b)| serde_json::json!({"field": p, "from": a, "to": b})).collect::<Vec<_>>(),
            "untyped": change.untyped,
        }));
    }

    /// Walk every page of this stream's endpoint from `p.next`, emitting a batch and a
    /// checkpoint per page. Returns when the last page is read.
    pub(super) async fn walk(
        &mut self,
        p: &mut Progress,
        vars: &Vars,
        extra: &[(String, String)],
    ) -> Result<(), Failure> {
        let def = self.def.clone();
        let pagination = self.inner.manifest.pagination_of(&def).clone();
        let mut previous: Option<(PageToken, u64)> = None;
        loop {
            let url = self.page_url(&def, vars, p.lower.as_ref(), &p.next)?;
            let page_no = p.pages + 1;
            let page = self.fetch(&def, &url, page_no, true).await?;
            inlet_core::producer::panic_point("rest-page");
            p.pages = page_no;
            let n = page.batch.as_ref().map_or(0, RecordBatch::num_rows);
            let next = next_token(&pagination, &page, n, &p.next, |field| {
                let batch = page.batch.as_ref()?;
                let col = column(batch, field)?;
                text_at(&col, batch.num_rows().checked_sub(1)?)
            })?
            .map(|t| self.scrub(t));
            if n > 0
                && let Some((prev_token, prev_hash)) = &previous
                && (*prev_hash == page.hash || next.as_ref() == Some(prev_token))
            {
                return Err(SourceError::data(
                    format!("stream `{}` page {page_no} ({})", self.stream, self.inner.client.redact_url(&url)),
                    "this page repeats the previous one: the pagination does not advance. The API's pagination may have changed; check `pagination` in the manifest",
                )
                .into());
            }
            previous = Some((p.next.clone(), page.hash));
            if let Some(batch) = page.batch {
                let batch = self.landable(batch, p, &url, page_no)?;
                let batch = add_columns(batch, extra)?;
                // Parquet cannot hold fields with no type yet (json.rs, landing rules).
                let batch = crate::json::landable(batch).map_err(|e| {
                    SourceError::data(
                        format!("stream `{}` page {page_no}", self.stream),
                        e.to_string(),
                    )
                })?;
                if batch.num_rows() > 0 {
                    self.send(ReadEvent::Batch(batch)).await?;
                }
            }
            match next {
                Some(token) => {
                    p.next = token;
                    self.state.current = Some(p.clone());
                    self.checkpoint().await?;
                }
                None => return Ok(()),
            }
        }
    }

    /// Drop records already landed (at or before the saved cursor), track the largest
    /// cursor of the pass.
    fn landable(
        &self,
        batch: RecordBatch,
        p: &mut Progress,
        url: &Url,
        page_no: u64,
    ) -> Result<RecordBatch, Failure> {
        let Some(inc) = &self.def.incremental else {
            return Ok(batch);
        };
        let Some(cursors) = column(&batch, &inc.cursor_field) else {
            return Err(SourceError::data(
                format!("stream `{}` page {page_no} ({})", self.stream, self.inner.client.redact_url(url)),
                format!(
                    "the records have no cursor field `{}`: the API may have renamed it; update incremental.cursor_field in the manifest",
                    inc.cursor_field
                ),
            )
            .into());
        };
        let keys: Vec<ArrayRef> = self
            .def
            .primary_key
            .iter()
            .filter_map(|k| column(&batch, k))
            .collect();
        let key_of = |i: usize| -> String {
            keys.iter()
                .map(|k| text_at(k, i).unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        let ty = cursors.data_type().clone();
        // Without a lookback, an inclusive `since` returns the records at the saved
        // cursor again: skip those already landed.
        let saved = if inc.lookback.is_none() && self.incremental {
            self.state.slices.get(&p.slice).and_then(|s| {
                let c = Cursor::from_json(s.cursor.as_ref()?, Some(&ty))?;
                Some((
                    c,
                    s.keys_at_cursor
                        .iter()
                        .cloned()
                        .collect::<HashSet<String>>(),
                ))
            })
        } else {
            None
        };
        let mut max = p
            .max_cursor
            .as_ref()
            .and_then(|m| Cursor::from_json(m, Some(&ty)));
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let c = cursor_at(&cursors, i);
            let landed = match (&saved, &c) {
                (Some((s, seen)), Some(c)) => {
                    c < s || (c == s && (keys.is_empty() || seen.contains(&key_of(i))))
                }
                _ => false,
            };
            keep.push(!landed);
            if landed {
                continue;
            }
            if let Some(c) = c {
                match max.as_ref().map(|m| c.cmp(m)) {
                    None | Some(std::cmp::Ordering::Greater) => {
                        max = Some(c);
                        p.keys_at_max = if keys.is_empty() {
                            vec![]
                        } else {
                            vec![key_of(i)]
                        };
                    }
                    Some(std::cmp::Ordering::Equal) => {
                        if !keys.is_empty() {
                            p.keys_at_max.push(key_of(i));
                        }
                    }
                    Some(std::cmp::Ordering::Less) => {}
                }
            }
        }
        p.max_cursor = max.map(|m| m.to_json());
        if keep.iter().all(|k| *k) {
            return Ok(batch);
        }
        let mask = BooleanArray::from(keep);
        arrow_select::filter::filter_record_batch(&batch, &mask)
            .map_err(|e| SourceError::other(format!("stream `{}`: {e}", self.stream)).into())
    }
}

/// A cheap signature of a page's records (length, head and tail), to notice a page
/// that repeats the previous one without hashing every byte.
fn page_signature(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.len().hash(&mut h);
    bytes[..bytes.len().min(4096)].hash(&mut h);
    bytes[bytes.len().saturating_sub(4096)..].hash(&mut h);
    h.finish()
}

/// The byte range of the records (at the dotted `path`) in `body`.
fn select(body: &[u8], path: Option<&str>) -> Result<std::ops::Range<usize>, JsonError> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(0..body.len());
    };
    let mut current: &[u8] = body;
    for segment in path.split('.') {
        let map: HashMap<Cow<'_, str>, &RawValue> =
            serde_json::from_slice(current).map_err(|e| JsonError::Malformed(e.to_string()))?;
        let raw = map.get(segment).ok_or_else(|| {
            JsonError::Malformed(format!("the body has no `{path}` (record_selector)"))
        })?;
        current = raw.get().as_bytes();
    }
    let start = current.as_ptr() as usize - body.as_ptr() as usize;
    Ok(start..start + current.len())
}

/// The value at a dotted path of the body.
pub(super) fn body_value(body: &[u8], path: &str) -> Option<Value> {
    let range = select(body, Some(path)).ok()?;
    serde_json::from_slice(&body[range]).ok()
}

pub(super) fn dotted<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

pub(super) fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A column by dotted path (struct children).
pub(super) fn column(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    let mut parts = path.split('.');
    let mut col = batch.column_by_name(parts.next()?)?.clone();
    for p in parts {
        let s = col.as_any().downcast_ref::<arrow_array::StructArray>()?;
        col = s.column_by_name(p)?.clone();
    }
    Some(col)
}

/// Add constant text columns (the slice, parent fields) unless records have them.
fn add_columns(batch: RecordBatch, extra: &[(String, String)]) -> Result<RecordBatch, Failure> {
    if extra.is_empty() {
        return Ok(batch);
    }
    let schema = batch.schema();
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns = batch.columns().to_vec();
    for (name, value) in extra {
        if schema.field_with_name(name).is_ok() {
            continue;
        }
        fields.push(Arc::new(Field::new(name, DataType::Utf8, true)));
        columns.push(Arc::new(StringArray::from(vec![
            value.as_str();
            batch.num_rows()
        ])));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SourceError::other(e).into())
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn selectors() {
        let body =
            br#"{"object":"list","url":"/v1/charges","has_more":true,"data":[{"id":"ch_1"}]}"#;
        let r = select(body, Some("data")).unwrap();
        assert_eq!(&body[r], br#"[{"id":"ch_1"}]"#);
        assert_eq!(body_value(body, "has_more"), Some(Value::Bool(true)));
        assert!(select(b"{\"data\": [", Some("data")).is_err());
    }
}
