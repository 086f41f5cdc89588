//! rnode-ws engine: a WebSocket server for Node.js on tokio, with its own RFC 6455 framing.
//!
//! This file is the napi surface and nothing more; each concept lives in its own module.
#![deny(clippy::unwrap_used)]

mod adopt;
mod clock;
mod cluster;
mod config;
mod conn;
mod cork;
mod deflate;
mod dispatch;
mod engine;
mod error;
mod events;
mod fanout;
mod frame;
pub mod handles;
mod handshake;
mod history;
mod linger;
mod loopback;
mod metrics;
mod napi_stubs;
mod outbox;
mod presence;
mod protocol;
mod proxy_protocol;
mod rate_limit;
mod reader;
mod rooms;
mod runtime;
mod server;
mod sessions;
mod task;
mod tls;
mod tls_stream;
mod trust_proxy;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Function, PromiseRaw, Uint8ArraySlice};
use napi::Env;
use napi_derive::napi;

use crate::config::{Config, NativeDeflateOptions, NativeOptions};
use crate::engine::Engine;
use crate::error::{ClusterError, Code, ListenError, SocketError};
use crate::frame::opcode;
use crate::outbox::OutFrame;
use crate::rooms::{JoinResult, RoomInfo, RoomSpec};

/// What the napi functions return: an error is thrown (or rejected) with `.code` set.
type Result<T> = napi::Result<T, Code>;

/// Counters for `getStats()` and the batching debug figures.
#[napi(object)]
pub struct NativeStats {
    pub total_connections: u32,
    pub messages_in: f64,
    pub messages_out: f64,
    pub bytes_in: f64,
    pub bytes_out: f64,
    pub dropped_messages: f64,
    /// Wake-up calls made into JS.
    pub wakeups: f64,
    /// Batches handed to JS through `pollEvents`.
    pub batches: f64,
    /// Events handed to JS; `events / batches` is the events per call.
    pub events: f64,
    pub total_rooms: u32,
    /// Most message bytes ever waiting for JS at once (bounded by `maxInboundQueue`).
    pub peak_queued_bytes: f64,
    /// Envelopes other cluster nodes delivered here.
    pub cluster_received: f64,
    /// Envelopes dropped because Redis was away and the outbound queue was full.
    pub cluster_dropped: f64,
    /// Whether the cluster subscriber is connected to Redis.
    pub cluster_connected: bool,
    /// Pub/sub messages Redis sent this node's subscriber (its own echoes included).
    pub cluster_inbound_messages: f64,
    /// Their bytes: channel names and payloads.
    pub cluster_inbound_bytes: f64,
    /// Room channels this node is subscribed to (or about to be).
    pub cluster_room_channels: u32,
    /// Inbound messages over a `rateLimit` (dropped, or closing their connection).
    pub rate_limited: f64,
}

/// Where attach mode's slow path connects, and the secret its first line carries.
#[napi(object)]
pub struct LoopbackInfo {
    pub port: u32,
    pub secret: String,
}

/// Counts over every node of a cluster.
#[napi(object)]
pub struct ClusterStats {
    pub nodes: u32,
    pub total_connections: u32,
    pub connections_by_room: HashMap<String, u32>,
}

/// The native half of `WsServer`; the TypeScript facade is its only caller.
#[napi]
pub struct NativeServer {
    engine: Arc<Engine>,
    handle: u32,
    /// `listen()` was called (a second call is refused).
    listened: AtomicBool,
    /// Attach mode's slow path (`loopback.rs`), bound on first use.
    loopback: loopback::LoopbackSlot,
}

/// A server collected without `close()` (never listened, say) leaves the fast-call table, so
/// its engine is freed with it. Runs on the JS thread that created it (napi finalizer).
impl Drop for NativeServer {
    fn drop(&mut self) {
        handles::unregister(self.handle, &self.engine);
    }
}

