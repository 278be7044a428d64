//! # The `files` source
//!
//! Reads the raw inputs a data team already has in a local directory: JSON-lines event
//! files (one object per line) and CSV exports (with a header row). Each stream is a glob
//! under the directory.
//!
//! Incremental by file: the state records every file read (size and modification time)
//! and where the file in progress stopped (byte offset and line). A new file is read in
//! full; a file that grew is read from where it stopped (append-only logs); a file that
//! was rewritten (smaller, or same size with a new mtime) is read again in full.
//! Schema inference and evolution follow the policy in [`columns`].
//! Bad records (malformed JSON, a CSV row with the wrong number of fields) fail the read
//! with `file:line`, or with `on_bad_record = "skip"` are skipped and counted.
#![deny(missing_docs)]

mod columns;
mod reader;

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use inlet_core::{
    Catalog, CheckReport, ConnectorInfo, ConnectorKind, EventStream, Partition, ReadRequest,
    Source, SourceContext, SourceError, StreamDescriptor, SyncMode, TypedConnector,
    state::{self, TypedState},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The connector's `config` table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The directory the globs are relative to (relative paths: to the project file).
    pub path: String,
    /// What to do with a record that cannot be read: `fail` (default) or `skip` (counted
    /// and logged with file and line).
    #[serde(default)]
    pub on_bad_record: BadRecordPolicy,
    /// The streams, by name.
    pub streams: BTreeMap<String, FileStreamConfig>,
}

/// Policy for unreadable records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Stop the stream; nothing after the last checkpoint is committed.
    #[default]
    Fail,
    /// Skip the record, count it, log its `file:line`.
    Skip,
}

/// Format of a stream's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
}

/// One stream: a glob and a format.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileStreamConfig {
    /// Glob relative to `path`, e.g. `clicks/**/*.jsonl`.
    pub glob: String,
    /// `jsonl` or `csv`; by default taken from the glob's extension.
    #[serde(default)]
    pub format: Option<FileFormat>,
    /// CSV delimiter, one character (default `,`).
    #[serde(default)]
    pub delimiter: Option<String>,
}

impl FileStreamConfig {
    fn resolved_format(&self) -> Option<FileFormat> {
        self.format.or_else(|| {
            let g = self.glob.to_ascii_lowercase();
            if g.ends_with(".jsonl") || g.ends_with(".ndjson") || g.ends_with(".json") {
                Some(FileFormat::Jsonl)
            } else if g.ends_with(".csv") {
                Some(FileFormat::Csv)
            } else {
                None
            }
        })
    }
}

/// The `files` connector.
#[derive(Debug, Default)]
pub struct FilesConnector;

#[async_trait]
impl TypedConnector for FilesConnector {
    type Config = FilesConfig;

    fn info(&self) -> ConnectorInfo {
        ConnectorInfo {
            name: "files".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            kind: ConnectorKind::Builtin,
            description: "JSON-lines and CSV files in a local directory, incremental by file"
                .into(),
            hosts: vec![],
        }
    }

    fn check_config(&self, cfg: &FilesConfig) -> Result<(), SourceError> {
        if cfg.streams.is_empty() {
            return Err(SourceError::config(
                "streams",
                "declare at least one stream: [..config.streams.NAME] glob = \"*.jsonl\"",
            ));
        }
        for (name, s) in &cfg.streams {
            globset::Glob::new(&s.glob)
                .map_err(|e| SourceError::config(format!("streams.{name}.glob"), e))?;
            if s.resolved_format().is_none() {
                return Err(SourceError::config(
                    format!("streams.{name}.format"),
                    "cannot tell the format from the glob: set format = \"jsonl\" or \"csv\"",
                ));
            }
            if let Some(d) = &s.delimiter
                && (d.len() != 1 || !d.is_ascii())
            {
                return Err(SourceError::config(
                    format!("streams.{name}.delimiter"),
                    "must be a single ASCII character",
                ));
            }
        }
        Ok(())
    }

    async fn build(
        &self,
        config: FilesConfig,
        ctx: SourceContext,
    ) -> Result<Arc<dyn Source>, SourceError> {
        let root = ctx.resolve_path(&config.path);
        Ok(Arc::new(FilesSource { root, config }))
    }
}

