//! `/api/v1/categories`: what events are filed under, with their colour and emoji.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, Type};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use super::documented::{ChannelId, ErrorDoc, Errors, Json, Nullable, OperationErrors, Timestamp};
use super::error::{ApiError, FieldError};
use super::extract::{Bearer, JsonBody};
use super::rules::{CharRule, TextRule, body_object, body_type, inline, nullable, violation};
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::Category;
use crate::provider;
use crate::service::categories::{self as service, create_category, duplicate_message};
use crate::store::{CategoryChanges, CategoryUpdate};

/// A category: what events are filed under, with the colour and emoji of their notifications.
#[derive(Debug, Object)]
#[oai(rename = "Category", rename_all = "camelCase", example)]
pub struct CategoryView {
    /// Lower-case name: 1–64 of `[a-z0-9-]`.
    pub name: String,
    /// Colour of the notifications, `#RRGGBB` (upper-case hex digits).
    pub color: String,
    /// Shown before the category name in notifications; `null`: 🔔.
    pub emoji: Nullable<String>,
    /// The channels its events go to, in provider order; `null`: every channel the account
    /// has on.
    pub channels: Nullable<Vec<ChannelId>>,
    /// When the category was created.
    pub created_at: Timestamp,
    /// Events filed under this category.
    pub events_count: i64,
    /// When the latest event was accepted; `null` before the first one.
    pub last_ping: Nullable<Timestamp>,
}

impl Example for CategoryView {
    fn example() -> Self {
        Self {
            name: "sale".into(),
            color: "#FFB02E".into(),
            emoji: Nullable(Some("💰".into())),
            channels: Nullable(None),
            created_at: super::documented::example_time(),
            events_count: 42,
            last_ping: Nullable(Some(super::documented::example_time())),
        }
    }
}

/// A category's name: letters, digits and hyphens, stored lower-cased.
pub const NAME: TextRule = TextRule {
    min_chars: 1,
    max_chars: 64,
    chars: Some(CharRule {
        pattern: r"^[A-Za-z0-9-]{1,64}$",
        allows: |name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
    }),
};
/// A colour as sent: `#RRGGBB` (see [`parse_color`]).
const COLOR_PATTERN: &str = r"^#[0-9A-Fa-f]{6}$";
/// A category's emoji.
pub const EMOJI: TextRule = TextRule::at_most(16);

/// The properties of a category body, described for creating (`NewCategory`) or changing
/// (`CategoryUpdate`) one.
fn category_properties(
    registry: &mut Registry,
    name: &'static str,
    color: &'static str,
    emoji: &'static str,
    channels: &'static str,
) -> Vec<(&'static str, MetaSchemaRef)> {
    ChannelId::register(registry);
    vec![
        ("name", inline(NAME.schema(name))),
        (
            "color",
            inline(MetaSchema {
                description: Some(color),
                pattern: Some(COLOR_PATTERN.into()),
                ..MetaSchema::new("string")
            }),
        ),
        ("emoji", inline(nullable(EMOJI.schema(emoji)))),
        (
            "channels",
            inline(MetaSchema {
                description: Some(channels),
                items: Some(Box::new(ChannelId::schema_ref())),
                min_items: Some(1),
                nullable: true,
                ..MetaSchema::new("array")
            }),
        ),
    ]
}

/// The body of `POST /categories`: a category to create. No other properties are accepted.
pub struct NewCategory;

body_type!(NewCategory, "NewCategory", |registry| MetaSchema {
    description: Some("A category to create. No other properties are accepted."),
    required: vec!["name", "color"],
    properties: category_properties(
        registry,
        "1–64 letters, digits or hyphens; stored lower-cased.",
        "Colour of the notifications, `#RRGGBB`.",
        "Shown before the category name in notifications, at most 16 characters; absent, \
             `null`\nor blank: 🔔.",
        "The channels its events go to (provider ids); absent or `null`: every channel the \
             account has on.",
    ),
    example: Some(json!({"name": "sale", "color": "#FFB02E", "emoji": "💰"})),
    ..MetaSchema::new("object")
});

/// The body of `PATCH /categories/{name}`: changes to a category.
pub struct CategoryPatch;

