//! The project file (`inlet.toml`): destinations and connections. Parsing is pure: no
//! I/O beyond reading the file, no secrets resolved, no connector built.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use inlet_core::{SyncMode, secret::SecretValue};
use serde::Deserialize;

use crate::RuntimeError;

/// Whether `url` is a valid S3 destination.
#[cfg(feature = "s3")]
fn check_s3_url(url: &str) -> Result<(), String> {
    inlet_lake::S3Options::from_url(url).map(|_| ())
}

/// A build without the `s3` feature has no S3 destinations.
#[cfg(not(feature = "s3"))]
fn check_s3_url(url: &str) -> Result<(), String> {
    Err(format!(
        "`{url}`: {}",
        inlet_core::left_out_of_build("S3 support", "s3")
    ))
}

/// The whole project file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Format version of the file; must be 1.
    pub version: u32,
    /// Where data lands, by name.
    #[serde(default)]
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// What is synced, by name. The name is the `<source>` folder of the raw layer.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
}

/// A lake root and how files are cut.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Root of the raw layer: `file://./lake`, `file:///srv/lake/raw`, or a plain path.
    pub url: String,
    /// Target Parquet file size in MiB (default 128); more than 0, fractions allowed
    /// (`0.25` rolls files at 256 KiB, for small test lakes).
    #[serde(default)]
    pub target_file_mb: Option<f64>,
    /// Row group size limit in MiB (default 64); bounds the writer's memory.
    #[serde(default)]
    pub row_group_mb: Option<u64>,
    /// zstd level (default 3).
    #[serde(default)]
    pub zstd_level: Option<i32>,
    /// S3: the bucket's region (default: from the AWS environment or profile).
    #[serde(default)]
    pub region: Option<String>,
    /// S3: endpoint URL of an S3-compatible store.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// S3: path-style addressing, which most S3-compatible stores need (default false).
    #[serde(default)]
    pub path_style: bool,
    /// S3: access key id (a literal or `${env:NAME}`); with `secret_access_key` it replaces
    /// the AWS credential chain (env, profile, web identity, instance metadata).
    #[serde(default)]
    pub access_key_id: Option<SecretValue>,
    /// S3: secret access key (`${env:NAME}`, `${file:PATH}` or a literal). Never printed.
    #[serde(default)]
    pub secret_access_key: Option<SecretValue>,
    /// S3: session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<SecretValue>,
    /// S3: server-side encryption, `AES256` (SSE-S3) or `aws:kms` (SSE-KMS).
    #[serde(default)]
    pub server_side_encryption: Option<String>,
    /// S3: the KMS key id for `aws:kms` (default: the bucket's key).
    #[serde(default)]
    pub sse_kms_key_id: Option<String>,
    /// S3: storage class of data files (`STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`...).
    #[serde(default)]
    pub storage_class: Option<String>,
    /// S3: multipart part size in MiB (default 8, at least 5); memory per open file.
    #[serde(default)]
    pub part_size_mb: Option<u64>,
    /// A catalog every stream of the destination is registered in as a table after each
    /// sync: `catalog = { type = "glue", database = "raw_shop", region = "eu-west-1" }`.
    #[serde(default)]
    pub catalog: Option<inlet_catalog::CatalogConfig>,
}

impl DestinationConfig {
    /// Whether the destination is an S3 bucket.
    pub fn is_s3(&self) -> bool {
        self.url.starts_with("s3://")
    }
}

