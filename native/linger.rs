//! Lingering close: after we failed a connection, its socket is half-closed and what the peer
//! still sends is read and dropped until its FIN, so the close frame is not lost to a RST.

use std::io::ErrorKind;

use tokio::net::TcpStream;

/// Reads dropped per readable wake-up before the task looks at its deadline again.
const DISCARD_READS: usize = 16;

/// Sends our FIN (the write side is done); false where that is not possible.
#[cfg(unix)]
pub fn half_close(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: `shutdown(2)` on a descriptor the stream owns and keeps open for this call; it
    // only changes the socket's state and touches no memory.
    unsafe { libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR) == 0 }
}

/// Elsewhere the connection closes as before, right after the close frame.
#[cfg(not(unix))]
pub fn half_close(_stream: &TcpStream) -> bool {
    false
}

/// Drops what the peer sent; false once it closed (or the socket failed): the task can end.
pub fn discard(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..DISCARD_READS {
        match stream.try_read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[cfg(unix)]
    #[tokio::test]
    async fn half_close_sends_fin_and_discard_reads_until_the_peers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut peer = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (ours, _) = listener.accept().await.expect("accept");
        peer.write_all(&[7u8; 10_000]).await.expect("write");
        assert!(half_close(&ours));
        // The peer sees our FIN while it can still write.
        let mut byte = [0u8; 1];
        assert_eq!(peer.read(&mut byte).await.expect("read"), 0);
        peer.write_all(b"after our FIN").await.expect("write after FIN");
        drop(peer);
        // Everything the peer sent is taken, then its FIN ends the discard.
        let drained = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                ours.readable().await.expect("readable");
                if !discard(&ours) {
                    break;
                }
            }
        });
        assert!(drained.await.is_ok(), "discard saw the peer's FIN");
    }
}
