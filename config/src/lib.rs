//! PingPilot's settings: built-in defaults, then a TOML file, then `PINGPILOT_<SECTION>__<KEY>`
//! environment variables or files they name (`…_FILE`) (later wins). A bad value is reported with its key and where it came from.

mod duration;
mod network;
mod secret_files;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use duration::DurationSetting;
pub use network::IpNetwork;

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "PINGPILOT_CONFIG";
const DEFAULT_FILE: &str = "pingpilot.toml";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub delivery: DeliverySettings,
    pub accounts: AccountSettings,
    pub dashboard: DashboardSettings,
    pub metrics: MetricsSettings,
    pub retention: RetentionSettings,
    pub log: LogSettings,
    pub otel: OtelSettings,
    /// Plans by name. The built-in `free`, `pro`, `enterprise` and `unlimited` can be changed and
    /// others added.
    pub plans: BTreeMap<String, PlanSettings>,
    /// One section per provider (`providers.discord`, `providers.telegram`, ...), read by the
    /// provider itself.
    pub providers: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port the HTTP server listens on.
    pub bind: SocketAddr,
    /// On SIGTERM, how long in-flight requests and deliveries may run on before the process
    /// gives their work back and exits.
    pub shutdown_grace: DurationSetting,
    /// Threads that serve requests (deliveries run on a thread of their own). Unset: one per
    /// core, less one on SQLite, whose writes run on a thread of their own; never fewer than one.
    pub worker_threads: Option<usize>,
    /// A client must send a request's headers within this long: from connecting for its first
    /// request, from the request's first byte for the next ones on a kept-alive connection.
    pub header_timeout: DurationSetting,
    /// A kept-alive connection with no request for this long is closed, and so is one whose
    /// client reads nothing of an answer for this long.
    pub idle_timeout: DurationSetting,
    /// A request's body must arrive within this long of its headers (else 408).
    pub body_timeout: DurationSetting,
    /// Connections open at once; more wait in the system's queue until one closes. Unset:
    /// derived from the open-file limit, leaving room for the database and outgoing requests
    /// (at most 4096).
    pub max_connections: Option<usize>,
    /// Reverse proxies in front of the relay (addresses or networks, e.g. `["127.0.0.1",
    /// "10.0.0.0/8"]`). A request from one of them is taken to come from the address its
    /// `X-Forwarded-For` names last that is not itself one of them (the dashboard's Activity
    /// page shows it); from anywhere else the header is ignored. Empty: the TCP peer is the
    /// client.
    pub trusted_proxies: Vec<IpNetwork>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://path.db` (created if absent) or `postgres://user:password@host:port/database`
    /// (the database must exist; `?sslmode=require` for TLS).
    pub url: String,
    /// Pool size: on SQLite the connections used for reads (writes use one more), on
    /// PostgreSQL the whole pool of this process.
    pub max_connections: u32,
    /// How long a write waits for the database (a lock held by another process, a full pool)
    /// before the request is answered 503.
    pub busy_timeout: DurationSetting,
    /// SQLite only: `full` (the default) syncs every commit to disk, so nothing answered 200 is
    /// lost even to a power cut; `normal` syncs less often and a power cut (not a crash of the
    /// relay) may lose the last commits.
    pub synchronous: SqliteSynchronous,
}

/// `database.synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    /// Every commit reaches the disk before it is answered.
    Full,
    /// Commits reach the disk at checkpoints: safe against a crash of the process, not of the
    /// machine.
    Normal,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve `/metrics` on this address instead of `server.bind` (where it is then absent),
    /// e.g. `127.0.0.1:9090` for a scraper on the same machine.
    pub bind: Option<SocketAddr>,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <token>`. Secret.
    pub token: Option<String>,
}

/// How long events are kept.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Events older than this are deleted with their deliveries and attempts (never one with a
    /// delivery still pending); `0` keeps them forever. At least `1d` otherwise. The monthly
    /// quota counts are kept apart and are not changed by it.
    pub events: DurationSetting,
    /// How often a relay looks for events past `events` (one process at a time).
    pub interval: DurationSetting,
    /// Events deleted per transaction: small batches keep the database free for intake.
    pub batch: u32,
    /// How long the record of API requests shown on the dashboard's Activity page is kept; `0`
    /// records none.
    pub activity: DurationSetting,
    /// The most rows of that record kept per account (a row is one kind of request in one
    /// minute, with its count), newest first.
    pub activity_rows: u32,
}

impl RetentionSettings {
    /// The age past which events go, unless they are kept forever.
    pub fn max_age(&self) -> Option<std::time::Duration> {
        Some(self.events.get()).filter(|age| !age.is_zero())
    }

    /// How long API requests are remembered, unless they are not recorded at all.
    pub fn activity_age(&self) -> Option<std::time::Duration> {
        Some(self.activity.get()).filter(|age| !age.is_zero())
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            events: DurationSetting::from_secs(90 * 24 * 3600),
            interval: DurationSetting::from_secs(3600),
            batch: 100,
            activity: DurationSetting::from_secs(7 * 24 * 3600),
            activity_rows: 1000,
        }
    }
}

/// How the relay writes its log (to stderr; `PINGPILOT_LOG` sets the levels, e.g. `debug` or
/// `info,pingpilot_core=debug`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// OpenTelemetry traces, in a build with the cargo feature `otel` (`cargo install --features
/// otel`): a span per request and per delivery attempt, sent over OTLP/HTTP.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct OtelSettings {
    /// A collector's OTLP/HTTP address, e.g. `http://127.0.0.1:4318` (spans go to its
    /// `/v1/traces`). Unset: no traces.
    pub endpoint: Option<String>,
    /// The `service.name` the spans carry.
    pub service_name: String,
}