/// A configured `files` source.
#[derive(Debug)]
pub struct FilesSource {
    root: PathBuf,
    config: FilesConfig,
}

/// The state of one stream (what `inlet state show` prints for it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesState {
    /// Files read to their end, by path relative to the directory.
    #[serde(default)]
    pub files: BTreeMap<String, FileMark>,
    /// The file being read and where it stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<FilePosition>,
    /// The stream's schema so far (it only widens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
}

/// What identifies a version of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileMark {
    /// Size in bytes when read.
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Lines read, so that lines appended later are numbered on.
    #[serde(default)]
    pub lines: u64,
}

/// Where reading a file stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePosition {
    /// Path relative to the directory.
    pub path: String,
    /// Byte offset of the next unread line.
    pub offset: u64,
    /// Number of lines consumed (the next line is `line + 1`).
    pub line: u64,
    /// The file version being read.
    pub mark: FileMark,
    /// The CSV header, when the file is CSV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
}

impl TypedState for FilesState {
    const NAME: &'static str = "files state";
}

impl FilesSource {
    fn stream_config(&self, stream: &str) -> Result<&FileStreamConfig, SourceError> {
        self.config
            .streams
            .get(stream)
            .ok_or_else(|| SourceError::UnknownStream {
                stream: stream.to_string(),
                message: format!(
                    "configured streams: {}",
                    self.config
                        .streams
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

#[async_trait]
impl Source for FilesSource {
    async fn check(&self) -> Result<CheckReport, SourceError> {
        let mut report = CheckReport::default();
        match std::fs::read_dir(&self.root) {
            Ok(_) => report.push("directory readable", true, self.root.display().to_string()),
            Err(e) => {
                report.push(
                    "directory readable",
                    false,
                    format!(
                        "{}: {e} (fix `path`, or the permissions of the directory)",
                        self.root.display()
                    ),
                );
                return Ok(report);
            }
        }
        for (name, s) in &self.config.streams {
            match reader::list_files(&self.root, &s.glob) {
                Ok(files) => report.push(
                    format!("stream {name}"),
                    true,
                    format!("{} file(s) match `{}`", files.len(), s.glob),
                ),
                Err(e) => report.push(format!("stream {name}"), false, e.to_string()),
            }
        }
        Ok(report)
    }

    async fn discover(&self) -> Result<Catalog, SourceError> {
        if let Err(e) = std::fs::read_dir(&self.root) {
            return Err(SourceError::io(self.root.display().to_string(), e));
        }
        let mut streams = Vec::new();
        for (name, s) in &self.config.streams {
            let format = s.resolved_format().unwrap_or(FileFormat::Jsonl);
            let schema: SchemaRef = reader::sample_schema(&self.root, s, format)?;
            streams.push(StreamDescriptor {
                name: name.clone(),
                schema,
                primary_key: vec![],
                cursor_candidates: vec![],
                sync_modes: vec![SyncMode::Incremental, SyncMode::FullRefresh],
                default_mode: SyncMode::Incremental,
                opt_in: false,
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
        let stream_cfg = self.stream_config(&request.stream)?.clone();
        let state: FilesState = state::decode_or_default(&request.stream, resume.as_ref())?;
        let job = reader::ReadJob {
            root: self.root.clone(),
            stream: request.stream.clone(),
            format: stream_cfg.resolved_format().unwrap_or(FileFormat::Jsonl),
            delimiter: stream_cfg
                .delimiter
                .as_ref()
                .and_then(|d| d.bytes().next())
                .unwrap_or(b','),
            glob: stream_cfg.glob.clone(),
            batch_rows: request.batch_rows.max(1),
            policy: self.config.on_bad_record,
            state,
        };
        reader::spawn(job)
    }

    fn validate_state(&self, stream: &str, state: &Value) -> Result<(), SourceError> {
        self.stream_config(stream)?;
        let parsed: FilesState = state::decode(stream, state)?;
        if let Some(cur) = &parsed.current
            && parsed.files.contains_key(&cur.path)
        {
            return Err(SourceError::state(
                stream,
                format!("`{}` is both done and in progress", cur.path),
            ));
        }
        Ok(())
    }
}
