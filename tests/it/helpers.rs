//! The test harness: a real relay on an ephemeral port over TCP, its own SQLite file, and
//! wiremock servers standing in for Discord and Telegram.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use pingpilot::core::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

pub const DISCORD_TOKEN: &str = "discord-test-token";
pub const TELEGRAM_TOKEN: &str = "123456:telegram-test-token";
pub const DISCORD_ID: &str = "123456789012345678";
pub const DM_CHANNEL: &str = "998877665544332211";
pub const TELEGRAM_CHAT: i64 = 4242;

/// The `channels` entry of `provider` in an account.
pub fn channel_of<'a>(account: &'a Value, provider: &str) -> &'a Value {
    account["channels"]
        .as_array()
        .and_then(|channels| channels.iter().find(|c| c["provider"] == provider))
        .unwrap_or_else(|| panic!("no {provider} channel in {account}"))
}

/// The ids of every provider linked into the binary, in provider order.
pub fn linked_provider_ids() -> Vec<&'static str> {
    pingpilot::core::provider::registered()
        .iter()
        .map(|p| p.id)
        .collect()
}

pub struct Relay {
    pub base: String,
    pub client: reqwest::Client,
    pub discord: MockServer,
    pub telegram: MockServer,
    pub config_path: PathBuf,
    stop: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
    database: Option<TestDatabase>,
    _dir: TempDir,
}

/// What a test relay's configuration adds to the defaults of the harness.
#[derive(Default)]
pub struct Options<'a> {
    /// Lines added to `[delivery]`.
    pub delivery: &'a str,
    /// Lines added to `[providers.discord]` / `[providers.telegram]`.
    pub discord: &'a str,
    pub telegram: &'a str,
    /// Whole provider sections instead of the stand-in ones (`Some("")`: not configured).
    pub providers: Option<&'a str>,
    /// More TOML at the end (other sections).
    pub extra: &'a str,
    /// Mount stand-in routes that answer every provider call with success.
    pub accepting: bool,
}

/// Provider settings pointing at the stand-ins.
pub fn providers_toml(discord: &str, telegram: &str, options: &Options<'_>) -> String {
    format!(
        r#"
[providers.discord]
bot_token = "{DISCORD_TOKEN}"
api_base = "{discord}"
{discord_extra}

[providers.telegram]
bot_token = "{TELEGRAM_TOKEN}"
api_base = "{telegram}"
bot_username = "PingPilotTestBot"
poll_timeout_secs = 0
{telegram_extra}
"#,
        discord_extra = options.discord,
        telegram_extra = options.telegram,
    )
}

/// Settings that make retries quick, plus the given sections.
pub fn config_toml(database_url: &str, delivery: &str, sections: &str) -> String {
    format!(
        r#"
[database]
url = "{database_url}"

[delivery]
backoff_initial = "50ms"
backoff_max = "200ms"
poll_interval = "200ms"
waiting_recheck = "500ms"
{delivery}

{sections}
"#
    )
}

/// The environment variable that runs the suite against PostgreSQL.
pub const POSTGRES_ENV: &str = "PINGPILOT_TEST_POSTGRES_URL";

/// A database of a test's own: a SQLite file in its directory, or, when
/// `PINGPILOT_TEST_POSTGRES_URL` is set, a fresh PostgreSQL database on that server.
pub struct TestDatabase {
    pub url: String,
    postgres: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn create(dir: &std::path::Path) -> Self {
        let Ok(server) = std::env::var(POSTGRES_ENV) else {
            return Self {
                url: format!("sqlite://{}", dir.join("pingpilot.db").display()),
                postgres: None,
            };
        };
        use sqlx::Connection;
        let name = format!("pp_test_{}", ulid::Ulid::new().to_string().to_lowercase());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("connect to the PostgreSQL test server");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let base = server
            .rsplit_once('/')
            .map_or(server.as_str(), |(base, _)| base);
        Self {
            url: format!("{base}/{name}"),
            postgres: Some((server.clone(), name)),
        }
    }

