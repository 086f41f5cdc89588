//! The outbound side of a connection: encoded frames (`OutFrame`), the queue of bytes the
//! kernel has not taken yet (`Outbox`), this thread's spare send buffers, and the raw send.
//!
//! Writing never waits for a task. Whichever thread sends writes the frame to the socket itself
//! when nothing is queued before it; only what the kernel does not take is queued, and the
//! connection's task writes that once the socket is writable again.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::conn::attn;
use crate::cork;
use crate::frame::{self, opcode};
use crate::tls_stream::TlsSession;

/// Result of queueing a message, as JS sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum SendStatus {
    /// Written or queued; the buffer is under half its limit.
    Sent = 0,
    /// Queued, but the buffer is over half its limit: slow down and wait for `onDrain`.
    Buffered = 1,
    /// Not queued: the connection is closing or the buffer was full.
    Dropped = 2,
}

/// An encoded data frame, shared by every recipient: broadcasting it to a thousand connections
/// copies nothing per recipient unless a recipient has to queue it.
#[derive(Clone)]
pub struct OutFrame {
    pub(crate) bytes: Bytes,
    header: u8,
}

impl OutFrame {
    pub fn text(text: &str) -> Self {
        Self::new(opcode::TEXT, text.as_bytes())
    }

    pub fn binary(data: &[u8]) -> Self {
        Self::new(opcode::BINARY, data)
    }

    fn new(op: u8, payload: &[u8]) -> Self {
        OutFrame { bytes: frame::encode(op, payload), header: frame::header_len(payload.len()) as u8 }
    }

    pub fn is_binary(&self) -> bool {
        self.bytes.first().is_some_and(|b| b & 0x0f == opcode::BINARY)
    }

    /// The message itself, without the frame header (shares the bytes).
    pub fn payload(&self) -> Bytes {
        self.bytes.slice(usize::from(self.header)..)
    }

    #[inline]
    pub fn payload_len(&self) -> usize {
        self.bytes.len() - usize::from(self.header)
    }
}

/// What waits to be written, and the socket it goes to.
pub struct Outbox {
    /// None once the task has ended: the socket is closed.
    pub stream: Option<Arc<TcpStream>>,
    /// Queued bytes; `buf[pos..]` is still to be written.
    pub buf: Vec<u8>,
    pub pos: usize,
    /// The kernel refused bytes: only the task writes until the backlog is gone.
    pub blocked: bool,
    /// In a corked thread's list: written when that thread uncorks.
    pub corked: bool,
    /// Our close frame is queued; nothing else is accepted after it.
    pub close_queued: bool,
    /// The buffer crossed half its limit: an `onDrain` follows once it is empty.
    pub wants_drain: bool,
    /// A TLS connection's session: what is written goes through it (`tls_stream.rs`).
    pub tls: Option<Box<TlsSession>>,
}

/// The transport failed: the connection's task must end it.
#[derive(Debug, PartialEq, Eq)]
pub struct WriteFailed;

impl Outbox {
    /// An empty queue for this socket.
    pub fn new(stream: Arc<TcpStream>) -> Self {
        Outbox {
            stream: Some(stream),
            buf: Vec::new(),
            pos: 0,
            blocked: false,
            corked: false,
            close_queued: false,
            wants_drain: false,
            tls: None,
        }
    }

    /// Bytes queued and not written yet.
    #[inline]
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether no more frames are accepted: our close frame is queued, or the socket is gone.
    #[inline]
    pub fn is_shut(&self) -> bool {
        self.close_queued || self.stream.is_none()
    }

    /// Whether a frame may go straight to the socket: nothing queued before it, the socket not
    /// blocked, and this thread not corked.
    #[inline]
    pub fn can_write_now(&self) -> bool {
        !self.blocked && self.pending() == 0 && !cork::is_corked()
    }

    /// Writes what the kernel takes of `bytes` right now (the caller checked `can_write_now`);
    /// when it takes less, the queue is marked blocked (the caller queues the rest and has the
    /// task wait for writability).
    #[inline]
    pub fn write_now(&mut self, bytes: &[u8]) -> Result<usize, WriteFailed> {
        // TLS: ciphertext the kernel did not take stays in the session and blocks the queue.
        let mut held = false;
        let sent = match (self.stream.as_ref(), self.tls.as_deref_mut()) {
            (Some(s), None) => send_now(s, bytes),
            (Some(s), Some(tls)) => {
                let sent = tls.send(s, bytes);
                held = tls.has_ciphertext();
                sent
            }
            (None, _) => return Err(WriteFailed),
        };
        let written = match sent {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => return Err(WriteFailed),
        };
        if written < bytes.len() || held {
            self.blocked = true;
        }
        Ok(written)
    }

