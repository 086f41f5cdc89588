//! The HTTP/1.1 upgrade request (RFC 6455 §4.2.1): parsing its head, validating it, and the
//! responses we write, all without an HTTP stack. Pure functions: the caller does the I/O.
//!
//! The checks run in a fixed order, so a request with several faults always gets the same
//! status (the first that applies): 405 (with `Allow: GET`), 505, 426 (with
//! `Upgrade: websocket`), 400 for `Connection`, 426 (with `Sec-WebSocket-Version: 13`), 400 for
//! the key; 400 for a malformed head and 431 for too many or too large headers.

use std::mem::MaybeUninit;

use data_encoding::BASE64;
use sha1::{Digest, Sha1};

/// The parsed request head, owning its data (the read buffer is freed right after).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub method: String,
    /// Path without the query, e.g. "/ws".
    pub path: String,
    /// Raw query after '?', "" when none.
    pub query: String,
    /// HTTP minor version (1 for HTTP/1.1).
    pub version: u8,
    /// Headers in arrival order; names lower-cased; values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Head {
    /// First value of a header (name lower-case), as str when valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        let (_, value) = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name))?;
        std::str::from_utf8(value).ok()
    }

    /// Every value of a header (name lower-case), in arrival order.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Whether any value of the header holds `token` in its comma-separated list (ASCII
    /// case-insensitive). A value that is not visible ASCII is skipped whole: a token list is
    /// visible ASCII, so such a value is malformed and counts as absent.
    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .filter_map(visible_ascii)
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// The value as a str when it only holds visible ASCII, spaces and tabs (what
/// `http::HeaderValue::to_str` accepts).
fn visible_ascii(value: &[u8]) -> Option<&str> {
    if value.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Why an upgrade request is refused: status, constant reason, at most one extra header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub message: &'static str,
    pub header: Option<(&'static str, &'static str)>,
}

impl Rejection {
    const fn new(status: u16, message: &'static str) -> Self {
        Rejection { status, message, header: None }
    }

    const fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The whole HTTP response for this rejection.
    pub fn response(&self) -> Vec<u8> {
        error_response(self.status, self.message, self.header)
    }
}

const MALFORMED: Rejection = Rejection::new(400, "Malformed HTTP request");
const TOO_MANY_HEADERS: Rejection = Rejection::new(431, "Too many headers");
const TOO_LARGE: Rejection = Rejection::new(431, "Request header too large");

/// Result of parsing what has arrived so far.
#[derive(Debug)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A complete head of `len` bytes (bytes after it belong to the WebSocket stream).
    Complete(Head, usize),
}

/// Header slots kept on the stack; a larger `max_headers` takes them from the heap.
const STACK_HEADER_SLOTS: usize = 128;

/// Parses the request head at the front of `buf`. Errors: malformed -> 400; more than
/// `max_headers` headers -> 431 "Too many headers"; no complete head within the first
/// `max_bytes` -> 431 "Request header too large".
///
/// Only the first `max_bytes` are looked at, so the answer does not depend on how the bytes
/// were split into reads: what lies past the limit (more headers, a malformed line) is never
/// seen, whether it came in the same read or a later one.
pub fn parse(buf: &[u8], max_headers: usize, max_bytes: usize) -> Result<Parsed, Rejection> {
    let buf = &buf[..buf.len().min(max_bytes)];
    if max_headers <= STACK_HEADER_SLOTS {
        let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADER_SLOTS];
        parse_into(buf, &mut slots[..max_headers], max_bytes)
    } else {
        let mut slots = Vec::with_capacity(max_headers);
        slots.resize_with(max_headers, MaybeUninit::uninit);
        parse_into(buf, &mut slots, max_bytes)
    }
}

fn parse_into<'b>(
    buf: &'b [u8],
    slots: &mut [MaybeUninit<httparse::Header<'b>>],
    max_bytes: usize,
) -> Result<Parsed, Rejection> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => return Err(TOO_LARGE),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(TOO_MANY_HEADERS),
        Err(_) => return Err(MALFORMED),
    };
    let (path, query) = split_target(req.path.unwrap_or(""))?;
    let head = Head {
        method: req.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        version: req.version.unwrap_or(0),
        headers: req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect(),
    };
    Ok(Parsed::Complete(head, len))
}

