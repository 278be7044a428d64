//! Plugins as [`Connector`]s and [`Source`]s: registered by name like any built-in.

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use inlet_core::{
    Catalog, CheckReport, Connector, ConnectorInfo, ConnectorKind, EventStream, Partition,
    ReadEvent, ReadRequest, Source, SourceContext, SourceError, SyncMode, producer::Emitter,
};
use serde_json::Value;

use crate::{
    LoadedPlugin, PluginHost, PluginInstance, WasmError,
    bindings::inlet::plugin::types::{self, PluginError},
    convert,
    host::Secrets,
    net::PluginNet,
    sandbox::SandboxConfig,
};

/// A plugin known by name. Its `config` table is the plugin's own configuration plus a
/// `sandbox` table the host reads (see [`SandboxConfig`]) and the plugin never sees.
#[derive(Debug, Clone)]
pub struct PluginConnector {
    plugin: LoadedPlugin,
}

impl PluginConnector {
    /// A connector for a loaded plugin.
    pub fn new(plugin: LoadedPlugin) -> Self {
        PluginConnector { plugin }
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &LoadedPlugin {
        &self.plugin
    }

    fn name(&self) -> &str {
        &self.plugin.manifest.name
    }
}

/// Split a connection's config into the plugin's part (JSON text) and the sandbox.
fn split(config: &Value) -> Result<(String, SandboxConfig), SourceError> {
    let mut plugin = config.clone();
    let sandbox = match plugin.as_object_mut() {
        Some(o) => o.remove("sandbox"),
        None if config.is_null() => {
            plugin = Value::Object(Default::default());
            None
        }
        None => return Err(SourceError::config("config", "must be a table")),
    };
    let sandbox = SandboxConfig::from_value(sandbox.as_ref())?;
    Ok((plugin.to_string(), sandbox))
}

/// A plugin's own error as a source error naming the plugin.
pub fn plugin_error(plugin: &str, stream: Option<&str>, e: PluginError) -> SourceError {
    let at = match stream {
        Some(s) => format!("plugin {plugin} stream {s}"),
        None => format!("plugin {plugin}"),
    };
    match e {
        PluginError::Config(f) => {
            SourceError::config(f.field, format!("{} (plugin {plugin})", f.message))
        }
        PluginError::Auth(m) => SourceError::Auth {
            resource: at,
            message: m,
        },
        PluginError::Unavailable(m) => SourceError::Unavailable {
            resource: at,
            message: m,
        },
        PluginError::Data(m) => SourceError::data(at, m),
        PluginError::State(m) => {
            SourceError::state(stream.unwrap_or("?"), format!("{m} (plugin {plugin})"))
        }
        PluginError::UnknownStream(m) => SourceError::UnknownStream {
            stream: stream.unwrap_or("?").to_string(),
            message: format!("{m} (plugin {plugin})"),
        },
        PluginError::Denied(m) | PluginError::Other(m) => SourceError::other(format!("{at}: {m}")),
    }
}

// Not a `TypedConnector`: a plugin's configuration has no Rust type on the host side. Its
// schema comes from the plugin at run time (`spec`), and the plugin validates its own
// part; the host only splits off and parses the `sandbox` table.
#[async_trait]
impl Connector for PluginConnector {
    fn info(&self) -> ConnectorInfo {
        let m = &self.plugin.manifest;
        ConnectorInfo {
            name: m.name.clone(),
            version: m.version.clone(),
            kind: ConnectorKind::Plugin,
            description: m.description.clone(),
            hosts: m.hosts.clone(),
        }
    }

    fn spec(&self) -> Value {
        let spec = self
            .plugin
            .instantiate(&SandboxConfig::default(), Vec::new())
            .and_then(|mut i| i.spec());
        let mut v = match spec {
            Ok(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Err(e) => serde_json::json!({"error": e.to_string()}),
        };
        if let Some(props) = v.get_mut("properties").and_then(Value::as_object_mut) {
            props.insert(
                "sandbox".into(),
                serde_json::json!({
                    "type": "object",
                    "description": "Read by inlet, not the plugin: allow_hosts, allow_private, allow_http, memory_mb, max_call_ms, max_response_bytes, timeout_secs, max_retries, max_rate_limit_wait_secs, max_requests_per_second, secrets, redirect",
                }),
            );
        }
        v
    }

    fn validate(&self, config: &Value) -> Result<(), SourceError> {
        let (plugin_config, sandbox) = split(config)?;
        // Validation checks the config and nothing else: no network (it runs on the
        // caller's thread, which must not wait on requests), so any request is a
        // host-not-allowed violation. `check` is where a plugin reaches its API.
        let offline = SandboxConfig {
            allow_hosts: Vec::new(),
            ..sandbox
        };
        let mut inst = self.plugin.instantiate(&offline, Vec::new())?;
        inst.validate(&plugin_config)?
            .map_err(|e| plugin_error(self.name(), None, e))
    }

    async fn build(
        &self,
        config: Value,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let (plugin_config, sandbox) = split(&config)?;
        let mut secrets: Secrets = Vec::new();
        for (name, value) in &sandbox.secrets {
            secrets.push((
                name.clone(),
                value.resolve(&format!("sandbox.secrets.{name}"), &ctx.base_dir)?,
            ));
        }
        let net = Arc::new(PluginNet::new(
            &self.plugin.manifest.hosts,
            &sandbox,
            secrets,
        ));
        Ok(Arc::new(PluginSource {
            plugin: self.plugin.clone(),
            config: plugin_config,
            sandbox,
            net,
            connection: ctx.connection,
        }))
    }
}

/// A configured plugin connection. Every call gets a fresh instance (its own store,
/// memory and limits); the instances share one network (HTTP client, per-host limits).
#[derive(Clone)]
pub struct PluginSource {
    plugin: LoadedPlugin,
    config: String,
    sandbox: SandboxConfig,
    net: Arc<PluginNet>,
    connection: String,
}

impl std::fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginSource")
            .field("plugin", &self.plugin.manifest.name)
            .field("connection", &self.connection)
            .field(
                "secrets",
                &self
                    .net
                    .secrets()
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl PluginSource {
    fn name(&self) -> &str {
        &self.plugin.manifest.name
    }

    fn instance(&self) -> Result<PluginInstance, WasmError> {
        self.plugin
            .instantiate_with(&self.sandbox, self.net.clone())
    }

    /// Run blocking plugin work off the async threads.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(PluginSource) -> Result<R, SourceError> + Send + 'static,
    ) -> Result<R, SourceError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| SourceError::other(format!("plugin task failed: {e}")))?
    }

