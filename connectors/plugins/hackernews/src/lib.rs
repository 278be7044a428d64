//! Hacker News as an inlet plugin: `items` (incremental by id, from the newest item
//! backwards on a first sync) and `top_stories` (full refresh, ranked).
//!
//! API: <https://github.com/HackerNews/API>. One request per item; a page of
//! `batch_rows` items makes one batch followed by a checkpoint `{"last_id": N}`.

pub mod items;

// The plugin itself exists only on wasm32; natively only `items` (the record logic) is
// built, for the benchmark.
#[cfg(target_arch = "wasm32")]
mod plugin;
