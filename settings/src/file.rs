//! Writing one setting into the settings file, keeping the rest of the file as it is.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use super::{named, Change, Result, Settings, SettingsError, SETTINGS};

/// Sets `name` to `value` in the settings file `path` (a missing file holds the defaults
/// and is created) and returns the change.
///
/// The value is checked as [`Settings::set`] checks it, and the file as it would be
/// afterwards must load: a refused value, or a problem elsewhere in the file, leaves the
/// file untouched. The other lines and their comments are kept. The file is replaced
/// atomically (a temporary file in the same directory, synced, then renamed over it), so
/// a reader such as `rilld` reloading on SIGHUP sees the old file or the new one, never
/// a mix; writers are serialised by a lock on the directory.
pub fn set_in_file(path: &Path, name: &str, value: &str) -> Result<Change> {
    // An unknown name is refused before anything on disk is touched.
    let i = named(name)?;
    // A link (say to a file kept under configuration management) stays a link.
    let path = resolve_links(path)?;
    let dir = parent(&path);
    fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let _lock = lock(dir)?;

    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
        Err(e) => return Err(io(&path, e)),
    };
    // Problems elsewhere in the file are reported when the edited text is read back; a
    // syntax error must be reported now, as the text cannot be edited.
    let (mut settings, problems) = Settings::read(&text, &path);
    if let Some(p) = problems
        .into_iter()
        .find(|p| matches!(p.error, SettingsError::Parse { .. }))
    {
        return Err(p.error);
    }
    let change = settings.set(name, value)?;

    let new_text = edit(&text, &path, i, &settings)?;
    let written = Settings::parse(&new_text, &path)?;
    debug_assert_eq!(written, settings, "the edited file reads back differently");
    if new_text != text {
        write_atomically(&path, &new_text)?;
    }
    Ok(change)
}

/// `text` with the setting `i` given the value it has in `settings`.
fn edit(text: &str, path: &Path, i: usize, settings: &Settings) -> Result<String> {
    let def = &SETTINGS[i];
    let mut doc: toml_edit::DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| SettingsError::Parse {
                path: path.into(),
                detail: e.message().to_string(),
            })?;
    let value_text = settings.values[i].to_toml();
    let mut value: toml_edit::Value = value_text.parse().map_err(|_| SettingsError::Parse {
        path: path.into(),
        detail: format!("cannot write {} = {value_text}", def.name),
    })?;
    match doc.get_mut(def.name) {
        Some(toml_edit::Item::Value(old)) => {
            // Keeps the spacing and a comment at the end of the line.
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        Some(other) => *other = toml_edit::Item::Value(value),
        None => {
            let mut key = toml_edit::Key::new(def.name);
            let gap = if doc.is_empty() && doc.trailing().as_str() == Some("") {
                ""
            } else {
                "\n"
            };
            key.leaf_decor_mut()
                .set_prefix(format!("{gap}{}", def.file_comment()));
            doc.insert_formatted(&key, toml_edit::Item::Value(value));
        }
    }
    Ok(doc.to_string())
}

/// `path` with every symbolic link along its last component followed (the link's target
/// need not exist yet).
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut path = path.to_path_buf();
    // The kernel's own limit on links followed in one lookup.
    for _ in 0..40 {
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = fs::read_link(&path).map_err(|e| io(&path, e))?;
                path = parent(&path).join(target);
            }
            _ => return Ok(path),
        }
    }
    Err(io(&path, nix::errno::Errno::ELOOP.into()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An exclusive lock on the directory: two `set`s at once would otherwise each write the
/// file read before the other's change, and one change would be lost. The directory, not
/// the file, because the file is replaced.
fn lock(dir: &Path) -> Result<Flock<File>> {
    let f = File::open(dir).map_err(|e| io(dir, e))?;
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, errno)| io(dir, errno.into()))
}

fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = parent(path);
    let file_name = path
        .file_name()
        .map_or_else(|| "settings".into(), |n| n.to_string_lossy().into_owned());
    // Unique while the lock is held; one left by a crash is replaced.
    let tmp = dir.join(format!(".{file_name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Ok(old) = fs::metadata(path) {
            use std::os::unix::fs::MetadataExt;
            // Best effort: only root may give the file to another owner, and a file the
            // caller may replace is theirs to own otherwise. Before the mode, which a
            // change of owner may alter.
            let _ = std::os::unix::fs::fchown(&f, Some(old.uid()), Some(old.gid()));
            f.set_permissions(old.permissions())?;
        }
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    // The rename is durable once the directory is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

fn io(path: &Path, source: std::io::Error) -> SettingsError {
    SettingsError::Io {
        path: path.into(),
        source,
    }
}
