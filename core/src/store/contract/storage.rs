//! Accounts, keys, categories, intake, the delivery queue, leases and heartbeats.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::{Backend, on_both_backends};
use crate::model::*;
use crate::provider::{LinkOutcome, LinkRequest};
use crate::store::*;

on_both_backends!(
    accounts_and_keys,
    channels_are_explicit_for_new_accounts_only,
    categories_with_limit_and_duplicates,
    quota_holds_under_concurrent_intake,
    idempotency_key_accepts_once_under_concurrency,
    concurrent_claims_never_share_a_delivery,
    finish_delivery_updates_event_status,
    leases_and_heartbeats,
);

async fn account(store: &dyn Storage) -> Account {
    store
        .create_account("Test", None, "free", &BTreeMap::new(), &[])
        .await
        .expect("account")
        .0
}

async fn category(store: &dyn Storage, account_id: &AccountId, name: &str) -> Category {
    match store
        .create_category(account_id, name, 0x00ff00, Some("🔔"), None, None)
        .await
        .expect("category")
    {
        CategoryCreate::Created(category) => category,
        other => panic!("{other:?}"),
    }
}

fn new_event<'a>(
    account_id: &'a AccountId,
    category: &'a Category,
    fields: &'a Map<String, Value>,
    providers: &'a [&'static str],
    limit: Option<u64>,
    idempotency: Option<IdempotencyKey<'a>>,
) -> NewEvent<'a> {
    NewEvent {
        account_id,
        category,
        description: "something happened",
        fields,
        providers,
        events_limit: limit,
        now: now_millis(),
        idempotency,
        decided_from: None,
    }
}

async fn accept(store: &dyn Storage, event: &NewEvent<'_>) -> EventId {
    match store.insert_event(event).await.expect("insert") {
        IntakeResult::Accepted { event_id } => event_id,
        other => panic!("{other:?}"),
    }
}

/// A new account lists the channels it has on; a row written before the column existed (its
/// default) reads as an older account, whose unlisted channels follow their providers.
async fn channels_are_explicit_for_new_accounts_only(backend: &Backend) {
    let store = backend.store();
    let (account, _) = store
        .create_account("New", None, "free", &BTreeMap::new(), &["discord"])
        .await
        .expect("create");
    assert!(account.channels_explicit);
    let stored = store
        .account(&account.id)
        .await
        .expect("read")
        .expect("exists");
    assert!(stored.channels_explicit);
    assert_eq!(stored.channels, BTreeMap::from([("discord".into(), true)]));

    backend
        .execute(
            "INSERT INTO accounts (id, name, email, plan, fields, channels, created_at) \
             VALUES ($1, 'Old', NULL, 'free', '{}', '{\"telegram\": false}', 0)",
            &["acc_older"],
        )
        .await;
    let older = store
        .account(&"acc_older".into())
        .await
        .expect("read")
        .expect("exists");
    assert!(!older.channels_explicit);
    assert_eq!(older.channels, BTreeMap::from([("telegram".into(), false)]));
}

