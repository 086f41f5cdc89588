//! The subscriber: one pub/sub connection holding the node-wide channel and the channels of the
//! rooms this node has members in. A control loop sends SUBSCRIBE/UNSUBSCRIBE as membership
//! changes (batched: every room waiting goes in one command) and answers the joins that waited
//! for a confirmation; a reader task delivers what arrives.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::{mpsc, oneshot};

use super::{broadcast_channel, log, room_channel, Cluster, Envelope, Waiting, BACKOFF_MIN};
use crate::engine::Engine;

/// Envelopes delivered under one cork before the reader writes and looks again.
const MAX_ENVELOPES_PER_CORK: usize = 256;
/// Most rooms in one SUBSCRIBE or UNSUBSCRIBE.
const MAX_ROOMS_PER_COMMAND: usize = 1024;
/// A (un)subscription Redis does not confirm within this is taken as a lost connection, so a
/// join never waits on a stalled Redis for longer.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the control loop ended.
enum Ended {
    Stopped,
    Lost,
}

impl Cluster {
    pub(super) async fn subscribe_loop(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut commands: mpsc::UnboundedReceiver<String>,
    ) {
        if self.link.sharded() {
            return self.sharded_loop(engine, commands).await;
        }
        let mut backoff = BACKOFF_MIN;
        let mut resubscribing = false;
        while !self.is_stopped() {
            let (sink, stream) = match self.link.pubsub().await {
                Some(Ok(p)) => p.split(),
                _ => {
                    self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            let (lost_tx, lost_rx) = oneshot::channel();
            let reader = tokio::spawn(self.clone().read_loop(engine.clone(), stream, lost_tx));
            let ended = self.control(&engine, sink, &mut commands, lost_rx, &mut resubscribing).await;
            reader.abort();
            self.connected.store(false, Ordering::Release);
            // Messages may be missed from here on: the mirrors no longer vouch for a history.
            engine.rooms.forget_mirrors(None);
            let released = self.table().set_connected(false);
            send_all(&engine, released);
            match ended {
                Ended::Stopped => break,
                Ended::Lost if self.is_stopped() => break,
                Ended::Lost => {
                    self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            if resubscribing {
                log("lost the Redis subscription; local delivery goes on, reconnecting with backoff");
                backoff = BACKOFF_MIN;
            }
            if !self.back_off(&mut backoff).await {
                break;
            }
        }
    }

    /// Subscribes the node-wide channel and every wanted room, then follows membership changes
    /// until the connection is lost or the cluster stops.
    async fn control(
        &self,
        engine: &Engine,
        mut sink: PubSubSink,
        commands: &mut mpsc::UnboundedReceiver<String>,
        mut lost: oneshot::Receiver<()>,
        resubscribing: &mut bool,
    ) -> Ended {
        let prefix = &self.config.prefix;
        let rooms = self.table().all();
        let mut first = vec![broadcast_channel(prefix)];
        first.extend(rooms.iter().map(|r| room_channel(prefix, r)));
        if !confirm(sink.subscribe(&first)).await {
            return Ended::Lost;
        }
        // Joins until now were answered at once; from here they wait for their SUBSCRIBE.
        self.table().set_connected(true);
        self.connected.store(true, Ordering::Release);
        self.subscribed.notify_waiters();
        if *resubscribing {
            log("subscriber reconnected to Redis; cross-node delivery resumes");
        }
        *resubscribing = true;
        loop {
            let room = tokio::select! {
                room = commands.recv() => room,
                _ = &mut lost => return Ended::Lost,
                _ = self.stop.notified() => return Ended::Stopped,
            };
            let Some(room) = room else { return Ended::Stopped };
            let mut batch = HashSet::from([room]);
            while batch.len() < MAX_ROOMS_PER_COMMAND {
                match commands.try_recv() {
                    Ok(room) => {
                        batch.insert(room);
                    }
                    Err(_) => break,
                }
            }
            // Decided on the state now: the last command for a room may be stale.
            let (subscribe, unsubscribe): (Vec<String>, Vec<String>) = {
                let table = self.table();
                batch.into_iter().partition(|room| table.wants(room))
            };
            if !subscribe.is_empty() {
                let names: Vec<String> = subscribe.iter().map(|r| room_channel(prefix, r)).collect();
                if !confirm(sink.subscribe(&names)).await {
                    return Ended::Lost;
                }
                let (replies, lingers) = self.table().subscribed(subscribe.iter().map(String::as_str));
                send_all(engine, replies);
                for (room, generation) in lingers {
                    self.start_linger(room, generation);
                }
            }
            if !unsubscribe.is_empty() {
                let names: Vec<String> = unsubscribe.iter().map(|r| room_channel(prefix, r)).collect();
                for room in &unsubscribe {
                    engine.rooms.forget_mirrors(Some(room));
                }
                if !confirm(sink.unsubscribe(&names)).await {
                    return Ended::Lost;
                }
            }
        }
    }

    /// Delivers every message that arrives; tells the control loop when the connection ends.
    async fn read_loop(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut stream: PubSubStream,
        lost: oneshot::Sender<()>,
    ) {
        while let Some(msg) = stream.next().await {
            // Cork: the envelopes already here go out with one write per connection, not one
            // per envelope and connection.
            let cork = crate::cork::CorkScope::begin();
            self.deliver(&engine, msg.get_channel_name().len(), msg.get_payload_bytes());
            let mut ended = false;
            for _ in 0..MAX_ENVELOPES_PER_CORK {
                match stream.next().now_or_never() {
                    Some(Some(msg)) => {
                        self.deliver(&engine, msg.get_channel_name().len(), msg.get_payload_bytes())
                    }
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
        let _ = lost.send(());
    }

    fn deliver(&self, engine: &Engine, channel_len: usize, data: &[u8]) {
        self.inbound_messages.fetch_add(1, Ordering::Relaxed);
        let bytes = data.len().saturating_add(channel_len);
        self.inbound_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        let Some(envelope) = Envelope::decode(data) else {
            return;
        };
        // A history message is delivered by every node, its origin too: Redis numbered it.
        if envelope.origin == self.node_id && envelope.numbered.is_none() {
            return;
        }
        if let (Some(numbered), Some(room)) = (&envelope.numbered, envelope.room.as_deref()) {
            if let Ok(frame) = std::str::from_utf8(&envelope.payload) {
                if envelope.origin != self.node_id {
                    self.received.fetch_add(1, Ordering::Relaxed);
                }
                engine.deliver_numbered(room, numbered, frame, &envelope.except);
            }
            return;
        }
        let Some(frame) = envelope.message() else {
            return;
        };
        self.received.fetch_add(1, Ordering::Relaxed);
        engine.deliver_local(frame, envelope.room.as_deref(), &envelope.except);
    }
}

impl Cluster {
    /// The subscriber on a Redis Cluster: sharded subscriptions (`SSUBSCRIBE`, one command per
    /// channel, as channels live on different shards) on one cluster connection, which
    /// reconnects and subscribes again by itself when a shard goes away and comes back.
    async fn sharded_loop(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut commands: mpsc::UnboundedReceiver<String>,
    ) {
        let (tx, pushes) = mpsc::unbounded_channel();
        let mut backoff = BACKOFF_MIN;
        let mut conn = loop {
            match self.link.subscriber(tx.clone()).await {
                Ok(c) => break c,
                Err(_) => {
                    self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.back_off(&mut backoff).await {
                        return;
                    }
                }
            }
        };
        let reader = tokio::spawn(self.clone().read_pushes(engine.clone(), pushes));
        let prefix = &self.config.prefix;
        while !confirm(conn.ssubscribe(broadcast_channel(prefix))).await {
            if !self.back_off(&mut backoff).await {
                reader.abort();
                return;
            }
        }
        let rooms = self.table().all();
        let failed = self.ssubscribe_each(&mut conn, &rooms).await;
        self.retry_later(failed);
        self.table().set_connected(true);
        let mut lost_shard = false;
        self.connected.store(true, Ordering::Release);
        self.subscribed.notify_waiters();
        loop {
            let room = tokio::select! {
                room = commands.recv() => room,
                _ = self.resubscribe.notified() => {
                    // A shard's connection dropped: once it is back, every channel is
                    // subscribed again (a no-op on the shards that stayed).
                    if !lost_shard {
                        self.subscribe_errors.fetch_add(1, Ordering::Relaxed);
                        log("a Redis Cluster shard connection dropped; subscribing again");
                    }
                    lost_shard = true;
                    if !self.pause(Duration::from_millis(300)).await {
                        break;
                    }
                    let all_back = confirm(conn.ssubscribe(broadcast_channel(prefix))).await && {
                        let rooms = self.table().all();
                        let failed = self.ssubscribe_each(&mut conn, &rooms).await;
                        failed.is_empty()
                    };
                    if all_back {
                        log("every Redis Cluster shard is back; cross-node delivery resumes");
                        lost_shard = false;
                    } else {
                        self.resubscribe.notify_one();
                    }
                    continue;
                }
                _ = self.stop.notified() => break,
            };
            let Some(room) = room else { break };
            let mut batch = HashSet::from([room]);
            while let Ok(room) = commands.try_recv() {
                batch.insert(room);
            }
            let (subscribe, unsubscribe): (Vec<String>, Vec<String>) = {
                let table = self.table();
                batch.into_iter().partition(|room| table.wants(room))
            };
            let failed = self.ssubscribe_each(&mut conn, &subscribe).await;
            // Answered either way: a join must not hang on a shard that is away; the failed
            // rooms are tried again shortly.
            let (replies, lingers) = self.table().subscribed(subscribe.iter().map(String::as_str));
            send_all(&engine, replies);
            for (room, generation) in lingers {
                self.start_linger(room, generation);
            }
            self.retry_later(failed);
            for room in unsubscribe {
                let _ = confirm(conn.sunsubscribe(room_channel(prefix, &room))).await;
            }
        }
        reader.abort();
        self.connected.store(false, Ordering::Release);
    }

    /// SSUBSCRIBEs each room's channel, side by side (a shard that is away costs one timeout,
    /// not one per room); returns the rooms that failed.
    async fn ssubscribe_each(
        &self,
        conn: &mut redis::cluster_async::ClusterConnection,
        rooms: &[String],
    ) -> Vec<String> {
        let runs = rooms.iter().map(|room| {
            let mut c = conn.clone();
            let channel = room_channel(&self.config.prefix, room);
            async move { (room, confirm(c.ssubscribe(channel)).await) }
        });
        futures_util::future::join_all(runs)
            .await
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(room, _)| room.clone())
            .collect()
    }

    fn retry_later(&self, rooms: Vec<String>) {
        if rooms.is_empty() {
            return;
        }
        let commands = self.commands.clone();
        if let Some(runtime) = self.runtime.get() {
            runtime.spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                for room in rooms {
                    let _ = commands.send(room);
                }
            });
        }
    }

    /// Delivers the sharded messages the cluster connection pushes.
    async fn read_pushes(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
    ) {
        while let Some(push) = pushes.recv().await {
            let cork = crate::cork::CorkScope::begin();
            self.deliver_push(&engine, push);
            for _ in 0..MAX_ENVELOPES_PER_CORK {
                match pushes.try_recv() {
                    Ok(push) => self.deliver_push(&engine, push),
                    Err(_) => break,
                }
            }
            drop(cork);
        }
    }

    fn deliver_push(&self, engine: &Engine, push: redis::PushInfo) {
        if push.kind == redis::PushKind::Disconnection {
            self.resubscribe.notify_one();
            return;
        }
        if !matches!(push.kind, redis::PushKind::SMessage | redis::PushKind::Message) {
            return;
        }
        if let [redis::Value::BulkString(channel), redis::Value::BulkString(payload)] = push.data.as_slice() {
            self.deliver(engine, channel.len(), payload);
        }
    }
}

/// Whether Redis confirmed a (un)subscription in time.
async fn confirm(request: impl std::future::Future<Output = redis::RedisResult<()>>) -> bool {
    matches!(tokio::time::timeout(CONFIRM_TIMEOUT, request).await, Ok(Ok(())))
}

fn send_all(engine: &Engine, replies: Vec<Waiting>) {
    for w in replies {
        w.release(engine);
    }
}
