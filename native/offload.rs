//! Compression off the sending thread. A message of `OFFLOAD_BYTES` or more to a connection that
//! negotiated permessage-deflate is compressed on the runtime's blocking pool, so `send` (and a
//! broadcast) returns to JS at once. Until it is written, everything later sent to that
//! connection (small messages, pings, the close frame) waits behind it in the connection's
//! `Pending` queue: frames leave in the order they were sent. A broadcast compresses a large
//! message once per parameter set ([`SharedFrame`]) and each member's queue waits for it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;

use crate::conn::{attn, Conn, SendContext};
use crate::deflate::Outbound;
use crate::outbox::{over_limit, SendStatus};

/// Messages from this many bytes on are compressed off the sending thread. Below it, a
/// compression costs less than the hand-over (about 0.2 ms at zlib's default level).
pub const OFFLOAD_BYTES: usize = 64 * 1024;

/// `OFFLOAD_BYTES`, or never with `RNODE_DEFLATE_OFFLOAD=0` (every message compressed by the
/// thread that sends it, as before: for the same-run benchmark, benches/deflate-offload.mjs).
fn offload_bytes() -> usize {
    static BYTES: OnceLock<usize> = OnceLock::new();
    *BYTES.get_or_init(|| match std::env::var_os("RNODE_DEFLATE_OFFLOAD") {
        Some(v) if v == "0" => usize::MAX,
        _ => OFFLOAD_BYTES,
    })
}

/// The runtime whose blocking pool compresses, kept when the addon loads (the JS thread is not
/// inside the runtime, so it cannot find it as a worker does).
static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Keeps the handle of the runtime the engine runs on.
pub fn set_runtime(handle: tokio::runtime::Handle) {
    let _ = RUNTIME.set(handle);
}

/// The runtime to compress on: the current one on a worker thread, else the engine's.
fn runtime() -> Option<tokio::runtime::Handle> {
    tokio::runtime::Handle::try_current().ok().or_else(|| RUNTIME.get().cloned())
}

/// One send waiting in a connection's queue.
pub enum Job {
    /// A whole frame, ready to write; `close` marks our close frame.
    Frame { bytes: Bytes, close: bool },
    /// A message to compress with the connection's parameters.
    Compress { opcode: u8, payload: Bytes },
    /// A broadcast's frame, compressed once for every member with the same parameters.
    Shared(Arc<SharedFrame>),
}

/// A connection's sends behind an off-thread compression.
#[derive(Default)]
pub struct Pending {
    /// Each job with the payload bytes it counts for (0 for control frames).
    jobs: VecDeque<(usize, Job)>,
    /// A thread is writing the queue, or a compression for its head is under way.
    running: bool,
    /// Payload bytes queued here, counted against `maxBackpressure` and in `bufferedAmount`.
    pub bytes: usize,
    /// A send was answered `Buffered`: `onDrain` follows once everything is written.
    wants_drain: bool,
}

impl Pending {
    /// Nothing waits: a send may be written by its own thread at once.
    #[inline]
    pub fn is_idle(&self) -> bool {
        !self.running && self.jobs.is_empty()
    }
}

/// A broadcast's compressed frame, made on the blocking pool; the members whose queue reached
/// it before it was done wait in `waiters`.
pub struct SharedFrame {
    state: Mutex<(Option<Bytes>, Vec<Arc<Conn>>)>,
}

impl SharedFrame {
    /// Starts compressing `payload` with `compress` on the blocking pool (here without one).
    pub fn start(compress: impl FnOnce() -> Bytes + Send + 'static) -> Arc<Self> {
        let shared = Arc::new(SharedFrame { state: Mutex::new((None, Vec::new())) });
        let done = shared.clone();
        let work = move || done.finish(compress());
        match runtime() {
            Some(rt) => drop(rt.spawn_blocking(work)),
            None => work(),
        }
        shared
    }