    /// Writes the queue until it is empty or the kernel refuses more. Returns the `attn` bits
    /// the connection's task must be woken with (0: none).
    #[must_use]
    pub fn flush(&mut self) -> u32 {
        let mut wake = 0;
        while self.pending() > 0 {
            let Some(stream) = self.stream.as_ref() else { break };
            let rest = &self.buf[self.pos..];
            let sent = match self.tls.as_deref_mut() {
                None => stream.try_write(rest),
                Some(tls) => tls.send(stream, rest),
            };
            match sent {
                Ok(0) => {
                    wake |= attn::FAILED;
                    break;
                }
                Ok(n) => self.pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    wake |= attn::BACKLOG;
                    break;
                }
                Err(_) => {
                    wake |= attn::FAILED;
                    break;
                }
            }
        }
        if self.pending() == 0 {
            if let (Some(tls), Some(stream)) = (self.tls.as_deref_mut(), self.stream.as_ref()) {
                match tls.flush(stream) {
                    Ok(true) => {}
                    Ok(false) => {
                        self.blocked = true;
                        return wake | attn::BACKLOG;
                    }
                    Err(_) => return wake | attn::FAILED,
                }
            }
            // Idle connections hold no write buffer: it goes back to this thread's spares.
            recycle(std::mem::take(&mut self.buf));
            self.pos = 0;
            self.blocked = false;
            if self.wants_drain {
                self.wants_drain = false;
                wake |= attn::DRAINED;
            }
            if self.close_queued {
                wake |= attn::FLUSHED;
            }
        } else if self.pos >= 64 * 1024 && self.pos * 2 >= self.buf.len() {
            // Drop what was written so a long backlog does not keep growing the buffer.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        wake
    }

    /// Closes the socket (this handle of it) and forgets what is queued.
    pub fn shut_down(&mut self) {
        if let (Some(tls), Some(stream)) = (self.tls.as_deref_mut(), self.stream.as_ref()) {
            tls.close(stream);
        }
        self.tls = None;
        self.stream = None;
        self.buf = Vec::new();
        self.pos = 0;
        self.blocked = false;
    }
}

/// Whether `len` more bytes would pass the backpressure limit. A single message larger than the
/// limit may still go out through an empty buffer.
#[inline]
pub fn over_limit(queued: usize, len: usize, limit: usize) -> bool {
    queued > 0 && queued + len > limit
}

