//! OpenTelemetry traces (`otel.endpoint`): with the `otel` feature, a span per request and per
//! delivery attempt reaches an OTLP/HTTP collector, and the log lines carry their trace ids;
//! without it, the setting is reported as unused.

use crate::helpers::*;

/// A configuration with Discord at `discord`, traces to `collector` and JSON logs.
fn traced_config(
    dir: &std::path::Path,
    database: &str,
    discord: &str,
    collector: &str,
) -> std::path::PathBuf {
    let sections = format!(
        "[providers.discord]\nbot_token = \"{DISCORD_TOKEN}\"\napi_base = \"{discord}\"\n\n\
         [accounts]\ndefault_channels = [\"discord\"]\n\n[log]\nformat = \"json\"\n\n\
         [otel]\nendpoint = \"{collector}\"\n"
    );
    let path = dir.join("pingpilot.toml");
    std::fs::write(&path, config_toml(database, "", &sections)).expect("config");
    path
}

#[cfg(feature = "otel")]
#[tokio::test]
async fn requests_and_delivery_attempts_are_traced_and_logged_with_their_trace_ids() {
    use serde_json::Value;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let discord = MockServer::start().await;
    mount_discord_ok(&discord).await;
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&collector)
        .await;
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = traced_config(dir.path(), &database.url, &discord.uri(), &collector.uri());
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_pingpilot"))
        .args([
            "account",
            "create",
            "--name",
            "Traced",
            "--discord-id",
            DISCORD_ID,
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("account create");
    let created: Value = serde_json::from_slice(&created.stdout).expect("account");
    let key = created["apiKey"].as_str().expect("key").to_string();
    let mut relay = RelayProcess::spawn(&config).await;
    let client = reqwest::Client::new();
    let category = client
        .post(format!("{}/api/v1/categories", relay.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"name": "sale", "color": "#FFB02E"}))
        .send()
        .await
        .expect("category");
    assert_eq!(category.status(), 201);
    let accepted: Value = client
        .post(format!("{}/api/v1/event?wait=10", relay.base))
        .bearer_auth(&key)
        .json(&sale_event())
        .send()
        .await
        .expect("event")
        .json()
        .await
        .expect("json");
    assert_eq!(accepted["deliveryStatus"], "DELIVERED", "{accepted}");
    let event_id = accepted["eventId"].as_str().expect("id").to_string();
    // SIGTERM: the relay sends the spans it still holds before it exits.
    relay.terminate();

    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).expect("OTLP/JSON");
        for resource in body["resourceSpans"].as_array().expect("resourceSpans") {
            let service = resource["resource"]["attributes"]
                .as_array()
                .expect("attributes")
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone());
            assert_eq!(service, Some(Value::from("pingpilot")));
            for scope in resource["scopeSpans"].as_array().expect("scopeSpans") {
                spans.extend(scope["spans"].as_array().expect("spans").iter().cloned());
            }
        }
    }
    let attribute = |span: &Value, key: &str| {
        span["attributes"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["key"] == key))
            .map(|a| {
                a["value"]["stringValue"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
    };
    let delivery = spans
        .iter()
        .find(|s| s["name"] == "delivery" && attribute(s, "event_id").as_deref() == Some(&event_id))
        .unwrap_or_else(|| panic!("no delivery span in {spans:#?}"));
    assert_eq!(attribute(delivery, "provider").as_deref(), Some("discord"));
    let requests: Vec<&Value> = spans.iter().filter(|s| s["name"] == "request").collect();
    assert!(requests.len() >= 2, "{spans:#?}");

    // The log line of the event's request names the trace of its span.
    let line = relay
        .log_lines("\"path\":\"/api/v1/event\"")
        .into_iter()
        .next()
        .expect("the event's request line");
    let line: Value = serde_json::from_str(&line).expect("JSON");
    let trace_id = line["span"]["trace_id"]
        .as_str()
        .expect("trace_id")
        .to_string();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert!(
        requests.iter().any(|s| s["traceId"] == trace_id.as_str()),
        "{trace_id} not among {requests:#?}"
    );
    database.remove().await;
}

#[cfg(not(feature = "otel"))]
#[tokio::test]
async fn without_the_otel_feature_the_endpoint_is_reported_unused() {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = traced_config(
        dir.path(),
        &database.url,
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
    );
    let relay = RelayProcess::spawn(&config).await;
    let mut warned = Vec::new();
    for _ in 0..50 {
        warned = relay.log_lines("otel.endpoint is set, but this build has no OpenTelemetry");
        if !warned.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(warned.len(), 1);
    drop(relay);
    database.remove().await;
}
