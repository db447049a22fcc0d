//! A running relay: the HTTP server with the API and its mounts, the delivery workers, the
//! providers' background tasks, retention and this process's heartbeat, from start to a clean
//! stop.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use poem::EndpointExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::Mount;
use crate::app::{AppError, AppState};
use crate::model::now_millis;
use crate::throttled::Throttled;

/// Connections the metrics listener (`metrics.bind`) takes at once: scrapers, not clients.
const METRICS_CONNECTIONS: usize = 64;

/// Runs the HTTP server (the API plus `mounts`), the delivery workers and the providers'
/// background tasks until `shutdown` turns true; then stops accepting, lets in-flight work finish
/// and returns.
pub async fn serve(
    state: Arc<AppState>,
    mounts: Vec<Mount>,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    let mut background = tokio::task::JoinSet::new();
    for entry in &state.providers {
        let provider = entry.provider.clone();
        let stop = shutdown.clone();
        background.spawn(async move { provider.run_background(stop).await });
    }
    background.spawn(heartbeat(state.clone(), shutdown.clone()));
    background.spawn(crate::service::retention::run(
        state.clone(),
        shutdown.clone(),
    ));
    background.spawn(crate::service::activity::run(
        state.clone(),
        shutdown.clone(),
    ));
    let deliveries = crate::delivery::start_on_own_thread(state.clone(), shutdown.clone())?;
    background.spawn(async move {
        // An error here means the thread is gone: there is nothing left to wait for.
        let _ = deliveries.await;
    });

    let limits = crate::server::Limits::from_settings(&state.settings);
    tracing::info!(
        max_connections = limits.max_connections,
        "accepting connections"
    );
    if let Some(bind) = state.settings.metrics.bind {
        let listener = crate::server::bind(bind)?;
        tracing::info!(address = %listener.local_addr()?, "metrics listening");
        let metrics = Arc::new(crate::api::metrics_routes(state.clone()).boxed());
        let limits = limits.with_max_connections(METRICS_CONNECTIONS);
        let stop = shutdown.clone();
        background.spawn(async move {
            if let Err(err) = crate::server::run(listener, metrics, limits, stop).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
    }
    let app = Arc::new(crate::api::routes(state.clone(), mounts).boxed());
    crate::server::run(listener, app, limits, shutdown).await?;
    while background.join_next().await.is_some() {}
    // The requests answered while the server stopped.
    if let Err(err) = crate::service::activity::flush(&state).await {
        tracing::warn!(error = %err, "could not write the last of the activity record");
    }
    Ok(())
}

/// How often a process says it is alive, and how long a silent one still counts.
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const HEARTBEAT_WINDOW_MS: i64 = 6_000;

/// Keeps this process registered among the live ones, so per-bot rate budgets are shared.
async fn heartbeat(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    let store = state.store().clone();
    let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
    let failures = Throttled::every(std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match store.heartbeat(&state.process_id, now_millis(), HEARTBEAT_WINDOW_MS).await {
                    Ok(count) => state.process_count.store(count, Ordering::Relaxed),
                    Err(err) => if let Some(repeats) = failures.ready() {
                        tracing::warn!(error = %err, repeats, "heartbeat failed");
                    },
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    if let Err(err) = store.forget_process(&state.process_id).await {
        tracing::warn!(error = %err, "could not unregister this process");
    }
}
