//! A consistent copy of a live SQLite database (`pingpilot backup`), through SQLite's online
//! backup API: the copy is the database as of one moment, taken under a read transaction,
//! which in WAL mode holds up no writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use sqlx::sqlite::SqliteConnectOptions;

use super::{Result, StoreError};

/// How long a backup waits for a database kept busy, and how long between two tries.
const BUSY_WAIT: Duration = Duration::from_secs(30);
const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// A finished backup.
#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
}

/// Copies the SQLite database at `url` to `to` (replacing it). The copy is written
/// next to it under a temporary name, checked (`PRAGMA quick_check`) and then renamed, so `to`
/// is either a whole backup or absent.
pub fn backup_sqlite(url: &str, to: &Path) -> Result<BackupReport> {
    let started = Instant::now();
    let source_path = SqliteConnectOptions::from_str(url)?
        .get_filename()
        .to_path_buf();
    if !source_path.exists() {
        return Err(StoreError::Unavailable(format!(
            "no database file at {}",
            source_path.display()
        )));
    }
    let partial = partial_path(to);
    let result = copy(&source_path, &partial);
    if let Err(err) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, to).map_err(|err| io_error("cannot name the copy", to, &err))?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        path: to.to_path_buf(),
        bytes,
        took: started.elapsed(),
    })
}

/// Copies every page in one step (one read transaction: one moment's database), then checks
/// the copy.
fn copy(source_path: &Path, to: &Path) -> Result<()> {
    let source = Connection::open_with_flags(
        source_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(Duration::from_secs(5))?;
    let mut copy = Connection::open(to)?;
    {
        let backup = Backup::new(&source, &mut copy)?;
        // -1: every page in one step. Busy or locked (a writer checkpointing): try again.
        let mut waited = Duration::ZERO;
        while backup.step(-1)? != StepResult::Done {
            if waited >= BUSY_WAIT {
                return Err(StoreError::Unavailable(
                    "the database stayed busy: no consistent copy could be read".into(),
                ));
            }
            std::thread::sleep(BUSY_PAUSE);
            waited += BUSY_PAUSE;
        }
    }
    // A copy made from a WAL database is in WAL mode too; as a single file it is easier to
    // keep and to restore.
    copy.pragma_update(None, "journal_mode", "DELETE")?;
    let check: String = copy.query_row("PRAGMA quick_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!(
            "the copy did not pass its check: {check}"
        )));
    }
    Ok(())
}

fn partial_path(to: &Path) -> PathBuf {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    to.with_file_name(name)
}

fn io_error(what: &str, path: &Path, err: &std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {err}", path.display()))
}
