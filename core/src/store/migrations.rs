//! The schema's migrations and the checks made before any is applied, the same for both
//! backends: a database that a newer PingPilot migrated is refused (it may hold what this
//! binary cannot read), and so is one whose applied migrations this binary's files no longer
//! match (an edited migration would leave databases with different schemas under one version).
//! Each backend runs the statements in its own transaction (see `migrate` in `sqlite.rs` and
//! `postgres.rs`).

use sha2::{Digest, Sha256};

use super::{Result, StoreError};

/// Who applies migrations, as recorded with each one.
pub(super) const APPLIED_BY: &str = concat!("PingPilot ", env!("CARGO_PKG_VERSION"));

/// One migration file, compiled in.
pub(super) struct Migration {
    /// Its path in the source tree, `migrations/<backend>/<NNNN>_<name>.sql`.
    pub path: &'static str,
    pub sql: &'static str,
}

/// A backend's migrations, in order: `migrations!("sqlite": "0001_initial", …)`.
macro_rules! migrations {
    ($backend:literal: $($name:literal),* $(,)?) => {
        &[$(super::migrations::Migration {
            path: concat!("migrations/", $backend, "/", $name, ".sql"),
            sql: include_str!(concat!("../../migrations/", $backend, "/", $name, ".sql")),
        }),*]
    };
}
pub(super) use migrations;

