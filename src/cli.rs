//! The operator CLI. Every command takes `--config PATH`; results go to stdout (JSON where a
//! program may read them), errors to stderr with a non-zero exit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use pingpilot_core::api;
use pingpilot_core::app::{offline_providers, open_store};
use pingpilot_core::config::{Config, LogFormat, Settings};
use pingpilot_core::model::{AccountId, KeyId, format_time, now_millis};
use pingpilot_core::provider;
use pingpilot_core::service::retention;
use pingpilot_core::store::EventScope;
use serde_json::{Value, json};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "pingpilot",
    version,
    about = "Self-hostable notification relay"
)]
struct Cli {
    /// Configuration file (default: $PINGPILOT_CONFIG, else ./pingpilot.toml when present).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the database schema is brought up to date first).
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Print the OpenAPI document, as the server serves it.
    Openapi {
        #[arg(long, value_enum, default_value_t = SpecFormat::Json)]
        format: SpecFormat,
    },
    /// Check or describe the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the providers linked into this binary, their account fields and settings.
    Providers,
    /// Send an event to a running relay; prints its JSON answer, exits non-zero unless 200.
    Send(SendArgs),
    /// Ask a running relay whether it is ready (`GET /readyz`); exits non-zero unless it is.
    Ready {
        /// The relay (default: http:// and the configured server.bind).
        #[arg(long)]
        url: Option<String>,
    },
    /// Delete the events past retention.events now (with their deliveries and attempts) and
    /// give the space back; prints what was removed.
    Prune {
        /// Only count what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// SQLite: also rewrite the whole file compactly (VACUUM), which a file made before
        /// this release needs once to shrink. Holds the database until it is done.
        #[arg(long, conflicts_with = "dry_run")]
        vacuum: bool,
    },
    /// Write a consistent copy of the live SQLite database to FILE (PostgreSQL: use pg_dump).
    Backup {
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct SendArgs {
    /// The relay (default: $PINGPILOT_URL, else http:// and the configured server.bind).
    #[arg(long)]
    url: Option<String>,
    /// The API key (default: $PINGPILOT_API_KEY).
    #[arg(long)]
    key: Option<String>,
    /// The event's category (it must exist on the account).
    #[arg(long)]
    category: String,
    /// What happened (default: "A new <category> event has occurred!").
    #[arg(long)]
    description: Option<String>,
    /// A field, `name=value`; numbers and true/false are sent as such. Repeat for more.
    #[arg(long = "field", value_name = "NAME=VALUE")]
    fields: Vec<String>,
    /// Hold the answer until the deliveries are final, up to this many seconds (0-30).
    #[arg(long, value_name = "SECONDS")]
    wait: Option<u32>,
    /// Answer a repeat of this request (same key, same body) with its first answer.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints {"accountId","apiKey"}.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// Plan name (default: accounts.default_plan).
        #[arg(long)]
        plan: Option<String>,
    },
    /// List accounts as JSON.
    List,
    /// Print a one-time dashboard sign-in link for an account (valid for
    /// dashboard.login_link_ttl).
    LoginLink {
        #[arg(long)]
        account: String,
    },
    /// Change an account's plan.
    SetPlan {
        #[arg(long)]
        account: String,
        #[arg(long)]
        plan: String,
    },
    /// End every dashboard session of an account; prints {"accountId","sessionsEnded"}.
    SignOut {
        #[arg(long)]
        account: String,
    },
    /// Print an account: its settings, fields and channels.
    Show {
        #[arg(long)]
        account: String,
    },
    /// Disable an account: its API keys answer 403 and its deliveries wait until it is enabled.
    Disable {
        #[arg(long)]
        account: String,
    },
    /// Enable a disabled account; its waiting deliveries go out.
    Enable {
        #[arg(long)]
        account: String,
    },
    /// Delete an account and all its data (events, deliveries, keys, categories, sessions).
    Delete {
        #[arg(long)]
        account: String,
        /// Really delete: without it, only says what would be deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for an account; prints {"keyId","name","apiKey","prefix"}.
    Create {
        #[arg(long)]
        account: String,
        /// What the key is for, e.g. "billing server" (at most 64 characters).
        #[arg(long)]
        name: Option<String>,
    },
    /// Revoke an API key.
    Revoke {
        #[arg(long)]
        key_id: String,
    },
    /// List an account's live API keys (never the keys themselves).
    List {
        #[arg(long)]
        account: String,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate the effective configuration.
    Check,
    /// Print the configuration's JSON Schema.
    Schema,
}

#[derive(Clone, Copy, ValueEnum)]
enum SpecFormat {
    Json,
    Yaml,
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    App(#[from] pingpilot_core::app::AppError),
    #[error(transparent)]
    Config(#[from] pingpilot_core::config::ConfigError),
    #[error(transparent)]
    Store(#[from] pingpilot_core::store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The relay answered, but not with 200 (its answer is on stdout).
    #[error("the relay answered {0}")]
    Refused(u16),
}

/// `account create` takes one flag per provider-declared account field (`--discord-id`, ...).
fn command_with_provider_flags() -> clap::Command {
    Cli::command().mut_subcommand("account", |account| {
        account.mut_subcommand("create", |mut create| {
            for (registration, field) in provider::account_fields() {
                let help = format!("{} ({})", field.description, registration.display_name);
                create = create.arg(
                    Arg::new(field.name)
                        .long(field.cli_flag())
                        .value_name("VALUE")
                        .help(help),
                );
            }
            create
        })
    })
}

/// Parses the process arguments and runs the command.
pub fn run() -> ExitCode {
    let matches = command_with_provider_flags().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    // The server logs (and traces) as configured; a configuration that does not load is
    // reported by the command itself. The other commands only warn, as text.
    let serving = matches!(cli.command, Command::Serve);
    let config = serving
        .then(|| Config::load(cli.config.as_deref()).ok())
        .flatten();
    // Flushes what the log's writer thread (and the trace exporter) still hold at the end.
    let _logging = init_logging(serving, config.as_ref().map(|config| &config.settings));
    match run_command(cli, &matches, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; `server_config` is the server's configuration, when it loaded.
fn run_command(
    cli: Cli,
    matches: &ArgMatches,
    server_config: Option<Config>,
) -> Result<(), CliError> {
    // The server's runtime is sized by its configuration (`server.worker_threads`).
    let worker_threads = server_config.as_ref().map(|config| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        config.settings.worker_threads(cores)
    });
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = builder.enable_all().build().map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot start the runtime: {err}"))
    })?;
    runtime.block_on(execute(cli, matches, server_config))
}

/// What must outlive the command for its log and traces to be complete.
struct Logging {
    _writer: tracing_appender::non_blocking::WorkerGuard,
    #[cfg(feature = "otel")]
    _traces: Option<crate::telemetry::Exporter>,
}

/// Logs to stderr through a writer thread of its own, so that writing never holds a request;
/// should stderr fall behind by more than the writer's buffer, lines are dropped rather than
/// waited for. With `settings` (the server), in `log.format`, and with traces to
/// `otel.endpoint` in a build with the `otel` feature.
fn init_logging(serving: bool, settings: Option<&Settings>) -> Logging {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PINGPILOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let lines = match settings.map_or(LogFormat::Text, |s| s.log.format) {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otel")]
    {
        let (traces, exporter) = match settings.map(|s| crate::telemetry::layer(&s.otel)) {
            Some(Ok(Some((layer, exporter)))) => (Some(layer), Some(exporter)),
            Some(Err(err)) => {
                eprintln!("warning: no traces are sent: {err}");
                (None, None)
            }
            _ => (None, None),
        };
        subscriber.with(traces).init();
        Logging {
            _writer: guard,
            _traces: exporter,
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        subscriber.init();
        if settings.is_some_and(|s| s.otel.endpoint.is_some()) {
            tracing::warn!(
                "otel.endpoint is set, but this build has no OpenTelemetry: build it with \
                 `--features otel` to send traces"
            );
        }
        Logging { _writer: guard }
    }
}

fn print_json(value: &Value) {
    println!("{value}");
}

async fn execute(
    cli: Cli,
    matches: &ArgMatches,
    server_config: Option<Config>,
) -> Result<(), CliError> {
    let config_path = cli.config.as_deref();
    match cli.command {
        Command::Openapi { format } => {
            print!(
                "{}",
                match format {
                    SpecFormat::Json => api::openapi_json(),
                    SpecFormat::Yaml => api::openapi_yaml(),
                }
            );
            Ok(())
        }
        Command::Providers => {
            println!("{}", pretty(&providers_description()));
            Ok(())
        }
        Command::Completions { shell } => {
            let mut command = command_with_provider_flags();
            clap_complete::generate(shell, &mut command, "pingpilot", &mut std::io::stdout());
            Ok(())
        }
        Command::Send(args) => send(config_path, args).await,
        Command::Ready { url } => ready(config_path, url).await,
        Command::Prune { dry_run, vacuum } => {
            prune(&Config::load(config_path)?, dry_run, vacuum).await
        }
        Command::Backup { to } => backup(&Config::load(config_path)?, &to),
        Command::Config(ConfigCommand::Schema) => {
            println!("{}", pretty(&config_schema()));
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let config = Config::load(config_path)?;
            // Building the providers validates their sections too.
            let providers = offline_providers(&config)?;
            let waiting: Vec<Value> = providers
                .iter()
                .filter_map(|entry| {
                    entry.provider.not_configured().map(|reason| {
                        json!({"provider": entry.registration.id, "notConfigured": reason})
                    })
                })
                .collect();
            print_json(&json!({
                "ok": true,
                "file": config.file.as_ref().map(|f| f.display().to_string()),
                "database": redact_url(&config.settings.database.url),
                "bind": config.settings.server.bind.to_string(),
                "secrets": secret_sources(&config),
                "warnings": waiting,
            }));
            Ok(())
        }
        // A configuration that did not load is loaded again here, to report why.
        Command::Serve => match server_config {
            Some(config) => serve(&config).await,
            None => serve(&Config::load(config_path)?).await,
        },
        Command::Account(command) => {
            let config = Config::load(config_path)?;
            account_command(&config, command, matches).await
        }
        Command::Key(command) => {
            let config = Config::load(config_path)?;
            key_command(&config, command).await
        }
    }
}

/// The settings that hold secrets: the database URL (it may hold a password), the metrics
/// token, and every provider setting its schema marks `writeOnly`.
fn secret_keys() -> Vec<String> {
    let mut keys = vec!["database.url".to_string(), "metrics.token".to_string()];
    for registration in provider::registered() {
        let schema = serde_json::to_value((registration.config_schema)()).unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            keys.extend(
                properties
                    .iter()
                    .filter(|(_, property)| property["writeOnly"] == json!(true))
                    .map(|(name, _)| format!("providers.{}.{name}", registration.id)),
            );
        }
    }
    keys
}

/// Where each secret that is set came from, never its value.
fn secret_sources(config: &Config) -> Vec<Value> {
    secret_keys()
        .into_iter()
        .filter_map(|key| {
            let from = config.source_of(&key)?;
            Some(json!({"key": key, "from": from}))
        })
        .collect()
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// A database URL without its password, for display.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn serve(config: &Config) -> Result<(), CliError> {
    // Signal handlers go in before the address is announced, so a SIGTERM sent as soon as the
    // server is seen is a clean shutdown.
    let signals = Signals::install()?;
    // Before anything is opened: the connection limit is derived from it.
    if let Some(limit) = pingpilot_core::server::raise_open_file_limit() {
        tracing::info!(open_files = limit, "open-file limit");
    }
    let listener = pingpilot_core::server::bind(config.settings.server.bind)?;
    tracing::info!(address = %listener.local_addr()?, "PingPilot listening");
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        signals.wait().await;
        tracing::info!("shutting down: no new requests; finishing in-flight work");
        let _ = stop.send(true);
    });
    crate::serve(config, listener, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and Ctrl-C, registered up front.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn wait(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn check_plan(settings: &Settings, plan: &str) -> Result<(), CliError> {
    if settings.plans.contains_key(plan) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "no plan named {plan:?} (known: {})",
            settings
                .plans
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

async fn account_command(
    config: &Config,
    command: AccountCommand,
    matches: &ArgMatches,
) -> Result<(), CliError> {
    let settings = &config.settings;
    let command_name = matches
        .subcommand_matches("account")
        .and_then(ArgMatches::subcommand_name)
        .unwrap_or_default();
    match command {
        AccountCommand::Create { name, email, plan } => {
            let plan = plan.unwrap_or_else(|| settings.accounts.default_plan.clone());
            check_plan(settings, &plan)?;
            if name.trim().is_empty() {
                return Err(CliError::Usage("--name must not be empty".into()));
            }
            let create = matches
                .subcommand_matches("account")
                .and_then(|m| m.subcommand_matches("create"));
            let mut fields = BTreeMap::new();
            for (_, field) in provider::account_fields() {
                if let Some(value) = create.and_then(|m| m.get_one::<String>(field.name)) {
                    let normalized = (field.normalize)(value).map_err(|message| {
                        CliError::Usage(format!("--{}: {message}", field.cli_flag()))
                    })?;
                    fields.insert(field.name.to_string(), normalized);
                }
            }
            let channels = provider::default_channels(settings)?;
            let store = open_store(config).await?;
            let (account, key) = store
                .create_account(name.trim(), email.as_deref(), &plan, &fields, &channels)
                .await?;
            print_json(&json!({"accountId": account.id, "apiKey": key}));
        }
        AccountCommand::List => {
            let store = open_store(config).await?;
            let accounts: Vec<Value> = store
                .list_accounts()
                .await?
                .into_iter()
                .map(|a| {
                    json!({"id": a.id, "name": a.name, "email": a.email, "plan": a.plan,
                           "createdAt": format_time(a.created_at),
                           "disabledAt": a.disabled_at.map(format_time)})
                })
                .collect();
            println!("{}", pretty(&Value::Array(accounts)));
        }
        AccountCommand::LoginLink { account } => {
            let store = open_store(config).await?;
            let account_id = account_id(&account)?;
            if store
                .account(&account_id)
                .await?
                .is_some_and(|found| found.disabled_at.is_some())
            {
                return Err(CliError::Usage(format!(
                    "account {account} is disabled: `pingpilot account enable` it first"
                )));
            }
            let Some(url) = pingpilot_dashboard::login_link(&store, settings, &account_id).await?
            else {
                return Err(no_account(&account));
            };
            println!("{url}");
            eprintln!("Works once, within {}.", settings.dashboard.login_link_ttl);
        }
        AccountCommand::SetPlan { account, plan } => {
            check_plan(settings, &plan)?;
            let store = open_store(config).await?;
            if !store.set_plan(&account_id(&account)?, &plan).await? {
                return Err(no_account(&account));
            }
            print_json(&json!({"accountId": account, "plan": plan}));
        }
        AccountCommand::Show { account } => {
            let store = open_store(config).await?;
            let Some(found) = store.account(&account_id(&account)?).await? else {
                return Err(no_account(&account));
            };
            let channels: Vec<Value> = provider::registered()
                .into_iter()
                .map(|p| json!({"provider": p.id, "enabled": p.enabled_for(&found)}))
                .collect();
            let keys = store.list_keys(&found.id).await?.len();
            println!(
                "{}",
                pretty(&json!({
                    "id": found.id, "name": found.name, "email": found.email, "plan": found.plan,
                    "fields": found.fields, "channels": channels, "apiKeys": keys,
                    "createdAt": format_time(found.created_at),
                    "disabledAt": found.disabled_at.map(format_time),
                }))
            );
        }
        AccountCommand::Disable { account } | AccountCommand::Enable { account } => {
            let disable = matches!(command_name, "disable");
            let store = open_store(config).await?;
            let at = disable.then(now_millis);
            if !store.set_disabled(&account_id(&account)?, at).await? {
                return Err(no_account(&account));
            }
            print_json(&json!({"accountId": account, "disabled": disable}));
        }
        AccountCommand::Delete { account, yes } => {
            let store = open_store(config).await?;
            let account_id = account_id(&account)?;
            if store.account(&account_id).await?.is_none() {
                return Err(no_account(&account));
            }
            if !yes {
                let held = store
                    .count_events(EventScope::OfAccount(&account_id))
                    .await?;
                eprintln!(
                    "would delete account {account} with {} events, {} deliveries and {} \
                     attempts, its keys, categories and sessions",
                    held.events, held.deliveries, held.attempts
                );
                return Err(CliError::Usage(
                    "nothing deleted: add --yes to delete the account and all its data".into(),
                ));
            }
            let batch = settings.retention.batch;
            let Some(removed) = retention::delete_account(&store, &account_id, batch).await? else {
                return Err(no_account(&account));
            };
            print_json(&json!({"deleted": account, "events": removed.events,
                               "deliveries": removed.deliveries, "attempts": removed.attempts}));
        }
        AccountCommand::SignOut { account } => {
            let store = open_store(config).await?;
            let account_id = account_id(&account)?;
            let Some(ended) = pingpilot_dashboard::sign_out_everywhere(&store, &account_id).await?
            else {
                return Err(no_account(&account));
            };
            print_json(&json!({"accountId": account, "sessionsEnded": ended}));
        }
    }
    Ok(())
}

async fn key_command(config: &Config, command: KeyCommand) -> Result<(), CliError> {
    let store = open_store(config).await?;
    match command {
        KeyCommand::Create { account, name } => {
            let name = match name {
                Some(name) => api::parse_key_name(&name)
                    .map_err(|message| CliError::Usage(format!("--name {message}")))?,
                None => None,
            };
            let Some((info, key)) = store
                .create_key(&account_id(&account)?, name.as_deref())
                .await?
            else {
                return Err(no_account(&account));
            };
            print_json(&json!({"keyId": info.id, "name": info.name, "apiKey": key,
                               "prefix": info.prefix}));
        }
        KeyCommand::List { account } => {
            let account_id = account_id(&account)?;
            if store.account(&account_id).await?.is_none() {
                return Err(no_account(&account));
            }
            let keys: Vec<Value> = store
                .list_keys(&account_id)
                .await?
                .iter()
                .map(|k| {
                    json!({"keyId": k.id, "name": k.name, "prefix": k.prefix,
                           "createdAt": format_time(k.created_at),
                           "lastUsedAt": k.last_used_at.map(format_time)})
                })
                .collect();
            println!("{}", pretty(&Value::Array(keys)));
        }
        KeyCommand::Revoke { key_id } => {
            let revoked = match KeyId::parse(&key_id) {
                Some(id) => store.revoke_key(&id, None).await?,
                None => false,
            };
            if !revoked {
                return Err(CliError::Usage(format!(
                    "no live API key with id {key_id:?}"
                )));
            }
            print_json(&json!({"revoked": key_id}));
        }
    }
    Ok(())
}

/// The running relay a command talks to: `--url`, else `$PINGPILOT_URL` when `from_env`, else
/// the configured `server.bind` (on this machine's loopback when it listens on every address).
fn relay_url(
    config_path: Option<&Path>,
    url: Option<String>,
    from_env: bool,
) -> Result<String, CliError> {
    let from_env = || {
        from_env
            .then(|| std::env::var("PINGPILOT_URL").ok())
            .flatten()
    };
    if let Some(url) = url.or_else(from_env) {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let bind = Config::load(config_path)?.settings.server.bind;
    let address = if bind.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bind.port())
    } else {
        bind
    };
    Ok(format!("http://{address}"))
}

fn unreachable(base: &str, err: reqwest::Error) -> CliError {
    std::io::Error::other(format!(
        "cannot reach the relay at {base}: {}",
        err.without_url()
    ))
    .into()
}

/// `pingpilot send`: one event to a running relay, as an application would send it.
async fn send(config_path: Option<&Path>, args: SendArgs) -> Result<(), CliError> {
    let key = args.key.or_else(|| std::env::var("PINGPILOT_API_KEY").ok());
    let key = key.ok_or_else(|| {
        CliError::Usage("an API key is needed: --key or PINGPILOT_API_KEY".into())
    })?;
    let base = relay_url(config_path, args.url, true)?;
    let mut fields = serde_json::Map::new();
    for field in &args.fields {
        let Some((name, value)) = field.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--field {field:?}: expected NAME=VALUE"
            )));
        };
        fields.insert(name.to_string(), field_value(value));
    }
    let mut body = json!({"category": args.category});
    if let Some(description) = args.description {
        body["description"] = json!(description);
    }
    if !fields.is_empty() {
        body["fields"] = Value::Object(fields);
    }
    let mut url = format!("{base}/api/v1/event");
    if let Some(wait) = args.wait {
        url.push_str(&format!("?wait={wait}"));
    }
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(&body);
    if let Some(idempotency_key) = args.idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let response = request
        .send()
        .await
        .map_err(|err| unreachable(&base, err))?;
    let status = response.status().as_u16();
    let answer = response
        .text()
        .await
        .map_err(|err| std::io::Error::other(format!("the relay's answer broke off: {err}")))?;
    println!("{}", answer.trim_end());
    if status == 200 {
        Ok(())
    } else {
        Err(CliError::Refused(status))
    }
}

/// `pingpilot ready`: the relay's readiness, as a health check asks for it: the relay of this
/// configuration, never the one `$PINGPILOT_URL` names for `send`.
async fn ready(config_path: Option<&Path>, url: Option<String>) -> Result<(), CliError> {
    let base = relay_url(config_path, url, false)?;
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|err| std::io::Error::other(err.to_string()))?
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map_err(|err| unreachable(&base, err))?;
    let status = response.status().as_u16();
    let answer = response.text().await.unwrap_or_default();
    println!("{}", answer.trim_end());
    if status == 200 {
        Ok(())
    } else {
        Err(CliError::Refused(status))
    }
}

/// `pingpilot prune`: retention now, or what it would delete.
async fn prune(config: &Config, dry_run: bool, vacuum: bool) -> Result<(), CliError> {
    let settings = &config.settings.retention;
    let store = open_store(config).await?;
    let now = now_millis();
    let pruned = if dry_run {
        retention::count(&store, settings, now).await?
    } else {
        retention::prune(&store, settings, now, |_, _| {}).await?
    };
    let Some(pruned) = pruned else {
        print_json(&json!({"retention": "forever", "events": 0, "deliveries": 0, "attempts": 0}));
        eprintln!("retention.events is 0: events are kept forever");
        return Ok(());
    };
    let mut bytes_freed = pruned.bytes_freed;
    if vacuum && let Some(more) = store.compact().await? {
        *bytes_freed.get_or_insert(0) += more;
    }
    let mut report = json!({
        "dryRun": dry_run,
        "retention": settings.events.to_string(),
        "before": format_time(pruned.before),
        "events": pruned.removed.events,
        "deliveries": pruned.removed.deliveries,
        "attempts": pruned.removed.attempts,
    });
    if !dry_run {
        report["bytesFreed"] = json!(bytes_freed);
    }
    print_json(&report);
    Ok(())
}

/// `pingpilot backup --to FILE`.
fn backup(config: &Config, to: &Path) -> Result<(), CliError> {
    let url = &config.settings.database.url;
    if !url.starts_with("sqlite:") {
        return Err(CliError::Usage(format!(
            "backup copies SQLite databases; for PostgreSQL use its own tools, e.g. \
             pg_dump --format=custom --file={} '{}'",
            to.display(),
            redact_url(url)
        )));
    }
    if to.exists() {
        return Err(CliError::Usage(format!(
            "{} exists already: name a new file",
            to.display()
        )));
    }
    if let Some(parent) = to.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !parent.is_dir()
    {
        return Err(CliError::Usage(format!(
            "no directory {} to write the backup in",
            parent.display()
        )));
    }
    let report = pingpilot_core::store::backup_sqlite(url, to)?;
    print_json(&json!({
        "backup": report.path.display().to_string(),
        "bytes": report.bytes,
        "tookMs": report.took.as_millis() as u64,
    }));
    Ok(())
}

/// A field's value as typed on the command line: a number, `true`/`false`, or else text.
fn field_value(text: &str) -> Value {
    if let Ok(integer) = text.parse::<i64>() {
        return json!(integer);
    }
    if let Ok(number) = text.parse::<f64>()
        && number.is_finite()
    {
        return json!(number);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(text.to_string()),
    }
}

/// An `--account` argument; an id without the `acc_` prefix names no account.
fn account_id(text: &str) -> Result<AccountId, CliError> {
    AccountId::parse(text).ok_or_else(|| no_account(text))
}

fn no_account(text: &str) -> CliError {
    CliError::Usage(format!("no account with id {text:?}"))
}

fn providers_description() -> Value {
    let providers: Vec<Value> = provider::registered()
        .into_iter()
        .map(|p| {
            let fields: Vec<Value> = p
                .account_fields
                .iter()
                .map(|f| {
                    json!({"name": f.name, "description": f.description, "cliFlag": format!("--{}", f.cli_flag()),
                           "missingMessage": f.missing_message, "schema": (f.schema)()})
                })
                .collect();
            let settings: Vec<Value> = p
                .settings
                .iter()
                .map(|(name, description)| {
                    json!({"key": format!("providers.{}.{name}", p.id), "description": description})
                })
                .collect();
            json!({"id": p.id, "order": p.order, "name": p.display_name, "description": p.description,
                   "accountFields": fields, "settings": settings})
        })
        .collect();
    Value::Array(providers)
}

/// The settings' JSON Schema, with each linked provider's section filled in.
fn config_schema() -> Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Settings)).unwrap_or_default();
    let sections: serde_json::Map<String, Value> = provider::registered()
        .into_iter()
        .map(|p| {
            (
                p.id.to_string(),
                serde_json::to_value((p.config_schema)()).unwrap_or_default(),
            )
        })
        .collect();
    if let Some(providers) = schema.pointer_mut("/properties/providers") {
        *providers = json!({
            "description": "One section per provider, read by the provider itself.",
            "type": "object",
            "properties": sections,
            "additionalProperties": false,
        });
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_database_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(redact_url("sqlite://pingpilot.db"), "sqlite://pingpilot.db");
    }
}
