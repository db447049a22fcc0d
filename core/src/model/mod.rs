//! Domain types shared by storage, the API and the delivery engine.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

mod ids;

pub use ids::{AccountId, EventId, KeyId};

/// Milliseconds since the Unix epoch, UTC: how every time is stored.
pub type Millis = i64;

pub fn now_millis() -> Millis {
    Utc::now().timestamp_millis()
}

pub fn to_datetime(millis: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// RFC 3339 with milliseconds, as the API shows times.
pub fn format_time(millis: Millis) -> String {
    to_datetime(millis).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn random_text(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh API key: `pk_` and 40 random alphanumerics (about 238 bits).
pub fn new_api_key() -> String {
    format!("pk_{}", random_text(40))
}

/// A link token for deep links such as Telegram's `?start=`: 32 of `[A-Za-z0-9]`.
pub fn new_link_token() -> String {
    random_text(32)
}

/// A secret for a dashboard session id, CSRF token or sign-in link: 43 of `[A-Za-z0-9]` (about
/// 256 bits). Like API keys, only its SHA-256 is stored where it grants access.
pub fn new_secret() -> String {
    random_text(43)
}

/// What is stored of a key: its SHA-256, hex.
pub fn hash_api_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(key.as_bytes());
    let mut text = String::with_capacity(digest.len() * 2);
    for byte in digest {
        text.push(char::from(HEX[usize::from(byte >> 4)]));
        text.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    text
}

/// The part of a key shown in listings.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub email: Option<String>,
    pub plan: String,
    /// Provider-declared account fields that are set, by JSON name.
    pub fields: BTreeMap<String, String>,
    /// Channels switched on (`true`) or off (`false`).
    pub channels: BTreeMap<String, bool>,
    /// Whether `channels` lists every channel that is on: true for accounts created since
    /// channels are switched on explicitly. For older accounts a channel not listed is on when
    /// its provider was linked in those days (`ProviderRegistration::on_for_older_accounts`).
    pub channels_explicit: bool,
    pub created_at: Millis,
    /// When an operator disabled the account (`pingpilot account disable`): its keys are
    /// refused and its deliveries wait until it is enabled again.
    pub disabled_at: Option<Millis>,
}

/// The 403 every API operation answers for a key of a disabled account.
pub const ACCOUNT_DISABLED_MESSAGE: &str = "This account is disabled";

#[derive(Debug, Clone)]
pub struct ApiKeyInfo {
    pub id: KeyId,
    /// What its owner called it, e.g. "billing server".
    pub name: Option<String>,
    pub prefix: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
}

#[derive(Debug, Clone)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub color: u32,
    pub emoji: Option<String>,
    /// The channels its events go to (provider ids, in provider order), or `None` for every
    /// channel the account has on.
    pub channels: Option<Vec<String>>,
    pub created_at: Millis,
    pub events_count: i64,
    pub last_ping: Option<Millis>,
}

/// Where an event or one of its deliveries stands. `PENDING`: not final yet (queued, being
/// sent, retrying or waiting); `DELIVERED`: delivered (an event: every delivery); `FAILED`:
/// failed for good (an event: every delivery is final and one failed).
// One type from the database to the API: it is the OpenAPI document's `DeliveryStatus`.
// Properties of this type carry no doc comment: a described reference becomes `allOf`, which
// client generators (openapi-python-client) reject for enumerations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename = "DeliveryStatus", rename_all = "UPPERCASE")]
pub enum DeliveryStatus {
    /// Not final yet: queued, being sent, retrying or waiting.
    Pending,
    /// Delivered (for an event: every delivery).
    Delivered,
    /// Failed for good (for an event: every delivery is final and one failed).
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Delivered => "DELIVERED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_uppercase().as_str() {
            "PENDING" => Some(Self::Pending),
            "DELIVERED" => Some(Self::Delivered),
            "FAILED" => Some(Self::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub id: EventId,
    pub category: String,
    pub description: String,
    pub fields: Map<String, Value>,
    pub delivery_status: DeliveryStatus,
    pub created_at: Millis,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: Millis,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub provider: String,
    pub status: DeliveryStatus,
    pub attempts: Vec<AttemptRecord>,
    pub last_error: Option<String>,
    pub waiting_reason: Option<String>,
    pub next_attempt_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
}

/// A plan's limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    pub events_per_month: Option<u64>,
    pub categories: Option<u64>,
}

/// The calendar month (UTC) that `millis` falls in, as `YYYY-MM`.
pub fn month_key(millis: Millis) -> String {
    to_datetime(millis).format("%Y-%m").to_string()
}

/// Start of the next calendar month (UTC) after `millis`: when quotas reset.
pub fn next_month_start(millis: Millis) -> DateTime<Utc> {
    use chrono::Datelike;
    let now = to_datetime(millis);
    let (year, month) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hashes_are_lowercase_hex_sha256() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn keys_have_the_documented_shape() {
        let key = new_api_key();
        assert!(key.starts_with("pk_"));
        assert!(key.len() >= 35);
        assert_ne!(key, new_api_key());
        assert_eq!(hash_api_key("pk_x").len(), 64);
        assert_eq!(key_prefix(&key).len(), 10);
    }

    #[test]
    fn months_roll_over_in_utc() {
        let dec = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap();
        assert_eq!(month_key(dec.timestamp_millis()), "2026-12");
        assert_eq!(
            next_month_start(dec.timestamp_millis()).to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
    }
}
