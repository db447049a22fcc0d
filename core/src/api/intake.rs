//! `POST /api/v1/event`: the documented intake, checks in the documented order.

use std::sync::Arc;
use std::time::Duration;

use poem::web::Data;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Map, Value, json};

use super::documented::{self, ErrorDoc, Errors, OperationErrors, Param, ParamSchema, RawHeader};
use super::error::{ApiError, ErrorMessage, FieldError};
use super::event_types::{EventFields, FIELD_KEY, FIELD_TEXT, MAX_FIELDS};
use super::extract::{Bearer, JsonBody};
use super::rules::{
    CharRule, TextRule, TextViolation, body_object, body_type, inline, nullable, violation,
};
use super::{Tag, presented_key};
use crate::app::AppState;
use crate::model::ACCOUNT_DISABLED_MESSAGE;
use crate::model::{DeliveryStatus, hash_api_key};
use crate::service::activity;
use crate::service::intake::{self, IntakeError, Submission, ValidEvent};
use crate::service::intake::{NO_CATEGORY_CHANNEL_MESSAGE, NO_CHANNEL_MESSAGE};
pub use crate::service::intake::{QUOTA_MESSAGE, RATE_MESSAGE};

pub const ACCEPTED_MESSAGE: &str = "Event processed successfully";

/// An event's category name: letters, digits and hyphens.
pub const CATEGORY: TextRule = TextRule {
    min_chars: 1,
    max_chars: 64,
    chars: Some(CharRule {
        pattern: r"^[A-Za-z0-9-]{1,64}$",
        allows: |name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    }),
};
/// An event's description.
pub const DESCRIPTION: TextRule = TextRule::at_most(4096);

/// The body of `POST /event`: its schema and its validation ([`EventRequest::validate`]), both
/// from the rules above.
pub struct EventRequest;

body_type!(EventRequest, "EventRequest", |registry| {
    EventFields::register(registry);
    let MetaSchemaRef::Inline(fields) = EventFields::schema_ref() else {
        unreachable!("EventFields is an inline schema")
    };
    MetaSchema {
        description: Some(
            "An event to relay. No other properties are accepted; every broken rule is listed \
             in the 422\nanswer.",
        ),
        required: vec!["category"],
        properties: vec![
            (
                "category",
                inline(CATEGORY.schema(
                    "Name of one of your categories, matched case-insensitively (`Sale` finds \
                     `sale`): 1–64\nletters, digits or hyphens.",
                )),
            ),
            (
                "description",
                inline(nullable(DESCRIPTION.schema(
                    "The notification text, up to 4096 characters; when empty, `null` or \
                     absent:\n`A new <category> event has occurred!`.",
                ))),
            ),
            (
                "fields",
                inline(nullable(MetaSchema {
                    description: Some(
                        "Up to 25 key/value pairs, shown in the order sent. Keys 1–256 \
                         characters; values text\n(up to 1024 characters), numbers or booleans \
                         (`null`, arrays and objects are rejected).",
                    ),
                    ..*fields
                })),
            ),
        ],
        example: Some(json!({
            "category": "sale",
            "description": "New purchase completed",
            "fields": {"plan": "pro", "amount": 99.99, "recurring": true}
        })),
        ..MetaSchema::new("object")
    }
});