async fn accounts_and_keys(backend: &Backend) {
    let store = backend.store();
    let fields = BTreeMap::from([("discordId".to_string(), "12345678901234567".to_string())]);
    let (account, key) = store
        .create_account("Ada", Some("ada@example.com"), "pro", &fields, &[])
        .await
        .expect("create");
    assert!(key.starts_with("pk_"));
    let auth = store
        .authenticate(&hash_api_key(&key))
        .await
        .expect("auth")
        .expect("known key");
    assert_eq!(auth.account.id, account.id);
    assert_eq!(auth.account.fields, fields);
    assert_eq!(auth.account.email.as_deref(), Some("ada@example.com"));
    assert_eq!(auth.key_last_used_at, None);
    store.touch_key(&auth.key_id, 42).await.expect("touch");
    let auth = store
        .authenticate(&hash_api_key(&key))
        .await
        .expect("auth")
        .expect("known key");
    assert_eq!(auth.key_last_used_at, Some(42));
    assert!(store.authenticate("nope").await.expect("auth").is_none());

    let (info, second) = store
        .create_key(&account.id, Some("billing server"))
        .await
        .expect("create key")
        .expect("account exists");
    assert_eq!(info.name.as_deref(), Some("billing server"));
    assert!(
        store
            .create_key(&"acc_missing".into(), None)
            .await
            .expect("key")
            .is_none()
    );
    let keys = store.list_keys(&account.id).await.expect("list");
    let names: Vec<_> = keys.iter().map(|k| k.name.as_deref()).collect();
    assert_eq!(names, [None, Some("billing server")]);

    // Renaming: only the account's own live keys, and `None` takes the name away.
    let renamed = store
        .rename_key(&info.id, &account.id, Some("CI"))
        .await
        .expect("rename")
        .expect("own key");
    assert_eq!(
        (renamed.id.as_str(), renamed.name.as_deref()),
        (info.id.as_str(), Some("CI"))
    );
    assert_eq!(renamed.prefix, info.prefix);
    assert!(
        store
            .rename_key(&info.id, &"acc_other".into(), Some("theirs"))
            .await
            .expect("rename")
            .is_none()
    );
    let unnamed = store
        .rename_key(&auth.key_id, &account.id, None)
        .await
        .expect("rename")
        .expect("own key");
    assert_eq!(unnamed.name, None);
    assert_eq!(unnamed.last_used_at, Some(42));
    assert!(
        !store
            .revoke_key(&info.id, Some(&"acc_other".into()))
            .await
            .expect("revoke")
    );
    assert!(
        store
            .revoke_key(&info.id, Some(&account.id))
            .await
            .expect("revoke")
    );
    assert!(!store.revoke_key(&info.id, None).await.expect("revoke"));
    assert!(
        store
            .rename_key(&info.id, &account.id, Some("revoked"))
            .await
            .expect("rename")
            .is_none(),
        "a revoked key is not renamed"
    );
    assert!(
        store
            .authenticate(&hash_api_key(&second))
            .await
            .expect("auth")
            .is_none()
    );
    assert!(store.revoke_key(&auth.key_id, None).await.expect("revoke"));
    assert!(store.list_keys(&account.id).await.expect("list").is_empty());

    let changes = AccountChanges {
        fields: BTreeMap::from([
            ("discordId".to_string(), None),
            ("telegramUsername".to_string(), Some("ada_l".to_string())),
        ]),
        channels: BTreeMap::from([("discord".to_string(), false)]),
        name: Some("Ada L".into()),
        email: Some(None),
    };
    let updated = store
        .update_account(&account.id, &changes)
        .await
        .expect("update")
        .expect("exists");
    assert_eq!(updated.name, "Ada L");
    assert_eq!(updated.email, None);
    assert_eq!(updated.channels.get("discord"), Some(&false));
    let stored = store
        .account(&account.id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        stored.fields.get("telegramUsername").map(String::as_str),
        Some("ada_l")
    );
    assert!(!stored.fields.contains_key("discordId"));
    assert!(
        store
            .update_account(&"acc_missing".into(), &changes)
            .await
            .expect("update")
            .is_none()
    );
    assert!(
        store
            .set_plan(&account.id, "enterprise")
            .await
            .expect("plan")
    );
    assert!(
        !store
            .set_plan(&"acc_missing".into(), "free")
            .await
            .expect("plan")
    );
    let all = store.list_accounts().await.expect("list");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].plan, "enterprise");

    let (token, state) = store
        .link_token(&account.id, "telegram")
        .await
        .expect("token");
    assert!(state.is_none());
    assert_eq!(
        store
            .link_token(&account.id, "telegram")
            .await
            .expect("token")
            .0,
        token
    );
    let request = |link_token| LinkRequest {
        link_token,
        state: json!({"chatId": 7}),
        must_match: None,
    };
    assert_eq!(
        store
            .link_account("telegram", &request(&token))
            .await
            .expect("link"),
        LinkOutcome::Linked {
            account_name: "Ada L".into(),
            previous_state: None
        }
    );
    assert_eq!(
        store
            .link_account("telegram", &request("bad"))
            .await
            .expect("link"),
        LinkOutcome::UnknownToken
    );
    let (replaced, state) = store
        .link_token(&account.id, "telegram")
        .await
        .expect("token");
    assert_eq!(state, Some(json!({"chatId": 7})));
    assert_ne!(replaced, token, "a token links once");
    store
        .set_provider_value("telegram", "offset", "1")
        .await
        .expect("set");
    store
        .set_provider_value("telegram", "offset", "2")
        .await
        .expect("set");
    assert_eq!(
        store
            .provider_value("telegram", "offset")
            .await
            .expect("get")
            .as_deref(),
        Some("2")
    );
    assert!(
        store
            .provider_value("telegram", "x")
            .await
            .expect("get")
            .is_none()
    );
}

