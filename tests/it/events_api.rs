//! Reading events back (`/api/v1/events`), retrying failed deliveries, the quota, and the JSON
//! answers to unknown routes and wrong methods (SPEC §1, §4).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::Mock;
use wiremock::matchers::{method, path};

use crate::helpers::*;

// ----- time, written and read as RFC 3339 without the server's help -----

const DAY_MS: i64 = 86_400_000;

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = if year >= 0 { year } else { year - 399 } / 400;
    let yoe = year - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// `millis` written in RFC 3339 with millisecond precision, at a UTC offset in minutes.
fn rfc3339(millis: i64, offset_minutes: i64) -> String {
    let local = millis + offset_minutes * 60_000;
    let (year, month, day) = civil_from_days(local.div_euclid(DAY_MS));
    let in_day = local.rem_euclid(DAY_MS);
    let zone = if offset_minutes == 0 {
        "Z".to_string()
    } else {
        let sign = if offset_minutes > 0 { '+' } else { '-' };
        let abs = offset_minutes.abs();
        format!("{sign}{:02}:{:02}", abs / 60, abs % 60)
    };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// Milliseconds since the epoch of an RFC 3339 date-time; `None` when it is not one.
pub fn parse_rfc3339_millis(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse::<i64>().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let hours: i64 = rest[1..3].parse().ok()?;
            let minutes: i64 = rest[4..6].parse().ok()?;
            sign * (hours * 60 + minutes)
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(
        days * DAY_MS + hour * 3_600_000 + minute * 60_000 + second * 1000 + millis
            - offset * 60_000,
    )
}

fn next_month_start(millis: i64) -> i64 {
    let (year, month, _) = civil_from_days(millis.div_euclid(DAY_MS));
    let (year, month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    days_from_civil(year, month, 1) * DAY_MS
}

#[test]
fn the_time_helpers_round_trip() {
    assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000, 0), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(0, 120), "1970-01-01T02:00:00.000+02:00");
    assert_eq!(rfc3339(0, -300), "1969-12-31T19:00:00.000-05:00");
    for millis in [0, 1_767_225_599_999, 1_769_817_600_123, now_millis()] {
        for offset in [0, 120, -300] {
            assert_eq!(parse_rfc3339_millis(&rfc3339(millis, offset)), Some(millis));
        }
    }
    assert_eq!(
        parse_rfc3339_millis("2026-02-01T00:00:00Z"),
        Some(1_769_904_000_000)
    );
    assert_eq!(next_month_start(1_767_225_599_999), 1_767_225_600_000);
    assert_eq!(parse_rfc3339_millis("yesterday"), None);
    assert_eq!(parse_rfc3339_millis("2026-01-31"), None);
}

// ----- helpers -----

/// Sends an event that must be accepted; returns its id. Waits a little so that events sent
/// one after the other have distinct creation times.
async fn send_ok(relay: &Relay, key: &str, body: Value) -> String {
    let (status, answer) = relay.send_event(key, body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    tokio::time::sleep(Duration::from_millis(3)).await;
    answer["eventId"].as_str().expect("eventId").to_string()
}

/// Percent-encodes a query string value (everything but RFC 3986's unreserved characters).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `/api/v1/events` with the query parameters, encoded.
fn events_path(query: &[(&str, &str)]) -> String {
    let pairs: Vec<String> = query
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect();
    if pairs.is_empty() {
        "/api/v1/events".to_string()
    } else {
        format!("/api/v1/events?{}", pairs.join("&"))
    }
}

/// `GET /api/v1/events` with query parameters; returns the status and the exact body text.
async fn list_raw(relay: &Relay, key: &str, query: &[(&str, &str)]) -> (StatusCode, String) {
    let response = relay
        .request(Method::GET, &events_path(query))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("request");
    (response.status(), response.text().await.expect("body"))
}

/// A page of events that must be answered with 200.
async fn list(relay: &Relay, key: &str, query: &[(&str, &str)]) -> Value {
    let (status, text) = list_raw(relay, key, query).await;
    assert_eq!(status, StatusCode::OK, "{query:?}: {text}");
    parse_body(&text)
}

fn ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events array: {page}"))
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_string())
        .collect()
}

