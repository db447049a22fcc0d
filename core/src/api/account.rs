//! `/api/v1/account`: settings, channels and API keys. Never answers intake's 403s, so a user
//! can always fix their settings.

use std::borrow::Cow;
use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, OpenApi};
use serde_json::{Map, Value, json};

use super::documented::raw_value_is_self;
use super::documented::{ErrorDoc, Errors, Json, OperationErrors, no_other_properties};
use super::error::{ApiError, FieldError};
use super::extract::{Bearer, JsonBody};
use super::rules::violation;
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{Account, format_time};
use crate::provider::{self, AccountField};
use crate::service::accounts::{
    ChannelState, apply_account_update, channel_states, rotate_channel_secret,
};
use crate::store::AccountChanges;

/// A JSON object whose schema is assembled at run time (it holds provider-declared fields).
pub struct DynamicObject<const KIND: u8>(pub Map<String, Value>);

pub type AccountView = DynamicObject<0>;
pub type AccountUpdate = DynamicObject<1>;
pub type ChannelView = DynamicObject<2>;

const MAX_NAME_CHARS: usize = 128;
const MAX_EMAIL_CHARS: usize = 254;
/// What a name must contain besides blanks (space, tab, CR, LF), which are trimmed.
const NAME_PATTERN: &str = "[^ \\t\\r\\n]";
/// An e-mail address as accepted: `local@domain.tld`, no blanks, one `@`.
const EMAIL_PATTERN: &str = "^[^@ \\t\\r\\n]+@[^@ \\t\\r\\n]+\\.[^@ \\t\\r\\n]+$";
const NAME_BLANKS: [char; 4] = [' ', '\t', '\r', '\n'];

fn string_schema(description: &'static str, example: Value) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        example: Some(example),
        ..MetaSchema::new("string")
    }))
}

fn nullable(schema: MetaSchemaRef) -> MetaSchemaRef {
    match schema {
        MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
            nullable: true,
            ..*schema
        })),
        reference => reference,
    }
}

fn name_schema(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        min_length: Some(1),
        max_length: Some(MAX_NAME_CHARS),
        pattern: Some(NAME_PATTERN.into()),
        example: Some(json!("Ann")),
        ..MetaSchema::new("string")
    }))
}

fn email_schema(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        max_length: Some(MAX_EMAIL_CHARS),
        pattern: Some(EMAIL_PATTERN.into()),
        example: Some(json!("ann@example.com")),
        nullable: true,
        ..MetaSchema::new("string")
    }))
}

fn time_schema(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        example: Some(json!("2026-01-31T09:00:00.000Z")),
        ..MetaSchema::new_with_format("string", "date-time")
    }))
}

/// A JSON Schema type name as the document needs it.
fn static_type(name: &str) -> &'static str {
    match name {
        "integer" => "integer",
        "number" => "number",
        "boolean" => "boolean",
        _ => "string",
    }
}

/// A JSON Schema string format as the document needs it; unknown formats are left out (the
/// pattern and lengths still apply).
fn static_format(name: &str) -> Option<&'static str> {
    Some(match name {
        "email" => "email",
        "uri" => "uri",
        "uuid" => "uuid",
        "date" => "date",
        "date-time" => "date-time",
        "hostname" => "hostname",
        "int64" => "int64",
        _ => return None,
    })
}

/// The OpenAPI schema of a provider-declared field, from the JSON Schema the provider
/// registers (type, format, pattern, lengths, enumerations, examples) and its description.
/// Always nullable: `null` is "not set" in answers and "clear it" in updates.
fn field_schema(field: &AccountField) -> MetaSchemaRef {
    let declared = serde_json::to_value((field.schema)()).unwrap_or_default();
    let text = |key: &str| declared.get(key).and_then(Value::as_str);
    let size = |key: &str| {
        declared
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
    };
    let example = declared
        .get("examples")
        .and_then(Value::as_array)
        .and_then(|examples| examples.first().cloned())
        .unwrap_or_else(|| Value::String(field.example.into()));
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(field.description),
        format: text("format").and_then(static_format),
        pattern: text("pattern").map(str::to_string),
        min_length: size("minLength"),
        max_length: size("maxLength"),
        enum_items: declared
            .get("enum")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        example: Some(example),
        nullable: true,
        ..MetaSchema::new(text("type").map_or("string", static_type))
    }))
}

