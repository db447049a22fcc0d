//! Reading events back, re-queueing failed deliveries, and the quota.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::json;

use super::documented::{
    ErrorDoc, Errors, Json, Nullable, OperationErrors, Param, ParamSchema, RawHeader, Timestamp,
};
use super::error::ApiError;
use super::event_types::EventFields;
use super::extract::{Bearer, JsonBody};
use super::intake::{
    EventRequest, IdempotencyKeyParam, SendEventErrors, SendEventResponse, WaitParam,
};
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{
    DeliveryRecord, DeliveryStatus, EventId, EventRecord, Millis, now_millis, to_datetime,
};
use crate::service::deliveries::{quota, retry_failed_deliveries};
use crate::store::EventFilter;

const DEFAULT_PAGE: u32 = 30;
const MAX_PAGE: u32 = 100;
const EXAMPLE_EVENT_ID: &str = "evt_01JJ5Q8Z4W7S3K2M9N6B1V0C8X";

/// An event as listed.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct EventSummary {
    /// `evt_` followed by a time-sortable unique id.
    pub id: String,
    /// The name of its category when the event was accepted (lower-case).
    pub category: String,
    /// The notification text (the default one when none was sent).
    pub description: String,
    /// The fields as sent, in order.
    pub fields: EventFields,
    // `PENDING` while any delivery is not final, `DELIVERED` when all are delivered, `FAILED`
    // when all are final and one failed.
    pub delivery_status: DeliveryStatus,
    /// When the event was accepted.
    pub created_at: Timestamp,
}

impl Example for EventSummary {
    fn example() -> Self {
        Self {
            id: EXAMPLE_EVENT_ID.into(),
            category: "sale".into(),
            description: "New purchase completed".into(),
            fields: EventFields::example(),
            delivery_status: DeliveryStatus::Delivered,
            created_at: super::documented::example_time(),
        }
    }
}

/// One page of events, newest first.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Nullable<String>,
}

impl Example for EventPage {
    fn example() -> Self {
        Self {
            events: vec![EventSummary::example()],
            next_cursor: Nullable(Some(EXAMPLE_EVENT_ID.into())),
        }
    }
}

/// One try to hand a delivery to its provider.
#[derive(Debug, Object)]
#[oai(rename = "DeliveryAttempt", rename_all = "camelCase", example)]
pub struct AttemptView {
    /// When the try started.
    pub started_at: Timestamp,
    /// How long the provider took to answer, in milliseconds.
    pub duration_ms: i64,
    /// The provider's HTTP status; `null` when no answer came (network error).
    pub http_status: Nullable<i64>,
    /// What went wrong; `null` when the try succeeded.
    pub error: Nullable<String>,
}

impl Example for AttemptView {
    fn example() -> Self {
        Self {
            started_at: super::documented::example_time(),
            duration_ms: 182,
            http_status: Nullable(Some(200)),
            error: Nullable(None),
        }
    }
}

/// The delivery of an event through one provider.
#[derive(Debug, Object)]
#[oai(rename = "Delivery", rename_all = "camelCase", example)]
pub struct DeliveryView {
    /// Provider id (`discord`, `telegram`, …).
    pub provider: String,
    // `PENDING` until delivered or failed for good.
    pub status: DeliveryStatus,
    /// Every try, oldest first.
    pub attempts: Vec<AttemptView>,
    /// The latest error; `null` when there was none.
    pub last_error: Nullable<String>,
    /// Why the delivery is waiting without being tried (provider not configured, chat not
    /// linked); `null` when it is not waiting.
    pub waiting_reason: Nullable<String>,
    /// When a pending delivery is tried next; `null` when it is final.
    pub next_attempt_at: Nullable<Timestamp>,
    /// When the provider accepted the message; `null` until then.
    pub delivered_at: Nullable<Timestamp>,
}

impl Example for DeliveryView {
    fn example() -> Self {
        Self {
            provider: "discord".into(),
            status: DeliveryStatus::Delivered,
            attempts: vec![AttemptView::example()],
            last_error: Nullable(None),
            waiting_reason: Nullable(None),
            next_attempt_at: Nullable(None),
            delivered_at: Nullable(Some(super::documented::example_time())),
        }
    }
}

