//! Room fan-out batching: consecutive broadcasts from one corked thread to the same members
//! share one buffer of frames instead of a copy in every member's queue.
//!
//! When the thread uncorks, each member gets the whole buffer with one write, straight from it
//! when the member has nothing queued. Any other send from this thread, and any fan-out
//! elsewhere, delivers the pending one first, so every connection still receives its frames in
//! the order they were sent.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::conn::{Conn, SendContext};
use crate::deflate::FrameCache;
use crate::engine::Stats;
use crate::outbox::{append, over_limit, OutFrame};

thread_local! {
    /// The corked thread's pending room fan-out.
    static SHARED: RefCell<Option<SharedFanout>> = const { RefCell::new(None) };
}

/// Which members a fan-out leaves out: the sender of a `room_message`, or `except` sockets.
#[derive(Clone, Copy)]
pub enum Skip<'a> {
    Conn(u32),
    Uuids(&'a [[u8; 16]]),
}

impl Skip<'_> {
    #[inline]
    pub fn matches(&self, conn: &Conn) -> bool {
        match self {
            Skip::Conn(id) => conn.id == *id,
            Skip::Uuids(uuids) => uuids.contains(&conn.uuid),
        }
    }
}

/// `Skip`, kept by a pending shared fan-out.
enum SkipKey {
    Conn(u32),
    Uuids(Vec<[u8; 16]>),
}

impl SkipKey {
    fn of(skip: Skip<'_>) -> Self {
        match skip {
            Skip::Conn(id) => SkipKey::Conn(id),
            Skip::Uuids(uuids) => SkipKey::Uuids(uuids.to_vec()),
        }
    }

    fn is(&self, skip: Skip<'_>) -> bool {
        match (self, skip) {
            (SkipKey::Conn(a), Skip::Conn(b)) => *a == b,
            (SkipKey::Uuids(a), Skip::Uuids(b)) => a.as_slice() == b,
            _ => false,
        }
    }
}

/// Where a shared fan-out goes: one room of one registry (or every connection of a server), to
/// the members it had when it started.
pub struct FanoutTarget<'a> {
    /// The registry's address: two servers on one thread never share a fan-out.
    pub registry: usize,
    /// The room id; "" (never a valid room id) for every connection.
    pub room: &'a str,
    pub skip: Skip<'a>,
    /// The registry's current membership version.
    pub version: u64,
}

/// Consecutive fan-outs from one corked thread to the same room (same skip, membership
/// unchanged), kept as one buffer of frames (see the module doc).
struct SharedFanout {
    registry: usize,
    room: String,
    skip: SkipKey,
    version: u64,
    members: Vec<Arc<Conn>>,
    /// Members that compress (permessage-deflate): each message is sent to them at once, one
    /// compression per parameter set, and never through the shared buffer.
    deflated: Vec<Arc<Conn>>,
    /// The frames, back to back.
    bytes: Vec<u8>,
    /// (end of the frame in `bytes`, payload length, binary) of each message.
    msgs: Vec<(usize, usize, bool)>,
    stats: Arc<Stats>,
    limit: usize,
    close_on_limit: bool,
}

impl SharedFanout {
    fn push(&mut self, frame: &OutFrame) {
        self.bytes.extend_from_slice(&frame.bytes);
        self.msgs.push((self.bytes.len(), frame.payload_len(), frame.is_binary()));
    }

    fn extends(&self, target: &FanoutTarget<'_>) -> bool {
        self.registry == target.registry
            && self.version == target.version
            && self.room == target.room
            && self.skip.is(target.skip)
    }

    /// Writes (or queues) the frames to every member. A member with nothing queued, on an
    /// uncorked thread, is written straight from the shared buffer; what the kernel does not take
    /// is queued message by message within the backpressure limit, as separate sends would be.
    /// Members counted at fan-out time that take a message after all (closed since, or over the
    /// limit) are taken out of the sent counters again.
    fn deliver(self) {
        let mut tally = Tally::default();
        for conn in &self.members {
            self.deliver_to(conn, &mut tally);
        }
        for (binary, &(msgs, bytes)) in [false, true].into_iter().zip(&tally.lost) {
            if msgs > 0 {
                self.stats.uncount_out(binary, msgs, bytes);
            }
        }
        if tally.dropped > 0 {
            self.stats.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
        }
    }