/// Splits a request target into path and raw query as an HTTP URI parser does: a
/// fragment is dropped, the absolute form (`http://host/ws?q`) gives its path ("/" when empty),
/// and a target that is not ASCII is malformed.
fn split_target(target: &str) -> Result<(&str, &str), Rejection> {
    if !target.is_ascii() {
        return Err(MALFORMED);
    }
    let target = target.split_once('#').map_or(target, |(before, _)| before);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path.starts_with('/') {
        return Ok((path, query));
    }
    if let Some((scheme, rest)) = path.split_once("://") {
        let mut chars = scheme.bytes();
        let valid_scheme = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
            && chars.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
        if valid_scheme {
            let path = rest.find('/').map_or("/", |i| &rest[i..]);
            return Ok((path, query));
        }
    }
    // Asterisk or authority form: kept as is, so no route matches it.
    Ok((path, query))
}

/// Length of what `key` decodes to when it is padded standard base64, else None.
fn base64_decoded_len(key: &str) -> Option<usize> {
    let bytes = key.as_bytes();
    if !bytes.len().is_multiple_of(4) || bytes.is_empty() {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let valid =
        bytes[..bytes.len() - pad].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    valid.then(|| bytes.len() / 4 * 3 - pad)
}

/// RFC 6455 §4.2.1 checks on a request to a WebSocket path; returns the `Sec-WebSocket-Key` or
/// why the request is refused. Where a header repeats, its first value counts (key, version);
/// `Upgrade` and `Connection` tokens are looked for in every value.
pub fn validate(head: &Head) -> Result<String, Rejection> {
    if head.method != "GET" {
        return Err(Rejection::new(405, "WebSocket upgrade requires GET").with_header("allow", "GET"));
    }
    if head.version != 1 {
        return Err(Rejection::new(505, "WebSocket upgrade requires HTTP/1.1"));
    }
    if !head.has_token("upgrade", "websocket") {
        return Err(
            Rejection::new(426, "This path only speaks WebSocket").with_header("upgrade", "websocket")
        );
    }
    if !head.has_token("connection", "upgrade") {
        return Err(Rejection::new(400, "Connection header must contain Upgrade"));
    }
    if head.all("sec-websocket-version").next() != Some(b"13".as_slice()) {
        return Err(Rejection::new(426, "Sec-WebSocket-Version must be 13")
            .with_header("sec-websocket-version", "13"));
    }
    head.all("sec-websocket-key")
        .next()
        .and_then(visible_ascii)
        .map(str::trim)
        .filter(|k| base64_decoded_len(k) == Some(16))
        .map(str::to_owned)
        .ok_or(Rejection::new(400, "Sec-WebSocket-Key must be base64 of 16 bytes"))
}

/// Most subprotocols considered from one request.
const MAX_OFFERED_PROTOCOLS: usize = 32;
/// Longest subprotocol name considered.
const MAX_PROTOCOL_LEN: usize = 128;

/// Subprotocols the client offers, in its order: comma-separated RFC 7230 tokens over every
/// `Sec-WebSocket-Protocol` value. One linear pass; empty items, items longer than 128 bytes
/// and items with non-token characters are ignored, values that are not visible ASCII are
/// skipped whole, and at most 32 are kept.
pub fn offered_protocols(head: &Head) -> Vec<String> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    head.all("sec-websocket-protocol")
        .filter_map(visible_ascii)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() <= MAX_PROTOCOL_LEN && p.bytes().all(is_tchar))
        .take(MAX_OFFERED_PROTOCOLS)
        .map(str::to_owned)
        .collect()
}

/// The RFC 6455 GUID appended to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Length of base64 of a SHA-1 digest (20 bytes).
const ACCEPT_LEN: usize = 28;

/// base64(sha1(key + GUID)) into a stack buffer.
fn accept_bytes(key: &str) -> [u8; ACCEPT_LEN] {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID);
    let digest = sha.finalize();
    let mut out = [0u8; ACCEPT_LEN];
    BASE64.encode_mut(&digest, &mut out);
    out
}

/// Sec-WebSocket-Accept for a key: base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
#[cfg(test)]
pub fn accept_key(key: &str) -> String {
    accept_bytes(key).iter().map(|&b| char::from(b)).collect()
}

/// Whether `value` may be written as a header value: no control characters but tab (the rule
/// of `http::HeaderValue::from_str`), so it can never end the line.
fn valid_header_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Whether `name` is an RFC 7230 token, as a header name must be.
fn valid_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Headers of the 101 that the handshake itself needs: JS may not add them a second time.
const OWN_101_HEADERS: [&str; 5] =
    ["upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions"];

