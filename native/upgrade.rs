//! Validation of the HTTP upgrade request (RFC 6455 §4.2.1) and the answers to bad ones.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{Method, Request, Response, StatusCode, Version};

/// A response body: the whole reason phrase in one chunk.
pub type Body = Full<Bytes>;

/// Builds a plain-text error response.
pub fn reject(status: StatusCode, message: &str) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *res.status_mut() = status;
    res.headers_mut().insert("content-type", HeaderValue::from_static("text/plain; charset=utf-8"));
    res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

fn header_has_token(req: &Request<hyper::body::Incoming>, name: hyper::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

fn base64_decoded_len(key: &str) -> Option<usize> {
    let bytes = key.as_bytes();
    if bytes.len() % 4 != 0 || bytes.is_empty() {
        return None;
    }
    let pad = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if pad > 2 {
        return None;
    }
    let valid = bytes[..bytes.len() - pad]
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    valid.then(|| bytes.len() / 4 * 3 - pad)
}

/// Checks a request to a WebSocket path; returns the `Sec-WebSocket-Key` or the error response.
pub fn validate(req: &Request<hyper::body::Incoming>) -> Result<String, Response<Body>> {
    let wants_upgrade = header_has_token(req, UPGRADE, "websocket");
    if req.method() != Method::GET {
        let mut res = reject(StatusCode::METHOD_NOT_ALLOWED, "WebSocket upgrade requires GET");
        res.headers_mut().insert("allow", HeaderValue::from_static("GET"));
        return Err(res);
    }
    if req.version() != Version::HTTP_11 {
        return Err(reject(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "WebSocket upgrade requires HTTP/1.1"));
    }
    if !wants_upgrade {
        let mut res = reject(StatusCode::UPGRADE_REQUIRED, "This path only speaks WebSocket");
        res.headers_mut().insert(UPGRADE, HeaderValue::from_static("websocket"));
        return Err(res);
    }
    if !header_has_token(req, CONNECTION, "upgrade") {
        return Err(reject(StatusCode::BAD_REQUEST, "Connection header must contain Upgrade"));
    }
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .map(|v| v.as_bytes() == b"13")
        .unwrap_or(false);
    if !version_ok {
        let mut res = reject(StatusCode::UPGRADE_REQUIRED, "Sec-WebSocket-Version must be 13");
        res.headers_mut().insert("sec-websocket-version", HeaderValue::from_static("13"));
        return Err(res);
    }
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| base64_decoded_len(k) == Some(16));
    match key {
        Some(k) => Ok(k.to_string()),
        None => Err(reject(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key must be base64 of 16 bytes")),
    }
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