    fn deliver_to(&self, conn: &Arc<Conn>, tally: &mut Tally) {
        let total = self.bytes.len();
        let Ok(mut out) = conn.out.lock() else { return };
        if conn.is_closing() || out.is_shut() {
            for &(_, payload_len, binary) in &self.msgs {
                tally.lose(payload_len, binary);
            }
            return;
        }
        // `next`: the first message still to place; `start`: where its frame begins.
        let (mut next, mut start, mut queued) = (0, 0, out.pending());
        if out.can_write_now() {
            let Some(written) = conn.write_now(&mut out, &self.bytes) else { return };
            if written == total {
                return;
            }
            next = self.msgs.partition_point(|m| m.0 <= written);
            start = if next == 0 { 0 } else { self.msgs[next - 1].0 };
            if written > start {
                // The kernel stopped inside this frame: the rest of it must follow.
                let end = self.msgs[next].0;
                append(&mut out.buf, &self.bytes[written..end]);
                queued = end - written;
                next += 1;
                start = end;
            }
        }
        let mut refused = false;
        if start < total {
            if !over_limit(queued, total - start, self.limit) {
                append(&mut out.buf, &self.bytes[start..]);
            } else {
                for &(end, payload_len, binary) in &self.msgs[next..] {
                    let len = end - start;
                    if refused || over_limit(queued, len, self.limit) {
                        if !refused {
                            tally.dropped += 1;
                        }
                        tally.lose(payload_len, binary);
                        refused = self.close_on_limit;
                    } else {
                        append(&mut out.buf, &self.bytes[start..end]);
                        queued += len;
                    }
                    start = end;
                }
            }
        }
        conn.appended(&mut out);
        conn.status_after_send(&mut out, self.limit);
        drop(out);
        if refused {
            conn.close(1008, "Send buffer limit exceeded");
        }
    }
}

/// What a shared fan-out's delivery takes back from the counters.
#[derive(Default, Debug, PartialEq, Eq)]
struct Tally {
    /// (messages, payload bytes) lost, per data frame type (text, binary).
    lost: [(u64, u64); 2],
    dropped: u64,
}

impl Tally {
    fn lose(&mut self, payload_len: usize, binary: bool) {
        let lost = &mut self.lost[usize::from(binary)];
        lost.0 += 1;
        lost.1 += payload_len as u64;
    }
}

/// Delivers this thread's pending shared fan-out, so that what is sent next comes after it.
#[inline]
pub fn settle() {
    if let Some(shared) = SHARED.with_borrow_mut(Option::take) {
        shared.deliver();
    }
}

/// A fan-out from a corked thread: `frame` joins the thread's pending shared fan-out when that
/// one has the same target (and membership version); otherwise the pending one is delivered and
/// a new one starts with the members `list` gives (None: no such room) together with the
/// membership version they were listed under, less those the target skips and those closing.
/// Counts the messages sent; returns the recipients.
pub fn fan_out_shared(
    target: FanoutTarget<'_>,
    frame: &OutFrame,
    ctx: &SendContext,
    list: impl FnOnce() -> Option<(Vec<Arc<Conn>>, u64)>,
) -> u32 {
    let appended = SHARED.with_borrow_mut(|shared| match shared {
        Some(s) if s.extends(&target) => {
            s.push(frame);
            Some((s.members.len() as u32, s.deflated.clone()))
        }
        _ => None,
    });
    let delivered = match appended {
        Some((n, deflated)) => n + send_deflated(&deflated, frame, ctx),
        None => {
            settle();
            let Some((mut members, version)) = list() else { return 0 };
            // One pass, and no second list unless a member compresses: a partition into two
            // new vectors grew both, member by member, on every shared fan-out.
            let mut deflated = Vec::new();
            members.retain(|c| {
                if target.skip.matches(c) || c.is_closing() {
                    false
                } else if c.deflate.is_some() {
                    deflated.push(Arc::clone(c));
                    false
                } else {
                    true
                }
            });
            if members.is_empty() && deflated.is_empty() {
                return 0;
            }
            let n = members.len() as u32 + send_deflated(&deflated, frame, ctx);
            let mut shared = SharedFanout {
                registry: target.registry,
                room: target.room.to_string(),
                skip: SkipKey::of(target.skip),
                version,
                members,
                deflated,
                bytes: Vec::with_capacity(frame.bytes.len() * 32),
                msgs: Vec::with_capacity(32),
                stats: ctx.stats.clone(),
                limit: ctx.max_backpressure,
                close_on_limit: ctx.close_on_limit,
            };
            shared.push(frame);
            SHARED.with_borrow_mut(|s| *s = Some(shared));
            n
        }
    };
    ctx.stats.count_out_n(delivered, frame.is_binary(), frame.payload_len());
    delivered
}

