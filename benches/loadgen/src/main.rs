//! `rnode-loadgen`: the WebSocket load generator behind `npm run bench`.
//!
//! One thread, hand-written frames, many frames per syscall: the generator must never be the
//! bottleneck, and it reports its own CPU time next to the server's so a reader can check.
//! Prints one JSON object on stdout.

mod broadcast;
mod connect;
mod echo;
mod frame;
mod handshake;
mod histogram;
mod inbound;
mod options;
mod paced;
mod proc_stats;
mod pubsub;
mod report;
mod rooms;
mod run_state;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use options::{Mode, Options};

/// Extra time past the planned run after which the process exits whatever it is doing.
const WATCHDOG_SLACK: Duration = Duration::from_secs(90);

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let limit = options.warmup + options.duration + options.settle + WATCHDOG_SLACK;
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("rnode-loadgen: watchdog: still running after {limit:?}, exiting");
        std::process::exit(3);
    });
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rnode-loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, async {
        match options.mode {
            Mode::Echo => echo::run(&options).await,
            Mode::Broadcast => broadcast::run(&options).await,
            Mode::Connect => connect::run(&options).await,
            Mode::Rooms => rooms::run(&options).await,
        }
    });
    println!("{}", report.to_json());
    // Connection tasks loop until the runtime goes; do not wait for them to notice.
    drop(local);
    runtime.shutdown_background();
    ExitCode::SUCCESS
}
