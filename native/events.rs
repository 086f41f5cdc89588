//! Batched delivery of engine events to JavaScript.
//!
//! Producers (connection tasks) push into one queue. The first push after a drain wakes JS
//! through a single ThreadsafeFunction call; JS then pulls everything queued with
//! `pollEvents()`, so one wake-up carries every event since the previous one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use napi::bindgen_prelude::{Buffer, Uint32Array};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

/// The JS wake-up callback: takes the number of queued events, never holds errors.
pub type WakeFn = ThreadsafeFunction<u32, (), u32, Status, false>;

/// Event kinds, the first slot of each event in the batch header; the facade switches on them.
#[napi]
pub enum EventKind {
    Connect = 0,
    Text = 1,
    Binary = 2,
    Close = 3,
    Drain = 4,
    JoinRequest = 5,
    Leave = 6,
    Upgrade = 7,
    UpgradeFailed = 8,
    /// A ping frame from the peer (payload as hex text), for paths with `onPing`.
    Ping = 9,
    /// A pong frame from the peer (payload as hex text), for paths with `onPong`.
    Pong = 10,
}

/// Most events one `pollEvents()` call returns.
pub const MAX_BATCH: usize = 4096;

/// Message bytes one `pollEvents()` call returns, unless a single message is larger or one
/// connection's run of messages crosses it (see `Chunk::full`).
pub const MAX_BATCH_BYTES: usize = 96 * 1024;

/// Bytes a chunk may grow to so that one connection's run of messages stays in one batch: that
/// connection's replies then leave in one write. Below V8's large-object size (128 KiB), so a
/// batch of ASCII text is still an ordinary young string.
const MAX_RUN_BYTES: usize = 120 * 1024;

/// u32 slots per event in the batch header.
pub const STRIDE: usize = 5;

/// One thing that happened, addressed to a connection.
pub enum Event {
    /// A new connection; `info` is a JSON object with id, clientId, path, headers...
    Connect { conn: u32, info: String },
    /// A text message for `onMessage`. Its UTF-8 (valid: the frame decoder checked it) waits in
    /// the queue's text chunks; `start..end` are its UTF-16 offsets in its chunk, `len` its bytes.
    Text { conn: u32, start: u32, end: u32, len: u32 },
    /// A binary message for `onMessage`; `start..end` are its bytes in its chunk's binary part.
    Binary { conn: u32, start: u32, end: u32 },
    /// The connection is gone; no event for it follows.
    Close { conn: u32, code: u16, reason: String },
    /// The send buffer emptied after crossing the backpressure limit.
    Drain { conn: u32 },
    /// A client asks to join a room and an `onJoinRoom` hook must decide.
    JoinRequest { conn: u32, request: u32, room: String },
    /// A connection left a room.
    Leave { conn: u32, room: String },
    /// An upgrade request waits for `onUpgrade`; `info` is the request as JSON.
    Upgrade { request: u32, info: String },
    /// An upgrade `onUpgrade` accepted never completed (the client went away).
    UpgradeFailed { request: u32 },
    /// A ping (`pong: false`) or pong frame, for a path with the control hook; `hex` is its
    /// payload (at most 125 bytes) as lower-case hex, so it travels in the batch text.
    Control { conn: u32, pong: bool, hex: String },
}

/// A control frame's payload as lower-case hex (the form `Event::Control` carries it in).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

impl Event {
    /// Payload bytes of a message event (what `maxInboundQueue` counts); 0 for the others.
    fn message_bytes(&self) -> usize {
        match self {
            Event::Text { len, .. } => *len as usize,
            Event::Binary { start, end, .. } => (end - start) as usize,
            _ => 0,
        }
    }
}

/// Queued messages, back to back: the UTF-8 of the text ones, which becomes the one string of
/// the batch that takes them, and the bytes of the binary ones, which become its one buffer. A
/// message is copied into its chunk once, on the reader's thread, and nothing is allocated per
/// message. A chunk holds about `MAX_BATCH_BYTES` and at most `MAX_BATCH` messages; a batch
/// takes exactly one chunk.
struct Chunk {
    bytes: Vec<u8>,
    ascii: bool,
    /// Length of `bytes` in UTF-16 code units.
    units: usize,
    binary: Vec<u8>,
    /// Message events in the chunk.
    messages: usize,
    /// The connection of the last message.
    last_conn: u32,
}

