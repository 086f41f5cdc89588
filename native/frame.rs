//! RFC 6455 framing, server side: a decoder for the masked frames a client sends and an encoder
//! for the unmasked frames a server sends. No extension is ever negotiated.
//!
//! The decoder works on the caller's buffer: it unmasks each payload in place and copies every
//! message out exactly once, so a connection needs no read buffer of its own. Between messages a
//! [`Decoder`] holds no heap memory; only the fragments of a message in progress are kept. Limits
//! a peer could abuse (frame and message size, header sanity) are enforced from the frame header
//! alone, before its payload has arrived.

use bytes::Bytes;

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0;
    pub const TEXT: u8 = 1;
    pub const BINARY: u8 = 2;
    pub const CLOSE: u8 = 8;
    pub const PING: u8 = 9;
    pub const PONG: u8 = 10;
}

/// First header byte: the final fragment of a message.
const FIN: u8 = 0x80;
/// First header byte: RSV1, RSV2 and RSV3, meaningful only with an extension.
const RSV: u8 = 0x70;
/// First header byte: the opcode.
const OPCODE: u8 = 0x0F;
/// Second header byte: the payload is masked (always, from a client).
const MASK: u8 = 0x80;
/// Second header byte: the 7-bit length, or `LEN_16` / `LEN_64` for a longer one.
const LEN: u8 = 0x7F;
const LEN_16: u8 = 126;
const LEN_64: u8 = 127;
/// Largest payload of a control frame (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// Largest close reason: a control payload less the 2-byte code.
const MAX_CLOSE_REASON: usize = 123;
/// Largest frame header: two bytes, a 64-bit length and the masking key.
pub const MAX_HEADER: usize = 14;

/// A complete inbound message or control frame. Payloads are borrowed from the buffer being
/// decoded (or the decoder's fragment buffer): a receiver that keeps one copies it.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// A whole text message (all fragments joined); always valid UTF-8. `ascii`: known to be
    /// all ASCII (found while unmasking; false for a fragmented message, which is not checked).
    Text {
        data: &'a [u8],
        ascii: bool,
    },
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: None for an empty payload, else a valid code and its UTF-8 reason.
    Close(Option<(u16, String)>),
}

/// Why we close the peer: the close code we send and a short constant reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

impl Violation {
    /// A protocol error (1002).
    const fn protocol(reason: &'static str) -> Self {
        Violation { code: 1002, reason }
    }
}

const RESERVED_BITS: Violation = Violation::protocol("Reserved bits set");
const RESERVED_OPCODE: Violation = Violation::protocol("Reserved opcode");
const UNMASKED: Violation = Violation::protocol("Unmasked frame");
const FRAGMENTED_CONTROL: Violation = Violation::protocol("Fragmented control frame");
const CONTROL_TOO_LONG: Violation = Violation::protocol("Control frame too long");
const UNEXPECTED_CONTINUATION: Violation = Violation::protocol("Unexpected continuation frame");
const EXPECTED_CONTINUATION: Violation = Violation::protocol("Expected continuation frame");
const BAD_LENGTH: Violation = Violation::protocol("Invalid frame length");
const BAD_CLOSE_PAYLOAD: Violation = Violation::protocol("Invalid close frame");
const BAD_CLOSE_CODE: Violation = Violation::protocol("Invalid close code");
const TOO_BIG: Violation = Violation { code: 1009, reason: "Message too big" };
const INVALID_UTF8: Violation = Violation { code: 1007, reason: "Invalid UTF-8" };
const EMPTY_FRAGMENTS: Violation = Violation { code: 1008, reason: "Too many empty fragments" };

/// Empty fragments one message may have. Fragments with data are bounded by `max_payload`;
/// empty ones are not, so a peer could keep a message open forever and cost CPU for nothing.
pub const MAX_EMPTY_FRAGMENTS: u32 = 1024;

/// The kind of fragmented message in progress, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fragmented {
    No,
    Text,
    Binary,
}

/// Per-connection decoding state. MUST stay small (a few dozen bytes) and allocate nothing
/// until a fragmented message is in progress: idle connections must cost almost no memory.
#[derive(Debug)]
pub struct Decoder {
    /// The fragments received so far of the message in progress; no capacity between messages.
    fragments: Vec<u8>,
    /// Largest frame payload, and largest sum of a message's fragments.
    max_payload: usize,
    /// For fragmented text: how many bytes at the start of `fragments` are complete, valid UTF-8.
    /// What follows is at most the start of a character cut at a fragment boundary.
    valid_utf8: usize,
    fragmented: Fragmented,
    /// Empty fragments of the message in progress (`MAX_EMPTY_FRAGMENTS`).
    empty_fragments: u32,
    /// A close frame has been delivered: everything after it is ignored.
    closed: bool,
}

/// A complete, checked frame header.
struct Header {
    fin: bool,
    opcode: u8,
    key: [u8; 4],
    /// Payload length; within `max_payload`.
    len: usize,
    /// Header length: 6, 8 or 14 bytes.
    size: usize,
}

impl Decoder {
    pub fn new(max_payload: usize) -> Self {
        Decoder {
            fragments: Vec::new(),
            max_payload,
            valid_utf8: 0,
            fragmented: Fragmented::No,
            empty_fragments: 0,
            closed: false,
        }
    }

