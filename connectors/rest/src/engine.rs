//! Reading a stream: slices, parents, pages, records, checkpoints.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
};

use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use inlet_core::{EventStream, ReadEvent, ReadRequest, SourceError, SyncMode, producer::Emitter};
use inlet_http::{HttpClient, Response};
use serde_json::{Value, value::RawValue};
use url::Url;

use crate::{
    RestConfig,
    json::{JsonBatcher, JsonError, SchemaChange, SchemaPolicy},
    manifest::{self, Manifest, Pagination, StreamDef},
    state::{
        Cursor, PageToken, ParentProgress, Progress, RestState, SliceState, cursor_at, text_at,
    },
};

/// What a built source holds.
#[derive(Debug)]
pub(crate) struct Inner {
    pub manifest: Manifest,
    pub config: RestConfig,
    pub client: HttpClient,
    pub base_url: Url,
}

/// How many schema changes a stream's state remembers.
const SCHEMA_CHANGES_KEPT: usize = 20;

pub(crate) fn parse_state(stream: &str, resume: Option<Value>) -> Result<RestState, SourceError> {
    match resume {
        None | Some(Value::Null) => Ok(RestState::default()),
        Some(v) => serde_json::from_value(v).map_err(|e| {
            SourceError::state(
                stream,
                format!("not a REST stream state: {e} (fix it with `inlet state set` or `inlet state reset`)"),
            )
        }),
    }
}

enum Failure {
    /// The consumer went away: stop quietly.
    Stopped,
    Error(SourceError),
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Failure::Error(e)
    }
}

impl From<inlet_http::HttpError> for Failure {
    fn from(e: inlet_http::HttpError) -> Self {
        Failure::Error(e.into())
    }
}

