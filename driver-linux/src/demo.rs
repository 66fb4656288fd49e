//! `rill-driver demo`: the driver's main job on an embedded default.
//!
//! Loads the driver (pinned, as an administrator would), attaches to its ring, and prints
//! every operation a demo workload performs in a fresh directory, then shows the driver's
//! status and unloads it. The workload runs in a child process because a capture never
//! records its own process. If a driver is already loaded (an engine may be draining it),
//! the demo leaves it alone and uses a private instance instead.

use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::capture::{Capture, Source};
use crate::settings::{CaptureMode, DriverSettings};
use crate::{loader, status, DriverError, Result};

/// Runs the demo; `settings_file` is a scratch file for the demo's own settings.
pub fn run(out: &mut impl Write) -> Result<()> {
    loader::require_root()?;
    let dir = std::env::temp_dir().join(format!("rill-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| DriverError::io(&dir, e))?;
    let result = run_in(&dir, out);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn run_in(dir: &Path, out: &mut impl Write) -> Result<()> {
    let settings = DriverSettings {
        watched_paths: vec![dir.to_path_buf()],
        ..DriverSettings::default()
    };
    let we_load = !loader::is_loaded();
    let source = if we_load {
        let inst = loader::load(&settings, true)?;
        drop(inst); // Pinned: it keeps capturing without this process.
        Source::Pinned
    } else {
        Source::Private
    };
    let _ = writeln!(
        out,
        "== rill capture driver loaded{}; watching {}",
        if we_load {
            " and pinned"
        } else {
            " (private instance)"
        },
        dir.display()
    );
    let result = capture_workload(dir, source, &settings, out);
    if we_load {
        if let Ok(v) = status::status(&settings) {
            let _ = writeln!(out, "== driver status\n{}", status::render(&v));
        }
        loader::unload()?;
        let _ = writeln!(out, "== driver unloaded");
    }
    result
}

fn capture_workload(
    dir: &Path,
    source: Source,
    settings: &DriverSettings,
    out: &mut impl Write,
) -> Result<()> {
    let mut session = Capture::start(&[dir.to_path_buf()], source, CaptureMode::Ebpf, settings)?;
    let exe = std::env::current_exe().map_err(|e| DriverError::io("current executable", e))?;
    let mut child = Command::new(exe)
        .arg("demo-workload")
        .arg(dir)
        .spawn()
        .map_err(|e| DriverError::io("demo workload", e))?;
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        session.poll(Duration::from_millis(50), &mut events)?;
        for ev in events.drain(..) {
            let _ = writeln!(out, "{}", ev.to_text());
        }
        if child
            .try_wait()
            .map_err(|e| DriverError::io("demo workload", e))?
            .is_some()
            || Instant::now() > deadline
        {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    session.flush(&mut events)?;
    for ev in events.drain(..) {
        let _ = writeln!(out, "{}", ev.to_text());
    }
    Ok(())
}

/// The demo workload: one operation of each kind, paced so a person can follow it.
pub fn workload(dir: &Path) -> std::io::Result<()> {
    let pause = || std::thread::sleep(Duration::from_millis(150));
    let p = |name: &str| -> PathBuf { dir.join(name) };
    std::fs::create_dir(p("docs"))?;
    pause();
    std::fs::write(p("docs/report.txt"), b"quarterly numbers\n")?;
    pause();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(p("docs/report.txt"))?;
    f.write_all(b"appended line\n")?;
    drop(f);
    pause();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o640)
        .open(p("big.bin"))?
        .write_all(&vec![7u8; 1 << 20])?;
    pause();
    std::fs::rename(p("docs/report.txt"), p("docs/report-final.txt"))?;
    pause();
    std::fs::hard_link(p("docs/report-final.txt"), p("report-link.txt"))?;
    symlink("docs/report-final.txt", p("latest"))?;
    pause();
    std::fs::set_permissions(
        p("docs/report-final.txt"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    set_xattr(&p("docs/report-final.txt"), "user.reviewed", b"yes")?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(p("big.bin"))?
        .set_len(4096)?;
    pause();
    std::fs::remove_file(p("latest"))?;
    std::fs::remove_file(p("big.bin"))?;
    std::fs::create_dir(p("tmp"))?;
    std::fs::remove_dir(p("tmp"))?;
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |b: &[u8]| {
        std::ffi::CString::new(b)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (path, name) = (c(path.as_os_str().as_bytes())?, c(name.as_bytes())?);
    // SAFETY: NUL-terminated strings and a buffer of the given length, all live for the call.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
