//! The OpenAPI document as a product: the committed copy matches the code, and the document is
//! complete enough that a generated client works on the first try (every operation, response,
//! property and provider field described, exact messages as examples). `openapi/check.sh`
//! goes further: it validates the document, builds Python and TypeScript clients against a
//! live relay, and fuzzes the relay with schemathesis.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::Relay;

const REGENERATE: &str = "the committed OpenAPI document is out of date; regenerate it with\n  \
    cargo run -q -- openapi > openapi/openapi.json\n  \
    cargo run -q -- openapi --format yaml > openapi/openapi.yaml";

fn spec() -> Value {
    serde_json::from_str(&pingpilot::core::api::openapi_json()).expect("json")
}

#[test]
fn committed_json_matches_the_code() {
    let committed = include_str!("../../openapi/openapi.json");
    assert!(
        committed == pingpilot::core::api::openapi_json(),
        "{REGENERATE}"
    );
}

#[test]
fn committed_yaml_matches_the_code() {
    let committed = include_str!("../../openapi/openapi.yaml");
    assert!(
        committed == pingpilot::core::api::openapi_yaml(),
        "{REGENERATE}"
    );
}

#[test]
fn no_path_or_key_appears_twice() {
    // Two poem-openapi `OpenApi` impls documenting one path (`POST /events` next to
    // `GET /events`) once wrote the path twice; JSON parsers keep one of them, YAML parsers and
    // openapi-typescript refuse. A document with a repeated key does not survive a round trip
    // through a JSON value (which keeps one of them).
    let document = pingpilot::core::api::openapi_json();
    let value: Value = serde_json::from_str(&document).expect("json");
    assert!(
        serde_json::to_string_pretty(&value).expect("json") == document,
        "the document repeats a key"
    );
}

fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            all.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    all
}

#[test]
fn every_operation_is_described_and_takes_the_bearer_key() {
    let spec = spec();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&spec) {
        let what = format!("{method} {path}");
        assert_eq!(operation["security"], json!([{"bearerAuth": []}]), "{what}");
        let id = operation["operationId"].as_str().expect(&what);
        assert!(
            id.chars().all(|c| c.is_ascii_lowercase() || c == '_') && ids.insert(id.to_string()),
            "{what}: operation id {id:?} is not a unique snake_case name"
        );
        for key in ["summary", "description"] {
            assert!(
                operation[key].as_str().is_some_and(|s| !s.is_empty()),
                "{what}: no {key}"
            );
        }
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            assert!(
                parameter["description"].is_string(),
                "{what}: parameter {} has no description",
                parameter["name"]
            );
        }
        if let Some(body) = operation.get("requestBody") {
            assert!(
                body["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{what}: the body is not a named JSON schema"
            );
        }
        let responses = operation["responses"].as_object().expect(&what);
        assert!(responses.contains_key("401"), "{what}: no 401");
        assert!(responses.contains_key("500"), "{what}: no 500");
        for (status, response) in responses {
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{what} {status}: no description"
            );
            if status == "204" {
                continue;
            }
            let schema = &response["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{what} {status}: no application/json body"
            );
            if status.starts_with('4') || status.starts_with('5') {
                let expected = if status == "422" {
                    "#/components/schemas/ValidationFailure"
                } else {
                    "#/components/schemas/ErrorMessage"
                };
                assert_eq!(schema["allOf"][0]["$ref"], expected, "{what} {status}");
                assert!(
                    schema["example"]["message"].is_string(),
                    "{what} {status}: no example message"
                );
            }
        }
    }
    assert_eq!(ids.len(), 18, "{ids:?}");
}