impl Default for OtelSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            service_name: "pingpilot".into(),
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per record for people: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`), and
    /// the request's `span` (its `request_id`) when there is one.
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySettings {
    /// Attempts (not counting provider-requested pauses) before a delivery is FAILED.
    pub max_attempts: u32,
    /// Age after which an undelivered delivery is FAILED.
    pub max_age: DurationSetting,
    /// First retry delay; doubles with each attempt, with jitter.
    pub backoff_initial: DurationSetting,
    /// Longest retry delay.
    pub backoff_max: DurationSetting,
    /// How long a worker owns a claimed delivery before another may take it over.
    pub lease: DurationSetting,
    /// Deliveries sent at once by this process.
    pub concurrency: u32,
    /// Deliveries sent at once per provider, by provider id (e.g. `telegram = 8`); a provider
    /// not listed may use all of `concurrency`.
    pub provider_concurrency: BTreeMap<String, u32>,
    /// How often a worker looks for due deliveries when nothing wakes it.
    pub poll_interval: DurationSetting,
    /// How long to wait before looking again at a delivery whose channel is not ready.
    pub waiting_recheck: DurationSetting,
    /// CPU priority of the thread that sends deliveries. Below `normal`, a saturated machine
    /// gives intake the CPU first, so clients are answered quickly; deliveries take what is
    /// left and catch up as load falls. Linux only; ignored on other systems.
    pub priority: DeliveryPriority,
}

/// `delivery.priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryPriority {
    /// The same as request handling.
    Normal,
    /// Linux nice value 19, the lowest of the normal class.
    Low,
    /// Linux's idle class (`SCHED_IDLE`): the CPU that nothing else wants, and a sliver under
    /// full load.
    Idle,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AccountSettings {
    /// Plan given to new accounts.
    pub default_plan: String,
    /// Channels (provider ids) switched on for new accounts; every other channel starts off,
    /// and the account switches it on with `PATCH /api/v1/account` (`{"channels": {"<id>":
    /// true}}`). Accounts created before channels were switched on explicitly keep what they
    /// had.
    pub default_channels: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// Serve the web dashboard under `/dashboard`.
    pub enabled: bool,
    /// The address users open the relay at, e.g. `https://pings.example.com`; used in printed
    /// sign-in links and to mark cookies `Secure`. Absent: `http://` + `server.bind`.
    pub public_url: Option<String>,
    /// How long a dashboard sign-in lasts.
    pub session_ttl: DurationSetting,
    /// How long a link from `pingpilot account login-link` can be used (once).
    pub login_link_ttl: DurationSetting,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanSettings {
    /// Events accepted per calendar month (UTC); absent means no limit.
    pub events_per_month: Option<u64>,
    /// Categories an account may have; absent means no limit.
    pub categories: Option<u64>,
    /// Events an account may send per second, on average; absent means no limit.
    pub events_per_second: Option<f64>,
    /// Events an account may send at once above that rate (the bucket's size); absent: one
    /// second's worth.
    pub burst: Option<u64>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace: DurationSetting::from_secs(10),
            worker_threads: None,
            header_timeout: DurationSetting::from_secs(10),
            idle_timeout: DurationSetting::from_secs(60),
            body_timeout: DurationSetting::from_secs(30),
            max_connections: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://pingpilot.db".into(),
            max_connections: 8,
            busy_timeout: DurationSetting::from_secs(5),
            synchronous: SqliteSynchronous::Full,
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            max_age: DurationSetting::from_secs(24 * 3600),
            backoff_initial: DurationSetting::from_secs(1),
            backoff_max: DurationSetting::from_secs(600),
            lease: DurationSetting::from_secs(30),
            concurrency: 32,
            provider_concurrency: BTreeMap::new(),
            poll_interval: DurationSetting::from_secs(1),
            waiting_recheck: DurationSetting::from_secs(60),
            priority: DeliveryPriority::Idle,
        }
    }
}

