//! The rusqlite connections of the SQLite store (the batch writer's and the checkpointer's):
//! how each is opened, with the `database` settings.

use std::path::Path;
use std::time::Duration;

use pingpilot_config::SqliteSynchronous as Synchronous;
use rusqlite::{Connection, OpenFlags};

use super::{Result, StoreOptions};

/// What every rusqlite connection of the store is opened with (the `database` settings).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConnectionSettings {
    pub busy_timeout: Duration,
    pub synchronous: Synchronous,
}

impl From<&StoreOptions> for ConnectionSettings {
    fn from(options: &StoreOptions) -> Self {
        Self {
            busy_timeout: options.busy_timeout,
            synchronous: options.synchronous,
        }
    }
}

/// A rusqlite connection to the database file at `path`, with the store's settings, for the one
/// thread that uses it.
pub(super) fn open_connection(path: &Path, settings: ConnectionSettings) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(settings.busy_timeout)?;
    let synchronous = match settings.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON;"
    ))?;
    Ok(conn)
}
