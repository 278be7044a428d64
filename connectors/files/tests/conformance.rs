//! The files source runs the source conformance suite: JSON-lines and CSV streams of
//! several files in a temp dir, read in batches of 2 rows so each file has checkpoints
//! inside it and after it.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::{path::Path, sync::Arc};

use inlet_connector_files::FilesConnector;
use inlet_core::{Connector, Source, SyncMode};
use inlet_testkit::conformance::{self, Options};

/// Files of two streams: `events` (JSON lines, 3 files) and `orders` (CSV, 3 files).
fn write_files(dir: &Path) {
    std::fs::create_dir_all(dir.join("events")).unwrap();
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    for f in 0..3 {
        let mut jsonl = String::new();
        let mut csv = String::from("id,customer,amount,note\n");
        for i in 0..5 {
            let n = f * 10 + i;
            jsonl.push_str(&format!(
                "{{\"id\":{n},\"kind\":\"click\",\"at\":\"2024-05-0{}T10:00:0{i}Z\",\"value\":{}.5}}\n",
                f + 1,
                n
            ));
            csv.push_str(&format!("{n},cus_{},{}.25,\"line, {i}\"\n", n % 4, n * 3));
        }
        std::fs::write(dir.join(format!("events/day-{f}.jsonl")), jsonl).unwrap();
        std::fs::write(dir.join(format!("orders/part-{f}.csv")), csv).unwrap();
    }
}

async fn source(dir: &Path) -> Arc<dyn Source> {
    let config = serde_json::json!({
        "path": dir.display().to_string(),
        "streams": {
            "events": { "glob": "events/*.jsonl" },
            "orders": { "glob": "orders/*.csv" },
        },
    });
    conformance::build(&FilesConnector, config, dir).await
}

#[tokio::test]
async fn jsonl_stream_conforms() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let source = source(dir.path()).await;
    let report = conformance::run(&source, &Options::new("events")).await;
    assert_eq!(report.read.rows().len(), 15);
    // Three files of five rows in batches of two: checkpoints inside files and after them.
    assert!(report.resumes >= 9, "{}", report.resumes);
}

#[tokio::test]
async fn csv_stream_conforms_in_both_modes() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let source = source(dir.path()).await;
    for mode in [SyncMode::Incremental, SyncMode::FullRefresh] {
        let report = conformance::run(&source, &Options::new("orders").mode(mode)).await;
        assert_eq!(report.read.rows().len(), 15);
    }
}

#[tokio::test]
async fn a_second_incremental_read_resumes_cleanly_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let source = source(dir.path()).await;
    let first = conformance::run(&source, &Options::new("events")).await;
    // New data after the first sync: a new file and an appended line.
    std::fs::write(
        dir.path().join("events/day-3.jsonl"),
        "{\"id\":30,\"kind\":\"view\"}\n{\"id\":31,\"kind\":\"view\"}\n{\"id\":32,\"kind\":\"view\"}\n",
    )
    .unwrap();
    let options = Options {
        state: first.final_state,
        min_checkpoints: 2,
        ..Options::new("events")
    };
    let second = conformance::run(&source, &options).await;
    assert_eq!(second.read.rows().len(), 3);
}

#[tokio::test]
async fn errors_say_whether_they_are_transient() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    // A bad config is permanent.
    let bad =
        serde_json::json!({"path": ".", "streams": {"e": {"glob": "*.jsonl", "format": "xml"}}});
    conformance::assert_transient(&FilesConnector.validate(&bad).unwrap_err(), false);
    // A malformed record fails the read, permanently (reading it again fails again).
    std::fs::write(
        dir.path().join("events/day-9.jsonl"),
        "{\"id\": 1}\nnot json\n",
    )
    .unwrap();
    let source = source(dir.path()).await;
    conformance::assert_read_fails(&source, &Options::new("events"), false).await;
}

/// A source over files in a temp dir kept for the rest of the test run.
async fn kept_source() -> Arc<dyn Source> {
    let dir = tempfile::tempdir().unwrap().keep();
    write_files(&dir);
    source(&dir).await
}

// The one line a connector needs for the whole suite, one test per stream.
inlet_testkit::conformance_suite!(suite, kept_source().await, {
    events: Options::new("events"),
    orders: Options::new("orders").mode(SyncMode::FullRefresh),
});