impl EventRequest {
    /// Checks a body against every rule and lists each violation, in the order of the
    /// properties as sent for unknown ones, then `category`, `description`, `fields`.
    pub fn validate(body: &Value) -> Result<ValidEvent, Vec<FieldError>> {
        let (object, mut errors) = body_object(
            body,
            &["category", "description", "fields"],
            "unknown property; allowed are category, description and fields",
        )?;
        let category = match object.get("category") {
            None | Some(Value::Null) => {
                errors.push(violation("category", "required"));
                None
            }
            Some(Value::String(name)) => {
                match CATEGORY.check(name) {
                    Ok(()) => {}
                    Err(TextViolation::Length) => {
                        errors.push(violation("category", CATEGORY.length_message()))
                    }
                    Err(TextViolation::Chars) => errors.push(violation(
                        "category",
                        "may contain only letters, digits and hyphens",
                    )),
                }
                Some(name.clone())
            }
            Some(_) => {
                errors.push(violation("category", "must be a string"));
                None
            }
        };
        let description = match object.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                if DESCRIPTION.check(text).is_err() {
                    errors.push(violation("description", DESCRIPTION.length_message()));
                }
                Some(text.clone()).filter(|t| !t.is_empty())
            }
            Some(_) => {
                errors.push(violation("description", "must be a string"));
                None
            }
        };
        let fields = match object.get("fields") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(fields)) => {
                validate_fields(fields, &mut errors);
                fields.clone()
            }
            Some(_) => {
                errors.push(violation("fields", "must be an object"));
                Map::new()
            }
        };
        match category {
            Some(category) if errors.is_empty() => Ok(ValidEvent {
                description: description
                    .unwrap_or_else(|| format!("A new {category} event has occurred!")),
                category,
                fields,
            }),
            _ => Err(errors),
        }
    }
}

fn validate_fields(fields: &Map<String, Value>, errors: &mut Vec<FieldError>) {
    if fields.len() > MAX_FIELDS {
        errors.push(violation(
            "fields",
            format!("must have at most {MAX_FIELDS} entries"),
        ));
    }
    for (key, value) in fields {
        let path = format!("fields.{key}");
        if FIELD_KEY.check(key).is_err() {
            errors.push(violation(
                &path,
                format!("keys {}", FIELD_KEY.length_message()),
            ));
        }
        match value {
            Value::String(text) if FIELD_TEXT.check(text).is_err() => errors.push(violation(
                &path,
                format!("text values {}", FIELD_TEXT.length_message()),
            )),
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            Value::Null => errors.push(violation(&path, "must not be null")),
            Value::Array(_) | Value::Object(_) => {
                errors.push(violation(&path, "must be a string, a number or a boolean"))
            }
        }
    }
}

/// The event is stored and its deliveries are queued.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct EventAccepted {
    /// Exactly `Event processed successfully`.
    pub message: String,
    /// `evt_` followed by a time-sortable unique id; read the event back with
    /// `GET /events/{id}`.
    pub event_id: String,
    // `PENDING` while deliveries are queued; `DELIVERED` when `?wait=` saw every delivery
    // go out.
    pub delivery_status: DeliveryStatus,
}

impl poem_openapi::types::Example for EventAccepted {
    fn example() -> Self {
        Self {
            message: ACCEPTED_MESSAGE.into(),
            event_id: "evt_01JJ5Q8Z4W7S3K2M9N6B1V0C8X".into(),
            delivery_status: DeliveryStatus::Pending,
        }
    }
}

/// `Idempotency-Key`: 1–255 visible ASCII characters.
pub struct IdempotencyKeyParam;

impl ParamSchema for IdempotencyKeyParam {
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            min_length: Some(1),
            max_length: Some(MAX_IDEMPOTENCY_KEY_LEN),
            pattern: Some("^[!-~]+$".into()),
            example: Some(json!("order-1234-paid")),
            ..MetaSchema::new("string")
        }))
    }
}

/// `?wait=`: seconds, 0–30.
pub struct WaitParam;

impl ParamSchema for WaitParam {
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(0.0),
            maximum: Some(MAX_WAIT_SECS),
            example: Some(json!(10)),
            ..MetaSchema::new("number")
        }))
    }
}

/// The answers of `POST /event`.
#[derive(ApiResponse)]
pub enum SendEventResponse {
    /// Accepted: the event, one delivery per enabled channel and the quota count are committed.
    /// `deliveryStatus` is `PENDING`, or `DELIVERED` when `?wait=` saw every delivery go out. A
    /// repeat with the same `Idempotency-Key` answers the first answer again.
    #[oai(status = 200)]
    Accepted(documented::Json<EventAccepted>),
}

