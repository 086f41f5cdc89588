//! Reading server frames: one `read` syscall, then every complete frame in the buffer.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::frame::{self, OP_CLOSE};

/// Initial buffer size; it grows only for frames larger than this.
const BUFFER: usize = 64 * 1024;

/// A receive buffer that keeps partial frames between reads.
pub struct Inbound {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbound {
    /// A reader whose buffer starts with `leftover` (bytes that followed the upgrade response).
    pub fn new(leftover: Vec<u8>) -> Self {
        Self::with_capacity(leftover, BUFFER)
    }

    /// `new` with a buffer of `capacity` bytes to start with (tens of thousands of subscribers
    /// would hold gigabytes of 64 KiB buffers).
    pub fn with_capacity(leftover: Vec<u8>, capacity: usize) -> Self {
        let mut buf = vec![0u8; capacity.max(leftover.len() * 2).max(16)];
        buf[..leftover.len()].copy_from_slice(&leftover);
        Inbound { buf, start: 0, end: leftover.len() }
    }

    /// Counts the data frames already buffered, then reads once if none were; a close frame or
    /// EOF is an error. Returns the number of data (text or binary) frames seen.
    pub async fn next_batch<R: AsyncRead + Unpin>(&mut self, stream: &mut R) -> io::Result<usize> {
        let buffered = self.drain()?;
        if buffered > 0 {
            return Ok(buffered);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let len = self.buf.len();
            self.buf.resize(len * 2, 0);
        }
        let n = stream.read(&mut self.buf[self.end..]).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        self.end += n;
        self.drain()
    }

    fn drain(&mut self) -> io::Result<usize> {
        let mut data = 0;
        while let Some(h) = frame::parse(&self.buf[self.start..self.end]) {
            if h.opcode == OP_CLOSE {
                return Err(io::Error::new(io::ErrorKind::ConnectionAborted, "server sent close"));
            }
            if frame::is_data(h.opcode) {
                data += 1;
            }
            self.start += h.total;
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_reads() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(frames_split_across_reads_async());
    }

    async fn frames_split_across_reads_async() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut bytes = Vec::new();
            for _ in 0..100 {
                bytes.extend_from_slice(&[0x82, 0x05, 1, 2, 3, 4, 5]);
            }
            bytes.extend_from_slice(&[0x89, 0x00]); // a ping: not data
            a.write_all(&bytes).await.unwrap();
        });
        let mut inbound = Inbound::new(vec![0x81, 0x01, b'x']);
        let mut seen = 0;
        while seen < 101 {
            seen += inbound.next_batch(&mut b).await.unwrap();
        }
        assert_eq!(seen, 101);
        writer.await.unwrap();
    }
}
