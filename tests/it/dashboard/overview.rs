//! The overview: category cards with their counts, quick start, the create form with the API's
//! rules and messages, deleting after a confirmation, the plan's limit, CSRF.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Browser;
use crate::helpers::Relay;

const LIMIT_MESSAGE: &str =
    "You have reached the maximum number of event categories (3) for your plan.";

/// The account's categories as the API lists them, by name.
async fn api_categories(relay: &Relay, key: &str) -> Vec<Value> {
    let (status, body) = relay
        .call(Method::GET, "/api/v1/categories", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().cloned().expect("a list")
}

async fn api_category(relay: &Relay, key: &str, name: &str) -> Option<Value> {
    api_categories(relay, key)
        .await
        .into_iter()
        .find(|category| category["name"] == name)
}

async fn create_by_api(relay: &Relay, key: &str, name: &str) {
    let (status, body) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(key),
            Some(json!({"name": name, "color": "#123456"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn signed_out_browsers_are_sent_to_sign_in() {
    let relay = Relay::start().await;
    let mut browser = Browser::new(&relay);
    for path in [
        "/dashboard",
        "/dashboard/categories/sale",
        "/dashboard/categories/sale/events",
        "/dashboard/categories/sale/delete",
    ] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/dashboard/login"), "{path}");
    }
    for path in [
        "/dashboard/categories",
        "/dashboard/quick-start",
        "/dashboard/categories/sale/delete",
    ] {
        let page = browser.post(path, &[("csrf", "x")]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(page.location.as_deref(), Some("/dashboard/login"), "{path}");
    }
    relay.stop().await;
}

#[tokio::test]
async fn cards_show_each_category_with_its_events_this_month() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    create_by_api(&relay, &key, "deploys").await;
    for _ in 0..2 {
        let (status, body) = relay
            .send_event(&key, json!({"category": "sale", "fields": {"amount": 5}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.assert_contains(&[
        "<h1>Categories</h1>",
        "2 of 3 categories on the free plan",
        r#"<a href="/dashboard/categories/sale">sale</a>"#,
        r#"<a href="/dashboard/categories/deploys">deploys</a>"#,
        "💰",
        "#FFB02E",
        "#123456",
        "<strong>2</strong> events this month",
        "<strong>0</strong> events this month",
        r#"role="img" aria-label="2 events in the last 14 days""#,
        "No events yet",
        r#"href="/dashboard/categories/sale/delete""#,
        "Quick start",
        "Create a category",
    ]);
    // The card of `sale` shows when its last event came (deploys has none).
    let sale_card = page
        .body
        .split("categories/sale\">")
        .nth(1)
        .expect("sale card");
    let sale_card = sale_card.split("</article>").next().unwrap_or_default();
    assert!(sale_card.contains("Last <time datetime="), "{sale_card}");
    relay.stop().await;
}

#[tokio::test]
async fn quick_start_creates_the_three_starters_once() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    browser.get("/dashboard").await;

    let forged = browser
        .post("/dashboard/quick-start", &[("csrf", "wrong")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(api_categories(&relay, &key).await.len(), 1);

    let done = browser.post("/dashboard/quick-start", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let location = done.location.expect("a redirect");
    let page = browser.get(&location).await;
    page.assert_contains(&[
        "Created bug, question.",
        "Already there: sale.",
        "3 of 3 categories on the free plan",
    ]);
    // All three are there: the quick start has done its job.
    assert!(!page.body.contains("Quick start"));
    let bug = api_category(&relay, &key, "bug").await.expect("bug");
    assert_eq!(bug["emoji"], "🐛");
    assert_eq!(bug["color"], "#E03131");
    let question = api_category(&relay, &key, "question")
        .await
        .expect("question");
    assert_eq!(question["emoji"], "🤔");
    // The existing sale keeps its own colour.
    let sale = api_category(&relay, &key, "sale").await.expect("sale");
    assert_eq!(sale["color"], "#FFB02E");
    relay.stop().await;
}

#[tokio::test]
async fn quick_start_stops_at_the_plan_limit() {
    let relay = Relay::start().await;
    let key = relay.account_with_fields().await;
    create_by_api(&relay, &key, "one").await;
    create_by_api(&relay, &key, "two").await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard").await;
    page.assert_contains(&[
        "Only 1 more fit in your plan: bug would be created, not sale, question.",
    ]);

    let done = browser.post("/dashboard/quick-start", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let page = browser.get(&done.location.expect("a redirect")).await;
    page.assert_contains(&[
        "Created bug.",
        &format!("Not created: sale, question. {LIMIT_MESSAGE}"),
        r#"class="notice problem""#,
    ]);
    let mut names: Vec<String> = api_categories(&relay, &key)
        .await
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    assert_eq!(names, ["bug", "one", "two"]);
    relay.stop().await;
}

#[tokio::test]
async fn the_create_form_follows_the_api_rules() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let mut browser = Browser::signed_in(&relay, &key).await;
    let page = browser.get("/dashboard").await;
    page.assert_contains(&[
        r#"<label for="name">Name</label>"#,
        r#"<legend>Colour</legend>"#,
        r#"<legend>Emoji</legend>"#,
        r##"name="color" value="#2F9E44""##,
        r#"name="emoji" value="🚀""#,
        r#"<label for="custom_color">"#,
    ]);

    // A palette colour and emoji.
    let done = browser
        .post(
            "/dashboard/categories",
            &[("name", "Deploys"), ("color", "#2F9E44"), ("emoji", "🚀")],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/dashboard?done=created&name=deploys")
    );
    let page = browser.get("/dashboard?done=created&name=deploys").await;
    page.assert_contains(&["Category deploys created.", "2 of 3 categories"]);
    let deploys = api_category(&relay, &key, "deploys")
        .await
        .expect("created");
    assert_eq!(deploys["color"], "#2F9E44");
    assert_eq!(deploys["emoji"], "🚀");

    // Invalid: every rule broken is named, with the API's words; what was typed stays.
    let invalid = browser
        .post(
            "/dashboard/categories",
            &[
                ("name", "no way"),
                ("color", "#2F9E44"),
                ("custom_color", "red"),
            ],
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    invalid.assert_contains(&[
        "Invalid request body: name: must be 1 to 64 letters, digits or hyphens; color: must be \
         a colour written #RRGGBB",
        r#"value="no way""#,
        r#"value="red""#,
    ]);
    let no_colour = browser
        .post("/dashboard/categories", &[("name", "ok")])
        .await;
    assert_eq!(no_colour.status, StatusCode::UNPROCESSABLE_ENTITY);
    no_colour.assert_contains(&["color: required"]);

    // A duplicate, matched case-insensitively.
    let duplicate = browser
        .post(
            "/dashboard/categories",
            &[("name", "Sale"), ("color", "#1C7ED6")],
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    duplicate.assert_contains(&["A category named &quot;sale&quot; already exists"]);

    // A typed colour wins over the palette; the third category fills the free plan.
    let done = browser
        .post(
            "/dashboard/categories",
            &[
                ("name", "ops"),
                ("color", "#1C7ED6"),
                ("custom_color", "#abcdef"),
                ("custom_emoji", "🛠️"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let ops = api_category(&relay, &key, "ops").await.expect("created");
    assert_eq!(ops["color"], "#ABCDEF");
    assert_eq!(ops["emoji"], "🛠️");

    // Full: the form says so and the server refuses with the API's message.
    let page = browser.get("/dashboard").await;
    page.assert_contains(&[
        "3 of 3 categories on the free plan",
        LIMIT_MESSAGE,
        r#"<button class="primary" type="submit" disabled>Create category</button>"#,
    ]);
    let over = browser
        .post(
            "/dashboard/categories",
            &[("name", "more"), ("color", "#1C7ED6")],
        )
        .await;
    assert_eq!(over.status, StatusCode::FORBIDDEN);
    over.assert_contains(&[LIMIT_MESSAGE]);
    assert!(api_category(&relay, &key, "more").await.is_none());

    // A form without this session's token.
    let forged = browser
        .post(
            "/dashboard/categories",
            &[("name", "forged"), ("color", "#1C7ED6"), ("csrf", "wrong")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    forged.assert_contains(&["This form has expired"]);
    relay.stop().await;
}

#[tokio::test]
async fn deleting_asks_first_and_keeps_the_events() {
    let relay = Relay::start().await;
    let key = relay.ready_account().await;
    let (status, body) = relay
        .send_event(&key, json!({"category": "sale", "description": "kept"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut browser = Browser::signed_in(&relay, &key).await;

    let confirm = browser.get("/dashboard/categories/sale/delete").await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    confirm.assert_contains(&[
        "Delete the category sale?",
        "Its event stays in the history",
        r#"<form method="post" action="/dashboard/categories/sale/delete">"#,
        "Delete sale",
        "Cancel",
    ]);

    let forged = browser
        .post("/dashboard/categories/sale/delete", &[("csrf", "wrong")])
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(api_category(&relay, &key, "sale").await.is_some());

    let done = browser.post("/dashboard/categories/sale/delete", &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/dashboard?done=deleted&name=sale")
    );
    assert!(api_category(&relay, &key, "sale").await.is_none());
    let page = browser.get("/dashboard?done=deleted&name=sale").await;
    page.assert_contains(&[
        "Category sale deleted",
        "0 of 3 categories",
        "No categories yet",
    ]);
    let (status, events) = relay
        .call(Method::GET, "/api/v1/events", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(events["events"][0]["description"], "kept");

    let gone = browser.get("/dashboard/categories/sale/delete").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = browser.post("/dashboard/categories/sale/delete", &[]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    relay.stop().await;
}

#[tokio::test]
async fn another_accounts_categories_stay_out_of_reach() {
    let relay = Relay::start().await;
    let owner = relay.ready_account().await;
    let other = relay.account_with_fields().await;
    let mut browser = Browser::signed_in(&relay, &other).await;
    let page = browser.get("/dashboard").await;
    assert!(!page.body.contains("categories/sale"), "{}", page.body);
    let confirm = browser.get("/dashboard/categories/sale/delete").await;
    assert_eq!(confirm.status, StatusCode::NOT_FOUND);
    let delete = browser.post("/dashboard/categories/sale/delete", &[]).await;
    assert_eq!(delete.status, StatusCode::NOT_FOUND);
    assert!(api_category(&relay, &owner, "sale").await.is_some());
    relay.stop().await;
}
