//! Process-wide runtime setup, done once when the addon loads: the tokio runtime every server
//! runs on, and the scheduling policy of its worker threads.

/// The tokio runtime every server of this process runs on. Its workers share the machine with
/// the JS thread, which does the application's work: one worker per core but one (at least
/// one), because a worker contending with the JS thread for a core slowed both connects and
/// latency more than it added. `TOKIO_WORKER_THREADS` overrides it.
#[napi_derive::module_init]
fn init_runtime() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all().thread_name("rnode-ws");
    #[cfg(target_os = "linux")]
    if std::env::var_os("RNODE_SCHED_BATCH").is_none_or(|v| v != "0") {
        builder.on_thread_start(batch_policy);
    }
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    if let Ok(runtime) = builder.build() {
        crate::offload::set_runtime(runtime.handle().clone());
        napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
    }
}

/// Puts the calling worker thread under `SCHED_BATCH`: same CPU share, but a socket becoming
/// ready no longer preempts the JS thread when both share a core. JS then finishes its batch
/// (and its corked writes) before the worker reads again, so the worker reads more per turn and
/// the two threads switch far less often. Unpinned, the worker
/// has a core of its own and nothing changes. `RNODE_SCHED_BATCH=0` keeps the normal policy. A
/// failure (a sandbox that forbids the call) leaves the thread as it was.
#[cfg(target_os = "linux")]
fn batch_policy() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param (priority 0, as
    // SCHED_BATCH requires). Nothing depends on the result.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
}
