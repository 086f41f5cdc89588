//! Validation of the HTTP upgrade request (RFC 6455 §4.2.1) and the answers to bad ones.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Version};

/// A response body: the whole reason phrase in one chunk.
pub type Body = Full<Bytes>;

/// Why an upgrade request is refused: the status, a constant reason, and at most one header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: &'static str,
    pub header: Option<(&'static str, &'static str)>,
}

impl Rejection {
    const fn new(status: StatusCode, message: &'static str) -> Self {
        Rejection { status, message, header: None }
    }

    const fn with_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.header = Some((name, value));
        self
    }

    /// The HTTP response for this rejection.
    pub fn into_response(self) -> Response<Body> {
        let mut res = reject(self.status, self.message);
        if let Some((name, value)) = self.header {
            res.headers_mut().insert(name, HeaderValue::from_static(value));
        }
        res
    }
}

/// Builds a plain-text error response.
pub fn reject(status: StatusCode, message: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *res.status_mut() = status;
    res.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

fn header_has_token(
    req: &Request<hyper::body::Incoming>,
    name: hyper::header::HeaderName,
    token: &str,
) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str().map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))).unwrap_or(false)
    })
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
pub fn validate(req: &Request<hyper::body::Incoming>) -> Result<String, Rejection> {
    if req.method() != Method::GET {
        return Err(Rejection::new(StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrade requires GET")
            .with_header("allow", "GET"));
    }
    if req.version() != Version::HTTP_11 {
        return Err(Rejection::new(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "WebSocket upgrade requires HTTP/1.1",
        ));
    }
    if !header_has_token(req, UPGRADE, "websocket") {
        return Err(Rejection::new(StatusCode::UPGRADE_REQUIRED, "This path only speaks WebSocket")
            .with_header("upgrade", "websocket"));
    }
    if !header_has_token(req, CONNECTION, "upgrade") {
        return Err(Rejection::new(StatusCode::BAD_REQUEST, "Connection header must contain Upgrade"));
    }
    let version_ok =
        req.headers().get("sec-websocket-version").map(|v| v.as_bytes() == b"13").unwrap_or(false);
    if !version_ok {
        return Err(Rejection::new(StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13")
            .with_header("sec-websocket-version", "13"));
    }
    req.headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| base64_decoded_len(k) == Some(16))
        .map(str::to_string)
        .ok_or(Rejection::new(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key must be base64 of 16 bytes"))
}

/// Most subprotocols considered from one request.
const MAX_OFFERED_PROTOCOLS: usize = 32;

/// Subprotocols the client offers, in its order: comma-separated RFC 7230 tokens. One linear
/// pass; empty items and items with non-token characters are ignored.
pub fn offered_protocols(req: &Request<hyper::body::Incoming>) -> Vec<String> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    req.headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && p.len() <= 128 && p.chars().all(is_tchar))
        .take(MAX_OFFERED_PROTOCOLS)
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::base64_decoded_len;

    #[test]
    fn key_length() {
        assert_eq!(base64_decoded_len("dGhlIHNhbXBsZSBub25jZQ=="), Some(16));
        assert_eq!(base64_decoded_len("abc"), None);
        assert_eq!(base64_decoded_len("a$cd"), None);
        assert_eq!(base64_decoded_len("===="), None);
    }
}
