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
use crate::reader::{ReadOutcome, Reader};

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
) {
    let stream = Arc::new(stream);
    let id = engine.next_conn_id();
    let ConnInfo { uuid, client_id, path, info_json, resumed } = info;
    let hooks = engine.route_hooks(&path);
    let conn =
        Arc::new(Conn::new(id, uuid, client_id, hooks, stream.clone(), engine.mono_ms(), clock::wall_ms()));
    engine.live_tasks.fetch_add(1, Ordering::AcqRel);
    engine.conns.insert(id, conn.clone());
    engine.conns_version.fetch_add(1, Ordering::AcqRel);
    crate::sessions::on_open(&engine, &conn, resumed);
    engine.events.push(Event::Connect { conn: id, info: info_json });
    if engine.is_shutting_down() {
        conn.close(1001, "Server shutting down");
    }

    let mut reader = Reader::new(engine.config.max_payload, engine.mono_ms());
    let reading = leftover.is_empty() || reader.take_leftover(&engine, &conn, leftover);
    // Its own task, holding only what the connection's life needs: the handshake's state is
    // gone by now, so an idle connection costs one small task.
    tokio::spawn(drive(engine, conn, stream, reader, reading, admission));
}

/// The connection's life after the upgrade: reads, writes the backlog, closes, reports.
// Not an `async fn`: the async block captures the arguments once, where an async fn keeps them
// as arguments and again as locals (a larger task state for every connection).
#[allow(clippy::manual_async_fn)]
fn drive(
    engine: Arc<Engine>,
    conn: Arc<Conn>,
    stream: Arc<TcpStream>,
    mut reader: Reader,
    mut reading: bool,
    admission: Admission,
) -> impl std::future::Future<Output = ()> {
    async move {
        let id = conn.id;
        let close_ms = engine.config.close_timeout.as_millis() as u64;
        let start_close_deadline = |conn: &Conn| {
            let deadline = engine.mono_ms() + close_ms;
            let _ =
                conn.close_deadline.compare_exchange(0, deadline.max(1), Ordering::AcqRel, Ordering::Acquire);
        };
        // No timers here: the engine's ticker watches `last_seen` and `close_deadline`, and pings.
        // The loop waits on one small poll function (socket readiness and the attention bits), so
        // the task of an idle connection stays small.
        loop {
            if !reading {
                // The close handshake is over on our side (peer closed, or we failed the
                // connection): flush what is queued, bounded by the close timeout, then end.
                if conn.is_flushed() {
                    break;
                }
                start_close_deadline(&conn);
            }
            // JS is far behind: stop reading (TCP then slows the client down) and look again shortly.
            let paused = reading && engine.events.congested();
            if reading && !paused && reader.stalled {
                reader.stalled = false;
                reading = reader.resume(&engine, &conn);
                continue;
            }
            let blocked = conn.is_blocked();
            let event = std::future::poll_fn(|cx| {
                conn.waker.register(cx.waker());
                let bits = conn.attn.swap(0, Ordering::AcqRel);
                if bits != 0 {
                    return Poll::Ready(Wake::Attention(bits));
                }
                if blocked {
                    if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                        return Poll::Ready(Wake::Writable(ready.is_ok()));
                    }
                }
                if reading && !paused {
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
                        conn.last_seen.store(engine.mono_ms(), Ordering::Release);
                        continue;
                    }
                }
            } else {
                event.await
            };
            match event {
                Wake::Readable(false) | Wake::Writable(false) => break,
                Wake::Readable(true) => match reader.read(&engine, &conn, &stream) {
                    ReadOutcome::Read(true) => conn.last_seen.store(engine.mono_ms(), Ordering::Release),
                    ReadOutcome::Read(false) => {}
                    ReadOutcome::Eof => break,
                    ReadOutcome::Stop => reading = false,
                },
                Wake::Writable(true) => {
                    if let Ok(mut out) = conn.out.lock() {
                        conn.flush_locked(&mut out);
                    }
                }
                Wake::Attention(bits) => {
                    if bits & (attn::KILL | attn::FAILED | attn::DEADLINE) != 0 {
                        break;
                    }
                    if bits & attn::IDLE != 0 {
                        reader.dispatch.close.get_or_insert((1006, "Idle timeout".to_string()));
                        break;
                    }
                    if bits & attn::DRAINED != 0 && !conn.is_closing() {
                        engine.events.push(Event::Drain { conn: id });
                    }
                    if bits & attn::CLOSE != 0 {
                        start_close_deadline(&conn);
                    }
                }
            }
        }

        // No new sends, broadcasts or joins reach it from here on.
        conn.mark_closing();
        let session = engine.unregister(&conn, reader.dispatch.close.as_ref());
        drop(admission);
        // Close the socket: the outbox lets its handle go, then ours goes.
        conn.shut_down();
        drop(stream);
        let (code, reason) =
            reader.dispatch.close.or(conn.requested_close()).unwrap_or((1006, String::new()));
        engine.events.push(Event::Close { conn: id, code, reason });
        // Kept only now, so JS sees this close before the connect of whoever resumes it.
        crate::sessions::keep(&engine, session);
        engine.live_tasks.fetch_sub(1, Ordering::AcqRel);
        engine.conn_gone.notify_waiters();
    }
}
