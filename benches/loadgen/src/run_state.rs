//! State shared by the tasks of one run (single-threaded, so `Cell`s), and the measured window.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use crate::histogram::Histogram;
use crate::options::Options;
use crate::proc_stats::{report_machine, CpuMeter, MachineMeter};
use crate::report::Report;

/// Counters every mode keeps.
#[derive(Default)]
pub struct RunState {
    /// True during the measured window only.
    pub measuring: Cell<bool>,
    /// Messages (echo) or deliveries (broadcast) received since the start.
    pub received: Cell<u64>,
    /// Latencies recorded during the measured window, in nanoseconds.
    pub latency: RefCell<Histogram>,
    /// Connections that completed the upgrade (and, for subscribers, the join).
    pub ready: Cell<usize>,
    /// Connections that failed.
    pub errors: Cell<u64>,
    /// The first failure, for the report.
    pub first_error: RefCell<Option<String>>,
}

impl RunState {
    /// Counts a failed connection and keeps the first message.
    pub fn fail(&self, error: io::Error) {
        self.errors.set(self.errors.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    /// Takes the send times of `k` echoed messages (oldest first: one connection answers in
    /// order), records their round trips if measuring, and counts them.
    pub fn replies(&self, sent_at: &mut VecDeque<Instant>, k: usize, now: Instant) -> io::Result<()> {
        if k > sent_at.len() {
            return Err(io::Error::other("more replies than messages sent"));
        }
        if self.measuring.get() {
            let mut latency = self.latency.borrow_mut();
            for t in sent_at.drain(..k) {
                latency.record_n(now.duration_since(t).as_nanos() as u64, 1);
            }
        } else {
            sent_at.drain(..k);
        }
        self.received.set(self.received.get() + k as u64);
        Ok(())
    }

    /// Waits (polling, bounded by `limit`) until `want` connections are ready or failed.
    pub async fn wait_ready(&self, want: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.ready.get() + (self.errors.get() as usize) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Warm up, then count for `duration`; fills rate, latency and CPU fields of `report`.
    pub async fn measure(
        &self,
        warmup: Duration,
        duration: Duration,
        server_pids: &[u32],
        report: &mut Report,
    ) {
        tokio::time::sleep(warmup).await;
        let own = CpuMeter::start(std::process::id());
        let server: Vec<CpuMeter> = server_pids.iter().map(|&pid| CpuMeter::start(pid)).collect();
        let machine = MachineMeter::start();
        let before = self.received.get();
        let t0 = Instant::now();
        self.measuring.set(true);
        tokio::time::sleep(duration).await;
        self.measuring.set(false);
        let wall = t0.elapsed().as_secs_f64();
        let count = self.received.get() - before;
        let latency = self.latency.borrow();
        report
            .num("count", count as f64)
            .num("seconds", wall)
            .num("rate", count as f64 / wall)
            .num("p50_us", latency.quantile(0.50) as f64 / 1e3)
            .num("p99_us", latency.quantile(0.99) as f64 / 1e3)
            .opt("loadgen_cpu", own.elapsed_ns().map(|ns| ns as f64 / 1e9 / wall))
            .opt("server_cpu", server_cpu(&server).map(|ns| ns as f64 / 1e9 / wall));
        if server.len() > 1 {
            let parts: Vec<String> = server
                .iter()
                .map(|m| m.elapsed_ns().map_or("n/a".into(), |ns| format!("{:.2}", ns as f64 / 1e9 / wall)))
                .collect();
            report.text("server_cpu_parts", &parts.join(","));
        }
        report_machine(machine.fractions(), report);
    }

    /// Adds the connection counts and first error to `report`.
    pub fn finish(&self, report: &mut Report) {
        report.num("ready", self.ready.get() as f64).num("errors", self.errors.get() as f64);
        if let Some(e) = self.first_error.borrow().as_deref() {
            report.text("first_error", e);
        }
    }
}

/// CPU nanoseconds of all the server's processes together; `None` if there are none or one
/// could not be read.
fn server_cpu(meters: &[CpuMeter]) -> Option<u64> {
    if meters.is_empty() {
        return None;
    }
    meters.iter().map(CpuMeter::elapsed_ns).sum()
}

/// A mask key per connection: cheap, non-zero and different across connections.
pub fn mask_for(i: usize) -> [u8; 4] {
    let x = (i as u32).wrapping_add(1).wrapping_mul(0x9E37_79B9) | 0x0101_0101;
    x.to_le_bytes()
}

/// The report's first fields: the mode and the load it was run with.
pub fn header(mode: &str, o: &Options) -> Report {
    let mut report = Report::default();
    report
        .text("mode", mode)
        .num("conns", o.conns as f64)
        .num("inflight", o.inflight as f64)
        .num("size", o.size as f64)
        .opt("offered_rate", o.rate);
    report
}
