//! The HTTP API: the documented `/api/v1` surface, built with poem-openapi.

mod account;
mod categories;
mod documented;
mod error;
mod event_types;
mod events;
mod extract;
mod intake;
mod keys;
mod ops;
mod rules;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::OpenApiService;
use tracing::Instrument;

pub use crate::service::intake::ValidEvent;
pub use account::parse_account_update;
pub use categories::{CategoryPatch, NewCategory};
pub use error::{ApiError, ErrorMessage, FieldError, ValidationFailure};
pub use intake::EventRequest;
pub use keys::parse_key_name;

use crate::app::AppState;
use crate::model::{ACCOUNT_DISABLED_MESSAGE, now_millis};
use crate::service::activity;

/// A web surface served beside the API under its own path prefix (the dashboard). Its answers
/// pass through as they are: its error pages are not turned into JSON.
pub struct Mount {
    /// E.g. `/dashboard`, without a trailing slash.
    pub prefix: &'static str,
    /// Paths under the prefix whose rest is a secret (e.g. `/login/` for one-time sign-in
    /// links): logged without it.
    pub secret_paths: &'static [&'static str],
    pub endpoint: poem::endpoint::BoxEndpoint<'static>,
}

pub const API_TITLE: &str = "PingPilot";
const API_PREFIX: &str = "/api/v1";

/// The documented API. Its operations take the relay's state from the request (`Data`), so the
/// document itself is built without one.
fn service() -> OpenApiService<
    (
        intake::IntakeApi,
        account::AccountApi,
        keys::KeysApi,
        categories::CategoriesApi,
        events::EventsApi,
    ),
    (),
> {
    OpenApiService::new(
        (
            intake::IntakeApi,
            account::AccountApi,
            keys::KeysApi,
            categories::CategoriesApi,
            events::EventsApi,
        ),
        API_TITLE,
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Self-hostable notification relay: send events with a Bearer API key; PingPilot stores \
         them durably and delivers them to the account owner through its providers (Discord, \
         Telegram, …).\n\n\
         Every operation takes `Authorization: Bearer <API key>` (`pk_…`; create one with \
         `pingpilot account create`). Every error answer is JSON with a `message`; the messages \
         documented with each answer are exact. Bodies are JSON (`Content-Type: \
         application/json`, or none), at most 64 KiB, and accept no properties besides the \
         documented ones. Times are RFC 3339 in UTC.",
    )
    .license(poem_openapi::LicenseObject::new("MIT OR Apache-2.0"))
    .server(
        poem_openapi::ServerObject::new(API_PREFIX)
            .description("This relay; prefix the host, e.g. http://localhost:8080/api/v1"),
    )
}

/// What the listener of `metrics.bind` serves: `/metrics` alone.
pub fn metrics_routes(state: Arc<AppState>) -> impl Endpoint<Output = Response> {
    ops::metrics_route(state)
        .map_to_response()
        .around(|next, req| async move {
            let response = match next.call(req).await {
                Ok(response) => response.into_response(),
                Err(err) => err.into_response(),
            };
            Ok(json_errors(response).await)
        })
}

/// The OpenAPI document as JSON, exactly as the server serves it.
pub fn openapi_json() -> String {
    service().spec()
}

/// The OpenAPI document as YAML.
pub fn openapi_yaml() -> String {
    service().spec_yaml()
}

