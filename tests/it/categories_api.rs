//! `/api/v1/categories` (SPEC §4): creating, reading, changing and deleting event categories,
//! and the plan's category limit.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const LIMIT_REACHED: &str =
    r#"{"message":"You have reached the maximum number of event categories (3) for your plan."}"#;
const INVALID_JSON: &str = r#"{"message":"Invalid JSON request body"}"#;

async fn create(relay: &Relay, key: &str, body: Value) -> (StatusCode, Value) {
    relay
        .call(Method::POST, "/api/v1/categories", Some(key), Some(body))
        .await
}

async fn create_ok(relay: &Relay, key: &str, name: &str) -> Value {
    let (status, body) = create(relay, key, json!({"name": name, "color": "#123ABC"})).await;
    assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    body
}

/// A raw request with a JSON body text; returns the status and the exact body text.
async fn raw(
    relay: &Relay,
    method: Method,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> (StatusCode, String) {
    let mut request = relay
        .request(method, path)
        .header("Authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request");
    (response.status(), response.text().await.expect("body"))
}

async fn quota(relay: &Relay, key: &str) -> Value {
    let (status, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{quota}");
    quota
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("a JSON array: {list}"))
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect()
}

fn error_paths(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("422 body lists errors: {body}"))
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect()
}

fn assert_json_message(status: StatusCode, expected: StatusCode, body: &Value) {
    assert_eq!(status, expected, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a JSON message: {body}"
    );
}

#[tokio::test]
async fn create_lowercases_the_name_and_echoes_colour_and_emoji() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;

    let (status, created) = create(
        &relay,
        &key,
        json!({"name": "Sale", "color": "#ffb02e", "emoji": "💰"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "sale");
    assert_eq!(created["color"], "#FFB02E");
    assert_eq!(created["emoji"], "💰");
    assert_eq!(created["eventsCount"], 0);
    assert_eq!(created["lastPing"], Value::Null);
    assert!(created["createdAt"].is_string(), "{created}");

    let (status, created) = create(
        &relay,
        &key,
        json!({"name": "New-User-2", "color": "#00A1b2"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "new-user-2");
    assert_eq!(created["color"], "#00A1B2");
    assert_eq!(created["emoji"], Value::Null, "no emoji given");

    let (status, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(names(&list), ["sale", "new-user-2"]);
    assert_eq!(list[0]["color"], "#FFB02E");
    assert_eq!(list[0]["emoji"], "💰");
    assert_eq!(list[1]["color"], "#00A1B2");

    // The event intake finds it under any case.
    relay
        .patch_account(
            &key,
            json!({"discordId": DISCORD_ID, "channels": {"telegram": false}}),
        )
        .await;
    let (status, body) = relay.send_event(&key, json!({"category": "SALE"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    relay.stop().await;
}

#[tokio::test]
async fn duplicates_answer_409_also_when_only_the_case_differs() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    for name in ["sale", "SALE", "Sale"] {
        let (status, body) = create(&relay, &key, json!({"name": name, "color": "#000000"})).await;
        assert_json_message(status, StatusCode::CONFLICT, &body);
    }
    let (_, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(names(&list), ["sale"]);
    assert_eq!(list[0]["color"], "#FFB02E", "the original is untouched");
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 1);

    // Names are per account: another account may use the same one.
    let (_, other) = relay.create_account(&[]).await;
    create_ok(&relay, &other, "sale").await;
    relay.stop().await;
}

#[tokio::test]
async fn invalid_bodies_answer_422_listing_every_path_and_non_json_400() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    let long = "a".repeat(65);
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"name": "bad name!", "color": "red"}),
            vec!["name", "color"],
        ),
        (json!({"name": "", "color": "#FFFFFF"}), vec!["name"]),
        (json!({"name": long, "color": "#FFFFFF"}), vec!["name"]),
        (
            json!({"name": "under_score", "color": "#FFFFFF"}),
            vec!["name"],
        ),
        (json!({"name": "émoji", "color": "#FFFFFF"}), vec!["name"]),
        (json!({"name": 7, "color": "#FFFFFF"}), vec!["name"]),
        (json!({"name": "ok", "color": "#FFB02"}), vec!["color"]),
        (json!({"name": "ok", "color": "FFB02E"}), vec!["color"]),
        (json!({"name": "ok", "color": "#GGGGGG"}), vec!["color"]),
        (json!({"name": "ok", "color": "#FFB02E0"}), vec!["color"]),
        (json!({"name": "ok", "color": 16756782}), vec!["color"]),
        (json!({}), vec!["name", "color"]),
        (json!({"name": "ok"}), vec!["color"]),
        (
            json!({"name": "ok", "color": "#FFFFFF", "emoji": "x".repeat(100)}),
            vec!["emoji"],
        ),
        (
            json!({"name": "ok", "color": "#FFFFFF", "size": 3}),
            vec!["size"],
        ),
    ];
    for (body, paths) in cases {
        let (status, answer) = create(&relay, &key, body.clone()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(answer["message"].is_string(), "{answer}");
        let mut got = error_paths(&answer);
        got.sort_unstable();
        let mut want = paths.clone();
        want.sort_unstable();
        assert_eq!(got, want, "{body}: {answer}");
    }

    for body in ["not json", "", "{\"name\":"] {
        let (status, text) =
            raw(&relay, Method::POST, "/api/v1/categories", &key, Some(body)).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::BAD_REQUEST, INVALID_JSON),
            "{body:?}"
        );
    }

    // Nothing was created; the longest valid name is fine.
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 0);
    let created = create_ok(&relay, &key, &"a".repeat(64)).await;
    assert_eq!(created["name"], json!("a".repeat(64)));
    relay.stop().await;
}