    /// Decodes every complete frame at the front of `buf`, unmasking payloads in place, and
    /// calls `on` for each complete message or control frame, in order. Returns how many bytes
    /// were consumed; a trailing incomplete frame is not consumed (the caller keeps those bytes
    /// and calls again with more appended). On a violation, returns Err at once (frames before
    /// it have already been delivered). After delivering a Close frame it stops and returns: the
    /// close frame is consumed, anything after it ignored.
    ///
    /// Bytes not consumed are left as they were (still masked). Once a close frame has been
    /// delivered, later calls deliver nothing and consume all of `buf`. After an `Err` the
    /// decoder has dropped any message in progress; the connection is expected to close.
    #[cfg(test)]
    pub fn decode(&mut self, buf: &mut [u8], on: &mut impl FnMut(Inbound<'_>)) -> Result<usize, Violation> {
        self.decode_while(buf, on, &mut || true)
    }

    /// `decode`, but checks `go` before each frame and stops (leaving the rest unconsumed) as
    /// soon as it says false: the caller's consumer can push back between frames.
    pub fn decode_while(
        &mut self,
        buf: &mut [u8],
        on: &mut impl FnMut(Inbound<'_>),
        go: &mut impl FnMut() -> bool,
    ) -> Result<usize, Violation> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.decode_frames(buf, on, go);
        if result.is_err() {
            self.end_message();
        }
        result
    }

    /// The size of the whole frame at the front of `buf` (header and payload), once its header
    /// is complete and has passed every check `decode` makes: what the caller may reserve to
    /// receive the rest of it. Never more than `max_payload + MAX_HEADER`, whatever the peer
    /// announced. None while the header is incomplete, when it fails a check (decoding reports
    /// the violation), and after a close frame.
    pub fn needed(&self, buf: &[u8]) -> Option<usize> {
        if self.closed {
            return None;
        }
        match self.header(buf) {
            Ok(Some(header)) => {
                debug_assert!(header.size <= MAX_HEADER && header.len <= self.max_payload);
                Some(header.size + header.len)
            }
            _ => None,
        }
    }

    /// Whether a fragmented message is in progress (the decoder holds its earlier fragments).
    #[cfg(test)]
    pub fn mid_message(&self) -> bool {
        self.fragmented != Fragmented::No
    }

    fn decode_frames(
        &mut self,
        buf: &mut [u8],
        on: &mut impl FnMut(Inbound<'_>),
        go: &mut impl FnMut() -> bool,
    ) -> Result<usize, Violation> {
        let mut used = 0;
        // `used` never passes `buf.len()`: it only moves past a frame that is wholly in `buf`.
        while go() {
            let Some(header) = self.header(&buf[used..])? else { break };
            let start = used + header.size;
            let Some(payload) = buf[start..].get_mut(..header.len) else {
                break;
            };
            let ascii = unmask(payload, header.key);
            used = start + header.len;
            if self.frame(&header, payload, ascii, on)? {
                self.closed = true;
                break;
            }
        }
        Ok(used)
    }

    /// Parses and checks the header at the front of `buf`: Ok(None) while it is incomplete. Each
    /// check runs as soon as the bytes it needs are there, so a bad frame fails fast.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, Violation> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first & RSV != 0 {
            return Err(RESERVED_BITS);
        }
        let fin = first & FIN != 0;
        let opcode = first & OPCODE;
        match opcode {
            opcode::CONTINUATION if self.fragmented == Fragmented::No => return Err(UNEXPECTED_CONTINUATION),
            opcode::TEXT | opcode::BINARY if self.fragmented != Fragmented::No => {
                return Err(EXPECTED_CONTINUATION)
            }
            opcode::CLOSE | opcode::PING | opcode::PONG if !fin => return Err(FRAGMENTED_CONTROL),
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
            opcode::CLOSE | opcode::PING | opcode::PONG => {}
            _ => return Err(RESERVED_OPCODE),
        }
        let Some(&second) = buf.get(1) else {
            return Ok(None);
        };
        if second & MASK == 0 {
            return Err(UNMASKED);
        }
        let (len, at) = match second & LEN {
            LEN_16 => match buf.get(2..4).and_then(<[u8]>::first_chunk) {
                Some(&bytes) => (u64::from(u16::from_be_bytes(bytes)), 4),
                None => return Ok(None),
            },
            LEN_64 => match buf.get(2..10).and_then(<[u8]>::first_chunk) {
                Some(&bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            len => (u64::from(len), 2),
        };
        if len >> 63 != 0 {
            return Err(BAD_LENGTH);
        }
        if opcode & 0x08 != 0 && len > MAX_CONTROL_PAYLOAD {
            return Err(CONTROL_TOO_LONG);
        }
        // A continuation counts against what the message already holds; `fragments` is empty
        // for any other frame.
        let held = if opcode == opcode::CONTINUATION { self.fragments.len() } else { 0 };
        let room = self.max_payload.saturating_sub(held);
        let len = match usize::try_from(len) {
            Ok(len) if len <= room => len,
            _ => return Err(TOO_BIG),
        };
        let Some(&key) = buf.get(at..at + 4).and_then(<[u8]>::first_chunk) else {
            return Ok(None);
        };
        Ok(Some(Header { fin, opcode, key, len, size: at + 4 }))
    }

    /// Handles one whole, unmasked frame (`ascii`: its payload is all ASCII); true after a close
    /// frame.
    fn frame(
        &mut self,
        header: &Header,
        payload: &[u8],
        ascii: bool,
        on: &mut impl FnMut(Inbound<'_>),
    ) -> Result<bool, Violation> {
        match header.opcode {
            opcode::TEXT if header.fin => {
                // ASCII is valid UTF-8: only other text needs the full check.
                if !ascii && std::str::from_utf8(payload).is_err() {
                    return Err(INVALID_UTF8);
                }
                on(Inbound::Text { data: payload, ascii });
            }
            opcode::BINARY if header.fin => on(Inbound::Binary(payload)),
            opcode::TEXT => {
                self.fragmented = Fragmented::Text;
                self.append(payload)?;
            }
            opcode::BINARY => {
                self.fragmented = Fragmented::Binary;
                self.append(payload)?;
            }
            opcode::CONTINUATION => {
                self.append(payload)?;
                if header.fin {
                    self.finish(on)?;
                }
            }
            opcode::PING => on(Inbound::Ping(payload)),
            opcode::PONG => on(Inbound::Pong(payload)),
            opcode::CLOSE => {
                on(Inbound::Close(close_payload(payload)?));
                return Ok(true);
            }
            // `header` lets no other opcode through.
            _ => return Err(RESERVED_OPCODE),
        }
        Ok(false)
    }

    /// Adds a fragment to the message in progress; text is checked as far as it is complete.
    fn append(&mut self, fragment: &[u8]) -> Result<(), Violation> {
        if fragment.is_empty() {
            self.empty_fragments += 1;
            if self.empty_fragments > MAX_EMPTY_FRAGMENTS {
                return Err(EMPTY_FRAGMENTS);
            }
        }
        // Grow as a Vec does (doubling), but never past `max_payload`, which bounds the sum of
        // a message's fragments (`header` checked this one against it).
        let need = self.fragments.len() + fragment.len();
        if need > self.fragments.capacity() {
            let grown = self.fragments.capacity().saturating_mul(2).min(self.max_payload).max(need);
            self.fragments.reserve_exact(grown - self.fragments.len());
        }
        self.fragments.extend_from_slice(fragment);
        if self.fragmented == Fragmented::Text {
            // Only the new fragment and the cut character before it (3 bytes at most) are new.
            let unchecked = self.fragments.get(self.valid_utf8..).unwrap_or_default();
            match std::str::from_utf8(unchecked) {
                Ok(_) => self.valid_utf8 = self.fragments.len(),
                // The end is cut inside a character that may still be completed.
                Err(e) if e.error_len().is_none() => self.valid_utf8 += e.valid_up_to(),
                Err(_) => return Err(INVALID_UTF8),
            }
        }
        Ok(())
    }

    /// Delivers the message in progress after its final fragment and frees its buffer.
    fn finish(&mut self, on: &mut impl FnMut(Inbound<'_>)) -> Result<(), Violation> {
        let fragmented = self.fragmented;
        if fragmented == Fragmented::Text && self.valid_utf8 != self.fragments.len() {
            return Err(INVALID_UTF8);
        }
        let data = std::mem::take(&mut self.fragments);
        self.end_message();
        on(match fragmented {
            Fragmented::Text => Inbound::Text { data: &data, ascii: false },
            _ => Inbound::Binary(&data),
        });
        Ok(())
    }

    /// Forgets the message in progress, if any, and its heap memory.
    fn end_message(&mut self) {
        self.fragments = Vec::new();
        self.valid_utf8 = 0;
        self.empty_fragments = 0;
        self.fragmented = Fragmented::No;
    }
}

/// Parses a close payload: nothing, or a code the peer may send and a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(BAD_CLOSE_PAYLOAD),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(BAD_CLOSE_CODE);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| INVALID_UTF8)?;
            Ok(Some((code, reason.to_owned())))
        }
    }
}

/// XORs a payload with its masking key, 8 bytes at a time; the payload starts at key byte 0.
/// Words are read and written unaligned (`from_ne_bytes`), so no aligned head is needed.
/// Returns whether the unmasked payload is all ASCII, seen in the same pass: ASCII text then
/// skips the UTF-8 check and the event queue's own ASCII scan.
fn unmask(payload: &mut [u8], key: [u8; 4]) -> bool {
    let [a, b, c, d] = key;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (words, tail) = payload.as_chunks_mut::<8>();
    let mut seen = 0u64;
    for bytes in words {
        let plain = u64::from_ne_bytes(*bytes) ^ word;
        seen |= plain;
        *bytes = plain.to_ne_bytes();
    }
    // Whole words keep the key's phase: the tail starts at key byte 0 again.
    let mut seen_tail = 0u8;
    for (byte, k) in tail.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
        seen_tail |= *byte;
    }
    seen & 0x8080_8080_8080_8080 == 0 && seen_tail & 0x80 == 0
}

