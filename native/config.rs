//! Server options and their defaults: every limit in one place.

use std::time::Duration;

use napi_derive::napi;

use crate::error::ConfigError;

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
    /// Key and channel prefix in Redis (default "rnode").
    pub cluster_prefix: Option<String>,
    /// Certificates for TLS on the own port (`tls.rs`); absent: plain TCP.
    pub tls: Option<crate::tls::NativeTls>,
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
}

fn ms(value: Option<u32>, default: u32) -> Duration {
    Duration::from_millis(u64::from(value.unwrap_or(default)))
}

/// A limit that must be at least 1 when given.
fn positive(name: &'static str, value: Option<u32>) -> Result<Option<u32>, ConfigError> {
    match value {
        Some(0) => Err(ConfigError { name, reason: "must be at least 1".into() }),
        v => Ok(v),
    }
}

impl Config {
    /// Fills defaults in. The facade range-checks every option first (and says which one is
    /// wrong); this refuses what would otherwise be silently misread: a port past 65535, an
    /// unknown backpressure policy, a zero limit, a Redis URL the client cannot parse.
    pub fn from_options(o: &NativeOptions) -> Result<Self, ConfigError> {
        let port = match o.port {
            None => 0,
            Some(p) => u16::try_from(p)
                .map_err(|_| ConfigError { name: "port", reason: format!("must be 0-65535, got {p}") })?,
        };
        let drop_on_backpressure = match o.backpressure_policy.as_deref() {
            None | Some("close") => false,
            Some("drop") => true,
            Some(other) => {
                let reason = format!("must be 'close' or 'drop', got {other:?}");
                return Err(ConfigError { name: "backpressurePolicy", reason });
            }
        };
        let cluster = match &o.cluster_redis {
            None => None,
            Some(url) => {
                redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(|e| ConfigError { name: "cluster.redis", reason: e.to_string() })?;
                let prefix = o.cluster_prefix.clone().unwrap_or_else(|| "rnode".to_string());
                Some(crate::cluster::ClusterConfig { redis_url: url.clone(), prefix })
            }
        };
        Ok(Config {
            port,
            host: o.host.clone().unwrap_or_else(|| "0.0.0.0".to_string()),
            max_payload: positive("maxPayload", o.max_payload)?.unwrap_or(DEFAULT_MAX_PAYLOAD) as usize,
            max_backpressure: positive("maxBackpressure", o.max_backpressure)?
                .unwrap_or(DEFAULT_MAX_BACKPRESSURE) as usize,
            idle_timeout: ms(positive("idleTimeout", o.idle_timeout)?, DEFAULT_IDLE_TIMEOUT_MS),
            ping_interval: ms(positive("pingInterval", o.ping_interval)?, DEFAULT_PING_INTERVAL_MS),
            handshake_timeout: ms(
                positive("handshakeTimeout", o.handshake_timeout)?,
                DEFAULT_HANDSHAKE_TIMEOUT_MS,
            ),
            close_timeout: ms(positive("closeTimeout", o.close_timeout)?, DEFAULT_CLOSE_TIMEOUT_MS),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES as usize,
            max_headers: DEFAULT_MAX_HEADERS as usize,
            drop_on_backpressure,
            auto_create_rooms: o.auto_create_rooms.unwrap_or(true),
            allowed_origins: o.allowed_origins.clone(),
            max_connections: positive("maxConnections", o.max_connections)?.map(|n| n as usize),
            max_connections_per_ip: positive("maxConnectionsPerIp", o.max_connections_per_ip)?,
            protocols: o.protocols.clone().unwrap_or_default(),
            reuse_port: o.reuse_port.unwrap_or(false),
            max_inbound_queue: positive("maxInboundQueue", o.max_inbound_queue)?
                .unwrap_or(DEFAULT_MAX_INBOUND_QUEUE) as usize,
            cluster,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in() {
        let c = Config::from_options(&NativeOptions::default()).expect("defaults are valid");
        assert_eq!(c.port, 0);
        assert_eq!(c.max_payload, DEFAULT_MAX_PAYLOAD as usize);
        assert!(!c.drop_on_backpressure);
        assert!(c.cluster.is_none());
    }

    #[test]
    fn custom_values_are_kept() {
        let o = NativeOptions {
            port: Some(65535),
            backpressure_policy: Some("drop".into()),
            cluster_redis: Some("redis://127.0.0.1:6379".into()),
            ..Default::default()
        };
        let c = Config::from_options(&o).expect("valid");
        assert_eq!(c.port, 65535);
        assert!(c.drop_on_backpressure);
        assert_eq!(c.cluster.map(|c| c.prefix), Some("rnode".to_string()));
    }

    #[test]
    fn bad_values_name_their_option() {
        let name = |o: NativeOptions| Config::from_options(&o).err().map(|e| e.name);
        assert_eq!(name(NativeOptions { port: Some(65536), ..Default::default() }), Some("port"));
        let policy = NativeOptions { backpressure_policy: Some("explode".into()), ..Default::default() };
        assert_eq!(name(policy), Some("backpressurePolicy"));
        assert_eq!(name(NativeOptions { max_payload: Some(0), ..Default::default() }), Some("maxPayload"));
        let url = NativeOptions { cluster_redis: Some("redis://[::1".into()), ..Default::default() };
        assert_eq!(name(url), Some("cluster.redis"));
    }
}
