//! The shared state of one server: routes, live connections, the event queue and counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::MonoClock;
use crate::cluster::{Cluster, Envelope};
use crate::config::Config;
use crate::conn::{Conn, SendContext};
use crate::cork;
use crate::events::{Event, EventQueue};
use crate::fanout::{self, FanoutTarget, Skip};
use crate::outbox::{OutFrame, SendStatus};
use crate::protocol;
use crate::rooms::{JoinError, Rooms};

/// Hashes the u32 connection ids: they are sequential, so one multiply spreads them well and
/// costs far less than SipHash, which showed in the echo profile (two lookups per message).
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 ^ u64::from(n)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// A map keyed by connection id.
pub type IdMap<V> = DashMap<u32, V, std::hash::BuildHasherDefault<IdHasher>>;

/// Bits telling which JS hooks a path registered (`addRoute`); without one, its events never
/// cross into JS.
#[napi_derive::napi]
pub enum Hook {
    Message = 1,
    JoinRoom = 2,
    LeaveRoom = 4,
    /// `onUpgrade` (or a subprotocol selector) must see the request before the 101.
    Upgrade = 8,
}

/// The `Hook` bits as the masks the engine tests.
pub mod hooks {
    use super::Hook;
    pub const MESSAGE: u32 = Hook::Message as u32;
    pub const JOIN_ROOM: u32 = Hook::JoinRoom as u32;
    pub const LEAVE_ROOM: u32 = Hook::LeaveRoom as u32;
    pub const UPGRADE: u32 = Hook::Upgrade as u32;
}

/// The `onUpgrade` hook's answer.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Upgrade, optionally with the client id and subprotocol JS chose.
    Accept { client_id: Option<String>, protocol: Option<String> },
    /// Refuse with this HTTP status and body.
    Reject { status: u16, message: String },
}

