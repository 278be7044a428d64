use inlet_core::SourceError;
use inlet_lake::LakeError;

/// Why a runtime operation failed. Every variant names what it is about.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The project file or a connection's config is wrong.
    #[error("{location}: {message}")]
    Config {
        /// `file:line` or the field.
        location: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A source failed.
    #[error("connection `{connection}`{}: {source}", stream.as_ref().map(|s| format!(", stream `{s}`")).unwrap_or_default())]
    Source {
        /// The connection.
        connection: String,
        /// The stream, when the failure is a stream's.
        stream: Option<String>,
        /// The cause.
        #[source]
        source: Box<SourceError>,
    },
    /// The lake failed (storage, state).
    #[error("connection `{connection}`: lake {url}: {source}")]
    Lake {
        /// The connection.
        connection: String,
        /// The lake root.
        url: String,
        /// The cause.
        #[source]
        source: Box<LakeError>,
    },
    /// Another run holds the connection's lease.
    #[error("{0}")]
    Busy(Box<LakeError>),
    /// A check found problems.
    #[error("connection `{connection}`: check failed: {summary}")]
    CheckFailed {
        /// The connection.
        connection: String,
        /// The failed items.
        summary: String,
    },
    /// The run was interrupted (signal) after committing what it had.
    #[error(
        "connection `{connection}`: interrupted; landed data and state are consistent, the next sync resumes"
    )]
    Interrupted {
        /// The connection.
        connection: String,
    },
}

impl RuntimeError {
    /// Whether retrying later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            RuntimeError::Source { source, .. } => source.is_transient(),
            RuntimeError::Lake { source, .. } => source.is_transient(),
            RuntimeError::Busy(_) | RuntimeError::Interrupted { .. } => true,
            _ => false,
        }
    }
}
