//! The shared state of one server: routes, live connections, the event queue and counters.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use tokio::sync::Notify;

use crate::clock::MonoClock;
use crate::cluster::{member_name, Cluster, Envelope, PresenceOp};
use crate::config::Config;
use crate::conn::{Conn, SendContext};
use crate::cork;
use crate::deflate::{DeflateConfig, FrameCache};
use crate::events::{Event, EventQueue};
use crate::fanout::{self, FanoutTarget, Skip};
use crate::metrics::{self, frame_type, ClusterFigures, Figures, Metrics};
use crate::outbox::{OutFrame, SendStatus};
use crate::presence;
use crate::protocol;
use crate::rate_limit::RateLimit;
use crate::rooms::{JoinError, Rooms};
use crate::sessions::Sessions;

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

/// The route that takes every path without a route of its own.
pub const ANY_PATH: &str = "*";

/// How often expired sessions and emptied auto-created rooms with history are swept, ms.
const SWEEP_MS: u64 = 1_000;

/// Bits telling which JS hooks a path registered (`addRoute`); without one, its events never
/// cross into JS.
#[napi_derive::napi]
pub enum Hook {
    Message = 1,
    JoinRoom = 2,
    LeaveRoom = 4,
    /// `onUpgrade` (or a subprotocol selector) must see the request before the 101.
    Upgrade = 8,
    /// Ping and pong frames from the peer reach JS (the ws-compatible layer's events).
    Control = 16,
}

/// The `Hook` bits as the masks the engine tests.
pub mod hooks {
    use super::Hook;
    pub const MESSAGE: u32 = Hook::Message as u32;
    pub const JOIN_ROOM: u32 = Hook::JoinRoom as u32;
    pub const LEAVE_ROOM: u32 = Hook::LeaveRoom as u32;
    pub const UPGRADE: u32 = Hook::Upgrade as u32;
    pub const CONTROL: u32 = Hook::Control as u32;
}

/// The `onUpgrade` hook's answer.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Upgrade, optionally with the client id and subprotocol JS chose, and header lines of
    /// its own for the 101 (checked again when the 101 is written).
    Accept { client_id: Option<String>, protocol: Option<String>, headers: Vec<String> },
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

/// A registered WebSocket path.
struct Route {
    /// Which JS hooks its handlers define (`hooks` bits).
    hooks: u32,
    rate_limit: Option<RateLimit>,
    /// permessage-deflate on this path (None: off).
    deflate: Option<DeflateConfig>,
}

/// A client's `join_room` waiting for the `onJoinRoom` hook's decision.
struct PendingJoin {
    conn: Arc<Conn>,
    room: String,
    request_id: Option<serde_json::Value>,
}

/// Message and byte counters, read by `getStats()` and the metrics. Each is kept per data
/// frame type (index 0 text, 1 binary), so the metrics split them at no extra cost.
#[derive(Default)]
pub struct Stats {
    pub messages_in: [AtomicU64; 2],
    pub messages_out: [AtomicU64; 2],
    pub bytes_in: [AtomicU64; 2],
    pub bytes_out: [AtomicU64; 2],
    pub dropped: AtomicU64,
}

/// Sum of a text/binary pair.
pub fn both(pair: &[AtomicU64; 2]) -> u64 {
    pair[0].load(Ordering::Relaxed) + pair[1].load(Ordering::Relaxed)
}

