//! Dashboard sessions, sign-in links, and the summaries the dashboard's pages read.

use std::collections::BTreeMap;

use serde_json::json;

use super::{Backend, category, on_both_backends};
use crate::model::{Account, Category, DeliveryStatus, Millis, hash_api_key, now_millis};
use crate::store::*;

on_both_backends!(
    sessions,
    revocation_ends_sessions,
    signing_out_everywhere,
    login_links,
    summaries,
);

async fn new_account(store: &dyn Storage) -> (Account, String) {
    store
        .create_account("Test", None, "free", &BTreeMap::new(), &[])
        .await
        .expect("account")
}

async fn version(store: &dyn Storage, key: &str) -> i64 {
    store
        .authenticate(&hash_api_key(key))
        .await
        .expect("authenticate")
        .expect("key")
        .account_version
}

/// An event created at `now` with fields `{"n": n}`, delivered to Discord and Telegram.
async fn event(
    store: &dyn Storage,
    account_id: &AccountId,
    category: &Category,
    now: Millis,
    n: i64,
) -> EventId {
    let fields = json!({ "n": n }).as_object().cloned().expect("object");
    let event = NewEvent {
        account_id,
        category,
        description: "something happened",
        fields: &fields,
        providers: &["discord", "telegram"],
        events_limit: None,
        now,
        idempotency: None,
        decided_from: None,
    };
    match store.insert_event(&event).await.expect("insert") {
        IntakeResult::Accepted { event_id } => event_id,
        other => panic!("{other:?}"),
    }
}

fn session(account_id: &AccountId, csrf: &str, expires_at: Millis) -> SessionRecord {
    SessionRecord {
        account_id: account_id.clone(),
        csrf_token: csrf.to_string(),
        expires_at,
        key_id: None,
    }
}

/// A session signed in with the key `key_id`.
fn key_session(account_id: &AccountId, key_id: &KeyId, expires_at: Millis) -> SessionRecord {
    SessionRecord {
        key_id: Some(key_id.clone()),
        ..session(account_id, "csrf", expires_at)
    }
}

async fn key_id(store: &dyn Storage, key: &str) -> KeyId {
    store
        .authenticate(&hash_api_key(key))
        .await
        .expect("authenticate")
        .expect("key")
        .key_id
}

async fn open(store: &dyn Storage, id_hash: &str, now: Millis) -> bool {
    store.session(id_hash, now).await.expect("read").is_some()
}

