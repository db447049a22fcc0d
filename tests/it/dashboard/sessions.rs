//! Sessions end when the key they were signed in with is revoked (through the API, the keys page
//! or the CLI), and all at once with "Sign out everywhere".

use reqwest::{Method, StatusCode};

use super::keys::key_id;
use super::{Browser, Page};
use crate::helpers::Relay;

/// The answer sends the browser to the sign-in page.
#[track_caller]
fn assert_signed_out(page: &Page) {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/dashboard/login"));
}

/// A second key for the account of `key`, created through the API.
async fn second_key(relay: &Relay, key: &str) -> String {
    let (status, created) = relay
        .call(Method::POST, "/api/v1/account/api-keys", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created["apiKey"].as_str().expect("apiKey").to_string()
}

async fn key_count(relay: &Relay, key: &str) -> usize {
    let (status, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    keys.as_array().expect("keys").len()
}

/// A browser signed in with an operator's one-time link for `account`.
async fn signed_in_with_link<'r>(relay: &'r Relay, account: &str) -> Browser<'r> {
    let output = relay
        .cli(&["account", "login-link", "--account", account])
        .await;
    assert!(output.status.success(), "{output:?}");
    let url = String::from_utf8(output.stdout).expect("text");
    let path = url
        .trim()
        .strip_prefix("http://127.0.0.1:8080")
        .expect("a link to the relay")
        .to_string();
    let mut browser = Browser::new(relay);
    browser.get(&path).await;
    let done = browser.post(&path, &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);
    browser
}

#[tokio::test]
async fn revoking_the_key_through_the_api_ends_its_session_and_its_forms() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let other = second_key(&relay, &key).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let mut bystander = Browser::signed_in(&relay, &other).await;
    let page = browser.get("/dashboard/keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(browser.csrf.is_some());

    let id = key_id(&relay, &key, &key[..10]).await;
    let (status, _) = relay
        .call(
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The very next request goes to the sign-in page, and a form of the page still open (with
    // its token) creates no key.
    assert_signed_out(&browser.get("/dashboard/keys").await);
    assert_signed_out(&browser.post("/dashboard/keys", &[]).await);
    assert_eq!(key_count(&relay, &other).await, 1);
    // The session signed in with the other key goes on.
    assert_eq!(
        bystander.get("/dashboard/keys").await.status,
        StatusCode::OK
    );
    relay.stop().await;
}

#[tokio::test]
async fn revoking_the_key_on_the_keys_page_ends_its_sessions_on_every_device() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let other = second_key(&relay, &key).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let mut laptop = Browser::signed_in(&relay, &key).await;
    let mut bystander = Browser::signed_in(&relay, &other).await;
    let id = key_id(&relay, &key, &key[..10]).await;
    let confirm_path = format!("/dashboard/keys/{id}/revoke");

    let list = browser.get("/dashboard/keys").await;
    list.assert_contains(&[&format!(
        "<code>{}…</code> <span class=\"muted\">(you signed in with it)</span>",
        &key[..10]
    )]);
    let confirm = browser.get(&confirm_path).await;
    confirm.assert_contains(&[
        "You signed in with this key:",
        "revoking it signs you out here",
    ]);
    let theirs = bystander.get(&confirm_path).await;
    theirs.assert_contains(&["Dashboard sessions signed in with this key end with it."]);

    let revoked = browser.post(&confirm_path, &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(
        revoked.location.as_deref(),
        Some("/dashboard/login?done=key-revoked")
    );
    assert!(browser.cookie("pp_session").is_none(), "cookie cleared");
    let notice = browser.get("/dashboard/login?done=key-revoked").await;
    notice.assert_contains(&["the API key you signed in with is revoked"]);

    assert_signed_out(&laptop.get("/dashboard").await);
    assert_eq!(bystander.get("/dashboard").await.status, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn revoking_the_key_with_the_cli_ends_its_session() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    assert_eq!(browser.get("/dashboard").await.status, StatusCode::OK);

    // Another process on the same database.
    let id = key_id(&relay, &key, &key[..10]).await;
    let output = relay.cli(&["key", "revoke", "--key-id", &id]).await;
    assert!(output.status.success(), "{output:?}");

    assert_signed_out(&browser.get("/dashboard").await);
    relay.stop().await;
}

#[tokio::test]
async fn a_link_session_survives_a_key_revocation() {
    let relay = Relay::start().await;
    let (account, key) = relay.create_account(&[]).await;
    let mut by_link = signed_in_with_link(&relay, &account).await;
    let mut by_key = Browser::signed_in(&relay, &key).await;

    let id = key_id(&relay, &key, &key[..10]).await;
    let (status, _) = relay
        .call(
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    assert_signed_out(&by_key.get("/dashboard").await);
    let page = by_link.get("/dashboard/keys").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&["This account has no API key"]);
    relay.stop().await;
}

#[tokio::test]
async fn signing_out_everywhere_ends_every_session_of_the_account_only() {
    let relay = Relay::start().await;
    let (account, key) = relay.create_account(&[]).await;
    let (_, stranger_key) = relay.create_account(&[]).await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let mut phone = signed_in_with_link(&relay, &account).await;
    let mut stranger = Browser::signed_in(&relay, &stranger_key).await;

    let keys = browser.get("/dashboard/keys").await;
    keys.assert_contains(&[
        r#"action="/dashboard/logout/everywhere""#,
        "Sign out everywhere",
    ]);
    let session = browser.cookie("pp_session").expect("session").to_string();

    let forged = browser
        .post("/dashboard/logout/everywhere", &[("csrf", "forged")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(phone.get("/dashboard").await.status, StatusCode::OK);

    let out = browser.post("/dashboard/logout/everywhere", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(
        out.location.as_deref(),
        Some("/dashboard/login?done=everywhere")
    );
    assert!(browser.cookie("pp_session").is_none(), "cookie cleared");
    let notice = browser.get("/dashboard/login?done=everywhere").await;
    notice.assert_contains(&["You are signed out everywhere"]);

    browser.set_cookie("pp_session", &session);
    assert_signed_out(&browser.get("/dashboard").await);
    assert_signed_out(&phone.get("/dashboard").await);
    assert_eq!(stranger.get("/dashboard").await.status, StatusCode::OK);
    // The keys still work: only sessions ended.
    assert_eq!(key_count(&relay, &key).await, 1);
    relay.stop().await;
}
