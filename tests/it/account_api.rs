//! `/api/v1/account` and `/api/v1/account/api-keys` (SPEC §4): the account view, settings
//! changes, and the life of an API key.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const UNAUTHORIZED: &str = r#"{"message":"Unauthorized"}"#;
const BAD_FORMAT: &str =
    r#"{"message":"Invalid auth header format. Expected: 'Bearer [API_KEY]'"}"#;
const INVALID_KEY: &str = r#"{"message":"Invalid API key"}"#;
const INVALID_JSON: &str = r#"{"message":"Invalid JSON request body"}"#;

/// A raw request with an optional `Authorization` header and JSON body text; returns the
/// status and the exact body text.
async fn raw(
    relay: &Relay,
    method: Method,
    path: &str,
    auth: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut request = relay.request(method, path);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    (response.status(), response.text().await.expect("body"))
}

async fn get_account(relay: &Relay, key: &str) -> Value {
    let (status, account) = relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    account
}

/// The `path` of every entry of a 422 body's `errors`, in order.
fn error_paths(body: &Value) -> Vec<String> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("422 body lists errors: {body}"))
        .iter()
        .map(|e| e["path"].as_str().expect("path").to_string())
        .collect()
}

fn assert_unprocessable(status: StatusCode, body: &Value, paths: &[&str]) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(error_paths(body), paths, "{body}");
    for error in body["errors"].as_array().expect("errors") {
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
}

