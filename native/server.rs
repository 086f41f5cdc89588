//! Accept loop and HTTP upgrade: we read and parse the request head ourselves (httparse), answer
//! it, and run the WebSocket connection on the same task. No HTTP machinery stays behind: after
//! the 101, the connection holds nothing of the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::config::{PROXY_HEADER_TIMEOUT_MS, PROXY_V2_MAX_BYTES};
use crate::conn::ConnInfo;
use crate::deflate;
use crate::engine::{hooks, Admission, AdmissionError, Engine, Verdict};
use crate::error::{ListenError, Result};
use crate::events::Event;
use crate::handshake::{self, Head, Parsed};
use crate::metrics::EarlyDrop;
use crate::proxy_protocol::{self, Outcome};
use crate::task;
use crate::trust_proxy;

/// Binds the listening socket and starts the accept loop; returns the bound port.
pub async fn listen(engine: Arc<Engine>) -> Result<u16> {
    let addr = format!("{}:{}", engine.config.host, engine.config.port);
    let listener = bind(&addr, engine.config.reuse_port, engine.config.backlog)
        .await
        .map_err(|e| ListenError::from_io(addr.clone(), e))?;
    let port = listener.local_addr().map_err(|e| ListenError::from_io(addr, e))?.port();
    tokio::spawn(Engine::ticker(Arc::downgrade(&engine)));
    tokio::spawn(accept_loop(engine, listener));
    Ok(port)
}

