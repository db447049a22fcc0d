//! The record of API requests on the dashboard's Activity page, refused ones included.
//!
//! The API attributes a request to its account as soon as it finds the key ([`attribute`]);
//! once answered, the request is counted here, in memory, by kind (key, method, path, status,
//! message, client, category) and minute. A task writes what was counted once a second, in one
//! transaction, and trims the record once a minute: intake pays no write of its own, and a
//! client sending thousands of requests adds a row a minute. What a killed process counted in
//! its last second is lost; the record is for people looking into their traffic, not an audit
//! log.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::intake::{INTAKE_PATHS, RATE_MESSAGE};
use crate::app::AppState;
use crate::lock;
use crate::model::{AccountId, Millis, key_prefix, now_millis};
use crate::store::{ActivityRow, StoreError};
use crate::throttled::Throttled;

/// How often counted requests are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the record is trimmed to its age and size.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Kinds of request held between two writes; requests of further kinds are not recorded
/// (and counted as dropped), so a flood of distinct paths cannot grow memory or the write.
const MAX_PENDING: usize = 5_000;
/// The longest path, message and category kept, in characters.
const MAX_PATH: usize = 200;
const MAX_MESSAGE: usize = 300;
const MAX_CATEGORY: usize = 100;

/// Who made a request, once the API has found its key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub account_id: AccountId,
    pub key_prefix: String,
    /// The category an event was sent to, once the body named one.
    pub category: Option<String>,
}

tokio::task_local! {
    static CALLER: RefCell<Option<Caller>>;
}

/// Runs a request's handling, and tells who made it if the handling found out.
pub async fn observe<F: Future>(handling: F) -> (F::Output, Option<Caller>) {
    CALLER
        .scope(RefCell::new(None), async {
            let output = handling.await;
            (output, CALLER.with(|slot| slot.borrow_mut().take()))
        })
        .await
}

/// The request being handled was made with `key`, of `account_id`.
pub fn attribute(account_id: &AccountId, key: &str) {
    let _ = CALLER.try_with(|slot| {
        *slot.borrow_mut() = Some(Caller {
            account_id: account_id.clone(),
            key_prefix: key_prefix(key),
            category: None,
        });
    });
}

/// The request being handled sends an event to `category`.
pub fn note_category(category: &str) {
    let _ = CALLER.try_with(|slot| {
        if let Some(caller) = slot.borrow_mut().as_mut() {
            caller.category = Some(cut(category, MAX_CATEGORY).to_string());
        }
    });
}

/// An answered request, as the API saw it.
pub struct Answered<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub message: Option<&'a str>,
    pub client: Option<IpAddr>,
}

/// Requests of one kind in one minute.
#[derive(Debug)]
struct Kind {
    account_id: AccountId,
    key_prefix: String,
    method: String,
    path: String,
    status: u16,
    message: Option<String>,
    client: Option<IpAddr>,
    category: Option<String>,
    minute: i64,
}

impl Kind {
    /// Whether a request is of this kind (texts already cut).
    fn is(&self, caller: &Caller, answered: &Answered<'_>, minute: i64) -> bool {
        self.minute == minute
            && self.status == answered.status
            && self.account_id == caller.account_id
            && self.key_prefix == caller.key_prefix
            && self.method == answered.method
            && self.path == answered.path
            && self.message.as_deref() == answered.message
            && self.client == answered.client
            && self.category == caller.category
    }
}

#[derive(Debug, Clone, Copy)]
struct Tally {
    count: u64,
    first_at: Millis,
    last_at: Millis,
}

/// The kinds counted since the last write, by a hash of what tells them apart, so that a
/// request of a kind already counted costs no allocation.
#[derive(Default)]
struct Pending {
    by_hash: HashMap<u64, Vec<(Kind, Tally)>>,
    kinds: usize,
}

/// This process's requests counted since the last write.
#[derive(Default)]
pub struct ActivityCounter {
    pending: Mutex<Pending>,
    hasher: RandomState,
    /// Requests not recorded because too many kinds were waiting.
    dropped: AtomicU64,
}