fn object_schema(
    description: &'static str,
    properties: Vec<(&'static str, MetaSchemaRef)>,
    required: Vec<&'static str>,
    additional: Option<MetaSchemaRef>,
    example: Value,
) -> MetaSchema {
    MetaSchema {
        description: Some(description),
        properties,
        required,
        additional_properties: additional.map(Box::new),
        example: Some(example),
        ..MetaSchema::new("object")
    }
}

/// Example values of every provider field, by JSON name.
fn field_examples() -> Map<String, Value> {
    provider::account_fields()
        .map(|(_, field)| (field.name.to_string(), json!(field.example)))
        .collect()
}

fn channel_example(provider: &str) -> Value {
    json!({
        "provider": provider,
        "enabled": true,
        "ready": true,
        "missing": [],
        "waitingReason": null,
    })
}

impl<const KIND: u8> DynamicObject<KIND> {
    const NAME: &'static str = match KIND {
        0 => "Account",
        1 => "AccountUpdate",
        _ => "Channel",
    };

    fn build_schema(registry: &mut Registry) -> MetaSchema {
        let fields =
            || provider::account_fields().map(|(_, field)| (field.name, field_schema(field)));
        match KIND {
            0 => {
                ChannelView::register(registry);
                let mut properties = vec![
                    (
                        "id",
                        string_schema("Account id.", json!("acc_01JJ5Q7Y2K8D4M6N3P9R0S1T2V")),
                    ),
                    ("name", name_schema("Display name.")),
                    ("email", email_schema("Contact e-mail; `null` when unset.")),
                    (
                        "plan",
                        string_schema(
                            "Plan name; the event and category limits come from it (see `GET /quota`).",
                            json!("free"),
                        ),
                    ),
                ];
                properties.extend(fields());
                properties.push((
                    "channels",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        items: Some(Box::new(ChannelView::schema_ref())),
                        description: Some("Every channel, in provider order."),
                        ..MetaSchema::new("array")
                    })),
                ));
                properties.push(("createdAt", time_schema("When the account was created.")));
                let mut required = vec!["id", "name", "email", "plan"];
                required.extend(provider::account_fields().map(|(_, f)| f.name));
                required.extend(["channels", "createdAt"]);
                let mut example = Map::new();
                example.insert("id".into(), json!("acc_01JJ5Q7Y2K8D4M6N3P9R0S1T2V"));
                example.insert("name".into(), json!("Ann"));
                example.insert("email".into(), json!("ann@example.com"));
                example.insert("plan".into(), json!("free"));
                example.extend(field_examples());
                example.insert(
                    "channels".into(),
                    provider::registered()
                        .iter()
                        .map(|p| channel_example(p.id))
                        .collect(),
                );
                example.insert("createdAt".into(), json!("2026-01-31T09:00:00.000Z"));
                object_schema(
                    "The account, with every provider-declared field (`null` when unset) and the \
                     state of every channel.",
                    properties,
                    required,
                    None,
                    Value::Object(example),
                )
            }
            1 => {
                let mut properties = vec![
                    (
                        "name",
                        name_schema("A new display name; blanks around it are dropped."),
                    ),
                    (
                        "email",
                        email_schema("A new contact e-mail; `null` clears it."),
                    ),
                ];
                properties.extend(fields());
                let switches: Vec<(&'static str, MetaSchemaRef)> = provider::registered()
                    .into_iter()
                    .map(|p| {
                        (
                            p.id,
                            MetaSchemaRef::Inline(Box::new(MetaSchema {
                                description: Some(p.description),
                                ..MetaSchema::new("boolean")
                            })),
                        )
                    })
                    .collect();
                properties.push((
                    "channels",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "Channel switches by provider id, e.g. `{\"telegram\": false}`. \
                             Intake answers 403 while an enabled channel lacks its account \
                             field, or when no channel is enabled.",
                        ),
                        properties: switches,
                        additional_properties: Some(Box::new(no_other_properties())),
                        example: Some(json!({"telegram": false})),
                        ..MetaSchema::new("object")
                    })),
                ));
                let mut example = field_examples();
                example.insert("channels".into(), json!({"telegram": false}));
                object_schema(
                    "Changes to the account: absent properties stay as they are; provider fields \
                     are validated by their provider and `null` clears them. No other properties \
                     are accepted.",
                    properties,
                    Vec::new(),
                    Some(no_other_properties()),
                    Value::Object(example),
                )
            }
            _ => object_schema(
                "A channel of the account, plus state its provider adds (Telegram: `linked`, \
                 and `linkUrl`, which links a chat once and is then replaced by a new one).",
                vec![
                    (
                        "provider",
                        string_schema("Provider id (`discord`, `telegram`, …).", json!("discord")),
                    ),
                    (
                        "enabled",
                        MetaSchemaRef::Inline(Box::new(MetaSchema {
                            description: Some("Whether events are delivered through this channel."),
                            ..MetaSchema::new("boolean")
                        })),
                    ),
                    (
                        "ready",
                        MetaSchemaRef::Inline(Box::new(MetaSchema {
                            description: Some(
                                "Enabled, with every account field it needs, and not waiting.",
                            ),
                            ..MetaSchema::new("boolean")
                        })),
                    ),
                    (
                        "missing",
                        MetaSchemaRef::Inline(Box::new(MetaSchema {
                            items: Some(Box::new(String::schema_ref())),
                            description: Some("Account fields this channel still needs."),
                            ..MetaSchema::new("array")
                        })),
                    ),
                    (
                        "waitingReason",
                        nullable(string_schema(
                            "Why deliveries on this channel wait (provider not configured, chat \
                             not linked); `null` when they do not.",
                            json!(
                                "Telegram chat not linked yet: open https://t.me/PingPilotBot?start=Xy7 and press Start"
                            ),
                        )),
                    ),
                    (
                        crate::app::SIGNING_SECRET,
                        string_schema(
                            "The channel's signing secret, on channels whose provider signs what \
                             it sends (`webhook`) while they are on. Check each delivery's \
                             `webhook-signature` with it; `POST \
                             /account/channels/{provider}/secret` replaces it.",
                            json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
                        ),
                    ),
                ],
                vec!["provider", "enabled", "ready", "missing", "waitingReason"],
                Some(MetaSchemaRef::Inline(Box::new(MetaSchema {
                    description: Some("Provider state, e.g. Telegram's `linked` and `linkUrl`."),
                    ..MetaSchema::ANY
                }))),
                channel_example("discord"),
            ),
        }
    }
}

