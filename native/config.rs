//! Server options and their defaults: every limit in one place.

use std::time::Duration;

use napi_derive::napi;

use crate::deflate::{DeflateConfig, DEFAULT_LEVEL, DEFAULT_MEM_LEVEL, DEFAULT_THRESHOLD, MAX_WINDOW_BITS};
use crate::error::ConfigError;
use crate::rate_limit::{Policy, RateLimit};
use crate::trust_proxy::{ProxyHeader, TrustProxy};

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
/// Default length of the listen queue: connections the kernel has completed and the accept loop
/// has not taken yet. Linux's SOMAXCONN since 5.4; the kernel clamps it to `net.core.somaxconn`.
/// Past it the kernel drops the client's handshake, and the client retries a second later.
pub const DEFAULT_BACKLOG: u32 = 4096;
/// Largest `backlog` accepted (the kernel clamps lower values of its own).
pub const MAX_BACKLOG: u32 = 65_535;
/// Default time a room's Redis channel stays subscribed after its last local member left, so
/// a member leaving and another joining soon after cost no UNSUBSCRIBE/SUBSCRIBE pair.
pub const DEFAULT_CLUSTER_UNSUBSCRIBE_LINGER_MS: u32 = 3_000;
/// Longest time from TCP accept to a complete PROXY protocol header (`proxyProtocol`); the
/// handshake timeout, when shorter, applies instead.
pub const PROXY_HEADER_TIMEOUT_MS: u32 = 3_000;
/// Largest PROXY protocol v2 header accepted, TLVs included (v1 lines are 107 bytes at most).
pub const PROXY_V2_MAX_BYTES: usize = 1_024;
/// Default `rateLimit.interval`.
pub const DEFAULT_RATE_LIMIT_INTERVAL_MS: u32 = 1_000;

/// What `onUpgrade` accepted with, as it arrives from JavaScript (the facade checked it).
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeUpgradeAccept {
    pub client_id: Option<String>,
    pub protocol: Option<String>,
    /// Header lines (`Name: value`) added to the 101.
    pub headers: Option<Vec<String>>,
}

/// `rateLimit` as it arrives from JavaScript (the facade checked it).
#[napi(object)]
#[derive(Default, Clone)]
pub struct RateLimitOptions {
    /// Messages (data frames, pings, pongs and protocol frames) per interval; 0: unlimited.
    pub messages: Option<u32>,
    /// Payload bytes per interval; 0: unlimited.
    pub bytes: Option<u32>,
    /// Interval in ms (default 1 000).
    pub interval: Option<u32>,
    /// `"close"` (default: close with 1008) or `"drop"` (drop the message).
    pub policy: Option<String>,
}

impl RateLimitOptions {
    /// The limit, or None when neither dimension is limited.
    pub fn resolve(&self) -> Option<RateLimit> {
        let limit = RateLimit {
            messages: self.messages.unwrap_or(0),
            bytes: self.bytes.unwrap_or(0),
            interval_ms: self.interval.unwrap_or(DEFAULT_RATE_LIMIT_INTERVAL_MS).max(1),
            policy: if self.policy.as_deref() == Some("drop") { Policy::Drop } else { Policy::Close },
        };
        (limit.messages > 0 || limit.bytes > 0).then_some(limit)
    }
}

