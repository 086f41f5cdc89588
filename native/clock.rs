//! The engine's two clocks, named apart: a monotonic one for deadlines and rates, and the wall
//! clock for the times JS shows (`lastPing`, `createdAt`...).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (wall clock): only for times reported to JS, never for
/// deadlines (it can jump).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Microseconds since the Unix epoch (wall clock): the send time in cluster envelopes, which
/// another node compares with its own wall clock (a monotonic clock is per process).
pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A monotonic clock counting milliseconds from its creation: idle timeouts, close deadlines,
/// ping windows.
pub struct MonoClock {
    origin: Instant,
}

impl MonoClock {
    pub fn new() -> Self {
        MonoClock { origin: Instant::now() }
    }

    /// Milliseconds since the clock was created; never goes back.
    #[inline]
    pub fn mono_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_starts_near_zero_and_never_goes_back() {
        let clock = MonoClock::new();
        let first = clock.mono_ms();
        assert!(first < 1000, "a new clock starts near 0, got {first}");
        let mut last = first;
        for _ in 0..1000 {
            let now = clock.mono_ms();
            assert!(now >= last);
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.mono_ms() >= first + 5);
    }

    #[test]
    fn wall_is_epoch_milliseconds() {
        // 2020-01-01 in ms: any sane machine's clock is past it, and the value is in ms, not s.
        let now = wall_ms();
        assert!(now > 1_577_836_800_000, "{now}");
        assert!(now < 1_577_836_800_000 * 10, "{now}");
    }
}
