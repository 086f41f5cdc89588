//! Broadcast mode: N subscribers in one room, one publisher keeping W messages in flight.
//! A message is complete when every subscriber has it; the publisher then sends the next.
//! With `--sub-ports`, subscribers alternate over several server nodes (a cluster sharing the
//! room through Redis) and the publisher connects to the first.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::frame::{masked_frame, repeated, OP_BINARY, OP_TEXT};
use crate::handshake;
use crate::inbound::Inbound;
use crate::options::Options;
use crate::pubsub::{self, Window};
use crate::report::Report;
use crate::run_state::{mask_for, RunState};

/// Runs the broadcast measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    let window = Rc::new(Window::new(o.inflight, o.conns as u32));
    let progress = Rc::new(Notify::new());
    let subscriber = |i: usize, state: Rc<RunState>, handshakes: Rc<tokio::sync::Semaphore>| {
        let (o, window, progress) = (o.clone(), window.clone(), progress.clone());
        async move {
            let (mut stream, mut inbound) =
                pubsub::subscribe(i, &o, &handshakes, o.join_frame.as_deref()).await?;
            state.ready.set(state.ready.get() + 1);
            let mut seq: u64 = 0;
            loop {
                let k = inbound.next_batch(&mut stream).await?;
                if k > 0 && window.deliver(&mut seq, k, Instant::now(), &state)? > 0 {
                    // Stores a permit when the publisher is not waiting yet, so no completion is lost.
                    progress.notify_one();
                }
            }
        }
    };
    let publish = publisher(o.clone(), window.clone(), progress.clone());
    let completed = || window.completed.get();
    pubsub::run("broadcast", o, subscriber, publish, completed).await
}

async fn publisher(o: Options, window: Rc<Window>, progress: Rc<Notify>) -> io::Result<()> {
    let (mut stream, leftover) = handshake::connect(&o.addr, &o.pub_path, None, o.deflate).await?;
    let mut inbound = Inbound::new(leftover);
    // A protocol `room_message` needs a member as sender: join like the subscribers, wait for the ack.
    if let (Some(join), Some(_)) = (&o.join_frame, &o.pub_room) {
        stream.write_all(&masked_frame(OP_TEXT, join.as_bytes(), mask_for(usize::MAX))).await?;
        while inbound.next_batch(&mut stream).await? == 0 {}
    }
    let (mut reader, mut writer) = stream.into_split();
    // Whatever the server sends the publisher (acks, its own copy) is read and dropped.
    tokio::task::spawn_local(async move { while inbound.next_batch(&mut reader).await.is_ok() {} });
    let body = if o.deflate {
        String::from_utf8(crate::frame::json_payload(o.size)).unwrap_or_default()
    } else {
        "x".repeat(o.size)
    };
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
            window.send(k as u64, Instant::now());
            writer.write_all(&burst[..k * frame.len()]).await?;
        }
        progress.notified().await;
    }
}
