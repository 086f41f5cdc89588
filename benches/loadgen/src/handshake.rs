//! The HTTP/1.1 upgrade, by hand: one request write, read until the end of the 101 head.

use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::tls::Stream;

/// Largest response head we accept before calling the handshake failed.
const MAX_HEAD: usize = 8 * 1024;

/// What a browser offers: permessage-deflate, any client window.
const DEFLATE_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// Connects (from `source` when given: one loopback address has only the ephemeral port range,
/// about 28,000 ports, so large runs spread over 127.0.0.x) and upgrades; returns the stream and
/// any frame bytes that came with the head. `deflate`: offer permessage-deflate.
pub async fn connect(
    addr: &str,
    path: &str,
    source: Option<IpAddr>,
    deflate: bool,
) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = tcp(addr, source).await?;
    let leftover = upgrade(&mut stream, addr, path, deflate).await?;
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
    deflate: bool,
) -> io::Result<(Stream, Vec<u8>)> {
    let stream = tcp(addr, source).await?;
    let mut stream =
        if tls { Stream::Tls(Box::new(crate::tls::connect(stream).await?)) } else { Stream::Plain(stream) };
    let leftover = upgrade(&mut stream, addr, path, deflate).await?;
    Ok((stream, leftover))
}

/// Writes the upgrade request (offering permessage-deflate when `deflate`) and reads the 101;
/// returns the bytes behind its head.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    addr: &str,
    path: &str,
    deflate: bool,
) -> io::Result<Vec<u8>> {
    let offer = if deflate { DEFLATE_OFFER } else { "" };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that reads one request head, answers 101 and returns the head it read.
    async fn serve_once(listener: TcpListener) -> String {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut chunk = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            head.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").await.unwrap();
        String::from_utf8(head).unwrap()
    }

    #[tokio::test]
    async fn offers_deflate_only_when_asked_from_the_source_address() {
        for deflate in [false, true] {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let server = tokio::spawn(serve_once(listener));
            let source: IpAddr = "127.0.0.2".parse().unwrap();
            let (stream, _) = connect(&addr, "/x", Some(source), deflate).await.unwrap();
            assert_eq!(stream.local_addr().unwrap().ip(), source);
            let head = server.await.unwrap();
            assert!(head.starts_with("GET /x HTTP/1.1\r\n"));
            assert_eq!(head.contains(DEFLATE_OFFER), deflate);
        }
    }
}
