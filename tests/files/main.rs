//! End-to-end tests of the `files` connector: the real `inlet` binary over a project's
//! `data/` folder, landing in a local lake (harness: `inlet-testkit`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod logging;
mod machine_output;
mod sync;