body_type!(CategoryPatch, "CategoryUpdate", |registry| MetaSchema {
    description: Some(
        "Changes to a category: absent properties stay as they are. No other properties \
             are\naccepted.",
    ),
    properties: category_properties(
        registry,
        "A new name: 1–64 letters, digits or hyphens, stored lower-cased. Past events keep \
             the\nname they were sent with.",
        "A new colour, `#RRGGBB`.",
        "A new emoji, at most 16 characters; `null` or blank removes it (🔔 is shown).",
        "New channels for its events (provider ids); `null`: every channel the account has \
             on. Events already accepted keep theirs.",
    ),
    example: Some(json!({"name": null, "color": "#2ECC71", "emoji": "🎉"})),
    ..MetaSchema::new("object")
});

/// The answers of `GET /categories`.
#[derive(ApiResponse)]
pub enum ListCategoriesResponse {
    /// Every category of the account, by name.
    #[oai(status = 200)]
    Categories(Json<Vec<CategoryView>>),
}

/// The answers of `POST /categories`.
#[derive(ApiResponse)]
pub enum CreateCategoryResponse {
    /// The category was created.
    #[oai(status = 201)]
    Created(Json<CategoryView>),
}

/// The answers of `GET` and `PATCH /categories/{name}`.
#[derive(ApiResponse)]
pub enum CategoryResponse {
    /// The category.
    #[oai(status = 200)]
    Category(Json<CategoryView>),
}

/// The answers of `DELETE /categories/{name}`.
#[derive(ApiResponse)]
pub enum DeleteCategoryResponse {
    /// The category was deleted; its events stay, under the name they were sent with.
    #[oai(status = 204)]
    Deleted,
}

fn category_not_found() -> ErrorDoc {
    ErrorDoc::not_found(
        "No category of that name on the account (matched case-insensitively): exactly `You dont \
         have a category named \"<name as sent>\"`.",
        "You dont have a category named \"sale\"",
    )
}

fn category_taken() -> ErrorDoc {
    ErrorDoc::new(
        409,
        "The account already has a category of that name: `A category named \"<name>\" already \
         exists`.",
        "A category named \"sale\" already exists",
    )
}

fn body_errors(invalid: &'static str) -> Vec<ErrorDoc> {
    ErrorDoc::body_errors(invalid, "color", "must be a colour written #RRGGBB")
}

/// The error answers of `POST /categories`.
pub struct CreateCategoryErrors;

impl OperationErrors for CreateCategoryErrors {
    fn errors() -> Vec<ErrorDoc> {
        let mut errors = vec![
            ErrorDoc::unauthorized(),
            ErrorDoc::new(
                403,
                "The plan's category limit is reached: exactly `You have reached the maximum \
                 number of event categories (<n>) for your plan.` An account an operator \
                 disabled: exactly `This account is disabled`.",
                "You have reached the maximum number of event categories (3) for your plan.",
            ),
            category_taken(),
            ErrorDoc::internal(),
        ];
        errors.extend(body_errors(
            "The body is JSON but breaks a rule of `NewCategory`; every violation is listed.",
        ));
        errors.sort_by_key(|e| e.status);
        errors
    }
}

/// The error answers of `PATCH /categories/{name}`.
pub struct UpdateCategoryErrors;

impl OperationErrors for UpdateCategoryErrors {
    fn errors() -> Vec<ErrorDoc> {
        let mut errors = vec![
            ErrorDoc::unauthorized(),
            category_not_found(),
            category_taken(),
            ErrorDoc::internal(),
        ];
        errors.extend(body_errors(
            "The body is JSON but breaks a rule of `CategoryUpdate`; every violation is listed.",
        ));
        errors.sort_by_key(|e| e.status);
        errors
    }
}

/// The error answers of `GET` and `DELETE /categories/{name}`.
pub struct CategoryErrors;

impl OperationErrors for CategoryErrors {
    fn errors() -> Vec<ErrorDoc> {
        vec![
            ErrorDoc::unauthorized(),
            category_not_found(),
            ErrorDoc::internal(),
        ]
    }
}

impl From<&Category> for CategoryView {
    fn from(category: &Category) -> Self {
        Self {
            name: category.name.clone(),
            color: format!("#{:06X}", category.color),
            emoji: category.emoji.clone().into(),
            channels: category
                .channels
                .as_ref()
                .map(|ids| ids.iter().cloned().map(ChannelId).collect())
                .into(),
            created_at: Timestamp::from_millis(category.created_at),
            events_count: category.events_count,
            last_ping: category.last_ping.map(Timestamp::from_millis).into(),
        }
    }
}

