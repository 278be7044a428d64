//! End-to-end tests of landing and its state: S3 as the lake, crash safety and resume,
//! the `state` commands and the lease, `inlet daemon`, and registration in a real Glue Data
//! Catalog (moto) (harness: `inlet-testkit`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod catalog_glue;
mod crash_resume;
mod daemon;
mod deploy;
mod s3;
mod state_cli;