impl Chunk {
    /// Whether a message of `len` bytes from `conn` must start a new chunk. Past
    /// `MAX_BATCH_BYTES` the connection that was appending may go on up to `MAX_RUN_BYTES`: JS
    /// writes each batch's replies when it takes the next batch, so a connection whose messages
    /// straddled two batches would get its replies in two writes.
    fn full(&self, len: usize, conn: u32) -> bool {
        let size = self.bytes.len() + self.binary.len() + len;
        self.messages > 0
            && (self.messages >= MAX_BATCH
                || size > MAX_RUN_BYTES
                || (size > MAX_BATCH_BYTES && conn != self.last_conn))
    }
}

/// Emptied text buffers, shared by every queue: a batch's buffer comes back here once V8 has
/// copied it, and the next chunk reuses it.
static SPARE_TEXT: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Text buffers kept, and the most capacity one may keep.
const SPARE_TEXT_KEEP: usize = 8;
const SPARE_TEXT_CAPACITY: usize = 1024 * 1024;

/// An empty text buffer with room for `n` bytes (a spare one when there is one).
fn text_buffer(n: usize) -> Vec<u8> {
    let mut bytes = SPARE_TEXT.lock().ok().and_then(|mut s| s.pop()).unwrap_or_default();
    bytes.clear();
    bytes.reserve(n.max(16 * 1024));
    bytes
}

/// Gives a text buffer back to the spares.
fn recycle_text(bytes: Vec<u8>) {
    if bytes.capacity() == 0 || bytes.capacity() > SPARE_TEXT_CAPACITY {
        return;
    }
    if let Ok(mut spare) = SPARE_TEXT.lock() {
        if spare.len() < SPARE_TEXT_KEEP {
            spare.push(bytes);
        }
    }
}

/// UTF-16 length of valid UTF-8, and whether it is all ASCII.
fn utf16_len(piece: &[u8]) -> (usize, bool) {
    if piece.is_ascii() {
        return (piece.len(), true);
    }
    // One unit per character (every byte that is not a continuation byte), two for characters
    // outside the BMP (4-byte sequences, lead byte 0xF0 and up).
    (piece.iter().map(|&b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0)).sum(), false)
}

/// What `pollEvents()` hands to JS: a header of `STRIDE` u32 per event
/// (kind, conn, start, end, extra), one string holding every text piece, one buffer holding every binary piece.
#[napi(object, object_from_js = false)]
pub struct Batch {
    pub header: Uint32Array,
    #[napi(ts_type = "string")]
    pub text: BatchText,
    pub binary: Option<Buffer>,
}

/// Every text piece of a batch, as UTF-8 (each piece is valid UTF-8). Becomes one JS string:
/// from Latin-1 (a plain copy) when it is all ASCII, else decoded from UTF-8.
pub struct BatchText {
    bytes: Vec<u8>,
    ascii: bool,
}

impl BatchText {
    fn with_capacity(n: usize) -> Self {
        BatchText { bytes: text_buffer(n), ascii: true }
    }

    /// Appends a piece; returns its length in UTF-16 code units, the unit JS offsets count.
    fn push(&mut self, piece: &[u8]) -> usize {
        self.bytes.extend_from_slice(piece);
        let (units, ascii) = utf16_len(piece);
        self.ascii &= ascii;
        units
    }
}

impl napi::bindgen_prelude::TypeName for BatchText {
    fn type_name() -> &'static str {
        "String"
    }

    fn value_type() -> napi::ValueType {
        napi::ValueType::String
    }
}

impl napi::bindgen_prelude::ToNapiValue for BatchText {
    unsafe fn to_napi_value(env: napi::sys::napi_env, val: Self) -> napi::Result<napi::sys::napi_value> {
        let mut out = std::ptr::null_mut();
        let ptr = val.bytes.as_ptr().cast();
        // SAFETY: `ptr`/len describe the live buffer; napi copies it into a new JS string.
        let status = unsafe {
            if val.ascii {
                napi::sys::napi_create_string_latin1(env, ptr, val.bytes.len() as isize, &mut out)
            } else {
                napi::sys::napi_create_string_utf8(env, ptr, val.bytes.len() as isize, &mut out)
            }
        };
        recycle_text(val.bytes);
        if status != napi::sys::Status::napi_ok {
            return Err(napi::Error::from_reason("could not create the batch text"));
        }
        Ok(out)
    }
}

