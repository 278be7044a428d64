//! # inlet-testkit: what inlet's tests share
//!
//! The end-to-end tests drive the real `inlet` binary against real systems on loopback;
//! this crate is the one place that starts those systems and reads back what landed:
//!
//! - [`http::ReplayServer`]: an HTTP server answering from a handler (or from a recorded
//!   API, [`http::ReplayServer::recording`]), logging every request it saw;
//! - [`s3::S3Server`]: an S3-compatible server (s3s-fs, SigV4 checked) over a temp dir;
//! - [`moto::MotoServer`]: moto in server mode, a real Glue, S3 and IAM API (IAM enforced);
//! - [`postgres::PgPair`]: a throwaway Postgres primary and streaming hot standby;
//! - [`project::TestProject`]: a project folder with `inlet.toml`, runs of the binary,
//!   and [`lake`] readers of the Parquet it landed (ours and an outside one);
//! - [`shapes`]: records shaped field for field like GitHub's and Stripe's;
//! - [`conformance`]: the source conformance suite every connector runs, on the
//!   `Source` itself (resume from every checkpoint, no gap, no duplicate).
//!
//! It is a dev-dependency only (`publish = false`): nothing of it is in the shipped binary.
//! A failed setup step panics with what went wrong, as a failed assertion does.
#![deny(missing_docs)]
#![expect(
    clippy::expect_used,
    reason = "a test kit: a setup step that fails must fail the test, naming the step"
)]

pub mod conformance;
pub mod http;
pub mod lake;
pub mod moto;
pub mod postgres;
pub mod project;
pub mod s3;
mod serve;
pub mod shapes;

pub use http::{ReplayServer, Reply, Req};
pub use project::TestProject;

/// A port on 127.0.0.1 that nothing listens on: no test server binds below the ephemeral
/// range (a port freed by [`free_port`] may be handed to the next server that asks).
pub const CLOSED_PORT: u16 = 1;

/// A port on 127.0.0.1 that was free a moment ago, for a server started by the test.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Wait for `child` to exit; its exit status and its peak RSS in KiB (`VmHWM`, read from
/// `/proc` every 20 ms until it exits; 0 where `/proc` cannot be read).
pub fn wait_peak_rss(mut child: std::process::Child) -> (std::process::ExitStatus, u64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut rss_kib = 0u64;
    loop {
        // VmHWM is the process's peak RSS so far.
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            rss_kib = rss_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return (status, rss_kib);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A pseudo-random `next(n)` in `0..n` for tests that kill or perturb at random moments,
/// seeded from the clock and the seed printed (a failure names the seed that made it).
pub fn seeded_rng() -> impl FnMut(u64) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    println!("seed {seed}");
    let mut rng = seed;
    move |n: u64| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (rng >> 33) % n
    }
}
