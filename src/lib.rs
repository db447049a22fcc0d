//! The `pingpilot` binary: command-line parsing, wiring, and the providers linked into it.

mod cli;
#[cfg(feature = "otel")]
mod telemetry;

use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// How long a starting relay waits for a database it cannot reach yet (a database container
/// started beside it), and the longest pause between two tries.
const DATABASE_WAIT: Duration = Duration::from_secs(60);
const DATABASE_RETRY_MAX: Duration = Duration::from_secs(5);

/// Opens the database, builds the providers and serves on `listener` until `shutdown` turns
/// true.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let state = tokio::select! {
        state = open_waiting(config) => state?,
        // Stopped while waiting for the database: nothing was started.
        _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
    };
    let mounts = pingpilot_dashboard::mount(state.clone())
        .into_iter()
        .collect();
    pingpilot_core::relay::serve(state, mounts, listener, shutdown).await
}

/// [`AppState::open`], tried again while a PostgreSQL server cannot be reached (refused,
/// unreachable, starting up) for up to [`DATABASE_WAIT`]; any other failure, or the last one,
/// is returned. A SQLite file that cannot be opened is a mistake to report at once.
async fn open_waiting(config: &Config) -> Result<Arc<AppState>, AppError> {
    let server = !config.settings.database.url.starts_with("sqlite:");
    let deadline = Instant::now() + DATABASE_WAIT;
    let mut pause = Duration::from_millis(250);
    loop {
        match AppState::open(config).await {
            Err(AppError::Store(err))
                if server && err.is_unavailable() && Instant::now() < deadline =>
            {
                tracing::warn!(error = %err, "the database cannot be reached yet; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(DATABASE_RETRY_MAX);
            }
            opened => return opened,
        }
    }
}
