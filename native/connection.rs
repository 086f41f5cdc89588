//! One WebSocket connection: its handle (shared with JS calls and rooms), its reader and writer.
//!
//! The reader task owns every timer of the connection: server pings, the idle timeout and the
//! close-handshake deadline. The writer task only drains the outbound queue, many frames per
//! flush, so a peer that stops reading stalls its own writer and nothing else.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::engine::{hooks, Admission, Engine};
use crate::events::Event;

/// How often a connection paused by a full event queue looks again.
const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(2);

/// Ping frames a peer may send per second before it is closed with 1008.
pub const MAX_PINGS_PER_SECOND: u32 = 100;

/// What the writer task is asked to do, in order.
pub enum Outbound {
    /// A frame to write.
    Message(Message),
    /// Send a close frame; later messages are dropped.
    Close { code: u16, reason: String },
    /// The reader is done: flush, shut the socket down and end.
    Stop,
}

/// Result of queueing a message, as JS sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum SendStatus {
    /// Queued for writing; the buffer is under half its limit.
    Sent = 0,
    /// Queued, but the buffer is over half its limit: slow down and wait for `onDrain`.
    Buffered = 1,
    /// Not queued: the connection is closing or the buffer was full.
    Dropped = 2,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Everything the rest of the engine may know about one live connection.
pub struct Conn {
    /// Internal numeric id used across the JS boundary.
    pub id: u32,
    /// Public UUID (`socket.id`), also how other cluster nodes name this connection.
    pub uuid: [u8; 16],
    /// Validated `clientId` query parameter or a generated one.
    pub client_id: String,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Bytes accepted by `send` and not yet written to the socket.
    pub buffered: AtomicUsize,
    /// Set when the buffer crossed its high-water mark; an `onDrain` follows when it empties.
    wants_drain: AtomicBool,
    closing: AtomicBool,
    /// The close we asked for (code, reason), reported when the peer never answers.
    requested_close: Mutex<Option<(u16, String)>>,
    close_requested: Notify,
    kill: Notify,
    /// Which JS hooks the connection's path registered (`engine::hooks` bits).
    pub hooks: u32,
    /// Rooms this connection is in.
    pub rooms: Mutex<HashSet<String>>,
    /// `setMetadata` values, as JSON text.
    pub metadata: Mutex<HashMap<String, String>>,
    /// Epoch ms of the last client heartbeat: a ping frame or a built-in `ping` message.
    pub last_ping: AtomicU64,
    /// Epoch ms of the last pong frame from the client.
    pub last_pong: AtomicU64,
}

fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

impl Conn {
    /// Queues a message; never blocks. Applies the backpressure limit and policy.
    pub fn send(&self, engine: &Engine, msg: Message) -> SendStatus {
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        let len = message_len(&msg);
        let limit = engine.config.max_backpressure;
        let before = self.buffered.load(Ordering::Acquire);
        // A single message larger than the limit may still go out through an empty buffer.
        if before + len > limit && before > 0 {
            engine.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if !engine.config.drop_on_backpressure {
                self.close(1008, "Send buffer limit exceeded");
            }
            return SendStatus::Dropped;
        }
        let after = self.buffered.fetch_add(len, Ordering::AcqRel) + len;
        if self.tx.send(Outbound::Message(msg)).is_err() {
            self.buffered.fetch_sub(len, Ordering::AcqRel);
            return SendStatus::Dropped;
        }
        engine.stats.count_out(len);
        if after * 2 > limit {
            self.wants_drain.store(true, Ordering::Release);
            SendStatus::Buffered
        } else {
            SendStatus::Sent
        }
    }

    /// Starts the close handshake after what is already queued; later sends are dropped.
    /// The peer gets `close_timeout` to answer. Idempotent.
    pub fn close(&self, code: u16, reason: &str) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            if let Ok(mut r) = self.requested_close.lock() {
                *r = Some((code, reason.to_string()));
            }
            let _ = self.tx.send(Outbound::Close { code, reason: reason.to_string() });
            self.close_requested.notify_one();
        }
    }

    /// Drops the connection without waiting for a close handshake.
    pub fn abort(&self) {
        self.closing.store(true, Ordering::Release);
        self.kill.notify_one();
    }

    /// Whether `close` was called or the connection is going away.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
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

