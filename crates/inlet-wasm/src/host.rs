//! The engine, the compiled-plugin cache, and one sandboxed instance (one store).

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use sha2::{Digest, Sha256};
use wasmtime::{
    Engine, ResourceLimiter, Store, UpdateDeadline,
    component::{Component, HasSelf, Linker, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::{
    Manifest, Rule, WasmError,
    bindings::{
        Plugin, PluginPre,
        inlet::plugin::{host, types},
    },
    net::PluginNet,
    sandbox::SandboxConfig,
    wasi::{self, OutputBudget},
};

/// Where log lines of plugins also go (besides `tracing`), already redacted.
pub type LogSink = Arc<Mutex<Vec<String>>>;

/// The plugin host: one wasmtime engine shared by every plugin, a linker that offers only
/// the `inlet:plugin/host` interface and the locked-down WASI of [`crate::wasi`], and a
/// cache of compiled plugins on disk.
#[derive(Clone)]
pub struct PluginHost {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache_dir: Option<PathBuf>,
    log_sink: Option<LogSink>,
    /// The empty directory WASI plugins see as `/` (none: their opens fail in their libc).
    empty_root: Option<Arc<PathBuf>>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

/// A plugin compiled and linked, ready to instantiate.
#[derive(Clone)]
pub struct LoadedPlugin {
    /// Its manifest.
    pub manifest: Manifest,
    /// How it was obtained: `compiled` or `cache`, and how long it took.
    pub load: LoadInfo,
    pre: PluginPre<HostState>,
    host: PluginHost,
    /// Whether the component imports WASI (a Python plugin): its instances get the
    /// locked-down WASI context.
    uses_wasi: bool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("manifest", &self.manifest)
            .field("load", &self.load)
            .finish_non_exhaustive()
    }
}

/// How a plugin was loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadInfo {
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// Time to compile or deserialize.
    pub elapsed: Duration,
}

impl PluginHost {
    /// A host caching compiled plugins in `cache_dir` (none: compile on every load).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, WasmError> {
        let mut config = wasmtime::Config::new();
        // The CPU limit is an epoch deadline: a ticker thread advances the engine's epoch
        // every EPOCH_TICK, and compiled code checks it at loop heads and calls (cheaper
        // than fuel metering, which cost about 15% of a plugin's own work here).
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        let engine = Engine::new(&config).map_err(|e| WasmError::Load {
            plugin: "(engine)".into(),
            message: format!("cannot start wasmtime: {e}"),
        })?;
        let mut linker: Linker<HostState> = Linker::new(&engine);
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s).map_err(
            |e| WasmError::Load {
                plugin: "(engine)".into(),
                message: format!("cannot define the host interface: {e}"),
            },
        )?;
        wasi::add_to_linker(&mut linker).map_err(|e| WasmError::Load {
            plugin: "(engine)".into(),
            message: format!("cannot define the WASI interfaces: {e}"),
        })?;
        // Best effort: without it a WASI plugin's file opens fail inside its libc rather
        // than breaking the filesystem rule.
        let empty_root = wasi::empty_root(cache_dir.as_deref())
            .map_err(|e| tracing::warn!(error = %e, "no empty root for WASI plugins"))
            .ok()
            .map(Arc::new);
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("inlet-plugin-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| WasmError::Load {
                plugin: "(engine)".into(),
                message: format!("cannot start the epoch ticker: {e}"),
            })?;
        Ok(PluginHost {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            log_sink: None,
            empty_root,
        })
    }

    /// Also send plugin log lines (redacted) to `sink`.
    pub fn with_log_sink(mut self, sink: LogSink) -> Self {
        self.log_sink = Some(sink);
        self
    }

    /// Load the plugin in `dir` (`plugin.toml` + its wasm file).
    pub fn load_dir(&self, dir: &Path) -> Result<LoadedPlugin, WasmError> {
        let (manifest, wasm) = Manifest::load(dir)?;
        let bytes = std::fs::read(&wasm).map_err(|e| WasmError::Load {
            plugin: manifest.name.clone(),
            message: format!("cannot read {}: {e}", wasm.display()),
        })?;
        self.load(manifest, &bytes)
    }

    /// Load a plugin from its manifest and component bytes.
    pub fn load(&self, manifest: Manifest, bytes: &[u8]) -> Result<LoadedPlugin, WasmError> {
        let name = manifest.name.clone();
        let load_err = |message: String| WasmError::Load {
            plugin: name.clone(),
            message,
        };
        let started = Instant::now();
        let (component, from_cache) = self.compile_cached(&name, bytes)?;
        let elapsed = started.elapsed();
        // Deny by default: the imports allowed are the host interface (and the types
        // interface it uses) and the locked-down WASI 0.2 interfaces of a libc. Anything
        // else is refused before anything runs.
        let ty = component.component_type();
        let mut uses_wasi = false;
        for (import, _) in ty.imports(&self.engine) {
            let inlet = import.starts_with("inlet:plugin/host@0.1")
                || import.starts_with("inlet:plugin/types@0.1");
            let wasi = wasi::allowed_import(import);
            uses_wasi |= wasi::is_wasi(import);
            if !(inlet || wasi) {
                return Err(WasmError::Violation {
                    plugin: name.clone(),
                    rule: Rule::ForbiddenImport {
                        import: import.to_string(),
                    },
                });
            }
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| load_err(format!("does not implement {}: {e}", crate::INTERFACE)))?;
        Ok(LoadedPlugin {
            manifest,
            load: LoadInfo {
                from_cache,
                elapsed,
            },
            pre,
            host: self.clone(),
            uses_wasi,
        })
    }

    fn compile_cached(&self, name: &str, bytes: &[u8]) -> Result<(Component, bool), WasmError> {
        let load_err = |message: String| WasmError::Load {
            plugin: name.to_string(),
            message,
        };
        let path = self.cache_dir.as_ref().map(|dir| {
            let digest = hex::encode(&Sha256::digest(bytes)[..16]);
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            dir.join(format!("{name}-{digest}-{:016x}.cwasm", h.finish()))
        });
        if let Some(p) = &path
            && p.exists()
            && let Ok(c) = deserialize_cached(&self.engine, p)
        {
            return Ok((c, true));
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| load_err(format!("not a valid component: {e}")))?;
        if let Some(p) = &path {
            // Best effort: a cache that cannot be written only costs a compile next time.
            let _ = write_atomic(p, &compiled);
            if let Ok(c) = deserialize_cached(&self.engine, p) {
                return Ok((c, false));
            }
        }
        Component::new(&self.engine, bytes)
            .map(|c| (c, false))
            .map_err(|e| load_err(format!("not a valid component: {e}")))
    }
}