impl ActivityCounter {
    /// Counts an answered request of `caller`'s at `now`.
    pub fn count(&self, caller: Caller, answered: &Answered<'_>, now: Millis) {
        let answered = Answered {
            path: cut(answered.path, MAX_PATH),
            message: answered.message.map(|m| cut(m, MAX_MESSAGE)),
            ..*answered
        };
        let minute = now.div_euclid(60_000);
        let hash = self.hasher.hash_one((
            caller.account_id.as_str(),
            caller.key_prefix.as_str(),
            answered.method,
            answered.path,
            answered.status,
            answered.message,
            answered.client,
            caller.category.as_deref(),
            minute,
        ));
        let mut pending = lock(&self.pending);
        let Pending { by_hash, kinds } = &mut *pending;
        let bucket = by_hash.entry(hash).or_default();
        if let Some((_, tally)) = bucket
            .iter_mut()
            .find(|(kind, _)| kind.is(&caller, &answered, minute))
        {
            tally.count += 1;
            tally.last_at = tally.last_at.max(now);
            return;
        }
        if *kinds >= MAX_PENDING {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *kinds += 1;
        let kind = Kind {
            account_id: caller.account_id,
            key_prefix: caller.key_prefix,
            method: answered.method.to_string(),
            path: answered.path.to_string(),
            status: answered.status,
            message: answered.message.map(str::to_string),
            client: answered.client,
            category: caller.category,
            minute,
        };
        let tally = Tally {
            count: 1,
            first_at: now,
            last_at: now,
        };
        bucket.push((kind, tally));
    }

    /// What was counted since the last call, as rows to add, and how many requests were
    /// dropped meanwhile.
    fn take(&self) -> (Vec<ActivityRow>, u64) {
        let pending = std::mem::take(&mut *lock(&self.pending));
        let rows = pending
            .by_hash
            .into_values()
            .flatten()
            .map(|(kind, tally)| ActivityRow {
                account_id: kind.account_id,
                key_prefix: kind.key_prefix,
                method: kind.method,
                path: kind.path,
                status: kind.status,
                message: kind.message,
                client: kind.client.map(|ip| ip.to_string()),
                category: kind.category,
                count: tally.count,
                first_at: tally.first_at,
                last_at: tally.last_at,
            })
            .collect();
        (rows, self.dropped.swap(0, Ordering::Relaxed))
    }
}

/// `text`, at most `max` characters of it.
fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Events refused for one category (or, `None`, for a body that named none) since they were
/// last accepted there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// As the requests named it.
    pub category: Option<String>,
    /// The latest refusal's status and message.
    pub status: u16,
    pub message: String,
    /// Refusals since the category's last accepted event.
    pub count: u64,
    pub last_at: Millis,
}

/// The account's events refused at or after `since`, per category, where no event was
/// accepted after the latest refusal; the most recent first. Slowed-down requests (429) are
/// left out: see [`rate_limited`].
pub async fn refused_events(
    state: &AppState,
    account_id: &AccountId,
    since: Millis,
) -> Result<Vec<Refused>, StoreError> {
    let outcomes = state
        .store()
        .activity_outcomes(account_id, "POST", &INTAKE_PATHS, since)
        .await?;
    Ok(refused_per_category(&outcomes))
}

fn refused_per_category(outcomes: &[ActivityRow]) -> Vec<Refused> {
    // Categories as the requests named them; one category's spellings are one.
    let mut by_category: HashMap<Option<String>, Vec<&ActivityRow>> = HashMap::new();
    for row in outcomes.iter().filter(|row| row.status != 429) {
        let category = row.category.as_ref().map(|name| name.to_lowercase());
        by_category.entry(category).or_default().push(row);
    }
    let mut refused: Vec<Refused> = by_category
        .into_values()
        .filter_map(|rows| {
            let accepted_at = rows
                .iter()
                .filter(|row| row.status < 400)
                .map(|row| row.last_at)
                .max();
            let refusals: Vec<&&ActivityRow> = rows
                .iter()
                .filter(|row| row.status >= 400 && Some(row.last_at) > accepted_at)
                .collect();
            let latest = refusals.iter().max_by_key(|row| row.last_at)?;
            Some(Refused {
                category: latest.category.clone(),
                status: latest.status,
                message: latest.message.clone().unwrap_or_default(),
                count: refusals.iter().map(|row| row.count).sum(),
                last_at: latest.last_at,
            })
        })
        .collect();
    refused.sort_by_key(|refused| std::cmp::Reverse(refused.last_at));
    refused
}

