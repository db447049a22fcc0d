//! The Activity page and what it feeds: the account's API requests, refused ones included,
//! filtered by key and status; the banner and the category page saying that events are
//! refused or slowed down.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Browser, Page};
use crate::helpers::*;

/// The page at `path` once it contains `text`: requests are written about once a second.
async fn once_shown(browser: &mut Browser<'_>, path: &str, text: &str) -> Page {
    for _ in 0..50 {
        let page = browser.get(path).await;
        if page.body.contains(text) {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = browser.get(path).await;
    panic!("{text:?} never showed on {path}:\n{}", page.body);
}

fn prefix(key: &str) -> &str {
    &key[..10]
}

#[tokio::test]
async fn requests_are_listed_with_their_refusals_and_filtered_by_key_and_status() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let (status, created) = relay
        .call(
            Method::POST,
            "/api/v1/account/api-keys",
            Some(&key),
            Some(json!({"name": "reports job"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let second = created["apiKey"].as_str().expect("key").to_string();

    accepted_id(&relay, &key, sale_event()).await;
    let (status, _) = relay
        .send_event(&key, json!({"category": "nope", "description": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = relay
        .call(Method::GET, "/api/v1/categories", Some(&second), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // A key that names no account is nobody's activity.
    let (status, _) = relay.send_event("pk_unknown", sale_event()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = once_shown(
        &mut browser,
        "/dashboard/activity",
        "GET /api/v1/categories",
    )
    .await;
    page.assert_contains(&[
        r#"<a href="/dashboard/activity" aria-current="page">Activity</a>"#,
        "<code>POST /api/v1/event</code>",
        r#"<span class="muted cut" title="sale">Category sale</span>"#,
        r#"<span class="badge delivered">200</span>"#,
        r#"<span class="badge failed">404</span>"#,
        "You dont have a category named &quot;nope&quot;",
        r#"<br><span class="muted">127.0.0.1</span>"#,
        &format!("<code>{}…</code>", prefix(&key)),
        // A named key is shown with its name.
        &format!(
            r#"<code>{}…</code> <span class="cut" title="reports job">reports job</span>"#,
            prefix(&second)
        ),
        &format!(
            r#"<option value="{0}">reports job ({0}…)</option>"#,
            prefix(&second)
        ),
        // Besides the setup's three: the category, the account, the second key.
        "Rows 1–6 of 6, newest first",
    ]);
    assert!(!page.body.contains("pk_unknown"), "{}", page.body);
    assert!(
        !page
            .body
            .contains(r#"<span class="badge failed">401</span>"#),
        "{}",
        page.body
    );

    let refused = browser.get("/dashboard/activity?status=refused").await;
    refused.assert_contains(&[
        r#"<option value="refused" selected>"#,
        "Rows 1–1 of 1, newest first",
        "Category nope",
    ]);
    assert!(!refused.body.contains("GET /api/v1/categories"));
    let exact = browser.get("/dashboard/activity?status=200").await;
    exact.assert_contains(&["Rows 1–3 of 3, newest first"]);
    let by_key = browser
        .get(&format!("/dashboard/activity?key={}", prefix(&second)))
        .await;
    by_key.assert_contains(&[
        &format!(r#"<option value="{}" selected>"#, prefix(&second)),
        "Rows 1–1 of 1, newest first",
        "GET /api/v1/categories",
    ]);
    let none = browser
        .get(&format!(
            "/dashboard/activity?key={}&status=404",
            prefix(&second)
        ))
        .await;
    none.assert_contains(&["No requests match these filters."]);
    relay.stop().await;
}

#[tokio::test]
async fn repeated_requests_are_one_row_with_their_count() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    // Requests of one kind within one minute are one row: send them early in a minute.
    let second_of_minute = chrono::Utc::now().timestamp() % 60;
    if second_of_minute > 50 {
        tokio::time::sleep(Duration::from_secs((61 - second_of_minute) as u64)).await;
    }
    for _ in 0..12 {
        let (status, _) = relay
            .call(Method::GET, "/api/v1/quota", Some(&key), None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let page = once_shown(&mut browser, "/dashboard/activity", "GET /api/v1/quota").await;
    page.assert_contains(&[r#"<td class="number">12</td>"#]);
    relay.stop().await;
}

#[tokio::test]
async fn a_refused_category_is_said_on_its_page_and_in_the_banner_until_events_get_through() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    // The category goes to Telegram only, which is off: intake refuses its events.
    let (status, body) = relay.route_sale(&key, json!(["telegram"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, answer) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = answer["message"].as_str().expect("message").to_string();

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = once_shown(
        &mut browser,
        "/dashboard/categories/sale",
        "Events sent to this category are being refused.",
    )
    .await;
    page.assert_contains(&[
        &format!("The relay answers 403 \u{201c}{message}\u{201d}: once in the last 24 hours"),
        r#"<a href="/dashboard/activity?status=refused">See activity</a>"#,
        "No event has got through",
    ]);
    let overview = browser.get("/dashboard").await;
    overview.assert_contains(&[&format!(
        "Events sent to \u{201c}sale\u{201d} are refused with 403 \u{201c}{message}\u{201d}, \
         once in the last 24 hours."
    )]);

    // Routed to Discord again, the next event gets through, and neither says it any more.
    let (status, body) = relay.route_sale(&key, json!(["discord"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    accepted_id(&relay, &key, sale_event()).await;
    let mut cleared = false;
    for _ in 0..50 {
        let page = browser.get("/dashboard/categories/sale").await;
        if !page.body.contains("being refused") {
            cleared = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        cleared,
        "the refusal was still shown after an event got through"
    );
    let overview = browser.get("/dashboard").await;
    assert!(
        !overview.body.contains("are refused with"),
        "{}",
        overview.body
    );
    relay.stop().await;
}

#[tokio::test]
async fn events_slowed_down_by_the_plan_rate_are_in_the_banner() {
    let relay = Relay::start_with(
        "[plans.trickle]\nevents_per_month = 1000\nevents_per_second = 0.5\nburst = 2\n",
        true,
    )
    .await;
    let (_, key) = relay
        .create_account(&["--plan", "trickle", "--discord-id", DISCORD_ID])
        .await;
    let (status, body) = relay
        .patch_account(&key, json!({"channels": {"telegram": false}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut slowed = 0;
    for _ in 0..5 {
        let (status, _) = relay.send_event(&key, sale_event()).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            slowed += 1;
        }
    }
    assert!(slowed >= 2, "{slowed}");
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = once_shown(&mut browser, "/dashboard/usage", "slowed down (429)").await;
    page.assert_contains(&[
        &format!(
            "{slowed} events were slowed down (429) in the last hour: your app sends faster \
             than the plan allows."
        ),
        r#"<a href="/dashboard/activity?status=429">See activity</a>"#,
    ]);
    // Slowed down is not refused: the category page says nothing of it.
    let category = browser.get("/dashboard/categories/sale").await;
    assert!(
        !category.body.contains("being refused"),
        "{}",
        category.body
    );
    let listed = browser.get("/dashboard/activity?status=429").await;
    listed.assert_contains(&[
        r#"<option value="429" selected>"#,
        r#"<span class="badge retrying">429</span>"#,
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn an_operator_can_turn_the_record_off() {
    let relay = Relay::start_with("[retention]\nactivity = \"0\"\n", true).await;
    let key = relay.discord_only_account().await;
    accepted_id(&relay, &key, sale_event()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/activity").await;
    page.assert_contains(&["operator turned this record off", "No requests yet."]);
    let rows = database_query(
        relay.database_url(),
        "SELECT CAST(COUNT(*) AS TEXT) FROM api_activity",
    )
    .await;
    assert_eq!(rows.as_deref(), Some("0"));
    relay.stop().await;
}

/// Behind a trusted reverse proxy the client is the one the proxy names; anywhere else the
/// header is the client's own word and is ignored.
#[tokio::test]
async fn the_client_address_comes_from_a_trusted_proxy_only() {
    for (config, shown) in [
        (
            "[server]\ntrusted_proxies = [\"127.0.0.1\"]\n",
            "198.51.100.7",
        ),
        ("", "127.0.0.1"),
    ] {
        let relay = Relay::start_with(config, true).await;
        let key = relay.discord_only_account().await;
        let response = relay
            .request(Method::GET, "/api/v1/quota")
            .header("Authorization", format!("Bearer {key}"))
            .header("X-Forwarded-For", "6.6.6.6, 198.51.100.7")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let mut browser = Browser::signed_in(&relay, &key).await;
        let page = once_shown(&mut browser, "/dashboard/activity", "GET /api/v1/quota").await;
        let row = page
            .body
            .split("<tr>")
            .find(|row| row.contains("GET /api/v1/quota"))
            .expect("the row");
        assert!(
            row.contains(&format!(r#"<span class="muted">{shown}</span>"#)),
            "{config:?}: {row}"
        );
        assert!(!page.body.contains("6.6.6.6"), "{}", page.body);
        relay.stop().await;
    }
}