/// A valid category name, lower-cased.
fn parse_name(value: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(name) = value.as_str() else {
        errors.push(violation("name", "must be a string"));
        return None;
    };
    if NAME.check(name).is_err() {
        errors.push(violation(
            "name",
            format!(
                "must be {} to {} letters, digits or hyphens",
                NAME.min_chars, NAME.max_chars
            ),
        ));
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// `#RRGGBB` as an integer.
pub fn parse_color(text: &str) -> Option<u32> {
    let hex = text.strip_prefix('#')?;
    if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

fn parse_color_value(value: &Value, errors: &mut Vec<FieldError>) -> Option<u32> {
    let color = value.as_str().and_then(parse_color);
    if color.is_none() {
        errors.push(violation("color", "must be a colour written #RRGGBB"));
    }
    color
}

fn parse_emoji(value: &Value, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(emoji) if EMOJI.check(emoji).is_ok() => {
            Some(Some(emoji.trim().to_string()).filter(|e| !e.is_empty()))
        }
        _ => {
            errors.push(violation(
                "emoji",
                "must be a short string (an emoji) or null",
            ));
            None
        }
    }
}

/// The channels of a category: `null` (every channel the account has on) or provider ids, kept
/// in provider order without repeats.
fn parse_channels(value: &Value, errors: &mut Vec<FieldError>) -> Option<Option<Vec<String>>> {
    let ids = match value {
        Value::Null => return Some(None),
        Value::Array(ids) if !ids.is_empty() => ids,
        _ => {
            errors.push(violation(
                "channels",
                "must be a list of one or more channels, or null for every channel the account \
                 has on",
            ));
            return None;
        }
    };
    let linked = provider::registered();
    let mut valid = true;
    for (i, id) in ids.iter().enumerate() {
        if !linked.iter().any(|p| Some(p.id) == id.as_str()) {
            let known: Vec<&str> = linked.iter().map(|p| p.id).collect();
            errors.push(violation(
                format!("channels[{i}]"),
                format!("must be one of {}", known.join(", ")),
            ));
            valid = false;
        }
    }
    valid.then(|| {
        Some(
            linked
                .iter()
                .filter(|p| ids.iter().any(|id| id.as_str() == Some(p.id)))
                .map(|p| p.id.to_string())
                .collect(),
        )
    })
}

const PROPERTIES: [&str; 4] = ["name", "color", "emoji", "channels"];
const UNKNOWN_PROPERTY: &str = "unknown property; allowed are name, color, emoji and channels";

impl NewCategory {
    /// A new category's name (lower-cased), colour and emoji, or every rule the body breaks.
    pub fn validate(body: &Value) -> Result<service::NewCategory, Vec<FieldError>> {
        let (object, mut errors) = body_object(body, &PROPERTIES, UNKNOWN_PROPERTY)?;
        let name = match object.get("name") {
            Some(value) => parse_name(value, &mut errors),
            None => {
                errors.push(violation("name", "required"));
                None
            }
        };
        let color = match object.get("color") {
            Some(value) => parse_color_value(value, &mut errors),
            None => {
                errors.push(violation("color", "required"));
                None
            }
        };
        let emoji = object
            .get("emoji")
            .map(|value| parse_emoji(value, &mut errors))
            .unwrap_or(Some(None));
        let channels = object
            .get("channels")
            .map(|value| parse_channels(value, &mut errors))
            .unwrap_or(Some(None));
        match (name, color, emoji, channels) {
            (Some(name), Some(color), Some(emoji), Some(channels)) if errors.is_empty() => {
                Ok(service::NewCategory {
                    name,
                    color,
                    emoji,
                    channels,
                })
            }
            _ => Err(errors),
        }
    }
}

impl CategoryPatch {
    /// The changes a body asks for, or every rule it breaks.
    pub fn validate(body: &Value) -> Result<CategoryChanges, Vec<FieldError>> {
        let (object, mut errors) = body_object(body, &PROPERTIES, UNKNOWN_PROPERTY)?;
        let changes = CategoryChanges {
            name: object.get("name").and_then(|v| parse_name(v, &mut errors)),
            color: object
                .get("color")
                .and_then(|v| parse_color_value(v, &mut errors)),
            emoji: object
                .get("emoji")
                .and_then(|v| parse_emoji(v, &mut errors)),
            channels: object
                .get("channels")
                .and_then(|v| parse_channels(v, &mut errors)),
        };
        if errors.is_empty() {
            Ok(changes)
        } else {
            Err(errors)
        }
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("You dont have a category named \"{name}\""))
}

fn duplicate(name: &str) -> ApiError {
    ApiError::conflict(duplicate_message(name))
}

pub struct CategoriesApi;

#[OpenApi(tag = "Tag::Categories")]
impl CategoriesApi {
    /// List categories
    ///
    /// Every category of the account, by name, with its event count and latest event time.
    #[oai(path = "/categories", method = "get", operation_id = "list_categories")]
    async fn list_categories(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
    ) -> Result<ListCategoriesResponse, Errors<super::events::KeyOnlyErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let categories = state.store().categories(&account.id).await?;
        Ok(ListCategoriesResponse::Categories(Json(
            categories.iter().map(CategoryView::from).collect(),
        )))
    }

    /// Create a category
    ///
    /// Events name a category; its colour and emoji style their notifications, and its
    /// `channels` (absent or `null`: every channel the account has on) decide where they go.
    /// The name is stored lower-cased. 409 when the name is taken; 403 when the plan's category
    /// limit is reached.
    #[oai(
        path = "/categories",
        method = "post",
        operation_id = "create_category"
    )]
    async fn create_category(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The category.
        body: JsonBody<NewCategory>,
    ) -> Result<CreateCategoryResponse, Errors<CreateCategoryErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let new = NewCategory::validate(&body.value().await?).map_err(ApiError::unprocessable)?;
        let category = create_category(state.0, &account, &new).await?;
        Ok(CreateCategoryResponse::Created(Json((&category).into())))
    }

    /// Read a category
    ///
    /// The category, with its event count and latest event time.
    #[oai(
        path = "/categories/:name",
        method = "get",
        operation_id = "get_category"
    )]
    async fn get_category(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The category name, matched case-insensitively.
        name: Path<String>,
    ) -> Result<CategoryResponse, Errors<CategoryErrors>> {
        let account = authenticate(state.0, &auth).await?;
        match state.store().category(&account.id, &name.0).await? {
            Some(category) => Ok(CategoryResponse::Category(Json((&category).into()))),
            None => Err(not_found(&name.0).into()),
        }
    }

    /// Change a category
    ///
    /// Renames it, or changes its colour, emoji or channels; absent properties stay as they
    /// are. Past events keep the name they were sent with, and the channels they went to.
    #[oai(
        path = "/categories/:name",
        method = "patch",
        operation_id = "update_category"
    )]
    async fn update_category(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The category name, matched case-insensitively.
        name: Path<String>,
        /// The changes.
        body: JsonBody<CategoryPatch>,
    ) -> Result<CategoryResponse, Errors<UpdateCategoryErrors>> {
        let account = authenticate(state.0, &auth).await?;
        let changes =
            CategoryPatch::validate(&body.value().await?).map_err(ApiError::unprocessable)?;
        match state
            .store()
            .update_category(&account.id, &name.0, &changes)
            .await?
        {
            CategoryUpdate::Updated(category) => {
                Ok(CategoryResponse::Category(Json((&category).into())))
            }
            CategoryUpdate::NotFound => Err(not_found(&name.0).into()),
            CategoryUpdate::Duplicate => {
                Err(duplicate(changes.name.as_deref().unwrap_or_default()).into())
            }
        }
    }

    /// Delete a category
    ///
    /// Its events stay, listed under the name they were sent with. Sending an event to a
    /// deleted category answers 404.
    #[oai(
        path = "/categories/:name",
        method = "delete",
        operation_id = "delete_category"
    )]
    async fn delete_category(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Bearer,
        /// The category name, matched case-insensitively.
        name: Path<String>,
    ) -> Result<DeleteCategoryResponse, Errors<CategoryErrors>> {
        let account = authenticate(state.0, &auth).await?;
        if state.store().delete_category(&account.id, &name.0).await? {
            Ok(DeleteCategoryResponse::Deleted)
        } else {
            Err(not_found(&name.0).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn colours() {
        assert_eq!(parse_color("#FFB02E"), Some(0xFFB02E));
        assert_eq!(parse_color("#ffb02e"), Some(0xFFB02E));
        assert_eq!(parse_color("FFB02E"), None);
        assert_eq!(parse_color("#FFB02"), None);
        assert_eq!(parse_color("#GGGGGG"), None);
    }

    #[test]
    fn new_category_rules() {
        assert_eq!(
            NewCategory::validate(&json!({"name": "Sale", "color": "#00ff00"})).unwrap(),
            service::NewCategory {
                name: "sale".into(),
                color: 0x00FF00,
                emoji: None,
                channels: None,
            }
        );
        let errors =
            NewCategory::validate(&json!({"name": "no way", "color": "red", "x": 1})).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["x", "name", "color"]);
    }
}
