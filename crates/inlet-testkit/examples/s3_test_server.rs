//! A local S3-compatible server (s3s-fs, SigV4 checked) for benchmarks and manual tests:
//!
//!     cargo run -p inlet-testkit --example s3_test_server -- DIR [PORT]
//!
//! Buckets are the folders of DIR (a bucket `lake` is created). Credentials: access key
//! `inlet`, secret `inlet-secret` (override with S3_TEST_ACCESS_KEY / S3_TEST_SECRET_KEY).
//! Prints its endpoint, `http://127.0.0.1:PORT`, and serves until killed.
#![allow(clippy::expect_used, reason = "a developer tool")]

use inlet_testkit::s3::S3Server;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: s3_test_server DIR [PORT]"));
    let port: u16 = args.next().map(|p| p.parse().expect("port")).unwrap_or(0);
    let ak = std::env::var("S3_TEST_ACCESS_KEY").unwrap_or_else(|_| "inlet".into());
    let sk = std::env::var("S3_TEST_SECRET_KEY").unwrap_or_else(|_| "inlet-secret".into());
    let server = S3Server::builder_at(&dir, &ak, &sk)
        .bucket("lake")
        .port(port)
        .start();
    println!("{}", server.endpoint());
    server.wait();
}
