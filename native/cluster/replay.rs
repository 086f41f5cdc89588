//! Joins and recoveries of rooms whose history lives in Redis.
//!
//! A connection joins such a room in three steps: this node holds the room's channel (so every
//! message published from now on reaches it), reads where the history stands in Redis (and,
//! for a recovery, the messages after the client's offset), then, under the room's lock, makes
//! the connection a member. At that moment the room's mirror has delivered every message up to
//! its newest offset `L` here, and every later one reaches the new member live. So `room_joined`
//! says `L`, and a recovery replays exactly the messages from the client's offset up to `L`:
//! those Redis returned, then those the mirror delivered since the read. Each missed message
//! comes once, in order, before any new one; when that cannot be shown, `recovered: false`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use super::channels::Reply;
use super::history::StoredHistory;
use super::{ChannelMode, Cluster, Waiting};
use crate::conn::Conn;
use crate::engine::Engine;
use crate::history::{History, Position};
use crate::outbox::OutFrame;
use crate::protocol;
use crate::rooms::Joined;

/// A join waits at most this for the room's subscription.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// A join or recovery waits at most this for Redis to say where a history stands.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// One room of a recovery: the client's position and what Redis said.
struct Step {
    room: String,
    at: Option<(String, u64)>,
    read: Option<StoredHistory>,
}

impl Cluster {
    /// Joins `conn` to a room with history in Redis; answers with `room_joined` (or
    /// `room_join_error`) once the three steps are done.
    pub fn join_numbered(self: &Arc<Self>, conn: Arc<Conn>, room: String, rid: Option<Value>) {
        let (Some(runtime), Some(engine)) = (self.runtime.get(), self.engine.get().cloned()) else { return };
        let cluster = self.clone();
        runtime.spawn(async move {
            let Some(engine) = engine.upgrade() else { return };
            let read = cluster.prepare(&engine, &room, None).await;
            cluster.finish(&engine, &conn, &Step { room, at: None, read }, &rid);
        });
    }

    /// A `recover` request in a cluster: every room of the resumed session is rejoined, with
    /// the messages the client missed when Redis (and this node's mirror) still have them all.
    /// An offset past a room's newest one changes nothing and gets an error.
    pub fn recover(
        self: &Arc<Self>,
        conn: &Arc<Conn>,
        pending: Vec<String>,
        asked: Vec<(String, String, u64)>,
        rid: Option<Value>,
    ) {
        let (Some(runtime), Some(engine)) = (self.runtime.get(), self.engine.get().cloned()) else { return };
        let (cluster, conn) = (self.clone(), conn.clone());
        runtime.spawn(async move {
            let Some(engine) = engine.upgrade() else { return };
            let mut steps = Vec::with_capacity(pending.len());
            for room in pending {
                let at = asked.iter().find(|(r, _, _)| *r == room).map(|(_, e, o)| (e.clone(), *o));
                let read = cluster.prepare(&engine, &room, at.as_ref().map(|(_, o)| *o)).await;
                steps.push(Step { room, at, read });
            }
            let future = steps.iter().find(|s| match (&s.at, &s.read) {
                (Some((epoch, offset)), Some(read)) => *epoch == read.epoch && *offset > read.top,
                _ => false,
            });
            if let Some(step) = future {
                let offset = step.at.as_ref().map(|(_, o)| *o).unwrap_or(0);
                let msg = format!("offset {offset} of room {} is ahead of the room's history", step.room);
                engine.reply(&conn, protocol::error(&msg, &rid));
                // Nothing changed: the rooms wait for a better request.
                for step in steps {
                    cluster.release(&step.room);
                    if let Some(mut extra) = conn.extra() {
                        if let Some(e) = extra.as_mut() {
                            e.pending_rooms.push(step.room);
                        }
                    }
                }
                return;
            }
            let mut results = Vec::with_capacity(steps.len());
            for step in &steps {
                let recovered = cluster.finish(&engine, &conn, step, &None);
                results.push((step.room.clone(), recovered));
            }
            engine.reply(&conn, protocol::recovered(&results, &rid));
        });
    }

    /// Steps one and two: holds the room's channel and reads its history in Redis (None when
    /// the room keeps no history here or Redis does not answer in time).
    async fn prepare(&self, engine: &Engine, room: &str, after: Option<u64>) -> Option<StoredHistory> {
        if self.config.mode != ChannelMode::Single {
            let (tx, rx) = oneshot::channel();
            let (reply, work) = self.table().joined(room, Waiting::Ready(tx));
            self.after(room, work);
            if let Reply::Deferred = reply {
                let _ = tokio::time::timeout(SUBSCRIBE_WAIT, rx).await;
            }
        }
        let limits = engine.rooms.history_limits(room)?;
        let limit = crate::config::MAX_HISTORY_SIZE as usize;
        self.read_history(room, after, limit, limits, READ_TIMEOUT).await.ok()
    }

    /// Gives back a channel hold `prepare` took for a connection that did not join.
    fn release(self: &Arc<Self>, room: &str) {
        self.members_left(room, 1);
    }