#[napi]
impl NativeServer {
    /// Throws `ERR_INVALID_OPTION` for an option the engine cannot use.
    #[napi(constructor)]
    pub fn new(options: Option<NativeOptions>) -> Result<Self> {
        let options = options.unwrap_or_default();
        let config = Config::from_options(&options).map_err(error::Error::from)?;
        let tls = options.tls.as_ref().map(tls::TlsContext::new).transpose().map_err(error::Error::from)?;
        let mut engine = Engine::new(config);
        engine.tls = tls.map(Arc::new);
        let engine = Arc::new(engine);
        Ok(NativeServer {
            handle: handles::register(engine.clone()),
            engine,
            listened: AtomicBool::new(false),
            loopback: Default::default(),
        })
    }

    /// Registers a WebSocket path; `hooks` says which JS handlers it has (`Hook` bits),
    /// `rate_limit` its own `rateLimit` and `deflate` its own permessage-deflate settings
    /// (absent: the server's). Throws `ERR_INVALID_OPTION` for a bad deflate setting.
    #[napi]
    pub fn add_route(
        &self,
        path: String,
        hooks: u32,
        rate_limit: Option<config::RateLimitOptions>,
        deflate: Option<NativeDeflateOptions>,
    ) -> Result<()> {
        let deflate = match deflate {
            Some(d) => Some(config::deflate_config(&d).map_err(error::Error::from)?),
            None => None,
        };
        let rate_limit = rate_limit.as_ref().and_then(config::RateLimitOptions::resolve);
        self.engine.add_route(&path, hooks, rate_limit, deflate);
        Ok(())
    }