    /// The frame, or None after adding `conn` to those woken when it is done.
    fn frame_or_wait(&self, conn: &Arc<Conn>) -> Option<Bytes> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.0.is_none() {
            state.1.push(conn.clone());
        }
        state.0.clone()
    }

    fn finish(&self, frame: Bytes) {
        let waiters = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.0 = Some(frame);
            std::mem::take(&mut state.1)
        };
        for conn in waiters {
            conn.resume_pending();
        }
    }
}

impl Conn {
    /// Sends one data message to a connection that negotiated permessage-deflate: written at once
    /// when nothing waits and it is small, else queued behind what waits (large ones compressed
    /// off this thread). `frame` is the whole uncompressed frame, its payload from `start`;
    /// `owned` the same bytes when the caller has them shared (else they are copied if queued).
    pub(crate) fn send_deflating(
        self: &Arc<Self>,
        ctx: &SendContext,
        d: &Outbound,
        frame: &[u8],
        start: usize,
        owned: Option<&Bytes>,
        cache: &mut crate::deflate::FrameCache,
    ) -> SendStatus {
        let payload_len = frame.len() - start;
        let opcode = frame.first().map_or(crate::frame::opcode::TEXT, |b| b & 0x0f);
        let mut pending = d.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_idle() && payload_len < offload_bytes() {
            // Written by this thread. A send racing it from another thread has no order to keep;
            // the compressor's lock keeps compression and queueing in one order.
            drop(pending);
            return if d.compresses(payload_len) {
                d.send(opcode, &frame[start..], cache, |b| self.queue_checked(ctx, b))
            } else {
                self.queue_checked(ctx, frame)
            };
        }
        let limit = ctx.max_backpressure;
        let queued = self.out.lock().map(|o| if o.is_shut() { None } else { Some(o.pending()) });
        let Ok(Some(queued)) = queued else { return SendStatus::Dropped };
        let queued = queued + pending.bytes;
        if over_limit(queued, payload_len, limit) {
            drop(pending);
            return self.refuse(ctx);
        }
        let frame = owned.cloned().unwrap_or_else(|| Bytes::copy_from_slice(frame));
        let job = if !d.compresses(payload_len) {
            Job::Frame { bytes: frame, close: false }
        } else if let Some(key) = d.shared_key() {
            Job::Shared(cache.shared(key, opcode, frame.slice(start..)))
        } else {
            Job::Compress { opcode, payload: frame.slice(start..) }
        };
        pending.bytes += payload_len;
        pending.jobs.push_back((payload_len, job));
        let status = if (queued + payload_len) * 2 > limit {
            pending.wants_drain = true;
            SendStatus::Buffered
        } else {
            SendStatus::Sent
        };
        self.run_pending(pending, false);
        status
    }

    /// A control frame (or our close frame) for a connection that negotiated permessage-deflate:
    /// behind what waits, if anything does; false when nothing waits (the caller writes it).
    pub(crate) fn queue_control_pending(self: &Arc<Self>, d: &Outbound, bytes: &[u8], close: bool) -> bool {
        let mut pending = d.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.is_idle() {
            return false;
        }
        pending.jobs.push_back((0, Job::Frame { bytes: Bytes::copy_from_slice(bytes), close }));
        self.run_pending(pending, false);
        true
    }

    /// Whether no send waits behind an off-thread compression.
    pub(crate) fn nothing_pending(&self) -> bool {
        self.deflate.as_deref().is_none_or(|d| d.pending.lock().map_or(true, |p| p.is_idle()))
    }

    /// Payload bytes waiting behind an off-thread compression.
    pub(crate) fn pending_bytes(&self) -> usize {
        self.deflate.as_deref().map_or(0, |d| d.pending.lock().map_or(0, |p| p.bytes))
    }

    /// A shared frame this connection waited for is done: write on (on the blocking pool).
    fn resume_pending(self: &Arc<Self>) {
        let Some(d) = self.deflate.as_deref() else { return };
        let pending = d.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if !pending.running {
            self.run_pending(pending, true);
        }
    }

