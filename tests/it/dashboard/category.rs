//! A category's page: range tabs, totals and numeric sums, the chart, the events table with
//! delivery badges, pagination, the empty state with its curl command, and the live fragment.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Browser, Page};
use crate::helpers::Relay;

/// Sends an event; its id.
async fn send(relay: &Relay, key: &str, body: Value) -> String {
    let (status, answer) = relay.send_event(key, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["eventId"].as_str().expect("eventId").to_string()
}

/// The page's text with HTML's quote escapes undone, to compare with JSON.
fn unescaped(page: &Page) -> String {
    page.body.replace("&quot;", "\"").replace("&amp;", "&")
}

fn count(page: &Page, part: &str) -> usize {
    page.body.matches(part).count()
}

/// The event ids the table links to, in the table's order.
fn event_links(page: &Page) -> Vec<String> {
    let marker = r#"<a href="/dashboard/events/"#;
    page.body
        .split(marker)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_string)
        .collect()
}

/// The `seen` fingerprint in the live section's polling address.
fn seen_in(page: &Page) -> String {
    let start = page.body.find("seen=").expect("a polling address") + 5;
    let end = page.body[start..].find('"').expect("end of address") + start;
    page.body[start..end].to_string()
}

#[tokio::test]
async fn totals_sums_fields_and_delivery_badges() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    let first = send(
        &relay,
        &key,
        json!({"category": "sale", "description": "First sale",
               "fields": {"amount": 12.5, "plan": "pro"}}),
    )
    .await;
    let second = send(
        &relay,
        &key,
        json!({"category": "sale", "description": "Second sale",
               "fields": {"amount": 7.5, "seats": 3, "recurring": true}}),
    )
    .await;
    relay.wait_final(&key, &first).await;
    relay.wait_final(&key, &second).await;

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/categories/sale").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        "<title>Category sale · PingPilot</title>",
        r#"<a href="/dashboard/categories/sale?range=today" aria-current="page">Today</a>"#,
        r#"<a href="/dashboard/categories/sale?range=week">This week</a>"#,
        "Weeks start on Monday; times are UTC.",
        "<dt>Events</dt><dd>2</dd>",
        "<dt>Sum of amount</dt><dd>20</dd>",
        "<dt>Sum of seats</dt><dd>3</dd>",
        r#"<th scope="col">amount</th>"#,
        r#"<th scope="col">plan</th>"#,
        r#"<th scope="col">seats</th>"#,
        r#"<th scope="col">recurring</th>"#,
        r#"<td><span class="cut" title="pro">pro</span></td>"#,
        r#"<td><span class="cut" title="12.5">12.5</span></td>"#,
        r#"<td><span class="cut" title="true">true</span></td>"#,
        "First sale",
        "Second sale",
        &format!(r#"<a href="/dashboard/events/{first}">"#),
        &format!(r#"<a href="/dashboard/events/{second}">"#),
        r#"<span class="badge delivered">Discord: Delivered</span>"#,
        r#"<span class="badge delivered">Telegram: Delivered</span>"#,
        r#"role="img" aria-label="Events per hour"#,
        "2 in total; busiest",
    ]);
    // Text fields are not summed; the newest event (the larger id) comes first.
    assert!(!page.body.contains("Sum of plan") && !page.body.contains("Sum of recurring"));
    let mut newest_first = vec![first.clone(), second.clone()];
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(event_links(&page), newest_first);
    assert_eq!(count(&page, r#"<rect class="bar""#), 24);
    assert_eq!(count(&page, r#"<span class="badge delivered">"#), 4);

    // The totals are kept between views; an event sent since is counted in.
    send(
        &relay,
        &key,
        json!({"category": "sale", "description": "Third sale", "fields": {"amount": 0.5}}),
    )
    .await;
    let page = browser.get("/dashboard/categories/sale").await;
    page.assert_contains(&[
        "<dt>Events</dt><dd>3</dd>",
        "<dt>Sum of amount</dt><dd>20.5</dd>",
        "3 in total; busiest",
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn tabs_switch_the_range_and_the_chart() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    send(
        &relay,
        &key,
        json!({"category": "sale", "fields": {"amount": 1}}),
    )
    .await;
    let mut browser = Browser::signed_in(&relay, &key).await;

    let week = browser.get("/dashboard/categories/sale?range=week").await;
    assert_eq!(week.status, StatusCode::OK);
    week.assert_contains(&[
        r#"aria-current="page">This week</a>"#,
        "Events per day",
        "<dt>Events</dt><dd>1</dd>",
        ">Mon ",
    ]);
    assert_eq!(count(&week, r#"<rect class="bar""#), 7);

    let month = browser.get("/dashboard/categories/sale?range=month").await;
    month.assert_contains(&[r#"aria-current="page">This month</a>"#, "<dd>1</dd>"]);
    let bars = count(&month, r#"<rect class="bar""#);
    assert!((28..=31).contains(&bars), "{bars} bars");

    // An unknown range is today's.
    let odd = browser.get("/dashboard/categories/sale?range=decade").await;
    assert_eq!(odd.status, StatusCode::OK);
    odd.assert_contains(&[r#"aria-current="page">Today</a>"#]);
    // Names match case-insensitively, as in the API.
    let upper = browser.get("/dashboard/categories/SALE").await;
    assert_eq!(upper.status, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn the_table_pages_25_events_at_a_time() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut sent = Vec::new();
    for n in 0..27 {
        sent.push(
            send(
                &relay,
                &key,
                json!({"category": "sale", "fields": {"n": n}}),
            )
            .await,
        );
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    let first = browser.get("/dashboard/categories/sale").await;
    assert_eq!(first.status, StatusCode::OK);
    first.assert_contains(&[
        "<dt>Events</dt><dd>27</dd>",
        "<dt>Sum of n</dt><dd>351</dd>",
    ]);
    let first_ids = event_links(&first);
    assert_eq!(first_ids.len(), 25);
    let last_shown = first_ids.last().expect("a row");
    let older = format!(
        r#"<a href="/dashboard/categories/sale?range=today&amp;before={last_shown}" rel="next">Older events →</a>"#
    );
    first.assert_contains(&[&older, "<span>Events 1–25 of 27, newest first</span>"]);
    assert!(!first.body.contains("Newest events"));

    let second = browser
        .get(&format!(
            "/dashboard/categories/sale?range=today&before={last_shown}"
        ))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let second_ids = event_links(&second);
    assert_eq!(second_ids.len(), 2);
    second.assert_contains(&[
        "← Newest events",
        "<dd>27</dd>",
        "<span>Events 26–27 of 27, newest first</span>",
    ]);
    assert!(!second.body.contains("Older events"));
    // Older pages do not refresh themselves.
    assert!(!second.body.contains("hx-get"));

    // Newest first across both pages, every event exactly once.
    let shown: Vec<String> = first_ids.into_iter().chain(second_ids).collect();
    let mut expected = sent;
    expected.sort();
    expected.reverse();
    assert_eq!(shown, expected);
    relay.stop().await;
}

#[tokio::test]
async fn an_empty_category_offers_curl_and_waits_live_for_the_first_event() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/categories/sale").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = unescaped(&page);
    for part in [
        "Waiting for the first event",
        "curl -X POST http",
        "/api/v1/event \\",
        r#"-H "Authorization: Bearer YOUR_API_KEY""#,
        r#"-H "Content-Type: application/json""#,
        r#"-d '{"category":"sale","description":"Something happened","fields":{"amount":12.5,"plan":"pro"}}'"#,
        r#"hx-get="/dashboard/categories/sale/events?range=today&seen="#,
        r#"hx-trigger="every 3s""#,
        r#"hx-swap="outerHTML""#,
        "Without JavaScript: reload the page",
    ] {
        assert!(text.contains(part), "expected {part:?} in:\n{text}");
    }
    assert!(!page.body.contains("<table"));

    // The fragment answers the same section; nothing changed since → 204, no swap.
    let fragment = browser
        .get("/dashboard/categories/sale/events?range=today")
        .await;
    assert_eq!(fragment.status, StatusCode::OK);
    fragment.assert_contains(&[r#"<section id="live""#, "Waiting for the first event"]);
    assert!(!fragment.body.contains("<html"), "a fragment, not a page");
    let seen = seen_in(&page);
    assert_eq!(seen, seen_in(&fragment));
    let unchanged = browser
        .get(&format!(
            "/dashboard/categories/sale/events?range=today&seen={seen}"
        ))
        .await;
    assert_eq!(unchanged.status, StatusCode::NO_CONTENT);

    // The first event arrives: the fragment now brings the table.
    let id = send(
        &relay,
        &key,
        json!({"category": "sale", "description": "Hello from curl", "fields": {"amount": 4}}),
    )
    .await;
    let arrived = browser
        .get(&format!(
            "/dashboard/categories/sale/events?range=today&seen={seen}"
        ))
        .await;
    assert_eq!(arrived.status, StatusCode::OK);
    arrived.assert_contains(&[
        "<table",
        "Hello from curl",
        &format!("/dashboard/events/{id}"),
        "<dt>Sum of amount</dt><dd>4</dd>",
        r#"hx-trigger="every 3s""#,
    ]);
    assert!(!arrived.body.contains("Waiting for the first event"));
    assert_ne!(seen_in(&arrived), seen);
    relay.stop().await;
}

#[tokio::test]
async fn unknown_categories_are_not_found() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (_, other) = relay.create_account(&[]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    for path in [
        "/dashboard/categories/nope",
        "/dashboard/categories/nope/events",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        page.assert_contains(&["Not found"]);
    }
    // Another account's category is as unknown as a missing one.
    let mut stranger = Browser::signed_in(&relay, &other).await;
    let page = stranger.get("/dashboard/categories/sale").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn a_categorys_channels_are_chosen_on_its_page() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/categories/sale").await;
    page.assert_contains(&[
        r#"<form class="card routes" method="post" action="/dashboard/categories/sale/channels" aria-labelledby="routes-title">"#,
        r#"<input id="route-all" type="radio" name="route" value="all" checked>"#,
        "Every channel you have on (now: Discord, Telegram)",
        r#"<input id="channel-discord" type="checkbox" name="channel" value="discord">"#,
        r#"<input id="channel-webhook" type="checkbox" name="channel" value="webhook">"#,
    ]);

    let done = browser
        .post(
            "/dashboard/categories/sale/channels",
            &[("route", "some"), ("channel", "discord")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/dashboard/categories/sale?done=channels")
    );
    let (_, category) = relay
        .call(
            reqwest::Method::GET,
            "/api/v1/categories/sale",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(category["channels"], json!(["discord"]));
    let page = browser
        .get("/dashboard/categories/sale?done=channels")
        .await;
    page.assert_contains(&[
        "The category's channels are saved.",
        r#"<input id="route-some" type="radio" name="route" value="some" checked>"#,
        r#"<input id="channel-discord" type="checkbox" name="channel" value="discord" checked>"#,
    ]);

    // None ticked: said so, nothing changed.
    let refused = browser
        .post("/dashboard/categories/sale/channels", &[("route", "some")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    refused.assert_contains(&["Tick at least one channel, or choose every channel you have on."]);
    let done = browser
        .post("/dashboard/categories/sale/channels", &[("route", "all")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let (_, category) = relay
        .call(
            reqwest::Method::GET,
            "/api/v1/categories/sale",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(category["channels"], Value::Null);
    relay.stop().await;
}

#[tokio::test]
async fn the_table_leads_with_time_description_and_delivery_and_caps_field_columns() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let long = "x".repeat(4096);
    let event = send(
        &relay,
        &key,
        json!({"category": "sale", "description": long,
               "fields": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": "six"}}),
    )
    .await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/categories/sale").await;
    let headers: Vec<&str> = page
        .body
        .match_indices(r#"<th scope="col">"#)
        .map(|(at, tag)| {
            let rest = &page.body[at + tag.len()..];
            &rest[..rest.find("</th>").expect("end")]
        })
        .collect();
    assert_eq!(
        headers,
        [
            "Time",
            "Description",
            "Delivery",
            "a",
            "b",
            "c",
            "d",
            "Other fields"
        ]
    );
    // The long description is cut on screen, whole in its title; the rest of the fields are
    // behind the event's link.
    page.assert_contains(&[
        &format!(r#"<span class="cut" title="{long}">{long}</span>"#),
        &format!("<a class=\"more\" href=\"/dashboard/events/{event}\">+2\u{a0}more</a>"),
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn the_sums_shown_are_the_first_few_or_those_chosen() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    send(
        &relay,
        &key,
        json!({"category": "sale", "description": "Many numbers",
               "fields": {"total": 5, "net": 4, "tax": 1, "items": 3, "weight": 2.5, "plan": "pro"}}),
    )
    .await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    // The first three number fields in the table's order (the event's own); the others can be
    // ticked.
    let page = browser.get("/dashboard/categories/sale").await;
    page.assert_contains(&[
        "<dt>Sum of total</dt>",
        "<dt>Sum of net</dt>",
        "<dt>Sum of tax</dt>",
        "Choose the sums (5 number fields)",
        r#"<input type="checkbox" name="sum" value="total" checked>"#,
        r#"<input type="checkbox" name="sum" value="weight">"#,
    ]);
    assert!(!page.body.contains("Sum of items") && !page.body.contains("Sum of weight"));
    assert!(!page.body.contains("Sum of plan"));

    let chosen = browser
        .get("/dashboard/categories/sale?range=today&pick=1&sum=weight&sum=items")
        .await;
    chosen.assert_contains(&[
        "<dt>Sum of weight</dt><dd>2.5</dd>",
        "<dt>Sum of items</dt><dd>3</dd>",
        // The choice stays in the page's links and its live refresh.
        r#"href="/dashboard/categories/sale?range=week&amp;pick=1&amp;sum=weight&amp;sum=items""#,
        "/dashboard/categories/sale/events?range=today&amp;pick=1&amp;sum=weight&amp;sum=items&amp;seen=",
    ]);
    assert!(!chosen.body.contains("Sum of total"));
    let none = browser
        .get("/dashboard/categories/sale?range=today&pick=1")
        .await;
    none.assert_contains(&["<dt>Events</dt><dd>1</dd>"]);
    assert!(!none.body.contains("<dt>Sum of"));
    relay.stop().await;
}
