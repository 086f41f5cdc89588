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
/// Default cap on the HTTP request head, in bytes (hyper's smallest buffer).
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 8 * 1024;
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
        }
    }
}
