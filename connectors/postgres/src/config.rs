//! The `postgres` connector's `config` table.

use inlet_core::{SourceError, secret::SecretValue};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

/// Where and how to read.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Host of the replica (a hot standby).
    pub host: String,
    /// Port (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Database name.
    pub database: String,
    /// Role to log in as (give it `pg_read_all_data` or SELECT on the tables).
    pub user: String,
    /// Password: a literal, `${env:NAME}` or `${file:PATH}`. Never printed.
    #[serde(default)]
    pub password: Option<SecretValue>,
    /// TLS: `disable`, `prefer` (default), `require` (encrypted, certificate not checked)
    /// or `verify_full` (certificate checked against `ssl_root_cert` or the web PKI roots,
    /// host name checked).
    #[serde(default)]
    pub ssl_mode: SslMode,
    /// PEM file of the CA that signed the server certificate (for `verify_full`).
    #[serde(default)]
    pub ssl_root_cert: Option<String>,
    /// Read from a primary anyway. Off by default: inlet refuses a server that is not in
    /// recovery, so that a sync never loads production.
    #[serde(default)]
    pub allow_primary: bool,
    /// The replay lag above which a sync waits (or fails, see `on_replay_lag`); default 300.
    #[serde(default = "default_max_lag")]
    pub max_replay_lag_secs: u64,
    /// `wait` (default: poll until the lag is under the limit, up to `replay_lag_wait_secs`)
    /// or `fail`.
    #[serde(default)]
    pub on_replay_lag: LagPolicy,
    /// How long to wait for the lag to come down before failing (default 600).
    #[serde(default = "default_lag_wait")]
    pub replay_lag_wait_secs: u64,
    /// Server-side limit for one statement, seconds (default 900). Chunks are short, so a
    /// statement running this long is stuck.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout_secs: u64,
    /// Seconds to wait for a connection (default 10).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// `application_name` of inlet's sessions (default `inlet/<connection>`).
    #[serde(default)]
    pub application_name: Option<String>,
    /// Tables to offer as streams, as `schema.table` patterns (`*` matches any run of
    /// characters); default: every table and view outside the system schemas.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Patterns of tables to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Rows per primary-key range of a full read (default 500000). Each range is one
    /// short read-only statement, retried on its own.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u64,
    /// Incremental by a timestamp or date cursor: re-read this many seconds before the
    /// saved cursor, for rows committed late (default 60). Rows in the window may land
    /// again in the next run; none is missed.
    #[serde(default = "default_lookback_secs")]
    pub lookback_secs: u64,
    /// Incremental by an integer cursor: re-read this many values before the saved cursor
    /// (default 0; raise it when ids are allocated long before their rows commit).
    #[serde(default)]
    pub lookback_values: u64,
    /// Incremental by cursor: the most rows at the saved cursor value whose versions
    /// are kept in the stream's state (default 100000, about 11 bytes each; 0 keeps
    /// none). The next run's inclusive lower bound reads those rows again and lands only
    /// the ones that changed. Past the limit nothing is kept: those rows land again on
    /// every run until a larger cursor value arrives, and the run report says so.
    #[serde(default = "default_max_boundary_rows")]
    pub max_boundary_rows: u64,
    /// `decimal` (default: numeric(p,s) as Decimal128/256, unconstrained numeric as text)
    /// or `text` (every numeric as its exact text).
    #[serde(default)]
    pub numeric: NumericPolicy,
    /// `numeric(p,s)` wider than 38 digits (and with `numeric = "decimal"`): `text`
    /// (default: the exact Postgres text, which every engine reads; Spark, Athena, Trino
    /// and Redshift have no decimal wider than 38) or `decimal256` (Decimal256(p, s), read
    /// by DuckDB and pyarrow only).
    #[serde(default)]
    pub wide_numeric: WideNumericPolicy,
    /// `time` columns: `text` (default: `HH:MM:SS[.ffffff]` as Postgres prints it; Spark
    /// and Athena have no TIME type) or `time64` (Arrow Time64 in microseconds, read by
    /// DuckDB, pyarrow and Trino).
    #[serde(default)]
    pub time: TimePolicy,
    /// `list` (default: one-dimensional arrays as Arrow lists) or `text` (Postgres'
    /// array text, which keeps any dimensions and lower bounds).
    #[serde(default)]
    pub arrays: ArrayPolicy,
    /// When a table's columns change between runs: `evolve` (default: land the new shape,
    /// record the change in the stream's state) or `fail` (stop with the change listed).
    #[serde(default)]
    pub on_schema_change: SchemaChangePolicy,
    /// Change data capture: with this table set, every incremental stream of the
    /// connection without a `cursor_field` is read from a logical replication slot on the
    /// standby (PostgreSQL 16 or newer), deletes and truncates included.
    #[serde(default)]
    pub cdc: Option<CdcConfig>,
}

