//! One WebSocket connection: its handle (shared with JS calls and rooms), its reader and writer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant as TokioInstant};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::engine::Engine;
use crate::events::Event;

/// What the writer task is asked to do, in order.
pub enum Outbound {
    /// A frame to write.
    Message(Message),
    /// Send a close frame, then wait (bounded) for the peer's answer.
    Close { code: u16, reason: String },
    /// The reader is done: flush, shut the socket down and end.
    Stop,
}

/// Result of queueing a message, as JS sees it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u32)]
pub enum SendStatus {
    /// Queued for writing; the buffer is under the limit.
    Sent = 0,
    /// Queued, but the buffer is over half its limit: slow down and wait for `onDrain`.
    Buffered = 1,
    /// Not queued: the connection is closing or the buffer was full.
    Dropped = 2,
}

/// Everything the rest of the engine may know about one live connection.
pub struct Conn {
    /// Internal numeric id used across the JS boundary.
    pub id: u32,
    /// Validated `clientId` query parameter or a generated one.
    pub client_id: String,
    tx: mpsc::UnboundedSender<Outbound>,
    /// Bytes accepted by `send` and not yet written to the socket.
    pub buffered: AtomicUsize,
    /// Set when the buffer crossed its high-water mark; an `onDrain` follows when it empties.
    wants_drain: AtomicBool,
    closing: AtomicBool,
    kill: Notify,
    /// Which JS hooks the connection's path registered (`engine::hooks` bits).
    pub hooks: u32,
    /// Rooms this connection is in.
    pub rooms: Mutex<HashSet<String>>,
    /// `setMetadata` values, as JSON text.
    pub metadata: Mutex<HashMap<String, String>>,
    /// When the last frame of any kind arrived from the peer.
    pub last_seen: Mutex<Instant>,
    /// When the last built-in `ping` message arrived.
    pub last_ping: Mutex<Instant>,
}

fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 0,
    }
}