    /// Step three: the connection becomes a member under the room's lock. Returns whether the
    /// missed messages were replayed (`recovered`).
    fn finish(self: &Arc<Self>, engine: &Engine, conn: &Arc<Conn>, step: &Step, rid: &Option<Value>) -> bool {
        let room = step.room.as_str();
        let now = engine.mono_ms();
        let cap = engine.config.max_backpressure / 2;
        let mut recovered = false;
        // A mirror that lost track learns its place from the read only while nobody here is a
        // member: members would miss the messages up to it still on their way from Redis.
        let alone = engine.rooms.count_except(room, &[]) == 0;
        let joined = engine.rooms.join_with(conn, room, |history, _, newly| {
            let asked = step.at.is_some().then_some(false);
            let Some(h) = history.as_mut() else {
                engine.reply(conn, protocol::room_joined_at(room, None, asked, rid));
                return;
            };
            if let Some(read) = step.read.as_ref().filter(|_| alone) {
                if !h.is_known() {
                    h.set_position(&read.epoch, read.top);
                }
            }
            let replay = match (&step.at, &step.read) {
                (Some((epoch, offset)), Some(read)) if newly => {
                    missed(h, epoch, *offset, read, &conn.uuid, now)
                }
                _ => None,
            };
            let bytes: usize = replay.iter().flatten().map(|f| f.len()).sum();
            let replay = replay.filter(|_| bytes <= cap);
            recovered = replay.is_some();
            let at = match &step.read {
                _ if h.is_known() => Some(Joined { epoch: h.epoch.clone(), offset: h.last_offset() }),
                // Messages up to it may still come live: the client drops them by offset.
                Some(read) => Some(Joined { epoch: read.epoch.clone(), offset: read.top }),
                None => None,
            };
            let asked = step.at.is_some().then_some(recovered);
            engine.reply(conn, protocol::room_joined_at(room, at.as_ref(), asked, rid));
            for frame in replay.into_iter().flatten() {
                conn.send(&engine.send, &OutFrame::text(&frame));
            }
        });
        match joined {
            Ok((true, _)) => engine.presence_changed(conn, room, true),
            Ok((false, _)) => self.release(room),
            Err(e) => {
                self.release(room);
                engine.reply(conn, protocol::room_join_error(room, e.as_str(), rid));
            }
        }
        recovered
    }
}

/// The frames a client at (`epoch`, `offset`) missed, up to the mirror's newest offset: from
/// Redis's read, then from the mirror. None when some are gone or the epoch is another one.
/// Frames the connection itself sent (or was excepted from) are left out.
fn missed(
    mirror: &mut History,
    epoch: &str,
    offset: u64,
    read: &StoredHistory,
    uuid: &[u8; 16],
    now: u64,
) -> Option<Vec<Arc<str>>> {
    if read.epoch != epoch || mirror.epoch != epoch || offset > read.top {
        return None;
    }
    let last = mirror.last_offset();
    let mut out = Vec::new();
    let mut next = offset.checked_add(1)?;
    for m in &read.messages {
        if m.offset > last {
            break;
        }
        if m.offset != next {
            return None;
        }
        if !m.skip.contains(uuid) {
            out.push(Arc::from(m.frame.as_str()));
        }
        next = m.offset.checked_add(1)?;
    }
    if next <= last {
        // Delivered here after Redis was read: the mirror has them, or the gap shows.
        let from = next.saturating_sub(1);
        if mirror.position(epoch, from, now) != Position::Complete {
            return None;
        }
        for e in mirror.since(Some(from), usize::MAX, now) {
            if !e.skip.contains(uuid) {
                out.push(e.frame.clone());
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::history::StoredMessage;
    use super::*;
    use crate::history::HistoryLimits;

    fn stored(epoch: &str, top: u64, offsets: &[u64]) -> StoredHistory {
        let messages = offsets
            .iter()
            .map(|o| StoredMessage { offset: *o, frame: format!("m{o}"), wall: 0, skip: vec![] })
            .collect();
        StoredHistory { epoch: epoch.into(), top, messages }
    }

    fn mirror(epoch: &str, offsets: &[u64]) -> History {
        let mut m = History::mirror(HistoryLimits { size: 100, ttl_ms: 1_000_000, bytes: 1 << 20 });
        for o in offsets {
            m.accept(epoch, *o, Arc::from(format!("m{o}")), Box::new([]), 0, 0);
        }
        m
    }

    fn texts(v: Option<Vec<Arc<str>>>) -> Option<Vec<String>> {
        v.map(|v| v.iter().map(|f| f.to_string()).collect())
    }

    #[test]
    fn the_replay_joins_redis_and_the_mirror_without_gaps_or_doubles() {
        let me = [1; 16];
        // Redis was read at 5; the mirror delivered up to 7 since.
        let mut m = mirror("e", &[4, 5, 6, 7]);
        let got = texts(missed(&mut m, "e", 2, &stored("e", 5, &[3, 4, 5]), &me, 0));
        assert_eq!(got, Some(vec!["m3", "m4", "m5", "m6", "m7"].into_iter().map(String::from).collect()));
        // The mirror is behind Redis: only up to the mirror (6, 7 come live).
        let mut m = mirror("e", &[5]);
        let got = texts(missed(&mut m, "e", 2, &stored("e", 7, &[3, 4, 5, 6, 7]), &me, 0));
        assert_eq!(got, Some(vec!["m3".to_string(), "m4".into(), "m5".into()]));
        // Nothing missed.
        let mut m = mirror("e", &[5]);
        assert_eq!(texts(missed(&mut m, "e", 5, &stored("e", 5, &[]), &me, 0)), Some(vec![]));
    }

    #[test]
    fn gaps_and_other_epochs_are_not_recovered() {
        let me = [1; 16];
        let mut m = mirror("e", &[6, 7]);
        assert!(missed(&mut m, "e", 2, &stored("e", 7, &[4, 5, 6, 7]), &me, 0).is_none(), "3 trimmed");
        assert!(missed(&mut m, "old", 2, &stored("e", 7, &[3]), &me, 0).is_none());
        let mut m = mirror("e", &[9]);
        assert!(missed(&mut m, "e", 2, &stored("e", 5, &[3, 4, 5]), &me, 0).is_none(), "6-8 not seen");
    }
}