impl Stats {
    pub fn count_in(&self, binary: bool, bytes: usize) {
        self.messages_in[usize::from(binary)].fetch_add(1, Ordering::Relaxed);
        self.bytes_in[usize::from(binary)].fetch_add(bytes as u64, Ordering::Relaxed);
    }
    pub fn count_out(&self, binary: bool, bytes: usize) {
        self.count_out_n(1, binary, bytes);
    }
    /// `n` messages of `bytes` each, counted at once (a fan-out).
    pub fn count_out_n(&self, n: u32, binary: bool, bytes: usize) {
        if n > 0 {
            self.messages_out[usize::from(binary)].fetch_add(u64::from(n), Ordering::Relaxed);
            self.bytes_out[usize::from(binary)].fetch_add(u64::from(n) * bytes as u64, Ordering::Relaxed);
        }
    }
    /// Takes back messages counted as sent that a recipient did not take after all.
    pub fn uncount_out(&self, binary: bool, n: u64, bytes: u64) {
        self.messages_out[usize::from(binary)].fetch_sub(n, Ordering::Relaxed);
        self.bytes_out[usize::from(binary)].fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One server's state, shared by the accept loop, every connection task and the JS-facing methods.
pub struct Engine {
    pub config: Config,
    routes: RwLock<HashMap<String, Route>>,
    /// Live connections by internal id.
    pub conns: IdMap<Arc<Conn>>,
    /// Bumped each time a connection is added to or removed from `conns` (see `send_all`).
    pub conns_version: AtomicU64,
    /// Closed connections whose close JS has not processed yet: `onClose` can still read metadata.
    pub retired: IdMap<Arc<Conn>>,
    next_id: AtomicU32,
    /// The room registry.
    pub rooms: Rooms,
    /// Disconnected sessions, when `recovery` is on.
    pub sessions: Option<Sessions>,
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
    /// Counters kept only for `metrics()`.
    pub metrics: Metrics,
    /// What sends need: the counters and the send-buffer policy.
    pub send: SendContext,
    shutting_down: AtomicBool,
    /// Set once `close()` has drained every connection: the listener closes.
    listener_closed: AtomicBool,
    /// Woken when the accept loop must look at `stops_accepting`.
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
        let rooms = Rooms::new(config.auto_create_rooms, config.history);
        let rooms = if config.cluster.is_some() { rooms.mirrored() } else { rooms };
        let events = EventQueue::new(config.max_inbound_queue);
        let sessions = config
            .max_disconnection
            .map(|d| Sessions::new(d.as_millis() as u64, crate::config::MAX_SESSIONS));
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
            sessions,
            pending_joins: DashMap::new(),
            next_request: AtomicU32::new(1),
            cluster: std::sync::OnceLock::new(),
            pending_upgrades: DashMap::new(),
            admitted: AtomicUsize::new(0),
            per_ip: DashMap::new(),
            events,
            stats,
            metrics: Metrics::new(),
            send,
            shutting_down: AtomicBool::new(false),
            listener_closed: AtomicBool::new(false),
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
        let mut next_sweep = start + SWEEP_MS;
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
            let mut pinged = 0;
            for entry in engine.conns.iter() {
                pinged += u64::from(entry.value().tick(now, idle_ms, ping));
            }
            engine.metrics.control_out(frame_type::PING, pinged, 0);
            if now >= next_sweep {
                next_sweep = now + SWEEP_MS;
                if let Some(sessions) = &engine.sessions {
                    sessions.sweep(now);
                }
                if engine.config.history.is_some() {
                    engine.rooms.sweep(now);
                }
            }
        }
    }

    /// Registers (or re-registers) a WebSocket path with the hooks its handlers define.
    /// `rate_limit`: the path's own limit; None: the server's `rateLimit`.
    /// `deflate`: the path's own permessage-deflate settings (`Some(None)`: off there), absent:
    /// the server's.
    pub fn add_route(
        &self,
        path: &str,
        hooks: u32,
        rate_limit: Option<RateLimit>,
        deflate: Option<Option<DeflateConfig>>,
    ) {
        if let Ok(mut routes) = self.routes.write() {
            routes.insert(
                path.to_string(),
                Route {
                    hooks,
                    rate_limit: rate_limit.or(self.config.rate_limit),
                    deflate: deflate.unwrap_or(self.config.deflate),
                },
            );
        }
    }

    /// The permessage-deflate settings of a path (of the `*` route when it has none of its own).
    pub fn route_deflate(&self, path: &str) -> Option<DeflateConfig> {
        self.route(path, |r| r.deflate).flatten()
    }

    /// The route of a path: its own, else the `*` route's.
    fn route<T>(&self, path: &str, get: impl Fn(&Route) -> T) -> Option<T> {
        self.routes.read().ok().and_then(|r| r.get(path).or_else(|| r.get(ANY_PATH)).map(get))
    }

    /// The rate limit of a path's connections.
    pub fn route_rate_limit(&self, path: &str) -> Option<RateLimit> {
        self.route(path, |r| r.rate_limit).flatten()
    }

