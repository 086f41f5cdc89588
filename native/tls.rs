//! Native TLS on the server's own port: the certificates (default and per SNI name, replaceable
//! while the server runs), the rustls configuration built from the `tls` option, and the TLS
//! handshake in front of the upgrade. What a connection does with its session after the 101
//! lives in `tls_stream.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use napi_derive::napi;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::engine::Engine;
use crate::error::TlsError;
use crate::metrics::{EarlyDrop, TlsFailure};
use crate::server;
use crate::tls_stream::TlsSession;

/// A certificate chain and its private key, as JS passes them (PEM text).
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeCertKey {
    /// PEM: the end-entity certificate first, then its intermediates.
    pub cert: String,
    /// PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC), or encrypted PKCS#8 with `passphrase`.
    pub key: String,
    pub passphrase: Option<String>,
}

/// A certificate for one SNI host name.
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeServerName {
    /// `a.example`, or `*.example` for any one label in front of `example`.
    pub name: String,
    pub cert: NativeCertKey,
}

/// The `tls` option.
#[napi(object)]
#[derive(Default, Clone)]
pub struct NativeTls {
    /// The certificate for clients that name no host, or a host without its own certificate.
    pub cert: NativeCertKey,
    /// PEM certificates of the authorities client certificates must chain to (`requestCert`).
    pub ca: Option<String>,
    /// Ask each client for a certificate signed by `ca`; a client without one is refused.
    pub request_cert: Option<bool>,
    pub server_names: Option<Vec<NativeServerName>>,
}

/// The certificates handshakes pick from: one per SNI name, and the default. Replacing one
/// affects the handshakes that start afterwards; open connections keep their session.
#[derive(Debug)]
pub struct CertStore {
    default: RwLock<Arc<CertifiedKey>>,
    /// Lower-case host names (or `*.suffix`) to their certificate.
    names: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl CertStore {
    /// The certificate for `name` (exact, then one-label wildcard), else the default.
    fn pick(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            if let Ok(names) = self.names.read() {
                if let Some(found) = names.get(&name) {
                    return Some(found.clone());
                }
                if let Some((_, parent)) = name.split_once('.') {
                    if let Some(found) = names.get(&format!("*.{parent}")) {
                        return Some(found.clone());
                    }
                }
            }
        }
        self.default.read().ok().map(|d| d.clone())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// A server's TLS: the acceptor for new connections and the certificates it uses.
pub struct TlsContext {
    acceptor: TlsAcceptor,
    certs: Arc<CertStore>,
    provider: Arc<CryptoProvider>,
}

impl TlsContext {
    /// Builds the configuration from the `tls` option; every certificate and key is checked.
    pub fn new(options: &NativeTls) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let default = certified_key(&options.cert, &provider)?;
        let mut names = HashMap::new();
        for entry in options.server_names.iter().flatten() {
            names.insert(host_key(&entry.name)?, Arc::new(certified_key(&entry.cert, &provider)?));
        }
        let certs =
            Arc::new(CertStore { default: RwLock::new(Arc::new(default)), names: RwLock::new(names) });
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::InvalidCert("tls", e.to_string()))?;
        let builder = if options.request_cert.unwrap_or(false) {
            let ca = options
                .ca
                .as_deref()
                .ok_or(TlsError::InvalidCert("tls.ca", "requestCert needs ca".into()))?;
            let mut roots = RootCertStore::empty();
            for cert in certificates("tls.ca", ca)? {
                roots.add(cert).map_err(|e| TlsError::InvalidCert("tls.ca", e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::InvalidCert("tls.ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(certs.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsContext { acceptor: TlsAcceptor::from(Arc::new(config)), certs, provider })
    }

    /// Replaces the default certificate (`setSecureContext`); the old one stays on any error.
    pub fn set_default(&self, cert: &NativeCertKey) -> Result<(), TlsError> {
        let key = Arc::new(certified_key(cert, &self.provider)?);
        if let Ok(mut default) = self.certs.default.write() {
            *default = key;
        }
        Ok(())
    }

    /// Adds or replaces the certificate for SNI name `name`.
    pub fn add_name(&self, name: &str, cert: &NativeCertKey) -> Result<(), TlsError> {
        let host = host_key(name)?;
        let key = Arc::new(certified_key(cert, &self.provider)?);
        if let Ok(mut names) = self.certs.names.write() {
            names.insert(host, key);
        }
        Ok(())
    }

    /// Removes the certificate for `name`; false when there was none.
    pub fn remove_name(&self, name: &str) -> bool {
        let host = name.to_ascii_lowercase();
        self.certs.names.write().map(|mut names| names.remove(&host).is_some()).unwrap_or(false)
    }
}

/// `name` as the store keys it: lower case, a host name or `*.` and one.
fn host_key(name: &str) -> Result<String, TlsError> {
    let host = name.strip_prefix("*.").unwrap_or(name);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
        });
    if !valid {
        return Err(TlsError::InvalidCert("serverNames", format!("{name:?} is not a host name")));
    }
    Ok(name.to_ascii_lowercase())
}

/// Every certificate in PEM text `pem` (at least one).
fn certificates(option: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::InvalidCert(option, e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::InvalidCert(option, "no PEM CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The private key in PEM text `pem`, decrypted with `passphrase` when it is encrypted.
fn private_key(pem: &str, passphrase: Option<&str>) -> Result<PrivateKeyDer<'static>, TlsError> {
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(passphrase) = passphrase else {
            return Err(TlsError::BadPassphrase("key", "no passphrase was given"));
        };
        let (_, doc) =
            pkcs8::Document::from_pem(pem.trim()).map_err(|e| TlsError::InvalidKey("key", e.to_string()))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| TlsError::InvalidKey("key", e.to_string()))?;
        let plain = info
            .decrypt(passphrase.as_bytes())
            .map_err(|_| TlsError::BadPassphrase("key", "the passphrase does not decrypt it"))?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(plain.as_bytes().to_vec())));
    }
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        // OpenSSL's legacy encryption (PEM headers, MD5 key derivation): re-export the key as
        // PKCS#8 (`openssl pkcs8 -topk8`).
        return Err(TlsError::InvalidKey("key", "legacy OpenSSL PEM encryption is not supported".into()));
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::InvalidKey("key", e.to_string()))
}