    /// Becomes the queue's writer unless another thread is: writes jobs in order until the
    /// queue is empty, a compression must move to the blocking pool (`on_pool` false), or the
    /// head waits for a shared frame.
    fn run_pending<'a>(self: &'a Arc<Self>, mut pending: std::sync::MutexGuard<'a, Pending>, on_pool: bool) {
        if pending.running && !on_pool {
            return;
        }
        pending.running = true;
        let Some(d) = self.deflate.as_deref() else { return };
        loop {
            match pending.jobs.front() {
                None => {
                    pending.running = false;
                    let drain = std::mem::take(&mut pending.wants_drain);
                    drop(pending);
                    if drain {
                        self.drain_when_written();
                    }
                    if self.is_closing() {
                        // The task may be waiting for this queue to end the close handshake.
                        self.wake(attn::FLUSHED);
                    }
                    return;
                }
                Some((_, Job::Compress { .. })) if !on_pool => {
                    drop(pending);
                    let conn = self.clone();
                    let work = move || conn.continue_on_pool();
                    match runtime() {
                        Some(rt) => drop(rt.spawn_blocking(work)),
                        // No runtime (never in a running server): compress here.
                        None => work(),
                    }
                    return;
                }
                Some((_, Job::Shared(shared))) => {
                    let Some(frame) = shared.frame_or_wait(self) else {
                        // Its compression resumes this queue when done.
                        pending.running = false;
                        return;
                    };
                    if let Some((len, _)) = pending.jobs.pop_front() {
                        pending.bytes = pending.bytes.saturating_sub(len);
                    }
                    self.write_admitted(&frame, false);
                }
                Some(_) => {
                    let Some((len, job)) = pending.jobs.pop_front() else { continue };
                    pending.bytes = pending.bytes.saturating_sub(len);
                    match job {
                        Job::Frame { bytes, close } => self.write_admitted(&bytes, close),
                        Job::Compress { opcode, payload } => {
                            // Compressed and written under the compressor's lock, not the queue's:
                            // sends meanwhile queue behind it.
                            drop(pending);
                            d.send_owned(opcode, &payload, |frame| self.write_admitted(frame, false));
                            pending = d.pending.lock().unwrap_or_else(PoisonError::into_inner);
                        }
                        Job::Shared(_) => {}
                    }
                }
            }
        }
    }

    /// Writes (or queues in the outbox) a frame that was admitted against the limit when queued.
    fn write_admitted(self: &Arc<Self>, bytes: &[u8], close: bool) {
        if let Ok(mut out) = self.out.lock() {
            if !out.is_shut() {
                self.enqueue(&mut out, bytes);
                out.close_queued |= close;
            }
        }
    }

    /// On the blocking pool: take over the queue and write it.
    fn continue_on_pool(self: &Arc<Self>) {
        let Some(d) = self.deflate.as_deref() else { return };
        let pending = d.pending.lock().unwrap_or_else(PoisonError::into_inner);
        self.run_pending(pending, true);
    }

    /// `onDrain` once the outbox is empty (now, or when the task has written it).
    fn drain_when_written(&self) {
        if let Ok(mut out) = self.out.lock() {
            if out.pending() == 0 && !out.blocked {
                drop(out);
                self.wake(attn::DRAINED);
            } else {
                out.wants_drain = true;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Read;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::deflate::{negotiate, DeflateConfig, FrameCache, Inbound, Negotiated};
    use crate::frame::{self, opcode};
    use crate::outbox::OutFrame;

    /// A connection over a loopback pair that negotiated `offer`, and the peer's end.
    async fn deflating(id: u8, offer: &str) -> (Arc<Conn>, std::net::TcpStream, Negotiated) {
        let config = DeflateConfig { threshold: 0, ..DeflateConfig::default() };
        let negotiated = negotiate(std::iter::once(offer.as_bytes()), &config).unwrap();
        let (conn, peer) = crate::conn::fixture::conn(id).await;
        let conn = Arc::try_unwrap(conn).ok().unwrap().with_deflate(Outbound::new(negotiated, &config));
        (Arc::new(conn), peer, negotiated)
    }

    /// Reads frames until `n` came (or 10 s pass): (first header byte, payload), compressed
    /// payloads inflated as the peer does.
    fn read_frames(peer: &mut std::net::TcpStream, negotiated: Negotiated, n: usize) -> Vec<(u8, Vec<u8>)> {
        let mut inbound = Inbound::new(negotiated.as_seen_by_peer());
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < n && Instant::now() < deadline {
            let mut chunk = [0u8; 65536];
            if let Ok(got) = peer.read(&mut chunk) {
                buf.extend_from_slice(&chunk[..got]);
            }
            while let Some(&[b0, b1]) = buf.get(..2) {
                let (len, at) = match b1 & 0x7f {
                    126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                    127 if buf.len() >= 10 => {
                        (u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize, 10)
                    }
                    126 | 127 => break,
                    l => (usize::from(l), 2),
                };
                if buf.len() < at + len {
                    break;
                }
                let body = buf[at..at + len].to_vec();
                buf.drain(..at + len);
                let payload =
                    if b0 & frame::RSV1 != 0 { inbound.inflate(&body, 64 << 20).unwrap() } else { body };
                out.push((b0 & 0x0f, payload));
            }
        }
        out
    }

    fn large(seed: u8) -> Vec<u8> {
        (0..300_000u32).map(|i| b'a' + ((i / 7 + u32::from(seed)) % 26) as u8).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn later_small_sends_pings_and_the_close_frame_wait_behind_a_large_one() {
        for offer in ["permessage-deflate", "permessage-deflate; server_no_context_takeover"] {
            let (conn, mut peer, negotiated) = deflating(1, offer).await;
            let ctx = crate::conn::fixture::context(64 << 20, true);
            let mut sent = Vec::new();
            for i in 0..6u8 {
                let msg = if i % 2 == 0 { large(i) } else { vec![b'x'; 100 + usize::from(i)] };
                assert_ne!(conn.send(&ctx, &OutFrame::binary(&msg)), SendStatus::Dropped);
                sent.push((opcode::BINARY, msg));
            }
            conn.send_control(&frame::encode(opcode::PING, b"p"));
            sent.push((opcode::PING, b"p".to_vec()));
            conn.close(4000, "end");
            sent.push((opcode::CLOSE, frame::encode_close(4000, "end")[2..].to_vec()));
            let got = read_frames(&mut peer, negotiated, sent.len());
            assert_eq!(got.len(), sent.len(), "{offer}");
            for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
                assert!(
                    g == s,
                    "{offer}: frame {i}: opcode {} len {} (sent {} len {})",
                    g.0,
                    g.1.len(),
                    s.0,
                    s.1.len()
                );
            }
            assert_eq!(conn.pending_bytes(), 0);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_broadcast_is_compressed_once_for_every_member_without_context() {
        let offer = "permessage-deflate; server_no_context_takeover";
        let mut members = Vec::new();
        for id in 1..=3 {
            members.push(deflating(id, offer).await);
        }
        let ctx = crate::conn::fixture::context(64 << 20, true);
        let (first, second) = (OutFrame::binary(&large(1)), OutFrame::text("small after"));
        let mut cache = FrameCache::default();
        for (conn, _, _) in &members {
            assert_ne!(conn.send_unsettled(&ctx, &first, &mut cache), SendStatus::Dropped);
        }
        assert_eq!(cache.len(), 1, "one compression for the three");
        let mut cache = FrameCache::default();
        for (conn, _, _) in &members {
            conn.send_unsettled(&ctx, &second, &mut cache);
        }
        for (_, peer, negotiated) in &mut members {
            let got = read_frames(peer, *negotiated, 2);
            assert_eq!(got, vec![(opcode::BINARY, large(1)), (opcode::TEXT, b"small after".to_vec())]);
        }
    }
}