/// The queue between connection tasks and the JS thread.
pub struct EventQueue {
    queue: Mutex<Pending>,
    wake: Mutex<Option<WakeFn>>,
    /// Number of wake-ups sent, for the events-per-call stat.
    pub wakes: AtomicU64,
    /// Number of batches handed to JS.
    pub batches: AtomicU64,
    /// Number of events handed to JS.
    pub delivered: AtomicU64,
    closed: AtomicBool,
    /// Set by `push` when JS must be woken; `wake_loop` answers it.
    wake_requested: tokio::sync::Notify,
    /// Message bytes queued for JS; connections stop reading while it is over `max_bytes`.
    bytes: AtomicUsize,
    max_bytes: usize,
    /// Most message bytes ever queued at once.
    pub peak_bytes: AtomicUsize,
}

struct Pending {
    events: std::collections::VecDeque<Event>,
    /// The payloads of the queued message events, in their order.
    chunks: std::collections::VecDeque<Chunk>,
    /// A wake-up is in flight: JS has not drained yet.
    scheduled: bool,
}

impl Pending {
    /// Appends a text message to the last chunk, or to a new one when that one is full (see
    /// `Chunk::full`); `units`/`ascii` from `utf16_len`.
    fn push_text(&mut self, conn: u32, data: &[u8], units: usize, ascii: bool) {
        let Some(chunk) = self.chunk_for(conn, data.len(), true) else { return };
        let start = chunk.units as u32;
        chunk.bytes.extend_from_slice(data);
        chunk.ascii &= ascii;
        chunk.units += units;
        chunk.messages += 1;
        let end = chunk.units as u32;
        self.events.push_back(Event::Text { conn, start, end, len: data.len() as u32 });
    }

    /// Appends a binary message like `push_text`.
    fn push_binary(&mut self, conn: u32, data: &[u8]) {
        let Some(chunk) = self.chunk_for(conn, data.len(), false) else { return };
        if chunk.binary.capacity() == 0 {
            // Handed to JS as the batch's buffer, so not pooled: one allocation per batch.
            chunk.binary.reserve(data.len().max(16 * 1024));
        }
        let start = chunk.binary.len() as u32;
        chunk.binary.extend_from_slice(data);
        chunk.messages += 1;
        let end = chunk.binary.len() as u32;
        self.events.push_back(Event::Binary { conn, start, end });
    }

    /// The chunk a message of `len` bytes goes into: the last one, or a new one.
    fn chunk_for(&mut self, conn: u32, len: usize, text: bool) -> Option<&mut Chunk> {
        if self.chunks.back().is_none_or(|c| c.full(len, conn)) {
            let bytes = text_buffer(if text { len } else { 0 });
            let chunk =
                Chunk { bytes, ascii: true, units: 0, binary: Vec::new(), messages: 0, last_conn: conn };
            self.chunks.push_back(chunk);
        }
        let chunk = self.chunks.back_mut()?;
        chunk.last_conn = conn;
        Some(chunk)
    }

    /// Takes the events of one batch: every message of the first chunk and none of the next
    /// one (at most `MAX_BATCH` messages and about `MAX_BATCH_BYTES`, so JS can yield to its
    /// event loop between calls and the batch's string stays an ordinary young V8 object), with
    /// the other events among and after them up to `MAX_BATCH` events in all. Returns them and
    /// their message bytes.
    fn take(&mut self) -> (Taken, usize) {
        let mut messages_left = self.chunks.front().map_or(0, |c| c.messages);
        let with_chunk = messages_left > 0;
        let (mut n, mut bytes) = (0, 0);
        for event in self.events.iter() {
            if let Event::Text { .. } | Event::Binary { .. } = event {
                if messages_left == 0 {
                    break;
                }
                messages_left -= 1;
            } else if messages_left == 0 && n >= MAX_BATCH {
                break;
            }
            bytes += event.message_bytes();
            n += 1;
        }
        let events: Vec<Event> = self.events.drain(..n).collect();
        let chunk = if with_chunk && messages_left == 0 { self.chunks.pop_front() } else { None };
        (Taken { events, chunk }, bytes)
    }
}

/// What one `take` hands over: events, and the chunk holding their messages.
pub struct Taken {
    pub events: Vec<Event>,
    chunk: Option<Chunk>,
}

impl Taken {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl EventQueue {
    /// A queue that asks connections to stop reading past `max_bytes` of queued messages.
    pub fn new(max_bytes: usize) -> Self {
        EventQueue {
            queue: Mutex::new(Pending {
                events: std::collections::VecDeque::new(),
                chunks: std::collections::VecDeque::new(),
                scheduled: false,
            }),
            wake: Mutex::new(None),
            wakes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            wake_requested: tokio::sync::Notify::new(),
            bytes: AtomicUsize::new(0),
            max_bytes,
            peak_bytes: AtomicUsize::new(0),
        }
    }

