//! The HTTP API: the documented `/api/v1` surface, built with poem-openapi.

mod account;
mod categories;
mod error;
mod events;
mod extract;
mod intake;
mod ops;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::OpenApiService;

pub use error::{ApiError, ErrorMessage, FieldError, ValidationFailure};

use crate::app::AppState;

pub const API_TITLE: &str = "PingPilot";
const API_PREFIX: &str = "/api/v1";

fn service(
    state: Arc<AppState>,
) -> OpenApiService<
    (
        intake::IntakeApi,
        account::AccountApi,
        categories::CategoriesApi,
        events::EventsApi,
    ),
    (),
> {
    OpenApiService::new(
        (
            intake::IntakeApi(state.clone()),
            account::AccountApi(state.clone()),
            categories::CategoriesApi(state.clone()),
            events::EventsApi(state),
        ),
        API_TITLE,
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hostable notification relay: send events with a Bearer API key; PingPilot stores \
         them durably and delivers them to the account owner through its providers.",
    )
    .server(API_PREFIX)
}

/// The OpenAPI document as JSON, exactly as the server serves it.
pub fn openapi_json() -> String {
    service(Arc::new(AppState::for_documentation())).spec()
}

/// The OpenAPI document as YAML.
pub fn openapi_yaml() -> String {
    service(Arc::new(AppState::for_documentation())).spec_yaml()
}

/// Every route the server answers.
pub fn routes(state: Arc<AppState>) -> impl Endpoint {
    let api = service(state.clone());
    let spec_json = openapi_json();
    let spec_yaml = openapi_yaml();
    let swagger = api.swagger_ui();
    Route::new()
        .at(
            "/api/v1/openapi.json",
            poem::get(poem::endpoint::make_sync(move |_| {
                spec_json
                    .clone()
                    .with_content_type("application/json; charset=utf-8")
            })),
        )
        .at(
            "/api/v1/openapi.yaml",
            poem::get(poem::endpoint::make_sync(move |_| {
                spec_yaml
                    .clone()
                    .with_content_type("application/yaml; charset=utf-8")
            })),
        )
        .nest("/docs", swagger)
        .at("/api/v1/:provider/webhook", ops::webhook(state.clone()))
        .nest(API_PREFIX, api)
        .nest("/", ops::routes(state))
        .around(|next, req| async move {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let started = std::time::Instant::now();
            let response = match next.call(req).await {
                Ok(response) => response.into_response(),
                Err(err) => err.into_response(),
            };
            let response = json_errors(response).await;
            // One line per request; the path never holds a key (keys travel in a header).
            tracing::info!(
                %method,
                %path,
                status = response.status().as_u16(),
                duration_ms = started.elapsed().as_millis() as u64,
                "request"
            );
            Ok(response)
        })
}

/// Turns every error answer that is not JSON yet (unknown route, wrong method, unparsable
/// parameter) into `{"message": ...}`; never shows internal detail on a 500.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let message = match status {
        StatusCode::NOT_FOUND => "Not found".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_string(),
        StatusCode::INTERNAL_SERVER_ERROR => error::INTERNAL_ERROR.to_string(),
        _ => {
            let text = response.into_body().into_string().await.unwrap_or_default();
            if text.trim().is_empty() {
                status.canonical_reason().unwrap_or("Error").to_string()
            } else {
                text
            }
        }
    };
    error::json_response(status, &ErrorMessage::new(message))
}

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Sending events and reading them back.
    Events,
    /// The account, its channels and API keys.
    Account,
    /// Event categories.
    Categories,
}

pub const UNAUTHORIZED: &str = "Unauthorized";
pub const BAD_AUTH_FORMAT: &str = "Invalid auth header format. Expected: 'Bearer [API_KEY]'";
pub const INVALID_KEY: &str = "Invalid API key";

/// The account behind the request's Bearer key, or the documented 401.
async fn authenticate(
    state: &AppState,
    auth: &extract::Bearer,
) -> Result<crate::model::Account, ApiError> {
    let key = match auth {
        extract::Bearer::Missing => return Err(ApiError::unauthorized(UNAUTHORIZED)),
        extract::Bearer::Malformed => return Err(ApiError::unauthorized(BAD_AUTH_FORMAT)),
        extract::Bearer::Key(key) => key,
    };
    if key.is_empty() {
        return Err(ApiError::unauthorized(INVALID_KEY));
    }
    state
        .account_for_key(key)
        .await?
        .ok_or_else(|| ApiError::unauthorized(INVALID_KEY))
}