/// Binds the listening socket with the configured accept-queue length (`backlog`; std's
/// `TcpListener::bind` asks for 128, too short for a reconnect storm); with `reuse_port`, several
/// processes can share the port and the kernel spreads connections over them (SO_REUSEPORT, Unix).
async fn bind(addr: &str, reuse_port: bool, backlog: u32) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address");
    for sock_addr in tokio::net::lookup_host(addr).await? {
        let socket = if sock_addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        // As std's bind does: a restarted server may bind while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        if reuse_port {
            socket.set_reuseport(true)?;
        }
        #[cfg(not(unix))]
        let _ = reuse_port;
        match socket.bind(sock_addr).and_then(|()| socket.listen(backlog)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connections taken from the listen queue in one turn of the accept loop before it checks for
/// a stop and lets the worker run the handshakes it spawned.
const ACCEPT_BATCH: usize = 64;

/// Takes connections off the listen queue as fast as the kernel hands them over: each gets its
/// own task for the handshake at once, so accepting never waits on a handshake or on JS.
async fn accept_loop(engine: Arc<Engine>, listener: TcpListener) {
    loop {
        let batch = std::future::poll_fn(|cx| {
            let mut taken = 0;
            while taken < ACCEPT_BATCH {
                match listener.poll_accept(cx) {
                    Poll::Ready(Ok((stream, remote))) => {
                        taken += 1;
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve_tcp(engine.clone(), stream, remote));
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => break,
                }
            }
            if taken == 0 {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        });
        tokio::select! {
            accepted = batch => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                if accepted.is_err() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            _ = engine.stop_accepting.notified() => {}
        }
        if engine.stops_accepting() {
            break;
        }
    }
}

/// Reads the upgrade request, answers it, and runs the connection on the same task (after the
/// TLS handshake when the port speaks TLS).
async fn serve_tcp(engine: Arc<Engine>, mut stream: TcpStream, peer: SocketAddr) {
    // With `proxyProtocol`, the proxy's header comes first and names the client.
    let (remote, mut buf) = if engine.config.proxy_protocol {
        let start = tokio::time::Instant::now();
        let header_deadline = (start + engine.config.handshake_timeout)
            .min(start + std::time::Duration::from_millis(u64::from(PROXY_HEADER_TIMEOUT_MS)));
        let read = Box::pin(read_proxy_header(&mut stream));
        match tokio::time::timeout_at(header_deadline, read).await {
            Ok(Some((addr, rest))) => (addr.unwrap_or(peer), rest),
            Ok(None) => return engine.metrics.early_drop(EarlyDrop::ProxyInvalid),
            Err(_) => return engine.metrics.early_drop(EarlyDrop::ProxyTimeout),
        }
    } else {
        (peer, Vec::new())
    };
    // TLS after the PROXY header: what arrived behind the header is the start of the handshake.
    if let Some(tls) = engine.tls.clone() {
        return crate::tls::serve(engine, tls, stream, remote, buf).await;
    }
    buf.reserve(1024);
    serve_attached(engine, stream, remote, buf, 0).await;
}

/// `serve_tcp` for a connection Node accepted (attach mode): `prefix` holds the bytes Node read
/// (the request head rebuilt by JS, then the rest), read before the stream's. A non-zero
/// `attach` is reported with the connection, or in an `UpgradeFailed` event when it is refused.
/// On the own port, `prefix` holds what arrived behind a PROXY protocol header (usually nothing).
pub async fn serve_attached(
    engine: Arc<Engine>,
    mut stream: TcpStream,
    remote: SocketAddr,
    prefix: Vec<u8>,
    attach: u32,
) {
    let deadline = tokio::time::Instant::now() + engine.config.handshake_timeout;
    let upgraded = upgrade(&engine, &mut stream, remote, prefix, attach, deadline, None).await;
    if let Some((info, leftover, admission)) = upgraded {
        task::start(engine, info, stream, leftover, admission, None);
    }
}

/// The upgrade on `stream` (TCP, or a TLS session over it), within `deadline`: reads the
/// request after `prefix`, decides, and writes the 101 or the error. Returns what the
/// connection's task needs: its identity, the bytes behind the request, and its admission.
/// `peer_cert` is the client's TLS certificate (DER), handed to JS with the request.
pub async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    engine: &Arc<Engine>,
    stream: &mut S,
    remote: SocketAddr,
    prefix: Vec<u8>,
    attach: u32,
    deadline: tokio::time::Instant,
    peer_cert: Option<&[u8]>,
) -> Option<(ConnInfo, Vec<u8>, Admission)> {
    let failed = |engine: &Engine| {
        if attach != 0 {
            engine.events.push(Event::UpgradeFailed { request: attach });
        }
    };
    let prefix = if prefix.is_empty() { Vec::with_capacity(1024) } else { prefix };
    // Slow or silent clients are dropped once the handshake timeout passes.
    // Both handshake steps are boxed: their state lives on the heap only while they run, so the
    // task that then carries the connection for its whole life stays small.
    let read = Box::pin(read_head(engine, stream, prefix));
    let Ok(Some((head, leftover))) = tokio::time::timeout_at(deadline, read).await else {
        failed(engine);
        return None;
    };
    if let Some(response) = endpoint(engine, &head) {
        let _ = tokio::time::timeout_at(deadline, async {
            stream.write_all(&response).await?;
            stream.shutdown().await
        })
        .await;
        failed(engine);
        return None;
    }
    match Box::pin(accept(engine, head, remote, deadline, attach, peer_cert)).await {
        Ok((info, protocol, key, admission, upgrade_request)) => {
            let extensions = info.deflate.as_ref().map(|(n, _)| n.answer());
            let response = handshake::switching_protocols(&key, protocol.as_deref(), extensions.as_deref());
            let written = tokio::time::timeout_at(deadline, async {
                stream.write_all(&response).await?;
                stream.flush().await
            })
            .await;
            if !matches!(written, Ok(Ok(()))) {
                if upgrade_request != 0 {
                    engine.events.push(Event::UpgradeFailed { request: upgrade_request });
                }
                failed(engine);
                return None;
            }
            engine.metrics.accepted();
            Some((info, leftover, admission))
        }
        Err(response) => {
            engine.metrics.refused(handshake::status_of(&response));
            let _ = tokio::time::timeout_at(deadline, async {
                stream.write_all(&response).await?;
                stream.shutdown().await
            })
            .await;
            failed(engine);
            None
        }
    }
}

/// Reads until the request head is complete, starting with the bytes in `buf`; answers a
/// malformed or oversized head itself. Returns the head and the bytes the client sent after it.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(
    engine: &Engine,
    stream: &mut S,
    mut buf: Vec<u8>,
) -> Option<(Head, Vec<u8>)> {
    let max_bytes = engine.config.max_header_bytes;
    // Bytes given up front may already hold the whole head: parse them before reading.
    let mut read_first = buf.is_empty();
    loop {
        if read_first {
            if buf.len() == buf.capacity() {
                buf.reserve(buf.len().min(max_bytes).max(1024));
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        read_first = true;
        match handshake::parse(&buf, engine.config.max_headers, max_bytes) {
            Ok(Parsed::Partial) => continue,
            Ok(Parsed::Complete(head, len)) => return Some((head, buf[len..].to_vec())),
            Err(rejection) => {
                engine.metrics.refused(rejection.status);
                let _ = stream.write_all(&rejection.response()).await;
                let _ = stream.shutdown().await;
                return None;
            }
        }
    }
}

/// Reads the PROXY protocol header (v1 or v2) the connection must start with. Returns the
/// client it names (None: a LOCAL/UNKNOWN header, the peer stays) and the bytes behind it; None
/// when the header is invalid or the connection ends first. Reads only what the header needs
/// plus what arrived with it, bounded by `PROXY_V2_MAX_BYTES`.
async fn read_proxy_header(stream: &mut TcpStream) -> Option<(Option<SocketAddr>, Vec<u8>)> {
    let mut buf: Vec<u8> = Vec::with_capacity(256);
    loop {
        match proxy_protocol::parse(&buf, PROXY_V2_MAX_BYTES) {
            Outcome::Done { addr, consumed } => return Some((addr, buf.split_off(consumed))),
            Outcome::Invalid(_) => return None,
            Outcome::Need(_) => {}
        }
        if buf.len() >= PROXY_V2_MAX_BYTES {
            return None;
        }
        buf.reserve(PROXY_V2_MAX_BYTES - buf.len());
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The answer of the `metricsPath` and `healthPath` endpoints, when the request is for one.
fn endpoint(engine: &Engine, head: &Head) -> Option<Vec<u8>> {
    let is = |path: &Option<String>| path.as_deref() == Some(head.path.as_str());
    let metrics = is(&engine.config.metrics_path);
    if !metrics && !is(&engine.config.health_path) {
        return None;
    }
    if head.method != "GET" && head.method != "HEAD" {
        return Some(handshake::error_response(405, "Only GET", Some(("allow", "GET, HEAD"))));
    }
    let mut response = if metrics {
        handshake::body_response(200, METRICS_CONTENT_TYPE, engine.metrics_text().as_bytes())
    } else {
        let (status, body) = engine.health();
        handshake::body_response(status, "application/json", body.as_bytes())
    };
    if head.method == "HEAD" {
        if let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") {
            response.truncate(end + 4);
        }
    }
    Some(response)
}

/// The Prometheus text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What an accepted upgrade needs: the connection's identity, the chosen subprotocol, the key
/// to answer, its admission, and the `onUpgrade` request id (0 without the hook).
type Accepted = (ConnInfo, Option<String>, String, Admission, u32);

/// Decides on an upgrade request: Ok to upgrade, or the whole HTTP error response.
async fn accept(
    engine: &Arc<Engine>,
    head: Head,
    remote: SocketAddr,
    deadline: tokio::time::Instant,
    attach: u32,
    peer_cert: Option<&[u8]>,
) -> Result<Accepted, Vec<u8>> {
    let path = head.path.clone();
    if !engine.has_route(&path) {
        return Err(handshake::error_response(404, "No WebSocket handler on this path", None));
    }
    if engine.is_shutting_down() {
        return Err(handshake::error_response(503, "Server shutting down", None));
    }
    let key = handshake::validate(&head).map_err(|r| r.response())?;
    if let Some(allowed) = &engine.config.allowed_origins {
        let origin = head.header("origin");
        if !origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o))) {
            return Err(handshake::error_response(403, "Origin not allowed", None));
        }
    }
    // Behind a trusted proxy, the client is the address its forwarding header names.
    let remote = resolve_client(engine, &head, remote);
    let admission = match engine.admit(remote.ip()) {
        Ok(a) => a,
        Err(AdmissionError::ServerFull) => {
            return Err(handshake::error_response(503, "Too many connections", None))
        }
        Err(AdmissionError::TooManyFromIp) => {
            return Err(handshake::error_response(429, "Too many connections from this address", None))
        }
    };
    let offered = handshake::offered_protocols(&head);
    let mut protocol = offered.iter().find(|p| engine.config.protocols.contains(p)).cloned();
    let mut uuid = fast_uuid();
    let asked_client_id = query_param(&head.query, "clientId").filter(|id| valid_client_id(id));
    let mut client_id = match asked_client_id {
        Some(id) => id.to_string(),
        None => format!("client_{}", &uuid.simple().to_string()[..8]),
    };
    let mut chosen_client_id = asked_client_id.is_some();
    let mut request_info = request_json(&head, remote);
    if let Some(der) = peer_cert {
        // Inside the request object: its closing brace goes back after the certificate.
        request_info.pop();
        request_info.extend_from_slice(b",\"peerCertificate\":");
        json_str(&mut request_info, &data_encoding::BASE64.encode(der));
        request_info.push(b'}');
    }

    let mut upgrade_request = 0;
    if engine.route_hooks(&path) & hooks::UPGRADE != 0 {
        let request = engine.next_request_id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        engine.pending_upgrades.insert(request, tx);
        let mut info = Vec::with_capacity(request_info.len() + 64);
        info.extend_from_slice(b"{\"path\":");
        json_str(&mut info, &path);
        info.extend_from_slice(b",\"protocols\":");
        let _ = serde_json::to_writer(&mut info, &offered);
        info.extend_from_slice(b"}\n");
        info.extend_from_slice(&request_info);
        let info = json_text(info);
        engine.events.push(Event::Upgrade { request, info });
        let verdict = tokio::time::timeout_at(deadline, rx).await;
        engine.pending_upgrades.remove(&request);
        match verdict {
            Ok(Ok(Verdict::Accept { client_id: id, protocol: chosen })) => {
                if let Some(id) = id {
                    client_id = id;
                    chosen_client_id = true;
                }
                if chosen.is_some() {
                    protocol = chosen;
                }
                upgrade_request = request;
            }
            Ok(Ok(Verdict::Reject { status, message })) => {
                let status = if (400..=599).contains(&status) { status } else { 403 };
                return Err(handshake::error_response(status, &message, None));
            }
            _ => return Err(handshake::error_response(503, "Upgrade was not answered in time", None)),
        }
    }

    // A session token takes its session back when the client it belongs to presents it: a
    // clientId chosen by the request or `onUpgrade` must match the session's.
    let token = query_param(&head.query, "session").and_then(crate::sessions::parse_token);
    let resumed = match token {
        Some(token) => {
            let chosen = chosen_client_id.then_some(client_id.as_str());
            crate::sessions::resume(engine, &token, chosen).await
        }
        None => None,
    };
    if let Some(s) = &resumed {
        client_id = s.client_id.clone();
        uuid = uuid::Uuid::from_bytes(s.uuid);
    }

    // What every socket needs at once, then (after a newline, which JSON text never holds
    // outside its strings) the request, which JS parses only when a handler reads it.
    let mut info_json = Vec::with_capacity(request_info.len() + 160);
    info_json.extend_from_slice(b"{\"id\":");
    json_str(&mut info_json, &uuid.to_string());
    info_json.extend_from_slice(b",\"clientId\":");
    json_str(&mut info_json, &client_id);
    info_json.extend_from_slice(b",\"path\":");
    json_str(&mut info_json, &path);
    info_json.extend_from_slice(b",\"protocol\":");
    json_str(&mut info_json, protocol.as_deref().unwrap_or(""));
    let recovered = resumed.is_some();
    if let Some(data) = resumed.as_ref().and_then(|s| s.data.as_deref()) {
        // A session from Redis brings its `socket.data` (as JSON text, in a JSON string).
        info_json.extend_from_slice(b",\"data\":");
        json_str(&mut info_json, data);
    }
    info_json.extend_from_slice(
        format!(",\"recovered\":{recovered},\"upgrade\":{upgrade_request},\"attach\":{attach}}}\n")
            .as_bytes(),
    );
    info_json.extend_from_slice(&request_info);
    let deflate = engine.route_deflate(&path).and_then(|config| {
        Some((deflate::negotiate(head.all("sec-websocket-extensions"), &config)?, config))
    });
    let info = ConnInfo {
        uuid: *uuid.as_bytes(),
        client_id,
        path,
        info_json: json_text(info_json),
        deflate,
        resumed,
    };
    Ok((info, protocol, key, admission, upgrade_request))
}