    /// Events and message bytes waiting for JS right now.
    pub fn depth(&self) -> (usize, usize) {
        let events = self.queue.lock().map(|q| q.events.len()).unwrap_or(0);
        (events, self.bytes.load(Ordering::Acquire))
    }

    /// Whether JS is so far behind that connections should stop reading for now.
    pub fn congested(&self) -> bool {
        self.bytes.load(Ordering::Acquire) >= self.max_bytes
    }
}

impl EventQueue {
    /// Installs the JS wake-up callback (on `listen`).
    pub fn set_wake(&self, wake: WakeFn) {
        if let Ok(mut w) = self.wake.lock() {
            *w = Some(wake);
        }
        self.closed.store(false, Ordering::Release);
    }

    /// Drops the wake-up callback so the addon no longer holds the event loop open.
    pub fn clear_wake(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_requested.notify_one();
        let taken = self.wake.lock().ok().and_then(|mut w| w.take());
        drop(taken);
    }

    /// Queues an event and wakes JS unless a wake-up is already pending. (Text messages go
    /// through `push_text`.)
    pub fn push(&self, event: Event) {
        let size = event.message_bytes();
        let Ok(mut q) = self.queue.lock() else { return };
        self.count_bytes(size);
        q.events.push_back(event);
        self.schedule(q);
    }

    /// Queues a text message (valid UTF-8), copying it into the current text chunk. `ascii`:
    /// the caller knows it is all ASCII (false: not known, it is checked here).
    pub fn push_text(&self, conn: u32, data: &[u8], ascii: bool) {
        let (units, ascii) = if ascii { (data.len(), true) } else { utf16_len(data) };
        let Ok(mut q) = self.queue.lock() else { return };
        self.count_bytes(data.len());
        q.push_text(conn, data, units, ascii);
        self.schedule(q);
    }

    /// Queues a binary message, copying it into the current chunk.
    pub fn push_binary(&self, conn: u32, data: &[u8]) {
        let Ok(mut q) = self.queue.lock() else { return };
        self.count_bytes(data.len());
        q.push_binary(conn, data);
        self.schedule(q);
    }

