//! The plugin host against real plugins: the Hacker News plugin on a recorded API, and the
//! red-team plugin breaking each sandbox rule while a normal plugin keeps working in the
//! same process. Uses the built components kept in connectors/plugins/<name>/plugin.wasm
//! (no wasm target needed; `scripts/build-plugins.sh` rebuilds them from source).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use arrow_array::{
    Array, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use futures::StreamExt;
use inlet_core::{Connector, Partition, ReadEvent, ReadRequest, SourceContext, SyncMode};
use inlet_testkit::ReplayServer;
use inlet_wasm::{
    LoadedPlugin, PluginConnector, PluginHost, Rule, SandboxConfig, WasmError,
    bindings::inlet::plugin::types,
};
use serde_json::{Value, json};

const BASE: i64 = 41_000_000;
const HN: &str = "https://hacker-news.firebaseio.com";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn host(sink: Option<inlet_wasm::LogSink>) -> PluginHost {
    // No disk cache here (the cache has its own test below): nothing left behind.
    let h = PluginHost::new(None).unwrap();
    match sink {
        Some(s) => h.with_log_sink(s),
        None => h,
    }
}

fn plugin_dir(name: &str) -> PathBuf {
    std::env::var_os("INLET_PLUGIN_FIXTURES")
        .map(|d| PathBuf::from(d).join(name))
        .unwrap_or_else(|| repo().join("connectors/plugins").join(name))
}

fn load(h: &PluginHost, name: &str) -> LoadedPlugin {
    h.load_dir(&plugin_dir(name)).unwrap()
}

fn hn_config(server: &ReplayServer, initial: i64) -> Value {
    json!({
        "initial_items": initial,
        "sandbox": {
            "allow_hosts": ["hacker-news.firebaseio.com"],
            "allow_private": ["127.0.0.1"],
            "allow_http": true,
            "redirect": { HN: server.origin() },
        }
    })
}

fn ctx() -> SourceContext {
    SourceContext {
        connection: "test".into(),
        base_dir: std::env::temp_dir(),
    }
}

fn request(stream: &str, mode: SyncMode, rows: usize) -> ReadRequest {
    ReadRequest {
        stream: stream.into(),
        mode,
        cursor_field: None,
        state: None,
        previous: None,
        batch_rows: rows,
        attempt: 0,
    }
}

async fn read_all(
    connector: &PluginConnector,
    config: Value,
    req: ReadRequest,
    resume: Option<Value>,
) -> Result<(Vec<RecordBatch>, Vec<Value>), inlet_core::SourceError> {
    let source = connector.build(config, ctx()).await?;
    let mut events = source.read(&req, &Partition::whole(), resume).await?;
    let (mut batches, mut checkpoints) = (Vec::new(), Vec::new());
    while let Some(ev) = events.next().await {
        match ev? {
            ReadEvent::Batch(b) => batches.push(b),
            ReadEvent::Checkpoint(c) => checkpoints.push(c),
            ReadEvent::Skipped(_) => {}
        }
    }
    Ok((batches, checkpoints))
}

/// Every value of the Int64 column `name` across `batches`, in order.
fn int64s(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| col::<Int64Array>(b, name).values().to_vec())
        .collect()
}

fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hackernews_reads_a_recorded_api_into_typed_batches_and_resumes() {
    let h = host(None);
    let hn = PluginConnector::new(load(&h, "hackernews"));
    let info = hn.info();
    assert_eq!(
        (info.kind.as_str(), info.hosts.clone()),
        ("plugin", vec!["hacker-news.firebaseio.com".to_string()])
    );

    let first = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();
    let source = hn.build(hn_config(&first, 40), ctx()).await.unwrap();
    let catalog = source.discover().await.unwrap();
    assert_eq!(catalog.names(), vec!["items", "top_stories"]);
    let report = source.check().await.unwrap();
    assert!(report.ok(), "{report:?}");

    let (batches, checkpoints) = read_all(
        &hn,
        hn_config(&first, 40),
        request("items", SyncMode::Incremental, 10),
        None,
    )
    .await
    .unwrap();
    // Items BASE+1..=BASE+40, one of which the API answers with null.
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 39);
    assert_eq!(checkpoints.len(), 4);
    assert_eq!(checkpoints.last().unwrap(), &json!({"last_id": BASE + 40}));
    let ids: Vec<i64> = int64s(&batches, "id");
    assert_eq!(ids.first(), Some(&(BASE + 1)));
    assert!(!ids.contains(&(BASE + 22)), "the null item is not a row");
    let b0 = &batches[0];
    // Item BASE+10 is deleted: no author, deleted = true.
    let deleted = col::<BooleanArray>(b0, "deleted");
    let by = col::<StringArray>(b0, "by");
    assert!(deleted.value(9) && by.is_null(9));
    let time = col::<TimestampMicrosecondArray>(b0, "time");
    assert_eq!(time.value(0), 1_732_400_000 * 1_000_000);
    assert_eq!(time.timezone(), Some("UTC"));
    let text = col::<StringArray>(b0, "text");
    assert!(text.value(1).contains("naïve"), "{}", text.value(1));

    // Resume from the checkpoint against the next recording: only the new items.
    let second = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-2.json"),
    )
    .unwrap();
    let (batches, checkpoints) = read_all(
        &hn,
        hn_config(&second, 40),
        request("items", SyncMode::Incremental, 10),
        checkpoints.last().cloned(),
    )
    .await
    .unwrap();
    let ids: Vec<i64> = int64s(&batches, "id");
    assert_eq!(ids, ((BASE + 41)..=(BASE + 60)).collect::<Vec<_>>());
    assert_eq!(checkpoints.last().unwrap(), &json!({"last_id": BASE + 60}));

    // Top stories keep the API's order as a rank.
    let (batches, _) = read_all(
        &hn,
        hn_config(&second, 40),
        request("top_stories", SyncMode::FullRefresh, 5),
        None,
    )
    .await
    .unwrap();
    let ranks: Vec<i64> = int64s(&batches, "rank");
    assert_eq!(ranks, (1..=12).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_config_errors_name_the_plugin_and_field() {
    let h = host(None);
    let hn = PluginConnector::new(load(&h, "hackernews"));
    let e = hn
        .validate(&json!({"initial_itemz": 3}))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("initial_itemz") && e.contains("hackernews"),
        "{e}"
    );
    let e = hn
        .validate(&json!({"sandbox": {"memory_mb": 0}}))
        .unwrap_err()
        .to_string();
    assert!(e.contains("sandbox.memory_mb"), "{e}");
    hn.validate(&json!({"initial_items": 5})).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_operator_allow_list_the_plugin_reaches_nothing() {
    let h = host(None);
    let hn = PluginConnector::new(load(&h, "hackernews"));
    let server = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();
    // Declared by the manifest, redirected to the replay server, but not allowed.
    let config = json!({"sandbox": {"allow_http": true, "allow_private": ["127.0.0.1"], "redirect": {HN: server.origin()}}});
    let e = read_all(
        &hn,
        config,
        request("items", SyncMode::Incremental, 10),
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("plugin `hackernews` broke sandbox rule host-not-allowed"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_requests_get_the_shared_retries_rate_limits_and_backoff() {
    let h = host(None);
    let hn = PluginConnector::new(load(&h, "hackernews"));
    let recording = repo().join("connectors/plugins/hackernews/testdata/replay-1.json");
    let items = || request("items", SyncMode::Incremental, 10);
    let rows = |b: &[RecordBatch]| b.iter().map(|b| b.num_rows()).sum::<usize>();

    // A clean read: how many requests it takes.
    let clean = ReplayServer::from_file(&recording).unwrap();
    let started = Instant::now();
    let (batches, _) = read_all(&hn, hn_config(&clean, 40), items(), None)
        .await
        .unwrap();
    let clean_took = started.elapsed();
    assert_eq!(rows(&batches), 39);
    let baseline = clean.requests().len();

    // A 429 with Retry-After: 1 and two 502s: waited out and retried by inlet-http, the
    // plugin sees only the final answers, and nothing is lost or doubled.
    let flaky = ReplayServer::from_file(&recording).unwrap();
    flaky.fail(&format!("/v0/item/{}.json", BASE + 3), 429, 1, Some(1));
    flaky.fail(&format!("/v0/item/{}.json", BASE + 5), 502, 2, None);
    // The call that waits out the 1 s Retry-After has a 500 ms limit: time in host HTTP
    // requests does not count against it.
    let mut config = hn_config(&flaky, 40);
    config["sandbox"]["max_call_ms"] = json!(500);
    let started = Instant::now();
    let (batches, _) = read_all(&hn, config, items(), None).await.unwrap();
    let ids: Vec<i64> = int64s(&batches, "id");
    assert_eq!(ids.len(), 39);
    assert_eq!(
        ids.iter().collect::<std::collections::BTreeSet<_>>().len(),
        39
    );
    assert_eq!(
        flaky.requests().len(),
        baseline + 3,
        "one retry per injected error"
    );
    assert!(
        started.elapsed() >= clean_took + Duration::from_millis(900),
        "Retry-After was honoured: {:?} against {clean_took:?} without faults",
        started.elapsed()
    );

    // Retries run out: the plugin gets `unavailable`, the read fails transiently (the
    // runtime retries it from the last checkpoint), naming plugin and URL.
    let down = ReplayServer::from_file(&recording).unwrap();
    down.fail(&format!("/v0/item/{}.json", BASE + 7), 503, 10, None);
    let mut config = hn_config(&down, 40);
    config["sandbox"]["max_retries"] = json!(1);
    let e = read_all(&hn, config, items(), None).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("hackernews") && text.contains(&format!("{}.json", BASE + 7)),
        "{text}"
    );

    // The operator's request rate per host holds across the connection's requests.
    let paced = ReplayServer::from_file(&recording).unwrap();
    let mut config = hn_config(&paced, 40);
    config["sandbox"]["max_requests_per_second"] = json!(40.0);
    let started = Instant::now();
    let (batches, _) = read_all(&hn, config, items(), None).await.unwrap();
    assert_eq!(rows(&batches), 39);
    let floor = Duration::from_secs_f64((paced.requests().len() - 2) as f64 / 40.0);
    assert!(
        started.elapsed() >= floor && started.elapsed() >= clean_took + floor / 2,
        "{} requests in {:?}, expected at least {floor:?}",
        paced.requests().len(),
        started.elapsed()
    );
}

/// One red-team call through the typed instance API.
fn attack(
    plugin: &LoadedPlugin,
    attack: &str,
    url: &str,
    sandbox: SandboxConfig,
) -> (Result<Option<Vec<types::Event>>, WasmError>, Duration) {
    let mut secrets = Vec::new();
    for (name, v) in &sandbox.secrets {
        secrets.push((
            name.clone(),
            v.resolve(name, &std::env::temp_dir()).unwrap(),
        ));
    }
    let mut inst = plugin.instantiate(&sandbox, secrets).unwrap();
    let config = json!({"attack": attack, "url": url}).to_string();
    inst.open(&types::ReadRequest {
        config,
        stream: "loot".into(),
        incremental: false,
        cursor_field: None,
        state: None,
        batch_rows: 10,
    })
    .unwrap()
    .unwrap();
    let started = Instant::now();
    let r = inst.next().map(|r| r.unwrap());
    (r, started.elapsed())
}

fn rule_of(r: &Result<Option<Vec<types::Event>>, WasmError>) -> Rule {
    match r {
        Err(WasmError::Violation { plugin, rule }) => {
            assert_eq!(plugin, "redteam");
            rule.clone()
        }
        other => panic!("expected a violation, got {other:?}"),
    }
}

fn loot(r: Result<Option<Vec<types::Event>>, WasmError>) -> String {
    let events = r.unwrap().unwrap();
    match &events[0] {
        types::Event::Batch(b) => match &b.columns[0].data {
            types::ColumnData::Utf8(v) => v[0].clone(),
            _ => panic!("not utf8"),
        },
        _ => panic!("no batch"),
    }
}

fn open_sandbox(hosts: &[&str]) -> SandboxConfig {
    SandboxConfig {
        allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        allow_http: true,
        ..SandboxConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_team_plugins_are_stopped_and_a_normal_plugin_keeps_working() {
    let sink: inlet_wasm::LogSink = Arc::new(Mutex::new(Vec::new()));
    let h = host(Some(sink.clone()));
    let red = load(&h, "redteam");
    let hn = PluginConnector::new(load(&h, "hackernews"));
    let server = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();

    // A normal plugin reads in the same process while the attacks run.
    let normal = {
        let hn = hn.clone();
        let config = hn_config(&server, 40);
        tokio::spawn(async move {
            let mut rows = 0;
            for _ in 0..3 {
                let (b, _) = read_all(
                    &hn,
                    config.clone(),
                    request("items", SyncMode::Incremental, 10),
                    None,
                )
                .await
                .unwrap();
                rows += b.iter().map(|b| b.num_rows()).sum::<usize>();
            }
            rows
        })
    };

    let red2 = red.clone();
    let echo = format!("http://127.0.0.1:{}/__echo", server.addr().port());
    let echo_by_name = format!("http://localhost:{}/__echo", server.addr().port());
    let redirect = format!("http://127.0.0.1:{}/__redirect", server.addr().port());
    let results = tokio::task::spawn_blocking(move || {
        let red = red2;
        // CPU: an infinite loop stops when the call's time limit runs out.
        let (r, took) = attack(&red, "loop", "", SandboxConfig { max_call_ms: 300, ..SandboxConfig::default() });
        assert_eq!(rule_of(&r), Rule::CpuLimit { millis: 300 });
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "loop ran {took:?}");

        // Memory: growth past the limit traps.
        let (r, took) = attack(&red, "memory", "", SandboxConfig { memory_mb: 32, ..SandboxConfig::default() });
        assert_eq!(rule_of(&r), Rule::MemoryLimit { bytes: 32 * 1024 * 1024 });
        assert!(took < Duration::from_secs(10));

        // A host the manifest does not declare, even if the operator allowed it.
        let (r, _) = attack(&red, "host", "", open_sandbox(&["evil.example.net"]));
        assert_eq!(rule_of(&r), Rule::HostNotDeclared { host: "evil.example.net".into() });

        // Cloud metadata: declared and allowed, but link-local.
        let (r, _) = attack(&red, "metadata", "", open_sandbox(&["169.254.169.254"]));
        assert_eq!(rule_of(&r), Rule::PrivateAddress { host: "169.254.169.254".into(), address: "169.254.169.254".into() });

        // Loopback, by address and by a name that resolves to it (checked after DNS).
        let (r, _) = attack(&red, "loopback", &echo, open_sandbox(&["127.0.0.1"]));
        assert_eq!(rule_of(&r).name(), "private-address");
        let (r, _) = attack(&red, "loopback", &echo_by_name, open_sandbox(&["localhost"]));
        assert!(matches!(rule_of(&r), Rule::PrivateAddress { ref host, .. } if host == "localhost"));
        // ... and the same request passes once the operator allows loopback: the rule,
        // not something else, is what stopped it.
        let allowed = SandboxConfig { allow_private: vec!["127.0.0.0/8".into(), "::1".into()], ..open_sandbox(&["localhost"]) };
        let (r, _) = attack(&red, "loopback", &echo_by_name, allowed);
        assert!(loot(r).starts_with("GET /__echo HTTP/1.1"));

        // No environment and no files: there is no WASI to ask.
        let (r, _) = attack(&red, "env_file", "", SandboxConfig::default());
        let got = loot(r);
        assert!(got.contains("env=Err") && got.contains("file=Err") && got.contains("cwd=Err"), "{got}");
        assert!(!got.contains("root:"));
        // Listing the environment makes std panic in a plugin: a crash, reported as such.
        let (r, _) = attack(&red, "env_vars", "", SandboxConfig::default());
        assert!(matches!(&r, Err(WasmError::Trap { plugin, call, .. }) if plugin == "redteam" && call == "next"), "{r:?}");

        // A secret goes out in the header but never comes back into the plugin.
        let secret = "s3cr3t-T0KEN-4-inlet";
        let sandbox = SandboxConfig {
            allow_private: vec!["127.0.0.1".into()],
            secrets: [("token".to_string(), inlet_core::secret::SecretValue::parse(secret))].into_iter().collect(),
            ..open_sandbox(&["127.0.0.1"])
        };
        let (r, _) = attack(&red, "secret", &echo, sandbox.clone());
        let got = loot(r);
        assert!(got.contains("authorization: Bearer ***") || got.contains("Authorization: Bearer ***"), "{got}");
        assert!(!got.contains(secret), "{got}");

        // Redirects are not followed by the host: the plugin gets the 302 itself (asking
        // again would go through the same checks).
        let got = loot(attack(&red, "secret", &redirect, sandbox).0);
        assert!(got.contains("moved") && got.contains("location=/__echo"), "{got}");
        assert!(!got.contains("GET /__echo"), "{got}");

        // An unknown secret name is a violation too.
        let no_secrets = SandboxConfig { allow_private: vec!["127.0.0.1".into()], ..open_sandbox(&["127.0.0.1"]) };
        let (r, _) = attack(&red, "secret", &echo, no_secrets);
        assert_eq!(rule_of(&r), Rule::UnknownSecret { name: "token".into() });
        secret.to_string()
    })
    .await
    .unwrap();

    let logs = sink.lock().unwrap().join("\n");
    assert!(logs.contains("redteam: stolen body"), "{logs}");
    assert!(!logs.contains(&results), "a secret reached the log: {logs}");

    // The normal plugin finished its reads untouched, and still works afterwards.
    assert_eq!(normal.await.unwrap(), 3 * 39);
    let (b, _) = read_all(
        &hn,
        hn_config(&server, 40),
        request("items", SyncMode::Incremental, 40),
        None,
    )
    .await
    .unwrap();
    assert_eq!(b.iter().map(|b| b.num_rows()).sum::<usize>(), 39);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_violation_through_the_source_api_names_plugin_and_rule() {
    let h = host(None);
    let red = PluginConnector::new(load(&h, "redteam"));
    let config = json!({"attack": "loop", "sandbox": {"max_call_ms": 200}});
    let e = read_all(
        &red,
        config,
        request("loot", SyncMode::FullRefresh, 10),
        None,
    )
    .await
    .unwrap_err();
    assert!(!e.is_transient());
    assert!(
        e.to_string()
            .starts_with("plugin `redteam` broke sandbox rule cpu-limit"),
        "{e}"
    );
}

#[test]
fn a_cached_plugin_instantiates_quickly_and_loads_from_the_cache() {
    let cache = tempfile::tempdir().unwrap();
    let h = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let first = h.load_dir(&plugin_dir("hackernews")).unwrap();
    assert!(!first.load.from_cache);
    let again = PluginHost::new(Some(cache.path().to_path_buf()))
        .unwrap()
        .load_dir(&plugin_dir("hackernews"))
        .unwrap();
    assert!(
        again.load.from_cache,
        "second load should come from the cache"
    );
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let mut i = again
            .instantiate(&SandboxConfig::default(), Vec::new())
            .unwrap();
        let _ = i.spec().unwrap();
        best = best.min(t.elapsed());
    }
    // The bar is 10 ms; debug test builds are far slower than release, so this
    // guards the order of magnitude (the benchmark measures release).
    assert!(
        best < Duration::from_millis(50),
        "instantiate + spec took {best:?}"
    );
}

#[test]
fn a_rust_component_importing_wasi_gets_the_locked_down_wasi() {
    // The red team built for wasm32-wasip2: Rust's std imports WASI 0.2 (as a Python
    // component does); the host links it locked down, so reading a file breaks the
    // filesystem rule and the environment is empty.
    let path = repo().join("connectors/plugins/redteam/wasi/plugin.wasm");
    let bytes = std::fs::read(&path).unwrap();
    let manifest = inlet_wasm::Manifest::parse(
        "name = \"redteam\"\nversion = \"0.1.0\"\ninterface = \"inlet:plugin@0.1.0\"",
        "test",
    )
    .unwrap();
    let red = host(None).load(manifest, &bytes).unwrap();
    let (r, _) = attack(&red, "env_file", "", SandboxConfig::default());
    assert_eq!(
        rule_of(&r),
        Rule::Filesystem {
            path: "/etc/passwd".into()
        }
    );
    let (r, _) = attack(&red, "env_vars", "", SandboxConfig::default());
    assert_eq!(loot(r), "", "the environment is empty");
}