    /// Drops a PostgreSQL test database (a SQLite file goes with its directory).
    pub async fn remove(self) {
        if let Some((server, name)) = self.postgres {
            use sqlx::Connection;
            if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        }
    }
}

/// Runs `sql` on the database at `url` as another program would, and returns the first column
/// of its first row as text, if any.
pub async fn database_query(url: &str, sql: &str) -> Option<String> {
    use sqlx::{Connection, Row};
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url).await.expect("open");
        let rows = sqlx::raw_sql(sql).fetch_all(&mut connection).await;
        rows.expect("query").first().and_then(|row| row.get(0))
    } else {
        let mut connection = sqlx::PgConnection::connect(url).await.expect("connect");
        let rows = sqlx::raw_sql(sql).fetch_all(&mut connection).await;
        rows.expect("query").first().and_then(|row| row.get(0))
    }
}

impl Relay {
    /// A relay whose stand-ins accept everything.
    pub async fn start() -> Self {
        Self::start_with("", true).await
    }

    /// A relay with extra TOML appended to its configuration; `accepting` mounts stand-in
    /// routes that answer every provider call with success.
    pub async fn start_with(extra_toml: &str, accepting: bool) -> Self {
        Self::start_opts(Options {
            extra: extra_toml,
            accepting,
            ..Options::default()
        })
        .await
    }

    /// A relay whose provider settings are exactly `providers` (none: not configured); its
    /// stand-ins answer nothing.
    pub async fn start_with_config_text(providers: &str) -> Self {
        Self::start_opts(Options {
            providers: Some(providers),
            ..Options::default()
        })
        .await
    }

    pub async fn start_opts(options: Options<'_>) -> Self {
        let discord = MockServer::start().await;
        let telegram = MockServer::start().await;
        mount_telegram_idle(&telegram).await;
        if options.accepting {
            mount_discord_ok(&discord).await;
            mount_telegram_send_ok(&telegram).await;
        }
        let dir = TempDir::new().expect("temp dir");
        let config_path = dir.path().join("pingpilot.toml");
        let providers = options.providers.map_or_else(
            || providers_toml(&discord.uri(), &telegram.uri(), &options),
            str::to_string,
        );
        let sections = format!("{providers}\n{}", options.extra);
        let database = TestDatabase::create(dir.path()).await;
        let text = config_toml(&database.url, options.delivery, &sections);
        std::fs::write(&config_path, text).expect("write config");
        let config = Config::load(Some(&config_path)).expect("valid test configuration");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(async move {
            pingpilot::serve(&config, listener, shutdown)
                .await
                .expect("relay runs");
        });
        let relay = Self {
            base,
            client: reqwest::Client::new(),
            discord,
            telegram,
            config_path,
            stop,
            server: Some(server),
            database: Some(database),
            _dir: dir,
        };
        relay.wait_ready().await;
        relay
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(response) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && response.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("relay did not become ready");
    }

