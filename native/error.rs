//! The engine's errors: one enum per concern, each variant with a stable code.
//!
//! The code becomes the JS error's `.code`: a `#[napi]` function returning
//! `napi::Result<T, Code>` throws with `code` set to the status string (napi-rs does so for any
//! status type that is `AsRef<str>`); the facade's `lib/errors.ts` lists the same codes and `docs/errors.md`
//! documents them. A code, once published, never changes meaning.

use std::future::Future;

use napi::bindgen_prelude::{JsError, PromiseRaw, ToNapiValue};
use napi::Env;

/// The stable codes of errors the engine throws or rejects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An option the engine cannot use.
    InvalidOption,
    /// The address is taken by another socket (EADDRINUSE).
    AddrInUse,
    /// The host is not an address of this machine (EADDRNOTAVAIL).
    AddrNotAvailable,
    /// Binding failed for another reason (permissions, a host that does not resolve, resources).
    ListenFailed,
    /// `listen()` on a server that already listened.
    AlreadyListening,
    /// A call that needs a listening server on one that is not (yet, or any more).
    NotListening,
    /// Redis could not be reached (refused, timed out, dropped).
    RedisUnreachable,
    /// Redis answered, with an error (authentication, ACL, wrong type...).
    RedisRefused,
    /// A cluster-scoped call on a server without the `cluster` option.
    NoCluster,
    /// The connection is closed or closing.
    SocketClosed,
    /// The connection is not a member of the room.
    NotInRoom,
    /// Attach mode could not take over a socket (its descriptor, or the loopback hand-over).
    AttachFailed,
    /// A room id too long for the cluster envelope's u16 length field.
    ClusterRoomTooLong,
    /// An except list too long for the cluster envelope's u32 count field.
    ClusterExceptTooLong,
    /// A TLS certificate (chain or `ca`) that cannot be used: not PEM, no certificate, not X.509.
    InvalidCert,
    /// A TLS private key that cannot be used: not PEM, unsupported, or not the certificate's.
    InvalidKey,
    /// An encrypted TLS private key without its passphrase, or with a wrong one.
    BadPassphrase,
    /// A TLS call (`setSecureContext`, `addServerName`) on a server without the `tls` option.
    NoTls,
    /// napi itself failed (the JS engine refused a value); not caused by the caller.
    Internal,
}

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        match self {
            Code::InvalidOption => "ERR_INVALID_OPTION",
            Code::AddrInUse => "ERR_ADDR_IN_USE",
            Code::AddrNotAvailable => "ERR_ADDR_NOT_AVAILABLE",
            Code::ListenFailed => "ERR_LISTEN_FAILED",
            Code::AlreadyListening => "ERR_ALREADY_LISTENING",
            Code::NotListening => "ERR_NOT_LISTENING",
            Code::RedisUnreachable => "ERR_REDIS_UNREACHABLE",
            Code::RedisRefused => "ERR_REDIS_REFUSED",
            Code::NoCluster => "ERR_NO_CLUSTER",
            Code::SocketClosed => "ERR_SOCKET_CLOSED",
            Code::NotInRoom => "ERR_NOT_IN_ROOM",
            Code::AttachFailed => "ERR_ATTACH_FAILED",
            Code::ClusterRoomTooLong => "ERR_CLUSTER_ROOM_TOO_LONG",
            Code::ClusterExceptTooLong => "ERR_CLUSTER_EXCEPT_TOO_LONG",
            Code::InvalidCert => "ERR_INVALID_CERT",
            Code::InvalidKey => "ERR_INVALID_KEY",
            Code::BadPassphrase => "ERR_BAD_PASSPHRASE",
            Code::NoTls => "ERR_NO_TLS",
            Code::Internal => "ERR_INTERNAL",
        }
    }
}

/// An option the engine refuses (the facade checks them first; this is the engine's own guard).
#[derive(Debug, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    /// The option, as JS spells it (`port`, `cluster.redis`...).
    pub name: &'static str,
    pub reason: String,
}

