//! A TLS connection after the upgrade: its rustls session lives in the connection's outbox,
//! behind the outbox lock, so whichever thread sends encrypts the frame into the session and
//! writes the ciphertext itself, as a plain connection writes its frames (one pass per member of
//! a broadcast). Ciphertext the kernel does not take stays in the session; the outbox is then
//! blocked and the connection's task writes it once the socket is writable. The reading half
//! (`Reader::read_turn_tls`) feeds what the socket has into the session and decodes the
//! plaintext as the plain reader does.

use std::cell::RefCell;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;

use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::conn::Conn;
use crate::engine::Engine;
use crate::reader::{read_once, ReadOutcome, Reader, READS_PER_TURN};

/// Ciphertext read per syscall into the per-thread buffer.
const CIPHER_BYTES: usize = 32 * 1024;

thread_local! {
    /// Ciphertext just read (one per tokio worker thread).
    static CIPHER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Plaintext just decrypted, while the connection keeps no incomplete frame.
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// One connection's TLS session (boxed in the outbox: plain connections do not carry it).
pub struct TlsSession {
    conn: ServerConnection,
}

/// The socket as `io::Write` for rustls: non-blocking writes that keep tokio's readiness right.
struct Socket<'a>(&'a TcpStream);

impl Write for Socket<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }

    // rustls hands over all its queued records at once: one syscall for all of them.
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl TlsSession {
    /// The session of a finished handshake; plaintext it decrypted and the upgrade did not read
    /// (frames right behind the request) is appended to `leftover`.
    pub fn new(mut conn: ServerConnection, leftover: &mut Vec<u8>) -> Self {
        if let Ok(state) = conn.process_new_packets() {
            let _ = take_plaintext(&mut conn, state.plaintext_bytes_to_read(), leftover);
        }
        TlsSession { conn }
    }

    /// Like `send(2)`: encrypts what the session takes of `plain` and writes the ciphertext the
    /// kernel takes; returns the plaintext bytes taken. `WouldBlock` while earlier ciphertext
    /// still waits for the socket.
    pub fn send(&mut self, sock: &TcpStream, plain: &[u8]) -> std::io::Result<usize> {
        if !self.flush(sock)? {
            return Err(ErrorKind::WouldBlock.into());
        }
        let taken = self.conn.writer().write(plain)?;
        self.flush(sock)?;
        Ok(taken)
    }

    /// Writes the ciphertext the session holds; true when none is left.
    pub fn flush(&mut self, sock: &TcpStream) -> std::io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut Socket(sock)) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether ciphertext waits for the socket.
    #[inline]
    pub fn has_ciphertext(&self) -> bool {
        self.conn.wants_write()
    }

    /// Sends close_notify, as far as the socket takes it now.
    pub fn close(&mut self, sock: &TcpStream) {
        self.conn.send_close_notify();
        let _ = self.flush(sock);
    }

    /// Feeds `cipher` into the session and appends the plaintext to `plain`. Ok(true): the peer
    /// sent close_notify. Err: the peer broke TLS (an alert is queued for it).
    fn receive(&mut self, mut cipher: &[u8], plain: &mut Vec<u8>) -> Result<bool, ()> {
        let mut closed = false;
        while !cipher.is_empty() {
            match self.conn.read_tls(&mut cipher) {
                Ok(0) | Err(_) => return Err(()),
                Ok(_) => {}
            }
            let state = self.conn.process_new_packets().map_err(|_| ())?;
            closed |= state.peer_has_closed();
            take_plaintext(&mut self.conn, state.plaintext_bytes_to_read(), plain).map_err(|_| ())?;
        }
        Ok(closed)
    }
}

/// Moves the `len` decrypted bytes the session holds into `plain`.
fn take_plaintext(conn: &mut ServerConnection, len: usize, plain: &mut Vec<u8>) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let start = plain.len();
    plain.resize(start + len, 0);
    let read = conn.reader().read_exact(&mut plain[start..]);
    if read.is_err() {
        plain.truncate(start);
    }
    read
}

impl Reader {
    /// `Reader::read` for a TLS connection: ciphertext from the socket into the session (under
    /// the outbox lock, released before any frame is handled), plaintext through the decoder.
    pub(crate) fn read_turn_tls(
        &mut self,
        engine: &Engine,
        conn: &Arc<Conn>,
        stream: &TcpStream,
    ) -> ReadOutcome {
        let mut got = false;
        for _ in 0..READS_PER_TURN {
            let result = CIPHER.with_borrow_mut(|cipher| {
                if cipher.len() < CIPHER_BYTES {
                    cipher.resize(CIPHER_BYTES, 0);
                }
                let n = match read_once(stream, cipher.len(), || stream.try_read(cipher)) {
                    Ok(0) => return Err(ReadOutcome::Eof),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(0),
                    Err(_) => return Err(ReadOutcome::Eof),
                };
                let into_partial = !self.partial.is_empty();
                PLAIN.with_borrow_mut(|plain| {
                    plain.clear();
                    let target = if into_partial { &mut self.partial } else { &mut *plain };
                    let closed = decrypt(conn, &cipher[..n], target)?;
                    if into_partial {
                        self.decode_partial(engine, conn)?;
                    } else {
                        let used = self.decode(engine, conn, plain)?;
                        if used < plain.len() {
                            self.keep(&plain[used..]);
                        }
                    }
                    if closed {
                        return Err(ReadOutcome::Eof);
                    }
                    Ok(n)
                })
            });
            if let Some(outcome) = self.settle_read(result, &mut got) {
                return outcome;
            }
        }
        ReadOutcome::Read(got)
    }
}

/// Decrypts `cipher` into `plain` with the connection's session, and writes what the session
/// has to say back (alerts, key updates). Ok(true): the peer closed TLS.
fn decrypt(conn: &Conn, cipher: &[u8], plain: &mut Vec<u8>) -> Result<bool, ReadOutcome> {
    let Ok(mut out) = conn.out.lock() else { return Err(ReadOutcome::Eof) };
    let Some(tls) = out.tls.as_deref_mut() else { return Err(ReadOutcome::Eof) };
    let received = tls.receive(cipher, plain);
    let answer = tls.has_ciphertext();
    if answer && !out.blocked {
        conn.flush_locked(&mut out);
    }
    received.map_err(|()| ReadOutcome::Eof)
}
