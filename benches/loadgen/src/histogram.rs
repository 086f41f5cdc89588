//! Log-linear latency histogram: 32 sub-buckets per power of two (about 3% resolution).

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;

/// Counts of nanosecond values.
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; (64 * SUB) as usize], total: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let sub = (v >> shift) & (SUB - 1);
    (((u64::from(shift) + 1) << SUB_BITS) + sub) as usize
}

fn lower_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < SUB {
        return i;
    }
    let shift = (i >> SUB_BITS) - 1;
    (SUB + (i & (SUB - 1))) << shift
}

impl Histogram {
    /// Adds `n` observations of `nanos`.
    pub fn record_n(&mut self, nanos: u64, n: u64) {
        self.counts[index(nanos)] += n;
        self.total += n;
    }

    /// The value at quantile `q` (0..=1), in nanoseconds; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return lower_bound(i);
            }
        }
        lower_bound(self.counts.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for v in (0..2_000_000u64).step_by(997) {
            let i = index(v);
            assert!(i >= last);
            last = i;
            let lo = lower_bound(i);
            assert!(lo <= v && (v - lo) as f64 <= v as f64 / 30.0 + 1.0, "{v} -> {lo}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::default();
        for v in 1..=1000u64 {
            h.record_n(v * 1000, 1);
        }
        let p50 = h.quantile(0.5) as f64;
        let p99 = h.quantile(0.99) as f64;
        assert!((p50 - 500_000.0).abs() < 20_000.0, "{p50}");
        assert!((p99 - 990_000.0).abs() < 35_000.0, "{p99}");
        assert_eq!(h.total, 1000);
    }
}