/// The chain and key of `pair`, checked: parseable, a key the provider can sign with, and the
/// key of the chain's first certificate.
fn certified_key(pair: &NativeCertKey, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates("cert", &pair.cert)?;
    let key = private_key(&pair.key, pair.passphrase.as_deref())?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::InvalidKey("key", e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::InvalidKey("key", "it is not the key of the certificate".into()))
        }
        Err(e) => Err(TlsError::InvalidCert("cert", e.to_string())),
    }
}

/// A TLS record starts with its content type: a handshake (22) for a ClientHello.
const HANDSHAKE_RECORD: u8 = 22;

/// Serves a connection on the TLS port: the TLS handshake, then the upgrade over it, all within
/// `handshakeTimeout`; then the connection's task with the session. A plain HTTP request gets a
/// plaintext 400 and is closed; a handshake that fails or stalls is dropped. `prefix` holds the
/// bytes read behind a PROXY protocol header: the start of the handshake.
pub async fn serve(
    engine: Arc<Engine>,
    tls: Arc<TlsContext>,
    mut stream: TcpStream,
    remote: SocketAddr,
    prefix: Vec<u8>,
) {
    let deadline = tokio::time::Instant::now() + engine.config.handshake_timeout;
    if engine.is_full() && !engine.serves_endpoints() {
        return refuse_full(&engine, stream, deadline).await;
    }
    let first = match prefix.first() {
        Some(&byte) => Some(byte),
        None => {
            let mut byte = [0u8; 1];
            match tokio::time::timeout_at(deadline, stream.peek(&mut byte)).await {
                Ok(Ok(1)) => Some(byte[0]),
                _ => None,
            }
        }
    };
    match first {
        Some(HANDSHAKE_RECORD) => {}
        Some(byte) if byte.is_ascii_uppercase() => {
            engine.metrics.tls_failure(TlsFailure::PlainHttp);
            let _ = tokio::time::timeout_at(deadline, async {
                stream.write_all(PLAIN_HTTP_RESPONSE).await?;
                stream.shutdown().await
            })
            .await;
            return;
        }
        Some(_) => return engine.metrics.tls_failure(TlsFailure::NotTls),
        None if tokio::time::Instant::now() >= deadline => {
            return engine.metrics.tls_failure(TlsFailure::Timeout)
        }
        None => return engine.metrics.tls_failure(TlsFailure::Closed),
    }
    // Bytes already read go into the session before tokio-rustls reads the socket; processed
    // at once, so a ClientHello that came whole is answered instead of waiting for more.
    let feed = |session: &mut rustls::ServerConnection| {
        let mut rest = prefix.as_slice();
        while !rest.is_empty() {
            if !matches!(session.read_tls(&mut rest), Ok(n) if n > 0)
                || session.process_new_packets().is_err()
            {
                break;
            }
        }
    };
    let accepting = tls.acceptor.accept_with(stream, feed);
    let mut tls_stream = match tokio::time::timeout_at(deadline, accepting).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return engine.metrics.tls_failure(failure_of(&e)),
        Err(_) => return engine.metrics.tls_failure(TlsFailure::Timeout),
    };
    engine.metrics.tls_handshake();
    let peer = tls_stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let upgraded =
        server::upgrade(&engine, &mut tls_stream, remote, Vec::new(), 0, deadline, peer.as_deref());
    let Some((info, mut leftover, admission)) = Box::pin(upgraded).await else { return };
    let (stream, session) = tls_stream.into_inner();
    let session = TlsSession::new(session, &mut leftover);
    crate::task::start(engine, info, stream, leftover, admission, Some(Box::new(session)));
}

