//! Accept loop and HTTP upgrade: hyper parses the request head, we answer or hand the socket on.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::connection::{self, ConnInfo};
use crate::engine::{hooks, AdmissionError, Engine, Verdict};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::upgrade::{self, reject, Body};

/// Binds the listening socket and starts the accept loop; returns the bound port.
pub async fn listen(engine: Arc<Engine>) -> Result<u16> {
    let addr = format!("{}:{}", engine.config.host, engine.config.port);
    let listener = bind(&addr, engine.config.reuse_port).await.map_err(|e| Error::Bind(addr.clone(), e))?;
    let port = listener.local_addr().map_err(|e| Error::Bind(addr, e))?.port();
    tokio::spawn(accept_loop(engine, listener));
    Ok(port)
}

/// Binds the listening socket; with `reuse_port`, several processes can share the port and the
/// kernel spreads connections over them (SO_REUSEPORT, Unix only).
async fn bind(addr: &str, reuse_port: bool) -> std::io::Result<TcpListener> {
    if !reuse_port {
        return TcpListener::bind(addr).await;
    }
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, "no address");
    for sock_addr in tokio::net::lookup_host(addr).await? {
        let socket = if sock_addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        #[cfg(unix)]
        socket.set_reuseport(true)?;
        match socket.bind(sock_addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn accept_loop(engine: Arc<Engine>, listener: TcpListener) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_tcp(engine.clone(), stream, remote));
                }
                // Out of file descriptors and the like: back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            _ = engine.stop_accepting.notified() => break,
        }
        if engine.is_shutting_down() {
            break;
        }
    }
}

async fn serve_tcp(engine: Arc<Engine>, stream: TcpStream, remote: SocketAddr) {
    let timeout = engine.config.handshake_timeout;
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(engine.config.max_header_bytes.max(8192))
        .max_headers(engine.config.max_headers)
        .keep_alive(false);
    let svc_engine = engine.clone();
    let service = service_fn(move |req| {
        let engine = svc_engine.clone();
        async move { Ok::<_, std::convert::Infallible>(handle_request(engine, req, remote).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    // Slow or silent clients are dropped once the handshake timeout passes.
    let _ = tokio::time::timeout(timeout, conn).await;
}

async fn handle_request(
    engine: Arc<Engine>,
    mut req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if !engine.has_route(&path) {
        return reject(StatusCode::NOT_FOUND, "No WebSocket handler on this path");
    }
    if engine.is_shutting_down() {
        return reject(StatusCode::SERVICE_UNAVAILABLE, "Server shutting down");
    }
    let key = match upgrade::validate(&req) {
        Ok(key) => key,
        Err(rejection) => return rejection.into_response(),
    };
    if let Some(allowed) = &engine.config.allowed_origins {
        let origin = req.headers().get("origin").and_then(|v| v.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o))) {
            return reject(StatusCode::FORBIDDEN, "Origin not allowed");
        }
    }
    let admission = match engine.admit(remote.ip()) {
        Ok(a) => a,
        Err(AdmissionError::ServerFull) => {
            return reject(StatusCode::SERVICE_UNAVAILABLE, "Too many connections")
        }
        Err(AdmissionError::TooManyFromIp) => {
            return reject(StatusCode::TOO_MANY_REQUESTS, "Too many connections from this address")
        }
    };
    let offered = upgrade::offered_protocols(&req);
    let mut protocol = offered.iter().find(|p| engine.config.protocols.contains(p)).cloned();
    let query = req.uri().query().unwrap_or("").to_string();
    let uuid = uuid::Uuid::new_v4();
    let mut client_id = match query_param(&query, "clientId") {
        Some(id) if valid_client_id(id) => id.to_string(),
        _ => format!("client_{}", &uuid.simple().to_string()[..8]),
    };
    let mut request_info = request_json(&req, &path, &query, remote);
    request_info.insert("protocols".into(), serde_json::json!(offered));

    let mut upgrade_request = 0;
    if engine.route_hooks(&path) & hooks::UPGRADE != 0 {
        let request = engine.next_request_id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        engine.pending_upgrades.insert(request, tx);
        let info = serde_json::Value::Object(request_info.clone()).to_string();
        engine.events.push(Event::Upgrade { request, info });
        let verdict = tokio::time::timeout(engine.config.handshake_timeout, rx).await;
        engine.pending_upgrades.remove(&request);
        match verdict {
            Ok(Ok(Verdict::Accept { client_id: id, protocol: chosen })) => {
                if let Some(id) = id {
                    client_id = id;
                }
                if chosen.is_some() {
                    protocol = chosen;
                }
                upgrade_request = request;
            }
            Ok(Ok(Verdict::Reject { status, message })) => {
                return reject(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), &message);
            }
            _ => return reject(StatusCode::SERVICE_UNAVAILABLE, "Upgrade was not answered in time"),
        }
    }

    request_info.insert("id".into(), uuid.to_string().into());
    request_info.insert("clientId".into(), client_id.clone().into());
    request_info.insert("protocol".into(), protocol.clone().unwrap_or_default().into());
    request_info.insert("upgrade".into(), upgrade_request.into());
    let info = ConnInfo {
        uuid: *uuid.as_bytes(),
        client_id,
        path,
        info_json: serde_json::Value::Object(request_info).to_string(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ws_config = engine.ws_config;
    tokio::spawn(async move {
        let io = match on_upgrade.await.map(|u| u.downcast::<TokioIo<TcpStream>>()) {
            Ok(Ok(parts)) => parts,
            _ => {
                if upgrade_request != 0 {
                    engine.events.push(Event::UpgradeFailed { request: upgrade_request });
                }
                return;
            }
        };
        let stream = io.io.into_inner();
        // `read_buf` points into hyper's whole read buffer: copy the few bytes that may follow the
        // request and let the buffer go, or every connection keeps 8 KiB it never uses.
        let leftover = io.read_buf.to_vec();
        drop(io.read_buf);
        let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(ws_config)).await;
        connection::run(engine, info, ws, admission).await;
    });
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = res.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert("sec-websocket-accept", accept);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(&p).ok()) {
        headers.insert("sec-websocket-protocol", p);
    }
    res
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

/// The upgrade request as JS sees it: path, raw query, headers (lower-case names, repeated
/// headers joined with ", "), peer address.
fn request_json(
    req: &Request<Incoming>,
    path: &str,
    query: &str,
    remote: SocketAddr,
) -> serde_json::Map<String, serde_json::Value> {
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), serde_json::Value::String(value));
            }
        }
    }
    let mut info = serde_json::Map::new();
    info.insert("path".into(), path.into());
    info.insert("query".into(), query.into());
    info.insert("remoteAddress".into(), remote.ip().to_string().into());
    info.insert("remotePort".into(), remote.port().into());
    info.insert("headers".into(), serde_json::Value::Object(headers));
    info
}

#[cfg(test)]
mod tests {
    use super::{query_param, valid_client_id};

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
