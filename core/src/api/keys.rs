//! `/api/v1/account/api-keys`: the account's API keys, each with the name its owner gave it.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::registry::MetaSchema;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use super::documented::{ErrorDoc, Errors, Json, Nullable, OperationErrors, Timestamp};
use super::error::{ApiError, FieldError};
use super::extract::{Bearer, JsonBody, OptionalJsonBody};
use super::rules::{CharRule, TextRule, body_object, body_type, inline, nullable, violation};
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{ApiKeyInfo, KeyId};

/// A key's name: at most 64 characters, none of them a control character. It is trimmed, and
/// a blank one means no name.
pub const KEY_NAME: TextRule = TextRule {
    min_chars: 0,
    max_chars: 64,
    chars: Some(CharRule {
        pattern: r"^[^\u0000-\u001F\u007F-\u009F]*$",
        allows: |name| !name.chars().any(char::is_control),
    }),
};

/// A key name as typed (in a body or the dashboard's form): trimmed, `None` when blank, or the
/// rule it breaks.
pub fn parse_key_name(text: &str) -> Result<Option<String>, String> {
    match KEY_NAME.check(text) {
        Ok(()) => {
            let name = text.trim();
            Ok((!name.is_empty()).then(|| name.to_string()))
        }
        Err(super::rules::TextViolation::Length) => Err(KEY_NAME.length_message()),
        Err(super::rules::TextViolation::Chars) => {
            Err("must not contain control characters such as line breaks".into())
        }
    }
}

const NAME_DESCRIPTION: &str = "What the key is for, e.g. `billing server`: at most 64 \
                                characters, no control characters; trimmed. `null` or blank: \
                                no name.";

/// An API key as listed: never the key itself.
#[derive(Debug, Object)]
#[oai(rename = "ApiKey", rename_all = "camelCase", example)]
pub struct ApiKeySummary {
    /// Key id, for `DELETE /account/api-keys/{id}`.
    pub id: String,
    /// What the key is for, as its owner named it; `null` if unnamed.
    pub name: Nullable<String>,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// When the key was created.
    pub created_at: Timestamp,
    /// When the key was last used; `null` if never.
    pub last_used_at: Nullable<Timestamp>,
}

impl Example for ApiKeySummary {
    fn example() -> Self {
        Self {
            id: "key_01JJ5Q9A3B4C5D6E7F8G9H0J1K".into(),
            name: Nullable(Some("billing server".into())),
            prefix: "pk_3fA9".into(),
            created_at: super::documented::example_time(),
            last_used_at: Nullable(Some(super::documented::example_time())),
        }
    }
}

impl From<&ApiKeyInfo> for ApiKeySummary {
    fn from(key: &ApiKeyInfo) -> Self {
        Self {
            id: key.id.to_string(),
            name: key.name.clone().into(),
            prefix: key.prefix.clone(),
            created_at: Timestamp::from_millis(key.created_at),
            last_used_at: key.last_used_at.map(Timestamp::from_millis).into(),
        }
    }
}

/// A new API key: the only time the key itself is shown.
#[derive(Debug, Object)]
#[oai(rename_all = "camelCase", example)]
pub struct ApiKeyCreated {
    /// Key id, for `DELETE /account/api-keys/{id}`.
    pub id: String,
    /// The key's name; `null` if it has none.
    pub name: Nullable<String>,
    /// The key, `pk_` and at least 32 random characters. Store it now: only its hash is kept.
    pub api_key: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// When the key was created.
    pub created_at: Timestamp,
}

impl Example for ApiKeyCreated {
    fn example() -> Self {
        Self {
            id: "key_01JJ5Q9A3B4C5D6E7F8G9H0J1K".into(),
            name: Nullable(Some("billing server".into())),
            api_key: "pk_3fA9kQ2mX7vB1nL8cR4tY6wE0zU5sH2jD9gP".into(),
            prefix: "pk_3fA9".into(),
            created_at: super::documented::example_time(),
        }
    }
}

/// The body of `POST /account/api-keys`, which may be left out: the new key's name.
pub struct NewApiKey;

