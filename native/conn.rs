//! One live connection's handle, shared by its task, JS calls and rooms: its identity, its
//! outbox, the bits that wake its task, and its rooms and metadata (`Extra`).
//!
//! The connection has no timers of its own: the engine's ticker (`Engine::ticker`) calls
//! [`Conn::tick`], which sends server pings and enforces the idle timeout and close deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;

use crate::config::Config;
use crate::cork;
use crate::deflate::{self, FrameCache};
use crate::engine::Stats;
use crate::fanout;
use crate::frame::{self, opcode};
use crate::outbox::{append, over_limit, spare_buffer, OutFrame, Outbox, SendStatus};

/// Bits of `Conn::attn`: why the task was woken.
pub mod attn {
    /// Drop the connection now.
    pub const KILL: u32 = 1;
    /// `close()` was called: start the close-handshake deadline.
    pub const CLOSE: u32 = 2;
    /// The kernel refused bytes: wait until the socket is writable.
    pub const BACKLOG: u32 = 4;
    /// The send buffer emptied after crossing its high-water mark: tell JS (`onDrain`).
    pub const DRAINED: u32 = 8;
    /// A write failed: the transport is gone.
    pub const FAILED: u32 = 16;
    /// The peer was silent for `idleTimeout` (set by the engine's ticker).
    pub const IDLE: u32 = 32;
    /// The close handshake did not finish within `closeTimeout` (set by the ticker).
    pub const DEADLINE: u32 = 64;
    /// Everything queued, our close frame included, has been written.
    pub const FLUSHED: u32 = 128;
}

/// What sending needs from its server: the counters and the send-buffer policy. Connections,
/// rooms and fan-outs take this, not the whole engine.
pub struct SendContext {
    pub stats: Arc<Stats>,
    /// Bytes a connection may have queued before a send is refused (`maxBackpressure`).
    pub max_backpressure: usize,
    /// A refused send closes the connection with 1008 (`backpressurePolicy: "close"`); else
    /// the message is dropped.
    pub close_on_limit: bool,
}

impl SendContext {
    /// The context of a server with this configuration, counting into `stats`.
    pub fn new(config: &Config, stats: Arc<Stats>) -> Self {
        SendContext {
            stats,
            max_backpressure: config.max_backpressure,
            close_on_limit: !config.drop_on_backpressure,
        }
    }
}

/// Identity of a connection, fixed at upgrade time.
pub struct ConnInfo {
    pub uuid: [u8; 16],
    pub client_id: String,
    pub path: String,
    /// JSON object handed to JS with the connect event.
    pub info_json: String,
    /// permessage-deflate as negotiated, with the settings it was negotiated under.
    pub deflate: Option<(deflate::Negotiated, deflate::DeflateConfig)>,
    /// The session this connection took back (`?session=`), with `recovery`.
    pub resumed: Option<crate::sessions::Session>,
}

/// Everything the rest of the engine may know about one live connection.
pub struct Conn {
    /// Internal numeric id used across the JS boundary.
    pub id: u32,
    /// Public UUID (`socket.id`), also how other cluster nodes name this connection.
    pub uuid: [u8; 16],
    /// Validated `clientId` query parameter or a generated one.
    pub client_id: String,
    /// Which JS hooks the connection's path registered (`engine::hooks` bits).
    pub hooks: u32,
    pub(crate) out: Mutex<Outbox>,
    /// Bytes accepted by `send` and not yet written to the socket (the outbox, without its lock).
    pub buffered: AtomicUsize,
    /// The task's waker: `wake` sets `attn` bits and wakes it.
    pub(crate) waker: AtomicWaker,
    pub(crate) attn: AtomicU32,
    /// When the peer was last heard from (`clock::MonoClock`); the ticker enforces `idleTimeout`.
    pub(crate) last_seen: AtomicU64,
    /// When the close handshake must be over (`clock::MonoClock`), 0 while none is under way.
    pub(crate) close_deadline: AtomicU64,
    closing: AtomicBool,
    /// The close we asked for (code, reason), reported when the peer never answers.
    requested_close: Mutex<Option<(u16, String)>>,
    /// Rooms and metadata, allocated the first time either is used.
    extra: Mutex<Option<Box<Extra>>>,
    /// Wall-clock ms of the last client heartbeat: a ping frame or a built-in `ping` message.
    pub last_ping: AtomicU64,
    /// Wall-clock ms of the last pong frame from the client.
    pub last_pong: AtomicU64,
    /// permessage-deflate's sending side, when negotiated (no zlib stream until it is needed).
    pub(crate) deflate: Option<Box<deflate::Outbound>>,
    /// When the last server ping went out (`clock::MonoClock`, at least 1), 0 once answered:
    /// the pong's arrival gives the round trip.
    pub(crate) ping_sent: AtomicU64,
}

