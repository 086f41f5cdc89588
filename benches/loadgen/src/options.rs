//! Command-line options: `--name value` pairs and a few flags, each with a default.

use std::time::Duration;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// C connections, W messages in flight each: messages/s and round-trip times.
    Echo,
    /// N subscribers, one publisher with W messages in flight: deliveries/s and delivery latency.
    Broadcast,
    /// Open N connections and hold them idle: connections/s and server RSS per connection.
    Connect,
    /// N subscribers over R rooms and the nodes, one publisher to random rooms: deliveries/s.
    Rooms,
}

/// Everything a run needs, parsed from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// Measurement mode.
    pub mode: Mode,
    /// `host:port` of the server (127.0.0.1 unless told otherwise).
    pub addr: String,
    /// Request path for echo and connect.
    pub path: String,
    /// Connections (echo, connect) or subscribers (broadcast).
    pub conns: usize,
    /// Messages in flight per connection (echo) or for the publisher (broadcast).
    pub inflight: usize,
    /// Echo only: total messages/s to offer, paced per connection; `None` keeps W in flight
    /// at all times (closed loop).
    pub rate: Option<f64>,
    /// Payload size in bytes.
    pub size: usize,
    /// Send binary frames instead of text.
    pub binary: bool,
    /// Offer permessage-deflate and send JSON text (`--deflate`): the server compresses what it
    /// sends; we send uncompressed (allowed) and count frames without inflating them.
    pub deflate: bool,
    /// wss:// (echo and connect modes).
    pub tls: bool,
    /// Time before counting starts.
    pub warmup: Duration,
    /// Time during which messages are counted.
    pub duration: Duration,
    /// Server process to read CPU time and RSS from.
    pub server_pid: Option<u32>,
    /// More processes of the server side (other cluster nodes, Redis): their CPU time is added
    /// to `server_cpu`.
    pub extra_pids: Vec<u32>,
    /// Path subscribers connect to (broadcast).
    pub sub_path: String,
    /// Path the publisher connects to (broadcast).
    pub pub_path: String,
    /// Broadcast: `host:port` of each server node; subscriber `i` connects to node `i % len`
    /// (empty: all to `addr`). The publisher always connects to `addr`.
    pub sub_addrs: Vec<String>,
    /// Text frame each subscriber sends after the upgrade (e.g. a protocol `join_room`); with
    /// `pub_room`, the publisher sends it too.
    pub join_frame: Option<String>,
    /// Wrap each published payload in a `room_message` protocol frame for this room.
    pub pub_room: Option<String>,
    /// Rooms mode: rooms the subscribers are spread over (see `rooms.rs`).
    pub rooms: usize,
    /// Connections opened at once (connect).
    pub concurrency: usize,
    /// Wait after the last connection before reading the server's RSS (connect).
    pub settle: Duration,
    /// Loopback source addresses the connections spread over (127.0.0.1 to 127.0.0.N); 1 lets
    /// the kernel choose.
    pub sources: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Echo,
            addr: "127.0.0.1:3000".into(),
            path: "/echo".into(),
            conns: 100,
            inflight: 64,
            size: 32,
            rate: None,
            binary: false,
            deflate: false,
            tls: false,
            warmup: Duration::from_millis(500),
            duration: Duration::from_millis(3000),
            server_pid: None,
            extra_pids: Vec::new(),
            sub_path: "/sub".into(),
            pub_path: "/pub".into(),
            sub_addrs: Vec::new(),
            join_frame: None,
            pub_room: None,
            rooms: 40,
            concurrency: 64,
            settle: Duration::from_millis(500),
            sources: 1,
        }
    }
}

/// Usage text printed by `--help` and after a bad option.
pub const USAGE: &str = "usage: rnode-loadgen --mode echo|broadcast|connect|rooms --addr HOST:PORT \
[--path P] [--conns N] [--inflight W] [--rate MSGS_PER_S] [--size BYTES] [--binary] [--tls] [--deflate] [--warmup-ms MS] \
[--duration-ms MS] [--server-pid PID] [--extra-pids PID,PID] [--sub-path P] [--pub-path P] \
[--sub-ports PORT,PORT] [--join-frame TEXT] [--pub-room ROOM] [--concurrency K] [--settle-ms MS] [--sources N]";

