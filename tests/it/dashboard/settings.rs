//! Account settings: validated as the API validates, channel switches, Telegram's link, and the
//! test notification.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Browser;
use crate::helpers::*;

async fn account(relay: &Relay, key: &str) -> Value {
    let (status, account) = relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    account
}

#[tokio::test]
async fn settings_show_every_field_and_save_valid_changes_only() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;

    let mut away = Browser::new(&relay);
    for (path, post) in [
        ("/dashboard/settings", false),
        ("/dashboard/settings", true),
        ("/dashboard/settings/test", true),
    ] {
        let page = if post {
            away.post(path, &[]).await
        } else {
            away.get(path).await
        };
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/dashboard/login"));
    }

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/settings").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        r#"<label for="name">Name</label>"#,
        r#"value="Test User""#,
        r#"<label for="email">E-mail</label>"#,
        // Provider fields come from the registry, labelled and explained by their schemas, with
        // an example rather than a pattern.
        r#"<label for="discordId">Discord user ID</label>"#,
        &format!(r#"name="discordId" value="{DISCORD_ID}""#),
        "open User Settings → Advanced and turn on Developer Mode",
        "For example <code>123456789012345678</code>. Leave it empty to remove it.",
        r#"<label for="telegramUsername">Telegram username</label>"#,
        r#"name="telegramUsername" value="test_user""#,
        r#"<legend>Discord</legend>"#,
        r#"<legend>Telegram</legend>"#,
        r#"name="enabled" value="discord" checked"#,
        r#"name="enabled" value="telegram" checked"#,
        "Send notifications through Telegram",
        // Telegram's state in one line, with its one action.
        r#"<span class="badge waiting">Not connected</span> Open the link from your Telegram account and press Start. <a class="button" href="https://t.me/PingPilotTestBot?start="#,
        "Connect Telegram",
        "Each link works once: after use, a new one is shown here.",
        "Send test notification",
    ]);
    // (The banner above may quote the provider's own reason.)
    let form = &page.body[page.body.find("<h1>Settings</h1>").expect("heading")..];
    for api_speak in [
        "^[0-9]",
        "channels.linkUrl",
        "Telegram chat not linked yet",
        "Linked",
    ] {
        assert!(!form.contains(api_speak), "{api_speak}:\n{form}");
    }

    let forged = browser
        .post(
            "/dashboard/settings",
            &[("csrf", "wrong"), ("name", "Forged")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(account(&relay, &key).await["name"], "Test User");

    // The API's rules, every violation at once, and nothing saved.
    let invalid = browser
        .post(
            "/dashboard/settings",
            &[
                ("name", "Ann"),
                ("email", "not-an-address"),
                ("discordId", "12345"),
                ("telegramUsername", "test_user"),
            ],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    invalid.assert_contains(&[
        "The settings were not saved. Please check:",
        r##"<li><a href="#discordId">Discord user ID</a>: This must be a Discord user ID: 17 to 20 digits.</li>"##,
        r##"<li><a href="#email">E-mail</a>: This must be an e-mail address or empty.</li>"##,
        r#"<p class="field-error" id="discordId-error">This must be a Discord user ID: 17 to 20 digits.</p>"#,
        r#"value="12345""#,
        r#"value="Ann""#,
        r#"aria-invalid="true""#,
    ]);
    let unchanged = account(&relay, &key).await;
    assert_eq!(unchanged["discordId"], DISCORD_ID);
    assert_eq!(unchanged["name"], "Test User");

    let saved = browser
        .post(
            "/dashboard/settings",
            &[
                ("name", "Ann"),
                ("email", "ann@example.com"),
                ("discordId", "234567890123456789"),
                ("telegramUsername", "@new_user"),
                ("channel", "discord"),
                ("channel", "telegram"),
                ("enabled", "discord"),
                ("enabled", "telegram"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        saved.location.as_deref(),
        Some("/dashboard/settings?done=saved")
    );
    let page = browser.get("/dashboard/settings?done=saved").await;
    page.assert_contains(&[
        "Your settings are saved.",
        r#"value="Ann""#,
        r#"value="ann@example.com""#,
        r#"value="234567890123456789""#,
        r#"name="telegramUsername" value="new_user""#,
    ]);
    let changed = account(&relay, &key).await;
    assert_eq!(changed["name"], "Ann");
    assert_eq!(changed["email"], "ann@example.com");
    assert_eq!(changed["discordId"], "234567890123456789");
    assert_eq!(changed["telegramUsername"], "new_user");

    // Empty text clears a value.
    let cleared = browser
        .post("/dashboard/settings", &[("email", ""), ("discordId", "")])
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER, "{}", cleared.body);
    let changed = account(&relay, &key).await;
    assert_eq!(changed["email"], Value::Null);
    assert_eq!(changed["discordId"], Value::Null);
    let page = browser.get("/dashboard/settings").await;
    page.assert_contains(&[
        r#"<span class="badge waiting">Not ready</span> Enter your Discord user ID above and save."#,
    ]);
    relay.stop().await;
}

#[tokio::test]
async fn channel_switches_turn_channels_off_and_on() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    browser.get("/dashboard/settings").await;

    // An unticked box is absent from the post: the hidden `channel` field still switches it off.
    let off = browser
        .post(
            "/dashboard/settings",
            &[
                ("channel", "discord"),
                ("channel", "telegram"),
                ("enabled", "discord"),
            ],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    let channels = account(&relay, &key).await["channels"].clone();
    assert_eq!(channels[0]["enabled"], true);
    assert_eq!(channels[1]["enabled"], false);
    let page = browser.get("/dashboard/settings").await;
    page.assert_contains(&[
        r#"name="enabled" value="discord" checked"#,
        r#"<span class="badge pending">Off</span> Events are not sent through Telegram."#,
    ]);
    assert!(
        !page
            .body
            .contains(r#"name="enabled" value="telegram" checked"#)
    );

    let on = browser
        .post(
            "/dashboard/settings",
            &[
                ("channel", "discord"),
                ("channel", "telegram"),
                ("enabled", "discord"),
                ("enabled", "telegram"),
            ],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.body);
    let channels = account(&relay, &key).await["channels"].clone();
    assert_eq!(channels[1]["enabled"], true);

    let unknown = browser
        .post("/dashboard/settings", &[("channel", "carrier-pigeon")])
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    unknown.assert_contains(&["carrier-pigeon</a>: No such provider."]);
    relay.stop().await;
}

/// The test notifications Telegram's stand-in received (the bot's own messages left out).
async fn test_messages(relay: &Relay) -> Vec<Value> {
    bodies_at(
        &relay.telegram,
        &format!("/bot{TELEGRAM_TOKEN}/sendMessage"),
    )
    .await
    .into_iter()
    .filter(|body| {
        body["text"]
            .as_str()
            .is_some_and(|text| text.contains("Test notification from the PingPilot dashboard"))
    })
    .collect()
}

#[tokio::test]
async fn a_test_notification_shows_what_each_channel_answered() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    browser.get("/dashboard/settings").await;
    let messages = format!("/channels/{DM_CHANNEL}/messages");

    let forged = browser
        .post("/dashboard/settings/test", &[("csrf", "wrong")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(bodies_at(&relay.discord, &messages).await.is_empty());

    // Telegram is not linked yet: it says why it waits; Discord delivers.
    let sent = browser.post("/dashboard/settings/test", &[]).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
    sent.assert_contains(&[
        "Test notification sent",
        r#"<strong>Discord: </strong><span class="badge delivered">Delivered</span> (HTTP 200)"#,
        r#"<strong>Telegram: </strong><span class="badge waiting">Waiting</span> Telegram chat not linked yet"#,
    ]);
    let embeds = bodies_at(&relay.discord, &messages).await;
    assert_eq!(embeds.len(), 1);
    assert_eq!(embeds[0]["embeds"][0]["title"], "🔔 Test");
    assert_eq!(
        embeds[0]["embeds"][0]["description"],
        "Test notification from the PingPilot dashboard"
    );

    relay.link_telegram(&key).await;
    // Linked, with the link that replaced the used one: it moves the chat elsewhere.
    let token = relay.telegram_link_token(&key).await;
    browser.get("/dashboard/settings").await.assert_contains(&[
        r#"<span class="badge delivered">Connected</span> Notifications go to your chat."#,
        &format!(r#"href="https://t.me/PingPilotTestBot?start={token}""#),
        ">Move them to another chat</a>",
        "Each link works once: after use, a new one is shown here.",
    ]);
    // The bot's link confirmation just used the chat's budget (one message a second): the
    // channel answers Throttled until it frees, and that is what the page shows meanwhile.
    let telegram_delivered =
        r#"<strong>Telegram: </strong><span class="badge delivered">Delivered</span> (HTTP 200)"#;
    let mut tries = 0;
    let sent = loop {
        tries += 1;
        let sent = browser.post("/dashboard/settings/test", &[]).await;
        assert_eq!(sent.status, StatusCode::OK);
        if sent.body.contains(telegram_delivered) || tries == 20 {
            break sent;
        }
        sent.assert_contains(&[r#"<span class="badge waiting">Throttled</span>"#]);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    sent.assert_contains(&[telegram_delivered]);
    let tests = test_messages(&relay).await;
    assert_eq!(tests.len(), 1, "{tests:?}");
    assert_eq!(tests[0]["chat_id"], TELEGRAM_CHAT);
    assert_eq!(bodies_at(&relay.discord, &messages).await.len(), 1 + tries);

    // Not an event: nothing stored, nothing counted.
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 0, "{quota}");
    let (_, events) = relay
        .call(Method::GET, "/api/v1/events", Some(&key), None)
        .await;
    assert_eq!(events["events"], serde_json::json!([]));

    // A switched-off channel is not tried.
    browser
        .post(
            "/dashboard/settings",
            &[
                ("channel", "discord"),
                ("channel", "telegram"),
                ("enabled", "discord"),
            ],
        )
        .await;
    let sent = browser.post("/dashboard/settings/test", &[]).await;
    sent.assert_contains(&[
        r#"<strong>Telegram: </strong><span class="badge pending">Off</span> Switched off: not sent."#,
    ]);
    assert_eq!(bodies_at(&relay.discord, &messages).await.len(), 2 + tries);
    assert_eq!(test_messages(&relay).await.len(), 1);
    relay.stop().await;
}

#[tokio::test]
async fn a_channels_signing_secret_is_shown_and_replaced_from_settings() {
    let relay =
        Relay::start_with("[providers.webhook]\nallow_private_targets = true\n", true).await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/settings").await;
    assert!(!page.body.contains("signing secret"), "off: no secret");
    let (status, body) = relay
        .patch_account(
            &key,
            serde_json::json!({"webhookUrl": "http://127.0.0.1:9/hook", "channels": {"webhook": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let secret = body["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["provider"] == "webhook"))
        .and_then(|c| c["signingSecret"].as_str())
        .expect("secret")
        .to_string();
    let page = browser.get("/dashboard/settings").await;
    page.assert_contains(&[
        "Webhook signing secret",
        &format!(r#"<code class="secret">{secret}</code>"#),
        r#"<form method="post" action="/dashboard/settings/channels/webhook/secret">"#,
    ]);
    let done = browser
        .post("/dashboard/settings/channels/webhook/secret", &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/dashboard/settings?done=secret")
    );
    let after = account(&relay, &key).await;
    let replaced = after["channels"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["provider"] == "webhook"))
        .and_then(|c| c["signingSecret"].as_str())
        .expect("secret");
    assert_ne!(replaced, secret);
    let page = browser.get("/dashboard/settings?done=secret").await;
    page.assert_contains(&["A new signing secret is in use", replaced]);
    relay.stop().await;
}
