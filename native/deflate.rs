//! permessage-deflate (RFC 7692): the offer we accept and our answer, and the zlib streams that
//! compress what we send and inflate what we receive.
//!
//! Memory is the extension's cost: a zlib stream with its window is tens to hundreds of KB. A
//! connection therefore holds a stream only when its side keeps the context between messages
//! ("context takeover"), and only from its first compressed message on. Without context
//! takeover, every message starts afresh, so a stream per thread serves every connection with the
//! same parameters, and a broadcast is compressed once for all of them ([`FrameCache`]).

use std::cell::RefCell;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use zlib_rs::{Deflate, DeflateFlush, Inflate, InflateFlush, Status};

use crate::frame;
use crate::offload::{Pending, SharedFrame};
use crate::outbox::SendStatus;

/// The extension's name in `Sec-WebSocket-Extensions`.
const NAME: &str = "permessage-deflate";
/// What a sync flush ends a message with; taken off on send, put back before inflating (§7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];
/// Default smallest message compressed: shorter ones gain little and cost a zlib call.
pub const DEFAULT_THRESHOLD: u32 = 1024;
/// Default zlib memLevel (1-9): its hash table, the other half of a stream's memory.
pub const DEFAULT_MEM_LEVEL: u8 = 8;
/// Largest LZ77 window (RFC 7692: 8-15 bits).
pub const MAX_WINDOW_BITS: u8 = 15;
/// Smallest window zlib's raw deflate writes; a peer asking for 8 gets stored blocks instead.
const MIN_DEFLATE_BITS: u8 = 9;
/// Default compression level (0-9): zlib's default.
pub const DEFAULT_LEVEL: u8 = 6;

/// What a stream is made with: window bits, memLevel, level. Streams (and a broadcast's
/// compressed frames) with the same key are interchangeable when no context is kept.
pub(crate) type StreamKey = (u8, u8, u8);
/// Output grown per inflate step, so a small frame never reserves its whole cap at once.
const INFLATE_STEP: usize = 64 * 1024;

/// A server's (or a path's) permessage-deflate settings, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Messages shorter than this go uncompressed.
    pub threshold: usize,
    /// We start every message afresh (and say so), so our streams are per thread.
    pub server_no_context_takeover: bool,
    /// We ask the client to start every message afresh, so our inflaters are per thread.
    pub client_no_context_takeover: bool,
    /// Largest window we compress with (9-15).
    pub server_max_window_bits: u8,
    /// Largest window we let the client compress with (8-15); below 15 needs the client's consent.
    pub client_max_window_bits: u8,
    pub mem_level: u8,
    /// zlib's compression level (0-9).
    pub level: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            threshold: DEFAULT_THRESHOLD as usize,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            mem_level: DEFAULT_MEM_LEVEL,
            level: DEFAULT_LEVEL,
        }
    }
}

/// What one connection agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window we compress with (8-15).
    pub server_max_window_bits: u8,
    /// The window the client compresses with (8-15).
    pub client_max_window_bits: u8,
    /// Whether the answer names `client_max_window_bits` (only when the client offered it).
    client_bits_in_answer: bool,
    /// Whether the answer names `server_max_window_bits`.
    server_bits_in_answer: bool,
}

impl Negotiated {
    /// The `Sec-WebSocket-Extensions` value of our 101.
    pub fn answer(&self) -> String {
        let mut out = String::from(NAME);
        if self.server_no_context_takeover {
            out.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            out.push_str("; client_no_context_takeover");
        }
        if self.server_bits_in_answer {
            out.push_str(&format!("; server_max_window_bits={}", self.server_max_window_bits));
        }
        if self.client_bits_in_answer {
            out.push_str(&format!("; client_max_window_bits={}", self.client_max_window_bits));
        }
        out
    }
}

impl Negotiated {
    /// What the peer inflates our frames with: our side's parameters as its client side.
    #[cfg(test)]
    pub fn as_seen_by_peer(&self) -> Negotiated {
        Negotiated {
            client_no_context_takeover: self.server_no_context_takeover,
            client_max_window_bits: self.server_max_window_bits,
            ..*self
        }
    }
}

