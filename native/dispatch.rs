//! Frame dispatch: what each complete inbound frame does. Text goes to the built-in protocol
//! or to JS, binary to JS, pings are answered (within a rate), pongs recorded, a close frame
//! answered; a path's hooks decide which events cross into JS at all.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::clock;
use crate::conn::Conn;
use crate::deflate::{self, InflateError};
use crate::engine::{hooks, Engine};
use crate::events::{hex, Event};
use crate::frame::{self, opcode, Inbound, Violation};
use crate::metrics::frame_type;
use crate::presence;
use crate::protocol::{self, Request};
use crate::rate_limit::{Bucket, Policy, RateLimit};

/// Ping frames a peer may send per second before it is closed with 1008.
pub const MAX_PINGS_PER_SECOND: u32 = 100;

/// A connection's dispatch state: the close to report, the ping rate window and the path's
/// rate limit.
pub struct Dispatch {
    /// The close `onClose` reports: the peer's close frame when one came (it wins), else the
    /// first reason we had to close.
    pub close: Option<(u16, String)>,
    /// Ping frames in the current one-second window: (window start, monotonic ms; count).
    ping_window: (u64, u32),
    /// The inflating side of permessage-deflate, when negotiated.
    pub inflate: Option<Box<deflate::Inbound>>,
    /// `rateLimit`: checked for every frame but close frames, before anything else is done.
    rate: Option<Bucket>,
    /// We failed the connection (a protocol violation): the peer may still be sending.
    pub failed: bool,
}

/// A compressed message that inflates past `maxPayload`.
const INFLATED_TOO_BIG: Violation = Violation { code: 1009, reason: "Message too big" };
/// A compressed message that is not valid deflate data.
const BAD_DEFLATE: Violation = Violation { code: 1002, reason: "Invalid compressed data" };
/// Inflated text that is not UTF-8.
const BAD_UTF8: Violation = Violation { code: 1007, reason: "Invalid UTF-8" };

impl Dispatch {
    /// `now`: the engine's monotonic clock.
    pub fn new(now: u64, rate_limit: Option<RateLimit>) -> Self {
        Dispatch {
            close: None,
            ping_window: (now, 0),
            inflate: None,
            rate: rate_limit.map(|l| Bucket::new(l, now)),
            failed: false,
        }
    }

