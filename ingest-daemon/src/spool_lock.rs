//! One process at a time in a spool directory: an advisory exclusive lock on `<spool>/LOCK`.
//!
//! The spool repairs and writes its files when it is opened (torn tails, footers, the
//! cursor), so two processes must never open it together: not two daemons, and not the
//! `spool` subcommands while the daemon runs (the spool has no read-only mode yet). Both
//! `run` and the `spool` subcommands take this lock before [`crate::spool::Spool::open`];
//! the second one fails at once with [`LockError::Busy`], naming the holder's pid.
//!
//! The lock is `flock(2)`-style (`std::fs::File::try_lock`): released by the kernel when the
//! holder exits, however it exits, so a crashed daemon leaves no stale lock. The file's
//! content (the holder's pid) is only informative. Advisory: a process that does not ask
//! for the lock is not stopped by it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Name of the lock file inside the spool directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why the lock was not taken.
#[derive(Debug, Error)]
pub enum LockError {
    #[error(
        "spool {} is in use by {} (an ingest-daemon `run` or `spool` command); stop it first: \
         two processes cannot open a spool at once",
        dir.display(),
        holder.map_or_else(|| "another process".to_owned(), |p| format!("process {p}"))
    )]
    Busy { dir: PathBuf, holder: Option<u32> },
    #[error("cannot lock spool {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct SpoolLock {
    _file: File,
    path: PathBuf,
}

impl SpoolLock {
    /// Creates `dir` if needed and takes the lock without waiting.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let holder = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                return Err(LockError::Busy {
                    dir: dir.to_path_buf(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        // Informative only: who holds it.
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_err)?;
        Ok(Self { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let first = SpoolLock::acquire(&spool).unwrap();
        // flock locks belong to the open file: a second open in the same process conflicts
        // like another process would.
        match SpoolLock::acquire(&spool) {
            Err(LockError::Busy { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        SpoolLock::acquire(&spool).unwrap();
    }
}
