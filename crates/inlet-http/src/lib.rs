//! # inlet-http: the one place inlet builds an HTTP client
//!
//! Every API connector (the declarative REST engine, GitHub, Stripe, and the host HTTP
//! function of WebAssembly plugins) sends its requests through an [`HttpClient`]:
//!
//! ```text
//!  request ──> HostPolicy (host, then every resolved address) ──> per-host limiter
//!          ──> auth applied (secrets expanded here only) ──> reqwest (rustls, gzip)
//!          ──> status: 2xx ──> body read up to max_response_bytes ──> Response
//!                      429 / 403 rate limited ──> wait the later of Retry-After and
//!                                                 X-RateLimit-Reset, if within
//!                                                 max_rate_limit_wait, else fail (transient)
//!                      5xx, 408, network, timeout ──> exponential backoff with jitter
//!                      401 with OAuth2 ──> refresh the access token once
//!                      other 4xx ──> permanent error
//! ```
//!
//! Secrets are [`secrecy::SecretString`]s inside [`Auth`]; they are written into headers or
//! the query string only while a request is built, and every message this crate produces
//! (logs and [`HttpError`]s) passes through a redactor that replaces each known secret
//! value and the values of credential-like query parameters with `***`.
//!
//! [`link`] parses `Link` headers (RFC 8288) for the connectors that page by them.
//!
//! A [`HostPolicy`] is checked before a connection is made: once on the URL's host and
//! again on every address DNS resolves it to, so that a name pointing at a private or
//! loopback address cannot slip through ([`AddressPolicy`] is the ready-made one).
#![deny(missing_docs)]

mod auth;
mod client;
mod error;
mod limit;
pub mod link;
mod policy;

pub use auth::{Auth, OAuth2RefreshToken};
pub use client::{HttpClient, HttpOptions, Request, Response};
pub use error::HttpError;
pub use policy::{AddressPolicy, HostPolicy, is_private};
