//! The declarative REST source.
#![deny(missing_docs)]
pub mod json;
pub mod manifest;
