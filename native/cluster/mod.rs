//! Scale-out through Redis pub/sub. A room message is published once on the room's channel,
//! which only nodes with members in the room subscribe to (see `channels`); broadcasts to
//! everyone and control messages go on one node-wide channel every node subscribes to. With
//! `channels: 'single'` everything goes on the node-wide channel, as before per-room channels.
//! Each node also writes its connection and room counts to a hash that expires, so a crashed
//! node's numbers age out (see `report`).
//!
//! While Redis is away, local delivery goes on; outbound envelopes wait in a bounded queue
//! (`OUTBOUND_CAPACITY`; past it new ones are dropped and counted) and both the publisher and
//! the subscriber reconnect with capped exponential backoff.

mod channels;
mod envelope;
pub mod history;
mod link;
mod presence;
mod publisher;
mod replay;
mod report;
pub mod sessions;
mod subscriber;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::conn::Conn;
use crate::engine::Engine;
use crate::error::{ClusterError, Result};

use channels::{Channels, Reply, Work};
pub use envelope::{Envelope, Numbered};
pub use presence::{member_name, PresenceOp};

/// Envelopes waiting for Redis, at most.
pub const OUTBOUND_CAPACITY: usize = 16 * 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which channels carry room messages (`cluster.channels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMode {
    /// One channel per room, subscribed while the node has members in it.
    Room,
    /// Everything on the node-wide channel: every node receives every envelope.
    Single,
}

/// Options from `cluster: { redis, prefix, channels, unsubscribeLinger }`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The first URL (named in errors).
    pub redis_url: String,
    /// Every URL given (a Redis Cluster's seed nodes).
    pub redis_nodes: Vec<String>,
    /// A Redis Cluster: sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`) and slot routing.
    pub sharded: bool,
    pub prefix: String,
    pub mode: ChannelMode,
    /// How long a room channel stays subscribed after its last local member left.
    pub unsubscribe_linger: Duration,
    /// Whether members are written to Redis for cluster presence (`presence` option).
    pub presence: bool,
}

/// What the publisher sends to Redis, in order.
enum Outbound {
    /// An encoded envelope and the channel it goes on.
    Publish(String, Vec<u8>),
    /// A message for a room's history in Redis (see `history`).
    Numbered(Box<history::NumberedPublish>),
}

/// What waits for a room's subscription.
enum Waiting {
    /// A reply to a client.
    Reply { conn: Arc<Conn>, text: String },
    /// A join of a room with history in Redis, which goes on once the room's messages reach
    /// this node (see `replay`).
    Ready(tokio::sync::oneshot::Sender<()>),
}

/// This node's link to the others.
pub struct Cluster {
    pub node_id: [u8; 16],
    config: ClusterConfig,
    link: link::Link,
    outbound: mpsc::Sender<Outbound>,
    outbound_rx: Mutex<Option<mpsc::Receiver<Outbound>>>,
    /// Room channels wanted, and replies waiting for their subscription.
    channels: Mutex<Channels<Waiting>>,
    /// Rooms whose subscription the subscriber must reconsider.
    commands: mpsc::UnboundedSender<String>,
    commands_rx: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
    /// The runtime the tasks run on (joins and leaves also come from the JS thread).
    runtime: OnceLock<tokio::runtime::Handle>,
    engine: OnceLock<Weak<Engine>>,
    /// Membership changes for the presence keys (with the `presence` option).
    presence: Option<mpsc::UnboundedSender<PresenceOp>>,
    presence_rx: Mutex<Option<mpsc::UnboundedReceiver<PresenceOp>>>,
    /// Rooms with history whose messages could not all go through Redis: the next one starts
    /// a new epoch.
    lost_rooms: Mutex<std::collections::HashSet<String>>,
    /// Sessions in Redis (with `recovery`).
    pub sessions: Option<sessions::SessionStore>,
    /// Envelopes dropped because the outbound queue was full (or could not be encoded).
    pub dropped: AtomicU64,
    /// Envelopes received from other nodes and delivered here.
    pub received: AtomicU64,
    /// Every pub/sub message Redis sent this node (also its own echoes), and their bytes
    /// (channel name and payload).
    pub inbound_messages: AtomicU64,
    pub inbound_bytes: AtomicU64,
    /// Whether the subscriber is currently connected.
    pub connected: AtomicBool,
    /// Publisher connections or PUBLISH pipelines that failed.
    pub publish_errors: AtomicU64,
    /// Subscriber connections that failed or were lost.
    pub subscribe_errors: AtomicU64,
    /// Woken when the subscriber holds its channels after (re)connecting.
    subscribed: Notify,
    /// Redis Cluster: a shard connection dropped, subscribe everything again.
    resubscribe: Notify,
    stop: Notify,
    stopped: AtomicBool,
}

