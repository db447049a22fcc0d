//! Operational endpoints outside the documented API: liveness and readiness.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Response, Route, get};
use serde_json::json;

use super::error::json_response;
use crate::app::AppState;
use crate::model::now_millis;
use crate::provider::{WebhookReply, WebhookRequest};
use crate::throttled::Throttled;

/// Liveness, readiness and (unless `metrics.bind` gives it a listener of its own) `/metrics`.
pub fn routes(state: Arc<AppState>) -> Route {
    let route = Route::new()
        .at(
            "/healthz",
            get(poem::endpoint::make_sync(|_| {
                json_response(StatusCode::OK, &json!({"status": "ok"}))
            })),
        )
        .at(
            "/readyz",
            get(poem::endpoint::make({
                let state = state.clone();
                move |_| {
                    let state = state.clone();
                    async move { readiness(&state).await }
                }
            })),
        );
    if state.settings.metrics.bind.is_some() {
        return route;
    }
    route.at("/metrics", metrics_endpoint(state))
}

/// `/metrics` alone, for the listener of `metrics.bind`.
pub fn metrics_route(state: Arc<AppState>) -> Route {
    Route::new().at("/metrics", metrics_endpoint(state))
}

fn metrics_endpoint(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    get(poem::endpoint::make(move |request: poem::Request| {
        let state = state.clone();
        async move {
            if !scraper_allowed(&state, &request) {
                return json_response(
                    StatusCode::UNAUTHORIZED,
                    &json!({"message": super::UNAUTHORIZED}),
                );
            }
            metrics(&state).await
        }
    }))
}

/// Whether the request may read `/metrics`: always, unless `metrics.token` is set; then only
/// with `Authorization: Bearer <token>`.
fn scraper_allowed(state: &AppState, request: &poem::Request) -> bool {
    let Some(token) = state.settings.metrics.token.as_deref() else {
        return true;
    };
    let presented = request
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    // Comparing digests: the time taken says nothing about the token.
    crate::model::hash_api_key(presented) == crate::model::hash_api_key(token)
}

/// Prometheus text: this process's counters and the database's queue (as of the last few
/// seconds: every scrape shares one reading).
async fn metrics(state: &AppState) -> Response {
    let queue = state.metrics.queue(state.store(), now_millis()).await;
    match queue {
        Ok(queue) => state
            .metrics
            .render(&queue, now_millis())
            .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            .into_response(),
        Err(err) => {
            if let Some(repeats) = UNREADY_LOG.ready() {
                tracing::warn!(error = %err, repeats, "metrics: database unreachable");
            }
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"message": "Database unreachable"}),
            )
        }
    }
}

/// Readiness failures are logged once per this period: probes keep asking.
static UNREADY_LOG: LazyLock<Throttled> =
    LazyLock::new(|| Throttled::every(std::time::Duration::from_secs(10)));

/// Ready when the database takes writes and answers.
async fn readiness(state: &AppState) -> Response {
    let database = state.store().ping().await;
    match database {
        Ok(()) => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "database": "ok"}),
        ),
        Err(err) => {
            if let Some(repeats) = UNREADY_LOG.ready() {
                tracing::warn!(error = %err, repeats, "not ready: the database cannot take writes");
            }
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "database": "unreachable"}),
            )
        }
    }
}

/// `POST /api/v1/<provider>/webhook`: calls from a provider (Telegram updates in webhook mode).
pub fn webhook(state: Arc<AppState>) -> impl Endpoint {
    poem::post(poem::endpoint::make(move |request: poem::Request| {
        let state = state.clone();
        async move { handle_webhook(&state, request).await }
    }))
}

async fn handle_webhook(state: &AppState, mut request: poem::Request) -> Response {
    let provider_id = request
        .raw_path_param("provider")
        .unwrap_or_default()
        .to_string();
    let Some(entry) = state.provider(&provider_id) else {
        return json_response(StatusCode::NOT_FOUND, &json!({"message": "Not found"}));
    };
    let headers: BTreeMap<String, String> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
        })
        .collect();
    let body = match request
        .take_body()
        .into_bytes_limit(super::extract::BODY_LIMIT)
        .await
    {
        Ok(body) => body,
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"message": "Request body too large"}),
            );
        }
    };
    let reply = entry
        .provider
        .handle_webhook(WebhookRequest {
            headers: &headers,
            body: &body,
        })
        .await;
    match reply {
        WebhookReply::Accepted => json_response(StatusCode::OK, &json!({"ok": true})),
        WebhookReply::Unauthorized(message) => {
            json_response(StatusCode::UNAUTHORIZED, &json!({"message": message}))
        }
        WebhookReply::BadRequest(message) => {
            json_response(StatusCode::BAD_REQUEST, &json!({"message": message}))
        }
        WebhookReply::NotEnabled => json_response(
            StatusCode::NOT_FOUND,
            &json!({"message": format!("The {provider_id} provider takes no webhooks here")}),
        ),
    }
}
