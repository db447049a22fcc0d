//! Storage faults on SQLite: a full disk, the file locked by another program, the file deleted
//! under the relay. Each must answer 503 with `Retry-After` while it lasts, fail readiness, and
//! (but for the deleted file) recover by itself once it is gone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const UNAVAILABLE: &str = r#"{"message":"Service unavailable, please retry"}"#;

/// A relay process on a SQLite file of its own (whatever backend the suite runs on: these
/// faults are SQLite's), with a Discord stand-in that accepts everything.
struct SqliteRelay {
    relay: RelayProcess,
    discord: wiremock::MockServer,
    client: reqwest::Client,
    key: String,
    database: PathBuf,
}

impl SqliteRelay {
    /// `database` holds more lines of the `[database]` section.
    async fn start(dir: &Path, database_settings: &str) -> Self {
        let discord = wiremock::MockServer::start().await;
        mount_discord_ok(&discord).await;
        let database = dir.join("pingpilot.db");
        let config = dir.join("pingpilot.toml");
        let text = format!(
            "[database]\nurl = \"sqlite://{}\"\n{database_settings}\n\n\
             [delivery]\nbackoff_initial = \"50ms\"\npoll_interval = \"200ms\"\n\n\
             [providers.discord]\nbot_token = \"{DISCORD_TOKEN}\"\napi_base = \"{}\"\n",
            database.display(),
            discord.uri()
        );
        std::fs::write(&config, text).expect("config");
        let relay = RelayProcess::spawn(&config).await;
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_pingpilot"))
            .args([
                "account",
                "create",
                "--name",
                "Faults",
                "--plan",
                "unlimited",
            ])
            .args(["--discord-id", DISCORD_ID, "--config"])
            .arg(&config)
            .output()
            .expect("account create");
        assert!(output.status.success(), "{output:?}");
        let created: Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let key = created["apiKey"].as_str().expect("key").to_string();
        let this = Self {
            relay,
            discord,
            client: reqwest::Client::new(),
            key,
            database,
        };
        let (status, _) = this
            .account_write(json!({"channels": {"telegram": false}}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, body) = this
            .send(
                reqwest::Method::POST,
                "/api/v1/categories",
                Some(json!({"name": "sale", "color": "#00FF00"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        this
    }

    /// Status, `Retry-After` and body text.
    async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, String) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.relay.base))
            .header("Authorization", format!("Bearer {}", self.key))
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            request = request.json(&body);
        }
        with_retry_after(request.send().await.expect("request")).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, String) {
        let (status, _, body) = self.send_raw(method, path, body).await;
        (status, body)
    }

    async fn event(&self, description: &str) -> (StatusCode, Option<String>, String) {
        self.send_raw(
            reqwest::Method::POST,
            "/api/v1/event",
            Some(json!({"category": "sale", "description": description})),
        )
        .await
    }

    async fn account_write(&self, body: Value) -> (StatusCode, String) {
        self.send(reqwest::Method::PATCH, "/api/v1/account", Some(body))
            .await
    }

    async fn ready(&self) -> StatusCode {
        self.client
            .get(format!("{}/readyz", self.relay.base))
            .send()
            .await
            .expect("readyz")
            .status()
    }

