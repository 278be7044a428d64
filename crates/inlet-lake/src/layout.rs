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

/// The oldest version of a connection's state that its pruned history can rebuild.
pub fn history_floor_key(source: &str) -> String {
    format!("{META}/connections/{source}/history-floor.json")
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

/// The marker that indexes a finished run by its outcome (an empty object), so listing the
/// runs of one outcome reads no other record.
pub fn run_outcome_key(source: &str, outcome: &str, run_id: &str) -> String {
    format!("{META}/runs/{source}/outcome/{outcome}/{run_id}")
}

/// Prefix of the outcome markers of one source and outcome.
pub fn run_outcome_prefix(source: &str, outcome: &str) -> String {
    format!("{META}/runs/{source}/outcome/{outcome}/")
}

/// Prefix of run records (all sources, or one).
pub fn runs_prefix(source: Option<&str>) -> String {
    match source {
        Some(s) => format!("{META}/runs/{s}/"),
        None => format!("{META}/runs/"),
    }
}

/// A new run id: the UTC start time to the second, then the millisecond (3 digits) and 5
/// random hex digits: `20261202T054944Z-123a1b2c`. Ids sort by start time to the
/// millisecond, so two runs within one second list in the order they started.
pub fn new_run_id(now: DateTime<Utc>) -> String {
    let random = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{}-{:03}{}",
        now.format("%Y%m%dT%H%M%SZ"),
        now.timestamp_subsec_millis().min(999),
        &random[random.len() - 5..]
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
    fn run_ids_sort_by_start_time_within_a_second() {
        let start = DateTime::parse_from_rfc3339("2026-12-02T05:49:44.001Z")
            .unwrap()
            .to_utc();
        let ids: Vec<String> = [0, 9, 10, 99, 100, 998]
            .iter()
            .map(|ms| new_run_id(start + chrono::Duration::milliseconds(*ms)))
            .chain([new_run_id(start + chrono::Duration::seconds(1))])
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert!(ids[0].starts_with("20261202T054944Z-001"), "{}", ids[0]);
        assert_eq!(ids[0].len(), "20261202T054944Z-".len() + 8);
        assert_ne!(new_run_id(start), new_run_id(start), "random part");
    }

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
