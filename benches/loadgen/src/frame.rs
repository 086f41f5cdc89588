//! Client-side WebSocket framing: masked frames built once, server frames parsed in place.

/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;

/// Builds one masked, final frame carrying `payload` (clients must mask, RFC 6455 5.3).
pub fn masked_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// `n` copies of `frame` back to back, so a burst of sends is one `write`.
pub fn repeated(frame: &[u8], n: usize) -> Vec<u8> {
    frame.repeat(n)
}

/// One server frame found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame opcode (continuations count as data: the servers here do not fragment).
    pub opcode: u8,
    /// Header plus payload length in bytes.
    pub total: usize,
}

/// A JSON text of `size` bytes (an array of small objects with a counter), the kind of message
/// permessage-deflate is for; `size` below 2 gives "[]".
pub fn json_payload(size: usize) -> Vec<u8> {
    let mut out = String::from("[");
    let mut i = 0;
    while out.len() < size {
        out.push_str(&format!("{{\"id\":{i},\"user\":\"alice\",\"status\":\"online\"}},"));
        i += 1;
    }
    out.truncate(size.saturating_sub(1).max(1));
    out.push(']');
    out.into_bytes()
}

/// Parses the frame header at the start of `buf`; `None` until the whole frame is there.
pub fn parse(buf: &[u8]) -> Option<Header> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut head) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    if masked {
        head += 4;
    }
    let total = head + len;
    (buf.len() >= total).then_some(Header { opcode, total })
}

/// Whether the opcode carries an application message (text, binary or continuation).
pub fn is_data(opcode: u8) -> bool {
    opcode <= OP_BINARY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_frame_lengths_and_round_trip() {
        for len in [0usize, 5, 125, 126, 4096, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mask = [1, 2, 3, 4];
            let f = masked_frame(OP_BINARY, &payload, mask);
            let h = parse(&f).expect("complete frame");
            assert_eq!(h.total, f.len());
            assert_eq!(h.opcode, OP_BINARY);
            let body = &f[f.len() - len..];
            let unmasked: Vec<u8> = body.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            assert_eq!(unmasked, payload);
        }
    }

    #[test]
    fn parse_waits_for_a_whole_frame() {
        let f = [0x81, 0x03, b'a', b'b'];
        assert_eq!(parse(&f), None);
        assert_eq!(parse(&[0x81]), None);
        assert_eq!(parse(&[0x82, 126, 0]), None);
        let whole = [0x81, 0x02, b'a', b'b', 0x88];
        assert_eq!(parse(&whole), Some(Header { opcode: OP_TEXT, total: 4 }));
    }
}
