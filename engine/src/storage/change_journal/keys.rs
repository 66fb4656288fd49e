//! Keys: a path's normalised raw bytes, and the byte ranges that make "at or under a
//! directory" one contiguous key range (a directory's descendants all start `dir/`). Apart
//! because the journal's operations and its store both reason in these terms.

use std::ffi::OsStr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::{Error, Result};

const SEP: u8 = b'/';

/// The normalised key of `path`: its components joined, as raw bytes.
pub(super) fn key_of(path: &Path) -> Result<Vec<u8>> {
    let normal: PathBuf = path.components().collect();
    let bytes = normal.into_os_string().into_vec();
    if bytes.is_empty() {
        return Err(Error::InvalidPath {
            path: path.to_path_buf(),
            why: "the path is empty",
        });
    }
    Ok(bytes)
}

pub(super) fn path_of(key: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(key))
}

/// The parent's key, or `key` itself at the top (`/` or a single relative name).
pub(super) fn parent_key(key: &[u8]) -> &[u8] {
    match Path::new(OsStr::from_bytes(key)).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.as_os_str().as_bytes(),
        _ => key,
    }
}

/// The key range `[lo, hi)` of the paths strictly under `key`: those starting `key/`.
pub(super) fn under_bounds(key: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut lo = key.to_vec();
    if lo.last() != Some(&SEP) {
        lo.push(SEP);
    }
    let mut hi = lo.clone();
    *hi.last_mut().expect("not empty") = SEP + 1;
    (lo, hi)
}

/// Whether `key` is `dir` or lies under it.
pub(super) fn is_at_or_under(key: &[u8], dir: &[u8]) -> bool {
    let (lo, _) = under_bounds(dir);
    key == dir || key.starts_with(&lo)
}
