//! Counters, gauges and histograms for `server.metrics()`, rendered in the Prometheus text
//! exposition format (version 0.0.4). Everything counted on a hot path is a relaxed atomic in a
//! fixed array (no lock, no allocation, no map lookup); rendering, which runs once per scrape,
//! does the work. Message and byte counts that `getStats()` already reports come from the
//! engine's `Stats` and are passed in as `Figures` when rendering.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Frame types counted per direction, in label order.
pub const FRAME_TYPES: [&str; 5] = ["text", "binary", "ping", "pong", "close"];
/// Index of a control frame type in `FRAME_TYPES`.
pub mod frame_type {
    pub const PING: usize = 2;
    pub const PONG: usize = 3;
    pub const CLOSE: usize = 4;
}

/// `send()` results, in `SendStatus` order.
const SEND_STATUSES: [&str; 3] = ["sent", "buffered", "dropped"];

/// Why a connection ended before its HTTP request was read (no status to count it under).
#[derive(Debug, Clone, Copy)]
#[repr(usize)]
pub enum EarlyDrop {
    /// `proxyProtocol`: the header was malformed or missing.
    ProxyInvalid = 0,
    /// `proxyProtocol`: the header did not arrive within the limit.
    ProxyTimeout = 1,
    /// `tls`: `maxConnections` reached, refused before the TLS handshake.
    ServerFull = 2,
}
const EARLY_DROPS: [&str; 3] = ["proxy_protocol_invalid", "proxy_protocol_timeout", "max_connections"];

/// Why a TLS handshake on the own port did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum TlsFailure {
    /// Not finished within `handshakeTimeout` (a silent client, a truncated ClientHello).
    Timeout = 0,
    /// The client closed or reset the connection first.
    Closed = 1,
    /// A plain HTTP request on the TLS port (answered with a plaintext 400).
    PlainHttp = 2,
    /// The first byte is neither a TLS handshake record nor an HTTP request.
    NotTls = 3,
    /// A malformed ClientHello or record, or messages out of order.
    ProtocolError = 4,
    /// Nothing in common: TLS version, cipher suites, key exchange groups.
    Incompatible = 5,
    /// The client ended it with an alert (most often: it does not trust our certificate).
    Alert = 6,
    /// `requestCert`: no client certificate, or one that does not chain to `ca`.
    ClientCertificate = 7,
    Other = 8,
}
const TLS_FAILURES: [&str; 9] = [
    "timeout",
    "closed",
    "plain_http",
    "not_tls",
    "protocol_error",
    "incompatible",
    "alert",
    "client_certificate",
    "other",
];

/// Close codes counted one by one: the RFC 6455 range and the registered/application range.
const RFC_CODES: std::ops::RangeInclusive<u16> = 1000..=1015;
const APP_CODES: std::ops::RangeInclusive<u16> = 3000..=4999;
const HTTP_STATUSES: std::ops::RangeInclusive<u16> = 400..=599;