/// What only some connections use; boxed so the others do not carry two empty hash tables.
#[derive(Default)]
pub struct Extra {
    /// Rooms this connection is in.
    pub rooms: RoomIds,
    /// `setMetadata` values, as JSON text.
    pub metadata: HashMap<String, String>,
    /// The session token this connection was given (with `recovery`); None once the
    /// application closed it, so its session is not kept.
    pub session: Option<crate::sessions::Token>,
    /// Rooms of a resumed session waiting for the client's `recover` request.
    pub pending_rooms: Vec<String>,
    /// `socket.data` as JSON, for the session in Redis (in a cluster with `recovery`).
    pub session_data: Option<String>,
}

/// The ids of the rooms one connection is in: a vector searched in order, since a connection
/// is in few rooms, and its first room costs one exact allocation (a hash set's first insert
/// reserves a table for three and every id is a separate `String`).
#[derive(Default)]
pub struct RoomIds(Vec<Box<str>>);

impl RoomIds {
    pub fn contains(&self, id: &str) -> bool {
        self.0.iter().any(|r| &**r == id)
    }

    /// Adds `id`; false when it was there.
    pub fn insert(&mut self, id: String) -> bool {
        if self.contains(&id) {
            return false;
        }
        self.0.reserve_exact(1);
        self.0.push(id.into_boxed_str());
        true
    }

    /// Removes `id`; false when it was not there.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.0.iter().position(|r| &**r == id) {
            Some(i) => {
                self.0.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes every id out.
    pub fn drain(&mut self) -> impl Iterator<Item = String> + '_ {
        self.0.drain(..).map(String::from)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| &**r)
    }
}

impl Conn {
    /// A new handle for the connection on `stream`: `mono` and `wall` are the current times of
    /// the engine's monotonic clock and of the wall clock.
    pub fn new(
        id: u32,
        uuid: [u8; 16],
        client_id: String,
        hooks: u32,
        stream: Arc<TcpStream>,
        mono: u64,
        wall: u64,
    ) -> Self {
        Conn {
            id,
            uuid,
            client_id,
            hooks,
            out: Mutex::new(Outbox::new(stream)),
            buffered: AtomicUsize::new(0),
            waker: AtomicWaker::new(),
            attn: AtomicU32::new(0),
            last_seen: AtomicU64::new(mono),
            close_deadline: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            requested_close: Mutex::new(None),
            extra: Mutex::new(None),
            last_ping: AtomicU64::new(wall),
            last_pong: AtomicU64::new(wall),
            deflate: None,
            ping_sent: AtomicU64::new(0),
        }
    }

    /// The same connection, compressing what it sends (permessage-deflate was negotiated).
    pub fn with_deflate(mut self, deflate: deflate::Outbound) -> Self {
        self.deflate = Some(Box::new(deflate));
        self
    }

    /// Sends a data frame; never blocks. Applies the backpressure limit and policy.
    pub fn send(self: &Arc<Self>, ctx: &SendContext, frame: &OutFrame) -> SendStatus {
        let status = self.send_uncounted(ctx, frame);
        if status != SendStatus::Dropped {
            ctx.stats.count_out(frame.is_binary(), frame.payload_len());
        }
        status
    }

    /// `send` without counting it in the stats: fan-outs count once for all recipients.
    pub fn send_uncounted(self: &Arc<Self>, ctx: &SendContext, frame: &OutFrame) -> SendStatus {
        fanout::settle();
        self.send_unsettled(ctx, frame, &mut FrameCache::default())
    }

    /// `send_uncounted` without delivering this thread's pending fan-out first: for loops over
    /// many recipients that settled once, and for the compressing members of a fan-out, which
    /// are never in the pending one. `cache` lets recipients with the same deflate parameters
    /// share one compressed frame.
    pub(crate) fn send_unsettled(
        self: &Arc<Self>,
        ctx: &SendContext,
        frame: &OutFrame,
        cache: &mut FrameCache,
    ) -> SendStatus {
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        if let Some(d) = self.deflate.as_deref() {
            if d.compresses(frame.payload_len()) {
                let op = if frame.is_binary() { opcode::BINARY } else { opcode::TEXT };
                return d.send(op, &frame.payload(), cache, |bytes| self.queue_checked(ctx, bytes));
            }
        }
        self.queue_checked(ctx, &frame.bytes)
    }

