//! End-to-end tests of the REST connectors (`github`, `stripe`, a manifest) against
//! replay servers on 127.0.0.1 (`inlet_testkit::ReplayServer`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "end-to-end tests: a failed step should fail the test loudly"
)]

mod sync;
mod vendor_examples;

use inlet_testkit::TestProject;

/// An empty project whose commands get `token` (`INLET_TEST_GITHUB_TOKEN`) and
/// `stripe_key` (`INLET_TEST_STRIPE_KEY`) in their environment, and must never print the
/// token.
fn project(token: &str, stripe_key: &str) -> TestProject {
    TestProject::empty()
        .env("INLET_TEST_GITHUB_TOKEN", token)
        .env("INLET_TEST_STRIPE_KEY", stripe_key)
        .never_print(token)
}