/// Maps a read error to the close code we answer with (None: the transport is gone).
fn close_code_for(err: &WsError) -> Option<(u16, &'static str)> {
    match err {
        WsError::Capacity(_) => Some((1009, "Message too big")),
        WsError::Utf8(_) => Some((1007, "Invalid UTF-8")),
        // EOF without a close frame: the transport is simply gone (1006).
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some((1002, "Protocol error")),
        _ => None,
    }
}

/// Runs a connection to completion: registers it, pumps frames, unregisters it, reports close.
/// `admission` holds the connection's place in the connection limits until it ends.
pub async fn run(engine: Arc<Engine>, info: ConnInfo, ws: WebSocketStream<TcpStream>, admission: Admission) {
    let (tx, rx) = mpsc::unbounded_channel();
    let id = engine.next_conn_id();
    let now = now_ms();
    let conn = Arc::new(Conn {
        id,
        uuid: info.uuid,
        client_id: info.client_id,
        tx,
        buffered: AtomicUsize::new(0),
        wants_drain: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        requested_close: Mutex::new(None),
        close_requested: Notify::new(),
        kill: Notify::new(),
        hooks: engine.route_hooks(&info.path),
        rooms: Mutex::new(HashSet::new()),
        metadata: Mutex::new(HashMap::new()),
        last_ping: AtomicU64::new(now),
        last_pong: AtomicU64::new(now),
    });
    engine.live_tasks.fetch_add(1, Ordering::AcqRel);
    engine.conns.insert(id, conn.clone());
    engine.events.push(Event::Connect { conn: id, info: info.info_json });
    if engine.is_shutting_down() {
        conn.close(1001, "Server shutting down");
    }

    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(engine.clone(), conn.clone(), sink, rx));

    let config = &engine.config;
    let mut peer_close: Option<(u16, String)> = None;
    let mut local_close: Option<(u16, String)> = None;
    let mut last_seen = Instant::now();
    let mut next_ping = last_seen + config.ping_interval;
    let mut close_deadline: Option<Instant> = None;
    let mut ping_window = (Instant::now(), 0u32);
    // One timer and two notifications for the connection's whole life: creating them per frame
    // would register and deregister a timer and two waiters for every message.
    let timer = sleep_until(next_ping.min(last_seen + config.idle_timeout));
    let kill = conn.kill.notified();
    let close_requested = conn.close_requested.notified();
    tokio::pin!(timer, kill, close_requested);
    loop {
        // JS is far behind: stop reading (TCP then slows the client down) and look again shortly.
        let paused = engine.events.congested();
        tokio::select! {
            // Time spent paused for JS is not the peer's silence.
            _ = async { tokio::time::sleep(PAUSE_RECHECK).await }, if paused => last_seen = Instant::now(),
            item = stream.next(), if !paused => match item {
                Some(Ok(msg)) => {
                    last_seen = Instant::now();
                    match msg {
                        Message::Text(data) => {
                            engine.stats.count_in(data.len());
                            engine.on_text(&conn, data);
                        }
                        Message::Binary(data) => {
                            engine.stats.count_in(data.len());
                            if conn.hooks & hooks::MESSAGE != 0 {
                                engine.events.push(Event::Binary { conn: id, data });
                            }
                        }
                        Message::Ping(_) => {
                            conn.last_ping.store(now_ms(), Ordering::Relaxed);
                            if ping_window.0.elapsed().as_secs() >= 1 {
                                ping_window = (Instant::now(), 0);
                            }
                            ping_window.1 += 1;
                            if ping_window.1 > MAX_PINGS_PER_SECOND {
                                local_close = Some((1008, "Ping flood".to_string()));
                                conn.close(1008, "Ping flood");
                            }
                        }
                        Message::Pong(_) => conn.last_pong.store(now_ms(), Ordering::Relaxed),
                        Message::Close(frame) => {
                            peer_close = Some(match frame {
                                Some(f) => (u16::from(f.code), f.reason.to_string()),
                                None => (1005, String::new()),
                            });
                        }
                        Message::Frame(_) => {}
                    }
                }
                Some(Err(err)) => {
                    if let Some((code, reason)) = close_code_for(&err) {
                        local_close = Some((code, reason.to_string()));
                        conn.close(code, reason);
                    }
                    break;
                }
                None => break,
            },
            _ = &mut kill => break,
            _ = &mut close_requested, if close_deadline.is_none() => {
                let deadline = Instant::now() + config.close_timeout;
                close_deadline = Some(deadline);
                if deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
            }
            _ = &mut timer => {
                let now = Instant::now();
                if close_deadline.is_some_and(|d| now >= d) {
                    // The peer never answered our close frame.
                    break;
                }
                let idle_deadline = last_seen + config.idle_timeout;
                if now >= idle_deadline {
                    local_close = Some((1006, "Idle timeout".to_string()));
                    break;
                }
                if now >= next_ping {
                    let _ = conn.tx.send(Outbound::Message(Message::Ping(Default::default())));
                    next_ping = now + config.ping_interval;
                }
                let next = next_ping.min(idle_deadline).min(close_deadline.unwrap_or(idle_deadline));
                timer.as_mut().reset(next);
            }
        }
    }

    // No new sends, broadcasts or joins reach it from here on.
    conn.closing.store(true, Ordering::Release);
    engine.unregister(&conn);
    drop(admission);
    drop(stream);
    let _ = conn.tx.send(Outbound::Stop);
    // Give the writer a bounded time to flush a pending close frame, then stop it.
    let mut writer = writer;
    if tokio::time::timeout(config.close_timeout, &mut writer).await.is_err() {
        writer.abort();
    }
    let requested = conn.requested_close.lock().ok().and_then(|r| r.clone());
    let (code, reason) = peer_close.or(local_close).or(requested).unwrap_or((1006, String::new()));
    engine.events.push(Event::Close { conn: id, code, reason });
    engine.live_tasks.fetch_sub(1, Ordering::AcqRel);
    engine.conn_gone.notify_waiters();
}