impl Waiting {
    fn into_text(self) -> Option<String> {
        match self {
            Waiting::Reply { text, .. } => Some(text),
            Waiting::Ready(tx) => {
                let _ = tx.send(());
                None
            }
        }
    }

    /// Sends the reply, or lets the waiting join go on.
    fn release(self, engine: &Engine) {
        match self {
            Waiting::Reply { conn, text } => {
                engine.reply(&conn, text);
            }
            Waiting::Ready(tx) => {
                let _ = tx.send(());
            }
        }
    }
}

/// The node-wide channel: broadcasts to everyone, and room messages in `single` mode.
fn broadcast_channel(prefix: &str) -> String {
    format!("{prefix}:broadcast")
}

/// A room's channel. On a Redis Cluster its slot comes from the whole name, so the rooms
/// spread over the shards.
fn room_channel(prefix: &str, room: &str) -> String {
    format!("{prefix}:room:{room}")
}

fn log(message: &str) {
    eprintln!("[rnode-ws cluster] {message}");
}

impl Cluster {
    /// Checks that Redis answers; the error names the URL so `listen()` can report it.
    pub async fn connect(config: ClusterConfig, recovery: Option<u64>) -> Result<Arc<Cluster>> {
        let url = config.redis_url.as_str();
        let link = link::Link::open(&config.redis_nodes, config.sharded)
            .map_err(|e| ClusterError::InvalidUrl(url.to_string(), e.to_string()))?;
        let probe = async {
            let mut conn = link.connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ClusterError::from_redis(url, &e).into()),
            Err(_) => {
                return Err(ClusterError::Unreachable(url.to_string(), "no answer within 3 s".into()).into())
            }
        }
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (presence, presence_rx) = if config.presence {
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        Ok(Arc::new(Cluster {
            node_id: *uuid::Uuid::new_v4().as_bytes(),
            config,
            link,
            outbound: tx,
            outbound_rx: Mutex::new(Some(rx)),
            channels: Mutex::new(Channels::default()),
            commands,
            commands_rx: Mutex::new(Some(commands_rx)),
            runtime: OnceLock::new(),
            engine: OnceLock::new(),
            presence,
            presence_rx: Mutex::new(presence_rx),
            lost_rooms: Mutex::new(Default::default()),
            sessions: recovery.map(sessions::SessionStore::new),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            inbound_messages: AtomicU64::new(0),
            inbound_bytes: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            publish_errors: AtomicU64::new(0),
            subscribe_errors: AtomicU64::new(0),
            subscribed: Notify::new(),
            resubscribe: Notify::new(),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
        }))
    }

    /// Starts the publisher, subscriber and reporter tasks (called on the runtime).
    pub fn start(self: &Arc<Self>, engine: Arc<Engine>) {
        let _ = self.runtime.set(tokio::runtime::Handle::current());
        let _ = self.engine.set(Arc::downgrade(&engine));
        let rx = self.outbound_rx.lock().ok().and_then(|mut r| r.take());
        if let Some(rx) = rx {
            tokio::spawn(self.clone().publish_loop(rx));
        }
        let commands = self.commands_rx.lock().ok().and_then(|mut r| r.take());
        if let Some(commands) = commands {
            tokio::spawn(self.clone().subscribe_loop(engine.clone(), commands));
        }
        let presence = self.presence_rx.lock().ok().and_then(|mut r| r.take());
        if let Some(ops) = presence {
            tokio::spawn(self.clone().presence_loop(engine.clone(), ops));
        }
        if let Some(store) = &self.sessions {
            tokio::spawn(self.clone().session_loop(engine.clone(), store.take_queue()));
        }
        tokio::spawn(self.clone().report_loop(engine));
    }

