//! PingPilot's core: the domain, the HTTP API, the provider plugin contract and registry, storage
//! and the delivery engine. It names no provider.

pub mod api;
pub mod app;
pub mod delivery;
pub mod metrics;
pub mod model;
pub mod provider;
pub mod relay;
#[cfg(feature = "samples")]
pub mod samples;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod throttled;

pub use pingpilot_config as config;

/// Runs `task` to its end on a new OS thread named `name`, inside a runtime built by `runtime`
/// (a current-thread one): for work that must not share the threads that serve requests.
pub(crate) fn spawn_on_own_thread(
    name: &str,
    runtime: &mut tokio::runtime::Builder,
    task: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let runtime = runtime.build()?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || runtime.block_on(task))?;
    Ok(())
}

/// Locks a mutex even when a thread panicked while holding it: every mutex of the relay guards
/// data that stays usable after any single step (caches, counters, rate-limit state).
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
