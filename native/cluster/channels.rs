//! Which room channels this node wants, counted by local members, and the replies waiting for a
//! subscription to be confirmed.
//!
//! A room's channel is wanted from its first local member's join until a linger after its last
//! member left. A join that makes the node subscribe does not answer (`room_joined`) until Redis
//! confirmed the SUBSCRIBE: from then on Redis forwards every message published to the room, so
//! a message published after the member saw `room_joined` reaches it. Replies about a room
//! whose subscription is pending (`room_joined`, then maybe `room_left`) wait in order with it.
//! While the subscriber is disconnected, joins are answered at once (cross-node delivery is
//! down anyway) and the channels are subscribed again on reconnect.
//!
//! Pure bookkeeping: no I/O, so it has unit tests; `T` is a reply to send.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// SUBSCRIBE sent (or about to be), not yet confirmed.
    Subscribing,
    /// Confirmed, or wanted while the subscriber is away (subscribed again on reconnect).
    Active,
    /// No local member left; unsubscribed when the linger of this generation ends.
    Lingering(u64),
}

struct Entry<T> {
    members: u32,
    state: State,
    waiting: Vec<T>,
}

/// What a join or reply asks of the caller.
#[derive(Debug, PartialEq)]
pub enum Reply<T> {
    /// Send it now.
    Now(T),
    /// Kept until the subscription is confirmed.
    Deferred,
}

/// The subscriber's work after a membership change.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    None,
    /// Ask the subscriber to SUBSCRIBE the room's channel.
    Subscribe,
    /// Start the linger of this generation; then call `linger_ended`.
    Linger(u64),
}

/// The room channels of one node.
pub struct Channels<T> {
    rooms: HashMap<String, Entry<T>>,
    connected: bool,
    generation: u64,
}

impl<T> Default for Channels<T> {
    fn default() -> Self {
        Channels { rooms: HashMap::new(), connected: false, generation: 0 }
    }
}

impl<T> Channels<T> {
    /// A local member joined the room; `reply` is its `room_joined`.
    pub fn joined(&mut self, room: &str, reply: T) -> (Reply<T>, Work) {
        let connected = self.connected;
        let entry = self.rooms.entry(room.to_string()).or_insert_with(|| Entry {
            members: 0,
            state: if connected { State::Subscribing } else { State::Active },
            waiting: Vec::new(),
        });
        entry.members = entry.members.saturating_add(1);
        match entry.state {
            State::Lingering(_) => {
                entry.state = State::Active;
                (Reply::Now(reply), Work::None)
            }
            State::Subscribing => {
                // A pending subscription always has its first join waiting.
                let first = entry.waiting.is_empty();
                entry.waiting.push(reply);
                (Reply::Deferred, if first { Work::Subscribe } else { Work::None })
            }
            // New while disconnected: subscribed on reconnect; a command too, in case the
            // subscriber is reconnecting right now and has built its list already.
            State::Active if entry.members == 1 => (Reply::Now(reply), Work::Subscribe),
            State::Active => (Reply::Now(reply), Work::None),
        }
    }

    /// A reply about the room that must not overtake a pending `room_joined`.
    pub fn in_order(&mut self, room: &str, reply: T) -> Reply<T> {
        match self.rooms.get_mut(room) {
            Some(e) if e.state == State::Subscribing => {
                e.waiting.push(reply);
                Reply::Deferred
            }
            _ => Reply::Now(reply),
        }
    }

    /// `n` local members left the room.
    pub fn left(&mut self, room: &str, n: u32) -> Work {
        let Some(entry) = self.rooms.get_mut(room) else {
            return Work::None;
        };
        entry.members = entry.members.saturating_sub(n);
        if entry.members > 0 || matches!(entry.state, State::Lingering(_)) {
            return Work::None;
        }
        if entry.state == State::Subscribing {
            // Still pending: the confirmation moves it to lingering (see `subscribed`).
            return Work::None;
        }
        self.generation = self.generation.wrapping_add(1);
        entry.state = State::Lingering(self.generation);
        Work::Linger(self.generation)
    }

    /// The linger of `generation` ended: true when the room is to be unsubscribed now (it is
    /// then forgotten). `members_now` is the room's real member count, which corrects the
    /// count should a leave have been counted twice.
    pub fn linger_ended(&mut self, room: &str, generation: u64, members_now: u32) -> bool {
        let Some(entry) = self.rooms.get_mut(room) else {
            return false;
        };
        if entry.state != State::Lingering(generation) {
            return false;
        }
        if members_now > 0 {
            entry.members = members_now;
            entry.state = State::Active;
            return false;
        }
        self.rooms.remove(room);
        true
    }

