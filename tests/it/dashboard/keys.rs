//! API keys: listed by name and prefix, created and shown once, renamed, revoked after a
//! confirmation.

use reqwest::{Method, StatusCode};

use super::Browser;
use crate::helpers::Relay;

/// The value of the read-only field holding a new key.
fn new_key_in(body: &str) -> String {
    let field = body.find(r#"id="new-key""#).expect("the new key's field");
    let marker = r#"value=""#;
    let start = field + body[field..].find(marker).expect("its value") + marker.len();
    let end = start + body[start..].find('"').expect("end of value");
    body[start..end].to_string()
}

async fn key_works(relay: &Relay, key: &str) -> StatusCode {
    relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await
        .0
}

pub(super) async fn key_id(relay: &Relay, key: &str, prefix: &str) -> String {
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(key), None)
        .await;
    keys.as_array()
        .expect("keys")
        .iter()
        .find(|k| k["prefix"] == prefix)
        .and_then(|k| k["id"].as_str())
        .expect("the key is listed")
        .to_string()
}

#[tokio::test]
async fn a_new_key_is_shown_once_then_listed_by_its_prefix() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    let mut away = Browser::new(&relay);
    for page in [
        away.get("/dashboard/keys").await,
        away.post("/dashboard/keys", &[]).await,
    ] {
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location.as_deref(), Some("/dashboard/login"));
    }

    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard/keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        &format!("<code>{}…</code>", &key[..10]),
        "Last used",
        "Create a key",
        "Revoking a key also ends every dashboard session signed in with it.",
    ]);
    assert!(!page.body.contains(&key), "only the prefix is shown");

    let forged = browser.post("/dashboard/keys", &[("csrf", "wrong")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    let created = browser.post("/dashboard/keys", &[]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let new_key = new_key_in(&created.body);
    assert!(
        new_key.starts_with("pk_") && new_key.len() >= 35,
        "{new_key}"
    );
    created.assert_contains(&[
        "shown only this once",
        r#"<label for="new-key">New API key</label>"#,
        "readonly",
        r#"<button id="copy-key" type="button" hidden>Copy</button>"#,
        r#"<script src="/dashboard/assets/copy-key.js"></script>"#,
    ]);
    assert!(!created.body.contains("<script>"), "no inline script");
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(keys.as_array().map(Vec::len), Some(2), "{keys}");

    let list = browser.get("/dashboard/keys").await;
    assert!(!list.body.contains(&new_key), "the key is shown once");
    list.assert_contains(&[
        &format!("<code>{}…</code>", &new_key[..10]),
        r#"<span class="muted">Never</span>"#,
    ]);

    assert_eq!(key_works(&relay, &new_key).await, StatusCode::OK);
    let list = browser.get("/dashboard/keys").await;
    assert!(!list.body.contains("Never"), "both keys are used now");
    relay.stop().await;
}

#[tokio::test]
async fn revoking_asks_first_then_the_key_stops_working() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    browser.get("/dashboard/keys").await;
    let created = browser.post("/dashboard/keys", &[]).await;
    let new_key = new_key_in(&created.body);
    let id = key_id(&relay, &key, &new_key[..10]).await;
    let confirm_path = format!("/dashboard/keys/{id}/revoke");

    let list = browser.get("/dashboard/keys").await;
    list.assert_contains(&[&format!(r#"href="{confirm_path}""#)]);

    let confirm = browser.get(&confirm_path).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    confirm.assert_contains(&[
        &format!("Revoke key {}…", &new_key[..10]),
        &format!(r#"action="{confirm_path}""#),
        "Revoke the key",
        "Cancel",
    ]);
    assert_eq!(key_works(&relay, &new_key).await, StatusCode::OK);

    let forged = browser.post(&confirm_path, &[("csrf", "wrong")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(key_works(&relay, &new_key).await, StatusCode::OK);

    let revoked = browser.post(&confirm_path, &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(
        revoked.location.as_deref(),
        Some("/dashboard/keys?done=revoked")
    );
    assert_eq!(key_works(&relay, &new_key).await, StatusCode::UNAUTHORIZED);
    let (status, body) = relay
        .send_event(
            &new_key,
            serde_json::json!({"category": "sale", "description": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let list = browser.get("/dashboard/keys?done=revoked").await;
    list.assert_contains(&["The key is revoked"]);
    assert!(!list.body.contains(&new_key[..10]));

    // Gone, or never this account's: not found.
    assert_eq!(
        browser.get(&confirm_path).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        browser.post(&confirm_path, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let (_, other_key) = relay.create_account(&[]).await;
    let other_id = key_id(&relay, &other_key, &other_key[..10]).await;
    let foreign = format!("/dashboard/keys/{other_id}/revoke");
    assert_eq!(browser.get(&foreign).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        browser.post(&foreign, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(key_works(&relay, &other_key).await, StatusCode::OK);

    // Revoking the key this session signed in with ends the session.
    let own_id = key_id(&relay, &key, &key[..10]).await;
    let own = browser
        .post(&format!("/dashboard/keys/{own_id}/revoke"), &[])
        .await;
    assert_eq!(own.status, StatusCode::SEE_OTHER);
    assert_eq!(
        own.location.as_deref(),
        Some("/dashboard/login?done=key-revoked")
    );
    assert_eq!(key_works(&relay, &key).await, StatusCode::UNAUTHORIZED);
    let gone = browser.get("/dashboard/keys").await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    assert_eq!(gone.location.as_deref(), Some("/dashboard/login"));
    relay.stop().await;
}

#[tokio::test]
async fn keys_are_named_when_created_and_renamed_later() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let list = browser.get("/dashboard/keys").await;
    list.assert_contains(&[
        r#"<th scope="col">Key</th>"#,
        r#"<span class="muted">No name</span>"#,
        r#"<label for="key-name">Name (optional)</label>"#,
        r#"maxlength="64""#,
    ]);

    // A name the API would refuse is refused here too, next to its field, with what was typed.
    let too_long = "x".repeat(65);
    let refused = browser
        .post("/dashboard/keys", &[("name", too_long.as_str())])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    refused.assert_contains(&[
        r#"<p class="field-error" id="key-name-error">This name must be at most 64 characters long.</p>"#,
        r#"aria-invalid="true""#,
        &format!(r#"value="{too_long}""#),
    ]);
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(keys.as_array().map(Vec::len), Some(1), "nothing created");

    let created = browser
        .post("/dashboard/keys", &[("name", " <b>billing</b> ")])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let new_key = new_key_in(&created.body);
    created.assert_contains(&["Your new key “&lt;b&gt;billing&lt;/b&gt;” <code>"]);
    let id = key_id(&relay, &key, &new_key[..10]).await;
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(keys[1]["name"], "<b>billing</b>", "{keys}");

    let rename_path = format!("/dashboard/keys/{id}/name");
    let list = browser.get("/dashboard/keys").await;
    list.assert_contains(&[
        r#"<span class="key-name">&lt;b&gt;billing&lt;/b&gt;</span>"#,
        &format!(r#"href="{rename_path}""#),
        &format!(
            r#"aria-label="Rename key “&lt;b&gt;billing&lt;/b&gt;” ({}…)""#,
            &new_key[..10]
        ),
    ]);
    let form = browser.get(&rename_path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    form.assert_contains(&[
        r#"value="&lt;b&gt;billing&lt;/b&gt;""#,
        "Save the name",
        "apps that use it keep working",
    ]);

    let forged = browser
        .post(&rename_path, &[("csrf", "wrong"), ("name", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let bad = browser.post(&rename_path, &[("name", "two\nlines")]).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    bad.assert_contains(&["This name must not contain control characters"]);

    let saved = browser
        .post(&rename_path, &[("name", "billing server")])
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        saved.location.as_deref(),
        Some("/dashboard/keys?done=renamed")
    );
    let list = browser.get("/dashboard/keys?done=renamed").await;
    list.assert_contains(&[
        "The key's name is saved.",
        r#"<span class="key-name">billing server</span>"#,
    ]);
    let confirm = browser.get(&format!("/dashboard/keys/{id}/revoke")).await;
    confirm.assert_contains(&[&format!(
        "Revoke key “billing server” ({}…)",
        &new_key[..10]
    )]);
    // Emptying the field takes the name away; the key keeps working.
    browser.post(&rename_path, &[("name", "")]).await;
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(keys[1]["name"], serde_json::Value::Null, "{keys}");
    assert_eq!(key_works(&relay, &new_key).await, StatusCode::OK);

    // Another account's key: not found.
    let (_, other_key) = relay.create_account(&[]).await;
    let other_id = key_id(&relay, &other_key, &other_key[..10]).await;
    let foreign = format!("/dashboard/keys/{other_id}/name");
    assert_eq!(browser.get(&foreign).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        browser.post(&foreign, &[("name", "mine")]).await.status,
        StatusCode::NOT_FOUND
    );
    relay.stop().await;
}
