//! The room registry: a DashMap of rooms, each holding its members' handles.
//!
//! Lock order, everywhere: a connection's `rooms` set first, then the room's DashMap shard.
//! Disconnect marks the connection closing before it takes its room set, and `join` checks
//! `closing` while holding that set, so a connection can never stay behind in a room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use napi_derive::napi;

use crate::clock;
use crate::conn::{Conn, SendContext};
use crate::cork;
use crate::fanout::{self, FanoutTarget, Skip};
use crate::history::{self, History, HistoryLimits, Position};
use crate::outbox::{OutFrame, SendStatus};

/// Longest room id, in bytes.
pub const MAX_ROOM_ID_BYTES: usize = 256;

/// A room as `createRoom` describes it.
#[napi(object)]
#[derive(Clone, Default)]
pub struct RoomSpec {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub max_connections: Option<u32>,
    /// JSON text of the metadata object.
    pub metadata: Option<String>,
    /// Members get `presence_join` / `presence_leave` frames.
    pub presence_events: Option<bool>,
    /// The room gets a `rnode_ws_room_members{room}` gauge of its own in the metrics.
    pub metrics: Option<bool>,
    /// History: messages kept (history is on when this is set).
    pub history_size: Option<u32>,
    /// History: how long a message is kept, ms.
    pub history_ttl: Option<u32>,
    /// History: frame bytes kept (default `config::DEFAULT_HISTORY_BYTES`).
    pub history_bytes: Option<u32>,
}

impl RoomSpec {
    /// The history limits this spec asks for, else the server-wide default.
    fn history(&self, default: Option<HistoryLimits>) -> Option<HistoryLimits> {
        match (self.history_size, self.history_ttl) {
            (Some(size), Some(ttl)) => Some(HistoryLimits {
                size: size.min(crate::config::MAX_HISTORY_SIZE) as usize,
                ttl_ms: u64::from(ttl),
                bytes: self.history_bytes.unwrap_or(crate::config::DEFAULT_HISTORY_BYTES) as usize,
            }),
            _ => default,
        }
    }
}

/// Where a client stands in a room's history when it joins: the room's epoch and newest offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub epoch: String,
    pub offset: u64,
}

/// A room's history as `server.history` reports it.
#[napi(object)]
pub struct HistoryPage {
    pub epoch: String,
    /// Offset of the newest message published to the room.
    pub offset: f64,
    /// The kept messages after `since`, oldest first: their `room_message` frame texts.
    pub frames: Vec<String>,
    /// Wall-clock ms each was stored, in the same order.
    pub times: Vec<f64>,
}

/// A room as `getRoom` reports it.
#[napi(object)]
pub struct RoomInfo {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub max_connections: Option<u32>,
    pub connections_count: u32,
    /// JSON text of the metadata object.
    pub metadata: String,
    /// Milliseconds since the epoch.
    pub created_at: f64,
}

/// Why a join did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// The room is at `maxConnections`.
    Full,
    /// The room does not exist and rooms are not auto-created.
    NotFound,
    /// The room id is empty or too long.
    Invalid,
    /// The connection is closing.
    Closed,
}

/// What `socket.joinRoom()` got, as the facade reads it (a number at runtime).
#[napi]
#[derive(Debug, PartialEq, Eq)]
pub enum JoinResult {
    Joined,
    /// Already a member: nothing changed.
    Already,
    Full,
    NotFound,
    Invalid,
    Closed,
}

impl From<JoinError> for JoinResult {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Full => JoinResult::Full,
            JoinError::NotFound => JoinResult::NotFound,
            JoinError::Invalid => JoinResult::Invalid,
            JoinError::Closed => JoinResult::Closed,
        }
    }
}

impl JoinError {
    /// The `error` field of a `room_join_error` reply.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinError::Full => "full",
            JoinError::NotFound => "not_found",
            JoinError::Invalid => "invalid",
            JoinError::Closed => "closed",
        }
    }
}

struct Room {
    spec: RoomSpec,
    created_at: f64,
    /// Created by a join rather than `createRoom`: removed when its last member leaves.
    auto_created: bool,
    members: HashMap<u32, Arc<Conn>>,
    history: Option<History>,
}

