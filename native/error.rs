//! The engine's error type.

/// Everything that can fail inside the engine and reach JavaScript.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listening socket could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, #[source] std::io::Error),
    /// Redis (for `cluster`) could not be reached or answered with an error.
    #[error("cannot use Redis at {0}: {1}")]
    Redis(String, String),
    /// Attach mode could not take over a socket's descriptor.
    #[error("cannot adopt the socket: {0}")]
    Adopt(#[source] std::io::Error),
    /// Attach mode's loopback listener could not be started.
    #[error("cannot start the loopback listener: {0}")]
    Loopback(#[source] std::io::Error),
    /// A cluster-scoped query on a server without `cluster`.
    #[error("this server has no cluster option")]
    NoCluster,
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for napi::Error {
    fn from(e: Error) -> Self {
        napi::Error::from_reason(e.to_string())
    }
}
