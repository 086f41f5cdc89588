//! One WebSocket connection: its handle (shared with JS calls and rooms) and its task.
//!
//! Writing never waits for a task. Whichever thread sends (the JS thread, a reader doing room
//! fan-out) writes the frame to the socket itself when nothing is queued before it; only what the
//! kernel does not take is queued, and the connection's task writes that once the socket is
//! writable again. A thread can *cork*: while corked, its sends are appended to each
//! connection's queue and written with one syscall per connection when it uncorks. The JS thread
//! corks for each batch of events it handles, a reader for each chunk it reads. Broadcasts from a
//! corked thread go into one shared buffer per room instead of every member's queue, and each
//! member is written straight from it on uncork (`SharedFanout`).
//!
//! Reading: the task waits until the socket is readable and reads into a per-thread scratch
//! buffer. Only the bytes of an incomplete frame are kept per connection, so an idle connection
//! holds no read buffer at all. The connection has no timers of its own: the engine's ticker
//! (`Engine::ticker`) sends server pings and enforces the idle timeout and the close deadline.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;

use crate::engine::{hooks, Admission, Engine, Stats};
use crate::events::{hex, Event};
use crate::frame::{self, opcode, Decoder, Inbound, Violation};

/// How often a connection paused by a full event queue looks again.
const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(2);

/// Ping frames a peer may send per second before it is closed with 1008.
pub const MAX_PINGS_PER_SECOND: u32 = 100;

/// Bytes read per syscall into the per-thread scratch buffer.
const SCRATCH_BYTES: usize = 64 * 1024;

/// Reads made in one go before the task looks at its timers and notifications again.
const READS_PER_TURN: usize = 4;

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
    bytes: Bytes,
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

    pub fn payload_len(&self) -> usize {
        self.bytes.len() - usize::from(self.header)
    }
}

/// Wall-clock time in ms since the Unix epoch (what JS sees in `lastPing`, `createdAt`...).
pub fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Bits of `Conn::attn`: why the task was woken.
mod attn {
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

/// What waits to be written, and the socket it goes to.
struct Outbox {
    /// None once the task has ended: the socket is closed.
    stream: Option<Arc<TcpStream>>,
    /// Queued bytes; `buf[pos..]` is still to be written.
    buf: Vec<u8>,
    pos: usize,
    /// The kernel refused bytes: only the task writes until the backlog is gone.
    blocked: bool,
    /// In a corked thread's list: written when that thread uncorks.
    corked: bool,
    /// Our close frame is queued; nothing else is accepted after it.
    close_queued: bool,
    /// The buffer crossed half its limit: an `onDrain` follows once it is empty.
    wants_drain: bool,
}

impl Outbox {
    fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }
}

thread_local! {
    /// Connections with corked bytes, when this thread is corked.
    static CORK: RefCell<Option<Vec<Arc<Conn>>>> = const { RefCell::new(None) };
    /// The reader's scratch buffer (one per tokio worker thread).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Emptied send buffers, for the next connection that must queue bytes: allocating and
    /// freeing them per batch made the heap grow and shrink (page faults on every page).
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static SPARE_SMALL_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    /// The corked thread's pending room fan-out (see `SharedFanout`).
    static SHARED: RefCell<Option<SharedFanout>> = const { RefCell::new(None) };
}

/// Send buffers kept per thread: many small ones (a broadcast to a thousand members needs a
/// thousand per batch) and a few large ones; at most 4 MiB + 8 MiB per thread.
const SPARE_SMALL: usize = 1024;
const SMALL_CAPACITY: usize = 4 * 1024;
const SPARE_LARGE: usize = 64;
const SPARE_CAPACITY: usize = 128 * 1024;