    /// Queues one whole frame within the backpressure limit.
    fn queue_checked(self: &Arc<Self>, ctx: &SendContext, bytes: &[u8]) -> SendStatus {
        let limit = ctx.max_backpressure;
        let Ok(mut out) = self.out.lock() else { return SendStatus::Dropped };
        if out.is_shut() {
            return SendStatus::Dropped;
        }
        if over_limit(out.pending(), bytes.len(), limit) {
            drop(out);
            return self.refuse(ctx);
        }
        self.enqueue(&mut out, bytes);
        self.status_after_send(&mut out, limit)
    }

    /// A send over the backpressure limit: counted as dropped, and with the `close` policy
    /// the connection is closed with 1008.
    fn refuse(self: &Arc<Self>, ctx: &SendContext) -> SendStatus {
        ctx.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if ctx.close_on_limit {
            self.close(1008, "Send buffer limit exceeded");
        }
        SendStatus::Dropped
    }

    /// `send` for a frame the caller writes: `fill` appends one whole frame to the buffer it is
    /// given and returns its payload length (None: nothing is sent). A frame that must be queued
    /// anyway (corked, or bytes already waiting) is written straight into the queue; one that can
    /// go to the socket at once is written into `scratch` first.
    pub fn send_with(
        self: &Arc<Self>,
        ctx: &SendContext,
        scratch: &mut Vec<u8>,
        binary: bool,
        fill: impl FnOnce(&mut Vec<u8>) -> Option<usize>,
    ) -> SendStatus {
        fanout::settle();
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        if let Some(d) = self.deflate.as_deref() {
            // The frame is looked at (and maybe compressed) before it is queued.
            scratch.clear();
            let Some(payload_len) = fill(scratch) else { return SendStatus::Dropped };
            let start = scratch.len().saturating_sub(payload_len);
            let status = if d.compresses(payload_len) {
                let op = scratch.first().map_or(opcode::TEXT, |b| b & 0x0f);
                d.send(op, &scratch[start..], &mut FrameCache::default(), |b| self.queue_checked(ctx, b))
            } else {
                self.queue_checked(ctx, scratch)
            };
            if status != SendStatus::Dropped {
                ctx.stats.count_out(binary, payload_len);
            }
            return status;
        }
        let limit = ctx.max_backpressure;
        let (status, payload_len) = {
            let Ok(mut out) = self.out.lock() else { return SendStatus::Dropped };
            if out.is_shut() {
                return SendStatus::Dropped;
            }
            let before = out.pending();
            if out.can_write_now() {
                scratch.clear();
                let Some(payload_len) = fill(scratch) else { return SendStatus::Dropped };
                self.enqueue(&mut out, scratch);
                (self.status_after_send(&mut out, limit), payload_len)
            } else {
                if out.buf.capacity() == 0 {
                    out.buf = spare_buffer();
                }
                let start = out.buf.len();
                let Some(payload_len) = fill(&mut out.buf) else {
                    out.buf.truncate(start);
                    return SendStatus::Dropped;
                };
                if over_limit(before, out.buf.len() - start, limit) {
                    out.buf.truncate(start);
                    drop(out);
                    return self.refuse(ctx);
                }
                self.appended(&mut out);
                (self.status_after_send(&mut out, limit), payload_len)
            }
        };
        ctx.stats.count_out(binary, payload_len);
        status
    }

    /// `Buffered` (and an `onDrain` to come) when the queue is over half the limit.
    #[inline]
    pub(crate) fn status_after_send(&self, out: &mut Outbox, limit: usize) -> SendStatus {
        if out.pending() * 2 > limit {
            out.wants_drain = true;
            SendStatus::Buffered
        } else {
            SendStatus::Sent
        }
    }