/// Load a compiled plugin from the cache.
///
/// `Component::deserialize_file` is `unsafe` because it maps machine code: the file must
/// have been produced by `Engine::precompile_component` of a compatible engine. The cache
/// holds only files this function's caller wrote, named after the wasm's SHA-256 and the
/// engine's compatibility hash (wasmtime also checks version and settings in the file
/// header). The cache directory must not be writable by anyone who may not run code as
/// inlet; that is the one assumption, documented in the README. This is the crate's only
/// `unsafe`.
#[allow(unsafe_code)]
fn deserialize_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see above: the file was written by `compile_cached` from
    // `precompile_component` for an engine with the same compatibility hash.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// How often the engine's epoch advances: the granularity of the per-call time limit.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// CPU time used by the calling thread so far.
fn thread_cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        t.tv_sec.max(0) as u64,
        t.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// What an instance's host functions see: the network (policy, secrets, client), the
/// limits, and (for WASI plugins) the locked-down WASI context.
pub struct HostState {
    plugin: String,
    net: Arc<PluginNet>,
    memory_limit: usize,
    violation: Option<Rule>,
    log_sink: Option<LogSink>,
    http_time: Duration,
    /// The time limit of one call, host HTTP time not counted.
    /// The CPU time one call may use.
    call_limit: Duration,
    /// The thread's CPU time when the call began (calls run on the calling thread).
    call_cpu_start: Duration,
    wasi: WasiCtx,
    table: ResourceTable,
    /// What the instance wrote to stdout and stderr (WASI plugins).
    output: Arc<Mutex<OutputBudget>>,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("plugin", &self.plugin)
            .field("memory_limit", &self.memory_limit)
            .field("violation", &self.violation)
            .field("call_limit", &self.call_limit)
            .finish_non_exhaustive()
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    fn redact(&self, text: &str) -> String {
        self.net.redact(text)
    }

