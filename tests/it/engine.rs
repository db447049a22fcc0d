//! The delivery engine's promises: provider pauses honoured, rates kept, idempotent intake,
//! `?wait=`, metrics, and nothing accepted lost to a crash, a hang-up or a second process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

async fn mount_dm_channel(discord: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": DM_CHANNEL})))
        .mount(discord)
        .await;
}

/// Mounts a recorder for Discord messages and returns it.
async fn record_messages(discord: &MockServer) -> Recorder {
    let recorder = Recorder::new(json!({"id": "1"}));
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(recorder.clone())
        .mount(discord)
        .await;
    recorder
}

fn descriptions(recorder: &Recorder) -> Vec<String> {
    recorder
        .requests()
        .into_iter()
        .filter_map(|(_, body)| {
            body["embeds"][0]["description"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn a_provider_pause_is_honoured_and_costs_no_attempt() {
    let relay = Relay::start_opts(Options {
        delivery: "max_attempts = 1",
        ..Options::default()
    })
    .await;
    mount_dm_channel(&relay.discord).await;
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(ResponseTemplate::new(429).set_body_json(
            json!({"message": "You are being rate limited.", "retry_after": 0.6, "global": false}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&relay.discord)
        .await;
    let recorder = record_messages(&relay.discord).await;
    let key = relay.discord_only_account().await;
    let event_id = accepted_id(&relay, &key, json!({"category": "sale"})).await;
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(
        event["deliveryStatus"], "DELIVERED",
        "one attempt allowed, yet the 429 did not use it: {event}"
    );
    let attempts = event["deliveries"][0]["attempts"]
        .as_array()
        .expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["httpStatus"].clone())
            .collect::<Vec<_>>(),
        [json!(429), json!(200)]
    );
    let first = chrono_millis(&attempts[0]["startedAt"]);
    let second = chrono_millis(&attempts[1]["startedAt"]);
    assert!(
        second - first >= 600,
        "retried after {} ms, before retry_after",
        second - first
    );
    assert_eq!(recorder.requests().len(), 1);
    relay.stop().await;
}

fn chrono_millis(value: &Value) -> i64 {
    let text = value.as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .timestamp_millis()
}

#[tokio::test]
async fn a_burst_far_above_the_rate_reaches_discord_at_the_configured_rate() {
    let relay = Relay::start_opts(Options {
        discord: "requests_per_second = 5",
        // The pacing is timed at the stand-in. The test binary runs its relays side by side on
        // two cores, and a delivery thread at the lowest priority (the default) can be held
        // between taking its token and sending, which bunches arrivals beyond the allowance
        // below. Equal priority keeps this test about the limiter.
        delivery: "priority = \"normal\"",
        ..Options::default()
    })
    .await;
    let channels = Recorder::new(json!({"id": DM_CHANNEL}));
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(channels.clone())
        .mount(&relay.discord)
        .await;
    let messages = record_messages(&relay.discord).await;
    let key = relay.discord_only_account().await;
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(
            accepted_id(
                &relay,
                &key,
                json!({"category": "sale", "description": format!("burst {i}")}),
            )
            .await,
        );
    }
    for id in &ids {
        let event = relay.wait_final(&key, id).await;
        assert_eq!(event["deliveryStatus"], "DELIVERED");
    }
    let mut times: Vec<Instant> = channels
        .requests()
        .into_iter()
        .chain(messages.requests())
        .map(|(t, _)| t)
        .collect();
    times.sort();
    assert_eq!(messages.requests().len(), 14);
    // Concurrent first deliveries may each open the DM channel before it is cached.
    assert!(!channels.requests().is_empty());
    // No one-second window holds more than the budget of 5 requests.
    for (i, start) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            // Timed at the stand-in: allow a late arrival to bunch by up to 75 ms.
            .take_while(|t| t.duration_since(*start) < Duration::from_millis(925))
            .count();
        assert!(in_window <= 5, "{in_window} requests within one second");
    }
    // ...and the budget is used: n requests at 5/s take about (n-1)/5 seconds, not much more.
    let span = times[times.len() - 1].duration_since(times[0]);
    let ideal = Duration::from_millis(200 * (times.len() as u64 - 1));
    assert!(
        span < ideal + Duration::from_millis(1500),
        "took {span:?} for {} requests",
        times.len()
    );
    relay.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_accepts_a_request_once() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let body = json!({"category": "sale", "description": "once"});
    let send = |idempotency: &'static str, body: Value| {
        let request = relay
            .request(Method::POST, "/api/v1/event")
            .header("Authorization", format!("Bearer {key}"))
            .header("Idempotency-Key", idempotency)
            .json(&body);
        tokio::spawn(request.send())
    };
    let first: Value = send("order-1", body.clone())
        .await
        .expect("task")
        .expect("send")
        .json()
        .await
        .expect("json");
    let event_id = first["eventId"].as_str().expect("eventId").to_string();
    // Concurrent and later repeats all answer with the same event.
    let repeats: Vec<_> = (0..8).map(|_| send("order-1", body.clone())).collect();
    for repeat in repeats {
        let response = repeat.await.expect("task").expect("send");
        assert_eq!(response.status(), StatusCode::OK);
        let repeat: Value = response.json().await.expect("json");
        assert_eq!(repeat, first);
    }
    let response = send(
        "order-1",
        json!({"category": "sale", "description": "changed"}),
    )
    .await
    .expect("task")
    .expect("send");
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(response.json::<Value>().await.expect("json")["message"].is_string());

    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&key), None)
        .await;
    assert_eq!(quota["eventsUsed"], 1);
    let event = relay.wait_final(&key, &event_id).await;
    assert_eq!(event["deliveryStatus"], "DELIVERED");
    let messages = bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages")).await;
    assert_eq!(messages.len(), 1, "delivered once");

    // Another key is another event; an over-long key is refused.
    let second: Value = send("order-2", body.clone())
        .await
        .expect("task")
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_ne!(second["eventId"], first["eventId"]);
    let long = "k".repeat(256);
    let response = relay
        .request(Method::POST, "/api/v1/event")
        .header("Authorization", format!("Bearer {key}"))
        .header("Idempotency-Key", long)
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    relay.stop().await;
}