/// A histogram with fixed buckets; observations are integers in `unit`s (microseconds,
/// milliseconds, events) and rendered in the base unit (`per_base` units make one).
pub struct Histogram {
    bounds: &'static [u64],
    per_base: f64,
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [AtomicU64; 17],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub const fn new(bounds: &'static [u64], per_base: f64) -> Self {
        Histogram {
            bounds,
            per_base,
            buckets: [const { AtomicU64::new(0) }; 17],
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: u64) {
        let i = self.bounds.iter().position(|&b| value <= b).unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        self.sum.fetch_add(value, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Broadcast call durations, in microseconds.
const BROADCAST_US: [u64; 12] = [5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 10_000, 50_000, 250_000];
/// Events per JS batch.
const BATCH_EVENTS: [u64; 14] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384];
/// Server ping round trips, in milliseconds.
const ROUND_TRIP_MS: [u64; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// Cluster envelopes, origin's send to arrival here, in microseconds.
const CLUSTER_LAG_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Counters the engine keeps only for metrics.
pub struct Metrics {
    accepted: AtomicU64,
    refused: [AtomicU64; 200],
    early_drops: [AtomicU64; 3],
    tls_handshakes: AtomicU64,
    tls_failures: [AtomicU64; 9],
    closes_rfc: [AtomicU64; 16],
    closes_app: Box<[AtomicU64]>,
    closes_other: AtomicU64,
    /// Control frames per direction (ping, pong, close slots of `FRAME_TYPES`): count, bytes.
    control_in: [(AtomicU64, AtomicU64); 3],
    control_out: [(AtomicU64, AtomicU64); 3],
    sends: [AtomicU64; 3],
    pub rate_limited_dropped: AtomicU64,
    pub rate_limited_closed: AtomicU64,
    pub broadcast: Histogram,
    pub batch_events: Histogram,
    pub ping_rtt: Histogram,
    /// Cluster mode: how long envelopes from other nodes took to get here.
    pub cluster_lag: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            refused: [const { AtomicU64::new(0) }; 200],
            early_drops: [const { AtomicU64::new(0) }; 3],
            tls_handshakes: AtomicU64::new(0),
            tls_failures: [const { AtomicU64::new(0) }; 9],
            closes_rfc: [const { AtomicU64::new(0) }; 16],
            closes_app: (0..APP_CODES.len()).map(|_| AtomicU64::new(0)).collect(),
            closes_other: AtomicU64::new(0),
            control_in: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 3],
            control_out: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; 3],
            sends: [const { AtomicU64::new(0) }; 3],
            rate_limited_dropped: AtomicU64::new(0),
            rate_limited_closed: AtomicU64::new(0),
            broadcast: Histogram::new(&BROADCAST_US, 1e6),
            batch_events: Histogram::new(&BATCH_EVENTS, 1.0),
            ping_rtt: Histogram::new(&ROUND_TRIP_MS, 1e3),
            cluster_lag: Histogram::new(&CLUSTER_LAG_US, 1e6),
        }
    }

    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Relaxed);
    }

    /// An upgrade refused with this HTTP status (other statuses count under 500).
    pub fn refused(&self, status: u16) {
        let i = if HTTP_STATUSES.contains(&status) { status - 400 } else { 100 };
        if let Some(c) = self.refused.get(usize::from(i)) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn early_drop(&self, why: EarlyDrop) {
        self.early_drops[why as usize].fetch_add(1, Relaxed);
    }

    /// A TLS handshake on the own port finished.
    pub fn tls_handshake(&self) {
        self.tls_handshakes.fetch_add(1, Relaxed);
    }

    pub fn tls_failure(&self, why: TlsFailure) {
        self.tls_failures[why as usize].fetch_add(1, Relaxed);
    }

    /// A connection ended with this close code (as `onClose` reports it).
    pub fn closed(&self, code: u16) {
        let slot = if RFC_CODES.contains(&code) {
            self.closes_rfc.get(usize::from(code - 1000))
        } else if APP_CODES.contains(&code) {
            self.closes_app.get(usize::from(code - 3000))
        } else {
            None
        };
        slot.unwrap_or(&self.closes_other).fetch_add(1, Relaxed);
    }

    /// An inbound control frame (`frame_type::PING`, `PONG` or `CLOSE`) of `len` payload bytes.
    pub fn control_in(&self, kind: usize, len: usize) {
        if let Some((n, bytes)) = self.control_in.get(kind.wrapping_sub(2)) {
            n.fetch_add(1, Relaxed);
            bytes.fetch_add(len as u64, Relaxed);
        }
    }

    /// `count` outbound control frames of `bytes` payload bytes in all.
    pub fn control_out(&self, kind: usize, count: u64, bytes: u64) {
        if let Some((n, b)) = self.control_out.get(kind.wrapping_sub(2)) {
            n.fetch_add(count, Relaxed);
            b.fetch_add(bytes, Relaxed);
        }
    }

    /// A `send()` from JS returned `status` (`SendStatus as usize`).
    pub fn send_result(&self, status: usize) {
        if let Some(c) = self.sends.get(status) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn rate_limited(&self) -> u64 {
        self.rate_limited_dropped.load(Relaxed) + self.rate_limited_closed.load(Relaxed)
    }

    /// The whole exposition: these counters and the engine's `figures`.
    pub fn render(&self, f: &Figures) -> String {
        let mut out = Exposition::default();
        out.single("connections", "gauge", "Open WebSocket connections.", f.connections as f64);
        out.single(
            "connections_accepted_total",
            "counter",
            "Upgrades answered with 101.",
            self.accepted.load(Relaxed) as f64,
        );
        out.family(
            "connections_refused_total",
            "counter",
            "Upgrade requests answered with an HTTP error, by status.",
        );
        for (i, c) in self.refused.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                out.sample("connections_refused_total", &[("status", &(400 + i).to_string())], n as f64);
            }
        }
        out.family(
            "connections_dropped_total",
            "counter",
            "Connections dropped before their HTTP request, by reason.",
        );
        for (reason, c) in EARLY_DROPS.iter().zip(&self.early_drops) {
            out.sample("connections_dropped_total", &[("reason", reason)], c.load(Relaxed) as f64);
        }
        if f.tls {
            out.single(
                "tls_handshakes_total",
                "counter",
                "TLS handshakes finished on the server's port.",
                self.tls_handshakes.load(Relaxed) as f64,
            );
            out.family(
                "tls_handshake_failures_total",
                "counter",
                "TLS handshakes on the server's port that did not finish, by reason.",
            );
            for (reason, c) in TLS_FAILURES.iter().zip(&self.tls_failures) {
                out.sample("tls_handshake_failures_total", &[("reason", reason)], c.load(Relaxed) as f64);
            }
        }
        out.family("disconnects_total", "counter", "Closed connections, by the close code onClose reports.");
        let codes = RFC_CODES.zip(&self.closes_rfc).chain(APP_CODES.zip(self.closes_app.iter()));
        for (code, c) in codes {
            let n = c.load(Relaxed);
            if n > 0 {
                out.sample("disconnects_total", &[("code", &code.to_string())], n as f64);
            }
        }
        let other = self.closes_other.load(Relaxed);
        if other > 0 {
            out.sample("disconnects_total", &[("code", "other")], other as f64);
        }

        let inbound = [f.text_in, f.binary_in];
        let outbound = [f.text_out, f.binary_out];
        for (dir, data, control) in
            [("received", inbound, &self.control_in), ("sent", outbound, &self.control_out)]
        {
            let msgs = format!("messages_{dir}_total");
            let bytes = format!("{dir}_bytes_total");
            out.family(&msgs, "counter", &format!("WebSocket messages {dir}, by frame type."));
            let all = data.iter().map(|&(n, _)| n).chain(control.iter().map(|(n, _)| n.load(Relaxed)));
            for (kind, n) in FRAME_TYPES.iter().zip(all) {
                out.sample(&msgs, &[("type", kind)], n as f64);
            }
            out.family(&bytes, "counter", &format!("Payload bytes {dir}, by frame type."));
            let all = data.iter().map(|&(_, b)| b).chain(control.iter().map(|(_, b)| b.load(Relaxed)));
            for (kind, b) in FRAME_TYPES.iter().zip(all) {
                out.sample(&bytes, &[("type", kind)], b as f64);
            }
        }
        out.family("send_results_total", "counter", "socket.send() calls, by the status they returned.");
        for (status, c) in SEND_STATUSES.iter().zip(&self.sends) {
            out.sample("send_results_total", &[("status", status)], c.load(Relaxed) as f64);
        }
        out.single(
            "dropped_messages_total",
            "counter",
            "Outbound messages not queued because a send buffer was full.",
            f.dropped as f64,
        );
        out.family(
            "rate_limited_total",
            "counter",
            "Inbound messages over a rateLimit, by the policy applied.",
        );
        out.sample(
            "rate_limited_total",
            &[("policy", "drop")],
            self.rate_limited_dropped.load(Relaxed) as f64,
        );
        out.sample(
            "rate_limited_total",
            &[("policy", "close")],
            self.rate_limited_closed.load(Relaxed) as f64,
        );

        out.single("rooms", "gauge", "Rooms.", f.rooms as f64);
        out.single(
            "room_memberships",
            "gauge",
            "Room memberships, summed over every room.",
            f.memberships as f64,
        );
        if !f.room_members.is_empty() {
            out.family("room_members", "gauge", "Members of each room created with metrics: true.");
            for (room, n) in &f.room_members {
                out.sample("room_members", &[("room", room)], f64::from(*n));
            }
        }

        out.histogram("js_batch_events", "Events handed to JavaScript per batch.", &self.batch_events);
        out.single("js_queue_events", "gauge", "Events waiting for JavaScript.", f.queued_events as f64);
        out.single("js_queue_bytes", "gauge", "Message bytes waiting for JavaScript.", f.queued_bytes as f64);
        out.histogram(
            "broadcast_duration_seconds",
            "Time spent in a broadcast call (fan-out to local members, cluster publish).",
            &self.broadcast,
        );
        out.histogram("ping_rtt_seconds", "Round trip of server pings, ping to pong.", &self.ping_rtt);

        if let Some(c) = &f.cluster {
            out.single(
                "cluster_connected",
                "gauge",
                "1 while the Redis subscriber is connected.",
                if c.connected { 1.0 } else { 0.0 },
            );
            out.single(
                "cluster_publish_errors_total",
                "counter",
                "Redis PUBLISH calls that failed.",
                c.publish_errors as f64,
            );
            out.single(
                "cluster_subscribe_errors_total",
                "counter",
                "Redis subscriber connections that failed or were lost.",
                c.subscribe_errors as f64,
            );
            out.single(
                "cluster_queued_envelopes",
                "gauge",
                "Envelopes waiting to be published.",
                c.queued as f64,
            );
            out.single(
                "cluster_dropped_envelopes_total",
                "counter",
                "Envelopes dropped because the outbound queue was full.",
                c.dropped as f64,
            );
            out.single(
                "cluster_received_envelopes_total",
                "counter",
                "Envelopes received from other nodes.",
                c.received as f64,
            );
            out.histogram(
                "cluster_pubsub_lag_seconds",
                "Envelopes from other nodes: from their publish (the sender's clock) to arrival here.",
                &self.cluster_lag,
            );
        }
        if let Some(rss) = f.rss_bytes {
            out.single(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory of the process.",
                rss as f64,
            );
        }
        out.text
    }
}