/// One connection: a connector, its config, the streams to sync.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Connector name (`inlet connectors` lists them).
    pub connector: String,
    /// Destination name; may be omitted when the project has exactly one.
    #[serde(default)]
    pub destination: Option<String>,
    /// When `inlet daemon` runs it: `every 15m`, `@hourly`, `@daily`, or a Vixie cron
    /// expression `*/15 * * * *` (read in `timezone`).
    #[serde(default)]
    pub schedule: Option<String>,
    /// The IANA time zone the cron fields of `schedule` are read in (`Europe/Berlin`);
    /// default UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// What the daemon does after a run overran due times: `skip` (default) or `catch_up`.
    #[serde(default)]
    pub missed_runs: Option<crate::daemon::MissedRuns>,
    /// Random delay up to this many seconds added to each due time (spreads load).
    #[serde(default)]
    pub jitter_secs: Option<u64>,
    /// State history entries kept (default 1000, at least 1): a rollback can restore any
    /// of the last this many versions. Older entries are pruned by the sync holding the
    /// lease, except what rebuilding the kept versions needs.
    #[serde(default)]
    pub state_history_keep: Option<usize>,
    /// Run records kept, in days (default 90; 0 keeps them all). The newest record of each
    /// outcome is kept however old.
    #[serde(default)]
    pub runs_keep_days: Option<u64>,
    /// Lease time-to-live in seconds (default 300): how long a crashed run on another host
    /// blocks the connection. Renewed while the run goes on.
    #[serde(default)]
    pub lease_ttl_secs: Option<u64>,
    /// Rows per batch asked of the source (default 8192).
    #[serde(default)]
    pub batch_rows: Option<usize>,
    /// Partitions read at once when a source splits a stream (default 1).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Commit a checkpoint at the latest after this many seconds (default 60).
    #[serde(default)]
    pub commit_interval_secs: Option<u64>,
    /// Retries of a transient failure within a run (default 3).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// The connector's own configuration (`inlet spec <connector>` shows its schema).
    #[serde(default = "empty_table")]
    pub config: toml::Table,
    /// Streams to sync and how; all discovered streams with their default mode when empty.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamSelection>,
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

/// How one stream is synced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSelection {
    /// `incremental` or `full_refresh` (default: the stream's default).
    #[serde(default)]
    pub mode: Option<SyncMode>,
    /// Cursor column for incremental syncs that need one.
    #[serde(default)]
    pub cursor_field: Option<String>,
}

/// A parsed project: the file, where it lives, and its text (for line numbers).
#[derive(Debug, Clone)]
pub struct Project {
    /// The parsed file.
    pub file: ProjectFile,
    /// Folder of the file; relative paths are relative to it.
    pub base_dir: PathBuf,
    /// Path of the file, for messages.
    pub path: PathBuf,
    text: String,
}

