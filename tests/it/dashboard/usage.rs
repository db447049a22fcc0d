//! Usage: the same numbers as `GET /api/v1/quota`, as bars against the plan's limits, and this
//! month's events per day and per category.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::Browser;
use crate::helpers::Relay;

#[tokio::test]
async fn usage_shows_events_and_categories_against_the_plan() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;

    let mut away = Browser::new(&relay);
    let refused = away.get("/dashboard/usage").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(refused.location.as_deref(), Some("/dashboard/login"));

    for n in 0..3 {
        let (status, body) = relay
            .send_event(&key, json!({"category": "sale", "fields": {"n": n}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 3, "{quota}");
    let reset_day = &quota["resetDate"].as_str().expect("resetDate")[..10];

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        "<h1>Usage</h1>",
        r#"Plan: <strong class="plan">free</strong>"#,
        "<strong>3</strong> of 100 events used",
        r#"<rect width="3" height="1">"#,
        "<strong>1</strong> of 3 categories used",
        r#"<rect width="33" height="1">"#,
        &format!("{reset_day} 00:00 UTC"),
        r#"aria-current="page">Usage</a>"#,
        // This month per day and per category.
        "<h2>This month</h2>",
        r#"role="img" aria-label="Events per day, "#,
        "(UTC): 3 in total; busiest ",
        r#"<td><a href="/dashboard/categories/sale?range=month">sale</a></td><td class="number">3</td><td class="number">100 %</td>"#,
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn unlimited_plans_have_no_bars() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&["--plan", "unlimited"]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/usage").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        r#"Plan: <strong class="plan">unlimited</strong>"#,
        "<strong>0</strong> events · No limit",
        "<strong>0</strong> categories · No limit",
        "No events this month yet.",
    ]);
    assert!(!page.body.contains(r#"class="meter""#));
    relay.stop().await;
}