async fn sessions(backend: &Backend) {
    let store = backend.store();
    let (account, key) = new_account(&*store).await;
    let before = version(&*store, &key).await;

    let first = session(&account.id, "csrf-1", 1_000);
    store.create_session("s1", &first, 0).await.expect("create");
    assert_eq!(
        store.session("s1", 999).await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(store.session("s1", 1_000).await.expect("read"), None);
    assert_eq!(store.session("unknown", 0).await.expect("read"), None);

    // A new session forgets the expired ones: s1 is gone even for a reader at time 0.
    let second = session(&account.id, "csrf-2", 5_000);
    store
        .create_session("s2", &second, 1_000)
        .await
        .expect("create");
    assert_eq!(store.session("s1", 0).await.expect("read"), None);
    assert_eq!(backend.count("dashboard_sessions").await, 1);
    assert_eq!(
        store.session("s2", 1_000).await.expect("read"),
        Some(second)
    );

    store.delete_session("s2").await.expect("delete");
    assert_eq!(store.session("s2", 1_000).await.expect("read"), None);
    store.delete_session("s2").await.expect("delete unknown");

    // Sessions and links leave the account's version alone (intake's cached copies hold).
    store
        .create_session("s3", &session(&account.id, "csrf-3", 9_000), 2_000)
        .await
        .expect("create");
    store
        .create_login_link("l1", &account.id, 2_000, 9_000)
        .await
        .expect("link");
    assert!(
        store
            .redeem_login_link("l1", 3_000)
            .await
            .expect("redeem")
            .is_some()
    );
    assert_eq!(version(&*store, &key).await, before);

    // Deleting the account takes its sessions and links with it.
    backend.delete_account(&account.id).await;
    assert_eq!(store.session("s3", 2_000).await.expect("read"), None);
    assert_eq!(backend.count("dashboard_sessions").await, 0);
    assert_eq!(backend.count("login_links").await, 0);
}

async fn revocation_ends_sessions(backend: &Backend) {
    let store = backend.store();
    let (account, first_key) = new_account(&*store).await;
    let (other, other_key) = new_account(&*store).await;
    let first = key_id(&*store, &first_key).await;
    let (second, _) = store
        .create_key(&account.id, None)
        .await
        .expect("create")
        .expect("account");
    let theirs = key_id(&*store, &other_key).await;

    let by_first = key_session(&account.id, &first, 9_000);
    store
        .create_session("by-first", &by_first, 0)
        .await
        .expect("create");
    for (id_hash, record) in [
        ("by-second", key_session(&account.id, &second.id, 9_000)),
        ("by-link", session(&account.id, "csrf", 9_000)),
        ("theirs", key_session(&other.id, &theirs, 9_000)),
    ] {
        store
            .create_session(id_hash, &record, 0)
            .await
            .expect("create");
    }
    assert_eq!(
        store.session("by-first", 1_000).await.expect("read"),
        Some(by_first)
    );

    // Another account's key is not revoked, and its sessions stay.
    assert!(
        !store
            .revoke_key(&second.id, Some(&other.id))
            .await
            .expect("revoke")
    );
    assert!(open(&*store, "by-second", 1_000).await);

    // Revoking a key deletes its sessions, and only its.
    assert!(
        store
            .revoke_key(&second.id, Some(&account.id))
            .await
            .expect("revoke")
    );
    assert!(!open(&*store, "by-second", 1_000).await);
    assert_eq!(backend.count("dashboard_sessions").await, 3);
    for id_hash in ["by-first", "by-link", "theirs"] {
        assert!(open(&*store, id_hash, 1_000).await, "{id_hash}");
    }

    // A session stored after its key was revoked (a sign-in racing the revocation) is refused
    // by the lookup itself.
    store
        .create_session("raced", &key_session(&account.id, &second.id, 9_000), 0)
        .await
        .expect("create");
    assert!(!open(&*store, "raced", 1_000).await);

    // The operator's revocation (any account) ends the sessions the same way.
    assert!(store.revoke_key(&theirs, None).await.expect("revoke"));
    assert!(!open(&*store, "theirs", 1_000).await);
    assert!(open(&*store, "by-first", 1_000).await);
}

async fn signing_out_everywhere(backend: &Backend) {
    let store = backend.store();
    let (account, key) = new_account(&*store).await;
    let (other, other_key) = new_account(&*store).await;
    let live = key_id(&*store, &key).await;
    let (revoked, _) = store
        .create_key(&account.id, None)
        .await
        .expect("create")
        .expect("account");
    assert!(store.revoke_key(&revoked.id, None).await.expect("revoke"));
    let theirs = key_id(&*store, &other_key).await;
    for (id_hash, record) in [
        ("by-key", key_session(&account.id, &live, 9_000)),
        ("by-link", session(&account.id, "csrf", 9_000)),
        ("expiring", session(&account.id, "csrf", 1_500)),
        ("raced", key_session(&account.id, &revoked.id, 9_000)),
        ("theirs", key_session(&other.id, &theirs, 9_000)),
    ] {
        store
            .create_session(id_hash, &record, 0)
            .await
            .expect("create");
    }

    // The open sessions are counted (not one that expired, nor one of a revoked key), and
    // every one of the account's ends; other accounts keep theirs.
    assert_eq!(
        store
            .delete_account_sessions(&account.id, 2_000)
            .await
            .expect("sign out everywhere"),
        2
    );
    for id_hash in ["by-key", "by-link", "expiring", "raced"] {
        assert!(!open(&*store, id_hash, 1_000).await, "{id_hash}");
    }
    assert!(open(&*store, "theirs", 2_000).await);
    assert_eq!(backend.count("dashboard_sessions").await, 1);

    assert_eq!(
        store
            .delete_account_sessions(&account.id, 2_000)
            .await
            .expect("again"),
        0
    );
    assert_eq!(
        store
            .delete_account_sessions(&"acc_unknown".into(), 2_000)
            .await
            .expect("unknown"),
        0
    );
}

async fn login_links(backend: &Backend) {
    let store = backend.store();
    let (account, _) = new_account(&*store).await;
    let (other, _) = new_account(&*store).await;

    store
        .create_login_link("used-once", &account.id, 0, 1_000)
        .await
        .expect("link");
    assert_eq!(
        store
            .redeem_login_link("used-once", 500)
            .await
            .expect("redeem"),
        Some(account.id.clone())
    );
    assert_eq!(
        store
            .redeem_login_link("used-once", 600)
            .await
            .expect("redeem"),
        None
    );

    store
        .create_login_link("expiring", &other.id, 0, 1_000)
        .await
        .expect("link");
    assert_eq!(
        store
            .redeem_login_link("expiring", 1_000)
            .await
            .expect("redeem"),
        None
    );
    assert_eq!(
        store.redeem_login_link("unknown", 0).await.expect("redeem"),
        None
    );

    // Creating a link forgets expired ones (used or not); live ones stay.
    store
        .create_login_link("raced", &other.id, 1_000, 2_000)
        .await
        .expect("link");
    assert_eq!(backend.count("login_links").await, 1);

    // Redemptions racing for one link: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.redeem_login_link("raced", 1_500).await })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(id) = task.await.expect("join").expect("redeem") {
            winners.push(id);
        }
    }
    assert_eq!(winners, vec![other.id.clone()]);
}