body_type!(NewApiKey, "NewApiKey", |_registry| MetaSchema {
    description: Some(
        "A key to create; the body may be left out for a key without a name. No other \
         properties are accepted."
    ),
    properties: vec![("name", inline(nullable(KEY_NAME.schema(NAME_DESCRIPTION))))],
    example: Some(json!({"name": "billing server"})),
    ..MetaSchema::new("object")
});

/// The body of `PATCH /account/api-keys/{id}`: the key's new name.
pub struct ApiKeyUpdate;

body_type!(ApiKeyUpdate, "ApiKeyUpdate", |_registry| MetaSchema {
    description: Some("A key's new name. No other properties are accepted."),
    required: vec!["name"],
    properties: vec![("name", inline(nullable(KEY_NAME.schema(NAME_DESCRIPTION))))],
    example: Some(json!({"name": "billing server"})),
    ..MetaSchema::new("object")
});

const UNKNOWN_PROPERTY: &str = "unknown property; allowed is name";

/// The `name` of a key body (`required` or not), or every rule the body breaks.
fn validate_name(body: &Value, required: bool) -> Result<Option<String>, Vec<FieldError>> {
    let (object, mut errors) = body_object(body, &["name"], UNKNOWN_PROPERTY)?;
    let name = match object.get("name") {
        None if required => {
            errors.push(violation("name", "required"));
            None
        }
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => parse_key_name(text).unwrap_or_else(|message| {
            errors.push(violation("name", message));
            None
        }),
        Some(_) => {
            errors.push(violation("name", "must be a string or null"));
            None
        }
    };
    if errors.is_empty() {
        Ok(name)
    } else {
        Err(errors)
    }
}

/// The answers of `GET /account/api-keys`.
#[derive(ApiResponse)]
pub enum ListKeysResponse {
    /// The account's API keys, oldest first.
    #[oai(status = 200)]
    Keys(Json<Vec<ApiKeySummary>>),
}

/// The answers of `POST /account/api-keys`.
#[derive(ApiResponse)]
pub enum KeyCreatedResponse {
    /// The key was created; this is the only time it is shown.
    #[oai(status = 201)]
    Created(Json<ApiKeyCreated>),
}

/// The answers of `PATCH /account/api-keys/{id}`.
#[derive(ApiResponse)]
pub enum KeyRenamedResponse {
    /// The key, with its new name.
    #[oai(status = 200)]
    Renamed(Json<ApiKeySummary>),
}

/// The answers of `DELETE /account/api-keys/{id}`.
#[derive(ApiResponse)]
pub enum KeyRevokedResponse {
    /// The key was revoked; it stops working at once.
    #[oai(status = 204)]
    Revoked,
}

const KEY_NOT_FOUND: &str = "API key not found";

fn key_not_found() -> ErrorDoc {
    ErrorDoc::not_found(
        "No live key with that id on this account: exactly `API key not found`.",
        KEY_NOT_FOUND,
    )
}

fn body_errors(invalid: &'static str) -> Vec<ErrorDoc> {
    ErrorDoc::body_errors(invalid, "name", &KEY_NAME.length_message())
}

/// The error answers of `POST /account/api-keys`.
pub struct CreateKeyErrors;

impl OperationErrors for CreateKeyErrors {
    fn errors() -> Vec<ErrorDoc> {
        let mut errors = vec![ErrorDoc::unauthorized(), ErrorDoc::internal()];
        errors.extend(body_errors(
            "The body is JSON but breaks a rule of `NewApiKey`; every violation is listed.",
        ));
        errors.sort_by_key(|e| e.status);
        errors
    }
}

/// The error answers of `PATCH /account/api-keys/{id}`.
pub struct RenameKeyErrors;

impl OperationErrors for RenameKeyErrors {
    fn errors() -> Vec<ErrorDoc> {
        // Revoking's answers, and the body's.
        let mut errors = RevokeKeyErrors::errors();
        errors.extend(body_errors(
            "The body is JSON but breaks a rule of `ApiKeyUpdate`; every violation is listed.",
        ));
        errors.sort_by_key(|e| e.status);
        errors
    }
}

/// The error answers of `DELETE /account/api-keys/{id}`.
pub struct RevokeKeyErrors;

impl OperationErrors for RevokeKeyErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![
            ErrorDoc::unauthorized(),
            key_not_found(),
            ErrorDoc::internal(),
        ]
    }
}

pub struct KeysApi;

