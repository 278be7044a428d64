//! # The declarative REST source, and the GitHub and Stripe connectors
//!
//! Everything an API needs — base URL, auth, streams with their paths, parameters, record
//! selector, pagination, incremental parameter, primary key, parent/child relations and
//! schema — is a [`manifest::Manifest`] (TOML). One engine reads any manifest:
//!
//! ```text
//!  manifest (TOML) ──> Manifest::parse (validated, errors with line numbers)
//!  connection config ──> checked against the manifest's [config] keys (pure)
//!       │ build: secrets resolved into inlet_http::Auth, one HttpClient
//!       ▼
//!  read(stream, state) ── for each slice (for_each value) ── for each parent record
//!       └─ page loop: URL ──> HttpClient ──> records (selector) ──> JsonBatcher (Arrow)
//!                     ──> Batch, Checkpoint(next page, max cursor, schema) ──> next page
//! ```
//!
//! `rest` reads a manifest file named by the connection; `github` and `stripe` are the
//! same engine with a manifest compiled in (`manifests/github.toml`, `stripe.toml`), so a
//! change in those APIs is a change to one file.
#![deny(missing_docs)]

mod engine;
pub mod json;
mod manifest;
mod state;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use inlet_core::{
    Catalog, CheckReport, Connector, ConnectorInfo, ConnectorKind, EventStream, Partition,
    ReadRequest, Source, SourceContext, SourceError, StreamDescriptor, SyncMode,
    secret::SecretValue,
};
use inlet_http::{Auth, HttpClient, HttpOptions, OAuth2RefreshToken};
use serde::Deserialize;
use serde_json::Value;

use crate::manifest::{AuthDef, ConfigType, Manifest};

/// The GitHub manifest compiled into the `github` connector.
pub const GITHUB_MANIFEST: &str = include_str!("../manifests/github.toml");
/// The Stripe manifest compiled into the `stripe` connector.
pub const STRIPE_MANIFEST: &str = include_str!("../manifests/stripe.toml");

/// A connector driven by a manifest: `rest` (manifest file from config), or a built-in
/// manifest (`github`, `stripe`).
#[derive(Debug)]
pub struct ManifestConnector {
    name: &'static str,
    builtin: Option<(&'static str, Manifest)>,
}

impl ManifestConnector {
    /// `rest`: the connection names a manifest file with `manifest = "path.toml"`.
    pub fn rest() -> Self {
        ManifestConnector {
            name: "rest",
            builtin: None,
        }
    }

    /// A connector with a compiled-in manifest. Fails if the manifest is invalid (a
    /// build defect, caught by this crate's tests).
    pub fn builtin(name: &'static str, text: &'static str) -> Result<Self, SourceError> {
        let manifest = Manifest::parse(&format!("{name}.toml"), text)
            .map_err(|e| SourceError::other(e.to_string()))?;
        Ok(ManifestConnector {
            name,
            builtin: Some((text, manifest)),
        })
    }

    /// The `github` connector.
    pub fn github() -> Result<Self, SourceError> {
        Self::builtin("github", GITHUB_MANIFEST)
    }

    /// The `stripe` connector.
    pub fn stripe() -> Result<Self, SourceError> {
        Self::builtin("stripe", STRIPE_MANIFEST)
    }
}

/// Connection settings every manifest connector accepts besides the manifest's own keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineOptions {
    /// `rest` only: path of the manifest file (relative to the project file).
    #[serde(default)]
    pub manifest: Option<String>,
    /// Replace the manifest's base URL (GitHub Enterprise, a proxy, a test server).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Deadline of one request, seconds (default 60).
    #[serde(default)]
    pub timeout_secs: Option<f64>,
    /// Retries of a request after a 5xx, a network error or a timeout (default 5).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// First retry backoff in milliseconds, doubling with jitter (default 500).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Requests per second per host (default: the manifest's, else unlimited).
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// Requests in flight per host (default: the manifest's, else 4).
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Longest wait a rate limit may impose before the run fails and retries later
    /// (seconds, default 900).
    #[serde(default)]
    pub max_rate_limit_wait_secs: Option<u64>,
    /// Largest response body in MiB (default 256).
    #[serde(default)]
    pub max_response_mb: Option<u64>,
}

