//! SQLite's WAL checkpoints on a thread of their own. SQLite checkpoints on the connection that
//! commits, once a commit leaves 1,000 frames or more in the WAL: on the group-commit thread that
//! meant a pause of copying pages and two `fsync`s every few dozen commits under load, with
//! every request of the next batch waiting behind it. Here that commit only wakes the
//! checkpointer, which copies the WAL into the database while the writer goes on appending
//! (a PASSIVE checkpoint never blocks readers or the writer).

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::{Connection, ffi};

use super::Result;
use super::sqlite_connection::ConnectionSettings;
use crate::lock;

/// WAL frames not yet checkpointed that ask for a checkpoint: SQLite's own default.
pub(super) const CHECKPOINT_FRAMES: c_int = 1000;
/// A WAL this long is checkpointed by the committing connection too. The WAL starts over only
/// at a write that finds it checkpointed to the end, which the checkpointer alone never
/// achieves while the writer keeps appending; what it leaves is a commit or two's worth.
pub(super) const RESTART_FRAMES: c_int = 4 * CHECKPOINT_FRAMES;

/// The checkpointer thread's handle: dropping it stops the thread.
pub(super) struct Checkpointer {
    signal: Arc<Signal>,
}

#[derive(Default)]
struct Signal {
    state: Mutex<State>,
    changed: Condvar,
    /// The WAL's frames copied by the last checkpoint, the checkpointer's or the writer's.
    checkpointed: AtomicI32,
}

#[derive(Default)]
struct State {
    due: bool,
    closed: bool,
}

impl Signal {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut lock(&self.state));
        self.changed.notify_one();
    }

    /// Waits for a checkpoint to be due: `false` once the checkpointer is closed.
    fn wait_until_due(&self) -> bool {
        let mut state = lock(&self.state);
        while !state.due && !state.closed {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state.due = false;
        !state.closed
    }
}

impl Checkpointer {
    /// Starts the thread, with a connection of its own to the database file at `path`.
    pub(super) fn start(path: &Path, settings: ConnectionSettings) -> Result<Self> {
        let conn = super::sqlite_connection::open_connection(path, settings)?;
        let signal = Arc::new(Signal::default());
        let thread_signal = signal.clone();
        std::thread::Builder::new()
            .name("pingpilot-ckpt".into())
            .spawn(move || {
                while thread_signal.wait_until_due() {
                    if let Some(frames) = checkpoint(&conn) {
                        thread_signal.checkpointed.store(frames, Ordering::Relaxed);
                    }
                }
            })
            .map_err(super::StoreError::ThreadStart)?;
        Ok(Self { signal })
    }

    /// A checkpointer whose thread never comes: only the committing connection checkpoints,
    /// at [`RESTART_FRAMES`].
    #[cfg(test)]
    pub(super) fn stalled() -> Self {
        Self {
            signal: Arc::default(),
        }
    }

    /// Makes `conn`'s commits wake this checkpointer instead of checkpointing themselves.
    /// `conn` must be dropped before this checkpointer.
    pub(super) fn watch(&self, conn: &Connection) {
        // SAFETY: the hook gets a pointer to the signal, which lives as long as this
        // checkpointer, and the caller drops `conn` first. The hook locks the signal's mutex,
        // and may checkpoint on `conn` itself, as SQLite's own hook does.
        unsafe {
            ffi::sqlite3_wal_hook(
                conn.handle(),
                Some(commit_hook),
                Arc::as_ptr(&self.signal).cast_mut().cast(),
            );
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.signal.update(|state| state.closed = true);
    }
}

/// Called by SQLite after each commit of a watched connection, with the WAL's length in frames.
/// Until the WAL starts over it stays past the threshold: what counts is what the last
/// checkpoint left, so the checkpointer is not woken again at every commit.
unsafe extern "C" fn commit_hook(
    signal: *mut c_void,
    db: *mut ffi::sqlite3,
    _name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `watch` passed a pointer to a `Signal` that outlives the connection.
    let signal = unsafe { &*signal.cast::<Signal>() };
    if frames >= RESTART_FRAMES {
        let mut copied: c_int = 0;
        // SAFETY: `db` is the connection that just committed, as SQLite's own checkpointing
        // hook uses it. A failure (busy: the checkpointer is at work) is retried next commit.
        let result = unsafe {
            ffi::sqlite3_wal_checkpoint_v2(
                db,
                std::ptr::null(),
                ffi::SQLITE_CHECKPOINT_PASSIVE,
                std::ptr::null_mut(),
                &mut copied,
            )
        };
        if result == ffi::SQLITE_OK {
            // Recorded as the checkpointer's own would be, so it is not woken for nothing.
            signal.checkpointed.store(copied, Ordering::Relaxed);
        }
    }
    let checkpointed = signal.checkpointed.load(Ordering::Relaxed);
    // A WAL shorter than what was checkpointed has started over: every frame is new.
    let new_frames = if frames >= checkpointed {
        frames - checkpointed
    } else {
        frames
    };
    if new_frames >= CHECKPOINT_FRAMES {
        signal.update(|state| state.due = true);
    }
    ffi::SQLITE_OK
}

/// A checkpoint of as much of the WAL as no reader still needs: the frames it holds copied.
fn checkpoint(conn: &Connection) -> Option<c_int> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get(2)) {
        Ok(checkpointed) => Some(checkpointed),
        Err(error) => {
            tracing::warn!(%error, "could not checkpoint the database's WAL");
            None
        }
    }
}
