//! Values a provider keeps between runs (e.g. Telegram's update offset). One text for both
//! backends (see `sql.rs`).

use async_trait::async_trait;

use super::Result;

#[async_trait]
pub trait ProviderValues: Send + Sync {
    async fn provider_value(&self, provider: &str, key: &str) -> Result<Option<String>>;

    async fn set_provider_value(&self, provider: &str, key: &str, value: &str) -> Result<()>;
}

/// [`ProviderValues`] for a store.
macro_rules! provider_values_for {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::provider_values::ProviderValues for $store {
            async fn provider_value(
                &self,
                provider: &str,
                key: &str,
            ) -> $crate::store::Result<Option<String>> {
                Ok(sqlx::query_scalar(
                    "SELECT value FROM provider_values WHERE provider = $1 AND key = $2",
                )
                .bind(provider)
                .bind(key)
                .fetch_optional(self.reads())
                .await?)
            }

            async fn set_provider_value(
                &self,
                provider: &str,
                key: &str,
                value: &str,
            ) -> $crate::store::Result<()> {
                sqlx::query(
                    "INSERT INTO provider_values (provider, key, value) VALUES ($1, $2, $3) \
                     ON CONFLICT (provider, key) DO UPDATE SET value = excluded.value",
                )
                .bind(provider)
                .bind(key)
                .bind(value)
                .execute(&mut *self.write_conn().await?)
                .await?;
                Ok(())
            }
        }
    };
}
pub(super) use provider_values_for;
