//! Categories: creating one within the plan's limit, the rule the API and the dashboard share.

use crate::app::AppState;
use crate::model::{Account, Category};
use crate::store::CategoryCreate;

use super::ServiceError;

/// A category to create, its values checked (`api::NewCategory::validate`): the name lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCategory {
    pub name: String,
    pub color: u32,
    pub emoji: Option<String>,
    /// Provider ids in provider order, or `None` for every channel the account has on.
    pub channels: Option<Vec<String>>,
}

/// What refusing a second category of one name says.
pub fn duplicate_message(name: &str) -> String {
    format!("A category named \"{name}\" already exists")
}

/// What refusing one more category past the plan's limit says.
pub fn category_limit_message(limit: u64) -> String {
    format!("You have reached the maximum number of event categories ({limit}) for your plan.")
}

/// Creates a category within the account's plan limit.
pub async fn create_category(
    state: &AppState,
    account: &Account,
    new: &NewCategory,
) -> Result<Category, ServiceError> {
    let limit = state.plan(&account.plan).categories;
    let created = state
        .store()
        .create_category(
            &account.id,
            &new.name,
            new.color,
            new.emoji.as_deref(),
            new.channels.as_deref(),
            limit,
        )
        .await?;
    match created {
        CategoryCreate::Created(category) => Ok(category),
        CategoryCreate::Duplicate => Err(ServiceError::Duplicate(duplicate_message(&new.name))),
        CategoryCreate::LimitReached => Err(ServiceError::LimitReached(category_limit_message(
            limit.unwrap_or_default(),
        ))),
    }
}
