//! Running the relay as a service: disabling and deleting accounts, retention (`pingpilot
//! prune` and the background task), backup and restore, the readiness check.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::*;
use pingpilot::core::model::{AccountId, Millis, now_millis};
use pingpilot::core::store::{IntakeResult, NewEvent, StoreOptions};

const DAY_MS: Millis = 86_400_000;

async fn account_id(relay: &Relay, key: &str) -> String {
    let (status, account) = relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    account["id"].as_str().expect("id").to_string()
}

/// Every operation of the OpenAPI document that takes the Bearer key, with its path's
/// parameters filled in.
fn keyed_operations() -> Vec<(Method, String)> {
    let document: Value =
        serde_json::from_str(&pingpilot::core::api::openapi_json()).expect("document");
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            if operation["responses"].get("401").is_none() {
                continue;
            }
            let path = path
                .replace("{provider}", "discord")
                .replace("{name}", "sale")
                .replace("{event_id}", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAV")
                .replace("{id}", "key_01ARZ3NDEKTSV4RRFFQ69G5FAV");
            assert!(!path.contains('{'), "unfilled parameter in {path}");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            operations.push((method, format!("/api/v1{path}")));
        }
    }
    assert!(operations.len() > 10, "{operations:?}");
    operations
}

#[tokio::test]
async fn a_disabled_account_is_refused_everywhere_and_its_deliveries_wait_until_enabled() {
    let relay = Relay::start_with("", false).await;
    mount_telegram_send_ok(&relay.telegram).await;
    // Discord fails for now: the event's delivery stays pending, retried.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(503))
        .mount(&relay.discord)
        .await;
    let key = relay.discord_only_account().await;
    let account = account_id(&relay, &key).await;
    let event_id = accepted_id(&relay, &key, sale_event()).await;
    for _ in 0..100 {
        if !relay
            .discord
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let disabled = stdout_json(
        &relay
            .cli(&["account", "disable", "--account", &account])
            .await,
    );
    assert_eq!(disabled, json!({"accountId": account, "disabled": true}));
    let refusal = json!({"message": "This account is disabled"});
    for (method, path) in keyed_operations() {
        let body = matches!(method, Method::POST | Method::PATCH | Method::PUT).then(sale_event);
        let (status, answer) = relay.call(method.clone(), &path, Some(&key), body).await;
        assert_eq!(
            (status, &answer),
            (StatusCode::FORBIDDEN, &refusal),
            "{method} {path}"
        );
    }
    let shown = stdout_json(&relay.cli(&["account", "show", "--account", &account]).await);
    assert!(shown["disabledAt"].is_string(), "{shown}");

    // Discord would take it now, but the account is disabled: nothing goes out.
    relay.discord.reset().await;
    mount_discord_ok(&relay.discord).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = relay.discord.received_requests().await.unwrap_or_default();
    assert!(sent.is_empty(), "sent while disabled: {sent:?}");

    let enabled = stdout_json(
        &relay
            .cli(&["account", "enable", "--account", &account])
            .await,
    );
    assert_eq!(enabled["disabled"], false);
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED", "{event}");
    let (status, _) = relay.send_event(&key, sale_event()).await;
    assert_eq!(status, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn account_delete_asks_for_yes_then_removes_the_account_and_nothing_else() {
    let relay = Relay::start().await;
    let doomed_key = relay.discord_only_account().await;
    let kept_key = relay.discord_only_account().await;
    let doomed = account_id(&relay, &doomed_key).await;
    for key in [&doomed_key, &kept_key] {
        let event_id = accepted_id(&relay, key, sale_event()).await;
        relay.wait_final(key, &event_id).await;
    }
    let kept_event = accepted_id(&relay, &kept_key, sale_event()).await;

    let asked = relay
        .cli(&["account", "delete", "--account", &doomed])
        .await;
    assert!(!asked.status.success());
    let said = String::from_utf8_lossy(&asked.stderr);
    assert!(
        said.contains("with 1 events, 1 deliveries and 1 attempts") && said.contains("--yes"),
        "{said}"
    );
    let (status, _) = relay
        .call(Method::GET, "/api/v1/account", Some(&doomed_key), None)
        .await;
    assert_eq!(status, StatusCode::OK, "nothing deleted without --yes");

    let deleted = stdout_json(
        &relay
            .cli(&["account", "delete", "--account", &doomed, "--yes"])
            .await,
    );
    assert_eq!(
        deleted,
        json!({"deleted": doomed, "events": 1, "deliveries": 1, "attempts": 1})
    );
    let (status, body) = relay
        .call(Method::GET, "/api/v1/account", Some(&doomed_key), None)
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"message": "Invalid API key"})
        )
    );
    let shown = relay.cli(&["account", "show", "--account", &doomed]).await;
    assert!(!shown.status.success());
    for table in [
        "events",
        "deliveries",
        "api_keys",
        "categories",
        "channel_links",
    ] {
        let left = database_query(
            relay.database_url(),
            &format!("SELECT CAST(COUNT(*) AS TEXT) FROM {table} WHERE account_id = '{doomed}'"),
        )
        .await;
        assert_eq!(left.as_deref(), Some("0"), "{table}");
    }
    let kept = relay.wait_final(&kept_key, &kept_event).await;
    assert_eq!(kept["deliveryStatus"], "DELIVERED");
    relay.stop().await;
}

