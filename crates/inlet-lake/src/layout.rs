//! Where things go under the lake root. The one place that names keys.

use chrono::{DateTime, NaiveDate, Utc};

/// Prefix of everything that is not data. Hive-style readers skip `_`-prefixed folders.
pub const META: &str = "_inlet";

/// `<source>/<stream>/extracted_at=YYYY-MM-DD/part-<run>-<n>.parquet`
pub fn data_file(source: &str, stream: &str, date: NaiveDate, run_id: &str, n: u32) -> String {
    format!(
        "{source}/{stream}/extracted_at={}/part-{run_id}-{n:05}.parquet",
        date.format("%Y-%m-%d")
    )
}

/// The prefix holding a stream's data.
pub fn stream_prefix(source: &str, stream: &str) -> String {
    format!("{source}/{stream}/")
}

/// The staging key of a data file: under `_inlet/staging/`, never ending in `.parquet`.
pub fn staging_key(final_key: &str) -> String {
    format!("{META}/staging/{final_key}.inprogress")
}

/// Staging prefix of one source.
pub fn staging_prefix(source: &str) -> String {
    format!("{META}/staging/{source}/")
}

/// Folder of a connection's metadata.
pub fn connection_prefix(source: &str) -> String {
    format!("{META}/connections/{source}/")
}

/// The current state of a connection.
pub fn state_key(source: &str) -> String {
    format!("{META}/connections/{source}/state.json")
}

/// One entry of a connection's state history.
pub fn history_key(source: &str, seq: u64) -> String {
    format!("{META}/connections/{source}/history/{seq:020}.json")
}

/// Prefix of a connection's state history.
pub fn history_prefix(source: &str) -> String {
    format!("{META}/connections/{source}/history/")
}

/// The lease of a connection.
pub fn lease_key(source: &str) -> String {
    format!("{META}/connections/{source}/lease.json")
}

/// The schema record of a stream: every schema it has landed ([`crate::SchemaRecord`]).
/// Under the connection's folder, so no source name can collide with `runs/` or `staging/`.
pub fn schema_key(source: &str, stream: &str) -> String {
    format!("{}{stream}.json", schemas_prefix(source))
}

/// Prefix of a source's schema records.
pub fn schemas_prefix(source: &str) -> String {
    format!("{META}/connections/{source}/schemas/")
}

/// A run record.
pub fn run_key(source: &str, run_id: &str) -> String {
    format!("{META}/runs/{source}/{run_id}.json")
}

/// Prefix of run records (all sources, or one).
pub fn runs_prefix(source: Option<&str>) -> String {
    match source {
        Some(s) => format!("{META}/runs/{s}/"),
        None => format!("{META}/runs/"),
    }
}

/// A new run id: UTC start time (sortable) and 8 random hex digits.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &random[random.len() - 8..]
    )
}

/// Check that a name can be a folder of the lake: no separators, no dot-names, not the
/// metadata prefix.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && !name.starts_with('_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{name}` cannot be a lake folder: use 1-128 characters from a-z, A-Z, 0-9, '-', '_', '.', not starting with '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_files_are_hive_partitioned_and_staging_is_not_parquet() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
        let k = data_file("shop", "orders", d, "r1", 7);
        assert_eq!(
            k,
            "shop/orders/extracted_at=2026-11-03/part-r1-00007.parquet"
        );
        let s = staging_key(&k);
        assert!(s.starts_with("_inlet/") && !s.ends_with(".parquet"));
    }

    #[test]
    fn names_that_would_escape_the_layout_are_refused() {
        assert!(check_name("stream", "clicks").is_ok());
        for bad in ["", "../x", "a/b", "_inlet", ".hidden", "a b"] {
            assert!(check_name("stream", bad).is_err(), "{bad}");
        }
    }
}
