//! The operator CLI. Every command takes `--config PATH`; results go to stdout (JSON where a
//! program may read them), errors to stderr with a non-zero exit.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use pingpilot_core::api;
use pingpilot_core::app::{offline_providers, open_store};
use pingpilot_core::config::{Config, Settings};
use pingpilot_core::model::{AccountId, KeyId, format_time};
use pingpilot_core::provider;
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
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create an API key for an account; prints {"keyId","apiKey"}.
    Create {
        #[arg(long)]
        account: String,
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
    init_logging(matches!(cli.command, Command::Serve));
    match run_command(cli, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(cli: Cli, matches: &ArgMatches) -> Result<(), CliError> {
    // The server's runtime is sized by its configuration (`server.worker_threads`); a bad
    // configuration is reported by the command itself.
    let worker_threads = match cli.command {
        Command::Serve => Config::load(cli.config.as_deref()).ok().map(|config| {
            let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            config.settings.worker_threads(cores)
        }),
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = builder.enable_all().build().map_err(|err| {
        std::io::Error::new(err.kind(), format!("cannot start the runtime: {err}"))
    })?;
    runtime.block_on(execute(cli, matches))
}

fn init_logging(serving: bool) {
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PINGPILOT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn print_json(value: &Value) {
    println!("{value}");
}

async fn execute(cli: Cli, matches: &ArgMatches) -> Result<(), CliError> {
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
        Command::Serve => serve(&Config::load(config_path)?).await,
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
                           "createdAt": format_time(a.created_at)})
                })
                .collect();
            println!("{}", pretty(&Value::Array(accounts)));
        }
        AccountCommand::LoginLink { account } => {
            let store = open_store(config).await?;
            let account_id = account_id(&account)?;
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
                }))
            );
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
        KeyCommand::Create { account } => {
            let Some((info, key)) = store.create_key(&account_id(&account)?).await? else {
                return Err(no_account(&account));
            };
            print_json(&json!({"keyId": info.id, "apiKey": key, "prefix": info.prefix}));
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
                    json!({"keyId": k.id, "prefix": k.prefix,
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

/// An `--account` argument; an id without the `acc_` prefix names no account.
/// `pingpilot send`: one event to a running relay, as an application would send it.
async fn send(config_path: Option<&std::path::Path>, args: SendArgs) -> Result<(), CliError> {
    let key = args.key.or_else(|| std::env::var("PINGPILOT_API_KEY").ok());
    let key = key.ok_or_else(|| {
        CliError::Usage("an API key is needed: --key or PINGPILOT_API_KEY".into())
    })?;
    let base = match args.url.or_else(|| std::env::var("PINGPILOT_URL").ok()) {
        Some(url) => url,
        None => {
            let bind = Config::load(config_path)?.settings.server.bind;
            // A relay listening on every address is reached on this machine's loopback.
            let address = if bind.ip().is_unspecified() {
                std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), bind.port())
            } else {
                bind
            };
            format!("http://{address}")
        }
    };
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
    let mut url = format!("{}/api/v1/event", base.trim_end_matches('/'));
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
    let response = request.send().await.map_err(|err| {
        std::io::Error::other(format!(
            "cannot reach the relay at {base}: {}",
            err.without_url()
        ))
    })?;
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