/// The parameters of one offer, each at most once.
#[derive(Debug, Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// Some(None): offered without a value (any window up to 15 is fine for the client).
    client_max_window_bits: Option<Option<u8>>,
}

/// Answers the first `permessage-deflate` offer of the request (every `Sec-WebSocket-Extensions`
/// value, in order) that `config` can accept; None declines them all. A malformed offer
/// (unknown or repeated parameter, bad value) is declined, never failed.
pub fn negotiate<'a>(values: impl Iterator<Item = &'a [u8]>, config: &DeflateConfig) -> Option<Negotiated> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(split_outside_quotes)
        .filter_map(parse_offer)
        .find_map(|offer| accept(&offer, config))
}

/// Splits a header value at the commas that are not inside a quoted string.
fn split_outside_quotes(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

/// An RFC 7230 token.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A window size as RFC 7692 spells it: 8-15 in decimal, no leading zero. A quoted value
/// (`"10"`) is the same value (§7.1, quoted-string form).
fn window_bits(value: &str) -> Option<u8> {
    let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
    if value.starts_with('0') || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u8>().ok().filter(|b| (8..=MAX_WINDOW_BITS).contains(b))
}

/// Parses one extension element; None when it is another extension or malformed.
fn parse_offer(element: &str) -> Option<Offer> {
    let mut params = element.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case(NAME) {
        return None;
    }
    let mut offer = Offer::default();
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param, None),
        };
        if !is_token(name) {
            return None;
        }
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if offer.client_max_window_bits.is_none() => {
                let bits = match v {
                    None => None,
                    Some(v) => Some(window_bits(v)?),
                };
                offer.client_max_window_bits = Some(bits);
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// Our answer to one well-formed offer, or None to decline it (RFC 7692 §7.1).
fn accept(offer: &Offer, config: &DeflateConfig) -> Option<Negotiated> {
    let client_no_context_takeover = offer.client_no_context_takeover || config.client_no_context_takeover;
    // A client window below 15 needs the client's consent (`client_max_window_bits` in its offer),
    // unless the client keeps no context, when its window costs us nothing.
    let client_max_window_bits = match offer.client_max_window_bits {
        Some(offered) => offered.unwrap_or(MAX_WINDOW_BITS).min(config.client_max_window_bits),
        None if config.client_max_window_bits < MAX_WINDOW_BITS && !client_no_context_takeover => {
            return None
        }
        None => MAX_WINDOW_BITS,
    };
    let server_max_window_bits =
        offer.server_max_window_bits.unwrap_or(MAX_WINDOW_BITS).min(config.server_max_window_bits);
    Some(Negotiated {
        server_no_context_takeover: offer.server_no_context_takeover || config.server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        client_bits_in_answer: offer.client_max_window_bits.is_some(),
        server_bits_in_answer: offer.server_max_window_bits.is_some()
            || server_max_window_bits < MAX_WINDOW_BITS,
    })
}

/// Why an inbound compressed message is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates past `maxPayload` (1009).
    TooBig,
    /// Not a valid deflate stream, or one that needs a larger window than agreed (1002).
    Invalid,
}

/// One compressing zlib stream (raw deflate).
struct Compressor {
    stream: Deflate,
}

impl Compressor {
    /// A stream for a window of `bits` (8-15), `mem_level` (1-9) and `level` (0-9). A window of
    /// 8 bits, which zlib's raw deflate does not write, gets stored blocks: valid for any window.
    fn new((bits, mem_level, level): StreamKey) -> Self {
        let (level, bits) =
            if bits < MIN_DEFLATE_BITS { (0, MIN_DEFLATE_BITS) } else { (i32::from(level.min(9)), bits) };
        let config = zlib_rs::DeflateConfig {
            level,
            window_bits: -i32::from(bits.min(MAX_WINDOW_BITS)),
            mem_level: i32::from(mem_level.clamp(1, 9)),
            ..zlib_rs::DeflateConfig::default()
        };
        Compressor { stream: Deflate::new_with_config(config) }
    }