/// Whether `line` (from JS) may go into our 101 as it is: `Name: value` with a token name that
/// is none of the handshake's own, and no control character (a CR or LF would start a header
/// or the body of JS's choosing).
pub fn valid_extra_header(line: &str) -> bool {
    let Some((name, value)) = line.split_once(':') else { return false };
    valid_header_name(name)
        && valid_header_value(value)
        && !OWN_101_HEADERS.iter().any(|own| own.eq_ignore_ascii_case(name))
}

/// The whole 101 response: HTTP/1.1 101 Switching Protocols, Upgrade: websocket,
/// Connection: Upgrade, Sec-WebSocket-Accept, Sec-WebSocket-Protocol and
/// Sec-WebSocket-Extensions when Some, then the `extra` header lines (`onUpgrade`'s `headers`).
/// A protocol or extra line that could break the head (it comes from JS, which checks it too)
/// is left out.
pub fn switching_protocols(
    key: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra: &[String],
) -> Vec<u8> {
    const START: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    const PROTOCOL: &[u8] = b"\r\nSec-WebSocket-Protocol: ";
    const EXTENSIONS: &[u8] = b"\r\nSec-WebSocket-Extensions: ";
    let protocol = protocol.filter(|p| valid_header_value(p));
    let extensions = extensions.filter(|e| valid_header_value(e));
    let extra = extra.iter().filter(|line| valid_extra_header(line));
    let size = protocol.map_or(0, |p| PROTOCOL.len() + p.len())
        + extensions.map_or(0, |e| EXTENSIONS.len() + e.len())
        + extra.clone().map(|line| line.len() + 2).sum::<usize>();
    let mut out = Vec::with_capacity(START.len() + ACCEPT_LEN + size + 4);
    out.extend_from_slice(START);
    out.extend_from_slice(&accept_bytes(key));
    if let Some(p) = protocol {
        out.extend_from_slice(PROTOCOL);
        out.extend_from_slice(p.as_bytes());
    }
    if let Some(e) = extensions {
        out.extend_from_slice(EXTENSIONS);
        out.extend_from_slice(e.as_bytes());
    }
    for line in extra {
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// The standard reason phrase of a status code.
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        // `n % 10` is below 10, so the cast keeps it whole.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A complete plain-text error response: status line with the standard reason phrase,
/// content-type text/plain; charset=utf-8, connection: close, content-length, the optional
/// extra header, body = message + "\n". `message` may come from user JS (onUpgrade): control
/// characters (CR, LF and the rest) are dropped, so it stays one body line. A status outside
/// 100-999 is written as 500, and an extra header that is not a valid name and value is left
/// out, so nothing can break the head.
/// A whole HTTP response with a body of its own type (the metrics and health endpoints).
pub fn body_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = reason_phrase(status);
    let mut out = Vec::with_capacity(128 + content_type.len() + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\ncache-control: no-store\r\nconnection: close\r\ncontent-length: ");
    push_decimal(&mut out, body.len());
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
    out
}

/// The status of a response `error_response` or `body_response` wrote.
pub fn status_of(response: &[u8]) -> u16 {
    response.get(9..12).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.parse().ok()).unwrap_or(500)
}

pub fn error_response(status: u16, message: &str, header: Option<(&str, &str)>) -> Vec<u8> {
    let status = if (100..=999).contains(&status) { status } else { 500 };
    let header = header.filter(|(n, v)| valid_header_name(n) && valid_header_value(v));
    let body_len = message.chars().filter(|c| !c.is_control()).map(char::len_utf8).sum::<usize>() + 1;
    let reason = reason_phrase(status);
    let extra = header.map_or(0, |(n, v)| n.len() + v.len() + 4);
    let mut out = Vec::with_capacity(128 + reason.len() + extra + body_len);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(&mut out, usize::from(status));
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(
        b"\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: ",
    );
    push_decimal(&mut out, body_len);
    out.extend_from_slice(b"\r\n");
    if let Some((name, value)) = header {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut utf8 = [0u8; 4];
    for c in message.chars().filter(|c| !c.is_control()) {
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What Chrome sends to open a WebSocket (with the RFC sample key).
    const CHROME: &[u8] = b"GET /ws?clientId=bob&room=a HTTP/1.1\r\n\
Host: localhost:3000\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://localhost:3000\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Cookie: session=abc123; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, v2.json\r\n\r\n";

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    /// A valid request for `target` with header overrides (None removes one) and a request line.
    fn request(line: &str, overrides: &[(&str, Option<&str>)]) -> String {
        let mut headers: Vec<(&str, Option<&str>)> = vec![
            ("Host", Some("127.0.0.1")),
            ("Upgrade", Some("websocket")),
            ("Connection", Some("Upgrade")),
            ("Sec-WebSocket-Key", Some(KEY)),
            ("Sec-WebSocket-Version", Some("13")),
        ];
        for (name, value) in overrides {
            match headers.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = *value,
                None => headers.push((name, *value)),
            }
        }
        let mut out = format!("{line}\r\n");
        for (name, value) in headers {
            if let Some(value) = value {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        out.push_str("\r\n");
        out
    }

    fn head(bytes: &[u8]) -> Head {
        match parse(bytes, 100, 8192) {
            Ok(Parsed::Complete(head, len)) => {
                assert_eq!(len, bytes.len());
                head
            }
            other => panic!("not a complete head: {other:?}"),
        }
    }

    fn check(line: &str, overrides: &[(&str, Option<&str>)]) -> Result<String, Rejection> {
        validate(&head(request(line, overrides).as_bytes()))
    }

    fn status(line: &str, overrides: &[(&str, Option<&str>)]) -> u16 {
        check(line, overrides).map_or_else(|r| r.status, |_| 101)
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8 response")
    }

    #[test]
    fn chrome_request_parses_and_validates() {
        let h = head(CHROME);
        assert_eq!(h.method, "GET");
        assert_eq!(h.path, "/ws");
        assert_eq!(h.query, "clientId=bob&room=a");
        assert_eq!(h.version, 1);
        assert_eq!(h.headers.len(), 14);
        assert_eq!(h.headers[0], ("host".to_string(), b"localhost:3000".to_vec()));
        assert_eq!(h.headers[13].0, "sec-websocket-protocol");
        assert!(h.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
        assert_eq!(h.header("origin"), Some("http://localhost:3000"));
        assert_eq!(h.header("Cookie"), Some("session=abc123; theme=dark"));
        assert_eq!(h.header("x-missing"), None);
        assert_eq!(validate(&h).as_deref(), Ok(KEY));
        assert_eq!(offered_protocols(&h), ["chat", "v2.json"]);
    }

    #[test]
    fn partial_at_every_offset_until_complete() {
        for cut in 0..CHROME.len() {
            assert!(matches!(parse(&CHROME[..cut], 100, 8192), Ok(Parsed::Partial)), "cut at {cut}");
        }
        // Bytes after the head (a first frame) are not part of it.
        let mut with_frame = CHROME.to_vec();
        with_frame.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
        for end in CHROME.len()..=with_frame.len() {
            match parse(&with_frame[..end], 100, 8192) {
                Ok(Parsed::Complete(h, len)) => {
                    assert_eq!(len, CHROME.len());
                    assert_eq!(h, head(CHROME));
                }
                other => panic!("end {end}: {other:?}"),
            }
        }
    }

    #[test]
    fn accept_key_and_switching_protocols() {
        assert_eq!(BASE64.encode_len(20), ACCEPT_LEN);
        assert_eq!(accept_key(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            text(switching_protocols(KEY, None, None, &[])),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(
            text(switching_protocols(KEY, Some("chat"), None, &[])),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        assert_eq!(
            text(switching_protocols(KEY, None, Some("permessage-deflate"), &[])),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        );
    }

    #[test]
    fn protocol_from_js_cannot_inject_headers() {
        let res = text(switching_protocols(KEY, Some("chat\r\nSet-Cookie: x=1"), None, &[]));
        assert!(!res.contains("Set-Cookie"));
        assert!(!res.contains("Sec-WebSocket-Protocol"));
        assert!(res.ends_with("xOo=\r\n\r\n"));
    }

    #[test]
    fn extra_headers_follow_the_handshake_and_bad_ones_are_left_out() {
        let extra = [
            "Set-Cookie: a=1".to_string(),
            "X-Empty:".to_string(),
            "X-Split: a\r\nSet-Cookie: evil=1".to_string(),
            "Bad Name: x".to_string(),
            "no colon".to_string(),
            "connection: close".to_string(),
            "Sec-WebSocket-Accept: forged".to_string(),
            "X-Nul: a\0b".to_string(),
        ];
        let res = text(switching_protocols(KEY, Some("chat"), None, &extra));
        assert!(
            res.ends_with("Sec-WebSocket-Protocol: chat\r\nSet-Cookie: a=1\r\nX-Empty:\r\n\r\n"),
            "{res}"
        );
        assert!(!res.contains("evil") && !res.contains("forged") && !res.contains("close"));
        assert!(valid_extra_header("X-Tab: a\tb"));
        assert!(!valid_extra_header(": value"));
    }

    #[test]
    fn valid_variants() {
        let line = "GET /ws HTTP/1.1";
        assert_eq!(status(line, &[]), 101);
        // Token lists, any case, in any of several values.
        assert_eq!(status(line, &[("Upgrade", Some("foo, WebSocket"))]), 101);
        assert_eq!(status(line, &[("Connection", Some("keep-alive, UPGRADE"))]), 101);
        let doubled =
            "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        assert_eq!(validate(&head(doubled.as_bytes())).as_deref(), Ok(KEY));
        // Whitespace around values is not part of them.
        assert_eq!(
            check(line, &[("Sec-WebSocket-Key", Some("  dGhlIHNhbXBsZSBub25jZQ==  "))]).as_deref(),
            Ok(KEY)
        );
        assert_eq!(status(line, &[("Sec-WebSocket-Version", Some("13 "))]), 101);
        // No Host check: nothing here depends on the host, so a request without one is served.
        assert_eq!(status(line, &[("Host", None)]), 101);
    }

    #[test]
    fn rejections_with_their_headers() {
        let line = "GET /ws HTTP/1.1";
        let method = check("POST /ws HTTP/1.1", &[]).unwrap_err();
        assert_eq!((method.status, method.header), (405, Some(("allow", "GET"))));
        assert_eq!(status("get /ws HTTP/1.1", &[]), 405);
        assert_eq!(status("GET /ws HTTP/1.0", &[]), 505);
        let plain = validate(&head(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")).unwrap_err();
        assert_eq!((plain.status, plain.header), (426, Some(("upgrade", "websocket"))));
        assert_eq!(status(line, &[("Upgrade", Some("h2c"))]), 426);
        assert_eq!(status(line, &[("Upgrade", Some("websocket2"))]), 426);
        assert_eq!(status(line, &[("Connection", Some("keep-alive"))]), 400);
        assert_eq!(status(line, &[("Connection", None)]), 400);
        for v in [None, Some("8"), Some("12"), Some("14"), Some("abc"), Some("13, 8")] {
            let r = check(line, &[("Sec-WebSocket-Version", v)]).unwrap_err();
            assert_eq!((r.status, r.header), (426, Some(("sec-websocket-version", "13"))), "{v:?}");
        }
        for key in [
            None,
            Some("not base64!"),
            Some("c2hvcnQ="),
            Some("dGhpcyBrZXkgaXMgd2F5IHRvbyBsb25nIGZvciBhIGtleQ=="),
        ] {
            let r = check(line, &[("Sec-WebSocket-Key", key)]).unwrap_err();
            assert_eq!((r.status, r.header), (400, None), "{key:?}");
        }
        // Checks come in this order: method, version, Upgrade, Connection, version, key.
        let bare = "POST /ws HTTP/1.0\r\n\r\n";
        assert_eq!(validate(&head(bare.as_bytes())).unwrap_err().status, 405);
        assert_eq!(status("GET /ws HTTP/1.0", &[("Upgrade", None)]), 505);
        assert_eq!(status(line, &[("Upgrade", None), ("Connection", None)]), 426);
        assert_eq!(status(line, &[("Connection", None), ("Sec-WebSocket-Version", None)]), 400);
        assert_eq!(status(line, &[("Sec-WebSocket-Version", None), ("Sec-WebSocket-Key", None)]), 426);
    }

    #[test]
    fn repeated_key_and_version_use_the_first_value() {
        let base = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
        let first_bad = format!(
            "{base}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        assert_eq!(validate(&head(first_bad.as_bytes())).unwrap_err().status, 426);
        let first_good = format!(
            "{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        assert_eq!(validate(&head(first_good.as_bytes())).as_deref(), Ok(KEY));
        let keys = format!(
            "{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bad\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
        );
        assert_eq!(validate(&head(keys.as_bytes())).unwrap_err().status, 400);
    }

    #[test]
    fn values_that_are_not_visible_ascii_do_not_count() {
        let mut req = b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade, \xff\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_vec();
        let h = head(&req);
        assert_eq!(h.header("connection"), None);
        assert_eq!(h.all("connection").next(), Some(b"Upgrade, \xff".as_slice()));
        assert_eq!(validate(&h).unwrap_err().status, 400);
        req = request("GET /ws HTTP/1.1", &[("Sec-WebSocket-Protocol", Some("chat, é"))]).into_bytes();
        assert!(offered_protocols(&head(&req)).is_empty());
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET /ws HTTP/2.0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nNo-Colon\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET /w\xffs HTTP/1.1\r\n\r\n",
            "GET /café HTTP/1.1\r\n\r\n".as_bytes(),
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let r = parse(bad, 100, 8192).unwrap_err();
            assert_eq!(r, MALFORMED, "{bad:?}");
            assert!(text(r.response()).starts_with("HTTP/1.1 400 Bad Request\r\n"));
        }
    }

    #[test]
    fn request_targets() {
        let target = |t: &str| {
            let h = head(format!("GET {t} HTTP/1.1\r\n\r\n").as_bytes());
            (h.path, h.query)
        };
        let pair = |p: &str, q: &str| (p.to_string(), q.to_string());
        assert_eq!(target("/ws"), pair("/ws", ""));
        assert_eq!(target("/ws?"), pair("/ws", ""));
        assert_eq!(target("/ws?a=1&b=%20"), pair("/ws", "a=1&b=%20"));
        assert_eq!(target("/ws?a=1?b"), pair("/ws", "a=1?b"));
        assert_eq!(target("/ws#frag"), pair("/ws", ""));
        assert_eq!(target("/ws?a=1#frag"), pair("/ws", "a=1"));
        assert_eq!(target("http://example.com:80/ws?a=1"), pair("/ws", "a=1"));
        assert_eq!(target("ws://example.com"), pair("/", ""));
        assert_eq!(target("*"), pair("*", ""));
        assert_eq!(target("example.com:443"), pair("example.com:443", ""));
        // Empty lines before the request line are skipped.
        assert_eq!(head(b"\r\n\r\nGET /ws HTTP/1.1\r\n\r\n").path, "/ws");
    }

    #[test]
    fn too_many_headers() {
        let with = |n: usize| {
            let many: String = (0..n).map(|i| format!("X-H{i}: v\r\n")).collect();
            format!("GET /ws HTTP/1.1\r\n{many}\r\n")
        };
        assert!(matches!(parse(with(10).as_bytes(), 10, 8192), Ok(Parsed::Complete(_, _))));
        assert_eq!(parse(with(11).as_bytes(), 10, 8192).unwrap_err(), TOO_MANY_HEADERS);
        // Known before the head is complete.
        let partial = with(11);
        assert_eq!(parse(&partial.as_bytes()[..partial.len() - 2], 10, 8192).unwrap_err(), TOO_MANY_HEADERS);
        assert_eq!(parse(with(150).as_bytes(), 100, 8192).unwrap_err(), TOO_MANY_HEADERS);
        assert_eq!(parse(b"GET / HTTP/1.1\r\nA: b\r\n\r\n", 0, 8192).unwrap_err(), TOO_MANY_HEADERS);
        // Beyond the stack slots, the heap ones.
        match parse(with(200).as_bytes(), 200, 1 << 20) {
            Ok(Parsed::Complete(h, _)) => assert_eq!(h.headers.len(), 200),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(with(201).as_bytes(), 200, 1 << 20).unwrap_err(), TOO_MANY_HEADERS);
        let res = text(TOO_MANY_HEADERS.response());
        assert!(res.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
    }

    #[test]
    fn too_large() {
        let big = request("GET /ws HTTP/1.1", &[("X-Big", Some(&"a".repeat(64 * 1024)))]);
        let big = big.as_bytes();
        // Still partial below the limit; refused once the limit is reached.
        assert!(matches!(parse(&big[..8191], 100, 8192), Ok(Parsed::Partial)));
        assert_eq!(parse(&big[..8192], 100, 8192).unwrap_err(), TOO_LARGE);
        assert_eq!(parse(big, 100, 8192).unwrap_err(), TOO_LARGE);
        // A complete head exactly at the limit is fine, one byte more is not.
        let req = request("GET /ws HTTP/1.1", &[]);
        assert!(matches!(parse(req.as_bytes(), 100, req.len()), Ok(Parsed::Complete(_, _))));
        assert_eq!(parse(req.as_bytes(), 100, req.len() - 1).unwrap_err(), TOO_LARGE);
        // Bytes after a complete head do not count.
        let mut with_frames = req.clone().into_bytes();
        with_frames.extend_from_slice(&[0u8; 100]);
        assert!(matches!(parse(&with_frames, 100, req.len()), Ok(Parsed::Complete(_, n)) if n == req.len()));
    }

    #[test]
    fn error_response_layout() {
        let res = text(error_response(404, "No WebSocket handler on this path", None));
        assert_eq!(
            res,
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
             content-length: 34\r\n\r\nNo WebSocket handler on this path\n"
        );
        let res = text(
            Rejection::new(405, "WebSocket upgrade requires GET").with_header("allow", "GET").response(),
        );
        assert!(res.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(res.contains("\r\nallow: GET\r\n\r\n"));
        let (_, body) = res.split_once("\r\n\r\n").unwrap();
        assert_eq!(body, "WebSocket upgrade requires GET\n");
        let multibyte = text(error_response(403, "nein – ü", None));
        let (head, body) = multibyte.split_once("\r\n\r\n").unwrap();
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        assert!(text(error_response(499, "x", None)).starts_with("HTTP/1.1 499 Client Error\r\n"));
        assert!(text(error_response(42, "x", None)).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
        assert!(text(error_response(1000, "x", None)).starts_with("HTTP/1.1 500 "));
        let mut digits = Vec::new();
        for n in [0, 7, 10, 1234, usize::MAX] {
            digits.clear();
            push_decimal(&mut digits, n);
            assert_eq!(digits, n.to_string().into_bytes());
        }
    }

    #[test]
    fn error_response_cannot_inject_headers() {
        let res = text(error_response(401, "no\r\nSet-Cookie: x=1\r\n\r\n<html>\x00\x1b[31m\u{85}", None));
        assert!(res.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        let (head, body) = res.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("Set-Cookie"));
        assert_eq!(body, "noSet-Cookie: x=1<html>[31m\n");
        assert!(head.ends_with(&format!("content-length: {}", body.len())));
        assert_eq!(head.lines().count(), 4);
        // An extra header that could break the head is left out.
        for header in [("X-A", "b\r\nSet-Cookie: x=1"), ("Bad Name", "v"), ("", "v"), ("X\r\nY", "v")] {
            let res = text(error_response(400, "m", Some(header)));
            let (head, _) = res.split_once("\r\n\r\n").unwrap();
            assert_eq!(head.lines().count(), 4, "{header:?}");
        }
    }

    #[test]
    fn offered_protocol_rules() {
        let line = "GET /ws HTTP/1.1";
        let offered = |v: &str| {
            offered_protocols(&head(request(line, &[("Sec-WebSocket-Protocol", Some(v))]).as_bytes()))
        };
        assert_eq!(offered(" a ,b,, c;d , e/f,g "), ["a", "b", "g"]);
        let long = "p".repeat(MAX_PROTOCOL_LEN + 1);
        assert_eq!(offered(&format!("{long},{}", &long[1..])), [&long[1..]]);
        let many: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        assert_eq!(offered(&many.join(",")), many[..MAX_OFFERED_PROTOCOLS]);
        let two = "GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: a, b\r\nSec-WebSocket-Protocol: c\r\n\r\n";
        assert_eq!(offered_protocols(&head(two.as_bytes())), ["a", "b", "c"]);
        assert!(offered_protocols(&head(b"GET /ws HTTP/1.1\r\n\r\n")).is_empty());
    }

    #[test]
    fn key_length() {
        assert_eq!(base64_decoded_len(KEY), Some(16));
        assert_eq!(base64_decoded_len("abc"), None);
        assert_eq!(base64_decoded_len("a$cd"), None);
        assert_eq!(base64_decoded_len("===="), None);
        assert_eq!(base64_decoded_len(""), None);
        assert_eq!(base64_decoded_len("AAAAAAAAAAAAAAAAAAAAAA=="), Some(16));
        assert_eq!(base64_decoded_len("AAAAAAAAAAAAAAAAAAAAAAA="), Some(17));
    }

    #[test]
    fn what_lies_past_max_bytes_is_never_seen() {
        // Found by `props::any_split_of_a_request_parses_the_same`: with max_headers 3 and
        // max_bytes 16 this head was "Too many headers" in one read and "too large" when split.
        let mut req = b"GET % HTTP/1.1\r\n".to_vec();
        for _ in 0..8 {
            req.extend_from_slice(b"Host: \r\n");
        }
        req.extend_from_slice(b"\r\n");
        assert_eq!(parse(&req, 3, 16).err(), Some(TOO_LARGE));
        for end in 1..16 {
            assert!(matches!(parse(&req[..end], 3, 16), Ok(Parsed::Partial)), "{end}");
        }
        // A malformed line past the limit is not seen either; within it, it is.
        let bad = b"GET /ws HTTP/1.1\r\nHost: a\r\n\x01\r\n\r\n";
        assert_eq!(parse(bad, 10, 20).err(), Some(TOO_LARGE));
        assert_eq!(parse(bad, 10, 100).err(), Some(MALFORMED));
        // A head that ends exactly at the limit is complete.
        let exact = b"GET /ws HTTP/1.1\r\n\r\nrest";
        assert!(matches!(parse(exact, 10, 20), Ok(Parsed::Complete(_, 20))));
        assert_eq!(parse(exact, 10, 19).err(), Some(TOO_LARGE));
    }

    /// Property tests: the request head parses the same whatever reads it arrives in.
    mod props {
        use proptest::prelude::*;

        use super::*;

        /// `parse`'s answer, comparable.
        #[derive(Debug, PartialEq)]
        enum Outcome {
            Partial,
            Complete(Head, usize),
            Rejected(Rejection),
        }

        /// Parses the request as `read_head` does: after each read, until it is not partial.
        fn read_in(bytes: &[u8], sizes: &[usize], max_headers: usize, max_bytes: usize) -> Outcome {
            let mut buf = Vec::new();
            let mut at = 0;
            for &size in sizes {
                buf.extend_from_slice(&bytes[at..at + size]);
                at += size;
                match parse(&buf, max_headers, max_bytes) {
                    Ok(Parsed::Partial) => {}
                    Ok(Parsed::Complete(head, len)) => {
                        assert!(len <= buf.len() && len <= max_bytes);
                        return Outcome::Complete(head, len);
                    }
                    Err(rejection) => return Outcome::Rejected(rejection),
                }
            }
            Outcome::Partial
        }

        fn splits(total: usize, cuts: &[usize]) -> Vec<usize> {
            let at: std::collections::BTreeSet<usize> =
                cuts.iter().map(|&c| c % (total + 1)).chain([total]).collect();
            let mut prev = 0;
            at.into_iter().map(|c| c - std::mem::replace(&mut prev, c)).collect()
        }

        /// Requests near the valid ones: known and odd methods, targets, versions, header
        /// names and values, either line ending, then bytes of the WebSocket stream.
        fn request() -> impl Strategy<Value = Vec<u8>> {
            let method = prop_oneof![Just("GET"), Just("POST"), Just("get"), Just("G T")];
            let target = "[/a-z0-9?=&#%:.*]{0,24}";
            let version = prop_oneof![Just("HTTP/1.1"), Just("HTTP/1.0"), Just("HTTP/2"), Just("")];
            let name = prop_oneof![
                Just("Host"),
                Just("Upgrade"),
                Just("Connection"),
                Just("Sec-WebSocket-Key"),
                Just("Sec-WebSocket-Version"),
                Just("Origin"),
                Just("X-A"),
                Just("Bad Name"),
            ];
            let header = (name, "[ -~]{0,24}");
            let eol = prop_oneof![3 => Just("\r\n"), 1 => Just("\n")];
            (
                method,
                target,
                version,
                prop::collection::vec(header, 0..10),
                eol,
                prop::collection::vec(any::<u8>(), 0..16),
            )
                .prop_map(|(method, target, version, headers, eol, tail)| {
                    let mut out = format!("{method} {target} {version}{eol}");
                    for (name, value) in headers {
                        out.push_str(&format!("{name}: {value}{eol}"));
                    }
                    out.push_str(eol);
                    let mut out = out.into_bytes();
                    out.extend(tail);
                    out
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn any_split_of_a_request_parses_the_same(
                bytes in prop_oneof![3 => request(), 1 => prop::collection::vec(any::<u8>(), 0..300)],
                max_headers in 1usize..12,
                max_bytes in 16usize..400,
                cuts in prop::collection::vec(any::<usize>(), 0..24),
            ) {
                let whole = read_in(&bytes, &[bytes.len()], max_headers, max_bytes);
                prop_assert_eq!(&read_in(&bytes, &splits(bytes.len(), &cuts), max_headers, max_bytes), &whole);
                prop_assert_eq!(&read_in(&bytes, &vec![1; bytes.len()], max_headers, max_bytes), &whole);
                if let Outcome::Complete(head, _) = &whole {
                    // Checking the head never panics either.
                    let _ = validate(head);
                    let _ = offered_protocols(head);
                }
            }
        }
    }
}
