//! The `pingpilot` binary: command-line parsing, wiring, and the providers linked into it.

mod cli;
#[cfg(feature = "otel")]
mod telemetry;

use std::sync::Arc;

use pingpilot_core::app::{AppError, AppState};
use pingpilot_core::config::Config;
use tokio::net::TcpListener;
use tokio::sync::watch;

// Each provider crate registers itself with `inventory`; naming it here keeps the linker from
// dropping it. Adding a channel means adding a crate and one line here.
use pingpilot_discord as _;
use pingpilot_email as _;
use pingpilot_slack as _;
use pingpilot_telegram as _;
use pingpilot_webhook as _;

pub use cli::run;
pub use pingpilot_core as core;

/// Opens the database, builds the providers and serves on `listener` until `shutdown` turns
/// true.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let state: Arc<AppState> = AppState::open(config).await?;
    let mounts = pingpilot_dashboard::mount(state.clone())
        .into_iter()
        .collect();
    pingpilot_core::relay::serve(state, mounts, listener, shutdown).await
}
