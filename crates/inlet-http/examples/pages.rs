//! GET N small pages from a local server through `HttpClient`, one after another, and
//! print pages per second. `bench/github_issues.sh` runs it under `/usr/bin/time -v`.
//!
//!   pages URL N
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark")]

use inlet_http::{Auth, HttpClient, HttpOptions};

fn main() {
    let mut args = std::env::args().skip(1);
    let base = args.next().expect("usage: pages URL N");
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let client = HttpClient::new(
            HttpOptions::default(),
            Auth::Bearer(secrecy::SecretString::from("bench-token".to_string())),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let mut bytes = 0usize;
        for page in 1..=n {
            let url = url::Url::parse(&format!("{base}/small?page={page}")).unwrap();
            bytes += client.get(url).await.unwrap().body.len();
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{n} pages ({bytes} bytes) in {secs:.2} s: {:.0} pages/s",
            n as f64 / secs
        );
    });
}