#[test]
fn send_event_documents_every_answer_with_its_exact_message() {
    let spec = spec();
    for path in ["/event", "/events"] {
        let responses = &spec["paths"][path]["post"]["responses"];
        let statuses: Vec<&String> = responses.as_object().expect(path).keys().collect();
        assert_eq!(
            statuses,
            [
                "200", "400", "401", "403", "404", "408", "409", "413", "415", "422", "429", "500",
                "503"
            ],
            "{path}"
        );
        let example = |status: &str| {
            responses[status]["content"]["application/json"]["schema"]["example"].clone()
        };
        let described = |status: &str| responses[status]["description"].as_str().unwrap_or("");
        assert_eq!(
            example("400"),
            json!({"message": "Invalid JSON request body"})
        );
        assert_eq!(example("401"), json!({"message": "Invalid API key"}));
        assert_eq!(
            example("403"),
            json!({"message": "Please enter your discord ID in your account settings"})
        );
        assert_eq!(
            example("404"),
            json!({"message": "You dont have a category named \"sale\""})
        );
        assert_eq!(
            example("413"),
            json!({"message": "Request body too large: at most 64 KiB"})
        );
        assert!(
            example("415")["message"]
                .as_str()
                .expect("415")
                .starts_with("Unsupported content type")
        );
        assert_eq!(
            example("422"),
            json!({
                "message": "Invalid request body: category: required",
                "errors": [{"path": "category", "message": "required"}]
            })
        );
        assert_eq!(
            example("408"),
            json!({"message": "Request body not received in time"})
        );
        assert_eq!(
            example("429"),
            json!({"message": "Too many requests: slow down and retry after the number of seconds in Retry-After"})
        );
        assert!(
            described("429")
                .contains("Monthly quota reached. Please upgrade your plan for more events"),
            "the quota's 429 is described too"
        );
        assert_eq!(
            responses["429"]["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        assert_eq!(example("500"), json!({"message": "Internal server error"}));
        assert_eq!(
            example("503"),
            json!({"message": "Service unavailable, please retry"})
        );
        assert_eq!(responses["503"]["headers"]["Retry-After"]["required"], true);
        let accepted = &spec["components"]["schemas"]["EventAccepted"]["example"];
        assert_eq!(accepted["message"], "Event processed successfully");
        // Every exact message of the 401s and 403s is in the descriptions.
        for message in [
            "Unauthorized",
            "Invalid auth header format. Expected: 'Bearer [API_KEY]'",
            "Invalid API key",
        ] {
            assert!(described("401").contains(message), "{message}");
        }
        for message in [
            "Please enter your discord ID in your account settings",
            "Telegram username not set. Please set your telegram username in your account \
             settings to receive notifications",
            "No notification channel is enabled. Enable at least one channel in your account \
             settings",
        ] {
            assert!(described("403").contains(message), "{message}");
        }
        assert!(described("500").contains("Error processing event"));
    }
}

#[test]
fn every_schema_and_property_is_described_with_examples() {
    let spec = spec();
    let schemas = spec["components"]["schemas"].as_object().expect("schemas");
    let names: BTreeSet<&str> = schemas.keys().map(String::as_str).collect();
    for name in [
        "EventRequest",
        "EventAccepted",
        "ErrorMessage",
        "ValidationFailure",
        "FieldError",
        "Account",
        "AccountUpdate",
        "Channel",
        "Category",
        "NewCategory",
        "CategoryUpdate",
        "Event",
        "EventSummary",
        "EventPage",
        "Delivery",
        "DeliveryAttempt",
        "DeliveryStatus",
        "ApiKey",
        "ApiKeyCreated",
        "Quota",
        "RetryResult",
    ] {
        assert!(names.contains(name), "no schema {name}: {names:?}");
    }
    for (name, schema) in schemas {
        assert!(schema["description"].is_string(), "{name}: no description");
        if schema["type"] != "object" {
            continue;
        }
        assert!(schema["example"].is_object(), "{name}: no example");
        for (property, value) in schema["properties"].as_object().expect(name) {
            // An enumeration is referenced bare: its own schema describes it.
            assert!(
                value["description"].is_string() || value["$ref"].is_string(),
                "{name}.{property}: no description"
            );
        }
    }
    // Request bodies accept no other properties, and say so.
    for name in [
        "EventRequest",
        "NewCategory",
        "CategoryUpdate",
        "AccountUpdate",
    ] {
        assert_eq!(
            schemas[name]["additionalProperties"]["oneOf"],
            json!([{}, {}]),
            "{name}"
        );
    }
}

#[test]
fn provider_fields_are_typed_properties_from_their_registrations() {
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    let fields: Vec<_> = pingpilot::core::provider::account_fields().collect();
    let names: Vec<&str> = fields.iter().map(|(_, field)| field.name).collect();
    assert!(
        names.starts_with(&["discordId", "telegramUsername"]),
        "{names:?}"
    );
    for (provider, field) in fields {
        let declared = serde_json::to_value((field.schema)()).expect("schema");
        for schema in ["Account", "AccountUpdate"] {
            let property = &schemas[schema]["properties"][field.name];
            assert_eq!(
                property["type"], declared["type"],
                "{schema}.{}",
                field.name
            );
            assert_eq!(
                property["pattern"], declared["pattern"],
                "{schema}.{}",
                field.name
            );
            assert_eq!(property["description"], field.description);
            assert_eq!(property["nullable"], true);
            assert_eq!(property["example"], declared["examples"][0]);
        }
        assert!(
            schemas["Account"]["required"]
                .as_array()
                .expect("required")
                .contains(&json!(field.name))
        );
        let switch = &schemas["AccountUpdate"]["properties"]["channels"]["properties"][provider.id];
        assert_eq!(switch["type"], "boolean", "channels.{}", provider.id);
    }
}

#[tokio::test]
async fn swagger_ui_is_served_offline_and_405_names_the_allowed_methods() {
    let relay = Relay::start().await;
    for path in ["/docs", "/docs/"] {
        let docs = relay.request(Method::GET, path).send().await.expect("docs");
        assert_eq!(docs.status(), StatusCode::OK, "{path}");
        let html = docs.text().await.expect("html");
        assert!(html.contains("SwaggerUIBundle"), "{path}");
        // The script, the styles and the document are in the page: nothing is fetched.
        for remote in ["src=\"http", "href=\"http", "url: \"http", "cdn"] {
            assert!(!html.contains(remote), "{path} loads {remote}");
        }
        assert!(
            html.contains("\"send_event\""),
            "{path}: the document is not in the page"
        );
    }
    for (method, path, allow) in [
        (Method::PUT, "/api/v1/event", "POST"),
        (Method::DELETE, "/api/v1/events", "GET, HEAD, POST"),
        (
            Method::POST,
            "/api/v1/categories/sale",
            "GET, HEAD, PATCH, DELETE",
        ),
        (Method::POST, "/healthz", "GET, HEAD"),
    ] {
        let answer = relay
            .request(method.clone(), path)
            .send()
            .await
            .expect("405");
        assert_eq!(
            answer.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allowed: BTreeSet<&str> = answer
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .split(", ")
            .collect();
        let expected: BTreeSet<&str> = allow.split(", ").collect();
        assert_eq!(allowed, expected, "{method} {path}");
    }
    relay.stop().await;
}