/// What the engine knows and `Metrics` does not: passed in when rendering.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    pub connections: u64,
    /// (messages, payload bytes) per direction and data frame type.
    pub text_in: (u64, u64),
    pub binary_in: (u64, u64),
    pub text_out: (u64, u64),
    pub binary_out: (u64, u64),
    pub dropped: u64,
    pub rooms: u64,
    pub memberships: u64,
    /// Rooms that opted in to a per-room gauge.
    pub room_members: Vec<(String, u32)>,
    pub queued_events: u64,
    pub queued_bytes: u64,
    pub cluster: Option<ClusterFigures>,
    /// Whether the port speaks TLS (the TLS families are shown only then).
    pub tls: bool,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Default, Clone)]
pub struct ClusterFigures {
    pub connected: bool,
    pub publish_errors: u64,
    pub subscribe_errors: u64,
    pub queued: u64,
    pub dropped: u64,
    pub received: u64,
}

/// The process's resident set size, from `/proc/self/status` (Linux only).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

/// The text being written: `# HELP`, `# TYPE`, then samples, with the `rnode_ws_` prefix.
#[derive(Default)]
struct Exposition {
    text: String,
}

const PREFIX: &str = "rnode_ws_";

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.text, "{PREFIX}{name}");
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"");
                escape_label(&mut self.text, v);
                self.text.push('"');
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", number(value));
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.buckets[i].load(Relaxed);
            self.sample(&bucket, &[("le", &number(*bound as f64 / h.per_base))], cumulative as f64);
        }
        // Read the count after the buckets: a concurrent observation then shows in `count` and
        // `+Inf` alike, and `+Inf` never falls below the last finite bucket.
        let count = h.count.load(Relaxed).max(cumulative + h.buckets[h.bounds.len()].load(Relaxed));
        self.sample(&bucket, &[("le", "+Inf")], count as f64);
        self.sample(&format!("{name}_sum"), &[], h.sum.load(Relaxed) as f64 / h.per_base);
        self.sample(&format!("{name}_count"), &[], count as f64);
    }
}

