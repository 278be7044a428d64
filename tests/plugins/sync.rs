//! End-to-end: a WebAssembly plugin installed with `inlet plugin install`, listed by
//! `inlet connectors`, synced by the real `inlet` binary from a recorded API into
//! partitioned Parquet, resumed incrementally; and a hostile plugin stopped by the
//! sandbox with an error naming the plugin and the rule.

use std::{fs, path::PathBuf};

use inlet_testkit::ReplayServer;
use inlet_testkit::{TestProject, lake::*};

const BASE: i64 = 41_000_000;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn write_project(p: &TestProject, replay: &ReplayServer) {
    let text = format!(
        r#"[connections.hn]
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
max_call_ms = 300
"#,
        origin = replay.origin()
    );
    p.write_project(text);
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
    let err = p.fails(&["sync", "red"]);
    assert!(
        err.contains("plugin `redteam` broke sandbox rule cpu-limit"),
        "{err}"
    );
    // ... and the normal one still syncs.
    let out = p.ok(&["--json", "sync", "hn", "-s", "items"]);
    let run: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(run["streams"]["items"]["rows"], 0, "{run}");
}

fn wasm_target_installed() -> bool {
    std::process::Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false)
}

#[test]
fn the_tutorial_from_plugin_new_to_a_landed_sync() {
    let p = TestProject::new("");
    let proj = p.root().join("things");
    let proj_arg = proj.to_str().unwrap();
    let out = p.ok(&["plugin", "new", "things", "--dir", proj_arg]);
    assert!(out.contains("created plugin `things`"), "{out}");
    for f in ["Cargo.toml", "plugin.toml", "src/lib.rs"] {
        assert!(proj.join(f).is_file(), "{f}");
    }
    let cargo = fs::read_to_string(proj.join("Cargo.toml")).unwrap();
    let pdk = cargo
        .lines()
        .find(|l| l.starts_with("inlet-pdk"))
        .and_then(|l| l.split('"').nth(1))
        .unwrap();
    assert!(PathBuf::from(pdk).join("src/lib.rs").is_file(), "{pdk}");
    let again = p.inlet(&["plugin", "new", "things", "--dir", proj_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let bad = p.inlet(&["plugin", "new", "Things!"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("plugin name `Things!`"));

    if !wasm_target_installed() {
        eprintln!("no wasm32-unknown-unknown target: the scaffold is checked, not built");
        return;
    }
    let out = p.ok(&["plugin", "build", proj_arg]);
    assert!(out.contains("plugin.wasm"), "{out}");
    p.ok(&["plugin", "install", proj_arg]);
    let list = p.ok(&["connectors"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("things") && l.contains("api.example.com")),
        "{list}"
    );

    let mut rec = std::collections::BTreeMap::new();
    rec.insert(
        "/things?page=1".to_string(),
        serde_json::json!({"items": [{"id": 1, "name": "a"}, {"id": 9_007_199_254_740_993_i64, "name": null}], "next": 2}),
    );
    rec.insert(
        "/things?page=2".to_string(),
        serde_json::json!({"items": [{"id": 3, "name": "c"}], "next": null}),
    );
    let server = ReplayServer::recording(rec);
    p.write_project(format!(
        r#"[connections.t]
connector = "things"

[connections.t.config]
base_url = "https://api.example.com"

[connections.t.config.sandbox]
allow_hosts = ["api.example.com"]
allow_http = true
allow_private = ["127.0.0.1"]
redirect = {{ "https://api.example.com" = "{}" }}
"#,
        server.origin()
    ));
    let run: serde_json::Value = serde_json::from_str(&p.ok(&["--json", "sync", "t"])).unwrap();
    assert_eq!(run["streams"]["things"]["rows"], 3, "{run}");
    let mut ids = int_column(&p.lake().join("t/things"), "id");
    ids.sort_unstable();
    assert_eq!(ids, vec![1, 3, 9_007_199_254_740_993]);
}

#[test]
fn a_plugin_read_whose_host_loop_panics_fails_the_run_and_neither_rows_nor_state_move() {
    let p = TestProject::new("");
    let replay = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();
    write_project(&p, &replay);
    for name in ["hackernews", "redteam"] {
        let dir = repo().join("connectors/plugins").join(name);
        p.ok(&["plugin", "install", dir.to_str().unwrap()]);
    }
    // The host's read loop panics on the plugin's second answer, after the first
    // batches (10 rows each) and their checkpoints.
    p.assert_panicked_sync("plugin-events#2", &["hn", "-s", "items"], "items");
    // The same sync without the failpoint lands all 39 items.
    let run: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "sync", "hn", "-s", "items"])).unwrap();
    assert_eq!(run["streams"]["items"]["rows"], 39, "{run}");
}
