//! File helpers for secrets and pinned state: private directories and atomic replacement.
//!
//! A half-written key or trust file after a crash would either lock the host out of every
//! peer or trust the wrong one, so files are written to a temporary name, synced, and renamed
//! over the old one; the directory is synced so the rename itself survives a power loss.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::TlsError;

/// Creates `dir` and its missing parents with mode 0700 (before the umask); an existing
/// directory keeps the mode its administrator gave it.
pub(super) fn ensure_private_dir(dir: &Path) -> Result<(), TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// Reads a whole file; `Ok(None)` when it does not exist, so callers can tell "first start"
/// from "cannot read".
pub(super) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, TlsError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(TlsError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Replaces `path` with `bytes` atomically; the new file has `mode` (before the umask).
pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    // Unique per process and call, so two threads saving at once never share a temp file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let io_error = |action: &'static str, at: &Path| {
        let at = at.to_path_buf();
        move |source| TlsError::Io {
            action,
            path: at,
            source,
        }
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io_error("create", &tmp))?;
        file.write_all(bytes).map_err(io_error("write", &tmp))?;
        file.sync_all().map_err(io_error("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_error("rename a temporary file onto", path))
    })();
    if written.is_err() {
        // Best effort: a leftover temp file is harmless, the original error matters more.
        let _ = fs::remove_file(&tmp);
        return written;
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_write_replaces_content_with_mode_and_leaves_no_temp() -> Result<(), TlsError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("secret");
        write_atomic(&file, b"one", 0o600)?;
        write_atomic(&file, b"two", 0o600)?;
        assert_eq!(read_optional(&file)?.as_deref(), Some(&b"two"[..]));
        let mode = fs::metadata(&file)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode, Some(0o600));
        let names: Vec<_> = fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret")]);
        assert_eq!(read_optional(&dir.path().join("absent"))?, None);
        Ok(())
    }

    #[test]
    fn private_dir_is_0700() -> Result<(), TlsError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("a/b");
        ensure_private_dir(&nested)?;
        ensure_private_dir(&nested)?;
        let mode = fs::metadata(&nested)
            .map(|m| m.permissions().mode() & 0o777)
            .ok();
        assert_eq!(mode.map(|m| m & 0o077), Some(0));
        Ok(())
    }
}