impl<const KIND: u8> Type for DynamicObject<KIND> {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        Self::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::NAME.into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::NAME.into(), Self::build_schema);
    }
}

impl<const KIND: u8> ToJSON for DynamicObject<KIND> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

/// The answers of `GET` and `PATCH /account`.
#[derive(ApiResponse)]
pub enum AccountResponse {
    /// The account.
    #[oai(status = 200)]
    Account(Json<AccountView>),
}

/// The error answers of `PATCH /account`.
pub struct UpdateAccountErrors;

impl OperationErrors for UpdateAccountErrors {
    fn errors() -> Vec<ErrorDoc> {
        let mut errors = vec![ErrorDoc::unauthorized(), ErrorDoc::internal()];
        errors.extend(ErrorDoc::body_errors(
            "The body is JSON but breaks a rule of `AccountUpdate` (a provider field its \
             provider rejects, an unknown channel, an unknown property); every violation is \
             listed.",
            "channels.sms",
            "no such provider",
        ));
        errors.sort_by_key(|e| e.status);
        errors
    }
}

/// The error answers of `POST /account/channels/{provider}/secret`.
pub struct RotateSecretErrors;

impl OperationErrors for RotateSecretErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![
            ErrorDoc::unauthorized(),
            ErrorDoc::not_found(
                "No linked provider of that id signs what it sends: exactly `Channel has no \
                 signing secret`.",
                NO_CHANNEL_SECRET,
            ),
            ErrorDoc::internal(),
        ]
    }
}