/// In an open transaction `$tx`, checks the migrations the database has applied against
/// `$known` (see [`to_apply`]), applies and records the rest, and records the checksums of
/// those applied before checksums were: the same statements on both backends, compiled for
/// each (see `sql.rs`). Returns from the enclosing function on an error.
macro_rules! apply_pending {
    ($tx:ident, $known:expr) => {
        let applied: Vec<$crate::store::migrations::Applied> =
            sqlx::query_as($crate::store::migrations::READ_APPLIED)
                .fetch_all(&mut *$tx)
                .await?
                .into_iter()
                .map(
                    |(version, checksum, applied_by)| $crate::store::migrations::Applied {
                        version,
                        checksum,
                        applied_by,
                    },
                )
                .collect();
        for migration in $crate::store::migrations::to_apply($known, &applied)? {
            sqlx::raw_sql(migration.sql).execute(&mut *$tx).await?;
            sqlx::query($crate::store::migrations::RECORD)
                .bind(migration.version())
                .bind($crate::model::now_millis())
                .bind(migration.checksum())
                .bind($crate::store::migrations::APPLIED_BY)
                .execute(&mut *$tx)
                .await?;
        }
        for (checksum, version) in $crate::store::migrations::unrecorded_checksums($known, &applied)
        {
            sqlx::query($crate::store::migrations::RECORD_CHECKSUM)
                .bind(checksum)
                .bind(version)
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(super) use apply_pending;

impl Migration {
    /// The number its file name starts with.
    pub fn version(&self) -> i64 {
        let name = self.path.rsplit('/').next().unwrap_or(self.path);
        let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().unwrap_or(0)
    }

    /// SHA-256 of the statements, lowercase hex.
    pub fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// A migration as the database records it. Rows written before checksums were recorded have
/// none; they get this binary's (see [`unrecorded_checksums`]).
pub(super) struct Applied {
    pub version: i64,
    pub checksum: Option<String>,
    pub applied_by: Option<String>,
}

/// Reads [`Applied`] rows; the same text on both backends.
pub(super) const READ_APPLIED: &str =
    "SELECT version, checksum, applied_by FROM schema_migrations ORDER BY version";
/// Records a migration: `$1` version, `$2` when, `$3` checksum, `$4` [`APPLIED_BY`].
pub(super) const RECORD: &str = "INSERT INTO schema_migrations \
     (version, applied_at, checksum, applied_by) VALUES ($1, $2, $3, $4)";
/// Records the checksum of a migration applied before checksums were: `$1` checksum,
/// `$2` version.
pub(super) const RECORD_CHECKSUM: &str =
    "UPDATE schema_migrations SET checksum = $1 WHERE version = $2 AND checksum IS NULL";

/// The migrations still to apply, in order, once the applied ones check out.
pub(super) fn to_apply<'m>(
    known: &'m [Migration],
    applied: &[Applied],
) -> Result<Vec<&'m Migration>> {
    let newest_known = known.last().map_or(0, Migration::version);
    if let Some(newest) = applied
        .iter()
        .filter(|row| row.version > newest_known)
        .max_by_key(|row| row.version)
    {
        return Err(StoreError::Schema(format!(
            "the database is at schema version {} (migrated by {}), newer than {} knows (schema \
             versions up to {newest_known}): run the newer PingPilot, or restore a backup taken \
             before the upgrade",
            newest.version,
            newest.applied_by.as_deref().unwrap_or("a newer PingPilot"),
            APPLIED_BY,
        )));
    }
    for row in applied {
        let Some(migration) = known.iter().find(|m| m.version() == row.version) else {
            return Err(StoreError::Schema(format!(
                "the database has schema migration {} applied, which {APPLIED_BY} does not have: \
                 it was made by another build; run that build, or restore a backup",
                row.version
            )));
        };
        if let Some(recorded) = &row.checksum {
            let ours = migration.checksum();
            if *recorded != ours {
                return Err(StoreError::Schema(format!(
                    "{} was changed after it was applied to this database (checksum {} when \
                     applied, {} in {APPLIED_BY}): a released migration must stay as it was; \
                     a schema change goes in a new migration",
                    migration.path,
                    &recorded[..recorded.len().min(12)],
                    &ours[..12],
                )));
            }
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|row| row.version == m.version()))
        .collect())
}

/// `(checksum, version)` for each applied migration recorded without a checksum.
pub(super) fn unrecorded_checksums(known: &[Migration], applied: &[Applied]) -> Vec<(String, i64)> {
    applied
        .iter()
        .filter(|row| row.checksum.is_none())
        .filter_map(|row| known.iter().find(|m| m.version() == row.version))
        .map(|m| (m.checksum(), m.version()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[Migration] = &[
        Migration {
            path: "migrations/test/0001_initial.sql",
            sql: "CREATE TABLE a (x INTEGER);",
        },
        Migration {
            path: "migrations/test/0002_more.sql",
            sql: "CREATE TABLE b (x INTEGER);",
        },
    ];

    fn applied(version: i64, checksum: Option<String>, by: &str) -> Applied {
        Applied {
            version,
            checksum,
            applied_by: Some(by.into()),
        }
    }

    #[test]
    fn versions_come_from_the_file_names() {
        assert_eq!(KNOWN[0].version(), 1);
        assert_eq!(KNOWN[1].version(), 2);
        assert_eq!(KNOWN[0].checksum().len(), 64);
    }

    #[test]
    fn what_is_not_applied_is_applied_in_order() {
        let none = to_apply(KNOWN, &[]).expect("fresh");
        assert_eq!(none.iter().map(|m| m.version()).collect::<Vec<_>>(), [1, 2]);
        let one = to_apply(KNOWN, &[applied(1, Some(KNOWN[0].checksum()), "x")]).expect("one");
        assert_eq!(one.iter().map(|m| m.version()).collect::<Vec<_>>(), [2]);
        let unrecorded = [applied(1, None, "x"), applied(2, None, "x")];
        assert!(to_apply(KNOWN, &unrecorded).expect("old rows").is_empty());
        assert_eq!(
            unrecorded_checksums(KNOWN, &unrecorded),
            [(KNOWN[0].checksum(), 1), (KNOWN[1].checksum(), 2)]
        );
    }

    #[test]
    fn a_database_a_newer_binary_migrated_is_refused_naming_both_versions() {
        let rows = [applied(1, None, "x"), applied(7, None, "PingPilot 9.9.9")];
        let message = to_apply(KNOWN, &rows).err().expect("refused").to_string();
        assert!(
            message.contains("schema version 7 (migrated by PingPilot 9.9.9)"),
            "{message}"
        );
        assert!(message.contains(APPLIED_BY), "{message}");
        assert!(message.contains("schema versions up to 2"), "{message}");
    }

    #[test]
    fn an_edited_migration_is_refused_naming_its_file() {
        let rows = [applied(1, Some("0".repeat(64)), "x")];
        let message = to_apply(KNOWN, &rows).err().expect("refused").to_string();
        assert!(
            message.starts_with("migrations/test/0001_initial.sql was changed"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_migration_below_the_newest_is_refused() {
        let rows = [applied(1, None, "x"), applied(2, None, "x")];
        let message = to_apply(&KNOWN[..1], &rows)
            .err()
            .expect("refused")
            .to_string();
        assert!(message.contains("schema version 2"), "{message}");
        let gap = [Migration {
            path: "migrations/test/0003_c.sql",
            sql: "",
        }];
        let message = to_apply(&gap, &rows).err().expect("refused").to_string();
        assert!(message.contains("migration 1 applied"), "{message}");
    }
}
