//! A room's message history: the frames published to it, each under an `offset` that grows by
//! one per message within the room's `epoch`, kept in a ring bounded by count, bytes and age.
//!
//! The epoch names one unbroken sequence of offsets: it is drawn at random when the history
//! starts, so a client holding offsets of an earlier life of the room (a restart, a room
//! deleted and created again) can tell that they mean nothing here.

use std::collections::VecDeque;
use std::sync::Arc;

/// Bounds of one room's history; a message past any of them pushes the oldest ones out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Messages kept.
    pub size: usize,
    /// How long a message is kept, in milliseconds.
    pub ttl_ms: u64,
    /// Frame bytes kept.
    pub bytes: usize,
}

/// One stored message: the whole `room_message` frame text, offset included.
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: u64,
    /// Engine monotonic ms when it was stored (for the TTL).
    pub at: u64,
    /// Wall-clock ms when it was stored (reported by `server.history`).
    pub wall: u64,
    pub frame: Arc<str>,
    /// Sockets it was not for (its sender, a broadcast's `except`): a replay skips them too.
    pub skip: Box<[[u8; 16]]>,
}

/// What a client's position (epoch, offset) means against a history.
#[derive(Debug, PartialEq, Eq)]
pub enum Position {
    /// Every message after it is still kept: replay them.
    Complete,
    /// Some message after it is gone (trimmed, expired) or the epoch is another one.
    Gap,
    /// An offset this history has not reached: the client is wrong.
    Future,
}

pub struct History {
    pub limits: HistoryLimits,
    pub epoch: String,
    /// Offset of the newest message ever stored (0: none yet; the first message is 1).
    last: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// False for a cluster room's mirror that has not learnt its place in Redis's history yet
    /// (it then reports no position and takes the first offset it is given).
    known: bool,
}

/// A fresh random epoch: 64 bits from the OS generator, as 16 hex digits.
pub fn new_epoch() -> String {
    let bytes = uuid::Uuid::new_v4();
    let b = bytes.as_bytes();
    b[..8].iter().map(|x| format!("{x:02x}")).collect()
}

impl History {
    pub fn new(limits: HistoryLimits) -> Self {
        History { limits, epoch: new_epoch(), last: 0, entries: VecDeque::new(), bytes: 0, known: true }
    }

    /// A cluster room's mirror: a local copy of the messages this node delivered from the
    /// room's history in Redis, numbered by Redis, not by this node.
    pub fn mirror(limits: HistoryLimits) -> Self {
        History { known: false, epoch: String::new(), ..History::new(limits) }
    }

    /// Whether this history knows its epoch and newest offset.
    pub fn is_known(&self) -> bool {
        self.known
    }

    /// A mirror learns where the history in Redis stands; the messages it holds are dropped
    /// when they do not lead up to it.
    pub fn set_position(&mut self, epoch: &str, offset: u64) {
        if self.known && self.epoch == epoch && self.last == offset {
            return;
        }
        self.entries.clear();
        self.bytes = 0;
        self.epoch = epoch.to_string();
        self.last = offset;
        self.known = true;
    }

    /// A mirror stops following Redis (its channel was unsubscribed, or the subscription lost):
    /// what it holds may have gaps from here on.
    pub fn forget(&mut self) {
        self.known = false;
        self.entries.clear();
        self.bytes = 0;
    }

    /// A mirror takes the message Redis numbered `offset` in `epoch`. False for a message it
    /// already has (or an older one): the caller must not deliver it again. A new epoch, or a
    /// message past a gap, starts the kept run afresh.
    pub fn accept(
        &mut self,
        epoch: &str,
        offset: u64,
        frame: Arc<str>,
        skip: Box<[[u8; 16]]>,
        now: u64,
        wall: u64,
    ) -> bool {
        if self.known && self.epoch == epoch && offset <= self.last {
            return false;
        }
        if !self.known || self.epoch != epoch || offset != self.last.saturating_add(1) {
            self.set_position(epoch, offset.saturating_sub(1));
        }
        self.push(frame, skip, now, wall);
        true
    }

    /// Offset of the newest message (0 when none was ever stored).
    pub fn last_offset(&self) -> u64 {
        self.last
    }

    /// Messages kept right now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The next message's offset, before it is stored: the frame embeds it.
    pub fn next_offset(&self) -> u64 {
        self.last.saturating_add(1)
    }

    /// Stores the frame of the message with offset `next_offset()`, then trims to the limits.
    /// `now`: engine monotonic ms; `wall`: wall-clock ms.
    pub fn push(&mut self, frame: Arc<str>, skip: Box<[[u8; 16]]>, now: u64, wall: u64) -> u64 {
        let offset = self.next_offset();
        self.last = offset;
        self.bytes = self.bytes.saturating_add(frame.len());
        self.entries.push_back(Entry { offset, at: now, wall, frame, skip });
        self.trim(now);
        offset
    }

    /// Drops what is over the count, byte or age limit.
    pub fn trim(&mut self, now: u64) {
        while let Some(front) = self.entries.front() {
            let expired = now.saturating_sub(front.at) >= self.limits.ttl_ms;
            if self.entries.len() > self.limits.size || self.bytes > self.limits.bytes || expired {
                self.bytes = self.bytes.saturating_sub(front.frame.len());
                self.entries.pop_front();
            } else {
                break;
            }
        }
    }

    /// Where a client that has seen everything up to `offset` in `epoch` stands.
    pub fn position(&mut self, epoch: &str, offset: u64, now: u64) -> Position {
        if !self.known || epoch != self.epoch {
            return Position::Gap;
        }
        if offset > self.last {
            return Position::Future;
        }
        if offset == self.last {
            return Position::Complete;
        }
        self.trim(now);
        match self.entries.front() {
            Some(first) if first.offset <= offset.saturating_add(1) => Position::Complete,
            _ => Position::Gap,
        }
    }