/// The client's address: `remote` (the peer, or what a PROXY header named) unless it is a
/// trusted proxy (`trustProxy`), then the rightmost untrusted hop of its forwarding header (port
/// 0: the header names no port we can trust).
fn resolve_client(engine: &Engine, head: &Head, remote: SocketAddr) -> SocketAddr {
    let trust = &engine.config.trust_proxy;
    if trust.is_empty() {
        return remote;
    }
    let header = engine.config.proxy_header;
    let values: Vec<&[u8]> = head.all(header.name()).collect();
    let ip = trust.resolve(remote.ip(), header, values.into_iter());
    if ip == trust_proxy::canonical(remote.ip()) {
        SocketAddr::new(ip, remote.port())
    } else {
        SocketAddr::new(ip, 0)
    }
}

/// A `clientId` is kept when it is 1-64 characters of `[A-Za-z0-9_.:-]`.
fn valid_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The upgrade request as JS reads it on demand: raw query, peer address, headers (lower-case
/// names, repeated headers joined with ", "), as one JSON object.
fn request_json(head: &Head, remote: SocketAddr) -> Vec<u8> {
    // Written field by field: a serde_json map per connection (a BTreeMap and a String per
    // field) showed in the connect profile.
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"query\":");
    json_str(&mut out, &head.query);
    out.extend_from_slice(b",\"remoteAddress\":");
    json_str(&mut out, &remote.ip().to_string());
    out.extend_from_slice(format!(",\"remotePort\":{},\"headers\":{{", remote.port()).as_bytes());
    let mut first = true;
    for (i, (name, _)) in head.headers.iter().enumerate() {
        if head.headers[..i].iter().any(|(n, _)| n == name) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        json_str(&mut out, name);
        out.push(b':');
        let mut values = head.headers[i..].iter().filter(|(n, _)| n == name).map(|(_, v)| v);
        let first_value = values.next().map_or(&[][..], |v| v.as_slice());
        match values.next() {
            // The usual case: one value, written without a copy when it is UTF-8.
            None => json_str(&mut out, &String::from_utf8_lossy(first_value)),
            Some(second) => {
                let mut joined = String::from_utf8_lossy(first_value).into_owned();
                for v in std::iter::once(second).chain(values) {
                    joined.push_str(", ");
                    joined.push_str(&String::from_utf8_lossy(v));
                }
                json_str(&mut out, &joined);
            }
        }
    }
    out.extend_from_slice(b"}}");
    out
}

