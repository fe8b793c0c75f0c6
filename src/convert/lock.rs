//! One writer at a time: an exclusive advisory lock, held for a whole conversion or append.
//!
//! The lock is taken on `.<name>.annbatch-lock` beside the output (not inside it: an append
//! swaps the collection directory, and a lock inside would be swapped with it). A second
//! writer **waits** for the first to finish and then works on what it published, so two
//! appends started together both land, one after the other. The lock is the kernel's (`flock`
//! on Unix), released when the process ends however it ends, so a killed run never leaves the
//! collection locked. The holder removes the lock file before it unlocks, so none is left behind
//! after a run, failed or not; a waiter that then wins the lock of a removed file sees that the
//! path no longer names the file it locked and starts again (the usual remove-on-unlock
//! protocol for `flock` files). Only a killed run leaves the empty file, which the next run
//! takes over and removes.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held while a conversion writes `output`; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriteLock {
    file: File,
    path: PathBuf,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Still locked here: removed before the lock is released with `file`. A failure only
        // leaves the empty file, which the next run takes over.
        if names_file(&self.path, &self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Whether `path` names `file` now (not a file created after `file`'s was removed).
fn names_file(path: &Path, file: &File) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::symlink_metadata(path), file.metadata()) {
            (Ok(at_path), Ok(held)) => at_path.dev() == held.dev() && at_path.ino() == held.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (path, file);
        true
    }
}

/// The lock file of `output`.
pub(crate) fn lock_path(output: &Path) -> Result<PathBuf> {
    let name = output
        .file_name()
        .ok_or_else(|| Error::parameter("output", output.display(), "needs a file name"))?
        .to_string_lossy()
        .into_owned();
    let parent = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok(parent.join(format!(".{name}.annbatch-lock")))
}

impl WriteLock {
    /// Locks `output` for writing, waiting (and saying so on stderr unless `quiet`) while
    /// another process holds it.
    pub(crate) fn acquire(output: &Path, quiet: bool) -> Result<Self> {
        let path = lock_path(output)?;
        let mut told = quiet;
        loop {
            let file = Self::lock_file(&path, output, &mut told)?;
            // The previous holder may have removed the file this one waited on.
            if names_file(&path, &file) {
                return Ok(Self { file, path });
            }
        }
    }

    /// Opens (creating) the lock file at `path` and locks it, waiting while another holds it.
    fn lock_file(path: &Path, output: &Path, told: &mut bool) -> Result<File> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Non-blocking: a FIFO in place of the lock file fails to open (no reader) instead of
        // waiting; anything but a regular file is refused below.
        let file = {
            let mut open = OpenOptions::new();
            open.create(true).truncate(false).write(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                open.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
            }
            open.open(path).map_err(io)?
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the lock file is a {}, not a regular file: remove it",
                    crate::storage::kind_of(&meta)
                ),
            )));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                if !std::mem::replace(told, true) {
                    eprintln!(
                        "{}: another conversion is writing this collection; waiting for it to \
                         finish",
                        output.display()
                    );
                }
                tracing::info!(output = %output.display(), "waiting for the write lock");
                file.lock().map_err(io)?;
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_sits_beside_the_output() {
        let p = lock_path(Path::new("/data/c.zarr")).expect("path");
        assert_eq!(p, Path::new("/data/.c.zarr.annbatch-lock"));
        assert_eq!(
            lock_path(Path::new("c.zarr")).expect("path"),
            Path::new("./.c.zarr.annbatch-lock")
        );
    }

    #[test]
    fn a_second_lock_in_one_process_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("c.zarr");
        let first = WriteLock::acquire(&out, true).expect("first");
        let path = lock_path(&out).expect("path");
        let other = File::open(&path).expect("open");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop(first);
        other.try_lock().expect("free after drop");
        assert!(!path.exists(), "the holder removes the lock file");
    }

    #[test]
    fn a_waiter_whose_file_was_removed_locks_the_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("c.zarr");
        let first = WriteLock::acquire(&out, true).expect("first");
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let out = out.clone();
            std::thread::spawn(move || {
                let lock = WriteLock::acquire(&out, true).expect("second");
                tx.send(()).expect("send");
                std::thread::sleep(std::time::Duration::from_millis(200));
                drop(lock);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(first);
        rx.recv().expect("second holds the lock");
        // A third writer must wait for the second, not lock a fresh file beside it.
        let path = lock_path(&out).expect("path");
        assert!(path.exists(), "the second holds a lock file at the path");
        let third = File::open(&path).expect("open");
        assert!(matches!(third.try_lock(), Err(TryLockError::WouldBlock)));
        waiter.join().expect("join");
        assert!(!path.exists());
    }
}
