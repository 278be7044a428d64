//! The connection: its destination's storage opened, its source built from validated
//! config.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use inlet_catalog::{CatalogConfig, glue::GlueOptions};
use inlet_core::{Registry, Source, SourceContext, SourceError};
use inlet_lake::{LocalStorage, Storage, WriterOptions};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    ConnectionConfig, Project, RuntimeError,
    config::{DestinationConfig, config_json},
};

/// A connection ready to use: config, lake, and the builder of its source.
#[derive(Debug, Clone)]
pub struct Connection {
    /// Its name (the `<source>` folder of the lake).
    pub name: String,
    /// Its config.
    pub config: ConnectionConfig,
    /// Its lake.
    pub storage: Arc<dyn Storage>,
    /// How files are cut.
    pub writer: WriterOptions,
    /// The destination's catalog and how to reach it (credentials resolved), if any.
    pub catalog: Option<(CatalogConfig, GlueOptions)>,
    base_dir: PathBuf,
}

impl Connection {
    /// Resolve a connection of the project: its destination's storage and writer options.
    pub async fn open(project: &Project, name: &str) -> Result<Connection, RuntimeError> {
        let config = project.connection(name)?.clone();
        let (dest_name, dest) = project.destination_of(name, &config)?;
        let storage = open_storage(project, dest_name, dest).await?;
        let mut writer = WriterOptions::default();
        if let Some(mb) = dest.target_file_mb {
            // Validated positive when the project was parsed; fractions are allowed.
            writer.target_file_bytes = (mb * 1024.0 * 1024.0) as u64;
        }
        if let Some(mb) = dest.row_group_mb {
            writer.row_group_bytes = (mb.max(1) * 1024 * 1024) as usize;
        }
        if let Some(level) = dest.zstd_level {
            writer.zstd_level = level;
        }
        let catalog = match &dest.catalog {
            Some(c) => Some((
                c.clone(),
                inlet_catalog::register::glue_options(
                    c,
                    dest.region.as_deref(),
                    destination_credentials(project, dest_name, dest)?,
                ),
            )),
            None => None,
        };
        Ok(Connection {
            name: name.to_string(),
            config,
            storage,
            writer,
            catalog,
            base_dir: project.base_dir.clone(),
        })
    }

    /// Validate the connector config (pure) and build the source (I/O allowed).
    pub async fn build_source(
        &self,
        project: &Project,
        registry: &Registry,
    ) -> Result<Arc<dyn Source>, RuntimeError> {
        let connector = registry.get(&self.config.connector).ok_or_else(|| {
            let name = &self.config.connector;
            project.error_at(
                &["connections", &self.name, "connector"],
                match registry.why_left_out(name) {
                    Some(why) => format!("connector `{name}` is not in this build: {why}"),
                    None => format!(
                        "unknown connector `{name}`; available: {}",
                        registry.names().join(", ")
                    ),
                },
            )
        })?;
        let json = config_json(&self.config.config);
        let located = |e: SourceError| match e {
            SourceError::Config { field, message } => {
                let mut path = vec!["connections", self.name.as_str(), "config"];
                path.extend(field.split('.').filter(|s| !s.is_empty()));
                project.error_at(&path, message)
            }
            other => self.source_error(None, other),
        };
        connector.validate(&json).map_err(located)?;
        let ctx = SourceContext {
            connection: self.name.clone(),
            base_dir: self.base_dir.clone(),
        };
        connector.build(json, ctx).await.map_err(located)
    }

    /// Register every stream that landed something in the destination's catalog (none:
    /// an empty map). Never fails the run: a failure is a `failed` entry per stream, and
    /// the next sync tries again. `streams` are named in the failure when the lake itself
    /// could not be listed or no client could be made.
    pub async fn register_catalog(
        &self,
        streams: &[String],
    ) -> BTreeMap<String, inlet_lake::CatalogStreamResult> {
        let Some((config, options)) = &self.catalog else {
            return BTreeMap::new();
        };
        let lake = inlet_catalog::register::Lake {
            connection: &self.name,
            storage: self.storage.clone(),
            config,
        };
        let result = match inlet_catalog::glue::GlueClient::connect(options.clone()).await {
            Ok(glue) => inlet_catalog::register::register(&glue, &lake).await,
            Err(e) => Err(e.into()),
        };
        result.unwrap_or_else(|e| {
            tracing::warn!(connection = %self.name, error = %e, "catalog registration failed; the next sync tries again");
            streams
                .iter()
                .map(|s| {
                    (
                        s.clone(),
                        inlet_lake::CatalogStreamResult {
                            table: format!(
                                "{}.{}",
                                inlet_catalog::database_name(&self.name, Some(config)),
                                inlet_catalog::table_name(s, Some(config))
                            ),
                            action: inlet_lake::CatalogAction::Failed,
                            changes: Vec::new(),
                            error: Some(e.to_string()),
                        },
                    )
                })
                .collect()
        })
    }