impl Room {
    fn info(&self) -> RoomInfo {
        RoomInfo {
            id: self.spec.id.clone(),
            name: self.spec.name.clone(),
            description: self.spec.description.clone(),
            max_connections: self.spec.max_connections,
            connections_count: self.members.len() as u32,
            metadata: self.spec.metadata.clone().unwrap_or_else(|| "{}".to_string()),
            created_at: self.created_at,
        }
    }
}

/// Whether a room id is acceptable.
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ROOM_ID_BYTES
}

/// Every room of one server.
pub struct Rooms {
    map: DashMap<String, Room>,
    auto_create: bool,
    /// The server-wide `history` option: every room without its own gets it.
    default_history: Option<HistoryLimits>,
    /// Bumped by every membership change: a corked thread's pending shared fan-out is only
    /// extended while it is unchanged (see `fanout::SharedFanout`).
    version: AtomicU64,
    /// In a cluster, a room's history lives in Redis and each room keeps a mirror of it.
    mirrored: bool,
}

impl Rooms {
    pub fn new(auto_create: bool, default_history: Option<HistoryLimits>) -> Self {
        Rooms {
            map: DashMap::new(),
            auto_create,
            default_history,
            version: AtomicU64::new(0),
            mirrored: false,
        }
    }

    /// Rooms of a cluster node: histories are mirrors of the ones in Redis.
    pub fn mirrored(mut self) -> Self {
        self.mirrored = true;
        self
    }

    fn new_room(&self, spec: RoomSpec, auto_created: bool) -> Room {
        let make = if self.mirrored { History::mirror } else { History::new };
        let history = spec.history(self.default_history).map(make);
        Room { spec, created_at: clock::wall_ms() as f64, auto_created, members: HashMap::new(), history }
    }

