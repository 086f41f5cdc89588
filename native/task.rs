//! The connection task: registers a new connection, then reads, writes the backlog and
//! closes until the connection ends, and finally unregisters it and reports its close.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use tokio::net::TcpStream;

use crate::clock;
use crate::conn::{attn, Conn, ConnInfo};
use crate::engine::{Admission, Engine};
use crate::events::Event;
use crate::linger;
use crate::metrics::frame_type;
use crate::reader::{ReadOutcome, Reader};
use crate::tls_stream::TlsSession;

/// How often a connection paused by a full event queue looks again.
const PAUSE_RECHECK: std::time::Duration = std::time::Duration::from_millis(2);

/// Why the connection task woke up.
enum Wake {
    /// The socket is readable (false: its registration failed).
    Readable(bool),
    /// The socket is writable again (false: its registration failed).
    Writable(bool),
    /// `attn` bits.
    Attention(u32),
}

/// The end of a connection task, whichever way it ends: returning, or a panic anywhere in it
/// (tokio then drops the task, and with it this guard). Dropping it unregisters the connection
/// (counts, rooms, pending joins), gives its place in the connection limits back, closes the
/// socket and reports the close to JS, so no connection outlives its task.
/// It holds what the task's life needs, so the task carries each of these once.
struct TaskEnd {
    engine: Arc<Engine>,
    conn: Arc<Conn>,
    /// Given back right after the connection is unregistered.
    admission: Option<Admission>,
    /// Its dispatch state has the close to report (None: the close we asked for, else 1006).
    reader: Reader,
}

impl Drop for TaskEnd {
    fn drop(&mut self) {
        let TaskEnd { engine, conn, reader, .. } = self;
        // No new sends, broadcasts or joins reach it from here on.
        conn.mark_closing();
        let session = engine.unregister(conn, reader.dispatch.close.as_ref());
        drop(self.admission.take());
        if conn.close_queued() {
            engine.metrics.control_out(frame_type::CLOSE, 1, 0);
        }
        // Close the socket: the outbox lets its handle go (the task's has gone, or goes with
        // the task).
        conn.shut_down();
        let (code, reason) =
            reader.dispatch.close.take().or(conn.requested_close()).unwrap_or((1006, String::new()));
        engine.metrics.closed(code);
        engine.events.push(Event::Close { conn: conn.id, code, reason });
        // Kept only now, so JS sees this close before the connect of whoever resumes it.
        crate::sessions::keep(engine, session);
        engine.live_tasks.fetch_sub(1, Ordering::AcqRel);
        engine.conn_gone.notify_waiters();
    }
}

/// Starts a connection: registers it, reports it to JS, and spawns its task, which pumps
/// frames, then unregisters it and reports its close.
/// `leftover` holds bytes the client sent right behind its upgrade request. `admission` holds
/// the connection's place in the connection limits until it ends.
pub fn start(
    engine: Arc<Engine>,
    info: ConnInfo,
    stream: TcpStream,
    leftover: Vec<u8>,
    admission: Admission,
    tls: Option<Box<TlsSession>>,
) {
    let stream = Arc::new(stream);
    let id = engine.next_conn_id();
    let ConnInfo { uuid, client_id, path, info_json, deflate, resumed } = info;
    let hooks = engine.route_hooks(&path);
    let mut conn = Conn::new(id, uuid, client_id, hooks, stream.clone(), engine.mono_ms(), clock::wall_ms());
    let mut reader = Reader::new(engine.config.max_payload, engine.mono_ms(), engine.route_rate_limit(&path));
    if let Some((negotiated, config)) = deflate {
        conn = conn.with_deflate(crate::deflate::Outbound::new(negotiated, &config));
        reader = reader.with_deflate(negotiated);
    }
    let conn = Arc::new(conn);
    let is_tls = tls.is_some();
    reader.tls = is_tls;
    if is_tls {
        // Before anyone can see the connection: no byte may reach its socket unencrypted.
        if let Ok(mut out) = conn.out.lock() {
            out.tls = tls;
        }
    }
    engine.live_tasks.fetch_add(1, Ordering::AcqRel);
    engine.conns.insert(id, conn.clone());
    engine.conns_version.fetch_add(1, Ordering::AcqRel);
    crate::sessions::on_open(&engine, &conn, resumed);
    engine.events.push(Event::Connect { conn: id, info: info_json });
    if engine.is_shutting_down() {
        conn.close(1001, "Server shutting down");
    }

    let reading = leftover.is_empty() || reader.take_leftover(&engine, &conn, leftover);
    // Its own task, holding only what the connection's life needs: the handshake's state is
    // gone by now, so an idle connection costs one small task.
    let end = TaskEnd { engine, conn, admission: Some(admission), reader };
    tokio::spawn(drive(end, stream, reading));
}