async fn categories_with_limit_and_duplicates(backend: &Backend) {
    let store = backend.store();
    let account = account(&*store).await;
    let id = &account.id;
    let created = |result: CategoryCreate| matches!(result, CategoryCreate::Created(_));
    assert!(created(
        store
            .create_category(id, "sale", 1, None, None, Some(2))
            .await
            .expect("c")
    ));
    assert!(matches!(
        store
            .create_category(id, "sale", 1, None, None, Some(2))
            .await
            .expect("c"),
        CategoryCreate::Duplicate
    ));
    assert!(created(
        store
            .create_category(id, "signup", 2, Some("🎉"), None, Some(2))
            .await
            .expect("c")
    ));
    assert!(matches!(
        store
            .create_category(id, "churn", 3, None, None, Some(2))
            .await
            .expect("c"),
        CategoryCreate::LimitReached
    ));
    assert_eq!(store.count_categories(id).await.expect("count"), 2);
    let found = store
        .category(id, "SALE")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(
        (found.name.as_str(), found.events_count, found.last_ping),
        ("sale", 0, None)
    );
    assert!(matches!(
        store
            .update_category(
                id,
                "Signup",
                &CategoryChanges {
                    name: Some("sale".into()),
                    ..Default::default()
                }
            )
            .await
            .expect("update"),
        CategoryUpdate::Duplicate
    ));
    let changes = CategoryChanges {
        name: Some("signups".into()),
        color: Some(0xabcdef),
        emoji: Some(None),
        channels: Some(Some(vec!["telegram".into()])),
    };
    match store
        .update_category(id, "signup", &changes)
        .await
        .expect("update")
    {
        CategoryUpdate::Updated(category) => {
            assert_eq!(category.name, "signups");
            assert_eq!(category.color, 0xabcdef);
            assert_eq!(category.emoji, None);
            assert_eq!(category.channels, Some(vec!["telegram".to_string()]));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store
            .update_category(id, "nope", &changes)
            .await
            .expect("update"),
        CategoryUpdate::NotFound
    ));
    let names: Vec<String> = store
        .categories(id)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["sale", "signups"]);
    assert!(store.delete_category(id, "Signups").await.expect("delete"));
    assert!(!store.delete_category(id, "signups").await.expect("delete"));

    // Concurrent creations never exceed the limit, and one name is created once.
    let other = self::account(&*store).await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        let store = store.clone();
        let account_id = other.id.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("cat-{}", i % 6);
            store
                .create_category(&account_id, &name, 0, None, None, Some(4))
                .await
        }));
    }
    let mut outcome = (0, 0, 0);
    for task in tasks {
        match task.await.expect("join").expect("create") {
            CategoryCreate::Created(_) => outcome.0 += 1,
            CategoryCreate::Duplicate => outcome.1 += 1,
            CategoryCreate::LimitReached => outcome.2 += 1,
        }
    }
    assert_eq!(outcome.0, 4, "{outcome:?}");
    assert_eq!(store.count_categories(&other.id).await.expect("count"), 4);
}