#[tokio::test]
async fn the_free_plan_allows_three_categories_then_answers_the_documented_403() {
    let relay = Relay::start().await;
    let (_, key) = relay.create_account(&[]).await;
    for name in ["one", "two", "three"] {
        create_ok(&relay, &key, name).await;
    }
    let (status, text) = raw(
        &relay,
        Method::POST,
        "/api/v1/categories",
        &key,
        Some(r##"{"name":"four","color":"#FFFFFF"}"##),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::FORBIDDEN, LIMIT_REACHED)
    );
    let q = quota(&relay, &key).await;
    assert_eq!(
        (&q["categoriesUsed"], &q["categoriesLimit"]),
        (&json!(3), &json!(3))
    );
    let (_, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(names(&list), ["one", "two", "three"]);

    // Deleting one frees a place.
    let (status, _) = relay
        .call(Method::DELETE, "/api/v1/categories/two", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 2);
    create_ok(&relay, &key, "four").await;
    let (status, text) = raw(
        &relay,
        Method::POST,
        "/api/v1/categories",
        &key,
        Some(r##"{"name":"five","color":"#FFFFFF"}"##),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::FORBIDDEN, LIMIT_REACHED)
    );

    // A bigger plan, a bigger limit, named in the message.
    let (_, pro) = relay.create_account(&["--plan", "pro"]).await;
    for i in 0..10 {
        create_ok(&relay, &pro, &format!("c{i}")).await;
    }
    let (status, body) = create(&relay, &pro, json!({"name": "c10", "color": "#FFFFFF"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::FORBIDDEN,
            json!({"message": "You have reached the maximum number of event categories (10) for your plan."})
        )
    );
    let q = quota(&relay, &pro).await;
    assert_eq!(
        (&q["categoriesUsed"], &q["categoriesLimit"]),
        (&json!(10), &json!(10))
    );
    relay.stop().await;
}

#[tokio::test]
async fn read_one_ignores_case_and_counts_events_with_the_last_ping() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // Every account is created before any event: the CLI runs while the test thread waits.
    let (_, other) = relay.create_account(&[]).await;
    create_ok(&relay, &key, "refund").await;

    let (status, sale) = relay
        .call(Method::GET, "/api/v1/categories/SaLe", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{sale}");
    assert_eq!(sale["name"], "sale");
    assert_eq!(sale["color"], "#FFB02E");
    assert_eq!(sale["emoji"], "💰");
    assert_eq!(sale["eventsCount"], 0);
    assert_eq!(sale["lastPing"], Value::Null);

    let mut last_id = String::new();
    for category in ["sale", "Sale", "refund"] {
        let (status, body) = relay.send_event(&key, json!({"category": category})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if category != "refund" {
            last_id = body["eventId"].as_str().expect("eventId").to_string();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (_, last_event) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{last_id}"),
            Some(&key),
            None,
        )
        .await;

    let (_, sale) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_eq!(sale["eventsCount"], 2, "{sale}");
    assert_eq!(
        sale["lastPing"], last_event["createdAt"],
        "lastPing is the time of the latest sale event"
    );
    let (_, refund) = relay
        .call(Method::GET, "/api/v1/categories/REFUND", Some(&key), None)
        .await;
    assert_eq!(refund["eventsCount"], 1, "{refund}");
    assert!(refund["lastPing"].is_string());

    // The list shows the same counts.
    let (_, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(list[0]["eventsCount"], 2);
    assert_eq!(list[1]["eventsCount"], 1);

    // Unknown, or another account's: 404.
    let (status, body) = relay
        .call(Method::GET, "/api/v1/categories/nope", Some(&key), None)
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    let (status, body) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&other), None)
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    relay.stop().await;
}

#[tokio::test]
async fn patch_changes_colour_emoji_and_name() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    create_ok(&relay, &key, "refund").await;
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("eventId").to_string();
    let patch = |name: &'static str, body: Value| {
        let relay = &relay;
        let key = &key;
        async move {
            relay
                .call(
                    Method::PATCH,
                    &format!("/api/v1/categories/{name}"),
                    Some(key),
                    Some(body),
                )
                .await
        }
    };

    let (status, changed) = patch("Sale", json!({"color": "#00ff7f"})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["name"], "sale");
    assert_eq!(changed["color"], "#00FF7F");
    assert_eq!(changed["emoji"], "💰", "absent properties stay");

    let (status, changed) = patch("sale", json!({"emoji": "🎉"})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["emoji"], "🎉");
    assert_eq!(changed["color"], "#00FF7F");
    let (status, changed) = patch("sale", json!({"emoji": null})).await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["emoji"], Value::Null);

    // Invalid changes: 422, nothing applied.
    let (status, body) = patch("sale", json!({"color": "green", "name": "Purchase"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_paths(&body), ["color"]);
    let (status, body) = patch("sale", json!({"name": "no way"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_paths(&body), ["name"]);
    let (_, sale) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_eq!(sale["color"], "#00FF7F");

    // Renaming onto an existing name: 409, nothing changed.
    let (status, body) = patch("sale", json!({"name": "Refund", "color": "#111111"})).await;
    assert_json_message(status, StatusCode::CONFLICT, &body);
    let (_, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(names(&list), ["sale", "refund"]);
    assert_eq!(list[0]["color"], "#00FF7F");

    // Rename: the new name is lower-cased, the old one is gone, the events stay counted.
    let (status, renamed) = patch("sale", json!({"name": "Purchase"})).await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "purchase");
    assert_eq!(renamed["color"], "#00FF7F");
    assert_eq!(renamed["eventsCount"], 1);
    let (status, body) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    let (status, body) = relay
        .send_event(&key, json!({"category": "purchase"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"message": "You dont have a category named \"sale\""})
        )
    );
    // Past events keep the name they were sent with.
    let (_, event) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(event["category"], "sale");

    // Changing a category that does not exist: 404.
    let (status, body) = patch("nope", json!({"color": "#000000"})).await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    relay.stop().await;
}

#[tokio::test]
async fn delete_answers_204_and_the_category_is_gone_everywhere() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // Every account is created before any event: the CLI runs while the test thread waits.
    let (_, other) = relay.create_account(&[]).await;
    let (status, body) = relay.send_event(&key, json!({"category": "sale"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let event_id = body["eventId"].as_str().expect("eventId").to_string();
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 1);

    let (status, text) = raw(
        &relay,
        Method::DELETE,
        "/api/v1/categories/SALE",
        &key,
        None,
    )
    .await;
    assert_eq!((status, text.as_str()), (StatusCode::NO_CONTENT, ""));

    let (status, body) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    let (status, text) = raw(
        &relay,
        Method::POST,
        "/api/v1/event",
        &key,
        Some(r#"{"category":"sale"}"#),
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (
            StatusCode::NOT_FOUND,
            r#"{"message":"You dont have a category named \"sale\""}"#
        )
    );
    let (_, list) = relay
        .call(Method::GET, "/api/v1/categories", Some(&key), None)
        .await;
    assert_eq!(list, json!([]));
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 0);
    assert_eq!(
        quota(&relay, &key).await["eventsUsed"],
        1,
        "the refused event did not count"
    );

    // Deleting again: 404.
    let (status, body) = relay
        .call(Method::DELETE, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);

    // Its events stay, and a new category of the same name starts from zero.
    let (status, event) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["category"], "sale");
    let recreated = create_ok(&relay, &key, "sale").await;
    assert_eq!(recreated["eventsCount"], 0);
    let (_, sale) = relay
        .call(Method::GET, "/api/v1/categories/sale", Some(&key), None)
        .await;
    assert_eq!(sale["eventsCount"], 0, "{sale}");
    assert_eq!(sale["lastPing"], Value::Null, "{sale}");

    // Another account cannot delete mine.
    let (status, body) = relay
        .call(
            Method::DELETE,
            "/api/v1/categories/sale",
            Some(&other),
            None,
        )
        .await;
    assert_json_message(status, StatusCode::NOT_FOUND, &body);
    assert_eq!(quota(&relay, &key).await["categoriesUsed"], 1);
    relay.stop().await;
}
