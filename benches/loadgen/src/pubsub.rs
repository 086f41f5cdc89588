//! What the broadcast and rooms modes share: subscribers that connect, join and wait for the
//! server's acknowledgement; windows of messages in flight; the run around one publisher.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::frame::{masked_frame, OP_TEXT};
use crate::handshake;
use crate::inbound::Inbound;
use crate::options::Options;
use crate::proc_stats::{listen_counters, report_listen_counters, rss_bytes};
use crate::report::Report;
use crate::run_state::{header, mask_for, RunState};

/// Subscribers past which each starts with a small receive buffer.
const MANY_SUBSCRIBERS: usize = 2000;
/// How often the probe opens a fresh connection while the run goes on.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// Messages of one stream in flight, indexed by sequence number modulo a power of two above W.
pub struct Window {
    sent_at: RefCell<Vec<Instant>>,
    delivered: RefCell<Vec<u32>>,
    mask: u64,
    pub sent: Cell<u64>,
    pub completed: Cell<u64>,
    /// Subscribers that must get each message.
    pub members: Cell<u32>,
}

impl Window {
    pub fn new(inflight: usize, members: u32) -> Self {
        let cap = (inflight * 2).next_power_of_two();
        Window {
            sent_at: RefCell::new(vec![Instant::now(); cap]),
            delivered: RefCell::new(vec![0; cap]),
            mask: cap as u64 - 1,
            sent: Cell::new(0),
            completed: Cell::new(0),
            members: Cell::new(members),
        }
    }

    /// Whether another message would reuse the slot of one still in flight.
    pub fn full(&self) -> bool {
        self.sent.get() - self.completed.get() > self.mask
    }

    /// Marks the next `k` messages as sent at `now`.
    pub fn send(&self, k: u64, now: Instant) {
        let start = self.sent.get();
        let mut sent_at = self.sent_at.borrow_mut();
        for seq in start..start + k {
            sent_at[(seq & self.mask) as usize] = now;
        }
        self.sent.set(start + k);
    }

    /// One subscriber got its next `k` messages (`seq` is its position): records latencies when
    /// measuring and counts deliveries; returns how many messages every member now has.
    pub fn deliver(&self, seq: &mut u64, k: usize, now: Instant, state: &RunState) -> io::Result<u64> {
        let measuring = state.measuring.get();
        let sent_at = self.sent_at.borrow();
        let mut delivered = self.delivered.borrow_mut();
        let mut latency = state.latency.borrow_mut();
        let mut completed = 0;
        for _ in 0..k {
            if *seq >= self.sent.get() {
                return Err(io::Error::other("received a message that was not published"));
            }
            let slot = (*seq & self.mask) as usize;
            if measuring {
                latency.record_n(now.duration_since(sent_at[slot]).as_nanos() as u64, 1);
            }
            delivered[slot] += 1;
            if delivered[slot] == self.members.get() {
                delivered[slot] = 0;
                self.completed.set(self.completed.get() + 1);
                completed += 1;
            }
            *seq += 1;
        }
        state.received.set(state.received.get() + k as u64);
        Ok(completed)
    }
}

/// Subscriber `i`: connects (at most `o.concurrency` handshakes at once), sends `join` if any,
/// and waits for the one message the server acknowledges the subscription with.
pub async fn subscribe(
    i: usize,
    o: &Options,
    handshakes: &Semaphore,
    join: Option<&str>,
) -> io::Result<(TcpStream, Inbound)> {
    let (mut stream, leftover) = {
        let _permit = handshakes.acquire().await.map_err(io::Error::other)?;
        handshake::connect(o.sub_addr(i), &o.sub_path, o.source(i), o.deflate).await?
    };
    if let Some(join) = join {
        stream.write_all(&masked_frame(OP_TEXT, join.as_bytes(), mask_for(i))).await?;
    }
    let mut inbound = if o.conns > MANY_SUBSCRIBERS {
        Inbound::with_capacity(leftover, 4096)
    } else {
        Inbound::new(leftover)
    };
    // The server acknowledges the subscription with one message before anything is published.
    let mut acks = 0;
    while acks == 0 {
        acks = inbound.next_batch(&mut stream).await?;
    }
    if acks > 1 {
        return Err(io::Error::other("more than one message before the first publish"));
    }
    Ok((stream, inbound))
}

