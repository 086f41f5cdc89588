//! Connect mode: open N connections, K at a time, and hold them idle; connections/s and the
//! server's resident memory per connection.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::handshake;
use crate::options::Options;
use crate::proc_stats::{
    listen_counters, report_listen_counters, report_machine, rss_bytes, CpuMeter, MachineMeter,
};
use crate::report::Report;
use crate::run_state::RunState;
use crate::tls::Stream;

/// Longest a whole connect run may take before it is reported as it stands.
const LIMIT: Duration = Duration::from_secs(60);

/// Runs the connect measurement and returns its report.
pub async fn run(o: &Options) -> Report {
    let state = Rc::new(RunState::default());
    let open: Rc<RefCell<Vec<Stream>>> = Rc::new(RefCell::new(Vec::with_capacity(o.conns)));
    let next = Rc::new(Cell::new(0usize));
    let rss_before = o.server_pid.and_then(rss_bytes);
    let server_cpu = o.server_pid.map(CpuMeter::start);
    let own_cpu = CpuMeter::start(std::process::id());
    let machine = MachineMeter::start();
    let counters = listen_counters();
    state.measuring.set(true);
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..o.concurrency.min(o.conns) {
        let (o, state, open, next) = (o.clone(), state.clone(), open.clone(), next.clone());
        workers.push(tokio::task::spawn_local(async move {
            while next.get() < o.conns && t0.elapsed() < LIMIT {
                let i = next.get();
                next.set(i + 1);
                let started = Instant::now();
                match handshake::connect_maybe_tls(&o.addr, &o.path, o.source(i), o.tls, o.deflate).await {
                    Ok((stream, _)) => {
                        let ns = started.elapsed().as_nanos() as u64;
                        state.latency.borrow_mut().record_n(ns, 1);
                        state.ready.set(state.ready.get() + 1);
                        open.borrow_mut().push(stream);
                    }
                    Err(e) => state.fail(e),
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let ok = state.ready.get();
    let own = own_cpu.elapsed_ns();
    let server = server_cpu.and_then(|m| m.elapsed_ns());
    let cpus = machine.fractions();
    let mut report = Report::default();
    report_listen_counters(counters, &mut report);
    tokio::time::sleep(o.settle).await;
    let rss_after = o.server_pid.and_then(rss_bytes);
    let latency = state.latency.borrow();
    report
        .text("mode", "connect")
        .num("conns", o.conns as f64)
        .num("count", ok as f64)
        .num("seconds", wall)
        .num("rate", ok as f64 / wall)
        .num("p50_us", latency.quantile(0.50) as f64 / 1e3)
        .num("p99_us", latency.quantile(0.99) as f64 / 1e3)
        .opt("loadgen_cpu", own.map(|ns| ns as f64 / 1e9 / wall))
        .opt("server_cpu", server.map(|ns| ns as f64 / 1e9 / wall))
        .opt("server_rss_before", rss_before.map(|b| b as f64))
        .opt("server_rss_after", rss_after.map(|b| b as f64));
    let per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if ok > 0 => Some((a as f64 - b as f64) / ok as f64),
        _ => None,
    };
    report.opt("rss_per_conn", per_conn);
    report_machine(cpus, &mut report);
    drop(latency);
    state.finish(&mut report);
    open.borrow_mut().clear();
    report
}