    /// Writes `bytes` after whatever is queued: directly when possible, else into the queue.
    #[inline]
    fn enqueue(self: &Arc<Self>, out: &mut MutexGuard<'_, Outbox>, bytes: &[u8]) {
        if out.can_write_now() {
            // The common case: nothing queued, so the frame goes straight to the socket.
            let Some(written) = self.write_now(out, bytes) else { return };
            if written < bytes.len() {
                append(&mut out.buf, &bytes[written..]);
            }
            self.buffered.store(out.pending(), Ordering::Release);
            return;
        }
        append(&mut out.buf, bytes);
        self.appended(out);
    }

    /// Writes what the kernel takes of `bytes` right now (the caller checked `can_write_now`);
    /// when it takes less, the task waits for the socket to be writable, and the caller queues
    /// the rest. None: the transport failed (the task is told).
    #[inline]
    pub(crate) fn write_now(&self, out: &mut Outbox, bytes: &[u8]) -> Option<usize> {
        match out.write_now(bytes) {
            Ok(written) => {
                // Blocked: the kernel took less (or a TLS session holds ciphertext).
                if out.blocked {
                    self.wake(attn::BACKLOG);
                }
                Some(written)
            }
            Err(_) => {
                self.wake(attn::FAILED);
                None
            }
        }
    }

    /// Bookkeeping after bytes were appended to the queue: register with this thread's cork,
    /// or write now (keeping the order of bytes another thread corked), or leave them to the
    /// task while the socket is blocked.
    pub(crate) fn appended(self: &Arc<Self>, out: &mut MutexGuard<'_, Outbox>) {
        if out.blocked {
            // The task writes once the socket is writable.
        } else if cork::is_corked() {
            if !out.corked {
                out.corked = true;
                cork::defer(self);
            }
        } else {
            self.flush_locked(out);
        }
        self.buffered.store(out.pending(), Ordering::Release);
    }

    /// Writes the queue until it is empty or the kernel refuses more.
    pub(crate) fn flush_locked(&self, out: &mut Outbox) {
        let bits = out.flush();
        if bits != 0 {
            self.wake(bits);
        }
        self.buffered.store(out.pending(), Ordering::Release);
    }

    /// Writes what this connection had corked (its thread uncorks).
    pub(crate) fn flush_corked(&self) {
        if let Ok(mut out) = self.out.lock() {
            out.corked = false;
            if !out.blocked {
                self.flush_locked(&mut out);
            }
        }
    }

    /// Queues a control frame (ping, pong, close), ignoring the backpressure limit.
    pub(crate) fn send_control(self: &Arc<Self>, bytes: &[u8]) {
        fanout::settle();
        if let Ok(mut out) = self.out.lock() {
            if !out.is_shut() {
                self.enqueue(&mut out, bytes);
            }
        }
    }

    /// Queues our close frame unless one is queued already; later sends are dropped.
    pub(crate) fn queue_close(self: &Arc<Self>, code: Option<u16>, reason: &str) {
        fanout::settle();
        if let Ok(mut out) = self.out.lock() {
            if out.is_shut() {
                return;
            }
            let bytes = match code {
                Some(code) => frame::encode_close(code, reason),
                None => frame::encode(opcode::CLOSE, &[]),
            };
            self.enqueue(&mut out, &bytes);
            out.close_queued = true;
        }
    }