    /// Messages after `since` (all kept ones when None), oldest first, at most `limit`.
    pub fn since(&mut self, since: Option<u64>, limit: usize, now: u64) -> Vec<Entry> {
        self.trim(now);
        let after = since.unwrap_or(0);
        let start = self.entries.partition_point(|e| e.offset <= after);
        self.entries.range(start..).take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, ttl_ms: u64, bytes: usize) -> HistoryLimits {
        HistoryLimits { size, ttl_ms, bytes }
    }

    fn frame(n: u64) -> Arc<str> {
        Arc::from(format!("m{n:04}"))
    }

    #[test]
    fn offsets_grow_by_one_from_one() {
        let mut h = History::new(limits(10, 1_000, 1 << 20));
        assert_eq!(h.last_offset(), 0);
        assert_eq!(h.push(frame(1), Box::new([]), 0, 0), 1);
        assert_eq!(h.push(frame(2), Box::new([]), 0, 0), 2);
        assert_eq!(h.next_offset(), 3);
        assert_eq!(h.epoch.len(), 16);
        assert_ne!(h.epoch, History::new(h.limits).epoch, "each history draws its own epoch");
    }

    #[test]
    fn count_limit_keeps_the_newest() {
        let mut h = History::new(limits(3, 1_000, 1 << 20));
        for n in 1..=5 {
            h.push(frame(n), Box::new([]), 0, 0);
        }
        let kept: Vec<u64> = h.since(None, 100, 0).iter().map(|e| e.offset).collect();
        assert_eq!(kept, vec![3, 4, 5]);
    }

    #[test]
    fn byte_limit_counts_frame_bytes() {
        // Each frame is 5 bytes: 12 bytes hold two.
        let mut h = History::new(limits(100, 1_000, 12));
        for n in 1..=4 {
            h.push(frame(n), Box::new([]), 0, 0);
        }
        assert_eq!(h.len(), 2);
        assert_eq!(h.since(None, 100, 0)[0].offset, 3);
    }

    #[test]
    fn ttl_expires_old_messages() {
        let mut h = History::new(limits(100, 50, 1 << 20));
        h.push(frame(1), Box::new([]), 0, 0);
        h.push(frame(2), Box::new([]), 40, 0);
        assert_eq!(h.since(None, 100, 49).len(), 2);
        assert_eq!(h.since(None, 100, 60).len(), 1, "the first is 60 ms old");
        assert_eq!(h.since(None, 100, 100).len(), 0);
        assert_eq!(h.last_offset(), 2, "expiry does not reset offsets");
    }

    #[test]
    fn positions() {
        let mut h = History::new(limits(3, 1_000, 1 << 20));
        let epoch = h.epoch.clone();
        assert_eq!(h.position(&epoch, 0, 0), Position::Complete, "nothing published yet");
        for n in 1..=5 {
            h.push(frame(n), Box::new([]), 0, 0);
        }
        assert_eq!(h.position(&epoch, 5, 0), Position::Complete);
        assert_eq!(h.position(&epoch, 2, 0), Position::Complete, "3, 4, 5 are kept");
        assert_eq!(h.position(&epoch, 1, 0), Position::Gap, "2 is gone");
        assert_eq!(h.position(&epoch, 6, 0), Position::Future);
        assert_eq!(h.position("other", 5, 0), Position::Gap);
    }

    #[test]
    fn a_mirror_follows_the_offsets_it_is_given() {
        let mut m = History::mirror(limits(10, 1_000, 1 << 20));
        assert!(!m.is_known());
        assert_eq!(m.position("e", 0, 0), Position::Gap, "an unknown mirror vouches for nothing");
        assert!(m.accept("e", 7, frame(7), Box::new([]), 0, 0));
        assert!(!m.accept("e", 7, frame(7), Box::new([]), 0, 0), "a duplicate");
        assert!(!m.accept("e", 3, frame(3), Box::new([]), 0, 0), "an older one");
        assert!(m.accept("e", 8, frame(8), Box::new([]), 0, 0));
        assert_eq!(m.position("e", 6, 0), Position::Complete, "7 and 8 are kept");
        assert_eq!(m.position("e", 5, 0), Position::Gap);
        assert!(m.accept("e", 11, frame(11), Box::new([]), 0, 0), "past a gap");
        assert_eq!(m.position("e", 8, 0), Position::Gap, "9 and 10 never came");
        assert_eq!(m.position("e", 10, 0), Position::Complete);
        assert!(m.accept("f", 1, frame(1), Box::new([]), 0, 0), "a new epoch");
        assert_eq!(m.last_offset(), 1);
        m.set_position("f", 4);
        assert_eq!(m.since(None, 10, 0).len(), 0, "what does not lead up to 4 is dropped");
        assert!(!m.accept("f", 4, frame(4), Box::new([]), 0, 0));
        m.forget();
        assert_eq!(m.position("f", 4, 0), Position::Gap);
    }

    #[test]
    fn since_and_limit() {
        let mut h = History::new(limits(10, 1_000, 1 << 20));
        for n in 1..=6 {
            h.push(frame(n), Box::new([]), 0, 0);
        }
        let got: Vec<u64> = h.since(Some(2), 3, 0).iter().map(|e| e.offset).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert!(h.since(Some(6), 10, 0).is_empty());
        assert!(h.since(Some(99), 10, 0).is_empty());
    }
}
