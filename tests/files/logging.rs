//! Log lines an orchestrator can read: no colour into files, JSON lines that name the run,
//! `--log` over `RUST_LOG`, `-q`/`-v`, and an invalid filter reported.

use inlet_testkit::TestProject;

fn project() -> TestProject {
    let p = TestProject::new("[connections.c.config.streams.a]\nglob = \"*.csv\"\n");
    std::fs::write(p.data("a.csv"), "id,x\n1,a\n2,b\n").unwrap();
    p
}

fn stderr_of(p: &TestProject, env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut cmd = p.command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("NO_COLOR");
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn json_log_lines_carry_the_connection_run_and_stream() {
    let p = project();
    let (code, err) = stderr_of(
        &p,
        &[("RUST_LOG", "")],
        &["--log-format", "json", "--log", "debug", "sync", "c"],
    );
    assert_eq!(code, Some(0), "{err}");
    let runs = p.ok(&["--json", "runs", "c"]);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_run: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| {
            l["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("inlet_runtime::sync"))
        })
        .collect();
    assert!(in_run.len() >= 2, "{err}");
    for l in &in_run {
        assert_eq!(l["connection"], "c", "{l}");
        assert_eq!(l["run_id"], run_id.as_str(), "{l}");
        for key in ["timestamp", "level", "message"] {
            assert!(l.get(key).is_some(), "{key} missing: {l}");
        }
    }
    // Lines inside a stream's span name the stream, the commit included.
    let commit = in_run
        .iter()
        .find(|l| l["message"] == "committed a checkpoint")
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(commit["stream"], "a");
}

#[test]
fn text_logs_have_no_colour_off_a_terminal_and_the_flag_wins_over_rust_log() {
    let p = project();
    // stderr is a pipe here, as when an orchestrator collects it: no ANSI codes.
    let (code, err) = stderr_of(&p, &[("RUST_LOG", "")], &["-v", "sync", "c"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("syncing stream"), "-v shows info lines: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in a pipe: {err:?}");
    // --log wins over RUST_LOG.
    let (_, err) = stderr_of(
        &p,
        &[("RUST_LOG", "debug")],
        &["--log", "error", "sync", "c"],
    );
    assert!(!err.contains("syncing stream"), "{err}");
    // RUST_LOG applies without --log; -q leaves errors only.
    let (_, err) = stderr_of(&p, &[("RUST_LOG", "info")], &["sync", "c"]);
    assert!(err.contains("syncing stream"), "{err}");
    let (_, err) = stderr_of(&p, &[("RUST_LOG", "")], &["-q", "sync", "c"]);
    assert!(err.is_empty(), "{err}");
}

#[test]
fn an_invalid_log_filter_is_an_error_naming_where_it_came_from() {
    let p = project();
    let (code, err) = stderr_of(&p, &[], &["--log", "inlet=[", "sync", "c"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--log `inlet=[`") && err.contains("not a log filter"),
        "{err}"
    );
    let (code, err) = stderr_of(&p, &[("RUST_LOG", "=nope=")], &["sync", "c"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("RUST_LOG"), "{err}");
    assert!(!p.lake().join("c").exists(), "nothing ran");
}