/// Events of the account behind `key` written `days_ago` into the relay's database, as intake
/// would have then; their ids.
async fn old_events(relay: &Relay, key: &str, days_ago: i64, count: usize) -> Vec<String> {
    let account = AccountId::parse(&account_id(relay, key).await).expect("account id");
    let store =
        pingpilot::core::store::open(relay.database_url(), &StoreOptions::with_connections(2))
            .await
            .expect("open the relay's database");
    let category = store
        .category(&account, "sale")
        .await
        .expect("read")
        .expect("sale category");
    let fields = serde_json::Map::new();
    let mut ids = Vec::new();
    for _ in 0..count {
        let event = NewEvent {
            account_id: &account,
            category: &category,
            description: "long ago",
            fields: &fields,
            providers: &["discord"],
            events_limit: None,
            now: now_millis() - days_ago * DAY_MS,
            idempotency: None,
            decided_from: None,
        };
        match store.insert_event(&event).await.expect("insert") {
            IntakeResult::Accepted { event_id } => ids.push(event_id.to_string()),
            other => panic!("{other:?}"),
        }
    }
    ids
}

async fn event_status(relay: &Relay, key: &str, event_id: &str) -> StatusCode {
    relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(key),
            None,
        )
        .await
        .0
}

#[tokio::test]
async fn prune_deletes_only_events_past_retention_and_says_what_it_removed() {
    let relay = Relay::start_with("[retention]\nevents = \"30d\"\n", true).await;
    let key = relay.discord_only_account().await;
    let old = old_events(&relay, &key, 40, 3).await;
    let recent = old_events(&relay, &key, 20, 1).await;
    let today = accepted_id(&relay, &key, sale_event()).await;
    for event_id in old.iter().chain(&recent).chain([&today]) {
        relay.wait_final(&key, event_id).await;
    }
    let (_, quota_before) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;

    let counted = stdout_json(&relay.cli(&["prune", "--dry-run"]).await);
    assert_eq!(
        (
            &counted["dryRun"],
            &counted["retention"],
            &counted["events"],
            &counted["deliveries"],
            &counted["attempts"]
        ),
        (&json!(true), &json!("30d"), &json!(3), &json!(3), &json!(3)),
        "{counted}"
    );
    assert_eq!(event_status(&relay, &key, &old[0]).await, StatusCode::OK);

    let pruned = stdout_json(&relay.cli(&["prune"]).await);
    assert_eq!(
        (&pruned["events"], &pruned["deliveries"]),
        (&json!(3), &json!(3))
    );
    let sqlite = relay.database_url().starts_with("sqlite:");
    assert_eq!(pruned["bytesFreed"].is_u64(), sqlite, "{pruned}");
    for event_id in &old {
        assert_eq!(
            event_status(&relay, &key, event_id).await,
            StatusCode::NOT_FOUND
        );
    }
    for event_id in recent.iter().chain([&today]) {
        assert_eq!(event_status(&relay, &key, event_id).await, StatusCode::OK);
    }
    let (_, quota_after) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(
        quota_after, quota_before,
        "the quota count is not retention's"
    );
    let again = stdout_json(&relay.cli(&["prune"]).await);
    assert_eq!(again["events"], 0);
    relay.stop().await;
}

#[tokio::test]
async fn the_background_task_applies_retention_and_counts_it_in_metrics() {
    let relay = Relay::start_with(
        "[retention]\nevents = \"1d\"\ninterval = \"300ms\"\nbatch = 2\n",
        true,
    )
    .await;
    let key = relay.discord_only_account().await;
    let old = old_events(&relay, &key, 2, 5).await;
    let today = accepted_id(&relay, &key, sale_event()).await;
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = relay
            .request(Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        if metrics.contains("pingpilot_retention_deleted_rows_total{table=\"events\"} 5") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        metrics.contains("pingpilot_retention_deleted_rows_total{table=\"events\"} 5"),
        "{metrics}"
    );
    for event_id in &old {
        assert_eq!(
            event_status(&relay, &key, event_id).await,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(event_status(&relay, &key, &today).await, StatusCode::OK);
    relay.stop().await;
}

#[tokio::test]
async fn ready_answers_for_a_relay_and_fails_for_none() {
    let relay = Relay::start().await;
    let ready = relay.cli(&["ready", "--url", &relay.base]).await;
    assert_eq!(stdout_json(&ready)["status"], "ready");
    let nobody = relay.cli(&["ready", "--url", "http://127.0.0.1:9"]).await;
    assert!(!nobody.status.success());
    let said = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        said.contains("cannot reach the relay at http://127.0.0.1:9"),
        "{said}"
    );
    relay.stop().await;
}

fn run(args: &[&str], config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pingpilot"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run pingpilot")
}

