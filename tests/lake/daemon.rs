//! `inlet daemon` and graceful stops, with real processes: schedules kept for several
//! cycles, /metrics parsed and matched to the run records, two daemons on one lake never
//! running a connection twice at once, a SIGKILLed holder taken over, and SIGTERM during a
//! sync committing at a checkpoint so the next run continues without gaps or duplicates.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use inlet_testkit::{TestProject, free_port, lake::*};

/// The tests of this file measure timing: run them one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            t.elapsed() < within,
            "process did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn wait_for_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "metrics server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `inlet daemon` on `p` in the background (stderr dropped); with a port, serving
/// `/metrics` there, returned once the port answers.
fn spawn_daemon(p: &TestProject, metrics_port: Option<u16>) -> Child {
    let addr = metrics_port.map(|port| format!("127.0.0.1:{port}"));
    let mut args = vec!["daemon"];
    if let Some(addr) = &addr {
        args.extend(["--metrics-addr", addr.as_str()]);
    }
    let child = p.command(&args).stderr(Stdio::null()).spawn().unwrap();
    if let Some(port) = metrics_port {
        wait_for_port(port);
    }
    child
}

fn runs(p: &TestProject) -> Vec<serde_json::Value> {
    serde_json::from_str::<serde_json::Value>(&p.ok(&["--json", "runs", "--limit", "1000"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn ts(v: &serde_json::Value) -> f64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis() as f64
        / 1000.0
}

fn project_with(connections: &str) -> TestProject {
    let p = TestProject::empty();
    p.write_project(connections);
    p
}

fn files_connection(name: &str, schedule: &str, dir: &str, extra: &str) -> String {
    format!(
        "\n[connections.{name}]\nconnector = \"files\"\nschedule = \"{schedule}\"\n{extra}\n[connections.{name}.config]\npath = \"{dir}\"\n[connections.{name}.config.streams.events]\nglob = \"*.jsonl\"\n"
    )
}

#[test]
fn three_connections_run_on_schedule_and_metrics_match_the_runs() {
    let _serial = serial();
    let conns = [
        files_connection("fast", "every 1s", "data/fast", ""),
        files_connection("slow", "every 2s", "data/slow", ""),
        files_connection("cron", "*/3 * * * * *", "data/cron", ""),
    ]
    .concat();
    let p = project_with(&conns);
    for d in ["fast", "slow", "cron"] {
        fs::write(
            p.data(&format!("{d}/a.jsonl")),
            "{\"id\": 1}\n{\"id\": 2}\n",
        )
        .unwrap();
    }
    let port = free_port();
    let mut daemon = spawn_daemon(&p, Some(port));
    assert!(http_get(port, "/healthz").starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_millis(7500));
    let before = Instant::now();
    let scrape_start = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let metrics = http_get(port, "/metrics");
    let scrape_end = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    assert!(before.elapsed() < Duration::from_secs(2));
    signal(&daemon, "TERM");
    let status = wait_exit(&mut daemon, Duration::from_secs(15));
    assert!(status.success(), "daemon exit {status:?}");

    let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_string();
    let runs = runs(&p);
    let mut by_conn: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &runs {
        by_conn
            .entry(r["connection"].as_str().unwrap().to_string())
            .or_default()
            .push(r);
    }
    for (name, period, min_runs) in [("fast", 1.0, 5), ("slow", 2.0, 3), ("cron", 3.0, 2)] {
        let mut starts: Vec<f64> = by_conn[name].iter().map(|r| ts(&r["started_at"])).collect();
        starts.sort_by(f64::total_cmp);
        assert!(
            starts.len() >= min_runs,
            "{name}: {} runs in 7.5 s",
            starts.len()
        );
        for w in starts.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap > period * 0.7 && gap < period * 2.5,
                "{name}: runs {gap:.2} s apart, schedule {period} s"
            );
        }
        if name == "cron" {
            for s in &starts {
                let frac = s.rem_euclid(3.0);
                assert!(
                    frac < 0.8,
                    "cron run at {s} is not on a */3 second boundary"
                );
            }
        }
        // Counters match the run records finished by the time of the scrape.
        let finished = |until: f64| {
            by_conn[name]
                .iter()
                .filter(|r| {
                    r["outcome"] == "succeeded"
                        && r["finished_at"].is_string()
                        && ts(&r["finished_at"]) <= until
                })
                .count() as f64
        };
        let metric = sample(
            &body,
            "inlet_runs_total",
            &[("connection", name), ("outcome", "succeeded")],
        );
        assert!(
            finished(scrape_start - 0.05) <= metric && metric <= finished(scrape_end + 0.05),
            "{name}: inlet_runs_total {metric} vs run records"
        );
        let rows = sample(&body, "inlet_rows_total", &[("connection", name)]);
        assert_eq!(
            rows, 2.0,
            "{name}: the 2 rows land once, later runs land nothing"
        );
        let lag = sample(&body, "inlet_lag_seconds", &[("connection", name)]);
        assert!((0.0..period + 2.0).contains(&lag), "{name}: lag {lag}");
    }
    // The duration histogram counts the same runs, and its buckets add up.
    for name in ["fast", "slow", "cron"] {
        let ended = sample(
            &body,
            "inlet_runs_total",
            &[("connection", name), ("outcome", "succeeded")],
        );
        let count = sample(
            &body,
            "inlet_run_duration_seconds_count",
            &[("connection", name)],
        );
        assert_eq!(count, ended, "{name}: histogram count vs runs");
        let inf = sample(
            &body,
            "inlet_run_duration_seconds_bucket",
            &[("connection", name), ("le", "+Inf")],
        );
        assert_eq!(inf, count, "{name}: +Inf bucket");
    }
    assert!(
        metrics.contains("application/openmetrics-text"),
        "{metrics}"
    );
    // Prometheus' own parser (strict OpenMetrics) accepts the exposition.
    if let Some(py) = outside_python() {
        let path = p.root().join("metrics.txt");
        fs::write(&path, &body).unwrap();
        let out = python(&py, &openmetrics_check(&path));
        assert!(
            out.contains("inlet_build_info version=")
                && out.contains("histogram inlet_run_duration_seconds"),
            "{out}"
        );
    }
}

/// A Python program that parses an exposition with `prometheus_client`'s OpenMetrics parser
/// and prints each family's type and name, and the labels of `inlet_build_info`; no sample
/// may be negative.
fn openmetrics_check(path: &std::path::Path) -> String {
    format!(
        "from prometheus_client.openmetrics.parser import text_string_to_metric_families as f\n\
         fams = list(f(open('{}').read()))\n\
         for fam in fams:\n\
         \x20   print(fam.type, fam.name)\n\
         \x20   for s in fam.samples:\n\
         \x20       assert s.value >= 0, s\n\
         \x20       if s.name == 'inlet_build_info': print('inlet_build_info version=' + s.labels['version'])\n",
        path.display()
    )
}

#[test]
fn metrics_are_seeded_from_the_run_records_and_only_get_is_served() {
    let _serial = serial();
    // Yearly: the daemon never runs it during the test, so every value comes from the lake.
    let p = project_with(
        &[
            files_connection("seen", "@yearly", "data/seen", ""),
            files_connection("never", "@yearly", "data/never", ""),
        ]
        .concat(),
    );
    fs::write(p.data("seen/a.jsonl"), "{\"id\": 1}\n").unwrap();
    fs::create_dir_all(p.data("never")).unwrap();
    p.ok(&["sync", "seen"]);
    let finished = ts(&runs(&p)[0]["finished_at"]);
    let scrape = |p: &TestProject| {
        let port = free_port();
        let mut daemon = spawn_daemon(p, Some(port));
        let body = http_get(port, "/metrics");
        let post = http_request(
            port,
            "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        );
        let other = http_get(port, "/");
        signal(&daemon, "TERM");
        assert!(wait_exit(&mut daemon, Duration::from_secs(15)).success());
        (body, post, other)
    };
    let (metrics, post, other) = scrape(&p);
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_string();
    let seeded = sample(
        &body,
        "inlet_last_success_timestamp_seconds",
        &[("connection", "seen")],
    );
    assert!(
        (seeded - finished).abs() < 0.01,
        "seeded {seeded}, run record {finished}"
    );
    let lag = sample(&body, "inlet_lag_seconds", &[("connection", "seen")]);
    assert!((0.0..120.0).contains(&lag), "lag {lag}");
    assert!(
        !body.contains("inlet_lag_seconds{connection=\"never\"}")
            && !body.contains("inlet_last_success_timestamp_seconds{connection=\"never\"}"),
        "no success yet: no sample, not a -1:\n{body}"
    );
    assert_eq!(
        sample(
            &body,
            "inlet_runs_total",
            &[("connection", "never"), ("outcome", "failed")]
        ),
        0.0
    );
    if let Some(py) = outside_python() {
        let path = p.root().join("metrics.txt");
        fs::write(&path, &body).unwrap();
        let out = python(&py, &openmetrics_check(&path));
        assert!(out.contains("gauge inlet_lag_seconds"), "{out}");
    }

    // Two failed runs after it (a malformed file): a restarted daemon says so too.
    fs::write(p.data("seen/b.jsonl"), "{\"id\": 2}\n{not json\n").unwrap();
    // Within the same second as the success: run ids order by the millisecond.
    for _ in 0..2 {
        p.command(&["sync", "seen"]).output().unwrap();
    }
    let failed = runs(&p).iter().filter(|r| r["outcome"] == "failed").count();
    assert_eq!(failed, 2, "{:?}", runs(&p));
    let (metrics, _, _) = scrape(&p);
    let body = metrics.split("\r\n\r\n").nth(1).unwrap().to_string();
    assert_eq!(
        sample(
            &body,
            "inlet_consecutive_failures",
            &[("connection", "seen")]
        ),
        2.0
    );
    let again = sample(
        &body,
        "inlet_last_success_timestamp_seconds",
        &[("connection", "seen")],
    );
    assert!((again - finished).abs() < 0.01, "{again} vs {finished}");
}

fn http_request(port: u16, raw: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of one sample of the exposition.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let (set, value) = rest.split_once("} ").unwrap();
        if labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
        {
            return value.trim().parse().unwrap();
        }
    }
    panic!("no sample {name}{labels:?} in:\n{body}");
}

fn big_input(p: &TestProject, dir: &str, lines: i64) {
    let mut f =
        std::io::BufWriter::new(fs::File::create(p.data(&format!("{dir}/big.jsonl"))).unwrap());
    for id in 0..lines {
        writeln!(f, r#"{{"id":{id},"pad":"{}"}}"#, "p".repeat(64)).unwrap();
    }
}

#[test]
fn two_daemons_on_one_lake_never_run_a_connection_at_once() {
    let _serial = serial();
    // Full refresh of a big file: each run takes a while, so the daemons contend.
    let p = project_with(&files_connection(
        "shared",
        "every 1s",
        "data/shared",
        "lease_ttl_secs = 6\n[connections.shared.streams.events]\nmode = \"full_refresh\"",
    ));
    big_input(&p, "shared", 150_000);
    let (mut a, mut b) = (spawn_daemon(&p, None), spawn_daemon(&p, None));
    // Wait for three finished runs (a loaded machine makes each run slower), at most 60 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline
        && runs(&p)
            .iter()
            .filter(|r| r["finished_at"].is_string())
            .count()
            < 3
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    signal(&a, "TERM");
    signal(&b, "TERM");
    wait_exit(&mut a, Duration::from_secs(20));
    wait_exit(&mut b, Duration::from_secs(20));
    let mut spans: Vec<(f64, f64)> = runs(&p)
        .iter()
        .filter(|r| r["finished_at"].is_string())
        .map(|r| (ts(&r["started_at"]), ts(&r["finished_at"])))
        .collect();
    spans.sort_by(|x, y| x.0.total_cmp(&y.0));
    assert!(spans.len() >= 3, "only {} runs", spans.len());
    for w in spans.windows(2) {
        assert!(
            w[1].0 >= w[0].1 - 0.01,
            "runs overlap: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
}

#[test]
fn a_killed_lease_holder_is_taken_over_by_another_daemon() {
    let _serial = serial();
    let p = project_with(&files_connection(
        "c",
        "every 1s",
        "data/c",
        "lease_ttl_secs = 4\n[connections.c.streams.events]\nmode = \"full_refresh\"",
    ));
    big_input(&p, "c", 300_000);
    let lease = p.lake().join("_inlet/connections/c/lease.json");
    let mut a = spawn_daemon(&p, None);
    let t = Instant::now();
    while !lease.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "daemon never took the lease"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill().unwrap(); // SIGKILL while holding the lease
    a.wait().unwrap();
    assert!(lease.exists(), "the killed holder's lease stays behind");
    let mut b = spawn_daemon(&p, None);
    let t = Instant::now();
    loop {
        let done = runs(&p).iter().any(|r| r["outcome"] == "succeeded");
        if done {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the second daemon never ran the connection"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(&b, "TERM");
    wait_exit(&mut b, Duration::from_secs(20));
}

#[test]
fn sigterm_during_a_sync_commits_at_a_checkpoint_and_the_next_run_continues() {
    let _serial = serial();
    let p = project_with(&files_connection(
        "c",
        "every 1h",
        "data/c",
        "batch_rows = 2000",
    ));
    big_input(&p, "c", 400_000);
    let mut child = p
        .command(&["--json", "sync", "c"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(10));
    eprintln!("exited {:?} after SIGTERM", t.elapsed());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    if status.code() == Some(0) {
        eprintln!("the sync finished before the signal; nothing to check mid-way");
    } else {
        assert_eq!(status.code(), Some(130), "{out}");
        let record: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(record["outcome"], "interrupted");
        // The state covers exactly what landed: ids 0..n, no gaps, and n is the line
        // the state says the file stopped at.
        let mut ids = int_column(&p.lake().join("c/events"), "id");
        ids.sort_unstable();
        let n = ids.len() as i64;
        // A signal can arrive after the last row landed and before the run ended: then the
        // run is interrupted with everything landed, and the state says so.
        assert!(n > 0 && n <= 400_000, "landed {n}");
        assert!(
            ids.iter().copied().eq(0..n),
            "landed rows are not a prefix of the input"
        );
        let state = p.state_json();
        assert_eq!(
            state["streams"]["events"]["cursor"]["current"]["line"].as_i64(),
            Some(n)
        );
        assert_eq!(record["streams"]["events"]["rows"].as_i64(), Some(n));
    }
    p.ok(&["sync", "c"]);
    let mut ids = int_column(&p.lake().join("c/events"), "id");
    ids.sort_unstable();
    assert!(
        ids.iter().copied().eq(0..400_000),
        "after the next run: gaps or duplicates"
    );
}

#[test]
fn dry_run_prints_the_next_due_times_in_each_connections_time_zone() {
    let p = TestProject::empty();
    p.write_project(
        r#"
[connections.weekly]
connector = "files"
schedule = "0 0 */1 * 1"
[connections.weekly.config]
path = "data"

[connections.berlin]
connector = "files"
schedule = "0 2 * * *"
timezone = "Europe/Berlin"
[connections.berlin.config]
path = "data"

[connections.manual]
connector = "files"
[connections.manual.config]
path = "data"
"#,
    );
    let out = p.inlet(&["--json", "daemon", "--dry-run", "--count", "3"]);
    assert!(out.status.success(), "{out:?}");
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plan = plan.as_array().unwrap();
    assert_eq!(plan.len(), 2, "only scheduled connections: {plan:?}");
    let by = |name: &str| {
        plan.iter()
            .find(|c| c["connection"] == name)
            .unwrap_or_else(|| panic!("{name} in {plan:?}"))
    };
    // Vixie cron: `*/1` does not make the day-of-month rule match every day: Mondays only.
    for t in by("weekly")["next"].as_array().unwrap() {
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
        assert_eq!(t.format("%a %H:%M").to_string(), "Mon 00:00");
    }
    let berlin = by("berlin");
    assert_eq!(berlin["timezone"], "Europe/Berlin");
    for t in berlin["next"].as_array().unwrap() {
        let t = chrono::DateTime::parse_from_rfc3339(t.as_str().unwrap()).unwrap();
        let local = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(local.format("%H:%M").to_string(), "02:00", "{t}");
    }
    assert_eq!(berlin["next"].as_array().unwrap().len(), 3);
    let text = p.ok(&["daemon", "--dry-run", "--connection", "berlin"]);
    assert!(text.contains("berlin: 0 2 * * * (Europe/Berlin)"), "{text}");
    assert!(!text.contains("weekly"), "{text}");

    // Impossible dates and unknown zones are refused with the field named.
    let toml = p.config_text();
    p.write_toml(toml.replace("0 0 */1 * 1", "0 0 30 2 *"));
    let out = p.inlet(&["daemon", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connections.weekly.schedule") && err.contains("never matches"),
        "{err}"
    );
    p.write_toml(toml.replace("Europe/Berlin", "Europe/Atlantis"));
    let err = p.fails(&["daemon", "--dry-run"]);
    assert!(
        err.contains("connections.berlin.timezone") && err.contains("IANA"),
        "{err}"
    );
}