    /// Wrap a source error with this connection's name.
    pub fn source_error(&self, stream: Option<&str>, source: SourceError) -> RuntimeError {
        RuntimeError::Source {
            connection: self.name.clone(),
            stream: stream.map(str::to_string),
            source: Box::new(source),
        }
    }

    /// Wrap a lake error with this connection's name and lake.
    pub fn lake_error(&self, source: inlet_lake::LakeError) -> RuntimeError {
        match source {
            busy @ inlet_lake::LakeError::Busy { .. } => RuntimeError::Busy(Box::new(busy)),
            source => RuntimeError::Lake {
                connection: self.name.clone(),
                url: self.storage.url(),
                source: Box::new(source),
            },
        }
    }
}

/// A destination's explicit AWS keys (access key id, secret, session token), resolved;
/// `None` when they are not set (the AWS credential chain applies).
pub fn destination_credentials(
    project: &Project,
    dest: &str,
    config: &DestinationConfig,
) -> Result<Option<(String, SecretString, Option<SecretString>)>, RuntimeError> {
    let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) else {
        return Ok(None);
    };
    let resolve = |field: &str, v: &inlet_core::secret::SecretValue| {
        v.resolve(field, &project.base_dir).map_err(|e| match e {
            SourceError::Config { message, .. } => {
                project.error_at(&["destinations", dest, field], message)
            }
            other => project.error_at(&["destinations", dest, field], other.to_string()),
        })
    };
    let id = resolve("access_key_id", id)?;
    let secret = resolve("secret_access_key", secret)?;
    let token = match &config.session_token {
        Some(t) => Some(resolve("session_token", t)?),
        None => None,
    };
    Ok(Some((id.expose_secret().to_string(), secret, token)))
}

/// The storage of a destination: a local directory, or an S3 bucket.
pub async fn open_storage(
    project: &Project,
    dest: &str,
    config: &DestinationConfig,
) -> Result<Arc<dyn Storage>, RuntimeError> {
    let url = config.url.as_str();
    #[cfg(not(feature = "s3"))]
    if config.is_s3() {
        return Err(project.error_at(
            &["destinations", dest, "url"],
            inlet_core::left_out_of_build("S3 support", "s3"),
        ));
    }
    #[cfg(feature = "s3")]
    if config.is_s3() {
        let mut options = inlet_lake::S3Options::from_url(url)
            .map_err(|m| project.error_at(&["destinations", dest, "url"], m))?;
        options.region = config.region.clone();
        options.endpoint = config.endpoint.clone();
        options.path_style = config.path_style;
        options.credentials = destination_credentials(project, dest, config)?;
        options.sse = match config.server_side_encryption.as_deref() {
            Some("AES256") => Some(inlet_lake::ServerSideEncryption::S3),
            Some("aws:kms") => Some(inlet_lake::ServerSideEncryption::Kms(
                config.sse_kms_key_id.clone(),
            )),
            _ => None,
        };
        options.storage_class = config.storage_class.clone();
        if let Some(mb) = config.part_size_mb {
            options.part_size = (mb * 1024 * 1024) as usize;
        }
        let storage = inlet_lake::S3Storage::connect(options)
            .await
            .map_err(|e| project.error_at(&["destinations", dest, "url"], e.to_string()))?;
        return Ok(Arc::new(storage));
    }
    let path = if let Some(rest) = url.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if url.contains("://") {
        return Err(project.error_at(
            &["destinations", dest, "url"],
            format!("`{url}`: use s3://BUCKET/PREFIX, file://PATH or a plain path"),
        ));
    } else {
        PathBuf::from(url)
    };
    let path = if path.is_absolute() {
        path
    } else {
        project.base_dir.join(path)
    };
    let storage = LocalStorage::new(&path).map_err(|e| {
        project.error_at(
            &["destinations", dest, "url"],
            format!("cannot use {}: {e}", path.display()),
        )
    })?;
    Ok(Arc::new(storage))
}
