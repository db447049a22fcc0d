//! The event page: fields, deliveries with their attempts, and retrying failed deliveries.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use super::Browser;
use crate::helpers::*;

#[tokio::test]
async fn an_event_shows_its_fields_deliveries_and_attempts() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let page_path = format!("/dashboard/events/{event_id}");

    let mut away = Browser::new(&relay);
    let refused = away.get(&page_path).await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    assert_eq!(refused.location.as_deref(), Some("/dashboard/login"));

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        "<h1>sale event</h1>",
        r#"href="/dashboard/categories/sale""#,
        "New purchase completed",
        &event_id,
        "<dt>plan</dt><dd>pro</dd>",
        "<dt>amount</dt><dd>99.99</dd>",
        "<dt>recurring</dt><dd>true</dd>",
        "Discord",
        "Telegram",
        r#"<span class="badge delivered">Delivered</span>"#,
        "Delivered at",
        "Provider answer",
        "<td>200</td>",
        "<td>Accepted</td>",
        " ms</td>",
    ]);
    let delivered_badges = page.body.matches("badge delivered").count();
    assert_eq!(delivered_badges, 3, "the event and both deliveries");
    assert!(!page.body.contains("Retry failed deliveries"));
    assert!(
        !page.body.contains("hx-trigger"),
        "a final event is not refreshed"
    );

    let missing = browser.get("/dashboard/events/evt_nothing_here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    missing.assert_contains(&["Not found"]);

    // Another account's event is not there for this one.
    let other_key = relay.ready_account().await;
    let mut other = Browser::signed_in(&relay, &other_key).await;
    let foreign = other.get(&page_path).await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(!foreign.body.contains("New purchase completed"));
    other.get("/dashboard/usage").await;
    let foreign_retry = other.post(&format!("{page_path}/retry"), &[]).await;
    assert_eq!(foreign_retry.status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn a_waiting_delivery_says_why_and_the_page_keeps_itself_fresh() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let mut page = browser.get(&format!("/dashboard/events/{event_id}")).await;
    // Telegram waits for its chat link at once; Discord is delivered meanwhile.
    for _ in 0..100 {
        if page.body.contains("Waiting because") && page.body.contains("<td>200</td>") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        page = browser.get(&format!("/dashboard/events/{event_id}")).await;
    }
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains(&[
        r#"<span class="badge waiting">Waiting</span>"#,
        "Waiting because",
        "Telegram chat not linked yet",
        r#"<span class="badge pending">Pending</span>"#,
        r#"hx-trigger="every 3s""#,
        r##"hx-select="#deliveries""##,
        "Next attempt",
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_from_the_page() {
    let relay = Relay::start_with("", false).await;
    // Discord refuses the first DM for good, then accepts: only a retry gets it through.
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(discord_dm_refused())
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&relay.discord)
        .await;
    mount_discord_ok(&relay.discord).await;
    let key = relay.discord_only_account().await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "FAILED", "{event}");
    let page_path = format!("/dashboard/events/{event_id}");
    let retry_path = format!("{page_path}/retry");

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get(&page_path).await;
    assert_eq!(page.status, StatusCode::OK);
    page.assert_contains(&[
        r#"<span class="badge failed">Failed</span>"#,
        "Last error",
        "50007",
        "<dt>What to do</dt>",
        "invite the bot to a server you are in",
        "<td>403</td>",
        &format!(r#"action="{retry_path}""#),
        "Retry failed deliveries",
    ]);

    let forged = browser.post(&retry_path, &[("csrf", "wrong")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let (_, unchanged) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(unchanged["deliveryStatus"], "FAILED");

    let retried = browser.post(&retry_path, &[]).await;
    assert_eq!(retried.status, StatusCode::SEE_OTHER, "{}", retried.body);
    assert_eq!(
        retried.location.as_deref(),
        Some(format!("{page_path}?done=retried").as_str())
    );
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let statuses: Vec<&Value> = event["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["httpStatus"])
        .collect();
    assert_eq!(statuses, [&json!(403), &json!(200)]);

    let page = browser.get(&format!("{page_path}?done=retried")).await;
    page.assert_contains(&[
        "The failed deliveries are queued again",
        "<td>403</td>",
        "<td>200</td>",
        r#"<span class="badge delivered">Delivered</span>"#,
    ]);
    assert!(!page.body.contains("Retry failed deliveries"));
    // Delivered now: the earlier error stays in the attempts table only.
    assert!(!page.body.contains("Last error"));
    assert!(!page.body.contains("What to do"));

    // A second retry finds nothing failed.
    let again = browser.post(&retry_path, &[]).await;
    assert_eq!(
        again.location.as_deref(),
        Some(format!("{page_path}?done=nothing").as_str())
    );
    let page = browser
        .get(again.location.as_deref().expect("location"))
        .await;
    page.assert_contains(&["Nothing to retry"]);
    relay.stop().await;
}
