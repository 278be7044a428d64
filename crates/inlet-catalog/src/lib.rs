//! stub (lane C, replaced by lane B's crate)
#![deny(missing_docs)]
pub mod glue;
