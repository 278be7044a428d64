//! Engineers inspecting and changing state: show, reset (one stream or all, dry run),
//! set (validated), history, rollback; and the lease that keeps runs apart.

use std::{fs, io::Write};

use inlet_testkit::TestProject;

const STREAMS: &str = r#"
[connections.c.config.streams.clicks]
glob = "clicks/*.jsonl"

[connections.c.config.streams.orders]
glob = "orders/*.csv"
"#;

fn project() -> TestProject {
    let p = TestProject::new(STREAMS);
    for (name, ids) in [("a.jsonl", 0..40), ("b.jsonl", 40..100)] {
        let mut f = fs::File::create(p.data(&format!("clicks/{name}"))).unwrap();
        for id in ids {
            writeln!(f, "{{\"id\": {id}}}").unwrap();
        }
    }
    fs::write(p.data("orders/o.csv"), "id,total\n1,9.5\n2,10\n").unwrap();
    p
}

fn raw_stream_state(p: &TestProject, stream: &str) -> String {
    let text = fs::read_to_string(p.lake().join("_inlet/connections/c/state.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    serde_json::to_string(&v["streams"][stream]).unwrap()
}

#[test]
fn resetting_one_stream_relands_it_and_leaves_the_others_byte_identical() {
    let p = project();
    p.sync_json(&[]);
    let orders_before = raw_stream_state(&p, "orders");
    let clicks_before = raw_stream_state(&p, "clicks");

    let dry = p.ok(&["state", "reset", "c", "--stream", "clicks", "--dry-run"]);
    assert!(dry.contains("dry run"), "{dry}");
    assert_eq!(
        raw_stream_state(&p, "clicks"),
        clicks_before,
        "--dry-run changed state"
    );

    p.ok(&["state", "reset", "c", "--stream", "clicks"]);
    assert_eq!(raw_stream_state(&p, "orders"), orders_before);
    assert_eq!(raw_stream_state(&p, "clicks"), "null");

    let run = p.sync_json(&[]);
    assert_eq!(
        run["streams"]["clicks"]["rows"], 100,
        "the reset stream re-lands in full"
    );
    assert_eq!(
        run["streams"]["orders"]["rows"], 0,
        "the other stream lands nothing"
    );
    assert_eq!(raw_stream_state(&p, "orders"), orders_before);

    let history: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "state", "history", "c"])).unwrap();
    let actions: Vec<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"]["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["checkpoint", "checkpoint", "reset", "checkpoint"]);
}

#[test]
fn rollback_restores_an_earlier_version_and_is_itself_recorded() {
    let p = project();
    p.sync_json(&[]);
    let seq_before: u64 = p.state_json()["seq"].as_u64().unwrap();
    let clicks_before = raw_stream_state(&p, "clicks");
    p.ok(&["state", "reset", "c"]);
    assert_eq!(raw_stream_state(&p, "clicks"), "null");
    assert_eq!(raw_stream_state(&p, "orders"), "null");

    let to = seq_before.to_string();
    let dry = p.ok(&["state", "rollback", "c", "--to", &to, "--dry-run"]);
    assert!(
        dry.contains("stream clicks") && dry.contains("dry run"),
        "{dry}"
    );
    p.ok(&["state", "rollback", "c", "--to", &to]);
    assert_eq!(raw_stream_state(&p, "clicks"), clicks_before);
    let run = p.sync_json(&[]);
    assert_eq!(
        run["streams"]["clicks"]["rows"], 0,
        "rolled back to after the first sync: nothing new"
    );
    let history = p.ok(&["state", "history", "c"]);
    assert!(history.contains(&format!("rollback to {to}")), "{history}");

    assert!(
        p.fails(&["state", "rollback", "c", "--to", "999"])
            .contains("version 999 does not exist")
    );
}