    fn count_bytes(&self, size: usize) {
        if size > 0 {
            let now = self.bytes.fetch_add(size, Ordering::AcqRel) + size;
            self.peak_bytes.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Asks for a JS wake-up unless one is pending (takes the queue lock to release it first).
    fn schedule(&self, mut q: std::sync::MutexGuard<'_, Pending>) {
        if q.scheduled {
            return;
        }
        q.scheduled = true;
        drop(q);
        self.wake_requested.notify_one();
    }

    /// Calls into JS once per wake request, after letting every connection task that is ready
    /// in this turn push its events first: one JS wake-up then carries all of them.
    pub async fn wake_loop(&self) {
        loop {
            self.wake_requested.notified().await;
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            tokio::task::yield_now().await;
            let n = self.queue.lock().map(|q| q.events.len()).unwrap_or(0);
            if let Ok(w) = self.wake.lock() {
                if let Some(f) = w.as_ref() {
                    self.wakes.fetch_add(1, Ordering::Relaxed);
                    f.call(n as u32, ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        }
    }

    /// Takes the events of one batch (see `Pending::take`). An empty result ends the wake-up:
    /// the next push wakes JS again.
    pub fn take(&self) -> Taken {
        let Ok(mut q) = self.queue.lock() else {
            return Taken { events: Vec::new(), chunk: None };
        };
        let (taken, bytes) = q.take();
        if taken.events.is_empty() {
            q.scheduled = false;
        }
        // Under the queue lock, so a concurrent push cannot be subtracted before it is counted.
        // Pushes add under the same lock, so the count never goes below zero.
        self.bytes.fetch_sub(bytes, Ordering::AcqRel);
        taken
    }

    /// A batch with no events.
    pub fn empty_batch() -> Batch {
        Batch { header: Uint32Array::new(Vec::new()), text: BatchText::with_capacity(0), binary: None }
    }

    /// Encodes events into the compact batch JS decodes.
    pub fn encode(&self, taken: Taken) -> Batch {
        let Taken { events, chunk } = taken;
        let mut header: Vec<u32> = Vec::with_capacity(events.len() * STRIDE);
        // The text chunk is the start of the batch's text; the other events' strings follow it.
        let other_len: usize = events
            .iter()
            .map(|e| match e {
                Event::Connect { info, .. } => info.len(),
                Event::Close { reason, .. } => reason.len(),
                Event::JoinRequest { room, .. } | Event::Leave { room, .. } => room.len(),
                Event::Upgrade { info, .. } => info.len(),
                Event::Control { hex, .. } => hex.len(),
                _ => 0,
            })
            .sum();
        let (mut text, mut text16, binary) = match chunk {
            Some(c) => {
                let mut bytes = c.bytes;
                bytes.reserve(other_len);
                (BatchText { bytes, ascii: c.ascii }, c.units, c.binary)
            }
            None => (BatchText::with_capacity(other_len), 0, Vec::new()),
        };
        let mut push_text = |text: &mut BatchText, s: &[u8]| -> (u32, u32) {
            let start = text16;
            text16 += text.push(s);
            (start as u32, text16 as u32)
        };
        if !events.is_empty() {
            self.batches.fetch_add(1, Ordering::Relaxed);
            self.delivered.fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        for event in events {
            let slot = match event {
                Event::Connect { conn, info } => {
                    let (a, b) = push_text(&mut text, info.as_bytes());
                    [EventKind::Connect as u32, conn, a, b, 0]
                }
                Event::Text { conn, start, end, .. } => [EventKind::Text as u32, conn, start, end, 0],
                Event::Binary { conn, start, end } => [EventKind::Binary as u32, conn, start, end, 0],
                Event::Close { conn, code, reason } => {
                    let (a, b) = push_text(&mut text, reason.as_bytes());
                    [EventKind::Close as u32, conn, a, b, u32::from(code)]
                }
                Event::Drain { conn } => [EventKind::Drain as u32, conn, 0, 0, 0],
                Event::JoinRequest { conn, request, room } => {
                    let (a, b) = push_text(&mut text, room.as_bytes());
                    [EventKind::JoinRequest as u32, conn, a, b, request]
                }
                Event::Leave { conn, room } => {
                    let (a, b) = push_text(&mut text, room.as_bytes());
                    [EventKind::Leave as u32, conn, a, b, 0]
                }
                Event::Upgrade { request, info } => {
                    let (a, b) = push_text(&mut text, info.as_bytes());
                    [EventKind::Upgrade as u32, 0, a, b, request]
                }
                Event::UpgradeFailed { request } => [EventKind::UpgradeFailed as u32, 0, 0, 0, request],
                Event::Control { conn, pong, hex } => {
                    let (a, b) = push_text(&mut text, hex.as_bytes());
                    [if pong { EventKind::Pong } else { EventKind::Ping } as u32, conn, a, b, 0]
                }
            };
            header.extend_from_slice(&slot);
        }
        Batch {
            header: Uint32Array::new(header),
            text,
            binary: if binary.is_empty() { None } else { Some(binary.into()) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hex, utf16_len, BatchText, Event, Pending, MAX_BATCH, MAX_BATCH_BYTES, MAX_RUN_BYTES};

    #[test]
    fn control_payloads_travel_as_lower_case_hex() {
        assert_eq!(hex(b""), "");
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[0xab; 125]).len(), 250);
    }

    fn pending() -> Pending {
        Pending { events: Default::default(), chunks: Default::default(), scheduled: false }
    }

    fn push(q: &mut Pending, conn: u32, data: &[u8]) {
        let (units, ascii) = utf16_len(data);
        q.push_text(conn, data, units, ascii);
    }

    /// (conn, start, end) of each text event; None for the others.
    fn texts(events: &[Event]) -> Vec<Option<(u32, u32, u32)>> {
        events
            .iter()
            .map(|e| match e {
                Event::Text { conn, start, end, .. } => Some((*conn, *start, *end)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_batch_takes_exactly_one_text_chunk() {
        let mut q = pending();
        let big = vec![b'a'; 40 * 1024];
        q.events.push_back(Event::Connect { conn: 1, info: "{}".into() });
        for _ in 0..2 {
            push(&mut q, 2, &big);
        }
        push(&mut q, 5, &big);
        push(&mut q, 3, "é😀".as_bytes());
        q.events.push_back(Event::Drain { conn: 4 });

        // The third 40 KiB message, from another connection, would pass MAX_BATCH_BYTES: it
        // starts the next chunk.
        let (first, bytes) = q.take();
        assert_eq!(bytes, 2 * big.len());
        assert_eq!(texts(&first.events), vec![None, Some((2, 0, 40_960)), Some((2, 40_960, 81_920))]);
        let chunk = first.chunk.as_ref().map(|c| (c.bytes.len(), c.units, c.ascii, c.messages));
        assert_eq!(chunk, Some((2 * big.len(), 81_920, true, 2)));

        let (second, bytes) = q.take();
        assert_eq!(bytes, big.len() + 6);
        assert_eq!(texts(&second.events), vec![Some((5, 0, 40_960)), Some((3, 40_960, 40_963)), None]);
        let chunk = second.chunk.as_ref().map(|c| (c.bytes.len(), c.ascii));
        assert_eq!(chunk, Some((big.len() + 6, false)));
        assert!(2 * big.len() < MAX_BATCH_BYTES && 3 * big.len() > MAX_BATCH_BYTES);

        let (last, bytes) = q.take();
        assert!(last.is_empty() && last.chunk.is_none() && bytes == 0);
    }

    #[test]
    fn one_connections_run_stays_in_its_chunk_up_to_max_run_bytes() {
        let mut q = pending();
        let big = vec![b'a'; 39 * 1024];
        push(&mut q, 1, b"x");
        for _ in 0..4 {
            push(&mut q, 2, &big);
        }
        // Connection 2 went on past MAX_BATCH_BYTES (its replies then leave in one write), and
        // its fourth message would pass MAX_RUN_BYTES.
        assert!(1 + 2 * big.len() < MAX_BATCH_BYTES && 1 + 3 * big.len() > MAX_BATCH_BYTES);
        assert!(3 * big.len() < MAX_RUN_BYTES && 4 * big.len() > MAX_RUN_BYTES);
        let (first, bytes) = q.take();
        assert_eq!(bytes, 1 + 3 * big.len());
        assert_eq!(first.events.len(), 4);
        let (second, bytes) = q.take();
        assert_eq!(bytes, big.len());
        assert_eq!(texts(&second.events), vec![Some((2, 0, 39_936))]);
    }

    #[test]
    fn text_and_binary_messages_share_chunks() {
        let mut q = pending();
        push(&mut q, 1, b"hi");
        q.push_binary(1, &[1, 2, 3]);
        q.events.push_back(Event::Drain { conn: 1 });
        q.push_binary(2, &vec![9; 96 * 1024]);
        let (first, bytes) = q.take();
        assert_eq!(bytes, 5);
        let kinds: Vec<(u32, u32, u32)> = first
            .events
            .iter()
            .map(|e| match e {
                Event::Text { start, end, .. } => (1, *start, *end),
                Event::Binary { start, end, .. } => (2, *start, *end),
                _ => (0, 0, 0),
            })
            .collect();
        assert_eq!(kinds, vec![(1, 0, 2), (2, 0, 3), (0, 0, 0)]);
        let chunk = first.chunk.as_ref().map(|c| (c.bytes.clone(), c.binary.clone(), c.messages));
        assert_eq!(chunk, Some((b"hi".to_vec(), vec![1, 2, 3], 2)));
        let (second, bytes) = q.take();
        assert_eq!(bytes, 96 * 1024);
        assert!(matches!(second.events[..], [Event::Binary { conn: 2, start: 0, end: 98_304 }]));
        assert_eq!(second.chunk.map(|c| c.binary.len()), Some(96 * 1024));
    }

    #[test]
    fn a_chunk_holds_at_most_max_batch_messages() {
        let mut q = pending();
        for i in 0..=MAX_BATCH as u32 {
            push(&mut q, i, b"x");
        }
        let (first, _) = q.take();
        assert_eq!(first.events.len(), MAX_BATCH);
        assert_eq!(first.chunk.as_ref().map(|c| c.messages), Some(MAX_BATCH));
        let (second, _) = q.take();
        assert_eq!(texts(&second.events), vec![Some((MAX_BATCH as u32, 0, 1))]);
        assert!(q.take().0.is_empty());
    }

    #[test]
    fn utf16_offsets_and_ascii_flag() {
        let mut text = BatchText::with_capacity(0);
        assert_eq!(text.push(b"hello"), 5);
        assert!(text.ascii);
        for s in ["é", "日本", "a😀b", "\u{10FFFF}", "mixed ascii é 😀"] {
            assert_eq!(text.push(s.as_bytes()), s.encode_utf16().count(), "{s}");
        }
        assert!(!text.ascii);
    }
}
