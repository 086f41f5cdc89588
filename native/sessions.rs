//! Session recovery on one node: a connection that ends without a clean close leaves its
//! session (socket id, clientId, rooms, metadata) here for `recovery.maxDisconnection`, under
//! the token it was given when it opened. A new connection presenting the token (`?session=`)
//! takes the session back; its `recover` request then rejoins the rooms, each with the
//! messages the client missed replayed from the room's history (docs/recovery.md).
//!
//! Tokens are 32 bytes from the OS generator, used once: every connection gets a new one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::cluster::sessions::{record, SessionOp, SessionStore};
use crate::conn::Conn;
use crate::engine::Engine;
use crate::history::Position;
use crate::outbox::OutFrame;
use crate::protocol;

/// A session token: 244 random bits (two v4 UUIDs).
pub type Token = [u8; 32];

/// What a disconnected connection leaves behind.
#[derive(Debug, Clone)]
pub struct Session {
    pub uuid: [u8; 16],
    pub client_id: String,
    pub rooms: Vec<String>,
    pub metadata: HashMap<String, String>,
    /// `socket.data` as JSON, in a cluster (on one node the facade keeps it).
    pub data: Option<String>,
    /// Engine monotonic ms after which it is gone.
    expires: u64,
}

impl Session {
    pub fn new(
        uuid: [u8; 16],
        client_id: String,
        rooms: Vec<String>,
        metadata: HashMap<String, String>,
    ) -> Self {
        Session { uuid, client_id, rooms, metadata, data: None, expires: 0 }
    }
}

/// The disconnected sessions of one node.
pub struct Sessions {
    map: Mutex<HashMap<Token, Session>>,
    /// Tokens of open connections: a token presented while its connection still looks alive
    /// (a dead network the server has not noticed yet) ends that connection and takes over.
    live: Mutex<HashMap<Token, u32>>,
    ttl_ms: u64,
    max: usize,
}

/// A fresh token.
pub fn new_token() -> Token {
    let mut t = [0u8; 32];
    t[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    t[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    t
}

/// A token as the client sees it: 64 lower-case hex digits.
pub fn token_hex(t: &Token) -> String {
    data_encoding::HEXLOWER.encode(t)
}

/// A token from the `session` query parameter; None unless it is exactly 64 hex digits.
pub fn parse_token(text: &str) -> Option<Token> {
    if text.len() != 64 {
        return None;
    }
    let bytes = data_encoding::HEXLOWER_PERMISSIVE.decode(text.as_bytes()).ok()?;
    bytes.try_into().ok()
}

impl Sessions {
    pub fn new(ttl_ms: u64, max: usize) -> Self {
        Sessions { map: Mutex::new(HashMap::new()), live: Mutex::new(HashMap::new()), ttl_ms, max }
    }

    /// Keeps a session until `now + maxDisconnection`; false when the store is full.
    pub fn keep(
        &self,
        token: Token,
        uuid: [u8; 16],
        client_id: String,
        rooms: Vec<String>,
        metadata: HashMap<String, String>,
        now: u64,
    ) -> bool {
        let Ok(mut map) = self.map.lock() else { return false };
        if map.len() >= self.max {
            map.retain(|_, s| s.expires > now);
            if map.len() >= self.max {
                return false;
            }
        }
        let expires = now.saturating_add(self.ttl_ms);
        map.insert(token, Session { uuid, client_id, rooms, metadata, data: None, expires });
        true
    }

    /// Takes the session of `token` when it has not expired and `accept` agrees (the caller
    /// checks that it belongs to who presents it); a refused session stays for its owner.
    pub fn take_if(&self, token: &Token, now: u64, accept: impl FnOnce(&Session) -> bool) -> Option<Session> {
        let mut map = self.map.lock().ok()?;
        let session = map.get(token)?;
        if session.expires <= now {
            map.remove(token);
            return None;
        }
        if !accept(session) {
            return None;
        }
        map.remove(token)
    }

    fn set_live(&self, token: Token, conn: Option<u32>) {
        if let Ok(mut live) = self.live.lock() {
            match conn {
                Some(id) => live.insert(token, id),
                None => live.remove(&token),
            };
        }
    }

    /// Tokens of the open connections.
    pub fn live_tokens(&self) -> Vec<Token> {
        self.live.lock().map(|l| l.keys().copied().collect()).unwrap_or_default()
    }

    fn live_conn(&self, token: &Token) -> Option<u32> {
        self.live.lock().ok()?.get(token).copied()
    }

    /// Forgets expired sessions.
    pub fn sweep(&self, now: u64) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| s.expires > now);
        }
    }

    /// Sessions kept right now.
    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// A connection ends: keeps its session unless the client closed cleanly (1000) or the
