//! The HTTP/1.1 upgrade, by hand: one request write, read until the end of the 101 head.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::Stream;

/// Largest response head we accept before calling the handshake failed.
const MAX_HEAD: usize = 8 * 1024;

/// Connects and upgrades; returns the stream and any frame bytes that came with the head.
pub async fn connect(addr: &str, path: &str) -> io::Result<(TcpStream, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let leftover = upgrade(&mut stream, addr, path).await?;
    Ok((stream, leftover))
}

/// `connect` over TLS when `tls` is set (a full handshake, no resumption).
pub async fn connect_maybe_tls(addr: &str, path: &str, tls: bool) -> io::Result<(Stream, Vec<u8>)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
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