    /// Binds and starts accepting; `wake` is called (with a hint of the queue length) whenever
    /// events are waiting for `pollEvents`. With `bind` false (attach mode), no port is bound:
    /// connections come from `adopt` and the loopback listener, and the wake-up callback does
    /// not hold the event loop open (the app's http server does). Resolves with the port, or 0.
    /// Throws `ERR_ALREADY_LISTENING` on a second call; rejects with a bind or Redis code.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn listen<'env>(
        &self,
        env: &'env Env,
        wake: Function<'env, u32, ()>,
        bind: Option<bool>,
    ) -> Result<PromiseRaw<'env, u32>> {
        if self.listened.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return Err(error::Error::from(ListenError::AlreadyListening).into());
        }
        let bind = bind.unwrap_or(true);
        let mut tsfn = wake
            .build_threadsafe_function::<u32>()
            .callee_handled::<false>()
            .build()
            .map_err(error::internal)?;
        if !bind {
            // napi_unref_threadsafe_function: the one handle stays usable but no longer keeps
            // the loop alive. (The deprecation points at clone-counting, which does not unref.)
            #[allow(deprecated)]
            tsfn.unref(env).map_err(error::internal)?;
        }
        self.engine.events.set_wake(tsfn);
        let engine = self.engine.clone();
        error::spawn(env, async move {
            let waker = engine.clone();
            tokio::spawn(async move { waker.events.wake_loop().await });
            let port = async {
                if let Some(config) = engine.config.cluster.clone() {
                    let recovery = engine.config.max_disconnection.map(|d| d.as_millis() as u64);
                    let cluster = cluster::Cluster::connect(config, recovery).await?;
                    cluster.start(engine.clone());
                    cluster.wait_subscribed(Duration::from_secs(3)).await;
                    let _ = engine.cluster.set(cluster);
                }
                if !bind {
                    adopt::start(&engine);
                    return Ok(0);
                }
                server::listen(engine.clone()).await
            }
            .await;
            if port.is_err() {
                engine.events.clear_wake();
                if let Some(c) = engine.cluster.get() {
                    c.stop().await;
                }
            }
            Ok(u32::from(port?))
        })
    }

    /// Attach mode, fast path: takes over the TCP connection behind Node's descriptor `fd` (a
    /// duplicate; Node closes its own), reading `prefix` (rebuilt request head, `head`, bytes
    /// Node had buffered) before the socket. Returns the attach id the connect or upgrade-failed
    /// event carries.
    #[napi]
    pub fn adopt(&self, fd: i32, prefix: Buffer) -> Result<u32> {
        let attach = self.engine.next_request_id();
        adopt::adopt(self.engine.clone(), fd, prefix.to_vec(), attach)
            .map_err(|e| error::Error::from(error::AttachError::Adopt(e)))?;
        Ok(attach)
    }

    /// Replaces the default TLS certificate: handshakes from now on use it, open connections
    /// keep theirs. Throws `ERR_INVALID_CERT`, `ERR_INVALID_KEY` or `ERR_BAD_PASSPHRASE` (the old
    /// certificate stays), or `ERR_NO_TLS`.
    #[napi]
    pub fn set_secure_context(&self, cert: tls::NativeCertKey) -> Result<()> {
        let tls =
            self.engine.tls.as_ref().ok_or(error::TlsError::NotConfigured).map_err(error::Error::from)?;
        Ok(tls.set_default(&cert).map_err(error::Error::from)?)
    }

    /// Adds or replaces the TLS certificate for SNI host `name` (or `*.suffix`); throws as
    /// `setSecureContext` does.
    #[napi]
    pub fn add_server_name(&self, name: String, cert: tls::NativeCertKey) -> Result<()> {
        let tls =
            self.engine.tls.as_ref().ok_or(error::TlsError::NotConfigured).map_err(error::Error::from)?;
        Ok(tls.add_name(&name, &cert).map_err(error::Error::from)?)
    }

    /// Removes the certificate for SNI host `name`; false when it had none. Throws `ERR_NO_TLS`.
    #[napi]
    pub fn remove_server_name(&self, name: String) -> Result<bool> {
        let tls =
            self.engine.tls.as_ref().ok_or(error::TlsError::NotConfigured).map_err(error::Error::from)?;
        Ok(tls.remove_name(&name))
    }

    /// Attach mode, slow path: the loopback listener's port and secret (started on first call).
    #[napi]
    pub fn loopback(&self) -> Result<LoopbackInfo> {
        let lb = self
            .loopback
            .get_or_start(&self.engine)
            .map_err(|e| error::Error::from(error::AttachError::Loopback(e)))?;
        Ok(LoopbackInfo { port: u32::from(lb.port), secret: lb.secret })
    }

    /// A fresh attach id for a slow-path connection's preamble.
    #[napi]
    pub fn attach_id(&self) -> u32 {
        self.engine.next_request_id()
    }

    /// This server's handle for the per-message functions (`sendText`, `pollEvents`...).
    #[napi(getter)]
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Starts the close handshake with a code and reason the facade already validated.
    #[napi]
    pub fn close_connection(&self, conn: u32, code: u32, reason: String) -> bool {
        match self.engine.conns.get(&conn) {
            Some(c) => {
                sessions::forget(&self.engine, &c);
                c.close(code as u16, &reason);
                true
            }
            None => false,
        }
    }

    /// Sends a ping (`pong: false`) or pong frame; `data` is at most 125 bytes (checked by the
    /// facade). False when the connection is gone or closing.
    #[napi]
    pub fn send_control(&self, conn: u32, pong: bool, data: Uint8ArraySlice) -> bool {
        let data: &[u8] = &data;
        match self.engine.conns.get(&conn) {
            Some(c) if !c.is_closing() && data.len() <= 125 => {
                c.send_control(&frame::encode(if pong { opcode::PONG } else { opcode::PING }, data));
                true
            }
            _ => false,
        }
    }

    /// Drops a connection at once, without a close handshake (it reports 1006).
    #[napi]
    pub fn terminate(&self, conn: u32) -> bool {
        match self.engine.conns.get(&conn) {
            Some(c) => {
                c.abort();
                true
            }
            None => false,
        }
    }

    /// Bytes accepted by `send` and not yet written.
    #[napi]
    pub fn buffered_amount(&self, conn: u32) -> u32 {
        self.engine
            .conns
            .get(&conn)
            .map(|c| c.buffered.load(std::sync::atomic::Ordering::Acquire) as u32)
            .unwrap_or(0)
    }

    /// Stops accepting, closes every connection with 1001, and resolves once all are gone
    /// (connections still open after `timeout_ms` are dropped).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env, timeout_ms: u32) -> Result<PromiseRaw<'env, ()>> {
        let engine = self.engine.clone();
        engine.begin_shutdown();
        error::spawn(env, async move {
            let deadline = tokio::time::Instant::now() + Duration::from_millis(u64::from(timeout_ms));
            let live = |e: &Engine| e.live_tasks.load(std::sync::atomic::Ordering::Acquire);
            while live(&engine) > 0 {
                let gone = engine.conn_gone.notified();
                if live(&engine) == 0 {
                    break;
                }
                if tokio::time::timeout_at(deadline, gone).await.is_err() {
                    for c in engine.conns.iter() {
                        c.value().abort();
                    }
                    break;
                }
            }
            engine.close_listener();
            if let Some(c) = engine.cluster.get() {
                c.stop().await;
            }
            // Aborted connections still report their close; give them a moment, bounded.
            let grace = tokio::time::Instant::now() + Duration::from_millis(500);
            while live(&engine) > 0 && tokio::time::Instant::now() < grace {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    }

    /// Releases the JS callback so the addon no longer keeps the event loop alive.
    #[napi]
    pub fn dispose(&self) {
        handles::unregister(self.handle, &self.engine);
        self.engine.events.clear_wake();
        self.engine.retired.clear();
    }

    /// Counters, including the events-per-batch debug figures.
    #[napi]
    pub fn stats(&self) -> NativeStats {
        use std::sync::atomic::Ordering::Relaxed;
        let s = &self.engine.stats;
        let q = &self.engine.events;
        let cluster = self.engine.cluster.get();
        NativeStats {
            total_connections: self.engine.conns.len() as u32,
            messages_in: engine::both(&s.messages_in) as f64,
            messages_out: engine::both(&s.messages_out) as f64,
            bytes_in: engine::both(&s.bytes_in) as f64,
            bytes_out: engine::both(&s.bytes_out) as f64,
            dropped_messages: s.dropped.load(Relaxed) as f64,
            wakeups: q.wakes.load(Relaxed) as f64,
            batches: q.batches.load(Relaxed) as f64,
            events: q.delivered.load(Relaxed) as f64,
            total_rooms: self.engine.rooms.len() as u32,
            peak_queued_bytes: q.peak_bytes.load(Relaxed) as f64,
            cluster_received: self
                .engine
                .cluster
                .get()
                .map(|c| c.received.load(Relaxed) as f64)
                .unwrap_or(0.0),
            cluster_dropped: self.engine.cluster.get().map(|c| c.dropped.load(Relaxed) as f64).unwrap_or(0.0),
            cluster_connected: self.engine.cluster.get().is_some_and(|c| c.connected.load(Relaxed)),
            cluster_inbound_messages: cluster.map(|c| c.inbound_messages.load(Relaxed) as f64).unwrap_or(0.0),
            cluster_inbound_bytes: cluster.map(|c| c.inbound_bytes.load(Relaxed) as f64).unwrap_or(0.0),
            cluster_room_channels: cluster.map(|c| c.room_channels()).unwrap_or(0),
            rate_limited: self.engine.metrics.rate_limited() as f64,
        }
    }

    /// The Prometheus text exposition (format 0.0.4) of this server.
    #[napi]
    pub fn metrics(&self) -> String {
        self.engine.metrics_text()
    }

    /// Counts summed over every node of the cluster; rejects with `ERR_NO_CLUSTER` without one,
    /// `ERR_NOT_LISTENING` before `listen`.
    #[napi(ts_return_type = "Promise<ClusterStats>")]
    pub fn cluster_stats<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ClusterStats>> {
        let engine = self.engine.clone();
        error::spawn(env, async move {
            let Some(cluster) = engine.cluster.get().cloned() else {
                let not = if engine.config.cluster.is_some() {
                    ClusterError::NotStarted
                } else {
                    ClusterError::NotConfigured
                };
                return Err(not.into());
            };
            let counts = cluster.counts(&engine).await?;
            Ok(ClusterStats {
                nodes: counts.nodes,
                total_connections: counts.connections,
                connections_by_room: counts.rooms,
            })
        })
    }

    /// This node's members of a room: client ids and public fields.
    #[napi]
    pub fn presence(&self, room: String) -> Vec<presence::PresenceEntry> {
        self.engine.presence(&room)
    }

    /// The room's members on every node (rejects without a cluster; without the `presence`
    /// option only this node's members are known).
    #[napi(ts_return_type = "Promise<PresenceEntry[]>")]
    pub fn cluster_presence<'env>(
        &self,
        env: &'env Env,
        room: String,
    ) -> Result<PromiseRaw<'env, Vec<presence::PresenceEntry>>> {
        let engine = self.engine.clone();
        error::spawn(env, async move {
            let cluster = engine.cluster.get().cloned().ok_or(ClusterError::NotConfigured)?;
            if !cluster.has_presence() {
                return Ok(engine.presence(&room));
            }
            cluster.presence(&engine, &room).await
        })
    }

    /// Member count of every room.
    #[napi]
    pub fn room_counts(&self) -> HashMap<String, u32> {
        self.engine.rooms.counts().into_iter().collect()
    }

    /// Creates a room; false when the id is taken.
    #[napi]
    pub fn create_room(&self, spec: RoomSpec) -> bool {
        self.engine.rooms.create(spec)
    }

    #[napi]
    pub fn get_room(&self, id: String) -> Option<RoomInfo> {
        self.engine.rooms.info(&id)
    }

    #[napi]
    pub fn get_all_rooms(&self) -> Vec<RoomInfo> {
        self.engine.rooms.all()
    }

    /// A room's kept messages after `since` (at most `limit`); None without such a room or
    /// history. The facade checked `since` and `limit`.
    #[napi]
    pub fn history(&self, id: String, since: Option<f64>, limit: Option<u32>) -> Option<rooms::HistoryPage> {
        let limit = limit.unwrap_or(config::MAX_HISTORY_PAGE).min(config::MAX_HISTORY_PAGE) as usize;
        let since = since.filter(|s| *s >= 0.0).map(|s| s as u64);
        self.engine.rooms.history(&id, since, limit, self.engine.mono_ms())
    }

    /// A room's history as Redis keeps it, for every node (rejects without a cluster); None
    /// when the room keeps no history here.
    #[napi(ts_return_type = "Promise<HistoryPage | null>")]
    pub fn cluster_history<'env>(
        &self,
        env: &'env Env,
        id: String,
        since: Option<f64>,
        limit: Option<u32>,
    ) -> Result<PromiseRaw<'env, Option<rooms::HistoryPage>>> {
        let engine = self.engine.clone();
        error::spawn(env, async move {
            let cluster = engine.cluster.get().cloned().ok_or(ClusterError::NotConfigured)?;
            let Some(limits) = engine.rooms.history_limits(&id) else { return Ok(None) };
            let limit = limit.unwrap_or(config::MAX_HISTORY_PAGE).min(config::MAX_HISTORY_PAGE) as usize;
            let since = since.filter(|s| *s >= 0.0).map(|s| s as u64).unwrap_or(0);
            let timeout = Duration::from_secs(3);
            let read = cluster.read_history(&id, Some(since), limit, limits, timeout).await?;
            Ok(Some(rooms::HistoryPage {
                epoch: read.epoch,
                offset: read.top as f64,
                times: read.messages.iter().map(|m| m.wall as f64).collect(),
                frames: read.messages.into_iter().map(|m| m.frame).collect(),
            }))
        })
    }

    /// `socket.data` as JSON for a connection's session in Redis (a cluster with `recovery`;
    /// a no-op otherwise). `None`: no data.
    #[napi]
    pub fn set_session_data(&self, conn: u32, json: Option<String>) {
        if let Some(c) = self.conn(conn) {
            sessions::set_data(&self.engine, &c, json);
        }
    }

    /// Disconnected sessions kept on this node.
    #[napi]
    pub fn session_count(&self) -> u32 {
        self.engine.sessions.as_ref().map(|s| s.len() as u32).unwrap_or(0)
    }

    /// Deletes a room; its members get `room_left`.
    #[napi]
    pub fn delete_room(&self, id: String) -> bool {
        self.engine.delete_room(&id)
    }

    /// Joins a connection to a room: joined, already a member, or the reason it could not.
    #[napi]
    pub fn join_room(&self, conn: u32, id: String) -> JoinResult {
        let Some(c) = self.conn(conn) else {
            return JoinResult::Closed;
        };
        match self.engine.join(&c, &id) {
            Ok(true) => JoinResult::Joined,
            Ok(false) => JoinResult::Already,
            Err(e) => e.into(),
        }
    }

    /// Leaves one room, or every room when `id` is absent; returns how many rooms were left.
    #[napi]
    pub fn leave_room(&self, conn: u32, id: Option<String>) -> u32 {
        let Some(c) = self.conn(conn) else { return 0 };
        let rooms: Vec<String> = match id {
            Some(id) => vec![id],
            None => c.rooms(),
        };
        rooms
            .iter()
            .filter(|room| {
                let left = self.engine.leave(&c, room);
                if left {
                    self.engine.reply_about(&c, room, protocol::room_left(room, &None));
                }
                left
            })
            .count() as u32
    }

    /// Rooms a connection is in.
    #[napi]
    pub fn rooms_of(&self, conn: u32) -> Vec<String> {
        self.conn(conn).map(|c| c.rooms()).unwrap_or_default()
    }

    /// Connection ids in a room.
    #[napi]
    pub fn room_members(&self, id: String) -> Vec<u32> {
        self.engine.rooms.members(&id)
    }

    /// Sends a `room_message` frame from `conn` to the other members; returns how many got it.
    #[napi]
    pub fn send_to_room(&self, conn: u32, room: String, message_json: String) -> Result<u32> {
        let Some(c) = self.conn(conn) else { return Err(error::Error::from(SocketError::Closed).into()) };
        if !self.engine.rooms.is_member(conn, &room) {
            return Err(error::Error::from(SocketError::NotInRoom(room)).into());
        }
        let message: serde_json::Value =
            serde_json::from_str(&message_json).unwrap_or(serde_json::Value::Null);
        Ok(self.engine.room_message_from(&c, &room, &message))
    }

    /// Sends text to a room or everyone, skipping `except`; the bytes are shared by all recipients.
    #[napi]
    pub fn broadcast_text(&self, text: String, room: Option<String>, except: Option<Vec<String>>) -> u32 {
        self.engine.broadcast_text(&text, room.as_deref(), &socket_uuids(except))
    }

    /// Binary version of `broadcastText`; the bytes are copied once.
    #[napi]
    pub fn broadcast_binary(
        &self,
        data: Uint8ArraySlice,
        room: Option<String>,
        except: Option<Vec<String>>,
    ) -> u32 {
        self.engine.broadcast(OutFrame::binary(&data), room.as_deref(), &socket_uuids(except))
    }

    /// Sends one text message to the listed connections (the result of a JS-side filter).
    #[napi]
    pub fn send_many_text(&self, ids: Vec<u32>, text: String) -> u32 {
        self.engine.send_many(OutFrame::text(&text), &ids)
    }

    /// Binary version of `sendManyText`.
    #[napi]
    pub fn send_many_binary(&self, ids: Vec<u32>, data: Uint8ArraySlice) -> u32 {
        self.engine.send_many(OutFrame::binary(&data), &ids)
    }

    /// Stores a metadata value (JSON text); `None` removes the key.
    #[napi]
    pub fn set_metadata(&self, conn: u32, key: String, json: Option<String>) -> Result<()> {
        let closed = || napi::Error::from(error::Error::from(SocketError::Closed));
        let c = self.conn(conn).ok_or_else(closed)?;
        let mut extra = c.extra().ok_or_else(closed)?;
        let meta = &mut extra.get_or_insert_with(Default::default).metadata;
        match json {
            Some(v) => meta.insert(key.clone(), v),
            None => meta.remove(&key),
        };
        drop(extra);
        self.engine.metadata_changed(&c, &key);
        Ok(())
    }

    /// A metadata value as JSON text (still readable in `onClose`).
    #[napi]
    pub fn get_metadata(&self, conn: u32, key: String) -> Option<String> {
        let c = self.conn(conn).or_else(|| self.engine.retired.get(&conn).map(|c| c.value().clone()))?;
        let value = c.extra()?.as_ref()?.metadata.get(&key).cloned();
        value
    }

    /// JS has run `onClose` for this connection: its last state can go.
    #[napi]
    pub fn forget(&self, conn: u32) {
        self.engine.retired.remove(&conn);
    }

    /// The `onUpgrade` hook's decision: accept (optionally with a client id and subprotocol) or
    /// reject with an HTTP status.
    #[napi]
    pub fn resolve_upgrade(
        &self,
        request: u32,
        accept: bool,
        status: u32,
        message: String,
        client_id: Option<String>,
        protocol: Option<String>,
    ) {
        let verdict = if accept {
            engine::Verdict::Accept { client_id, protocol }
        } else {
            engine::Verdict::Reject { status: status as u16, message }
        };
        self.engine.resolve_upgrade(request, verdict);
    }

    /// Heartbeat times of a connection: [last client ping, last pong], epoch ms.
    #[napi]
    pub fn heartbeat(&self, conn: u32) -> Vec<f64> {
        use std::sync::atomic::Ordering::Relaxed;
        match self.conn(conn) {
            Some(c) => vec![c.last_ping.load(Relaxed) as f64, c.last_pong.load(Relaxed) as f64],
            None => Vec::new(),
        }
    }

    /// The resolved limits, for `server.limits`.
    #[napi]
    pub fn limits(&self) -> config::Limits {
        config::Limits::from(&self.engine.config)
    }

    /// The `onJoinRoom` hook's decision on a client's `join_room`.
    #[napi]
    pub fn resolve_join(&self, request: u32, allowed: bool) {
        self.engine.resolve_join(request, allowed);
    }
}

/// The first `trustProxy` entry that is not an address or CIDR range (null: all valid).
#[napi]
pub fn check_trust_proxy(entries: Vec<String>) -> Option<String> {
    trust_proxy::TrustProxy::parse(&entries).err()
}

/// Socket ids (UUID strings, possibly of sockets on other cluster nodes) as bytes; the facade
/// has already rejected anything that is not a UUID.
fn socket_uuids(ids: Option<Vec<String>>) -> Vec<[u8; 16]> {
    ids.unwrap_or_default()
        .iter()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok())
        .map(|u| *u.as_bytes())
        .collect()
}

impl NativeServer {
    fn conn(&self, conn: u32) -> Option<Arc<conn::Conn>> {
        self.engine.conns.get(&conn).map(|c| c.value().clone())
    }
}
