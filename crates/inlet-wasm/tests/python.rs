//! Python plugins (CPython inside a component built by componentize-py) in the host: the
//! Hacker News port reads the same recording into the same batches as the Rust plugin, and
//! the Python red team breaks each sandbox rule (files, environment, sockets, name
//! lookups, hosts, metadata address, CPU, memory, output, secrets) while a normal plugin
//! keeps working in the same process. Uses the components kept in
//! connectors/plugins/<name>/plugin.wasm (`scripts/build-plugins.sh` rebuilds them when
//! componentize-py can be installed).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::{
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use arrow_array::RecordBatch;
use futures::StreamExt;
use inlet_core::{Connector, Partition, ReadEvent, ReadRequest, SourceContext, SyncMode};
use inlet_testkit::ReplayServer;
use inlet_wasm::{
    LoadedPlugin, PluginConnector, PluginHost, Rule, SandboxConfig, WasmError,
    bindings::inlet::plugin::types,
};
use serde_json::{Value, json};

const HN: &str = "https://hacker-news.firebaseio.com";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn plugin_dir(name: &str) -> PathBuf {
    std::env::var_os("INLET_PLUGIN_FIXTURES")
        .map(|d| PathBuf::from(d).join(name))
        .unwrap_or_else(|| repo().join("connectors/plugins").join(name))
}

/// One host for the whole file, with a compile cache: a Python component takes seconds
/// to compile, so every test shares the compiled code.
fn shared() -> &'static (PluginHost, inlet_wasm::LogSink) {
    static HOST: OnceLock<(PluginHost, inlet_wasm::LogSink)> = OnceLock::new();
    HOST.get_or_init(|| {
        let cache = std::env::temp_dir().join("inlet-wasm-python-tests-cache");
        let sink: inlet_wasm::LogSink = Arc::new(Mutex::new(Vec::new()));
        let h = PluginHost::new(Some(cache))
            .unwrap()
            .with_log_sink(sink.clone());
        (h, sink)
    })
}

fn load(name: &str) -> LoadedPlugin {
    shared().0.load_dir(&plugin_dir(name)).unwrap()
}

fn ctx() -> SourceContext {
    SourceContext {
        connection: "test".into(),
        base_dir: std::env::temp_dir(),
    }
}

