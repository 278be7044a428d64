//! Connectors by name: the runtime looks them up here and never matches on a kind.

use std::{collections::BTreeMap, sync::Arc};

use crate::Connector;

/// The connectors this process knows, built-in and plugins alike.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    connectors: BTreeMap<String, Arc<dyn Connector>>,
    /// Built-in connectors this build leaves out, with what brings them back.
    left_out: BTreeMap<String, String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register a connector under its [`crate::ConnectorInfo::name`]; a later
    /// registration of the same name replaces the earlier one.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.connectors.insert(connector.info().name, connector);
    }

    /// The connector called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.connectors.get(name).cloned()
    }

    /// All connectors, by name.
    pub fn all(&self) -> impl Iterator<Item = &Arc<dyn Connector>> {
        self.connectors.values()
    }

    /// Record that the built-in connector `name` is not in this build, and why (a cargo
    /// feature that was off), so a project naming it is told how to get it.
    pub fn left_out(&mut self, name: &str, why: &str) {
        self.left_out.insert(name.to_string(), why.to_string());
    }

    /// Why the connector `name` is not in this build, if it is a built-in left out.
    pub fn why_left_out(&self, name: &str) -> Option<&str> {
        self.left_out.get(name).map(String::as_str)
    }

    /// Their names, for messages.
    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }
}
