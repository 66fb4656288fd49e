//! The management token file: created once by rilld, read by rillctl, compared by the
//! server ([`same_token`]).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The token file's name in `DataPath`.
pub const TOKEN_FILE_NAME: &str = "mgmt.token";

/// Random bytes in a token; it is written as twice as many hex digits.
const TOKEN_BYTES: usize = 32;

/// The token file of a daemon whose `DataPath` is `data_path`.
pub fn token_path(data_path: &Path) -> PathBuf {
    data_path.join(TOKEN_FILE_NAME)
}

/// The daemon's token: read from `path`, or created there (32 random bytes as 64 hex
/// digits, mode 0600) when the file does not exist. The directory is created if needed.
///
/// An existing file must be a regular file (not a symlink) owned by this process's user,
/// or it is refused: a token someone else could have written is no secret. Permissions
/// wider than 0600 are narrowed. Two rillds racing to create the file agree on one token:
/// the new file is written aside and linked into place, which fails if another got there
/// first, and then that one is read.
pub fn load_or_create_token(path: &Path) -> io::Result<String> {
    for _ in 0..3 {
        match load_own(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        if let Some(token) = create(path)? {
            return Ok(token);
        }
    }
    Err(io::Error::other(format!(
        "{}: the token file keeps appearing and disappearing; is another rilld starting?",
        path.display()
    )))
}

/// The token in `path`, for a client. Errors keep their kind (`NotFound`,
/// `PermissionDenied`) so the caller can say what to do.
pub fn read_token(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    parse(path, &text)
}

/// Reads an existing token file that must belong to us.
fn load_own(path: &Path) -> io::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is a symbolic link; the management token must be a regular file \
                         (remove the link and restart rilld)",
                        path.display()
                    ),
                )
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by uid {me} that rilld runs as; a token another \
                 user could have written is no secret: remove the file and restart rilld",
                path.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(0o600))?;
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    parse(path, &text)
}

/// Writes a new token beside `path` and links it into place. `None` when another process
/// created `path` first.
fn create(path: &Path) -> io::Result<Option<String>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let token = random_hex()?;
    let name = path
        .file_name()
        .map_or_else(|| TOKEN_FILE_NAME.into(), |n| n.to_string_lossy());
    // Unique per process and call, so concurrent creators never share the aside file.
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let aside = dir.join(format!(".{name}.{}.{call}.new", std::process::id()));
    let _ = std::fs::remove_file(&aside);
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&aside)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::hard_link(&aside, path)
    })();
    let _ = std::fs::remove_file(&aside);
    match written {
        Ok(()) => {
            // The link is durable once the directory is.
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(Some(token))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating the management token {}: {e}", path.display()),
        )),
    }
}

fn parse(path: &Path, text: &str) -> io::Result<String> {
    let token = text.trim();
    if token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(token.to_ascii_lowercase())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a management token (expected {} hex digits); remove it and \
                 restart rilld to create a new one",
                path.display(),
                2 * TOKEN_BYTES
            ),
        ))
    }
}

fn random_hex() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| io::Error::new(e.kind(), format!("reading /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` equals `expected`, in time that depends only on `expected`'s length
/// (which is not secret: every token has 64 digits).
pub fn same_token(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, &y) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ y;
    }
    // Keeps the optimiser from turning the loop into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    const TOKEN: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn tokens_are_created_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = token_path(&dir.path().join("data"));
        let t = load_or_create_token(&path).unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_or_create_token(&path).unwrap(), t, "created once");
        assert_eq!(read_token(&path).unwrap(), t);
        let other = load_or_create_token(&dir.path().join("other.token")).unwrap();
        assert_ne!(other, t, "random");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [TOKEN_FILE_NAME], "nothing left aside");

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_token(&path).unwrap(), t);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "narrowed");

        std::fs::write(&path, "not a token\n").unwrap();
        let e = load_or_create_token(&path).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("expected 64 hex digits"), "{e}");
        assert_eq!(
            read_token(&path).unwrap_err().kind(),
            std::io::ErrorKind::InvalidData
        );

        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let e = load_or_create_token(&link).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");

        let e = read_token(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        assert!(e.to_string().contains("missing"), "names the file: {e}");
    }

    #[test]
    fn concurrent_creators_agree_on_one_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = Arc::new(dir.path().join("mgmt.token"));
        let go = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (path, go) = (Arc::clone(&path), Arc::clone(&go));
                std::thread::spawn(move || {
                    go.fetch_add(1, Ordering::SeqCst);
                    while go.load(Ordering::SeqCst) < 8 {
                        std::hint::spin_loop();
                    }
                    load_or_create_token(&path).unwrap()
                })
            })
            .collect();
        let tokens: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]), "{tokens:?}");
    }

    #[test]
    fn token_comparison() {
        assert!(same_token(TOKEN, TOKEN));
        assert!(!same_token("", TOKEN));
        assert!(!same_token(&TOKEN[..63], TOKEN));
        assert!(!same_token(&format!("{TOKEN}0"), TOKEN));
        assert!(!same_token(&TOKEN.replace('f', "e"), TOKEN));
    }
}