/// The connection's life after the upgrade: reads, writes the backlog, closes, reports.
// Not an `async fn`: the async block captures the arguments once, where an async fn keeps them
// as arguments and again as locals (a larger task state for every connection).
#[allow(clippy::manual_async_fn)]
fn drive(
    mut end: TaskEnd,
    stream: Arc<TcpStream>,
    mut reading: bool,
) -> impl std::future::Future<Output = ()> {
    async move {
        let id = end.conn.id;
        let close_ms = end.engine.config.close_timeout.as_millis() as u64;
        let start_close_deadline = |engine: &Engine, conn: &Conn| {
            let deadline = engine.mono_ms() + close_ms;
            let _ =
                conn.close_deadline.compare_exchange(0, deadline.max(1), Ordering::AcqRel, Ordering::Acquire);
        };
        // No timers here: the engine's ticker watches `last_seen` and `close_deadline`, and pings.
        // The loop waits on one small poll function (socket readiness and the attention bits), so
        // the task of an idle connection stays small.
        let mut lingering = false;
        loop {
            if !reading {
                // The close handshake is over on our side (peer closed, or we failed the
                // connection): flush what is queued, bounded by the close timeout, then end.
                if end.conn.is_flushed() && !lingering {
                    // When we failed the connection the peer may still be sending, and closing
                    // a socket with unread bytes sends a RST that can make the peer lose our
                    // close frame: half-close instead and discard until its FIN (or the deadline).
                    if !end.reader.dispatch.failed || !linger::half_close(&stream) {
                        break;
                    }
                    lingering = true;
                }
                start_close_deadline(&end.engine, &end.conn);
            }
            // JS is far behind: stop reading (TCP then slows the client down) and look again shortly.
            let paused = reading && end.engine.events.congested();
            if reading && !paused && end.reader.stalled {
                end.reader.stalled = false;
                reading = end.reader.resume(&end.engine, &end.conn);
                continue;
            }
            let blocked = end.conn.is_blocked();
            let event = std::future::poll_fn(|cx| {
                end.conn.waker.register(cx.waker());
                let bits = end.conn.attn.swap(0, Ordering::AcqRel);
                if bits != 0 {
                    return Poll::Ready(Wake::Attention(bits));
                }
                if blocked {
                    if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                        return Poll::Ready(Wake::Writable(ready.is_ok()));
                    }
                }
                if (reading && !paused) || lingering {
                    if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                        return Poll::Ready(Wake::Readable(ready.is_ok()));
                    }
                }
                Poll::Pending
            });
            let event = if paused {
                // Boxed: the timer is only needed while paused, so idle tasks do not carry it.
                match Box::pin(tokio::time::timeout(PAUSE_RECHECK, event)).await {
                    Ok(event) => event,
                    Err(_) => {
                        // Time spent paused for JS is not the peer's silence.
                        end.conn.last_seen.store(end.engine.mono_ms(), Ordering::Release);
                        continue;
                    }
                }
            } else {
                event.await
            };
            match event {
                Wake::Readable(false) | Wake::Writable(false) => break,
                Wake::Readable(true) if lingering => {
                    if !linger::discard(&stream) {
                        break;
                    }
                }
                Wake::Readable(true) => {
                    #[cfg(test)]
                    tests::panic_if_asked(id);
                    match end.reader.read(&end.engine, &end.conn, &stream) {
                        ReadOutcome::Read(true) => {
                            end.conn.last_seen.store(end.engine.mono_ms(), Ordering::Release)
                        }
                        ReadOutcome::Read(false) => {}
                        ReadOutcome::Eof => break,
                        ReadOutcome::Stop => reading = false,
                    }
                }
                Wake::Writable(true) => {
                    if let Ok(mut out) = end.conn.out.lock() {
                        end.conn.flush_locked(&mut out);
                    }
                }
                Wake::Attention(bits) => {
                    if bits & (attn::KILL | attn::FAILED | attn::DEADLINE) != 0 {
                        break;
                    }
                    if bits & attn::IDLE != 0 {
                        end.reader.dispatch.close.get_or_insert((1006, "Idle timeout".to_string()));
                        break;
                    }
                    if bits & attn::DRAINED != 0 && !end.conn.is_closing() {
                        end.engine.events.push(Event::Drain { conn: id });
                    }
                    if bits & attn::CLOSE != 0 {
                        start_close_deadline(&end.engine, &end.conn);
                    }
                }
            }
        }

        // Our handle of the socket goes first, so the outbox's is the last: `end` closes it.
        drop(stream);
        drop(end);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::Cell;
    use std::io::{Read, Write};
    use std::net::IpAddr;
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, NativeOptions};
    use crate::engine::AdmissionError;

    thread_local! {
        /// The connection whose task panics when it next becomes readable (0: none). Per
        /// thread: each test runs its tasks on its own single-threaded runtime.
        static PANIC_CONN: Cell<u32> = const { Cell::new(0) };
    }

    /// Called by the task before each read: a panic in the middle of a connection's life.
    pub fn panic_if_asked(id: u32) {
        if id != 0 && PANIC_CONN.get() == id {
            panic!("forced panic in connection task {id}");
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A server with one connection per IP allowed, and one live connection started on it
    /// (in room "r"); returns the engine, the connection and the peer's end.
    async fn one_connection() -> (Arc<Engine>, Arc<Conn>, std::net::TcpStream) {
        let options = NativeOptions { max_connections_per_ip: Some(1), ..NativeOptions::default() };
        let engine = Arc::new(Engine::new(Config::from_options(&options).expect("valid options")));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (peer, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let admission = engine.admit(IP).unwrap();
        assert_eq!(engine.admit(IP).err(), Some(AdmissionError::TooManyFromIp));
        let info = ConnInfo {
            uuid: [9; 16],
            client_id: "c".into(),
            path: "/ws".into(),
            info_json: "{}".into(),
            deflate: None,
            resumed: None,
        };
        start(engine.clone(), info, TcpStream::from_std(ours).unwrap(), Vec::new(), admission, None);
        let conn = engine.conns.iter().next().map(|e| e.value().clone()).unwrap();
        assert_eq!(engine.rooms.join(&conn, "r"), Ok(true));
        assert_eq!(engine.live_tasks.load(Ordering::Acquire), 1);
        (engine, conn, peer)
    }

    /// Waits (bounded) for the connection's task to end, then checks that nothing of the
    /// connection is left and returns the close code it reported.
    async fn ended(engine: &Arc<Engine>, conn: &Conn, peer: &mut std::net::TcpStream) -> u16 {
        for _ in 0..500 {
            if engine.live_tasks.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert_eq!(engine.live_tasks.load(Ordering::Acquire), 0, "the task reported its end");
        assert!(engine.conns.is_empty(), "unregistered");
        assert!(!engine.rooms.is_member(conn.id, "r"));
        assert_eq!(engine.rooms.len(), 0, "the auto-created room went with its last member");
        assert!(conn.is_closing());
        assert!(engine.admit(IP).is_ok(), "the per-IP place was given back");
        // The socket is closed: the peer reads to its end (or is reset: unread bytes were left).
        let mut rest = Vec::new();
        match peer.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset),
        }
        let closes: Vec<u16> = engine
            .events
            .take()
            .events
            .into_iter()
            .filter_map(|e| match e {
                Event::Close { conn: id, code, .. } if id == conn.id => Some(code),
                _ => None,
            })
            .collect();
        assert_eq!(closes.len(), 1, "one close event");
        closes[0]
    }

    #[tokio::test]
    async fn an_idle_connections_task_stays_small() {
        let engine =
            Arc::new(Engine::new(Config::from_options(&NativeOptions::default()).expect("default options")));
        let (conn, _peer) = crate::conn::fixture::conn(1).await;
        let stream = conn.out.lock().unwrap().stream.clone().unwrap();
        let admission = engine.admit(IP).unwrap();
        engine.live_tasks.fetch_add(1, Ordering::AcqRel);
        let end = TaskEnd {
            engine: engine.clone(),
            conn,
            admission: Some(admission),
            reader: Reader::new(1024, 0, None),
        };
        // Every idle connection carries this state: the guard, the stream and the loop's locals.
        let task = drive(end, stream, true);
        assert!(std::mem::size_of_val(&task) <= 320, "{} bytes", std::mem::size_of_val(&task));
    }

    #[tokio::test]
    async fn a_panicking_task_still_unregisters_closes_its_socket_and_reports_its_close() {
        let (engine, conn, mut peer) = one_connection().await;
        PANIC_CONN.set(conn.id);
        peer.write_all(&[0x82, 0x80, 0, 0, 0, 0]).unwrap();
        assert_eq!(ended(&engine, &conn, &mut peer).await, 1006);
        PANIC_CONN.set(0);
    }

    #[tokio::test]
    async fn a_task_that_ends_normally_cleans_up_the_same_way() {
        let (engine, conn, mut peer) = one_connection().await;
        // A close frame (code 1000, masked with a zero key): answered, then the task ends.
        peer.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]).unwrap();
        assert_eq!(ended(&engine, &conn, &mut peer).await, 1000);
    }
}
