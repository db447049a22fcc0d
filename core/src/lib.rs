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