/// The `cdc` table: reading the write-ahead log of the standby.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CdcConfig {
    /// The publication the DBA made on the primary (`CREATE PUBLICATION ... FOR TABLE
    /// ...`); it replicates to the standby.
    pub publication: String,
    /// Warn (in `check`, the run record and the log) when a stream's slot keeps more WAL
    /// than this on the standby, in bytes (default 1073741824, 1 GiB).
    #[serde(default = "default_max_retained_bytes")]
    pub max_retained_bytes: u64,
    /// How long making a new slot may wait for the primary to log a snapshot of its
    /// running transactions, in seconds (default 120). On an idle primary that needs
    /// activity or `SELECT pg_log_standby_snapshot()` on the primary.
    #[serde(default = "default_slot_wait_secs")]
    pub slot_wait_secs: u64,
    /// Stop a run's change read at this many changes even when it has not caught up
    /// (default: none; the run reads up to the replay position seen when it started).
    #[serde(default)]
    pub max_changes_per_run: Option<u64>,
}

/// TLS mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it.
    #[default]
    Prefer,
    /// TLS or fail; the certificate is not checked.
    Require,
    /// TLS with the certificate and host name checked.
    VerifyFull,
}

/// What to do when the replica is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LagPolicy {
    /// Wait for it to catch up.
    #[default]
    Wait,
    /// Fail the sync.
    Fail,
}

/// How numerics land.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumericPolicy {
    /// Decimal128/256 where the precision is declared.
    #[default]
    Decimal,
    /// Exact text.
    Text,
}

/// How `numeric(p,s)` with p > 38 lands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WideNumericPolicy {
    /// The exact Postgres text (Utf8).
    #[default]
    Text,
    /// Decimal256(p, s).
    Decimal256,
}

/// How `time` lands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimePolicy {
    /// `HH:MM:SS[.ffffff]` (Utf8).
    #[default]
    Text,
    /// Time64(µs).
    Time64,
}

/// How arrays land.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ArrayPolicy {
    /// Arrow lists.
    #[default]
    List,
    /// Postgres text form.
    Text,
}

/// What a schema change does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SchemaChangePolicy {
    /// Land the new shape and record the change.
    #[default]
    Evolve,
    /// Stop.
    Fail,
}

fn default_port() -> u16 {
    5432
}
fn default_max_lag() -> u64 {
    300
}
fn default_lag_wait() -> u64 {
    600
}
fn default_statement_timeout() -> u64 {
    900
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_chunk_rows() -> u64 {
    500_000
}
fn default_lookback_secs() -> u64 {
    60
}
fn default_max_boundary_rows() -> u64 {
    100_000
}
fn default_max_retained_bytes() -> u64 {
    1 << 30
}
fn default_slot_wait_secs() -> u64 {
    120
}

/// Parse and check a config without I/O.
pub fn parse(config: &Value) -> Result<PostgresConfig, SourceError> {
    let cfg: PostgresConfig = inlet_core::kit::parse_config(config)?;
    check(&cfg)?;
    Ok(cfg)
}

/// The checks of a parsed config that its types cannot express (pure).
pub fn check(cfg: &PostgresConfig) -> Result<(), SourceError> {
    if cfg.host.trim().is_empty() {
        return Err(SourceError::config("host", "must not be empty"));
    }
    if cfg.database.trim().is_empty() {
        return Err(SourceError::config("database", "must not be empty"));
    }
    if cfg.user.trim().is_empty() {
        return Err(SourceError::config("user", "must not be empty"));
    }
    if cfg.chunk_rows == 0 {
        return Err(SourceError::config("chunk_rows", "must be at least 1"));
    }
    if cfg.statement_timeout_secs == 0 {
        return Err(SourceError::config(
            "statement_timeout_secs",
            "must be at least 1 (0 would disable the limit)",
        ));
    }
    if cfg.ssl_root_cert.is_some() && cfg.ssl_mode != SslMode::VerifyFull {
        return Err(SourceError::config(
            "ssl_root_cert",
            "is used only with ssl_mode = \"verify_full\"",
        ));
    }
    if let Some(cdc) = &cfg.cdc
        && cdc.publication.trim().is_empty()
    {
        return Err(SourceError::config(
            "cdc.publication",
            "must name the publication made on the primary (CREATE PUBLICATION inlet FOR TABLE ...)",
        ));
    }
    for (field, patterns) in [("tables", &cfg.tables), ("exclude", &cfg.exclude)] {
        for (i, p) in patterns.iter().enumerate() {
            if !p.contains('.') {
                return Err(SourceError::config(
                    format!("{field}[{i}]"),
                    format!("`{p}` must be `schema.table` (use `public.*` for a whole schema)"),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `name` (`schema.table`) matches a pattern where `*` is any run of characters.
pub fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn errors_name_the_field() {
        let e = parse(&serde_json::json!({"host": "h", "database": "d", "user": "u", "prot": 1}))
            .unwrap_err();
        assert!(e.to_string().contains("prot"), "{e}");
        let e = parse(
            &serde_json::json!({"host": "h", "database": "d", "user": "u", "tables": ["orders"]}),
        )
        .unwrap_err();
        assert!(e.to_string().contains("tables[0]"), "{e}");
        let e = parse(&serde_json::json!({"host": "h", "database": "d", "user": "u", "ssl_mode": "sometimes"}))
            .unwrap_err();
        assert!(e.to_string().contains("ssl_mode"), "{e}");
    }

    #[test]
    fn patterns() {
        assert!(matches("public.*", "public.orders"));
        assert!(matches("*.orders", "sales.orders"));
        assert!(!matches("public.order", "public.orders"));
    }
}
