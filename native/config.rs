//! Server options and their defaults: every limit in one place.

use std::time::Duration;

use napi_derive::napi;

/// Default largest inbound message (and fragment sum): 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: u32 = 1024 * 1024;
/// Default per-connection send buffer before the backpressure policy applies: 1 MiB.
pub const DEFAULT_MAX_BACKPRESSURE: u32 = 1024 * 1024;
/// Default time a peer may stay silent before it is dropped.
pub const DEFAULT_IDLE_TIMEOUT_MS: u32 = 120_000;
/// Default interval between server pings.
pub const DEFAULT_PING_INTERVAL_MS: u32 = 30_000;
/// Default time allowed from TCP accept to a complete upgrade request.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u32 = 10_000;
/// Default time we wait for the peer's answer to our close frame.
pub const DEFAULT_CLOSE_TIMEOUT_MS: u32 = 5_000;
/// Default cap on the HTTP request head, in bytes.
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 8 * 1024;
/// Default cap on message bytes waiting for JavaScript before connections stop reading: 64 MiB.
pub const DEFAULT_MAX_INBOUND_QUEUE: u32 = 64 * 1024 * 1024;
/// Default cap on the number of request headers.
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// Default time a room's Redis channel stays subscribed after its last local member left, so
/// a member leaving and another joining soon after cost no UNSUBSCRIBE/SUBSCRIBE pair.
pub const DEFAULT_CLUSTER_UNSUBSCRIBE_LINGER_MS: u32 = 3_000;

/// Options as they arrive from JavaScript; every field is optional.
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeOptions {
    pub port: Option<u32>,
    pub host: Option<String>,
    pub max_payload: Option<u32>,
    pub max_backpressure: Option<u32>,
    pub idle_timeout: Option<u32>,
    pub ping_interval: Option<u32>,
    pub handshake_timeout: Option<u32>,
    pub close_timeout: Option<u32>,
    /// `"close"` (default: close with 1008) or `"drop"` (drop new messages) when the send buffer is full.
    pub backpressure_policy: Option<String>,
    /// Joining a missing room creates it (default true); such rooms vanish when empty.
    pub auto_create_rooms: Option<bool>,
    /// `Origin` values allowed to upgrade; absent: any.
    pub allowed_origins: Option<Vec<String>>,
    /// Connections open or upgrading at once; past it: 503.
    pub max_connections: Option<u32>,
    /// Connections from one IP at once; past it: 429.
    pub max_connections_per_ip: Option<u32>,
    /// Subprotocols the server speaks, in no particular order; the client's first match wins.
    pub protocols: Option<Vec<String>>,
    /// Message bytes waiting for JS before every connection stops reading (TCP pushes back).
    pub max_inbound_queue: Option<u32>,
    /// Share the port with other processes (SO_REUSEPORT; Unix).
    pub reuse_port: Option<bool>,
    /// Redis URL for scale-out; absent: a single node.
    pub cluster_redis: Option<String>,
    /// Every Redis URL (`cluster.redis` as a list: a Redis Cluster's seed nodes).
    pub cluster_redis_nodes: Option<Vec<String>>,
    /// A Redis Cluster: sharded pub/sub and slot routing.
    pub cluster_sharded: Option<bool>,
    /// Key and channel prefix in Redis (default "rnode").
    pub cluster_prefix: Option<String>,
    /// `"room"` (default: a channel per room) or `"single"` (one channel for everything).
    pub cluster_channels: Option<String>,
    /// Milliseconds a room channel stays subscribed after its last local member left.
    pub cluster_unsubscribe_linger: Option<u32>,
    /// Metadata keys presence shows; present (even empty): members are written to Redis for
    /// cluster presence.
    pub presence_fields: Option<Vec<String>>,
}

/// Resolved configuration with defaults filled in.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub host: String,
    pub max_payload: usize,
    pub max_backpressure: usize,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub handshake_timeout: Duration,
    pub close_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub drop_on_backpressure: bool,
    pub auto_create_rooms: bool,
    pub allowed_origins: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<u32>,
    pub protocols: Vec<String>,
    pub cluster: Option<crate::cluster::ClusterConfig>,
    pub reuse_port: bool,
    pub max_inbound_queue: usize,
    /// Metadata keys presence shows (`presence.fields`).
    pub presence_fields: Vec<String>,
}