/// Most bytes or frames written before a flush, so `bufferedAmount` keeps moving under load.
const FLUSH_BYTES: usize = 64 * 1024;
const FLUSH_FRAMES: usize = 1024;

async fn write_loop(
    engine: Arc<Engine>,
    conn: Arc<Conn>,
    mut sink: SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) {
    let mut close_sent = false;
    while let Some(first) = rx.recv().await {
        let mut bytes = 0usize;
        let mut frames = 0usize;
        let mut stop = false;
        let mut item = Some(first);
        while let Some(out) = item.take() {
            match out {
                Outbound::Message(msg) => {
                    bytes += message_len(&msg);
                    if !close_sent && sink.feed(msg).await.is_err() {
                        stop = true;
                    }
                }
                Outbound::Close { code, reason } => {
                    if !close_sent {
                        let frame =
                            CloseFrame { code: CloseCode::from(code), reason: Utf8Bytes::from(reason) };
                        stop = sink.feed(Message::Close(Some(frame))).await.is_err();
                        close_sent = true;
                    }
                }
                Outbound::Stop => stop = true,
            }
            frames += 1;
            if stop || bytes >= FLUSH_BYTES || frames >= FLUSH_FRAMES {
                break;
            }
            item = rx.try_recv().ok();
        }
        let flushed = sink.flush().await.is_ok();
        let left = conn.buffered.fetch_sub(bytes, Ordering::AcqRel) - bytes;
        if left == 0 && conn.wants_drain.swap(false, Ordering::AcqRel) && !conn.is_closing() {
            engine.events.push(Event::Drain { conn: conn.id });
        }
        if stop || !flushed {
            // Everything queued is flushed; dropping both halves closes the TCP connection.
            // (No `sink.close()`: after a finished close handshake it can wait for nothing.)
            conn.kill.notify_one();
            break;
        }
    }
}
