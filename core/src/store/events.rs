//! Events: taking one in (through the backend's group commit), reading them back, and putting
//! an event's failed deliveries back in the queue. One text for both backends (see `sql.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::{EventFilter, IntakeResult, NewEvent, Result};
use crate::model::{AccountId, DeliveryRecord, DeliveryStatus, EventId, EventRecord, Millis};

#[async_trait]
pub trait Events: Send + Sync {
    /// Events counted for the account in `now`'s month.
    async fn events_used(&self, account_id: &AccountId, now: Millis) -> Result<u64>;

    /// Commits the event, one delivery per provider and the quota count together, unless the
    /// quota is used up.
    async fn insert_event(&self, event: &NewEvent<'_>) -> Result<IntakeResult>;

    /// The event an `Idempotency-Key` was first used for within the window, with its request
    /// hash.
    async fn idempotent_event(
        &self,
        account_id: &AccountId,
        key: &str,
        now: Millis,
    ) -> Result<Option<(String, EventId)>>;

    /// The event's delivery status, `None` when there is no such event.
    async fn event_status(&self, event_id: &EventId) -> Result<Option<DeliveryStatus>>;

    async fn events(
        &self,
        account_id: &AccountId,
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>>;

    async fn event(
        &self,
        account_id: &AccountId,
        event_id: &EventId,
    ) -> Result<Option<(EventRecord, Vec<DeliveryRecord>)>>;

    /// Re-queues the event's failed deliveries; `None` when there is no such event.
    async fn retry_event(&self, account_id: &AccountId, event_id: &EventId) -> Result<Option<u64>>;

    /// How many events match the filter (its cursor and limit aside), and how many of those
    /// have a failed delivery (with a channel: there), in one reading.
    async fn count_matching(
        &self,
        account_id: &AccountId,
        filter: &EventFilter,
    ) -> Result<(u64, u64)>;

    /// Re-queues the failed deliveries of every event that matches the filter (its cursor and
    /// limit aside; with a channel, only the deliveries there), in one transaction; how many.
    async fn retry_matching(&self, account_id: &AccountId, filter: &EventFilter) -> Result<u64>;
}

/// The `LIKE` pattern that finds `text` anywhere, its wildcards escaped with `\`.
pub(super) fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Adds the condition that an event of the account has a delivery on `channel` in `status`
/// (either left out: any): the filter's channel, and the failed deliveries a retry of a
/// filtered set requeues. Written as a list of the account's matching deliveries, not a look
/// per event: failed ones come from their own index, so the cost follows how many failed, not
/// how many events the account has.
pub(super) fn push_has_delivery<DB>(
    query: &mut sqlx::QueryBuilder<DB>,
    account_id: &AccountId,
    channel: Option<&str>,
    status: Option<DeliveryStatus>,
) where
    DB: sqlx::Database,
    String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    query
        .push("events.id IN (SELECT d.event_id FROM deliveries d WHERE d.account_id = ")
        .push_bind(account_id.to_string());
    if let Some(channel) = channel {
        query
            .push(" AND d.provider = ")
            .push_bind(channel.to_string());
    }
    if let Some(status) = status {
        // Written out, not bound: only a status the query text names lets the planners pick
        // the partial index of failed deliveries (it is one of three fixed words).
        query.push(format_args!(" AND d.status = '{}'", status.as_str()));
    }
    query.push(")");
}

/// Adds the filter's conditions (cursor and limit aside) to a query on `events` that ends in a
/// `WHERE` clause. One text for both backends.
pub(super) fn push_conditions<DB>(
    query: &mut sqlx::QueryBuilder<DB>,
    account_id: &AccountId,
    filter: &EventFilter,
) where
    DB: super::sql::Dialect,
    String: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
    i64: for<'t> sqlx::Encode<'t, DB> + sqlx::Type<DB>,
{
    query
        .push(" events.account_id = ")
        .push_bind(account_id.to_string());
    if let Some(category) = &filter.category {
        query
            .push(" AND events.category_name = lower(")
            .push_bind(category.clone())
            .push(")");
    }
    match (&filter.channel, filter.status) {
        (Some(channel), status) => {
            query.push(" AND ");
            push_has_delivery(query, account_id, Some(channel), status);
        }
        (None, Some(status)) => {
            query
                .push(" AND events.delivery_status = ")
                .push_bind(status.as_str().to_string());
        }
        (None, None) => {}
    }
    if let Some(search) = filter.search.as_deref().filter(|text| !text.is_empty()) {
        let pattern = contains_pattern(search);
        let like = DB::LIKE_ANY_CASE;
        query
            .push(format!(" AND (events.description {like} "))
            .push_bind(pattern.clone())
            .push(format!(" ESCAPE '\\' OR events.fields {like} "))
            .push_bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(since) = filter.since {
        query.push(" AND events.created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        query.push(" AND events.created_at < ").push_bind(until);
    }
}

/// An `events` row, on either backend.
pub(super) fn event_from_row<R>(row: &R) -> Result<EventRecord>
where
    R: Row,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'r> &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    Ok(EventRecord {
        id: row.try_get("id")?,
        category: row.try_get("category_name")?,
        description: row.try_get("description")?,
        fields: super::parse_json(row.try_get("fields")?)?,
        delivery_status: super::stored_status(row.try_get("delivery_status")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// [`Events`] for a store. Each backend gives `Self::refresh_event_statuses` (its batch
/// writer's own statement) and `self.writes`, its group commit.
macro_rules! events_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::events::Events for $store {
            async fn events_used(
                &self,
                account_id: &$crate::model::AccountId,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<u64> {
                let stored: Option<i64> = sqlx::query_scalar($crate::store::STORED_COUNT)
                    .bind(account_id)
                    .bind($crate::model::month_key(now))
                    .fetch_optional(self.reads())
                    .await?;
                Ok($crate::store::events_counted(stored) as u64)
            }

            async fn insert_event(
                &self,
                event: &$crate::store::NewEvent<'_>,
            ) -> $crate::store::Result<$crate::store::IntakeResult> {
                self.writes.insert(event).await
            }

            async fn idempotent_event(
                &self,
                account_id: &$crate::model::AccountId,
                key: &str,
                now: $crate::model::Millis,
            ) -> $crate::store::Result<Option<(String, $crate::model::EventId)>> {
                Ok(sqlx::query_as($crate::store::FIND_IDEMPOTENT)
                    .bind(account_id)
                    .bind(key)
                    .bind(now - $crate::store::IDEMPOTENCY_WINDOW_MS)
                    .fetch_optional(self.reads())
                    .await?)
            }

            async fn event_status(
                &self,
                event_id: &$crate::model::EventId,
            ) -> $crate::store::Result<Option<$crate::model::DeliveryStatus>> {
                let stored: Option<String> =
                    sqlx::query_scalar("SELECT delivery_status FROM events WHERE id = $1")
                        .bind(event_id)
                        .fetch_optional(self.reads())
                        .await?;
                stored
                    .as_deref()
                    .map($crate::store::stored_status)
                    .transpose()
            }

            async fn events(
                &self,
                account_id: &$crate::model::AccountId,
                filter: &$crate::store::EventFilter,
            ) -> $crate::store::Result<Vec<$crate::model::EventRecord>> {
                let mut query =
                    sqlx::QueryBuilder::<<Self as $crate::store::sql::Backend>::Database>::new(
                        "SELECT * FROM events WHERE",
                    );
                $crate::store::events::push_conditions(&mut query, account_id, filter);
                if let Some(before) = &filter.before_id {
                    query.push(" AND id < ").push_bind(before.clone());
                }
                query
                    .push(" ORDER BY id DESC LIMIT ")
                    .push_bind(filter.limit as i64);
                let rows = query.build().fetch_all(self.reads()).await?;
                rows.iter()
                    .map($crate::store::events::event_from_row)
                    .collect()
            }

            async fn event(
                &self,
                account_id: &$crate::model::AccountId,
                event_id: &$crate::model::EventId,
            ) -> $crate::store::Result<
                Option<(
                    $crate::model::EventRecord,
                    Vec<$crate::model::DeliveryRecord>,
                )>,
            > {
                use sqlx::Row as _;
                let row = sqlx::query("SELECT * FROM events WHERE id = $1 AND account_id = $2")
                    .bind(event_id)
                    .bind(account_id)
                    .fetch_optional(self.reads())
                    .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let event = $crate::store::events::event_from_row(&row)?;
                let delivery_rows =
                    sqlx::query("SELECT * FROM deliveries WHERE event_id = $1 ORDER BY id")
                        .bind(event_id)
                        .fetch_all(self.reads())
                        .await?;
                let attempt_rows = sqlx::query(
                    "SELECT a.* FROM delivery_attempts a \
                     JOIN deliveries d ON d.id = a.delivery_id \
                     WHERE d.event_id = $1 ORDER BY a.id",
                )
                .bind(event_id)
                .fetch_all(self.reads())
                .await?;
                let mut deliveries = Vec::new();
                for row in &delivery_rows {
                    let id: i64 = row.try_get("id")?;
                    let mut attempts = Vec::new();
                    for attempt in &attempt_rows {
                        if attempt.try_get::<i64, _>("delivery_id")? == id {
                            attempts.push($crate::model::AttemptRecord {
                                started_at: attempt.try_get("started_at")?,
                                duration_ms: attempt.try_get("duration_ms")?,
                                http_status: attempt.try_get("http_status")?,
                                error: attempt.try_get("error")?,
                            });
                        }
                    }
                    let status = $crate::store::stored_status(row.try_get("status")?)?;
                    deliveries.push($crate::model::DeliveryRecord {
                        provider: row.try_get("provider")?,
                        next_attempt_at: (status == $crate::model::DeliveryStatus::Pending)
                            .then(|| row.try_get("next_attempt_at"))
                            .transpose()?,
                        status,
                        attempts,
                        last_error: row.try_get("last_error")?,
                        waiting_reason: row.try_get("waiting_reason")?,
                        delivered_at: row.try_get("delivered_at")?,
                    });
                }
                Ok(Some((event, deliveries)))
            }

            async fn retry_event(
                &self,
                account_id: &$crate::model::AccountId,
                event_id: &$crate::model::EventId,
            ) -> $crate::store::Result<Option<u64>> {
                use $crate::store::sql::BeginWrite as _;
                let now = $crate::model::now_millis();
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let found: Option<String> =
                    sqlx::query_scalar("SELECT id FROM events WHERE id = $1 AND account_id = $2")
                        .bind(event_id)
                        .bind(account_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if found.is_none() {
                    return Ok(None);
                }
                let done = sqlx::query(
                    "UPDATE deliveries SET status = 'PENDING', attempts = 0, queued_at = $1, \
                     next_attempt_at = $1, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE event_id = $2 AND status = 'FAILED'",
                )
                .bind(now)
                .bind(event_id)
                .execute(&mut *tx)
                .await?;
                Self::refresh_event_statuses(&mut tx, std::slice::from_ref(event_id)).await?;
                tx.commit().await?;
                Ok(Some(done.rows_affected()))
            }

            async fn count_matching(
                &self,
                account_id: &$crate::model::AccountId,
                filter: &$crate::store::EventFilter,
            ) -> $crate::store::Result<(u64, u64)> {
                let mut query =
                    sqlx::QueryBuilder::<<Self as $crate::store::sql::Backend>::Database>::new(
                        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN ",
                    );
                // Without a channel the event's own status says it, without a look at its
                // deliveries; a filter on failed ones needs no second look at all.
                if filter.status == Some($crate::model::DeliveryStatus::Failed) {
                    query.push("TRUE");
                } else if let Some(channel) = filter.channel.as_deref() {
                    $crate::store::events::push_has_delivery(
                        &mut query,
                        account_id,
                        Some(channel),
                        Some($crate::model::DeliveryStatus::Failed),
                    );
                } else {
                    query.push("events.delivery_status = 'FAILED'");
                }
                query.push(" THEN 1 ELSE 0 END), 0) FROM events WHERE");
                $crate::store::events::push_conditions(&mut query, account_id, filter);
                let (count, failed): (i64, i64) =
                    query.build_query_as().fetch_one(self.reads()).await?;
                Ok((
                    u64::try_from(count).unwrap_or(0),
                    u64::try_from(failed).unwrap_or(0),
                ))
            }

            async fn retry_matching(
                &self,
                account_id: &$crate::model::AccountId,
                filter: &$crate::store::EventFilter,
            ) -> $crate::store::Result<u64> {
                use $crate::store::sql::BeginWrite as _;
                let now = $crate::model::now_millis();
                let mut conn = self.write_conn().await?;
                let mut tx = conn.begin_write().await?;
                let mut query =
                    sqlx::QueryBuilder::<<Self as $crate::store::sql::Backend>::Database>::new(
                        "SELECT events.id FROM events WHERE",
                    );
                $crate::store::events::push_conditions(&mut query, account_id, filter);
                query.push(" AND ");
                $crate::store::events::push_has_delivery(
                    &mut query,
                    account_id,
                    filter.channel.as_deref(),
                    Some($crate::model::DeliveryStatus::Failed),
                );
                let ids: Vec<$crate::model::EventId> =
                    query.build_query_scalar().fetch_all(&mut *tx).await?;
                let mut requeued = 0;
                for chunk in ids.chunks(500) {
                    let mut update =
                        sqlx::QueryBuilder::<<Self as $crate::store::sql::Backend>::Database>::new(
                            "UPDATE deliveries SET status = 'PENDING', attempts = 0, queued_at = ",
                        );
                    update
                        .push_bind(now)
                        .push(", next_attempt_at = ")
                        .push_bind(now)
                        .push(
                            ", lease_owner = NULL, lease_expires_at = NULL \
                             WHERE status = 'FAILED' AND event_id IN (",
                        );
                    let mut ids = update.separated(", ");
                    for id in chunk {
                        ids.push_bind(id.to_string());
                    }
                    update.push(")");
                    if let Some(channel) = &filter.channel {
                        update.push(" AND provider = ").push_bind(channel.clone());
                    }
                    requeued += update.build().execute(&mut *tx).await?.rows_affected();
                    Self::refresh_event_statuses(&mut tx, chunk).await?;
                }
                tx.commit().await?;
                Ok(requeued)
            }
        }
    };
}
pub(super) use events_for;
