//! Room history in Redis, for a cluster: per room a stream of its `room_message` frames and a
//! hash with the room's epoch (`e`), newest offset (`s`) and stored bytes (`b`). Only two Lua
//! scripts touch them. `PUBLISH` numbers a message, stores it, trims the stream to the room's
//! limits and publishes the envelope, in one step, so every node receives a room's messages in
//! offset order, and the node that published it delivers it when it comes back, like every
//! other node. `READ` reports the epoch, the newest offset and the messages after an offset.
//!
//! Stream entries carry explicit ids `<offset>-0`, so reading "after offset N" is an XRANGE.
//! A room whose hash is gone (expired, Redis restarted empty) starts a new epoch, so offsets of
//! the old one are known to mean nothing.

use std::sync::atomic::Ordering;
use std::sync::LazyLock;
use std::time::Duration;

use redis::{Script, Value};

use super::{Cluster, Outbound};
use crate::error::{ClusterError, Result};
use crate::history::{new_epoch, HistoryLimits};

/// How long a room's epoch and offset outlive its last message, so a client that comes back
/// after its messages expired learns that it missed nothing rather than a new epoch.
pub const META_TTL_MS: u64 = 24 * 3600 * 1000;
/// Most stream entries one publish trims (the rest go with the next ones).
const MAX_TRIM_PER_PUBLISH: u32 = 1000;
/// Messages a stream may hold past its size before a publish trims it (one batch every
/// `TRIM_SLACK` publishes instead of one entry per publish).
const TRIM_SLACK: u32 = 32;

/// KEYS: stream, meta. ARGV: channel, envelope head, frame head, frame tail, size, ttl ms,
/// bytes, wall ms now, fresh epoch, reset ("1": start a new epoch), skip ids, meta ttl ms,
/// count slack, most entries trimmed at once. The stream is trimmed in batches: once it is
/// `TRIM_SLACK` past its size, or over its bytes, or its oldest message (`f` in the hash) expired;
/// reads leave out what is past the size meanwhile.
static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local meta = redis.call('HMGET', KEYS[2], 'e', 'f')
local epoch = meta[1]
if (not epoch) or ARGV[10] == '1' then
  epoch = ARGV[9]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 's', 0, 'b', 0)
  meta[2] = false
end
local offset = redis.call('HINCRBY', KEYS[2], 's', 1)
local frame = ARGV[3] .. offset .. ARGV[4]
redis.call('XADD', KEYS[1], offset .. '-0', 'f', frame, 't', ARGV[8], 'x', ARGV[11])
local bytes = redis.call('HINCRBY', KEYS[2], 'b', #frame)
local len = redis.call('XLEN', KEYS[1])
local first = tonumber(meta[2] or ARGV[8])
if len == 1 then
  first = tonumber(ARGV[8])
  redis.call('HSET', KEYS[2], 'f', ARGV[8])
end
local size = tonumber(ARGV[5])
local limit = tonumber(ARGV[7])
local cutoff = tonumber(ARGV[8]) - tonumber(ARGV[6])
if len > size + tonumber(ARGV[13]) or bytes > limit or first <= cutoff then
  local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[14])
  local ids = {}
  local freed = 0
  for _, e in ipairs(batch) do
    local f = e[2]
    if len <= size and bytes - freed <= limit and tonumber(f[4]) > cutoff then
      first = tonumber(f[4])
      break
    end
    ids[#ids + 1] = e[1]
    freed = freed + #f[2]
    len = len - 1
  end
  if #ids > 0 then
    redis.call('XDEL', KEYS[1], unpack(ids))
    redis.call('HINCRBY', KEYS[2], 'b', -freed)
  end
  if len == 0 then first = tonumber(ARGV[8]) end
  redis.call('HSET', KEYS[2], 'f', first)
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[12])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. offset .. ' ' .. epoch .. '\n' .. frame)
return offset
",
    )
});

/// KEYS: stream, meta. ARGV: fresh epoch, after offset ("": none), count, meta ttl ms.
/// Returns { epoch, newest offset, entries after the offset }.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 's', 0, 'b', 0)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
local top = tonumber(redis.call('HGET', KEYS[2], 's'))
local entries = {}
if ARGV[2] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[2]) + 1) .. '-0', '+', 'COUNT', ARGV[3])
end
return { epoch, top, entries }
",
    )
});