#[tokio::test]
async fn wait_answers_with_the_final_status_or_pending_when_time_is_up() {
    let relay = Relay::start_with("", false).await;
    mount_dm_channel(&relay.discord).await;
    let key = relay.discord_only_account().await;
    let (status, _) = relay
        .call(
            Method::POST,
            "/api/v1/categories",
            Some(&key),
            Some(json!({"name": "slow", "color": "#000000"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // The stand-in is slow for descriptions containing "slow", fails "doomed", accepts the rest.
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .and(wiremock::matchers::body_string_contains("doomed"))
        .respond_with(discord_dm_refused())
        .mount(&relay.discord)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .and(wiremock::matchers::body_string_contains("slowly"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "1"}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&relay.discord)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "1"})))
        .with_priority(10)
        .mount(&relay.discord)
        .await;

    let wait = |query: &str, body: Value| {
        let request = relay
            .request(Method::POST, &format!("/api/v1/event{query}"))
            .header("Authorization", format!("Bearer {key}"))
            .json(&body);
        async move {
            let response = request.send().await.expect("send");
            (response.status(), response.text().await.expect("text"))
        }
    };
    let (status, text) = wait(
        "?wait=10",
        json!({"category": "sale", "description": "fine"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let body = parse_body(&text);
    assert_eq!(body["deliveryStatus"], "DELIVERED");
    assert_eq!(body["message"], "Event processed successfully");

    let (status, text) = wait(
        "?wait=10",
        json!({"category": "sale", "description": "doomed"}),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = parse_body(&text);
    let event_id = body["eventId"].as_str().expect("eventId");
    assert_eq!(
        text,
        format!(r#"{{"message":"Error processing event","eventId":"{event_id}"}}"#)
    );

    let started = Instant::now();
    let (status, text) = wait(
        "?wait=1",
        json!({"category": "slow", "description": "slowly"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(parse_body(&text)["deliveryStatus"], "PENDING");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2900),
        "{took:?}"
    );

    for bad in ["?wait=31", "?wait=-1", "?wait=soon"] {
        let (status, text) = wait(bad, json!({"category": "sale"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
        assert!(parse_body(&text)["message"].is_string());
    }
    relay.stop().await;
}

#[tokio::test]
async fn metrics_count_intake_deliveries_and_the_queue() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let event_id = accepted_id(&relay, &key, json!({"category": "sale"})).await;
    relay.wait_final(&key, &event_id).await;
    let (status, _) = relay
        .call(Method::POST, "/api/v1/event", None, Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = relay
        .request(Method::GET, "/metrics")
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    let text = response.text().await.expect("text");
    for expected in [
        "pingpilot_events_total{result=\"accepted\",status=\"200\"} 1\n",
        "pingpilot_events_total{result=\"rejected\",status=\"401\"} 1\n",
        "pingpilot_deliveries_total{provider=\"discord\",outcome=\"delivered\"} 1\n",
        "pingpilot_delivery_attempt_duration_seconds_count{provider=\"discord\"} 1\n",
        "pingpilot_delivery_latency_seconds_count{provider=\"discord\"} 1\n",
        "pingpilot_queue_deliveries{state=\"delivered\"} 1\n",
        "pingpilot_queue_oldest_pending_age_seconds 0\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    relay.stop().await;
}

/// A `pingpilot_queue_deliveries` line of a scrape.
fn delivered_gauge(text: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with("pingpilot_queue_deliveries{state=\"delivered\"}"))
        .map(str::to_string)
}

#[tokio::test]
async fn scrapes_share_one_reading_of_the_queue_for_a_few_seconds() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let first = accepted_id(&relay, &key, json!({"category": "sale"})).await;
    relay.wait_final(&key, &first).await;
    let scrape = || async {
        relay
            .request(Method::GET, "/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    };
    let before = scrape().await;
    assert_eq!(
        delivered_gauge(&before).as_deref(),
        Some("pingpilot_queue_deliveries{state=\"delivered\"} 1")
    );
    let second = accepted_id(&relay, &key, json!({"category": "sale"})).await;
    relay.wait_final(&key, &second).await;
    // Counters are live; the queue, which costs a count of the deliveries table, is not read
    // again for every scrape.
    let during = scrape().await;
    assert!(during.contains("pingpilot_events_total{result=\"accepted\",status=\"200\"} 2\n"));
    assert_eq!(delivered_gauge(&during), delivered_gauge(&before));
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let after = scrape().await;
    assert_eq!(
        delivered_gauge(&after).as_deref(),
        Some("pingpilot_queue_deliveries{state=\"delivered\"} 2")
    );
    relay.stop().await;
}

#[tokio::test]
async fn metrics_token_requires_the_bearer_token() {
    let relay = Relay::start_with("[metrics]\ntoken = \"scrape-secret\"\n", true).await;
    for authorization in [None, Some("Bearer wrong"), Some("scrape-secret")] {
        let mut request = relay.request(Method::GET, "/metrics");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let response = request.send().await.expect("metrics");
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(
            response.text().await.expect("body"),
            r#"{"message":"Unauthorized"}"#
        );
    }
    let response = relay
        .request(Method::GET, "/metrics")
        .header("Authorization", "Bearer scrape-secret")
        .send()
        .await
        .expect("metrics");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("pingpilot_queue_deliveries")
    );
    relay.stop().await;
}

#[tokio::test]
async fn metrics_bind_serves_metrics_on_a_listener_of_its_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("address")
        .port();
    let relay = Relay::start_with(&format!("[metrics]\nbind = \"127.0.0.1:{port}\"\n"), true).await;
    // Gone from the public port...
    let (status, body) = relay.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"message": "Not found"}))
    );
    // ...and served on its own, alone.
    let client = reqwest::Client::new();
    let mut served = None;
    for _ in 0..50 {
        if let Ok(response) = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
        {
            served = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = served.expect("the metrics listener answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .text()
            .await
            .expect("text")
            .contains("pingpilot_events_total")
    );
    let response = client
        .get(format!("http://127.0.0.1:{port}/api/v1/quota"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.text().await.expect("body"),
        r#"{"message":"Not found"}"#
    );
    relay.stop().await;
}

/// A configuration file for relay processes sharing one SQLite database and a Discord stand-in.
fn process_config(
    dir: &std::path::Path,
    database: &TestDatabase,
    discord: &MockServer,
) -> std::path::PathBuf {
    // Telegram stays unconfigured: the accounts here only use Discord.
    let providers = format!(
        "[providers.discord]\nbot_token = \"{DISCORD_TOKEN}\"\napi_base = \"{}\"\nrequests_per_second = 1000\n",
        discord.uri()
    );
    // A short lease so a killed process's work is taken over quickly.
    let text = config_toml(&database.url, "lease = \"3s\"", &providers);
    let path = dir.join("pingpilot.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn process_account(base: &str, config: &std::path::Path) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_pingpilot"))
        .args([
            "account",
            "create",
            "--name",
            "Proc",
            "--plan",
            "unlimited",
            "--discord-id",
            DISCORD_ID,
            "--config",
        ])
        .arg(config)
        .output()
        .await
        .expect("cli");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = serde_json::from_slice::<Value>(&output.stdout).expect("json")["apiKey"]
        .as_str()
        .expect("key")
        .to_string();
    let client = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let account = client
        .patch(format!("{base}/api/v1/account"))
        .header("Authorization", &auth)
        .json(&json!({"channels": {"telegram": false}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(account.status(), StatusCode::OK);
    let category = client
        .post(format!("{base}/api/v1/categories"))
        .header("Authorization", &auth)
        .json(&json!({"name": "job", "color": "#123456"}))
        .send()
        .await
        .expect("category");
    assert_eq!(category.status(), StatusCode::CREATED);
    key
}

/// Waits until the stand-in has received every one of `expected`.
async fn wait_for_all(recorder: &Recorder, expected: &BTreeSet<String>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let seen: BTreeSet<String> = descriptions(recorder).into_iter().collect();
        let missing: Vec<&String> = expected.difference(&seen).collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} accepted events never delivered, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_event_is_delivered_after_a_hard_kill() {
    let discord = MockServer::start().await;
    mount_dm_channel(&discord).await;
    let recorder = record_messages(&discord).await;
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = process_config(dir.path(), &database, &discord);
    let mut first = RelayProcess::spawn(&config).await;
    let key = process_account(&first.base, &config).await;

    // Kill the relay while it is accepting and delivering.
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let load = tokio::spawn(send_through(
        vec![first.base.clone()],
        key.clone(),
        "crash",
        800,
        accepted.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted.lock().expect("set").len() < 150 {
        assert!(Instant::now() < deadline, "relay accepted too little");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill_hard();
    load.await.expect("load");
    let accepted = accepted.lock().expect("set").clone();

    let second = RelayProcess::spawn(&config).await;
    wait_for_all(&recorder, &accepted, Duration::from_secs(60)).await;
    drop(second);
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_hanging_up_lose_nothing_that_was_committed() {
    let relay = Relay::start_with(
        "[plans.free]\nevents_per_month = 1000\ncategories = 3\n",
        true,
    )
    .await;
    let key = relay.discord_only_account().await;
    let address = relay.base.trim_start_matches("http://").to_string();
    for i in 0..60 {
        let body = json!({"category": "sale", "description": format!("hang-up {i}")}).to_string();
        let request = format!(
            "POST /api/v1/event HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(&address)
            .await
            .expect("connect");
        stream.write_all(request.as_bytes()).await.expect("write");
        // Hang up without reading the answer.
        drop(stream);
    }
    // Whatever was committed gets delivered, and nothing half-written remains.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Requests may still be committing while we look: compare the quota seen before and
        // after listing.
        let (_, before) = relay
            .call(Method::GET, "/api/v1/quota", Some(&key), None)
            .await;
        let (_, page) = relay
            .call(Method::GET, "/api/v1/events?limit=100", Some(&key), None)
            .await;
        let (_, after) = relay
            .call(Method::GET, "/api/v1/quota", Some(&key), None)
            .await;
        let events = page["events"].as_array().expect("events").clone();
        let settled = before["eventsUsed"] == after["eventsUsed"];
        if settled {
            assert_eq!(
                after["eventsUsed"].as_u64(),
                Some(events.len() as u64),
                "quota counts exactly the stored events"
            );
        }
        let pending = events
            .iter()
            .filter(|e| e["deliveryStatus"] != "DELIVERED")
            .count();
        if settled && pending == 0 && !events.is_empty() {
            let delivered: BTreeMap<String, usize> =
                bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages"))
                    .await
                    .into_iter()
                    .filter_map(|b| b["embeds"][0]["description"].as_str().map(str::to_string))
                    .fold(BTreeMap::new(), |mut counts, d| {
                        *counts.entry(d).or_default() += 1;
                        counts
                    });
            for event in &events {
                let description = event["description"].as_str().expect("description");
                assert!(
                    delivered.contains_key(description),
                    "{description} stored but not delivered"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} events never delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_database_never_send_a_delivery_twice() {
    let discord = MockServer::start().await;
    mount_dm_channel(&discord).await;
    let recorder = record_messages(&discord).await;
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = process_config(dir.path(), &database, &discord);
    let first = RelayProcess::spawn(&config).await;
    let second = RelayProcess::spawn(&config).await;
    let key = process_account(&first.base, &config).await;
    let client = reqwest::Client::new();
    let mut expected = BTreeSet::new();
    for i in 0..120 {
        let base = if i % 2 == 0 {
            &first.base
        } else {
            &second.base
        };
        let description = format!("shared {i}");
        let response = client
            .post(format!("{base}/api/v1/event"))
            .header("Authorization", format!("Bearer {key}"))
            .json(&json!({"category": "job", "description": description}))
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::OK);
        expected.insert(description);
    }
    wait_for_all(&recorder, &expected, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = descriptions(&recorder);
    let unique: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(sent.len(), unique.len(), "a delivery was sent twice");
    assert_eq!(sent.len(), 120);
    drop((first, second));
    database.remove().await;
}

/// A stand-in for Discord messages that takes `delay` to answer each, as a real API does.
#[derive(Clone)]
struct Slow(Recorder, Duration);

impl wiremock::Respond for Slow {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        self.0.respond(request).set_delay(self.1)
    }
}

/// One account floods a provider that answers in 40 ms to 4 sends at a time (a hundred
/// deliveries a second); another account's single event must not wait behind the backlog.
/// With `processes` relays on one database, the flood and the quiet event enter through
/// different ones.
async fn a_quiet_account_is_not_starved(processes: usize) {
    let discord = MockServer::start().await;
    mount_dm_channel(&discord).await;
    let recorder = Recorder::new(json!({"id": "1"}));
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(Slow(recorder.clone(), Duration::from_millis(40)))
        .mount(&discord)
        .await;
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let providers = format!(
        "[providers.discord]\nbot_token = \"{DISCORD_TOKEN}\"\napi_base = \"{}\"\nrequests_per_second = 1000\n",
        discord.uri()
    );
    let config = dir.path().join("pingpilot.toml");
    std::fs::write(
        &config,
        config_toml(&database.url, "concurrency = 4", &providers),
    )
    .expect("config");
    let mut relays = Vec::new();
    for _ in 0..processes {
        relays.push(RelayProcess::spawn(&config).await);
    }
    let flood_key = process_account(&relays[0].base, &config).await;
    let quiet_key = process_account(&relays[0].base, &config).await;
    let accepted: Accepted = Arc::default();
    send_through(
        vec![relays[0].base.clone()],
        flood_key,
        "flood",
        1200,
        accepted.clone(),
    )
    .await;
    assert_eq!(accepted.lock().expect("set").len(), 1200);
    let quiet_base = &relays[processes - 1].base;
    let sent_at = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{quiet_base}/api/v1/event"))
        .header("Authorization", format!("Bearer {quiet_key}"))
        .json(&json!({"category": "job", "description": "quiet"}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let deadline = sent_at + Duration::from_secs(20);
    let (arrived, flood_before) = loop {
        let requests = recorder.requests();
        let quiet = requests
            .iter()
            .position(|(_, body)| body["embeds"][0]["description"] == "quiet");
        if let Some(position) = quiet {
            break (requests[position].0, position);
        }
        assert!(
            Instant::now() < deadline,
            "the quiet event was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = arrived.saturating_duration_since(sent_at);
    assert!(
        waited < Duration::from_secs(3),
        "the quiet event waited {waited:?} behind {flood_before} of the flood's deliveries"
    );
    assert!(
        flood_before < 1000,
        "the flood had {flood_before} deliveries out first: its backlog was gone anyway"
    );
    drop(relays);
    database.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quiet_accounts_event_goes_out_within_seconds_whatever_another_accounts_backlog() {
    a_quiet_account_is_not_starved(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_are_served_fairly_across_several_processes() {
    a_quiet_account_is_not_starved(2).await;
}

/// Sends `count` events named `{prefix} {n}` through the given relays, round robin, from
/// several clients at once, noting in `accepted` each description answered 200. A client moves
/// on past connection errors (a relay that was killed).
async fn send_through(
    bases: Vec<String>,
    key: String,
    prefix: &'static str,
    count: usize,
    accepted: Accepted,
) {
    let mut clients = tokio::task::JoinSet::new();
    let per_client = 8;
    for client_no in 0..per_client {
        let (bases, key, accepted) = (bases.clone(), key.clone(), accepted.clone());
        clients.spawn(async move {
            let client = reqwest::Client::new();
            for n in (client_no..count).step_by(per_client) {
                let base = &bases[n % bases.len()];
                let description = format!("{prefix} {n}");
                let sent = client
                    .post(format!("{base}/api/v1/event"))
                    .header("Authorization", format!("Bearer {key}"))
                    .json(&json!({"category": "job", "description": description}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::OK => {
                        accepted.lock().expect("set").insert(description);
                    }
                    Ok(response) => panic!("unexpected answer {}", response.status()),
                    Err(_) => continue,
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
}

type Accepted = Arc<Mutex<BTreeSet<String>>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_the_queue_and_survive_a_kill() {
    let discord = MockServer::start().await;
    mount_dm_channel(&discord).await;
    let recorder = record_messages(&discord).await;
    let dir = tempfile::TempDir::new().expect("dir");
    let database = TestDatabase::create(dir.path()).await;
    let config = process_config(dir.path(), &database, &discord);
    let mut relays = Vec::new();
    for _ in 0..3 {
        relays.push(RelayProcess::spawn(&config).await);
    }
    let key = process_account(&relays[0].base, &config).await;
    let bases: Vec<String> = relays.iter().map(|r| r.base.clone()).collect();

    // Healthy: every event delivered exactly once.
    let healthy = Accepted::default();
    send_through(bases.clone(), key.clone(), "healthy", 1500, healthy.clone()).await;
    let accepted = healthy.lock().expect("set").clone();
    assert_eq!(accepted.len(), 1500);
    wait_for_all(&recorder, &accepted, Duration::from_secs(60)).await;
    let sent = descriptions(&recorder);
    let unique: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(
        sent.len(),
        unique.len(),
        "a delivery was sent twice while all processes were healthy"
    );

    // One process killed mid-load: every event that got a 200 is still delivered.
    let killed = Accepted::default();
    let load = tokio::spawn(send_through(
        bases.clone(),
        key.clone(),
        "killed",
        900,
        killed.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    relays[1].kill_hard();
    load.await.expect("load");
    let accepted = killed.lock().expect("set").clone();
    assert!(accepted.len() >= 600, "only {} accepted", accepted.len());
    wait_for_all(&recorder, &accepted, Duration::from_secs(60)).await;
    drop(relays);
    database.remove().await;
}
