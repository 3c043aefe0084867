//! File access for layouts that cannot hang, escape or lie: every path is
//! resolved inside the layout root before use, files are opened without
//! blocking and used only when they are regular files, and writes go through
//! temp files that a killed process cannot leave behind for long.
//!
//! Blocking calls: run them with [`blocking`].

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use crate::oci::{Digest, Digester};

/// Prefix of every temp file name (`.tmp-<random>`).
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Temp files untouched for this long belong to a writer that died: a live
/// writer touches its file with every chunk, and a transfer stalled this long
/// has timed out anyway.
pub(super) const STALE_TEMP_AGE: Duration = Duration::from_secs(60 * 60);

/// A path the layout refuses to use.
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    /// A FIFO, socket, device or directory where a file should be.
    #[error("{path} is a {what}, not a regular file")]
    NotRegular {
        /// The offending path.
        path: PathBuf,
        /// What it is instead.
        what: &'static str,
    },
    /// A symbolic link that resolves outside the layout root.
    #[error("{path} is a symbolic link leading out of the layout {root}")]
    Escapes {
        /// The link.
        path: PathBuf,
        /// The layout root.
        root: PathBuf,
    },
    /// A symbolic link that appeared after the path was resolved.
    #[error("{path} is a symbolic link the layout does not follow")]
    Link {
        /// The link.
        path: PathBuf,
    },
}

impl From<UnsafePath> for io::Error {
    fn from(e: UnsafePath) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// The [`UnsafePath`] inside an I/O error, if that is what it is.
pub(super) fn unsafe_path(e: &io::Error) -> Option<&UnsafePath> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// Runs blocking file system work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}

/// Joins `parts` under `base`, refusing anything that is not a plain name
/// (empty, `.`, `..`, absolute, containing a separator or NUL), so no path
/// built here can leave `base` lexically.
pub(crate) fn contained_join<'a>(
    base: &Path,
    parts: impl IntoIterator<Item = &'a str>,
) -> Option<PathBuf> {
    let mut out = base.to_path_buf();
    for part in parts {
        if part.is_empty() || part.contains(['/', '\\', '\0']) {
            return None;
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) if c == part => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// `path` (which is `root` joined with plain names) with every symbolic
/// link below `root` resolved, or [`UnsafePath::Escapes`] when one leads out
/// of `root`. `root` itself may be a link. Parts that do not exist yet are
/// kept as they are: whoever creates them creates real directories.
pub(super) fn confine(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let real_root = match std::fs::canonicalize(root) {
        Ok(r) => r,
        // Nothing exists yet, so there is nothing to follow.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(path.to_path_buf()),
        Err(e) => return Err(e),
    };
    // `path` may also extend a path this function returned.
    let rel = path
        .strip_prefix(root)
        .or_else(|_| path.strip_prefix(&real_root))
        .map_err(|_| {
            io::Error::other(format!(
                "{} is not under {}",
                path.display(),
                root.display()
            ))
        })?;
    let escapes = |link: &Path| UnsafePath::Escapes {
        path: link.to_path_buf(),
        root: root.to_path_buf(),
    };
    let mut out = real_root.clone();
    let mut missing = false;
    for comp in rel.components() {
        let next = out.join(comp);
        if missing {
            out = next;
            continue;
        }
        match std::fs::symlink_metadata(&next) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::canonicalize(&next) {
                Ok(real) if real.starts_with(&real_root) => out = real,
                // A dangling link counts as escaping: creating through it
                // would create its target, wherever that is.
                Ok(_) | Err(_) => return Err(escapes(&next).into()),
            },
            Ok(_) => out = next,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing = true;
                out = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// What a non-regular file is, for messages.
fn kind_of(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "special file"
    }
}

/// Fails with [`UnsafePath::NotRegular`] unless the open `file` is a regular
/// file (checked on the descriptor, so nothing can swap it in between).
fn ensure_regular(file: &File, path: &Path) -> io::Result<std::fs::Metadata> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(UnsafePath::NotRegular {
            path: path.to_path_buf(),
            what: kind_of(meta.file_type()),
        }
        .into());
    }
    Ok(meta)
}

/// Opens a confined path for reading: never blocks (`O_NONBLOCK`: a FIFO
/// opens at once instead of waiting for a writer), never follows a link
/// swapped in after [`confine`] (`O_NOFOLLOW`), and only yields regular
/// files. `Ok(None)` when nothing is there.
pub(super) fn open_regular(path: &Path) -> io::Result<Option<(File, u64)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(refused_link(e, path)),
    };
    let meta = ensure_regular(&file, path)?;
    Ok(Some((file, meta.len())))
}

/// Opens (creating) the lock file `path` for writing, with the guarantees of
/// [`open_regular`].
pub(super) fn open_lock_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| refused_link(e, path))?;
    ensure_regular(&file, path)?;
    Ok(file)
}

