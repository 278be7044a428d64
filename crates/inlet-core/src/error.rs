//! The one error type a source returns, and whether it is worth retrying.

use std::fmt;

/// An error from a connector. Every variant names the thing it is about (a config field,
/// a file, an endpoint, a table) so that the message alone tells a person what to fix.
///
/// [`SourceError::is_transient`] tells the runtime whether retrying the same read from the
/// last checkpoint may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The configuration is wrong: permanent until the config changes.
    #[error("config field `{field}`: {message}")]
    Config {
        /// Path of the field, e.g. `streams.clicks.glob`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Credentials were refused: permanent until they change.
    #[error("{resource}: authentication failed: {message}")]
    Auth {
        /// The system that refused (host, database, API).
        resource: String,
        /// What it said; never contains the secret.
        message: String,
    },
    /// The system could not be reached or answered with a temporary failure.
    #[error("{resource}: unavailable: {message}")]
    Unavailable {
        /// The host, file or endpoint.
        resource: String,
        /// What happened.
        message: String,
    },
    /// An I/O error on a named resource (file, directory, socket).
    #[error("{resource}: {source}")]
    Io {
        /// The file or directory.
        resource: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
        /// Whether retrying may help.
        transient: bool,
    },
    /// The data itself is malformed (a bad line, a bad page): permanent for this input.
    #[error("{location}: {message}")]
    Data {
        /// Where: `file:line`, `endpoint page 3`, `table.column`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// The saved state cannot be used by this connector.
    #[error("state of stream `{stream}`: {message}")]
    State {
        /// The stream whose state is bad.
        stream: String,
        /// What is wrong and how to repair it (reset, set).
        message: String,
    },
    /// The stream does not exist in this source.
    #[error("unknown stream `{stream}`: {message}")]
    UnknownStream {
        /// The requested stream.
        stream: String,
        /// Which streams exist.
        message: String,
    },
    /// The reader of a stream died before the end (its producer panicked or was
    /// dropped): the stream is not complete, whatever was read before. Permanent: it is a
    /// bug, and a retry would most likely meet it again.
    #[error(
        "stream `{stream}` did not finish: {message}; the run fails and the stream's state stays at its last commit"
    )]
    Crashed {
        /// The stream.
        stream: String,
        /// What happened (the panic's message).
        message: String,
    },
    /// Anything else.
    #[error("{message}")]
    Other {
        /// What happened.
        message: String,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl SourceError {
    /// Whether a retry of the read from the last checkpoint may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Unavailable { .. } => true,
            SourceError::Io { transient, .. } | SourceError::Other { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Shorthand for a [`SourceError::Config`] error.
    pub fn config(field: impl Into<String>, message: impl fmt::Display) -> Self {
        SourceError::Config {
            field: field.into(),
            message: message.to_string(),
        }
    }

    /// Shorthand for a [`SourceError::Data`] error.
    pub fn data(location: impl Into<String>, message: impl fmt::Display) -> Self {
        SourceError::Data {
            location: location.into(),
            message: message.to_string(),
        }
    }

    /// Shorthand for an [`SourceError::Io`] error, transient unless the kind says
    /// otherwise (not found and permission denied are permanent).
    pub fn io(resource: impl Into<String>, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        let transient = !matches!(
            source.kind(),
            ErrorKind::NotFound
                | ErrorKind::PermissionDenied
                | ErrorKind::InvalidData
                | ErrorKind::InvalidInput
                | ErrorKind::IsADirectory
                | ErrorKind::NotADirectory
        );
        SourceError::Io {
            resource: resource.into(),
            source,
            transient,
        }
    }

    /// Shorthand for a [`SourceError::State`] error.
    pub fn state(stream: impl Into<String>, message: impl fmt::Display) -> Self {
        SourceError::State {
            stream: stream.into(),
            message: message.to_string(),
        }
    }

    /// Shorthand for a permanent [`SourceError::Other`] error.
    pub fn other(message: impl fmt::Display) -> Self {
        SourceError::Other {
            message: message.to_string(),
            transient: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_permanent_but_interrupted_read_is_transient() {
        let missing = SourceError::io("a.csv", std::io::Error::from(std::io::ErrorKind::NotFound));
        assert!(!missing.is_transient());
        let reset = SourceError::io(
            "a.csv",
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        );
        assert!(reset.is_transient());
        assert!(
            SourceError::Unavailable {
                resource: "h".into(),
                message: "x".into()
            }
            .is_transient()
        );
        assert!(!SourceError::config("path", "missing").is_transient());
    }
}
