//! What scripts read: `--json` documents (NDJSON for `sync --all`), errors as JSON, the
//! exit codes in `--help`, shell completions and the man page.

use std::process::Command;

use inlet_testkit::TestProject;

fn two_connections() -> TestProject {
    let p = TestProject::empty();
    p.write_project(
        r#"
[connections.good]
connector = "files"
[connections.good.config]
path = "data"
[connections.good.config.streams.a]
glob = "*.csv"

[connections.broken]
connector = "files"
[connections.broken.config]
path = "missing"
[connections.broken.config.streams.a]
glob = "*.csv"
"#,
    );
    std::fs::write(p.data("a.csv"), "id\n1\n2\n").unwrap();
    p
}

#[test]
fn sync_all_under_json_prints_one_line_per_connection_and_errors_are_json() {
    let p = two_connections();
    let out = p.inlet(&["--json", "sync", "--all"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON line ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let by = |name: &str| lines.iter().find(|l| l["connection"] == name).unwrap();
    assert_eq!(by("good")["outcome"], "succeeded");
    assert_eq!(by("good")["streams"]["a"]["rows"], 2);
    let broken = by("broken");
    assert_eq!(broken["outcome"], "error", "{broken}");
    assert_eq!(broken["error"]["exit_code"], 1);
    assert_eq!(broken["error"]["kind"], "failed");
    assert!(
        broken["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing")
    );

    // A single command's error is one JSON document on stdout, the text stays on stderr.
    let out = p.inlet(&["--json", "sync", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["error"]["kind"], "config");
    assert_eq!(doc["error"]["exit_code"], 2);
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("nope"),
        "{doc}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}

#[test]
fn plugin_commands_honour_json() {
    let p = TestProject::empty();
    let dir = p.root().join("my_api");
    let out = p.inlet(&[
        "--json",
        "plugin",
        "new",
        "my_api",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["created"], "my_api");
    assert_eq!(doc["path"], dir.to_str().unwrap());
    // Making it again fails, as JSON.
    let out = p.inlet(&[
        "--json",
        "plugin",
        "new",
        "my_api",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["error"]["message"].is_string(), "{doc}");
}

#[test]
fn help_lists_exit_codes_and_completions_and_man_page_are_generated() {
    let p = TestProject::empty();
    let help = p.ok(&["--help"]);
    for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "75 ", "130 "] {
        assert!(
            help.contains(&format!("  {code}")),
            "exit code {code}in --help: {help}"
        );
    }
    // The bash script loads in a real bash and registers the completion.
    let script = p.ok(&["completions", "bash"]);
    let path = p.root().join("inlet.bash");
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p inlet", path.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("inlet"));
    for shell in ["zsh", "fish"] {
        let s = p.ok(&["completions", shell]);
        assert!(s.contains("sync") && s.contains("daemon"), "{shell}: {s}");
    }
    let man = p.ok(&["man"]);
    assert!(man.starts_with(".ie") || man.contains(".TH inlet"), "{man}");
    assert!(
        man.contains("Exit codes") && man.contains("completions"),
        "{man}"
    );
}