/// A send buffer from this thread's spares (or a new one).
fn spare_buffer() -> Vec<u8> {
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

/// Whether a frame may go straight to the socket: nothing queued before it, the socket not
/// blocked, and this thread not corked.
fn can_write_now(out: &Outbox) -> bool {
    !out.blocked && out.pending() == 0 && !is_corked()
}

/// Whether `len` more bytes would pass the backpressure limit. A single message larger than the
/// limit may still go out through an empty buffer.
fn over_limit(queued: usize, len: usize, limit: usize) -> bool {
    queued > 0 && queued + len > limit
}

/// Appends to a send buffer, taking a spare one when it has none yet.
fn append(buf: &mut Vec<u8>, bytes: &[u8]) {
    if buf.capacity() == 0 {
        *buf = spare_buffer();
    }
    buf.extend_from_slice(bytes);
}

/// Starts corking this thread's sends; returns false when it already was corked (then the
/// caller must not uncork: the outer cork does).
pub fn cork() -> bool {
    CORK.with_borrow_mut(|c| {
        if c.is_some() {
            false
        } else {
            *c = Some(Vec::new());
            true
        }
    })
}

/// Writes every corked connection's bytes (one syscall each) and stops corking.
pub fn uncork() {
    let Some(list) = CORK.with_borrow_mut(Option::take) else { return };
    // The shared fan-out goes first: a member's corked bytes predate it (any send after it was
    // started delivered it first), and with the thread uncorked each member whose queue is empty
    // gets it straight from the shared buffer.
    settle_shared();
    for conn in list {
        if let Ok(mut out) = conn.out.lock() {
            out.corked = false;
            if !out.blocked {
                conn.flush_locked(&mut out);
            }
        }
    }
}

/// Which members a fan-out leaves out: the sender of a `room_message`, or `except` sockets.
#[derive(Clone, Copy)]
pub enum Skip<'a> {
    Conn(u32),
    Uuids(&'a [[u8; 16]]),
}

impl Skip<'_> {
    pub fn matches(&self, conn: &Conn) -> bool {
        match self {
            Skip::Conn(id) => conn.id == *id,
            Skip::Uuids(uuids) => uuids.contains(&conn.uuid),
        }
    }
}

/// `Skip`, kept by a pending shared fan-out.
enum SkipKey {
    Conn(u32),
    Uuids(Vec<[u8; 16]>),
}

impl SkipKey {
    fn is(&self, skip: Skip<'_>) -> bool {
        match (self, skip) {
            (SkipKey::Conn(a), Skip::Conn(b)) => *a == b,
            (SkipKey::Uuids(a), Skip::Uuids(b)) => a.as_slice() == b,
            _ => false,
        }
    }
}

/// Where a shared fan-out goes: one room of one registry (or every connection of a server), to
/// the members it had when it started.
pub struct FanoutTarget<'a> {
    /// The registry's address: two servers on one thread never share a fan-out.
    pub registry: usize,
    /// The room id; "" (never a valid room id) for every connection.
    pub room: &'a str,
    pub skip: Skip<'a>,
    /// The registry's current membership version.
    pub version: u64,
}

/// Consecutive fan-outs from one corked thread to the same room (same skip, membership
/// unchanged), kept as one buffer of frames instead of a copy in every member's queue. When the
/// thread uncorks, each member gets the whole buffer with one write, straight from it when the
/// member has nothing queued. Any other send from this thread, and any fan-out elsewhere,
/// delivers it first, so every connection still receives its frames in the order they were sent.
struct SharedFanout {
    registry: usize,
    room: String,
    skip: SkipKey,
    version: u64,
    members: Vec<Arc<Conn>>,
    /// The frames, back to back.
    bytes: Vec<u8>,
    /// (end of the frame in `bytes`, payload length) of each message.
    msgs: Vec<(usize, usize)>,
    stats: Arc<Stats>,
    limit: usize,
    close_on_limit: bool,
}

impl SharedFanout {
    fn push(&mut self, frame: &OutFrame) {
        self.bytes.extend_from_slice(&frame.bytes);
        self.msgs.push((self.bytes.len(), frame.payload_len()));
    }

    /// Writes (or queues) the frames to every member. A member with nothing queued, on an
    /// uncorked thread, is written straight from the shared buffer; what the kernel does not take
    /// is queued message by message within the backpressure limit, as separate sends would be.
    /// Members counted at fan-out time that take a message after all (closed since, or over the
    /// limit) are taken out of the sent counters again.
    fn deliver(self) {
        let mut tally = Tally::default();
        for conn in &self.members {
            self.deliver_to(conn, &mut tally);
        }
        if tally.lost_msgs > 0 {
            self.stats.messages_out.fetch_sub(tally.lost_msgs, Ordering::Relaxed);
            self.stats.bytes_out.fetch_sub(tally.lost_bytes, Ordering::Relaxed);
        }
        if tally.dropped > 0 {
            self.stats.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
        }
    }

