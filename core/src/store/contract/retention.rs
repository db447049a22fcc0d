//! Retention, disabled accounts and deleted accounts.

use std::collections::BTreeMap;

use serde_json::Map;

use super::{Backend, category, on_both_backends};
use crate::model::*;
use crate::store::*;

on_both_backends!(
    retention_deletes_old_finished_events_and_nothing_else,
    deleting_an_account_removes_its_rows_and_no_others,
    a_disabled_account_moves_its_version_and_holds_its_deliveries,
);

const DAY_MS: Millis = 86_400_000;

async fn account_with_key(store: &dyn Storage) -> (Account, String) {
    store
        .create_account("Test", None, "unlimited", &BTreeMap::new(), &["discord"])
        .await
        .expect("account")
}

/// An event with a Discord delivery, accepted at `at`.
async fn event_at(
    store: &dyn Storage,
    account_id: &AccountId,
    category: &Category,
    at: Millis,
) -> EventId {
    let fields = Map::new();
    let event = NewEvent {
        account_id,
        category,
        description: "something happened",
        fields: &fields,
        providers: &["discord"],
        events_limit: None,
        now: at,
        idempotency: None,
        decided_from: None,
    };
    match store.insert_event(&event).await.expect("insert") {
        IntakeResult::Accepted { event_id } => event_id,
        other => panic!("{other:?}"),
    }
}

/// Claims every due Discord delivery and finishes each as `update_for` says (none: left
/// claimed).
async fn finish_all(
    store: &dyn Storage,
    now: Millis,
    update_for: impl Fn(&EventId) -> DeliveryUpdate,
) -> Vec<ClaimedDelivery> {
    let claimed = store
        .claim_due("w", "discord", now, now + 30_000, 100)
        .await
        .expect("claim");
    for delivery in &claimed {
        let attempt = AttemptLog {
            started_at: now,
            duration_ms: 5,
            http_status: Some(200),
            error: None,
        };
        let update = update_for(&delivery.event_id);
        store
            .finish_delivery(delivery.id, "w", Some(&attempt), &update)
            .await
            .expect("finish");
    }
    claimed
}

async fn quota_rows(backend: &Backend) -> i64 {
    backend.count("quota_usage").await
}

async fn retention_deletes_old_finished_events_and_nothing_else(backend: &Backend) {
    let store = backend.store();
    let (account, _) = account_with_key(&*store).await;
    let category = category(&*store, &account.id, "sale").await;
    let now = now_millis();
    let old = event_at(&*store, &account.id, &category, now - 100 * DAY_MS).await;
    let old_pending = event_at(&*store, &account.id, &category, now - 100 * DAY_MS).await;
    let recent = event_at(&*store, &account.id, &category, now - DAY_MS).await;
    let this_month = store.events_used(&account.id, now).await.expect("used");
    let quota_before = quota_rows(backend).await;
    let pending = old_pending.clone();
    finish_all(&*store, now, |event| {
        if *event == pending {
            DeliveryUpdate::Retry {
                at: now + DAY_MS,
                counted: true,
                error: "later".into(),
            }
        } else {
            DeliveryUpdate::Delivered
        }
    })
    .await;
    let scope = EventScope::OlderThan(now - 90 * DAY_MS);
    let one = Removed {
        events: 1,
        deliveries: 1,
        attempts: 1,
    };
    assert_eq!(store.count_events(scope).await.expect("count"), one);
    assert_eq!(store.delete_events(scope, 10).await.expect("delete"), one);
    assert_eq!(
        store.delete_events(scope, 10).await.expect("again"),
        Removed::default()
    );
    let found = |id: EventId| {
        let store = store.clone();
        let account_id = account.id.clone();
        async move { store.event(&account_id, &id).await.expect("read").is_some() }
    };
    assert!(!found(old).await);
    assert!(
        found(old_pending).await,
        "a pending delivery keeps its event"
    );
    assert!(found(recent).await);
    assert_eq!(backend.count("delivery_attempts").await, 2);
    assert_eq!(backend.count("deliveries").await, 2);
    // The quota counts stay as they were.
    assert_eq!(quota_rows(backend).await, quota_before);
    assert_eq!(
        store.events_used(&account.id, now).await.expect("used"),
        this_month
    );
}

async fn deleting_an_account_removes_its_rows_and_no_others(backend: &Backend) {
    let store = backend.store();
    let (doomed, _) = account_with_key(&*store).await;
    let (kept, _) = account_with_key(&*store).await;
    let now = now_millis();
    for account in [&doomed, &kept] {
        let category = category(&*store, &account.id, "sale").await;
        for _ in 0..5 {
            event_at(&*store, &account.id, &category, now).await;
        }
        store
            .link_token(&account.id, "telegram")
            .await
            .expect("link");
    }
    finish_all(&*store, now, |_| DeliveryUpdate::Delivered).await;
    let removed = crate::service::retention::delete_account(&store, &doomed.id, 2)
        .await
        .expect("delete")
        .expect("found");
    assert_eq!(
        removed,
        Removed {
            events: 5,
            deliveries: 5,
            attempts: 5
        }
    );
    assert!(store.account(&doomed.id).await.expect("read").is_none());
    assert!(store.account(&kept.id).await.expect("read").is_some());
    for (table, left) in [
        ("accounts", 1),
        ("api_keys", 1),
        ("categories", 1),
        ("events", 5),
        ("deliveries", 5),
        ("delivery_attempts", 5),
        ("channel_links", 1),
        ("quota_usage", 1),
    ] {
        assert_eq!(backend.count(table).await, left, "{table}");
    }
    let missing = crate::service::retention::delete_account(&store, &doomed.id, 2)
        .await
        .expect("delete");
    assert!(missing.is_none());
}

async fn a_disabled_account_moves_its_version_and_holds_its_deliveries(backend: &Backend) {
    let store = backend.store();
    let (account, key) = account_with_key(&*store).await;
    let category = category(&*store, &account.id, "sale").await;
    let before = store
        .authenticate(&hash_api_key(&key))
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(before.account.disabled_at, None);
    let now = now_millis();
    assert!(
        store
            .set_disabled(&account.id, Some(now))
            .await
            .expect("disable")
    );
    // Disabling again keeps the first time.
    assert!(
        store
            .set_disabled(&account.id, Some(now + 5))
            .await
            .expect("disable")
    );
    let after = store
        .authenticate(&hash_api_key(&key))
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(after.account.disabled_at, Some(now));
    assert!(after.account_version > before.account_version);
    event_at(&*store, &account.id, &category, now).await;
    let claimed = finish_all(&*store, now + 1, |_| DeliveryUpdate::Waiting {
        at: now + DAY_MS,
        reason: ACCOUNT_DISABLED_MESSAGE.into(),
    })
    .await;
    assert_eq!(claimed.len(), 1);
    assert!(claimed[0].account_disabled);
    // Enabling makes the waiting delivery due at once.
    assert!(store.set_disabled(&account.id, None).await.expect("enable"));
    let claimed = finish_all(&*store, now_millis() + 1, |_| DeliveryUpdate::Delivered).await;
    assert_eq!(claimed.len(), 1);
    assert!(!claimed[0].account_disabled);
    assert!(
        !store
            .set_disabled(&"acc_missing".into(), None)
            .await
            .expect("missing")
    );
}
