//! How fast the batcher decodes GitHub-shaped pages (the hot path of every REST sync),
//! without HTTP or Parquet. Ignored by default; run it in release:
//!
//!   cargo test --release -p inlet-connector-rest --test batcher_speed -- --ignored --nocapture
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measurement")]

use inlet_connector_rest::json::{JsonBatcher, SchemaPolicy, landable};
use inlet_testkit::shapes;

#[test]
#[ignore = "a measurement: run in release with --ignored"]
fn github_issue_pages_per_second() {
    let pages: Vec<Vec<u8>> = (0..200u64)
        .map(|p| {
            let items: Vec<serde_json::Value> = (0..100u64)
                .map(|i| shapes::github_issue("bench/big", p * 100 + i + 1, (p * 100 + i) as i64))
                .collect();
            serde_json::to_vec(&items).unwrap()
        })
        .collect();
    let bytes: usize = pages.iter().map(Vec::len).sum();
    for round in 0..3 {
        let mut batcher = JsonBatcher::new(vec![], None, SchemaPolicy::default());
        let started = std::time::Instant::now();
        let mut rows = 0;
        for page in &pages {
            let (batch, _) = batcher.decode(page).unwrap();
            let batch = landable(batch.unwrap()).unwrap();
            rows += batch.num_rows();
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "round {round}: {rows} issues ({:.0} MiB of JSON) in {secs:.3} s: {:.0} records/s",
            bytes as f64 / 1048576.0,
            rows as f64 / secs
        );
    }
}
