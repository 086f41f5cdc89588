//! rnode-ws engine: a WebSocket server for Node.js on tokio, with its own RFC 6455 framing.
//!
//! This file is the napi surface and nothing more; each concept lives in its own module.
#![deny(clippy::unwrap_used)]

mod cluster;
mod config;
mod connection;
mod engine;
mod error;
mod events;
pub mod fast;
mod frame;
mod handshake;
mod presence;
mod protocol;
mod rooms;
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Function, PromiseRaw, Uint8ArraySlice};
use napi::{Env, Result};
use napi_derive::napi;

use crate::config::{Config, NativeOptions};
use crate::connection::OutFrame;
use crate::engine::Engine;
use crate::rooms::{JoinError, RoomInfo, RoomSpec};

/// The tokio runtime every server of this process runs on. Its workers share the machine with
/// the JS thread, which does the application's work: one worker per core but one (at least
/// one). On the 2-core benchmark machine, two workers were slower than one unpinned (connects
/// 11k/s vs 13-14k/s, p99 at 50k msgs/s 6-11 ms vs 5-6 ms). `TOKIO_WORKER_THREADS` overrides it.
#[napi_derive::module_init]
fn init_runtime() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("rnode-ws");
    #[cfg(target_os = "linux")]
    if std::env::var_os("RNODE_SCHED_BATCH").is_none_or(|v| v != "0") {
        builder.on_thread_start(batch_policy);
    }
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    if let Ok(runtime) = builder.build() {
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Puts the calling worker thread under `SCHED_BATCH`: same CPU share, but a socket becoming
/// ready no longer preempts the JS thread when both share a core. JS then finishes its batch
/// (and its corked writes) before the worker reads again, so the worker reads more per turn and
/// the two threads switch about 5x less often. Pinned to one core: echo 4 KiB +15%, echo 32 B
/// +27%, broadcast +19% (medians of 5-7 interleaved runs); unpinned: no change, the worker has
/// a core of its own. `RNODE_SCHED_BATCH=0` keeps the normal policy. A failure (a sandbox that
/// forbids the call) leaves the thread as it was.
#[cfg(target_os = "linux")]
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param (priority 0, as
    // SCHED_BATCH requires). Nothing depends on the result.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}

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
}

/// A server collected without `close()` (never listened, say) leaves the fast-call table, so
/// its engine is freed with it. Runs on the JS thread that created it (napi finalizer).
impl Drop for NativeServer {
    fn drop(&mut self) {
        fast::unregister(self.handle, &self.engine);
    }
}

#[napi]
impl NativeServer {
    #[napi(constructor)]
    pub fn new(options: Option<NativeOptions>) -> Self {
        let config = Config::from_options(&options.unwrap_or_default());
        let engine = Arc::new(Engine::new(config));
        NativeServer { handle: fast::register(engine.clone()), engine }
    }

    /// Registers a WebSocket path; `hooks` says which JS handlers it has (engine::hooks bits).
    #[napi]
    pub fn add_route(&self, path: String, hooks: u32) {
        self.engine.add_route(&path, hooks);
    }

    /// Binds and starts accepting; `wake` is called (with a hint of the queue length) whenever
    /// events are waiting for `pollEvents`.
    #[napi(ts_return_type = "Promise<number>")]
    pub fn listen<'env>(
        &self,
        env: &'env Env,
        wake: Function<'env, u32, ()>,
    ) -> Result<PromiseRaw<'env, u32>> {
        let tsfn = wake.build_threadsafe_function::<u32>().callee_handled::<false>().build()?;
        self.engine.events.set_wake(tsfn);
        let engine = self.engine.clone();
        env.spawn_future(async move {
            let waker = engine.clone();
            tokio::spawn(async move { waker.events.wake_loop().await });
            let port = async {
                if let Some(config) = engine.config.cluster.clone() {
                    let cluster = cluster::Cluster::connect(config).await?;
                    cluster.start(engine.clone());
                    cluster.wait_subscribed(Duration::from_secs(3)).await;
                    let _ = engine.cluster.set(cluster);
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
                c.close(code as u16, &reason);
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
        env.spawn_future(async move {
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
        fast::unregister(self.handle, &self.engine);
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
            messages_in: s.messages_in.load(Relaxed) as f64,
            messages_out: s.messages_out.load(Relaxed) as f64,
            bytes_in: s.bytes_in.load(Relaxed) as f64,
            bytes_out: s.bytes_out.load(Relaxed) as f64,
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
        }
    }

    /// Counts summed over every node of the cluster (rejects without a cluster).
    #[napi(ts_return_type = "Promise<ClusterStats>")]
    pub fn cluster_stats<'env>(&self, env: &'env Env) -> Result<PromiseRaw<'env, ClusterStats>> {
        let engine = self.engine.clone();
        env.spawn_future(async move {
            let cluster = engine.cluster.get().cloned().ok_or(error::Error::NoCluster)?;
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
        env.spawn_future(async move {
            let cluster = engine.cluster.get().cloned().ok_or(error::Error::NoCluster)?;
            if !cluster.has_presence() {
                return Ok(engine.presence(&room));
            }
            Ok(cluster.presence(&engine, &room).await?)
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

    /// Deletes a room; its members get `room_left`.
    #[napi]
    pub fn delete_room(&self, id: String) -> bool {
        self.engine.delete_room(&id)
    }

    /// Joins a connection to a room: "joined", "already", or the reason it could not.
    #[napi]
    pub fn join_room(&self, conn: u32, id: String) -> String {
        let Some(c) = self.conn(conn) else {
            return JoinError::Closed.as_str().to_string();
        };
        match self.engine.join(&c, &id) {
            Ok(true) => "joined".to_string(),
            Ok(false) => "already".to_string(),
            Err(e) => e.as_str().to_string(),
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

    /// Sends a `room_message` frame from `conn` to the other members; -1 when not a member.
    #[napi]
    pub fn send_to_room(&self, conn: u32, room: String, message_json: String) -> i32 {
        let Some(c) = self.conn(conn) else { return -1 };
        if !self.engine.rooms.is_member(conn, &room) {
            return -1;
        }
        let message: serde_json::Value =
            serde_json::from_str(&message_json).unwrap_or(serde_json::Value::Null);
        let frame = protocol::room_message(&room, &message, &c.client_id);
        self.engine.room_message_from(&c, &room, frame) as i32
    }

    /// Sends text to a room or everyone, skipping `except`; the bytes are shared by all recipients.
    #[napi]
    pub fn broadcast_text(&self, text: String, room: Option<String>, except: Option<Vec<String>>) -> u32 {
        self.engine.broadcast(OutFrame::text(&text), room.as_deref(), &socket_uuids(except))
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
    pub fn set_metadata(&self, conn: u32, key: String, json: Option<String>) -> bool {
        let Some(c) = self.conn(conn) else {
            return false;
        };
        let Some(mut extra) = c.extra() else {
            return false;
        };
        let meta = &mut extra.get_or_insert_with(Default::default).metadata;
        match json {
            Some(v) => meta.insert(key.clone(), v),
            None => meta.remove(&key),
        };
        drop(extra);
        self.engine.metadata_changed(&c, &key);
        true
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
    fn conn(&self, conn: u32) -> Option<Arc<connection::Conn>> {
        self.engine.conns.get(&conn).map(|c| c.value().clone())
    }
}
