//! The record of API requests: adding to it, reading it back filtered, summing it, trimming it.

use std::collections::BTreeMap;

use super::{Backend, on_both_backends};
use crate::model::*;
use crate::store::*;

on_both_backends!(
    requests_of_a_kind_and_minute_add_up_and_read_back_filtered,
    outcomes_are_summed_per_status_message_and_category,
    the_record_is_trimmed_to_its_age_and_size,
);

const MINUTE: Millis = 60_000;

async fn account(store: &dyn Storage) -> AccountId {
    store
        .create_account("Test", None, "unlimited", &BTreeMap::new(), &["discord"])
        .await
        .expect("account")
        .0
        .id
}

fn request(account_id: &AccountId, status: u16, at: Millis) -> ActivityRow {
    ActivityRow {
        account_id: account_id.clone(),
        key_prefix: "pk_aaaaaaa".into(),
        method: "POST".into(),
        path: "/api/v1/event".into(),
        status,
        message: (status >= 400).then(|| format!("refused with {status}")),
        client: Some("127.0.0.1".into()),
        category: Some("sale".into()),
        count: 1,
        first_at: at,
        last_at: at,
    }
}

fn all(limit: u32) -> ActivityQuery {
    ActivityQuery {
        limit,
        ..ActivityQuery::default()
    }
}

async fn requests_of_a_kind_and_minute_add_up_and_read_back_filtered(backend: &Backend) {
    let store = backend.store();
    let account_id = account(store.as_ref()).await;
    let at = 1_000 * MINUTE;
    // Two writes of the same kind and minute are one row; another minute, another row.
    store
        .record_activity(&[request(&account_id, 200, at + 1_000)])
        .await
        .expect("record");
    let mut again = request(&account_id, 200, at + 2_000);
    again.count = 4;
    let other_key = ActivityRow {
        key_prefix: "pk_bbbbbbb".into(),
        ..request(&account_id, 404, at + 3_000)
    };
    store
        .record_activity(&[again, other_key, request(&account_id, 200, at + MINUTE)])
        .await
        .expect("record");
    // A row of an account that is gone is left out, and the rest is written.
    store
        .record_activity(&[
            request(&"acc_gone".into(), 200, at),
            request(&account_id, 500, at + 2 * MINUTE),
        ])
        .await
        .expect("record");

    let (rows, total) = store.activity(&account_id, &all(10)).await.expect("read");
    let seen: Vec<_> = rows
        .iter()
        .map(|row| (row.status, row.count, row.first_at, row.last_at))
        .collect();
    assert_eq!(
        seen,
        [
            (500, 1, at + 2 * MINUTE, at + 2 * MINUTE),
            (200, 1, at + MINUTE, at + MINUTE),
            (404, 1, at + 3_000, at + 3_000),
            (200, 5, at + 1_000, at + 2_000),
        ]
    );
    assert_eq!(total, 4);
    assert_eq!(rows[2].key_prefix, "pk_bbbbbbb");
    assert_eq!(rows[2].message.as_deref(), Some("refused with 404"));
    assert_eq!(rows[2].client.as_deref(), Some("127.0.0.1"));
    assert_eq!(rows[2].category.as_deref(), Some("sale"));

    let page = |status, key: Option<&str>, offset| ActivityQuery {
        key_prefix: key.map(str::to_string),
        status,
        offset,
        limit: 2,
    };
    let statuses = |rows: Vec<ActivityRow>| rows.iter().map(|r| r.status).collect::<Vec<_>>();
    let (rows, total) = store
        .activity(&account_id, &page(StatusFilter::Refused, None, 0))
        .await
        .expect("read");
    assert_eq!((statuses(rows), total), (vec![500, 404], 2));
    let (rows, total) = store
        .activity(&account_id, &page(StatusFilter::Accepted, None, 1))
        .await
        .expect("read");
    assert_eq!((statuses(rows), total), (vec![200], 2));
    let (rows, total) = store
        .activity(&account_id, &page(StatusFilter::Exactly(404), None, 0))
        .await
        .expect("read");
    assert_eq!((statuses(rows), total), (vec![404], 1));
    let (rows, total) = store
        .activity(&account_id, &page(StatusFilter::Any, Some("pk_aaaaaaa"), 0))
        .await
        .expect("read");
    assert_eq!((statuses(rows), total), (vec![500, 200], 3));
    assert_eq!(
        store.activity_keys(&account_id).await.expect("keys"),
        ["pk_aaaaaaa", "pk_bbbbbbb"]
    );
    // Another account sees none of it.
    let stranger = account(store.as_ref()).await;
    assert_eq!(
        store.activity(&stranger, &all(10)).await.expect("read").1,
        0
    );
}

async fn outcomes_are_summed_per_status_message_and_category(backend: &Backend) {
    let store = backend.store();
    let account_id = account(store.as_ref()).await;
    let at = 2_000 * MINUTE;
    let alias = ActivityRow {
        path: "/api/v1/events".into(),
        ..request(&account_id, 403, at + MINUTE)
    };
    let read = ActivityRow {
        method: "GET".into(),
        path: "/api/v1/events".into(),
        ..request(&account_id, 403, at)
    };
    let old = request(&account_id, 403, at - 10 * MINUTE);
    store
        .record_activity(&[
            request(&account_id, 403, at),
            alias,
            read,
            old,
            request(&account_id, 200, at + 30_000),
        ])
        .await
        .expect("record");
    let mut outcomes = store
        .activity_outcomes(
            &account_id,
            "POST",
            &["/api/v1/event", "/api/v1/events"],
            at - MINUTE,
        )
        .await
        .expect("outcomes");
    outcomes.sort_by_key(|row| (row.path.clone(), row.status));
    let seen: Vec<_> = outcomes
        .iter()
        .map(|row| {
            (
                row.path.as_str(),
                row.status,
                row.count,
                row.first_at,
                row.last_at,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("/api/v1/event", 200, 1, at + 30_000, at + 30_000),
            ("/api/v1/event", 403, 1, at, at),
            ("/api/v1/events", 403, 1, at + MINUTE, at + MINUTE),
        ]
    );
    assert_eq!(outcomes[1].category.as_deref(), Some("sale"));
}

async fn the_record_is_trimmed_to_its_age_and_size(backend: &Backend) {
    let store = backend.store();
    let busy = account(store.as_ref()).await;
    let quiet = account(store.as_ref()).await;
    let at = 3_000 * MINUTE;
    let rows: Vec<ActivityRow> = (0..6)
        .map(|n| request(&busy, 200, at + n * MINUTE))
        .chain([
            request(&quiet, 200, at - 5 * MINUTE),
            request(&quiet, 200, at + 5 * MINUTE),
        ])
        .collect();
    store.record_activity(&rows).await.expect("record");
    // Older than `at` goes for everyone; the busy account keeps its 3 newest.
    let deleted = store
        .trim_activity(at, std::slice::from_ref(&busy), 3)
        .await
        .expect("trim");
    assert_eq!(deleted, 1 + 3);
    let (kept, _) = store.activity(&busy, &all(10)).await.expect("read");
    let times: Vec<Millis> = kept.iter().map(|row| row.first_at).collect();
    assert_eq!(times, [at + 5 * MINUTE, at + 4 * MINUTE, at + 3 * MINUTE]);
    assert_eq!(store.activity(&quiet, &all(10)).await.expect("read").1, 1);
    // An account's deletion takes its record along.
    backend.delete_account(busy.as_str()).await;
    assert_eq!(backend.count("api_activity").await, 1);
}
