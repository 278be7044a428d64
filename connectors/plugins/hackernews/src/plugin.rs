//! The `source` interface of the Hacker News plugin.

use std::cell::RefCell;

use crate::items;
use inlet_pdk::{
    BatchBuilder, CheckItem, Event, Guest, PluginError, ReadRequest, StreamInfo, config,
    http::Request, state,
};
use serde::{Deserialize, Serialize};

/// The connection's `config`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// API root; the default is the public API.
    #[serde(default = "default_base")]
    base_url: String,
    /// On a first sync of `items`, how many of the newest items to read.
    #[serde(default = "default_initial")]
    initial_items: i64,
    /// At most this many items per sync of `items` (0: no limit).
    #[serde(default)]
    max_items_per_sync: i64,
}

fn default_base() -> String {
    "https://hacker-news.firebaseio.com/v0".to_string()
}

fn default_initial() -> i64 {
    1000
}

/// The resume point of `items`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemsState {
    last_id: i64,
}

/// The resume point of `top_stories` within a run: the list being read (the top stories
/// when the read began) and how far it got. An empty list (`{}`, as earlier versions
/// wrote) starts over.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopState {
    #[serde(default)]
    ids: Vec<i64>,
    #[serde(default)]
    pos: usize,
}

/// A read in progress (one per instance).
#[derive(Debug)]
enum Reading {
    Items {
        base: String,
        next_id: i64,
        end_id: i64,
        batch_rows: i64,
    },
    Top {
        base: String,
        ids: Vec<i64>,
        pos: usize,
        batch_rows: usize,
    },
}

thread_local! {
    static READ: RefCell<Option<Reading>> = const { RefCell::new(None) };
}

struct HackerNews;

fn parse_config(text: &str) -> Result<Config, PluginError> {
    let c: Config = config::parse(text)?;
    if !(c.base_url.starts_with("https://") || c.base_url.starts_with("http://")) {
        return Err(inlet_pdk::config_error(
            "base_url",
            "must be an http(s) URL",
        ));
    }
    if c.initial_items < 1 {
        return Err(inlet_pdk::config_error(
            "initial_items",
            "must be at least 1",
        ));
    }
    if c.max_items_per_sync < 0 {
        return Err(inlet_pdk::config_error(
            "max_items_per_sync",
            "must be 0 (no limit) or more",
        ));
    }
    Ok(c)
}

fn base(c: &Config) -> String {
    c.base_url.trim_end_matches('/').to_string()
}

/// Items by id, fetched at once (the host runs the requests concurrently), in order;
/// `None` where the API answers `null`.
fn fetch_items(base: &str, ids: &[i64]) -> Result<Vec<Option<items::Item>>, PluginError> {
    let urls: Vec<String> = ids
        .iter()
        .map(|id| format!("{base}/item/{id}.json"))
        .collect();
    let answers = inlet_pdk::http::send_all(urls.iter().map(Request::get).collect());
    if answers.len() != ids.len() {
        return Err(PluginError::Other(format!(
            "asked for {} items, the host answered {}",
            ids.len(),
            answers.len()
        )));
    }
    let mut out = Vec::with_capacity(ids.len());
    for ((url, id), answer) in urls.iter().zip(ids).zip(answers) {
        let resp = answer?;
        inlet_pdk::http::check_status(url, &resp)?;
        out.push(items::parse(&resp.body, *id)?);
    }
    Ok(out)
}