    /// Waits up to `limit` for `condition` on readiness.
    async fn wait_ready(&self, expected: StatusCode, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.ready().await != expected {
            assert!(
                Instant::now() < deadline,
                "/readyz never answered {expected}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends events until one is accepted again, up to `limit`.
    async fn wait_accepted(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let (status, _, body) = self.event("after the fault").await;
            if status == StatusCode::OK {
                return;
            }
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
            );
            assert!(Instant::now() < deadline, "intake never recovered");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root): the test then says so and skips.
    fn mount(megabytes: u32) -> Option<Self> {
        let dir = tempfile::TempDir::new().expect("dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|status| status.success());
        if !mounted {
            assert!(!running_as_root(), "root could not mount a tmpfs");
            eprintln!("skipped: mounting a small disk needs root");
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of the disk with one file; its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 * 1024];
        while file.write_all(&chunk).is_ok() {}
        let _ = file.flush();
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Whether this process's effective user is root (`/proc/self/status`).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status
                .lines()
                .find(|line| line.starts_with("Uid:"))?
                .to_string();
            Some(uids.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_then_every_write_path_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount(24) else {
        return;
    };
    let relay = SqliteRelay::start(disk.path(), "").await;
    let (status, _, body) = relay.event("before").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let filler = disk.fill();
    // The WAL grows into the full disk: intake fails as unavailable, not as an internal error.
    let long = "x".repeat(4000);
    let started = Instant::now();
    let mut refused = None;
    for i in 0..3000 {
        let (status, retry_after, body) = relay.event(&format!("{i} {long}")).await;
        if status != StatusCode::OK {
            refused = Some((status, retry_after, body));
            break;
        }
    }
    let (status, retry_after, body) = refused.expect("the full disk refuses events");
    assert_eq!(
        (status, retry_after.as_deref(), body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("5"), UNAVAILABLE)
    );
    // Writes outside intake too, and readiness.
    let (status, body) = relay.account_write(json!({"name": "Full"})).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    );
    relay
        .wait_ready(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10))
        .await;
    // Let the delivery loop meet the full disk for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::fs::remove_file(&filler).expect("free the disk");
    // Every write path comes back without a restart.
    relay.wait_accepted(Duration::from_secs(15)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = relay.account_write(json!({"name": "Freed"})).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "account writes never recovered: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = relay
        .send(
            reqwest::Method::POST,
            "/api/v1/account/api-keys",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = relay
        .send(
            reqwest::Method::POST,
            "/api/v1/categories",
            Some(json!({"name": "after", "color": "#0000FF"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    relay
        .wait_ready(StatusCode::OK, Duration::from_secs(10))
        .await;
    // The failures were named for what they are, and logged once every few seconds.
    let elapsed = started.elapsed().as_secs() as usize;
    let claims = relay.relay.log_lines("could not claim deliveries");
    assert!(
        claims.len() <= elapsed / 5 + 2,
        "{} lines: {claims:?}",
        claims.len()
    );
    assert_eq!(
        relay.relay.log_lines("corrupt stored value"),
        Vec::<String>::new()
    );
    let full = relay.relay.log_lines("disk is full");
    assert!(!full.is_empty(), "the log names the full disk");
    assert!(full.len() < 40, "{} lines about the full disk", full.len());
    // And what was accepted before and after is delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while bodies_at(&relay.discord, &format!("/channels/{DM_CHANNEL}/messages"))
        .await
        .iter()
        .all(|b| b["embeds"][0]["description"] != "after the fault")
    {
        assert!(Instant::now() < deadline, "deliveries never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_program_answers_503_after_the_busy_timeout() {
    let dir = tempfile::TempDir::new().expect("dir");
    let relay = SqliteRelay::start(dir.path(), "busy_timeout = \"1s\"").await;
    use sqlx::Connection;
    let mut other =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}", relay.database.display()))
            .await
            .expect("another program opens the file");
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .expect("and locks it");
    let started = Instant::now();
    let (status, retry_after, body) = relay.event("while locked").await;
    let waited = started.elapsed();
    assert_eq!(
        (status, retry_after.as_deref(), body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("5"), UNAVAILABLE)
    );
    assert!(waited < Duration::from_secs(8), "waited {waited:?}");
    let (status, body) = relay.account_write(json!({"name": "Locked"})).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    );
    relay
        .wait_ready(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10))
        .await;
    sqlx::query("ROLLBACK")
        .execute(&mut other)
        .await
        .expect("unlock");
    relay.wait_accepted(Duration::from_secs(15)).await;
    let (status, body) = relay.account_write(json!({"name": "Unlocked"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    relay
        .wait_ready(StatusCode::OK, Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_database_file_is_noticed_and_writes_are_refused() {
    let dir = tempfile::TempDir::new().expect("dir");
    let relay = SqliteRelay::start(dir.path(), "").await;
    let (status, _, _) = relay.event("before").await;
    assert_eq!(status, StatusCode::OK);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", relay.database.display()));
    }
    relay
        .wait_ready(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(10))
        .await;
    let (status, retry_after, body) = relay.event("after the delete").await;
    assert_eq!(
        (status, retry_after.as_deref(), body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("5"), UNAVAILABLE)
    );
    let (status, body) = relay.account_write(json!({"name": "Gone"})).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE)
    );
    // One error when it is noticed (the 503s and readiness add their own warnings).
    let logged: Vec<String> = relay
        .relay
        .log_lines("was removed or replaced")
        .into_iter()
        .filter(|line| line.contains(" ERROR pingpilot_core::store"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
}