#[test]
fn set_validates_the_value_and_the_next_sync_follows_it() {
    let p = project();
    let err = p.fails(&[
        "state",
        "set",
        "c",
        "--stream",
        "clicks",
        "--value",
        "{\"files\": 3}",
    ]);
    assert!(
        err.contains("stream `clicks`") && err.contains("not a files state"),
        "{err}"
    );
    let out = p.inlet(&["state", "set", "c", "--stream", "nope", "--value", "{}"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown stream `nope`"));

    // Mark a.jsonl as read: the next sync lands only b.jsonl.
    let size = fs::metadata(p.data("clicks/a.jsonl")).unwrap().len();
    let mtime = fs::metadata(p.data("clicks/a.jsonl"))
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let value = format!(
        "{{\"files\": {{\"clicks/a.jsonl\": {{\"size\": {size}, \"mtime_ns\": {mtime}, \"lines\": 40}}}}}}"
    );
    p.ok(&["state", "set", "c", "--stream", "clicks", "--value", &value]);
    let run = p.sync_json(&["--stream", "clicks"]);
    assert_eq!(run["streams"]["clicks"]["rows"], 60);
    assert!(
        run["streams"].get("orders").is_none(),
        "--stream limits the sync"
    );
    let history = p.ok(&["state", "history", "c"]);
    assert!(history.contains(" set "), "{history}");
}

#[test]
fn a_connection_held_by_another_run_is_refused_with_the_holder_named() {
    let p = project();
    let lease = p.lake().join("_inlet/connections/c/lease.json");
    fs::create_dir_all(lease.parent().unwrap()).unwrap();
    let until = "2999-01-01T00:00:00Z";
    fs::write(
        &lease,
        format!(r#"{{"holder":"worker-7:4242","run_id":"r-other","acquired_at":"2026-01-01T00:00:00Z","expires_at":"{until}"}}"#),
    )
    .unwrap();
    let out = p.inlet(&["sync", "c"]);
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("worker-7:4242") && err.contains("r-other"),
        "{err}"
    );
    // An expired lease is taken over.
    fs::write(
        &lease,
        r#"{"holder":"dead:1","run_id":"r-dead","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:05:00Z"}"#,
    )
    .unwrap();
    p.ok(&["sync", "c"]);
    assert!(!lease.exists(), "the lease is released after the run");
}

#[test]
fn a_busy_connection_is_skipped_with_exit_0_under_if_busy_skip() {
    let p = project();
    let lease = p.lake().join("_inlet/connections/c/lease.json");
    fs::create_dir_all(lease.parent().unwrap()).unwrap();
    fs::write(
        &lease,
        r#"{"holder":"worker-7:4242","run_id":"r-other","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2999-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    let out = p.inlet(&["sync", "c", "--if-busy", "skip"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("skipped") && err.contains("worker-7:4242"),
        "{err}"
    );
    assert!(!p.lake().join("c").exists(), "a skipped sync lands nothing");
    let out = p.inlet(&["--json", "sync", "c", "--if-busy", "skip"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["outcome"], "skipped");
    assert_eq!(doc["reason"], "busy");
    // The default still fails, so a retrying orchestrator sees it.
    assert_eq!(p.inlet(&["sync", "c"]).status.code(), Some(75));
    // Another error is not hidden by `skip`.
    fs::remove_file(&lease).unwrap();
    let out = p.inlet(&["sync", "nope", "--if-busy", "skip"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_sync_prunes_state_history_and_old_run_records_but_keeps_what_rollback_needs() {
    let p = TestProject::new(STREAMS);
    p.write_toml(p.config_text().replace(
        "connector = \"files\"",
        "connector = \"files\"\nstate_history_keep = 3\nruns_keep_days = 30",
    ));
    fs::write(p.data("orders/o.csv"), "id,total\n1,9.5\n").unwrap();
    // Old run records, as a lake that has run for a year has: one failed, many succeeded.
    let runs_dir = p.lake().join("_inlet/runs/c");
    fs::create_dir_all(&runs_dir).unwrap();
    for (day, outcome) in [(1, "succeeded"), (2, "failed"), (3, "succeeded")] {
        let id = format!("202501{day:02}T000000Z-0000000{day}");
        fs::write(
            runs_dir.join(format!("{id}.json")),
            format!(r#"{{"run_id":"{id}","connection":"c","started_at":"2025-01-{day:02}T00:00:00Z","outcome":"{outcome}","streams":{{}}}}"#),
        )
        .unwrap();
    }
    for n in 0..6 {
        fs::write(
            p.data(&format!("clicks/{n}.jsonl")),
            format!("{{\"id\": {n}}}\n"),
        )
        .unwrap();
        p.sync_json(&[]);
    }
    let history = fs::read_dir(p.lake().join("_inlet/connections/c/history"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".json")
        })
        .count();
    // 3 kept versions, plus the newest older entry of a stream that has not changed since.
    assert!(
        history <= 5,
        "{history} history entries: {}",
        p.ok(&["state", "history", "c"])
    );
    let text = p.ok(&["state", "history", "c"]);
    let latest: u64 =
        serde_json::from_str::<serde_json::Value>(&p.ok(&["--json", "state", "show", "c"]))
            .unwrap()["seq"]
            .as_u64()
            .unwrap();
    // The last three versions restore; an older one is refused with the reason.
    p.ok(&["state", "rollback", "c", "--to", &(latest - 2).to_string()]);
    let err = p.fails(&["state", "rollback", "c", "--to", "1"]);
    assert!(
        err.contains("state_history_keep") && err.contains("can no longer be restored"),
        "{err}\n{text}"
    );
    // Old records went, but the newest of each outcome stays; --outcome reads the index.
    let names: Vec<String> = fs::read_dir(&runs_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("20250101")),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("20250102")),
        "the only failed run stays: {names:?}"
    );
    let failed: serde_json::Value =
        serde_json::from_str(&p.ok(&["--json", "runs", "c", "--outcome", "failed"])).unwrap();
    assert_eq!(failed.as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed[0]["run_id"], "20250102T000000Z-00000002");
    let err = p.fails(&["runs", "c", "--outcome", "broken"]);
    assert!(err.contains("not an outcome"), "{err}");
}
