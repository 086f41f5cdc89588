//! Cluster presence in Redis. Per room, a hash (member connection -> entry) and a sorted set
//! (member connection -> expiry time). A node writes its members on join, removes them on
//! leave, and pushes their expiry forward every `REFRESH_EVERY`; a node that dies stops doing
//! so, and its members drop out of every read within `ENTRY_TTL_MS`. Both keys share a hash
//! tag (the room), so each command stays within one slot of a Redis Cluster.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;
use tokio::sync::mpsc;

use super::Cluster;
use crate::clock::wall_ms;
use crate::engine::Engine;
use crate::error::{ClusterError, Result};
use crate::presence::PresenceEntry;

/// How often a node pushes its members' expiry forward.
const REFRESH_EVERY: Duration = Duration::from_millis(1000);
/// How long an entry counts without a refresh.
const ENTRY_TTL_MS: u64 = 3500;
/// The keys themselves expire when no node refreshes them any more.
const KEY_TTL_MS: i64 = 2 * ENTRY_TTL_MS as i64;
/// Most operations in one pipeline.
const MAX_OPS_PER_PIPELINE: usize = 1024;

/// Pipelines by room: a room's keys share a slot, different rooms' may not.
#[derive(Default)]
struct Pipes(std::collections::HashMap<String, redis::Pipeline>);

impl Pipes {
    fn for_room(&mut self, room: &str) -> &mut redis::Pipeline {
        self.0.entry(room.to_string()).or_insert_with(redis::pipe)
    }

    fn into_pipelines(self) -> Vec<redis::Pipeline> {
        self.0.into_values().collect()
    }
}

/// A membership change to write.
pub enum PresenceOp {
    Join { room: String, member: String, value: String },
    Leave { room: String, member: String },
}

fn entries_key(prefix: &str, room: &str) -> String {
    format!("{prefix}:presence:{{{room}}}")
}

fn expiry_key(prefix: &str, room: &str) -> String {
    format!("{prefix}:presence-expiry:{{{room}}}")
}

/// A connection's name in the presence keys.
pub fn member_name(uuid: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*uuid).simple().to_string()
}

impl Cluster {
    /// The stored value of an entry: the entry plus the node it lives on.
    pub fn presence_value(&self, entry: &PresenceEntry) -> String {
        let fields: Value = serde_json::from_str(&entry.fields).unwrap_or(Value::Null);
        serde_json::json!({ "node": member_name(&self.node_id), "client_id": entry.client_id, "fields": fields })
            .to_string()
    }

    /// Queues a membership change for Redis (a no-op without `presence`).
    pub fn presence_op(&self, op: PresenceOp) {
        if let Some(tx) = &self.presence {
            let _ = tx.send(op);
        }
    }

    fn add_write(&self, pipes: &mut Pipes, room: &str, member: &str, value: &str, expiry: u64) {
        let (entries, expiries) =
            (entries_key(&self.config.prefix, room), expiry_key(&self.config.prefix, room));
        pipes
            .for_room(room)
            .hset(&entries, member, value)
            .ignore()
            .zadd(&expiries, member, expiry)
            .ignore()
            .pexpire(&entries, KEY_TTL_MS)
            .ignore()
            .pexpire(&expiries, KEY_TTL_MS)
            .ignore();
    }

    /// Writes membership changes in order and refreshes every local member each second, from
    /// one task, so a refresh can never write back a member whose leave was already written.
    pub(super) async fn presence_loop(
        self: Arc<Self>,
        engine: Arc<Engine>,
        mut ops: mpsc::UnboundedReceiver<PresenceOp>,
    ) {
        let mut conn = None;
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !self.is_stopped() {
            let mut pipes = Pipes::default();
            tokio::select! {
                op = ops.recv() => {
                    let Some(op) = op else { break };
                    let expiry = wall_ms().saturating_add(ENTRY_TTL_MS);
                    let mut next = Some(op);
                    let mut n = 0;
                    while let Some(op) = next.take() {
                        match op {
                            PresenceOp::Join { room, member, value } => {
                                self.add_write(&mut pipes, &room, &member, &value, expiry)
                            }
                            PresenceOp::Leave { room, member } => {
                                pipes
                                    .for_room(&room)
                                    .hdel(entries_key(&self.config.prefix, &room), &member)
                                    .ignore()
                                    .zrem(expiry_key(&self.config.prefix, &room), &member)
                                    .ignore();
                            }
                        }
                        n += 1;
                        if n < MAX_OPS_PER_PIPELINE {
                            next = ops.try_recv().ok();
                        }
                    }
                }
                _ = tick.tick() => {
                    let expiry = wall_ms().saturating_add(ENTRY_TTL_MS);
                    let fields = &engine.config.presence_fields;
                    for (room, _) in engine.rooms.counts() {
                        for member in engine.rooms.member_conns(&room) {
                            let entry = crate::presence::entry(&member, fields);
                            let value = self.presence_value(&entry);
                            self.add_write(&mut pipes, &room, &member_name(&member.uuid), &value, expiry);
                        }
                    }
                }
                _ = self.stop.notified() => break,
            }
            if conn.is_none() {
                conn = self.link.connection().await.ok();
            }
            if let Some(c) = conn.as_ref() {
                // A lost write is repaired by the next refresh (joins) or by the expiry (leaves).
                if super::link::run_grouped(c, pipes.into_pipelines()).await.is_err() {
                    conn = None;
                }
            }
        }
    }

    /// The room's members on every node: this node's from its registry, the others' from
    /// Redis (entries whose expiry passed are left out and cleaned up).
    pub async fn presence(&self, engine: &Engine, room: &str) -> Result<Vec<PresenceEntry>> {
        let redis_err = |e: redis::RedisError| ClusterError::from_redis(&self.config.redis_url, &e);
        let mut conn = self.link.connection().await.map_err(redis_err)?;
        let (entries, expiries) =
            (entries_key(&self.config.prefix, room), expiry_key(&self.config.prefix, room));
        let now = wall_ms();
        let live: Vec<String> = conn.zrangebyscore(&expiries, now, "+inf").await.map_err(redis_err)?;
        let expired: Vec<String> = conn.zrangebyscore(&expiries, "-inf", now).await.map_err(redis_err)?;
        if !expired.is_empty() {
            let mut pipe = redis::pipe();
            pipe.hdel(&entries, &expired).ignore().zrembyscore(&expiries, "-inf", now).ignore();
            pipe.query_async::<()>(&mut conn).await.map_err(redis_err)?;
        }
        let local = engine.rooms.member_conns(room);
        let fields = &engine.config.presence_fields;
        let mut out: Vec<PresenceEntry> = local.iter().map(|c| crate::presence::entry(c, fields)).collect();
        if live.is_empty() {
            return Ok(out);
        }
        let own = member_name(&self.node_id);
        let local: HashSet<String> = local.iter().map(|c| member_name(&c.uuid)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("HMGET").arg(&entries).arg(&live).query_async(&mut conn).await.map_err(redis_err)?;
        for (member, value) in live.iter().zip(values) {
            let parsed = value.and_then(|v| serde_json::from_str::<Value>(&v).ok());
            let Some(Value::Object(v)) = parsed else { continue };
            if local.contains(member) || v.get("node").and_then(Value::as_str) == Some(own.as_str()) {
                continue;
            }
            let client_id = v.get("client_id").and_then(Value::as_str).unwrap_or_default().to_string();
            let fields = v.get("fields").cloned().unwrap_or_else(|| Value::Object(Default::default()));
            out.push(PresenceEntry { client_id, fields: fields.to_string() });
        }
        Ok(out)
    }
}