fn hn_config(server: &ReplayServer, initial: i64) -> Value {
    json!({
        "initial_items": initial,
        "sandbox": {
            "allow_hosts": ["hacker-news.firebaseio.com"],
            "allow_private": ["127.0.0.1"],
            "allow_http": true,
            "memory_mb": 256,
            "redirect": { HN: server.origin() },
        }
    })
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

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_hacker_news_plugin_lands_what_the_rust_one_lands() {
    let server = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();
    let rust = PluginConnector::new(load("hackernews"));
    let python = PluginConnector::new(load("hackernews-py"));
    for (stream, mode) in [
        ("items", SyncMode::Incremental),
        ("top_stories", SyncMode::FullRefresh),
    ] {
        let (want, want_cp) = read_all(
            &rust,
            hn_config(&server, 40),
            request(stream, mode, 10),
            None,
        )
        .await
        .unwrap();
        let (got, got_cp) = read_all(
            &python,
            hn_config(&server, 40),
            request(stream, mode, 10),
            None,
        )
        .await
        .unwrap();
        assert!(rows(&want) > 0, "{stream}: the recording has rows");
        assert_eq!(rows(&got), rows(&want), "{stream}");
        assert_eq!(got_cp, want_cp, "{stream}: the same checkpoints");
        let want = arrow_select::concat::concat_batches(&want[0].schema(), &want).unwrap();
        let got = arrow_select::concat::concat_batches(&got[0].schema(), &got).unwrap();
        assert_eq!(got.schema(), want.schema(), "{stream}: the same schema");
        assert_eq!(got, want, "{stream}: the same values, row by row");
    }
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
            assert_eq!(plugin, "redteam-py");
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

fn sandbox(hosts: &[&str]) -> SandboxConfig {
    SandboxConfig {
        allow_hosts: hosts.iter().map(|s| s.to_string()).collect(),
        allow_http: true,
        memory_mb: 256,
        ..SandboxConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_red_team_plugins_are_stopped_and_a_normal_plugin_keeps_working() {
    let red = load("redteam-py");
    let hn = PluginConnector::new(load("hackernews-py"));
    let server = ReplayServer::from_file(
        &repo().join("connectors/plugins/hackernews/testdata/replay-1.json"),
    )
    .unwrap();

    // A normal (Python) plugin reads in the same process while the attacks run.
    let normal = {
        let hn = hn.clone();
        let config = hn_config(&server, 40);
        tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..3 {
                let (b, _) = read_all(
                    &hn,
                    config.clone(),
                    request("items", SyncMode::Incremental, 10),
                    None,
                )
                .await
                .unwrap();
                n += rows(&b);
            }
            n
        })
    };

    let echo = format!("http://127.0.0.1:{}/__echo", server.addr().port());
    let host_env: Vec<String> = ["HOME", "PATH", "USER", "CARGO_HOME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .filter(|v| v.len() > 3)
        .collect();
    let red2 = red.clone();
    let echo2 = echo.clone();
    tokio::task::spawn_blocking(move || {
        let red = red2;
        // Files: opening one, and listing a directory, break the filesystem rule.
        let (r, _) = attack(&red, "passwd", "", sandbox(&[]));
        assert_eq!(
            rule_of(&r),
            Rule::Filesystem {
                path: "/etc/passwd".into()
            }
        );
        let (r, _) = attack(&red, "listdir", "", sandbox(&[]));
        assert_eq!(rule_of(&r), Rule::Filesystem { path: "/".into() });

        // The environment is empty: nothing of the host's leaks in (what the plugin sees
        // is what componentize-py set inside the component when it was built).
        let (r, _) = attack(&red, "environ", "", sandbox(&[]));
        let got = loot(r);
        for value in &host_env {
            assert!(
                !got.contains(value.as_str()),
                "the host's {value} leaked: {got}"
            );
        }

        // Sockets and name lookups.
        let (r, _) = attack(&red, "socket", "", sandbox(&[]));
        assert_eq!(rule_of(&r), Rule::Socket { kind: "tcp".into() });
        let (r, _) = attack(&red, "resolve", "", sandbox(&[]));
        assert_eq!(
            rule_of(&r),
            Rule::NameLookup {
                name: "example.com".into()
            }
        );

        // Hosts: one the manifest does not declare; the metadata address.
        let (r, _) = attack(&red, "host", "", sandbox(&["evil.example.net"]));
        assert_eq!(
            rule_of(&r),
            Rule::HostNotDeclared {
                host: "evil.example.net".into()
            }
        );
        let (r, _) = attack(&red, "metadata", "", sandbox(&["169.254.169.254"]));
        assert_eq!(
            rule_of(&r),
            Rule::PrivateAddress {
                host: "169.254.169.254".into(),
                address: "169.254.169.254".into()
            }
        );

        // CPU, memory, output.
        let (r, took) = attack(
            &red,
            "loop",
            "",
            SandboxConfig {
                max_call_ms: 300,
                ..sandbox(&[])
            },
        );
        assert_eq!(rule_of(&r), Rule::CpuLimit { millis: 300 });
        assert!(took < Duration::from_secs(5), "loop ran {took:?}");
        let (r, took) = attack(
            &red,
            "memory",
            "",
            SandboxConfig {
                memory_mb: 96,
                ..sandbox(&[])
            },
        );
        assert_eq!(
            rule_of(&r),
            Rule::MemoryLimit {
                bytes: 96 * 1024 * 1024
            }
        );
        assert!(took < Duration::from_secs(20), "memory took {took:?}");
        let (r, _) = attack(&red, "print", "", sandbox(&[]));
        assert_eq!(
            rule_of(&r),
            Rule::OutputLimit {
                bytes: inlet_wasm::wasi::OUTPUT_LIMIT as u64
            }
        );

        // A secret the connection does not define.
        let open = SandboxConfig {
            allow_private: vec!["127.0.0.1".into()],
            ..sandbox(&["127.0.0.1"])
        };
        let (r, _) = attack(&red, "secret", &echo2, open);
        assert_eq!(
            rule_of(&r),
            Rule::UnknownSecret {
                name: "token".into()
            }
        );

        // The plugin that broke nothing still works.
        assert_eq!(loot(attack(&red, "none", "", sandbox(&[])).0), "fine");
    })
    .await
    .unwrap();

    // Printed lines became log lines of the plugin, bounded.
    let logs = shared().1.lock().unwrap().clone();
    let printed: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with("redteam-py: 0") && l.ends_with("xxx"))
        .collect();
    assert!(printed.len() > 100, "print() reaches the log, a line each");
    // 1 MiB of 1,009-byte lines, then the rule.
    assert!(
        printed.len() <= 1_040,
        "{} lines: output is bounded",
        printed.len()
    );

    assert_eq!(normal.await.unwrap(), 3 * 39);
}

#[test]
fn a_cached_python_plugin_loads_and_instantiates_quickly() {
    let cache = tempfile::tempdir().unwrap();
    let h = PluginHost::new(Some(cache.path().to_path_buf())).unwrap();
    let first = h.load_dir(&plugin_dir("hackernews-py")).unwrap();
    assert!(!first.load.from_cache);
    let again = PluginHost::new(Some(cache.path().to_path_buf()))
        .unwrap()
        .load_dir(&plugin_dir("hackernews-py"))
        .unwrap();
    assert!(
        again.load.from_cache,
        "second load should come from the cache"
    );
    let sandbox = SandboxConfig {
        memory_mb: 256,
        ..SandboxConfig::default()
    };
    let mut best = Duration::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        let mut i = again.instantiate(&sandbox, Vec::new()).unwrap();
        let spec = i.spec().unwrap();
        assert!(spec.contains("initial_items"), "{spec}");
        best = best.min(t.elapsed());
    }
    // The bar (cached load + instantiation under 50 ms) is measured in release
    // by bench/plugins.sh; this guards the order of magnitude in a test build.
    assert!(
        again.load.elapsed + best < Duration::from_millis(500),
        "load {:?} + instantiate {best:?}",
        again.load.elapsed
    );
}

/// A component of the plugin world plus one more import, `extra` (an interface of a WIT
/// package `pkg`), its functions doing nothing.
fn component_importing(pkg: &str, world: &str) -> Vec<u8> {
    let mut resolve = wit_parser::Resolve::default();
    resolve
        .push_str("plugin.wit", include_str!("../wit/plugin.wit"))
        .unwrap();
    let pkg = resolve.push_str("extra.wit", pkg).unwrap();
    let world = resolve.select_world(&[pkg], Some(world)).unwrap();
    let mut module =
        wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

#[test]
fn a_component_importing_more_than_the_wasi_set_is_refused_at_load() {
    let manifest = || {
        inlet_wasm::Manifest::parse(
            "name = \"evil\"\nversion = \"0.1.0\"\ninterface = \"inlet:plugin@0.1.0\"",
            "test",
        )
        .unwrap()
    };
    let cases = [
        // A raw network interface of its own.
        (
            "package evil:net@0.1.0;\ninterface raw { send: func(to: string, data: list<u8>); }\nworld p { include inlet:plugin/plugin@0.1.0; import raw; }",
            "evil:net/raw@0.1.0",
        ),
        // WASI beyond a libc's: outgoing HTTP that would bypass the host's checks.
        (
            "package wasi:http@0.2.0;\ninterface outgoing-handler { handle: func(url: string) -> u32; }\nworld p { include inlet:plugin/plugin@0.1.0; import outgoing-handler; }",
            "wasi:http/outgoing-handler@0.2.0",
        ),
    ];
    for (wit, import) in cases {
        let component = component_importing(wit, "p");
        match shared().0.load(manifest(), &component).unwrap_err() {
            WasmError::Violation {
                plugin,
                rule: Rule::ForbiddenImport { import: got },
            } => {
                assert_eq!(plugin, "evil");
                assert_eq!(got, import);
            }
            other => panic!("expected a forbidden import, got {other}"),
        }
    }
}