/// Starts `o.conns` subscribers, then the publisher once they are ready, and measures.
/// `completed` counts the messages every member got.
pub async fn run<S, SF, P>(
    mode: &str,
    o: &Options,
    subscriber: S,
    publisher: P,
    completed: impl Fn() -> u64,
) -> Report
where
    S: Fn(usize, Rc<RunState>, Rc<Semaphore>) -> SF,
    SF: Future<Output = io::Result<()>> + 'static,
    P: Future<Output = io::Result<()>> + 'static,
{
    let state = Rc::new(RunState::default());
    let handshakes = Rc::new(Semaphore::new(o.concurrency));
    let rss_before = o.server_pid.and_then(rss_bytes);
    let counters = listen_counters();
    let probe = Rc::new(Probe::default());
    {
        let (o, probe) = (o.clone(), probe.clone());
        tokio::task::spawn_local(async move { probe.run(&o).await });
    }
    let t0 = Instant::now();
    for i in 0..o.conns {
        let (state, task) = (state.clone(), subscriber(i, state.clone(), handshakes.clone()));
        tokio::task::spawn_local(async move {
            if let Err(e) = task.await {
                state.fail(e);
            }
        });
    }
    state.wait_ready(o.conns, Duration::from_secs(120)).await;
    let connect_seconds = t0.elapsed().as_secs_f64();
    tokio::time::sleep(o.settle).await;
    let rss_ready = o.server_pid.and_then(rss_bytes);
    let publisher_state = Rc::new(RunState::default());
    {
        let publisher_state = publisher_state.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = publisher.await {
                publisher_state.fail(e);
            }
        });
    }
    let mut report = header(mode, o);
    let completed_before = completed();
    state.measure(o.warmup, o.duration, &o.server_pids(), &mut report).await;
    report.num("published_completed", (completed() - completed_before) as f64);
    report.num("connect_seconds", connect_seconds).opt("server_rss", rss_ready.map(|b| b as f64));
    let per_conn = match (rss_before, rss_ready) {
        (Some(b), Some(a)) if state.ready.get() > 0 => Some((a as f64 - b as f64) / state.ready.get() as f64),
        _ => None,
    };
    report.opt("rss_per_conn", per_conn);
    report_listen_counters(counters, &mut report);
    probe.report(&mut report);
    state.finish(&mut report);
    if let Some(e) = publisher_state.first_error.borrow().as_deref() {
        report.text("publisher_error", e);
    }
    report
}

/// A fresh connection every `PROBE_EVERY` for the whole run: does the server still answer a
/// new client while it holds (and broadcasts to) all the others?
#[derive(Default)]
struct Probe {
    handshakes: Cell<u64>,
    failures: Cell<u64>,
    worst: Cell<Duration>,
}

impl Probe {
    async fn run(&self, o: &Options) {
        loop {
            let started = Instant::now();
            match tokio::time::timeout(
                Duration::from_secs(10),
                handshake::connect(&o.addr, &o.path, None, o.deflate),
            )
            .await
            {
                Ok(Ok(_)) => self.handshakes.set(self.handshakes.get() + 1),
                _ => self.failures.set(self.failures.get() + 1),
            }
            self.worst.set(self.worst.get().max(started.elapsed()));
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    fn report(&self, report: &mut Report) {
        report
            .num("probe_handshakes", self.handshakes.get() as f64)
            .num("probe_failures", self.failures.get() as f64)
            .num("probe_worst_ms", self.worst.get().as_secs_f64() * 1e3);
    }
}
