//! The events page: every category's events, filtered by category, status, channel, text and
//! days, and a retry of every failed delivery of the filtered events.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Browser, Page};
use crate::helpers::*;

fn event(category: &str, description: &str, fields: Value) -> Value {
    json!({"category": category, "description": description, "fields": fields})
}

async fn create_category(relay: &Relay, key: &str, name: &str) {
    let (status, body) = relay
        .call(
            reqwest::Method::POST,
            "/api/v1/categories",
            Some(key),
            Some(json!({"name": name, "color": "#FF0000"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// How many rows the page's events table has.
fn rows(page: &Page) -> usize {
    page.body
        .matches("<tr><td><a href=\"/dashboard/events/evt_")
        .count()
}

#[tokio::test]
async fn events_of_every_category_are_filtered_by_category_text_and_days() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    create_category(&relay, &key, "bug").await;
    accepted_id(
        &relay,
        &key,
        event(
            "sale",
            "New sale from Lisbon",
            json!({"plan": "pro", "city": "Zürich"}),
        ),
    )
    .await;
    accepted_id(
        &relay,
        &key,
        event("sale", "Refund", json!({"amount": 5, "note": "100% off"})),
    )
    .await;
    accepted_id(
        &relay,
        &key,
        event("bug", "Crash in checkout", json!({"service": "Payments"})),
    )
    .await;
    let mut browser = Browser::signed_in(&relay, &key).await;

    let all = browser.get("/dashboard/events").await;
    assert_eq!(all.status, StatusCode::OK);
    all.assert_contains(&[
        r#"<a href="/dashboard/events" aria-current="page">Events</a>"#,
        "Events 1–3 of 3, newest first",
        r#"<th scope="col">Category</th>"#,
        r#"<a href="/dashboard/categories/bug"><span class="cut" title="bug">bug</span></a>"#,
        r#"<option value="bug">bug</option>"#,
    ]);
    assert_eq!(rows(&all), 3);

    let cases = [
        ("?category=bug", 1),
        ("?category=SALE", 2),
        // Case-insensitive, in descriptions and in field values; wildcards are plain text.
        ("?q=lisbon", 1),
        ("?q=payments", 1),
        ("?q=CRASH", 1),
        ("?q=z%C3%BCrich", 1),
        ("?q=100%25", 1),
        ("?q=%25", 1),
        ("?q=_", 0),
        ("?category=bug&q=refund", 0),
    ];
    for (query, expected) in cases {
        let page = browser.get(&format!("/dashboard/events{query}")).await;
        assert_eq!(rows(&page), expected, "{query}");
        if expected == 0 {
            page.assert_contains(&["No events match these filters.", ">Clear</a>"]);
        }
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let page = browser
        .get(&format!("/dashboard/events?from={today}&to={today}"))
        .await;
    assert_eq!(rows(&page), 3);
    page.assert_contains(&[&format!(r#"name="from" value="{today}""#)]);
    let page = browser.get("/dashboard/events?to=2020-01-31").await;
    assert_eq!(rows(&page), 0);
    let page = browser.get("/dashboard/events?from=yesterday").await;
    assert_eq!(rows(&page), 3);
    page.assert_contains(&["Dates are written YYYY-MM-DD"]);
    relay.stop().await;
}

#[tokio::test]
async fn pages_say_where_they_are_and_keep_the_filters() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    for n in 0..30 {
        accepted_id(&relay, &key, event("sale", &format!("Sale {n}"), json!({}))).await;
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    let first = browser.get("/dashboard/events?q=sale").await;
    first.assert_contains(&["Events 1–25 of 30, newest first", "Sale 29"]);
    let start = first
        .body
        .find("/dashboard/events?q=sale&amp;before=")
        .expect("older link");
    let end = first.body[start..].find('"').expect("link end") + start;
    let older = first.body[start..end].replace("&amp;", "&");
    let second = browser.get(&older).await;
    assert_eq!(rows(&second), 5);
    second.assert_contains(&[
        "Events 26–30 of 30, newest first",
        "Sale 0",
        r#"<a href="/dashboard/events?q=sale">← Newest events</a>"#,
    ]);
    assert!(!second.body.contains("Sale 5<"), "{}", second.body);
    relay.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_found_by_channel_and_retried_together() {
    let relay = Relay::with_discord_refusing().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    create_category(&relay, &key, "bug").await;
    for body in [sale_event(), sale_event(), event("bug", "Crash", json!({}))] {
        let event_id = accepted_id(&relay, &key, body).await;
        let event = relay.wait_final(&key, &event_id).await;
        assert_eq!(event["deliveryStatus"], "FAILED", "{event}");
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    for (query, expected) in [
        ("?status=failed", 3),
        ("?status=delivered", 0),
        ("?channel=telegram&status=delivered", 3),
        ("?channel=telegram&status=failed", 0),
        ("?channel=discord&status=failed", 3),
        ("?channel=nope&status=failed", 3),
    ] {
        let page = browser.get(&format!("/dashboard/events{query}")).await;
        assert_eq!(rows(&page), expected, "{query}");
    }
    // The count of failed events follows the channel: Discord's failed, Telegram's did not.
    let page = browser
        .get("/dashboard/events?channel=discord&status=failed")
        .await;
    page.assert_contains(&[
        "Events 1–3 of 3, newest first",
        "Retry the failed deliveries of 3 events",
    ]);
    let page = browser.get("/dashboard/events?channel=telegram").await;
    page.assert_contains(&["Events 1–3 of 3, newest first"]);
    assert!(!page.body.contains("Retry the failed"), "{}", page.body);
    let page = browser.get("/dashboard/events?channel=discord").await;
    page.assert_contains(&["Retry the failed deliveries of 3 events"]);
    let page = browser.get("/dashboard/events?category=sale").await;
    page.assert_contains(&[
        r#"<form class="retry-all" method="post" action="/dashboard/events/retry">"#,
        r#"<input type="hidden" name="category" value="sale">"#,
        "Retry the failed deliveries of 2 events",
    ]);
    let page = browser.get("/dashboard/events?status=pending").await;
    assert!(!page.body.contains("Retry the failed"), "{}", page.body);

    // Discord takes messages again; the sale events' deliveries are retried, the bug's not.
    relay.discord.reset().await;
    mount_discord_ok(&relay.discord).await;
    let before = discord_messages(&relay).await;
    let done = browser
        .post("/dashboard/events/retry", &[("category", "sale")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/dashboard/events?category=sale&done=retried&count=2")
    );
    let page = browser
        .get("/dashboard/events?category=sale&done=retried&count=2")
        .await;
    page.assert_contains(&["2 failed deliveries are queued again."]);
    let mut delivered = false;
    for _ in 0..100 {
        let page = browser.get("/dashboard/events?status=delivered").await;
        if rows(&page) == 2 {
            delivered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(delivered, "the retried events were not delivered");
    assert_eq!(discord_messages(&relay).await - before, 2);
    let failed = browser.get("/dashboard/events?status=failed").await;
    assert_eq!(rows(&failed), 1);
    failed.assert_contains(&["Crash"]);

    // A retry needs the session's form token.
    let forged = browser
        .post(
            "/dashboard/events/retry",
            &[("category", "bug"), ("csrf", "")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    relay.stop().await;
}

/// Messages the Discord stand-in was asked to send.
async fn discord_messages(relay: &Relay) -> usize {
    relay
        .discord
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|request| {
            request.method.as_str() == "POST" && request.url.path().ends_with("/messages")
        })
        .count()
}