/// Why a handshake failed, from the error tokio-rustls returned (rustls' own, or the socket's).
fn failure_of(e: &std::io::Error) -> TlsFailure {
    use rustls::Error as E;
    use std::io::ErrorKind as K;
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(E::AlertReceived(_)) => TlsFailure::Alert,
        Some(
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord
            | E::DecryptError
            | E::UnsupportedNameType
            | E::InvalidEncryptedClientHello(_),
        ) => TlsFailure::ProtocolError,
        Some(E::PeerIncompatible(_) | E::NoApplicationProtocol) => TlsFailure::Incompatible,
        Some(E::NoCertificatesPresented | E::InvalidCertificate(_)) => TlsFailure::ClientCertificate,
        Some(_) => TlsFailure::Other,
        None => match e.kind() {
            K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                TlsFailure::Closed
            }
            _ => TlsFailure::Other,
        },
    }
}

/// A fatal `internal_error` alert record (type 21, TLS 1.2 record version, length 2, level
/// fatal, description 80), in the clear as alerts before a handshake are.
const SERVER_FULL_ALERT: &[u8] = &[21, 3, 3, 0, 2, 2, 80];

/// `maxConnections` is reached: refused with an alert before any handshake work (no ClientHello
/// parsed, no key exchange). Then a lingering close, so the ClientHello we did not read does not
/// turn our FIN into a RST that could destroy the alert before the client reads it.
async fn refuse_full(engine: &Engine, stream: TcpStream, deadline: tokio::time::Instant) {
    engine.metrics.early_drop(EarlyDrop::ServerFull);
    let _ = tokio::time::timeout_at(deadline, async {
        let mut stream = stream;
        stream.write_all(SERVER_FULL_ALERT).await?;
        if crate::linger::half_close(&stream) {
            while stream.readable().await.is_ok() && crate::linger::discard(&stream) {}
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// The answer to a plain HTTP request on the TLS port.
const PLAIN_HTTP_RESPONSE: &[u8] = b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 33\r\n\r\nThis port speaks TLS: use wss://\n";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_checked_and_lower_cased() {
        assert_eq!(host_key("A.Example").ok(), Some("a.example".to_string()));
        assert_eq!(host_key("*.example").ok(), Some("*.example".to_string()));
        for bad in ["", "*.", "a..b", "-a.b", "a b", "*.*.b", &"x".repeat(64)] {
            assert!(host_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_plain_http_answer_has_the_length_it_says() {
        let text = std::str::from_utf8(PLAIN_HTTP_RESPONSE).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn garbage_is_refused_with_the_right_kind() {
        let provider = rustls::crypto::ring::default_provider();
        let pair =
            |cert: &str, key: &str| NativeCertKey { cert: cert.into(), key: key.into(), passphrase: None };
        let cert_err = certified_key(&pair("nonsense", "nonsense"), &provider).err();
        assert!(matches!(cert_err, Some(TlsError::InvalidCert(..))));
        let bogus = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let key_err = certified_key(&pair(bogus, "nonsense"), &provider).err();
        assert!(matches!(key_err, Some(TlsError::InvalidKey(..))));
        let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let pass_err = certified_key(&pair(bogus, encrypted), &provider).err();
        assert!(matches!(pass_err, Some(TlsError::BadPassphrase(..))));
    }

    /// A self-signed certificate for `localhost` from the openssl CLI (None without it).
    fn openssl_pair() -> Option<NativeCertKey> {
        let dir = std::env::temp_dir().join(format!("rnode-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        let pair = status.success().then(|| NativeCertKey {
            cert: std::fs::read_to_string(&cert).unwrap_or_default(),
            key: std::fs::read_to_string(&key).unwrap_or_default(),
            passphrase: None,
        });
        let _ = std::fs::remove_dir_all(&dir);
        pair
    }

    /// Sends go through the session: the client decrypts exactly the frames, in order, also when
    /// the socket fills up and ciphertext waits in the session (the outbox is then blocked, not
    /// flushed, until the task's flush writes the rest).
    #[tokio::test]
    async fn sends_are_encrypted_in_order_and_held_ciphertext_blocks_the_outbox() {
        use tokio::io::AsyncReadExt;

        use crate::conn::{fixture::context, Conn};
        use crate::outbox::OutFrame;

        let Some(pair) = openssl_pair() else { return };
        let tls = TlsContext::new(&NativeTls { cert: pair.clone(), ..NativeTls::default() }).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(certificates("cert", &pair.cert).unwrap().remove(0)).unwrap();
        let client_config = rustls::ClientConfig::builder_with_provider(tls.provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config));
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let (accepted, client) = tokio::join!(
            async { tls.acceptor.accept(listener.accept().await.unwrap().0).await.unwrap() },
            async { connector.connect(name, TcpStream::connect(addr).await.unwrap()).await.unwrap() },
        );
        let (stream, session) = accepted.into_inner();
        let mut leftover = Vec::new();
        let session = TlsSession::new(session, &mut leftover);
        assert!(leftover.is_empty());
        let stream = Arc::new(stream);
        let conn = Arc::new(Conn::new(1, [1; 16], "c".into(), 0, stream.clone(), 0, 0));
        conn.out.lock().unwrap().tls = Some(Box::new(session));
        let ctx = context(64 << 20, true);
        let mut client = client;

        let hello = OutFrame::text("hello");
        conn.send(&ctx, &hello);
        let mut got = vec![0u8; hello.bytes.len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, &hello.bytes[..]);

        // The client reads nothing: the kernel's buffers fill, ciphertext stays in the session.
        let big = OutFrame::binary(&[7u8; 256 * 1024]);
        let mut sent = 0;
        while !conn.out.lock().unwrap().blocked && sent < 256 {
            conn.send(&ctx, &big);
            sent += 1;
        }
        assert!(conn.out.lock().unwrap().blocked, "a full socket blocks the outbox");
        assert!(!conn.is_flushed());
        // The client reads while the "task" flushes on writability; every frame arrives whole.
        let expected = sent * big.bytes.len();
        let reading = async {
            let mut total = 0;
            let mut buf = vec![0u8; 64 * 1024];
            while total < expected {
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0);
                assert!(buf[..n].iter().all(|&b| b == 7 || b == 0x82 || b == 127 || b < 8), "frame bytes");
                total += n;
            }
            total
        };
        let flushing = async {
            while !conn.is_flushed() {
                stream.writable().await.unwrap();
                let mut out = conn.out.lock().unwrap();
                conn.flush_locked(&mut out);
            }
        };
        let (total, ()) = tokio::join!(reading, flushing);
        assert_eq!(total, expected);
        assert!(conn.is_flushed());
    }
}