    /// Whether a frame of `len` payload bytes is within the rate limit. Over it, the frame is
    /// dropped and counted, and with the `close` policy the connection closes with 1008.
    #[inline]
    fn within_rate(&mut self, engine: &Engine, conn: &Arc<Conn>, len: usize) -> bool {
        let Some(bucket) = &mut self.rate else { return true };
        if bucket.take(engine.mono_ms(), len) {
            return true;
        }
        match bucket.policy() {
            Policy::Drop => {
                engine.metrics.rate_limited_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Policy::Close => {
                engine.metrics.rate_limited_closed.fetch_add(1, Ordering::Relaxed);
                if !conn.is_closing() {
                    self.close.get_or_insert_with(|| (1008, "Rate limit exceeded".to_string()));
                    conn.close(1008, "Rate limit exceeded");
                }
            }
        }
        false
    }

    /// Handles one complete frame; true when it was the peer's close frame (reading stops).
    #[inline]
    pub fn frame(&mut self, engine: &Engine, conn: &Arc<Conn>, msg: Inbound<'_>) -> bool {
        match msg {
            Inbound::Text { data, ascii } => {
                engine.stats.count_in(false, data.len());
                if self.within_rate(engine, conn, data.len()) {
                    on_text(engine, conn, data, ascii);
                }
            }
            Inbound::Binary(data) => {
                engine.stats.count_in(true, data.len());
                if self.within_rate(engine, conn, data.len()) && conn.hooks & hooks::MESSAGE != 0 {
                    engine.events.push_binary(conn.id, data);
                }
            }
            Inbound::Ping(data) => {
                engine.metrics.control_in(frame_type::PING, data.len());
                conn.last_ping.store(clock::wall_ms(), Ordering::Relaxed);
                if !self.within_rate(engine, conn, data.len()) {
                    return false;
                }
                if self.ping_allowed(engine.mono_ms()) {
                    engine.metrics.control_out(frame_type::PONG, 1, data.len() as u64);
                    conn.send_control(&frame::encode(opcode::PONG, data));
                    if conn.hooks & hooks::CONTROL != 0 {
                        engine.events.push(Event::Control { conn: conn.id, pong: false, hex: hex(data) });
                    }
                } else {
                    self.close.get_or_insert_with(|| (1008, "Ping flood".to_string()));
                    conn.close(1008, "Ping flood");
                }
            }
            Inbound::Pong(data) => {
                engine.metrics.control_in(frame_type::PONG, data.len());
                conn.last_pong.store(clock::wall_ms(), Ordering::Relaxed);
                let sent = conn.ping_sent.swap(0, Ordering::Relaxed);
                if sent != 0 {
                    engine.metrics.ping_rtt.observe(engine.mono_ms().saturating_sub(sent));
                }
                if self.within_rate(engine, conn, data.len()) && conn.hooks & hooks::CONTROL != 0 {
                    engine.events.push(Event::Control { conn: conn.id, pong: true, hex: hex(data) });
                }
            }
            Inbound::Compressed { text, data } => return self.compressed(engine, conn, text, data),
            Inbound::Close(close) => {
                engine.metrics.control_in(frame_type::CLOSE, close.as_ref().map_or(0, |(_, r)| 2 + r.len()));
                // Echo the peer's code (RFC 6455 §5.5.1) unless we closed first.
                conn.answer_close(close.as_ref().map(|(code, _)| *code));
                self.close = Some(close.unwrap_or((1005, String::new())));
                return true;
            }
        }
        false
    }

    /// Inflates a compressed message (never past `maxPayload`) and handles it as a plain one;
    /// true when the peer is closed for it (reading stops).
    fn compressed(&mut self, engine: &Engine, conn: &Arc<Conn>, text: bool, data: &[u8]) -> bool {
        let Some(inflate) = self.inflate.as_mut() else {
            // The decoder accepts RSV1 only with the extension negotiated.
            self.violation(conn, BAD_DEFLATE);
            return true;
        };
        let plain = match inflate.inflate(data, engine.config.max_payload) {
            Ok(plain) => plain,
            Err(InflateError::TooBig) => {
                self.violation(conn, INFLATED_TOO_BIG);
                return true;
            }
            Err(InflateError::Invalid) => {
                self.violation(conn, BAD_DEFLATE);
                return true;
            }
        };
        if text {
            if std::str::from_utf8(&plain).is_err() {
                self.violation(conn, BAD_UTF8);
                return true;
            }
            self.frame(engine, conn, Inbound::Text { data: &plain, ascii: false })
        } else {
            self.frame(engine, conn, Inbound::Binary(&plain))
        }
    }

    /// The peer broke the protocol: close with the violation's code (reported unless another
    /// close came first).
    pub fn violation(&mut self, conn: &Arc<Conn>, Violation { code, reason }: Violation) {
        self.close.get_or_insert_with(|| (code, reason.to_string()));
        self.failed = true;
        conn.close(code, reason);
    }

    /// Counts a ping in its one-second window; false once the window holds too many.
    fn ping_allowed(&mut self, now: u64) -> bool {
        if now.saturating_sub(self.ping_window.0) >= 1000 {
            self.ping_window = (now, 0);
        }
        self.ping_window.1 += 1;
        self.ping_window.1 <= MAX_PINGS_PER_SECOND
    }
}

/// A text frame arrived: the built-in protocol, handled here, or the application's.
/// `data` is valid UTF-8 (the frame decoder checked it); `ascii`: known to be all ASCII.
pub fn on_text(engine: &Engine, conn: &Arc<Conn>, data: &[u8], ascii: bool) {
    // Protocol frames are JSON objects; anything else goes to JS without a second look.
    let maybe_protocol = data.first() == Some(&b'{');
    let parsed = if maybe_protocol { std::str::from_utf8(data).ok().and_then(protocol::parse) } else { None };
    let Some(parsed) = parsed else {
        if conn.hooks & hooks::MESSAGE != 0 {
            engine.events.push_text(conn.id, data, ascii);
        }
        return;
    };
    let rid = parsed.request_id;
    let request = match parsed.request {
        Ok(request) => request,
        Err(reason) => {
            engine.reply(conn, protocol::error(&reason, &rid));
            return;
        }
    };
    match request {
        Request::Join { room } => {
            if conn.hooks & hooks::JOIN_ROOM != 0 {
                let request = engine.defer_join(conn, &room, rid);
                engine.events.push(Event::JoinRequest { conn: conn.id, request, room });
            } else {
                engine.finish_join(conn, &room, &rid);
            }
        }
        Request::Leave { room } => {
            if engine.leave(conn, &room) {
                engine.reply_about(conn, &room, protocol::room_left(&room, &rid));
            } else {
                engine.reply(conn, protocol::error(&format!("not in room {room}"), &rid));
            }
        }
        Request::RoomMessage { room, message } => {
            if !engine.rooms.is_member(conn.id, &room) {
                engine.reply(conn, protocol::error(&format!("not in room {room}"), &rid));
                return;
            }
            engine.room_message_from(conn, &room, &message);
        }
        Request::Recover { rooms } => crate::sessions::recover(engine, conn, rooms, &rid),
        Request::Presence { room } => {
            if !engine.rooms.is_member(conn.id, &room) {
                engine.reply(conn, protocol::error(&format!("not in room {room}"), &rid));
                return;
            }
            match engine.cluster.get().filter(|c| c.has_presence()) {
                Some(cluster) => cluster.reply_presence(conn.clone(), room, rid),
                None => {
                    let entries = engine.presence(&room);
                    engine.reply(conn, presence::reply(&room, &entries, &rid));
                }
            }
        }
        Request::Ping { timestamp } => {
            conn.last_ping.store(clock::wall_ms(), Ordering::Relaxed);
            engine.reply(conn, protocol::pong(&timestamp, &rid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_are_limited_per_one_second_window() {
        let mut d = Dispatch::new(5_000, None);
        for _ in 0..MAX_PINGS_PER_SECOND {
            assert!(d.ping_allowed(5_500));
        }
        assert!(!d.ping_allowed(5_999), "one more within the same second");
        assert!(d.ping_allowed(6_000), "a new window starts a second later");
        assert_eq!(d.ping_window, (6_000, 1));
    }
}