const NO_CHANNEL_SECRET: &str = "Channel has no signing secret";

pub struct AccountApi;

/// The account as the API shows it.
pub async fn account_view(state: &AppState, account: &Account) -> Result<AccountView, ApiError> {
    let mut view = Map::new();
    view.insert("id".into(), json!(account.id));
    view.insert("name".into(), json!(account.name));
    view.insert("email".into(), json!(account.email));
    view.insert("plan".into(), json!(account.plan));
    for (_, field) in provider::account_fields() {
        view.insert(field.name.into(), json!(account.fields.get(field.name)));
    }
    let mut channels = Vec::new();
    for channel_state in channel_states(state, account).await? {
        let ready = channel_state.ready();
        let ChannelState {
            registration,
            enabled,
            missing,
            status,
        } = channel_state;
        let missing: Vec<&str> = missing.iter().map(|f| f.name).collect();
        let mut channel = Map::new();
        channel.insert("provider".into(), json!(registration.id));
        channel.insert("enabled".into(), json!(enabled));
        channel.insert("ready".into(), json!(ready));
        channel.insert("missing".into(), json!(missing));
        channel.insert("waitingReason".into(), json!(status.waiting));
        channel.extend(status.extra);
        channels.push(Value::Object(channel));
    }
    view.insert("channels".into(), Value::Array(channels));
    view.insert("createdAt".into(), json!(format_time(account.created_at)));
    Ok(DynamicObject(view))
}

/// Checks a PATCH body and turns it into changes; every violation is listed.
pub async fn parse_account_update(
    state: &AppState,
    body: &Value,
) -> Result<AccountChanges, Vec<FieldError>> {
    let changes = parse_account_body(state, body)?;
    let mut errors = Vec::new();
    for (name, value) in &changes.fields {
        let (Some(value), Some((registration, _))) = (
            value,
            provider::account_fields().find(|(_, field)| field.name == name),
        ) else {
            continue;
        };
        let Some(entry) = state.provider(registration.id) else {
            continue;
        };
        if let Err(message) = entry.provider.check_field(name, value).await {
            errors.push(violation(name.as_str(), message));
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// The changes a body asks for, each checked on its own (the form of values, not yet the
/// providers' settings).
fn parse_account_body(state: &AppState, body: &Value) -> Result<AccountChanges, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![violation("", "the body must be a JSON object")]);
    };
    let mut changes = AccountChanges::default();
    let mut errors = Vec::new();
    for (key, value) in object {
        if let Some((_, field)) = provider::account_fields().find(|(_, f)| f.name == key) {
            match value {
                Value::Null => {
                    changes.fields.insert(key.clone(), None);
                }
                Value::String(text) => match (field.normalize)(text) {
                    Ok(normalized) => {
                        changes.fields.insert(key.clone(), Some(normalized));
                    }
                    Err(message) => errors.push(violation(key.as_str(), message)),
                },
                _ => errors.push(violation(key.as_str(), "must be a string or null")),
            }
            continue;
        }
        match (key.as_str(), value) {
            ("name", Value::String(name)) if is_valid_name(name) => {
                changes.name = Some(name.trim_matches(NAME_BLANKS).to_string());
            }
            ("name", _) => {
                errors.push(violation("name", "must be a string of 1 to 128 characters"))
            }
            ("email", Value::Null) => changes.email = Some(None),
            ("email", Value::String(email)) if is_plausible_email(email) => {
                changes.email = Some(Some(email.clone()));
            }
            ("email", _) => errors.push(violation("email", "must be an e-mail address or null")),
            ("channels", Value::Object(switches)) => {
                for (provider, enabled) in switches {
                    let path = format!("channels.{provider}");
                    if state.provider(provider).is_none() {
                        errors.push(violation(path, "no such provider"));
                    } else if let Some(enabled) = enabled.as_bool() {
                        changes.channels.insert(provider.clone(), enabled);
                    } else {
                        errors.push(violation(path, "must be true or false"));
                    }
                }
            }
            ("channels", _) => errors.push(violation(
                "channels",
                "must be an object of provider ids to true or false",
            )),
            _ => errors.push(violation(key.as_str(), "unknown property")),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

/// 1–128 characters, not only blanks (`NAME_PATTERN`).
fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.chars().count())
        && name.chars().any(|c| !NAME_BLANKS.contains(&c))
}

/// `local@domain.tld` as `EMAIL_PATTERN` reads it: at most 254 characters, one `@`, no blanks,
/// and a dot in the domain with something on either side.
fn is_plausible_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let allowed = |part: &str| !part.contains(['@', ' ', '\t', '\r', '\n']);
    email.chars().count() <= MAX_EMAIL_CHARS
        && !local.is_empty()
        && allowed(local)
        && allowed(domain)
        && domain
            .char_indices()
            .any(|(i, c)| c == '.' && i > 0 && i + 1 < domain.len())
}

