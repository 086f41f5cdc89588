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

/// The kernel's counters of handshakes it could not queue for accept (`TcpExt` in
/// `/proc/net/netstat`, what `nstat` shows): ListenOverflows, ListenDrops, and SYN cookies sent
/// because a SYN queue was full. They count for the whole network namespace, so other programs'
/// listeners add to them too.
pub const LISTEN_COUNTERS: [&str; 3] = ["ListenOverflows", "ListenDrops", "TCPReqQFullDoCookies"];

/// The values of `LISTEN_COUNTERS`, or `None` if unreadable.
pub fn listen_counters() -> Option<[u64; 3]> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let pairs: Vec<(&str, &str)> = names.split_whitespace().zip(values.split_whitespace()).collect();
    let mut out = [0u64; 3];
    for (slot, want) in out.iter_mut().zip(LISTEN_COUNTERS) {
        *slot = pairs.iter().find(|(n, _)| *n == want)?.1.parse().ok()?;
    }
    Some(out)
}

/// Adds how much each of `LISTEN_COUNTERS` grew since `before` to a report
/// (`listen_overflows`, `listen_drops`, `syn_cookies`).
pub fn report_listen_counters(before: Option<[u64; 3]>, report: &mut crate::report::Report) {
    const KEYS: [&str; 3] = ["listen_overflows", "listen_drops", "syn_cookies"];
    let after = listen_counters();
    for (i, key) in KEYS.iter().enumerate() {
        let grew = match (before, after) {
            (Some(b), Some(a)) => Some(a[i].saturating_sub(b[i]) as f64),
            _ => None,
        };
        report.opt(key, grew);
    }
}

/// Per-CPU jiffies from `/proc/stat`: (busy, steal, total) for cpu0, cpu1, ...
/// Busy counts user, nice, system, irq and softirq: softirq is where loopback TCP spends much
/// of its time, and it is charged to no process, so per-process CPU alone can hide a full core.
fn cpu_jiffies() -> Option<Vec<(u64, u64, u64)>> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let mut out = Vec::new();
    for line in stat.lines().filter(|l| l.starts_with("cpu") && !l.starts_with("cpu ")) {
        let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
        if f.len() < 8 {
            return None;
        }
        let busy = f[0] + f[1] + f[2] + f[5] + f[6];
        out.push((busy, f[7], f.iter().take(8).sum()));
    }
    Some(out)
}

/// How busy each CPU was between `start` and `busy_fractions`, and how much was stolen.
pub struct MachineMeter {
    start: Option<Vec<(u64, u64, u64)>>,
}

impl MachineMeter {
    /// Starts measuring all CPUs.
    pub fn start() -> Self {
        MachineMeter { start: cpu_jiffies() }
    }

    /// Per CPU: (busy fraction, steal fraction) since `start`.
    pub fn fractions(&self) -> Vec<(f64, f64)> {
        let (Some(a), Some(b)) = (&self.start, cpu_jiffies()) else {
            return Vec::new();
        };
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| {
                let total = (y.2 - x.2).max(1) as f64;
                ((y.0 - x.0) as f64 / total, (y.1 - x.1) as f64 / total)
            })
            .collect()
    }
}

/// Adds `cpuN_busy` / `cpuN_steal` for the first two CPUs (the pinned pair) to a report.
pub fn report_machine(fractions: Vec<(f64, f64)>, report: &mut crate::report::Report) {
    const BUSY: [&str; 2] = ["cpu0_busy", "cpu1_busy"];
    const STEAL: [&str; 2] = ["cpu0_steal", "cpu1_steal"];
    for (i, (busy, steal)) in fractions.into_iter().take(2).enumerate() {
        report.num(BUSY[i], busy).num(STEAL[i], steal);
    }
}

/// CPU time of a process between two points, with the wall time between them.
pub struct CpuMeter {
    pid: u32,
    start: Option<u64>,
}

impl CpuMeter {
    /// Starts measuring `pid`.
    pub fn start(pid: u32) -> Self {
        CpuMeter { pid, start: cpu_ns(pid) }
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
        let machine = MachineMeter::start();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let f = machine.fractions();
        assert!(listen_counters().is_some());
        assert!(!f.is_empty() && f.iter().all(|(b, s)| (0.0..=1.0).contains(b) && (0.0..=1.0).contains(s)));
    }
}
