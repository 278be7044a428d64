//! # inlet-wasm: source connectors as sandboxed WebAssembly plugins
//!
//! A plugin is a component implementing the `inlet:plugin@0.1.0` world (`wit/plugin.wit`)
//! plus a `plugin.toml` manifest. [`PluginHost`] compiles it once (and caches the machine
//! code on disk), and [`PluginConnector`] registers it by name in the same
//! [`inlet_core::Registry`] as the built-in connectors, so the runtime, state, landing and
//! CLI treat it like any other source.
//!
//! ```text
//!  plugin.toml + plugin.wasm ──PluginHost::load_dir──> LoadedPlugin (compiled, linked)
//!        │                                                 │ instantiate (per call / read)
//!        ▼                                                 ▼
//!  PluginConnector (Connector) ──build──> PluginSource ──> PluginInstance: own Store,
//!                                                          memory limit, time per call,
//!                                                          host functions: http-fetch,
//!                                                          log, now-millis
//! ```
//!
//! The sandbox is deny-by-default: a plugin imports `inlet:plugin/host` and, if it needs a
//! libc (a Python component made by componentize-py), the WASI 0.2 interfaces of a libc,
//! which [`wasi`] links locked down (opening a file, creating a socket or resolving a name
//! breaks a rule; the environment is empty; stdout and stderr become bounded log lines). A
//! component importing anything else is refused at load. So a plugin has no files,
//! environment, sockets or network except through the host. Network requests go through
//! [`sandbox::Network`]: the host must be declared in the manifest AND allowed by the
//! operator, every resolved address must be public unless allowed, and the connection
//! goes to the checked address. Secrets are named in requests and expanded by the host;
//! responses and logs have secret values redacted. Breaking a rule stops the call with
//! [`WasmError::Violation`] naming the plugin and the [`Rule`]; the host and other
//! plugins are unaffected (each instance has its own store).
#![deny(missing_docs)]

/// The generated host-side bindings of the WIT world.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "plugin",
        imports: { default: trappable },
    });
}

pub mod componentize;
mod connector;
pub mod convert;
mod error;
mod host;
mod manifest;
mod net;
pub mod sandbox;
pub mod wasi;

pub use connector::{PluginConnector, PluginSource, load_plugins};
pub use error::{Rule, WasmError};
pub use host::{LoadInfo, LoadedPlugin, LogSink, PluginHost, PluginInstance};
pub use manifest::{INTERFACE, Manifest};
pub use sandbox::SandboxConfig;
