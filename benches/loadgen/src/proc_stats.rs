//! CPU time and resident memory of a process, read from `/proc` (Linux only).

use std::fs;

/// Nanoseconds on CPU summed over every thread of `pid` (`schedstat`), or `None` if unreadable.
pub fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = fs::read_to_string(path) {
            total += s.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(total)
}

/// Resident set size of `pid` in bytes (`VmRSS`), or `None` if unreadable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time of a process between two points, with the wall time between them.
pub struct CpuMeter {
    pid: u32,
    start: Option<u64>,
}

impl CpuMeter {
    /// Starts measuring `pid`.
    pub fn start(pid: u32) -> Self {
        CpuMeter {
            pid,
            start: cpu_ns(pid),
        }
    }

    /// CPU nanoseconds used since `start`, or `None` if either reading failed.
    pub fn elapsed_ns(&self) -> Option<u64> {
        Some(cpu_ns(self.pid)?.saturating_sub(self.start?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        let meter = CpuMeter::start(me);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(meter.elapsed_ns().is_some());
    }
}