    /// Record a violation and abort the call: the plugin cannot catch it.
    pub(crate) fn violate(&mut self, rule: Rule) -> wasmtime::Error {
        let msg = rule.to_string();
        self.violation = Some(rule);
        wasmtime::format_err!("sandbox: {msg}")
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(self.violate(Rule::MemoryLimit {
                bytes: self.memory_limit as u64,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn http_fetch(
        &mut self,
        request: host::HttpRequest,
    ) -> wasmtime::Result<Result<host::HttpResponse, types::PluginError>> {
        let started = Instant::now();
        let result = self.net.fetch(request);
        let took = started.elapsed();
        self.http_time += took;
        result.map_err(|rule| self.violate(rule))
    }

    fn http_fetch_many(
        &mut self,
        requests: Vec<host::HttpRequest>,
    ) -> wasmtime::Result<Vec<Result<host::HttpResponse, types::PluginError>>> {
        let started = Instant::now();
        let result = self.net.fetch_many(requests);
        self.http_time += started.elapsed();
        result.map_err(|rule| self.violate(rule))
    }

    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let line = self.redact(&message);
        let plugin = &self.plugin;
        match level {
            host::LogLevel::Debug => tracing::debug!(plugin, "{line}"),
            host::LogLevel::Info => tracing::info!(plugin, "{line}"),
            host::LogLevel::Warn => tracing::warn!(plugin, "{line}"),
            host::LogLevel::Error => tracing::error!(plugin, "{line}"),
        }
        if let Some(sink) = &self.log_sink
            && let Ok(mut s) = sink.lock()
        {
            s.push(format!("{plugin}: {line}"));
        }
        Ok(())
    }

    fn now_millis(&mut self) -> wasmtime::Result<u64> {
        Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0))
    }
}

pub use crate::net::Secrets;

/// One instance of a plugin in its own store, with its own memory and limits. Calls are
/// blocking; after a trap or a violation the instance refuses further calls.
pub struct PluginInstance {
    store: Store<HostState>,
    bindings: Plugin,
    plugin: String,
    call_limit: Duration,
    broken: bool,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin)
            .field("call_limit", &self.call_limit)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// A fresh instance under `sandbox` with resolved `secrets` (and its own HTTP client).
    pub fn instantiate(
        &self,
        sandbox: &SandboxConfig,
        secrets: Secrets,
    ) -> Result<PluginInstance, WasmError> {
        let net = Arc::new(PluginNet::new(&self.manifest.hosts, sandbox, secrets));
        self.instantiate_with(sandbox, net)
    }

    /// A fresh instance sharing `net` (the connection's HTTP client, limits and secrets)
    /// with the connection's other instances.
    pub fn instantiate_with(
        &self,
        sandbox: &SandboxConfig,
        net: Arc<PluginNet>,
    ) -> Result<PluginInstance, WasmError> {
        let name = self.manifest.name.clone();
        let output = Arc::new(Mutex::new(OutputBudget::default()));
        let wasi = if self.uses_wasi {
            wasi::context(
                &name,
                self.host.empty_root.as_deref().map(PathBuf::as_path),
                net.clone(),
                self.host.log_sink.clone(),
                output.clone(),
            )
        } else {
            WasiCtx::builder().build()
        };
        let state = HostState {
            plugin: name.clone(),
            net,
            memory_limit: (sandbox.memory_mb as usize).saturating_mul(1024 * 1024),
            violation: None,
            log_sink: self.host.log_sink.clone(),
            http_time: Duration::ZERO,
            call_limit: Duration::from_millis(sandbox.max_call_ms),
            call_cpu_start: thread_cpu_time(),
            wasi,
            table: ResourceTable::new(),
            output,
        };
        let call_limit = state.call_limit;
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        // At each deadline: the CPU time the calling thread has used since the call began
        // (waiting on host HTTP uses none) against the limit; within it, a new deadline
        // at the remaining time (CPU time never runs faster than the clock), past it a
        // cpu-limit violation.
        store.epoch_deadline_callback(|mut ctx| {
            let s = ctx.data_mut();
            let used = thread_cpu_time().saturating_sub(s.call_cpu_start);
            if used < s.call_limit {
                return Ok(UpdateDeadline::Continue(ticks(s.call_limit - used)));
            }
            let millis = s.call_limit.as_millis() as u64;
            Err(s.violate(Rule::CpuLimit { millis }))
        });
        store.set_epoch_deadline(ticks(call_limit));
        let mut inst = PluginInstance {
            bindings: match self.pre.instantiate(&mut store) {
                Ok(b) => b,
                Err(e) => {
                    return Err(classify(&name, "instantiate", &mut store, e));
                }
            },
            store,
            plugin: name,
            call_limit,
            broken: false,
        };
        inst.broken = false;
        Ok(inst)
    }
}