/// A place in the connection limits (total and per IP), held from the upgrade check until the
/// connection ends; dropping it gives the place back.
pub struct Admission {
    engine: Arc<Engine>,
    ip: IpAddr,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.engine.admitted.fetch_sub(1, Ordering::AcqRel);
        let now_zero = match self.engine.per_ip.get_mut(&self.ip) {
            Some(mut n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if now_zero {
            self.engine.per_ip.remove_if(&self.ip, |_, n| *n == 0);
        }
    }
}

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionError {
    /// `maxConnections` reached: 503.
    ServerFull,
    /// `maxConnectionsPerIp` reached: 429.
    TooManyFromIp,
}

/// A client's `join_room` waiting for the `onJoinRoom` hook's decision.
struct PendingJoin {
    conn: Arc<Conn>,
    room: String,
    request_id: Option<serde_json::Value>,
}

/// Message and byte counters, read by `getStats()`.
#[derive(Default)]
pub struct Stats {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub dropped: AtomicU64,
}

impl Stats {
    pub fn count_in(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn count_out(&self, bytes: usize) {
        self.count_out_n(1, bytes);
    }
    /// `n` messages of `bytes` each, counted at once (a fan-out).
    pub fn count_out_n(&self, n: u32, bytes: usize) {
        if n > 0 {
            self.messages_out.fetch_add(u64::from(n), Ordering::Relaxed);
            self.bytes_out.fetch_add(u64::from(n) * bytes as u64, Ordering::Relaxed);
        }
    }
}

/// One server's state, shared by the accept loop, every connection task and the JS-facing methods.
pub struct Engine {
    pub config: Config,
    routes: RwLock<HashMap<String, u32>>,
    /// Live connections by internal id.
    pub conns: IdMap<Arc<Conn>>,
    /// Bumped each time a connection is added to or removed from `conns` (see `send_all`).
    pub conns_version: AtomicU64,
    /// Closed connections whose close JS has not processed yet: `onClose` can still read metadata.
    pub retired: IdMap<Arc<Conn>>,
    next_id: AtomicU32,
    /// The room registry.
    pub rooms: Rooms,
    pending_joins: DashMap<u32, PendingJoin>,
    next_request: AtomicU32,
    /// The Redis link when `cluster` is configured (set by `listen`).
    pub cluster: std::sync::OnceLock<Arc<Cluster>>,
    /// Upgrades waiting for the `onUpgrade` hook.
    pub pending_upgrades: DashMap<u32, tokio::sync::oneshot::Sender<Verdict>>,
    /// Connections admitted (upgrading or open), for `maxConnections`.
    admitted: AtomicUsize,
    /// Admitted connections per peer IP, for `maxConnectionsPerIp`.
    per_ip: DashMap<IpAddr, u32>,
    pub events: EventQueue,
    pub stats: Arc<Stats>,
    /// What sends need: the counters and the send-buffer policy.
    pub send: SendContext,
    shutting_down: AtomicBool,
    /// Woken when the accept loop must stop.
    pub stop_accepting: Notify,
    /// Connection tasks that have not reported their close yet (shutdown waits for zero).
    pub live_tasks: AtomicUsize,
    /// Woken each time a connection task ends (used by shutdown to wait).
    pub conn_gone: Notify,
    /// The monotonic clock of deadlines and rates (`mono_ms`).
    clock: MonoClock,
    /// The `tls` option's certificates and configuration: the port speaks TLS.
    pub tls: Option<Arc<crate::tls::TlsContext>>,
}

impl Engine {
    pub fn new(config: Config) -> Self {
        let rooms = Rooms::new(config.auto_create_rooms);
        let events = EventQueue::new(config.max_inbound_queue);
        let stats = Arc::<Stats>::default();
        let send = SendContext::new(&config, stats.clone());
        Engine {
            config,
            routes: RwLock::new(HashMap::new()),
            conns: IdMap::default(),
            conns_version: AtomicU64::new(0),
            retired: IdMap::default(),
            next_id: AtomicU32::new(1),
            rooms,
            pending_joins: DashMap::new(),
            next_request: AtomicU32::new(1),
            cluster: std::sync::OnceLock::new(),
            pending_upgrades: DashMap::new(),
            admitted: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            events,
            stats,
            send,
            shutting_down: AtomicBool::new(false),
            stop_accepting: Notify::new(),
            live_tasks: AtomicUsize::new(0),
            conn_gone: Notify::new(),
            clock: MonoClock::new(),
            tls: None,
        }
    }

    /// Milliseconds since the engine was created (monotonic): deadlines, idle times, rates.
    #[inline]
    pub fn mono_ms(&self) -> u64 {
        self.clock.mono_ms()
    }

    /// Enforces every connection's timers from one task: idle timeout, server pings and close
    /// deadlines. One pass over the connections per tick instead of a timer per connection, so
    /// a connection costs no timer registration and its task stays small. Ends with the engine.
    pub async fn ticker(engine: std::sync::Weak<Engine>) {
        let Some((tick, ping_ms, idle_ms, start)) = engine.upgrade().map(|e| {
            let c = &e.config;
            (c.tick(), c.ping_interval.as_millis() as u64, c.idle_timeout.as_millis() as u64, e.mono_ms())
        }) else {
            return;
        };
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first server ping goes out one interval after listening.
        let mut next_ping = start + ping_ms;
        loop {
            interval.tick().await;
            let Some(engine) = engine.upgrade() else { return };
            if engine.is_shutting_down() && engine.live_tasks.load(Ordering::Acquire) == 0 {
                return;
            }
            let now = engine.mono_ms();
            let ping = now >= next_ping;
            if ping {
                next_ping = now + ping_ms;
            }
            for entry in engine.conns.iter() {
                entry.value().tick(now, idle_ms, ping);
            }
        }
    }

    /// Registers (or re-registers) a WebSocket path with the hooks its handlers define.
    pub fn add_route(&self, path: &str, hooks: u32) {
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(path.to_string(), hooks);
        }
    }