/// An event with each of its deliveries and every attempt made.
#[derive(Debug, Object)]
#[oai(rename = "Event", rename_all = "camelCase", example)]
pub struct EventDetail {
    /// `evt_` followed by a time-sortable unique id.
    pub id: String,
    /// The name of its category when the event was accepted (lower-case).
    pub category: String,
    /// The notification text (the default one when none was sent).
    pub description: String,
    /// The fields as sent, in order.
    pub fields: EventFields,
    // `PENDING` while any delivery is not final, `DELIVERED` when all are delivered, `FAILED`
    // when all are final and one failed.
    pub delivery_status: DeliveryStatus,
    /// When the event was accepted.
    pub created_at: Timestamp,
    /// One delivery per channel that was enabled when the event was accepted.
    pub deliveries: Vec<DeliveryView>,
}

impl Example for EventDetail {
    fn example() -> Self {
        let summary = EventSummary::example();
        Self {
            id: summary.id,
            category: summary.category,
            description: summary.description,
            fields: summary.fields,
            delivery_status: summary.delivery_status,
            created_at: summary.created_at,
            deliveries: vec![DeliveryView::example()],
        }
    }
}

/// Failed deliveries put back in the queue.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct RetryResult {
    /// `<n> failed deliveries queued again`.
    pub message: String,
    /// The event.
    pub event_id: String,
    /// How many failed deliveries were queued again (0 when none had failed).
    pub requeued: u64,
}

impl Example for RetryResult {
    fn example() -> Self {
        Self {
            message: "1 failed deliveries queued again".into(),
            event_id: EXAMPLE_EVENT_ID.into(),
            requeued: 1,
        }
    }
}

/// The plan's limits and what is used of them.
#[derive(Debug, Object)]
#[oai(rename = "Quota", rename_all = "camelCase", example)]
pub struct QuotaView {
    /// The account's plan.
    pub plan: String,
    /// Events accepted this calendar month (UTC).
    pub events_used: u64,
    /// Events the plan accepts per month; `null` when the plan has no limit.
    pub events_limit: Nullable<u64>,
    /// Categories the account has.
    pub categories_used: u64,
    /// Categories the plan allows; `null` when the plan has no limit.
    pub categories_limit: Nullable<u64>,
    /// When the monthly count starts again: the first of next month, 00:00 UTC.
    pub reset_date: Timestamp,
}

impl Example for QuotaView {
    fn example() -> Self {
        Self {
            plan: "free".into(),
            events_used: 42,
            events_limit: Nullable(Some(100)),
            categories_used: 2,
            categories_limit: Nullable(Some(3)),
            reset_date: Timestamp("2026-02-01T00:00:00Z".into()),
        }
    }
}

/// `?limit=`: 1–100.
pub struct LimitParam;

impl ParamSchema for LimitParam {
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(1.0),
            maximum: Some(f64::from(MAX_PAGE)),
            default: Some(json!(DEFAULT_PAGE)),
            ..MetaSchema::new_with_format("integer", "int32")
        }))
    }
}

/// `?status=`: a delivery status.
pub struct StatusParam;

impl ParamSchema for StatusParam {
    fn schema_ref() -> MetaSchemaRef {
        DeliveryStatus::schema_ref()
    }

    fn register(registry: &mut Registry) {
        DeliveryStatus::register(registry);
    }
}

/// `?timeRange=`: today, week or month.
pub struct TimeRangeParam;

impl ParamSchema for TimeRangeParam {
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            enum_items: vec![json!("today"), json!("week"), json!("month")],
            ..MetaSchema::new("string")
        }))
    }
}

/// `?since=` / `?until=`: an RFC 3339 time.
pub struct TimeParam;

impl ParamSchema for TimeParam {
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            example: Some(json!("2026-01-31T09:00:00Z")),
            ..MetaSchema::new_with_format("string", "date-time")
        }))
    }
}

/// The answers of `GET /events`.
#[derive(ApiResponse)]
pub enum ListEventsResponse {
    /// A page of events, newest first.
    #[oai(status = 200)]
    Page(Json<EventPage>),
}

/// The answers of `GET /events/{id}`.
#[derive(ApiResponse)]
pub enum GetEventResponse {
    /// The event with its deliveries and attempts.
    #[oai(status = 200)]
    Event(Json<EventDetail>),
}

/// The answers of `POST /events/{id}/retry`.
#[derive(ApiResponse)]
pub enum RetryEventResponse {
    /// The event's failed deliveries are queued again.
    #[oai(status = 200)]
    Requeued(Json<RetryResult>),
}

/// The answers of `GET /quota`.
#[derive(ApiResponse)]
pub enum GetQuotaResponse {
    /// The plan's limits and what is used.
    #[oai(status = 200)]
    Quota(Json<QuotaView>),
}

const EVENT_NOT_FOUND: &str = "Event not found";