impl Project {
    /// Read and parse a project file.
    pub fn load(path: &Path) -> Result<Project, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::Config {
            location: path.display().to_string(),
            message: format!("cannot read the project file: {e} (create one, or pass --project)"),
        })?;
        let base_dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Project::parse(&text, path, &base_dir)
    }

    /// Parse project text. Errors name the file, line and field.
    pub fn parse(text: &str, path: &Path, base_dir: &Path) -> Result<Project, RuntimeError> {
        let file: ProjectFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            RuntimeError::Config {
                location: match line {
                    Some(l) => format!("{}:{l}", path.display()),
                    None => path.display().to_string(),
                },
                message: e.message().trim().to_string(),
            }
        })?;
        let project = Project {
            file,
            base_dir: base_dir.to_path_buf(),
            path: path.to_path_buf(),
            text: text.to_string(),
        };
        project.check_references()?;
        Ok(project)
    }

    fn check_references(&self) -> Result<(), RuntimeError> {
        if self.file.version != 1 {
            return Err(self.error_at(
                &["version"],
                format!(
                    "unsupported version {}: this inlet reads version 1",
                    self.file.version
                ),
            ));
        }
        for (name, dest) in &self.file.destinations {
            inlet_lake::layout::check_name("destination", name)
                .map_err(|m| self.error_at(&["destinations", name], m))?;
            if dest.url.trim().is_empty() {
                return Err(self.error_at(&["destinations", name, "url"], "url is empty"));
            }
            if dest
                .target_file_mb
                .is_some_and(|mb| !(mb.is_finite() && mb > 0.0))
            {
                return Err(self.error_at(
                    &["destinations", name, "target_file_mb"],
                    "must be more than 0 (MiB; fractions allowed)",
                ));
            }
            self.check_s3_fields(name, dest)?;
            if let Some(catalog) = &dest.catalog {
                catalog
                    .validate()
                    .map_err(|m| self.error_at(&["destinations", name, "catalog"], m))?;
            }
        }
        for (name, conn) in &self.file.connections {
            inlet_lake::layout::check_name("connection", name)
                .map_err(|m| self.error_at(&["connections", name], m))?;
            let (_, dest) = self.destination_of(name, conn)?;
            for stream in conn.streams.keys() {
                inlet_lake::layout::check_name("stream", stream)
                    .map_err(|m| self.error_at(&["connections", name, "streams", stream], m))?;
            }
            if let Some(catalog) = &dest.catalog {
                inlet_catalog::check_table_names(
                    name,
                    conn.streams.keys().map(String::as_str),
                    Some(catalog),
                )
                .map_err(|e| self.error_at(&["connections", name, "streams"], e.to_string()))?;
            }
            if conn.batch_rows == Some(0) {
                return Err(
                    self.error_at(&["connections", name, "batch_rows"], "must be at least 1")
                );
            }
            crate::schedule::parse_timezone(conn.timezone.as_deref())
                .map_err(|m| self.error_at(&["connections", name, "timezone"], m))?;
            if let Some(s) = &conn.schedule {
                crate::schedule::Schedule::parse_in(s, conn.timezone.as_deref())
                    .map_err(|m| self.error_at(&["connections", name, "schedule"], m))?;
            }
            if conn.state_history_keep == Some(0) {
                return Err(self.error_at(
                    &["connections", name, "state_history_keep"],
                    "must be at least 1 (the current version)",
                ));
            }
            if conn.lease_ttl_secs.is_some_and(|t| t < 2) {
                return Err(self.error_at(
                    &["connections", name, "lease_ttl_secs"],
                    "must be at least 2",
                ));
            }
            if conn.parallelism == Some(0) {
                return Err(
                    self.error_at(&["connections", name, "parallelism"], "must be at least 1")
                );
            }
        }
        Ok(())
    }

    fn check_s3_fields(&self, name: &str, dest: &DestinationConfig) -> Result<(), RuntimeError> {
        let at =
            |field: &str, m: &str| self.error_at(&["destinations", name, field], m.to_string());
        if !dest.is_s3() {
            let s3_only = [
                ("region", dest.region.is_some()),
                ("endpoint", dest.endpoint.is_some()),
                ("path_style", dest.path_style),
                ("access_key_id", dest.access_key_id.is_some()),
                ("secret_access_key", dest.secret_access_key.is_some()),
                ("session_token", dest.session_token.is_some()),
                (
                    "server_side_encryption",
                    dest.server_side_encryption.is_some(),
                ),
                ("sse_kms_key_id", dest.sse_kms_key_id.is_some()),
                ("storage_class", dest.storage_class.is_some()),
                ("part_size_mb", dest.part_size_mb.is_some()),
            ];
            if let Some((field, _)) = s3_only.iter().find(|(_, set)| *set) {
                return Err(at(field, "only applies to s3:// destinations"));
            }
            return Ok(());
        }
        if let Err(m) = check_s3_url(&dest.url) {
            return Err(at("url", &m));
        }
        if dest.access_key_id.is_some() != dest.secret_access_key.is_some() {
            return Err(at(
                "secret_access_key",
                "set both access_key_id and secret_access_key, or neither (to use the AWS credential chain)",
            ));
        }
        if let Some(sse) = &dest.server_side_encryption
            && sse != "AES256"
            && sse != "aws:kms"
        {
            return Err(at(
                "server_side_encryption",
                "must be \"AES256\" (SSE-S3) or \"aws:kms\" (SSE-KMS)",
            ));
        }
        if dest.sse_kms_key_id.is_some()
            && dest.server_side_encryption.as_deref() != Some("aws:kms")
        {
            return Err(at(
                "sse_kms_key_id",
                "needs server_side_encryption = \"aws:kms\"",
            ));
        }
        if dest.part_size_mb.is_some_and(|p| p < 5) {
            return Err(at("part_size_mb", "S3 parts are at least 5 MiB"));
        }
        Ok(())
    }

    /// The connection called `name`.
    pub fn connection(&self, name: &str) -> Result<&ConnectionConfig, RuntimeError> {
        self.file
            .connections
            .get(name)
            .ok_or_else(|| RuntimeError::Config {
                location: self.path.display().to_string(),
                message: format!(
                    "no connection `{name}`; the project has: {}",
                    join_or_none(self.file.connections.keys())
                ),
            })
    }

    /// The name and config of a connection's destination.
    pub fn destination_of<'a>(
        &'a self,
        name: &str,
        conn: &'a ConnectionConfig,
    ) -> Result<(&'a str, &'a DestinationConfig), RuntimeError> {
        match &conn.destination {
            Some(d) => self
                .file
                .destinations
                .get_key_value(d)
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| {
                    self.error_at(
                        &["connections", name, "destination"],
                        format!(
                            "no destination `{d}`; the project has: {}",
                            join_or_none(self.file.destinations.keys())
                        ),
                    )
                }),
            None if self.file.destinations.len() == 1 => self
                .file
                .destinations
                .iter()
                .next()
                .map(|(k, v)| (k.as_str(), v))
                .ok_or_else(|| self.error_at(&["destinations"], "no destination")),
            None => Err(self.error_at(
                &["connections", name],
                format!(
                    "set `destination`: the project has {} destinations ({})",
                    self.file.destinations.len(),
                    join_or_none(self.file.destinations.keys())
                ),
            )),
        }
    }

    /// A config error located at the line of a key path, as well as it can be found.
    pub fn error_at(&self, path: &[&str], message: impl Into<String>) -> RuntimeError {
        let line = find_key_line(&self.text, path);
        RuntimeError::Config {
            location: match line {
                Some(l) => format!("{}:{l}", self.path.display()),
                None => self.path.display().to_string(),
            },
            message: format!("`{}`: {}", path.join("."), message.into()),
        }
    }
}

