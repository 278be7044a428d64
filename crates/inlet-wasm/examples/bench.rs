//! Benchmark of the plugin host (bench/plugins.sh runs it in release):
//! compile time, cached load time, instantiate time, and records per second through the
//! Hacker News plugin reading items from a loopback server, end to end and without the
//! time spent in HTTP (the plugin's own work, comparable with the native build of the
//! same logic in connectors/plugins/hackernews/examples/native_bench.rs).
//!
//! `cargo run --release -p inlet-wasm --example bench -- N`; `BENCH_PLUGIN_DIR` picks
//! the plugin (default: the Rust Hacker News plugin; bench/plugins.sh runs the Python
//! port too). Peak RSS is the process's (`VmHWM`): the host, the compiled code and one
//! instance.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    time::{Duration, Instant},
};

use inlet_testkit::{ReplayServer, Reply, Req};
use inlet_wasm::{
    PluginHost, SandboxConfig,
    bindings::inlet::plugin::types::{self, Event},
    convert,
};

include!("../../../connectors/plugins/hackernews/examples/common/bench_item.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5000);
    let dir = std::env::var_os("BENCH_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../connectors/plugins/hackernews")
        });
    // The read runs in a second process of this program that only loads from the cache,
    // so its peak RSS is the host's plus one instance's, not the compiler's.
    if let Some(cache) = std::env::var_os("BENCH_READ_FROM_CACHE") {
        let host = PluginHost::new(Some(PathBuf::from(cache)))?;
        let warm = host.load_dir(&dir)?;
        assert!(warm.load.from_cache);
        return read(&warm, n);
    }
    let cache = tempfile::tempdir()?;

    let host = PluginHost::new(Some(cache.path().to_path_buf()))?;
    let cold = host.load_dir(&dir)?;
    println!("compile (cold, no cache): {:.1} ms", ms(cold.load.elapsed));
    let host = PluginHost::new(Some(cache.path().to_path_buf()))?;
    let warm = host.load_dir(&dir)?;
    assert!(warm.load.from_cache);
    println!(
        "load from cache (deserialize): {:.2} ms",
        ms(warm.load.elapsed)
    );

    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        let inst = warm.instantiate(
            &SandboxConfig {
                memory_mb: 256,
                ..SandboxConfig::default()
            },
            Vec::new(),
        )?;
        times.push(t.elapsed());
        drop(inst);
    }
    times.sort();
    println!(
        "instantiate a cached plugin: median {:.3} ms, p99 {:.3} ms (200 runs)",
        ms(times[100]),
        ms(times[197])
    );
    drop((host, warm, cold));
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg(n.to_string())
        .env("BENCH_READ_FROM_CACHE", cache.path())
        .env("BENCH_PLUGIN_DIR", &dir)
        .status()?;
    if !status.success() {
        return Err(format!("the read process failed: {status}").into());
    }
    Ok(())
}

/// Read `n` items through one instance of the cached plugin from a loopback server.
fn read(warm: &inlet_wasm::LoadedPlugin, n: i64) -> Result<(), Box<dyn std::error::Error>> {
    let mut rec = BTreeMap::new();
    rec.insert("/v0/maxitem.json".to_string(), serde_json::json!(n));
    for id in 1..=n {
        rec.insert(
            format!("/v0/item/{id}.json"),
            serde_json::from_str(&item(id))?,
        );
    }
    // A connection per item, as the Hacker News API and the native bench's server do:
    // the two sides compare the same HTTP work.
    let bodies: BTreeMap<String, String> =
        rec.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let server = ReplayServer::start(std::sync::Arc::new(move |req: &Req| {
        match bodies.get(&req.path_and_query()) {
            Some(body) => Reply::ok(body),
            None => Reply::status(404, "{\"error\":\"not recorded\"}"),
        }
        .header("content-type", "application/json")
        .header("connection", "close")
    }));
    let rss_before = status_kb("VmRSS");
    let sandbox: SandboxConfig = serde_json::from_value(serde_json::json!({
        "memory_mb": 256,
        "allow_hosts": ["hacker-news.firebaseio.com"],
        "allow_private": ["127.0.0.1"],
        "allow_http": true,
        "redirect": {"https://hacker-news.firebaseio.com": server.origin()},
    }))?;
    let started = Instant::now();
    let mut inst = warm.instantiate(&sandbox, Vec::new())?;
    let config = serde_json::json!({"initial_items": n}).to_string();
    let streams = inst.discover(&config)?.map_err(|e| format!("{e:?}"))?;
    let schema = convert::stream(&streams[0])?.schema;
    inst.open(&types::ReadRequest {
        config,
        stream: "items".into(),
        incremental: true,
        cursor_field: None,
        state: None,
        batch_rows: 500,
    })?
    .map_err(|e| format!("{e:?}"))?;
    let mut rows = 0usize;
    let mut converting = Duration::ZERO;
    while let Some(events) = inst.next()?.map_err(|e| format!("{e:?}"))? {
        for e in events {
            if let Event::Batch(b) = e {
                let t = Instant::now();
                rows += convert::batch(&schema, b)?.num_rows();
                converting += t.elapsed();
            }
        }
    }
    println!(
        "  of which conversion to Arrow on the host: {:.3} s",
        converting.as_secs_f64()
    );
    let secs = started.elapsed().as_secs_f64();
    let http = inst.http_time().as_secs_f64();
    let compute = secs - http;
    println!(
        "plugin: {rows} records in {secs:.3} s = {:.0} records/s end to end; without HTTP time ({http:.3} s): {compute:.3} s = {:.0} records/s (includes conversion to Arrow)",
        rows as f64 / secs,
        rows as f64 / compute
    );
    println!(
        "peak RSS of the read process (host, plugin loaded from the cache, one instance): {} MB; before the instance: {} MB",
        status_kb("VmHWM") / 1024,
        rss_before / 1024
    );
    Ok(())
}

/// A `kB` line of /proc/self/status (0 where there is none).
fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
