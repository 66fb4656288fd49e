//! The peers rill is compared with: a real rsync daemon on loopback, the rsync client
//! pushing to it, and lsyncd (default.rsync) pushing to the same daemon.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use rill_tools::pair::free_port;

/// The rsync daemon's module name.
pub const MODULE: &str = "bench";

/// Fails with a clear message when `program --version` cannot run.
pub fn check_program(program: &str) -> Result<()> {
    match Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "{program} not found ({e}); rill-bench replication compares rill with rsync and \
             lsyncd: install them (scripts/setup, or apt-get install rsync lsyncd)"
        ),
    }
}

/// The first line of `program --version`, for the report.
pub fn version(program: &str, arg: &str) -> String {
    Command::new(program)
        .arg(arg)
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("").trim().to_string()
        })
        .unwrap_or_default()
}

/// Sends `sig` to a child this benchmark started, by its pid, and waits for it.
fn end_child(child: &mut Child, sig: i32, grace: Duration) {
    // SAFETY: signalling a process this benchmark spawned and has not reaped.
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `rsync --daemon --no-detach` on 127.0.0.1 with one writable module, [`MODULE`], rooted at
/// `root`. Runs as root with `uid = root` so owners are kept, chrooted into the module.
pub struct RsyncDaemon {
    pub port: u16,
    pub root: PathBuf,
    dir: PathBuf,
    child: Child,
}

impl RsyncDaemon {
    pub fn start(dir: &Path, root: &Path) -> Result<RsyncDaemon> {
        std::fs::create_dir_all(dir)?;
        std::fs::create_dir_all(root)?;
        let port = free_port()?;
        let conf = dir.join("rsyncd.conf");
        std::fs::write(
            &conf,
            format!(
                "log file = {log}\nuse chroot = yes\n\n[{MODULE}]\n  path = {root}\n  \
                 read only = no\n  uid = root\n  gid = root\n",
                log = dir.join("rsyncd.log").display(),
                root = root.display(),
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let out = std::fs::File::create(dir.join("rsyncd.out"))?;
        let child = Command::new("rsync")
            .arg("--daemon")
            .arg("--no-detach")
            .arg(format!("--config={}", conf.display()))
            .arg(format!("--port={port}"))
            .arg("--address=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .context("starting rsync --daemon")?;
        let mut d = RsyncDaemon {
            port,
            root: root.to_path_buf(),
            dir: dir.to_path_buf(),
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(d.addr()).is_ok() {
                return Ok(d);
            }
            if let Some(status) = d.child.try_wait()? {
                bail!(
                    "rsync --daemon exited ({status}): {}",
                    std::fs::read_to_string(d.dir.join("rsyncd.out")).unwrap_or_default()
                );
            }
            if Instant::now() > deadline {
                bail!("rsync --daemon did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `rsync://127.0.0.1:PORT/MODULE/REL/` for a directory `rel` below the module root,
    /// reached through `port` (the daemon's, or a relay's).
    pub fn url(&self, port: u16, dir: &Path) -> Result<String> {
        let rel = dir.strip_prefix(&self.root).with_context(|| {
            format!(
                "{} is not below the rsync module root {}",
                dir.display(),
                self.root.display()
            )
        })?;
        Ok(format!(
            "rsync://127.0.0.1:{port}/{MODULE}/{}/",
            rel.display()
        ))
    }
}

impl Drop for RsyncDaemon {
    fn drop(&mut self) {
        end_child(&mut self.child, libc::SIGTERM, Duration::from_secs(5));
    }
}

/// What one `rsync` client run reported.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct RsyncRun {
    pub seconds: f64,
    /// `--stats`: "Total bytes sent" (client to daemon) and "Total bytes received".
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// `rsync -a --delete --stats SRC/ URL`: the client run the benchmark times.
pub fn rsync_push(src: &Path, url: &str) -> Result<RsyncRun> {
    let t0 = Instant::now();
    let out = Command::new("rsync")
        .args(["-a", "--delete", "--stats"])
        .arg(format!("{}/", src.display()))
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("running rsync")?;
    let seconds = t0.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "rsync -a --delete {}/ {url} failed ({}): {}",
            src.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(RsyncRun {
        seconds,
        bytes_sent: stat(&text, "Total bytes sent:").unwrap_or(0),
        bytes_received: stat(&text, "Total bytes received:").unwrap_or(0),
    })
}

/// The number after `label` in rsync's `--stats` (digits only: "1,234,567" -> 1234567).
fn stat(text: &str, label: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.trim_start().starts_with(label))?;
    let rest = line.trim_start().get(label.len()..)?;
    let digits: String = rest
        .split_whitespace()
        .next()?
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Where lsyncd sends its rsync runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum LsyncdTarget {
    /// `target = "rsync://127.0.0.1:PORT/bench/..."`: the same daemon the rsync client uses.
    Daemon,
    /// `target = "/local/dir"`: default.rsync to a local directory (the fallback).
    Local,
}

/// `lsyncd -nodaemon CONFIG` with `sync { default.rsync, source = ..., target = ... }` and
/// nothing else changed but where it logs.
pub struct Lsyncd {
    child: Child,
    pub dir: PathBuf,
}

/// A Lua string literal.
fn lua_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Lsyncd {
    pub fn start(dir: &Path, src: &Path, target: &str) -> Result<Lsyncd> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("lsyncd.conf.lua");
        let src = src.to_str().context("source path is not UTF-8")?;
        let log = dir.join("lsyncd.log");
        let status = dir.join("lsyncd.status");
        std::fs::write(
            &conf,
            format!(
                "settings {{ logfile = {}, statusFile = {} }}\nsync {{ default.rsync, source = {}, target = {} }}\n",
                lua_str(&log.to_string_lossy()),
                lua_str(&status.to_string_lossy()),
                lua_str(src),
                lua_str(target)
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        let out = std::fs::File::create(dir.join("lsyncd.out"))?;
        let child = Command::new("lsyncd")
            .arg("-nodaemon")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting lsyncd")?;
        Ok(Lsyncd {
            child,
            dir: dir.to_path_buf(),
        })
    }

    /// Fails if lsyncd has exited (with its output).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "lsyncd exited ({status}): {}",
                std::fs::read_to_string(self.dir.join("lsyncd.out")).unwrap_or_default()
            );
        }
        Ok(())
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("lsyncd.out")).unwrap_or_default()
    }
}

impl Drop for Lsyncd {
    fn drop(&mut self) {
        end_child(&mut self.child, libc::SIGTERM, Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rsync_stats() {
        let text = "Number of files: 3\nTotal bytes sent: 1,234,567\nTotal bytes received: 89\n";
        assert_eq!(stat(text, "Total bytes sent:"), Some(1_234_567));
        assert_eq!(stat(text, "Total bytes received:"), Some(89));
        assert_eq!(stat(text, "Total file size:"), None);
    }

    #[test]
    fn quotes_lua_strings() {
        assert_eq!(lua_str(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