impl Guest for HackerNews {
    fn spec() -> String {
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "hackernews",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "base_url": {"type": "string", "default": default_base(),
                    "description": "API root"},
                "initial_items": {"type": "integer", "minimum": 1, "default": 1000,
                    "description": "On a first sync of items, how many of the newest to read"},
                "max_items_per_sync": {"type": "integer", "minimum": 0, "default": 0,
                    "description": "At most this many items per sync (0: no limit)"}
            }
        })
        .to_string()
    }

    fn validate(config: String) -> Result<(), PluginError> {
        parse_config(&config).map(|_| ())
    }

    fn check(config: String) -> Result<Vec<CheckItem>, PluginError> {
        let c = parse_config(&config)?;
        let url = format!("{}/maxitem.json", base(&c));
        let item = match Request::get(&url).json::<i64>() {
            Ok(max) => CheckItem {
                name: "api reachable".into(),
                ok: true,
                message: format!("{url}: newest item {max}"),
            },
            Err(e) => CheckItem {
                name: "api reachable".into(),
                ok: false,
                message: format!("{url}: {e:?}"),
            },
        };
        Ok(vec![item])
    }

    fn discover(config: String) -> Result<Vec<StreamInfo>, PluginError> {
        parse_config(&config)?;
        Ok(vec![
            StreamInfo {
                name: "items".into(),
                fields: items::item_fields(),
                primary_key: vec!["id".into()],
                cursor_candidates: vec!["id".into()],
                incremental: true,
            },
            StreamInfo {
                name: "top_stories".into(),
                fields: items::top_fields(),
                primary_key: vec!["id".into()],
                cursor_candidates: Vec::new(),
                incremental: false,
            },
        ])
    }

    fn open(request: ReadRequest) -> Result<(), PluginError> {
        let c = parse_config(&request.config)?;
        let base = base(&c);
        let batch_rows = request.batch_rows.clamp(1, 10_000);
        let reading = match request.stream.as_str() {
            "items" => {
                let max: i64 = Request::get(format!("{base}/maxitem.json")).json()?;
                // The resume point: the saved state of an incremental sync, or a checkpoint
                // of this run when a full refresh is resumed (a new full refresh gets none).
                let saved: Option<ItemsState> = state::parse(request.state.as_deref())?;
                let next_id = match saved {
                    Some(s) => s.last_id + 1,
                    None => (max - c.initial_items + 1).max(1),
                };
                let mut end_id = max;
                if c.max_items_per_sync > 0 {
                    end_id = end_id.min(next_id + c.max_items_per_sync - 1);
                }
                Reading::Items {
                    base,
                    next_id,
                    end_id,
                    batch_rows: i64::from(batch_rows),
                }
            }
            "top_stories" => {
                // A full refresh has no state between runs; within a run, a read resumed
                // from a checkpoint goes on with the same list from where it got.
                let resumed: Option<TopState> = state::parse(request.state.as_deref())?;
                let (ids, pos) = match resumed {
                    Some(s) if !s.ids.is_empty() => {
                        let pos = s.pos.min(s.ids.len());
                        (s.ids, pos)
                    }
                    _ => (Request::get(format!("{base}/topstories.json")).json()?, 0),
                };
                Reading::Top {
                    base,
                    ids,
                    pos,
                    batch_rows: batch_rows as usize,
                }
            }
            other => {
                return Err(PluginError::UnknownStream(format!(
                    "`{other}`: this plugin has items, top_stories"
                )));
            }
        };
        READ.with(|r| *r.borrow_mut() = Some(reading));
        Ok(())
    }

    fn next() -> Result<Option<Vec<Event>>, PluginError> {
        READ.with(|r| {
            let mut guard = r.borrow_mut();
            let Some(reading) = guard.as_mut() else {
                return Err(PluginError::Other("next called before open".into()));
            };
            match reading {
                Reading::Items {
                    base,
                    next_id,
                    end_id,
                    batch_rows,
                } => {
                    if *next_id > *end_id {
                        return Ok(None);
                    }
                    let last = (*next_id + *batch_rows - 1).min(*end_id);
                    let mut b = BatchBuilder::new(&items::item_fields());
                    let ids: Vec<i64> = (*next_id..=last).collect();
                    for item in fetch_items(base, &ids)?.into_iter().flatten() {
                        items::append(&mut b, 0, &item)?;
                        b.end_row()?;
                    }
                    *next_id = last + 1;
                    let mut events = Vec::with_capacity(2);
                    if b.rows() > 0 {
                        events.push(Event::Batch(b.finish()));
                    }
                    events.push(state::checkpoint(&ItemsState { last_id: last })?);
                    Ok(Some(events))
                }
                Reading::Top {
                    base,
                    ids,
                    pos,
                    batch_rows,
                } => {
                    if *pos >= ids.len() {
                        return Ok(None);
                    }
                    let end = (*pos + *batch_rows).min(ids.len());
                    let mut b = BatchBuilder::new(&items::top_fields());
                    let fetched = fetch_items(base, &ids[*pos..end])?;
                    for (rank, item) in fetched.into_iter().enumerate() {
                        if let Some(item) = item {
                            b.int64(0, (*pos + rank + 1) as i64)?;
                            items::append(&mut b, 1, &item)?;
                            b.end_row()?;
                        }
                    }
                    *pos = end;
                    let mut events = Vec::with_capacity(2);
                    if b.rows() > 0 {
                        events.push(Event::Batch(b.finish()));
                    }
                    events.push(state::checkpoint(&TopState {
                        ids: ids.clone(),
                        pos: end,
                    })?);
                    Ok(Some(events))
                }
            }
        })
    }
}

inlet_pdk::export_plugin!(HackerNews);