impl Conn {
    /// Queues a message; never blocks. Applies the backpressure limit.
    pub fn send(&self, engine: &Engine, msg: Message) -> SendStatus {
        if self.closing.load(Ordering::Acquire) {
            return SendStatus::Dropped;
        }
        let len = message_len(&msg);
        let limit = engine.config.max_backpressure;
        let before = self.buffered.load(Ordering::Acquire);
        if before + len > limit && before > 0 {
            if engine.config.drop_on_backpressure {
                engine.stats.dropped.fetch_add(1, Ordering::Relaxed);
            } else {
                self.close(1008, "send buffer limit exceeded");
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

    /// Starts the close handshake; later sends are dropped. Idempotent.
    pub fn close(&self, code: u16, reason: &str) {
        if !self.closing.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Outbound::Close {
                code,
                reason: reason.to_string(),
            });
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
pub async fn run(engine: Arc<Engine>, info: ConnInfo, ws: WebSocketStream<TcpStream>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let id = engine.next_conn_id();
    let hooks = engine.route_hooks(&info.path);
    let conn = Arc::new(Conn {
        id,
        client_id: info.client_id,
        tx,
        buffered: AtomicUsize::new(0),
        wants_drain: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        kill: Notify::new(),
        hooks,
        rooms: Mutex::new(HashSet::new()),
        metadata: Mutex::new(HashMap::new()),
        last_seen: Mutex::new(Instant::now()),
        last_ping: Mutex::new(Instant::now()),
    });
    engine.conns.insert(id, conn.clone());
    engine.events.push(Event::Connect {
        conn: id,
        info: info.info_json,
    });
    if engine.is_shutting_down() {
        conn.close(1001, "Server shutting down");
    }

    let (sink, mut stream) = ws.split();
    let writer = tokio::spawn(write_loop(engine.clone(), conn.clone(), sink, rx));

    let mut peer_close: Option<(u16, String)> = None;
    let mut local_close: Option<(u16, String)> = None;
    let ping_every = engine.config.ping_interval;
    let idle = engine.config.idle_timeout;
    let mut next_ping = TokioInstant::now() + ping_every;
    loop {
        tokio::select! {
            item = stream.next() => match item {
                Some(Ok(msg)) => {
                    if let Ok(mut seen) = conn.last_seen.lock() {
                        *seen = Instant::now();
                    }
                    match msg {
                        Message::Text(data) => {
                            engine.stats.count_in(data.len());
                            engine.on_text(&conn, data);
                        }
                        Message::Binary(data) => {
                            engine.stats.count_in(data.len());
                            if conn.hooks & crate::engine::hooks::MESSAGE != 0 {
                                engine.events.push(Event::Binary { conn: id, data });
                            }
                        }
                        Message::Close(frame) => {
                            peer_close = Some(match frame {
                                Some(f) => (u16::from(f.code), f.reason.to_string()),
                                None => (1005, String::new()),
                            });
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Some(Err(err)) => {
                    if let Some((code, reason)) = close_code_for(&err) {
                        local_close = Some((code, reason.to_string()));
                        conn.closing.store(true, Ordering::Release);
                        let _ = conn.tx.send(Outbound::Close { code, reason: reason.to_string() });
                    }
                    break;
                }
                None => break,
            },
            _ = conn.kill.notified() => break,
            _ = sleep_until(next_ping) => {
                let silent = conn.last_seen.lock().map(|s| s.elapsed()).unwrap_or_default();
                if silent >= idle {
                    local_close = Some((1006, "Idle timeout".to_string()));
                    break;
                }
                let _ = conn.tx.send(Outbound::Message(Message::Ping(Default::default())));
                next_ping = TokioInstant::now() + ping_every;
            }
        }
    }

    // No new sends or broadcasts reach it from here on.
    conn.closing.store(true, Ordering::Release);
    engine.unregister(&conn);
    // Give the writer a bounded time to flush a pending close frame, then stop it.
    drop(stream);
    let _ = conn.tx.send(Outbound::Stop);
    let mut writer = writer;
    if tokio::time::timeout(engine.config.close_timeout, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    let (code, reason) = peer_close.or(local_close).unwrap_or((1006, String::new()));
    engine.events.push(Event::Close {
        conn: id,
        code,
        reason,
    });
}

/// Most bytes or frames written before a flush, so `bufferedAmount` keeps moving under load.
const FLUSH_BYTES: usize = 64 * 1024;
const FLUSH_FRAMES: usize = 1024;

async fn write_loop(
    engine: Arc<Engine>,
    conn: Arc<Conn>,
    mut sink: futures_util::stream::SplitSink<WebSocketStream<TcpStream>, Message>,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
) {
    let mut close_deadline: Option<TokioInstant> = None;
    loop {
        let first = tokio::select! {
            next = rx.recv() => match next {
                Some(item) => item,
                None => break,
            },
            _ = async { sleep_until(close_deadline.unwrap_or_else(TokioInstant::now)).await }, if close_deadline.is_some() => {
                // The peer never answered our close frame.
                conn.kill.notify_one();
                break;
            }
        };
        let mut bytes = 0usize;
        let mut frames = 0usize;
        let mut stop = false;
        let mut item = Some(first);
        while let Some(out) = item.take() {
            match out {
                Outbound::Message(msg) => {
                    bytes += message_len(&msg);
                    if close_deadline.is_none() && sink.feed(msg).await.is_err() {
                        stop = true;
                    }
                }
                Outbound::Close { code, reason } => {
                    if close_deadline.is_none() {
                        let frame = CloseFrame {
                            code: CloseCode::from(code),
                            reason: Utf8Bytes::from(reason),
                        };
                        stop = sink.feed(Message::Close(Some(frame))).await.is_err();
                        close_deadline = Some(TokioInstant::now() + engine.config.close_timeout);
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
            let _ = sink.close().await;
            conn.kill.notify_one();
            break;
        }
    }
}
