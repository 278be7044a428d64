//! Connectors by name: the runtime looks them up here and never matches on a kind.

use std::{collections::BTreeMap, sync::Arc};

use crate::Connector;

/// The connectors this process knows, built-in and plugins alike.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    connectors: BTreeMap<String, Arc<dyn Connector>>,
    /// Built-in connectors this build leaves out, with the cargo feature that has them.
    left_out: BTreeMap<String, String>,
}

/// What a part of inlet that this build left out says: which cargo feature of `inlet-cli`
/// has it, and how to rebuild with it.
pub fn left_out_of_build(what: &str, feature: &str) -> String {
    format!(
        "this inlet was built without {what} (the `{feature}` feature, off under `--no-default-features`); rebuild with it: cargo install --locked --path crates/inlet-cli"
    )
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

    /// Record that the built-in connector `name` is not in this build (its cargo
    /// `feature` was off), so a project naming it is told how to get it.
    pub fn left_out(&mut self, name: &str, feature: &str) {
        self.left_out.insert(name.to_string(), feature.to_string());
    }

    /// Why the connector `name` is not in this build, if it is a built-in left out.
    pub fn why_left_out(&self, name: &str) -> Option<String> {
        self.left_out
            .get(name)
            .map(|feature| left_out_of_build(&format!("the `{name}` connector"), feature))
    }

    /// Their names, for messages.
    pub fn names(&self) -> Vec<String> {
        self.connectors.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_out_connector_names_its_feature_and_an_unknown_one_nothing() {
        let mut r = Registry::new();
        r.left_out("postgres", "postgres");
        let why = r.why_left_out("postgres").unwrap();
        assert!(why.contains("the `postgres` connector"), "{why}");
        assert!(why.contains("the `postgres` feature"), "{why}");
        assert!(
            why.contains("cargo install --locked --path crates/inlet-cli"),
            "{why}"
        );
        assert!(r.why_left_out("mysql").is_none());
        assert!(r.get("postgres").is_none() && r.names().is_empty());
    }
}
