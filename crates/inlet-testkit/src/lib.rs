//! # inlet-testkit: what inlet's tests share
//!
//! Test-only (never published). [`conformance`] is the source conformance suite every
//! connector runs.
#![deny(missing_docs)]

pub mod conformance;