thread_local! {
    /// Emptied send buffers, for the next connection that must queue bytes: allocating and
    /// freeing them per batch made the heap grow and shrink (page faults on every page).
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SPARE_SMALL_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Send buffers kept per thread: many small ones (a broadcast to a thousand members needs a
/// thousand per batch) and a few large ones; at most 4 MiB + 8 MiB per thread.
const SPARE_SMALL: usize = 1024;
const SMALL_CAPACITY: usize = 4 * 1024;
const SPARE_LARGE: usize = 64;
const SPARE_CAPACITY: usize = 128 * 1024;

/// A send buffer from this thread's spares (or a new one).
#[inline]
pub fn spare_buffer() -> Vec<u8> {
    SPARE_SMALL_BUFS.with_borrow_mut(Vec::pop).or_else(|| SPARE.with_borrow_mut(Vec::pop)).unwrap_or_default()
}

/// Gives an emptied send buffer back to this thread's spares.
fn recycle(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > SPARE_CAPACITY {
        return;
    }
    buf.clear();
    let (pool, max) = if buf.capacity() <= SMALL_CAPACITY {
        (&SPARE_SMALL_BUFS, SPARE_SMALL)
    } else {
        (&SPARE, SPARE_LARGE)
    };
    pool.with_borrow_mut(|spare| {
        if spare.len() < max {
            spare.push(buf);
        }
    });
}

/// Appends to a send buffer, taking a spare one when it has none yet.
#[inline]
pub fn append(buf: &mut Vec<u8>, bytes: &[u8]) {
    if buf.capacity() == 0 {
        *buf = spare_buffer();
    }
    buf.extend_from_slice(bytes);
}

/// One non-blocking send on a socket the caller found with nothing queued.
///
/// On Linux a plain `send(2)` on the descriptor, without tokio's readiness bookkeeping:
/// `try_write` first reads the socket's readiness state, a cache miss per socket that showed in
/// the profile of a large broadcast. Skipping it is safe: a refused write makes the task wait
/// for writability, and if tokio's stale state says writable, the task's `try_write` gets
/// `WouldBlock`, which clears it, and waits for real.
#[inline]
fn send_now(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a live socket descriptor (the stream is borrowed) and a valid byte range.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            return if err.kind() == ErrorKind::Interrupted { Ok(0) } else { Err(err) };
        }
        Ok(n as usize)
    }
    #[cfg(not(target_os = "linux"))]
    stream.try_write(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn out_frame_payload_and_kind() {
        let text = OutFrame::text("hello");
        assert!(!text.is_binary());
        assert_eq!(text.payload_len(), 5);
        assert_eq!(&text.payload()[..], b"hello");
        assert_eq!(text.bytes.len(), 7);
        let long = OutFrame::binary(&[7u8; 300]);
        assert!(long.is_binary());
        assert_eq!(long.payload_len(), 300);
        assert_eq!(long.bytes.len(), 304);
        assert_eq!(&long.payload()[..], &[7u8; 300][..]);
    }

    #[test]
    fn over_limit_lets_one_big_message_through_an_empty_buffer() {
        assert!(!over_limit(0, 10_000, 100));
        assert!(!over_limit(50, 50, 100));
        assert!(over_limit(50, 51, 100));
        assert!(over_limit(1, 100, 100));
    }

    #[test]
    fn emptied_buffers_are_reused_and_big_ones_are_not() {
        let mut buf = Vec::new();
        append(&mut buf, b"abc");
        assert_eq!(buf, b"abc");
        let mut small = Vec::with_capacity(1024);
        small.push(1);
        let ptr = small.as_ptr();
        recycle(small);
        let again = spare_buffer();
        assert_eq!(again.as_ptr(), ptr, "the recycled buffer comes back");
        assert!(again.is_empty());
        recycle(Vec::with_capacity(SPARE_CAPACITY + 1));
        assert_eq!(spare_buffer().capacity(), 0, "a buffer over the spare size is freed");
    }

    /// A connected loopback pair: (our side as tokio stream, the peer's std stream).
    async fn pair() -> (Arc<TcpStream>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let ours = std::net::TcpStream::connect(addr).unwrap();
        let (peer, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Arc::new(TcpStream::from_std(ours).unwrap()), peer)
    }

    #[tokio::test]
    async fn write_now_then_flush_the_rest_and_report_drain_and_close() {
        use std::io::Read;
        let (stream, mut peer) = pair().await;
        let mut out = Outbox::new(stream);
        assert!(out.can_write_now());
        assert_eq!(out.write_now(b"one"), Ok(3));
        append(&mut out.buf, b"two");
        out.wants_drain = true;
        out.close_queued = true;
        assert!(out.is_shut());
        // tokio's `try_write` needs the socket's first readiness event.
        out.stream.as_ref().unwrap().writable().await.unwrap();
        assert_eq!(out.flush(), attn::DRAINED | attn::FLUSHED);
        assert_eq!(out.pending(), 0);
        assert_eq!(out.buf.capacity(), 0, "an empty queue holds no buffer");
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"onetwo");
        out.shut_down();
        assert!(out.stream.is_none());
        assert_eq!(out.write_now(b"x"), Err(WriteFailed));
    }

    #[tokio::test]
    async fn a_full_socket_blocks_the_queue() {
        let (stream, _peer) = pair().await;
        let mut out = Outbox::new(stream);
        let chunk = vec![0u8; 1 << 20];
        let mut blocked = false;
        // The peer never reads: the kernel's buffers fill within a few MiB.
        for _ in 0..256 {
            let n = out.write_now(&chunk).unwrap();
            if n < chunk.len() {
                blocked = true;
                break;
            }
        }
        assert!(blocked && out.blocked);
        assert!(!out.can_write_now());
        append(&mut out.buf, b"queued");
        assert_eq!(out.flush(), attn::BACKLOG);
        assert_eq!(out.pending(), 6);
    }
}