/// Appends one unmasked server frame (FIN set) with this opcode and payload.
pub fn encode_into(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    let (header, n) = header(opcode, payload.len());
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// The header of an unmasked server frame (FIN set): the first `.1` bytes of `.0`.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    out[0] = FIN | (opcode & OPCODE);
    match u16::try_from(len) {
        Ok(short) if short < u16::from(LEN_16) => {
            out[1] = short as u8;
            (out, 2)
        }
        Ok(short) => {
            out[1] = LEN_16;
            out[2..4].copy_from_slice(&short.to_be_bytes());
            (out, 4)
        }
        Err(_) => {
            out[1] = LEN_64;
            out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            (out, 10)
        }
    }
}

/// One unmasked server frame as Bytes (one allocation, exact size).
pub fn encode(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(header_len(payload.len()) + payload.len());
    encode_into(&mut out, opcode, payload);
    Bytes::from(out)
}

/// A close frame with this code and reason; the reason is cut to 123 bytes at a char boundary.
/// The code is not checked: send one a peer may receive (not 1005, 1006 or 1015).
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let mut out = Vec::with_capacity(4 + reason.len());
    out.push(FIN | opcode::CLOSE);
    // At most 125: a 7-bit length.
    out.push((2 + reason.len()) as u8);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
    Bytes::from(out)
}

