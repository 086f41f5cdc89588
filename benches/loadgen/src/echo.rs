//! Echo mode: C connections, each keeping W messages in flight; messages/s and round-trip times.

use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use crate::frame::{masked_frame, repeated, OP_BINARY, OP_TEXT};
use crate::handshake;
use crate::inbound::Inbound;
use crate::options::Options;
use crate::report::Report;
use crate::run_state::{header, mask_for, RunState};

/// Runs the echo measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    if o.rate.is_some() {
        return crate::paced::run(o).await;
    }
    let state = Rc::new(RunState::default());
    let handshakes = Rc::new(Semaphore::new(o.concurrency));
    for i in 0..o.conns {
        let (o, state, handshakes) = (o.clone(), state.clone(), handshakes.clone());
        tokio::task::spawn_local(async move {
            if let Err(e) = connection(i, &o, &state, &handshakes).await {
                state.fail(e);
            }
        });
    }
    state.wait_ready(o.conns, Duration::from_secs(20)).await;
    let mut report = header("echo", o);
    state.measure(o.warmup, o.duration, &o.server_pids(), &mut report).await;
    state.finish(&mut report);
    report
}

async fn connection(i: usize, o: &Options, state: &RunState, handshakes: &Semaphore) -> io::Result<()> {
    let (mut stream, leftover) = {
        let _permit = handshakes.acquire().await.map_err(io::Error::other)?;
        handshake::connect_maybe_tls(&o.addr, &o.path, None, o.tls, o.deflate).await?
    };
    state.ready.set(state.ready.get() + 1);
    let payload = if o.deflate { crate::frame::json_payload(o.size) } else { vec![b'x'; o.size] };
    let frame = masked_frame(if o.binary { OP_BINARY } else { OP_TEXT }, &payload, mask_for(i));
    let burst = repeated(&frame, o.inflight);
    let mut inbound = Inbound::new(leftover);
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(o.inflight);
    let now = Instant::now();
    stream.write_all(&burst).await?;
    sent_at.extend(std::iter::repeat_n(now, o.inflight));
    loop {
        let k = inbound.next_batch(&mut stream).await?;
        if k == 0 {
            continue;
        }
        let now = Instant::now();
        state.replies(&mut sent_at, k, now)?;
        stream.write_all(&burst[..k * frame.len()]).await?;
        sent_at.extend(std::iter::repeat_n(now, k));
    }
}
