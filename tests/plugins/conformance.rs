//! The Hacker News plugin runs the source conformance suite, built in-process from its
//! `.wasm` as the CLI registers plugins, against its recorded API (40 items, 12 top
//! stories) in batches of 5, so every stream has several checkpoints.

use std::{path::PathBuf, sync::Arc};

use inlet_core::{Connector, Source, SyncMode};
use inlet_testkit::{
    ReplayServer,
    conformance::{self, Options},
};
use inlet_wasm::{PluginConnector, PluginHost};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hackernews() -> PluginConnector {
    let host = PluginHost::new(None).unwrap();
    PluginConnector::new(
        host.load_dir(&repo().join("connectors/plugins/hackernews"))
            .unwrap(),
    )
}

/// The config that sends the plugin's requests for the API to `origin` on loopback.
fn config(origin: &str) -> Value {
    json!({
        "initial_items": 40,
        "sandbox": {
            "allow_hosts": ["hacker-news.firebaseio.com"],
            "allow_private": ["127.0.0.1"],
            "allow_http": true,
            "redirect": { "https://hacker-news.firebaseio.com": origin },
        }
    })
}

/// The plugin's source over the first recording, served for the rest of the test binary.
async fn source() -> Arc<dyn Source> {
    let recording = repo().join("connectors/plugins/hackernews/testdata/replay-1.json");
    let server = Box::leak(Box::new(ReplayServer::from_file(&recording).unwrap()));
    let dir = tempfile::tempdir().unwrap().keep();
    conformance::build(&hackernews(), config(&server.origin()), &dir).await
}

fn options(stream: &str) -> Options {
    Options {
        batch_rows: 5,
        ..Options::new(stream)
    }
}

inlet_testkit::conformance_suite!(hackernews_conforms, source().await, {
    items: options("items"),
});

// Regression: the checkpoints of a full refresh of `top_stories` were `{}` ("start over"),
// and `items` ignored its checkpoint in a full refresh, so a read resumed from one (the
// runtime resumes a partition from its last checkpoint after a transient failure) landed
// the rows before it twice in that run.
inlet_testkit::conformance_suite!(hackernews_full_refresh_conforms, source().await, {
    items: options("items").mode(SyncMode::FullRefresh),
    top_stories: options("top_stories").mode(SyncMode::FullRefresh),
});

#[tokio::test]
async fn plugin_errors_say_whether_they_are_transient() {
    let hn = hackernews();
    // An unknown field is a bad config: permanent.
    let bad = hn.validate(&json!({"initial_itemz": 3})).unwrap_err();
    conformance::assert_transient(&bad, false);
    // Nothing listens where the API is sent: transient.
    let closed = format!("http://127.0.0.1:{}", inlet_testkit::CLOSED_PORT);
    let dir = tempfile::tempdir().unwrap();
    let source = conformance::build(&hn, config(&closed), dir.path()).await;
    conformance::assert_read_fails(&source, &options("items"), true).await;
}