fn event_not_found() -> ErrorDoc {
    ErrorDoc::not_found(
        "No event with that id on this account: exactly `Event not found`.",
        EVENT_NOT_FOUND,
    )
}

/// The error answers of `GET /events`.
pub struct ListEventsErrors;

impl OperationErrors for ListEventsErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![
            ErrorDoc::bad_parameter(
                "A malformed query parameter; the message names it, e.g. `limit must be a whole \
                 number from 1 to 100`, `status must be PENDING, DELIVERED or FAILED`, \
                 `timeRange must be today, week or month`, `since must be an RFC 3339 time such \
                 as 2026-01-31T09:00:00Z`.",
                "limit must be a whole number from 1 to 100",
            ),
            ErrorDoc::unauthorized(),
            ErrorDoc::internal(),
        ]
    }
}

/// The error answers of `GET /events/{id}` and `POST /events/{id}/retry`.
pub struct EventErrors;

impl OperationErrors for EventErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![
            ErrorDoc::unauthorized(),
            event_not_found(),
            ErrorDoc::internal(),
        ]
    }
}

/// The error answers of operations that only need the key.
pub struct KeyOnlyErrors;

impl OperationErrors for KeyOnlyErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![ErrorDoc::unauthorized(), ErrorDoc::internal()]
    }
}

fn summary(event: EventRecord) -> Result<EventSummary, ApiError> {
    Ok(EventSummary {
        id: event.id.into(),
        category: event.category,
        description: event.description,
        fields: EventFields(event.fields),
        delivery_status: event.delivery_status,
        created_at: Timestamp::from_millis(event.created_at),
    })
}

fn delivery_view(delivery: DeliveryRecord) -> Result<DeliveryView, ApiError> {
    Ok(DeliveryView {
        provider: delivery.provider,
        status: delivery.status,
        attempts: delivery
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                started_at: Timestamp::from_millis(a.started_at),
                duration_ms: a.duration_ms,
                http_status: a.http_status.into(),
                error: a.error.into(),
            })
            .collect(),
        last_error: delivery.last_error.into(),
        waiting_reason: delivery.waiting_reason.into(),
        next_attempt_at: delivery.next_attempt_at.map(Timestamp::from_millis).into(),
        delivered_at: delivery.delivered_at.map(Timestamp::from_millis).into(),
    })
}

fn parse_time(name: &str, text: &str) -> Result<Millis, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "{name} must be an RFC 3339 time such as 2026-01-31T09:00:00Z"
            ))
        })
}

/// Start of today, this week (Monday) or this month, UTC.
fn range_start(range: &str, now: Millis) -> Result<Millis, ApiError> {
    let now = to_datetime(now);
    let today = Utc
        .with_ymd_and_hms(now.year(), now.month(), now.day(), 0, 0, 0)
        .single()
        .unwrap_or(now);
    let start = match range {
        "today" => today,
        "week" => today - Duration::days(i64::from(now.weekday().num_days_from_monday())),
        "month" => Utc
            .with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
            .single()
            .unwrap_or(now),
        _ => {
            return Err(ApiError::bad_request(
                "timeRange must be today, week or month",
            ));
        }
    };
    Ok(start.timestamp_millis())
}

