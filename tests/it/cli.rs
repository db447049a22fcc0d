//! The operator CLI, run as the real binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::dashboard::Browser;
use crate::helpers::*;

fn pingpilot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pingpilot"))
}

#[test]
fn every_linked_provider_is_listed_in_order() {
    let providers = stdout_json(&pingpilot().arg("providers").output().expect("run"));
    let ids: Vec<&str> = providers
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, linked_provider_ids());
    for (listed, registered) in providers
        .as_array()
        .expect("list")
        .iter()
        .zip(pingpilot::core::provider::registered())
    {
        let fields: Vec<(&str, String)> = listed["accountFields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| {
                (
                    f["name"].as_str().expect("name"),
                    f["cliFlag"].as_str().expect("flag").to_string(),
                )
            })
            .collect();
        let expected: Vec<(&str, String)> = registered
            .account_fields
            .iter()
            .map(|f| (f.name, format!("--{}", f.cli_flag())))
            .collect();
        assert_eq!(fields, expected, "{}", registered.id);
        let keys: Vec<&str> = listed["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .map(|s| s["key"].as_str().expect("key"))
            .collect();
        let expected: Vec<String> = registered
            .settings
            .iter()
            .map(|(name, _)| format!("providers.{}.{name}", registered.id))
            .collect();
        assert_eq!(keys, expected, "{}", registered.id);
    }
    assert_eq!(providers[0]["accountFields"][0]["cliFlag"], "--discord-id");
}