    fn deliver_to(&self, conn: &Arc<Conn>, tally: &mut Tally) {
        let total = self.bytes.len();
        let Ok(mut out) = conn.out.lock() else { return };
        if conn.closing.load(Ordering::Acquire) || out.close_queued || out.stream.is_none() {
            for &(_, payload_len) in &self.msgs {
                tally.lose(payload_len);
            }
            return;
        }
        // `next`: the first message still to place; `start`: where its frame begins.
        let (mut next, mut start, mut queued) = (0, 0, out.pending());
        if can_write_now(&out) {
            let Some(written) = conn.write_now(&mut out, &self.bytes) else { return };
            if written == total {
                return;
            }
            next = self.msgs.partition_point(|m| m.0 <= written);
            start = if next == 0 { 0 } else { self.msgs[next - 1].0 };
            if written > start {
                // The kernel stopped inside this frame: the rest of it must follow.
                let end = self.msgs[next].0;
                append(&mut out.buf, &self.bytes[written..end]);
                queued = end - written;
                next += 1;
                start = end;
            }
        }
        let mut refused = false;
        if start < total {
            if !over_limit(queued, total - start, self.limit) {
                append(&mut out.buf, &self.bytes[start..]);
            } else {
                for &(end, payload_len) in &self.msgs[next..] {
                    let len = end - start;
                    if refused || over_limit(queued, len, self.limit) {
                        if !refused {
                            tally.dropped += 1;
                        }
                        tally.lose(payload_len);
                        refused = self.close_on_limit;
                    } else {
                        append(&mut out.buf, &self.bytes[start..end]);
                        queued += len;
                    }
                    start = end;
                }
            }
        }
        conn.appended(&mut out);
        conn.status_after_send(&mut out, self.limit);
        drop(out);
        if refused {
            conn.close(1008, "Send buffer limit exceeded");
        }
    }
}

/// What a shared fan-out's delivery takes back from the counters.
#[derive(Default)]
struct Tally {
    lost_msgs: u64,
    lost_bytes: u64,
    dropped: u64,
}

impl Tally {
    fn lose(&mut self, payload_len: usize) {
        self.lost_msgs += 1;
        self.lost_bytes += payload_len as u64;
    }
}

/// Delivers this thread's pending shared fan-out, so that what is sent next comes after it.
fn settle_shared() {
    if let Some(shared) = SHARED.with_borrow_mut(Option::take) {
        shared.deliver();
    }
}

/// Whether this thread is corked (its sends are written when it uncorks).
pub fn is_corked() -> bool {
    CORK.with_borrow(Option::is_some)
}

/// A fan-out from a corked thread: `frame` joins the thread's pending shared fan-out when that
/// one has the same target (and membership version); otherwise the pending one is delivered and
/// a new one starts with the members `list` gives (None: no such room) together with the
/// membership version they were listed under, less those the target skips and those closing.
/// Counts the messages sent; returns the recipients.
pub fn fan_out_shared(
    target: FanoutTarget<'_>,
    frame: &OutFrame,
    engine: &Engine,
    list: impl FnOnce() -> Option<(Vec<Arc<Conn>>, u64)>,
) -> u32 {
    let appended = SHARED.with_borrow_mut(|shared| match shared {
        Some(s)
            if s.registry == target.registry
                && s.version == target.version
                && s.room == target.room
                && s.skip.is(target.skip) =>
        {
            s.push(frame);
            Some(s.members.len() as u32)
        }
        _ => None,
    });
    let delivered = match appended {
        Some(n) => n,
        None => {
            settle_shared();
            let Some((mut members, version)) = list() else { return 0 };
            members.retain(|c| !target.skip.matches(c) && !c.is_closing());
            if members.is_empty() {
                return 0;
            }
            let n = members.len() as u32;
            let mut shared = SharedFanout {
                registry: target.registry,
                room: target.room.to_string(),
                skip: match target.skip {
                    Skip::Conn(id) => SkipKey::Conn(id),
                    Skip::Uuids(uuids) => SkipKey::Uuids(uuids.to_vec()),
                },
                version,
                members,
                bytes: Vec::with_capacity(frame.bytes.len() * 32),
                msgs: Vec::with_capacity(32),
                stats: engine.stats.clone(),
                limit: engine.config.max_backpressure,
                close_on_limit: !engine.config.drop_on_backpressure,
            };
            shared.push(frame);
            SHARED.with_borrow_mut(|s| *s = Some(shared));
            n
        }
    };
    engine.stats.count_out_n(delivered, frame.payload_len());
    delivered
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
    out: Mutex<Outbox>,
    /// Bytes accepted by `send` and not yet written to the socket (the outbox, without its lock).
    pub buffered: AtomicUsize,
    /// The task's waker: `wake` sets `attn` bits and wakes it.
    waker: AtomicWaker,
    attn: AtomicU32,
    /// When the peer was last heard from (`Engine::now_ms`); the ticker enforces `idleTimeout`.
    last_seen: AtomicU64,
    /// When the close handshake must be over (`Engine::now_ms`), 0 while none is under way.
    close_deadline: AtomicU64,
    closing: AtomicBool,
    /// The close we asked for (code, reason), reported when the peer never answers.
    requested_close: Mutex<Option<(u16, String)>>,
    /// Rooms and metadata, allocated the first time either is used.
    extra: Mutex<Option<Box<Extra>>>,
    /// Epoch ms of the last client heartbeat: a ping frame or a built-in `ping` message.
    pub last_ping: AtomicU64,
    /// Epoch ms of the last pong frame from the client.
    pub last_pong: AtomicU64,
}