/// A connection's config checked against a manifest: values of the manifest's keys
/// (defaults applied) and the engine options.
#[derive(Debug, Clone)]
pub struct RestConfig {
    /// Values by manifest config key (secrets still unresolved, as text).
    pub values: BTreeMap<String, Value>,
    /// Engine options.
    pub options: EngineOptions,
}

/// Check `config` against `manifest` (pure).
pub fn parse_config(manifest: &Manifest, config: &Value) -> Result<RestConfig, SourceError> {
    let Value::Object(map) = config else {
        return Err(SourceError::config("", "the config must be a table"));
    };
    let mut values = BTreeMap::new();
    let mut rest = serde_json::Map::new();
    for (k, v) in map {
        if manifest.config.contains_key(k) {
            values.insert(k.clone(), v.clone());
        } else {
            rest.insert(k.clone(), v.clone());
        }
    }
    let options = inlet_core::kit::parse_config::<EngineOptions>(&Value::Object(rest)).map_err(
        |e| match e {
            SourceError::Config { field, message } if message.contains("unknown field") => {
                let mut known: Vec<&str> = manifest.config.keys().map(String::as_str).collect();
                known.extend([
                    "base_url",
                    "timeout_secs",
                    "max_retries",
                    "backoff_ms",
                    "requests_per_second",
                    "max_concurrency",
                    "max_rate_limit_wait_secs",
                    "max_response_mb",
                ]);
                SourceError::config(
                    field,
                    format!(
                        "{message}; the {} manifest reads: {}",
                        manifest.name,
                        known.join(", ")
                    ),
                )
            }
            other => other,
        },
    )?;
    for (key, field) in &manifest.config {
        let value = match values.get(key) {
            Some(v) => v.clone(),
            None => match &field.default {
                Some(d) => serde_json::to_value(d).unwrap_or(Value::Null),
                None if field.required => {
                    return Err(SourceError::config(
                        key,
                        format!(
                            "required by the {} manifest{}",
                            manifest.name,
                            if field.description.is_empty() {
                                String::new()
                            } else {
                                format!(": {}", field.description)
                            }
                        ),
                    ));
                }
                None => continue,
            },
        };
        let ok = match field.kind {
            ConfigType::String | ConfigType::Secret => value.is_string(),
            ConfigType::Integer => value.is_i64(),
            ConfigType::List => value
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string)),
        };
        if !ok {
            return Err(SourceError::config(
                key,
                format!(
                    "must be {}",
                    match field.kind {
                        ConfigType::String => "a string",
                        ConfigType::Secret => "a string (a literal, ${env:NAME} or ${file:PATH})",
                        ConfigType::Integer => "an integer",
                        ConfigType::List => "a list of strings",
                    }
                ),
            ));
        }
        values.insert(key.clone(), value);
    }
    if let Some(url) = &options.base_url {
        url::Url::parse(url).map_err(|e| SourceError::config("base_url", e))?;
    }
    Ok(RestConfig { values, options })
}

// Not a `TypedConnector`: the keys a connection may set come from the manifest, known
// only at run time (a file for `rest`); the engine's own options are typed and parsed
// with the kit's `parse_config`.
#[async_trait]
impl Connector for ManifestConnector {
    fn info(&self) -> ConnectorInfo {
        let description = match &self.builtin {
            Some((_, m)) => m.description.clone(),
            None => "any REST API described by a manifest file (TOML)".into(),
        };
        let hosts = match &self.builtin {
            Some((_, m)) => url::Url::parse(&m.base_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .into_iter()
                .collect(),
            None => vec![],
        };
        ConnectorInfo {
            name: self.name.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Builtin,
            description,
            hosts,
        }
    }

    fn spec(&self) -> Value {
        let mut schema =
            serde_json::to_value(schemars::schema_for!(EngineOptions)).unwrap_or(Value::Null);
        if let Some((_, m)) = &self.builtin {
            if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                props.remove("manifest");
                for (k, f) in &m.config {
                    let ty = match f.kind {
                        ConfigType::List => {
                            serde_json::json!({"type": "array", "items": {"type": "string"}})
                        }
                        ConfigType::Integer => serde_json::json!({"type": "integer"}),
                        ConfigType::Secret => {
                            serde_json::json!({"type": "string", "writeOnly": true})
                        }
                        ConfigType::String => serde_json::json!({"type": "string"}),
                    };
                    let mut ty = ty;
                    ty["description"] = Value::from(f.description.clone());
                    props.insert(k.clone(), ty);
                }
            }
            let required: Vec<&String> = m
                .config
                .iter()
                .filter(|(_, f)| f.required && f.default.is_none())
                .map(|(k, _)| k)
                .collect();
            schema["required"] = serde_json::json!(required);
            schema["additionalProperties"] = Value::from(false);
        } else {
            schema["additionalProperties"] = Value::from(true);
            schema["required"] = serde_json::json!(["manifest"]);
        }
        schema
    }