fn stream_key(prefix: &str, room: &str) -> String {
    format!("{prefix}:history:{room}")
}

fn meta_key(prefix: &str, room: &str) -> String {
    format!("{prefix}:history-meta:{room}")
}

/// A message for a room's history in Redis, waiting in the outbound queue.
pub struct NumberedPublish {
    room: String,
    envelope_head: Vec<u8>,
    frame_head: String,
    frame_tail: String,
    limits: HistoryLimits,
    skip: Vec<u8>,
    reset: bool,
}

/// One stored message as `READ` returns it.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub offset: u64,
    pub frame: String,
    /// Wall-clock ms when it was stored.
    pub wall: u64,
    pub skip: Vec<[u8; 16]>,
}

/// A room's history in Redis as one `READ` saw it.
#[derive(Debug, Clone)]
pub struct StoredHistory {
    pub epoch: String,
    /// Newest offset ever given in this epoch.
    pub top: u64,
    /// The messages after the asked offset that are still kept, oldest first.
    pub messages: Vec<StoredMessage>,
}

impl Cluster {
    /// Queues a message for `room`'s history in Redis: Redis numbers it, and every node (this
    /// one too) delivers it when the room's channel brings it back. `frame_head` and
    /// `frame_tail` are the frame's text before and after its offset. False when the queue is
    /// full or the envelope cannot be encoded (counted as dropped).
    pub fn publish_numbered(
        &self,
        room: &str,
        frame_head: String,
        frame_tail: String,
        except: &[[u8; 16]],
        limits: HistoryLimits,
    ) -> bool {
        let Ok(envelope_head) = super::envelope::history_head(&self.node_id, room, except) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        let reset = self.lost().remove(room);
        let skip = except.iter().flatten().copied().collect();
        let publish = NumberedPublish {
            room: room.to_string(),
            envelope_head,
            frame_head,
            frame_tail,
            limits,
            skip,
            reset,
        };
        let queued = self.outbound.try_send(Outbound::Numbered(Box::new(publish))).is_ok();
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.mark_lost(room);
        }
        queued
    }

    /// A message of `room` could not go through Redis (delivered here only, or dropped): the
    /// room's next message in Redis starts a new epoch, so no client takes the gap for a
    /// complete history.
    pub fn mark_lost(&self, room: &str) {
        self.lost().insert(room.to_string());
    }

    fn lost(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.lost_rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds the script call for a queued message to a pipeline.
    pub(super) fn add_numbered(&self, pipe: &mut redis::Pipeline, p: &NumberedPublish) {
        let prefix = &self.config.prefix;
        let channel = self.channel_of(Some(&p.room));
        let mut invocation = PUBLISH.prepare_invoke();
        invocation
            .key(stream_key(prefix, &p.room))
            .key(meta_key(prefix, &p.room))
            .arg(channel)
            .arg(p.envelope_head.as_slice())
            .arg(p.frame_head.as_str())
            .arg(p.frame_tail.as_str())
            .arg(p.limits.size)
            .arg(p.limits.ttl_ms)
            .arg(p.limits.bytes)
            .arg(crate::clock::wall_ms())
            .arg(new_epoch())
            .arg(if p.reset { "1" } else { "0" })
            .arg(p.skip.as_slice())
            .arg(META_TTL_MS)
            .arg(TRIM_SLACK)
            .arg(MAX_TRIM_PER_PUBLISH);
        pipe.invoke_script(&invocation).ignore();
    }

    /// Loads the scripts into Redis (after every new connection: Redis may have restarted).
    pub(super) async fn load_scripts(&self, conn: &mut super::link::Connection) -> redis::RedisResult<()> {
        PUBLISH.prepare_invoke().load_async(conn).await?;
        READ.prepare_invoke().load_async(conn).await?;
        Ok(())
    }

    /// Reads `room`'s history in Redis: its epoch, newest offset and, when `after` is given, at
    /// most `limit` kept messages after it (within the room's `limits`, which the stream may
    /// briefly exceed until its next trim). A room Redis holds nothing of gets a new epoch.
    /// Fails within `timeout` when Redis does not answer.
    pub async fn read_history(
        &self,
        room: &str,
        after: Option<u64>,
        limit: usize,
        limits: HistoryLimits,
        timeout: Duration,
    ) -> Result<StoredHistory> {
        let (ttl_ms, size) = (limits.ttl_ms, limits.size);
        let url = self.config.redis_url.as_str();
        let prefix = &self.config.prefix;
        let read = async {
            let mut conn = self.link.connection().await?;
            let mut invocation = READ.prepare_invoke();
            invocation
                .key(stream_key(prefix, room))
                .key(meta_key(prefix, room))
                .arg(new_epoch())
                .arg(after.map(|a| a.to_string()).unwrap_or_default())
                .arg(limit)
                .arg(META_TTL_MS);
            invocation.invoke_async::<Value>(&mut conn).await
        };
        let value = match tokio::time::timeout(timeout, read).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(ClusterError::from_redis(url, &e).into()),
            Err(_) => {
                return Err(ClusterError::Unreachable(url.to_string(), "no answer in time".into()).into())
            }
        };
        let mut stored = parse_read(&value)
            .ok_or_else(|| ClusterError::Unreachable(url.to_string(), "unexpected history reply".into()))?;
        // Expired messages may still be in the stream until the next publish trims them.
        let cutoff = crate::clock::wall_ms().saturating_sub(ttl_ms);
        let oldest = stored.top.saturating_sub(size as u64);
        stored.messages.retain(|m| m.wall > cutoff && m.offset > oldest);
        Ok(stored)
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// `{ epoch, top, entries }`, each entry `{ "<offset>-0", { f, frame, t, wall, x, skip } }`.
fn parse_read(v: &Value) -> Option<StoredHistory> {
    let Value::Array(parts) = v else { return None };
    let [epoch, top, entries] = parts.as_slice() else { return None };
    let mut messages = Vec::new();
    if let Value::Array(entries) = entries {
        for entry in entries {
            messages.push(parse_entry(entry)?);
        }
    }
    Some(StoredHistory { epoch: text(epoch)?, top: number(top)?, messages })
}

fn parse_entry(v: &Value) -> Option<StoredMessage> {
    let Value::Array(pair) = v else { return None };
    let [id, fields] = pair.as_slice() else { return None };
    let offset = text(id)?.split_once('-')?.0.parse().ok()?;
    let Value::Array(fields) = fields else { return None };
    let mut frame = None;
    let mut wall = 0;
    let mut skip = Vec::new();
    for kv in fields.chunks_exact(2) {
        match text(&kv[0])?.as_str() {
            "f" => frame = text(&kv[1]),
            "t" => wall = number(&kv[1])?,
            "x" => {
                if let Value::BulkString(b) = &kv[1] {
                    skip = b.chunks_exact(16).filter_map(|id| id.try_into().ok()).collect();
                }
            }
            _ => {}
        }
    }
    Some(StoredMessage { offset, frame: frame?, wall, skip })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_read_reply_is_parsed_and_bad_ones_are_refused() {
        let entry = Value::Array(vec![
            bulk("7-0"),
            Value::Array(vec![
                bulk("f"),
                bulk("{\"offset\":7}"),
                bulk("t"),
                bulk("1234"),
                bulk("x"),
                Value::BulkString(vec![9; 32]),
            ]),
        ]);
        let reply = Value::Array(vec![bulk("ep"), Value::Int(9), Value::Array(vec![entry])]);
        let read = parse_read(&reply).expect("parsed");
        assert_eq!((read.epoch.as_str(), read.top), ("ep", 9));
        assert_eq!(read.messages.len(), 1);
        assert_eq!(read.messages[0].offset, 7);
        assert_eq!(read.messages[0].wall, 1234);
        assert_eq!(read.messages[0].skip, vec![[9; 16], [9; 16]]);
        assert!(parse_read(&Value::Array(vec![bulk("ep")])).is_none());
        let no_frame = Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("t"), bulk("1")])]);
        let reply = Value::Array(vec![bulk("ep"), Value::Int(1), Value::Array(vec![no_frame])]);
        assert!(parse_read(&reply).is_none());
    }
}
