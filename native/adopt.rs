//! Attach mode, fast path: a TCP connection Node's http server accepted and parsed is handed to
//! the engine by duplicating its descriptor. The request head JS rebuilt from the
//! `IncomingMessage`, the `head` bytes and anything Node had buffered come first, so the engine
//! runs the same handshake as on its own port and no byte is lost or reordered.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::engine::Engine;
#[cfg(unix)]
use crate::events::Event;
use crate::server;

/// Starts what an engine needs without a listening socket of its own: the timer task. (Event
/// delivery is started by the caller, as for `listen`.)
pub fn start(engine: &Arc<Engine>) {
    tokio::spawn(Engine::ticker(Arc::downgrade(engine)));
}

/// Serves an upgrade whose bytes arrive on `stream` after `prefix` (slow path and fast path
/// alike); `attach` names it in the connect or upgrade-failed event JS waits for.
pub fn serve(
    engine: Arc<Engine>,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    prefix: Vec<u8>,
    attach: u32,
) {
    let _ = stream.set_nodelay(true);
    tokio::spawn(server::serve_attached(engine, stream, remote, prefix, attach));
}

/// Takes over the connection behind descriptor `fd` (Node's, which stays Node's to close):
/// duplicates it, makes the copy non-blocking and serves it on the engine's runtime.
#[cfg(unix)]
pub fn adopt(engine: Arc<Engine>, fd: i32, prefix: Vec<u8>, attach: u32) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;

    if fd < 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only reads `fd`; an fd that is not open gives EBADF, which
    // is checked. The new descriptor is ours alone.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a descriptor we just created and nothing else owns; the std stream takes
    // ownership and closes it when dropped (also on the error paths below).
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(dup) };
    // Not a TCP socket (a pipe, a Unix socket): peer_addr fails and the copy is closed.
    let remote = std_stream.peer_addr()?;
    std_stream.set_nonblocking(true)?;
    // Registering with tokio's reactor takes its registration lock, which a busy I/O driver
    // may hold: done on a worker, not on the JS thread. It fails only when the reactor cannot
    // take another source; the connection is then dropped and JS told.
    napi::bindgen_prelude::spawn(async move {
        match tokio::net::TcpStream::from_std(std_stream) {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                server::serve_attached(engine, stream, remote, prefix, attach).await;
            }
            Err(_) => engine.events.push(Event::UpgradeFailed { request: attach }),
        }
    });
    Ok(())
}

/// Without Unix descriptors there is no fast path; the facade uses the loopback pump instead.
#[cfg(not(unix))]
pub fn adopt(_engine: Arc<Engine>, _fd: i32, _prefix: Vec<u8>, _attach: u32) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}