/// The error answers of `POST /event`, in the order the checks run.
pub struct SendEventErrors;

impl OperationErrors for SendEventErrors {
    fn errors() -> Vec<ErrorDoc> {
        static FORBIDDEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let forbidden = documented::built_once(&FORBIDDEN, || {
            let mut text = String::from(
                "The account cannot receive events (checked after the key, before anything \
                 else). An account an operator disabled: exactly `This account is disabled`. \
                 For each enabled channel, in provider order, a required account field \
                 that is not set answers its provider's exact message:",
            );
            for (provider, field) in crate::provider::account_fields() {
                text.push_str(&format!(
                    " {} (`{}`): `{}`;",
                    provider.id, field.name, field.missing_message
                ));
            }
            text.push_str(&format!(
                " with no channel enabled at all: `{NO_CHANNEL_MESSAGE}`. A category with \
                 `channels` concerns only those: with none of them enabled, \
                 `{NO_CATEGORY_CHANNEL_MESSAGE}`."
            ));
            text
        });
        let first_missing = crate::provider::account_fields()
            .next()
            .map_or(NO_CHANNEL_MESSAGE, |(_, field)| field.missing_message);
        vec![
            ErrorDoc::new(
                400,
                "The body is not JSON: exactly `Invalid JSON request body`. Also a malformed \
                 `Idempotency-Key` (`Idempotency-Key must be 1 to 255 visible ASCII characters`) \
                 or `wait` (`wait must be a number of seconds from 0 to 30`).",
                super::error::INVALID_JSON,
            ),
            ErrorDoc::unauthorized(),
            ErrorDoc::new(403, forbidden, first_missing),
            ErrorDoc::not_found(
                "No category of that name on the account (matched case-insensitively): exactly \
                 `You dont have a category named \"<category as sent>\"`.",
                "You dont have a category named \"sale\"",
            ),
            ErrorDoc::new(
                409,
                "The `Idempotency-Key` was used in the last 24 hours with a different body.",
                IDEMPOTENCY_CONFLICT_MESSAGE,
            ),
            ErrorDoc::too_large(),
            ErrorDoc::unsupported_media_type(),
            ErrorDoc::invalid(
                "The body is JSON but breaks a rule of `EventRequest`; every violation is listed.",
                "category",
                "required",
            ),
            ErrorDoc::new(
                429,
                "The account sends faster than its plan's intake rate (`events_per_second`, with \
                 bursts up to `burst`; checked after 403, and such requests never count against \
                 the month): exactly `Too many requests: slow down and retry after the number of \
                 seconds in Retry-After`, with `Retry-After`. Or the events accepted this \
                 calendar month (UTC) reached the plan's limit: exactly `Monthly quota reached. \
                 Please upgrade your plan for more events` (no `Retry-After`).",
                RATE_MESSAGE,
            )
            .with_retry_after(
                "With the rate's 429 only: whole seconds until the account may send again.",
            ),
            ErrorDoc::new(
                500,
                "An unexpected failure: exactly `Internal server error`. With `?wait=`, when a \
                 delivery failed: exactly `Error processing event`, with the `eventId` (the event \
                 was accepted).",
                super::error::INTERNAL_ERROR,
            ),
        ]
    }
}

pub const DELIVERY_FAILED_MESSAGE: &str = "Error processing event";
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;
const MAX_WAIT_SECS: f64 = 30.0;

/// The `Idempotency-Key` header: 1–255 visible ASCII characters.
fn parse_idempotency_key(header: Option<String>) -> Result<Option<String>, ApiError> {
    match header {
        None => Ok(None),
        Some(key)
            if !key.is_empty()
                && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
                && key.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(key))
        }
        Some(_) => Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
        )),
    }
}

/// `?wait=<seconds>`: 0–30.
fn parse_wait(query: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = query else {
        return Ok(None);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|secs| (0.0..=MAX_WAIT_SECS).contains(secs))
        .map(|secs| Some(Duration::from_secs_f64(secs)).filter(|d| !d.is_zero()))
        .ok_or_else(|| ApiError::bad_request("wait must be a number of seconds from 0 to 30"))
}