    /// Waits (at most `limit`) until the subscriber holds its channels, so that a server that
    /// just started answers joins the way it will from then on (see `channels`).
    pub async fn wait_subscribed(&self, limit: Duration) {
        let subscribed = self.subscribed.notified();
        if self.connected.load(Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(limit, subscribed).await;
    }

    /// Stops every task and removes this node's counts.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
        self.remove_report().await;
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// The channel an envelope goes on.
    fn channel_of(&self, room: Option<&str>) -> String {
        match (self.config.mode, room) {
            (ChannelMode::Room, Some(room)) => room_channel(&self.config.prefix, room),
            _ => broadcast_channel(&self.config.prefix),
        }
    }

    /// Queues an envelope for the other nodes; never blocks. False when the queue is full (or
    /// the envelope cannot be encoded); both are counted as dropped.
    pub fn publish(&self, envelope: &Envelope) -> bool {
        let queued = envelope.encode().ok().is_some_and(|data| {
            let channel = self.channel_of(envelope.room.as_deref());
            self.outbound.try_send(Outbound::Publish(channel, data)).is_ok()
        });
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queued
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Channels<Waiting>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A local member joined `room`; `reply` is its `room_joined`. Returned when it can be sent
    /// now; otherwise it is sent once Redis confirmed the room's subscription.
    pub fn member_joined(&self, room: &str, conn: &Arc<Conn>, reply: String) -> Option<String> {
        if self.config.mode == ChannelMode::Single {
            return Some(reply);
        }
        let (reply, work) = self.table().joined(room, Waiting::Reply { conn: conn.clone(), text: reply });
        self.after(room, work);
        match reply {
            Reply::Now(w) => w.into_text(),
            Reply::Deferred => None,
        }
    }

    /// A reply about `room` that must not overtake a `room_joined` still waiting.
    pub fn in_order(&self, room: &str, conn: &Arc<Conn>, reply: String) -> Option<String> {
        if self.config.mode == ChannelMode::Single {
            return Some(reply);
        }
        match self.table().in_order(room, Waiting::Reply { conn: conn.clone(), text: reply }) {
            Reply::Now(w) => w.into_text(),
            Reply::Deferred => None,
        }
    }

    /// `n` local members left `room` (a leave, a disconnect, or the room's deletion).
    pub fn members_left(self: &Arc<Self>, room: &str, n: u32) {
        if self.config.mode == ChannelMode::Single || n == 0 {
            return;
        }
        let work = self.table().left(room, n);
        self.after(room, work);
    }

    fn after(&self, room: &str, work: Work) {
        match work {
            Work::None => {}
            Work::Subscribe => {
                let _ = self.commands.send(room.to_string());
            }
            Work::Linger(generation) => self.start_linger(room.to_string(), generation),
        }
    }

    /// Unsubscribes the room's channel after the linger, unless a member came back.
    fn start_linger(&self, room: String, generation: u64) {
        let (Some(runtime), Some(engine)) = (self.runtime.get(), self.engine.get().cloned()) else {
            return;
        };
        let linger = self.config.unsubscribe_linger;
        runtime.spawn(async move {
            tokio::time::sleep(linger).await;
            let Some(engine) = engine.upgrade() else { return };
            let Some(cluster) = engine.cluster.get() else { return };
            let members = engine.rooms.members(&room).len() as u32;
            if cluster.table().linger_ended(&room, generation, members) {
                let _ = cluster.commands.send(room);
            }
        });
    }

    /// Whether members are written to Redis for cluster presence.
    pub fn has_presence(&self) -> bool {
        self.presence.is_some()
    }

    /// Answers a client's `presence` request with the cluster's view, once Redis answered
    /// (this node's view if Redis fails).
    pub fn reply_presence(&self, conn: Arc<Conn>, room: String, request_id: Option<serde_json::Value>) {
        let (Some(runtime), Some(engine)) = (self.runtime.get(), self.engine.get().cloned()) else {
            return;
        };
        runtime.spawn(async move {
            let Some(engine) = engine.upgrade() else { return };
            let Some(cluster) = engine.cluster.get() else { return };
            let entries = match cluster.presence(&engine, &room).await {
                Ok(entries) => entries,
                Err(_) => engine.presence(&room),
            };
            engine.reply(&conn, crate::presence::reply(&room, &entries, &request_id));
        });
    }

    /// Envelopes waiting to be published.
    pub fn queued(&self) -> usize {
        OUTBOUND_CAPACITY.saturating_sub(self.outbound.capacity())
    }

    /// Room channels this node holds (or is about to).
    pub fn room_channels(&self) -> u32 {
        self.table().len() as u32
    }

    /// Waits the current backoff and doubles it (capped); returns false when stopped meanwhile.
    async fn back_off(&self, backoff: &mut Duration) -> bool {
        let go_on = self.pause(*backoff).await;
        *backoff = (*backoff * 2).min(BACKOFF_MAX);
        go_on
    }

    /// Waits `delay` unless the cluster is stopped first; returns false when stopped.
    async fn pause(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => !self.is_stopped(),
            _ = self.stop.notified() => false,
        }
    }
}