fn classify(
    plugin: &str,
    call: &str,
    store: &mut Store<HostState>,
    e: wasmtime::Error,
) -> WasmError {
    let output = store
        .data()
        .output
        .lock()
        .ok()
        .and_then(|mut o| o.exceeded.take());
    if let Some(rule) = store.data_mut().violation.take().or(output) {
        return WasmError::Violation {
            plugin: plugin.to_string(),
            rule,
        };
    }
    WasmError::Trap {
        plugin: plugin.to_string(),
        call: call.to_string(),
        message: store.data().redact(&format!("{e:#}")),
    }
}

impl PluginInstance {
    fn call<R>(
        &mut self,
        name: &str,
        f: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, WasmError> {
        if self.broken {
            return Err(WasmError::Trap {
                plugin: self.plugin.clone(),
                call: name.to_string(),
                message: "the instance was stopped by an earlier error".into(),
            });
        }
        let state = self.store.data_mut();
        state.violation = None;
        state.call_cpu_start = thread_cpu_time();
        self.store.set_epoch_deadline(ticks(self.call_limit));
        match f(&self.bindings, &mut self.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.broken = true;
                Err(classify(&self.plugin, name, &mut self.store, e))
            }
        }
    }

    /// Time spent in host HTTP requests so far (for benchmarks: the rest is the plugin).
    pub fn http_time(&self) -> Duration {
        self.store.data().http_time
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// `spec`.
    pub fn spec(&mut self) -> Result<String, WasmError> {
        self.call("spec", |b, s| b.inlet_plugin_source().call_spec(s))
    }

    /// `validate`.
    pub fn validate(&mut self, config: &str) -> Result<Result<(), types::PluginError>, WasmError> {
        self.call("validate", |b, s| {
            b.inlet_plugin_source().call_validate(s, config)
        })
    }

    /// `check`.
    pub fn check(
        &mut self,
        config: &str,
    ) -> Result<Result<Vec<types::CheckItem>, types::PluginError>, WasmError> {
        self.call("check", |b, s| {
            b.inlet_plugin_source().call_check(s, config)
        })
    }

    /// `discover`.
    pub fn discover(
        &mut self,
        config: &str,
    ) -> Result<Result<Vec<types::StreamInfo>, types::PluginError>, WasmError> {
        self.call("discover", |b, s| {
            b.inlet_plugin_source().call_discover(s, config)
        })
    }

    /// `open`.
    pub fn open(
        &mut self,
        request: &types::ReadRequest,
    ) -> Result<Result<(), types::PluginError>, WasmError> {
        self.call("open", |b, s| b.inlet_plugin_source().call_open(s, request))
    }

    /// `next`.
    #[allow(clippy::type_complexity, reason = "the WIT signature")]
    #[allow(clippy::should_implement_trait, reason = "named after the WIT export")]
    pub fn next(
        &mut self,
    ) -> Result<Result<Option<Vec<types::Event>>, types::PluginError>, WasmError> {
        self.call("next", |b, s| b.inlet_plugin_source().call_next(s))
    }
}
