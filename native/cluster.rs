//! Scale-out through Redis pub/sub: every broadcast and room message is published once on one
//! channel, and every other node fans it out to its own members. Each node also writes its
//! connection and room counts to a hash that expires, so a crashed node's numbers age out.
//!
//! While Redis is away, local delivery goes on; outbound envelopes wait in a bounded queue
//! (`OUTBOUND_CAPACITY`; past it new ones are dropped and counted) and both the publisher and
//! the subscriber reconnect with capped exponential backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use redis::AsyncCommands;
use tokio::sync::{mpsc, Notify};

use crate::engine::Engine;
use crate::error::{ClusterError, Result};

/// Envelopes waiting for Redis, at most.
pub const OUTBOUND_CAPACITY: usize = 16 * 1024;
/// How often a node writes its counts.
const REPORT_EVERY: Duration = Duration::from_millis(1000);
/// How long a node's counts live without being refreshed.
const REPORT_TTL_MS: i64 = 3500;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const ENVELOPE_VERSION: u8 = 2;

/// Options from `cluster: { redis, prefix }`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    pub prefix: String,
}

/// One message to fan out on every node.
#[derive(Debug, PartialEq)]
pub struct Envelope {
    pub origin: [u8; 16],
    pub binary: bool,
    pub room: Option<String>,
    /// Socket UUIDs to skip.
    pub except: Vec<[u8; 16]>,
    pub payload: Bytes,
}

impl Envelope {
    /// Binary layout: version, origin (16), kind, has-room, room len (u16) + room,
    /// except count (u32: a broadcast may skip more than 65,535 sockets) + 16 bytes each,
    /// payload.
    pub fn encode(&self) -> Vec<u8> {
        let room = self.room.as_deref().unwrap_or("");
        let mut out = Vec::with_capacity(25 + room.len() + self.except.len() * 16 + self.payload.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.origin);
        out.push(u8::from(self.binary));
        out.push(u8::from(self.room.is_some()));
        out.extend_from_slice(&(room.len() as u16).to_be_bytes());
        out.extend_from_slice(room.as_bytes());
        // A Vec of 16-byte ids cannot hold 2^32 of them on any machine this runs on; saturate
        // rather than wrap, so decoding fails instead of misreading the rest.
        out.extend_from_slice(&u32::try_from(self.except.len()).unwrap_or(u32::MAX).to_be_bytes());
        for id in &self.except {
            out.extend_from_slice(id);
        }
        out.extend_from_slice(&self.payload);
        out
    }

    /// Parses an envelope; `None` for anything malformed (never panics on bad input).
    pub fn decode(data: &[u8]) -> Option<Envelope> {
        fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if data.len() < n {
                return None;
            }
            let (head, rest) = data.split_at(n);
            *data = rest;
            Some(head)
        }
        fn u16_at(data: &mut &[u8]) -> Option<usize> {
            let b = take(data, 2)?;
            Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
        }
        let mut d = data;
        if take(&mut d, 1)? != [ENVELOPE_VERSION] {
            return None;
        }
        let origin: [u8; 16] = take(&mut d, 16)?.try_into().ok()?;
        let binary = take(&mut d, 1)?[0] == 1;
        let has_room = take(&mut d, 1)?[0] == 1;
        let room_len = u16_at(&mut d)?;
        let room = std::str::from_utf8(take(&mut d, room_len)?).ok()?.to_string();
        let count = take(&mut d, 4)?;
        let count = usize::try_from(u32::from_be_bytes([count[0], count[1], count[2], count[3]])).ok()?;
        // The ids must all be there before anything is allocated for them.
        let ids = take(&mut d, count.checked_mul(16)?)?;
        let except = ids.chunks_exact(16).filter_map(|id| id.try_into().ok()).collect();
        Some(Envelope {
            origin,
            binary,
            room: has_room.then_some(room),
            except,
            payload: Bytes::copy_from_slice(d),
        })
    }

    /// The WebSocket message to deliver; `None` when a text payload is not UTF-8.
    pub fn message(&self) -> Option<crate::outbox::OutFrame> {
        if self.binary {
            Some(crate::outbox::OutFrame::binary(&self.payload))
        } else {
            std::str::from_utf8(&self.payload).ok().map(crate::outbox::OutFrame::text)
        }
    }
}