impl Default for AccountSettings {
    fn default() -> Self {
        Self {
            default_plan: "free".into(),
            default_channels: vec!["discord".into(), "telegram".into()],
        }
    }
}

impl Default for DashboardSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            public_url: None,
            session_ttl: DurationSetting::from_secs(12 * 3600),
            login_link_ttl: DurationSetting::from_secs(15 * 60),
        }
    }
}

impl DashboardSettings {
    /// Where users reach the relay, without a trailing slash.
    pub fn base_url(&self, bind: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if bind.ip().is_unspecified() => format!("http://localhost:{}", bind.port()),
            None => format!("http://{bind}"),
        }
    }
}

impl Settings {
    /// The runtime's worker threads on a machine with `cores` cores: `server.worker_threads`,
    /// else one per core, less the core SQLite's writer thread takes.
    pub fn worker_threads(&self, cores: usize) -> usize {
        let writer_thread = usize::from(self.database.url.starts_with("sqlite:"));
        self.server
            .worker_threads
            .unwrap_or_else(|| cores.saturating_sub(writer_thread))
            .max(1)
    }
}

impl Default for Settings {
    fn default() -> Self {
        let plan =
            |events: Option<u64>, categories: Option<u64>, rate: Option<(f64, u64)>| PlanSettings {
                events_per_month: events,
                categories,
                events_per_second: rate.map(|(per_second, _)| per_second),
                burst: rate.map(|(_, burst)| burst),
            };
        Self {
            server: ServerSettings::default(),
            database: DatabaseSettings::default(),
            delivery: DeliverySettings::default(),
            accounts: AccountSettings::default(),
            dashboard: DashboardSettings::default(),
            metrics: MetricsSettings::default(),
            retention: RetentionSettings::default(),
            log: LogSettings::default(),
            otel: OtelSettings::default(),
            plans: BTreeMap::from([
                ("free".into(), plan(Some(100), Some(3), Some((10.0, 200)))),
                ("pro".into(), plan(Some(1000), Some(10), Some((50.0, 1000)))),
                (
                    "enterprise".into(),
                    plan(Some(10_000), Some(100), Some((500.0, 5000))),
                ),
                ("unlimited".into(), plan(None, None, None)),
            ]),
            providers: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse; figment's message names the key and its source.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(err: figment::Error) -> Self {
        Self::from_figment(err, "")
    }
}

impl ConfigError {
    /// One message per bad value, each naming its key and where the value came from. `prefix`
    /// is the section the values were read from (figment reports keys relative to it).
    fn from_figment(err: figment::Error, prefix: &str) -> Self {
        let messages: Vec<String> = err.into_iter().map(|e| describe(&e, prefix)).collect();
        ConfigError::Invalid(messages.join("; "))
    }
}

fn describe(err: &figment::Error, prefix: &str) -> String {
    let mut key = err.path.join(".").to_lowercase();
    if !prefix.is_empty() {
        // figment may report a section's keys relative to it, with the section appended.
        let relative = key
            .strip_prefix(prefix)
            .or_else(|| key.strip_suffix(prefix))
            .unwrap_or(&key)
            .trim_matches('.');
        key = if relative.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{relative}")
        };
    }
    let source = err
        .metadata
        .as_ref()
        .map(|metadata| format!("from {}", source_name(metadata, &key)));
    let key = if key.is_empty() {
        "configuration".to_string()
    } else {
        key
    };
    match source {
        Some(source) => format!("{key}: {} ({source})", err.kind),
        None => format!("{key}: {}", err.kind),
    }
}

/// Where the value of `key` came from, by its metadata: `file pingpilot.toml`, `environment
/// variable PINGPILOT_…`, `file /run/secrets/x (PINGPILOT_…_FILE)`, or its provider's name.
fn source_name(metadata: &figment::Metadata, key: &str) -> String {
    match &metadata.source {
        Some(figment::Source::File(path)) => format!("file {}", path.display()),
        Some(figment::Source::Custom(source)) => source.clone(),
        _ if metadata.name.contains("environment") => format!(
            "environment variable PINGPILOT_{}",
            key.to_uppercase().replace('.', "__")
        ),
        _ => metadata.name.to_string(),
    }
}