impl Conn {
    /// Sends a data frame; never blocks. Applies the backpressure limit and policy.
    pub fn send(self: &Arc<Self>, engine: &Engine, frame: &OutFrame) -> SendStatus {
        let status = self.send_uncounted(engine, frame);
        if status != SendStatus::Dropped {
            engine.stats.count_out(frame.payload_len());
        }
        status
    }

    /// `send` without counting it in the stats: fan-outs count once for all recipients.
    pub fn send_uncounted(self: &Arc<Self>, engine: &Engine, frame: &OutFrame) -> SendStatus {
        settle_shared();
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        let limit = engine.config.max_backpressure;
        let Ok(mut out) = self.out.lock() else { return SendStatus::Dropped };
        if out.close_queued || out.stream.is_none() {
            return SendStatus::Dropped;
        }
        if over_limit(out.pending(), frame.bytes.len(), limit) {
            drop(out);
            return self.refuse(engine);
        }
        self.enqueue(&mut out, &frame.bytes);
        self.status_after_send(&mut out, limit)
    }

    /// A send over the backpressure limit: counted as dropped, and with the `close` policy
    /// the connection is closed with 1008.
    fn refuse(self: &Arc<Self>, engine: &Engine) -> SendStatus {
        engine.stats.dropped.fetch_add(1, Ordering::Relaxed);
        if !engine.config.drop_on_backpressure {
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
        engine: &Engine,
        scratch: &mut Vec<u8>,
        fill: impl FnOnce(&mut Vec<u8>) -> Option<usize>,
    ) -> SendStatus {
        settle_shared();
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        let limit = engine.config.max_backpressure;
        let (status, payload_len) = {
            let Ok(mut out) = self.out.lock() else { return SendStatus::Dropped };
            if out.close_queued || out.stream.is_none() {
                return SendStatus::Dropped;
            }
            let before = out.pending();
            if can_write_now(&out) {
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
                    return self.refuse(engine);
                }
                self.appended(&mut out);
                (self.status_after_send(&mut out, limit), payload_len)
            }
        };
        engine.stats.count_out(payload_len);
        status
    }

    /// `Buffered` (and an `onDrain` to come) when the queue is over half the limit.
    fn status_after_send(&self, out: &mut Outbox, limit: usize) -> SendStatus {
        if out.pending() * 2 > limit {
            out.wants_drain = true;
            SendStatus::Buffered
        } else {
            SendStatus::Sent
        }
    }