/// A hash of the request an idempotency key came with: its JSON, as sent.
fn request_hash(body: &Value) -> String {
    crate::model::hash_api_key(&body.to_string())
}

pub struct IntakeApi;

/// Intake with its answers as documented, counted in the metrics by status; also serves the
/// `POST /events` alias (in `events.rs`: one path must be documented by one API impl).
pub(super) async fn documented_accept(
    state: &AppState,
    auth: Bearer,
    idempotency_key: RawHeader<IdempotencyKeyParam>,
    wait: Option<Param<WaitParam>>,
    body: JsonBody<EventRequest>,
) -> Result<SendEventResponse, Errors<SendEventErrors>> {
    let idempotency_key = idempotency_key.0;
    let wait = wait.map(Param::into_inner);
    let result = checked_accept(state, auth, idempotency_key, wait, body).await;
    state
        .metrics
        .intake(result.as_ref().map_or_else(ApiError::status, |_| 200));
    match result {
        Ok(accepted) => Ok(SendEventResponse::Accepted(documented::Json(accepted))),
        Err(error) => Err(error.into()),
    }
}

async fn checked_accept(
    state: &AppState,
    auth: Bearer,
    idempotency_key: Option<String>,
    wait: Option<String>,
    body: JsonBody<EventRequest>,
) -> Result<EventAccepted, ApiError> {
    let key = presented_key(&auth)?;
    // The key is checked before any of the body is read: a request with a bad key is
    // answered from its headers alone, whatever body it declares.
    let authorized = intake::authorize(state, hash_api_key(key)).await?;
    activity::attribute(authorized.account_id(), key);
    let body = body.value().await;
    let idempotency_key = parse_idempotency_key(idempotency_key);
    let request_hash = match (&idempotency_key, &body) {
        (Ok(Some(_)), Ok(body)) => Some(request_hash(body)),
        _ => None,
    };
    let event =
        body.and_then(|body| EventRequest::validate(&body).map_err(ApiError::unprocessable));
    if let Ok(event) = &event {
        activity::note_category(&event.category);
    }
    let submission = Submission::new(
        idempotency_key,
        request_hash,
        parse_wait(wait.as_deref()),
        event,
    );
    let accepted = intake::accept(state, authorized, submission).await?;
    Ok(EventAccepted {
        message: ACCEPTED_MESSAGE.into(),
        event_id: accepted.event_id.into(),
        delivery_status: accepted.status,
    })
}

impl From<IntakeError<ApiError>> for ApiError {
    /// Intake's refusals as documented for `POST /event`.
    fn from(err: IntakeError<ApiError>) -> Self {
        match err {
            IntakeError::UnknownKey => Self::unauthorized(super::INVALID_KEY),
            IntakeError::Request(answer) => answer,
            IntakeError::ChannelNotReady(message) => Self::forbidden(message),
            IntakeError::AccountDisabled => Self::forbidden(ACCOUNT_DISABLED_MESSAGE),
            IntakeError::RateLimited { retry_after_secs } => {
                Self::slow_down(RATE_MESSAGE, retry_after_secs)
            }
            IntakeError::QuotaReached => Self::too_many_requests(QUOTA_MESSAGE),
            IntakeError::UnknownCategory(name) => {
                Self::not_found(format!("You dont have a category named \"{name}\""))
            }
            IntakeError::IdempotencyConflict => Self::conflict(IDEMPOTENCY_CONFLICT_MESSAGE),
            IntakeError::DeliveryFailed { event_id } => Self::Internal(Json(ErrorMessage {
                message: DELIVERY_FAILED_MESSAGE.into(),
                event_id: Some(event_id.into()),
            })),
            IntakeError::AccountKeptChanging => Self::internal(),
            IntakeError::Store(err) => err.into(),
        }
    }
}

const IDEMPOTENCY_CONFLICT_MESSAGE: &str =
    "This Idempotency-Key was already used with a different request";