/// Size of the header `encode` puts before a payload of `len` bytes (2, 4 or 10).
pub fn header_len(len: usize) -> usize {
    if len < usize::from(LEN_16) {
        2
    } else if len <= usize::from(u16::MAX) {
        4
    } else {
        10
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// An owned `Inbound`, for collecting what the decoder delivers.
    #[derive(Debug, PartialEq, Eq)]
    enum Msg {
        Text(Vec<u8>),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<(u16, String)>),
    }

    impl From<Inbound<'_>> for Msg {
        fn from(m: Inbound<'_>) -> Self {
            match m {
                Inbound::Text { data, .. } => Msg::Text(data.to_vec()),
                Inbound::Binary(d) => Msg::Binary(d.to_vec()),
                Inbound::Ping(d) => Msg::Ping(d.to_vec()),
                Inbound::Pong(d) => Msg::Pong(d.to_vec()),
                Inbound::Close(c) => Msg::Close(c),
            }
        }
    }

    /// How a test frame spells its payload length.
    #[derive(Clone, Copy, Debug)]
    enum Len {
        /// The shortest form, as a sane client writes it.
        Min,
        /// Always the 16-bit form.
        Ext16,
        /// Always the 64-bit form.
        Ext64,
    }

    /// Test-only client encoder: any first byte, optional mask key, any length form.
    fn raw_frame(first: u8, payload: &[u8], key: Option<[u8; 4]>, len: Len) -> Vec<u8> {
        let mask_bit = if key.is_some() { MASK } else { 0 };
        let n = payload.len();
        let mut out = vec![first];
        match len {
            Len::Min if n < 126 => out.push(mask_bit | n as u8),
            Len::Min | Len::Ext16 if n <= 0xFFFF => {
                out.push(mask_bit | LEN_16);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | LEN_64);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let start = out.len();
        out.extend_from_slice(payload);
        if let Some(key) = key {
            out.splice(start..start, key);
            for (i, byte) in out[start + 4..].iter_mut().enumerate() {
                *byte ^= key[i % 4];
            }
        }
        out
    }

    /// A key that varies with the payload, so the tests cover many.
    fn key_for(payload: &[u8]) -> [u8; 4] {
        let n = payload.len() as u8;
        [0x37 ^ n, 0xFA, 0x21u8.wrapping_add(n), 0x3D]
    }

    /// A masked client frame with the shortest length form.
    fn client(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        raw_frame(if fin { FIN } else { 0 } | op, payload, Some(key_for(payload)), Len::Min)
    }

    fn client_len(fin: bool, op: u8, payload: &[u8], len: Len) -> Vec<u8> {
        raw_frame(if fin { FIN } else { 0 } | op, payload, Some(key_for(payload)), len)
    }

    fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    fn text(s: &str) -> Msg {
        Msg::Text(s.as_bytes().to_vec())
    }

    fn binary(b: &[u8]) -> Msg {
        Msg::Binary(b.to_vec())
    }

    /// Decodes `bytes` in one call: what was delivered and the result.
    fn decode_once(max: usize, bytes: &[u8]) -> (Vec<Msg>, Result<usize, Violation>) {
        let mut decoder = Decoder::new(max);
        let mut buf = bytes.to_vec();
        let mut out = Vec::new();
        let result = decoder.decode(&mut buf, &mut |m| out.push(Msg::from(m)));
        (out, result)
    }

    fn violation(max: usize, bytes: &[u8]) -> Violation {
        decode_once(max, bytes).1.unwrap_err()
    }

    #[test]
    fn empty_fragments_are_limited_per_message() {
        let mut ok = client(false, opcode::TEXT, b"");
        for _ in 1..MAX_EMPTY_FRAGMENTS {
            ok.extend(client(false, opcode::CONTINUATION, b""));
        }
        ok.extend(client(true, opcode::CONTINUATION, b"end"));
        let (out, result) = decode_once(1024, &ok);
        assert_eq!(result, Ok(ok.len()));
        assert_eq!(out, vec![text("end")]);

        let mut flood = client(false, opcode::BINARY, b"");
        for _ in 0..MAX_EMPTY_FRAGMENTS {
            flood.extend(client(false, opcode::CONTINUATION, b""));
        }
        assert_eq!(violation(1024, &flood), EMPTY_FRAGMENTS);
    }

    /// Feeds `stream` in chunks of the given sizes like a real caller: unconsumed bytes are kept
    /// and the next chunk appended. Returns the messages, the error if any, and the decoder.
    fn feed(
        max: usize,
        stream: &[u8],
        sizes: impl IntoIterator<Item = usize>,
    ) -> (Vec<Msg>, Option<Violation>, Decoder) {
        let mut decoder = Decoder::new(max);
        let mut pending = Vec::new();
        let mut out = Vec::new();
        let mut at = 0;
        for size in sizes {
            let end = (at + size).min(stream.len());
            pending.extend_from_slice(&stream[at..end]);
            at = end;
            match decoder.decode(&mut pending, &mut |m| out.push(Msg::from(m))) {
                Ok(used) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                }
                Err(v) => return (out, Some(v), decoder),
            }
        }
        assert_eq!(at, stream.len(), "sizes must cover the stream");
        assert!(pending.is_empty(), "{} bytes left undecoded", pending.len());
        (out, None, decoder)
    }

    /// Small xorshift generator: random chunk sizes without a dev-dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_sizes(rng: &mut Rng, total: usize, max_chunk: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut left = total;
        while left > 0 {
            let size = (1 + rng.below(max_chunk)).min(left);
            sizes.push(size);
            left -= size;
        }
        sizes
    }

    /// Every kind of frame and length form, with small payloads, ending in a close frame.
    fn mixed_stream() -> (Vec<u8>, Vec<Msg>) {
        let long: Vec<u8> = (0..300u32).map(|i| (i * 7) as u8).collect();
        let frames = vec![
            client(true, opcode::TEXT, b"hello"),
            client(true, opcode::BINARY, &long),
            client(true, opcode::TEXT, b""),
            client(true, opcode::BINARY, b""),
            client_len(true, opcode::TEXT, "non-minimal 16".as_bytes(), Len::Ext16),
            client_len(true, opcode::BINARY, b"non-minimal 64", Len::Ext64),
            // "h€llo 😀" in fragments cut inside both multi-byte characters, with control frames.
            client(false, opcode::TEXT, b"h\xE2"),
            client(true, opcode::PING, b"p1"),
            client(false, opcode::CONTINUATION, b"\x82\xACllo \xF0\x9F"),
            client(false, opcode::CONTINUATION, b""),
            client(true, opcode::PONG, b""),
            client(true, opcode::CONTINUATION, b"\x98\x80"),
            client(false, opcode::BINARY, b""),
            client_len(false, opcode::CONTINUATION, &[1, 2, 3], Len::Ext64),
            client(true, opcode::CONTINUATION, &[4]),
            client(true, opcode::PING, &[0xAB; 125]),
            client(true, opcode::CLOSE, b"\x03\xE8bye"),
        ];
        let expected = vec![
            text("hello"),
            binary(&long),
            text(""),
            binary(b""),
            text("non-minimal 16"),
            binary(b"non-minimal 64"),
            Msg::Ping(b"p1".to_vec()),
            Msg::Pong(Vec::new()),
            text("h€llo 😀"),
            binary(&[1, 2, 3, 4]),
            Msg::Ping(vec![0xAB; 125]),
            Msg::Close(Some((1000, "bye".to_string()))),
        ];
        (cat(&frames), expected)
    }

    #[test]
    fn decoder_is_small_and_starts_without_heap() {
        assert!(std::mem::size_of::<Decoder>() <= 48, "{}", std::mem::size_of::<Decoder>());
        let decoder = Decoder::new(1 << 20);
        assert_eq!(decoder.fragments.capacity(), 0);
        assert!(!decoder.mid_message());
    }

    #[test]
    fn decodes_each_kind_of_frame() {
        let (stream, expected) = mixed_stream();
        let (out, result) = decode_once(1 << 20, &stream);
        assert_eq!(result, Ok(stream.len()));
        assert_eq!(out, expected);
    }

    #[test]
    fn every_split_point_gives_the_same_messages() {
        let (stream, expected) = mixed_stream();
        for split in 0..=stream.len() {
            let (out, err, decoder) = feed(1 << 20, &stream, [split, stream.len() - split]);
            assert_eq!(err, None, "split at {split}");
            assert_eq!(out, expected, "split at {split}");
            assert_eq!(decoder.fragments.capacity(), 0);
        }
    }

    #[test]
    fn byte_by_byte_gives_the_same_messages() {
        let (stream, expected) = mixed_stream();
        let (out, err, decoder) = feed(1 << 20, &stream, vec![1; stream.len()]);
        assert_eq!(err, None);
        assert_eq!(out, expected);
        assert!(!decoder.mid_message());
    }

    #[test]
    fn random_chunks_give_the_same_messages() {
        let (mut stream, mut expected) = mixed_stream();
        // Put a 64-bit-length frame (and a fragmented one of the same size) before the close.
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let close = expected.pop().unwrap();
        let close_len = client(true, opcode::CLOSE, b"\x03\xE8bye").len();
        stream.truncate(stream.len() - close_len);
        stream.extend(client(true, opcode::BINARY, &big));
        stream.extend(client(false, opcode::BINARY, &big[..40_000]));
        stream.extend(client(true, opcode::CONTINUATION, &big[40_000..]));
        stream.extend(client(true, opcode::CLOSE, b"\x03\xE8bye"));
        expected.extend([binary(&big), binary(&big), close]);

        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for max_chunk in [2, 7, 64, 1000, 70_000] {
            for _ in 0..8 {
                let sizes = random_sizes(&mut rng, stream.len(), max_chunk);
                let (out, err, decoder) = feed(1 << 20, &stream, sizes);
                assert_eq!(err, None);
                assert_eq!(out, expected, "max chunk {max_chunk}");
                assert_eq!(decoder.fragments.capacity(), 0);
            }
        }
        let (out, err, _) = feed(1 << 20, &stream, vec![1; stream.len()]);
        assert_eq!(err, None);
        assert_eq!(out, expected);
    }

    #[test]
    fn incomplete_frame_is_left_untouched() {
        let first = client(true, opcode::TEXT, b"one");
        let second = client(true, opcode::BINARY, &[9; 200]);
        for cut in 0..second.len() {
            let mut buf = cat(&[first.clone(), second[..cut].to_vec()]);
            let mut out = Vec::new();
            let used = Decoder::new(1024).decode(&mut buf, &mut |m| out.push(Msg::from(m))).unwrap();
            assert_eq!(used, first.len());
            assert_eq!(out, vec![text("one")]);
            assert_eq!(&buf[used..], &second[..cut], "cut at {cut}");
        }
    }

    #[test]
    fn lengths_16_and_64_bit() {
        for n in [125usize, 126, 127, 1000, 65_535, 65_536, 100_000] {
            let payload: Vec<u8> = (0..n).map(|i| (i * 31 % 256) as u8).collect();
            let frame = client(true, opcode::BINARY, &payload);
            let expected_header = if n < 126 {
                6
            } else if n <= 65_535 {
                8
            } else {
                14
            };
            assert_eq!(frame.len(), expected_header + n);
            assert_eq!(Decoder::new(1 << 20).needed(&frame), Some(frame.len()));
            let (out, result) = decode_once(1 << 20, &frame);
            assert_eq!(result, Ok(frame.len()));
            assert_eq!(out, vec![binary(&payload)]);
            // Short by one byte: nothing is consumed.
            assert_eq!(decode_once(1 << 20, &frame[..frame.len() - 1]), (vec![], Ok(0)));
        }
        // Non-minimal forms are accepted, even for an empty payload.
        for len in [Len::Ext16, Len::Ext64] {
            let frame = client_len(true, opcode::TEXT, b"", len);
            assert_eq!(decode_once(10, &frame), (vec![text("")], Ok(frame.len())));
        }
    }

    #[test]
    fn needed_needs_a_whole_header() {
        let d = Decoder::new(1 << 20);
        assert_eq!(d.needed(&[]), None);
        let small = client(true, opcode::TEXT, b"abc");
        for cut in 1..6 {
            assert_eq!(d.needed(&small[..cut]), None);
        }
        assert_eq!(d.needed(&small[..6]), Some(9));
        let mid = client(true, opcode::BINARY, &[0; 300]);
        assert_eq!(d.needed(&mid[..7]), None);
        assert_eq!(d.needed(&mid[..8]), Some(308));
        let big = client(true, opcode::BINARY, &[0; 70_000]);
        assert_eq!(d.needed(&big[..13]), None);
        assert_eq!(d.needed(&big[..14]), Some(70_014));
    }

    #[test]
    fn needed_never_passes_max_payload_plus_a_header() {
        let max = 1000;
        let d = Decoder::new(max);
        // At the limit: the whole frame.
        let at_limit = client_len(true, opcode::BINARY, &[0; 1000], Len::Ext64);
        assert_eq!(d.needed(&at_limit[..MAX_HEADER]), Some(max + MAX_HEADER));
        // Announced lengths past the limit, up to 2^64 - 1, with or without the top bit: no size.
        for len in [1001u64, 1 << 20, 1 << 62, (1 << 63) - 1, 1 << 63, u64::MAX] {
            let mut header = vec![0x82, 0x80 | LEN_64];
            header.extend_from_slice(&len.to_be_bytes());
            header.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(d.needed(&header), None, "{len}");
            assert!(decode_once(max, &header).1.is_err(), "decoding it is a violation: {len}");
        }
        // Headers that fail any other check: unmasked, reserved bits, a long control frame.
        assert_eq!(d.needed(&[0x82, 0x05]), None);
        assert_eq!(d.needed(&[0xC2, 0x85, 0, 0, 0, 0]), None);
        assert_eq!(d.needed(&[0x89, 0x80 | LEN_16, 0, 200, 0, 0, 0, 0]), None);
    }

    #[test]
    fn needed_counts_what_a_fragmented_message_already_holds() {
        let mut d = Decoder::new(100);
        let first = client(false, opcode::BINARY, &[1; 60]);
        let mut buf = first.clone();
        assert_eq!(d.decode(&mut buf, &mut |_| {}), Ok(first.len()));
        // 40 more bytes fit, 41 do not.
        assert_eq!(d.needed(&client(true, opcode::CONTINUATION, &[2; 40])[..6]), Some(46));
        assert_eq!(d.needed(&client(true, opcode::CONTINUATION, &[2; 41])[..6]), None);
        // After a close frame nothing more is read.
        let mut close = client(true, opcode::CLOSE, &[]);
        let mut d = Decoder::new(100);
        d.decode(&mut close, &mut |_| {}).unwrap();
        assert_eq!(d.needed(&client(true, opcode::TEXT, b"x")), None);
    }

    #[test]
    fn control_frames_between_fragments() {
        let stream = cat(&[
            client(false, opcode::TEXT, b"Hel"),
            client(true, opcode::PING, b"are you there"),
            client(false, opcode::CONTINUATION, b"lo, "),
            client(true, opcode::PONG, b"yes"),
            client(true, opcode::PING, b""),
            client(true, opcode::CONTINUATION, b"world"),
        ]);
        let mut decoder = Decoder::new(1024);
        let mut buf = stream.clone();
        let mut out = Vec::new();
        assert_eq!(decoder.decode(&mut buf, &mut |m| out.push(Msg::from(m))), Ok(stream.len()));
        assert_eq!(
            out,
            vec![
                Msg::Ping(b"are you there".to_vec()),
                Msg::Pong(b"yes".to_vec()),
                Msg::Ping(Vec::new()),
                text("Hello, world"),
            ]
        );
        assert!(!decoder.mid_message());
        assert_eq!(decoder.fragments.capacity(), 0);
    }

    #[test]
    fn mid_message_tracks_fragments() {
        let mut decoder = Decoder::new(1024);
        let mut out = Vec::new();
        let mut first = client(false, opcode::BINARY, b"");
        decoder.decode(&mut first, &mut |m| out.push(Msg::from(m))).unwrap();
        assert!(decoder.mid_message());
        assert_eq!(decoder.fragments.capacity(), 0, "an empty fragment allocates nothing");
        let mut second = client(false, opcode::CONTINUATION, b"ab");
        decoder.decode(&mut second, &mut |m| out.push(Msg::from(m))).unwrap();
        assert!(decoder.mid_message());
        let mut last = client(true, opcode::CONTINUATION, b"c");
        decoder.decode(&mut last, &mut |m| out.push(Msg::from(m))).unwrap();
        assert!(!decoder.mid_message());
        assert_eq!(decoder.fragments.capacity(), 0);
        assert_eq!(out, vec![binary(b"abc")]);
    }

    #[test]
    fn empty_frames_and_fragments() {
        let stream = cat(&[
            client(true, opcode::TEXT, b""),
            client(false, opcode::TEXT, b""),
            client(false, opcode::CONTINUATION, b""),
            client(true, opcode::CONTINUATION, b""),
            client(false, opcode::BINARY, b""),
            client(true, opcode::CONTINUATION, b""),
            client(true, opcode::PING, b""),
            client(true, opcode::PONG, b""),
            client(true, opcode::CLOSE, b""),
        ]);
        let (out, result) = decode_once(0, &stream);
        assert_eq!(result, Ok(stream.len()));
        assert_eq!(
            out,
            vec![
                text(""),
                text(""),
                binary(b""),
                Msg::Ping(Vec::new()),
                Msg::Pong(Vec::new()),
                Msg::Close(None),
            ]
        );
    }

    #[test]
    fn reserved_bits_are_rejected() {
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            let frame = raw_frame(FIN | rsv | opcode::TEXT, b"x", Some([1, 2, 3, 4]), Len::Min);
            assert_eq!(violation(100, &frame), RESERVED_BITS);
            // Known from the first byte alone.
            assert_eq!(violation(100, &frame[..1]), RESERVED_BITS);
        }
    }

    #[test]
    fn reserved_opcodes_are_rejected() {
        for op in (3..=7).chain(11..=15) {
            let frame = raw_frame(FIN | op, b"", Some([1, 2, 3, 4]), Len::Min);
            assert_eq!(violation(100, &frame), RESERVED_OPCODE, "opcode {op}");
            assert_eq!(violation(100, &frame[..1]).code, 1002);
        }
    }

    #[test]
    fn unmasked_frames_are_rejected() {
        for op in [opcode::TEXT, opcode::BINARY, opcode::PING, opcode::PONG, opcode::CLOSE] {
            for payload in [&b""[..], b"abc"] {
                let frame = raw_frame(FIN | op, payload, None, Len::Min);
                assert_eq!(violation(100, &frame), UNMASKED);
                assert_eq!(violation(100, &frame[..2]), UNMASKED);
            }
        }
        let mut first = client(false, opcode::TEXT, b"a");
        first.extend(raw_frame(FIN, b"b", None, Len::Min));
        assert_eq!(violation(100, &first), UNMASKED);
    }

    #[test]
    fn control_frame_limits() {
        for op in [opcode::PING, opcode::PONG, opcode::CLOSE] {
            let mut payload = vec![b'a'; 126];
            payload[..2].copy_from_slice(&1000u16.to_be_bytes());
            let frame = client(true, op, &payload);
            assert_eq!(violation(1000, &frame), CONTROL_TOO_LONG);
            assert_eq!(violation(1000, &frame[..4]), CONTROL_TOO_LONG, "from the header alone");
            // 125 bytes is fine, even spelled with a 16-bit length.
            let frame = client_len(true, op, &payload[..125], Len::Ext16);
            assert_eq!(decode_once(1000, &frame).1, Ok(frame.len()));
            // A control frame must not be fragmented.
            let frame = client(false, op, b"");
            assert_eq!(violation(1000, &frame), FRAGMENTED_CONTROL);
            assert_eq!(violation(1000, &frame[..1]), FRAGMENTED_CONTROL);
        }
        // Also between fragments of a data message.
        let stream = cat(&[client(false, opcode::TEXT, b"a"), client(false, opcode::PING, b"")]);
        assert_eq!(violation(1000, &stream), FRAGMENTED_CONTROL);
    }

    #[test]
    fn continuation_rules() {
        let lone = client(true, opcode::CONTINUATION, b"x");
        assert_eq!(violation(100, &lone), UNEXPECTED_CONTINUATION);
        assert_eq!(violation(100, &lone[..1]), UNEXPECTED_CONTINUATION);
        let lone_open = client(false, opcode::CONTINUATION, b"");
        assert_eq!(violation(100, &lone_open), UNEXPECTED_CONTINUATION);
        // After a complete fragmented message, a continuation is unexpected again.
        let after = cat(&[
            client(false, opcode::TEXT, b"a"),
            client(true, opcode::CONTINUATION, b"b"),
            client(true, opcode::CONTINUATION, b"c"),
        ]);
        let (out, result) = decode_once(100, &after);
        assert_eq!(out, vec![text("ab")]);
        assert_eq!(result, Err(UNEXPECTED_CONTINUATION));

        for first in [opcode::TEXT, opcode::BINARY] {
            for next in [opcode::TEXT, opcode::BINARY] {
                for fin in [true, false] {
                    let stream = cat(&[client(false, first, b"a"), client(fin, next, b"b")]);
                    assert_eq!(violation(100, &stream), EXPECTED_CONTINUATION);
                }
            }
        }
    }

    #[test]
    fn length_with_top_bit_is_rejected() {
        let mut frame = vec![FIN | opcode::BINARY, MASK | LEN_64];
        frame.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert_eq!(violation(usize::MAX, &frame), BAD_LENGTH);
        let mut frame = vec![FIN | opcode::BINARY, MASK | LEN_64];
        frame.extend_from_slice(&u64::MAX.to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(violation(usize::MAX, &frame), BAD_LENGTH);
    }

    #[test]
    fn too_big_is_decided_from_the_header() {
        let max = 1000;
        for n in [1001u64, 65_535, 65_536, 1 << 40] {
            let mut frame = vec![FIN | opcode::BINARY];
            if n <= 0xFFFF {
                frame.push(MASK | LEN_16);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            } else {
                frame.push(MASK | LEN_64);
                frame.extend_from_slice(&n.to_be_bytes());
            }
            assert_eq!(violation(max, &frame), TOO_BIG, "{n} without key");
            frame.extend_from_slice(&[1, 2, 3, 4]);
            assert_eq!(violation(max, &frame), TOO_BIG, "{n} with key, no payload");
        }
        assert_eq!(violation(125, &client(false, opcode::TEXT, &[b'a'; 126])[..4]), TOO_BIG);
        // Exactly max_payload is fine, for a frame and for a fragmented message.
        let exact = client(true, opcode::BINARY, &[7; 1000]);
        assert_eq!(decode_once(max, &exact).1, Ok(exact.len()));
        let exact = cat(&[
            client(false, opcode::BINARY, &[7; 600]),
            client(true, opcode::PING, &[1; 100]),
            client(true, opcode::CONTINUATION, &[7; 400]),
        ]);
        assert_eq!(decode_once(max, &exact).1, Ok(exact.len()));
        // One more byte in the sum of fragments, known from the last header.
        let first = client(false, opcode::BINARY, &[7; 600]);
        let mut stream = cat(&[first.clone(), client(false, opcode::CONTINUATION, &[7; 300])]);
        stream.extend_from_slice(&client(true, opcode::CONTINUATION, &[7; 101])[..2]);
        assert_eq!(violation(max, &stream), TOO_BIG);
        let mut stream = first;
        stream.extend_from_slice(&client(true, opcode::CONTINUATION, &[7; 401])[..4]);
        assert_eq!(violation(max, &stream), TOO_BIG);
        // Control frames count against max_payload too.
        assert_eq!(violation(10, &client(true, opcode::PING, &[0; 11])), TOO_BIG);
    }

    #[test]
    fn violations_come_after_earlier_frames() {
        let stream = cat(&[
            client(true, opcode::TEXT, b"a"),
            client(true, opcode::PING, b"b"),
            raw_frame(FIN | 0x40 | opcode::TEXT, b"c", Some([1, 2, 3, 4]), Len::Min),
            client(true, opcode::TEXT, b"never"),
        ]);
        let (out, result) = decode_once(100, &stream);
        assert_eq!(out, vec![text("a"), Msg::Ping(b"b".to_vec())]);
        assert_eq!(result, Err(RESERVED_BITS));
    }

    #[test]
    fn violation_frees_the_message_in_progress() {
        let mut decoder = Decoder::new(1000);
        let mut buf = cat(&[client(false, opcode::BINARY, &[1; 100]), client(true, opcode::TEXT, b"")]);
        assert_eq!(decoder.decode(&mut buf, &mut |_| {}), Err(EXPECTED_CONTINUATION));
        assert!(!decoder.mid_message());
        assert_eq!(decoder.fragments.capacity(), 0);
    }

    #[test]
    fn invalid_utf8_in_one_frame() {
        for bad in [
            &b"\xFF"[..],
            b"abc\x80",
            b"\xC0\x80",         // overlong
            b"\xED\xA0\x80",     // surrogate
            b"\xF4\x90\x80\x80", // above U+10FFFF
            b"ok\xE2\x82",       // cut at the end of a final frame
        ] {
            assert_eq!(violation(100, &client(true, opcode::TEXT, bad)), INVALID_UTF8, "{bad:?}");
        }
        // Binary is never checked.
        assert_eq!(decode_once(100, &client(true, opcode::BINARY, b"\xFF")).0, vec![binary(b"\xFF")]);
    }

    #[test]
    fn utf8_split_at_every_point_of_fragments() {
        let message = "a€ü😀z";
        let bytes = message.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let stream = cat(&[
                    client(false, opcode::TEXT, &bytes[..i]),
                    client(false, opcode::CONTINUATION, &bytes[i..j]),
                    client(true, opcode::CONTINUATION, &bytes[j..]),
                ]);
                assert_eq!(decode_once(100, &stream), (vec![text(message)], Ok(stream.len())), "{i} {j}");
            }
        }
        // One byte per fragment.
        let mut frames = vec![client(false, opcode::TEXT, &bytes[..1])];
        frames.extend(bytes[1..].iter().map(|b| client(false, opcode::CONTINUATION, &[*b])));
        frames.push(client(true, opcode::CONTINUATION, b""));
        assert_eq!(decode_once(100, &cat(&frames)).0, vec![text(message)]);
    }

    #[test]
    fn invalid_utf8_in_fragments_fails_fast() {
        // Invalid inside the first fragment: reported before the message ends.
        let (out, result) = decode_once(100, &client(false, opcode::TEXT, b"a\xFFb"));
        assert_eq!((out, result), (vec![], Err(INVALID_UTF8)));
        // A prefix no character can start with is invalid at once, even at the fragment's end.
        for prefix in [&b"\xF4\x90"[..], b"\xE0\x80", b"\xF5", b"\xC1", b"\xED\xA0"] {
            let frame = client(false, opcode::TEXT, prefix);
            assert_eq!(violation(100, &frame), INVALID_UTF8, "{prefix:?}");
        }
        // A character cut at the boundary is fine until the next fragment breaks it...
        let cut = client(false, opcode::TEXT, b"ok\xE2\x82");
        assert_eq!(decode_once(100, &cut).1, Ok(cut.len()));
        let broken = cat(&[cut.clone(), client(false, opcode::CONTINUATION, b"A")]);
        assert_eq!(violation(100, &broken), INVALID_UTF8);
        // ...or the message ends without it.
        let unfinished = cat(&[cut.clone(), client(true, opcode::CONTINUATION, b"")]);
        assert_eq!(violation(100, &unfinished), INVALID_UTF8);
        let unfinished =
            cat(&[client(false, opcode::TEXT, b"ok"), client(true, opcode::CONTINUATION, b"\xF0")]);
        assert_eq!(violation(100, &unfinished), INVALID_UTF8);
        // Invalid in a middle fragment, past a valid cut character.
        let stream = cat(&[
            client(false, opcode::TEXT, b"\xE2"),
            client(false, opcode::CONTINUATION, b"\x82\xAC \xFE"),
        ]);
        assert_eq!(violation(100, &stream), INVALID_UTF8);
    }

    #[test]
    fn close_frames() {
        let close = |payload: &[u8]| decode_once(200, &client(true, opcode::CLOSE, payload));
        assert_eq!(close(b"").0, vec![Msg::Close(None)]);
        assert_eq!(close(b"\x03\xE8").0, vec![Msg::Close(Some((1000, String::new())))]);
        let payload = [&[0x0F, 0xA0][..], "bye ✓".as_bytes()].concat();
        assert_eq!(close(&payload).0, vec![Msg::Close(Some((4000, "bye ✓".into())))]);
        for code in (1000..=1003).chain(1007..=1014).chain(3000..=4999) {
            let payload = [&u16::to_be_bytes(code)[..], b"r"].concat();
            assert_eq!(close(&payload).0, vec![Msg::Close(Some((code, "r".into())))]);
        }
        for code in [0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65_535] {
            assert_eq!(close(&code.to_be_bytes()).1, Err(BAD_CLOSE_CODE), "{code}");
        }
        assert_eq!(close(b"\x03").1, Err(BAD_CLOSE_PAYLOAD));
        assert_eq!(close(b"\x03\xE8\xFF").1, Err(INVALID_UTF8));
        assert_eq!(close(b"\x03\xE8ok\xE2\x82").1, Err(INVALID_UTF8));
    }

    #[test]
    fn nothing_after_a_close_frame() {
        let close = client(true, opcode::CLOSE, b"\x03\xE9");
        let stream = cat(&[
            client(true, opcode::TEXT, b"before"),
            close.clone(),
            client(true, opcode::TEXT, b"after"),
            vec![0xFF, 0xFF], // garbage is not even looked at
        ]);
        let mut decoder = Decoder::new(100);
        let mut buf = stream.clone();
        let mut out = Vec::new();
        let used = decoder.decode(&mut buf, &mut |m| out.push(Msg::from(m))).unwrap();
        assert_eq!(used, client(true, opcode::TEXT, b"before").len() + close.len());
        assert_eq!(out, vec![text("before"), Msg::Close(Some((1001, String::new())))]);
        // Later calls swallow everything.
        let mut more = stream[used..].to_vec();
        assert_eq!(decoder.decode(&mut more, &mut |m| out.push(Msg::from(m))), Ok(more.len()));
        assert_eq!(out.len(), 2);
        // A close frame in the middle of a fragmented message is delivered at once.
        let stream = cat(&[client(false, opcode::TEXT, b"half"), close.clone(), client(true, 0, b"rest")]);
        let (out, result) = decode_once(100, &stream);
        assert_eq!(out, vec![Msg::Close(Some((1001, String::new())))]);
        assert_eq!(result, Ok(stream.len() - client(true, 0, b"rest").len()));
    }

    #[test]
    fn unmask_matches_bytewise_xor() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..100u8).collect();
        for offset in 0..8 {
            for len in 0..80 {
                let mut buf = vec![0u8; offset];
                buf.extend_from_slice(&data[..len]);
                unmask(&mut buf[offset..], key);
                let expected: Vec<u8> = data[..len].iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
                assert_eq!(&buf[offset..], &expected[..], "offset {offset} len {len}");
                assert!(buf[..offset].iter().all(|&b| b == 0));
            }
        }
    }

    #[test]
    fn unmask_tells_whether_the_payload_is_ascii() {
        let key = [0x81, 0x02, 0xff, 0x40];
        for len in 0..40 {
            // All ASCII, then one byte of 0x80 and up at each position (in a whole word or in
            // the tail).
            let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let masked =
                |p: &[u8]| -> Vec<u8> { p.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect() };
            let mut buf = masked(&plain);
            assert!(unmask(&mut buf, key), "len {len}");
            assert_eq!(buf, plain);
            for at in 0..len as usize {
                let mut high = plain.clone();
                high[at] = 0x80 | (at as u8 & 0x7f);
                let mut buf = masked(&high);
                assert!(!unmask(&mut buf, key), "len {len} at {at}");
                assert_eq!(buf, high);
            }
        }
    }

    #[test]
    fn text_frames_report_ascii_and_non_ascii_is_still_checked() {
        let key = Some([7, 8, 9, 10]);
        let mut stream = raw_frame(FIN | opcode::TEXT, b"plain ascii", key, Len::Min);
        stream.extend(raw_frame(FIN | opcode::TEXT, "caf\u{e9}".as_bytes(), key, Len::Min));
        let mut seen = Vec::new();
        let mut decoder = Decoder::new(1 << 20);
        decoder
            .decode(&mut stream, &mut |m| {
                if let Inbound::Text { data, ascii } = m {
                    seen.push((data.to_vec(), ascii));
                }
            })
            .unwrap();
        assert_eq!(seen, vec![(b"plain ascii".to_vec(), true), ("caf\u{e9}".as_bytes().to_vec(), false)]);
        // A byte of 0x80 and up that is not UTF-8 is refused as before.
        let mut bad = raw_frame(FIN | opcode::TEXT, b"ab\xffcd", key, Len::Min);
        assert_eq!(Decoder::new(1 << 20).decode(&mut bad, &mut |_| {}), Err(INVALID_UTF8));
    }

    #[test]
    fn many_small_frames_in_one_buffer() {
        const FRAMES: usize = 100_000;
        let mut stream = Vec::with_capacity(FRAMES * 26);
        for i in 0..FRAMES {
            let payload = format!("message {i:>10}");
            let op = if i % 2 == 0 { opcode::TEXT } else { opcode::BINARY };
            stream.extend(raw_frame(FIN | op, payload.as_bytes(), Some((i as u32).to_ne_bytes()), Len::Min));
        }
        let mut decoder = Decoder::new(1 << 20);
        let (mut count, mut bytes) = (0, 0);
        let used = decoder
            .decode(&mut stream, &mut |m| {
                count += 1;
                if let Inbound::Text { data, .. } | Inbound::Binary(data) = m {
                    bytes += data.len();
                }
            })
            .unwrap();
        assert_eq!(used, stream.len());
        assert_eq!(count, FRAMES);
        assert_eq!(bytes, FRAMES * 18);
    }

    #[test]
    fn header_len_boundaries() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10), (1 << 32, 10)] {
            assert_eq!(header_len(len), header, "{len}");
        }
    }

    #[test]
    fn encodes_server_frames() {
        assert_eq!(&encode(opcode::TEXT, b"hi")[..], b"\x81\x02hi");
        assert_eq!(&encode(opcode::PING, b"")[..], b"\x89\x00");
        assert_eq!(&encode(opcode::PONG, b"x")[..], b"\x8A\x01x");
        for (n, header) in
            [(125, vec![0x82, 125]), (126, vec![0x82, 126, 0, 126]), (65_535, vec![0x82, 126, 0xFF, 0xFF])]
        {
            let frame = encode(opcode::BINARY, &vec![5; n]);
            assert_eq!(frame.len(), header_len(n) + n);
            assert_eq!(&frame[..header.len()], &header[..]);
        }
        let frame = encode(opcode::BINARY, &[5; 65_536]);
        assert_eq!(&frame[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert!(frame[10..].iter().all(|&b| b == 5));
        // encode_into appends.
        let mut out = b"prefix".to_vec();
        encode_into(&mut out, opcode::TEXT, b"a");
        encode_into(&mut out, opcode::BINARY, &[1; 200]);
        assert_eq!(&out[..9], b"prefix\x81\x01a");
        assert_eq!(&out[9..13], &[0x82, 126, 0, 200]);
        assert_eq!(out.len(), 9 + 4 + 200);
    }

    /// Turns an unmasked server frame into the masked frame a client would send.
    fn mask_server_frame(frame: &[u8], key: [u8; 4]) -> Vec<u8> {
        let size = match frame[1] & LEN {
            LEN_16 => 4,
            LEN_64 => 10,
            _ => 2,
        };
        let mut out = frame[..size].to_vec();
        out[1] |= MASK;
        out.extend_from_slice(&key);
        out.extend(frame[size..].iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    #[test]
    fn encode_decode_round_trip() {
        let sizes = [0, 1, 7, 8, 9, 125, 126, 127, 1000, 65_535, 65_536, 70_001];
        for n in sizes {
            let payload: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            let mut ops = vec![(opcode::TEXT, text(std::str::from_utf8(&payload).unwrap()))];
            ops.push((opcode::BINARY, binary(&payload)));
            if n <= 125 {
                ops.push((opcode::PING, Msg::Ping(payload.clone())));
                ops.push((opcode::PONG, Msg::Pong(payload.clone())));
            }
            for (op, expected) in ops {
                let client_frame = mask_server_frame(&encode(op, &payload), [0xA1, 0x02, 0xB3, 0x04]);
                assert_eq!(decode_once(1 << 20, &client_frame), (vec![expected], Ok(client_frame.len())));
            }
        }
        let close = mask_server_frame(&encode_close(4321, "done ✓"), [9, 8, 7, 6]);
        assert_eq!(decode_once(200, &close).0, vec![Msg::Close(Some((4321, "done ✓".into())))]);
    }

    #[test]
    fn encode_close_cuts_the_reason_at_a_char_boundary() {
        assert_eq!(&encode_close(1000, "")[..], b"\x88\x02\x03\xE8");
        assert_eq!(&encode_close(1001, "bye")[..], b"\x88\x05\x03\xE9bye");
        let cases = [
            ("a".repeat(200), 123),
            ("a".repeat(123), 123),
            ("é".repeat(62), 122), // 2-byte chars: byte 123 is inside one
            ("€".repeat(41), 123), // 3-byte chars end exactly at 123
            (format!("a{}", "€".repeat(41)), 121),
            (format!("abc{}", "😀".repeat(40)), 123), // 3 + 30 * 4
            (format!("ab{}", "😀".repeat(40)), 122),
        ];
        for (reason, kept) in cases {
            let frame = encode_close(1000, &reason);
            assert_eq!(frame.len(), 4 + kept, "{reason}");
            assert_eq!(frame[1] as usize, 2 + kept);
            assert_eq!(&frame[4..], &reason.as_bytes()[..kept]);
            let client_frame = mask_server_frame(&frame, [1, 2, 3, 4]);
            let expected = Msg::Close(Some((1000, reason[..kept].to_string())));
            assert_eq!(decode_once(200, &client_frame), (vec![expected], Ok(client_frame.len())));
        }
    }

    /// Property tests: any stream of frames (valid or not, garbage included), split at any
    /// points, decodes the same and stays within its limits.
    mod props {
        use proptest::prelude::*;

        use super::*;

        /// One item of a generated stream: a message or control frame as a client writes it
        /// (possibly fragmented, any length form), or raw bytes.
        #[derive(Debug, Clone)]
        enum Item {
            Text(String, Vec<usize>),
            Binary(Vec<u8>, Vec<usize>),
            Ping(Vec<u8>),
            Pong(Vec<u8>),
            Close(u16, String),
            Raw(Vec<u8>),
        }

        fn len_form() -> impl Strategy<Value = Len> {
            prop_oneof![Just(Len::Min), Just(Len::Ext16), Just(Len::Ext64)]
        }

        fn item() -> impl Strategy<Value = Item> {
            prop_oneof![
                4 => ("\\PC{0,40}", prop::collection::vec(0usize..64, 0..4)).prop_map(|(t, cuts)| Item::Text(t, cuts)),
                4 => (prop::collection::vec(any::<u8>(), 0..300), prop::collection::vec(0usize..400, 0..4))
                    .prop_map(|(b, cuts)| Item::Binary(b, cuts)),
                1 => prop::collection::vec(any::<u8>(), 0..126).prop_map(Item::Ping),
                1 => prop::collection::vec(any::<u8>(), 0..126).prop_map(Item::Pong),
                1 => (prop_oneof![Just(1000u16), Just(1001), Just(3000), Just(4999), Just(1005), Just(999)], "\\PC{0,10}")
                    .prop_map(|(c, r)| Item::Close(c, r)),
                1 => prop::collection::vec(any::<u8>(), 1..16).prop_map(Item::Raw),
            ]
        }

        /// The payload cut into fragments at `cuts` (sorted, deduplicated, within it).
        fn fragments(payload: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
            let mut at: Vec<usize> = cuts.iter().map(|&c| c % (payload.len() + 1)).collect();
            at.sort_unstable();
            at.dedup();
            let mut parts = Vec::new();
            let mut start = 0;
            for cut in at {
                parts.push(payload[start..cut].to_vec());
                start = cut;
            }
            parts.push(payload[start..].to_vec());
            parts
        }

        fn encode_item(item: &Item, len: Len) -> Vec<u8> {
            let message = |op: u8, payload: &[u8], cuts: &[usize]| {
                let parts = fragments(payload, cuts);
                let last = parts.len() - 1;
                let mut out = Vec::new();
                for (i, part) in parts.iter().enumerate() {
                    let op = if i == 0 { op } else { opcode::CONTINUATION };
                    out.extend(client_len(i == last, op, part, len));
                }
                out
            };
            match item {
                Item::Text(t, cuts) => message(opcode::TEXT, t.as_bytes(), cuts),
                Item::Binary(b, cuts) => message(opcode::BINARY, b, cuts),
                Item::Ping(p) => client_len(true, opcode::PING, p, len),
                Item::Pong(p) => client_len(true, opcode::PONG, p, len),
                Item::Close(code, reason) => {
                    let mut payload = code.to_be_bytes().to_vec();
                    payload.extend_from_slice(reason.as_bytes());
                    payload.truncate(125);
                    client_len(true, opcode::CLOSE, &payload, len)
                }
                Item::Raw(bytes) => bytes.clone(),
            }
        }

        fn stream() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec((item(), len_form()), 0..12)
                .prop_map(|items| items.iter().flat_map(|(item, len)| encode_item(item, *len)).collect())
        }

        /// Sizes of the reads the stream arrives in: any cut points.
        fn splits(total: usize, cuts: &[usize]) -> Vec<usize> {
            let at: std::collections::BTreeSet<usize> =
                cuts.iter().map(|&c| c % (total + 1)).chain([total]).collect();
            let mut prev = 0;
            at.into_iter().map(|c| c - std::mem::replace(&mut prev, c)).collect()
        }

        /// What a whole feed produced: the messages, the violation, and the bytes left over.
        type Outcome = (Vec<Msg>, Option<Violation>, usize);

        /// Feeds the stream in reads of `sizes` as the reader does (unconsumed bytes kept, the
        /// next read appended), checking the limits after every call.
        fn feed_checked(max: usize, stream: &[u8], sizes: &[usize]) -> Outcome {
            let mut decoder = Decoder::new(max);
            let (mut pending, mut out, mut at) = (Vec::new(), Vec::new(), 0);
            for &size in sizes {
                pending.extend_from_slice(&stream[at..at + size]);
                at += size;
                let result = decoder.decode(&mut pending, &mut |m| out.push(Msg::from(m)));
                assert!(
                    decoder.fragments.capacity() <= max,
                    "fragments hold {}",
                    decoder.fragments.capacity()
                );
                match result {
                    // The reader stops at a close frame: what follows it is never read.
                    Ok(_) if matches!(out.last(), Some(Msg::Close(_))) => return (out, None, 0),
                    Ok(used) => {
                        assert!(used <= pending.len());
                        pending.drain(..used);
                    }
                    Err(v) => return (out, Some(v), 0),
                }
                if let Some(needed) = decoder.needed(&pending) {
                    assert!(needed <= max + MAX_HEADER, "needed {needed} with max {max}");
                    assert!(needed > pending.len(), "a whole frame would have been decoded");
                }
            }
            (out, None, pending.len())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_split_decodes_the_same_within_limits(
                stream in stream(),
                max in prop_oneof![Just(1usize << 20), 0usize..400],
                cuts in prop::collection::vec(any::<usize>(), 0..24),
            ) {
                let whole = feed_checked(max, &stream, &[stream.len()]);
                let split = feed_checked(max, &stream, &splits(stream.len(), &cuts));
                prop_assert_eq!(&split, &whole);
                let bytewise = feed_checked(max, &stream, &vec![1; stream.len()]);
                prop_assert_eq!(&bytewise, &whole);
            }

            #[test]
            fn any_bytes_never_panic_and_stay_within_limits(
                bytes in prop::collection::vec(any::<u8>(), 0..200),
                max in 0usize..300,
                cuts in prop::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = feed_checked(max, &bytes, &[bytes.len()]);
                prop_assert_eq!(feed_checked(max, &bytes, &splits(bytes.len(), &cuts)), whole);
            }

            #[test]
            fn needed_is_bounded_for_any_header(bytes in prop::collection::vec(any::<u8>(), 0..20), max in 0usize..100_000) {
                let decoder = Decoder::new(max);
                if let Some(needed) = decoder.needed(&bytes) {
                    prop_assert!(needed <= max + MAX_HEADER);
                }
            }
        }
    }
}
