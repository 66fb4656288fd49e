//! Exclusive use of the pinned driver (`/sys/fs/bpf/rill`).
//!
//! There is one pinned driver per kernel, so tests that load, configure, drain or unload
//! it must run one at a time. `cargo test` runs the tests of one binary on parallel
//! threads and may run binaries side by side (`cargo nextest`, or two developers' runs),
//! hence two locks: a process-wide mutex for the threads of this binary, and an flock on
//! [`LOCK_FILE`] for other processes. The guard unloads any driver left over from a crashed
//! run when acquired and unloads the driver again when dropped, also when the test panics.
//!
//! Tests that `set` valid settings also hold the guard: `set` applies the new value to a
//! loaded pinned driver, which would disturb a pinned test running concurrently.

use std::fs::File;
use std::process::Output;
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::fs::SettingsFile;
use crate::process::{run_driver, status_json};
use crate::require_kernel_support;

/// The inter-process lock file.
pub const LOCK_FILE: &str = "/tmp/rill-tests-pinned.lock";
/// How long to wait for other pinned tests (each is bounded by about a minute).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(600);

static LOCAL: Mutex<()> = Mutex::new(());

/// Exclusive use of the pinned driver, with a private settings file. See the module docs.
pub struct PinnedGuard {
    settings: SettingsFile,
    /// An empty settings file for the guard's own `unload`s, so cleanup works whatever
    /// the test put into `settings` (e.g. a watched directory it has since removed).
    clean: SettingsFile,
    _flock: Flock<File>,
    _local: MutexGuard<'static, ()>,
}

fn lock_local(deadline: Instant) -> MutexGuard<'static, ()> {
    loop {
        match LOCAL.try_lock() {
            Ok(g) => return g,
            // A test that panicked while holding the guard still unloaded the driver.
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(TryLockError::WouldBlock) => {
                panic!("another test of this binary held the pinned driver for {ACQUIRE_TIMEOUT:?}")
            }
        }
    }
}

fn lock_file(deadline: Instant) -> Flock<File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_FILE)
        .unwrap_or_else(|e| panic!("opening {LOCK_FILE}: {e}"));
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return lock,
            Err((f, nix::errno::Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                file = f;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err((_, e)) => panic!(
                "could not lock {LOCK_FILE} within {ACQUIRE_TIMEOUT:?} (another test process \
                 uses the pinned driver): {e}"
            ),
        }
    }
}

impl PinnedGuard {
    /// Waits for exclusive use of the pinned driver and makes sure it is not loaded.
    pub fn acquire() -> PinnedGuard {
        require_kernel_support();
        let deadline = Instant::now() + ACQUIRE_TIMEOUT;
        let local = lock_local(deadline);
        let flock = lock_file(deadline);
        let guard = PinnedGuard {
            settings: SettingsFile::new(),
            clean: SettingsFile::new(),
            _flock: flock,
            _local: local,
        };
        let out = run_driver(&guard.clean.path(), &["unload"]);
        assert!(
            out.status.success(),
            "unloading a leftover pinned driver failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }

    /// `rill-driver --settings <guard's file> ARGS...`.
    pub fn driver(&self, args: &[&str]) -> Output {
        run_driver(&self.settings.path(), args)
    }

    /// Like [`driver`](Self::driver), panicking with stderr unless it exits 0; stdout.
    pub fn driver_ok(&self, args: &[&str]) -> String {
        let out = self.driver(args);
        assert!(
            out.status.success(),
            "rill-driver {} failed ({}):\nstdout: {}\nstderr: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `set NAME VALUE` through the CLI (saved to the guard's file, applied when loaded).
    pub fn set(&self, name: &str, value: &str) {
        self.driver_ok(&["set", name, value]);
    }

    /// `status --json`.
    pub fn status(&self) -> Value {
        status_json(&self.settings.path())
    }

    /// The path of the guard's settings file.
    pub fn settings_file(&self) -> std::path::PathBuf {
        self.settings.path()
    }
}

impl Drop for PinnedGuard {
    fn drop(&mut self) {
        let out = run_driver(&self.clean.path(), &["unload"]);
        if !out.status.success() {
            let msg = format!(
                "unloading the pinned driver after the test failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}