/// Envelopes delivered under one cork before the subscriber writes and looks again.
const MAX_ENVELOPES_PER_CORK: usize = 256;

/// Most envelopes published in one pipeline.
const MAX_PUBLISH_BATCH: usize = 256;

/// Cluster-wide counts, from every live node's report.
#[derive(Debug, Default)]
pub struct ClusterCounts {
    pub nodes: u32,
    pub connections: u32,
    pub rooms: HashMap<String, u32>,
}

/// This node's link to the others.
pub struct Cluster {
    pub node_id: [u8; 16],
    config: ClusterConfig,
    client: redis::Client,
    outbound: mpsc::Sender<Vec<u8>>,
    outbound_rx: std::sync::Mutex<Option<mpsc::Receiver<Vec<u8>>>>,
    /// Envelopes dropped because the outbound queue was full.
    pub dropped: AtomicU64,
    /// Envelopes received from other nodes.
    pub received: AtomicU64,
    /// Whether the subscriber is currently connected.
    pub connected: AtomicBool,
    /// Publisher connections or PUBLISH pipelines that failed.
    pub publish_errors: AtomicU64,
    /// Subscriber connections that failed or were lost.
    pub subscribe_errors: AtomicU64,
    stop: Notify,
    stopped: AtomicBool,
}

fn channel(prefix: &str) -> String {
    format!("{prefix}:broadcast")
}

fn node_key(prefix: &str, node: &[u8; 16]) -> String {
    format!("{prefix}:node:{}", uuid::Uuid::from_bytes(*node).simple())
}

fn log(message: &str) {
    eprintln!("[rnode-ws cluster] {message}");
}

impl Cluster {
    /// Checks that Redis answers; the error names the URL so `listen()` can report it.
    pub async fn connect(config: ClusterConfig) -> Result<Arc<Cluster>> {
        let url = config.redis_url.as_str();
        let client =
            redis::Client::open(url).map_err(|e| ClusterError::InvalidUrl(url.to_string(), e.to_string()))?;
        let probe = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
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
        Ok(Arc::new(Cluster {
            node_id: *uuid::Uuid::new_v4().as_bytes(),
            config,
            client,
            outbound: tx,
            outbound_rx: std::sync::Mutex::new(Some(rx)),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            publish_errors: AtomicU64::new(0),
            subscribe_errors: AtomicU64::new(0),
            stop: Notify::new(),
            stopped: AtomicBool::new(false),
        }))
    }

    /// Starts the publisher, subscriber and reporter tasks.
    pub fn start(self: &Arc<Self>, engine: Arc<Engine>) {
        let rx = self.outbound_rx.lock().ok().and_then(|mut r| r.take());
        if let Some(rx) = rx {
            tokio::spawn(self.clone().publish_loop(rx));
        }
        tokio::spawn(self.clone().subscribe_loop(engine.clone()));
        tokio::spawn(self.clone().report_loop(engine));
    }

