//! Advisory locks between processes: "one writer at a time" for a study or an output file.
//!
//! A [`WriterLock`] is an OS file lock (`flock(2)` through std's `File::try_lock`) on a side
//! file next to what it guards (`F.lock`, or `F.study-NAME.lock` for a study in file `F`),
//! held for as long as the value lives. The kernel drops it when the process ends, however it
//! ends, so a SIGKILL never leaves a stale lock behind; the side file itself is deleted when
//! the lock is released. A lock that another live process holds is refused at once
//! ([`LockError::Held`], naming that process's pid as it wrote it into the file), never
//! waited for: a second writer is told, not queued.
//!
//! Exclusive locks are for writers that must be alone (a `--resume` marks the RUNNING trials
//! it finds FAIL, which is only right when nobody else is running them); shared ones for
//! writers that can run beside each other but not beside an exclusive one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{what} is being written by another etrading process ({holder}; lock {lock}): wait for it to finish, or stop it, then run this again"
    )]
    Held {
        what: String,
        holder: String,
        lock: String,
    },
    #[error("{lock}: cannot take the writer lock of {what}: {cause}")]
    Io {
        what: String,
        lock: String,
        cause: std::io::Error,
    },
}

/// Whether other holders may hold the lock at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    Exclusive,
    Shared,
}

/// A held lock; released (and its side file deleted, when no one else holds it) on drop.
#[derive(Debug)]
pub struct WriterLock {
    file: Option<File>,
    path: PathBuf,
    kind: LockKind,
}

impl WriterLock {
    /// Takes the lock on the side file `lock` (created when missing) for `what` (a phrase for
    /// messages: `study "grid" in db/s.db`), or says who holds it.
    pub fn acquire(lock: &Path, what: &str, kind: LockKind) -> Result<WriterLock, LockError> {
        let io = |cause| LockError::Io {
            what: what.to_string(),
            lock: lock.display().to_string(),
            cause,
        };
        // A holder that releases deletes the side file; a process that opened it just before
        // may then lock a file no longer at `lock`, so the lock is only taken once the file
        // locked is the one the path names.
        for _ in 0..100 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(lock)
                .map_err(io)?;
            let taken = match kind {
                LockKind::Exclusive => file.try_lock(),
                LockKind::Shared => file.try_lock_shared(),
            };
            match taken {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    // Best effort: the holder's own line.
                    let _ = file.read_to_string(&mut holder);
                    let holder = holder.lines().next().unwrap_or("").trim().to_string();
                    return Err(LockError::Held {
                        what: what.to_string(),
                        holder: if holder.is_empty() {
                            "pid unknown".to_string()
                        } else {
                            holder
                        },
                        lock: lock.display().to_string(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
            if !same_file(&file, lock) {
                continue;
            }
            if kind == LockKind::Exclusive {
                file.set_len(0).map_err(io)?;
                file.seek(SeekFrom::Start(0)).map_err(io)?;
                writeln!(file, "pid {}", std::process::id()).map_err(io)?;
            } else {
                // Shared holders append their line; the file is truncated by the last one out.
                file.seek(SeekFrom::End(0)).map_err(io)?;
                writeln!(file, "pid {} (shared)", std::process::id()).map_err(io)?;
            }
            file.flush().map_err(io)?;
            return Ok(WriterLock {
                file: Some(file),
                path: lock.to_path_buf(),
                kind,
            });
        }
        Err(io(std::io::Error::other(
            "the lock file kept being replaced",
        )))
    }

    /// The side file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        // Deleted only by a holder that can take it exclusively: nobody else holds it then,
        // and whoever opens the path next makes a new file (see `acquire`).
        let alone = match self.kind {
            LockKind::Exclusive => true,
            LockKind::Shared => file.unlock().is_ok() && file.try_lock().is_ok(),
        };
        if alone && same_file(&file, &self.path) {
            let _ = std::fs::remove_file(&self.path);
        }
        drop(file);
    }
}

/// Whether `path` still names the open `file`.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Elsewhere the side file is never deleted, so the file locked is always the one named.
#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

/// The side file of a study `name` in the study file `storage`: `STORAGE.study-NAME.lock`,
/// the name kept where it is plain (letters, digits, `.`, `_`, `-`, at most 64 bytes), else
/// replaced by its SHA-256 prefix.
pub fn study_lock_path(storage: &Path, name: &str) -> PathBuf {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    let tag = if plain {
        name.to_string()
    } else {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        format!(
            "sha256-{}",
            digest[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        )
    };
    let mut file = storage.as_os_str().to_owned();
    file.push(format!(".study-{tag}.lock"));
    PathBuf::from(file)
}

/// The side file of an output file `path`: `PATH.lock`.
pub fn output_lock_path(path: &Path) -> PathBuf {
    let mut file = path.as_os_str().to_owned();
    file.push(".lock");
    PathBuf::from(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_exclusive_holder_and_shared_ones_beside_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("s.db.study-x.lock");
        let a = WriterLock::acquire(&lock, "study \"x\"", LockKind::Exclusive).unwrap();
        let err = WriterLock::acquire(&lock, "study \"x\"", LockKind::Exclusive).unwrap_err();
        // Locks of one process's two open files conflict as two processes' do (flock).
        assert_eq!(
            err.to_string(),
            format!(
                "study \"x\" is being written by another etrading process (pid {}; lock {}): wait for it to finish, or stop it, then run this again",
                std::process::id(),
                lock.display()
            )
        );
        assert!(WriterLock::acquire(&lock, "x", LockKind::Shared).is_err());
        drop(a);
        assert!(!lock.exists(), "released: the side file is gone");
        let s1 = WriterLock::acquire(&lock, "x", LockKind::Shared).unwrap();
        let s2 = WriterLock::acquire(&lock, "x", LockKind::Shared).unwrap();
        assert!(WriterLock::acquire(&lock, "x", LockKind::Exclusive).is_err());
        drop(s1);
        assert!(lock.exists(), "another shared holder is left");
        assert!(WriterLock::acquire(&lock, "x", LockKind::Exclusive).is_err());
        drop(s2);
        assert!(!lock.exists());
        WriterLock::acquire(&lock, "x", LockKind::Exclusive).unwrap();
    }

    #[test]
    fn lock_file_names() {
        let p = Path::new("db/s.db");
        assert_eq!(
            study_lock_path(p, "rsi_ema-1.0"),
            Path::new("db/s.db.study-rsi_ema-1.0.lock")
        );
        let odd = study_lock_path(p, "a/b c");
        let name = odd.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("s.db.study-sha256-") && name.ends_with(".lock"),
            "{name}"
        );
        assert_eq!(name.len(), "s.db.study-sha256-.lock".len() + 16);
        assert_ne!(study_lock_path(p, "a/b d"), odd);
        assert_eq!(
            output_lock_path(Path::new("out/sweep.csv")),
            Path::new("out/sweep.csv.lock")
        );
    }
}