    /// The hook bits of a path.
    pub fn route_hooks(&self, path: &str) -> u32 {
        self.routes.read().ok().and_then(|r| r.get(path).copied()).unwrap_or(0)
    }

    /// Whether a path has handlers.
    pub fn has_route(&self, path: &str) -> bool {
        self.routes.read().map(|r| r.contains_key(path)).unwrap_or(false)
    }

    /// Takes a place in the connection limits, or says which limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, AdmissionError> {
        if let Some(max) = self.config.max_connections {
            if self.admitted.fetch_add(1, Ordering::AcqRel) >= max {
                self.admitted.fetch_sub(1, Ordering::AcqRel);
                return Err(AdmissionError::ServerFull);
            }
        } else {
            self.admitted.fetch_add(1, Ordering::AcqRel);
        }
        let mut count = self.per_ip.entry(ip).or_insert(0);
        if self.config.max_connections_per_ip.is_some_and(|max| *count >= max) {
            drop(count);
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(AdmissionError::TooManyFromIp);
        }
        *count += 1;
        Ok(Admission { engine: self.clone(), ip })
    }

    /// Next id for a request that waits on JS (joins, upgrades).
    pub fn next_request_id(&self) -> u32 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// The `onUpgrade` hook answered.
    pub fn resolve_upgrade(&self, request: u32, verdict: Verdict) {
        if let Some((_, tx)) = self.pending_upgrades.remove(&request) {
            let _ = tx.send(verdict);
        }
    }

    pub fn next_conn_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Holds a client's `join_room` for the `onJoinRoom` hook; returns the request id the
    /// hook's decision comes back with (`resolve_join`).
    pub fn defer_join(&self, conn: &Arc<Conn>, room: &str, request_id: Option<serde_json::Value>) -> u32 {
        let request = self.next_request_id();
        self.pending_joins
            .insert(request, PendingJoin { conn: conn.clone(), room: room.to_string(), request_id });
        request
    }

    /// Sends a built-in protocol message to one connection.
    pub fn reply(&self, conn: &Arc<Conn>, text: String) -> SendStatus {
        conn.send(&self.send, &OutFrame::text(&text))
    }

    /// Joins and answers the client with `room_joined` or `room_join_error`.
    pub fn finish_join(&self, conn: &Arc<Conn>, room: &str, rid: &Option<serde_json::Value>) {
        match self.rooms.join(conn, room) {
            Ok(_) => self.reply(conn, protocol::room_joined(room, rid)),
            Err(e) => self.reply(conn, protocol::room_join_error(room, e.as_str(), rid)),
        };
    }

    /// The `onJoinRoom` hook decided on a pending client join.
    pub fn resolve_join(&self, request: u32, allowed: bool) {
        let Some((_, pending)) = self.pending_joins.remove(&request) else {
            return;
        };
        if allowed {
            self.finish_join(&pending.conn, &pending.room, &pending.request_id);
        } else {
            self.reply(
                &pending.conn,
                protocol::room_join_error(&pending.room, "denied", &pending.request_id),
            );
        }
    }

    /// A join decided by the application (`socket.joinRoom`): the client is told with `room_joined`.
    pub fn join(&self, conn: &Arc<Conn>, room: &str) -> Result<bool, JoinError> {
        let joined = self.rooms.join(conn, room)?;
        if joined {
            self.reply(conn, protocol::room_joined(room, &None));
        }
        Ok(joined)
    }

    /// Leaves a room and tells `onLeaveRoom` when registered.
    pub fn leave(&self, conn: &Arc<Conn>, room: &str) -> bool {
        let left = self.rooms.leave(conn, room);
        if left && conn.hooks & hooks::LEAVE_ROOM != 0 {
            self.events.push(Event::Leave { conn: conn.id, room: room.to_string() });
        }
        left
    }