    /// Stops the relay the way SIGTERM does and waits for it.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(server) = self.server.take() {
            server.await.expect("relay stops cleanly");
        }
        if let Some(database) = self.database.take() {
            database.remove().await;
        }
    }

    /// The URL of the relay's database (SQLite or PostgreSQL).
    pub fn database_url(&self) -> &str {
        self.database.as_ref().map_or("", |database| &database.url)
    }

    /// Runs the `pingpilot` binary with this relay's configuration, off the test's thread so
    /// the in-process relay keeps running meanwhile.
    pub async fn cli(&self, args: &[&str]) -> Output {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pingpilot"));
        command.args(args).arg("--config").arg(&self.config_path);
        tokio::task::spawn_blocking(move || command.output().expect("run pingpilot"))
            .await
            .expect("cli task")
    }

    /// `pingpilot account create` with the given extra arguments; returns (account id, key).
    pub async fn create_account(&self, extra: &[&str]) -> (String, String) {
        let mut args = vec!["account", "create", "--name", "Test User"];
        args.extend_from_slice(extra);
        let output = self.cli(&args).await;
        assert!(
            output.status.success(),
            "account create failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let created: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
        (
            created["accountId"]
                .as_str()
                .expect("accountId")
                .to_string(),
            created["apiKey"].as_str().expect("apiKey").to_string(),
        )
    }

    /// An account with both channels' fields set and no category; returns its key.
    pub async fn account_with_fields(&self) -> String {
        let (_, key) = self
            .create_account(&[
                "--discord-id",
                DISCORD_ID,
                "--telegram-username",
                "test_user",
            ])
            .await;
        key
    }

    /// An account with both channels' fields set and a `sale` category; returns its key.
    pub async fn ready_account(&self) -> String {
        let key = self.account_with_fields().await;
        let (status, body) = self
            .call(
                Method::POST,
                "/api/v1/categories",
                Some(&key),
                Some(json!({"name": "sale", "color": "#FFB02E", "emoji": "💰"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        key
    }

    /// The token of the account's Telegram link (its `telegram` channel's `linkUrl`).
    pub async fn telegram_link_token(&self, key: &str) -> String {
        let (_, account) = self
            .call(Method::GET, "/api/v1/account", Some(key), None)
            .await;
        let link = channel_of(&account, "telegram")["linkUrl"]
            .as_str()
            .unwrap_or_else(|| panic!("linkUrl: {account}"));
        link.strip_prefix("https://t.me/PingPilotTestBot?start=")
            .unwrap_or_else(|| panic!("{link} opens the configured bot"))
            .to_string()
    }

    /// Links the account's Telegram chat ([`TELEGRAM_CHAT`], user `test_user`, the account's
    /// `telegramUsername`) the way the bot does after `/start <token>`; returns once the account
    /// shows the chat linked and a new link (a token links once).
    pub async fn link_telegram(&self, key: &str) {
        let token = self.telegram_link_token(key).await;
        self.telegram_start(&token, TELEGRAM_CHAT, Some("test_user"))
            .await;
        for _ in 0..100 {
            let (_, account) = self
                .call(Method::GET, "/api/v1/account", Some(key), None)
                .await;
            if channel_of(&account, "telegram")["linked"] == json!(true)
                && self.telegram_link_token(key).await != token
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("telegram chat was not linked");
    }

    /// Makes the bot receive `/start <token>` in private chat `chat` from a user named
    /// `username` (`None`: a user without a username), through the next `getUpdates`.
    pub async fn telegram_start(&self, token: &str, chat: i64, username: Option<&str>) {
        Mock::given(method("POST"))
            .and(path(format!("/bot{TELEGRAM_TOKEN}/getUpdates")))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "ok": true,
                "result": [start_update(token, chat, username)],
            })))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&self.telegram)
            .await;
    }

    /// The texts the bot sent to `chat`, in order, once there are at least `count`.
    pub async fn telegram_texts(&self, chat: i64, count: usize) -> Vec<String> {
        let mut texts = Vec::new();
        for _ in 0..200 {
            texts = bodies_at(&self.telegram, &format!("/bot{TELEGRAM_TOKEN}/sendMessage"))
                .await
                .into_iter()
                .filter(|body| body["chat_id"] == chat)
                .map(|body| body["text"].as_str().unwrap_or_default().to_string())
                .collect();
            if texts.len() >= count {
                return texts;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "chat {chat} got {} of {count} messages: {texts:?}",
            texts.len()
        );
    }

    /// Sends a request; returns the status and the body as JSON (`Null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, parse_body(&text))
    }

    /// A raw request for exact-body assertions.
    /// [`Relay::ready_account`] with Telegram switched off: its events go to Discord only.
    pub async fn discord_only_account(&self) -> String {
        let key = self.ready_account().await;
        let (status, body) = self
            .patch_account(&key, json!({"channels": {"telegram": false}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        key
    }

    /// `PATCH /api/v1/categories/sale` routing it to `channels` (`null`: every channel on).
    pub async fn route_sale(&self, key: &str, channels: Value) -> (StatusCode, Value) {
        self.call(
            Method::PATCH,
            "/api/v1/categories/sale",
            Some(key),
            Some(json!({ "channels": channels })),
        )
        .await
    }

    /// A relay whose Discord refuses every direct message (a permanent error: deliveries fail at
    /// once) and whose Telegram takes every message.
    pub async fn with_discord_refusing() -> Self {
        let relay = Self::start_with("", false).await;
        mount_telegram_send_ok(&relay.telegram).await;
        Mock::given(wiremock::matchers::any())
            .respond_with(discord_dm_refused())
            .mount(&relay.discord)
            .await;
        relay
    }

    /// `PATCH /api/v1/account` with `body`.
    pub async fn patch_account(&self, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, "/api/v1/account", Some(key), Some(body))
            .await
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn send_event(&self, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/event", Some(key), Some(body))
            .await
    }

    /// Polls the event until its delivery status is final; returns the event.
    pub async fn wait_final(&self, key: &str, event_id: &str) -> Value {
        for _ in 0..200 {
            let (status, event) = self
                .call(
                    Method::GET,
                    &format!("/api/v1/events/{event_id}"),
                    Some(key),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{event}");
            if event["deliveryStatus"] != "PENDING" {
                return event;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("event {event_id} never reached a final status");
    }
}

/// A command's stdout as the one JSON document it must be, once it succeeded.
pub fn stdout_json(output: &std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON document")
}

/// The documented example event of the `sale` category.
pub fn sale_event() -> Value {
    json!({"category": "sale", "description": "New purchase completed",
           "fields": {"plan": "pro", "amount": 99.99, "recurring": true}})
}

/// A Telegram update carrying `/start <token>` in private chat `chat` from a user named
/// `username` (`None`: a user without a username), each with an update id of its own.
pub fn start_update(token: &str, chat: i64, username: Option<&str>) -> Value {
    static NEXT_UPDATE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);
    let mut from = json!({"id": chat, "is_bot": false, "first_name": "T"});
    if let Some(username) = username {
        from["username"] = json!(username);
    }
    json!({
        "update_id": NEXT_UPDATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        "message": {"message_id": 1, "date": 0, "text": format!("/start {token}"),
                    "chat": {"id": chat, "type": "private"}, "from": from},
    })
}

/// Sends an event that must be accepted; its id.
pub async fn accepted_id(relay: &Relay, key: &str, body: Value) -> String {
    let (status, body) = relay.send_event(key, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["eventId"].as_str().expect("eventId").to_string()
}

/// Discord's answer when the user does not accept DMs from the bot: a permanent refusal.
pub fn discord_dm_refused() -> ResponseTemplate {
    ResponseTemplate::new(403)
        .set_body_json(json!({"code": 50007, "message": "Cannot send messages to this user"}))
}

/// A response's status, `Retry-After` header and body text.
pub async fn with_retry_after(response: reqwest::Response) -> (StatusCode, Option<String>, String) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    (
        response.status(),
        retry_after,
        response.text().await.expect("body"),
    )
}

pub fn parse_body(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| panic!("response is not JSON: {text:?}"))
    }
}

/// Discord: DM channel creation and messages succeed.
pub async fn mount_discord_ok(discord: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/users/@me/channels"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": DM_CHANNEL, "type": 1})),
        )
        .mount(discord)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/channels/{DM_CHANNEL}/messages")))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "1", "channel_id": DM_CHANNEL})),
        )
        .mount(discord)
        .await;
}