    /// Sets `attn` bits and wakes the task.
    pub(crate) fn wake(&self, bits: u32) {
        self.attn.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// One tick of the engine's ticker (`now` from the engine's monotonic clock): drops a
    /// silent peer or a close handshake past its deadline, and sends the server ping when
    /// `ping` says so (then true).
    pub fn tick(self: &Arc<Self>, now: u64, idle_ms: u64, ping: bool) -> bool {
        let deadline = self.close_deadline.load(Ordering::Acquire);
        if deadline != 0 && now >= deadline {
            self.wake(attn::DEADLINE);
        } else if now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= idle_ms {
            self.wake(attn::IDLE);
        } else if ping && !self.is_closing() {
            self.ping_sent.store(now.max(1), Ordering::Relaxed);
            self.send_control(&frame::encode(opcode::PING, &[]));
            return true;
        }
        false
    }

    /// Starts the close handshake after what is already queued; later sends are dropped.
    /// The peer gets `close_timeout` to answer. Idempotent.
    pub fn close(self: &Arc<Self>, code: u16, reason: &str) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            if let Ok(mut r) = self.requested_close.lock() {
                *r = Some((code, reason.to_string()));
            }
            self.queue_close(Some(code), reason);
            self.wake(attn::CLOSE);
        }
    }

    /// The peer sent a close frame: answer it (echoing its code unless we closed first) and
    /// accept no more sends.
    pub(crate) fn answer_close(self: &Arc<Self>, code: Option<u16>) {
        self.closing.store(true, Ordering::Release);
        self.queue_close(code, "");
    }

    /// Drops the connection without waiting for a close handshake.
    pub fn abort(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake(attn::KILL);
    }

    /// Marks the connection closing for good: no new sends, broadcasts or joins reach it.
    pub(crate) fn mark_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Whether our close frame has been queued (sent, or about to be).
    pub(crate) fn close_queued(&self) -> bool {
        self.out.lock().map(|o| o.close_queued).unwrap_or(false)
    }

    /// Whether `close` was called or the connection is going away.
    #[inline]
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The close we asked for, if any.
    pub(crate) fn requested_close(&self) -> Option<(u16, String)> {
        self.requested_close.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn is_blocked(&self) -> bool {
        self.out.lock().map(|o| o.blocked).unwrap_or(false)
    }

    /// Whether everything queued (our close frame included) has been written.
    pub(crate) fn is_flushed(&self) -> bool {
        self.out.lock().map(|o| o.pending() == 0 && !o.blocked).unwrap_or(true)
    }

    /// Lets the outbox's handle of the socket go and forgets what is queued.
    pub(crate) fn shut_down(&self) {
        if let Ok(mut out) = self.out.lock() {
            out.shut_down();
        }
        self.buffered.store(0, Ordering::Release);
    }

    /// The connection's rooms and metadata (None inside until first used; None outside only if
    /// the lock is poisoned).
    pub fn extra(&self) -> Option<MutexGuard<'_, Option<Box<Extra>>>> {
        self.extra.lock().ok()
    }

    /// Rooms this connection is in.
    /// Rooms of a resumed session still waiting for `recover` are listed too.
    pub fn rooms(&self) -> Vec<String> {
        self.extra()
            .and_then(|e| {
                e.as_ref().map(|e| {
                    e.rooms.iter().map(String::from).chain(e.pending_rooms.iter().cloned()).collect()
                })
            })
            .unwrap_or_default()
    }
}