fn join_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Find the line where the last key of `path` is defined, searching from the line of
/// the deepest table header that names a prefix of the path.
fn find_key_line(text: &str, path: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0;
    let mut matched = 0;
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        if let Some(header) = t
            .strip_prefix('[')
            .and_then(|h| h.trim_end_matches(']').split(']').next())
        {
            let parts: Vec<String> = header
                .trim_start_matches('[')
                .split('.')
                .map(|p| p.trim().trim_matches('"').to_string())
                .collect();
            let n = parts.len();
            if n <= path.len() && parts.iter().zip(path).all(|(a, b)| a == b) && n >= matched {
                matched = n;
                start = i;
                if n == path.len() {
                    return Some(i + 1);
                }
            }
        }
    }
    let key = path.last()?;
    for (i, line) in lines.iter().enumerate().skip(start) {
        let t = line.trim_start();
        let bare = t.strip_prefix('"').unwrap_or(t);
        if let Some(rest) = bare.strip_prefix(key) {
            let rest = rest.trim_start_matches('"').trim_start();
            if rest.starts_with('=') || rest.starts_with('.') {
                return Some(i + 1);
            }
        }
    }
    (matched > 0).then_some(start + 1)
}

/// Convert a connection's TOML config to the JSON value connectors read.
pub fn config_json(table: &toml::Table) -> serde_json::Value {
    fn conv(v: &toml::Value) -> serde_json::Value {
        match v {
            toml::Value::String(s) => serde_json::Value::String(s.clone()),
            toml::Value::Integer(i) => serde_json::Value::from(*i),
            toml::Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
            toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
            toml::Value::Array(a) => serde_json::Value::Array(a.iter().map(conv).collect()),
            toml::Value::Table(t) => {
                serde_json::Value::Object(t.iter().map(|(k, v)| (k.clone(), conv(v))).collect())
            }
        }
    }
    serde_json::Value::Object(table.iter().map(|(k, v)| (k.clone(), conv(v))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1

[destinations.local]
url = "file://./lake"

[connections.shop]
connector = "files"

[connections.shop.config]
path = "data"

[connections.shop.streams.clicks]
mode = "incremental"
"#;

    #[test]
    fn a_good_file_parses_and_the_single_destination_is_the_default() {
        let p = Project::parse(GOOD, Path::new("inlet.toml"), Path::new(".")).unwrap();
        let c = p.connection("shop").unwrap();
        assert_eq!(p.destination_of("shop", c).unwrap().0, "local");
        assert_eq!(c.streams["clicks"].mode, Some(SyncMode::Incremental));
        assert_eq!(config_json(&c.config)["path"], "data");
    }

    #[test]
    fn unknown_fields_name_the_field_and_the_line() {
        let bad = GOOD.replace("mode = \"incremental\"", "mode = \"incremental\"\nmdoe = 1");
        let err = Project::parse(&bad, Path::new("inlet.toml"), Path::new(".")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("inlet.toml:15"), "{msg}");
        assert!(msg.contains("mdoe"), "{msg}");
    }

    #[test]
    fn a_missing_destination_is_named() {
        let bad = GOOD.replace(
            "connector = \"files\"",
            "connector = \"files\"\ndestination = \"s3\"",
        );
        let msg = Project::parse(&bad, Path::new("inlet.toml"), Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("no destination `s3`") && msg.contains("inlet.toml:9"),
            "{msg}"
        );
    }

    #[test]
    fn the_target_file_size_takes_whole_or_fractional_mib_and_more_than_zero() {
        let with = |v: &str| {
            let text = GOOD.replace(
                "url = \"file://./lake\"",
                &format!("url = \"file://./lake\"\ntarget_file_mb = {v}"),
            );
            Project::parse(&text, Path::new("inlet.toml"), Path::new("."))
        };
        let mb = |p: Project| p.file.destinations["local"].target_file_mb;
        assert_eq!(mb(with("12").unwrap()), Some(12.0));
        assert_eq!(mb(with("0.25").unwrap()), Some(0.25));
        for bad in ["0", "-1", "nan"] {
            let msg = with(bad).unwrap_err().to_string();
            assert!(
                msg.contains("target_file_mb") && msg.contains("inlet.toml:6"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn a_catalog_is_checked_and_streams_must_map_to_distinct_tables() {
        let with = |catalog: &str, streams: &str| {
            let text = GOOD
                .replace(
                    "url = \"file://./lake\"",
                    &format!("url = \"file://./lake\"\ncatalog = {catalog}"),
                )
                .replace("[connections.shop.streams.clicks]", streams);
            Project::parse(&text, Path::new("inlet.toml"), Path::new("."))
        };
        let p = with(
            r#"{ type = "glue", database = "raw_shop", table_prefix = "shop_" }"#,
            "[connections.shop.streams.clicks]",
        )
        .unwrap();
        let catalog = p.file.destinations["local"].catalog.clone().unwrap();
        assert_eq!(catalog.database.as_deref(), Some("raw_shop"));
        let msg = with(
            r#"{ type = "glue", databse = "x" }"#,
            "[connections.shop.streams.clicks]",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("databse"), "{msg}");
        let msg = with(
            r#"{ type = "glue", database = "Raw-Shop" }"#,
            "[connections.shop.streams.clicks]",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("catalog") && msg.contains("raw_shop"), "{msg}");
        let msg = with(
            r#"{ type = "glue" }"#,
            "[connections.shop.streams.\"a.b\"]\n[connections.shop.streams.a_b]",
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("`a.b`") && msg.contains("`a_b`"), "{msg}");
    }

    #[test]
    fn key_lines_are_found_under_their_table() {
        let text = "[connections.a.config]\npath = 1\n[connections.b.config]\npath = 2\n";
        assert_eq!(
            find_key_line(text, &["connections", "b", "config", "path"]),
            Some(4)
        );
        assert_eq!(
            find_key_line(text, &["connections", "a", "config", "path"]),
            Some(2)
        );
    }
}
