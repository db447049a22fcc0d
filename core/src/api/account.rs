//! `/api/v1/account`: settings, channels and API keys. Never answers intake's 403s, so a user
//! can always fix their settings.

use std::borrow::Cow;
use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Map, Value, json};

use super::error::{ApiError, FieldError};
use super::extract::{Bearer, JsonBody};
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{Account, ApiKeyInfo, format_time};
use crate::provider::{self, AccountField};
use crate::store::AccountChanges;

/// A JSON object whose schema is assembled at run time (it holds provider-declared fields).
pub struct DynamicObject<const KIND: u8>(pub Map<String, Value>);

pub type AccountView = DynamicObject<0>;
pub type AccountUpdate = DynamicObject<1>;
pub type ChannelView = DynamicObject<2>;

fn string_schema(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        ..MetaSchema::new("string")
    }))
}

fn nullable_string(description: &'static str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(description),
        nullable: true,
        ..MetaSchema::new("string")
    }))
}

/// The OpenAPI schema of a provider-declared field, from its JSON Schema.
fn field_schema(field: &AccountField) -> MetaSchemaRef {
    let declared = (field.schema)();
    let declared = declared.as_object();
    let text = |key: &str| declared.and_then(|s| s.get(key)).and_then(Value::as_str);
    let number = |key: &str| {
        declared
            .and_then(|s| s.get(key))
            .and_then(Value::as_u64)
            .map(|n| n as usize)
    };
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some(field.description),
        pattern: text("pattern").map(str::to_string),
        min_length: number("minLength"),
        max_length: number("maxLength"),
        example: Some(Value::String(field.example.into())),
        nullable: true,
        ..MetaSchema::new("string")
    }))
}

fn object_schema(
    description: &'static str,
    properties: Vec<(&'static str, MetaSchemaRef)>,
    required: Vec<&'static str>,
    additional: Option<MetaSchemaRef>,
) -> MetaSchema {
    MetaSchema {
        description: Some(description),
        properties,
        required,
        additional_properties: additional.map(Box::new),
        ..MetaSchema::new("object")
    }
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
                    ("id", string_schema("Account id")),
                    ("name", string_schema("Display name")),
                    ("email", nullable_string("Contact e-mail")),
                    ("plan", string_schema("Plan name; limits come from it")),
                ];
                properties.extend(fields());
                properties.push((
                    "channels",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        items: Some(Box::new(ChannelView::schema_ref())),
                        description: Some("Every channel, in provider order"),
                        ..MetaSchema::new("array")
                    })),
                ));
                properties.push(("createdAt", string_schema("Creation time, RFC 3339")));
                let mut required = vec!["id", "name", "email", "plan"];
                required.extend(provider::account_fields().map(|(_, f)| f.name));
                required.extend(["channels", "createdAt"]);
                object_schema(
                    "The account, with every provider-declared field (null when unset).",
                    properties,
                    required,
                    None,
                )
            }
            1 => {
                let mut properties = vec![
                    ("name", string_schema("Display name, 1–128 characters")),
                    ("email", nullable_string("Contact e-mail; null clears")),
                ];
                properties.extend(fields());
                properties.push((
                    "channels",
                    MetaSchemaRef::Inline(Box::new(MetaSchema {
                        description: Some(
                            "Channel switches by provider id, e.g. {\"telegram\": false}",
                        ),
                        additional_properties: Some(Box::new(bool::schema_ref())),
                        ..MetaSchema::new("object")
                    })),
                ));
                object_schema(
                    "Changes to the account: provider fields (null clears) and channel switches.",
                    properties,
                    Vec::new(),
                    None,
                )
            }
            _ => object_schema(
                "A channel of the account, plus provider state such as Telegram's `linked` and `linkUrl`.",
                vec![
                    ("provider", string_schema("Provider id")),
                    ("enabled", bool::schema_ref()),
                    ("ready", bool::schema_ref()),
                    (
                        "missing",
                        MetaSchemaRef::Inline(Box::new(MetaSchema {
                            items: Some(Box::new(String::schema_ref())),
                            description: Some("Account fields this channel still needs"),
                            ..MetaSchema::new("array")
                        })),
                    ),
                    (
                        "waitingReason",
                        nullable_string("Why deliveries on this channel wait, if they do"),
                    ),
                ],
                vec!["provider", "enabled", "ready", "missing", "waitingReason"],
                Some(MetaSchemaRef::Inline(Box::new(MetaSchema::ANY))),
            ),
        }
    }
}

impl<const KIND: u8> Type for DynamicObject<KIND> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Self::NAME.into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::NAME.into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::NAME.into(), Self::build_schema);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl<const KIND: u8> ToJSON for DynamicObject<KIND> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

/// An API key as listed: never the key itself.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeySummary {
    pub id: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

/// A new API key: the only time it is shown.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    pub id: String,
    /// The key. Store it now: only its hash is kept.
    pub api_key: String,
    pub prefix: String,
    pub created_at: String,
}

#[derive(ApiResponse)]
pub enum KeyCreatedResponse {
    /// The key was created.
    #[oai(status = 201)]
    Created(Json<ApiKeyCreated>),
}

#[derive(ApiResponse)]
pub enum KeyRevokedResponse {
    /// The key was revoked.
    #[oai(status = 204)]
    Revoked,
}

impl From<&ApiKeyInfo> for ApiKeySummary {
    fn from(key: &ApiKeyInfo) -> Self {
        Self {
            id: key.id.clone(),
            prefix: key.prefix.clone(),
            created_at: format_time(key.created_at),
            last_used_at: key.last_used_at.map(format_time),
        }
    }
}