async fn quota_holds_under_concurrent_intake(backend: &Backend) {
    let store = backend.store();
    let account = account(&*store).await;
    let category = Arc::new(category(&*store, &account.id, "sale").await);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        let account_id = account.id.clone();
        let category = category.clone();
        tasks.push(tokio::spawn(async move {
            let fields = Map::new();
            let providers = ["discord", "telegram"];
            let event = new_event(&account_id, &category, &fields, &providers, Some(7), None);
            store.insert_event(&event).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.expect("join").expect("insert") {
            IntakeResult::Accepted { .. } => accepted += 1,
            IntakeResult::QuotaExceeded => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted, 7);
    assert_eq!(
        store
            .events_used(&account.id, now_millis())
            .await
            .expect("used"),
        7
    );
    let deliveries = backend.count("deliveries").await;
    assert_eq!(deliveries, 14);
    let found = store
        .category(&account.id, "sale")
        .await
        .expect("get")
        .expect("found");
    assert_eq!(found.events_count, 7);
    assert!(found.last_ping.is_some());
}

async fn idempotency_key_accepts_once_under_concurrency(backend: &Backend) {
    let store = backend.store();
    let account = account(&*store).await;
    let category = Arc::new(category(&*store, &account.id, "sale").await);
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let store = store.clone();
        let account_id = account.id.clone();
        let category = category.clone();
        tasks.push(tokio::spawn(async move {
            let fields = Map::new();
            let key = IdempotencyKey {
                key: "order-1",
                request_hash: "h1",
            };
            let event = new_event(
                &account_id,
                &category,
                &fields,
                &["discord"],
                Some(100),
                Some(key),
            );
            store.insert_event(&event).await
        }));
    }
    let mut accepted = Vec::new();
    let mut replayed = Vec::new();
    for task in tasks {
        match task.await.expect("join").expect("insert") {
            IntakeResult::Accepted { event_id } => accepted.push(event_id),
            IntakeResult::Replayed { event_id } => replayed.push(event_id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(accepted.len(), 1);
    assert_eq!(replayed.len(), 11);
    assert!(replayed.iter().all(|id| *id == accepted[0]));
    assert_eq!(
        store
            .events_used(&account.id, now_millis())
            .await
            .expect("used"),
        1
    );
    let (hash, event_id) = store
        .idempotent_event(&account.id, "order-1", now_millis())
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!((hash.as_str(), &event_id), ("h1", &accepted[0]));
    let fields = Map::new();
    let conflict = IdempotencyKey {
        key: "order-1",
        request_hash: "h2",
    };
    let event = new_event(
        &account.id,
        &category,
        &fields,
        &["discord"],
        None,
        Some(conflict),
    );
    assert_eq!(
        store.insert_event(&event).await.expect("insert"),
        IntakeResult::KeyConflict
    );
    // Past the window the key is free again.
    let mut later = new_event(
        &account.id,
        &category,
        &fields,
        &["discord"],
        None,
        Some(conflict),
    );
    later.now += IDEMPOTENCY_WINDOW_MS + 1;
    let fresh = accept(&*store, &later).await;
    assert_ne!(fresh, accepted[0]);
    assert!(
        store
            .idempotent_event(&account.id, "order-1", now_millis())
            .await
            .expect("lookup")
            .is_some()
    );
}

async fn concurrent_claims_never_share_a_delivery(backend: &Backend) {
    let store = backend.store();
    let account = account(&*store).await;
    let category = category(&*store, &account.id, "sale").await;
    let fields = Map::new();
    for _ in 0..40 {
        let event = new_event(
            &account.id,
            &category,
            &fields,
            &["discord", "telegram"],
            None,
            None,
        );
        accept(&*store, &event).await;
    }
    let now = now_millis() + 1;
    let mut tasks = Vec::new();
    for owner in ["worker-a", "worker-b", "worker-c"] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claimed = store
                    .claim_due(owner, "discord", now, now + 30_000, 3)
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    // Empty can mean "all locked right now": look once more.
                    let again = store
                        .claim_due(owner, "discord", now, now + 30_000, 3)
                        .await
                        .expect("claim");
                    if again.is_empty() {
                        break;
                    }
                    mine.extend(again);
                    continue;
                }
                mine.extend(claimed);
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    let mut per_owner = Vec::new();
    for task in tasks {
        let claimed = task.await.expect("join");
        per_owner.push(claimed.len());
        for delivery in claimed {
            assert_eq!(delivery.provider, "discord");
            assert_eq!(delivery.category, "sale");
            assert_eq!(delivery.color, 0x00ff00);
            assert!(
                seen.insert(delivery.id),
                "delivery {} claimed twice",
                delivery.id
            );
        }
    }
    assert_eq!(seen.len(), 40, "{per_owner:?}");
    // Leased: nothing due until the leases expire, then everything again.
    assert!(
        store
            .claim_due("x", "discord", now, now + 1, 100)
            .await
            .expect("claim")
            .is_empty()
    );
    assert_eq!(
        store
            .claim_due("x", "discord", now + 30_000, now + 60_000, 100)
            .await
            .expect("claim")
            .len(),
        40
    );
    let stats = store.queue_stats(now + 30_001).await.expect("stats");
    assert_eq!(
        stats.by_state,
        vec![("due".to_string(), 40), ("leased".to_string(), 40)]
    );
    assert!(stats.oldest_pending.is_some());
    assert_eq!(
        store
            .extend_leases("x", now + 90_000)
            .await
            .expect("extend"),
        40
    );
    assert_eq!(
        store.next_due().await.expect("next").map(|t| t <= now),
        Some(true)
    );
}

async fn finish_delivery_updates_event_status(backend: &Backend) {
    let store = backend.store();
    let account = account(&*store).await;
    let category = category(&*store, &account.id, "sale").await;
    let fields: Map<String, Value> = json!({"plan": "pro", "amount": 99.99})
        .as_object()
        .cloned()
        .expect("object");
    let event = new_event(
        &account.id,
        &category,
        &fields,
        &["discord", "telegram"],
        None,
        None,
    );
    let event_id = accept(&*store, &event).await;
    let now = now_millis() + 1;
    let discord = store
        .claim_due("w1", "discord", now, now + 30_000, 10)
        .await
        .expect("claim");
    let telegram = store
        .claim_due("w1", "telegram", now, now + 30_000, 10)
        .await
        .expect("claim");
    assert_eq!((discord.len(), telegram.len()), (1, 1));
    assert_eq!(discord[0].fields, fields);
    assert_eq!(discord[0].event_id, event_id);
    let attempt = AttemptLog {
        started_at: now,
        duration_ms: 12,
        http_status: Some(200),
        error: None,
    };
    // Another owner's finish is ignored.
    assert!(
        !store
            .finish_delivery(
                discord[0].id,
                "w2",
                Some(&attempt),
                &DeliveryUpdate::Delivered
            )
            .await
            .expect("finish")
    );
    assert!(
        store
            .finish_delivery(
                discord[0].id,
                "w1",
                Some(&attempt),
                &DeliveryUpdate::Delivered
            )
            .await
            .expect("finish")
    );
    assert_eq!(
        store.event_status(&event_id).await.expect("status"),
        Some(DeliveryStatus::Pending)
    );
    let failed = AttemptLog {
        http_status: Some(403),
        error: Some("blocked".into()),
        ..attempt.clone()
    };
    let update = DeliveryUpdate::Failed {
        error: "blocked".into(),
    };
    assert!(
        store
            .finish_delivery(telegram[0].id, "w1", Some(&failed), &update)
            .await
            .expect("finish")
    );
    assert_eq!(
        store.event_status(&event_id).await.expect("status"),
        Some(DeliveryStatus::Failed)
    );
    let (record, deliveries) = store
        .event(&account.id, &event_id)
        .await
        .expect("event")
        .expect("found");
    assert_eq!(record.fields, fields);
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0].status, DeliveryStatus::Delivered);
    assert_eq!(deliveries[0].attempts[0].http_status, Some(200));
    assert_eq!(deliveries[1].last_error.as_deref(), Some("blocked"));
    assert_eq!(deliveries[1].next_attempt_at, None);
    assert!(
        store
            .event(&"acc_other".into(), &event_id)
            .await
            .expect("event")
            .is_none()
    );

    assert_eq!(
        store
            .retry_event(&account.id, &event_id)
            .await
            .expect("retry"),
        Some(1)
    );
    assert_eq!(
        store
            .retry_event(&account.id, &"evt_x".into())
            .await
            .expect("retry"),
        None
    );
    assert_eq!(
        store.event_status(&event_id).await.expect("status"),
        Some(DeliveryStatus::Pending)
    );

    // Waiting, then woken by an account change.
    let now = now_millis() + 1;
    let again = store
        .claim_due("w1", "telegram", now, now + 30_000, 10)
        .await
        .expect("claim");
    let waiting = DeliveryUpdate::Waiting {
        at: now + 3_600_000,
        reason: "not linked".into(),
    };
    assert!(
        store
            .finish_delivery(again[0].id, "w1", None, &waiting)
            .await
            .expect("finish")
    );
    let stats = store.queue_stats(now).await.expect("stats");
    assert!(
        stats.by_state.contains(&("waiting".to_string(), 1)),
        "{:?}",
        stats.by_state
    );
    store
        .update_account(&account.id, &AccountChanges::default())
        .await
        .expect("update");
    let woken = store
        .claim_due("w1", "telegram", now_millis() + 1, now + 30_000, 10)
        .await
        .expect("claim");
    assert_eq!(woken.len(), 1);
    store.release(woken[0].id, "w1").await.expect("release");
    assert_eq!(
        store
            .claim_due("w2", "telegram", now_millis() + 1, now + 30_000, 10)
            .await
            .expect("claim")
            .len(),
        1
    );

    // Two deliveries of one event finishing at the same time: the event ends DELIVERED.
    for _ in 0..15 {
        let event = new_event(
            &account.id,
            &category,
            &fields,
            &["discord", "telegram"],
            None,
            None,
        );
        let event_id = accept(&*store, &event).await;
        let now = now_millis() + 1;
        let mut claimed = store
            .claim_due("w3", "discord", now, now + 30_000, 10)
            .await
            .expect("claim");
        claimed.extend(
            store
                .claim_due("w3", "telegram", now, now + 30_000, 10)
                .await
                .expect("claim"),
        );
        let mut tasks = Vec::new();
        for delivery in claimed.into_iter().filter(|d| d.event_id == event_id) {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .finish_delivery(delivery.id, "w3", None, &DeliveryUpdate::Delivered)
                    .await
            }));
        }
        assert_eq!(tasks.len(), 2);
        for task in tasks {
            assert!(task.await.expect("join").expect("finish"));
        }
        assert_eq!(
            store.event_status(&event_id).await.expect("status"),
            Some(DeliveryStatus::Delivered)
        );
    }

    // The event list: newest first, filters, cursor.
    let all = store
        .events(
            &account.id,
            &EventFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(all.len(), 16);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    let page = store
        .events(
            &account.id,
            &EventFilter {
                limit: 5,
                before_id: Some(all[4].id.to_string()),
                category: Some("SALE".into()),
                status: Some(DeliveryStatus::Delivered),
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(page.len(), 5);
    assert_eq!(page[0].id, all[5].id);
    let pending = store
        .events(
            &account.id,
            &EventFilter {
                limit: 100,
                status: Some(DeliveryStatus::Pending),
                since: Some(0),
                until: Some(now_millis() + 1000),
                ..Default::default()
            },
        )
        .await
        .expect("events");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, event_id);
}

async fn leases_and_heartbeats(backend: &Backend) {
    let store = backend.store();
    assert!(
        store
            .acquire_lease("poll", "a", 1_000, 2_000)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .acquire_lease("poll", "b", 1_500, 2_500)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease("poll", "a", 1_900, 3_000)
            .await
            .expect("renew")
    );
    assert!(
        !store
            .acquire_lease("poll", "b", 2_999, 4_000)
            .await
            .expect("lease")
    );
    assert!(
        store
            .acquire_lease("poll", "b", 3_000, 4_000)
            .await
            .expect("expired")
    );
    assert!(
        !store
            .acquire_lease("poll", "a", 3_100, 5_000)
            .await
            .expect("lost")
    );
    // Many contenders at once: exactly one holds it.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.acquire_lease("fresh", &format!("p{i}"), 10, 20).await
        }));
    }
    let mut holders = 0;
    for task in tasks {
        holders += usize::from(task.await.expect("join").expect("lease"));
    }
    assert_eq!(holders, 1);

    assert_eq!(store.heartbeat("p1", 10_000, 5_000).await.expect("beat"), 1);
    assert_eq!(store.heartbeat("p2", 11_000, 5_000).await.expect("beat"), 2);
    assert_eq!(store.heartbeat("p1", 12_000, 5_000).await.expect("beat"), 2);
    // p2 silent for longer than the window is forgotten.
    assert_eq!(store.heartbeat("p1", 16_500, 5_000).await.expect("beat"), 1);
    assert_eq!(store.heartbeat("p3", 16_600, 5_000).await.expect("beat"), 2);
    store.forget_process("p3").await.expect("forget");
    assert_eq!(store.heartbeat("p1", 16_700, 5_000).await.expect("beat"), 1);
}