/// Why the listening socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {0}: the address is in use")]
    AddrInUse(String, #[source] std::io::Error),
    #[error("cannot listen on {0}: not an address of this machine ({1})")]
    AddrNotAvailable(String, #[source] std::io::Error),
    #[error("cannot listen on {0}: {1}")]
    Failed(String, #[source] std::io::Error),
    #[error("listen() was already called on this server")]
    AlreadyListening,
}

impl ListenError {
    /// Classifies a bind (or address lookup) failure on `addr`.
    pub fn from_io(addr: String, e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::AddrInUse => ListenError::AddrInUse(addr, e),
            std::io::ErrorKind::AddrNotAvailable => ListenError::AddrNotAvailable(addr, e),
            _ => ListenError::Failed(addr, e),
        }
    }
}

/// Redis (the `cluster` option) failures and cluster calls that cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The URL is not one the Redis client accepts.
    #[error("cluster.redis {0} is not a usable Redis URL: {1}")]
    InvalidUrl(String, String),
    #[error("cannot reach Redis at {0}: {1}")]
    Unreachable(String, String),
    #[error("Redis at {0} refused: {1}")]
    Refused(String, String),
    #[error("this server has no cluster option")]
    NotConfigured,
    #[error("the cluster is not connected: call listen() first")]
    NotStarted,
}

impl ClusterError {
    /// Sorts a Redis client error: no answer (I/O, timeout, refused, dropped) or an error reply.
    pub fn from_redis(url: &str, e: &redis::RedisError) -> Self {
        if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped() {
            ClusterError::Unreachable(url.to_string(), e.to_string())
        } else {
            ClusterError::Refused(url.to_string(), e.to_string())
        }
    }
}

/// Why a cluster envelope could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The room id does not fit its u16 length field.
    #[error("room id longer than 65535 bytes")]
    RoomTooLong,
    /// The except list does not fit its u32 count field.
    #[error("except list longer than 4294967295 ids")]
    TooManyExcept,
}

/// A call about a connection that cannot be carried out in the state it is in.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("the socket is closed")]
    Closed,
    #[error("the socket is not in room {0}")]
    NotInRoom(String),
}