/// The README's backup and restore steps, in order: back up the live database, stop the relay,
/// put the copy in place of the database (and its WAL files), start the relay again.
#[tokio::test]
async fn a_backup_of_a_live_database_restores_everything_it_held() {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = dir.path().join("pingpilot.toml");
    std::fs::write(&config, config_toml(&database.url, "", "")).expect("config");
    let backup = dir.path().join("backup.db");
    let backup_arg = backup.display().to_string();
    if !database.url.starts_with("sqlite:") {
        let refused = run(&["backup", "--to", &backup_arg], &config);
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(said.contains("pg_dump"), "{said}");
        database.remove().await;
        return;
    }
    let created = stdout_json(&run(&["account", "create", "--name", "Kept"], &config));
    let key = created["apiKey"].as_str().expect("key").to_string();
    let mut relay = RelayProcess::spawn(&config).await;
    let client = reqwest::Client::new();
    let send = |body: Value| {
        client
            .post(format!("{}/api/v1/categories", relay.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let made = send(json!({"name": "before", "color": "#112233"}))
        .await
        .expect("post");
    assert_eq!(made.status(), StatusCode::CREATED);

    let copied = stdout_json(&run(&["backup", "--to", &backup_arg], &config));
    assert_eq!(copied["backup"], backup_arg.as_str());
    assert!(copied["bytes"].as_u64().expect("bytes") > 0);
    let again = run(&["backup", "--to", &backup_arg], &config);
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );

    let made = send(json!({"name": "after", "color": "#445566"}))
        .await
        .expect("post");
    assert_eq!(made.status(), StatusCode::CREATED);
    relay.terminate();

    let live = dir.path().join("pingpilot.db");
    std::fs::copy(&backup, &live).expect("cp backup.db pingpilot.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("pingpilot.db{suffix}")));
    }
    let relay = RelayProcess::spawn(&config).await;
    let categories: Value = client
        .get(format!("{}/api/v1/categories", relay.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let names: Vec<&str> = categories
        .as_array()
        .expect("list")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["before"], "{categories}");
    drop(relay);
}

#[tokio::test]
async fn json_logs_carry_the_request_id_the_answer_names() {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = dir.path().join("pingpilot.toml");
    let sections = "[log]\nformat = \"json\"\n";
    std::fs::write(&config, config_toml(&database.url, "", sections)).expect("config");
    let relay = RelayProcess::spawn(&config).await;
    let client = reqwest::Client::new();
    let request_id = |sent: Option<&'static str>| {
        let mut request = client.get(format!("{}/api/v1/account", relay.base));
        if let Some(id) = sent {
            request = request.header("X-Request-Id", id);
        }
        async move {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            let id = response.headers()["x-request-id"].to_str().expect("text");
            id.to_string()
        }
    };
    assert_eq!(request_id(Some("deploy-42.a:b_c")).await, "deploy-42.a:b_c");
    let made = request_id(None).await;
    assert_eq!(made.len(), 26, "a ULID: {made}");
    let replaced = request_id(Some("{\"forged\": 1}")).await;
    assert_eq!(replaced.len(), 26, "{replaced}");

    let mut logged = None;
    for _ in 0..100 {
        logged = relay
            .log_lines("deploy-42.a:b_c")
            .into_iter()
            .find(|line| line.contains("\"message\":\"request\""));
        if logged.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let line: Value = serde_json::from_str(&logged.expect("the request's line")).expect("JSON");
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["target"], "pingpilot_core::api");
    assert!(line["timestamp"].is_string());
    assert_eq!(
        (&line["method"], &line["path"], &line["status"]),
        (&json!("GET"), &json!("/api/v1/account"), &json!(401))
    );
    assert_eq!(line["span"]["request_id"], "deploy-42.a:b_c");
    for line in relay.log_lines("") {
        serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    assert!(
        relay.log_lines("forged").is_empty(),
        "the forged id is not logged"
    );
    drop(relay);
    database.remove().await;
}

/// Forwards connections on `listener` to `target`, from the moment it is called.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// A relay started before its PostgreSQL server is reachable (a container beside it) waits for
/// it rather than exiting.
#[tokio::test]
async fn a_relay_waits_for_a_postgresql_server_that_comes_up_after_it() {
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let Some(rest) = database.url.strip_prefix("postgres://") else {
        return; // SQLite: nothing to wait for.
    };
    // Where the server will be: a port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("address")
        .port();
    let (user, path) = rest.split_once('@').expect("user@host");
    let (server, name) = path.split_once('/').expect("host/database");
    let late_url = format!("postgres://{user}@127.0.0.1:{port}/{name}");
    let config = dir.path().join("pingpilot.toml");
    std::fs::write(&config, config_toml(&late_url, "", "")).expect("config");
    let opening = tokio::spawn({
        let config = config.clone();
        async move { RelayProcess::spawn(&config).await }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the server's port");
    let proxy = tokio::spawn(forward(listener, server.to_string()));
    let relay = opening.await.expect("relay");
    assert!(
        !relay
            .log_lines("the database cannot be reached yet; trying again")
            .is_empty()
    );
    drop(relay);
    proxy.abort();
    database.remove().await;
}
