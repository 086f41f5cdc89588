//! The HTTP/1.1 upgrade, by hand: one request write, read until the end of the 101 head.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::tls::Stream;

/// Largest response head we accept before calling the handshake failed.
const MAX_HEAD: usize = 8 * 1024;

/// Connects (from `source` when given: one loopback address has only the ephemeral port range,
/// about 28,000 ports, so large runs spread over 127.0.0.x) and upgrades; returns the stream and
/// any frame bytes that came with the head.
pub async fn connect(addr: &str, path: &str, source: Option<IpAddr>) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = tcp(addr, source).await?;
    let leftover = upgrade(&mut stream, addr, path).await?;
    Ok((stream, leftover))
}

/// A TCP connection to `addr`, from `source` when one is given (one of several loopback
/// addresses, to get past one address's port range).
async fn tcp(addr: &str, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let stream = match source {
        None => TcpStream::connect(addr).await?,
        Some(ip) => {
            let target: SocketAddr = addr.parse().map_err(io::Error::other)?;
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(ip, 0))?;
            socket.connect(target).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// `connect` over TLS when `tls` is set (a full handshake, no resumption).
pub async fn connect_maybe_tls(
    addr: &str,
    path: &str,
    source: Option<IpAddr>,
    tls: bool,
) -> io::Result<(Stream, Vec<u8>)> {
    let stream = tcp(addr, source).await?;
    let mut stream =
        if tls { Stream::Tls(Box::new(crate::tls::connect(stream).await?)) } else { Stream::Plain(stream) };
    let leftover = upgrade(&mut stream, addr, path).await?;
    Ok((stream, leftover))
}

/// Writes the upgrade request and reads the 101; returns the bytes behind its head.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    path: &str,
) -> io::Result<Vec<u8>> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during handshake"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            if !buf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned();
                return Err(io::Error::other(format!("upgrade refused: {line}")));
            }
            return Ok(buf.split_off(end + 4));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("response head too large"));
        }
    }
}