/// How many events the plan's rate slowed down (429) at or after `since`.
pub async fn rate_limited(
    state: &AppState,
    account_id: &AccountId,
    since: Millis,
) -> Result<u64, StoreError> {
    let outcomes = state
        .store()
        .activity_outcomes(account_id, "POST", &INTAKE_PATHS, since)
        .await?;
    Ok(outcomes
        .iter()
        .filter(|row| row.status == 429 && row.message.as_deref() == Some(RATE_MESSAGE))
        .map(|row| row.count)
        .sum())
}

/// Whether requests are recorded at all (`retention.activity` is not `0`).
pub fn enabled(state: &AppState) -> bool {
    state.settings.retention.activity_age().is_some()
}

/// Writes what this process counted; the accounts written for, for trimming.
pub async fn flush(state: &AppState) -> Result<Vec<AccountId>, StoreError> {
    let (rows, dropped) = state.activity.take();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "too many kinds of API request at once: some were left out of the activity record"
        );
    }
    state.store().record_activity(&rows).await?;
    let mut accounts: Vec<AccountId> = rows.into_iter().map(|row| row.account_id).collect();
    accounts.sort_unstable();
    accounts.dedup();
    Ok(accounts)
}

/// Trims the record to `retention.activity` and, for `accounts`, to `retention.activity_rows`.
pub async fn trim(
    state: &AppState,
    accounts: &[AccountId],
    now: Millis,
) -> Result<u64, StoreError> {
    let settings = &state.settings.retention;
    let Some(age) = settings.activity_age() else {
        return Ok(0);
    };
    let age = Millis::try_from(age.as_millis()).unwrap_or(Millis::MAX);
    state
        .store()
        .trim_activity(now.saturating_sub(age), accounts, settings.activity_rows)
        .await
}