/// A comma-separated list of numbers.
fn numbers<T: std::str::FromStr>(name: &str, value: &str) -> Result<Vec<T>, String> {
    value.split(',').map(|v| number(name, v.trim())).collect()
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{name}: not a number: {value}"))
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut o = Options::default();
        let mut it = args.into_iter();
        while let Some(name) = it.next() {
            if name == "--tls" {
                o.tls = true;
                continue;
            }
            if name == "--binary" {
                o.binary = true;
                continue;
            }
            if name == "--deflate" {
                o.deflate = true;
                continue;
            }
            if name == "--help" {
                return Err(USAGE.into());
            }
            let value = it.next().ok_or_else(|| format!("{name}: missing value"))?;
            match name.as_str() {
                "--mode" => {
                    o.mode = match value.as_str() {
                        "echo" => Mode::Echo,
                        "broadcast" => Mode::Broadcast,
                        "connect" => Mode::Connect,
                        "rooms" => Mode::Rooms,
                        _ => return Err(format!("--mode: unknown mode {value}")),
                    }
                }
                "--addr" => o.addr = value,
                "--port" => o.addr = format!("127.0.0.1:{}", number::<u16>(&name, &value)?),
                "--path" => o.path = value,
                "--conns" => o.conns = number(&name, &value)?,
                "--inflight" => o.inflight = number(&name, &value)?,
                "--size" => o.size = number(&name, &value)?,
                "--rate" => o.rate = Some(number(&name, &value)?).filter(|r: &f64| *r > 0.0),
                "--warmup-ms" => o.warmup = Duration::from_millis(number(&name, &value)?),
                "--duration-ms" => o.duration = Duration::from_millis(number(&name, &value)?),
                "--server-pid" => o.server_pid = Some(number(&name, &value)?),
                "--extra-pids" => o.extra_pids = numbers(&name, &value)?,
                "--sub-path" => o.sub_path = value,
                "--pub-path" => o.pub_path = value,
                "--sub-ports" => {
                    let ports: Vec<u16> = numbers(&name, &value)?;
                    o.sub_addrs = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
                }
                "--join-frame" => o.join_frame = Some(value),
                "--pub-room" => o.pub_room = Some(value),
                "--rooms" => o.rooms = number(&name, &value)?,
                "--concurrency" => o.concurrency = number(&name, &value)?,
                "--settle-ms" => o.settle = Duration::from_millis(number(&name, &value)?),
                "--sources" => o.sources = number(&name, &value)?,
                _ => return Err(format!("unknown option {name}\n{USAGE}")),
            }
        }
        if o.conns == 0 || o.inflight == 0 || o.concurrency == 0 {
            return Err("--conns, --inflight and --concurrency must be at least 1".into());
        }
        if o.conns > 100_000 || o.inflight > 10_000 || o.size > 16 * 1024 * 1024 {
            return Err("--conns <= 100000, --inflight <= 10000, --size <= 16 MiB".into());
        }
        if o.sources == 0 {
            return Err("--sources must be 1-255".into());
        }
        if o.sub_addrs.len() > 64 || o.extra_pids.len() > 64 {
            return Err("--sub-ports and --extra-pids take at most 64 values".into());
        }
        Ok(o)
    }

    /// The server's processes: `server_pid` first, then `extra_pids`.
    pub fn server_pids(&self) -> Vec<u32> {
        self.server_pid.iter().chain(self.extra_pids.iter()).copied().collect()
    }

    /// The source address of connection `i`: 127.0.0.1 to 127.0.0.N in turn, or `None` (the
    /// kernel's choice) with one source.
    pub fn source(&self, i: usize) -> Option<std::net::IpAddr> {
        if self.sources <= 1 {
            return None;
        }
        let host = 1 + (i % usize::from(self.sources)) as u8;
        Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, host)))
    }

    /// Where broadcast subscriber `i` connects.
    pub fn sub_addr(&self, i: usize) -> &str {
        if self.sub_addrs.is_empty() {
            &self.addr
        } else {
            &self.sub_addrs[i % self.sub_addrs.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_and_overrides() {
        let o = parse("").unwrap();
        assert_eq!((o.mode, o.conns, o.inflight, o.size), (Mode::Echo, 100, 64, 32));
        let o = parse("--mode broadcast --port 9 --conns 1000 --inflight 32 --binary").unwrap();
        assert_eq!(o.mode, Mode::Broadcast);
        assert_eq!(o.addr, "127.0.0.1:9");
        assert_eq!((o.conns, o.inflight, o.binary, o.tls), (1000, 32, true, false));
        assert_eq!((o.sub_addr(0), o.sub_addr(1)), ("127.0.0.1:9", "127.0.0.1:9"));
        assert!(parse("--tls --mode connect").unwrap().tls);
        assert!(!o.deflate);
        let o = parse("--mode connect --tls --deflate --sources 4").unwrap();
        assert_eq!((o.tls, o.deflate, o.sources), (true, true, 4));
        assert!(o.server_pids().is_empty());
    }

    #[test]
    fn subscribers_alternate_over_sub_ports() {
        let o =
            parse("--mode broadcast --port 7 --sub-ports 7,8 --server-pid 10 --extra-pids 11,12").unwrap();
        assert_eq!(o.addr, "127.0.0.1:7");
        assert_eq!(
            [o.sub_addr(0), o.sub_addr(1), o.sub_addr(2)],
            ["127.0.0.1:7", "127.0.0.1:8", "127.0.0.1:7"]
        );
        assert_eq!(o.server_pids(), [10, 11, 12]);
        assert!(parse("--sub-ports 7,x").is_err());
        assert!(parse("--extra-pids").is_err());
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse("--mode nope").is_err());
        assert!(parse("--conns x").is_err());
        assert!(parse("--conns 0").is_err());
        assert!(parse("--size").is_err());
        assert!(parse("--what 1").is_err());
        assert!(parse("--sources 0").is_err());
        assert!(parse("--sources 300").is_err());
    }

    #[test]
    fn sources_rotate_over_loopback_addresses() {
        assert_eq!(parse("").unwrap().source(5), None);
        let o = parse("--sources 3").unwrap();
        let ip = |i| o.source(i).map(|a| a.to_string());
        assert_eq!(
            [ip(0), ip(1), ip(2), ip(3)].map(Option::unwrap),
            ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"]
        );
    }
}
