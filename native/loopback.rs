//! Attach mode, slow path: connections whose descriptor cannot be adopted (TLS sessions that
//! live in Node, Windows, any other Duplex) reach the engine through an internal listener on
//! 127.0.0.1. JS connects to it and pipes bytes both ways, so the engine serves them with the
//! same connection task as any TCP connection.
//!
//! The first line a JS pipe sends is `<secret> <attach id> <peer ip> <peer port>\n`: the secret
//! (random per server) keeps other local processes out, and the peer address is the real
//! client's, for `remoteAddress` and the per-IP limit. The rebuilt request head follows.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::adopt;
use crate::engine::Engine;

/// Longest preamble line: 32 hex digits, a u32, an IPv6 address and a port, with spaces.
const MAX_PREAMBLE: usize = 128;

/// Where JS connects and what it must say first.
#[derive(Clone)]
pub struct Loopback {
    pub port: u16,
    pub secret: String,
}

/// The loopback listener of one server, started on first need.
#[derive(Default)]
pub struct LoopbackSlot(Mutex<Option<Loopback>>);

impl LoopbackSlot {
    /// The listener's port and secret, binding it the first time.
    pub fn get_or_start(&self, engine: &Arc<Engine>) -> std::io::Result<Loopback> {
        let mut slot = self.0.lock().map_err(|_| std::io::Error::other("loopback state poisoned"))?;
        if let Some(lb) = slot.as_ref() {
            return Ok(lb.clone());
        }
        let std_listener = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))?;
        std_listener.set_nonblocking(true)?;
        let port = std_listener.local_addr()?.port();
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let lb = Loopback { port, secret };
        let engine = engine.clone();
        let expected = lb.secret.clone();
        napi::bindgen_prelude::within_runtime_if_available(|| {
            let listener = TcpListener::from_std(std_listener)?;
            tokio::spawn(accept_loop(engine, listener, expected));
            Ok::<(), std::io::Error>(())
        })?;
        *slot = Some(lb.clone());
        Ok(lb)
    }
}

async fn accept_loop(engine: Arc<Engine>, listener: TcpListener, secret: String) {
    let secret: Arc<str> = secret.into();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve(engine.clone(), stream, secret.clone()));
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            _ = engine.stop_accepting.notified() => break,
        }
        if engine.is_shutting_down() {
            break;
        }
    }
}

/// Reads and checks the preamble, then serves the upgrade behind it; a wrong or slow preamble
/// drops the connection without an answer.
async fn serve(engine: Arc<Engine>, mut stream: TcpStream, secret: Arc<str>) {
    let deadline = tokio::time::Instant::now() + engine.config.handshake_timeout;
    let mut buf = Vec::with_capacity(1024);
    let line_end = loop {
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            break i;
        }
        if buf.len() > MAX_PREAMBLE {
            return;
        }
    };
    let Some((attach, remote)) = parse_preamble(&buf[..line_end], &secret) else { return };
    let rest = buf.split_off(line_end + 1);
    adopt::serve(engine, stream, remote, rest, attach);
}

/// `<secret> <attach> <ip> <port>` with the right secret: the attach id and peer address.
fn parse_preamble(line: &[u8], secret: &str) -> Option<(u32, SocketAddr)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let given = parts.next()?;
    if !same_secret(given.as_bytes(), secret.as_bytes()) {
        return None;
    }
    let attach = parts.next()?.parse::<u32>().ok()?;
    let ip = parts.next()?.parse::<IpAddr>().ok()?;
    let port = parts.next()?.parse::<u16>().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((attach, SocketAddr::new(ip, port)))
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{parse_preamble, same_secret};

    #[test]
    fn preambles() {
        let s = "0123456789abcdef0123456789abcdef";
        let ok = format!("{s} 7 ::ffff:10.0.0.1 4242");
        let (attach, addr) = parse_preamble(ok.as_bytes(), s).unwrap_or((0, ([0, 0, 0, 0], 0).into()));
        assert_eq!(attach, 7);
        assert_eq!(addr.port(), 4242);
        assert_eq!(addr.ip().to_string(), "::ffff:10.0.0.1");
        assert!(parse_preamble(format!("{s} 7 127.0.0.1 1").as_bytes(), "x").is_none());
        assert!(parse_preamble(format!("{s} 7 127.0.0.1").as_bytes(), s).is_none());
        assert!(parse_preamble(format!("{s} 7 127.0.0.1 70000").as_bytes(), s).is_none());
        assert!(parse_preamble(format!("{s} -1 127.0.0.1 1").as_bytes(), s).is_none());
        assert!(parse_preamble(format!("{s} 7 127.0.0.1 1 extra").as_bytes(), s).is_none());
        assert!(parse_preamble(b"\xff\xfe", s).is_none());
    }

    #[test]
    fn secrets() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
