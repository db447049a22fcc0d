//! What the dashboard needs from storage beyond the API's queries: sign-in sessions, one-time
//! sign-in links, and reads that summarise a category's events.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::Result;
use crate::model::Millis;

/// A signed-in dashboard session, found by the hash of its cookie value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub account_id: String,
    /// Every form of this session carries it; a post without it is refused.
    pub csrf_token: String,
    pub expires_at: Millis,
    /// The API key it was signed in with: the session ends when the key is revoked. `None` for a
    /// one-time link, which no key revocation ends.
    pub key_id: Option<String>,
}

/// One event of a category, as the category page's totals and chart need it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSample {
    pub created_at: Millis,
    pub fields: Map<String, Value>,
}

/// One delivery of an event: the provider and its status (`PENDING`, `DELIVERED`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryBadge {
    pub provider: String,
    pub status: String,
    /// Pending because the channel is not ready (a waiting reason is set).
    pub waiting: bool,
    /// An attempt failed (the last error is set).
    pub had_error: bool,
}

#[async_trait]
pub trait DashboardStorage: Send + Sync {
    /// Stores a new session (by the hash of its id) and forgets every expired one.
    async fn create_session(
        &self,
        id_hash: &str,
        session: &SessionRecord,
        now: Millis,
    ) -> Result<()>;

    /// The session with this id hash, unless it has expired, the key it was signed in with is
    /// revoked, or its account is gone.
    async fn session(&self, id_hash: &str, now: Millis) -> Result<Option<SessionRecord>>;

    /// Signs a session out; nothing happens when it is unknown.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;

    /// Signs out every session of an account ("sign out everywhere"); how many of them were
    /// still open at `now`.
    async fn delete_account_sessions(&self, account_id: &str, now: Millis) -> Result<u64>;

    /// Stores a one-time sign-in link for an account (by the hash of its token) and forgets every
    /// expired one.
    async fn create_login_link(
        &self,
        token_hash: &str,
        account_id: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<()>;

    /// Uses up a sign-in link: its account when the link exists, has not expired and was not used
    /// before; a second call with the same token gives `None`, even when both race.
    async fn redeem_login_link(&self, token_hash: &str, now: Millis) -> Result<Option<String>>;

    /// The events of an account's category created in `[from, to)`, oldest first.
    async fn category_samples(
        &self,
        account_id: &str,
        category: &str,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<EventSample>>;

    /// How many events each of the account's categories received since `since` (categories
    /// without any are absent).
    async fn category_counts_since(
        &self,
        account_id: &str,
        since: Millis,
    ) -> Result<BTreeMap<String, i64>>;

    /// The deliveries of each of these events (the account's only), in provider order.
    async fn delivery_badges(
        &self,
        account_id: &str,
        event_ids: &[String],
    ) -> Result<BTreeMap<String, Vec<DeliveryBadge>>>;
}