    /// Deletes a room: members get `room_left` (and `onLeaveRoom`).
    pub fn delete_room(&self, room: &str) -> bool {
        let Some(members) = self.rooms.delete(room) else {
            return false;
        };
        for conn in members {
            self.reply(&conn, protocol::room_left(room, &None));
            if conn.hooks & hooks::LEAVE_ROOM != 0 {
                self.events.push(Event::Leave { conn: conn.id, room: room.to_string() });
            }
        }
        true
    }

    /// A `room_message` frame from a member to the room's other members, on every node.
    pub fn room_message_from(&self, sender: &Conn, room: &str, frame: String) -> u32 {
        let msg = OutFrame::text(&frame);
        self.publish(&msg, Some(room), vec![sender.uuid]);
        self.rooms.fan_out(&self.send, room, &msg, Skip::Conn(sender.id))
    }

    /// Queues one message to a room or everyone, skipping the `except` sockets (UUIDs, on any
    /// node), here and, with a cluster, on every other node. The frame is encoded once; on a
    /// corked thread it joins one shared buffer for all recipients. Returns how many local
    /// connections accepted it.
    pub fn broadcast(&self, msg: OutFrame, room: Option<&str>, except: &[[u8; 16]]) -> u32 {
        self.publish(&msg, room, except.to_vec());
        self.deliver_local(msg, room, except)
    }

    /// Delivers to this node's sockets only, skipping the listed socket UUIDs.
    pub fn deliver_local(&self, msg: OutFrame, room: Option<&str>, except: &[[u8; 16]]) -> u32 {
        match room {
            Some(room) => self.rooms.fan_out(&self.send, room, &msg, Skip::Uuids(except)),
            None => self.send_all(&msg, Skip::Uuids(except)),
        }
    }

    fn send_all(&self, msg: &OutFrame, skip: Skip<'_>) -> u32 {
        if cork::is_corked() {
            // One shared buffer for every connection, as for a room (see `Rooms::fan_out`).
            let target = FanoutTarget {
                registry: &self.conns as *const IdMap<Arc<Conn>> as usize,
                room: "",
                skip,
                version: self.conns_version.load(Ordering::Acquire),
            };
            return fanout::fan_out_shared(target, msg, &self.send, || {
                let version = self.conns_version.load(Ordering::Acquire);
                Some((self.conns.iter().map(|e| e.value().clone()).collect(), version))
            });
        }
        let mut delivered = 0;
        for entry in self.conns.iter() {
            if skip.matches(entry.value()) {
                continue;
            }
            if entry.value().send_uncounted(&self.send, msg) != SendStatus::Dropped {
                delivered += 1;
            }
        }
        self.stats.count_out_n(delivered, msg.payload_len());
        delivered
    }

    fn publish(&self, msg: &OutFrame, room: Option<&str>, except: Vec<[u8; 16]>) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        cluster.publish(&Envelope {
            origin: cluster.node_id,
            binary: msg.is_binary(),
            room: room.map(str::to_string),
            except,
            payload: msg.payload(),
        });
    }

    /// Queues one message to the listed connections.
    pub fn send_many(&self, msg: OutFrame, ids: &[u32]) -> u32 {
        let mut delivered = 0;
        for id in ids {
            if let Some(conn) = self.conns.get(id) {
                if conn.send_uncounted(&self.send, &msg) != SendStatus::Dropped {
                    delivered += 1;
                }
            }
        }
        self.stats.count_out_n(delivered, msg.payload_len());
        delivered
    }

    /// Removes a connection from every registry; after this nothing can reach it.
    pub fn unregister(&self, conn: &Arc<Conn>) {
        self.conns.remove(&conn.id);
        self.conns_version.fetch_add(1, Ordering::AcqRel);
        self.retired.insert(conn.id, conn.clone());
        self.rooms.leave_all(conn);
        self.pending_joins.retain(|_, p| p.conn.id != conn.id);
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