async fn summaries(backend: &Backend) {
    let store = backend.store();
    let (account, _) = new_account(&*store).await;
    let (other, _) = new_account(&*store).await;
    let signups = category(&*store, &account.id, "signups").await;
    let orders = category(&*store, &account.id, "orders").await;
    let _idle = category(&*store, &account.id, "idle").await;
    let other_signups = category(&*store, &other.id, "signups").await;

    event(&*store, &account.id, &signups, 999, 0).await;
    event(&*store, &account.id, &signups, 1_000, 1).await;
    let inside = event(&*store, &account.id, &signups, 1_500, 2).await;
    event(&*store, &account.id, &signups, 1_999, 3).await;
    event(&*store, &account.id, &signups, 2_000, 4).await;
    let order = event(&*store, &account.id, &orders, 1_500, 5).await;
    let foreign = event(&*store, &other.id, &other_signups, 1_500, 6).await;

    let samples = store
        .category_samples(&account.id, "signups", 1_000, 2_000, None)
        .await
        .expect("samples");
    let seen: Vec<_> = samples
        .iter()
        .map(|sample| (sample.created_at, sample.fields.get("n").cloned()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (1_000, Some(json!(1))),
            (1_500, Some(json!(2))),
            (1_999, Some(json!(3))),
        ]
    );
    // Names match as the category lookups do, case-insensitively.
    assert_eq!(
        store
            .category_samples(&account.id, "SignUps", 1_000, 2_000, None)
            .await
            .expect("samples"),
        samples
    );
    let theirs = store
        .category_samples(&other.id, "signups", 0, 10_000, None)
        .await
        .expect("samples");
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].fields.get("n"), Some(&json!(6)));
    assert!(
        store
            .category_samples(&account.id, "missing", 0, 10_000, None)
            .await
            .expect("samples")
            .is_empty()
    );
    // Those after an id, and what tells whether a summary is current.
    let after = store
        .category_samples(&account.id, "signups", 1_000, 2_000, Some(&samples[0].id))
        .await
        .expect("samples");
    assert_eq!(after, samples[1..]);
    assert_eq!(
        store
            .category_window(&account.id, "SignUps", 1_000, 2_000)
            .await
            .expect("window"),
        (3, Some(samples[2].id.clone()))
    );
    assert_eq!(
        store
            .category_window(&account.id, "missing", 0, 10_000)
            .await
            .expect("window"),
        (0, None)
    );

    let counts = store
        .category_counts_since(&account.id, 1_500)
        .await
        .expect("counts");
    assert_eq!(
        counts,
        BTreeMap::from([("orders".to_string(), 1), ("signups".to_string(), 3)])
    );
    assert_eq!(
        store
            .category_counts_since(&account.id, 0)
            .await
            .expect("counts")
            .get("signups"),
        Some(&5)
    );
    assert!(
        store
            .category_counts_since(&account.id, 2_001)
            .await
            .expect("counts")
            .is_empty()
    );

    // One delivery made: its badge says so, the others stay pending.
    let claimed = store
        .claim_due(
            "worker",
            "discord",
            now_millis(),
            now_millis() + 60_000,
            100,
        )
        .await
        .expect("claim");
    let delivery = claimed
        .iter()
        .find(|delivery| delivery.event_id == inside)
        .expect("claimed");
    assert!(
        store
            .finish_delivery(delivery.id, "worker", None, &DeliveryUpdate::Delivered)
            .await
            .expect("finish")
    );

    assert!(
        store
            .delivery_badges(&account.id, &[])
            .await
            .expect("badges")
            .is_empty()
    );
    let badges = store
        .delivery_badges(
            &account.id,
            &[
                inside.clone(),
                order.clone(),
                foreign.clone(),
                "unknown".into(),
            ],
        )
        .await
        .expect("badges");
    let badge = |provider: &str, status: &str| DeliveryBadge {
        provider: provider.to_string(),
        status: DeliveryStatus::parse(status).expect("a status"),
        waiting: false,
        had_error: false,
    };
    assert_eq!(
        badges,
        BTreeMap::from([
            (
                inside.clone(),
                vec![badge("discord", "DELIVERED"), badge("telegram", "PENDING")]
            ),
            (
                order.clone(),
                vec![badge("discord", "PENDING"), badge("telegram", "PENDING")]
            ),
        ])
    );
    assert_eq!(
        store
            .delivery_badges(&other.id, &[foreign.clone(), inside.clone()])
            .await
            .expect("badges")
            .keys()
            .collect::<Vec<_>>(),
        vec![&foreign]
    );
}
