//! `/api/v1/categories`: what events are filed under, with their colour and emoji.

use std::sync::Arc;

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::Value;

use super::error::{ApiError, FieldError};
use super::extract::{Bearer, JsonBody};
use super::{Tag, authenticate};
use crate::app::AppState;
use crate::model::{Category, format_time};
use crate::store::{CategoryChanges, CategoryCreate, CategoryUpdate};

const MAX_EMOJI_CHARS: usize = 16;

#[derive(Debug, Object)]
#[oai(rename_all = "camelCase")]
pub struct CategoryView {
    /// Lower-case name: 1–64 of `[a-z0-9-]`.
    pub name: String,
    /// `#RRGGBB`
    pub color: String,
    pub emoji: Option<String>,
    pub created_at: String,
    /// Events filed under this category.
    pub events_count: i64,
    /// Time of the latest event, RFC 3339.
    pub last_ping: Option<String>,
}

/// A category to create.
#[derive(Debug, Object)]
#[oai(example)]
pub struct NewCategory {
    /// 1–64 of `[A-Za-z0-9-]`; stored lower-cased.
    pub name: String,
    /// `#RRGGBB`
    pub color: String,
    /// Shown before the category name in notifications; 🔔 when absent.
    pub emoji: Option<String>,
}

impl poem_openapi::types::Example for NewCategory {
    fn example() -> Self {
        Self {
            name: "sale".into(),
            color: "#FFB02E".into(),
            emoji: Some("💰".into()),
        }
    }
}

/// Changes to a category; absent properties stay as they are, `"emoji": null` removes the emoji.
#[derive(Debug, Object)]
pub struct CategoryPatch {
    pub name: Option<String>,
    pub color: Option<String>,
    pub emoji: Option<String>,
}

#[derive(ApiResponse)]
pub enum CategoryCreatedResponse {
    /// The category was created.
    #[oai(status = 201)]
    Created(Json<CategoryView>),
}

#[derive(ApiResponse)]
pub enum CategoryDeletedResponse {
    /// The category was deleted; its events stay, under its name.
    #[oai(status = 204)]
    Deleted,
}

impl From<&Category> for CategoryView {
    fn from(category: &Category) -> Self {
        Self {
            name: category.name.clone(),
            color: format!("#{:06X}", category.color),
            emoji: category.emoji.clone(),
            created_at: format_time(category.created_at),
            events_count: category.events_count,
            last_ping: category.last_ping.map(format_time),
        }
    }
}

fn field_error(path: &str, message: &str) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

/// A valid category name, lower-cased.
fn parse_name(value: &Value, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(name) = value.as_str() else {
        errors.push(field_error("name", "must be a string"));
        return None;
    };
    let name = name.to_ascii_lowercase();
    let valid = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        errors.push(field_error(
            "name",
            "must be 1 to 64 letters, digits or hyphens",
        ));
        return None;
    }
    Some(name)
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
        errors.push(field_error("color", "must be a colour written #RRGGBB"));
    }
    color
}

fn parse_emoji(value: &Value, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match value {
        Value::Null => Some(None),
        Value::String(emoji) if emoji.trim().is_empty() => Some(None),
        Value::String(emoji) if emoji.chars().count() <= MAX_EMOJI_CHARS => {
            Some(Some(emoji.trim().to_string()))
        }
        _ => {
            errors.push(field_error(
                "emoji",
                "must be a short string (an emoji) or null",
            ));
            None
        }
    }
}

fn unknown_keys(object: &serde_json::Map<String, Value>, errors: &mut Vec<FieldError>) {
    for key in object.keys() {
        if !matches!(key.as_str(), "name" | "color" | "emoji") {
            errors.push(field_error(
                key,
                "unknown property; allowed are name, color and emoji",
            ));
        }
    }
}

fn parse_new_category(body: &Value) -> Result<(String, u32, Option<String>), Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![field_error("", "the body must be a JSON object")]);
    };
    let mut errors = Vec::new();
    unknown_keys(object, &mut errors);
    let name = match object.get("name") {
        Some(value) => parse_name(value, &mut errors),
        None => {
            errors.push(field_error("name", "required"));
            None
        }
    };
    let color = match object.get("color") {
        Some(value) => parse_color_value(value, &mut errors),
        None => {
            errors.push(field_error("color", "required"));
            None
        }
    };
    let emoji = object
        .get("emoji")
        .map(|value| parse_emoji(value, &mut errors))
        .unwrap_or(Some(None));
    match (name, color, emoji) {
        (Some(name), Some(color), Some(emoji)) if errors.is_empty() => Ok((name, color, emoji)),
        _ => Err(errors),
    }
}