    fn validate(&self, config: &Value) -> Result<(), SourceError> {
        match &self.builtin {
            Some((_, m)) => {
                let cfg = parse_config(m, config)?;
                if cfg.options.manifest.is_some() {
                    return Err(SourceError::config(
                        "manifest",
                        format!(
                            "the `{}` connector has its manifest built in; use connector = \"rest\" to read a manifest file",
                            self.name
                        ),
                    ));
                }
                Ok(())
            }
            None => match config.get("manifest") {
                Some(Value::String(_)) => Ok(()),
                _ => Err(SourceError::config(
                    "manifest",
                    "set manifest = \"path/to/api.toml\" (relative to the project file)",
                )),
            },
        }
    }

    async fn build(
        &self,
        config: Value,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let manifest = match &self.builtin {
            Some((_, m)) => m.clone(),
            None => {
                let rel = config
                    .get("manifest")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let path = ctx.resolve_path(rel);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    SourceError::config("manifest", format!("cannot read {}: {e}", path.display()))
                })?;
                Manifest::parse(&path.display().to_string(), &text)
                    .map_err(|e| SourceError::config("manifest", e))?
            }
        };
        let cfg = parse_config(&manifest, &config)?;
        let auth = resolve_auth(&manifest, &cfg, &ctx)?;
        let o = &cfg.options;
        let defaults = HttpOptions::default();
        let options = HttpOptions {
            user_agent: format!(
                "inlet/{} ({} connector)",
                env!("CARGO_PKG_VERSION"),
                manifest.name
            ),
            timeout: o
                .timeout_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(defaults.timeout),
            max_retries: o.max_retries.unwrap_or(defaults.max_retries),
            backoff_base: o
                .backoff_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.backoff_base),
            per_host_rps: o.requests_per_second.or(manifest.http.requests_per_second),
            per_host_concurrency: o
                .max_concurrency
                .or(manifest.http.max_concurrency)
                .unwrap_or(defaults.per_host_concurrency),
            max_rate_limit_wait: o
                .max_rate_limit_wait_secs
                .map(Duration::from_secs)
                .unwrap_or(defaults.max_rate_limit_wait),
            max_response_bytes: o
                .max_response_mb
                .map(|mb| mb * 1024 * 1024)
                .or(defaults.max_response_bytes),
            headers: manifest
                .http
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ..defaults
        };
        let client = HttpClient::new(options, auth).map_err(SourceError::from)?;
        let base = o
            .base_url
            .clone()
            .unwrap_or_else(|| manifest.base_url.clone());
        let base_url = url::Url::parse(&base)
            .map_err(|e| SourceError::config("base_url", format!("{base:?}: {e}")))?;
        Ok(Arc::new(RestSource {
            inner: Arc::new(engine::Inner {
                manifest,
                config: cfg,
                client,
                base_url,
            }),
        }))
    }
}

