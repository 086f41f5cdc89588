//! Broadcast mode: N subscribers in one room, one publisher keeping W messages in flight.
//! A message is complete when every subscriber has it; the publisher then sends the next.
//! With `--sub-ports`, subscribers alternate over several server nodes (a cluster sharing the
//! room through Redis) and the publisher connects to the first.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, Semaphore};

use crate::frame::{masked_frame, repeated, OP_BINARY, OP_TEXT};
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

/// Per-message bookkeeping, indexed by sequence number modulo a power of two above W.
struct Window {
    sent_at: RefCell<Vec<Instant>>,
    delivered: RefCell<Vec<u32>>,
    mask: u64,
    sent: Cell<u64>,
    completed: Cell<u64>,
    progress: Notify,
}

/// Runs the broadcast measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    let state = Rc::new(RunState::default());
    let cap = (o.inflight * 2).next_power_of_two();
    let window = Rc::new(Window {
        sent_at: RefCell::new(vec![Instant::now(); cap]),
        delivered: RefCell::new(vec![0; cap]),
        mask: cap as u64 - 1,
        sent: Cell::new(0),
        completed: Cell::new(0),
        progress: Notify::new(),
    });
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
        let (o, state, window, handshakes) = (o.clone(), state.clone(), window.clone(), handshakes.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = subscriber(i, &o, &state, &window, &handshakes).await {
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
        let (o, window, publisher_state) = (o.clone(), window.clone(), publisher_state.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = publisher(&o, &window).await {
                publisher_state.fail(e);
            }
        });
    }
    let mut report = header("broadcast", o);
    let completed_before = window.completed.get();
    state.measure(o.warmup, o.duration, &o.server_pids(), &mut report).await;
    report.num("published_completed", (window.completed.get() - completed_before) as f64);
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

async fn subscriber(
    i: usize,
    o: &Options,
    state: &RunState,
    window: &Window,
    handshakes: &Semaphore,
) -> io::Result<()> {
    let (mut stream, leftover) = {
        let _permit = handshakes.acquire().await.map_err(io::Error::other)?;
        handshake::connect(o.sub_addr(i), &o.sub_path, o.source(i)).await?
    };
    if let Some(join) = &o.join_frame {
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
    state.ready.set(state.ready.get() + 1);
    let members = o.conns as u32;
    let mut seq: u64 = 0;
    loop {
        let k = inbound.next_batch(&mut stream).await?;
        if k == 0 {
            continue;
        }
        let now = Instant::now();
        let measuring = state.measuring.get();
        let w = window;
        let sent_at = w.sent_at.borrow();
        let mut delivered = w.delivered.borrow_mut();
        let mut latency = state.latency.borrow_mut();
        for _ in 0..k {
            if seq >= w.sent.get() {
                return Err(io::Error::other("received a message that was not published"));
            }
            let slot = (seq & w.mask) as usize;
            if measuring {
                latency.record_n(now.duration_since(sent_at[slot]).as_nanos() as u64, 1);
            }
            delivered[slot] += 1;
            if delivered[slot] == members {
                delivered[slot] = 0;
                w.completed.set(w.completed.get() + 1);
                // Stores a permit when the publisher is not waiting yet, so no completion is lost.
                w.progress.notify_one();
            }
            seq += 1;
        }
        state.received.set(state.received.get() + k as u64);
    }
}

async fn publisher(o: &Options, window: &Window) -> io::Result<()> {
    let (mut stream, leftover) = handshake::connect(&o.addr, &o.pub_path, None).await?;
    let mut inbound = Inbound::new(leftover);
    // A protocol `room_message` needs a member as sender: join like the subscribers, wait for the ack.
    if let (Some(join), Some(_)) = (&o.join_frame, &o.pub_room) {
        stream.write_all(&masked_frame(OP_TEXT, join.as_bytes(), mask_for(usize::MAX))).await?;
        while inbound.next_batch(&mut stream).await? == 0 {}
    }
    let (mut reader, mut writer) = stream.into_split();
    // Whatever the server sends the publisher (acks, its own copy) is read and dropped.
    tokio::task::spawn_local(async move { while inbound.next_batch(&mut reader).await.is_ok() {} });
    let body = "x".repeat(o.size);
    let payload = match &o.pub_room {
        Some(room) => format!(r#"{{"type":"room_message","room_id":"{room}","message":"{body}"}}"#),
        None => body,
    };
    let opcode = if o.binary && o.pub_room.is_none() { OP_BINARY } else { OP_TEXT };
    let frame = masked_frame(opcode, payload.as_bytes(), mask_for(usize::MAX));
    let burst = repeated(&frame, o.inflight);
    loop {
        let outstanding = (window.sent.get() - window.completed.get()) as usize;
        let k = o.inflight.saturating_sub(outstanding);
        if k > 0 {
            let now = Instant::now();
            let start = window.sent.get();
            {
                let mut sent_at = window.sent_at.borrow_mut();
                for seq in start..start + k as u64 {
                    sent_at[(seq & window.mask) as usize] = now;
                }
            }
            window.sent.set(start + k as u64);
            writer.write_all(&burst[..k * frame.len()]).await?;
        }
        window.progress.notified().await;
    }
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
            match tokio::time::timeout(Duration::from_secs(10), handshake::connect(&o.addr, &o.path, None))
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