    fn catalog_blocking(&self, inst: &mut PluginInstance) -> Result<Catalog, SourceError> {
        let streams = inst
            .discover(&self.config)?
            .map_err(|e| plugin_error(self.name(), None, e))?;
        let mut out = Vec::with_capacity(streams.len());
        for s in &streams {
            out.push(
                convert::stream(s)
                    .map_err(|m| SourceError::data(format!("plugin {}", self.name()), m))?,
            );
        }
        Ok(Catalog { streams: out })
    }
}

#[async_trait]
impl Source for PluginSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        self.blocking(|me| {
            let mut inst = me.instance()?;
            let items = inst
                .check(&me.config)?
                .map_err(|e| plugin_error(me.name(), None, e))?;
            let mut report = CheckReport::default();
            report.push(
                "plugin loaded",
                true,
                format!(
                    "{} {} (hosts: {})",
                    me.name(),
                    me.plugin.manifest.version,
                    me.plugin.manifest.hosts.join(", ")
                ),
            );
            for i in items {
                report.push(i.name, i.ok, i.message);
            }
            Ok(report)
        })
        .await
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        self.blocking(|me| {
            let mut inst = me.instance()?;
            me.catalog_blocking(&mut inst)
        })
        .await
    }

    async fn read(
        &self,
        request: &ReadRequest,
        _partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        let (mut tx, guard, events) = inlet_core::producer::channel(request.stream.clone(), 2);
        let me = self.clone();
        let request = request.clone();
        // The guard ends the stream as the host's loop ended: a panic there is an error
        // naming the stream, never a finished stream (which would commit a partial read).
        tokio::task::spawn_blocking(move || {
            guard.run_blocking(move || me.read_blocking(&request, resume, &mut tx))
        });
        Ok(events)
    }
}

impl PluginSource {
    fn read_blocking(
        &self,
        request: &ReadRequest,
        resume: Option<Value>,
        tx: &mut Emitter,
    ) -> Result<(), SourceError> {
        let stream = request.stream.as_str();
        let mut inst = self.instance()?;
        let catalog = self.catalog_blocking(&mut inst)?;
        let Some(desc) = catalog.stream(stream) else {
            return Err(SourceError::UnknownStream {
                stream: stream.to_string(),
                message: format!("plugin {} has: {}", self.name(), catalog.names().join(", ")),
            });
        };
        let schema = desc.schema.clone();
        let wit_request = types::ReadRequest {
            config: self.config.clone(),
            stream: stream.to_string(),
            incremental: request.mode == SyncMode::Incremental,
            cursor_field: request.cursor_field.clone(),
            state: resume.map(|v| v.to_string()),
            batch_rows: u32::try_from(request.batch_rows).unwrap_or(u32::MAX),
        };
        inst.open(&wit_request)?
            .map_err(|e| plugin_error(self.name(), Some(stream), e))?;
        loop {
            let Some(events) = inst
                .next()?
                .map_err(|e| plugin_error(self.name(), Some(stream), e))?
            else {
                return Ok(());
            };
            inlet_core::producer::panic_point("plugin-events");
            for ev in events {
                let item = match ev {
                    types::Event::Batch(b) => convert::batch(&schema, b)
                        .map(ReadEvent::Batch)
                        .map_err(|m| {
                            SourceError::data(format!("plugin {} stream {stream}", self.name()), m)
                        })?,
                    types::Event::Checkpoint(text) => {
                        let v: Value = serde_json::from_str(&text).map_err(|e| {
                            SourceError::data(
                                format!("plugin {} stream {stream}", self.name()),
                                format!("checkpoint is not JSON: {e}"),
                            )
                        })?;
                        if !v.is_object() {
                            return Err(SourceError::data(
                                format!("plugin {} stream {stream}", self.name()),
                                "checkpoint must be a JSON object",
                            ));
                        }
                        ReadEvent::Checkpoint(v)
                    }
                    types::Event::Skipped(s) => ReadEvent::Skipped(inlet_core::read::Skipped {
                        location: s.location,
                        reason: s.reason,
                    }),
                };
                if tx.send_blocking(item).is_err() {
                    // The reader went away (stop requested): end quietly.
                    return Ok(());
                }
            }
        }
    }
}

/// Load every plugin under `dir` (one folder per plugin). A plugin that fails to load is
/// reported and skipped so the others still register.
pub fn load_plugins(host: &PluginHost, dir: &Path) -> (Vec<PluginConnector>, Vec<WasmError>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (ok, failed);
    };
    let mut dirs: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("plugin.toml").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        match host.load_dir(&d) {
            Ok(p) => ok.push(PluginConnector::new(p)),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed)
}