/// application closed it (`socket.close`, which forgets the token). Called before the
/// connection leaves its rooms; `peer_close` is the close the connection ends with.
pub fn on_close(
    engine: &Engine,
    conn: &Arc<Conn>,
    close: Option<&(u16, String)>,
) -> Option<(Token, Session)> {
    let sessions = engine.sessions.as_ref()?;
    let mut extra = conn.extra()?;
    let extra = extra.as_mut()?;
    let token = extra.session.take()?;
    sessions.set_live(token, None);
    let store = redis_store(engine);
    if close.is_some_and(|(code, _)| *code == 1000) {
        if let Some(store) = store {
            store.write(SessionOp::Delete(token));
        }
        return None;
    }
    let mut rooms: Vec<String> = extra.rooms.iter().map(String::from).collect();
    rooms.append(&mut extra.pending_rooms);
    let session = Session::new(conn.uuid, conn.client_id.clone(), rooms, std::mem::take(&mut extra.metadata));
    if let Some(store) = store {
        // In a cluster the session waits in Redis, for whichever node the client comes back to.
        store.write(SessionOp::Update(token, record(&session, extra.session_data.as_deref())));
        return None;
    }
    Some((token, session))
}

/// The session store in Redis, in a cluster with `recovery`.
fn redis_store(engine: &Engine) -> Option<&SessionStore> {
    engine.cluster.get()?.sessions.as_ref()
}

/// The session as it stands, for Redis.
fn current(conn: &Conn, extra: &crate::conn::Extra) -> String {
    let mut rooms: Vec<String> = extra.rooms.iter().map(String::from).collect();
    rooms.extend(extra.pending_rooms.iter().cloned());
    let session = Session::new(conn.uuid, conn.client_id.clone(), rooms, extra.metadata.clone());
    record(&session, extra.session_data.as_deref())
}

/// A connection's rooms, metadata or `socket.data` changed: in a cluster, its session in Redis
/// is rewritten.
pub fn changed(engine: &Engine, conn: &Conn) {
    let Some(store) = redis_store(engine) else { return };
    let Some(extra) = conn.extra() else { return };
    let Some(extra) = extra.as_ref() else { return };
    if let Some(token) = extra.session {
        store.write(SessionOp::Update(token, current(conn, extra)));
    }
}

/// The application gave `socket.data` (as JSON) for the session of a connection.
pub fn set_data(engine: &Engine, conn: &Conn, data: Option<String>) {
    if redis_store(engine).is_none() {
        return;
    }
    if let Some(mut extra) = conn.extra() {
        extra.get_or_insert_with(Default::default).session_data = data;
    }
    changed(engine, conn);
}

/// Stores what `on_close` took, once the connection is out of every registry.
pub fn keep(engine: &Engine, kept: Option<(Token, Session)>) {
    let (Some(sessions), Some((token, s))) = (engine.sessions.as_ref(), kept) else { return };
    sessions.keep(token, s.uuid, s.client_id, s.rooms, s.metadata, engine.mono_ms());
}

