//! The `Connector` (a factory known by name) and the `Source` it builds.

use std::{fmt::Debug, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;

use crate::{Catalog, EventStream, Partition, ReadPlan, ReadRequest, SourceError};

/// What a connector says about itself, for `inlet connectors`.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorInfo {
    /// The name connections use (`connector = "files"`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Built in, or a plugin.
    pub kind: ConnectorKind,
    /// One line on what it reads.
    pub description: String,
    /// Network hosts it may contact (plugins declare them; built-ins leave it empty).
    pub hosts: Vec<String>,
}

/// Where a connector comes from. Serialised as `builtin` / `plugin` (`inlet connectors
/// --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// Compiled into the `inlet` binary.
    Builtin,
    /// A WebAssembly plugin loaded at run time.
    Plugin,
}

impl ConnectorKind {
    /// The name used in output: `builtin` or `plugin`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Builtin => "builtin",
            ConnectorKind::Plugin => "plugin",
        }
    }
}

impl std::fmt::Display for ConnectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a source is being built: what it may need to resolve relative paths and name
/// itself in messages.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The connection's name.
    pub connection: String,
    /// The folder of the project file; relative paths in config are relative to it.
    pub base_dir: PathBuf,
}

impl SourceContext {
    /// Resolve a path from config against the project folder.
    pub fn resolve_path(&self, path: &str) -> PathBuf {
        let p = PathBuf::from(path);
        if p.is_absolute() {
            p
        } else {
            self.base_dir.join(p)
        }
    }
}

/// A kind of source, registered by name. A connector whose configuration is a Rust type
/// implements [`crate::TypedConnector`] instead and gets this trait from it.
///
/// Contract:
/// - [`Connector::validate`] MUST be pure: no I/O, no secrets resolved, no waiting. It
///   MUST reject unknown fields and name the offending field.
/// - [`Connector::build`] does the I/O a source needs to start (resolving secrets,
///   loading a plugin) but SHOULD NOT contact the remote system: that is `check`.
#[async_trait]
pub trait Connector: Send + Sync + Debug {
    /// Name, version, kind, hosts.
    fn info(&self) -> ConnectorInfo;

    /// The JSON Schema of the connector's `config` table.
    fn spec(&self) -> Value;

    /// Check a configuration without side effects.
    fn validate(&self, config: &Value) -> Result<(), SourceError>;

    /// Build a source from a configuration that passed [`Connector::validate`].
    async fn build(
        &self,
        config: Value,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError>;
}

/// One result line of [`Source::check`].
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// What was checked (`directory readable`, `connects`, `is a replica`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Detail, and what to do when it failed.
    pub message: String,
}

/// What [`Source::check`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Each check in order.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }

    /// Append a check result.
    pub fn push(&mut self, name: impl Into<String>, ok: bool, message: impl Into<String>) {
        self.items.push(CheckItem {
            name: name.into(),
            ok,
            message: message.into(),
        });
    }
}

/// A configured source: one system, several streams.
///
/// Contract:
/// - [`Source::read`] MUST resume right after the last batch covered by `resume` and MUST
///   NOT skip records that no checkpoint covered. It SHOULD emit checkpoints often (every
///   few batches); the runtime decides which become durable.
/// - Every checkpoint value MUST be a complete resume point (not a delta) and MUST NOT
///   contain secrets: it is stored in the lake and printed by `inlet state show`.
/// - Batches SHOULD hold about [`ReadRequest::batch_rows`] rows; a source MUST NOT hold a
///   whole table or endpoint in memory.
/// - Errors MUST say whether they are transient; after a transient error the runtime may
///   call `read` again with the last durable checkpoint.
#[async_trait]
pub trait Source: Send + Sync + Debug {
    /// Verify that the source can be read with this configuration (reachable, credentials
    /// accepted, permissions, replica). Failures are reported items, not errors; an error
    /// means the check itself could not run.
    async fn check(&self) -> Result<CheckReport, SourceError>;

    /// List the streams.
    async fn discover(&self) -> Result<Catalog, SourceError>;

    /// Split a read into partitions. The default reads the stream as one partition.
    async fn plan(&self, request: &ReadRequest) -> Result<ReadPlan, SourceError> {
        let _ = request;
        Ok(ReadPlan::single())
    }

    /// Read one partition from `resume` (its last durable checkpoint, or `None`).
    async fn read(
        &self,
        request: &ReadRequest,
        partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError>;

    /// The runtime has made `state` the stream's committed state: it is durable in the
    /// lake with every batch before it. A source that holds something on the remote side
    /// until its data is safe (a replication slot's confirmed position) MAY release it
    /// now. Called after each commit that moved the state; the default does nothing. It
    /// cannot fail the run: a source logs its own errors.
    async fn committed(&self, stream: &str, state: &Value) {
        let _ = (stream, state);
    }

    /// Check a state value an engineer wants to set by hand (`inlet state set`). The
    /// default accepts any JSON object.
    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        if state.is_object() {
            Ok(())
        } else {
            Err(SourceError::state(stream, "state must be a JSON object"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn connector_kinds_print_and_serialise_as_the_strings_inlet_connectors_shows() {
        for (kind, text) in [
            (ConnectorKind::Builtin, "builtin"),
            (ConnectorKind::Plugin, "plugin"),
        ] {
            assert_eq!(kind.to_string(), text);
            assert_eq!(serde_json::to_value(kind).unwrap(), Value::from(text));
        }
    }
}