/// `ELOOP` from `O_NOFOLLOW` means a link appeared after [`confine`].
fn refused_link(e: io::Error, path: &Path) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        return UnsafePath::Link {
            path: path.to_path_buf(),
        }
        .into();
    }
    e
}

/// Reads at most `limit + 1` bytes of a file (so callers can tell "too
/// big"); `Ok(None)` when it does not exist.
pub(super) fn read_limited(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let Some((file, _)) = open_regular(path)? else {
        return Ok(None);
    };
    let mut buf = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// A temp file that is removed unless persisted, even when the writing
/// future is dropped half-way.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    keep: bool,
}

impl TempFile {
    /// A fresh temp name in `dir`, not created (for a hard link, which
    /// refuses an existing name).
    pub(super) fn name_in(dir: &Path) -> TempFile {
        TempFile {
            path: dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>())),
            keep: false,
        }
    }

    /// A new, exclusively created, empty temp file in `dir` (never through
    /// a link: `O_EXCL` refuses any existing name).
    pub(super) fn create(dir: &Path) -> io::Result<(TempFile, File)> {
        let tmp = TempFile::name_in(dir);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp.path)?;
        Ok((tmp, file))
    }

    /// Renames the file to `to` (which, if it exists, is replaced, even a
    /// FIFO or a link: rename never follows the destination).
    pub(super) fn persist(mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory,
/// fsync, rename). `path` must be confined.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let (tmp, mut f) = TempFile::create(dir)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    tmp.persist(path)
}

/// Removes temp files in `dir` not modified for `max_age` (left by a
/// process that was killed mid-write). Only regular files named like ours;
/// links are never followed. Returns how many were removed.
pub(super) fn remove_stale_temps(dir: &Path, max_age: Duration) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        // DirEntry::metadata does not follow links.
        let Ok(meta) = entry.metadata() else { continue };
        let stale = meta.is_file()
            && meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= max_age);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Existing blobs up to this size are hashed before they count as present
/// (a read this small costs less than trusting a damaged file).
const VERIFY_EXISTING_UP_TO: u64 = 4 * 1024 * 1024;
/// Content of the `oci-layout` file.
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// The size of the blob file at `path` when it holds `digest`: a regular
/// file of `expected` bytes (when known) whose content, up to
/// [`VERIFY_EXISTING_UP_TO`], hashes to `digest`. `None` when absent or
/// damaged (the caller then writes it again).
pub(super) fn present_size(
    path: &Path,
    digest: &Digest,
    expected: Option<u64>,
) -> io::Result<Option<u64>> {
    let Some((mut file, len)) = open_regular(path)? else {
        return Ok(None);
    };
    if expected.is_some_and(|e| e != len) {
        return Ok(None);
    }
    if len <= VERIFY_EXISTING_UP_TO {
        let mut digester = Digester::new(digest.algorithm());
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf)? {
                0 => break,
                n => digester.update(&buf[..n]),
            }
        }
        if digester.len() != len || &digester.finish() != digest {
            tracing::warn!(path = %path.display(), "Damaged blob file in layout; it will be rewritten.");
            return Ok(None);
        }
    }
    Ok(Some(len))
}

/// Layout directories whose stale temp files this process removed already.
static SWEPT: LazyLock<Mutex<HashSet<PathBuf>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Creates the layout skeleton of `dir` (`blobs/<alg>`, `oci-layout`) where
/// missing; the first time per process, removes temp files left by killed
/// writers. `dir` must be confined.
pub(super) fn ensure_layout(dir: &Path, alg: Option<&str>) -> io::Result<()> {
    let blobs = dir.join("blobs");
    match alg {
        Some(a) => std::fs::create_dir_all(blobs.join(a))?,
        None => std::fs::create_dir_all(&blobs)?,
    }
    let layout = dir.join("oci-layout");
    if std::fs::symlink_metadata(&layout).is_err() {
        write_atomic(&layout, OCI_LAYOUT)?;
    }
    let first = SWEPT
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(dir.to_path_buf());
    if first {
        // Best effort: a sweep that fails must not fail the write.
        let sweep = || -> io::Result<usize> {
            let mut removed = remove_stale_temps(dir, STALE_TEMP_AGE)?;
            for entry in std::fs::read_dir(&blobs)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    removed += remove_stale_temps(&entry.path(), STALE_TEMP_AGE)?;
                }
            }
            Ok(removed)
        };
        match sweep() {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(dir = %dir.display(), removed, "Removed temp files left by an interrupted writer.")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "Could not look for stale temp files.")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contained_join_refuses_escapes() {
        let base = Path::new("/base");
        assert_eq!(
            contained_join(base, ["a", "b"]),
            Some(PathBuf::from("/base/a/b"))
        );
        for bad in [
            vec![".."],
            vec!["a", ".."],
            vec!["."],
            vec![""],
            vec!["/etc"],
            vec!["a/b"],
            vec!["..\\x"],
            vec!["x\0y"],
        ] {
            assert_eq!(contained_join(base, bad.clone()), None, "{bad:?}");
        }
    }
}
