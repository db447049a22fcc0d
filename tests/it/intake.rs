//! `POST /api/v1/event`: every row of the documented table, in order.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// Sends a raw intake request and returns status and exact body text.
async fn raw(
    relay: &Relay,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let mut request = relay.request(Method::POST, "/api/v1/event");
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    if let Some(content_type) = content_type {
        request = request.header("Content-Type", content_type);
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    (response.status(), response.text().await.expect("body"))
}

const SALE: &str = r#"{"category":"sale","description":"New purchase completed","fields":{"plan":"pro","amount":99.99,"recurring":true}}"#;

#[tokio::test]
async fn authorization_failures_answer_the_documented_401s() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let unauthorized = r#"{"message":"Unauthorized"}"#;
    let bad_format = r#"{"message":"Invalid auth header format. Expected: 'Bearer [API_KEY]'"}"#;
    let invalid = r#"{"message":"Invalid API key"}"#;
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, unauthorized),
        (Some("Basic x".into()), bad_format),
        (Some("bearer x".into()), bad_format),
        (Some("Token x".into()), bad_format),
        (
            Some(key.to_lowercase().replace("pk_", "Bearer:")),
            bad_format,
        ),
        (Some("Bearer ".into()), invalid),
        (Some("Bearer    ".into()), invalid),
        (Some("Bearer pk_unknown".into()), invalid),
        (Some(format!("Bearer {key}x")), invalid),
    ];
    for (header, expected) in cases {
        let (status, body) = raw(&relay, header.as_deref(), Some("application/json"), SALE).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::UNAUTHORIZED, expected),
            "header {header:?}"
        );
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_revoked_key_is_invalid_at_once() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // Intake has seen (and may remember) the key before another process revokes it.
    let (status, _) = raw(&relay, Some(&format!("Bearer {key}")), None, SALE).await;
    assert_eq!(status, StatusCode::OK);
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    let id = keys[0]["id"].as_str().expect("key id").to_string();
    let output = relay.cli(&["key", "revoke", "--key-id", &id]).await;
    assert!(output.status.success());
    let (status, body) = raw(&relay, Some(&format!("Bearer {key}")), None, SALE).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"message":"Invalid API key"}"#)
    );
    relay.stop().await;
}