/// Asserts the page for `query` holds exactly `expected` (given oldest first) and no cursor.
async fn check(
    relay: &Relay,
    key: &str,
    query: Vec<(&str, String)>,
    expected: Vec<&String>,
) -> Value {
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let page = list(relay, key, &query).await;
    assert_eq!(ids(&page), newest_first(&expected), "{query:?}: {page}");
    assert_eq!(page["nextCursor"], Value::Null);
    page
}

fn newest_first(sent: &[&String]) -> Vec<String> {
    sent.iter().rev().map(|s| s.to_string()).collect()
}

fn sorted_keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .unwrap_or_else(|| panic!("object: {value}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

/// A JSON error answer: the status, a JSON content type and a non-empty message.
async fn assert_json_error(response: reqwest::Response, expected: StatusCode, what: &str) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = response.text().await.expect("body");
    assert_eq!(status, expected, "{what}: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}, body {text:?}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("{what}: the body is not JSON: {text:?}"));
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {text}"
    );
}

// ----- tests -----

#[tokio::test]
async fn the_list_is_newest_first_with_a_next_cursor() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // Every account is created before any event: the CLI runs while the test thread waits.
    let (_, other) = relay.create_account(&[]).await;
    let first = send_ok(
        &relay,
        &key,
        json!({"category": "Sale", "description": "first", "fields": {"n": 1}}),
    )
    .await;
    let second = send_ok(&relay, &key, json!({"category": "sale"})).await;
    let third = send_ok(
        &relay,
        &key,
        json!({"category": "sale", "description": "third"}),
    )
    .await;

    let (status, text) = list_raw(&relay, &key, &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(text.starts_with(r#"{"events":["#), "{text}");
    let page = parse_body(&text);
    assert_eq!(sorted_keys(&page), ["events", "nextCursor"]);
    assert_eq!(page["nextCursor"], Value::Null, "one page holds them all");
    assert_eq!(ids(&page), newest_first(&[&first, &second, &third]));

    let events = page["events"].as_array().expect("events");
    for event in events {
        for key in [
            "id",
            "category",
            "description",
            "fields",
            "deliveryStatus",
            "createdAt",
        ] {
            assert!(event.get(key).is_some(), "{key} in {event}");
        }
        assert_eq!(event["category"], "sale", "stored lower-cased");
        assert!(
            parse_rfc3339_millis(event["createdAt"].as_str().expect("createdAt")).is_some(),
            "{event}"
        );
    }
    assert_eq!(events[0]["description"], "third");
    assert_eq!(events[1]["description"], "A new sale event has occurred!");
    assert_eq!(events[1]["fields"], json!({}));
    assert_eq!(events[2]["fields"], json!({"n": 1}));
    let times: Vec<i64> = events
        .iter()
        .map(|e| parse_rfc3339_millis(e["createdAt"].as_str().expect("createdAt")).expect("time"))
        .collect();
    assert!(times[0] >= times[1] && times[1] >= times[2], "{times:?}");

    // Another account sees none of them.
    let (status, text) = list_raw(&relay, &other, &[]).await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, r#"{"events":[],"nextCursor":null}"#)
    );
    relay.stop().await;
}

#[tokio::test]
async fn limit_and_cursor_walk_every_event_once() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut sent = Vec::new();
    for i in 0..32 {
        sent.push(
            send_ok(
                &relay,
                &key,
                json!({"category": "sale", "fields": {"i": i}}),
            )
            .await,
        );
    }
    let all: Vec<String> = sent.iter().rev().cloned().collect();

    // Default page: 30.
    let page = list(&relay, &key, &[]).await;
    assert_eq!(ids(&page), all[..30]);
    assert!(page["nextCursor"].is_string(), "{}", page["nextCursor"]);
    let rest = list(
        &relay,
        &key,
        &[("cursor", page["nextCursor"].as_str().expect("cursor"))],
    )
    .await;
    assert_eq!(ids(&rest), all[30..]);
    assert_eq!(rest["nextCursor"], Value::Null);

    // An exact fit ends with a null cursor; one less leaves one for the next page.
    let page = list(&relay, &key, &[("limit", "32")]).await;
    assert_eq!(ids(&page), all);
    assert_eq!(page["nextCursor"], Value::Null);
    let page = list(&relay, &key, &[("limit", "100")]).await;
    assert_eq!(ids(&page), all);
    assert_eq!(page["nextCursor"], Value::Null);
    let page = list(&relay, &key, &[("limit", "31")]).await;
    assert_eq!(ids(&page).len(), 31);
    let cursor = page["nextCursor"].as_str().expect("a cursor").to_string();
    let last = list(&relay, &key, &[("limit", "31"), ("cursor", &cursor)]).await;
    assert_eq!(ids(&last), all[31..]);
    assert_eq!(last["nextCursor"], Value::Null);

    // Walking with limit=5: 7 pages, every event once, in order.
    let mut walked = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("limit", "5")];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.as_str()));
        }
        let page = list(&relay, &key, &query).await;
        pages += 1;
        let page_ids = ids(&page);
        assert!(page_ids.len() <= 5 && !page_ids.is_empty(), "{page}");
        walked.extend(page_ids);
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
        assert!(pages < 20, "the walk does not end");
    }
    assert_eq!(pages, 7);
    assert_eq!(walked, all, "every event once, newest first");

    // limit=1 pages one by one.
    let one = list(&relay, &key, &[("limit", "1")]).await;
    assert_eq!(ids(&one), all[..1]);
    assert!(one["nextCursor"].is_string());
    relay.stop().await;
}