fn link_token(account: &Value) -> String {
    let url = channel_of(account, "telegram")["linkUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("telegram linkUrl: {account}"));
    url.strip_prefix("https://t.me/PingPilotTestBot?start=")
        .unwrap_or_else(|| panic!("link {url} points at the configured bot"))
        .to_string()
}

fn key_names(value: &Value) -> Vec<&str> {
    let mut names: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn a_fresh_account_shows_every_field_as_null_and_both_channels_not_ready() {
    let relay = Relay::start().await;
    let (account_id, key) = relay.create_account(&[]).await;
    let account = get_account(&relay, &key).await;

    assert_eq!(account["id"], json!(account_id));
    assert_eq!(account["name"], "Test User");
    assert_eq!(account["email"], Value::Null);
    assert_eq!(account["plan"], "free");
    let object = account.as_object().expect("object");
    for field in ["email", "discordId", "telegramUsername"] {
        assert!(
            object.contains_key(field),
            "{field} is present, as null: {account}"
        );
        assert_eq!(object[field], Value::Null, "{field}");
    }

    let channels = account["channels"].as_array().expect("channels array");
    let providers: Vec<&str> = channels
        .iter()
        .map(|c| c["provider"].as_str().expect("provider"))
        .collect();
    assert_eq!(providers, linked_provider_ids(), "provider order");
    let channel = |id: &str| {
        channels
            .iter()
            .find(|c| c["provider"] == id)
            .unwrap_or_else(|| panic!("channel {id}"))
    };
    // The default channels are on; every other provider linked into the binary starts off.
    for other in channels
        .iter()
        .filter(|c| !["discord", "telegram"].contains(&c["provider"].as_str().unwrap_or("")))
    {
        assert_eq!(other["enabled"], false, "{other}");
    }

    let discord = channel("discord");
    assert_eq!(discord["enabled"], true);
    assert_eq!(discord["ready"], false);
    assert_eq!(discord["missing"], json!(["discordId"]));
    assert!(
        discord
            .as_object()
            .expect("object")
            .contains_key("waitingReason"),
        "{discord}"
    );
    assert_eq!(discord["waitingReason"], Value::Null, "configured: no wait");

    let telegram = channel("telegram");
    assert_eq!(telegram["enabled"], true);
    assert_eq!(telegram["ready"], false);
    assert_eq!(telegram["missing"], json!(["telegramUsername"]));
    assert_eq!(telegram["linked"], false);
    assert!(
        telegram["waitingReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "an unlinked chat says why it waits: {telegram}"
    );

    let token = link_token(&account);
    assert!(
        !token.is_empty()
            && token.len() <= 64
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "Telegram start parameter rules: {token:?}"
    );
    assert_ne!(token, key, "the link token is never the API key");
    assert!(!token.contains(&key[3..]), "no part of the key in the link");
    assert!(
        !account.to_string().contains(&key),
        "the account view never shows the key"
    );

    // The token is per account and stable.
    let again = get_account(&relay, &key).await;
    assert_eq!(link_token(&again), token);
    let (_, other_key) = relay.create_account(&[]).await;
    let other = get_account(&relay, &other_key).await;
    assert_ne!(link_token(&other), token);
    assert_ne!(other["id"], account["id"]);
    relay.stop().await;
}

#[tokio::test]
async fn set_fields_make_channels_ready_and_linking_telegram_completes_it() {
    let relay = Relay::start().await;
    let (_, key) = relay
        .create_account(&[
            "--email",
            "owner@example.com",
            "--discord-id",
            DISCORD_ID,
            "--telegram-username",
            "test_user",
        ])
        .await;
    let account = get_account(&relay, &key).await;
    assert_eq!(account["email"], "owner@example.com");
    assert_eq!(account["discordId"], DISCORD_ID);
    assert_eq!(account["telegramUsername"], "test_user");
    let discord = channel_of(&account, "discord");
    assert_eq!(
        (
            &discord["enabled"],
            &discord["ready"],
            &discord["missing"],
            &discord["waitingReason"]
        ),
        (&json!(true), &json!(true), &json!([]), &Value::Null)
    );
    let telegram = channel_of(&account, "telegram");
    assert_eq!(telegram["missing"], json!([]));
    assert_eq!(telegram["linked"], false);
    assert_eq!(
        telegram["ready"], false,
        "not ready until the chat is linked"
    );

    relay.link_telegram(&key).await;
    let account = get_account(&relay, &key).await;
    let telegram = channel_of(&account, "telegram");
    assert_eq!(telegram["linked"], true);
    assert_eq!(telegram["ready"], true);
    assert_eq!(telegram["waitingReason"], Value::Null);
    relay.stop().await;
}

#[tokio::test]
async fn patch_sets_normalizes_and_clears_provider_fields() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    let (status, updated) = relay
        .patch_account(
            &key,
            json!({"discordId": DISCORD_ID, "telegramUsername": "@Some_User"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated["discordId"], DISCORD_ID,
        "PATCH answers the account"
    );
    assert_eq!(
        updated["telegramUsername"], "Some_User",
        "leading @ dropped"
    );
    assert_eq!(channel_of(&updated, "discord")["missing"], json!([]));
    assert_eq!(channel_of(&updated, "telegram")["missing"], json!([]));

    let account = get_account(&relay, &key).await;
    assert_eq!(account["discordId"], DISCORD_ID, "stored");
    assert_eq!(account["telegramUsername"], "Some_User");

    // Absent properties stay; null clears.
    let (status, updated) = relay.patch_account(&key, json!({"discordId": null})).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let account = get_account(&relay, &key).await;
    assert_eq!(account["discordId"], Value::Null);
    assert_eq!(account["telegramUsername"], "Some_User", "untouched");
    assert_eq!(
        channel_of(&account, "discord")["missing"],
        json!(["discordId"])
    );
    assert_eq!(channel_of(&account, "discord")["ready"], false);

    // A cleared field brings intake's 403 back: the change is real, not only displayed.
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            json!({"message": "Please enter your discord ID in your account settings"})
        )
    );

    // The longest snowflake and a 32-character username are accepted.
    let (status, updated) = relay
        .patch_account(
            &key,
            json!({"discordId": "12345678901234567890", "telegramUsername": "a".repeat(32)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["discordId"], "12345678901234567890");
    relay.stop().await;
}

#[tokio::test]
async fn invalid_values_answer_422_with_their_paths_and_change_nothing() {
    let relay = Relay::start().await;
    let (_, key) = relay
        .create_account(&["--telegram-username", "keep_me"])
        .await;

    for bad in [
        json!("123"),
        json!("1234567890123456"),
        json!("123456789012345678901"),
        json!("12345678901234567a"),
        json!(123456789012345678_u64),
        json!(true),
    ] {
        let (status, body) = relay.patch_account(&key, json!({"discordId": bad})).await;
        assert_unprocessable(status, &body, &["discordId"]);
    }
    for bad in ["abcd", "@ab", "has space", "dash-name", &"a".repeat(33)] {
        let (status, body) = relay
            .patch_account(&key, json!({"telegramUsername": bad}))
            .await;
        assert_unprocessable(status, &body, &["telegramUsername"]);
    }

    let (status, body) = relay
        .patch_account(&key, json!({"favouriteColour": "blue"}))
        .await;
    assert_unprocessable(status, &body, &["favouriteColour"]);

    let (status, body) = relay
        .patch_account(&key, json!({"channels": {"pigeon": true}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        error_paths(&body).iter().all(|p| p.starts_with("channels")),
        "{body}"
    );
    assert!(!error_paths(&body).is_empty());

    let (status, body) = relay
        .patch_account(&key, json!({"channels": {"discord": "yes"}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // One bad property rejects the whole request: the valid one is not applied either.
    let (status, body) = relay
        .patch_account(
            &key,
            json!({"discordId": DISCORD_ID, "telegramUsername": null, "bogus": 1}),
        )
        .await;
    assert_unprocessable(status, &body, &["bogus"]);
    let account = get_account(&relay, &key).await;
    assert_eq!(account["discordId"], Value::Null);
    assert_eq!(account["telegramUsername"], "keep_me");
    assert_eq!(channel_of(&account, "discord")["enabled"], true);
    assert_eq!(channel_of(&account, "telegram")["enabled"], true);

    // Every violation is listed.
    let (status, body) = relay
        .patch_account(&key, json!({"discordId": "x", "telegramUsername": "y"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let mut paths = error_paths(&body);
    paths.sort();
    assert_eq!(paths, ["discordId", "telegramUsername"]);
    relay.stop().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_400_and_json_that_is_not_an_object_is_422() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let auth = format!("Bearer {key}");
    for body in ["not json", "", "{\"discordId\":", "{'a':1}"] {
        let (status, text) = raw(
            &relay,
            Method::PATCH,
            "/api/v1/account",
            Some(&auth),
            Some(body),
        )
        .await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::BAD_REQUEST, INVALID_JSON),
            "body {body:?}"
        );
    }
    for body in ["[1]", "\"discordId\"", "42"] {
        let (status, text) = raw(
            &relay,
            Method::PATCH,
            "/api/v1/account",
            Some(&auth),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "body {body:?}");
        assert!(parse_body(&text)["message"].is_string());
    }
    relay.stop().await;
}

#[tokio::test]
async fn channel_switches_turn_channels_off_and_on() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&["--discord-id", DISCORD_ID]).await;

    let (status, updated) = relay
        .patch_account(&key, json!({"channels": {"telegram": false}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(channel_of(&updated, "discord")["enabled"], true);
    assert_eq!(channel_of(&updated, "discord")["ready"], true);
    assert_eq!(channel_of(&updated, "telegram")["provider"], "telegram");
    assert_eq!(channel_of(&updated, "telegram")["enabled"], false);
    assert_eq!(channel_of(&updated, "telegram")["ready"], false);
    let account = get_account(&relay, &key).await;
    assert_eq!(channel_of(&account, "telegram")["enabled"], false, "stored");
    assert_eq!(
        channel_of(&account, "discord")["enabled"],
        true,
        "others untouched"
    );

    let (status, updated) = relay
        .patch_account(
            &key,
            json!({"channels": {"discord": false, "telegram": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let account = get_account(&relay, &key).await;
    assert_eq!(channel_of(&account, "discord")["enabled"], false);
    assert_eq!(channel_of(&account, "discord")["ready"], false);
    assert_eq!(channel_of(&account, "telegram")["enabled"], true);
    // Intake now needs only telegram's field.
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"message": "Telegram username not set. Please set your telegram username in your account settings to receive notifications"})
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_account_api_never_answers_intakes_403s() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    // Intake refuses this account ...
    let (status, _) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // ... but everything the user needs to fix it answers.
    for path in [
        "/api/v1/account",
        "/api/v1/account/api-keys",
        "/api/v1/categories",
        "/api/v1/events",
        "/api/v1/quota",
    ] {
        let (status, body) = relay.call(Method::GET, path, Some(&key), None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    }
    let (_, categories) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(categories, json!([]));
    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "sale", "color": "#FFB02E"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Even with every channel off (intake's 4b), the account can be changed.
    let (status, body) = relay
        .patch_account(
            &key,
            json!({"channels": {"discord": false, "telegram": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = relay
        .patch_account(&key, json!({"discordId": DISCORD_ID}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = relay
        .call(Method::POST, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Fixing the settings through the account API is what intake needed.
    let (status, body) = relay
        .patch_account(&key, json!({"channels": {"discord": true}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn the_account_api_answers_the_documented_401s() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let routes: [(Method, &str, Option<&str>); 9] = [
        (Method::GET, "/api/v1/account", None),
        (
            Method::PATCH,
            "/api/v1/account",
            Some(r#"{"discordId":null}"#),
        ),
        (Method::GET, "/api/v1/account/api-keys", None),
        (Method::POST, "/api/v1/account/api-keys", None),
        (Method::DELETE, "/api/v1/account/api-keys/key_nope", None),
        (
            Method::PATCH,
            "/api/v1/account/api-keys/key_nope",
            Some(r#"{"name":"x"}"#),
        ),
        (Method::GET, "/api/v1/categories", None),
        (Method::GET, "/api/v1/events", None),
        (Method::GET, "/api/v1/quota", None),
    ];
    let revoked_free = format!("Bearer {key}x");
    let cases: [(Option<&str>, &str); 5] = [
        (None, UNAUTHORIZED),
        (Some("Basic x"), BAD_FORMAT),
        (Some("bearer x"), BAD_FORMAT),
        (Some("Bearer pk_unknown"), INVALID_KEY),
        (Some(&revoked_free), INVALID_KEY),
    ];
    for (method, path, body) in &routes {
        for (auth, expected) in &cases {
            let (status, text) = raw(&relay, method.clone(), path, *auth, *body).await;
            assert_eq!(
                (status, text.as_str()),
                (StatusCode::UNAUTHORIZED, *expected),
                "{method} {path} with {auth:?}"
            );
        }
    }
    // The unauthenticated PATCH changed nothing.
    let account = get_account(&relay, &key).await;
    assert_eq!(account["discordId"], DISCORD_ID);
    relay.stop().await;
}

#[tokio::test]
async fn api_keys_are_shown_once_listed_without_the_key_and_revoked_at_once() {
    let relay = Relay::start().await;
    let (account_id, key) = relay.create_account(&[]).await;

    let (status, created) = relay
        .call(Method::POST, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        key_names(&created),
        ["apiKey", "createdAt", "id", "name", "prefix"],
        "{created}"
    );
    let new_key = created["apiKey"].as_str().expect("apiKey").to_string();
    let new_id = created["id"].as_str().expect("id").to_string();
    let prefix = created["prefix"].as_str().expect("prefix");
    assert!(
        new_key.starts_with("pk_") && new_key.len() >= 35,
        "{new_key}"
    );
    assert!(
        new_key[3..].chars().all(|c| c.is_ascii_alphanumeric()),
        "{new_key}"
    );
    assert_ne!(new_key, key);
    assert!(
        !prefix.is_empty() && new_key.starts_with(prefix) && prefix.len() < new_key.len(),
        "the prefix is the start of the key, not all of it: {prefix}"
    );
    let created_at = created["createdAt"].as_str().expect("createdAt");
    assert!(
        crate::events_api::parse_rfc3339_millis(created_at).is_some(),
        "createdAt is RFC 3339: {created_at}"
    );

    // The new key works, for the same account.
    let account = get_account(&relay, &new_key).await;
    assert_eq!(account["id"], json!(account_id));

    // The list shows both keys, never a key itself.
    let response = relay
        .request(Method::GET, "/api/v1/account/api-keys")
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    assert!(!text.contains(&new_key) && !text.contains(&key), "{text}");
    assert!(
        !text.contains(&new_key[3..20]),
        "no long part of a key: {text}"
    );
    let list = parse_body(&text);
    let entries = list.as_array().expect("a JSON array");
    assert_eq!(entries.len(), 2, "{list}");
    for entry in entries {
        assert_eq!(
            key_names(entry),
            ["createdAt", "id", "lastUsedAt", "name", "prefix"],
            "{entry}"
        );
    }
    let listed = entries
        .iter()
        .find(|e| e["id"] == json!(new_id))
        .expect("the new key is listed");
    assert_eq!(listed["prefix"], json!(prefix));
    assert_eq!(listed["createdAt"], created["createdAt"]);
    assert!(
        listed["lastUsedAt"].is_string(),
        "the new key was used above: {listed}"
    );

    // Revoke: 204 with no body, then the key is invalid at once; the other still works.
    let (status, text) = raw(
        &relay,
        Method::DELETE,
        &format!("/api/v1/account/api-keys/{new_id}"),
        Some(&format!("Bearer {key}")),
        None,
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::NO_CONTENT, ""));
    let (status, text) = raw(
        &relay,
        Method::GET,
        "/api/v1/account",
        Some(&format!("Bearer {new_key}")),
        None,
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::UNAUTHORIZED, INVALID_KEY)
    );
    let (_, list) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    let ids: Vec<&Value> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids.len(), 1, "{list}");
    assert_ne!(ids[0], &json!(new_id));
    get_account(&relay, &key).await;

    // Revoking it again, or an id that never existed: 404 JSON.
    for id in [new_id.as_str(), "key_does_not_exist"] {
        let (status, text) = raw(
            &relay,
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{id}"),
            Some(&format!("Bearer {key}")),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {text}");
        assert!(parse_body(&text)["message"].is_string(), "{text}");
    }
    relay.stop().await;
}

/// `POST` with a body of another type, or none at all.
async fn post_key(
    relay: &Relay,
    key: &str,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = relay
        .request(Method::POST, "/api/v1/account/api-keys")
        .header("Authorization", format!("Bearer {key}"))
        .body(body.to_string());
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request.send().await.expect("request");
    (response.status(), response.text().await.expect("body"))
}

#[tokio::test]
async fn api_keys_are_named_when_created_or_later() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    // A name, trimmed; an empty body or a blank name: no name.
    let (status, created) = relay
        .call(
            Method::POST,
            "/api/v1/account/api-keys",
            Some(&key),
            Some(json!({"name": "  billing server "})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "billing server");
    let named_id = created["id"].as_str().expect("id").to_string();
    for (content_type, body) in [
        (Some("application/json"), ""),
        (None, ""),
        (Some("text/plain"), ""),
        (Some("application/json"), r#"{"name":"   "}"#),
        (Some("application/json"), r#"{"name":null}"#),
        (Some("application/json"), "{}"),
    ] {
        let (status, text) = post_key(&relay, &key, content_type, body).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{content_type:?} {body:?}: {text}"
        );
        assert_eq!(parse_body(&text)["name"], Value::Null, "{body:?}");
    }

    // A body that says something else: the documented errors, and no key made.
    let too_long = "x".repeat(65);
    let cases: [(Option<&str>, String, StatusCode, Value); 6] = [
        (
            Some("application/json"),
            "{\"name\":".into(),
            StatusCode::BAD_REQUEST,
            json!({"message": "Invalid JSON request body"}),
        ),
        (
            Some("text/plain"),
            "billing".into(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            json!({"message": "Unsupported content type \"text/plain\": send the body as application/json"}),
        ),
        (
            None,
            json!({"name": too_long}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Invalid request body: name: must be at most 64 characters long",
                   "errors": [{"path": "name", "message": "must be at most 64 characters long"}]}),
        ),
        (
            None,
            json!({"name": "line\nbreak"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Invalid request body: name: must not contain control characters such as line breaks",
                   "errors": [{"path": "name", "message": "must not contain control characters such as line breaks"}]}),
        ),
        (
            None,
            json!({"name": 7, "scope": "all"}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Invalid request body: scope: unknown property; allowed is name; name: must be a string or null",
                   "errors": [{"path": "scope", "message": "unknown property; allowed is name"},
                              {"path": "name", "message": "must be a string or null"}]}),
        ),
        (
            None,
            "[]".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Invalid request body: : the body must be a JSON object",
                   "errors": [{"path": "", "message": "the body must be a JSON object"}]}),
        ),
    ];
    for (content_type, body, status, answer) in &cases {
        let (got, text) = post_key(&relay, &key, *content_type, body).await;
        assert_eq!(
            (got, parse_body(&text)),
            (*status, answer.clone()),
            "{body}"
        );
    }
    let (_, list) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    let names: Vec<&Value> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|k| &k["name"])
        .collect();
    let mut want = vec![Value::Null, json!("billing server")];
    want.extend(std::iter::repeat_n(Value::Null, 6));
    assert_eq!(names, want.iter().collect::<Vec<_>>(), "{list}");

    // Renaming answers the key as listed; `null` takes the name away.
    let rename = |id: String, body: Value| {
        let relay = &relay;
        let key = key.clone();
        async move {
            relay
                .call(
                    Method::PATCH,
                    &format!("/api/v1/account/api-keys/{id}"),
                    Some(&key),
                    Some(body),
                )
                .await
        }
    };
    let (status, renamed) = rename(named_id.clone(), json!({"name": "CI"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        key_names(&renamed),
        ["createdAt", "id", "lastUsedAt", "name", "prefix"]
    );
    assert_eq!(
        (
            &renamed["id"],
            &renamed["name"],
            &renamed["prefix"],
            &renamed["createdAt"]
        ),
        (
            &created["id"],
            &json!("CI"),
            &created["prefix"],
            &created["createdAt"]
        )
    );
    let (_, unnamed) = rename(named_id.clone(), json!({"name": null})).await;
    assert_eq!(unnamed["name"], Value::Null, "{unnamed}");
    let (status, body) = rename(named_id.clone(), json!({})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": "Invalid request body: name: required",
                   "errors": [{"path": "name", "message": "required"}]})
        )
    );
    // The key itself still works, renamed or not.
    get_account(&relay, created["apiKey"].as_str().expect("key")).await;

    // Another account's key, a revoked one, or no such key: 404, and nothing renamed.
    let (_, theirs) = relay.create_account(&[]).await;
    let (_, their_keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&theirs), None)
        .await;
    let their_id = their_keys[0]["id"].as_str().expect("id").to_string();
    let (status, _) = relay
        .call(
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{named_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for id in [their_id, named_id, "key_nope".into(), "nope".into()] {
        let (status, body) = rename(id.clone(), json!({"name": "mine now"})).await;
        assert_eq!(
            (status, body),
            (
                StatusCode::NOT_FOUND,
                json!({"message": "API key not found"})
            ),
            "{id}"
        );
    }
    let (_, their_keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&theirs), None)
        .await;
    assert_eq!(their_keys[0]["name"], Value::Null);
    relay.stop().await;
}

#[tokio::test]
async fn another_account_cannot_see_or_revoke_my_keys() {
    let relay = Relay::start().await;
    let (_, mine) = relay.create_account(&[]).await;
    let (_, theirs) = relay.create_account(&[]).await;
    let (_, my_keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&mine), None)
        .await;
    let my_id = my_keys[0]["id"].as_str().expect("key id").to_string();

    let (_, their_keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&theirs), None)
        .await;
    let their_list = their_keys.as_array().expect("array");
    assert_eq!(their_list.len(), 1, "{their_keys}");
    assert_ne!(their_list[0]["id"], json!(my_id));

    let (status, body) = relay
        .call(
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{my_id}"),
            Some(&theirs),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body["message"].is_string(), "{body}");
    get_account(&relay, &mine).await;

    // A key can revoke itself; then it is done.
    let (status, _) = relay
        .call(
            Method::DELETE,
            &format!("/api/v1/account/api-keys/{my_id}"),
            Some(&mine),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = relay
        .call(Method::GET, "/api/v1/account", Some(&mine), None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Invalid API key"})
        )
    );
    relay.stop().await;
}

/// New accounts start with `accounts.default_channels` on and every other channel off; an
/// account from before channels were explicit keeps its channels on unless switched off.
#[tokio::test]
async fn channels_start_from_the_defaults_and_older_accounts_keep_theirs() {
    let relay = Relay::start_with("[accounts]\ndefault_channels = [\"discord\"]\n", true).await;
    let (_, new_key) = relay.create_account(&["--discord-id", DISCORD_ID]).await;
    let (older_id, older_key) = relay.create_account(&["--discord-id", DISCORD_ID]).await;
    // As the migration left accounts created before it: nothing listed, not explicit.
    database_query(
        relay.database_url(),
        &format!(
            "UPDATE accounts SET channels = '{{}}', channels_explicit = FALSE \
             WHERE id = '{older_id}'"
        ),
    )
    .await;

    let (_, account) = relay
        .call(Method::GET, "/api/v1/account", Some(&new_key), None)
        .await;
    let enabled: Vec<(&str, bool)> = account["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| {
            (
                c["provider"].as_str().expect("id"),
                c["enabled"].as_bool().expect("enabled"),
            )
        })
        .collect();
    let expected: Vec<(&str, bool)> = linked_provider_ids()
        .into_iter()
        .map(|id| (id, id == "discord"))
        .collect();
    assert_eq!(enabled, expected);

    for key in [&new_key, &older_key] {
        let (status, _) = relay
            .call(
                Method::POST,
                "/api/v1/categories",
                Some(key),
                Some(json!({"name": "sale", "color": "#00FF00"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // Telegram is off for the new account: its missing username does not matter.
    let (status, _) = relay
        .send_event(&new_key, json!({"category": "sale"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The older account still has Telegram on, so intake asks for the username as before.
    let (status, body) = relay
        .send_event(&older_key, json!({"category": "sale"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"message": "Telegram username not set. Please set your telegram username in your account settings to receive notifications"})
    );

    // Switching a channel on is explicit.
    let (status, account) = relay
        .call(
            Method::PATCH,
            "/api/v1/account",
            Some(&new_key),
            Some(json!({"channels": {"telegram": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let telegram = account["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["provider"] == "telegram")
        .expect("telegram");
    assert_eq!(telegram["enabled"], true);
    let (status, _) = relay
        .send_event(&new_key, json!({"category": "sale"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    relay.stop().await;
}

#[tokio::test]
async fn default_channels_must_name_linked_providers() {
    let relay = Relay::start().await;
    std::fs::write(
        &relay.config_path,
        format!(
            "{}\n[accounts]\ndefault_channels = [\"discord\", \"pigeon\"]\n",
            std::fs::read_to_string(&relay.config_path).expect("config")
        ),
    )
    .expect("write config");
    let expected = format!(
        "accounts.default_channels: no provider named \"pigeon\" (linked: {})",
        linked_provider_ids().join(", ")
    );
    for args in [
        &["config", "check"][..],
        &["account", "create", "--name", "Ann"][..],
    ] {
        let output = relay.cli(args).await;
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&expected), "{stderr}");
    }
    relay.stop().await;
}