    /// Creates a room; false when the id is taken.
    pub fn create(&self, spec: RoomSpec) -> bool {
        match self.map.entry(spec.id.clone()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                let room = self.new_room(spec, false);
                v.insert(room);
                true
            }
        }
    }

    /// Removes a room; returns its members (already detached from it).
    pub fn delete(&self, id: &str) -> Option<Vec<Arc<Conn>>> {
        let (_, room) = self.map.remove(id)?;
        self.version.fetch_add(1, Ordering::AcqRel);
        let members: Vec<Arc<Conn>> = room.members.into_values().collect();
        for conn in &members {
            if let Some(extra) = conn.extra().as_mut().and_then(|e| e.as_mut()) {
                extra.rooms.remove(id);
            }
        }
        Some(members)
    }

    /// Adds a connection to a room. `Ok(false)`: it was already a member.
    pub fn join(&self, conn: &Arc<Conn>, id: &str) -> Result<bool, JoinError> {
        self.join_with(conn, id, |_, _, _| {}).map(|(joined, _)| joined)
    }

    /// Adds a connection to a room; `under_lock` runs while the room is locked, before the
    /// connection becomes a member (or when it already is one), so what it queues to the
    /// connection comes before any message published to the room after the join (its last
    /// argument: whether the connection is joining now rather than already a member). Returns
    /// whether it joined, and the room's place in its history when it has one.
    pub fn join_with(
        &self,
        conn: &Arc<Conn>,
        id: &str,
        under_lock: impl FnOnce(&mut Option<History>, Option<Joined>, bool),
    ) -> Result<(bool, Option<Joined>), JoinError> {
        if !valid_room_id(id) {
            return Err(JoinError::Invalid);
        }
        let Some(mut extra) = conn.extra() else {
            return Err(JoinError::Closed);
        };
        let conn_rooms = &mut extra.get_or_insert_with(Default::default).rooms;
        if conn.is_closing() {
            return Err(JoinError::Closed);
        }
        let mut room = match self.map.entry(id.to_string()) {
            Entry::Occupied(o) => o.into_ref(),
            Entry::Vacant(v) => {
                if !self.auto_create {
                    return Err(JoinError::NotFound);
                }
                let spec = RoomSpec { id: id.to_string(), name: id.to_string(), ..RoomSpec::default() };
                let room = self.new_room(spec, true);
                v.insert(room)
            }
        };
        let joined =
            room.history.as_ref().map(|h| Joined { epoch: h.epoch.clone(), offset: h.last_offset() });
        if conn_rooms.contains(id) {
            under_lock(&mut room.history, joined.clone(), false);
            return Ok((false, joined));
        }
        if let Some(max) = room.spec.max_connections {
            if room.members.len() >= max as usize {
                return Err(JoinError::Full);
            }
        }
        under_lock(&mut room.history, joined.clone(), true);
        room.members.insert(conn.id, conn.clone());
        self.version.fetch_add(1, Ordering::AcqRel);
        drop(room);
        conn_rooms.insert(id.to_string());
        Ok((true, joined))
    }

    /// Removes a connection from a room; false when it was not a member.
    pub fn leave(&self, conn: &Arc<Conn>, id: &str) -> bool {
        let Some(mut extra) = conn.extra() else {
            return false;
        };
        if !extra.as_mut().is_some_and(|e| e.rooms.remove(id)) {
            return false;
        }
        self.detach(conn.id, id);
        true
    }

    /// Removes a connection from every room it is in; returns those rooms.
    pub fn leave_all(&self, conn: &Arc<Conn>) -> Vec<String> {
        let taken: Vec<String> = match conn.extra() {
            Some(mut extra) => extra.as_mut().map(|e| e.rooms.drain().collect()).unwrap_or_default(),
            None => return Vec::new(),
        };
        for id in &taken {
            self.detach(conn.id, id);
        }
        taken
    }

    fn detach(&self, conn_id: u32, id: &str) {
        let now_empty_auto = match self.map.get_mut(id) {
            Some(mut room) => {
                room.members.remove(&conn_id);
                self.version.fetch_add(1, Ordering::AcqRel);
                room.auto_created && room.members.is_empty() && room.history.is_none()
            }
            None => false,
        };
        if now_empty_auto {
            self.map.remove_if(id, |_, r| r.auto_created && r.members.is_empty() && r.history.is_none());
        }
    }

    /// Whether a connection is in a room.
    pub fn is_member(&self, conn_id: u32, id: &str) -> bool {
        self.map.get(id).map(|r| r.members.contains_key(&conn_id)).unwrap_or(false)
    }

    /// Queues one message to every member `skip` does not exclude; returns how many accepted it.
    /// On a corked thread the message joins that thread's shared fan-out to the room (one buffer
    /// for every member, written when the thread uncorks); otherwise each member gets it now,
    /// under the room's read lock.
    pub fn fan_out(&self, ctx: &SendContext, id: &str, msg: &OutFrame, skip: Skip<'_>) -> u32 {
        if cork::is_corked() {
            return self.fan_out_shared(ctx, id, msg, skip);
        }
        let Some(room) = self.map.get(id) else {
            return 0;
        };
        let mut delivered = 0;
        crate::fanout::settle();
        let mut cache = crate::deflate::FrameCache::default();
        for conn in room.members.values() {
            if skip.matches(conn) {
                continue;
            }
            if conn.send_unsettled(ctx, msg, &mut cache) != SendStatus::Dropped {
                delivered += 1;
            }
        }
        drop(room);
        ctx.stats.count_out_n(delivered, msg.is_binary(), msg.payload_len());
        delivered
    }

    fn fan_out_shared(&self, ctx: &SendContext, id: &str, msg: &OutFrame, skip: Skip<'_>) -> u32 {
        let target = FanoutTarget {
            registry: self as *const Rooms as usize,
            room: id,
            skip,
            version: self.version.load(Ordering::Acquire),
        };
        fanout::fan_out_shared(target, msg, ctx, || {
            let room = self.map.get(id)?;
            let version = self.version.load(Ordering::Acquire);
            Some((room.members.values().cloned().collect(), version))
        })
    }

    /// Publishes a text message to a room with history: the message gets the next offset
    /// (`frame` builds its frame from it), is stored, and reaches the members the room has at
    /// that moment, all under the room's lock, so a connection joining with a replay
    /// (`join_with`) gets each message exactly once: replayed or live. None when the room has no
    /// history (the caller fans out as usual); else the recipients and the frame.
    pub fn publish(
        &self,
        ctx: &SendContext,
        now: u64,
        id: &str,
        skip: Skip<'_>,
        stored_skip: &[[u8; 16]],
        frame: impl FnOnce(u64) -> String,
    ) -> Option<(u32, OutFrame)> {
        if !self.has_history(id) {
            return None;
        }
        let mut room = self.map.get_mut(id)?;
        let history = room.history.as_mut()?;
        let text = frame(history.next_offset());
        history.push(Arc::from(text.as_str()), stored_skip.into(), now, clock::wall_ms());
        let msg = OutFrame::text(&text);
        let n = self.fan_out_locked(ctx, id, &room.members, &msg, skip);
        Some((n, msg))
    }

    /// Fans a message out to a room's members while the caller holds the room's lock.
    fn fan_out_locked(
        &self,
        ctx: &SendContext,
        id: &str,
        members: &HashMap<u32, Arc<Conn>>,
        msg: &OutFrame,
        skip: Skip<'_>,
    ) -> u32 {
        if cork::is_corked() {
            let version = self.version.load(Ordering::Acquire);
            let target = FanoutTarget { registry: self as *const Rooms as usize, room: id, skip, version };
            return fanout::fan_out_shared(target, msg, ctx, || {
                Some((members.values().cloned().collect(), version))
            });
        }
        let mut delivered = 0;
        crate::fanout::settle();
        let mut cache = crate::deflate::FrameCache::default();
        for conn in members.values() {
            if !skip.matches(conn) && conn.send_unsettled(ctx, msg, &mut cache) != SendStatus::Dropped {
                delivered += 1;
            }
        }
        ctx.stats.count_out_n(delivered, msg.is_binary(), msg.payload_len());
        delivered
    }

    pub fn has_history(&self, id: &str) -> bool {
        self.map.get(id).is_some_and(|r| r.history.is_some())
    }

    /// The history limits of a room, or of the room a join would create; None without history.
    pub fn history_limits(&self, id: &str) -> Option<HistoryLimits> {
        match self.map.get(id) {
            Some(room) => room.history.as_ref().map(|h| h.limits),
            None if self.auto_create => self.default_history,
            None => None,
        }
    }

    /// Delivers a message Redis numbered in a room's history to the room's members, under the
    /// room's lock, unless the room's mirror already had it (see `History::accept`).
    pub fn deliver_numbered(
        &self,
        ctx: &SendContext,
        now: u64,
        id: &str,
        numbered: &crate::cluster::Numbered,
        frame: &str,
        except: &[[u8; 16]],
    ) -> u32 {
        let Some(mut room) = self.map.get_mut(id) else { return 0 };
        let Some(history) = room.history.as_mut() else { return 0 };
        let text: Arc<str> = Arc::from(frame);
        if !history.accept(&numbered.epoch, numbered.offset, text, except.into(), now, clock::wall_ms()) {
            return 0;
        }
        let msg = OutFrame::text(frame);
        self.fan_out_locked(ctx, id, &room.members, &msg, Skip::Uuids(except))
    }

    /// Mirrors stop vouching for their history: every room's (`None`), or one room's.
    pub fn forget_mirrors(&self, id: Option<&str>) {
        if !self.mirrored {
            return;
        }
        match id {
            Some(id) => {
                if let Some(h) = self.map.get_mut(id).as_mut().and_then(|r| r.history.as_mut()) {
                    h.forget();
                }
            }
            None => {
                for mut room in self.map.iter_mut() {
                    if let Some(h) = room.history.as_mut() {
                        h.forget();
                    }
                }
            }
        }
    }

    /// A room's kept messages after `since`, at most `limit`; None without such a room or history.
    pub fn history(&self, id: &str, since: Option<u64>, limit: usize, now: u64) -> Option<HistoryPage> {
        let mut room = self.map.get_mut(id)?;
        let h = room.history.as_mut()?;
        let entries: Vec<history::Entry> = h.since(since, limit, now);
        Some(HistoryPage {
            epoch: h.epoch.clone(),
            offset: h.last_offset() as f64,
            frames: entries.iter().map(|e| e.frame.to_string()).collect(),
            times: entries.iter().map(|e| e.wall as f64).collect(),
        })
    }

    /// Where (epoch, offset) stands in a room's history; None without such a room or history.
    pub fn position(&self, id: &str, epoch: &str, offset: u64, now: u64) -> Option<Position> {
        let mut room = self.map.get_mut(id)?;
        let h = room.history.as_mut()?;
        Some(h.position(epoch, offset, now))
    }

    /// Removes auto-created rooms whose history has emptied and that have no members left
    /// (with history, an empty auto-created room stays while its messages may still be asked for).
    pub fn sweep(&self, now: u64) {
        self.map.retain(|_, r| {
            if let Some(h) = r.history.as_mut() {
                h.trim(now);
                !(r.auto_created && r.members.is_empty() && h.len() == 0)
            } else {
                true
            }
        });
    }

    pub fn info(&self, id: &str) -> Option<RoomInfo> {
        self.map.get(id).map(|r| r.info())
    }

    pub fn all(&self) -> Vec<RoomInfo> {
        self.map.iter().map(|r| r.info()).collect()
    }

    /// Whether the room sends presence events.
    pub fn presence_events(&self, id: &str) -> bool {
        self.map.get(id).is_some_and(|r| r.spec.presence_events == Some(true))
    }

    /// Member connections of a room (empty when it does not exist).
    pub fn member_conns(&self, id: &str) -> Vec<Arc<Conn>> {
        self.map.get(id).map(|r| r.members.values().cloned().collect()).unwrap_or_default()
    }

    /// Members of a room that are not in `except` (by socket UUID).
    pub fn count_except(&self, id: &str, except: &[[u8; 16]]) -> u32 {
        self.map
            .get(id)
            .map(|r| r.members.values().filter(|c| !except.contains(&c.uuid)).count() as u32)
            .unwrap_or(0)
    }

    /// Member ids of a room (empty when it does not exist).
    pub fn members(&self, id: &str) -> Vec<u32> {
        self.map.get(id).map(|r| r.members.keys().copied().collect()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// (room id, member count) for every room.
    /// Member counts of the rooms created with `metrics: true`.
    pub fn metric_counts(&self) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = self
            .map
            .iter()
            .filter(|r| r.spec.metrics == Some(true))
            .map(|r| (r.key().clone(), r.members.len() as u32))
            .collect();
        out.sort();
        out
    }

    /// Memberships summed over every room (no allocation: a scrape with many rooms stays cheap).
    pub fn memberships(&self) -> u64 {
        self.map.iter().map(|r| r.members.len() as u64).sum()
    }

    pub fn counts(&self) -> Vec<(String, u32)> {
        self.map.iter().map(|r| (r.key().clone(), r.members.len() as u32)).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::conn::fixture::{conn, context, read_some};
    use crate::cork::CorkScope;

    fn spec(id: &str, max: Option<u32>) -> RoomSpec {
        RoomSpec { id: id.into(), name: id.into(), max_connections: max, ..RoomSpec::default() }
    }

    #[tokio::test]
    async fn join_and_leave_keep_both_sides_in_step() {
        let rooms = Rooms::new(true, None);
        let (a, _pa) = conn(1).await;
        assert_eq!(rooms.join(&a, "r"), Ok(true));
        assert_eq!(rooms.join(&a, "r"), Ok(false), "already a member");
        assert!(rooms.is_member(1, "r"));
        assert_eq!(a.rooms(), vec!["r".to_string()]);
        assert_eq!(rooms.info("r").map(|i| i.connections_count), Some(1));
        assert!(rooms.leave(&a, "r"));
        assert!(!rooms.leave(&a, "r"));
        assert_eq!(rooms.len(), 0, "an auto-created room goes with its last member");
        // Created rooms stay; leave_all empties a connection's set.
        assert!(rooms.create(spec("kept", None)));
        assert!(!rooms.create(spec("kept", None)), "the id is taken");
        rooms.join(&a, "kept").unwrap();
        rooms.join(&a, "other").unwrap();
        let mut left = rooms.leave_all(&a);
        left.sort();
        assert_eq!(left, ["kept", "other"]);
        assert!(a.rooms().is_empty());
        assert_eq!(rooms.counts(), vec![("kept".to_string(), 0)]);
    }

    #[tokio::test]
    async fn joins_are_refused_for_a_full_missing_or_bad_room_and_a_closing_connection() {
        let rooms = Rooms::new(false, None);
        let (a, _pa) = conn(1).await;
        let (b, _pb) = conn(2).await;
        assert_eq!(rooms.join(&a, "nope"), Err(JoinError::NotFound));
        assert_eq!(rooms.join(&a, ""), Err(JoinError::Invalid));
        assert_eq!(rooms.join(&a, &"x".repeat(MAX_ROOM_ID_BYTES + 1)), Err(JoinError::Invalid));
        rooms.create(spec("one", Some(1)));
        assert_eq!(rooms.join(&a, "one"), Ok(true));
        assert_eq!(rooms.join(&b, "one"), Err(JoinError::Full));
        b.abort();
        rooms.create(spec("two", None));
        assert_eq!(rooms.join(&b, "two"), Err(JoinError::Closed));
        // Deleting a room detaches its members.
        let members = rooms.delete("one").unwrap();
        assert_eq!(members.len(), 1);
        assert!(a.rooms().is_empty());
    }

    #[tokio::test]
    async fn fan_out_skips_and_counts_once_for_every_recipient() {
        let rooms = Rooms::new(true, None);
        let ctx = context(1 << 20, true);
        let mut peers = Vec::new();
        let mut conns = Vec::new();
        for id in 1..=3 {
            let (c, p) = conn(id).await;
            rooms.join(&c, "r").unwrap();
            conns.push(c);
            peers.push(p);
        }
        let msg = OutFrame::text("hi");
        assert_eq!(rooms.fan_out(&ctx, "r", &msg, Skip::Conn(2)), 2);
        assert_eq!(rooms.fan_out(&ctx, "r", &msg, Skip::Uuids(&[[1; 16], [3; 16]])), 1);
        assert_eq!(rooms.fan_out(&ctx, "missing", &msg, Skip::Conn(0)), 0);
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 3);
        assert_eq!(crate::engine::both(&ctx.stats.bytes_out), 6);
        let frame = &msg.bytes[..];
        assert_eq!(read_some(&mut peers[0]), frame);
        assert_eq!(read_some(&mut peers[1]), frame);
        assert_eq!(read_some(&mut peers[2]), frame);
    }

    #[tokio::test]
    async fn corked_fan_outs_share_one_buffer_and_keep_each_members_order() {
        let rooms = Rooms::new(true, None);
        let ctx = context(1 << 20, true);
        let (a, mut pa) = conn(1).await;
        let (b, mut pb) = conn(2).await;
        rooms.join(&a, "r").unwrap();
        rooms.join(&b, "r").unwrap();
        let (one, two, direct) = (OutFrame::text("one"), OutFrame::text("two"), OutFrame::text("direct"));
        {
            let _cork = CorkScope::begin();
            assert_eq!(rooms.fan_out(&ctx, "r", &one, Skip::Conn(0)), 2);
            assert_eq!(rooms.fan_out(&ctx, "r", &two, Skip::Conn(0)), 2);
            // A direct send delivers the pending fan-out first: `b` gets one, two, direct.
            assert_eq!(b.send(&ctx, &direct), SendStatus::Sent);
            assert!(read_some(&mut pa).is_empty(), "nothing leaves while corked");
        }
        let shared = [&one.bytes[..], &two.bytes[..]].concat();
        assert_eq!(read_some(&mut pa), shared);
        assert_eq!(read_some(&mut pb), [&shared[..], &direct.bytes[..]].concat());
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 5);
    }
}