pub struct AccountApi(pub Arc<AppState>);

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
    for entry in &state.providers {
        let registration = entry.registration;
        let enabled = account.channel_enabled(registration.id);
        let missing: Vec<&str> = registration
            .account_fields
            .iter()
            .filter(|f| !account.fields.contains_key(f.name))
            .map(|f| f.name)
            .collect();
        let status = state.channel_status(entry, account).await?;
        let mut channel = Map::new();
        channel.insert("provider".into(), json!(registration.id));
        channel.insert("enabled".into(), json!(enabled));
        channel.insert(
            "ready".into(),
            json!(enabled && missing.is_empty() && status.waiting.is_none()),
        );
        channel.insert("missing".into(), json!(missing));
        channel.insert("waitingReason".into(), json!(status.waiting));
        channel.extend(status.extra);
        channels.push(Value::Object(channel));
    }
    view.insert("channels".into(), Value::Array(channels));
    view.insert("createdAt".into(), json!(format_time(account.created_at)));
    Ok(DynamicObject(view))
}

fn field_error(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// Checks a PATCH body and turns it into changes; every violation is listed.
pub fn parse_account_update(
    state: &AppState,
    body: &Value,
) -> Result<AccountChanges, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![field_error("", "the body must be a JSON object")]);
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
                    Err(message) => errors.push(field_error(key.as_str(), message)),
                },
                _ => errors.push(field_error(key.as_str(), "must be a string or null")),
            }
            continue;
        }
        match (key.as_str(), value) {
            ("name", Value::String(name)) if (1..=128).contains(&name.trim().chars().count()) => {
                changes.name = Some(name.trim().to_string());
            }
            ("name", _) => errors.push(field_error(
                "name",
                "must be a string of 1 to 128 characters",
            )),
            ("email", Value::Null) => changes.email = Some(None),
            ("email", Value::String(email)) if is_plausible_email(email) => {
                changes.email = Some(Some(email.trim().to_string()));
            }
            ("email", _) => errors.push(field_error("email", "must be an e-mail address or null")),
            ("channels", Value::Object(switches)) => {
                for (provider, enabled) in switches {
                    let path = format!("channels.{provider}");
                    if state.provider(provider).is_none() {
                        errors.push(field_error(path, "no such provider"));
                    } else if let Some(enabled) = enabled.as_bool() {
                        changes.channels.insert(provider.clone(), enabled);
                    } else {
                        errors.push(field_error(path, "must be true or false"));
                    }
                }
            }
            ("channels", _) => errors.push(field_error(
                "channels",
                "must be an object of provider ids to true or false",
            )),
            _ => errors.push(field_error(key.as_str(), "unknown property")),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

fn is_plausible_email(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'))
}

#[OpenApi(tag = "Tag::Account")]
impl AccountApi {
    /// Read the account
    ///
    /// The account's settings and, per channel, whether it is enabled, ready, which account
    /// fields it still needs and provider state (Telegram: `linked`, `linkUrl`).
    #[oai(path = "/account", method = "get", operation_id = "get_account")]
    async fn get_account(&self, auth: Bearer) -> Result<Json<AccountView>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        Ok(Json(account_view(&self.0, &account).await?))
    }

    /// Update the account
    ///
    /// Sets provider fields (`null` clears them), switches channels on or off
    /// (`{"channels": {"telegram": false}}`), and changes the name or e-mail.
    #[oai(path = "/account", method = "patch", operation_id = "update_account")]
    async fn update_account(
        &self,
        auth: Bearer,
        body: JsonBody<AccountUpdate>,
    ) -> Result<Json<AccountView>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let changes =
            parse_account_update(&self.0, &body.value()?).map_err(ApiError::unprocessable)?;
        let updated = self
            .0
            .store()?
            .update_account(&account.id, &changes)
            .await?
            .ok_or_else(ApiError::internal)?;
        self.0.work_ready.notify_one();
        Ok(Json(account_view(&self.0, &updated).await?))
    }

    /// List API keys
    #[oai(
        path = "/account/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list_api_keys(&self, auth: Bearer) -> Result<Json<Vec<ApiKeySummary>>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let keys = self.0.store()?.list_keys(&account.id).await?;
        Ok(Json(keys.iter().map(ApiKeySummary::from).collect()))
    }

    /// Create an API key
    ///
    /// The answer is the only time the key is shown.
    #[oai(
        path = "/account/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create_api_key(&self, auth: Bearer) -> Result<KeyCreatedResponse, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let (info, key) = self
            .0
            .store()?
            .create_key(&account.id)
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(KeyCreatedResponse::Created(Json(ApiKeyCreated {
            id: info.id,
            api_key: key,
            prefix: info.prefix,
            created_at: format_time(info.created_at),
        })))
    }

    /// Revoke an API key
    ///
    /// The key stops working at once. Revoking the key of this request is allowed.
    #[oai(
        path = "/account/api-keys/:id",
        method = "delete",
        operation_id = "revoke_api_key"
    )]
    async fn revoke_api_key(
        &self,
        auth: Bearer,
        id: Path<String>,
    ) -> Result<KeyRevokedResponse, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        if self.0.store()?.revoke_key(&id.0, Some(&account.id)).await? {
            Ok(KeyRevokedResponse::Revoked)
        } else {
            Err(ApiError::not_found("API key not found"))
        }
    }
}
