use std::io;

/// Errors of the lake: storage, state, leases.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LakeError {
    /// An I/O error on a named key or path.
    #[error("{resource}: {source}")]
    Io {
        /// The key or path.
        resource: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A conditional write lost: another writer changed the object first.
    #[error("{resource}: changed by another writer ({message})")]
    Conflict {
        /// The key.
        resource: String,
        /// What was expected.
        message: String,
    },
    /// The connection is being synced by someone else.
    #[error(
        "connection `{connection}` is busy: held by {holder} (run {run_id}) until {expires_at}"
    )]
    Busy {
        /// The connection.
        connection: String,
        /// Who holds the lease (host and pid).
        holder: String,
        /// The holder's run.
        run_id: String,
        /// When the lease expires unless renewed.
        expires_at: String,
    },
    /// A stored object is not what inlet wrote.
    #[error("{resource}: corrupt: {message}")]
    Corrupt {
        /// The key.
        resource: String,
        /// What is wrong.
        message: String,
    },
    /// Writing Parquet failed.
    #[error("writing Parquet for {resource}: {message}")]
    Parquet {
        /// The stream or file.
        resource: String,
        /// The cause.
        message: String,
    },
    /// An object store answered with an error.
    #[error("{resource}: {message}")]
    Remote {
        /// The bucket, key or operation.
        resource: String,
        /// What the store said and what to do; never contains credentials.
        message: String,
        /// Whether retrying may help (throttling, 5xx, timeouts).
        transient: bool,
    },
    /// A request on the state that cannot be met (unknown version, unknown stream).
    #[error("{0}")]
    Invalid(String),
}

impl LakeError {
    pub(crate) fn io(resource: impl Into<String>, source: io::Error) -> Self {
        LakeError::Io {
            resource: resource.into(),
            source,
        }
    }

    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        match self {
            LakeError::Io { source, .. } => !matches!(
                source.kind(),
                io::ErrorKind::PermissionDenied
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::StorageFull
            ),
            LakeError::Conflict { .. } | LakeError::Busy { .. } => true,
            LakeError::Remote { transient, .. } => *transient,
            _ => false,
        }
    }
}
