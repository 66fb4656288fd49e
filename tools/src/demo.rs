//! The main job on an embedded default: a target and a source `rilld` on this machine,
//! paired by their certificates, one job replicating a demo tree, and live status until
//! the replica equals the source.
//!
//! Everything lives in one temporary directory (settings, state, source tree, replica)
//! removed at the end; the two daemons are this process's children and are stopped with
//! SIGTERM. Only the default settings are used, plus free ports and the temporary paths.

use std::io::Write;
use std::os::unix::fs::{symlink, FileExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rill_engine::mgmt::{Request, Response};

use crate::pair::{in_sync, pair, start_job, Host, Role};
use rill_ctl::render;

/// Runs the demo, printing to `out`; `rilld` is the engine binary to start.
pub fn run(rilld: &Path, out: &mut dyn Write) -> Result<()> {
    let base = tempfile::Builder::new()
        .prefix("rill-demo-")
        .tempdir_in("/var/tmp")
        .context("creating the demo directory")?;
    let (src, dst) = (base.path().join("source"), base.path().join("replica"));
    std::fs::create_dir_all(&src)?;
    writeln!(out, "rill demo in {}", base.path().display())?;
    let mut target = Host::start(rilld, &base.path().join("target-host"), Role::Target, "")?;
    let mut source = Host::start(rilld, &base.path().join("source-host"), Role::Source, "")?;
    writeln!(
        out,
        "target rilld (pid {}) listens on port {}; source rilld (pid {})",
        target.pid().unwrap_or(0),
        target.net_port,
        source.pid().unwrap_or(0)
    )?;
    pair(&source, &target)?;
    writeln!(
        out,
        "paired: the target trusts {}…, the source trusts {}…",
        &source.fingerprint()?[..16],
        &target.fingerprint()?[..16]
    )?;
    // Files that exist before the job starts reach the replica through the mirror.
    existing_tree(&src)?;
    start_job(&source, &target, "demo", &src, &dst, &[])?;
    writeln!(
        out,
        "job demo: {} -> 127.0.0.1:{} {}\n",
        src.display(),
        target.net_port,
        dst.display()
    )?;
    let workload = {
        let src = src.clone();
        std::thread::spawn(move || live_workload(&src))
    };
    let started = Instant::now();
    let mut done_at = None;
    loop {
        std::thread::sleep(Duration::from_millis(500));
        if let Response::Status(report) = source.call(Request::Status { name: None })? {
            writeln!(
                out,
                "--- {:.1} s\n{}",
                started.elapsed().as_secs_f64(),
                render::status(&report)
            )?;
        }
        let finished = workload.is_finished();
        if finished && in_sync(&source, "demo")? && same_tree(&src, &dst)? {
            done_at = Some(started.elapsed());
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            break;
        }
    }
    workload
        .join()
        .map_err(|_| anyhow::anyhow!("the demo workload panicked"))??;
    let result = match done_at {
        Some(t) => {
            writeln!(
                out,
                "\nThe replica equals the source ({} files) {:.1} s after the job started.",
                count_files(&dst),
                t.as_secs_f64()
            )?;
            Ok(())
        }
        None => Err(anyhow::anyhow!(
            "the replica did not converge within 180 s; see {}/*/log/rilld.log",
            base.path().display()
        )),
    };
    source.stop()?;
    target.stop()?;
    if result.is_err() {
        // Keep the evidence: the directory is not removed.
        let _ = base.keep();
    }
    result
}

/// A small tree of every kind of object: directories, files, a sparse file, a symlink,
/// a hard link.
fn existing_tree(root: &Path) -> Result<()> {
    for d in ["docs", "src/lib", "data"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    for i in 0..50 {
        std::fs::write(
            root.join(format!("src/lib/module{i}.rs")),
            format!("// module {i}\npub fn f{i}() -> u32 {{ {i} }}\n").repeat(20),
        )?;
    }
    std::fs::write(root.join("docs/readme.txt"), "rill demo\n".repeat(100))?;
    let sparse = std::fs::File::create(root.join("data/sparse.img"))?;
    sparse.write_all_at(b"start", 0)?;
    sparse.write_all_at(b"end", 64 << 20)?;
    symlink("docs/readme.txt", root.join("README"))?;
    std::fs::hard_link(root.join("docs/readme.txt"), root.join("docs/readme.hard"))?;
    Ok(())
}

/// Changes made while the job replicates: new files, appends, overwrites, renames,
/// removals and attribute changes.
fn live_workload(root: &Path) -> Result<()> {
    let log = root.join("data/app.log");
    for round in 0..20 {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        std::io::Write::write_all(&mut &f, format!("round {round}\n").repeat(200).as_bytes())?;
        std::fs::write(
            root.join(format!("data/report-{round}.csv")),
            "a,b,c\n".repeat(500),
        )?;
        if round % 4 == 3 {
            std::fs::rename(
                root.join(format!("data/report-{}.csv", round - 1)),
                root.join(format!("docs/archived-{round}.csv")),
            )?;
            std::fs::remove_file(root.join(format!("data/report-{}.csv", round - 2)))?;
            std::fs::set_permissions(
                root.join(format!("docs/archived-{round}.csv")),
                std::fs::Permissions::from_mode(0o640),
            )?;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Whether the two trees hold the same names, types, sizes, modes and contents.
fn same_tree(a: &Path, b: &Path) -> Result<bool> {
    let (x, y) = (listing(a)?, listing(b)?);
    Ok(x == y)
}

type Entry = (String, u32, u64, Vec<u8>);

fn listing(root: &Path) -> Result<Vec<Entry>> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        for e in rd {
            let p = e?.path();
            let m = std::fs::symlink_metadata(&p)?;
            let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
            let content = if m.is_file() {
                std::fs::read(&p)?
            } else if m.file_type().is_symlink() {
                std::fs::read_link(&p)?
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                stack.push(p.clone());
                Vec::new()
            };
            out.push((rel, m.mode(), m.len(), content));
        }
    }
    out.sort();
    Ok(out)
}

fn count_files(root: &Path) -> usize {
    listing(root).map_or(0, |l| l.len())
}

/// The engine binary next to the running one (`cargo build` puts them together).
pub fn rilld_beside_me() -> Result<std::path::PathBuf> {
    let me = std::env::current_exe()?;
    let p = me.with_file_name("rilld");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p rill-engine`",
            p.display()
        );
    }
    Ok(p)
}