#[tokio::test]
async fn account_create_prints_exactly_one_json_object_and_validates_fields() {
    let relay = Relay::start().await;
    let output = relay
        .cli(&[
            "account",
            "create",
            "--name",
            "Ann",
            "--email",
            "ann@example.com",
            "--plan",
            "pro",
            "--discord-id",
            DISCORD_ID,
            "--telegram-username",
            "@ann_t",
        ])
        .await;
    let stdout = String::from_utf8(output.stdout.clone()).expect("utf-8");
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let created = stdout_json(&output);
    let object = created.as_object().expect("object");
    assert_eq!(object.keys().collect::<Vec<_>>(), ["accountId", "apiKey"]);
    let key = created["apiKey"].as_str().expect("key");
    assert!(key.starts_with("pk_") && key.len() >= 35);

    let (status, account) = relay
        .call(Method::GET, "/api/v1/account", Some(key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["id"], created["accountId"]);
    assert_eq!(account["plan"], "pro");
    assert_eq!(account["email"], "ann@example.com");
    assert_eq!(account["discordId"], DISCORD_ID);
    assert_eq!(account["telegramUsername"], "ann_t");

    for bad in [
        vec!["account", "create", "--name", "X", "--discord-id", "12"],
        vec![
            "account",
            "create",
            "--name",
            "X",
            "--telegram-username",
            "a b",
        ],
        vec!["account", "create", "--name", "X", "--plan", "gold"],
        vec!["account", "create"],
    ] {
        let output = relay.cli(&bad).await;
        assert!(!output.status.success(), "{bad:?} should fail");
        assert!(output.stdout.is_empty(), "{bad:?} printed on stdout");
        assert!(!output.stderr.is_empty());
    }
    relay.stop().await;
}

#[tokio::test]
async fn housekeeping_commands_list_accounts_change_plans_and_manage_keys() {
    let relay = Relay::start().await;
    let (account, first_key) = relay.create_account(&[]).await;
    let accounts = stdout_json(&relay.cli(&["account", "list"]).await);
    assert_eq!(accounts[0]["id"], account.as_str());
    assert_eq!(accounts[0]["plan"], "free");

    let changed = stdout_json(
        &relay
            .cli(&[
                "account",
                "set-plan",
                "--account",
                &account,
                "--plan",
                "enterprise",
            ])
            .await,
    );
    assert_eq!(changed["plan"], "enterprise");
    let (_, quota) = relay
        .call(Method::GET, "/api/v1/quota", Some(&first_key), None)
        .await;
    assert_eq!(quota["eventsLimit"], 10000);
    assert!(
        !relay
            .cli(&[
                "account",
                "set-plan",
                "--account",
                "acc_nope",
                "--plan",
                "pro"
            ])
            .await
            .status
            .success()
    );

    let key = stdout_json(
        &relay
            .cli(&[
                "key",
                "create",
                "--account",
                &account,
                "--name",
                " deploy bot ",
            ])
            .await,
    );
    assert_eq!(key["name"], "deploy bot");
    let second_key = key["apiKey"].as_str().expect("key");
    let listed = stdout_json(&relay.cli(&["key", "list", "--account", &account]).await);
    let names: Vec<&Value> = listed
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["name"])
        .collect();
    assert_eq!(names, [&Value::Null, &json!("deploy bot")]);
    let too_long = relay
        .cli(&[
            "key",
            "create",
            "--account",
            &account,
            "--name",
            &"x".repeat(65),
        ])
        .await;
    assert!(!too_long.status.success());
    assert!(
        String::from_utf8_lossy(&too_long.stderr)
            .contains("--name must be at most 64 characters long"),
        "{too_long:?}"
    );
    let (status, _) = relay
        .call(Method::GET, "/api/v1/account", Some(second_key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let key_id = key["keyId"].as_str().expect("id");
    stdout_json(&relay.cli(&["key", "revoke", "--key-id", key_id]).await);
    let (status, _) = relay
        .call(Method::GET, "/api/v1/account", Some(second_key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        !relay
            .cli(&["key", "revoke", "--key-id", key_id])
            .await
            .status
            .success(),
        "revoking twice is an error"
    );
    assert!(
        !relay
            .cli(&["key", "create", "--account", "acc_nope"])
            .await
            .status
            .success()
    );
    relay.stop().await;
}

#[tokio::test]
async fn account_sign_out_ends_every_dashboard_session_of_the_account() {
    let relay = Relay::start().await;
    let (account, key) = relay.create_account(&[]).await;
    let (_, other_key) = relay.create_account(&[]).await;
    let mut first = Browser::signed_in(&relay, &key).await;
    let mut second = Browser::signed_in(&relay, &key).await;
    let mut stranger = Browser::signed_in(&relay, &other_key).await;

    let output = relay
        .cli(&["account", "sign-out", "--account", &account])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{{\"accountId\":\"{account}\",\"sessionsEnded\":2}}\n")
    );
    for browser in [&mut first, &mut second] {
        let page = browser.get("/dashboard").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.location.as_deref(), Some("/dashboard/login"));
    }
    assert_eq!(stranger.get("/dashboard").await.status, StatusCode::OK);
    let again = stdout_json(
        &relay
            .cli(&["account", "sign-out", "--account", &account])
            .await,
    );
    assert_eq!(again["sessionsEnded"], 0);

    let unknown = relay
        .cli(&["account", "sign-out", "--account", "acc_nope"])
        .await;
    assert!(!unknown.status.success());
    assert!(unknown.stdout.is_empty(), "{unknown:?}");
    assert_eq!(
        String::from_utf8_lossy(&unknown.stderr),
        "error: no account with id \"acc_nope\"\n"
    );
    relay.stop().await;
}

#[tokio::test]
async fn openapi_command_prints_what_the_server_serves() {
    let relay = Relay::start().await;
    let printed = pingpilot().arg("openapi").output().expect("run");
    assert!(printed.status.success());
    let served = relay
        .request(Method::GET, "/api/v1/openapi.json")
        .send()
        .await
        .expect("spec")
        .text()
        .await
        .expect("text");
    assert_eq!(String::from_utf8_lossy(&printed.stdout), served);
    let spec: Value = serde_json::from_str(&served).expect("json");
    assert_eq!(
        spec["components"]["securitySchemes"]["bearerAuth"]["scheme"],
        "bearer"
    );
    let account = &spec["components"]["schemas"]["Account"]["properties"];
    assert_eq!(account["discordId"]["type"], "string");
    assert_eq!(account["telegramUsername"]["type"], "string");
    let yaml = pingpilot()
        .args(["openapi", "--format", "yaml"])
        .output()
        .expect("run");
    let served_yaml = relay
        .request(Method::GET, "/api/v1/openapi.yaml")
        .send()
        .await
        .expect("yaml")
        .text()
        .await
        .expect("text");
    assert_eq!(String::from_utf8_lossy(&yaml.stdout), served_yaml);
    let docs = relay
        .request(Method::GET, "/docs")
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.expect("html").contains("swagger"));
    relay.stop().await;
}

#[test]
fn config_check_names_the_bad_key_and_its_source() {
    let dir = tempfile::TempDir::new().expect("dir");
    let ok = pingpilot()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .expect("run");
    let report = stdout_json(&ok);
    assert_eq!(report["ok"], true);
    assert_eq!(report["bind"], "127.0.0.1:8080");
    assert_eq!(report["database"], "sqlite://pingpilot.db");

    let from_env = pingpilot()
        .current_dir(dir.path())
        .env("PINGPILOT_SERVER__BIND", "not-an-address")
        .args(["config", "check"])
        .output()
        .expect("run");
    assert!(!from_env.status.success());
    let message = String::from_utf8_lossy(&from_env.stderr);
    assert!(
        message.contains("server.bind") && message.contains("PINGPILOT_SERVER__BIND"),
        "{message}"
    );

    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[delivery]\nmax_age = \"soon\"\n").expect("write");
    let from_file = pingpilot()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!from_file.status.success());
    let message = String::from_utf8_lossy(&from_file.stderr);
    assert!(
        message.contains("delivery.max_age") && message.contains("bad.toml"),
        "{message}"
    );

    std::fs::write(&file, "[providers.discord]\nrequests_per_second = 0\n").expect("write");
    let provider = pingpilot()
        .args(["config", "check", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!provider.status.success());
    assert!(
        String::from_utf8_lossy(&provider.stderr).contains("providers.discord.requests_per_second")
    );

    let missing = pingpilot()
        .args(["config", "check", "--config", "/nonexistent/pingpilot.toml"])
        .output()
        .expect("run");
    assert!(!missing.status.success());

    let schema = stdout_json(
        &pingpilot()
            .args(["config", "schema"])
            .output()
            .expect("run"),
    );
    assert!(
        schema["properties"]["providers"]["properties"]["discord"]["properties"]["bot_token"]
            .is_object()
    );
    assert!(schema["properties"]["delivery"].is_object());
}