    /// Writes `bytes` after whatever is queued: directly when possible, else into the queue.
    fn enqueue(self: &Arc<Self>, out: &mut MutexGuard<'_, Outbox>, bytes: &[u8]) {
        if can_write_now(out) {
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
    /// when it takes less, the socket is marked blocked and the task waits for it to be
    /// writable, and the caller queues the rest. None: the transport failed (the task is told).
    fn write_now(&self, out: &mut Outbox, bytes: &[u8]) -> Option<usize> {
        let written = match out.stream.as_ref().map(|s| send_now(s, bytes)) {
            Some(Ok(n)) => n,
            Some(Err(e)) if e.kind() == ErrorKind::WouldBlock => 0,
            _ => {
                self.wake(attn::FAILED);
                return None;
            }
        };
        if written < bytes.len() {
            out.blocked = true;
            self.wake(attn::BACKLOG);
        }
        Some(written)
    }

    /// Bookkeeping after bytes were appended to the queue: register with this thread's cork,
    /// or write now (keeping the order of bytes another thread corked), or leave them to the
    /// task while the socket is blocked.
    fn appended(self: &Arc<Self>, out: &mut MutexGuard<'_, Outbox>) {
        if out.blocked {
            // The task writes once the socket is writable.
        } else if is_corked() {
            if !out.corked {
                out.corked = true;
                CORK.with_borrow_mut(|c| {
                    if let Some(list) = c {
                        list.push(self.clone());
                    }
                });
            }
        } else {
            self.flush_locked(out);
        }
        self.buffered.store(out.pending(), Ordering::Release);
    }

    /// Writes the queue until it is empty or the kernel refuses more.
    fn flush_locked(&self, out: &mut Outbox) {
        while out.pending() > 0 {
            let Some(stream) = out.stream.as_ref() else { break };
            match stream.try_write(&out.buf[out.pos..]) {
                Ok(0) => {
                    self.wake(attn::FAILED);
                    break;
                }
                Ok(n) => out.pos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    out.blocked = true;
                    self.wake(attn::BACKLOG);
                    break;
                }
                Err(_) => {
                    self.wake(attn::FAILED);
                    break;
                }
            }
        }
        if out.pending() == 0 {
            // Idle connections hold no write buffer: it goes back to this thread's spares.
            recycle(std::mem::take(&mut out.buf));
            out.pos = 0;
            out.blocked = false;
            if out.wants_drain {
                out.wants_drain = false;
                self.wake(attn::DRAINED);
            }
            if out.close_queued {
                self.wake(attn::FLUSHED);
            }
        } else if out.pos >= 64 * 1024 && out.pos * 2 >= out.buf.len() {
            // Drop what was written so a long backlog does not keep growing the buffer.
            out.buf.drain(..out.pos);
            out.pos = 0;
        }
        self.buffered.store(out.pending(), Ordering::Release);
    }

    /// Queues a control frame (ping, pong, close), ignoring the backpressure limit.
    pub fn send_control(self: &Arc<Self>, bytes: &[u8]) {
        settle_shared();
        if let Ok(mut out) = self.out.lock() {
            if !out.close_queued && out.stream.is_some() {
                self.enqueue(&mut out, bytes);
            }
        }
    }

    /// Queues our close frame unless one is queued already; later sends are dropped.
    fn queue_close(self: &Arc<Self>, code: Option<u16>, reason: &str) {
        settle_shared();
        if let Ok(mut out) = self.out.lock() {
            if out.close_queued || out.stream.is_none() {
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

    fn wake(&self, bits: u32) {
        self.attn.fetch_or(bits, Ordering::AcqRel);
        self.waker.wake();
    }

    /// One tick of the engine's ticker (`now` from `Engine::now_ms`): drops a silent peer or a
    /// close handshake past its deadline, and sends the server ping when `ping` says so.
    pub fn tick(self: &Arc<Self>, now: u64, idle_ms: u64, ping: bool) {
        let deadline = self.close_deadline.load(Ordering::Acquire);
        if deadline != 0 && now >= deadline {
            self.wake(attn::DEADLINE);
        } else if now.saturating_sub(self.last_seen.load(Ordering::Acquire)) >= idle_ms {
            self.wake(attn::IDLE);
        } else if ping && !self.is_closing() {
            self.send_control(&frame::encode(opcode::PING, &[]));
        }
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

    /// Drops the connection without waiting for a close handshake.
    pub fn abort(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake(attn::KILL);
    }

    /// Whether `close` was called or the connection is going away.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn is_blocked(&self) -> bool {
        self.out.lock().map(|o| o.blocked).unwrap_or(false)
    }

    /// Whether everything queued (our close frame included) has been written.
    fn is_flushed(&self) -> bool {
        self.out.lock().map(|o| o.pending() == 0).unwrap_or(true)
    }
}

/// What only some connections use; boxed so the others do not carry two empty hash tables.
#[derive(Default)]
pub struct Extra {
    /// Rooms this connection is in.
    pub rooms: HashSet<String>,
    /// `setMetadata` values, as JSON text.
    pub metadata: HashMap<String, String>,
}

impl Conn {
    /// The connection's rooms and metadata (None inside until first used; None outside only if
    /// the lock is poisoned).
    pub fn extra(&self) -> Option<MutexGuard<'_, Option<Box<Extra>>>> {
        self.extra.lock().ok()
    }

    /// Rooms this connection is in.
    pub fn rooms(&self) -> Vec<String> {
        self.extra().and_then(|e| e.as_ref().map(|e| e.rooms.iter().cloned().collect())).unwrap_or_default()
    }
}

/// Identity of a connection, fixed at upgrade time.
pub struct ConnInfo {
    pub uuid: [u8; 16],
    pub client_id: String,
    pub path: String,
    /// JSON object handed to JS with the connect event.
    pub info_json: String,
}

/// One non-blocking send on a socket the caller found with nothing queued.
///
/// On Linux a plain `send(2)` on the descriptor, without tokio's readiness bookkeeping:
/// `try_write` first reads the socket's readiness state, a cache miss per socket that was 4% of
/// the 1,000-member broadcast. Skipping it is safe: a refused write makes the task wait for
/// writability, and if tokio's stale state says writable, the task's `try_write` gets
/// `WouldBlock`, which clears it, and waits for real.
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

/// One non-blocking read of at most `cap` bytes, done by `read`.
///
/// A short read emptied the socket's receive queue, so it also clears tokio's readiness: the
/// next read then waits for the next readiness event instead of making a syscall that only
/// returns `WouldBlock` (one `recv` per wake-up saved when messages come one at a time). tokio
/// clears the readiness only if no newer event arrived meanwhile, so no wake-up is lost, and it
/// keeps the read-closed state, so a FIN behind the data still ends the connection.
fn read_once(
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

/// Why the connection task woke up.
enum Wake {
    /// The socket is readable (false: its registration failed).
    Readable(bool),
    /// The socket is writable again (false: its registration failed).
    Writable(bool),
    /// `attn` bits.
    Attention(u32),
}

/// What one readable turn produced.
enum ReadOutcome {
    /// Keep going; true when bytes arrived (a spurious wake-up is not the peer's activity).
    Read(bool),
    /// The peer closed the TCP connection.
    Eof,
    /// The peer broke the protocol, or sent a close frame: stop reading.
    Stop,
}

/// The reading half of a connection task.
struct Reader {
    decoder: Decoder,
    /// Bytes of an incomplete frame; empty (no allocation) between frames.
    partial: Vec<u8>,
    /// The close `onClose` reports: the peer's close frame when one came (it wins), else the
    /// first reason we had to close.
    close: Option<(u16, String)>,
    /// Ping frames in the current one-second window: (window start, `Engine::now_ms`; count).
    ping_window: (u64, u32),
    /// Decoding stopped because JS is behind (`maxInboundQueue`): `partial` may hold whole
    /// frames, to decode before reading more.
    stalled: bool,
}

impl Reader {
    /// Reads what the socket has (a few syscalls at most) and handles every complete frame.
    fn read(&mut self, engine: &Engine, conn: &Arc<Conn>, stream: &TcpStream) -> ReadOutcome {
        let corked = cork();
        let outcome = self.read_turn(engine, conn, stream);
        if corked {
            uncork();
        }
        outcome
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
                let want = Decoder::frame_len(&self.partial).unwrap_or(0).max(self.partial.len() + 4096);
                self.partial.reserve(want - self.partial.len());
                let room = self.partial.capacity() - self.partial.len();
                match read_once(stream, room, || stream.try_read_buf(&mut self.partial)) {
                    Ok(0) => Err(ReadOutcome::Eof),
                    Ok(n) => self.decode_partial(engine, conn).map(|_| n),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(0),
                    Err(_) => Err(ReadOutcome::Eof),
                }
            };
            match result {
                Ok(0) => return ReadOutcome::Read(got),
                Ok(_) if self.stalled => return ReadOutcome::Read(true),
                Ok(_) => got = true,
                Err(outcome) => return outcome,
            }
        }
        ReadOutcome::Read(got)
    }

    /// Decodes the frames left behind when decoding stalled; false when the reader must stop.
    fn resume(&mut self, engine: &Engine, conn: &Arc<Conn>) -> bool {
        let corked = cork();
        let result = self.decode_partial(engine, conn);
        if corked {
            uncork();
        }
        result.is_ok()
    }

    /// Decodes what `partial` holds and keeps what is left of it (nothing, when the reader
    /// stops).
    fn decode_partial(&mut self, engine: &Engine, conn: &Arc<Conn>) -> Result<usize, ReadOutcome> {
        let mut partial = std::mem::take(&mut self.partial);
        let used = self.decode(engine, conn, &mut partial)?;
        if used < partial.len() {
            partial.drain(..used);
            self.partial = partial;
        }
        Ok(used)
    }

    /// Keeps the start of an incomplete frame for the next read.
    fn keep(&mut self, bytes: &[u8]) {
        let want = Decoder::frame_len(bytes).unwrap_or(0).max(bytes.len());
        self.partial.reserve_exact(want.min(bytes.len() + SCRATCH_BYTES));
        self.partial.extend_from_slice(bytes);
    }

    /// Decodes and handles every complete frame in `buf`; returns the bytes used.
    fn decode(&mut self, engine: &Engine, conn: &Arc<Conn>, buf: &mut [u8]) -> Result<usize, ReadOutcome> {
        let mut stop = false;
        let Reader { decoder, close: reported, ping_window, .. } = self;
        let mut go = || !engine.events.congested();
        let result = decoder.decode_while(
            buf,
            &mut |msg| match msg {
                Inbound::Text { data, ascii } => {
                    engine.stats.count_in(data.len());
                    engine.on_text(conn, data, ascii);
                }
                Inbound::Binary(data) => {
                    engine.stats.count_in(data.len());
                    if conn.hooks & hooks::MESSAGE != 0 {
                        engine.events.push_binary(conn.id, data);
                    }
                }
                Inbound::Ping(data) => {
                    conn.last_ping.store(epoch_ms(), Ordering::Relaxed);
                    let now = engine.now_ms();
                    if now.saturating_sub(ping_window.0) >= 1000 {
                        *ping_window = (now, 0);
                    }
                    ping_window.1 += 1;
                    if ping_window.1 > MAX_PINGS_PER_SECOND {
                        if reported.is_none() {
                            *reported = Some((1008, "Ping flood".to_string()));
                        }
                        conn.close(1008, "Ping flood");
                    } else {
                        conn.send_control(&frame::encode(opcode::PONG, data));
                        if conn.hooks & hooks::CONTROL != 0 {
                            engine.events.push(Event::Control { conn: conn.id, pong: false, hex: hex(data) });
                        }
                    }
                }
                Inbound::Pong(data) => {
                    conn.last_pong.store(epoch_ms(), Ordering::Relaxed);
                    if conn.hooks & hooks::CONTROL != 0 {
                        engine.events.push(Event::Control { conn: conn.id, pong: true, hex: hex(data) });
                    }
                }
                Inbound::Close(close) => {
                    // Echo the peer's code (RFC 6455 §5.5.1) unless we closed first.
                    conn.closing.store(true, Ordering::Release);
                    conn.queue_close(close.as_ref().map(|(code, _)| *code), "");
                    *reported = Some(close.unwrap_or((1005, String::new())));
                    stop = true;
                }
            },
            &mut go,
        );
        match result {
            Ok(_) if stop => Err(ReadOutcome::Stop),
            Ok(used) => {
                self.stalled = used < buf.len() && engine.events.congested();
                Ok(used)
            }
            Err(Violation { code, reason }) => {
                if self.close.is_none() {
                    self.close = Some((code, reason.to_string()));
                }
                conn.close(code, reason);
                Err(ReadOutcome::Stop)
            }
        }
    }
}

/// Starts a connection: registers it, reports it to JS, and spawns its task, which pumps
/// frames, then unregisters it and reports its close.
/// `leftover` holds bytes the client sent right behind its upgrade request. `admission` holds
/// the connection's place in the connection limits until it ends.
pub fn start(
    engine: Arc<Engine>,
    info: ConnInfo,
    stream: TcpStream,
    leftover: Vec<u8>,
    admission: Admission,
) {
    let stream = Arc::new(stream);
    let id = engine.next_conn_id();
    let now = epoch_ms();
    let conn = Arc::new(Conn {
        id,
        uuid: info.uuid,
        client_id: info.client_id,
        hooks: engine.route_hooks(&info.path),
        out: Mutex::new(Outbox {
            stream: Some(stream.clone()),
            buf: Vec::new(),
            pos: 0,
            blocked: false,
            corked: false,
            close_queued: false,
            wants_drain: false,
        }),
        buffered: AtomicUsize::new(0),
        waker: AtomicWaker::new(),
        attn: AtomicU32::new(0),
        last_seen: AtomicU64::new(engine.now_ms()),
        close_deadline: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        requested_close: Mutex::new(None),
        extra: Mutex::new(None),
        last_ping: AtomicU64::new(now),
        last_pong: AtomicU64::new(now),
    });
    engine.live_tasks.fetch_add(1, Ordering::AcqRel);
    engine.conns.insert(id, conn.clone());
    engine.conns_version.fetch_add(1, Ordering::AcqRel);
    engine.events.push(Event::Connect { conn: id, info: info.info_json });
    if engine.is_shutting_down() {
        conn.close(1001, "Server shutting down");
    }

    let config = &engine.config;
    let mut reader = Reader {
        decoder: Decoder::new(config.max_payload),
        partial: Vec::new(),
        close: None,
        ping_window: (engine.now_ms(), 0),
        stalled: false,
    };
    let mut reading = true;
    if !leftover.is_empty() {
        let mut leftover = leftover;
        let corked = cork();
        match reader.decode(&engine, &conn, &mut leftover) {
            Ok(used) if used < leftover.len() => reader.keep(&leftover[used..]),
            Ok(_) => {}
            Err(_) => reading = false,
        }
        if corked {
            uncork();
        }
    }
    // Its own task, holding only what the connection's life needs: the handshake's state is
    // gone by now, so an idle connection costs one small task.
    tokio::spawn(drive(engine, conn, stream, reader, reading, admission));
}

/// The connection's life after the upgrade: reads, writes the backlog, closes, reports.
// Not an `async fn`: the async block captures the arguments once, where an async fn keeps them
// as arguments and again as locals (304 bytes of task state instead of 472).
#[allow(clippy::manual_async_fn)]
fn drive(
    engine: Arc<Engine>,
    conn: Arc<Conn>,
    stream: Arc<TcpStream>,
    mut reader: Reader,
    mut reading: bool,
    admission: Admission,
) -> impl std::future::Future<Output = ()> {
    async move {
        let id = conn.id;
        let close_ms = engine.config.close_timeout.as_millis() as u64;
        let start_close_deadline = |conn: &Conn| {
            let deadline = engine.now_ms() + close_ms;
            let _ =
                conn.close_deadline.compare_exchange(0, deadline.max(1), Ordering::AcqRel, Ordering::Acquire);
        };
        // No timers here: the engine's ticker watches `last_seen` and `close_deadline`, and pings.
        // The loop waits on one small poll function (socket readiness and the attention bits), so
        // the task of an idle connection stays small.
        loop {
            if !reading {
                // The close handshake is over on our side (peer closed, or we failed the
                // connection): flush what is queued, bounded by the close timeout, then end.
                if conn.is_flushed() {
                    break;
                }
                start_close_deadline(&conn);
            }
            // JS is far behind: stop reading (TCP then slows the client down) and look again shortly.
            let paused = reading && engine.events.congested();
            if reading && !paused && reader.stalled {
                reader.stalled = false;
                reading = reader.resume(&engine, &conn);
                continue;
            }
            let blocked = conn.is_blocked();
            let event = std::future::poll_fn(|cx| {
                conn.waker.register(cx.waker());
                let bits = conn.attn.swap(0, Ordering::AcqRel);
                if bits != 0 {
                    return Poll::Ready(Wake::Attention(bits));
                }
                if blocked {
                    if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                        return Poll::Ready(Wake::Writable(ready.is_ok()));
                    }
                }
                if reading && !paused {
                    if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                        return Poll::Ready(Wake::Readable(ready.is_ok()));
                    }
                }
                Poll::Pending
            });
            let event = if paused {
                // Boxed: the timer is only needed while paused, so idle tasks do not carry it.
                match Box::pin(tokio::time::timeout(PAUSE_RECHECK, event)).await {
                    Ok(event) => event,
                    Err(_) => {
                        // Time spent paused for JS is not the peer's silence.
                        conn.last_seen.store(engine.now_ms(), Ordering::Release);
                        continue;
                    }
                }
            } else {
                event.await
            };
            match event {
                Wake::Readable(false) | Wake::Writable(false) => break,
                Wake::Readable(true) => match reader.read(&engine, &conn, &stream) {
                    ReadOutcome::Read(true) => conn.last_seen.store(engine.now_ms(), Ordering::Release),
                    ReadOutcome::Read(false) => {}
                    ReadOutcome::Eof => break,
                    ReadOutcome::Stop => reading = false,
                },
                Wake::Writable(true) => {
                    if let Ok(mut out) = conn.out.lock() {
                        conn.flush_locked(&mut out);
                    }
                }
                Wake::Attention(bits) => {
                    if bits & (attn::KILL | attn::FAILED | attn::DEADLINE) != 0 {
                        break;
                    }
                    if bits & attn::IDLE != 0 {
                        reader.close.get_or_insert((1006, "Idle timeout".to_string()));
                        break;
                    }
                    if bits & attn::DRAINED != 0 && !conn.is_closing() {
                        engine.events.push(Event::Drain { conn: id });
                    }
                    if bits & attn::CLOSE != 0 {
                        start_close_deadline(&conn);
                    }
                }
            }
        }

        // No new sends, broadcasts or joins reach it from here on.
        conn.closing.store(true, Ordering::Release);
        engine.unregister(&conn);
        drop(admission);
        // Close the socket: the outbox lets its handle go, then ours goes.
        if let Ok(mut out) = conn.out.lock() {
            out.stream = None;
            out.buf = Vec::new();
            out.pos = 0;
            out.blocked = false;
        }
        conn.buffered.store(0, Ordering::Release);
        drop(stream);
        let requested = conn.requested_close.lock().ok().and_then(|r| r.clone());
        let (code, reason) = reader.close.or(requested).unwrap_or((1006, String::new()));
        engine.events.push(Event::Close { conn: id, code, reason });
        engine.live_tasks.fetch_sub(1, Ordering::AcqRel);
        engine.conn_gone.notify_waiters();
    }
}
