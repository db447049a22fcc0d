//! PingPilot's core: the domain, the HTTP API, the provider plugin contract and registry, storage
//! and the delivery engine. It names no provider.

pub mod api;
pub mod app;
pub mod delivery;
pub mod metrics;
pub mod model;
pub mod provider;
#[cfg(feature = "samples")]
pub mod samples;
pub mod store;

pub use pingpilot_config as config;

/// Locks a mutex even when a thread panicked while holding it: every mutex of the relay guards
/// data that stays usable after any single step (caches, counters, rate-limit state).
pub fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