fn ms(value: Option<u32>, default: u32) -> Duration {
    Duration::from_millis(u64::from(value.unwrap_or(default)))
}

impl Config {
    /// Fills defaults in; range checks live in the TypeScript facade, which throws `TypeError`s.
    pub fn from_options(o: &NativeOptions) -> Self {
        Config {
            port: o.port.unwrap_or(0).min(u32::from(u16::MAX)) as u16,
            host: o.host.clone().unwrap_or_else(|| "0.0.0.0".to_string()),
            max_payload: o.max_payload.unwrap_or(DEFAULT_MAX_PAYLOAD) as usize,
            max_backpressure: o.max_backpressure.unwrap_or(DEFAULT_MAX_BACKPRESSURE) as usize,
            idle_timeout: ms(o.idle_timeout, DEFAULT_IDLE_TIMEOUT_MS),
            ping_interval: ms(o.ping_interval, DEFAULT_PING_INTERVAL_MS),
            handshake_timeout: ms(o.handshake_timeout, DEFAULT_HANDSHAKE_TIMEOUT_MS),
            close_timeout: ms(o.close_timeout, DEFAULT_CLOSE_TIMEOUT_MS),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES as usize,
            max_headers: DEFAULT_MAX_HEADERS as usize,
            drop_on_backpressure: o.backpressure_policy.as_deref() == Some("drop"),
            auto_create_rooms: o.auto_create_rooms.unwrap_or(true),
            allowed_origins: o.allowed_origins.clone(),
            max_connections: o.max_connections.map(|n| n as usize),
            max_connections_per_ip: o.max_connections_per_ip,
            protocols: o.protocols.clone().unwrap_or_default(),
            reuse_port: o.reuse_port.unwrap_or(false),
            presence_fields: o.presence_fields.clone().unwrap_or_default(),
            max_inbound_queue: o.max_inbound_queue.unwrap_or(DEFAULT_MAX_INBOUND_QUEUE) as usize,
            cluster: o.cluster_redis.clone().map(|redis_url| crate::cluster::ClusterConfig {
                redis_nodes: o.cluster_redis_nodes.clone().unwrap_or_else(|| vec![redis_url.clone()]),
                sharded: o.cluster_sharded.unwrap_or(false),
                redis_url,
                prefix: o.cluster_prefix.clone().unwrap_or_else(|| "rnode".to_string()),
                mode: match o.cluster_channels.as_deref() {
                    Some("single") => crate::cluster::ChannelMode::Single,
                    _ => crate::cluster::ChannelMode::Room,
                },
                unsubscribe_linger: ms(o.cluster_unsubscribe_linger, DEFAULT_CLUSTER_UNSUBSCRIBE_LINGER_MS),
                presence: o.presence_fields.is_some(),
            }),
        }
    }
}

impl Config {
    /// How often the engine's ticker checks idle timeouts, pings and close deadlines: a quarter
    /// of the shortest of them, between 10 ms and 1 s.
    pub fn tick(&self) -> Duration {
        let shortest = self.ping_interval.min(self.idle_timeout).min(self.close_timeout);
        (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

/// The resolved limits as JS sees them (`server.limits`).
#[napi(object)]
pub struct Limits {
    pub max_payload: u32,
    pub max_backpressure: u32,
    pub backpressure_policy: String,
    pub idle_timeout: u32,
    pub ping_interval: u32,
    pub handshake_timeout: u32,
    pub close_timeout: u32,
    pub max_header_bytes: u32,
    pub max_headers: u32,
    pub max_connections: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    pub max_inbound_queue: u32,
}

impl From<&Config> for Limits {
    fn from(c: &Config) -> Self {
        let ms = |d: Duration| d.as_millis().min(u128::from(u32::MAX)) as u32;
        Limits {
            max_payload: c.max_payload as u32,
            max_backpressure: c.max_backpressure as u32,
            backpressure_policy: if c.drop_on_backpressure { "drop" } else { "close" }.to_string(),
            idle_timeout: ms(c.idle_timeout),
            ping_interval: ms(c.ping_interval),
            handshake_timeout: ms(c.handshake_timeout),
            close_timeout: ms(c.close_timeout),
            max_header_bytes: c.max_header_bytes as u32,
            max_headers: c.max_headers as u32,
            max_connections: c.max_connections.map(|n| n as u32),
            max_connections_per_ip: c.max_connections_per_ip,
            max_inbound_queue: c.max_inbound_queue as u32,
        }
    }
}