fn resolve_auth(
    manifest: &Manifest,
    cfg: &RestConfig,
    ctx: &SourceContext,
) -> Result<Auth, SourceError> {
    let secret = |reference: &str| -> Result<secrecy::SecretString, SourceError> {
        let key = manifest::config_ref(reference).unwrap_or_default();
        let text = cfg
            .values
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| SourceError::config(key, "not set"))?;
        SecretValue::parse(text).resolve(key, &ctx.base_dir)
    };
    let text = |template: &str| -> Result<String, SourceError> {
        manifest::render(template, &|name| {
            name.strip_prefix("config.")
                .and_then(|k| cfg.values.get(k))
                .and_then(|v| v.as_str().map(str::to_string))
        })
        .map_err(|m| SourceError::config("auth", m))
    };
    Ok(match &manifest.auth {
        AuthDef::None => Auth::None,
        AuthDef::Bearer { token } => Auth::Bearer(secret(token)?),
        AuthDef::Basic { username, password } => Auth::Basic {
            username: text(username)?,
            password: match password {
                Some(p) => secret(p)?,
                None => secrecy::SecretString::from(String::new()),
            },
        },
        AuthDef::ApiKey { key, header, param } => match (header, param) {
            (Some(h), _) => Auth::ApiKeyHeader {
                header: h.clone(),
                key: secret(key)?,
            },
            (None, Some(p)) => Auth::ApiKeyQuery {
                param: p.clone(),
                key: secret(key)?,
            },
            (None, None) => Auth::None,
        },
        AuthDef::Oauth2Refresh {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
        } => Auth::OAuth2(Arc::new(OAuth2RefreshToken::new(
            text(token_url)?,
            text(client_id)?,
            secret(client_secret)?,
            secret(refresh_token)?,
            scopes.clone(),
        ))),
    })
}

/// A configured manifest source.
#[derive(Debug)]
pub struct RestSource {
    inner: Arc<engine::Inner>,
}

#[async_trait]
impl Source for RestSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        let mut report = CheckReport::default();
        match self.inner.probe().await {
            Ok(what) => report.push("API reachable and credentials accepted", true, what),
            Err(e) => report.push(
                "API reachable and credentials accepted",
                false,
                e.to_string(),
            ),
        }
        Ok(report)
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        let m = &self.inner.manifest;
        let mut streams = Vec::new();
        for (name, def) in &m.streams {
            let def = def.get_ref();
            let mut declared = Vec::new();
            for (col, ty) in &def.schema.columns {
                declared.push(
                    json::declared_type(col, ty)
                        .map_err(|e| SourceError::config(format!("streams.{name}.schema"), e))?,
                );
            }
            let mut modes = vec![SyncMode::FullRefresh];
            if def.incremental.is_some() {
                modes.insert(0, SyncMode::Incremental);
            }
            streams.push(StreamDescriptor {
                name: name.clone(),
                schema: Arc::new(arrow_schema::Schema::new(declared)),
                primary_key: def.primary_key.clone(),
                cursor_candidates: def
                    .incremental
                    .iter()
                    .map(|i| i.cursor_field.clone())
                    .collect(),
                default_mode: modes[0],
                opt_in: false,
                sync_modes: modes,
            });
        }
        Ok(Catalog { streams })
    }

    async fn read(
        &self,
        request: &ReadRequest,
        _partition: &Partition,
        resume: Option<Value>,
    ) -> Result<EventStream, SourceError> {
        engine::read(self.inner.clone(), request, resume)
    }

    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        if self.inner.manifest.stream(stream).is_none() {
            return Err(SourceError::UnknownStream {
                stream: stream.into(),
                message: format!(
                    "streams: {}",
                    self.inner
                        .manifest
                        .streams
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        inlet_core::state::decode::<state::RestState>(stream, state).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn builtin_manifests_are_valid_and_configs_are_checked_purely() {
        let gh = ManifestConnector::github().unwrap();
        let stripe = ManifestConnector::stripe().unwrap();
        gh.validate(&serde_json::json!({"token": "${env:GITHUB_TOKEN}", "repos": ["o/r"]}))
            .unwrap();
        let err = gh
            .validate(&serde_json::json!({"token": "x", "repos": "o/r"}))
            .unwrap_err();
        assert!(err.to_string().contains("`repos`"), "{err}");
        let err = gh
            .validate(&serde_json::json!({"token": "x", "repos": ["o/r"], "repoz": 1}))
            .unwrap_err();
        assert!(err.to_string().contains("repoz"), "{err}");
        let err = stripe.validate(&serde_json::json!({})).unwrap_err();
        assert!(err.to_string().contains("api_key"), "{err}");
        let spec = gh.spec();
        assert!(spec["properties"]["repos"].is_object(), "{spec}");
    }
}