/// Every route the server answers.
pub fn routes(state: Arc<AppState>, mounts: Vec<Mount>) -> impl Endpoint<Output = Response> {
    let api = service();
    let spec_json = api.spec();
    let spec_yaml = api.spec_yaml();
    let swagger = api.swagger_ui();
    let allowed = Arc::new(AllowedMethods::new(&spec_json));
    let mounted: Arc<[(&'static str, &'static [&'static str])]> =
        mounts.iter().map(|m| (m.prefix, m.secret_paths)).collect();
    let mut route = Route::new();
    for mount in mounts {
        route = route.nest(mount.prefix, mount.endpoint);
    }
    route
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
        .nest(
            API_PREFIX,
            with_activity(state.clone(), api.data(state.clone())),
        )
        .nest("/", ops::routes(state))
        .around(move |next, req| {
            let allowed = allowed.clone();
            let mounted = mounted.clone();
            let request_id = request_id(&req);
            let span = tracing::info_span!(
                "request",
                request_id = %request_id,
                trace_id = tracing::field::Empty,
            );
            crate::telemetry::record_trace_id(&span);
            async move {
                let method = req.method().clone();
                let path = req.uri().path().to_string();
                let own_errors = mounted.iter().any(|(prefix, _)| {
                    path.strip_prefix(prefix)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                });
                let started = std::time::Instant::now();
                let response = match next.call(req).await {
                    Ok(response) => response.into_response(),
                    Err(err) => err.into_response(),
                };
                let mut response = if own_errors {
                    response
                } else {
                    json_errors(response).await
                };
                if response.status() == StatusCode::METHOD_NOT_ALLOWED
                    && let Some(methods) = allowed.at(&path)
                    && let Ok(value) = poem::http::HeaderValue::from_str(&methods)
                {
                    response
                        .headers_mut()
                        .insert(poem::http::header::ALLOW, value);
                }
                // One line per request. Keys travel in a header; paths that carry a secret (a
                // one-time sign-in link) are cut before it.
                let path = loggable_path(&path, &mounted);
                tracing::info!(
                    %method,
                    %path,
                    status = response.status().as_u16(),
                    duration_ms = started.elapsed().as_millis() as u64,
                    "request"
                );
                if let Ok(value) = poem::http::HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(REQUEST_ID, value);
                }
                Ok(response)
            }
            .instrument(span)
        })
}

/// `api`, with each request an account's key made counted for the activity record, refused
/// ones included; requests with no key found (a 401) belong to no account and are not.
fn with_activity(
    state: Arc<AppState>,
    api: impl Endpoint + 'static,
) -> impl Endpoint<Output = Response> {
    let recording = activity::enabled(&state);
    api.around(move |next, req| {
        let state = state.clone();
        async move {
            if !recording {
                return next.call(req).await.map(IntoResponse::into_response);
            }
            // Kept cheaply (the path's bytes are shared): most requests add to a counted kind.
            let method = req.method().clone();
            let uri = req.original_uri().clone();
            let client =
                crate::server::client_address(&req, &state.settings.server.trusted_proxies);
            let (result, caller) = activity::observe(next.call(req)).await;
            let Some(caller) = caller else {
                return result.map(IntoResponse::into_response);
            };
            let response = match result {
                Ok(response) => response.into_response(),
                Err(err) => err.into_response(),
            };
            let (response, message) = refusal_message(response).await;
            let answered = activity::Answered {
                method: method.as_str(),
                path: uri.path(),
                status: response.status().as_u16(),
                message: message.as_deref(),
                client,
            };
            state.activity.count(caller, &answered, now_millis());
            Ok(response)
        }
    })
}

/// The `message` of an error answer, read from its JSON body (which is put back).
async fn refusal_message(response: Response) -> (Response, Option<String>) {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return (response, None);
    }
    let (parts, body) = response.into_parts();
    let bytes = body.into_bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|body| Some(body.get("message")?.as_str()?.to_string()));
    (
        Response::from_parts(parts, poem::Body::from(bytes)),
        message,
    )
}

/// The header that names a request in the relay's log and in its answer.
pub const REQUEST_ID: &str = "x-request-id";

/// The longest `X-Request-Id` taken from a client.
const REQUEST_ID_MAX: usize = 128;

/// The client's `X-Request-Id` when it is sane (1 to 128 letters, digits and `-_.:`, so that
/// it cannot forge log lines or fill them), else a new one.
fn request_id(req: &poem::Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| is_sane_request_id(id))
        .map_or_else(|| ulid::Ulid::new().to_string(), str::to_string)
}

