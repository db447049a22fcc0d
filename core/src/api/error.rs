//! The API layer's one error type: every failure is a status plus a `{"message": ...}` body.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

use std::sync::LazyLock;
use std::time::Duration;

use crate::service::ServiceError;
use crate::store::StoreError;
use crate::throttled::Throttled;

/// A failure repeated by every request is logged once per this period, with a count.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub const INTERNAL_ERROR: &str = "Internal server error";
pub const INVALID_JSON: &str = "Invalid JSON request body";
pub const UNAVAILABLE: &str = "Service unavailable, please retry";
pub const BODY_TIMEOUT: &str = "Request body not received in time";
/// What a 503 tells the client to wait before retrying, in seconds.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 5;

/// The 415 message for a body sent as `content_type`.
pub fn unsupported_media_type_message(content_type: &str) -> String {
    format!("Unsupported content type {content_type:?}: send the body as application/json")
}

/// The 413 message.
pub fn too_large_message() -> String {
    format!(
        "Request body too large: at most {} KiB",
        crate::server::MAX_BODY_BYTES / 1024
    )
}

/// Every error answer but 422: what went wrong, for people.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(rename_all = "camelCase", example)]
#[serde(rename_all = "camelCase")]
pub struct ErrorMessage {
    /// What went wrong. The messages documented with each answer are exact and stable.
    pub message: String,
    /// The accepted event the failure is about: only with `?wait=` when a delivery failed
    /// (`Error processing event`).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

impl poem_openapi::types::Example for ErrorMessage {
    fn example() -> Self {
        Self::new(super::INVALID_KEY)
    }
}

impl ErrorMessage {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            event_id: None,
        }
    }
}

/// One violated rule of a request body.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(example)]
pub struct FieldError {
    /// Where in the body: a property (`category`), a nested one (`fields.amount`), or empty for
    /// the body itself.
    pub path: String,
    /// The rule that was broken.
    pub message: String,
}

impl poem_openapi::types::Example for FieldError {
    fn example() -> Self {
        Self {
            path: "category".into(),
            message: "may contain only letters, digits and hyphens".into(),
        }
    }
}

/// A request body that is JSON but breaks the rules (422): every violation is listed.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(example)]
pub struct ValidationFailure {
    /// `Invalid request body: ` followed by every violation, `<path>: <rule>`, joined by `; `.
    pub message: String,
    /// Every violated rule, in the order of the body.
    pub errors: Vec<FieldError>,
}

impl poem_openapi::types::Example for ValidationFailure {
    fn example() -> Self {
        Self::new(vec![FieldError::example()])
    }
}

impl ValidationFailure {
    pub fn new(errors: Vec<FieldError>) -> Self {
        let summary: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        Self {
            message: format!("Invalid request body: {}", summary.join("; ")),
            errors,
        }
    }
}