/// The loaded configuration: typed settings plus the layered sources, which provider sections
/// are read from (so their errors name keys and sources too).
#[derive(Clone)]
pub struct Config {
    pub settings: Settings,
    figment: Figment,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
}

impl Config {
    /// Loads defaults → file → environment. The file is `path`, else `$PINGPILOT_CONFIG`, else
    /// `./pingpilot.toml` when present.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let explicit = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        let file = match explicit {
            Some(file) if !file.exists() => return Err(ConfigError::MissingFile(file)),
            Some(file) => Some(file),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|f| f.exists()),
        };
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment.merge(Env::prefixed("PINGPILOT_").split("__").filter(|key| {
            let key = key.as_str();
            (key.contains("__") || key.contains('.'))
                // `…_FILE` names a file, read below; no setting's name ends so.
                && !key.to_ascii_uppercase().ends_with(secret_files::SUFFIX)
        }));
        for secret_file in secret_files::read(std::env::vars())? {
            figment = figment.merge(secret_file);
        }
        Self::from_figment(figment, file)
    }

    /// Builds the configuration from defaults plus the given TOML text (no file, no environment).
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(toml));
        Self::from_figment(figment, None)
    }

    fn from_figment(figment: Figment, file: Option<PathBuf>) -> Result<Self, ConfigError> {
        let settings: Settings = figment.extract()?;
        let config = Self {
            settings,
            figment,
            file,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let s = &self.settings;
        if !s.plans.contains_key(&s.accounts.default_plan) {
            return Err(ConfigError::Invalid(format!(
                "accounts.default_plan: no plan named {:?} (known: {})",
                s.accounts.default_plan,
                s.plans.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let url = &s.database.url;
        let supported = ["sqlite:", "postgres://", "postgresql://"];
        if !supported.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(ConfigError::Invalid(format!(
                "database.url: unsupported database {url:?}; expected sqlite://PATH or \
                 postgres://USER@HOST/DATABASE"
            )));
        }
        let positive = [
            (
                "server.worker_threads",
                s.server.worker_threads.map_or(1, |n| n as u64),
            ),
            ("delivery.max_attempts", s.delivery.max_attempts as u64),
            ("delivery.concurrency", s.delivery.concurrency as u64),
            ("retention.batch", s.retention.batch as u64),
            ("retention.activity_rows", s.retention.activity_rows as u64),
            (
                "database.max_connections",
                s.database.max_connections as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key}: must be at least 1")));
            }
        }
        if let Some((id, _)) = s
            .delivery
            .provider_concurrency
            .iter()
            .find(|(_, n)| **n == 0)
        {
            return Err(ConfigError::Invalid(format!(
                "delivery.provider_concurrency.{id}: must be at least 1"
            )));
        }
        for (name, plan) in &s.plans {
            if let Some(rate) = plan.events_per_second
                && !(rate.is_finite() && rate > 0.0)
            {
                return Err(ConfigError::Invalid(format!(
                    "plans.{name}.events_per_second: must be a number above 0 (leave it out for \
                     no limit)"
                )));
            }
            if plan.burst == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "plans.{name}.burst: must be at least 1"
                )));
            }
        }
        let timeouts = [
            ("server.header_timeout", s.server.header_timeout),
            ("server.idle_timeout", s.server.idle_timeout),
            ("server.body_timeout", s.server.body_timeout),
            ("retention.interval", s.retention.interval),
        ];
        if let Some((key, _)) = timeouts.iter().find(|(_, t)| t.get().is_zero()) {
            return Err(ConfigError::Invalid(format!(
                "{key}: must be longer than 0"
            )));
        }
        if s.server.max_connections == Some(0) {
            return Err(ConfigError::Invalid(
                "server.max_connections: must be at least 1".into(),
            ));
        }
        if s.retention
            .max_age()
            .is_some_and(|age| age.as_secs() < 24 * 3600)
        {
            return Err(ConfigError::Invalid(
                "retention.events: must be at least 1d (or 0 to keep events forever)".into(),
            ));
        }
        if s.delivery.backoff_initial.get() > s.delivery.backoff_max.get() {
            return Err(ConfigError::Invalid(
                "delivery.backoff_initial: must not exceed delivery.backoff_max".into(),
            ));
        }
        Ok(())
    }

    /// Where the value of `key` (e.g. `providers.discord.bot_token`) came from, never the value:
    /// `file /run/secrets/x (PINGPILOT_…_FILE)`, `environment variable PINGPILOT_…`,
    /// `file pingpilot.toml`; `None` when it is not set.
    pub fn source_of(&self, key: &str) -> Option<String> {
        match self.figment.find_value(key) {
            Ok(Value::Empty(..)) | Err(_) => return None,
            Ok(_) => {}
        }
        let metadata = self.figment.find_metadata(key)?;
        Some(source_name(metadata, key))
    }

    /// The `providers.<id>` section, for the provider to read.
    pub fn provider_section(&self, id: &str) -> ProviderSection {
        ProviderSection {
            figment: self.figment.clone(),
            key: format!("providers.{id}"),
        }
    }
}

