//! Batched delivery of engine events to JavaScript.
//!
//! Producers (connection tasks) push into one queue. The first push after a drain wakes JS
//! through a single ThreadsafeFunction call; JS then pulls everything queued with
//! `pollEvents()`, so one wake-up carries every event since the previous one.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use bytes::Bytes;
use napi::bindgen_prelude::{Buffer, Uint32Array};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

/// The JS wake-up callback: takes the number of queued events, never holds errors.
pub type WakeFn = ThreadsafeFunction<u32, (), u32, Status, false>;

/// Numeric event kinds as JS sees them in the batch header.
pub mod kind {
    pub const CONNECT: u32 = 0;
    pub const TEXT: u32 = 1;
    pub const BINARY: u32 = 2;
    pub const CLOSE: u32 = 3;
    pub const DRAIN: u32 = 4;
    pub const JOIN_REQUEST: u32 = 5;
    pub const LEAVE: u32 = 6;
    pub const UPGRADE: u32 = 7;
    pub const UPGRADE_FAILED: u32 = 8;
}

/// Most events one `pollEvents()` call returns.
pub const MAX_BATCH: usize = 4096;

/// Message bytes one `pollEvents()` call returns, unless a single message is larger.
pub const MAX_BATCH_BYTES: usize = 96 * 1024;

/// u32 slots per event in the batch header.
pub const STRIDE: usize = 5;

/// One thing that happened, addressed to a connection.
pub enum Event {
    /// A new connection; `info` is a JSON object with id, clientId, path, headers...
    Connect { conn: u32, info: String },
    /// A text message for `onMessage` (valid UTF-8: the frame decoder checked it).
    Text { conn: u32, data: Bytes },
    /// A binary message for `onMessage`.
    Binary { conn: u32, data: Bytes },
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
}