/// Attach mode failures: a socket the engine could not take over.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The descriptor could not be duplicated or registered (fast path).
    #[error("cannot adopt the socket: {0}")]
    Adopt(#[source] std::io::Error),
    /// The loopback listener of the slow path could not be started.
    #[error("cannot start the loopback listener: {0}")]
    Loopback(#[source] std::io::Error),
}

/// TLS certificates and keys the engine cannot use (`tls.rs`).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: not a usable certificate ({1})")]
    InvalidCert(&'static str, String),
    #[error("{0}: not a usable private key ({1})")]
    InvalidKey(&'static str, String),
    #[error("{0}: the private key is encrypted and {1}")]
    BadPassphrase(&'static str, &'static str),
    #[error("this server has no tls option")]
    NotConfigured,
}

/// Everything that can fail inside the engine and reach JavaScript.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

impl Error {
    /// The stable code JS sees as `error.code`.
    pub fn code(&self) -> Code {
        match self {
            Error::Config(_) => Code::InvalidOption,
            Error::Listen(ListenError::AddrInUse(..)) => Code::AddrInUse,
            Error::Listen(ListenError::AddrNotAvailable(..)) => Code::AddrNotAvailable,
            Error::Listen(ListenError::Failed(..)) => Code::ListenFailed,
            Error::Listen(ListenError::AlreadyListening) => Code::AlreadyListening,
            Error::Cluster(ClusterError::InvalidUrl(..)) => Code::InvalidOption,
            Error::Cluster(ClusterError::Unreachable(..)) => Code::RedisUnreachable,
            Error::Cluster(ClusterError::Refused(..)) => Code::RedisRefused,
            Error::Cluster(ClusterError::NotConfigured) => Code::NoCluster,
            Error::Cluster(ClusterError::NotStarted) => Code::NotListening,
            Error::Socket(SocketError::Closed) => Code::SocketClosed,
            Error::Socket(SocketError::NotInRoom(_)) => Code::NotInRoom,
            Error::Attach(_) => Code::AttachFailed,
            Error::Envelope(EnvelopeError::RoomTooLong) => Code::ClusterRoomTooLong,
            Error::Envelope(EnvelopeError::TooManyExcept) => Code::ClusterExceptTooLong,
            Error::Tls(TlsError::InvalidCert(..)) => Code::InvalidCert,
            Error::Tls(TlsError::InvalidKey(..)) => Code::InvalidKey,
            Error::Tls(TlsError::BadPassphrase(..)) => Code::BadPassphrase,
            Error::Tls(TlsError::NotConfigured) => Code::NoTls,
        }
    }
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for napi::Error<Code> {
    fn from(e: Error) -> Self {
        napi::Error::new(e.code(), e.to_string())
    }
}

/// A napi failure (not the caller's doing) as a coded error.
pub fn internal(e: napi::Error) -> napi::Error<Code> {
    napi::Error::new(Code::Internal, e.reason)
}

/// Runs `fut` on the engine's runtime as a promise that rejects with a coded error.
///
/// `Env::spawn_future` rejects with napi's own status as the code; so the future's error is
/// turned, on the JS thread, into a JS error carrying our code, and the promise rejects with
/// that very object.
pub fn spawn<T, F>(env: &Env, fut: F) -> napi::Result<PromiseRaw<'_, T>, Code>
where
    T: 'static + Send + ToNapiValue,
    F: 'static + Send + Future<Output = Result<T>>,
{
    env.spawn_future_with_callback(async move { Ok(fut.await) }, |env, result| {
        result.map_err(|e| {
            let error = JsError::from(napi::Error::from(e)).into_unknown(*env);
            napi::Error::from(error)
        })
    })
    .map_err(internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(kind: std::io::ErrorKind) -> std::io::Error {
        std::io::Error::new(kind, "test")
    }

    #[test]
    fn bind_failures_are_classified_by_kind() {
        let code = |kind| Error::from(ListenError::from_io("h:1".into(), io(kind))).code();
        assert_eq!(code(std::io::ErrorKind::AddrInUse), Code::AddrInUse);
        assert_eq!(code(std::io::ErrorKind::AddrNotAvailable), Code::AddrNotAvailable);
        assert_eq!(code(std::io::ErrorKind::PermissionDenied), Code::ListenFailed);
    }

    #[test]
    fn redis_failures_are_unreachable_or_refused() {
        let refused = redis::RedisError::from(io(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(
            Error::from(ClusterError::from_redis("redis://x", &refused)).code(),
            Code::RedisUnreachable
        );
        let reply = redis::RedisError::from((redis::ErrorKind::AuthenticationFailed, "NOAUTH"));
        assert_eq!(Error::from(ClusterError::from_redis("redis://x", &reply)).code(), Code::RedisRefused);
    }

    #[test]
    fn every_code_is_distinct_and_prefixed() {
        let all = [
            Code::InvalidOption,
            Code::AddrInUse,
            Code::AddrNotAvailable,
            Code::ListenFailed,
            Code::AlreadyListening,
            Code::NotListening,
            Code::RedisUnreachable,
            Code::RedisRefused,
            Code::NoCluster,
            Code::SocketClosed,
            Code::NotInRoom,
            Code::AttachFailed,
            Code::InvalidCert,
            Code::InvalidKey,
            Code::BadPassphrase,
            Code::NoTls,
            Code::Internal,
        ];
        let names: std::collections::HashSet<&str> = all.iter().map(AsRef::as_ref).collect();
        assert_eq!(names.len(), all.len());
        assert!(names
            .iter()
            .all(|n| n.starts_with("ERR_") && n.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')));
    }

    // Whether napi-rs turns the code into the JS `.code` is tested from JS (errors.test.ts):
    // a unit test binary cannot link napi's calls into Node.
    #[test]
    fn the_message_names_the_address() {
        let e = Error::from(ListenError::from_io("127.0.0.1:80".into(), io(std::io::ErrorKind::AddrInUse)));
        assert!(e.to_string().contains("127.0.0.1:80"));
        assert_eq!(e.code().as_ref(), "ERR_ADDR_IN_USE");
    }
}