    /// The hook bits of a path (of the `*` route when the path has none of its own).
    pub fn route_hooks(&self, path: &str) -> u32 {
        self.route(path, |r| r.hooks).unwrap_or(0)
    }

    /// Whether a path has handlers (its own, or the `*` route's).
    pub fn has_route(&self, path: &str) -> bool {
        self.routes.read().map(|r| r.contains_key(path) || r.contains_key(ANY_PATH)).unwrap_or(false)
    }

    /// Whether `maxConnections` is reached now (`admit` decides; this only spares work on a
    /// connection it would refuse).
    pub fn is_full(&self) -> bool {
        self.config.max_connections.is_some_and(|max| self.admitted.load(Ordering::Acquire) >= max)
    }

    /// Whether the port answers `metricsPath` or `healthPath`, which are served at the limit too.
    pub fn serves_endpoints(&self) -> bool {
        self.config.metrics_path.is_some() || self.config.health_path.is_some()
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

    /// Sends a reply about a room; with a cluster it waits behind a `room_joined` that waits
    /// for the room's subscription, so the client sees them in order.
    pub fn reply_about(&self, conn: &Arc<Conn>, room: &str, text: String) {
        let text = match self.cluster.get() {
            Some(cluster) => cluster.in_order(room, conn, text),
            None => Some(text),
        };
        if let Some(text) = text {
            self.reply(conn, text);
        }
    }

    /// A connection became a member: with a cluster, `room_joined` goes out once this node
    /// receives the room's messages from the other nodes (see `cluster::channels`).
    fn joined(&self, conn: &Arc<Conn>, room: &str, text: String) {
        self.presence_changed(conn, room, true);
        let text = match self.cluster.get() {
            Some(cluster) => cluster.member_joined(room, conn, text),
            None => Some(text),
        };
        if let Some(text) = text {
            self.reply(conn, text);
        }
    }

    /// This node's members of a room, as presence shows them.
    pub fn presence(&self, room: &str) -> Vec<presence::PresenceEntry> {
        let fields = &self.config.presence_fields;
        self.rooms.member_conns(room).iter().map(|c| presence::entry(c, fields)).collect()
    }

    /// A member joined or left: the cluster's presence keys, and the room's presence events
    /// (to the other members, on every node).
    pub(crate) fn presence_changed(&self, conn: &Arc<Conn>, room: &str, joined: bool) {
        crate::sessions::changed(self, conn);
        let events = self.rooms.presence_events(room);
        let cluster = self.cluster.get().filter(|c| c.has_presence());
        if !events && cluster.is_none() {
            return;
        }
        let entry = presence::entry(conn, &self.config.presence_fields);
        if let Some(cluster) = cluster {
            let (room, member) = (room.to_string(), member_name(&conn.uuid));
            cluster.presence_op(if joined {
                PresenceOp::Join { room, member, value: cluster.presence_value(&entry) }
            } else {
                PresenceOp::Leave { room, member }
            });
        }
        if events {
            let kind = if joined { "presence_join" } else { "presence_leave" };
            self.broadcast(OutFrame::text(&presence::event(kind, room, &entry)), Some(room), &[conn.uuid]);
        }
    }

    /// A metadata value changed: a public field is rewritten in the cluster's presence keys
    /// at once rather than at the next refresh.
    pub fn metadata_changed(&self, conn: &Arc<Conn>, key: &str) {
        crate::sessions::changed(self, conn);
        let Some(cluster) = self.cluster.get().filter(|c| c.has_presence()) else { return };
        if !self.config.presence_fields.iter().any(|f| f == key) {
            return;
        }
        let value = cluster.presence_value(&presence::entry(conn, &self.config.presence_fields));
        for room in conn.rooms() {
            let member = member_name(&conn.uuid);
            cluster.presence_op(PresenceOp::Join { room, member, value: value.clone() });
        }
    }

    /// `n` local members left a room (the cluster unsubscribes once none is left).
    fn members_left(&self, room: &str, n: u32) {
        if let Some(cluster) = self.cluster.get() {
            cluster.members_left(room, n);
        }
    }

    /// Joins and answers the client with `room_joined` or `room_join_error`.
    pub fn finish_join(&self, conn: &Arc<Conn>, room: &str, rid: &Option<serde_json::Value>) {
        if let Err(e) = self.join_telling(conn, room, rid, true) {
            self.reply(conn, protocol::room_join_error(room, e.as_str(), rid));
        }
    }

    /// Joins; `room_joined` (with the room's epoch and offset when it keeps history) is queued
    /// under the room's lock, so it comes before every message published after the join. (History
    /// is refused with a cluster, so that reply needs no subscription to wait for.)
    fn join_telling(
        &self,
        conn: &Arc<Conn>,
        room: &str,
        rid: &Option<serde_json::Value>,
        tell_again: bool,
    ) -> Result<bool, JoinError> {
        if let Some(cluster) = self.cluster.get() {
            if self.rooms.history_limits(room).is_some() && !self.rooms.is_member(conn.id, room) {
                // The room's place in Redis's history is needed first (`cluster::replay`).
                if !crate::rooms::valid_room_id(room) {
                    return Err(JoinError::Invalid);
                }
                cluster.join_numbered(conn.clone(), room.to_string(), rid.clone());
                return Ok(true);
            }
        }
        let mut told = false;
        let (joined, _) = self.rooms.join_with(conn, room, |_, at, newly| {
            if at.is_some() && (newly || tell_again) {
                self.reply(conn, protocol::room_joined_at(room, at.as_ref(), None, rid));
                told = true;
            }
        })?;
        if joined && told {
            self.presence_changed(conn, room, true);
        } else if joined {
            self.joined(conn, room, protocol::room_joined(room, rid));
        } else if tell_again && !told {
            self.reply_about(conn, room, protocol::room_joined(room, rid));
        }
        Ok(joined)
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
        self.join_telling(conn, room, &None, false)
    }

    /// Leaves a room and tells `onLeaveRoom` when registered.
    pub fn leave(&self, conn: &Arc<Conn>, room: &str) -> bool {
        let left = self.rooms.leave(conn, room);
        if left {
            self.members_left(room, 1);
            self.presence_changed(conn, room, false);
        }
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
        self.members_left(room, members.len() as u32);
        if let Some(cluster) = self.cluster.get() {
            for conn in &members {
                cluster.presence_op(PresenceOp::Leave {
                    room: room.to_string(),
                    member: member_name(&conn.uuid),
                });
            }
        }
        for conn in members {
            self.reply_about(&conn, room, protocol::room_left(room, &None));
            if conn.hooks & hooks::LEAVE_ROOM != 0 {
                self.events.push(Event::Leave { conn: conn.id, room: room.to_string() });
            }
        }
        true
    }

    /// A `room_message` frame from a member to the room's other members, on every node.
    /// A room with history gives the message its offset and stores it (`Rooms::publish`).
    pub fn room_message_from(&self, sender: &Conn, room: &str, message: &serde_json::Value) -> u32 {
        let skip = Skip::Conn(sender.id);
        let from = Some(sender.client_id.as_str());
        if let Some(n) = self.publish_numbered(room, message, from, &[sender.uuid]) {
            return n;
        }
        let published =
            self.rooms.publish(&self.send, self.mono_ms(), room, skip, &[sender.uuid], |offset| {
                protocol::room_message_at(room, message, from, offset)
            });
        if let Some((n, msg)) = published {
            self.publish(&msg, Some(room), vec![sender.uuid]);
            return n;
        }
        let msg = OutFrame::text(&protocol::room_message(room, message, &sender.client_id));
        self.publish(&msg, Some(room), vec![sender.uuid]);
        self.rooms.fan_out(&self.send, room, &msg, skip)
    }

    /// Queues one message to a room or everyone, skipping the `except` sockets (UUIDs, on any
    /// node), here and, with a cluster, on every other node. The frame is encoded once; on a
    /// corked thread it joins one shared buffer for all recipients. Returns how many local
    /// connections accepted it.
    pub fn broadcast(&self, msg: OutFrame, room: Option<&str>, except: &[[u8; 16]]) -> u32 {
        let start = std::time::Instant::now();
        self.publish(&msg, room, except.to_vec());
        let delivered = self.deliver_local(msg, room, except);
        self.metrics.broadcast.observe(start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
        delivered
    }

    /// A text broadcast to a room: to a room with history it goes as a `room_message` frame
    /// carrying the text and its offset, and is stored; otherwise as the text itself.
    pub fn broadcast_text(&self, text: &str, room: Option<&str>, except: &[[u8; 16]]) -> u32 {
        if let Some(id) = room {
            let start = std::time::Instant::now();
            // Only a cluster numbers through Redis: no copy of the text on the one-node path.
            if self.cluster.get().is_some() {
                let message = serde_json::Value::String(text.to_string());
                if let Some(n) = self.publish_numbered(id, &message, None, except) {
                    self.metrics
                        .broadcast
                        .observe(start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
                    return n;
                }
            }
            let published =
                self.rooms.publish(&self.send, self.mono_ms(), id, Skip::Uuids(except), except, |offset| {
                    protocol::room_message_at(id, &serde_json::Value::String(text.to_string()), None, offset)
                });
            if let Some((n, msg)) = published {
                self.publish(&msg, room, except.to_vec());
                self.metrics.broadcast.observe(start.elapsed().as_micros().min(u128::from(u64::MAX)) as u64);
                return n;
            }
        }
        self.broadcast(OutFrame::text(text), room, except)
    }

    /// In a cluster, a message to a room with history goes through Redis, which numbers it;
    /// every node delivers it when it comes back (`deliver_numbered`). Returns the local members
    /// it will reach; None when the room keeps no history here (or there is no cluster). While
    /// this node has lost Redis, the message reaches the local members at once, without an
    /// offset, and the room's history starts a new epoch once Redis is back.
    fn publish_numbered(
        &self,
        room: &str,
        message: &serde_json::Value,
        from: Option<&str>,
        except: &[[u8; 16]],
    ) -> Option<u32> {
        let cluster = self.cluster.get()?;
        let limits = self.rooms.history_limits(room)?;
        let reached = self.rooms.count_except(room, except);
        if cluster.connected.load(Ordering::Acquire) {
            let (head, tail) = protocol::room_message_parts(room, message, from);
            cluster.publish_numbered(room, head, tail, except, limits);
            return Some(reached);
        }
        cluster.mark_lost(room);
        let text = match from {
            Some(from) => protocol::room_message(room, message, from),
            None => {
                serde_json::json!({ "type": "room_message", "room_id": room, "message": message }).to_string()
            }
        };
        Some(self.rooms.fan_out(&self.send, room, &OutFrame::text(&text), Skip::Uuids(except)))
    }

    /// A message Redis numbered for a room's history reached this node.
    pub fn deliver_numbered(
        &self,
        room: &str,
        numbered: &crate::cluster::Numbered,
        frame: &str,
        except: &[[u8; 16]],
    ) {
        self.rooms.deliver_numbered(&self.send, self.mono_ms(), room, numbered, frame, except);
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
        fanout::settle();
        let mut cache = FrameCache::default();
        for entry in self.conns.iter() {
            if skip.matches(entry.value()) {
                continue;
            }
            if entry.value().send_unsettled(&self.send, msg, &mut cache) != SendStatus::Dropped {
                delivered += 1;
            }
        }
        self.stats.count_out_n(delivered, msg.is_binary(), msg.payload_len());
        delivered
    }

    fn publish(&self, msg: &OutFrame, room: Option<&str>, except: Vec<[u8; 16]>) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        cluster.publish(&Envelope {
            origin: cluster.node_id,
            sent_at_us: crate::clock::wall_us(),
            numbered: None,
            binary: msg.is_binary(),
            room: room.map(str::to_string),
            except,
            payload: msg.payload(),
        });
    }

    /// Queues one message to the listed connections.
    pub fn send_many(&self, msg: OutFrame, ids: &[u32]) -> u32 {
        let mut delivered = 0;
        fanout::settle();
        let mut cache = FrameCache::default();
        for id in ids {
            if let Some(conn) = self.conns.get(id) {
                if conn.send_unsettled(&self.send, &msg, &mut cache) != SendStatus::Dropped {
                    delivered += 1;
                }
            }
        }
        self.stats.count_out_n(delivered, msg.is_binary(), msg.payload_len());
        delivered
    }

    /// Removes a connection from every registry; after this nothing can reach it.
    /// Returns the session it leaves behind (with `recovery`), to keep once its close is reported.
    pub fn unregister(
        &self,
        conn: &Arc<Conn>,
        close: Option<&(u16, String)>,
    ) -> Option<(crate::sessions::Token, crate::sessions::Session)> {
        let session = crate::sessions::on_close(self, conn, close);
        self.unlist(conn);
        session
    }

    fn unlist(&self, conn: &Arc<Conn>) {
        self.conns.remove(&conn.id);
        self.conns_version.fetch_add(1, Ordering::AcqRel);
        self.retired.insert(conn.id, conn.clone());
        for room in self.rooms.leave_all(conn) {
            self.members_left(&room, 1);
            self.presence_changed(conn, &room, false);
        }
        self.pending_joins.retain(|_, p| p.conn.id != conn.id);
    }

    /// Whether the accept loop must end: once shutdown begins, or, with a `healthPath` or
    /// `metricsPath`, once it is over, so a load balancer reads 503 during the drain instead of
    /// a refused connection (upgrades meanwhile get 503).
    pub fn stops_accepting(&self) -> bool {
        if self.config.health_path.is_some() || self.config.metrics_path.is_some() {
            self.listener_closed.load(Ordering::Acquire)
        } else {
            self.is_shutting_down()
        }
    }

    /// Shutdown is over: the listener closes.
    pub fn close_listener(&self) {
        self.listener_closed.store(true, Ordering::Release);
        self.stop_accepting.notify_waiters();
        self.stop_accepting.notify_one();
    }

    /// Stops accepting (see `stops_accepting`) and asks every connection to close with 1001.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.stop_accepting.notify_waiters();
        self.stop_accepting.notify_one();
        for entry in self.conns.iter() {
            entry.value().close(1001, "Server shutting down");
        }
    }
}

/// What operators read: the metrics exposition and the health answer.
impl Engine {
    /// The Prometheus exposition of this server (`metrics()`, `metricsPath`).
    pub fn metrics_text(&self) -> String {
        let s = &self.stats;
        let pair = |n: &[AtomicU64; 2], b: &[AtomicU64; 2], i: usize| {
            (n[i].load(Ordering::Relaxed), b[i].load(Ordering::Relaxed))
        };
        let (queued_events, queued_bytes) = self.events.depth();
        let figures = Figures {
            connections: self.conns.len() as u64,
            text_in: pair(&s.messages_in, &s.bytes_in, 0),
            binary_in: pair(&s.messages_in, &s.bytes_in, 1),
            text_out: pair(&s.messages_out, &s.bytes_out, 0),
            binary_out: pair(&s.messages_out, &s.bytes_out, 1),
            dropped: s.dropped.load(Ordering::Relaxed),
            rooms: self.rooms.len() as u64,
            memberships: self.rooms.memberships(),
            room_members: self.rooms.metric_counts(),
            queued_events: queued_events as u64,
            queued_bytes: queued_bytes as u64,
            cluster: self.cluster.get().map(|c| ClusterFigures {
                connected: c.connected.load(Ordering::Relaxed),
                publish_errors: c.publish_errors.load(Ordering::Relaxed),
                subscribe_errors: c.subscribe_errors.load(Ordering::Relaxed),
                queued: c.queued() as u64,
                dropped: c.dropped.load(Ordering::Relaxed),
                received: c.received.load(Ordering::Relaxed),
            }),
            tls: self.tls.is_some(),
            rss_bytes: metrics::rss_bytes(),
        };
        self.metrics.render(&figures)
    }

    /// The `healthPath` answer: 200 while serving, 503 once `close()` has begun; in cluster
    /// mode the body says whether the Redis subscriber is connected.
    pub fn health(&self) -> (u16, String) {
        let draining = self.is_shutting_down();
        let mut body = format!(
            "{{\"status\":\"{}\",\"connections\":{}",
            if draining { "draining" } else { "ok" },
            self.conns.len()
        );
        if let Some(c) = self.cluster.get() {
            let up = c.connected.load(Ordering::Relaxed);
            body.push_str(&format!(",\"redis\":\"{}\"", if up { "up" } else { "down" }));
        }
        body.push('}');
        (if draining { 503 } else { 200 }, body)
    }
}
