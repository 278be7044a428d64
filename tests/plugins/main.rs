//! End-to-end tests of WebAssembly plugins: installed, listed and synced by the real
//! `inlet` binary from recorded APIs (`inlet_testkit::ReplayServer::recording`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod conformance;
mod python;
mod sync;
