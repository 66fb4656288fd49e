//! Temporary directories, settings files and tmpfs mounts, all removed on drop.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where test directories go: `/tmp`, unless it is a tmpfs (whose user-xattr support
/// depends on the kernel), then `/var/tmp`.
pub fn base_dir() -> PathBuf {
    let tmp = Path::new("/tmp");
    match nix::sys::statfs::statfs(tmp) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC => "/var/tmp".into(),
        _ => tmp.into(),
    }
}

/// A fresh, canonical directory under [`base_dir`], removed with its contents on drop;
/// kept when `RILL_KEEP_DIRS` is set, so the hosts' logs and trees of a failing test can be
/// read after it.
pub struct TestDir {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl TestDir {
    pub fn new(tag: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rill-{tag}-"))
            .tempdir_in(base_dir())
            .expect("create a test directory");
        let mut dir = dir;
        if std::env::var_os("RILL_KEEP_DIRS").is_some() {
            dir.disable_cleanup(true);
        }
        let path = dir.path().canonicalize().expect("canonicalize test dir");
        TestDir { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// A new subdirectory (created by the test process itself, before any capture).
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::create_dir(&p).expect("create subdir");
        p
    }
}

/// A driver settings file in a temporary directory, written as TOML with the settings'
/// own names. Tests never touch `/etc/rill/driver.toml`.
pub struct SettingsFile {
    dir: tempfile::TempDir,
    entries: Vec<(String, Value)>,
}

impl Default for SettingsFile {
    fn default() -> Self {
        Self::new()
    }
}

impl SettingsFile {
    /// An empty settings file (every setting at its default).
    pub fn new() -> SettingsFile {
        let dir = tempfile::Builder::new()
            .prefix("rill-settings-")
            .tempdir()
            .expect("settings dir");
        let s = SettingsFile {
            dir,
            entries: Vec::new(),
        };
        s.write();
        s
    }

    /// Sets a setting (a number, a string or an array) and rewrites the file.
    pub fn with(mut self, name: &str, value: Value) -> SettingsFile {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: Value) {
        self.entries.retain(|(n, _)| n != name);
        self.entries.push((name.to_string(), value));
        self.write();
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("driver.toml")
    }

    /// The file's current text.
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap_or_default()
    }

    fn write(&self) {
        // JSON scalars and arrays of scalars are valid TOML values.
        let text: String = self
            .entries
            .iter()
            .map(|(n, v)| format!("{n} = {v}\n"))
            .collect();
        std::fs::write(self.path(), text).expect("write settings file");
    }
}

/// A small tmpfs mounted on a fresh directory; unmounted (lazily, so a leftover open file
/// cannot keep it) and removed on drop.
pub struct Tmpfs {
    dir: TestDir,
}

impl Tmpfs {
    pub fn mount(tag: &str) -> Tmpfs {
        let dir = TestDir::new(tag);
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=16m,mode=0755"),
        )
        .unwrap_or_else(|e| panic!("mount -t tmpfs on {}: {e}", dir.path().display()));
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}

/// A file system in a sparse image file, loop-mounted on a fresh directory; unmounted
/// (lazily; the loop device goes with the last reference) and its image removed on drop.
/// An XFS with reflinks (`mkfs.xfs -m reflink=1`, from `xfsprogs`, which `scripts/setup`
/// installs), or an ext4 a test has to itself (whose inode numbers no other test takes).
pub struct LoopFs {
    dir: TestDir,
    _image: TestDir,
}

/// The XFS with reflinks the tests of reflink calls use.
pub type Xfs = LoopFs;

impl LoopFs {
    /// An XFS with reflinks.
    pub fn mount(tag: &str) -> LoopFs {
        // 300 MiB: the smallest XFS current mkfs.xfs makes; sparse, so it costs little.
        Self::make(tag, 300 << 20, &["mkfs.xfs", "-q", "-m", "reflink=1"])
    }

    /// A small ext4.
    pub fn ext4(tag: &str) -> LoopFs {
        Self::make(tag, 64 << 20, &["mkfs.ext4", "-q", "-F"])
    }

    fn make(tag: &str, bytes: u64, mkfs: &[&str]) -> LoopFs {
        let image = TestDir::new(&format!("{tag}-image"));
        let file = image.join("fs.img");
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(bytes))
            .expect("create the file system image");
        let run = crate::beneath::run;
        run(std::process::Command::new(mkfs[0])
            .args(&mkfs[1..])
            .arg(&file));
        let dir = TestDir::new(tag);
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&file)
            .arg(dir.path()));
        LoopFs { dir, _image: image }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.dir.join(p)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.dir.path().display());
        }
    }
}