    /// Stops every task and removes this node's counts.
    pub async fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.stop.notify_waiters();
        if let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_millis(500), self.client.get_multiplexed_async_connection())
                .await
        {
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                conn.del::<_, ()>(node_key(&self.config.prefix, &self.node_id)),
            )
            .await;
        }
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Queues an envelope for the other nodes; never blocks. False when the queue is full.
    pub fn publish(&self, envelope: &Envelope) -> bool {
        match self.outbound.try_send(envelope.encode()) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Envelopes waiting to be published.
    pub fn queued(&self) -> usize {
        OUTBOUND_CAPACITY.saturating_sub(self.outbound.capacity())
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

    /// Publishes queued envelopes in order. Whatever is queued when Redis is free goes as one
    /// pipeline (up to `MAX_PUBLISH_BATCH` PUBLISH commands, one round trip), so Redis forwards
    /// a JS batch's broadcasts together and the other nodes fan them out under one cork: one
    /// write per member for the lot, not one per envelope.
    async fn publish_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Vec<u8>>) {
        let chan = channel(&self.config.prefix);
        let mut backoff = BACKOFF_MIN;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        'outer: while !self.is_stopped() {
            let mut conn = match self.client.get_multiplexed_async_connection().await {
                Ok(c) => c,
                Err(_) => {
                    self.publish_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                if batch.is_empty() {
                    tokio::select! {
                        item = rx.recv() => match item { Some(p) => batch.push(p), None => break 'outer },
                        _ = self.stop.notified() => break 'outer,
                    }
                }
                while batch.len() < MAX_PUBLISH_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let mut pipe = redis::pipe();
                for envelope in &batch {
                    pipe.publish(&chan, envelope.as_slice()).ignore();
                }
                match pipe.query_async::<()>(&mut conn).await {
                    Ok(()) => {
                        backoff = BACKOFF_MIN;
                        batch.clear();
                    }
                    Err(e) => {
                        self.publish_errors.fetch_add(1, Ordering::Relaxed);
                        // The batch is sent again after reconnecting (a PUBLISH that went through
                        // before the error is then delivered twice, as with a single retry).
                        log(&format!("publish failed ({e}); reconnecting"));
                        if !self.back_off(&mut backoff).await {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                }
            }
        }
    }

    async fn subscribe_loop(self: Arc<Self>, engine: Arc<Engine>) {
        let chan = channel(&self.config.prefix);
        let mut backoff = BACKOFF_MIN;
        let mut resubscribing = false;
        while !self.is_stopped() {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&chan).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let pubsub = match subscribed.await {
                Ok(p) => p,
                Err(_) => {
                    self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            if resubscribing {
                log("subscriber reconnected to Redis; cross-node delivery resumes");
            }
            resubscribing = true;
            backoff = BACKOFF_MIN;
            self.connected.store(true, Ordering::Release);
            let mut stream = pubsub.into_on_message();
            loop {
                tokio::select! {
                    msg = stream.next() => match msg {
                        Some(msg) => {
                            // Cork: the envelopes already here go out with one write per
                            // connection, not one per envelope and connection.
                            let cork = crate::cork::CorkScope::begin();
                            self.deliver(&engine, msg.get_payload_bytes());
                            let mut ended = false;
                            for _ in 0..MAX_ENVELOPES_PER_CORK {
                                match stream.next().now_or_never() {
                                    Some(Some(msg)) => self.deliver(&engine, msg.get_payload_bytes()),
                                    Some(None) => {
                                        ended = true;
                                        break;
                                    }
                                    None => break,
                                }
                            }
                            drop(cork);
                            if ended {
                                break;
                            }
                        }
                        None => break,
                    },
                    _ = self.stop.notified() => return,
                }
            }
            self.connected.store(false, Ordering::Release);
            if self.is_stopped() {
                break;
            }
            self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
            log("lost the Redis subscription; local delivery goes on, reconnecting with backoff");
            if !self.pause(BACKOFF_MIN).await {
                break;
            }
        }
    }

    fn deliver(&self, engine: &Engine, data: &[u8]) {
        let Some(envelope) = Envelope::decode(data) else {
            return;
        };
        if envelope.origin == self.node_id {
            return;
        }
        let Some(msg) = envelope.message() else {
            return;
        };
        self.received.fetch_add(1, Ordering::Relaxed);
        engine.deliver_local(msg, envelope.room.as_deref(), &envelope.except);
    }

    async fn report_loop(self: Arc<Self>, engine: Arc<Engine>) {
        let key = node_key(&self.config.prefix, &self.node_id);
        let mut conn = None;
        while !self.is_stopped() {
            if conn.is_none() {
                conn = self.client.get_multiplexed_async_connection().await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let mut fields: Vec<(String, u32)> =
                    vec![("connections".to_string(), engine.conns.len() as u32)];
                for (room, n) in engine.rooms.counts() {
                    fields.push((format!("room:{room}"), n));
                }
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .del(&key)
                    .ignore()
                    .hset_multiple(&key, &fields)
                    .ignore()
                    .pexpire(&key, REPORT_TTL_MS)
                    .ignore();
                if pipe.query_async::<()>(c).await.is_err() {
                    conn = None;
                }
            }
            if !self.pause(REPORT_EVERY).await {
                break;
            }
        }
    }

    /// Sums the counts every node reported; this node's own numbers are taken live.
    pub async fn counts(&self, engine: &Engine) -> Result<ClusterCounts> {
        let redis_err = |e: redis::RedisError| ClusterError::from_redis(&self.config.redis_url, &e);
        let mut conn = self.client.get_multiplexed_async_connection().await.map_err(redis_err)?;
        let own = node_key(&self.config.prefix, &self.node_id);
        let pattern = format!("{}:node:*", self.config.prefix);
        let keys: Vec<String> = {
            let mut iter = conn.scan_match::<_, String>(&pattern).await.map_err(redis_err)?;
            let mut keys = Vec::new();
            while let Some(k) = iter.next_item().await {
                keys.push(k.map_err(redis_err)?);
            }
            keys
        };
        let mut counts =
            ClusterCounts { nodes: 1, connections: engine.conns.len() as u32, ..Default::default() };
        for (room, n) in engine.rooms.counts() {
            *counts.rooms.entry(room).or_default() += n;
        }
        for key in keys.into_iter().filter(|k| *k != own) {
            let fields: HashMap<String, u32> = conn.hgetall(&key).await.map_err(redis_err)?;
            if fields.is_empty() {
                continue;
            }
            counts.nodes += 1;
            for (field, n) in fields {
                if field == "connections" {
                    counts.connections += n;
                } else if let Some(room) = field.strip_prefix("room:") {
                    *counts.rooms.entry(room.to_string()).or_default() += n;
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trip() {
        let e = Envelope {
            origin: [7; 16],
            binary: true,
            room: Some("général".into()),
            except: vec![[1; 16], [2; 16]],
            payload: Bytes::from_static(&[0, 255, 1]),
        };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
        let plain =
            Envelope { origin: [1; 16], binary: false, room: None, except: vec![], payload: Bytes::new() };
        assert_eq!(Envelope::decode(&plain.encode()), Some(plain));
    }

    #[test]
    fn malformed_envelopes_are_ignored() {
        assert_eq!(Envelope::decode(&[]), None);
        assert_eq!(Envelope::decode(&[9; 40]), None);
        let mut truncated = Envelope {
            origin: [0; 16],
            binary: false,
            room: Some("r".into()),
            except: vec![[3; 16]],
            payload: Bytes::new(),
        }
        .encode();
        truncated.truncate(25);
        assert_eq!(Envelope::decode(&truncated), None);
    }

    #[test]
    fn more_than_65535_except_ids_survive_the_envelope() {
        let except: Vec<[u8; 16]> = (0..70_000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        let e = Envelope {
            origin: [5; 16],
            binary: false,
            room: Some("r".into()),
            except,
            payload: Bytes::from_static(b"after the ids"),
        };
        assert_eq!(Envelope::decode(&e.encode()), Some(e));
    }

    #[test]
    fn an_except_count_past_the_data_is_refused_before_allocating() {
        let mut e =
            Envelope { origin: [0; 16], binary: true, room: None, except: vec![], payload: Bytes::new() }
                .encode();
        // The count is the last field before the payload.
        let at = e.len() - 4;
        e[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        e.extend_from_slice(&[1; 32]);
        assert_eq!(Envelope::decode(&e), None);
        // An envelope of the earlier version is not misread.
        let mut old =
            Envelope { origin: [0; 16], binary: true, room: None, except: vec![], payload: Bytes::new() }
                .encode();
        old[0] = 1;
        assert_eq!(Envelope::decode(&old), None);
    }
}
