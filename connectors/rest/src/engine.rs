//! Reading a stream: slices, parents, pages, records, checkpoints.
//!
//! The engine's glue lives here: a [`read`] spawns a `Reader` that walks the slices of a
//! stream and emits checkpoints. The seams are modules of their own:
//! - [`pagination`]: the URL of a page and the token of the next one;
//! - [`records`]: a page fetched, its records selected, decoded, filtered by cursor and
//!   landed as batches;
//! - [`children`]: child streams, read once per record of their parent stream.

mod children;
mod pagination;
mod records;

use std::{collections::BTreeMap, sync::Arc};

use arrow_schema::DataType;
use inlet_core::{
    EventStream, ReadEvent, ReadRequest, SourceError, SyncMode,
    producer::Emitter,
    state::{decode, decode_or_default},
};
use inlet_http::HttpClient;
use serde_json::Value;
use url::Url;

use crate::{
    RestConfig,
    json::{JsonBatcher, SchemaPolicy},
    manifest::{self, Manifest, StreamDef},
    state::{Cursor, PageToken, Progress, RestState, SliceState},
};

/// What a built source holds.
#[derive(Debug)]
pub(crate) struct Inner {
    pub manifest: Manifest,
    pub config: RestConfig,
    pub client: HttpClient,
    pub base_url: Url,
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
    let mut state = decode_or_default::<RestState>(&request.stream, resume.as_ref())?;
    // A full refresh resumed from the checkpoint that ended its pass has nothing left to
    // read. A full refresh is only ever resumed from a checkpoint of its own run (a new
    // run starts from nothing), and only the end of a pass leaves no pass in progress.
    if request.mode == SyncMode::FullRefresh && resume.is_some() && state.current.is_none() {
        return Ok(Box::pin(futures::stream::empty()));
    }
    // A pass that starts from nothing (a full refresh, or the first run after a reset of
    // the cursor only) keeps the landed schema and its history from the committed state:
    // the schema only widens, and its changes stay on record.
    if state.schema.is_none()
        && let Some(previous) = request.previous.clone()
        && let Ok(previous) = decode::<RestState>(&request.stream, &previous)
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
