//! The database schema's guard: what a binary does with a database it did not migrate itself.

use crate::helpers::*;

const THIS: &str = concat!("PingPilot ", env!("CARGO_PKG_VERSION"));

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_database_a_newer_pingpilot_migrated_is_refused_naming_both_versions() {
    let relay = Relay::start().await;
    database_query(
        relay.database_url(),
        "INSERT INTO schema_migrations (version, applied_at, checksum, applied_by) \
         VALUES (9999, 0, 'x', 'PingPilot 9.9.9')",
    )
    .await;
    let output = relay.cli(&["account", "list"]).await;
    assert!(!output.status.success(), "a newer schema was used");
    let message = stderr(&output);
    assert!(
        message.contains("schema version 9999 (migrated by PingPilot 9.9.9), newer than"),
        "{message}"
    );
    assert!(message.contains(THIS), "{message}");
    relay.stop().await;
}

#[tokio::test]
async fn an_edited_migration_is_refused_naming_its_file() {
    let relay = Relay::start().await;
    // As if the file had been edited after this database applied it.
    database_query(
        relay.database_url(),
        "UPDATE schema_migrations SET checksum = 'abcdef0123456789' WHERE version = 2",
    )
    .await;
    let output = relay.cli(&["account", "list"]).await;
    assert!(
        !output.status.success(),
        "an edited migration went unnoticed"
    );
    let message = stderr(&output);
    let backend = if relay.database_url().starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    };
    assert!(
        message.contains(&format!(
            "migrations/{backend}/0002_idempotency.sql was changed after it was applied \
             to this database (checksum abcdef012345 when applied"
        )),
        "{message}"
    );
    relay.stop().await;
}

#[tokio::test]
async fn migrations_applied_before_checksums_get_them_and_the_database_opens() {
    let relay = Relay::start().await;
    database_query(
        relay.database_url(),
        "UPDATE schema_migrations SET checksum = NULL, applied_by = NULL",
    )
    .await;
    let output = relay.cli(&["account", "list"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let unrecorded = database_query(
        relay.database_url(),
        "SELECT CAST(COUNT(*) AS TEXT) FROM schema_migrations WHERE checksum IS NULL",
    )
    .await;
    assert_eq!(unrecorded.as_deref(), Some("0"));
    let recorded = database_query(
        relay.database_url(),
        "SELECT applied_by FROM schema_migrations WHERE applied_by IS NOT NULL LIMIT 1",
    )
    .await;
    assert_eq!(
        recorded, None,
        "only checksums are filled in: who applied them is unknown"
    );
    relay.stop().await;
}