/// Default frame bytes one room's history keeps, unless `history.bytes` says otherwise: 1 MiB.
pub const DEFAULT_HISTORY_BYTES: u32 = 1024 * 1024;
/// Most messages one room's history may keep (`history.size`).
pub const MAX_HISTORY_SIZE: u32 = 1_000_000;
/// Default time a disconnected session is kept for its client to come back (`recovery: {}`).
pub const DEFAULT_MAX_DISCONNECTION_MS: u32 = 120_000;
/// Most disconnected sessions one node keeps at once; past it, new ones are not kept.
pub const MAX_SESSIONS: usize = 100_000;
/// Most messages `server.history` returns per call.
pub const MAX_HISTORY_PAGE: u32 = 10_000;

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
    /// Length of the listening socket's accept queue (`listen(2)` backlog).
    pub backlog: Option<u32>,
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
    /// Path answering GET with the Prometheus exposition (`metricsPath`); absent: none.
    pub metrics_path: Option<String>,
    /// Path answering GET with the health JSON (`healthPath`); absent: none.
    pub health_path: Option<String>,
    /// Addresses and CIDR ranges of trusted proxies (`trustProxy`).
    pub trust_proxy: Option<Vec<String>>,
    /// `"x-forwarded-for"` (default) or `"forwarded"`: the header trusted proxies set.
    pub proxy_header: Option<String>,
    /// Every connection starts with a PROXY protocol v1 or v2 header (`proxyProtocol`).
    pub proxy_protocol: Option<bool>,
    /// Default per-connection rate limit (`rateLimit`), overridable per path.
    pub rate_limit: Option<RateLimitOptions>,
    /// Server-wide room history: messages kept per room (with `history_ttl`; off unless set).
    pub history_size: Option<u32>,
    /// Server-wide room history: how long a message is kept, ms.
    pub history_ttl: Option<u32>,
    /// Server-wide room history: frame bytes kept per room.
    pub history_bytes: Option<u32>,
    /// Session recovery on (off unless set).
    pub recovery: Option<bool>,
    /// Session recovery: how long a disconnected session is kept, ms.
    pub recovery_max_disconnection: Option<u32>,
    /// permessage-deflate (RFC 7692); absent: off.
    pub per_message_deflate: Option<NativeDeflateOptions>,
    /// Certificates for TLS on the own port (`tls.rs`); absent: plain TCP.
    pub tls: Option<crate::tls::NativeTls>,
}

/// `perMessageDeflate` as it arrives from JavaScript (`true` arrives as `{}`).
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeDeflateOptions {
    /// false: off (a path turning off what the server turned on).
    pub enabled: Option<bool>,
    /// Smallest message compressed, in bytes (default 1024).
    pub threshold: Option<u32>,
    pub server_no_context_takeover: Option<bool>,
    pub client_no_context_takeover: Option<bool>,
    /// 8-15 (default 15).
    pub server_max_window_bits: Option<u32>,
    /// 8-15 (default 15).
    pub client_max_window_bits: Option<u32>,
    /// zlib memLevel, 1-9 (default 8).
    pub mem_level: Option<u32>,
    /// zlib compression level, 0-9 (default 6).
    pub level: Option<u32>,
}

/// A window, memLevel or level option within `range`.
fn in_range(
    name: &'static str,
    value: Option<u32>,
    range: std::ops::RangeInclusive<u8>,
    default: u8,
) -> Result<u8, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => u8::try_from(v).ok().filter(|v| range.contains(v)).ok_or_else(|| ConfigError {
            name,
            reason: format!("must be {}-{}, got {v}", range.start(), range.end()),
        }),
    }
}

