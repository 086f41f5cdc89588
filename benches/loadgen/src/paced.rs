//! Open-loop echo (`--rate`): one pacer spreads the offered messages over all connections every
//! millisecond with non-blocking writes; each connection's reader records round trips. This
//! compares latency at the same offered load, which a closed loop cannot.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Semaphore;

use crate::frame::{masked_frame, repeated, OP_BINARY, OP_TEXT};
use crate::handshake;
use crate::inbound::Inbound;
use crate::options::Options;
use crate::report::Report;
use crate::run_state::{header, mask_for, RunState};

/// Pacing period.
const TICK: Duration = Duration::from_millis(1);

/// The sending side of one connection, owned by the pacer.
struct Lane {
    writer: OwnedWriteHalf,
    /// Send times of the messages not answered yet (shared with the reader).
    sent_at: Rc<RefCell<VecDeque<Instant>>>,
    /// Bytes of a frame that a previous non-blocking write left unsent.
    unsent: Vec<u8>,
}

/// Runs the open-loop echo measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    let state = Rc::new(RunState::default());
    let lanes: Rc<RefCell<Vec<Lane>>> = Rc::new(RefCell::new(Vec::with_capacity(o.conns)));
    let handshakes = Rc::new(Semaphore::new(o.concurrency));
    for _ in 0..o.conns {
        let (o, state, lanes, handshakes) = (o.clone(), state.clone(), lanes.clone(), handshakes.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = connection(&o, &state, &lanes, &handshakes).await {
                state.fail(e);
            }
        });
    }
    state.wait_ready(o.conns, Duration::from_secs(20)).await;
    let skipped = Rc::new(Cell::new(0u64));
    {
        let (o, lanes, skipped) = (o.clone(), lanes.clone(), skipped.clone());
        tokio::task::spawn_local(async move { pace(&o, &lanes, &skipped).await });
    }
    let mut report = header("echo", o);
    let skipped_before = skipped.get();
    state.measure(o.warmup, o.duration, &o.server_pids(), &mut report).await;
    report.num("skipped", (skipped.get() - skipped_before) as f64);
    state.finish(&mut report);
    report
}

async fn connection(
    o: &Options,
    state: &RunState,
    lanes: &RefCell<Vec<Lane>>,
    handshakes: &Semaphore,
) -> io::Result<()> {
    let (stream, leftover) = {
        let _permit = handshakes.acquire().await.map_err(io::Error::other)?;
        handshake::connect(&o.addr, &o.path, None, o.deflate).await?
    };
    let (mut reader, writer) = stream.into_split();
    let sent_at = Rc::new(RefCell::new(VecDeque::with_capacity(o.inflight)));
    lanes.borrow_mut().push(Lane { writer, sent_at: sent_at.clone(), unsent: Vec::new() });
    state.ready.set(state.ready.get() + 1);
    let mut inbound = Inbound::new(leftover);
    loop {
        let k = inbound.next_batch(&mut reader).await?;
        if k == 0 {
            continue;
        }
        let now = Instant::now();
        state.replies(&mut sent_at.borrow_mut(), k, now)?;
    }
}

/// Every tick, sends what is due, round robin; a lane whose window is full or whose socket
/// would block skips its share (counted in `skipped`), so the loop never queues behind a server.
async fn pace(o: &Options, lanes: &RefCell<Vec<Lane>>, skipped: &Cell<u64>) {
    let rate = o.rate.unwrap_or(0.0);
    let payload = vec![b'x'; o.size];
    let frame = masked_frame(if o.binary { OP_BINARY } else { OP_TEXT }, &payload, mask_for(0));
    let burst = repeated(&frame, o.inflight);
    let start = Instant::now();
    let mut due_before: u64 = 0;
    let mut next = 0usize;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let mut lanes = lanes.borrow_mut();
        let n = lanes.len();
        if n == 0 {
            continue;
        }
        let k = (due - due_before) as usize;
        due_before = due;
        let now = Instant::now();
        for j in 0..n.min(k) {
            let lane = &mut lanes[(next + j) % n];
            let share = k / n + usize::from(j < k % n);
            let sent = send_share(lane, &burst, frame.len(), share, o.inflight, now);
            skipped.set(skipped.get() + (share - sent) as u64);
        }
        next = (next + k) % n;
    }
}

/// Writes up to `share` frames to one lane without blocking; returns how many went out.
fn send_share(
    lane: &mut Lane,
    burst: &[u8],
    frame_len: usize,
    share: usize,
    window: usize,
    now: Instant,
) -> usize {
    if !lane.unsent.is_empty() {
        match lane.writer.try_write(&lane.unsent) {
            Ok(w) => {
                lane.unsent.drain(..w);
            }
            Err(_) => return 0,
        }
        if !lane.unsent.is_empty() {
            return 0;
        }
    }
    let mut sent_at = lane.sent_at.borrow_mut();
    let k = share.min(window - sent_at.len().min(window));
    if k == 0 {
        return 0;
    }
    let bytes = &burst[..k * frame_len];
    match lane.writer.try_write(bytes) {
        Ok(w) => {
            // A frame cut short is finished on a later tick; it counts as sent now.
            let frames = w.div_ceil(frame_len);
            lane.unsent.extend_from_slice(&bytes[w..frames * frame_len]);
            sent_at.extend(std::iter::repeat_n(now, frames));
            frames
        }
        Err(_) => 0,
    }
}
