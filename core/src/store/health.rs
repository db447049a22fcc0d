//! Whether the database takes writes: what readiness reports and what refuses writes that
//! could not be kept.

use std::sync::Mutex;

use super::{Result, StoreError};
use crate::lock;

#[derive(Default)]
pub struct Health {
    /// Why the database must not be written at all (its file was removed), until that ends.
    refused: Mutex<Option<String>>,
    /// The last write failure that a retry may fix (locked, full, unreachable), until a write
    /// succeeds again.
    failing: Mutex<Option<String>>,
}

impl Health {
    /// `Err` while writes are refused.
    pub fn writable(&self) -> Result<()> {
        match lock(&self.refused).as_ref() {
            Some(reason) => Err(StoreError::Unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    /// Refuses every write from now on, for `reason`; `None` takes that back.
    pub fn refuse(&self, reason: Option<String>) {
        *lock(&self.refused) = reason;
    }

    /// Follows a write's outcome: a success clears a failure, a failure the database's state
    /// explains is kept until then.
    pub fn note<T>(&self, result: &Result<T>) {
        match result {
            Ok(_) => *lock(&self.failing) = None,
            Err(err) if err.is_unavailable() => *lock(&self.failing) = Some(err.to_string()),
            Err(_) => {}
        }
    }

    /// What keeps the database from taking writes now, if anything.
    pub fn problem(&self) -> Option<String> {
        lock(&self.refused)
            .clone()
            .or_else(|| lock(&self.failing).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_lasts_until_a_write_succeeds() {
        let health = Health::default();
        assert_eq!(health.problem(), None);
        health.note::<()>(&Err(StoreError::Unavailable("database is locked".into())));
        assert_eq!(
            health.problem().as_deref(),
            Some("database unavailable: database is locked")
        );
        // A failure of the request, not of the database, changes nothing.
        health.note::<()>(&Err(StoreError::Corrupt("bad row".into())));
        assert!(health.problem().is_some());
        health.note(&Ok(()));
        assert_eq!(health.problem(), None);
    }

    #[test]
    fn refusal_holds_until_taken_back() {
        let health = Health::default();
        health.refuse(Some("the file is gone".into()));
        assert!(health.writable().is_err());
        health.note(&Ok(()));
        assert_eq!(health.problem().as_deref(), Some("the file is gone"));
        health.refuse(None);
        assert!(health.writable().is_ok());
    }
}
