//! The link to Redis: one server (or anything reachable by one URL), or a Redis Cluster whose
//! commands are routed by slot. Every command this module's callers send touches one slot
//! (keys and channels carry hash tags), so the same code serves both.

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, PushInfo, RedisFuture, RedisResult, Value};
use tokio::sync::mpsc;

/// A client for one Redis, or for a Redis Cluster.
pub enum Link {
    Plain(redis::Client),
    /// Boxed: a cluster client is large, and a link exists once per server.
    Cluster {
        client: Box<ClusterClient>,
        nodes: Vec<String>,
    },
}

/// A connection of either kind.
#[derive(Clone)]
pub enum Connection {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Link {
    /// `nodes`: the URLs; `sharded`: a Redis Cluster (sharded pub/sub, slot routing).
    pub fn open(nodes: &[String], sharded: bool) -> RedisResult<Link> {
        if sharded {
            let client = ClusterClientBuilder::new(nodes.to_vec()).build()?;
            Ok(Link::Cluster { client: Box::new(client), nodes: nodes.to_vec() })
        } else {
            Ok(Link::Plain(redis::Client::open(nodes.first().map(String::as_str).unwrap_or_default())?))
        }
    }

    pub fn sharded(&self) -> bool {
        matches!(self, Link::Cluster { .. })
    }

    /// A connection for commands (never for subscriptions).
    pub async fn connection(&self) -> RedisResult<Connection> {
        match self {
            Link::Plain(c) => Ok(Connection::Plain(c.get_multiplexed_async_connection().await?)),
            Link::Cluster { client, .. } => Ok(Connection::Cluster(client.get_async_connection().await?)),
        }
    }

    /// A pub/sub connection to the one Redis (`None` for a Redis Cluster: see `subscriber`).
    pub async fn pubsub(&self) -> Option<RedisResult<redis::aio::PubSub>> {
        match self {
            Link::Plain(c) => Some(c.get_async_pubsub().await),
            Link::Cluster { .. } => None,
        }
    }

    /// A Redis Cluster connection whose subscriptions' messages go to `pushes` (RESP3, so
    /// that pushes and replies share it; it subscribes again by itself after reconnecting).
    pub async fn subscriber(
        &self,
        pushes: mpsc::UnboundedSender<PushInfo>,
    ) -> RedisResult<ClusterConnection> {
        let nodes = match self {
            Link::Cluster { nodes, .. } => nodes.clone(),
            Link::Plain(_) => Vec::new(),
        };
        ClusterClientBuilder::new(nodes)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(pushes)
            .build()?
            .get_async_connection()
            .await
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Plain(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Plain(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

/// Runs pipelines that each stay within one slot, side by side (a pipeline on a Redis Cluster
/// must not cross slots). On one Redis they share one connection and go out in order.
pub async fn run_grouped(conn: &Connection, groups: Vec<Pipeline>) -> RedisResult<()> {
    let runs = groups.into_iter().map(|pipe| {
        let mut c = conn.clone();
        async move { pipe.query_async::<()>(&mut c).await }
    });
    for result in futures_util::future::join_all(runs).await {
        result?;
    }
    Ok(())
}