#[OpenApi(tag = "Tag::Account")]
impl AccountApi {
    /// Read the account
    ///
    /// The account's settings, every provider-declared field, and per channel whether it is
    /// enabled and ready, which account fields it still needs, why its deliveries wait, and
    /// provider state (Telegram: `linked`, and `linkUrl`, the link that connects your chat: it
    /// works once, then a new one is shown).
    #[oai(path = "/account", method = "get", operation_id = "get_account")]
    async fn get_account(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
    ) -> Result<AccountResponse, Errors<super::events::KeyOnlyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        Ok(AccountResponse::Account(Json(
            account_view(state.0, &account).await?,
        )))
    }

    /// Update the account
    ///
    /// Sets provider fields (`null` clears them), switches channels on or off
    /// (`{"channels": {"telegram": false}}`), and changes the name or e-mail. Never answers
    /// intake's 403s, so settings can always be fixed.
    #[oai(path = "/account", method = "patch", operation_id = "update_account")]
    async fn update_account(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The changes.
        body: JsonBody<AccountUpdate>,
    ) -> Result<AccountResponse, Errors<UpdateAccountErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let changes = parse_account_update(state.0, &body.value().await?)
            .await
            .map_err(ApiError::unprocessable)?;
        let updated = apply_account_update(state.0, &account.id, &changes)
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(AccountResponse::Account(Json(
            account_view(state.0, &updated).await?,
        )))
    }

    /// Replace a channel's signing secret
    ///
    /// Makes a new signing secret for a channel whose provider signs what it sends (`webhook`)
    /// and answers with the account, whose `channels` entry shows it as `signingSecret`.
    /// Deliveries sent from now on are signed with the new secret only.
    #[oai(
        path = "/account/channels/:provider/secret",
        method = "post",
        operation_id = "rotate_channel_secret"
    )]
    async fn rotate_channel_secret(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The channel's provider id, e.g. `webhook`.
        provider: Path<String>,
    ) -> Result<AccountResponse, Errors<RotateSecretErrors>> {
        let account = authenticate(state.0, &auth).await?;
        if !rotate_channel_secret(state.0, &account, &provider.0).await? {
            return Err(ApiError::not_found(NO_CHANNEL_SECRET).into());
        }
        Ok(AccountResponse::Account(Json(
            account_view(state.0, &account).await?,
        )))
    }
}
