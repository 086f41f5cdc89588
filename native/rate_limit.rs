//! Per-connection rate limits (`rateLimit: { messages, bytes, interval, policy }`): two token
//! buckets, one counting messages and one counting payload bytes, each holding at most one
//! interval's allowance and refilled continuously. Integer arithmetic, saturating, no allocation:
//! the reader checks every inbound frame against it before anything else happens to the frame.

/// What happens to a message over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Close the connection with 1008.
    Close,
    /// Drop the message (counted) and keep the connection.
    Drop,
}

/// A path's limit: at most `messages` messages and `bytes` payload bytes per `interval_ms`
/// (0: that dimension is not limited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub messages: u32,
    pub bytes: u32,
    pub interval_ms: u32,
    pub policy: Policy,
}

/// One connection's buckets. Tokens are kept in units of 1/`interval_ms` of a message (or
/// byte), so a refill of `elapsed_ms * allowance` is exact in integers.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    limit: RateLimit,
    messages: u64,
    bytes: u64,
    last_ms: u64,
}

impl Bucket {
    /// Full buckets at `now_ms`: a new connection may send one interval's allowance at once.
    pub fn new(limit: RateLimit, now_ms: u64) -> Self {
        let interval = u64::from(limit.interval_ms.max(1));
        Bucket {
            limit,
            messages: u64::from(limit.messages).saturating_mul(interval),
            bytes: u64::from(limit.bytes).saturating_mul(interval),
            last_ms: now_ms,
        }
    }

    pub fn policy(&self) -> Policy {
        self.limit.policy
    }

    /// Takes one message of `len` payload bytes at `now_ms`; false when either bucket lacks the
    /// tokens (then nothing is taken). A message larger than `bytes` never passes.
    pub fn take(&mut self, now_ms: u64, len: usize) -> bool {
        let interval = u64::from(self.limit.interval_ms.max(1));
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let refill = |tokens: u64, per_interval: u32| {
            let cap = u64::from(per_interval).saturating_mul(interval);
            tokens.saturating_add(elapsed.saturating_mul(u64::from(per_interval))).min(cap)
        };
        self.messages = refill(self.messages, self.limit.messages);
        self.bytes = refill(self.bytes, self.limit.bytes);
        let msg_cost = interval;
        let byte_cost = (len as u64).saturating_mul(interval);
        let msg_ok = self.limit.messages == 0 || self.messages >= msg_cost;
        let byte_ok = self.limit.bytes == 0 || self.bytes >= byte_cost;
        if !(msg_ok && byte_ok) {
            return false;
        }
        if self.limit.messages != 0 {
            self.messages -= msg_cost;
        }
        if self.limit.bytes != 0 {
            self.bytes -= byte_cost;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(messages: u32, bytes: u32, interval_ms: u32) -> RateLimit {
        RateLimit { messages, bytes, interval_ms, policy: Policy::Drop }
    }

    #[test]
    fn messages_per_interval_then_refill() {
        let mut b = Bucket::new(limit(10, 0, 1000), 5_000);
        assert_eq!((0..15).filter(|_| b.take(5_000, 1)).count(), 10);
        // 100 ms refill one message.
        assert!(!b.take(5_099, 1));
        assert!(b.take(5_100, 1));
        assert!(!b.take(5_100, 1));
        // A long silence refills one interval's worth, not more.
        assert_eq!((0..30).filter(|_| b.take(60_000, 1)).count(), 10);
    }

    #[test]
    fn bytes_per_interval() {
        let mut b = Bucket::new(limit(0, 1000, 100), 0);
        assert!(b.take(0, 600));
        assert!(!b.take(0, 600), "over the byte allowance");
        assert!(b.take(0, 400));
        assert!(b.take(60, 600));
        // Larger than the whole allowance: never.
        assert!(!b.take(1_000_000, 1001));
        assert!(b.take(1_000_000, 1000));
    }

    #[test]
    fn a_refused_message_takes_nothing() {
        let mut b = Bucket::new(limit(5, 100, 1000), 0);
        assert!(!b.take(0, 101));
        assert_eq!((0..10).filter(|_| b.take(0, 20)).count(), 5);
    }

    #[test]
    fn unlimited_dimensions_and_extremes_saturate() {
        let mut b = Bucket::new(limit(0, 0, 1), 0);
        assert!((0..1000).all(|_| b.take(0, usize::MAX)));
        let mut b = Bucket::new(limit(u32::MAX, u32::MAX, u32::MAX), 0);
        assert!(b.take(u64::MAX, u32::MAX as usize));
        assert!(!b.take(u64::MAX, usize::MAX));
        // A clock that goes backwards refills nothing and underflows nothing.
        let mut b = Bucket::new(limit(1, 0, 1000), 10_000);
        assert!(b.take(10_000, 0));
        assert!(!b.take(9_000, 0));
        assert!(!b.take(10_500, 0));
        assert!(b.take(11_000, 0));
        // interval 0 behaves as 1 ms.
        let mut b = Bucket::new(limit(2, 0, 0), 0);
        assert!(b.take(0, 0) && b.take(0, 0) && !b.take(0, 0) && b.take(1, 0));
    }
}