#[tokio::test]
async fn missing_account_fields_answer_each_providers_403_in_provider_order() {
    let relay = Relay::start().await;
    let discord_403 = r#"{"message":"Please enter your discord ID in your account settings"}"#;
    let telegram_403 = r#"{"message":"Telegram username not set. Please set your telegram username in your account settings to receive notifications"}"#;

    let (_, key) = relay.create_account(&[]).await;
    let auth = format!("Bearer {key}");
    // Check order: 403 comes before every body error.
    for body in [SALE, "not json", "{}"] {
        let (status, text) = raw(&relay, Some(&auth), None, body).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::FORBIDDEN, discord_403)
        );
    }
    let (status, _) = relay
        .patch_account(&key, json!({"discordId": DISCORD_ID}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::FORBIDDEN, telegram_403)
    );

    // A disabled channel needs nothing.
    let (status, _) = relay
        .patch_account(&key, json!({"channels": {"telegram": false}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{text}");

    // No channel at all.
    let (status, _) = relay
        .patch_account(&key, json!({"channels": {"discord": false}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::FORBIDDEN,
            r#"{"message":"No notification channel is enabled. Enable at least one channel in your account settings"}"#
        )
    );
    relay.stop().await;
}

#[tokio::test]
async fn quota_is_checked_before_the_body_and_never_exceeded_under_concurrency() {
    let relay =
        Relay::start_with("[plans.tiny]\nevents_per_month = 5\ncategories = 3\n", true).await;
    let (account, key) = relay
        .create_account(&[
            "--plan",
            "tiny",
            "--discord-id",
            DISCORD_ID,
            "--telegram-username",
            "test_user",
        ])
        .await;
    let (status, _) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "sale", "color": "#00FF00"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let sends = (0..20).map(|_| relay.send_event(&key, json!({"category": "sale"})));
    let results = futures_join_all(sends).await;
    let accepted = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert_eq!(accepted, 5, "exactly the monthly limit is accepted");
    let quota_body =
        r#"{"message":"Monthly quota reached. Please upgrade your plan for more events"}"#;
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::OK) {
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body.to_string(), quota_body);
    }
    // 429 comes before body errors.
    let (status, text) = raw(&relay, Some(&format!("Bearer {key}")), None, "not json").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, quota_body)
    );

    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 5);
    assert_eq!(quota["eventsLimit"], 5);

    // Upgrading lifts the limit.
    assert!(
        relay
            .cli(&[
                "account",
                "set-plan",
                "--account",
                &account,
                "--plan",
                "pro"
            ])
            .await
            .status
            .success()
    );
    let (status, _) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn account_changes_reach_intake_at_once() {
    let relay = Relay::start_with("[plans.closed]\nevents_per_month = 0\n", true).await;
    let (account, key) = relay
        .create_account(&[
            "--plan",
            "pro",
            "--discord-id",
            DISCORD_ID,
            "--telegram-username",
            "test_user",
        ])
        .await;
    for name in ["sale", "refund"] {
        let (status, _) = relay
            .call(
                Method::POST,
                "/api/v1/categories",
                Some(&key),
                Some(json!({"name": name, "color": "#00FF00"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let auth = format!("Bearer {key}");
    let refund = r#"{"category":"refund"}"#;
    for body in [SALE, refund] {
        assert_eq!(raw(&relay, Some(&auth), None, body).await.0, StatusCode::OK);
    }

    // A category removed through the API is gone for intake.
    let (status, _) = relay
        .call(
            Method::DELETE,
            "/api/v1/categories/refund",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, text) = raw(&relay, Some(&auth), None, refund).await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::NOT_FOUND,
            r#"{"message":"You dont have a category named \"refund\""}"#
        )
    );

    // Channels switched off through the API.
    let (status, _) = relay
        .patch_account(
            &key,
            json!({"channels": {"discord": false, "telegram": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = relay
        .patch_account(&key, json!({"channels": {"discord": true}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, text) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    // A plan changed by another process (the CLI) applies to the next event.
    let output = relay
        .cli(&[
            "account",
            "set-plan",
            "--account",
            &account,
            "--plan",
            "closed",
        ])
        .await;
    assert!(output.status.success());
    let (status, text) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            r#"{"message":"Monthly quota reached. Please upgrade your plan for more events"}"#
        )
    );
    relay.stop().await;
}

async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::new();
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    // Poll all concurrently, collecting outputs as they finish.
    loop {
        if pinned.is_empty() {
            break;
        }
        let (output, _, rest) = select_all(pinned).await;
        out.push(output);
        pinned = rest;
    }
    out
}

async fn select_all<F: std::future::Future + Unpin>(futures: Vec<F>) -> (F::Output, usize, Vec<F>) {
    let mut futures = futures;
    std::future::poll_fn(move |cx| {
        for i in 0..futures.len() {
            if let std::task::Poll::Ready(output) = std::pin::Pin::new(&mut futures[i]).poll(cx) {
                let mut rest = std::mem::take(&mut futures);
                rest.remove(i);
                return std::task::Poll::Ready((output, i, rest));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[tokio::test]
async fn body_errors_answer_415_413_400_and_422() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let auth = format!("Bearer {key}");
    let invalid_json = r#"{"message":"Invalid JSON request body"}"#;

    for body in ["not json", "", "{\"category\":", "[1,"] {
        let (status, text) = raw(&relay, Some(&auth), Some("application/json"), body).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::BAD_REQUEST, invalid_json),
            "body {body:?}"
        );
    }
    // No Content-Type is accepted as JSON.
    let (status, text) = raw(&relay, Some(&auth), None, "nope").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::BAD_REQUEST, invalid_json)
    );
    let (status, _) = raw(&relay, Some(&auth), None, SALE).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = raw(
        &relay,
        Some(&auth),
        Some("application/json; charset=utf-8"),
        SALE,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, text) = raw(&relay, Some(&auth), Some("text/plain"), SALE).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(parse_body(&text)["message"].is_string());

    let big = format!(
        r#"{{"category":"sale","description":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let (status, text) = raw(&relay, Some(&auth), Some("application/json"), &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(parse_body(&text)["message"].is_string());

    let (status, body) = relay
        .send_event(&key, json!({"category": "bad name!", "description": 5, "fields": {"a": null, "b": [1], "c": {"d": 1}}, "extra": true}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let paths: Vec<&str> = body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert_eq!(
        paths,
        [
            "extra",
            "category",
            "description",
            "fields.a",
            "fields.b",
            "fields.c"
        ]
    );
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("category")
    );

    // Validation (422) comes before the category lookup (404).
    let (status, _) = relay
        .send_event(&key, json!({"category": "nope", "fields": {"x": null}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Nothing half-written: only the two accepted events exist and count.
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 2);
    let (_, page) = relay
        .call(Method::GET, "/api/v1/events", Some(&key), None)
        .await;
    assert_eq!(page["events"].as_array().map(Vec::len), Some(2));
    relay.stop().await;
}

#[tokio::test]
async fn unknown_category_is_404_with_the_name_as_sent_and_matching_ignores_case() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (status, text) = raw(
        &relay,
        Some(&format!("Bearer {key}")),
        None,
        r#"{"category":"Refund"}"#,
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::NOT_FOUND,
            r#"{"message":"You dont have a category named \"Refund\""}"#
        )
    );

    let (status, body) = relay.send_event(&key, json!({"category": "SaLe"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn accepted_events_answer_200_with_an_event_id_on_both_paths() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    for route in ["/api/v1/event", "/api/v1/events"] {
        let response = relay
            .request(Method::POST, route)
            .header("Authorization", format!("Bearer {key}"))
            .header("Content-Type", "application/json")
            .body(SALE)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("json");
        let object = body.as_object().expect("object");
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            ["message", "eventId", "deliveryStatus"]
        );
        assert_eq!(body["message"], "Event processed successfully");
        assert_eq!(body["deliveryStatus"], "PENDING");
        let id = body["eventId"].as_str().expect("eventId");
        assert!(id.starts_with("evt_") && id.len() > 20, "{id}");
    }
    relay.stop().await;
}

const RATE_LIMITED: &str = r#"{"message":"Too many requests: slow down and retry after the number of seconds in Retry-After"}"#;

/// An account on `plan` with both channels' fields and a `sale` category; its key.
async fn account_on_plan(relay: &Relay, plan: &str) -> String {
    let (_, key) = relay
        .create_account(&[
            "--plan",
            plan,
            "--discord-id",
            DISCORD_ID,
            "--telegram-username",
            "test_user",
        ])
        .await;
    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "sale", "color": "#00FF00"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    key
}

/// Sends the sale event; status, `Retry-After` and exact body.
async fn send_timed(relay: &Relay, key: &str) -> (StatusCode, Option<String>, String) {
    let response = relay
        .request(Method::POST, "/api/v1/event")
        .header("Authorization", format!("Bearer {key}"))
        .body(SALE)
        .send()
        .await
        .expect("request");
    with_retry_after(response).await
}

#[tokio::test]
async fn the_intake_rate_answers_429_with_retry_after_between_the_403s_and_the_quota() {
    let relay = Relay::start_with(
        "[plans.trickle]\nevents_per_month = 1000\nevents_per_second = 0.5\nburst = 3\n\n\
         [plans.tiny]\nevents_per_month = 2\nevents_per_second = 0.5\nburst = 3\n",
        true,
    )
    .await;
    let key = account_on_plan(&relay, "trickle").await;
    for _ in 0..3 {
        let (status, retry_after, body) = send_timed(&relay, &key).await;
        assert_eq!((status, retry_after), (StatusCode::OK, None), "{body}");
    }
    // The burst is spent: the 429 says to come back in two seconds (a token every two)...
    let (status, retry_after, body) = send_timed(&relay, &key).await;
    assert_eq!(
        (status, retry_after.as_deref(), body.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("2"), RATE_LIMITED)
    );
    // ...before any body error, and without counting against the month.
    let (status, text) = raw(&relay, Some(&format!("Bearer {key}")), None, "not json").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED)
    );
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 3);
    // Two seconds later there is a token again.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, _, body) = send_timed(&relay, &key).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // 403 comes first: an account that cannot receive events never gets to the rate.
    let (_, unready) = relay.create_account(&["--plan", "trickle"]).await;
    for _ in 0..5 {
        let (status, _, _) = send_timed(&relay, &unready).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    // The rate comes before the quota: the month's 429 while tokens last, then the rate's.
    let tiny = account_on_plan(&relay, "tiny").await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let (status, retry_after, body) = send_timed(&relay, &tiny).await;
        answers.push((status.as_u16(), retry_after, body));
    }
    let quota_body =
        r#"{"message":"Monthly quota reached. Please upgrade your plan for more events"}"#;
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[1].0, 200);
    assert_eq!(
        (answers[2].0, answers[2].1.as_deref(), answers[2].2.as_str()),
        (429, None, quota_body)
    );
    assert_eq!(
        (answers[3].0, answers[3].1.as_deref(), answers[3].2.as_str()),
        (429, Some("2"), RATE_LIMITED)
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_plan_without_a_rate_is_never_slowed_down() {
    let relay = Relay::start().await;
    let key = account_on_plan(&relay, "unlimited").await;
    let sends = (0..300).map(|_| send_timed(&relay, &key));
    let answers = futures_join_all(sends).await;
    assert!(
        answers
            .iter()
            .all(|(status, _, _)| *status == StatusCode::OK)
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_idempotent_repeat_passes_the_key_checks_again() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let send = |key: String| {
        let request = relay
            .request(Method::POST, "/api/v1/event")
            .header("Authorization", format!("Bearer {key}"))
            .header("Idempotency-Key", "order-1")
            .body(SALE);
        async move {
            let response = request.send().await.expect("request");
            (response.status(), response.text().await.expect("body"))
        }
    };
    let (status, first) = send(key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = send(key.clone()).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    // Revoked from another process: this relay's cached copy of the key must not answer.
    let (_, keys) = relay
        .call(Method::GET, "/api/v1/account/api-keys", Some(&key), None)
        .await;
    let id = keys[0]["id"].as_str().expect("key id").to_string();
    assert!(
        relay
            .cli(&["key", "revoke", "--key-id", &id])
            .await
            .status
            .success()
    );
    let (status, body) = send(key.clone()).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, r#"{"message":"Invalid API key"}"#)
    );
    relay.stop().await;
}