    /// Appends `input` compressed and sync-flushed, without the flush's 4-byte tail.
    fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut rest = input;
        loop {
            let at = out.len();
            let room = (rest.len() / 2).max(1024);
            out.resize(at + room, 0);
            let (before_in, before_out) = (self.stream.total_in(), self.stream.total_out());
            let status = self.stream.compress(rest, &mut out[at..], DeflateFlush::SyncFlush);
            let used = (self.stream.total_in() - before_in) as usize;
            let wrote = (self.stream.total_out() - before_out) as usize;
            out.truncate(at + wrote);
            rest = rest.get(used..).unwrap_or_default();
            // Done once all input is in and the flush fit: zlib left room unused.
            if status.is_err() || (rest.is_empty() && wrote < room) {
                break;
            }
        }
        if out.len() >= start + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
}

/// One inflating zlib stream (raw deflate).
struct Inflater {
    stream: Inflate,
}

impl Inflater {
    fn new(bits: u8) -> Self {
        Inflater { stream: Inflate::new(false, bits.clamp(MIN_DEFLATE_BITS, MAX_WINDOW_BITS)) }
    }

    /// Inflates one message into `out`, failing as soon as it passes `cap` bytes: the output
    /// never grows past `cap + 1`, whatever the input would expand to.
    fn inflate(&mut self, input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
        for piece in [input, &TAIL[..]] {
            let mut rest = piece;
            loop {
                let at = out.len();
                // Room up to one byte past the cap, grown a step at a time.
                let room = (cap + 1 - at).min(INFLATE_STEP);
                if out.capacity() < at + room {
                    let grown = out.capacity().saturating_mul(2).clamp(at + room, cap + 1);
                    out.reserve_exact(grown - at);
                }
                out.resize(at + room, 0);
                let (before_in, before_out) = (self.stream.total_in(), self.stream.total_out());
                let status = self.stream.decompress(rest, &mut out[at..], InflateFlush::SyncFlush);
                let used = (self.stream.total_in() - before_in) as usize;
                let wrote = (self.stream.total_out() - before_out) as usize;
                out.truncate(at + wrote);
                rest = rest.get(used..).unwrap_or_default();
                if out.len() > cap {
                    return Err(InflateError::TooBig);
                }
                match status {
                    Err(_) => return Err(InflateError::Invalid),
                    // A final block ends the stream: what follows starts a new one.
                    Ok(Status::StreamEnd) => {
                        self.stream.reset(false);
                        return Ok(());
                    }
                    Ok(_) if rest.is_empty() && wrote < room => break,
                    // Input left that zlib cannot take: never deliver a cut message.
                    Ok(_) if used == 0 && wrote == 0 => return Err(InflateError::Invalid),
                    Ok(_) => {}
                }
            }
        }
        Ok(())
    }
}

thread_local! {
    /// This thread's fresh-per-message compressors, by (window bits, memLevel).
    static COMPRESSORS: RefCell<Vec<(StreamKey, Compressor)>> = const { RefCell::new(Vec::new()) };
    /// This thread's fresh-per-message inflaters, by window bits.
    static INFLATERS: RefCell<Vec<(u8, Inflater)>> = const { RefCell::new(Vec::new()) };
}

/// Compresses with this thread's stream for `key`, reset afterwards (no context kept).
fn compress_fresh(key: StreamKey, input: &[u8], out: &mut Vec<u8>) {
    COMPRESSORS.with_borrow_mut(|all| {
        let i = match all.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                all.push((key, Compressor::new(key)));
                all.len() - 1
            }
        };
        let c = &mut all[i].1;
        c.compress(input, out);
        c.stream.reset();
    });
}