/// A sample value: integers without a fraction, others in Rust's shortest round-trip form.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counters_render_with_labels() {
        let m = Metrics::new();
        m.accepted();
        m.accepted();
        m.refused(404);
        m.refused(429);
        m.refused(429);
        m.refused(200);
        m.closed(1000);
        m.closed(4001);
        m.closed(2000);
        m.send_result(2);
        m.control_in(frame_type::PING, 4);
        m.control_out(frame_type::CLOSE, 1, 2);
        m.control_in(1, 4);
        let f = Figures { connections: 3, text_in: (5, 50), binary_out: (2, 20), ..Figures::default() };
        let t = m.render(&f);
        assert_eq!(value(&t, "rnode_ws_connections"), Some(3.0));
        assert_eq!(value(&t, "rnode_ws_connections_accepted_total"), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_connections_refused_total{status=\"404\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_connections_refused_total{status=\"429\"}"), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_connections_refused_total{status=\"500\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_disconnects_total{code=\"1000\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_disconnects_total{code=\"4001\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_disconnects_total{code=\"other\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_messages_received_total{type=\"text\"}"), Some(5.0));
        assert_eq!(value(&t, "rnode_ws_received_bytes_total{type=\"text\"}"), Some(50.0));
        assert_eq!(value(&t, "rnode_ws_messages_received_total{type=\"ping\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_received_bytes_total{type=\"ping\"}"), Some(4.0));
        assert_eq!(value(&t, "rnode_ws_messages_sent_total{type=\"binary\"}"), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_messages_sent_total{type=\"close\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_send_results_total{status=\"dropped\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_send_results_total{status=\"sent\"}"), Some(0.0));
        // Cluster and TLS families only in those modes.
        assert!(!t.contains("cluster_"));
        assert!(!t.contains("tls_"));
        // Every family has HELP and TYPE, and every sample line belongs to a declared family.
        let declared: Vec<&str> =
            t.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(f)))
                .unwrap_or(name);
            assert!(declared.contains(&family), "{line}");
        }
    }

    #[test]
    fn histograms_are_cumulative_in_base_units() {
        let m = Metrics::new();
        for us in [3, 7, 7, 400, 1_000_000] {
            m.broadcast.observe(us);
        }
        let t = m.render(&Figures::default());
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_bucket{le=\"0.000005\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_bucket{le=\"0.00001\"}"), Some(3.0));
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_bucket{le=\"0.0005\"}"), Some(4.0));
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_bucket{le=\"0.25\"}"), Some(4.0));
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_bucket{le=\"+Inf\"}"), Some(5.0));
        assert_eq!(value(&t, "rnode_ws_broadcast_duration_seconds_count"), Some(5.0));
        let sum = value(&t, "rnode_ws_broadcast_duration_seconds_sum").unwrap_or(0.0);
        assert!((sum - 1.000417).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn tls_failures_by_reason_and_server_full_drops() {
        let m = Metrics::new();
        m.tls_handshake();
        m.tls_failure(TlsFailure::Timeout);
        m.tls_failure(TlsFailure::Alert);
        m.tls_failure(TlsFailure::Alert);
        m.early_drop(EarlyDrop::ServerFull);
        let t = m.render(&Figures { tls: true, ..Figures::default() });
        assert_eq!(value(&t, "rnode_ws_tls_handshakes_total"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_tls_handshake_failures_total{reason=\"timeout\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_tls_handshake_failures_total{reason=\"alert\"}"), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_tls_handshake_failures_total{reason=\"other\"}"), Some(0.0));
        assert_eq!(value(&t, "rnode_ws_connections_dropped_total{reason=\"max_connections\"}"), Some(1.0));
    }

    #[test]
    fn cluster_lag_is_in_seconds_and_only_in_cluster_mode() {
        let m = Metrics::new();
        m.cluster_lag.observe(800);
        m.cluster_lag.observe(30_000);
        assert!(!m.render(&Figures::default()).contains("pubsub_lag"));
        let f = Figures { cluster: Some(ClusterFigures::default()), ..Figures::default() };
        let t = m.render(&f);
        assert_eq!(value(&t, "rnode_ws_cluster_pubsub_lag_seconds_bucket{le=\"0.001\"}"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_cluster_pubsub_lag_seconds_bucket{le=\"0.05\"}"), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_cluster_pubsub_lag_seconds_count"), Some(2.0));
    }

    #[test]
    fn label_values_are_escaped_and_opt_in_rooms_listed() {
        let f = Figures {
            room_members: vec![("a\"b\\c\nd".to_string(), 2)],
            cluster: Some(ClusterFigures { connected: true, dropped: 4, ..ClusterFigures::default() }),
            rss_bytes: Some(4096),
            ..Figures::default()
        };
        let t = Metrics::new().render(&f);
        assert_eq!(value(&t, r#"rnode_ws_room_members{room="a\"b\\c\nd"}"#), Some(2.0));
        assert_eq!(value(&t, "rnode_ws_cluster_connected"), Some(1.0));
        assert_eq!(value(&t, "rnode_ws_cluster_dropped_envelopes_total"), Some(4.0));
        assert_eq!(value(&t, "rnode_ws_cluster_pubsub_lag_seconds_count"), Some(0.0));
        assert_eq!(value(&t, "rnode_ws_process_resident_memory_bytes"), Some(4096.0));
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(rss_bytes().is_some_and(|b| b > 1024 * 1024));
        }
    }
}
