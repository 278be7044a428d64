//! The connector kit: what every built-in connector would otherwise write again.
//!
//! A connector whose configuration is a Rust type implements [`TypedConnector`]: its
//! `Config` type, the checks the type cannot express, and how to build a source from a
//! parsed config. The blanket implementation of [`Connector`] derives the rest once:
//!
//! ```text
//!  Connector::spec      = JSON Schema of T::Config (schemars)
//!  Connector::validate  = parse (serde, the failing field named) + T::check_config
//!  Connector::build     = parse + T::check_config + T::build(config, ctx)
//! ```
//!
//! A connector whose configuration is only known at run time (the REST engine's keys
//! come from a manifest, a plugin's schema from the plugin) implements [`Connector`]
//! itself and parses the typed parts with [`parse_config`], so that a bad field reads
//! the same whichever connector reports it.

use std::{fmt::Debug, sync::Arc};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Connector, ConnectorInfo, Source, SourceContext, SourceError};

/// A connector with a typed configuration; [`Connector`] comes with it.
///
/// Contract:
/// - `Config` MUST reject unknown fields (`#[serde(deny_unknown_fields)]`) and SHOULD
///   document every field: its doc comments are the connector's `spec`.
/// - [`TypedConnector::check_config`] MUST be pure (no I/O, no secrets resolved, no
///   waiting) and MUST name the offending field in its error.
/// - [`TypedConnector::build`] gets a config that passed `check_config`; it does the I/O
///   a source needs to start but SHOULD NOT contact the remote system (that is `check`).
#[async_trait]
pub trait TypedConnector: Send + Sync + Debug {
    /// The connection's `config` table.
    type Config: DeserializeOwned + JsonSchema + Send + 'static;

    /// Name, version, kind, hosts.
    fn info(&self) -> ConnectorInfo;

    /// Checks the type cannot express (a non-empty list, a valid glob). The default
    /// accepts every value that parses.
    fn check_config(&self, config: &Self::Config) -> Result<(), SourceError> {
        let _ = config;
        Ok(())
    }

    /// Build a source from a checked configuration.
    async fn build(
        &self,
        config: Self::Config,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError>;
}

/// Parse a connection's `config` table (or part of it) as `T`, naming the field that
/// failed: `config field `streams.a.glob`: invalid type...`; an error about the table
/// itself has an empty field.
pub fn parse_config<T: DeserializeOwned>(config: &Value) -> Result<T, SourceError> {
    serde_path_to_error::deserialize(config).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        SourceError::config(field, e.into_inner())
    })
}

/// The configuration parsed and checked, as `validate` and `build` see it.
fn checked<T: TypedConnector>(connector: &T, config: &Value) -> Result<T::Config, SourceError> {
    let config = parse_config::<T::Config>(config)?;
    connector.check_config(&config)?;
    Ok(config)
}

#[async_trait]
impl<T: TypedConnector> Connector for T {
    fn info(&self) -> ConnectorInfo {
        TypedConnector::info(self)
    }

    fn spec(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(T::Config)).unwrap_or(Value::Null)
    }

    fn validate(&self, config: &Value) -> Result<(), SourceError> {
        checked(self, config).map(|_| ())
    }

    async fn build(
        &self,
        config: Value,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let config = checked(self, &config)?;
        TypedConnector::build(self, config, ctx).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[derive(Debug, serde::Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Config {
        /// A path.
        path: String,
        #[serde(default)]
        depth: u32,
    }

    #[derive(Debug)]
    struct Demo;

    #[async_trait]
    impl TypedConnector for Demo {
        type Config = Config;

        fn info(&self) -> ConnectorInfo {
            ConnectorInfo {
                name: "demo".into(),
                version: "0".into(),
                kind: crate::ConnectorKind::Builtin,
                description: String::new(),
                hosts: vec![],
            }
        }

        fn check_config(&self, config: &Config) -> Result<(), SourceError> {
            if config.path.is_empty() || config.depth > 9 {
                return Err(SourceError::config("path", "must not be empty"));
            }
            Ok(())
        }

        async fn build(
            &self,
            _config: Config,
            _ctx: SourceContext,
        ) -> Result<Arc<dyn Source>, SourceError> {
            Err(SourceError::other("not built in tests"))
        }
    }

    #[test]
    fn a_typed_connector_names_the_field_that_fails_and_describes_its_config() {
        let c: &dyn Connector = &Demo;
        c.validate(&serde_json::json!({"path": "x"})).unwrap();
        let e = c
            .validate(&serde_json::json!({"path": "x", "depth": "deep"}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config field `depth`: invalid type"),
            "{e}"
        );
        let e = c
            .validate(&serde_json::json!({"path": "x", "dept": 1}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config field `dept`: unknown field `dept`"),
            "{e}"
        );
        let e = c.validate(&serde_json::json!({"path": ""})).unwrap_err();
        assert_eq!(e.to_string(), "config field `path`: must not be empty");
        assert_eq!(c.spec()["properties"]["path"]["description"], "A path.");
    }
}
