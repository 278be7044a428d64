//! # inlet-pdk: write an inlet source connector as a WebAssembly plugin
//!
//! A plugin implements [`Guest`] (the `source` interface of the `inlet:plugin@0.1.0` WIT
//! world, in `crates/inlet-wasm/wit/plugin.wit`) and exports it with
//! [`export_plugin!`]. It is built for `wasm32-unknown-unknown` and turned into a component
//! by `inlet plugin build`. The plugin can only do what the host offers:
//!
//! - [`http`]: requests to the hosts its `plugin.toml` declares (and the operator allows),
//!   with secrets added by the host from opaque names ([`http::Request::secret_header`]);
//! - [`log`]: log lines (the host redacts secrets);
//! - [`now_millis`]: the time.
//!
//! There is no filesystem, environment, socket or clock otherwise: `std::env::var` and
//! `std::fs` return errors inside a plugin.
//!
//! Helpers: [`BatchBuilder`] builds typed record batches (64-bit integers and decimals keep
//! every digit), [`config`] and [`state`] parse config and resume points with errors that
//! name the field, [`Pages`] walks paginated APIs.

pub mod batch;
pub mod http;
pub mod pages;

/// The generated bindings of the `inlet:plugin@0.1.0` world.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../inlet-wasm/wit",
        world: "plugin",
        default_bindings_module: "inlet_pdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_plugin",
    });
}

pub use batch::BatchBuilder;
/// Export a type implementing [`Guest`] as the plugin: `inlet_pdk::export_plugin!(MyPlugin);`.
pub use bindings::export_plugin;
pub use bindings::exports::inlet::plugin::source::Guest;
pub use bindings::inlet::plugin::host::{LogLevel, now_millis};
pub use bindings::inlet::plugin::types::{
    Batch, CheckItem, Column, ColumnData, ColumnType, DecimalType, Event, Field, FieldError,
    I128Parts, PluginError, ReadRequest, Skipped, StreamInfo,
};
pub use pages::Pages;

/// Log a line through the host (which prefixes the plugin's name and redacts secrets).
pub fn log(level: LogLevel, message: &str) {
    bindings::inlet::plugin::host::log(level, message);
}

/// A configuration error naming the field.
pub fn config_error(field: &str, message: impl std::fmt::Display) -> PluginError {
    PluginError::Config(FieldError {
        field: field.to_string(),
        message: message.to_string(),
    })
}

/// A field of a schema.
pub fn field(name: &str, ty: ColumnType, nullable: bool) -> Field {
    Field {
        name: name.to_string(),
        type_: ty,
        nullable,
    }
}

/// Parsing configuration.
pub mod config {
    use serde::de::DeserializeOwned;

    use crate::{PluginError, config_error};

    /// Parse the connection's `config` (JSON text) into `T`. Use
    /// `#[serde(deny_unknown_fields)]` on `T` so typos are reported; the error names the
    /// field serde complained about.
    pub fn parse<T: DeserializeOwned>(config: &str) -> Result<T, PluginError> {
        serde_json::from_str(config).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .split('`')
                .nth(1)
                .map(str::to_string)
                .unwrap_or_else(|| "config".to_string());
            config_error(&field, msg)
        })
    }
}

/// Resume points: a plugin's checkpoint is JSON object text it gets back in
/// [`ReadRequest::state`].
pub mod state {
    use serde::{Serialize, de::DeserializeOwned};

    use crate::PluginError;

    /// Parse the resume point, `None` on a first sync.
    pub fn parse<T: DeserializeOwned>(state: Option<&str>) -> Result<Option<T>, PluginError> {
        match state {
            None => Ok(None),
            Some(s) => serde_json::from_str(s).map(Some).map_err(|e| {
                PluginError::State(format!("cannot read the saved state: {e}; reset it"))
            }),
        }
    }

    /// A checkpoint event carrying `value` (which MUST be a complete resume point).
    pub fn checkpoint<T: Serialize>(value: &T) -> Result<crate::Event, PluginError> {
        serde_json::to_string(value)
            .map(crate::Event::Checkpoint)
            .map_err(|e| PluginError::Other(format!("cannot encode checkpoint: {e}")))
    }
}
