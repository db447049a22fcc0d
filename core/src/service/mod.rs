//! The service layer: what the API and the dashboard both do to an account (its settings and
//! channels, categories, usage, deliveries to retry) and what intake keeps between requests
//! (the accounts it decided from, each account's rate). Refusals are [`ServiceError`]s; the API
//! turns them into its documented answers in one place (`api/error.rs`), the dashboard into
//! pages.

pub mod accounts;
pub mod activity;
pub mod categories;
pub mod deliveries;
pub mod health;
pub mod intake;
pub(crate) mod intake_cache;
pub(crate) mod intake_rate;
pub mod retention;

use crate::store::StoreError;

/// Why the service refused, or could not do, what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Something of that name already exists (the API's 409).
    #[error("{0}")]
    Duplicate(String),
    /// The account's plan allows no more (the API's 403).
    #[error("{0}")]
    LimitReached(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
