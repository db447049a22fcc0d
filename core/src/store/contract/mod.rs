//! The storage contract's tests: every test here runs on SQLite and on PostgreSQL (when
//! `PINGPILOT_TEST_POSTGRES_URL` names a server, e.g. `postgres://postgres@127.0.0.1:5432/test`;
//! each test gets a database of its own, dropped when it ends). A test is an `async fn(&Backend)`
//! listed in its module's [`on_both_backends!`]; its names are then
//! `store::contract::<module>::sqlite::<test>` and `…::postgres::<test>`.

mod activity;
mod links;
mod retention;
mod sessions;
mod storage;

use std::sync::Arc;

use sqlx::AssertSqlSafe;

use super::postgres::testing::TestDb;
use super::{PgStore, SqliteStore, Storage};

/// The store under test, with what the contract does not offer (deleting an account, counting
/// rows, running SQL as another program would).
#[derive(Clone)]
pub enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Backend {
    pub fn store(&self) -> Arc<dyn Storage> {
        match self {
            Self::Sqlite(store) => Arc::new(store.clone()),
            Self::Postgres(store) => Arc::new(store.clone()),
        }
    }

    /// Runs statements outside the contract (numbered `$1`… on both backends).
    pub async fn execute(&self, sql: &str, binds: &[&str]) {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Self::Sqlite(store) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                query
                    .execute(&mut *store.writer.lock().await.expect("writer"))
                    .await
                    .map(drop)
            }
            Self::Postgres(store) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = query.bind(bind.to_string());
                }
                query.execute(&store.pool).await.map(drop)
            }
        }
        .expect("execute");
    }

    /// Runs a script of statements, as a migration runs.
    pub async fn run_script(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_string());
        match self {
            Self::Sqlite(store) => sqlx::raw_sql(sql)
                .execute(&mut *store.writer.lock().await.expect("writer"))
                .await
                .map(drop),
            Self::Postgres(store) => sqlx::raw_sql(sql).execute(&store.pool).await.map(drop),
        }
        .expect("run script");
    }

    /// The text of this backend's migration whose file name ends in `_<name>.sql`.
    pub fn migration(&self, name: &str) -> &'static str {
        let migrations = match self {
            Self::Sqlite(_) => super::sqlite::MIGRATIONS,
            Self::Postgres(_) => super::postgres::MIGRATIONS,
        };
        let file = format!("_{name}.sql");
        migrations
            .iter()
            .find(|migration| migration.path.ends_with(&file))
            .map(|migration| migration.sql)
            .expect("a migration of that name")
    }

    pub async fn delete_account(&self, id: &str) {
        self.execute("DELETE FROM accounts WHERE id = $1", &[id])
            .await;
    }

    pub async fn count(&self, table: &str) -> i64 {
        let sql = AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"));
        match self {
            Self::Sqlite(store) => {
                sqlx::query_scalar(sql)
                    .fetch_one(&mut *store.writer.lock().await.expect("writer"))
                    .await
            }
            Self::Postgres(store) => sqlx::query_scalar(sql).fetch_one(&store.pool).await,
        }
        .expect("count")
    }
}

/// A new category of the account, green and without emoji.
pub async fn category(
    store: &dyn Storage,
    account_id: &crate::model::AccountId,
    name: &str,
) -> crate::model::Category {
    match store
        .create_category(account_id, name, 0x00ff00, None, None, None)
        .await
        .expect("category")
    {
        super::CategoryCreate::Created(category) => category,
        other => panic!("{other:?}"),
    }
}

/// A SQLite store in a directory of its own (removed with the returned guard).
pub async fn sqlite() -> (tempfile::TempDir, Backend) {
    let dir = tempfile::TempDir::new().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("pingpilot.db").display());
    let store = SqliteStore::open(&url, 4).await.expect("open");
    (dir, Backend::Sqlite(store))
}

/// A PostgreSQL store on a database of its own (dropped with the returned guard), or `None`
/// when no test server is configured.
pub async fn postgres() -> Option<(TestDb, Backend)> {
    let database = TestDb::create().await?;
    let store = PgStore::open(&database.url, 16).await.expect("open");
    Some((database, Backend::Postgres(store)))
}

/// Declares a test per backend for each listed `async fn(&Backend)` of the module.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
                async fn $test() {
                    let (_dir, backend) = $crate::store::contract::sqlite().await;
                    super::$test(&backend).await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
                async fn $test() {
                    let Some((_database, backend)) = $crate::store::contract::postgres().await
                    else {
                        return;
                    };
                    super::$test(&backend).await;
                }
            )*
        }
    };
}
use on_both_backends;