pub struct EventsApi;

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// List events
    ///
    /// The account's events, newest first, `limit` per page; follow `nextCursor` with `cursor`
    /// until it is `null`. Filters combine: `category`, `status`, `timeRange`, `since`, `until`.
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// Only events of this category (by name, case-insensitively).
        category: Query<Option<String>>,
        /// Only events with this delivery status.
        status: Query<Option<Param<StatusParam>>>,
        /// Only events since the start of today, this week (from Monday) or this month, UTC.
        #[oai(name = "timeRange")]
        time_range: Query<Option<Param<TimeRangeParam>>>,
        /// Only events accepted at or after this time (RFC 3339).
        since: Query<Option<Param<TimeParam>>>,
        /// Only events accepted before this time (RFC 3339).
        until: Query<Option<Param<TimeParam>>>,
        /// Events per page, 1–100.
        limit: Query<Option<Param<LimitParam>>>,
        /// The `nextCursor` of the previous page.
        cursor: Query<Option<String>>,
    ) -> Result<ListEventsResponse, Errors<ListEventsErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let limit = match limit.0.map(Param::into_inner) {
            None => DEFAULT_PAGE,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request("limit must be a whole number from 1 to 100")
                })?,
        };
        let status = status
            .0
            .map(|s| {
                Some(s.into_inner())
                    .filter(|s| matches!(s.as_str(), "PENDING" | "DELIVERED" | "FAILED"))
                    .and_then(|s| DeliveryStatus::parse(&s))
                    .ok_or_else(|| {
                        ApiError::bad_request("status must be PENDING, DELIVERED or FAILED")
                    })
            })
            .transpose()?;
        let mut since = since
            .0
            .map(|t| parse_time("since", &t.into_inner()))
            .transpose()?;
        if let Some(range) = time_range.0 {
            let start = range_start(&range.into_inner(), now_millis())?;
            since = Some(since.map_or(start, |s| s.max(start)));
        }
        let filter = EventFilter {
            category: category.0,
            status,
            since,
            until: until
                .0
                .map(|t| parse_time("until", &t.into_inner()))
                .transpose()?,
            before_id: cursor.0,
            limit: limit + 1,
            ..EventFilter::default()
        };
        let mut events = state.store().events(&account.id, &filter).await?;
        let next_cursor = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(ListEventsResponse::Page(Json(EventPage {
            events: events.into_iter().map(summary).collect::<Result<_, _>>()?,
            next_cursor: next_cursor.map(String::from).into(),
        })))
    }

    /// Send an event (alias)
    ///
    /// The same as `POST /event` (`send_event`), under the plural path some clients of the
    /// hosted product use.
    #[oai(path = "/events", method = "post", operation_id = "send_event_alias")]
    async fn send_event_alias(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// As for `POST /event`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: RawHeader<IdempotencyKeyParam>,
        /// As for `POST /event`.
        wait: Query<Option<Param<WaitParam>>>,
        /// The event.
        body: JsonBody<EventRequest>,
    ) -> Result<SendEventResponse, Errors<SendEventErrors>> {
        super::intake::documented_accept(state.0, auth, idempotency_key, wait.0, body).await
    }

    /// Read an event
    ///
    /// The event with each delivery and every attempt made: provider status, duration, error,
    /// why a delivery waits and when it is tried next.
    #[oai(path = "/events/:id", method = "get", operation_id = "get_event")]
    async fn get_event(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The event id (`evt_…`).
        id: Path<String>,
    ) -> Result<GetEventResponse, Errors<EventErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let found = match EventId::parse(&id.0) {
            Some(event_id) => state.store().event(&account.id, &event_id).await?,
            None => None,
        };
        let Some((event, deliveries)) = found else {
            return Err(ApiError::not_found(EVENT_NOT_FOUND).into());
        };
        let EventSummary {
            id,
            category,
            description,
            fields,
            delivery_status,
            created_at,
        } = summary(event)?;
        Ok(GetEventResponse::Event(Json(EventDetail {
            id,
            category,
            description,
            fields,
            delivery_status,
            created_at,
            deliveries: deliveries
                .into_iter()
                .map(delivery_view)
                .collect::<Result<_, _>>()?,
        })))
    }

    /// Retry failed deliveries
    ///
    /// Puts the event's failed deliveries back in the queue with a fresh attempt budget;
    /// delivered and pending ones are left alone.
    #[oai(
        path = "/events/:id/retry",
        method = "post",
        operation_id = "retry_event"
    )]
    async fn retry_event(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The event id (`evt_…`).
        id: Path<String>,
    ) -> Result<RetryEventResponse, Errors<EventErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let requeued = match EventId::parse(&id.0) {
            Some(event_id) => retry_failed_deliveries(state.0, &account.id, &event_id).await?,
            None => None,
        };
        let Some(requeued) = requeued else {
            return Err(ApiError::not_found(EVENT_NOT_FOUND).into());
        };
        Ok(RetryEventResponse::Requeued(Json(RetryResult {
            message: format!("{requeued} failed deliveries queued again"),
            event_id: id.0,
            requeued,
        })))
    }

    /// Read the quota
    ///
    /// The plan, its monthly event and category limits, what is used of them, and when the
    /// monthly count starts again.
    #[oai(path = "/quota", method = "get", operation_id = "get_quota")]
    async fn get_quota(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
    ) -> Result<GetQuotaResponse, Errors<KeyOnlyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let quota = quota(state.0, &account, now_millis()).await?;
        Ok(GetQuotaResponse::Quota(Json(QuotaView {
            events_used: quota.events_used,
            events_limit: quota.events_limit.into(),
            categories_used: quota.categories_used,
            categories_limit: quota.categories_limit.into(),
            reset_date: Timestamp(
                quota
                    .resets_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            plan: quota.plan,
        })))
    }
}