/// Starts a frame with RSV1 set whose payload is `payload` compressed by `compress`.
fn compressed_frame(opcode: u8, payload: &[u8], compress: impl FnOnce(&[u8], &mut Vec<u8>)) -> Bytes {
    let mut body = Vec::with_capacity(payload.len() / 2 + 64);
    compress(payload, &mut body);
    let (mut header, n) = frame::header(opcode, body.len());
    header[0] |= frame::RSV1;
    let mut out = Vec::with_capacity(n + body.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&body);
    Bytes::from(out)
}

/// The sending side of a connection that negotiated the extension.
pub struct Outbound {
    pub negotiated: Negotiated,
    threshold: usize,
    mem_level: u8,
    level: u8,
    /// With context takeover: our stream, created with the first compressed message. Held
    /// while the frame is queued, so frames leave in the order they were compressed.
    stream: Mutex<Option<Compressor>>,
    /// Sends waiting behind a compression off the sending thread (`offload.rs`).
    pub(crate) pending: Mutex<Pending>,
}

impl Outbound {
    pub fn new(negotiated: Negotiated, config: &DeflateConfig) -> Self {
        Outbound {
            negotiated,
            threshold: config.threshold,
            mem_level: config.mem_level,
            level: config.level,
            stream: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// Whether a payload of `len` bytes is compressed.
    #[inline]
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// The key under which a per-message compression can be shared, None with context takeover.
    pub(crate) fn shared_key(&self) -> Option<StreamKey> {
        self.negotiated.server_no_context_takeover.then_some(self.key())
    }

    /// The parameters of this connection's compressor.
    fn key(&self) -> StreamKey {
        (self.negotiated.server_max_window_bits, self.mem_level, self.level)
    }

    /// The compressed frame of a message, then `queue` with it (under the stream's lock when
    /// context is kept, so the frames leave in compression order). `cache` shares the frame
    /// of a broadcast between connections that agreed the same parameters. A frame `queue`
    /// drops resets our stream: what follows never refers to bytes the peer did not get.
    pub fn send(
        &self,
        opcode: u8,
        payload: &[u8],
        cache: &mut FrameCache,
        queue: impl FnOnce(&Bytes) -> SendStatus,
    ) -> SendStatus {
        if let Some(key) = self.shared_key() {
            let frame = cache
                .get_or_make(key, || compressed_frame(opcode, payload, |p, out| compress_fresh(key, p, out)));
            return queue(&frame);
        }
        let mut guard = self.stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stream = guard.get_or_insert_with(|| Compressor::new(self.key()));
        let frame = compressed_frame(opcode, payload, |p, out| stream.compress(p, out));
        let status = queue(&frame);
        if status == SendStatus::Dropped {
            stream.stream.reset();
        }
        status
    }

    /// Compresses one message (on the blocking pool) and hands its frame to `write`, under the
    /// stream's lock when context is kept, so no other frame of ours is compressed in between.
    pub(crate) fn send_owned(&self, opcode: u8, payload: &[u8], write: impl FnOnce(&Bytes)) {
        if let Some(key) = self.shared_key() {
            return write(&compressed_frame(opcode, payload, |p, out| compress_fresh(key, p, out)));
        }
        let mut guard = self.stream.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let stream = guard.get_or_insert_with(|| Compressor::new(self.key()));
        write(&compressed_frame(opcode, payload, |p, out| stream.compress(p, out)));
    }

    /// Whether this connection holds a zlib stream of its own (for tests and memory figures).
    #[cfg(test)]
    fn holds_stream(&self) -> bool {
        self.stream.lock().map(|s| s.is_some()).unwrap_or(false)
    }
}

/// The compressed frames of one message, by parameters: a broadcast compresses once per kind
/// of recipient that keeps no context.
#[derive(Default)]
pub struct FrameCache {
    frames: Vec<(StreamKey, Bytes)>,
    /// Large messages, compressed off the sending thread (`offload.rs`).
    shared: Vec<(StreamKey, Arc<SharedFrame>)>,
}

impl FrameCache {
    /// The off-thread compression of a large message for `key`, started by its first member.
    pub(crate) fn shared(&mut self, key: StreamKey, opcode: u8, payload: Bytes) -> Arc<SharedFrame> {
        if let Some((_, f)) = self.shared.iter().find(|(k, _)| *k == key) {
            return f.clone();
        }
        let f = SharedFrame::start(move || {
            compressed_frame(opcode, &payload, |p, out| compress_fresh(key, p, out))
        });
        self.shared.push((key, f.clone()));
        f
    }

    fn get_or_make(&mut self, key: StreamKey, make: impl FnOnce() -> Bytes) -> Bytes {
        if let Some((_, f)) = self.frames.iter().find(|(k, _)| *k == key) {
            return f.clone();
        }
        let f = make();
        self.frames.push((key, f.clone()));
        f
    }

    /// How many compressions this cache holds (one per parameter set seen).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.frames.len() + self.shared.len()
    }
}

/// The receiving side of a connection that negotiated the extension.
pub struct Inbound {
    negotiated: Negotiated,
    /// With the client's context takeover: our inflater, created with its first message.
    stream: Option<Inflater>,
}

impl Inbound {
    pub fn new(negotiated: Negotiated) -> Self {
        Inbound { negotiated, stream: None }
    }