/// Connections over loopback pairs, for the unit tests of the modules that send.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod fixture {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    /// A connection handle (id `id`, UUID `[id; 16]`) over a loopback pair, ready to write, and
    /// the peer's end (its reads time out after 200 ms).
    pub async fn conn(id: u8) -> (Arc<Conn>, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let stream = Arc::new(TcpStream::from_std(ours).unwrap());
        stream.writable().await.unwrap();
        (Arc::new(Conn::new(u32::from(id), [id; 16], format!("c{id}"), 0, stream, 0, 0)), peer)
    }

    /// What the peer can read now (empty when nothing came within the timeout).
    pub fn read_some(peer: &mut std::net::TcpStream) -> Vec<u8> {
        let mut buf = [0u8; 4096];
        match peer.read(&mut buf) {
            Ok(n) => buf[..n].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    /// A send context with fresh counters.
    pub fn context(max_backpressure: usize, close_on_limit: bool) -> SendContext {
        SendContext { stats: Arc::default(), max_backpressure, close_on_limit }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixture::{context, read_some};
    use super::*;
    use crate::cork::CorkScope;

    async fn conn() -> (Arc<Conn>, std::net::TcpStream) {
        super::fixture::conn(7).await
    }

    #[tokio::test]
    async fn sends_are_counted_and_written() {
        let (conn, mut peer) = conn().await;
        let ctx = context(1024, true);
        let frame = OutFrame::text("hello");
        assert_eq!(conn.send(&ctx, &frame), SendStatus::Sent);
        assert_eq!(read_some(&mut peer), &frame.bytes[..]);
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 1);
        assert_eq!(crate::engine::both(&ctx.stats.bytes_out), 5);
        assert_eq!(conn.send_uncounted(&ctx, &frame), SendStatus::Sent);
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 1, "uncounted");
    }

    #[tokio::test]
    async fn a_send_past_the_limit_is_dropped_and_closes_with_the_close_policy() {
        for close_on_limit in [false, true] {
            let (conn, mut peer) = conn().await;
            let ctx = context(100, close_on_limit);
            let frame = OutFrame::binary(&[1; 60]);
            {
                // Corked: the first frame waits in the queue, so the second passes the limit.
                let _cork = CorkScope::begin();
                assert_eq!(conn.send(&ctx, &frame), SendStatus::Buffered, "62 bytes: over half");
                assert_eq!(conn.send(&ctx, &frame), SendStatus::Dropped);
            }
            assert_eq!(ctx.stats.dropped.load(Ordering::Relaxed), 1);
            assert_eq!(crate::engine::both(&ctx.stats.messages_out), 1);
            assert_eq!(conn.is_closing(), close_on_limit);
            let got = read_some(&mut peer);
            assert!(got.starts_with(&frame.bytes));
            if close_on_limit {
                assert_eq!(
                    &got[frame.bytes.len()..],
                    &frame::encode_close(1008, "Send buffer limit exceeded")[..]
                );
                assert_eq!(conn.send(&ctx, &frame), SendStatus::Dropped, "nothing after closing");
            } else {
                assert_eq!(got.len(), frame.bytes.len());
                assert_eq!(conn.send(&ctx, &frame), SendStatus::Sent, "the queue has room again");
            }
        }
    }

    #[tokio::test]
    async fn send_with_writes_what_fill_appends() {
        let (conn, mut peer) = conn().await;
        let ctx = context(1024, true);
        let mut scratch = Vec::new();
        let status = conn.send_with(&ctx, &mut scratch, false, |buf| {
            frame::encode_into(buf, opcode::TEXT, b"abc");
            Some(3)
        });
        assert_eq!(status, SendStatus::Sent);
        assert_eq!(read_some(&mut peer), &frame::encode(opcode::TEXT, b"abc")[..]);
        assert_eq!(crate::engine::both(&ctx.stats.bytes_out), 3);
        assert_eq!(conn.send_with(&ctx, &mut scratch, false, |_| None), SendStatus::Dropped);
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 1);
    }

    #[tokio::test]
    async fn corked_frames_leave_together_when_the_scope_ends() {
        let (conn, mut peer) = conn().await;
        let ping = frame::encode(opcode::PING, b"a");
        {
            let _cork = CorkScope::begin();
            conn.send_control(&ping);
            conn.send_control(&ping);
            assert_eq!(conn.buffered.load(Ordering::Acquire), 2 * ping.len());
            assert!(read_some(&mut peer).is_empty(), "nothing is written while corked");
        }
        assert_eq!(conn.buffered.load(Ordering::Acquire), 0);
        assert_eq!(read_some(&mut peer), [&ping[..], &ping[..]].concat());
    }

    #[tokio::test]
    async fn close_is_idempotent_and_shuts_the_outbox() {
        let (conn, mut peer) = conn().await;
        conn.close(4000, "bye");
        conn.close(4001, "again");
        assert!(conn.is_closing());
        assert_eq!(conn.requested_close(), Some((4000, "bye".to_string())));
        assert_eq!(read_some(&mut peer), &frame::encode_close(4000, "bye")[..]);
        assert_ne!(conn.attn.load(Ordering::Acquire) & attn::CLOSE, 0);
        // Nothing goes out after our close frame.
        conn.send_control(&frame::encode(opcode::PING, &[]));
        assert!(read_some(&mut peer).is_empty());
        assert!(conn.is_flushed());
        conn.shut_down();
        assert!(conn.out.lock().unwrap().stream.is_none());
    }

    #[tokio::test]
    async fn the_peers_close_code_is_echoed() {
        let (conn, mut peer) = conn().await;
        conn.answer_close(Some(1001));
        assert!(conn.is_closing());
        assert_eq!(read_some(&mut peer), &frame::encode_close(1001, "")[..]);
        assert_eq!(conn.requested_close(), None, "we did not ask for this close");
    }

    #[tokio::test]
    async fn tick_wakes_for_deadline_and_idleness_and_pings_otherwise() {
        let (conn, mut peer) = conn().await;
        assert!(conn.tick(100, 1_000, true));
        assert_eq!(read_some(&mut peer), &frame::encode(opcode::PING, &[])[..]);
        assert_eq!(conn.attn.swap(0, Ordering::AcqRel), 0);
        assert!(!conn.tick(1_000, 1_000, false));
        assert_eq!(conn.attn.swap(0, Ordering::AcqRel), attn::IDLE);
        conn.close_deadline.store(50, Ordering::Release);
        assert!(!conn.tick(60, 1_000, true));
        assert_ne!(conn.attn.swap(0, Ordering::AcqRel) & attn::DEADLINE, 0);
    }
}