#[derive(Debug, Clone, ApiResponse)]
pub enum ApiError {
    /// The body is not JSON, or a query parameter is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorMessage>),
    /// Missing, malformed, unknown or revoked API key.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorMessage>),
    /// The account is not allowed to do this (settings incomplete, plan limit).
    #[oai(status = 403)]
    Forbidden(Json<ErrorMessage>),
    #[oai(status = 404)]
    NotFound(Json<ErrorMessage>),
    /// Already exists, or an `Idempotency-Key` reused with a different request.
    #[oai(status = 409)]
    Conflict(Json<ErrorMessage>),
    /// The body did not arrive within `server.body_timeout` of the headers.
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorMessage>),
    /// The body is larger than 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorMessage>),
    /// The body is sent with a content type other than `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorMessage>),
    /// The body is JSON but breaks the rules; every violation is listed.
    #[oai(status = 422)]
    Unprocessable(Json<ValidationFailure>),
    /// The plan's monthly event quota is used up, or its intake rate (then with `Retry-After`).
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorMessage>,
        #[oai(header = "Retry-After")] Option<u64>,
    ),
    /// `Internal server error`; with `?wait=`, `Error processing event` and the `eventId` when
    /// a delivery failed.
    #[oai(status = 500)]
    Internal(Json<ErrorMessage>),
    /// The database cannot take the request in time: retry after `Retry-After` seconds.
    #[oai(status = 503)]
    ServiceUnavailable(Json<ErrorMessage>, #[oai(header = "Retry-After")] u64),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(Json(ErrorMessage::new(message)))
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized(Json(ErrorMessage::new(message)))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(Json(ErrorMessage::new(message)))
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(Json(ErrorMessage::new(message)))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(Json(ErrorMessage::new(message)))
    }
    pub fn unprocessable(errors: Vec<FieldError>) -> Self {
        Self::Unprocessable(Json(ValidationFailure::new(errors)))
    }
    pub fn invalid_field(path: &str, message: impl Into<String>) -> Self {
        Self::unprocessable(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    }
    pub fn too_many_requests(message: impl Into<String>) -> Self {
        Self::TooManyRequests(Json(ErrorMessage::new(message)), None)
    }
    /// 429 with the seconds to wait before the next try.
    pub fn slow_down(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::TooManyRequests(Json(ErrorMessage::new(message)), Some(retry_after_secs))
    }
    pub fn request_timeout() -> Self {
        Self::RequestTimeout(Json(ErrorMessage::new(BODY_TIMEOUT)))
    }
    pub fn unavailable() -> Self {
        Self::ServiceUnavailable(
            Json(ErrorMessage::new(UNAVAILABLE)),
            UNAVAILABLE_RETRY_AFTER_SECS,
        )
    }
    pub fn internal() -> Self {
        Self::Internal(Json(ErrorMessage::new(INTERNAL_ERROR)))
    }

    /// The text of the answer's `message`, for surfaces that show it rather than send JSON.
    pub fn message(&self) -> &str {
        match self {
            Self::Unprocessable(failure) => &failure.message,
            Self::BadRequest(m)
            | Self::Unauthorized(m)
            | Self::Forbidden(m)
            | Self::NotFound(m)
            | Self::Conflict(m)
            | Self::RequestTimeout(m)
            | Self::PayloadTooLarge(m)
            | Self::UnsupportedMediaType(m)
            | Self::TooManyRequests(m, _)
            | Self::Internal(m)
            | Self::ServiceUnavailable(m, _) => &m.message,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Conflict(_) => 409,
            Self::RequestTimeout(_) => 408,
            Self::PayloadTooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::Unprocessable(_) => 422,
            Self::TooManyRequests(..) => 429,
            Self::Internal(_) => 500,
            Self::ServiceUnavailable(..) => 503,
        }
    }
}

impl From<StoreError> for ApiError {
    /// 503 when the database cannot take the request now (locked, full, gone, unreachable) and
    /// a retry may succeed; 500 for anything else. Either way the detail goes to the log only.
    fn from(err: StoreError) -> Self {
        static UNAVAILABLE_LOG: LazyLock<Throttled> = LazyLock::new(|| Throttled::every(LOG_EVERY));
        static FAILURE_LOG: LazyLock<Throttled> = LazyLock::new(|| Throttled::every(LOG_EVERY));
        if err.is_unavailable() {
            if let Some(repeats) = UNAVAILABLE_LOG.ready() {
                tracing::warn!(error = %err, repeats, "database unavailable: answering 503");
            }
            Self::unavailable()
        } else {
            if let Some(repeats) = FAILURE_LOG.ready() {
                tracing::error!(error = %err, repeats, "storage failure while answering a request");
            }
            Self::internal()
        }
    }
}

impl From<ServiceError> for ApiError {
    /// The service's refusals as the API documents them: 409 for a duplicate, 403 past the
    /// plan's limit.
    fn from(err: ServiceError) -> Self {
        match err {
            ServiceError::Duplicate(message) => Self::conflict(message),
            ServiceError::LimitReached(message) => Self::forbidden(message),
            ServiceError::Store(err) => err.into(),
        }
    }
}

pub fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Response {
    let body = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"message":"Internal server error"}"#.to_vec());
    body.with_status(status)
        .with_content_type("application/json; charset=utf-8")
        .into_response()
}
