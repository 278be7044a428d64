//! The error of an HTTP exchange, and its mapping to [`SourceError`].

use inlet_core::SourceError;

/// What went wrong with a request. Messages never contain secrets: URLs and bodies are
/// redacted before they are stored here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The client or a request is misconfigured (bad URL, bad header).
    #[error("{what}: {message}")]
    Config {
        /// The setting or URL.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// The host policy refused the destination.
    #[error("{url}: refused by the host policy: {message}")]
    Denied {
        /// The (redacted) URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        /// The method.
        method: String,
        /// The (redacted) URL.
        url: String,
        /// The status code.
        status: u16,
        /// An excerpt of the body (redacted).
        message: String,
        /// Whether a later attempt may succeed (5xx, 429).
        transient: bool,
    },
    /// Credentials were refused (401, or 403 that is not a rate limit).
    #[error("{url}: authentication failed (HTTP {status}): {message}")]
    Auth {
        /// The (redacted) URL.
        url: String,
        /// 401 or 403.
        status: u16,
        /// What the server said (redacted).
        message: String,
    },
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("{method} {url}: {message}")]
    Network {
        /// The method.
        method: String,
        /// The (redacted) URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The server asks to wait longer than allowed (a rate limit's reset an hour away, a
    /// long `Retry-After`). Transient: a run after `until` may succeed.
    #[error(
        "{url}: {reason}: the server asks to wait {wait_secs} s, until {reset}, longer than {setting} ({max_secs} s); run again after that time, or raise {setting}",
        reset = .until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    RateLimited {
        /// The (redacted) URL.
        url: String,
        /// How long the server asked to wait, from when it was asked.
        wait_secs: u64,
        /// The configured maximum.
        max_secs: u64,
        /// When the wait would end (the rate limit's reset), UTC.
        until: chrono::DateTime<chrono::Utc>,
        /// What asked for the wait: which status and header.
        reason: String,
        /// The setting that caps waits, as the user writes it.
        setting: String,
    },
    /// The response body is larger than the configured limit.
    #[error("{url}: response larger than {limit} bytes (max_response_bytes)")]
    TooLarge {
        /// The (redacted) URL.
        url: String,
        /// The limit.
        limit: u64,
    },
}

impl HttpError {
    /// Whether retrying later (from the last checkpoint) may help.
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Status { transient, .. } => *transient,
            HttpError::Network { .. } | HttpError::RateLimited { .. } => true,
            _ => false,
        }
    }
}

impl From<HttpError> for SourceError {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Config { what, message } => SourceError::config(what, message),
            HttpError::Auth {
                url,
                status,
                message,
            } => SourceError::Auth {
                resource: url,
                message: format!(
                    "HTTP {status}: {message} (check the token or credentials in the connection's config)"
                ),
            },
            e if e.is_transient() => SourceError::Unavailable {
                resource: match &e {
                    HttpError::Status { url, .. }
                    | HttpError::Network { url, .. }
                    | HttpError::RateLimited { url, .. } => url.clone(),
                    _ => String::new(),
                },
                message: e.to_string(),
            },
            other => SourceError::other(other),
        }
    }
}