    /// Inflates one compressed message, at most `cap` bytes.
    pub fn inflate(&mut self, input: &[u8], cap: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        let bits = self.negotiated.client_max_window_bits;
        if self.negotiated.client_no_context_takeover {
            INFLATERS.with_borrow_mut(|all| {
                let i = match all.iter().position(|(k, _)| *k == bits) {
                    Some(i) => i,
                    None => {
                        all.push((bits, Inflater::new(bits)));
                        all.len() - 1
                    }
                };
                let inflater = &mut all[i].1;
                let result = inflater.inflate(input, cap, &mut out);
                inflater.stream.reset(false);
                result
            })?;
        } else {
            let stream = self.stream.get_or_insert_with(|| Inflater::new(bits));
            stream.inflate(input, cap, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<Negotiated> {
        offer_with(value, &DeflateConfig::default())
    }

    fn offer_with(value: &str, config: &DeflateConfig) -> Option<Negotiated> {
        negotiate(std::iter::once(value.as_bytes()), config)
    }

    fn answer(value: &str) -> Option<String> {
        offer(value).map(|n| n.answer())
    }

    #[test]
    fn a_plain_offer_is_accepted_with_context_takeover() {
        let n = offer("permessage-deflate").unwrap();
        assert!(!n.server_no_context_takeover && !n.client_no_context_takeover);
        assert_eq!((n.server_max_window_bits, n.client_max_window_bits), (15, 15));
        assert_eq!(n.answer(), "permessage-deflate");
    }

    #[test]
    fn other_extensions_and_no_header_are_declined() {
        assert_eq!(offer("x-webkit-deflate-frame"), None);
        assert_eq!(negotiate(std::iter::empty(), &DeflateConfig::default()), None);
        assert_eq!(offer("permessage-deflatex"), None);
    }

    #[test]
    fn no_context_takeover_params_take_no_value_and_appear_once() {
        assert_eq!(
            answer("permessage-deflate; server_no_context_takeover").as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(
            answer("permessage-deflate; client_no_context_takeover").as_deref(),
            Some("permessage-deflate; client_no_context_takeover")
        );
        assert_eq!(offer("permessage-deflate; server_no_context_takeover=1"), None);
        assert_eq!(offer("permessage-deflate; client_no_context_takeover=x"), None);
        assert_eq!(offer("permessage-deflate; server_no_context_takeover; server_no_context_takeover"), None);
        assert_eq!(offer("permessage-deflate; client_no_context_takeover; client_no_context_takeover"), None);
    }

    #[test]
    fn server_max_window_bits_needs_a_value_in_range_and_is_echoed_or_lowered() {
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=10").as_deref(),
            Some("permessage-deflate; server_max_window_bits=10")
        );
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=\"12\"").unwrap().server_max_window_bits,
            12
        );
        for bad in ["", "=7", "=16", "=010", "=abc", "=-9"] {
            assert_eq!(offer(&format!("permessage-deflate; server_max_window_bits{bad}")), None, "{bad}");
        }
        assert_eq!(offer("permessage-deflate; server_max_window_bits=9; server_max_window_bits=9"), None);
        let small = DeflateConfig { server_max_window_bits: 11, ..DeflateConfig::default() };
        let n = offer_with("permessage-deflate; server_max_window_bits=13", &small).unwrap();
        assert_eq!(n.answer(), "permessage-deflate; server_max_window_bits=11");
        // Not offered: we may still name our smaller window.
        let n = offer_with("permessage-deflate", &small).unwrap();
        assert_eq!(n.answer(), "permessage-deflate; server_max_window_bits=11");
    }

    #[test]
    fn client_max_window_bits_may_come_without_a_value_and_is_only_answered_when_offered() {
        let n = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(n.client_max_window_bits, 15);
        assert_eq!(n.answer(), "permessage-deflate; client_max_window_bits=15");
        let n = offer("permessage-deflate; client_max_window_bits=9").unwrap();
        assert_eq!(n.answer(), "permessage-deflate; client_max_window_bits=9");
        for bad in ["=7", "=16", "=", "=08"] {
            assert_eq!(offer(&format!("permessage-deflate; client_max_window_bits{bad}")), None, "{bad}");
        }
        assert_eq!(offer("permessage-deflate; client_max_window_bits; client_max_window_bits=10"), None);
        // We want a smaller client window: only an offer naming the parameter can give it.
        let small = DeflateConfig { client_max_window_bits: 10, ..DeflateConfig::default() };
        assert_eq!(offer_with("permessage-deflate", &small), None);
        let n = offer_with("permessage-deflate; client_max_window_bits", &small).unwrap();
        assert_eq!(n.answer(), "permessage-deflate; client_max_window_bits=10");
        // ... unless the client keeps no context, when its window costs us nothing.
        let fresh = DeflateConfig { client_no_context_takeover: true, ..small };
        assert!(offer_with("permessage-deflate", &fresh).is_some());
    }

    #[test]
    fn unknown_params_decline_the_offer_and_the_next_acceptable_offer_wins() {
        assert_eq!(offer("permessage-deflate; foo"), None);
        assert_eq!(offer("permessage-deflate; foo=1"), None);
        let n = offer("permessage-deflate; foo, permessage-deflate; server_max_window_bits=12").unwrap();
        assert_eq!(n.server_max_window_bits, 12);
        let n = offer("permessage-deflate; client_max_window_bits=10, permessage-deflate").unwrap();
        assert_eq!(n.client_max_window_bits, 10, "the first acceptable offer");
        // Over several header lines, in order.
        let values = ["permessage-deflate; bad=\"a,b\"", "permessage-deflate; server_no_context_takeover"];
        let n = negotiate(values.iter().map(|v| v.as_bytes()), &DeflateConfig::default()).unwrap();
        assert!(n.server_no_context_takeover);
    }

    #[test]
    fn configured_no_context_takeover_is_announced_whatever_the_offer() {
        let config = DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateConfig::default()
        };
        let n = offer_with("permessage-deflate; client_max_window_bits", &config).unwrap();
        assert_eq!(
            n.answer(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15"
        );
    }

    fn roundtrip(negotiated: Negotiated, messages: &[Vec<u8>]) -> usize {
        let config = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
        let out = Outbound::new(negotiated, &config);
        // The peer inflates what we send with its own side's parameters.
        let mut peer = Inbound::new(negotiated.as_seen_by_peer());
        let mut total = 0;
        for m in messages {
            let mut frame = Bytes::new();
            out.send(frame::opcode::TEXT, m, &mut FrameCache::default(), |f| {
                frame = f.clone();
                SendStatus::Sent
            });
            assert_eq!(frame[0] & frame::RSV1, frame::RSV1);
            let skip = match frame[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let inflated = peer.inflate(&frame[skip..], 1 << 20).unwrap();
            assert_eq!(&inflated, m);
            total += frame.len();
        }
        total
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages_and_stays_in_step() {
        let msg = br#"{"type":"tick","symbol":"ABC","price":101.25,"volume":12000,"note":"same as before"}"#;
        let messages: Vec<Vec<u8>> =
            (0..200).map(|i| [&msg[..], format!("{i}").as_bytes()].concat()).collect();
        let base = offer("permessage-deflate").unwrap();
        let kept = roundtrip(base, &messages);
        let fresh = roundtrip(Negotiated { server_no_context_takeover: true, ..base }, &messages);
        assert!(kept < fresh, "context takeover: {kept} bytes, without: {fresh}");
        let small = roundtrip(Negotiated { server_max_window_bits: 8, ..base }, &messages);
        assert!(small > 0);
    }

    #[test]
    fn a_connection_holds_a_stream_only_with_context_takeover_and_after_its_first_message() {
        let config = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
        let kept = Outbound::new(offer("permessage-deflate").unwrap(), &config);
        assert!(!kept.holds_stream());
        kept.send(frame::opcode::TEXT, b"hello hello", &mut FrameCache::default(), |_| SendStatus::Sent);
        assert!(kept.holds_stream());
        let fresh = Outbound::new(offer("permessage-deflate; server_no_context_takeover").unwrap(), &config);
        let mut cache = FrameCache::default();
        let (mut a, mut b) = (Bytes::new(), Bytes::new());
        fresh.send(frame::opcode::TEXT, b"hello hello", &mut cache, |f| {
            a = f.clone();
            SendStatus::Sent
        });
        fresh.send(frame::opcode::TEXT, b"hello hello", &mut cache, |f| {
            b = f.clone();
            SendStatus::Sent
        });
        assert!(!fresh.holds_stream());
        assert_eq!(cache.len(), 1, "compressed once");
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same bytes");
    }

    #[test]
    fn every_level_round_trips_and_higher_levels_compress_more() {
        let msg: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{},\"v\":{}}},", i % 500, i % 7).into_bytes())
            .collect();
        let sizes: Vec<usize> = [0u8, 1, 9]
            .iter()
            .map(|&level| {
                let mut c = Compressor::new((15, 8, level));
                let mut out = Vec::new();
                c.compress(&msg, &mut out);
                let mut inflater = Inflater::new(15);
                let mut back = Vec::new();
                inflater.inflate(&out, 1 << 24, &mut back).unwrap();
                assert_eq!(back, msg, "level {level}");
                out.len()
            })
            .collect();
        assert!(sizes[0] > msg.len() && sizes[1] < sizes[0] && sizes[2] < sizes[1], "{sizes:?}");
    }

    #[test]
    fn an_inflate_bomb_stops_at_the_cap() {
        let mut c = Compressor::new((15, 8, DEFAULT_LEVEL));
        let mut bomb = Vec::new();
        c.compress(&vec![0u8; 50 << 20], &mut bomb);
        assert!(bomb.len() < 100 << 10);
        let mut inbound = Inbound::new(offer("permessage-deflate").unwrap());
        assert_eq!(inbound.inflate(&bomb, 1 << 20), Err(InflateError::TooBig));
        let mut out = Vec::new();
        let mut inflater = Inflater::new(15);
        assert_eq!(inflater.inflate(&bomb, 1 << 20, &mut out), Err(InflateError::TooBig));
        assert!(out.capacity() <= (1 << 20) + 1, "capacity {}", out.capacity());
    }

    #[test]
    fn garbage_is_invalid() {
        let mut inbound = Inbound::new(offer("permessage-deflate").unwrap());
        assert_eq!(inbound.inflate(&[0xff; 32], 1024), Err(InflateError::Invalid));
    }
}