fn is_sane_request_id(id: &str) -> bool {
    (1..=REQUEST_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// `path` without the secret part of a mount's secret-carrying paths.
fn loggable_path<'p>(
    path: &'p str,
    mounts: &[(&'static str, &'static [&'static str])],
) -> std::borrow::Cow<'p, str> {
    for (prefix, secret_paths) in mounts {
        let Some(rest) = path.strip_prefix(prefix) else {
            continue;
        };
        for secret_path in *secret_paths {
            if rest.len() > secret_path.len() && rest.starts_with(secret_path) {
                return format!("{prefix}{secret_path}[redacted]").into();
            }
        }
    }
    path.into()
}

/// The methods each route answers, for the `Allow` header of a 405 (RFC 9110): the documented
/// operations, read from the OpenAPI document, and the routes outside it.
struct AllowedMethods {
    /// Path templates split into segments (`{name}` matches any one segment), with the
    /// `Allow` value.
    routes: Vec<(Vec<String>, String)>,
}

impl AllowedMethods {
    fn new(spec_json: &str) -> Self {
        let mut by_path: Vec<(String, Vec<String>)> = vec![
            ("/api/v1/openapi.json".into(), vec!["GET".into()]),
            ("/api/v1/openapi.yaml".into(), vec!["GET".into()]),
            ("/api/v1/{provider}/webhook".into(), vec!["POST".into()]),
            ("/docs".into(), vec!["GET".into()]),
            ("/healthz".into(), vec!["GET".into()]),
            ("/readyz".into(), vec!["GET".into()]),
            ("/metrics".into(), vec!["GET".into()]),
        ];
        let spec: serde_json::Value = serde_json::from_str(spec_json).unwrap_or_default();
        if let Some(paths) = spec["paths"].as_object() {
            for (path, operations) in paths {
                let methods = operations
                    .as_object()
                    .map(|ops| ops.keys().map(|m| m.to_ascii_uppercase()).collect())
                    .unwrap_or_default();
                by_path.push((format!("{API_PREFIX}{path}"), methods));
            }
        }
        let routes = by_path
            .into_iter()
            .map(|(path, mut methods)| {
                if methods.iter().any(|m| m == "GET") {
                    methods.push("HEAD".into());
                }
                let segments = path.split('/').map(str::to_string).collect();
                (segments, methods.join(", "))
            })
            .collect();
        Self { routes }
    }

    /// The `Allow` value for a request path, preferring literal segments over templates
    /// (`/api/v1/openapi.json` over `/api/v1/{provider}/webhook` shapes).
    fn at(&self, path: &str) -> Option<String> {
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| {
                        t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                    })
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
            .map(|(_, methods)| methods.clone())
    }
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
    /// Sending events (`POST /event`), reading them back with their deliveries, retrying failed
    /// deliveries, and the monthly quota.
    Events,
    /// The account: its settings, provider fields (`discordId`, `telegramUsername`, …),
    /// channels and API keys. Never answers intake's 403s, so settings can always be fixed.
    Account,
    /// Event categories: every event names one; its colour and emoji style the notification.
    Categories,
}

pub const UNAUTHORIZED: &str = "Unauthorized";
pub const BAD_AUTH_FORMAT: &str = "Invalid auth header format. Expected: 'Bearer [API_KEY]'";
pub const INVALID_KEY: &str = "Invalid API key";

/// The key the request presents, or the documented 401 for a missing, malformed or empty one.
fn presented_key(auth: &extract::Bearer) -> Result<&str, ApiError> {
    match auth {
        extract::Bearer::Missing => Err(ApiError::unauthorized(UNAUTHORIZED)),
        extract::Bearer::Malformed => Err(ApiError::unauthorized(BAD_AUTH_FORMAT)),
        extract::Bearer::Key(key) if key.is_empty() => Err(ApiError::unauthorized(INVALID_KEY)),
        extract::Bearer::Key(key) => Ok(key),
    }
}

/// The account behind the request's Bearer key, or the documented 401.
async fn authenticate(
    state: &AppState,
    auth: &extract::Bearer,
) -> Result<crate::model::Account, ApiError> {
    let key = presented_key(auth)?;
    let account = state
        .authenticate_key(key)
        .await?
        .map(|found| found.account)
        .ok_or_else(|| ApiError::unauthorized(INVALID_KEY))?;
    activity::attribute(&account.id, key);
    if account.disabled_at.is_some() {
        return Err(ApiError::forbidden(ACCOUNT_DISABLED_MESSAGE));
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::is_sane_request_id;

    #[test]
    fn a_client_request_id_is_taken_only_when_it_cannot_forge_a_log_line() {
        for sane in ["a", "01J9ZK3Q7Y", "req-1_2.3:4", &"x".repeat(128)] {
            assert!(is_sane_request_id(sane), "{sane}");
        }
        for insane in ["", "a b", "a\nb", "\"}", "é", &"x".repeat(129)] {
            assert!(!is_sane_request_id(insane), "{insane:?}");
        }
    }
}
