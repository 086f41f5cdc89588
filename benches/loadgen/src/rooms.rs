//! Rooms mode: subscribers spread over R rooms and the server nodes, one publisher sending to
//! random rooms with W messages in flight. With N nodes (`--sub-ports`), subscriber `i` is on
//! node `i % N` and in a room of that node: node `n` hosts rooms `n, n + N, n + 2N, ...`, so
//! each node has members in R / N rooms and none in the others. The publisher (on the first
//! node) sends `r<room>|xxx...`; the server's `/pub` broadcasts it to that room. One publisher,
//! so each room's messages arrive in the order sent: a subscriber's k-th message in its room is
//! the room's k-th message.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::frame::{masked_frame, OP_TEXT};
use crate::handshake;
use crate::inbound::Inbound;
use crate::options::Options;
use crate::pubsub::{self, Window};
use crate::report::Report;
use crate::run_state::{mask_for, RunState};

/// A window per room, and the total in flight.
struct Rooms {
    rooms: Vec<Window>,
    sent: Cell<u64>,
    completed: Cell<u64>,
    progress: Notify,
}

/// The room of subscriber `i`.
pub fn room_of(i: usize, rooms: usize, nodes: usize) -> usize {
    let nodes = nodes.max(1);
    let per_node = (rooms / nodes).max(1);
    (i % nodes) + nodes * ((i / nodes) % per_node)
}

/// Runs the rooms measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    let nodes = o.sub_addrs.len().max(1);
    // Rooms a node would not host (R not a multiple of N) get no subscribers; leave them out.
    let count = (o.rooms / nodes).max(1) * nodes;
    let rooms = Rc::new(Rooms {
        rooms: (0..count).map(|_| Window::new(o.inflight, 0)).collect(),
        sent: Cell::new(0),
        completed: Cell::new(0),
        progress: Notify::new(),
    });
    for i in 0..o.conns {
        let w = &rooms.rooms[room_of(i, count, nodes)];
        w.members.set(w.members.get() + 1);
    }
    let subscriber = |i: usize, state: Rc<RunState>, handshakes: Rc<tokio::sync::Semaphore>| {
        let (o, rooms) = (o.clone(), rooms.clone());
        async move {
            let room = room_of(i, count, nodes);
            let join = format!(r#"{{"type":"join_room","room_id":"r{room}"}}"#);
            let (mut stream, mut inbound) = pubsub::subscribe(i, &o, &handshakes, Some(&join)).await?;
            state.ready.set(state.ready.get() + 1);
            let w = &rooms.rooms[room];
            let mut seq: u64 = 0;
            loop {
                let k = inbound.next_batch(&mut stream).await?;
                let done = if k > 0 { w.deliver(&mut seq, k, Instant::now(), &state)? } else { 0 };
                if done > 0 {
                    rooms.completed.set(rooms.completed.get() + done);
                    rooms.progress.notify_one();
                }
            }
        }
    };
    let publish = publisher(o.clone(), rooms.clone());
    let completed = || rooms.completed.get();
    let mut report = pubsub::run("rooms", o, subscriber, publish, completed).await;
    report.num("rooms", count as f64);
    report
}

async fn publisher(o: Options, rooms: Rc<Rooms>) -> io::Result<()> {
    let (stream, leftover) = handshake::connect(&o.addr, &o.pub_path, None, o.deflate).await?;
    let mut inbound = Inbound::new(leftover);
    let (mut reader, mut writer) = stream.into_split();
    tokio::task::spawn_local(async move { while inbound.next_batch(&mut reader).await.is_ok() {} });
    let body = "x".repeat(o.size);
    let frames: Vec<Vec<u8>> = (0..rooms.rooms.len())
        .map(|r| masked_frame(OP_TEXT, format!("r{r}|{body}").as_bytes(), mask_for(usize::MAX)))
        .collect();
    // xorshift64 with a fixed seed: every run publishes the same room sequence.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut burst = Vec::new();
    loop {
        let outstanding = (rooms.sent.get() - rooms.completed.get()) as usize;
        let k = o.inflight.saturating_sub(outstanding);
        if k > 0 {
            let now = Instant::now();
            burst.clear();
            for _ in 0..k {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let room = (x % rooms.rooms.len() as u64) as usize;
                let w = &rooms.rooms[room];
                // A room whose window is full is skipped: its slot would be reused too early.
                if w.full() {
                    continue;
                }
                w.send(1, now);
                rooms.sent.set(rooms.sent.get() + 1);
                burst.extend_from_slice(&frames[room]);
            }
            writer.write_all(&burst).await?;
        }
        rooms.progress.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_hosts_a_share_of_the_rooms() {
        // 4 nodes, 40 rooms: node n's subscribers are in rooms n, n+4, ..., n+36.
        for i in 0..4000 {
            assert_eq!(room_of(i, 40, 4) % 4, i % 4);
        }
        let mut per_room = [0; 40];
        for i in 0..4000 {
            per_room[room_of(i, 40, 4)] += 1;
        }
        assert!(per_room.iter().all(|&n| n == 100));
    }
}