/// A connection opens: gives it a token and, when it resumed a session, its metadata back and
/// its rooms as pending (rejoined by its `recover` request). Sends the `session` frame.
pub fn on_open(engine: &Engine, conn: &Arc<Conn>, resumed: Option<Session>) {
    let Some(sessions) = engine.sessions.as_ref() else { return };
    let token = new_token();
    sessions.set_live(token, Some(conn.id));
    let recovered = resumed.is_some();
    if let Some(mut extra) = conn.extra() {
        let extra = extra.get_or_insert_with(Default::default);
        extra.session = Some(token);
        if let Some(s) = resumed {
            extra.metadata = s.metadata;
            extra.pending_rooms = s.rooms;
            extra.session_data = s.data;
        }
        if let Some(store) = redis_store(engine) {
            store.write(SessionOp::Open(token, current(conn, extra)));
        }
    }
    engine.reply(conn, protocol::session(&token_hex(&token), recovered));
}

/// The application closed the connection: its session is not kept.
pub fn forget(engine: &Engine, conn: &Conn) {
    let token = conn.extra().and_then(|mut e| e.as_mut().and_then(|e| e.session.take()));
    if let (Some(sessions), Some(token)) = (engine.sessions.as_ref(), token) {
        sessions.set_live(token, None);
        if let Some(store) = redis_store(engine) {
            store.write(SessionOp::Delete(token));
        }
    }
}

/// How long an upgrade waits for the connection still holding its token to end and leave the
/// session behind.
const TAKEOVER_WAIT: std::time::Duration = std::time::Duration::from_millis(1_000);