impl Event {
    /// Payload bytes of a message event (what `maxInboundQueue` counts); 0 for the others.
    fn message_bytes(&self) -> usize {
        match self {
            Event::Text { data, .. } => data.len(),
            Event::Binary { data, .. } => data.len(),
            _ => 0,
        }
    }
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

thread_local! {
    /// The text buffer of the last batch, kept for the next one: a large batch's buffer would
    /// otherwise be mapped and unmapped (page faults on every page) for every batch.
    static TEXT_POOL: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most capacity the pooled text buffer keeps.
const TEXT_POOL_KEEP: usize = 8 * 1024 * 1024;

/// Every text piece of a batch, as UTF-8 (each piece is valid UTF-8). Becomes one JS string:
/// from Latin-1 (a plain copy) when it is all ASCII, else decoded from UTF-8.
pub struct BatchText {
    bytes: Vec<u8>,
    ascii: bool,
}

impl BatchText {
    fn with_capacity(n: usize) -> Self {
        let mut bytes = TEXT_POOL.with_borrow_mut(std::mem::take);
        bytes.clear();
        bytes.reserve(n);
        BatchText { bytes, ascii: true }
    }

    /// Appends a piece; returns its length in UTF-16 code units, the unit JS offsets count.
    fn push(&mut self, piece: &[u8]) -> usize {
        self.bytes.extend_from_slice(piece);
        if piece.is_ascii() {
            return piece.len();
        }
        self.ascii = false;
        // Valid UTF-8: one unit per character (every byte that is not a continuation byte),
        // two for characters outside the BMP (4-byte sequences, lead byte 0xF0 and up).
        piece.iter().map(|&b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0)).sum()
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
        if val.bytes.capacity() <= TEXT_POOL_KEEP {
            TEXT_POOL.with_borrow_mut(|pool| *pool = val.bytes);
        }
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
    /// A wake-up is in flight: JS has not drained yet.
    scheduled: bool,
}

impl EventQueue {
    /// A queue that asks connections to stop reading past `max_bytes` of queued messages.
    pub fn new(max_bytes: usize) -> Self {
        EventQueue {
            queue: Mutex::new(Pending { events: std::collections::VecDeque::new(), scheduled: false }),
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

    /// Queues an event and wakes JS unless a wake-up is already pending.
    pub fn push(&self, event: Event) {
        let size = event.message_bytes();
        {
            let Ok(mut q) = self.queue.lock() else { return };
            if size > 0 {
                let now = self.bytes.fetch_add(size, Ordering::AcqRel) + size;
                self.peak_bytes.fetch_max(now, Ordering::Relaxed);
            }
            q.events.push_back(event);
            if q.scheduled {
                return;
            }
            q.scheduled = true;
        }
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

    /// Takes up to `MAX_BATCH` queued events. An empty result ends the wake-up: the next push
    /// wakes JS again.
    pub fn take(&self) -> Vec<Event> {
        let Ok(mut q) = self.queue.lock() else {
            return Vec::new();
        };
        // At most MAX_BATCH events per call, so JS can yield to its event loop between calls,
        // and about MAX_BATCH_BYTES of messages: the batch's string then stays an ordinary young
        // V8 object instead of a large-object page mapped and unmapped for every batch.
        let mut n = 0;
        let mut taken = 0;
        for event in q.events.iter().take(MAX_BATCH) {
            if n > 0 && taken + event.message_bytes() > MAX_BATCH_BYTES {
                break;
            }
            taken += event.message_bytes();
            n += 1;
        }
        let events: Vec<Event> = q.events.drain(..n).collect();
        if events.is_empty() {
            q.scheduled = false;
        }
        // Under the queue lock, so a concurrent push cannot be subtracted before it is counted.
        // Pushes add under the same lock, so the count never goes below zero.
        self.bytes.fetch_sub(taken, Ordering::AcqRel);
        events
    }

    /// A batch with no events.
    pub fn empty_batch() -> Batch {
        Batch { header: Uint32Array::new(Vec::new()), text: BatchText::with_capacity(0), binary: None }
    }

    /// Encodes events into the compact batch JS decodes.
    pub fn encode(&self, events: Vec<Event>) -> Batch {
        let mut header: Vec<u32> = Vec::with_capacity(events.len() * STRIDE);
        // One allocation for the batch's text: growing it message by message reallocates and
        // frees large blocks, which showed up as malloc_consolidate in the echo profile.
        let text_len: usize = events
            .iter()
            .map(|e| match e {
                Event::Text { data, .. } => data.len(),
                Event::Connect { info, .. } => info.len(),
                Event::Close { reason, .. } => reason.len(),
                Event::JoinRequest { room, .. } | Event::Leave { room, .. } => room.len(),
                Event::Upgrade { info, .. } => info.len(),
                _ => 0,
            })
            .sum();
        let mut text = BatchText::with_capacity(text_len);
        let mut text16: usize = 0;
        let binary_len: usize =
            events.iter().map(|e| if let Event::Binary { data, .. } = e { data.len() } else { 0 }).sum();
        let mut binary: Vec<u8> = Vec::with_capacity(binary_len);
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
                    [kind::CONNECT, conn, a, b, 0]
                }
                Event::Text { conn, data } => {
                    let (a, b) = push_text(&mut text, &data);
                    [kind::TEXT, conn, a, b, 0]
                }
                Event::Binary { conn, data } => {
                    let a = binary.len() as u32;
                    binary.extend_from_slice(&data);
                    [kind::BINARY, conn, a, binary.len() as u32, 0]
                }
                Event::Close { conn, code, reason } => {
                    let (a, b) = push_text(&mut text, reason.as_bytes());
                    [kind::CLOSE, conn, a, b, u32::from(code)]
                }
                Event::Drain { conn } => [kind::DRAIN, conn, 0, 0, 0],
                Event::JoinRequest { conn, request, room } => {
                    let (a, b) = push_text(&mut text, room.as_bytes());
                    [kind::JOIN_REQUEST, conn, a, b, request]
                }
                Event::Leave { conn, room } => {
                    let (a, b) = push_text(&mut text, room.as_bytes());
                    [kind::LEAVE, conn, a, b, 0]
                }
                Event::Upgrade { request, info } => {
                    let (a, b) = push_text(&mut text, info.as_bytes());
                    [kind::UPGRADE, 0, a, b, request]
                }
                Event::UpgradeFailed { request } => [kind::UPGRADE_FAILED, 0, 0, 0, request],
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
    use super::BatchText;

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