#[tokio::test]
async fn filters_by_category_status_time_range_since_and_until() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "refund", "color": "#FF0000"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let before_all = now_millis() - 1;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let s1 = send_ok(&relay, &key, json!({"category": "sale"})).await;
    let r1 = send_ok(&relay, &key, json!({"category": "refund"})).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = now_millis();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let s2 = send_ok(&relay, &key, json!({"category": "sale"})).await;
    for id in [&s1, &r1, &s2] {
        let event = relay.wait_final(&key, id).await;
        assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t2 = now_millis();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Telegram on but never linked: this one stays PENDING.
    let (status, body) = relay
        .patch_account(&key, json!({"channels": {"telegram": true}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s3 = send_ok(&relay, &key, json!({"category": "sale"})).await;

    check(&relay, &key, vec![], vec![&s1, &r1, &s2, &s3]).await;
    check(
        &relay,
        &key,
        vec![("category", "SALE".into())],
        vec![&s1, &s2, &s3],
    )
    .await;
    check(&relay, &key, vec![("category", "refund".into())], vec![&r1]).await;
    check(&relay, &key, vec![("category", "nope".into())], vec![]).await;

    let page = check(
        &relay,
        &key,
        vec![("status", "DELIVERED".into())],
        vec![&s1, &r1, &s2],
    )
    .await;
    for event in page["events"].as_array().expect("events") {
        assert_eq!(event["deliveryStatus"], "DELIVERED");
    }
    check(&relay, &key, vec![("status", "PENDING".into())], vec![&s3]).await;
    check(&relay, &key, vec![("status", "FAILED".into())], vec![]).await;
    check(
        &relay,
        &key,
        vec![("status", "DELIVERED".into()), ("category", "sale".into())],
        vec![&s1, &s2],
    )
    .await;

    for range in ["today", "week", "month"] {
        check(
            &relay,
            &key,
            vec![("timeRange", range.into())],
            vec![&s1, &r1, &s2, &s3],
        )
        .await;
        check(
            &relay,
            &key,
            vec![
                ("timeRange", range.into()),
                ("until", rfc3339(before_all, 0)),
            ],
            vec![],
        )
        .await;
    }

    check(
        &relay,
        &key,
        vec![("since", rfc3339(t1, 0))],
        vec![&s2, &s3],
    )
    .await;
    check(
        &relay,
        &key,
        vec![("until", rfc3339(t2, 0))],
        vec![&s1, &r1, &s2],
    )
    .await;
    check(
        &relay,
        &key,
        vec![("since", rfc3339(t1, 0)), ("until", rfc3339(t2, 0))],
        vec![&s2],
    )
    .await;
    // Any offset names the same instant.
    check(
        &relay,
        &key,
        vec![("since", rfc3339(t1, 120))],
        vec![&s2, &s3],
    )
    .await;
    check(
        &relay,
        &key,
        vec![("until", rfc3339(t2, -300))],
        vec![&s1, &r1, &s2],
    )
    .await;
    check(
        &relay,
        &key,
        vec![("since", rfc3339(t1, 330)), ("category", "sale".into())],
        vec![&s2, &s3],
    )
    .await;
    check(
        &relay,
        &key,
        vec![("since", rfc3339(now_millis() + 60_000, 0))],
        vec![],
    )
    .await;
    check(
        &relay,
        &key,
        vec![
            ("since", rfc3339(before_all, 0)),
            ("timeRange", "today".into()),
        ],
        vec![&s1, &r1, &s2, &s3],
    )
    .await;

    // Filters and paging together.
    let page = list(&relay, &key, &[("category", "sale"), ("limit", "2")]).await;
    assert_eq!(ids(&page), newest_first(&[&s2, &s3]));
    let cursor = page["nextCursor"].as_str().expect("cursor").to_string();
    let page = list(
        &relay,
        &key,
        &[("category", "sale"), ("limit", "2"), ("cursor", &cursor)],
    )
    .await;
    assert_eq!(ids(&page), newest_first(&[&s1]));
    assert_eq!(page["nextCursor"], Value::Null);
    relay.stop().await;
}

#[tokio::test]
async fn invalid_query_parameters_answer_400_json_never_500() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    send_ok(&relay, &key, json!({"category": "sale"})).await;
    let bad: [(&str, &str); 14] = [
        ("limit", "0"),
        ("limit", "101"),
        ("limit", "abc"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("limit", ""),
        ("limit", "99999999999999999999"),
        ("status", "nope"),
        ("timeRange", "year"),
        ("timeRange", ""),
        ("since", "yesterday"),
        ("since", "2026-01-31"),
        ("until", "2026-13-01T00:00:00Z"),
        ("until", "1700000000"),
    ];
    for (name, value) in bad {
        let response = relay
            .request(Method::GET, &events_path(&[(name, value)]))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("request");
        assert_json_error(
            response,
            StatusCode::BAD_REQUEST,
            &format!("{name}={value}"),
        )
        .await;
    }
    // The edges of the range are fine.
    for limit in ["1", "100"] {
        list(&relay, &key, &[("limit", limit)]).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn an_event_reads_back_with_fields_in_the_order_sent_and_its_deliveries() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    relay.link_telegram(&key).await;
    let sent = r#"{"category":"Sale","description":"Order <#1>","fields":{"zeta":"last letter","alpha":99.99,"mid":true,"num":-3}}"#;
    let response = relay
        .request(Method::POST, "/api/v1/event")
        .header("Authorization", format!("Bearer {key}"))
        .header("Content-Type", "application/json")
        .body(sent)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let accepted: Value = response.json().await.expect("json");
    let id = accepted["eventId"].as_str().expect("eventId").to_string();
    relay.wait_final(&key, &id).await;

    let response = relay
        .request(Method::GET, &format!("/api/v1/events/{id}"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.expect("body");
    let positions: Vec<usize> = [
        r#""zeta":"last letter""#,
        r#""alpha":99.99"#,
        r#""mid":true"#,
        r#""num":-3"#,
    ]
    .iter()
    .map(|needle| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} in {text}"))
    })
    .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields in the order sent (zeta, alpha, mid, num): {text}"
    );

    let event = parse_body(&text);
    assert_eq!(
        sorted_keys(&event),
        [
            "category",
            "createdAt",
            "deliveries",
            "deliveryStatus",
            "description",
            "fields",
            "id"
        ]
    );
    assert_eq!(event["id"], json!(id));
    assert_eq!(event["category"], "sale");
    assert_eq!(event["description"], "Order <#1>");
    assert_eq!(
        event["fields"],
        json!({"zeta": "last letter", "alpha": 99.99, "mid": true, "num": -3})
    );
    assert_eq!(event["deliveryStatus"], "DELIVERED");
    let created =
        parse_rfc3339_millis(event["createdAt"].as_str().expect("createdAt")).expect("RFC 3339");

    let deliveries = event["deliveries"].as_array().expect("deliveries");
    let providers: Vec<&str> = deliveries
        .iter()
        .map(|d| d["provider"].as_str().expect("provider"))
        .collect();
    assert_eq!(providers, ["discord", "telegram"]);
    for delivery in deliveries {
        for key in ["provider", "status", "attempts", "lastError", "deliveredAt"] {
            assert!(delivery.get(key).is_some(), "{key} in {delivery}");
        }
        assert_eq!(delivery["status"], "DELIVERED", "{delivery}");
        assert_eq!(delivery["lastError"], Value::Null, "{delivery}");
        let delivered =
            parse_rfc3339_millis(delivery["deliveredAt"].as_str().expect("deliveredAt"))
                .expect("RFC 3339");
        assert!(delivered >= created, "{delivery}");
        let attempts = delivery["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "one attempt was enough: {delivery}");
        let attempt = &attempts[0];
        for key in ["startedAt", "durationMs", "httpStatus", "error"] {
            assert!(attempt.get(key).is_some(), "{key} in {attempt}");
        }
        assert_eq!(attempt["httpStatus"], 200, "{attempt}");
        assert_eq!(attempt["error"], Value::Null, "{attempt}");
        assert!(
            attempt["durationMs"].as_i64().is_some_and(|d| d >= 0),
            "{attempt}"
        );
        let started = parse_rfc3339_millis(attempt["startedAt"].as_str().expect("startedAt"))
            .expect("RFC 3339");
        assert!(started >= created && started <= delivered, "{delivery}");
    }

    // The list keeps the same order.
    let (_, text) = list_raw(&relay, &key, &[]).await;
    let zeta = text.find(r#""zeta""#).expect("zeta");
    let alpha = text.find(r#""alpha""#).expect("alpha");
    assert!(zeta < alpha, "{text}");
    relay.stop().await;
}

#[tokio::test]
async fn unknown_and_foreign_event_ids_answer_404() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let other = relay.ready_account().await;
    let mine = send_ok(&relay, &key, json!({"category": "sale"})).await;
    let theirs = send_ok(&relay, &other, json!({"category": "sale"})).await;

    for id in ["evt_01J00000000000000000000000", "nope", theirs.as_str()] {
        for (method, path) in [
            (Method::GET, format!("/api/v1/events/{id}")),
            (Method::POST, format!("/api/v1/events/{id}/retry")),
        ] {
            let response = relay
                .request(method.clone(), &path)
                .header("Authorization", format!("Bearer {key}"))
                .send()
                .await
                .expect("request");
            assert_json_error(response, StatusCode::NOT_FOUND, &format!("{method} {path}")).await;
        }
    }
    // Each owner still reads their own.
    let (status, _) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{mine}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, event) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{theirs}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    relay.stop().await;
}

#[tokio::test]
async fn retry_requeues_failed_deliveries_until_they_are_delivered() {
    let relay = Relay::start_with("", false).await;
    let key = relay.discord_only_account().await;
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(discord_dm_refused())
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .named("DM refused once")
        .mount(&relay.discord)
        .await;

    let id = send_ok(&relay, &key, json!({"category": "sale"})).await;
    let failed = relay.wait_final(&key, &id).await;
    assert_eq!(failed["deliveryStatus"], "FAILED", "{failed}");
    let delivery = &failed["deliveries"][0];
    assert_eq!(failed["deliveries"].as_array().map(Vec::len), Some(1));
    assert_eq!(delivery["provider"], "discord");
    assert_eq!(delivery["status"], "FAILED");
    assert_eq!(
        delivery["attempts"].as_array().map(Vec::len),
        Some(1),
        "a permanent failure is not retried: {delivery}"
    );
    assert_eq!(delivery["attempts"][0]["httpStatus"], 403);
    assert!(
        delivery["lastError"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{delivery}"
    );
    assert_eq!(delivery["deliveredAt"], Value::Null);
    let (_, page) = relay
        .call(
            Method::GET,
            "/api/v1/events?status=FAILED",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(ids(&page), vec![id.as_str()]);

    // The user fixes their Discord settings; the retry sends it.
    mount_discord_ok(&relay.discord).await;
    let (status, body) = relay
        .call(
            Method::POST,
            &format!("/api/v1/events/{id}/retry"),
            Some(&key),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    assert!(body.is_object(), "a JSON answer: {body}");
    let (_, right_after) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_ne!(
        right_after["deliveryStatus"], "FAILED",
        "re-queued at once: {right_after}"
    );

    let delivered = relay.wait_final(&key, &id).await;
    assert_eq!(delivered["deliveryStatus"], "DELIVERED", "{delivered}");
    let delivery = &delivered["deliveries"][0];
    assert_eq!(delivery["status"], "DELIVERED");
    assert!(delivery["deliveredAt"].is_string(), "{delivery}");
    let attempts = delivery["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "both attempts are kept: {delivery}");
    assert_eq!(attempts[0]["httpStatus"], 403);
    assert_eq!(attempts[1]["httpStatus"], 200);
    assert_eq!(
        bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages"))
            .await
            .len(),
        1
    );

    // Retrying a delivered event sends nothing again.
    let (status, body) = relay
        .call(
            Method::POST,
            &format!("/api/v1/events/{id}/retry"),
            Some(&key),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}: {body}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(still["deliveryStatus"], "DELIVERED");
    assert_eq!(
        still["deliveries"][0]["attempts"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages"))
            .await
            .len(),
        1,
        "no second message"
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_quota_shows_the_plan_and_counts_accepted_events_only() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    // Every account is created before any event: the CLI runs while the test thread waits.
    let (_, pro) = relay.create_account(&["--plan", "pro"]).await;
    let (_, unlimited) = relay.create_account(&["--plan", "unlimited"]).await;
    let (status, text) = {
        let response = relay
            .request(Method::GET, "/api/v1/quota")
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("request");
        (response.status(), response.text().await.expect("body"))
    };
    assert_eq!(status, StatusCode::OK, "{text}");
    let quota = parse_body(&text);
    assert_eq!(
        sorted_keys(&quota),
        [
            "categoriesLimit",
            "categoriesUsed",
            "eventsLimit",
            "eventsUsed",
            "plan",
            "resetDate"
        ]
    );
    assert_eq!(quota["plan"], "free");
    assert_eq!(quota["eventsUsed"], 0);
    assert_eq!(quota["eventsLimit"], 100);
    assert_eq!(quota["categoriesUsed"], 1);
    assert_eq!(quota["categoriesLimit"], 3);
    let reset = parse_rfc3339_millis(quota["resetDate"].as_str().expect("resetDate"))
        .expect("resetDate is RFC 3339");
    let now = now_millis();
    assert!(
        reset == next_month_start(now) || reset == next_month_start(now + 60_000),
        "the first of next month, 00:00 UTC: {}",
        quota["resetDate"]
    );

    for _ in 0..3 {
        send_ok(&relay, &key, json!({"category": "sale"})).await;
    }
    // Refused events do not count.
    let (status, _) = relay.send_event(&key, json!({"category": "nope"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = relay
        .send_event(&key, json!({"category": "sale", "fields": {"x": null}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 3, "{quota}");

    // Per account, and per plan.
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&pro), None)
        .await;
    assert_eq!(
        (
            &quota["plan"],
            &quota["eventsUsed"],
            &quota["eventsLimit"],
            &quota["categoriesUsed"],
            &quota["categoriesLimit"]
        ),
        (
            &json!("pro"),
            &json!(0),
            &json!(1000),
            &json!(0),
            &json!(10)
        )
    );
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&unlimited), None)
        .await;
    assert_eq!(quota["plan"], "unlimited");
    assert_eq!(quota["eventsLimit"], Value::Null, "{quota}");
    assert_eq!(quota["categoriesLimit"], Value::Null, "{quota}");
    relay.stop().await;
}

#[tokio::test]
async fn unknown_routes_answer_404_and_wrong_methods_405_in_json() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let not_found = [
        (Method::GET, "/api/v1/nope"),
        (Method::POST, "/api/v1/nope"),
        (Method::GET, "/api/v1/account/nope"),
        (Method::GET, "/api/v2/account"),
        (Method::GET, "/nope"),
        (Method::GET, "/api/v1/events/x/y/z"),
    ];
    let not_allowed = [
        (Method::PUT, "/api/v1/account"),
        (Method::DELETE, "/api/v1/account"),
        (Method::POST, "/api/v1/quota"),
        (Method::DELETE, "/api/v1/events"),
        (Method::PUT, "/api/v1/categories/sale"),
        (Method::PUT, "/api/v1/account/api-keys"),
        (Method::GET, "/api/v1/events/evt_x/retry"),
        (Method::GET, "/api/v1/event"),
    ];
    for auth in [None, Some(format!("Bearer {key}"))] {
        for (expected, routes) in [
            (StatusCode::NOT_FOUND, &not_found[..]),
            (StatusCode::METHOD_NOT_ALLOWED, &not_allowed[..]),
        ] {
            for (method, path) in routes {
                let mut request = relay.request(method.clone(), path);
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                let response = request.send().await.expect("request");
                assert_json_error(
                    response,
                    expected,
                    &format!("{method} {path} (auth: {})", auth.is_some()),
                )
                .await;
            }
        }
    }
    relay.stop().await;
}
