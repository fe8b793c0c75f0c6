//! One writer at a time: an exclusive advisory lock, held for a whole conversion or append.
//!
//! The lock is taken on `.<name>.annbatch-lock` beside the output (not inside it: an append
//! swaps the collection directory, and a lock inside would be swapped with it). A second
//! writer **waits** for the first to finish and then works on what it published, so two
//! appends started together both land, one after the other. The lock is the kernel's (`flock`
//! on Unix), released when the process ends however it ends, so a killed run never leaves the
//! collection locked. The empty lock file stays; it holds nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Held while a conversion writes `output`; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct WriteLock {
    _file: File,
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
        let io = |source| Error::Io {
            path: path.clone(),
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
            open.open(&path).map_err(io)?
        };
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "the lock file is a {}, not a regular file: remove it",
                    crate::store::kind_of(&meta)
                ),
            )));
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                if !quiet {
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
        Ok(Self { _file: file })
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
    }
}
