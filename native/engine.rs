//! The shared state of one server: routes, live connections, the event queue and counters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::config::Config;
use crate::connection::Conn;
use crate::events::{Event, EventQueue};

/// Message and byte counters, read by `getStats()`.
#[derive(Default)]
pub struct Stats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped: AtomicU64,
    pub connections_accepted: AtomicU64,
}

impl Stats {
    pub fn count_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn count_out(&self, bytes: usize) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

/// One server's state, shared by the accept loop, every connection task and the JS-facing methods.
pub struct Engine {
    pub config: Config,
    /// Framing limits handed to tungstenite for every connection.
    pub ws_config: WebSocketConfig,
    routes: RwLock<HashMap<String, u32>>,
    /// Live connections by internal id.
    pub conns: DashMap<u32, Arc<Conn>>,
    next_id: AtomicU32,
    pub events: EventQueue,
    pub stats: Stats,
    shutting_down: AtomicBool,
    /// Woken when the accept loop must stop.
    pub stop_accepting: Notify,
    /// Woken each time a connection is unregistered (used by shutdown to wait).
    pub conn_gone: Notify,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(64 * 1024)
            .max_write_buffer_size(usize::MAX)
            .max_message_size(Some(config.max_payload))
            .max_frame_size(Some(config.max_payload));
        Engine {
            config,
            ws_config,
            routes: RwLock::new(HashMap::new()),
            conns: DashMap::new(),
            next_id: AtomicU32::new(1),
            events: EventQueue::default(),
            stats: Stats::default(),
            shutting_down: AtomicBool::new(false),
            stop_accepting: Notify::new(),
            conn_gone: Notify::new(),
        }
    }

    /// Registers a WebSocket path.
    pub fn add_route(&self, path: &str) {
        if let Ok(mut routes) = self.routes.write() {
            let next = routes.len() as u32;
            routes.entry(path.to_string()).or_insert(next);
        }
    }

    /// Whether a path has handlers.
    pub fn has_route(&self, path: &str) -> bool {
        self.routes.read().map(|r| r.contains_key(path)).unwrap_or(false)
    }

    pub fn next_conn_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// A text frame arrived: the built-in protocol or the application.
    pub fn on_text(&self, conn: &Arc<Conn>, data: Utf8Bytes) {
        self.events.push(Event::Text { conn: conn.id, data });
    }

    /// Removes a connection from every registry; after this nothing can reach it.
    pub fn unregister(&self, conn: &Arc<Conn>) {
        self.conns.remove(&conn.id);
        self.conn_gone.notify_waiters();
    }

    /// Stops accepting and asks every connection to close with 1001.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.stop_accepting.notify_waiters();
        self.stop_accepting.notify_one();
        for entry in self.conns.iter() {
            entry.value().close(1001, "Server shutting down");
        }
    }
}
