//! Node counts: every node writes its connection and room counts to a hash that expires, so a
//! crashed node's numbers age out; `counts` sums the live ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use super::Cluster;
use crate::engine::Engine;
use crate::error::{ClusterError, Result};

/// How often a node writes its counts.
const REPORT_EVERY: Duration = Duration::from_millis(1000);
/// How long a node's counts live without being refreshed.
const REPORT_TTL_MS: i64 = 3500;

/// Cluster-wide counts, from every live node's report.
#[derive(Debug, Default)]
pub struct ClusterCounts {
    pub nodes: u32,
    pub connections: u32,
    pub rooms: HashMap<String, u32>,
}

/// A node's counts. The prefix is the hash tag, so a node's hash and the node index live in
/// one slot of a Redis Cluster and `counts` needs no scan over the shards.
fn node_key(prefix: &str, node: &[u8; 16]) -> String {
    format!("{{{prefix}}}:node:{}", uuid::Uuid::from_bytes(*node).simple())
}

/// The live nodes: a sorted set of node id -> expiry time.
fn nodes_key(prefix: &str) -> String {
    format!("{{{prefix}}}:nodes")
}

impl Cluster {
    pub(super) async fn report_loop(self: Arc<Self>, engine: Arc<Engine>) {
        let key = node_key(&self.config.prefix, &self.node_id);
        let nodes = nodes_key(&self.config.prefix);
        let id = uuid::Uuid::from_bytes(self.node_id).simple().to_string();
        let mut conn = None;
        while !self.is_stopped() {
            if conn.is_none() {
                conn = self.link.connection().await.ok();
            }
            if let Some(c) = conn.as_mut() {
                let mut fields: Vec<(String, u32)> =
                    vec![("connections".to_string(), engine.conns.len() as u32)];
                for (room, n) in engine.rooms.counts() {
                    fields.push((format!("room:{room}"), n));
                }
                let expiry = crate::clock::wall_ms().saturating_add(REPORT_TTL_MS as u64);
                let mut pipe = redis::pipe();
                pipe.atomic()
                    .del(&key)
                    .ignore()
                    .hset_multiple(&key, &fields)
                    .ignore()
                    .pexpire(&key, REPORT_TTL_MS)
                    .ignore()
                    .zadd(&nodes, &id, expiry)
                    .ignore()
                    .pexpire(&nodes, 2 * REPORT_TTL_MS)
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

    /// Removes this node's counts (on stop), bounded in time.
    pub(super) async fn remove_report(&self) {
        if let Ok(Ok(mut conn)) =
            tokio::time::timeout(Duration::from_millis(500), self.link.connection()).await
        {
            let id = uuid::Uuid::from_bytes(self.node_id).simple().to_string();
            let mut pipe = redis::pipe();
            pipe.del(node_key(&self.config.prefix, &self.node_id))
                .ignore()
                .zrem(nodes_key(&self.config.prefix), id)
                .ignore();
            let _ = tokio::time::timeout(Duration::from_millis(500), pipe.query_async::<()>(&mut conn)).await;
        }
    }

    /// Sums the counts every live node reported; this node's own numbers are taken live.
    pub async fn counts(&self, engine: &Engine) -> Result<ClusterCounts> {
        let redis_err = |e: redis::RedisError| ClusterError::from_redis(&self.config.redis_url, &e);
        let mut conn = self.link.connection().await.map_err(redis_err)?;
        let now = crate::clock::wall_ms();
        let nodes_key = nodes_key(&self.config.prefix);
        let own = uuid::Uuid::from_bytes(self.node_id).simple().to_string();
        let live: Vec<String> = conn.zrangebyscore(&nodes_key, now, "+inf").await.map_err(redis_err)?;
        let _: () = conn.zrembyscore(&nodes_key, "-inf", now).await.map_err(redis_err)?;
        let mut counts =
            ClusterCounts { nodes: 1, connections: engine.conns.len() as u32, ..Default::default() };
        for (room, n) in engine.rooms.counts() {
            *counts.rooms.entry(room).or_default() += n;
        }
        for id in live.into_iter().filter(|k| *k != own) {
            let key = format!("{{{}}}:node:{id}", self.config.prefix);
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