/// One provider's configuration section.
pub struct ProviderSection {
    figment: Figment,
    key: String,
}

impl ProviderSection {
    /// A section holding the given TOML table (for tests and tools).
    pub fn from_toml(id: &str, toml: &str) -> Self {
        Self {
            figment: Figment::from(Toml::string(&format!("[providers.{id}]\n{toml}"))),
            key: format!("providers.{id}"),
        }
    }

    /// The section's key, e.g. `providers.discord`.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the section; a missing section yields `T::default()`.
    pub fn extract<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        if self.figment.find_value(&self.key).is_err() {
            return Ok(T::default());
        }
        self.figment
            .extract_inner(&self.key)
            .map_err(|err| ConfigError::from_figment(err, &self.key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn without_providers(settings: &Settings) -> serde_json::Value {
        let mut value = serde_json::to_value(settings).expect("serializable");
        value.as_object_mut().expect("object").remove("providers");
        value
    }

    #[test]
    fn the_example_file_shows_the_defaults() {
        let example = Config::from_toml(include_str!("../pingpilot.toml")).expect("example parses");
        assert_eq!(
            without_providers(&example.settings),
            without_providers(&Settings::default())
        );
    }

    /// Why `toml` is refused as a configuration.
    fn rejection(toml: &str) -> String {
        Config::from_toml(toml).err().expect("rejected").to_string()
    }

    #[test]
    fn bad_values_name_their_key_and_file() {
        let err = rejection("[delivery]\nmax_age = \"soon\"\n");
        assert!(err.contains("delivery.max_age"), "{err}");
        let err = rejection("[accounts]\ndefault_plan = \"gold\"\n");
        assert!(err.contains("accounts.default_plan"), "{err}");
        let err = rejection("[database]\nurl = \"mysql://x\"\n");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn worker_threads_leave_sqlites_writer_a_core_unless_set() {
        let sqlite = Config::from_toml("").expect("defaults").settings;
        assert_eq!(sqlite.worker_threads(2), 1);
        assert_eq!(sqlite.worker_threads(8), 7);
        assert_eq!(sqlite.worker_threads(1), 1);
        let postgres = Config::from_toml("[database]\nurl = \"postgres://db/x\"\n")
            .expect("postgres")
            .settings;
        assert_eq!(postgres.worker_threads(2), 2);
        let set = Config::from_toml("[server]\nworker_threads = 3\n")
            .expect("set")
            .settings;
        assert_eq!(set.worker_threads(2), 3);
        let err = rejection("[server]\nworker_threads = 0\n");
        assert!(err.contains("server.worker_threads"), "{err}");
    }

    #[test]
    fn delivery_priority_defaults_to_idle_and_names_the_choices() {
        let defaults = Config::from_toml("").expect("defaults").settings;
        assert_eq!(defaults.delivery.priority, DeliveryPriority::Idle);
        for (text, priority) in [
            ("normal", DeliveryPriority::Normal),
            ("low", DeliveryPriority::Low),
            ("idle", DeliveryPriority::Idle),
        ] {
            let set = Config::from_toml(&format!("[delivery]\npriority = \"{text}\"\n"))
                .expect("a named priority");
            assert_eq!(set.settings.delivery.priority, priority);
        }
        let err = rejection("[delivery]\npriority = \"high\"\n");
        assert!(err.contains("delivery.priority"), "{err}");
        assert!(err.contains("normal") && err.contains("idle"), "{err}");
    }

    #[test]
    fn provider_sections_default_when_absent_and_report_full_keys() {
        #[derive(Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        struct Section {
            rate: u32,
        }
        let config = Config::from_toml("").expect("defaults");
        assert_eq!(
            config
                .provider_section("x")
                .extract::<Section>()
                .expect("default")
                .rate,
            0
        );
        let section = ProviderSection::from_toml("x", "rate = \"fast\"");
        let err = section.extract::<Section>().err().expect("rejected");
        assert!(err.to_string().contains("providers.x.rate"), "{err}");
    }
}
