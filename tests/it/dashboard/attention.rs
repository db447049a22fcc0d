//! The banner above every page: what needs the owner's action, each with the page that fixes
//! it (events refused, the month's quota, failed deliveries, channels that hold deliveries).

use reqwest::StatusCode;
use serde_json::json;

use super::{Browser, Page};
use crate::helpers::*;

fn banner(page: &Page) -> Option<&str> {
    let start = page.body.find("<section class=\"attention\"")?;
    let end = page.body[start..].find("</section>")? + start;
    Some(&page.body[start..end])
}

#[tokio::test]
async fn a_healthy_account_has_no_banner_and_every_page_has_an_icon() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    for path in [
        "/dashboard",
        "/dashboard/usage",
        "/dashboard/keys",
        "/dashboard/settings",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_eq!(banner(&page), None, "{path}");
        page.assert_contains(&[
            r#"rel="icon" type="image/svg+xml" href="/dashboard/assets/favicon.svg""#,
        ]);
    }
    let icon = browser.get("/dashboard/assets/favicon.svg").await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers["content-type"], "image/svg+xml");
    assert!(icon.body.starts_with("<svg"));
    relay.stop().await;
}

#[tokio::test]
async fn refused_events_and_held_channels_are_named_with_the_fix() {
    let relay = Relay::start().await;
    // Telegram is on but has no username: intake refuses every event.
    let (_, key) = relay.create_account(&["--discord-id", DISCORD_ID]).await;
    let (status, answer) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let refusal = answer["message"].as_str().expect("message").to_string();
    let mut browser = Browser::signed_in(&relay, &key).await;
    for path in ["/dashboard", "/dashboard/usage", "/dashboard/settings"] {
        let page = browser.get(path).await;
        let shown = banner(&page).unwrap_or_else(|| panic!("no banner on {path}"));
        assert!(shown.contains("class=\"blocking\""), "{shown}");
        assert!(
            shown.contains(&format!(
                "Every event is refused with: \u{201c}{refusal}\u{201d}"
            )),
            "{shown}"
        );
        assert!(
            shown.contains(r#"<a href="/dashboard/settings">Fix it in Settings</a>"#),
            "{shown}"
        );
    }
    // With a username, events go through; Telegram still holds its deliveries until linked.
    let (status, _) = relay
        .patch_account(&key, json!({"telegramUsername": "test_user"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let page = browser.get("/dashboard").await;
    let shown = banner(&page).expect("banner");
    assert!(!shown.contains("Every event is refused"), "{shown}");
    assert!(shown.contains("class=\"warning\""), "{shown}");
    assert!(
        shown.contains("Telegram notifications are held: "),
        "{shown}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_quota_warns_from_80_percent_and_says_when_it_is_used_up() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    for _ in 0..80 {
        accepted_id(&relay, &key, sale_event()).await;
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard").await;
    let shown = banner(&page).expect("banner");
    assert!(
        shown.contains("80 of this month's 100 events are used (80 %)."),
        "{shown}"
    );
    assert!(
        shown.contains(r#"<a href="/dashboard/usage">See usage</a>"#),
        "{shown}"
    );
    for _ in 0..20 {
        accepted_id(&relay, &key, sale_event()).await;
    }
    let page = browser.get("/dashboard/keys").await;
    let shown = banner(&page).expect("banner");
    assert!(shown.contains("class=\"blocking\""), "{shown}");
    assert!(
        shown.contains("100 events are used up: new events are refused until 1 "),
        "{shown}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn failed_deliveries_of_the_last_day_are_counted() {
    let relay = Relay::with_discord_refusing().await;
    let key = relay.discord_only_account().await;
    for _ in 0..2 {
        let event_id = accepted_id(&relay, &key, sale_event()).await;
        let event = relay.wait_final(&key, &event_id).await;
        assert_eq!(event["deliveryStatus"], "FAILED");
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard").await;
    let shown = banner(&page).expect("banner");
    assert!(
        shown.contains("2 deliveries failed in the last 24 hours."),
        "{shown}"
    );
    // The category's card counts them too, with a link to its events.
    page.assert_contains(&[
        r#"<p class="failed"><a href="/dashboard/categories/sale">2 failed deliveries in 24 hours</a></p>"#,
    ]);
    relay.stop().await;
}
