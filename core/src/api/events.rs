//! Reading events back, re-queueing failed deliveries, and the quota.

use std::borrow::Cow;
use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Object, OpenApi};
use serde_json::Value;

use super::error::ApiError;
use super::extract::Bearer;
use super::intake::FieldValue;
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{
    DeliveryRecord, DeliveryStatus, EventRecord, Millis, format_time, next_month_start, now_millis,
    to_datetime,
};
use crate::store::EventFilter;

const DEFAULT_PAGE: u32 = 30;
const MAX_PAGE: u32 = 100;

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventSummary {
    pub id: String,
    pub category: String,
    pub description: String,
    /// The fields as sent, in order.
    pub fields: EventFields,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub delivery_status: String,
    pub created_at: String,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventPage {
    /// Newest first.
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct AttemptView {
    pub started_at: String,
    pub duration_ms: i64,
    /// The provider's HTTP status; null when no answer came (network error).
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct DeliveryView {
    pub provider: String,
    /// `PENDING`, `DELIVERED` or `FAILED`.
    pub status: String,
    pub attempts: Vec<AttemptView>,
    pub last_error: Option<String>,
    /// Why the delivery is waiting without being tried (provider not configured, chat not linked).
    pub waiting_reason: Option<String>,
    /// When a pending delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct EventDetail {
    pub id: String,
    pub category: String,
    pub description: String,
    pub fields: EventFields,
    pub delivery_status: String,
    pub created_at: String,
    pub deliveries: Vec<DeliveryView>,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct RetryResult {
    pub message: String,
    pub event_id: String,
    /// Failed deliveries put back in the queue.
    pub requeued: u64,
}

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct QuotaView {
    pub plan: String,
    /// Events accepted this calendar month (UTC).
    pub events_used: u64,
    /// Null when the plan has no limit.
    pub events_limit: Option<u64>,
    pub categories_used: u64,
    pub categories_limit: Option<u64>,
    /// When the monthly count starts again: the first of next month, 00:00 UTC.
    pub reset_date: String,
}

/// An event's fields: a JSON object that keeps the order in which they were sent.
#[derive(Debug, Clone, Default)]
pub struct EventFields(pub serde_json::Map<String, Value>);

impl Type for EventFields {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "EventFields".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Key/value pairs in the order sent; values are text, numbers or booleans",
            ),
            additional_properties: Some(Box::new(FieldValue::schema_ref())),
            max_properties: Some(25),
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        FieldValue::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for EventFields {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

impl ParseFromJSON for EventFields {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Object(map)) => Ok(Self(map)),
            None | Some(Value::Null) => Ok(Self(Default::default())),
            Some(other) => Err(ParseError::expected_type(other)),
        }
    }
}

fn summary(event: EventRecord) -> EventSummary {
    EventSummary {
        id: event.id,
        category: event.category,
        description: event.description,
        fields: EventFields(event.fields),
        delivery_status: event.delivery_status,
        created_at: format_time(event.created_at),
    }
}

fn delivery_view(delivery: DeliveryRecord) -> DeliveryView {
    DeliveryView {
        provider: delivery.provider,
        status: delivery.status,
        attempts: delivery
            .attempts
            .into_iter()
            .map(|a| AttemptView {
                started_at: format_time(a.started_at),
                duration_ms: a.duration_ms,
                http_status: a.http_status,
                error: a.error,
            })
            .collect(),
        last_error: delivery.last_error,
        waiting_reason: delivery.waiting_reason,
        next_attempt_at: delivery.next_attempt_at.map(format_time),
        delivered_at: delivery.delivered_at.map(format_time),
    }
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

pub struct EventsApi(pub Arc<AppState>);

#[OpenApi(tag = "Tag::Events")]
impl EventsApi {
    /// List events
    ///
    /// Newest first, `limit` per page (1–100, default 30); follow `nextCursor` with `cursor`.
    /// Filters: `category`, `status` (PENDING, DELIVERED, FAILED), `timeRange` (today, week —
    /// from Monday — or month, all UTC), `since` and `until` (RFC 3339).
    #[oai(path = "/events", method = "get", operation_id = "list_events")]
    #[allow(clippy::too_many_arguments)]
    async fn list_events(
        &self,
        auth: Bearer,
        category: Query<Option<String>>,
        status: Query<Option<String>>,
        #[oai(name = "timeRange")] time_range: Query<Option<String>>,
        since: Query<Option<String>>,
        until: Query<Option<String>>,
        limit: Query<Option<String>>,
        cursor: Query<Option<String>>,
    ) -> Result<Json<EventPage>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let limit = match limit.0 {
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
                DeliveryStatus::parse(&s).ok_or_else(|| {
                    ApiError::bad_request("status must be PENDING, DELIVERED or FAILED")
                })
            })
            .transpose()?;
        let mut since = since.0.map(|t| parse_time("since", &t)).transpose()?;
        if let Some(range) = time_range.0 {
            let start = range_start(&range, now_millis())?;
            since = Some(since.map_or(start, |s| s.max(start)));
        }
        let filter = EventFilter {
            category: category.0,
            status,
            since,
            until: until.0.map(|t| parse_time("until", &t)).transpose()?,
            before_id: cursor.0,
            limit: limit + 1,
        };
        let mut events = self.0.store()?.events(&account.id, &filter).await?;
        let next_cursor = if events.len() > limit as usize {
            events.truncate(limit as usize);
            events.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(Json(EventPage {
            events: events.into_iter().map(summary).collect(),
            next_cursor,
        }))
    }

    /// Read an event
    ///
    /// The event with each delivery and every attempt made.
    #[oai(path = "/events/:id", method = "get", operation_id = "get_event")]
    async fn get_event(
        &self,
        auth: Bearer,
        id: Path<String>,
    ) -> Result<Json<EventDetail>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let Some((event, deliveries)) = self.0.store()?.event(&account.id, &id.0).await? else {
            return Err(ApiError::not_found("Event not found"));
        };
        let EventSummary {
            id,
            category,
            description,
            fields,
            delivery_status,
            created_at,
        } = summary(event);
        Ok(Json(EventDetail {
            id,
            category,
            description,
            fields,
            delivery_status,
            created_at,
            deliveries: deliveries.into_iter().map(delivery_view).collect(),
        }))
    }

    /// Retry failed deliveries
    ///
    /// Puts the event's failed deliveries back in the queue with a fresh attempt budget.
    #[oai(
        path = "/events/:id/retry",
        method = "post",
        operation_id = "retry_event"
    )]
    async fn retry_event(
        &self,
        auth: Bearer,
        id: Path<String>,
    ) -> Result<Json<RetryResult>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let Some(requeued) = self.0.store()?.retry_event(&account.id, &id.0).await? else {
            return Err(ApiError::not_found("Event not found"));
        };
        self.0.work_ready.notify_one();
        Ok(Json(RetryResult {
            message: format!("{requeued} failed deliveries queued again"),
            event_id: id.0,
            requeued,
        }))
    }

    /// Read the quota
    #[oai(path = "/quota", method = "get", operation_id = "get_quota")]
    async fn get_quota(&self, auth: Bearer) -> Result<Json<QuotaView>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let store = self.0.store()?;
        let now = now_millis();
        let limits = self.0.plan(&account.plan);
        Ok(Json(QuotaView {
            events_used: store.events_used(&account.id, now).await?,
            events_limit: limits.events_per_month,
            categories_used: store.count_categories(&account.id).await?.max(0) as u64,
            categories_limit: limits.categories,
            reset_date: next_month_start(now).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            plan: account.plan,
        }))
    }
}
