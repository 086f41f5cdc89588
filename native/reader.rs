//! The reading half of a connection task: reads what the socket has into a per-thread scratch
//! buffer and decodes it in place. Only the bytes of an incomplete frame are kept per
//! connection, so an idle connection holds no read buffer at all.

use std::cell::RefCell;
use std::io::ErrorKind;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::conn::Conn;
use crate::cork::CorkScope;
use crate::dispatch::Dispatch;
use crate::engine::Engine;
use crate::frame::Decoder;
use crate::rate_limit::RateLimit;

/// Bytes read per syscall into the per-thread scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Reads made in one go before the task looks at its timers and notifications again.
pub(crate) const READS_PER_TURN: usize = 4;

thread_local! {
    /// The reader's scratch buffer (one per tokio worker thread).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What one readable turn produced.
pub enum ReadOutcome {
    /// Keep going; true when bytes arrived (a spurious wake-up is not the peer's activity).
    Read(bool),
    /// The peer closed the TCP connection.
    Eof,
    /// The peer broke the protocol, or sent a close frame: stop reading.
    Stop,
}

/// The reading half of a connection task.
pub struct Reader {
    decoder: Decoder,
    /// Bytes of an incomplete frame; empty (no allocation) between frames.
    pub(crate) partial: Vec<u8>,
    /// What the frames do, and the close to report.
    pub dispatch: Dispatch,
    /// Decoding stopped because JS is behind (`maxInboundQueue`): `partial` may hold whole
    /// frames, to decode before reading more.
    pub stalled: bool,
    /// The connection speaks TLS: reads go through its session (`tls_stream.rs`).
    pub(crate) tls: bool,
}

impl Reader {
    /// Accepts compressed messages and inflates them (permessage-deflate was negotiated).
    pub fn with_deflate(mut self, negotiated: crate::deflate::Negotiated) -> Self {
        self.decoder.allow_compressed();
        self.dispatch.inflate = Some(Box::new(crate::deflate::Inbound::new(negotiated)));
        self
    }

    /// A reader for frames of at most `max_payload` bytes; `now`: the engine's monotonic clock.
    /// `rate_limit`: the connection's path's `rateLimit`.
    pub fn new(max_payload: usize, now: u64, rate_limit: Option<RateLimit>) -> Self {
        Reader {
            decoder: Decoder::new(max_payload),
            partial: Vec::new(),
            dispatch: Dispatch::new(now, rate_limit),
            stalled: false,
            tls: false,
        }
    }

    /// Handles the bytes the client sent right behind its upgrade request; false when the
    /// reader must stop.
    pub fn take_leftover(&mut self, engine: &Engine, conn: &Arc<Conn>, mut leftover: Vec<u8>) -> bool {
        let _cork = CorkScope::begin();
        match self.decode(engine, conn, &mut leftover) {
            Ok(used) if used < leftover.len() => {
                self.keep(&leftover[used..]);
                true
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }

    /// Reads what the socket has (a few syscalls at most) and handles every complete frame.
    pub fn read(&mut self, engine: &Engine, conn: &Arc<Conn>, stream: &TcpStream) -> ReadOutcome {
        let _cork = CorkScope::begin();
        if self.tls {
            return self.read_turn_tls(engine, conn, stream);
        }
        self.read_turn(engine, conn, stream)
    }

    fn read_turn(&mut self, engine: &Engine, conn: &Arc<Conn>, stream: &TcpStream) -> ReadOutcome {
        let mut got = false;
        for _ in 0..READS_PER_TURN {
            let result = if self.partial.is_empty() {
                SCRATCH.with_borrow_mut(|scratch| {
                    if scratch.len() < SCRATCH_BYTES {
                        scratch.resize(SCRATCH_BYTES, 0);
                    }
                    match read_once(stream, scratch.len(), || stream.try_read(scratch)) {
                        Ok(0) => Err(ReadOutcome::Eof),
                        Ok(n) => {
                            let used = self.decode(engine, conn, &mut scratch[..n])?;
                            if used < n {
                                self.keep(&scratch[used..n]);
                            }
                            Ok(n)
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                        Err(_) => Err(ReadOutcome::Eof),
                    }
                })
            } else {
                // Read straight behind the incomplete frame, sized for the whole frame.
                // `needed` is checked against `maxPayload`: the peer's header cannot size it.
                let want = self.decoder.needed(&self.partial).unwrap_or(0).max(self.partial.len() + 4096);
                self.partial.reserve(want - self.partial.len());
                let room = self.partial.capacity() - self.partial.len();
                match read_once(stream, room, || stream.try_read_buf(&mut self.partial)) {
                    Ok(0) => Err(ReadOutcome::Eof),
                    Ok(n) => self.decode_partial(engine, conn).map(|_| n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                    Err(_) => Err(ReadOutcome::Eof),
                }
            };
            if let Some(outcome) = self.settle_read(result, &mut got) {
                return outcome;
            }
        }
        ReadOutcome::Read(got)
    }

    /// What one read of a turn (`result`: bytes read, or why to stop) means for the turn:
    /// Some(outcome) ends it. `got` records that bytes arrived.
    #[inline]
    pub(crate) fn settle_read(
        &self,
        result: Result<usize, ReadOutcome>,
        got: &mut bool,
    ) -> Option<ReadOutcome> {
        match result {
            Ok(0) => Some(ReadOutcome::Read(*got)),
            Ok(_) if self.stalled => Some(ReadOutcome::Read(true)),
            Ok(_) => {
                *got = true;
                None
            }
            Err(outcome) => Some(outcome),
        }
    }

    /// Decodes the frames left behind when decoding stalled; false when the reader must stop.
    pub fn resume(&mut self, engine: &Engine, conn: &Arc<Conn>) -> bool {
        let _cork = CorkScope::begin();
        self.decode_partial(engine, conn).is_ok()
    }

    /// Decodes what `partial` holds and keeps what is left of it (nothing, when the reader
    /// stops).
    pub(crate) fn decode_partial(&mut self, engine: &Engine, conn: &Arc<Conn>) -> Result<usize, ReadOutcome> {
        let mut partial = std::mem::take(&mut self.partial);
        let used = self.decode(engine, conn, &mut partial)?;
        if used < partial.len() {
            partial.drain(..used);
            self.partial = partial;
        }
        Ok(used)
    }

    /// Keeps the start of an incomplete frame for the next read.
    pub(crate) fn keep(&mut self, bytes: &[u8]) {
        let want = self.decoder.needed(bytes).unwrap_or(0).max(bytes.len());
        self.partial.reserve_exact(want.min(bytes.len() + SCRATCH_BYTES));
        self.partial.extend_from_slice(bytes);
    }

    /// Decodes and handles every complete frame in `buf`; returns the bytes used.
    pub(crate) fn decode(
        &mut self,
        engine: &Engine,
        conn: &Arc<Conn>,
        buf: &mut [u8],
    ) -> Result<usize, ReadOutcome> {
        let stop = std::cell::Cell::new(false);
        // Whether decoding stopped because JS is behind: known from the check that stopped it,
        // not from a second look at the queue, which JS may have drained in between.
        let mut paused = false;
        let Reader { decoder, dispatch, .. } = self;
        // A frame that stopped the reader (a close, or a compressed message it closed for)
        // stops decoding too: nothing after it is delivered.
        let mut go = || {
            paused = engine.events.congested();
            !paused && !stop.get()
        };
        let result = decoder.decode_while(
            buf,
            &mut |msg| {
                if dispatch.frame(engine, conn, msg) {
                    stop.set(true);
                }
            },
            &mut go,
        );
        match result {
            Ok(_) if stop.get() => Err(ReadOutcome::Stop),
            Ok(used) => {
                self.stalled = paused && used < buf.len();
                Ok(used)
            }
            Err(violation) => {
                self.dispatch.violation(conn, violation);
                Err(ReadOutcome::Stop)
            }
        }
    }
}

/// One non-blocking read of at most `cap` bytes, done by `read`.
///
/// A short read emptied the socket's receive queue, so it also clears tokio's readiness: the
/// next read then waits for the next readiness event instead of making a syscall that only
/// returns `WouldBlock` (one `recv` per wake-up saved when messages come one at a time). tokio
/// clears the readiness only if no newer event arrived meanwhile, so no wake-up is lost, and it
/// keeps the read-closed state, so a FIN behind the data still ends the connection.
pub(crate) fn read_once(
    stream: &TcpStream,
    cap: usize,
    read: impl FnOnce() -> std::io::Result<usize>,
) -> std::io::Result<usize> {
    let mut short = 0;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = read()?;
        if n > 0 && n < cap {
            short = n;
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Err(e) if e.kind() == ErrorKind::WouldBlock && short > 0 => Ok(short),
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{Config, NativeOptions};
    use crate::engine::hooks;

    /// An engine with these limits, a connection handle on a loopback pair whose path has an
    /// `onMessage` hook, and the peer's end.
    async fn setup(
        max_payload: u32,
        max_inbound_queue: u32,
    ) -> (Engine, Arc<Conn>, Arc<TcpStream>, std::net::TcpStream) {
        let options = NativeOptions {
            max_payload: Some(max_payload),
            max_inbound_queue: Some(max_inbound_queue),
            ..NativeOptions::default()
        };
        let engine = Engine::new(Config::from_options(&options).expect("valid options"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        let stream = Arc::new(TcpStream::from_std(ours).unwrap());
        let conn = Arc::new(Conn::new(1, [1; 16], "c".into(), hooks::MESSAGE, stream.clone(), 0, 0));
        (engine, conn, stream, peer)
    }

    /// A masked client frame (key 0: the payload is sent as is) announcing `len` bytes in the
    /// 64-bit form, followed by `payload`.
    fn frame(opcode: u8, len: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode, 0x80 | 127];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out
    }

    #[tokio::test]
    async fn a_header_left_unchecked_by_a_congestion_stop_never_sizes_a_reservation() {
        // 2^64 - 1 (top bit set: a protocol error) and 2^62 (past `maxPayload`: too big).
        for (announced, code, reason) in
            [(u64::MAX, 1002, "Invalid frame length"), (1 << 62, 1009, "Message too big")]
        {
            let (engine, conn, stream, mut peer) = setup(1024, 100).await;
            let mut reader = Reader::new(engine.config.max_payload, 0, None);
            // A 200-byte message fills the inbound queue (limit 100): the decoder stops before
            // the next frame, a header it has not checked.
            let mut bytes = frame(2, 200, &[7; 200]);
            bytes.extend_from_slice(&frame(2, announced, &[]));
            assert!(reader.take_leftover(&engine, &conn, bytes));
            assert!(engine.events.congested() && reader.stalled);
            assert_eq!(reader.partial.len(), 14, "the unchecked header is kept");
            // JS drains the queue; the reader then goes on reading behind the kept header (as it
            // did when a drain between the stop and the reader's look at the queue hid the stall).
            assert_eq!(engine.events.take().events.len(), 1);
            reader.stalled = false;
            peer.write_all(&[0]).unwrap();
            stream.readable().await.unwrap();
            assert!(matches!(reader.read(&engine, &conn, &stream), ReadOutcome::Stop));
            assert_eq!(reader.dispatch.close, Some((code, reason.to_string())));
            assert!(reader.partial.capacity() <= 1024 + 14, "reserved {}", reader.partial.capacity());
        }
    }

    #[tokio::test]
    async fn a_congestion_stop_keeps_the_rest_and_resumes_where_it_stopped() {
        let (engine, conn, _stream, _peer) = setup(1024, 100).await;
        let mut reader = Reader::new(engine.config.max_payload, 0, None);
        let mut bytes = Vec::new();
        for i in 0..3u8 {
            bytes.extend_from_slice(&frame(2, 150, &[i; 150]));
        }
        assert!(reader.take_leftover(&engine, &conn, bytes));
        assert!(reader.stalled);
        assert_eq!(reader.partial.len(), 2 * (14 + 150));
        // While JS is behind, resuming decodes nothing more.
        assert!(reader.resume(&engine, &conn));
        assert!(reader.stalled);
        assert_eq!(reader.partial.len(), 2 * (14 + 150));
        // Each drain lets one more message through (each fills the queue again).
        for left in [1, 0] {
            assert_eq!(engine.events.take().events.len(), 1);
            reader.stalled = false;
            assert!(reader.resume(&engine, &conn));
            assert_eq!(reader.partial.len(), left * (14 + 150));
            assert_eq!(reader.stalled, left > 0, "stalled only while frames wait");
        }
        assert_eq!(reader.partial.capacity(), 0, "nothing kept between frames");
    }
}