pub(crate) fn read(
    inner: Arc<Inner>,
    request: &ReadRequest,
    resume: Option<Value>,
) -> Result<EventStream, SourceError> {
    let def = inner
        .manifest
        .stream(&request.stream)
        .ok_or_else(|| SourceError::UnknownStream {
            stream: request.stream.clone(),
            message: format!(
                "the {} manifest has: {}",
                inner.manifest.name,
                inner
                    .manifest
                    .streams
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?
        .clone();
    let mut state = parse_state(&request.stream, resume)?;
    // A pass that starts from nothing (a full refresh, or the first run after a reset of
    // the cursor only) keeps the landed schema and its history from the committed state:
    // the schema only widens, and its changes stay on record.
    if state.schema.is_none()
        && let Some(previous) = request.previous.clone()
        && let Ok(previous) = parse_state(&request.stream, Some(previous))
    {
        state.schema = previous.schema;
        state.schema_changes = previous.schema_changes;
    }
    let mut declared = Vec::new();
    for (col, ty) in &def.schema.columns {
        declared.push(
            crate::json::declared_type(col, ty).map_err(|e| {
                SourceError::config(format!("streams.{}.schema", request.stream), e)
            })?,
        );
    }
    let batcher = JsonBatcher::new(
        declared,
        state.schema.clone(),
        SchemaPolicy {
            nested: def.schema.nested,
            conflict: def.schema.type_conflict,
        },
    );
    let incremental = request.mode == SyncMode::Incremental && def.incremental.is_some();
    let (tx, guard, events) = inlet_core::producer::channel(request.stream.clone(), 2);
    let mut reader = Reader {
        inner,
        stream: request.stream.clone(),
        def,
        incremental,
        state,
        batcher,
        schema_json: None,
        tx,
    };
    // The guard ends the stream as the reader ended: a panic is an error naming the
    // stream, never a finished stream (which would land a partial read as complete).
    tokio::spawn(guard.run(async move {
        match reader.run().await {
            Ok(()) | Err(Failure::Stopped) => Ok(()),
            Err(Failure::Error(e)) => Err(e),
        }
    }));
    Ok(events)
}

struct Reader {
    inner: Arc<Inner>,
    stream: String,
    def: StreamDef,
    incremental: bool,
    state: RestState,
    batcher: JsonBatcher,
    /// The batcher's schema as JSON, refreshed when it changes.
    schema_json: Option<Value>,
    tx: Emitter,
}

/// Variables of a request template.
type Vars = BTreeMap<String, String>;

/// One fetched and decoded page.
struct Page {
    response: Response,
    /// Byte range of the records in the body.
    records: std::ops::Range<usize>,
    batch: Option<RecordBatch>,
    hash: u64,
}

impl Reader {
    async fn run(&mut self) -> Result<(), Failure> {
        let slices: Vec<String> = match &self.def.for_each {
            Some(fe) => self
                .inner
                .config
                .values
                .get(&fe.config)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            None => vec![String::new()],
        };
        let (mut done, mut resumed) = match self.state.current.take() {
            Some(p) => (p.done.clone(), Some(p)),
            None => (vec![], None),
        };
        for slice in slices {
            if done.contains(&slice) {
                continue;
            }
            let mut progress = match resumed.take() {
                Some(p) if p.slice == slice => p,
                _ => self.fresh_progress(&slice)?,
            };
            progress.done = done.clone();
            let mut vars = Vars::new();
            if let Some(fe) = &self.def.for_each {
                vars.insert(fe.var.clone(), slice.clone());
            }
            if self.def.parent.is_some() {
                self.read_children(&mut progress, &vars).await?;
            } else {
                self.walk(&mut progress, &vars, &[]).await?;
            }
            self.finish_slice(&progress);
            done.push(slice);
            self.state.current = Some(Progress {
                done: done.clone(),
                slice: String::new(),
                next: PageToken::Start,
                ..Progress::default()
            });
            self.checkpoint().await?;
        }
        self.state.current = None;
        self.checkpoint().await
    }

    /// The start of a pass over `slice`: the cursor bound from the state (minus the
    /// lookback), or the configured start.
    fn fresh_progress(&self, slice: &str) -> Result<Progress, SourceError> {
        let mut lower = None;
        if let Some(inc) = &self.def.incremental {
            let lookback = inc
                .lookback
                .as_deref()
                .map(manifest::parse_duration)
                .transpose()
                .map_err(|m| SourceError::config("incremental.lookback", m))?
                .unwrap_or(0);
            let saved = if self.incremental {
                self.state.slices.get(slice).and_then(|s| s.cursor.clone())
            } else {
                None
            };
            if let Some(saved) = saved {
                if let Some(c) = Cursor::from_json(&saved, self.cursor_type().as_ref()) {
                    lower = Some(c.minus(lookback, inc.format).to_json());
                }
            } else if let Some(start) = &inc.start {
                let text = self.render(start, &Vars::new())?;
                if !text.is_empty() {
                    lower = Some(Value::from(text));
                }
            }
        }
        Ok(Progress {
            slice: slice.to_string(),
            lower,
            ..Progress::default()
        })
    }

    fn cursor_type(&self) -> Option<DataType> {
        let inc = self.def.incremental.as_ref()?;
        self.batcher
            .schema()
            .field_with_name(&inc.cursor_field)
            .ok()
            .map(|f| f.data_type().clone())
    }

    fn finish_slice(&mut self, p: &Progress) {
        let Some(max) = &p.max_cursor else {
            return;
        };
        let entry = self.state.slices.entry(p.slice.clone()).or_default();
        let ty = self
            .def
            .incremental
            .as_ref()
            .and_then(|i| self.batcher.schema().field_with_name(&i.cursor_field).ok())
            .map(|f| f.data_type().clone());
        let old = entry
            .cursor
            .as_ref()
            .and_then(|c| Cursor::from_json(c, ty.as_ref()));
        let new = Cursor::from_json(max, ty.as_ref());
        match (old, new) {
            (Some(o), Some(n)) if o == n => {
                let mut keys: Vec<String> = entry.keys_at_cursor.clone();
                keys.extend(p.keys_at_max.iter().cloned());
                keys.sort();
                keys.dedup();
                entry.keys_at_cursor = keys;
            }
            (Some(o), Some(n)) if o > n => {}
            _ => {
                *entry = SliceState {
                    cursor: Some(max.clone()),
                    keys_at_cursor: p.keys_at_max.clone(),
                };
            }
        }
    }

    fn render(&self, template: &str, vars: &Vars) -> Result<String, SourceError> {
        let values = &self.inner.config.values;
        manifest::render(template, &|name| {
            if let Some(key) = name.strip_prefix("config.") {
                return match values.get(key)? {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
            }
            vars.get(name).cloned()
        })
        .map_err(|m| SourceError::config(format!("streams.{}", self.stream), m))
    }

    /// The URL of `token` for endpoint `def`.
    fn page_url(
        &self,
        def: &StreamDef,
        vars: &Vars,
        lower: Option<&Value>,
        token: &PageToken,
    ) -> Result<Url, SourceError> {
        if let PageToken::Url(u) = token {
            return Url::parse(u)
                .or_else(|_| self.inner.base_url.join(u))
                .map_err(|e| SourceError::data(&self.stream, format!("next page URL {u:?}: {e}")));
        }
        let path = self.render(&def.path, vars)?;
        let base = self.inner.base_url.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{path}")).map_err(|e| {
            SourceError::config(
                format!("streams.{}.path", self.stream),
                format!("{base}{path}: {e}"),
            )
        })?;
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, v) in &def.params {
            pairs.push((k.clone(), self.render(v, vars)?));
        }
        if let (Some(lower), Some(inc)) = (lower, &self.def.incremental) {
            let ty = self.cursor_type();
            if let Some(c) = Cursor::from_json(lower, ty.as_ref()) {
                pairs.push((inc.request_param.clone(), c.param(inc.format)));
            }
        }
        let mut set = |k: &str, v: String| {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k.to_string(), v));
        };
        match (self.inner.manifest.pagination_of(def), token) {
            (Pagination::Cursor { param, .. }, PageToken::Cursor(c)) => set(param, c.clone()),
            (
                Pagination::Offset {
                    offset_param,
                    limit_param,
                    limit,
                },
                t,
            ) => {
                let offset = if let PageToken::Offset(o) = t { *o } else { 0 };
                set(offset_param, offset.to_string());
                set(limit_param, limit.to_string());
            }
            (
                Pagination::PageNumber {
                    param,
                    start,
                    size_param,
                    size,
                },
                t,
            ) => {
                let page = if let PageToken::Page(p) = t {
                    *p
                } else {
                    *start
                };
                set(param, page.to_string());
                if let Some(sp) = size_param {
                    set(sp, size.to_string());
                }
            }
            _ => {}
        }
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        Ok(url)
    }

    /// Fetch and decode one page; a malformed page is asked for once more.
    async fn fetch(
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
        self.state.schema_changes.push(serde_json::json!({
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "url": shown,
            "added": change.added,
            "widened": change.widened.iter().map(|(p, a, b)| serde_json::json!({"field": p, "from": a, "to": b})).collect::<Vec<_>>(),
            "untyped": change.untyped,
        }));
        let n = self.state.schema_changes.len();
        if n > SCHEMA_CHANGES_KEPT {
            self.state.schema_changes.drain(..n - SCHEMA_CHANGES_KEPT);
        }
    }

    /// Walk every page of this stream's endpoint from `p.next`, emitting a batch and a
    /// checkpoint per page. Returns when the last page is read.
    async fn walk(
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

    /// A next-page URL as stored in state: resolved against the base URL, without an
    /// API key a server may have echoed into it.
    fn scrub(&self, token: PageToken) -> PageToken {
        match token {
            PageToken::Url(u) => match Url::parse(&u).or_else(|_| self.inner.base_url.join(&u)) {
                Ok(url) => PageToken::Url(self.inner.client.without_credentials(&url).to_string()),
                Err(_) => PageToken::Url(u),
            },
            other => other,
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

    /// Read the children of every parent record of the current slice.
    async fn read_children(&mut self, p: &mut Progress, vars: &Vars) -> Result<(), Failure> {
        let Some(parent) = self.def.parent.clone() else {
            return Ok(());
        };
        let parent_def = self
            .inner
            .manifest
            .stream(&parent.stream)
            .cloned()
            .ok_or_else(|| SourceError::config("parent.stream", "unknown stream"))?;
        let pagination = self.inner.manifest.pagination_of(&parent_def).clone();
        let mut pos = p.parent.clone().unwrap_or(ParentProgress {
            page: PageToken::Start,
            index: 0,
        });
        let mut parent_pages = 0u64;
        loop {
            // The parent's own params, and the child's cursor when asked to.
            let lower = if parent.incremental {
                p.lower.clone()
            } else {
                None
            };
            let url = self.parent_url(&parent_def, vars, lower.as_ref(), &pos.page)?;
            parent_pages += 1;
            let page = self.fetch(&parent_def, &url, parent_pages, false).await?;
            let records: Value = serde_json::from_slice(&page.response.body[page.records.clone()])
                .map_err(|e| SourceError::data(&self.stream, e))?;
            let records: Vec<Value> = match records {
                Value::Array(a) => a,
                Value::Null => vec![],
                other => vec![other],
            };
            let next = next_token(&pagination, &page, records.len(), &pos.page, |field| {
                records.last().and_then(|r| value_text(dotted(r, field)?))
            })?
            .map(|t| self.scrub(t));
            for (i, record) in records.iter().enumerate().skip(pos.index) {
                let mut child_vars = vars.clone();
                for (var, path) in &parent.fields {
                    let v = dotted(record, path).and_then(value_text).ok_or_else(|| {
                        SourceError::data(
                            format!(
                                "stream `{}` parent `{}` record {i}",
                                self.stream, parent.stream
                            ),
                            format!("has no field `{path}` (parent.fields.{var})"),
                        )
                    })?;
                    child_vars.insert(format!("parent.{var}"), v);
                }
                let mut extra: Vec<(String, String)> = Vec::new();
                if let Some(fe) = &self.def.for_each
                    && let Some(col) = &fe.column
                {
                    extra.push((col.clone(), vars.get(&fe.var).cloned().unwrap_or_default()));
                }
                for (col, var) in &parent.columns {
                    extra.push((
                        col.clone(),
                        child_vars
                            .get(&format!("parent.{var}"))
                            .cloned()
                            .unwrap_or_default(),
                    ));
                }
                p.parent = Some(ParentProgress {
                    page: pos.page.clone(),
                    index: i,
                });
                self.walk(p, &child_vars, &extra).await?;
                p.next = PageToken::Start;
                p.pages = 0;
                p.parent = Some(ParentProgress {
                    page: pos.page.clone(),
                    index: i + 1,
                });
                self.state.current = Some(p.clone());
                self.checkpoint().await?;
            }
            match next {
                Some(token) => {
                    pos = ParentProgress {
                        page: token,
                        index: 0,
                    }
                }
                None => return Ok(()),
            }
        }
    }

    fn parent_url(
        &self,
        parent_def: &StreamDef,
        vars: &Vars,
        lower: Option<&Value>,
        token: &PageToken,
    ) -> Result<Url, SourceError> {
        let mut url = self.page_url(parent_def, vars, None, token)?;
        if let (Some(lower), Some(inc), PageToken::Start) = (lower, &self.def.incremental, token)
            && let Some(c) = Cursor::from_json(lower, self.cursor_type().as_ref())
        {
            url.query_pairs_mut()
                .append_pair(&inc.request_param, &c.param(inc.format));
        }
        Ok(url)
    }

    async fn checkpoint(&mut self) -> Result<(), Failure> {
        if self.schema_json.is_none() && self.state.schema.is_some() {
            self.schema_json = serde_json::to_value(&self.state.schema).ok();
        }
        let schema = self.state.schema.take();
        let mut value = serde_json::to_value(&self.state)
            .map_err(|e| SourceError::other(format!("stream `{}`: state: {e}", self.stream)))?;
        self.state.schema = schema;
        if let (Some(s), Value::Object(map)) = (&self.schema_json, &mut value) {
            map.insert("schema".into(), s.clone());
        }
        self.send(ReadEvent::Checkpoint(value)).await
    }

    async fn send(&mut self, event: ReadEvent) -> Result<(), Failure> {
        self.tx.send(event).await.map_err(|_| Failure::Stopped)
    }
}

impl Inner {
    /// Fetch the first page of the first top-level stream (for `check`).
    pub(crate) async fn probe(&self) -> Result<String, SourceError> {
        let Some((name, def)) = self
            .manifest
            .streams
            .iter()
            .map(|(n, d)| (n, d.get_ref()))
            .find(|(n, d)| {
                d.parent.is_none() && self.manifest.check_stream.as_ref().is_none_or(|c| c == *n)
            })
        else {
            return Ok("no top-level stream to probe".into());
        };
        // The probe only builds URLs: its events go nowhere.
        let (tx, _guard, _events) = inlet_core::producer::channel(name.clone(), 1);
        let reader = Reader {
            inner: Arc::new(Inner {
                manifest: self.manifest.clone(),
                config: self.config.clone(),
                client: self.client.clone(),
                base_url: self.base_url.clone(),
            }),
            stream: name.clone(),
            def: def.clone(),
            incremental: false,
            state: RestState::default(),
            batcher: JsonBatcher::new(vec![], None, SchemaPolicy::default()),
            schema_json: None,
            tx,
        };
        let mut vars = Vars::new();
        if let Some(fe) = &def.for_each {
            let first = self
                .config
                .values
                .get(&fe.config)
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or_else(|| SourceError::config(&fe.config, "the list is empty"))?;
            vars.insert(fe.var.clone(), first.to_string());
        }
        let url = reader.page_url(def, &vars, None, &PageToken::Start)?;
        let response = self.client.get(url.clone()).await?;
        Ok(format!(
            "GET {} (stream `{name}`): HTTP {}",
            self.client.redact_url(&url),
            response.status
        ))
    }
}

/// The next page after `page`, or `None` at the end.
fn next_token(
    pagination: &Pagination,
    page: &Page,
    n: usize,
    current: &PageToken,
    last_field: impl Fn(&str) -> Option<String>,
) -> Result<Option<PageToken>, SourceError> {
    let body = &page.response.body[..];
    Ok(match pagination {
        Pagination::None => None,
        // Every Link field, parsed as RFC 8288 says; a relative target is relative to
        // the page's own URL (a server answering `<?page=3>` means this endpoint).
        Pagination::LinkHeader => match inlet_http::link::find(&page.response.headers, "next") {
            None => None,
            Some(link) => {
                let next = link.resolve(&page.response.url).map_err(|e| {
                    SourceError::data(
                        format!("page at {}", page.response.url),
                        format!(
                            "the Link header's rel=\"next\" target {:?} is not a URL: {e}",
                            link.target
                        ),
                    )
                })?;
                Some(PageToken::Url(next.to_string()))
            }
        },
        Pagination::NextUrl { path } => body_value(body, path)
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty())
            .map(PageToken::Url),
        Pagination::Cursor {
            record_field,
            body_path,
            has_more,
            ..
        } => {
            if let Some(h) = has_more
                && body_value(body, h) != Some(Value::Bool(true))
            {
                return Ok(None);
            }
            let value = match (record_field, body_path) {
                (Some(f), _) => {
                    if n == 0 {
                        None
                    } else {
                        last_field(f)
                    }
                }
                (None, Some(path)) => body_value(body, path).and_then(|v| value_text(&v)),
                (None, None) => None,
            };
            let value = value.filter(|v| !v.is_empty());
            if value.is_none() && has_more.is_some() {
                // The API says there is more but the page does not say where: stopping
                // here would silently drop the rest.
                return Err(SourceError::data(
                    format!("page at {}", page.response.url),
                    format!(
                        "`{}` says more pages follow, but the page has no cursor ({}); the API may have renamed it: check `pagination` in the manifest",
                        has_more.as_deref().unwrap_or_default(),
                        match (record_field, body_path) {
                            (Some(f), _) => format!("record field `{f}` of the last record"),
                            (None, Some(p)) => format!("body field `{p}`"),
                            _ => String::new(),
                        }
                    ),
                ));
            }
            value.map(PageToken::Cursor)
        }
        Pagination::Offset { limit, .. } => {
            let offset = if let PageToken::Offset(o) = current {
                *o
            } else {
                0
            };
            ((n as u64) >= *limit).then(|| PageToken::Offset(offset + n as u64))
        }
        Pagination::PageNumber { start, size, .. } => {
            let number = if let PageToken::Page(p) = current {
                *p
            } else {
                *start
            };
            (n > 0 && (n as u64) >= *size).then_some(PageToken::Page(number + 1))
        }
    })
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
fn body_value(body: &[u8], path: &str) -> Option<Value> {
    let range = select(body, Some(path)).ok()?;
    serde_json::from_slice(&body[range]).ok()
}

fn dotted<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A column by dotted path (struct children).
fn column(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
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
    fn has_more_without_a_cursor_is_an_error_not_the_end() {
        let page = Page {
            response: Response {
                status: 200,
                headers: Default::default(),
                body: bytes_of(r#"{"has_more":true,"data":[{"customer_id":"cus_1"}]}"#),
                url: Url::parse("http://h/v1/customers").unwrap(),
                attempts: 1,
            },
            records: 0..0,
            batch: None,
            hash: 0,
        };
        let cursor = Pagination::Cursor {
            param: "starting_after".into(),
            record_field: Some("id".into()),
            body_path: None,
            has_more: Some("has_more".into()),
        };
        let err = next_token(&cursor, &page, 1, &PageToken::Start, |_| None).unwrap_err();
        assert!(err.to_string().contains("record field `id`"), "{err}");
        let next = next_token(&cursor, &page, 1, &PageToken::Start, |_| {
            Some("cus_1".into())
        })
        .unwrap();
        assert_eq!(next, Some(PageToken::Cursor("cus_1".into())));
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::from(s.to_string())
    }

    #[test]
    fn link_header_next_is_resolved_against_the_page_url_across_fields() {
        let mut page = Page {
            response: Response {
                status: 200,
                headers: Default::default(),
                body: bytes_of("[]"),
                url: Url::parse(
                    "https://api.github.com/repositories/1300192/issues?labels=bug,help&page=3",
                )
                .unwrap(),
                attempts: 1,
            },
            records: 0..0,
            batch: None,
            hash: 0,
        };
        // Two Link fields; the second has a relative target with commas, and `REL`.
        let headers = &mut page.response.headers;
        headers.append(
            "link",
            r#"<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev""#
                .parse()
                .unwrap(),
        );
        headers.append(
            "link",
            r#"<?labels=bug,help&page=4>; REL="Next", <?page=515>; rel="last""#
                .parse()
                .unwrap(),
        );
        let next = next_token(&Pagination::LinkHeader, &page, 1, &PageToken::Start, |_| {
            None
        })
        .unwrap();
        assert_eq!(
            next,
            Some(PageToken::Url(
                "https://api.github.com/repositories/1300192/issues?labels=bug,help&page=4".into()
            ))
        );
    }

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
