//! Crash safety: a conversion writes into a hidden sibling directory and publishes it with one
//! rename, so the output path holds either nothing / the old collection, or the complete new one.
//!
//! - New collection: `rename(tmp, output)`.
//! - Append: the whole new collection is built beside the old one (datasets that receive no
//!   rows are hard-linked, not copied), then swapped in with `renameat2(RENAME_EXCHANGE)` on
//!   Linux: one atomic step, all or nothing. Elsewhere: two renames, with the old collection kept
//!   under `.<name>.annbatch-old-<pid>` until the new one is in place.
//!
//! A run that is killed leaves only its hidden directory, which the next run on the same output
//! removes once the process that made it is gone.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A hidden work directory that becomes `target` on [`Staging::publish`]; removed on drop if
/// never published.
#[derive(Debug)]
pub(crate) struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    published: bool,
}

const TMP_TAG: &str = ".annbatch-tmp-";

impl Staging {
    /// Creates the work directory for `target`, removing those left by dead runs.
    pub(crate) fn begin(target: &Path) -> Result<Self> {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .ok_or_else(|| Error::parameter("output", target.display(), "needs a file name"))?
            .to_string_lossy()
            .into_owned();
        std::fs::create_dir_all(&parent).map_err(io(&parent))?;
        remove_stale(&parent, &name);
        let dir = parent.join(format!(".{name}{TMP_TAG}{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(Self {
            dir,
            target: target.to_path_buf(),
            published: false,
        })
    }

    /// Moves the work directory to the target path (absent or an empty directory).
    pub(crate) fn publish(mut self) -> Result<()> {
        if self.target.is_dir() {
            if is_empty_group(&self.target) {
                return self.publish_replacing();
            }
            // Only an empty directory gets here; remove_dir refuses anything else.
            std::fs::remove_dir(&self.target).map_err(io(&self.target))?;
        }
        std::fs::rename(&self.dir, &self.target).map_err(io(&self.target))?;
        self.published = true;
        Ok(())
    }

    /// Atomically replaces the existing target with the work directory.
    pub(crate) fn publish_replacing(mut self) -> Result<()> {
        let old = exchange(&self.dir, &self.target)?;
        self.published = true;
        std::fs::remove_dir_all(&old).map_err(io(&old))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether `path` is a zarr group with nothing in it but its own metadata (what
/// `zarr.open_group(path, mode="a")`, or annbatch's `DatasetCollection(path)`, leaves): a new
/// collection may take its place.
pub(crate) fn is_empty_group(path: &Path) -> bool {
    const METADATA: [&str; 4] = ["zarr.json", ".zgroup", ".zattrs", ".zmetadata"];
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let mut any = false;
    for entry in entries {
        let Ok(entry) = entry else { return false };
        let name = entry.file_name();
        if !METADATA.iter().any(|m| name == *m) {
            return false;
        }
        any = true;
    }
    let v3_group = std::fs::read(path.join("zarr.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get("node_type").and_then(|t| t.as_str()) == Some("group"));
    any && (v3_group || path.join(".zgroup").is_file())
}

/// Swaps `new` into `target`; returns where the old contents now are.
#[cfg(target_os = "linux")]
fn exchange(new: &Path, target: &Path) -> Result<PathBuf> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, new, CWD, target, RenameFlags::EXCHANGE)
        .map_err(|e| io(target)(std::io::Error::from(e)))?;
    Ok(new.to_path_buf())
}

#[cfg(not(target_os = "linux"))]
fn exchange(new: &Path, target: &Path) -> Result<PathBuf> {
    let old = new.with_file_name(
        new.file_name()
            .map(|n| n.to_string_lossy().replace(TMP_TAG, ".annbatch-old-"))
            .unwrap_or_default(),
    );
    std::fs::rename(target, &old).map_err(io(target))?;
    std::fs::rename(new, target).map_err(io(target))?;
    Ok(old)
}

/// Removes `.<name>.annbatch-tmp-<pid>` directories whose process no longer runs (Linux only:
/// elsewhere we cannot tell, and they stay).
fn remove_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}{TMP_TAG}");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        let alive = cfg!(not(target_os = "linux"))
            || pid.parse::<u32>().map_or(true, |p| {
                p == std::process::id()
                    || (Path::new(&format!("/proc/{p}")).exists()
                        && !started_after(p, &entry.path()))
            });
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Whether process `pid` started after `dir` was last modified, so it cannot have created it
/// (its PID was reused after the creator died). Unknown: false (the directory is kept).
fn started_after(pid: u32, dir: &Path) -> bool {
    #[cfg(target_os = "linux")]
    {
        let modified = std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        // Field 22 of /proc/PID/stat: start time in clock ticks after boot (fields counted
        // after the parenthesised command name, which may hold spaces).
        let start_ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let rest = stat.rsplit_once(')')?.1;
                rest.split_whitespace().nth(19)?.parse::<u64>().ok()
            });
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|stat| {
            stat.lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse::<u64>()
                .ok()
        });
        let ticks = rustix::param::clock_ticks_per_second();
        match (modified, start_ticks, boot) {
            (Some(modified), Some(start), Some(boot)) if ticks > 0 => {
                // A second of slack for the rounding of btime and of the tick count.
                boot + start / ticks > modified.as_secs() + 1
            }
            _ => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (pid, dir);
        false
    }
}

/// Recreates the tree `src` at `dst` with hard links (copies where linking fails).
pub(crate) fn link_tree(src: &Path, dst: &Path) -> Result<()> {
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for entry in std::fs::read_dir(src).map_err(io(src))? {
        let entry = entry.map_err(io(src))?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        if entry.file_type().map_err(io(&from))?.is_dir() {
            link_tree(&from, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io(&from))?;
        }
    }
    Ok(())
}