#[test]
fn serve_exits_zero_on_sigterm() {
    let dir = tempfile::TempDir::new().expect("dir");
    let mut child = pingpilot()
        .current_dir(dir.path())
        .env("PINGPILOT_SERVER__BIND", "127.0.0.1:0")
        .env("PINGPILOT_LOG", "info")
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("server logs its address")
            .expect("line");
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    // The server answers, then stops on SIGTERM with exit code 0.
    let health = std::net::TcpStream::connect(&address);
    assert!(health.is_ok(), "server listens on {address}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    std::thread::spawn(move || for _ in lines {});
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert_eq!(status.code(), Some(0));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A thread as Linux shows it: its name, nice value and scheduling policy.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Priority {
    nice: i32,
    /// 0 is the normal class, 5 the idle class (`SCHED_IDLE`).
    policy: u32,
}

#[cfg(target_os = "linux")]
fn threads(pid: u32) -> Vec<(String, Priority)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        // A thread that ends while it is read is left out.
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .map(|stat| {
            // "tid (name) state ppid …": the name may hold spaces; nice is the 19th field and
            // the policy the 41st.
            let (head, rest) = stat.rsplit_once(") ").expect("stat fields");
            let name = head.split_once(" (").expect("stat name").1;
            let fields: Vec<&str> = rest.split(' ').collect();
            let priority = Priority {
                nice: fields[16].parse().expect("nice"),
                policy: fields[38].parse().expect("policy"),
            };
            (name.to_string(), priority)
        })
        .collect()
}

/// The priorities of a relay's threads by name, run with `delivery` as its delivery section.
#[cfg(target_os = "linux")]
async fn thread_priorities(delivery: &str) -> (Priority, impl Fn(&str) -> Vec<Priority>) {
    let dir = tempfile::TempDir::new().expect("dir");
    let config = dir.path().join("pingpilot.toml");
    let database = dir.path().join("relay.db");
    std::fs::write(
        &config,
        format!(
            "[server]\nworker_threads = 5\n[database]\nurl = \"sqlite://{}\"\n\
             [delivery]\n{delivery}\n",
            database.display()
        ),
    )
    .expect("config");
    let relay = RelayProcess::spawn(&config).await;
    let pid = relay.child.id();
    // A new thread carries its parent's name and priority until it sets its own: read until
    // two readings a moment apart agree, so that one caught starting is not counted.
    let mut threads = threads(pid);
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let again = self::threads(pid);
        if again == threads {
            break;
        }
        threads = again;
    }
    drop(relay);
    // The main thread keeps the priority the relay was started with.
    let (_, base) = *threads
        .iter()
        .find(|(name, _)| name == "pingpilot")
        .expect("main thread");
    let with_name = move |name: &str| -> Vec<Priority> {
        let found = threads.iter().filter(|(n, _)| n == name);
        found.map(|(_, priority)| *priority).collect()
    };
    (base, with_name)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn serve_runs_its_threads_as_configured() {
    let (base, with_name) = thread_priorities("").await;
    assert_eq!(with_name("tokio-rt-worker"), vec![base; 5]);
    // "pingpilot-writer", cut to the 15 bytes Linux keeps; it writes for intake, at full
    // priority, and so does the thread that checkpoints its WAL.
    assert_eq!(with_name("pingpilot-write"), vec![base]);
    assert_eq!(with_name("pingpilot-ckpt"), vec![base]);
    // Deliveries yield the CPU to intake: by default in the idle class.
    let idle = Priority { policy: 5, ..base };
    assert_eq!(with_name("pingpilot-send"), vec![idle]);

    let (base, with_name) = thread_priorities("priority = \"low\"").await;
    let low = Priority { nice: 19, ..base };
    assert_eq!(with_name("pingpilot-send"), vec![low]);
    let (base, with_name) = thread_priorities("priority = \"normal\"").await;
    assert_eq!(with_name("pingpilot-send"), vec![base]);
}

/// `<ENV NAME>_FILE` gives a setting from a file (Docker secrets, systemd credentials): the
/// relay uses it, and `config check` says where it came from without printing it.
#[tokio::test]
async fn secrets_come_from_files_and_config_check_says_where_without_showing_them() {
    let discord = wiremock::MockServer::start().await;
    mount_discord_ok(&discord).await;
    let dir = tempfile::TempDir::new().expect("dir");
    let token_file = dir.path().join("discord-token");
    std::fs::write(&token_file, "  token-from-a-file\n").expect("token");
    let config = dir.path().join("pingpilot.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"sqlite://{}\"\n[delivery]\npoll_interval = \"100ms\"\n\
             [providers.discord]\napi_base = \"{}\"\n",
            dir.path().join("relay.db").display(),
            discord.uri()
        ),
    )
    .expect("config");
    let variable = "PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN_FILE";
    let token_path = token_file.display().to_string();

    let checked = pingpilot()
        .args(["config", "check", "--config"])
        .arg(&config)
        .env(variable, &token_path)
        .output()
        .expect("run");
    let report = stdout_json(&checked);
    assert!(
        report["secrets"]
            .as_array()
            .expect("secrets")
            .contains(&serde_json::json!({
                "key": "providers.discord.bot_token",
                "from": format!("file {token_path} ({variable})"),
            })),
        "{report}"
    );
    assert!(
        !report["warnings"].to_string().contains("discord"),
        "Discord is configured: {report}"
    );
    let everything = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(!everything.contains("token-from-a-file"), "{everything}");

    // Both ways at once, or a file that is not there, is refused, naming the variable.
    for (env, expected) in [
        (
            vec![
                (variable, token_path.as_str()),
                ("PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN", "x"),
            ],
            "are both set",
        ),
        (
            vec![(variable, "/nonexistent/token")],
            "PINGPILOT_PROVIDERS__DISCORD__BOT_TOKEN_FILE: cannot read /nonexistent/token",
        ),
    ] {
        let output = pingpilot()
            .args(["config", "check", "--config"])
            .arg(&config)
            .envs(env)
            .output()
            .expect("run");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{stderr}");
    }

    // The relay sends with the token from the file.
    let relay = RelayProcess::spawn_with(&config, None, &[(variable, &token_path)]).await;
    let created = pingpilot()
        .args([
            "account",
            "create",
            "--name",
            "Ann",
            "--discord-id",
            DISCORD_ID,
            "--config",
        ])
        .arg(&config)
        .output()
        .expect("run");
    let key = stdout_json(&created)["apiKey"]
        .as_str()
        .expect("key")
        .to_string();
    let client = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    for (path, body) in [
        (
            "/api/v1/account",
            serde_json::json!({"channels": {"telegram": false}}),
        ),
        (
            "/api/v1/categories",
            serde_json::json!({"name": "sale", "color": "#00FF00"}),
        ),
    ] {
        let method = if path.ends_with("account") {
            Method::PATCH
        } else {
            Method::POST
        };
        let status = client
            .request(method, format!("{}{path}", relay.base))
            .header("Authorization", &auth)
            .json(&body)
            .send()
            .await
            .expect("send")
            .status();
        assert!(status.is_success(), "{path}: {status}");
    }
    let answer: Value = client
        .post(format!("{}/api/v1/event?wait=5", relay.base))
        .header("Authorization", &auth)
        .json(&serde_json::json!({"category": "sale"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(answer["deliveryStatus"], "DELIVERED", "{answer}");
    let requests = discord.received_requests().await.expect("recording");
    assert!(
        requests.iter().all(
            |r| r.headers.get("authorization").and_then(|v| v.to_str().ok())
                == Some("Bot token-from-a-file")
        ),
        "every request carries the file's token"
    );
    drop(relay);
}

#[tokio::test]
async fn send_posts_an_event_with_typed_fields_and_fails_unless_accepted() {
    let relay = Relay::start().await;
    let key = relay.discord_only_account().await;
    let send = |args: &[&str]| {
        let mut command = pingpilot();
        command
            .arg("send")
            .args(args)
            .env("PINGPILOT_URL", &relay.base)
            .env("PINGPILOT_API_KEY", &key)
            .env_remove("PINGPILOT_CONFIG");
        // The relay runs on this test's runtime: wait for the CLI off it.
        tokio::task::spawn_blocking(move || command.output().expect("run"))
    };
    let output = send(&[
        "--category",
        "sale",
        "--description",
        "From the shell",
        "--field",
        "plan=pro",
        "--field",
        "amount=99.99",
        "--field",
        "seats=3",
        "--field",
        "recurring=true",
        "--field",
        "note=a=b",
        "--wait",
        "5",
    ])
    .await
    .expect("cli");
    let answer = stdout_json(&output);
    assert_eq!(answer["deliveryStatus"], "DELIVERED", "{answer}");
    let event_id = answer["eventId"].as_str().expect("eventId");
    let (_, event) = relay
        .call(
            Method::GET,
            &format!("/api/v1/events/{event_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(event["description"], "From the shell");
    assert_eq!(
        event["fields"],
        serde_json::json!({"plan": "pro", "amount": 99.99, "seats": 3, "recurring": true, "note": "a=b"})
    );

    // Refused: the relay's answer on stdout, and a failing exit.
    let output = send(&["--category", "nope"]).await.expect("cli");
    assert!(!output.status.success());
    let answer: Value = serde_json::from_slice(&output.stdout).expect("the relay's JSON");
    assert_eq!(answer["message"], "You dont have a category named \"nope\"");
    assert!(String::from_utf8_lossy(&output.stderr).contains("the relay answered 404"));
    let output = send(&["--category", "sale", "--key", "pk_wrong"])
        .await
        .expect("cli");
    assert!(!output.status.success());
    assert_eq!(stdout_json_any(&output)["message"], "Invalid API key");
    let output = send(&["--category", "sale", "--field", "no-equals"])
        .await
        .expect("cli");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected NAME=VALUE"));
    relay.stop().await;
}

fn stdout_json_any(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

#[tokio::test]
async fn account_show_and_key_list_print_json() {
    let relay = Relay::start().await;
    let (account_id, _) = relay.create_account(&["--discord-id", DISCORD_ID]).await;
    let extra = relay
        .cli(&["key", "create", "--account", &account_id])
        .await;
    assert!(extra.status.success());
    let shown = stdout_json(
        &relay
            .cli(&["account", "show", "--account", &account_id])
            .await,
    );
    assert_eq!(shown["id"], account_id);
    assert_eq!(
        shown["fields"],
        serde_json::json!({"discordId": DISCORD_ID})
    );
    assert_eq!(shown["apiKeys"], 2);
    let channels = shown["channels"].as_array().expect("channels");
    assert_eq!(channels.len(), linked_provider_ids().len());
    assert_eq!(
        channels[0],
        serde_json::json!({"provider": "discord", "enabled": true})
    );
    let keys = stdout_json(&relay.cli(&["key", "list", "--account", &account_id]).await);
    let keys = keys.as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k["prefix"].as_str().is_some_and(|p| p.starts_with("pk_")))
    );
    assert!(
        !keys.iter().any(|k| k.get("apiKey").is_some()),
        "never the keys themselves"
    );
    for args in [
        &["account", "show", "--account", "acc_nope"][..],
        &["key", "list", "--account", "acc_nope"][..],
    ] {
        let output = relay.cli(args).await;
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("no account with id"));
    }
    relay.stop().await;
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "_pingpilot()"),
        ("zsh", "#compdef pingpilot"),
        ("fish", "complete -c pingpilot"),
    ] {
        let output = pingpilot()
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        // Provider flags are completed too.
        assert!(script.contains("discord-id"), "{shell}");
    }
}
