//! End-to-end tests of the `postgres` connector against a real primary and streaming hot
//! standby that the harness starts (`inlet_testkit::postgres::PgPair`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod catalog_ddl;
mod catalog_glue;
mod cdc;
mod conformance;
mod sample_db;
mod sync;