#[OpenApi(tag = "Tag::Events")]
impl IntakeApi {
    /// Send an event
    ///
    /// Stores the event with one delivery per enabled channel and counts it against the monthly
    /// quota, all in one transaction, then answers; delivery happens in the background. Checks
    /// run in this order and the first failure answers: 401 (key), 403 (account settings), 429
    /// (intake rate, then monthly quota), 415/413/400 (body), 422 (validation), 404 (category).
    ///
    /// With `Idempotency-Key`, a repeat of an accepted request within 24 hours answers with the
    /// same `eventId` and changes nothing; the same key with another body answers 409. With
    /// `?wait=<seconds>` (0–30) the answer waits until every delivery is final: 200 with
    /// `DELIVERED`, 500 `Error processing event` when one failed, or 200 `PENDING` when the time
    /// is up.
    #[oai(path = "/event", method = "post", operation_id = "send_event")]
    async fn send_event(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// Makes retries safe: a repeat of an accepted request with the same key within 24 hours
        /// answers with the first answer (same `eventId`) and changes nothing; the same key with
        /// a different body answers 409. 1–255 visible ASCII characters.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: RawHeader<IdempotencyKeyParam>,
        /// Seconds (0–30) to hold the answer until every delivery is final: 200 `DELIVERED`,
        /// 500 `Error processing event` when one failed, 200 `PENDING` when the time is up.
        wait: Query<Option<Param<WaitParam>>>,
        /// The event.
        body: JsonBody<EventRequest>,
    ) -> Result<SendEventResponse, Errors<SendEventErrors>> {
        documented_accept(state.0, auth, idempotency_key, wait.0, body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(result: Result<ValidEvent, Vec<FieldError>>) -> Vec<String> {
        result.unwrap_err().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn fills_in_the_default_description_and_keeps_field_order() {
        let event =
            EventRequest::validate(&json!({"category": "Sale", "fields": {"z": 1, "a": true}}))
                .unwrap();
        assert_eq!(event.description, "A new Sale event has occurred!");
        assert_eq!(event.fields.keys().collect::<Vec<_>>(), ["z", "a"]);
        let event =
            EventRequest::validate(&json!({"category": "sale", "description": ""})).unwrap();
        assert_eq!(event.description, "A new sale event has occurred!");
    }

    #[test]
    fn lists_every_violation() {
        let body = json!({
            "category": "no spaces",
            "description": "x".repeat(4097),
            "fields": {"ok": "x", "n": null, "list": [1], "obj": {}, "long": "y".repeat(1025)},
            "extra": 1
        });
        assert_eq!(
            paths(EventRequest::validate(&body)),
            [
                "extra",
                "category",
                "description",
                "fields.n",
                "fields.list",
                "fields.obj",
                "fields.long"
            ]
        );
    }

    #[test]
    fn rejects_wrong_shapes() {
        assert_eq!(paths(EventRequest::validate(&json!([]))), [""]);
        assert_eq!(paths(EventRequest::validate(&json!({}))), ["category"]);
        assert_eq!(
            paths(EventRequest::validate(&json!({"category": 5}))),
            ["category"]
        );
        assert_eq!(
            paths(EventRequest::validate(&json!({"category": ""}))),
            ["category"]
        );
        assert_eq!(
            paths(EventRequest::validate(&json!({"category": "a".repeat(65)}))),
            ["category"]
        );
        assert_eq!(
            paths(EventRequest::validate(
                &json!({"category": "a", "fields": []})
            )),
            ["fields"]
        );
        let many: Map<String, Value> = (0..26).map(|i| (format!("k{i}"), json!(i))).collect();
        assert_eq!(
            paths(EventRequest::validate(
                &json!({"category": "a", "fields": many})
            )),
            ["fields"]
        );
        assert_eq!(
            paths(EventRequest::validate(
                &json!({"category": "a", "fields": {"": 1}})
            )),
            ["fields."]
        );
    }
}