/// Writes the counted requests every second and trims the record every minute, until
/// `shutdown`; then writes what is left.
pub async fn run(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    if !enabled(&state) {
        return;
    }
    let mut flushes = tokio::time::interval(FLUSH_EVERY);
    flushes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut trims = tokio::time::interval(TRIM_EVERY);
    trims.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failures = Throttled::every(Duration::from_secs(60));
    let mut written: HashSet<AccountId> = HashSet::new();
    loop {
        tokio::select! {
            _ = flushes.tick() => match flush(&state).await {
                Ok(accounts) => written.extend(accounts),
                Err(err) => if let Some(repeats) = failures.ready() {
                    tracing::warn!(error = %err, repeats, "could not write the activity record");
                },
            },
            _ = trims.tick() => {
                let accounts: Vec<AccountId> = written.drain().collect();
                if let Err(err) = trim(&state, &accounts, now_millis()).await
                    && let Some(repeats) = failures.ready()
                {
                    tracing::warn!(error = %err, repeats, "could not trim the activity record");
                }
            }
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Answered<'static> {
        Answered {
            method: "POST",
            path: "/api/v1/event",
            status,
            message: None,
            client: Some(IpAddr::from([127, 0, 0, 1])),
        }
    }

    fn caller() -> Caller {
        Caller {
            account_id: "acc_1".into(),
            key_prefix: "pk_abcdefg".into(),
            category: Some("sales".into()),
        }
    }

    #[test]
    fn requests_of_one_kind_and_minute_are_one_row() {
        let counter = ActivityCounter::default();
        counter.count(caller(), &answered(202), 60_000);
        counter.count(caller(), &answered(202), 60_500);
        counter.count(caller(), &answered(429), 61_000);
        counter.count(caller(), &answered(202), 120_000);
        let (mut rows, dropped) = counter.take();
        rows.sort_by_key(|row| (row.first_at, row.status));
        let seen: Vec<_> = rows
            .iter()
            .map(|row| (row.status, row.count, row.first_at, row.last_at))
            .collect();
        assert_eq!(
            seen,
            [
                (202, 2, 60_000, 60_500),
                (429, 1, 61_000, 61_000),
                (202, 1, 120_000, 120_000)
            ]
        );
        assert_eq!(dropped, 0);
        assert!(counter.take().0.is_empty());
    }

    #[test]
    fn kinds_beyond_the_limit_are_dropped_and_counted() {
        let counter = ActivityCounter::default();
        for n in 0..MAX_PENDING + 3 {
            let path = format!("/api/v1/events/{n}");
            let request = Answered {
                path: &path,
                ..answered(404)
            };
            counter.count(caller(), &request, 1_000);
        }
        // A kind already held is still counted.
        counter.count(
            caller(),
            &Answered {
                path: "/api/v1/events/0",
                ..answered(404)
            },
            2_000,
        );
        let (rows, dropped) = counter.take();
        assert_eq!(rows.len(), MAX_PENDING);
        assert_eq!(dropped, 3);
        assert_eq!(
            rows.iter().map(|row| row.count).sum::<u64>(),
            MAX_PENDING as u64 + 1
        );
    }

    fn outcome(category: Option<&str>, status: u16, count: u64, last_at: Millis) -> ActivityRow {
        ActivityRow {
            account_id: "acc_1".into(),
            key_prefix: String::new(),
            method: "POST".into(),
            path: "/api/v1/event".into(),
            status,
            message: (status >= 400).then(|| format!("refused {status}")),
            client: None,
            category: category.map(str::to_string),
            count,
            first_at: last_at,
            last_at,
        }
    }

    #[test]
    fn a_category_is_refused_until_an_event_gets_through_again() {
        let outcomes = [
            // Refused, then accepted: fixed.
            outcome(Some("sales"), 403, 5, 1_000),
            outcome(Some("Sales"), 202, 1, 2_000),
            // Accepted, then refused twice with different answers: the latest one tells.
            outcome(Some("jobs"), 202, 9, 1_000),
            outcome(Some("jobs"), 403, 2, 3_000),
            outcome(Some("Jobs"), 422, 1, 4_000),
            // Never accepted; a body without a category; slowed down only.
            outcome(Some("nope"), 404, 3, 5_000),
            outcome(None, 400, 1, 500),
            outcome(Some("busy"), 429, 7, 6_000),
        ];
        let seen: Vec<_> = refused_per_category(&outcomes)
            .into_iter()
            .map(|r| (r.category, r.status, r.count, r.last_at))
            .collect();
        assert_eq!(
            seen,
            [
                (Some("nope".into()), 404, 3, 5_000),
                (Some("Jobs".into()), 422, 3, 4_000),
                (None, 400, 1, 500),
            ]
        );
    }

    #[test]
    fn long_texts_are_cut_on_a_character() {
        assert_eq!(cut("ééé", 2), "éé");
        assert_eq!(cut("ab", 5), "ab");
    }

    #[tokio::test]
    async fn a_request_is_attributed_only_inside_its_own_handling() {
        attribute(&"acc_outside".into(), "pk_outside");
        let ((), caller) = observe(async {
            attribute(&"acc_1".into(), "pk_0123456789abcdef");
            note_category("sales");
        })
        .await;
        let caller = caller.expect("attributed");
        assert_eq!(caller.account_id.as_str(), "acc_1");
        assert_eq!(caller.key_prefix, "pk_0123456");
        assert_eq!(caller.category.as_deref(), Some("sales"));
        let ((), nobody) = observe(async {}).await;
        assert!(nobody.is_none());
    }
}