#[OpenApi(tag = "Tag::Account")]
impl KeysApi {
    /// List API keys
    ///
    /// The account's keys with their name, prefix and last use; never the keys themselves.
    #[oai(
        path = "/account/api-keys",
        method = "get",
        operation_id = "list_api_keys"
    )]
    async fn list_api_keys(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
    ) -> Result<ListKeysResponse, Errors<super::events::KeyOnlyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let keys = state.store().list_keys(&account.id).await?;
        Ok(ListKeysResponse::Keys(Json(
            keys.iter().map(ApiKeySummary::from).collect(),
        )))
    }

    /// Create an API key
    ///
    /// A new key for this account, named if the body gives a name; the answer is the only time
    /// the key is shown (only its SHA-256 is stored).
    #[oai(
        path = "/account/api-keys",
        method = "post",
        operation_id = "create_api_key"
    )]
    async fn create_api_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The key's name; may be left out.
        body: OptionalJsonBody<NewApiKey>,
    ) -> Result<KeyCreatedResponse, Errors<CreateKeyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let name = match body.value_if_sent().await? {
            Some(body) => validate_name(&body, false).map_err(ApiError::unprocessable)?,
            None => None,
        };
        let (info, key) = state
            .store()
            .create_key(&account.id, name.as_deref())
            .await?
            .ok_or_else(ApiError::internal)?;
        Ok(KeyCreatedResponse::Created(Json(ApiKeyCreated {
            id: info.id.into(),
            name: info.name.into(),
            api_key: key,
            prefix: info.prefix,
            created_at: Timestamp::from_millis(info.created_at),
        })))
    }

    /// Rename an API key
    ///
    /// Names the key, or with `null` or a blank name leaves it unnamed. The key itself does
    /// not change.
    #[oai(
        path = "/account/api-keys/:id",
        method = "patch",
        operation_id = "rename_api_key"
    )]
    async fn rename_api_key(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The key id (from `GET /account/api-keys`), not the key.
        id: Path<String>,
        /// The new name.
        body: JsonBody<ApiKeyUpdate>,
    ) -> Result<KeyRenamedResponse, Errors<RenameKeyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let name = validate_name(&body.value().await?, true).map_err(ApiError::unprocessable)?;
        let renamed = match KeyId::parse(&id.0) {
            Some(key_id) => {
                state
                    .store()
                    .rename_key(&key_id, &account.id, name.as_deref())
                    .await?
            }
            None => None,
        };
        match renamed {
            Some(key) => Ok(KeyRenamedResponse::Renamed(Json((&key).into()))),
            None => Err(ApiError::not_found(KEY_NOT_FOUND).into()),
        }
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
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The key id (from `GET /account/api-keys`), not the key.
        id: Path<String>,
    ) -> Result<KeyRevokedResponse, Errors<RevokeKeyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let revoked = match KeyId::parse(&id.0) {
            Some(key_id) => state.store().revoke_key(&key_id, Some(&account.id)).await?,
            None => false,
        };
        if revoked {
            Ok(KeyRevokedResponse::Revoked)
        } else {
            Err(ApiError::not_found(KEY_NOT_FOUND).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_trimmed_and_blank_means_none() {
        assert_eq!(parse_key_name("  CI  "), Ok(Some("CI".into())));
        assert_eq!(parse_key_name("   "), Ok(None));
        assert_eq!(parse_key_name(""), Ok(None));
        assert_eq!(parse_key_name(&"é".repeat(64)), Ok(Some("é".repeat(64))));
        assert_eq!(
            parse_key_name(&"x".repeat(65)),
            Err("must be at most 64 characters long".into())
        );
        assert!(parse_key_name("a\nb").is_err());
        assert!(parse_key_name("a\u{85}b").is_err());
    }

    #[test]
    fn bodies_list_every_violation() {
        assert_eq!(validate_name(&json!({}), false).ok(), Some(None));
        assert_eq!(validate_name(&json!({"name": null}), true).ok(), Some(None));
        let errors = validate_name(&json!({"name": 7, "scope": "all"}), false).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["scope", "name"]);
        let errors = validate_name(&json!({}), true).unwrap_err();
        assert_eq!(errors[0].message, "required");
        assert!(validate_name(&json!([]), false).is_err());
    }
}