/// Telegram: no updates pending.
pub async fn mount_telegram_idle(telegram: &MockServer) {
    Mock::given(method("POST"))
        .and(path_regex(r"^/bot[^/]+/getUpdates$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true, "result": []})))
        .with_priority(10)
        .mount(telegram)
        .await;
}

/// Telegram: every message is sent.
pub async fn mount_telegram_send_ok(telegram: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("/bot{TELEGRAM_TOKEN}/sendMessage")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"ok": true, "result": {"message_id": 7}})),
        )
        .with_priority(10)
        .mount(telegram)
        .await;
}

/// Bodies of the requests the stand-in received at `path`, in order.
pub async fn bodies_at(server: &MockServer, at: &str) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

/// A relay running as its own `pingpilot serve` process (for crash and multi-process tests).
pub struct RelayProcess {
    pub child: std::process::Child,
    pub base: String,
    /// Its log lines so far (stderr).
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RelayProcess {
    /// Starts `pingpilot serve --config <path>` on an ephemeral port and waits until it is ready.
    pub async fn spawn(config_path: &std::path::Path) -> Self {
        Self::spawn_with(config_path, None, &[]).await
    }

    /// [`RelayProcess::spawn`] with the process's open-file limit (soft and hard) set to
    /// `open_files` first, as `ulimit -n` does, and `env` added to its environment.
    pub async fn spawn_with(
        config_path: &std::path::Path,
        open_files: Option<u64>,
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::{BufRead, BufReader};
        let binary = env!("CARGO_BIN_EXE_pingpilot");
        let mut command = match open_files {
            Some(limit) => {
                let mut command = std::process::Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(binary);
                command
            }
            None => std::process::Command::new(binary),
        };
        let mut child = command
            .args(["serve", "--config"])
            .arg(config_path)
            .env("PINGPILOT_SERVER__BIND", "127.0.0.1:0")
            .env("PINGPILOT_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn relay");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = log.clone();
        let address = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stderr).lines();
            let address = loop {
                let line = lines.next().expect("relay logs its address").expect("line");
                kept.lock().expect("log").push(line.clone());
                if let Some(rest) = line.split("address=").nth(1) {
                    break rest.split_whitespace().next().expect("address").to_string();
                }
                // log.format = "json"
                if let Some(rest) = line.split("\"address\":\"").nth(1) {
                    break rest.split('"').next().expect("address").to_string();
                }
            };
            // Keep draining the log so the relay never blocks on a full pipe.
            std::thread::spawn(move || {
                for line in lines.map_while(Result::ok) {
                    let mut log = kept.lock().expect("log");
                    if log.len() < 100_000 {
                        log.push(line);
                    }
                }
            });
            address
        })
        .await
        .expect("read address");
        let relay = Self {
            child,
            base: format!("http://{address}"),
            log,
        };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if let Ok(response) = client.get(format!("{}/readyz", relay.base)).send().await
                && response.status() == StatusCode::OK
            {
                return relay;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("relay process did not become ready");
    }

    /// The `host:port` it listens on.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Log lines containing `text`.
    pub fn log_lines(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|line| line.contains(text))
            .cloned()
            .collect()
    }

    /// CPU time (user and system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("process stat");
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // The kernel's USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    /// Stops the process as systemd or Docker would (SIGTERM), waits for it and checks that it
    /// exited 0.
    pub fn terminate(&mut self) {
        let signalled = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(signalled.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "{status}");
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in responder that answers 200 with `body` and notes when each request arrived and
/// what it carried.
#[derive(Clone)]
pub struct Recorder {
    pub body: Value,
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(std::time::Instant, Value)>>>,
}

impl Recorder {
    pub fn new(body: Value) -> Self {
        Self {
            body,
            seen: Default::default(),
        }
    }

    pub fn requests(&self) -> Vec<(std::time::Instant, Value)> {
        self.seen.lock().expect("recorder").clone()
    }
}

impl wiremock::Respond for Recorder {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let body = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        self.seen
            .lock()
            .expect("recorder")
            .push((std::time::Instant::now(), body));
        ResponseTemplate::new(200).set_body_json(self.body.clone())
    }
}