/// Sends one fan-out message to its compressing members (uncounted); returns how many took it.
fn send_deflated(members: &[Arc<Conn>], frame: &OutFrame, ctx: &SendContext) -> u32 {
    let mut cache = FrameCache::default();
    members
        .iter()
        .filter(|c| c.send_unsettled(ctx, frame, &mut cache) != crate::outbox::SendStatus::Dropped)
        .count() as u32
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::conn::fixture::{conn, context, read_some};
    use crate::cork::CorkScope;
    use crate::outbox::SendStatus;

    fn target(skip: Skip<'_>, version: u64) -> FanoutTarget<'_> {
        FanoutTarget { registry: 1, room: "r", skip, version }
    }

    #[tokio::test]
    async fn a_member_over_its_limit_loses_the_messages_and_the_counters_are_taken_back() {
        let ctx = context(100, true);
        let (a, mut pa) = conn(1).await;
        let (b, mut pb) = conn(2).await;
        let early = OutFrame::binary(&[0; 60]);
        let msg = OutFrame::binary(&[1; 40]);
        {
            let _cork = CorkScope::begin();
            // `b` already has 62 bytes corked: the two 42-byte frames do not fit behind them.
            assert_eq!(b.send(&ctx, &early), SendStatus::Buffered);
            let members = || Some((vec![a.clone(), b.clone()], 7));
            assert_eq!(fan_out_shared(target(Skip::Conn(0), 7), &msg, &ctx, members), 2);
            assert_eq!(fan_out_shared(target(Skip::Conn(0), 7), &msg, &ctx, || None), 2, "extends");
            assert_eq!(crate::engine::both(&ctx.stats.messages_out), 5, "counted when sent");
        }
        // Counted back: b's two; one drop (the policy closes b, so its second is not a drop).
        assert_eq!(crate::engine::both(&ctx.stats.messages_out), 3);
        assert_eq!(crate::engine::both(&ctx.stats.bytes_out), 60 + 2 * 40);
        assert_eq!(ctx.stats.dropped.load(Ordering::Relaxed), 1);
        assert!(b.is_closing() && !a.is_closing());
        assert_eq!(read_some(&mut pa), [&msg.bytes[..], &msg.bytes[..]].concat());
        let got = read_some(&mut pb);
        assert_eq!(got, [&early.bytes[..], &frame_close_1008()[..]].concat());
    }

    fn frame_close_1008() -> bytes::Bytes {
        crate::frame::encode_close(1008, "Send buffer limit exceeded")
    }

    #[tokio::test]
    async fn a_changed_target_or_membership_starts_a_new_fanout() {
        let ctx = context(1 << 20, true);
        let (a, mut pa) = conn(1).await;
        let (b, mut pb) = conn(2).await;
        let (one, two, three) = (OutFrame::text("1"), OutFrame::text("2"), OutFrame::text("3"));
        let both = || Some((vec![a.clone(), b.clone()], 1));
        {
            let _cork = CorkScope::begin();
            assert_eq!(fan_out_shared(target(Skip::Conn(0), 1), &one, &ctx, both), 2);
            // Another skip: the first fan-out is delivered (queued, corked) and a new one starts.
            assert_eq!(fan_out_shared(target(Skip::Conn(1), 1), &two, &ctx, both), 1);
            // The membership changed: the members are listed again.
            let (a2, b2) = (a.clone(), b.clone());
            assert_eq!(fan_out_shared(target(Skip::Conn(1), 2), &three, &ctx, || Some((vec![a2, b2], 2))), 1);
        }
        assert_eq!(read_some(&mut pa), &one.bytes[..]);
        assert_eq!(read_some(&mut pb), [&one.bytes[..], &two.bytes[..], &three.bytes[..]].concat());
    }

    #[test]
    fn skip_keys_match_only_the_same_skip() {
        let uuids = [[1u8; 16], [2u8; 16]];
        assert!(SkipKey::of(Skip::Conn(3)).is(Skip::Conn(3)));
        assert!(!SkipKey::of(Skip::Conn(3)).is(Skip::Conn(4)));
        assert!(SkipKey::of(Skip::Uuids(&uuids)).is(Skip::Uuids(&uuids)));
        assert!(!SkipKey::of(Skip::Uuids(&uuids)).is(Skip::Uuids(&uuids[..1])));
        assert!(!SkipKey::of(Skip::Uuids(&[])).is(Skip::Conn(0)));
    }

    #[test]
    fn tally_counts_lost_messages_and_bytes() {
        let mut tally = Tally::default();
        tally.lose(10, false);
        tally.lose(5, false);
        tally.lose(7, true);
        assert_eq!(tally, Tally { lost: [(2, 15), (1, 7)], dropped: 0 });
    }

    #[test]
    fn settle_without_a_pending_fanout_does_nothing() {
        settle();
        assert!(SHARED.with_borrow(Option::is_none));
    }
}
