//! The committed OpenAPI document matches what the code generates.

const REGENERATE: &str = "the committed OpenAPI document is out of date; regenerate it with\n  \
    cargo run -q -- openapi > openapi/openapi.json\n  \
    cargo run -q -- openapi --format yaml > openapi/openapi.yaml";

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
fn every_operation_but_the_public_ones_requires_the_bearer_key() {
    let spec: serde_json::Value =
        serde_json::from_str(&pingpilot::core::api::openapi_json()).expect("json");
    let paths = spec["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("path item") {
            operations += 1;
            assert_eq!(
                operation["security"],
                serde_json::json!([{"bearerAuth": []}]),
                "{method} {path}"
            );
            assert!(operation["operationId"].is_string(), "{method} {path}");
        }
    }
    assert!(operations >= 15, "{operations} operations");
}
