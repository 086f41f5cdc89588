//! Sessions in Redis, for a cluster with `recovery`: every open connection's session is
//! written when it opens and again when its rooms, metadata or `socket.data` change, under a
//! key that expires `maxDisconnection` after the last refresh. A live node refreshes its
//! sessions every `REFRESH_DIVISOR`th of that; a node that dies stops, and its sessions wait
//! for their clients on any other node until they expire. A clean close deletes the key.
//! Taking a session is one Lua step (read, check the client id, delete), so a token is used once
//! across the whole cluster.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::Cluster;
use crate::engine::Engine;
use crate::sessions::{token_hex, Session, Token};

/// Live sessions are refreshed this many times per `maxDisconnection`.
const REFRESH_DIVISOR: u32 = 3;
/// Most writes in one pipeline.
const MAX_WRITES_PER_PIPELINE: usize = 1024;
/// A take that Redis does not answer within this gives a fresh session.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: session. ARGV: the client id the upgrade chose ("": none). The session's JSON, or nil.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('GET', KEYS[1])
if not v then return false end
if ARGV[1] ~= '' then
  local ok, s = pcall(cjson.decode, v)
  if (not ok) or s.clientId ~= ARGV[1] then return false end
end
redis.call('DEL', KEYS[1])
return v
",
    )
});

/// A write for the session keys.
pub enum SessionOp {
    /// A connection opened (its key must not exist yet).
    Open(Token, String),
    /// Rooms, metadata or data changed, or it closed and now waits (only if the key is there:
    /// a session another node took is not written back).
    Update(Token, String),
    /// A clean close, or the application closed it.
    Delete(Token),
}

/// This node's side of the sessions in Redis.
pub struct SessionStore {
    /// `maxDisconnection`, ms.
    ttl_ms: u64,
    tx: mpsc::UnboundedSender<SessionOp>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<SessionOp>>>,
}

fn key(prefix: &str, token: &Token) -> String {
    format!("{prefix}:session:{}", token_hex(token))
}

/// The JSON a session is kept as.
pub fn record(s: &Session, data: Option<&str>) -> String {
    let metadata: serde_json::Map<String, Value> =
        s.metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    json!({
        "uuid": data_encoding::HEXLOWER.encode(&s.uuid),
        "clientId": s.client_id,
        "rooms": s.rooms,
        "metadata": metadata,
        "data": data,
    })
    .to_string()
}

/// A session from its JSON; None for anything malformed.
pub fn parse(text: &str) -> Option<(Session, Option<String>)> {
    let v: Value = serde_json::from_str(text).ok()?;
    let uuid = data_encoding::HEXLOWER_PERMISSIVE.decode(v.get("uuid")?.as_str()?.as_bytes()).ok()?;
    let uuid: [u8; 16] = uuid.try_into().ok()?;
    let client_id = v.get("clientId")?.as_str()?.to_string();
    let rooms = v.get("rooms")?.as_array()?.iter().filter_map(|r| r.as_str().map(String::from)).collect();
    let metadata: HashMap<String, String> = v
        .get("metadata")?
        .as_object()?
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect();
    let data = v.get("data").and_then(Value::as_str).map(String::from);
    Some((Session::new(uuid, client_id, rooms, metadata), data))
}

impl SessionStore {
    pub fn new(ttl_ms: u64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        SessionStore { ttl_ms, tx, rx: Mutex::new(Some(rx)) }
    }

    /// Queues a write (the session loop sends them in order).
    pub fn write(&self, op: SessionOp) {
        let _ = self.tx.send(op);
    }

    pub(super) fn take_queue(&self) -> Option<mpsc::UnboundedReceiver<SessionOp>> {
        self.rx.lock().ok().and_then(|mut r| r.take())
    }
}

impl Cluster {
    /// Takes the session of `token` out of Redis when it exists and, if the upgrade chose a
    /// client id, belongs to it. None as well when Redis does not answer in time.
    pub async fn take_session(
        &self,
        token: &Token,
        client_id: Option<&str>,
    ) -> Option<(Session, Option<String>)> {
        let take = async {
            let mut conn = self.link.connection().await?;
            TAKE.key(key(&self.config.prefix, token))
                .arg(client_id.unwrap_or(""))
                .invoke_async::<Option<String>>(&mut conn)
                .await
        };
        let text = tokio::time::timeout(TAKE_TIMEOUT, take).await.ok()?.ok()??;
        parse(&text)
    }

    /// Writes session changes in order, in pipelines, and refreshes the live ones.
    pub(super) async fn session_loop(
        self: Arc<Self>,
        engine: Arc<Engine>,
        ops: Option<mpsc::UnboundedReceiver<SessionOp>>,
    ) {
        let (Some(store), Some(mut ops)) = (self.sessions.as_ref(), ops) else { return };
        let ttl = store.ttl_ms;
        let every = Duration::from_millis((ttl / u64::from(REFRESH_DIVISOR)).max(100));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut conn = None;
        while !self.is_stopped() {
            let mut pipe = redis::pipe();
            tokio::select! {
                op = ops.recv() => {
                    let Some(op) = op else { break };
                    let mut next = Some(op);
                    let mut n = 0;
                    while let Some(op) = next.take() {
                        self.add_session_write(&mut pipe, op, ttl);
                        n += 1;
                        if n < MAX_WRITES_PER_PIPELINE {
                            next = ops.try_recv().ok();
                        }
                    }
                }
                _ = tick.tick() => {
                    let live = engine.sessions.as_ref().map(|s| s.live_tokens()).unwrap_or_default();
                    for token in live {
                        pipe.pexpire(key(&self.config.prefix, &token), ttl as i64).ignore();
                    }
                }
                _ = self.stop.notified() => break,
            }
            if conn.is_none() {
                conn = self.link.connection().await.ok();
            }
            let Some(c) = conn.as_mut() else { continue };
            if pipe.query_async::<()>(c).await.is_err() {
                // Lost with Redis: sessions written meanwhile are rewritten by their next change
                // or close; a recovery that finds none answers `recovered: false`.
                conn = None;
            }
        }
    }

    fn add_session_write(&self, pipe: &mut redis::Pipeline, op: SessionOp, ttl: u64) {
        let prefix = &self.config.prefix;
        match op {
            SessionOp::Open(token, text) => {
                pipe.cmd("SET").arg(key(prefix, &token)).arg(text).arg("PX").arg(ttl).arg("NX").ignore();
            }
            SessionOp::Update(token, text) => {
                pipe.cmd("SET").arg(key(prefix, &token)).arg(text).arg("PX").arg(ttl).arg("XX").ignore();
            }
            SessionOp::Delete(token) => {
                pipe.del(key(prefix, &token)).ignore();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_garbage_is_refused() {
        let mut metadata = HashMap::new();
        metadata.insert("name".to_string(), "\"ann\"".to_string());
        let s = Session::new([3; 16], "c1".into(), vec!["a".into(), "b".into()], metadata);
        let text = record(&s, Some("{\"n\":1}"));
        let (back, data) = parse(&text).expect("parsed");
        assert_eq!(back.uuid, [3; 16]);
        assert_eq!(back.client_id, "c1");
        assert_eq!(back.rooms, vec!["a", "b"]);
        assert_eq!(back.metadata.get("name").map(String::as_str), Some("\"ann\""));
        assert_eq!(data.as_deref(), Some("{\"n\":1}"));
        assert!(parse("{}").is_none());
        assert!(parse("not json").is_none());
        assert!(parse(&text.replace("0303", "zz")).is_none());
    }
}
