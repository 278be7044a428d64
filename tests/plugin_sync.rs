//! End-to-end: a WebAssembly plugin installed with `inlet plugin install`, listed by
//! `inlet connectors`, synced by the real `inlet` binary from a recorded API into
//! partitioned Parquet, resumed incrementally; and a hostile plugin stopped by the
//! sandbox with an error naming the plugin and the rule.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod support;

use std::{fs, path::PathBuf};

use inlet_wasm::replay::ReplayServer;
use support::*;

const BASE: i64 = 41_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write_project(p: &TestProject, replay: &ReplayServer) {
    let text = format!(
        r#"version = 1

[destinations.local]
url = "file://./lake"

[connections.hn]
connector = "hackernews"
batch_rows = 10

[connections.hn.config]
initial_items = 40

[connections.hn.config.sandbox]
allow_hosts = ["hacker-news.firebaseio.com"]
allow_http = true
allow_private = ["127.0.0.1"]
redirect = {{ "https://hacker-news.firebaseio.com" = "{origin}" }}

[connections.red]
connector = "redteam"

[connections.red.config]
attack = "loop"

[connections.red.config.sandbox]
fuel_per_call = 200_000_000
"#,
        origin = replay.origin()
    );
    fs::write(p.root().join("inlet.toml"), text).unwrap();
}

#[test]
fn an_installed_plugin_syncs_a_recorded_api_into_parquet_and_resumes() {
    let p = TestProject::new("");
    let first = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();
    write_project(&p, &first);
    for name in ["hackernews", "redteam"] {
        let dir = repo().join("connectors/plugins").join(name);
        let out = p.ok(&["plugin", "install", dir.to_str().unwrap()]);
        assert!(out.contains(&format!("installed plugin `{name}`")), "{out}");
    }
    assert!(p.root().join("plugins/hackernews/plugin.wasm").is_file());

    let list = p.ok(&["connectors"]);
    let line = list.lines().find(|l| l.starts_with("hackernews")).unwrap();
    assert!(
        line.contains("0.1.0")
            && line.contains("plugin")
            && line.contains("hacker-news.firebaseio.com"),
        "{line}"
    );
    assert!(
        list.lines().any(|l| l.starts_with("files")),
        "built-ins are still there: {list}"
    );

    let check = p.ok(&["check", "hn"]);
    assert!(check.contains("api reachable"), "{check}");

    let out = p.ok(&["--json", "sync", "hn", "-s", "items"]);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["streams"]["items"]["rows"], 39, "{run}");
    let dir = p.lake().join("hn/items");
    let files = parquet_files(&dir);
    assert!(!files.is_empty());
    // Partitioned like any built-in: folders under the stream.
    assert!(
        files.iter().all(|f| f.parent().unwrap() != dir),
        "{files:?}"
    );
    let mut ids = int_column(&dir, "id");
    ids.sort_unstable();
    assert_eq!(ids.len(), 39);
    assert_eq!((ids[0], ids[38]), (BASE + 1, BASE + 40));

    // Next sync against a later recording: only the new items.
    let second = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-2.json"),
    )
    .unwrap();
    write_project(&p, &second);
    let out = p.ok(&["--json", "sync", "hn", "-s", "items"]);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["streams"]["items"]["rows"], 20, "{run}");
    let mut ids = int_column(&dir, "id");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 59);
    let state = p.ok(&["state", "show", "hn"]);
    assert!(state.contains(&format!("{}", BASE + 60)), "{state}");

    // A hostile plugin in the same project fails with the plugin and the rule named...
    let out = p.inlet(&["sync", "red"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugin `redteam` broke sandbox rule cpu-limit"),
        "{err}"
    );
    // ... and the normal one still syncs.
    let out = p.ok(&["--json", "sync", "hn", "-s", "items"]);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["streams"]["items"]["rows"], 0, "{run}");
}
