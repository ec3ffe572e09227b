//! One writer per run folder. Every command that writes a run holds an exclusive lock on
//! `RUN/.hudd-lock` while it runs ([`RunDir::lock`]); a second writer is refused at once and told
//! which command holds it. The lock is the operating system's (`flock` on Unix): it goes with the
//! process, so a killed run leaves no stale lock behind. The file stays (removing it would let a
//! third writer lock a new file while a second still waits on the old one); it holds the
//! holder's description while held and is empty otherwise.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use super::RunDir;
use crate::error::{Error, Result};

/// The lock file's name inside the run folder (hidden: no dataset or stage listing sees it).
pub const FILE: &str = ".hudd-lock";

/// A held lock on a run folder, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    file: File,
}

impl RunDir {
    /// Takes the run folder's writer lock for `command` (e.g. `hudd analyze`), creating the folder
    /// if needed. Errors: [`Error::RunBusy`] when another process holds it, naming that process.
    pub fn lock(&self, command: &str) -> Result<RunLock> {
        std::fs::create_dir_all(self.root()).map_err(|e| Error::io("cannot create folder", self.root(), e))?;
        let path = self.root().join(FILE);
        let io = |e| Error::io("cannot lock the run folder", &path, e);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                file.read_to_string(&mut holder).ok();
                let holder = holder.trim();
                return Err(Error::RunBusy {
                    run: self.root().to_path_buf(),
                    holder: if holder.is_empty() { "another hudd command".into() } else { holder.to_string() },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let since =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let text = format!("`{command}` (process {}, started at Unix time {since})\n", std::process::id());
        file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(text.as_bytes())).map_err(io)?;
        Ok(RunLock { file })
    }
}

impl RunLock {
    /// Where the lock lives in `run`.
    pub fn path(run: &RunDir) -> PathBuf {
        run.root().join(FILE)
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Emptied before it is released: at rest the file says nothing about a past holder.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_writer_is_refused_and_told_who_holds_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::new(dir.path().join("run"));
        let held = run.lock("hudd analyze").unwrap();
        let e = run.lock("hudd assign").unwrap_err().to_string();
        assert!(e.contains("hudd analyze") && e.contains(&std::process::id().to_string()), "{e}");
        assert!(e.contains(&run.root().display().to_string()), "{e}");
        drop(held);
        assert_eq!(std::fs::read(RunLock::path(&run)).unwrap(), b"", "empty at rest");
        let again = run.lock("hudd assign").unwrap();
        assert!(std::fs::read_to_string(RunLock::path(&run)).unwrap().contains("hudd assign"));
        drop(again);
    }
}