/// Appends `s` as a JSON string literal (serde_json's escaping; writing to a Vec cannot fail).
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(out, s);
}

/// The finished JSON text: only serde_json output and ASCII literals went in, so it is UTF-8.
fn json_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_default()
}

/// A random (version 4) UUID from a per-thread generator seeded once from the OS: `new_v4`
/// asks the OS for every one, a syscall per connection. Socket ids name connections; they are
/// not secrets.
fn fast_uuid() -> uuid::Uuid {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([7; 8]),
        ));
    }
    // splitmix64, twice.
    let next = || {
        STATE.with(|s| {
            let x = s.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            s.set(x);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        })
    };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&next().to_le_bytes());
    bytes[8..].copy_from_slice(&next().to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::{fast_uuid, json_str, json_text, query_param, valid_client_id};

    #[test]
    fn json_strings() {
        let mut out = Vec::new();
        json_str(&mut out, "a\"b\\c\u{1}d é");
        let out = json_text(out);
        assert_eq!(out, r#""a\"b\\c\u0001d é""#);
        let parsed: String = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(parsed, "a\"b\\c\u{1}d é");
    }

    #[test]
    fn uuids_are_v4_and_distinct() {
        let (a, b) = (fast_uuid(), fast_uuid());
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn client_ids() {
        assert!(valid_client_id("user_123"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"x".repeat(65)));
    }

    #[test]
    fn query() {
        assert_eq!(query_param("a=1&clientId=bob", "clientId"), Some("bob"));
        assert_eq!(query_param("clientIdx=1", "clientId"), None);
    }
}
