//! The HTTP/1.1 upgrade request (RFC 6455 §4.2.1): parsing its head, validating it, and the
//! responses we write, all without an HTTP stack.

use data_encoding::BASE64;
use sha1::{Digest, Sha1};

/// The parsed request head, owning its data (the read buffer is freed right after).
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
        self.all(name).next().and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of a header (name lower-case).
    pub fn all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + 'a {
        let name = name.to_string();
        self.headers.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_slice())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.all(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }
}

/// Why an upgrade request is refused: the status, a constant reason, and at most one header.
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

/// Result of parsing what has arrived so far.
pub enum Parsed {
    /// Need more bytes.
    Partial,
    /// A complete head of this many bytes (bytes after it belong to the WebSocket stream).
    Complete(Head, usize),
}

/// Most headers `parse` can take, whatever `max_headers` says.
const HEADER_SLOTS: usize = 128;

/// Parses the request head at the front of `buf`. Malformed: 400; more than `max_headers`
/// headers, or still incomplete at `max_bytes`: 431.
pub fn parse(buf: &[u8], max_headers: usize, max_bytes: usize) -> Result<Parsed, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; HEADER_SLOTS];
    let limit = max_headers.min(HEADER_SLOTS);
    let mut req = httparse::Request::new(&mut slots[..limit]);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(Rejection::new(431, "Request header too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(Rejection::new(431, "Too many headers")),
        Err(_) => return Err(Rejection::new(400, "Malformed HTTP request")),
    };
    if len > max_bytes {
        return Err(Rejection::new(431, "Request header too large"));
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head = Head {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        version: req.version.unwrap_or(0),
        headers: req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect(),
    };
    Ok(Parsed::Complete(head, len))
}

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

/// Checks a request to a WebSocket path; returns the `Sec-WebSocket-Key` or why it is refused.
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
    head.header("sec-websocket-key")
        .map(str::trim)
        .filter(|k| base64_decoded_len(k) == Some(16))
        .map(str::to_string)
        .ok_or(Rejection::new(400, "Sec-WebSocket-Key must be base64 of 16 bytes"))
}

/// Most subprotocols considered from one request.
const MAX_OFFERED_PROTOCOLS: usize = 32;

/// Subprotocols the client offers, in its order: comma-separated RFC 7230 tokens. One linear
/// pass; empty items and items with non-token characters are ignored.
pub fn offered_protocols(head: &Head) -> Vec<String> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    head.all("sec-websocket-protocol")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() <= 128 && p.chars().all(is_tchar))
        .take(MAX_OFFERED_PROTOCOLS)
        .map(str::to_string)
        .collect()
}

/// `Sec-WebSocket-Accept` for a key: base64(sha1(key + the RFC 6455 GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(&sha.finalize())
}

/// The whole 101 response.
pub fn switching_protocols(key: &str, protocol: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept_key(key).as_bytes());
    if let Some(p) = protocol {
        out.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
    }
    out.extend_from_slice(b"\r\n\r\n");
    out
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// A complete plain-text error response that closes the connection. `message` may come from
/// application code (`onUpgrade`); control characters are dropped, so it stays one body line.
pub fn error_response(status: u16, message: &str, header: Option<(&str, &str)>) -> Vec<u8> {
    let body: String = message.chars().filter(|c| !c.is_control()).chain(std::iter::once('\n')).collect();
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n\
         content-length: {}\r\n",
        reason_phrase(status),
        body.len()
    );
    if let Some((name, value)) = header {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.push_str(&body);
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"GET /ws?clientId=bob HTTP/1.1\r\nHost: localhost:3000\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: chat, v2.json\r\nOrigin: http://localhost\r\n\r\n";

    fn head(bytes: &[u8]) -> Head {
        match parse(bytes, 100, 8192) {
            Ok(Parsed::Complete(head, _)) => head,
            _ => panic!("not a complete head"),
        }
    }

    #[test]
    fn parses_and_validates_a_browser_request() {
        let h = head(REQUEST);
        assert_eq!(h.path, "/ws");
        assert_eq!(h.query, "clientId=bob");
        assert_eq!(h.header("origin"), Some("http://localhost"));
        assert_eq!(validate(&h).as_deref(), Ok("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(offered_protocols(&h), vec!["chat".to_string(), "v2.json".to_string()]);
    }

    #[test]
    fn partial_until_complete_and_keeps_what_follows() {
        for cut in 0..REQUEST.len() {
            assert!(matches!(parse(&REQUEST[..cut], 100, 8192), Ok(Parsed::Partial)), "cut {cut}");
        }
        let mut with_frame = REQUEST.to_vec();
        with_frame.extend_from_slice(&[0x81, 0x80]);
        match parse(&with_frame, 100, 8192) {
            Ok(Parsed::Complete(_, len)) => assert_eq!(len, REQUEST.len()),
            _ => panic!("not complete"),
        }
    }

    #[test]
    fn rfc_sample_key() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let res = String::from_utf8(switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", Some("chat"))).unwrap();
        assert!(res.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
        assert!(res.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(res.ends_with("Sec-WebSocket-Protocol: chat\r\n\r\n"));
    }

    fn status_of(request: &str) -> u16 {
        match validate(&head(request.as_bytes())) {
            Ok(_) => 101,
            Err(r) => r.status,
        }
    }

    #[test]
    fn rejections() {
        let ok = String::from_utf8(REQUEST.to_vec()).unwrap();
        assert_eq!(status_of(&ok), 101);
        assert_eq!(status_of(&ok.replacen("GET", "POST", 1)), 405);
        assert_eq!(status_of(&ok.replacen("HTTP/1.1", "HTTP/1.0", 1)), 505);
        assert_eq!(status_of(&ok.replacen("Upgrade: websocket", "Upgrade: h2c", 1)), 426);
        assert_eq!(status_of(&ok.replacen("keep-alive, Upgrade", "keep-alive", 1)), 400);
        assert_eq!(status_of(&ok.replacen("Version: 13", "Version: 8", 1)), 426);
        assert_eq!(status_of(&ok.replacen("dGhlIHNhbXBsZSBub25jZQ==", "abc", 1)), 400);
        assert!(matches!(parse(b"GARBAGE\r\n\r\n", 100, 8192), Err(Rejection { status: 400, .. })));
    }

    #[test]
    fn limits() {
        let many: String = (0..20).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(req.as_bytes(), 10, 8192), Err(Rejection { status: 431, .. })));
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(9000));
        assert!(matches!(parse(big.as_bytes(), 100, 8192), Err(Rejection { status: 431, .. })));
    }

    #[test]
    fn error_response_cannot_inject_headers() {
        let res = String::from_utf8(error_response(401, "no\r\nSet-Cookie: x=1", None)).unwrap();
        assert!(res.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        let (head, body) = res.split_once("\r\n\r\n").unwrap();
        assert!(!head.contains("Set-Cookie"));
        assert_eq!(body, "noSet-Cookie: x=1\n");
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn key_length() {
        assert_eq!(base64_decoded_len("dGhlIHNhbXBsZSBub25jZQ=="), Some(16));
        assert_eq!(base64_decoded_len("abc"), None);
        assert_eq!(base64_decoded_len("a$cd"), None);
        assert_eq!(base64_decoded_len("===="), None);
    }
}
