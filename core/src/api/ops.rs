//! Operational endpoints outside the documented API: liveness and readiness.

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, Response, Route, get};
use serde_json::json;

use super::error::json_response;
use crate::app::AppState;

pub fn routes(state: Arc<AppState>) -> impl Endpoint {
    Route::new()
        .at(
            "/healthz",
            get(poem::endpoint::make_sync(|_| {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            })),
        )
        .at(
            "/readyz",
            get(poem::endpoint::make(move |_| {
                let state = state.clone();
                async move { readiness(&state).await }
            })),
        )
}

/// Ready when the database answers.
async fn readiness(state: &AppState) -> Response {
    let database = match state.store() {
        Ok(store) => store.ping().await,
        Err(err) => Err(err),
    };
    match database {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "database": "ok"}),
        ),
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unreachable");
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "database": "unreachable"}),
            )
        }
    }
}