/// Takes the session of a `?session=` token for an upgrade whose clientId (when the request or
/// `onUpgrade` chose one: `client_id`) matches it. When the token's connection is still open
/// (the server has not noticed that its network died), that connection is ended first.
pub async fn resume(engine: &Engine, token: &Token, client_id: Option<&str>) -> Option<Session> {
    let sessions = engine.sessions.as_ref()?;
    if let Some(cluster) = engine.cluster.get().filter(|c| c.sessions.is_some()) {
        // The session is in Redis. A connection of this node still holding the token is ended
        // first, and its session written back, before the take.
        if let Some(conn) =
            sessions.live_conn(token).and_then(|id| engine.conns.get(&id).map(|c| c.value().clone()))
        {
            if client_id.is_some_and(|c| c != conn.client_id) {
                return None;
            }
            conn.abort();
            let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
            while sessions.live_conn(token).is_some() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            // Its last write goes through the same queue as everything before the take.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let (mut session, data) = cluster.take_session(token, client_id).await?;
        session.data = data;
        return Some(session);
    }
    let belongs = |owner: &str| client_id.is_none_or(|c| c == owner);
    let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
    let mut ended = false;
    loop {
        if let Some(s) = sessions.take_if(token, engine.mono_ms(), |s| belongs(&s.client_id)) {
            return Some(s);
        }
        let live = sessions.live_conn(token).and_then(|id| engine.conns.get(&id).map(|c| c.value().clone()));
        let conn = live?;
        if !belongs(&conn.client_id) || tokio::time::Instant::now() >= deadline {
            return None;
        }
        if !ended {
            conn.abort();
            ended = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// A client's `recover` request: where it stands in each room as (room, epoch, offset).
/// Every room of the resumed session is rejoined; a room whose missed messages are all still
/// kept gets them first, in order, and `recovered: true`. A request naming a room the session
/// did not have, or an offset the room has not reached, changes nothing and gets an error.
pub fn recover(engine: &Engine, conn: &Arc<Conn>, rooms: Vec<(String, String, u64)>, rid: &Option<Value>) {
    let pending: Vec<String> =
        conn.extra().and_then(|e| e.as_ref().map(|e| e.pending_rooms.clone())).unwrap_or_default();
    if pending.is_empty() {
        engine.reply(conn, protocol::error("no session rooms to recover", rid));
        return;
    }
    let now = engine.mono_ms();
    for (room, _, _) in &rooms {
        if !pending.contains(room) {
            engine.reply(conn, protocol::error(&format!("room {room} is not in this session"), rid));
            return;
        }
    }
    if let Some(cluster) = engine.cluster.get() {
        // Offsets are checked against Redis, room by room (`cluster::replay`).
        let Some(pending) = take_pending(conn) else { return };
        cluster.recover(conn, pending, rooms, rid.clone());
        return;
    }
    for (room, epoch, offset) in &rooms {
        if engine.rooms.position(room, epoch, *offset, now) == Some(Position::Future) {
            let msg = format!("offset {offset} of room {room} is ahead of the room's history");
            engine.reply(conn, protocol::error(&msg, rid));
            return;
        }
    }
    let Some(pending) = take_pending(conn) else { return };
    let mut results = Vec::with_capacity(pending.len());
    for room in pending {
        let at = rooms.iter().find(|(r, _, _)| *r == room).map(|(_, e, o)| (e.as_str(), *o));
        let mut recovered = false;
        let joined = engine.rooms.join_with(conn, &room, |history, joined, newly| {
            let replay = match (history.as_mut(), at) {
                (Some(h), Some((epoch, offset))) if newly => {
                    let complete = h.position(epoch, offset, now) == Position::Complete;
                    complete.then(|| h.since(Some(offset), usize::MAX, now))
                }
                _ => None,
            };
            // A replay that would fill half the send buffer is refused as a gap: it would close
            // the connection (or drop messages) instead of recovering it.
            let bytes: usize = replay.iter().flatten().map(|e| e.frame.len()).sum();
            let replay = replay.filter(|_| bytes <= engine.config.max_backpressure / 2);
            recovered = replay.is_some();
            engine.reply(conn, protocol::room_joined_at(&room, joined.as_ref(), Some(recovered), &None));
            for entry in replay.into_iter().flatten().filter(|e| !e.skip.contains(&conn.uuid)) {
                conn.send(&engine.send, &OutFrame::text(&entry.frame));
            }
        });
        if let Err(e) = joined {
            engine.reply(conn, protocol::room_join_error(&room, e.as_str(), &None));
        }
        results.push((room, recovered));
    }
    engine.reply(conn, protocol::recovered(&results, rid));
}

/// The rooms of a resumed session still waiting for `recover`, taken out.
fn take_pending(conn: &Conn) -> Option<Vec<String>> {
    let mut extra = conn.extra()?;
    Some(extra.as_mut().map(|e| std::mem::take(&mut e.pending_rooms)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(s: &Sessions, t: Token, client: &str, now: u64) -> bool {
        s.keep(t, [1; 16], client.to_string(), vec!["a".into()], HashMap::new(), now)
    }

    #[test]
    fn tokens_are_random_and_round_trip() {
        let a = new_token();
        assert_ne!(a, new_token());
        let hex = token_hex(&a);
        assert_eq!(hex.len(), 64);
        assert_eq!(parse_token(&hex), Some(a));
        assert_eq!(parse_token(&hex[..63]), None);
        assert_eq!(parse_token(&"z".repeat(64)), None);
    }

    #[test]
    fn a_session_is_taken_once_before_it_expires() {
        let s = Sessions::new(100, 10);
        let t = new_token();
        assert!(keep(&s, t, "c", 0));
        assert!(s.take_if(&t, 50, |_| false).is_none(), "refused: stays");
        assert_eq!(s.len(), 1);
        let got = s.take_if(&t, 50, |_| true).expect("session");
        assert_eq!(got.client_id, "c");
        assert!(s.take_if(&t, 50, |_| true).is_none(), "used once");
        let t2 = new_token();
        keep(&s, t2, "c", 0);
        assert!(s.take_if(&t2, 100, |_| true).is_none(), "expired");
        assert!(s.take_if(&new_token(), 0, |_| true).is_none(), "unknown token");
    }

    #[test]
    fn the_store_is_bounded_and_swept() {
        let s = Sessions::new(100, 2);
        assert!(keep(&s, new_token(), "a", 0));
        assert!(keep(&s, new_token(), "b", 0));
        assert!(!keep(&s, new_token(), "c", 50), "full");
        assert!(keep(&s, new_token(), "d", 100), "the expired ones made room");
        s.sweep(1_000);
        assert_eq!(s.len(), 0);
    }
}