    /// Whether the subscriber should hold the room's channel now.
    pub fn wants(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// Redis confirmed the SUBSCRIBE of these rooms: the replies that waited, in order, and the
    /// rooms whose members all left meanwhile (their linger to start, with its generation).
    pub fn subscribed<'a>(
        &mut self,
        rooms: impl IntoIterator<Item = &'a str>,
    ) -> (Vec<T>, Vec<(String, u64)>) {
        let mut replies = Vec::new();
        let mut lingers = Vec::new();
        for room in rooms {
            let Some(entry) = self.rooms.get_mut(room) else { continue };
            if entry.state != State::Subscribing {
                continue;
            }
            replies.append(&mut entry.waiting);
            if entry.members == 0 {
                self.generation = self.generation.wrapping_add(1);
                entry.state = State::Lingering(self.generation);
                lingers.push((room.to_string(), self.generation));
            } else {
                entry.state = State::Active;
            }
        }
        (replies, lingers)
    }

    /// The subscriber is connected (or not). Going down releases every waiting reply: cross-node
    /// delivery is down, and a join must not hang on it.
    pub fn set_connected(&mut self, connected: bool) -> Vec<T> {
        self.connected = connected;
        if connected {
            return Vec::new();
        }
        let mut replies = Vec::new();
        for entry in self.rooms.values_mut() {
            replies.append(&mut entry.waiting);
            if entry.state == State::Subscribing {
                entry.state = State::Active;
            }
        }
        // Pending rooms whose members all left are not subscribed again.
        self.rooms.retain(|_, e| e.members > 0 || matches!(e.state, State::Lingering(_)));
        replies
    }

    /// Every room channel wanted now (subscribed again after a reconnect).
    pub fn all(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    /// How many room channels are wanted.
    pub fn len(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected() -> Channels<&'static str> {
        let mut c = Channels::default();
        c.set_connected(true);
        c
    }

    #[test]
    fn the_first_join_waits_for_the_subscription_later_ones_do_not() {
        let mut c = connected();
        assert_eq!(c.joined("r", "a"), (Reply::Deferred, Work::Subscribe));
        // A second member while pending waits too (no second SUBSCRIBE).
        assert_eq!(c.joined("r", "b"), (Reply::Deferred, Work::None));
        assert_eq!(c.in_order("r", "a left"), Reply::Deferred);
        assert_eq!(c.subscribed(["r"]), (vec!["a", "b", "a left"], vec![]));
        assert_eq!(c.joined("r", "c"), (Reply::Now("c"), Work::None));
        assert_eq!(c.in_order("r", "x"), Reply::Now("x"));
    }

    #[test]
    fn the_last_leave_lingers_and_a_join_meanwhile_keeps_the_channel() {
        let mut c = connected();
        c.joined("r", "a");
        c.subscribed(["r"]);
        assert_eq!(c.left("r", 1), Work::Linger(1));
        assert_eq!(c.joined("r", "b"), (Reply::Now("b"), Work::None));
        assert!(!c.linger_ended("r", 1, 1));
        assert_eq!(c.left("r", 1), Work::Linger(2));
        // An old generation's timer does nothing.
        assert!(!c.linger_ended("r", 1, 0));
        assert!(c.linger_ended("r", 2, 0));
        assert!(!c.wants("r"));
        // Joining again subscribes again.
        assert_eq!(c.joined("r", "c"), (Reply::Deferred, Work::Subscribe));
    }

    #[test]
    fn leaving_before_the_confirmation_lingers_after_it() {
        let mut c = connected();
        c.joined("r", "a");
        assert_eq!(c.left("r", 1), Work::None);
        assert_eq!(c.subscribed(["r"]), (vec!["a"], vec![("r".to_string(), 1)]));
        assert!(c.linger_ended("r", 1, 0));
    }

    #[test]
    fn a_miscounted_leave_is_corrected_at_the_end_of_the_linger() {
        let mut c = connected();
        c.joined("r", "a");
        c.subscribed(["r"]);
        assert_eq!(c.left("r", 5), Work::Linger(1));
        assert!(!c.linger_ended("r", 1, 1));
        assert!(c.wants("r"));
    }

    #[test]
    fn disconnected_joins_answer_at_once_and_going_down_releases_waiting_replies() {
        let mut c: Channels<&str> = Channels::default();
        assert_eq!(c.joined("r", "a"), (Reply::Now("a"), Work::Subscribe));
        c.set_connected(true);
        assert_eq!(c.joined("s", "b"), (Reply::Deferred, Work::Subscribe));
        assert_eq!(c.set_connected(false), vec!["b"]);
        let mut all = c.all();
        all.sort();
        assert_eq!(all, ["r", "s"]);
        assert_eq!(c.len(), 2);
    }
}