/// Checks `perMessageDeflate` and fills its defaults in; None when it is turned off.
pub fn deflate_config(o: &NativeDeflateOptions) -> Result<Option<DeflateConfig>, ConfigError> {
    if o.enabled == Some(false) {
        return Ok(None);
    }
    Ok(Some(DeflateConfig {
        threshold: o.threshold.unwrap_or(DEFAULT_THRESHOLD) as usize,
        server_no_context_takeover: o.server_no_context_takeover.unwrap_or(false),
        client_no_context_takeover: o.client_no_context_takeover.unwrap_or(false),
        server_max_window_bits: in_range(
            "perMessageDeflate.serverMaxWindowBits",
            o.server_max_window_bits,
            8..=MAX_WINDOW_BITS,
            MAX_WINDOW_BITS,
        )?,
        client_max_window_bits: in_range(
            "perMessageDeflate.clientMaxWindowBits",
            o.client_max_window_bits,
            8..=MAX_WINDOW_BITS,
            MAX_WINDOW_BITS,
        )?,
        mem_level: in_range("perMessageDeflate.memLevel", o.mem_level, 1..=9, DEFAULT_MEM_LEVEL)?,
        level: in_range("perMessageDeflate.level", o.level, 0..=9, DEFAULT_LEVEL)?,
    }))
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
    pub backlog: u32,
    pub max_inbound_queue: usize,
    /// permessage-deflate for every path without its own setting; None: off.
    pub deflate: Option<DeflateConfig>,
    /// Metadata keys presence shows (`presence.fields`).
    pub presence_fields: Vec<String>,
    pub metrics_path: Option<String>,
    pub health_path: Option<String>,
    pub trust_proxy: TrustProxy,
    pub proxy_header: ProxyHeader,
    pub proxy_protocol: bool,
    pub rate_limit: Option<RateLimit>,
    /// History every room gets unless `createRoom` gives its own.
    pub history: Option<crate::history::HistoryLimits>,
    /// How long a disconnected session is kept; None: no recovery.
    pub max_disconnection: Option<Duration>,
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
                let redis_nodes = o.cluster_redis_nodes.clone().unwrap_or_else(|| vec![url.clone()]);
                for node in &redis_nodes {
                    redis::IntoConnectionInfo::into_connection_info(node.as_str())
                        .map_err(|e| ConfigError { name: "cluster.redis", reason: e.to_string() })?;
                }
                let mode = match o.cluster_channels.as_deref() {
                    None | Some("room") => crate::cluster::ChannelMode::Room,
                    Some("single") => crate::cluster::ChannelMode::Single,
                    Some(other) => {
                        let reason = format!("must be 'room' or 'single', got {other:?}");
                        return Err(ConfigError { name: "cluster.channels", reason });
                    }
                };
                Some(crate::cluster::ClusterConfig {
                    redis_url: url.clone(),
                    redis_nodes,
                    sharded: o.cluster_sharded.unwrap_or(false),
                    prefix: o.cluster_prefix.clone().unwrap_or_else(|| "rnode".to_string()),
                    mode,
                    unsubscribe_linger: ms(
                        o.cluster_unsubscribe_linger,
                        DEFAULT_CLUSTER_UNSUBSCRIBE_LINGER_MS,
                    ),
                    presence: o.presence_fields.is_some(),
                })
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
            backlog: match positive("backlog", o.backlog)? {
                Some(b) if b > MAX_BACKLOG => {
                    let reason = format!("must be 1-{MAX_BACKLOG}, got {b}");
                    return Err(ConfigError { name: "backlog", reason });
                }
                b => b.unwrap_or(DEFAULT_BACKLOG),
            },
            presence_fields: o.presence_fields.clone().unwrap_or_default(),
            max_inbound_queue: positive("maxInboundQueue", o.max_inbound_queue)?
                .unwrap_or(DEFAULT_MAX_INBOUND_QUEUE) as usize,
            deflate: match &o.per_message_deflate {
                Some(d) => deflate_config(d)?,
                None => None,
            },
            metrics_path: o.metrics_path.clone(),
            health_path: o.health_path.clone(),
            // The facade checked every entry (`checkTrustProxy`); one that fails here trusts nothing.
            trust_proxy: TrustProxy::parse(o.trust_proxy.as_deref().unwrap_or_default()).unwrap_or_default(),
            proxy_header: if o.proxy_header.as_deref() == Some("forwarded") {
                ProxyHeader::Forwarded
            } else {
                ProxyHeader::XForwardedFor
            },
            proxy_protocol: o.proxy_protocol.unwrap_or(false),
            rate_limit: o.rate_limit.as_ref().and_then(RateLimitOptions::resolve),
            history: match (o.history_size, o.history_ttl) {
                (Some(size), Some(ttl)) => Some(crate::history::HistoryLimits {
                    size: size.min(MAX_HISTORY_SIZE) as usize,
                    ttl_ms: u64::from(ttl),
                    bytes: o.history_bytes.unwrap_or(DEFAULT_HISTORY_BYTES) as usize,
                }),
                _ => None,
            },
            max_disconnection: (o.recovery == Some(true))
                .then(|| ms(o.recovery_max_disconnection, DEFAULT_MAX_DISCONNECTION_MS)),
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
    pub proxy_header_timeout: u32,
    pub rate_limit: Option<RateLimitOptions>,
    /// The backlog asked for; the kernel may clamp it (`net.core.somaxconn` on Linux).
    pub backlog: u32,
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
            backlog: c.backlog,
            proxy_header_timeout: PROXY_HEADER_TIMEOUT_MS,
            rate_limit: c.rate_limit.map(|r| RateLimitOptions {
                messages: Some(r.messages),
                bytes: Some(r.bytes),
                interval: Some(r.interval_ms),
                policy: Some(if r.policy == Policy::Drop { "drop" } else { "close" }.to_string()),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in() {
        let c = Config::from_options(&NativeOptions::default()).expect("defaults are valid");
        assert_eq!(c.port, 0);
        assert_eq!(c.max_payload, DEFAULT_MAX_PAYLOAD as usize);
        assert!(!c.drop_on_backpressure);
        assert!(c.cluster.is_none());
        assert_eq!(c.backlog, DEFAULT_BACKLOG);
    }

    #[test]
    fn custom_values_are_kept() {
        let o = NativeOptions {
            port: Some(65535),
            backpressure_policy: Some("drop".into()),
            cluster_redis: Some("redis://127.0.0.1:6379".into()),
            backlog: Some(16),
            ..Default::default()
        };
        let c = Config::from_options(&o).expect("valid");
        assert_eq!(c.port, 65535);
        assert_eq!(c.backlog, 16);
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
        assert_eq!(name(NativeOptions { backlog: Some(0), ..Default::default() }), Some("backlog"));
        assert_eq!(name(NativeOptions { backlog: Some(65_536), ..Default::default() }), Some("backlog"));
        let url = NativeOptions { cluster_redis: Some("redis://[::1".into()), ..Default::default() };
        assert_eq!(name(url), Some("cluster.redis"));
    }

    #[test]
    fn deflate_is_off_by_default_and_checked_when_given() {
        assert_eq!(Config::from_options(&NativeOptions::default()).unwrap().deflate, None);
        let on = |d: NativeDeflateOptions| deflate_config(&d);
        assert_eq!(on(NativeDeflateOptions::default()).unwrap(), Some(DeflateConfig::default()));
        let custom = NativeDeflateOptions {
            threshold: Some(0),
            server_no_context_takeover: Some(true),
            server_max_window_bits: Some(9),
            client_max_window_bits: Some(8),
            mem_level: Some(1),
            level: Some(0),
            ..Default::default()
        };
        let c = on(custom).unwrap().unwrap();
        assert_eq!(
            (c.threshold, c.server_max_window_bits, c.client_max_window_bits, c.mem_level, c.level),
            (0, 9, 8, 1, 0)
        );
        assert!(c.server_no_context_takeover && !c.client_no_context_takeover);
        assert_eq!(on(NativeDeflateOptions { enabled: Some(false), ..Default::default() }).unwrap(), None);
        for (bad, name) in [
            (
                NativeDeflateOptions { server_max_window_bits: Some(7), ..Default::default() },
                "perMessageDeflate.serverMaxWindowBits",
            ),
            (
                NativeDeflateOptions { client_max_window_bits: Some(16), ..Default::default() },
                "perMessageDeflate.clientMaxWindowBits",
            ),
            (NativeDeflateOptions { mem_level: Some(0), ..Default::default() }, "perMessageDeflate.memLevel"),
            (
                NativeDeflateOptions { mem_level: Some(300), ..Default::default() },
                "perMessageDeflate.memLevel",
            ),
            (NativeDeflateOptions { level: Some(10), ..Default::default() }, "perMessageDeflate.level"),
        ] {
            assert_eq!(on(bad).err().map(|e| e.name), Some(name));
        }
    }

    #[test]
    fn operations_options_default_custom_and_odd_values() {
        let c = Config::from_options(&NativeOptions::default()).expect("defaults are valid");
        assert_eq!(
            (c.metrics_path, c.health_path, c.proxy_protocol, c.rate_limit),
            (None, None, false, None)
        );
        assert!(c.trust_proxy.is_empty());
        assert_eq!(c.proxy_header, ProxyHeader::XForwardedFor);

        let o = NativeOptions {
            trust_proxy: Some(vec!["10.0.0.0/8".into()]),
            proxy_header: Some("forwarded".into()),
            rate_limit: Some(RateLimitOptions {
                messages: Some(5),
                policy: Some("drop".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = Config::from_options(&o).expect("valid");
        assert!(c.trust_proxy.trusts("10.1.2.3".parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())));
        assert_eq!(c.proxy_header, ProxyHeader::Forwarded);
        assert_eq!(
            c.rate_limit,
            Some(RateLimit {
                messages: 5,
                bytes: 0,
                interval_ms: DEFAULT_RATE_LIMIT_INTERVAL_MS,
                policy: Policy::Drop
            })
        );
        // Nothing limited: no limit at all. An entry the facade would have refused trusts nothing.
        let o = NativeOptions {
            trust_proxy: Some(vec!["10.0.0.0/8".into(), "10.1.0.0/8".into()]),
            rate_limit: Some(RateLimitOptions { messages: Some(0), bytes: Some(0), ..Default::default() }),
            ..Default::default()
        };
        let c = Config::from_options(&o).expect("valid");
        assert_eq!(c.rate_limit, None);
        assert!(c.trust_proxy.is_empty());
    }
}