fn parse_category_patch(body: &Value) -> Result<CategoryChanges, Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![field_error("", "the body must be a JSON object")]);
    };
    let mut errors = Vec::new();
    unknown_keys(object, &mut errors);
    let changes = CategoryChanges {
        name: object.get("name").and_then(|v| parse_name(v, &mut errors)),
        color: object
            .get("color")
            .and_then(|v| parse_color_value(v, &mut errors)),
        emoji: object
            .get("emoji")
            .and_then(|v| parse_emoji(v, &mut errors)),
    };
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(errors)
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("You dont have a category named \"{name}\""))
}

fn duplicate(name: &str) -> ApiError {
    ApiError::conflict(format!("A category named \"{name}\" already exists"))
}

pub struct CategoriesApi(pub Arc<AppState>);

#[OpenApi(tag = "Tag::Categories")]
impl CategoriesApi {
    /// List categories
    #[oai(path = "/categories", method = "get", operation_id = "list_categories")]
    async fn list_categories(&self, auth: Bearer) -> Result<Json<Vec<CategoryView>>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let categories = self.0.store()?.categories(&account.id).await?;
        Ok(Json(categories.iter().map(CategoryView::from).collect()))
    }

    /// Create a category
    ///
    /// The name is stored lower-cased. 409 when the name is taken; 403 when the plan's
    /// category limit is reached.
    #[oai(
        path = "/categories",
        method = "post",
        operation_id = "create_category"
    )]
    async fn create_category(
        &self,
        auth: Bearer,
        body: JsonBody<NewCategory>,
    ) -> Result<CategoryCreatedResponse, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let (name, color, emoji) =
            parse_new_category(&body.value()?).map_err(ApiError::unprocessable)?;
        let limit = self.0.plan(&account.plan).categories;
        let created = self
            .0
            .store()?
            .create_category(&account.id, &name, color, emoji.as_deref(), limit)
            .await?;
        match created {
            CategoryCreate::Created(category) => {
                Ok(CategoryCreatedResponse::Created(Json((&category).into())))
            }
            CategoryCreate::Duplicate => Err(duplicate(&name)),
            CategoryCreate::LimitReached => Err(ApiError::forbidden(format!(
                "You have reached the maximum number of event categories ({}) for your plan.",
                limit.unwrap_or_default()
            ))),
        }
    }

    /// Read a category
    #[oai(
        path = "/categories/:name",
        method = "get",
        operation_id = "get_category"
    )]
    async fn get_category(
        &self,
        auth: Bearer,
        name: Path<String>,
    ) -> Result<Json<CategoryView>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        match self.0.store()?.category(&account.id, &name.0).await? {
            Some(category) => Ok(Json((&category).into())),
            None => Err(not_found(&name.0)),
        }
    }

    /// Change a category
    ///
    /// Renames it, or changes its colour or emoji. Past events keep the name they were sent with.
    #[oai(
        path = "/categories/:name",
        method = "patch",
        operation_id = "update_category"
    )]
    async fn update_category(
        &self,
        auth: Bearer,
        name: Path<String>,
        body: JsonBody<CategoryPatch>,
    ) -> Result<Json<CategoryView>, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        let changes = parse_category_patch(&body.value()?).map_err(ApiError::unprocessable)?;
        match self
            .0
            .store()?
            .update_category(&account.id, &name.0, &changes)
            .await?
        {
            CategoryUpdate::Updated(category) => Ok(Json((&category).into())),
            CategoryUpdate::NotFound => Err(not_found(&name.0)),
            CategoryUpdate::Duplicate => {
                Err(duplicate(changes.name.as_deref().unwrap_or_default()))
            }
        }
    }

    /// Delete a category
    ///
    /// Its events stay, listed under the name they were sent with.
    #[oai(
        path = "/categories/:name",
        method = "delete",
        operation_id = "delete_category"
    )]
    async fn delete_category(
        &self,
        auth: Bearer,
        name: Path<String>,
    ) -> Result<CategoryDeletedResponse, ApiError> {
        let account = authenticate(&self.0, &auth).await?;
        if self
            .0
            .store()?
            .delete_category(&account.id, &name.0)
            .await?
        {
            Ok(CategoryDeletedResponse::Deleted)
        } else {
            Err(not_found(&name.0))
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
            parse_new_category(&json!({"name": "Sale", "color": "#00ff00"})).unwrap(),
            ("sale".to_string(), 0x00FF00, None)
        );
        let errors =
            parse_new_category(&json!({"name": "no way", "color": "red", "x": 1})).unwrap_err();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["x", "name", "color"]);
    }
}
