//! `rill-bench`: rill's benchmarks. A thin shell over `rill_bench`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rill_bench::replication::{self, Scenario, Tool};
use rill_bench::{capture, drain, report, workloads::TreeSpec};

#[derive(Parser)]
#[command(name = "rill-bench", version, about = "rill's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The engine's source queue: in-memory throughput, spill vs dd, memory under a
    /// backlog, recovery time; each beside a baseline in the same run.
    Engine {
        /// Directory on the file system to measure (a temporary directory is made in it).
        #[arg(long, default_value = "/var/tmp")]
        dir: std::path::PathBuf,
        /// Operations for the in-memory measurement.
        #[arg(long, default_value_t = 200_000)]
        ops: u64,
        /// Megabytes spilled (and recovered).
        #[arg(long, default_value_t = 512)]
        spill_mb: u64,
        /// QMemoryBufferMax for the backlog measurement (the backlog is 4x this).
        #[arg(long, default_value_t = 64)]
        memory_mb: u64,
    },
    /// What write-through costs the engine's disk queue: O_DSYNC vs fdatasync appends,
    /// beside buffered appends and raw preallocated writes, alternated, in one run.
    DiskQueue {
        /// Directory on the file system to measure (a temporary directory is made in it).
        #[arg(long, default_value = "/var/tmp")]
        dir: std::path::PathBuf,
        /// Appends per round and variant.
        #[arg(long, default_value_t = 2000)]
        appends: u64,
        /// Alternated rounds.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
    },
    /// Capture overhead and drain rate: workloads with no program attached vs. programs that
    /// return at once on the capture's attach points (the floor) vs. the pinned driver
    /// loaded and drained by a separate reader, alternated, in one run. Needs root and fio.
    Capture(CaptureArgs),
    /// Time until the replica equals the source, rill vs rsync (a daemon on loopback) vs
    /// lsyncd (default.rsync), after (a) writing a 1 GiB file, (b) extracting a source
    /// tree, (c) 10,000 random 4 KiB overwrites in a 1 GiB file; bytes on the wire in (c);
    /// rill's ConRPL p50/p99 under 5,000 writes/s. Needs root, rsync and lsyncd
    /// (scripts/setup), and the rilld binary in the same directory as rill-bench (build both
    /// with `cargo build --release -p rill-engine -p rill-bench`).
    Replication(ReplicationArgs),
    /// What a remirror after a crash of the source sends of a large file with some 4 KiB
    /// pages overwritten, and how long until the replica is equal: rill's difference
    /// mirror vs `rsync -a` to a daemon on loopback, bytes counted by relays. Needs root,
    /// rsync and rilld beside rill-bench.
    Difference {
        /// Directory in which the temporary directory (hosts, files) is made.
        #[arg(long, default_value = "/var/tmp")]
        dir: PathBuf,
        /// The file's size.
        #[arg(long, default_value_t = 1024)]
        size_mib: u64,
        /// Pages overwritten in each round, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [10u64, 1_000, 100_000])]
        changes: Vec<u64>,
        /// The rilld binary [default: `rilld` in the directory of this rill-bench executable].
        #[arg(long)]
        rilld: Option<PathBuf>,
    },
    /// (internal) The ring reader that `capture` starts as a child process.
    #[command(hide = true)]
    Drain,
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// pwrite calls per repetition of workload (a) [default: 1000000; 50000 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    writes: Option<u64>,
    /// 4 KiB stores through a shared mapping per repetition of workload (c), msynced after
    /// each pass over 64 MiB [default: 131072; 4096 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    mapped_writes: Option<u64>,
    /// 4 KiB io_uring writes (fio) per repetition of workload (d) [default: 250000; 20000
    /// with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    uring_writes: Option<u64>,
    /// Repetitions of each variant (baseline, floor, loaded) of each workload [default: 7; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    reps: Option<u32>,
    /// Source tree archived for workload (b) [default: ~/.cargo/registry/src].
    #[arg(long)]
    tree: Option<PathBuf>,
    /// Most regular files taken from the tree [default: 20000; 2000 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tree_files: Option<u64>,
    /// Most megabytes (10^6 bytes) of file data taken from the tree [default: 150; 20 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tree_mb: Option<u64>,
    /// The driver's RingSizeMB for the loaded variant [default: the driver's default, 32].
    #[arg(long)]
    ring_mb: Option<u32>,
    /// The driver's InlineDataMax (bytes) [default: the driver's default].
    #[arg(long)]
    inline_max: Option<u32>,
    /// Small smoke run: 50k writes, 1 repetition, small tree, short (c) and (d).
    #[arg(long)]
    quick: bool,
    /// Unload a pinned driver that is loaded at start (it is not reloaded afterwards).
    #[arg(long)]
    force: bool,
    /// Delete each extracted tree right after its repetition (default: move it aside and
    /// delete all at the end, because ext4 makes the next extraction scan recently deleted
    /// inodes).
    #[arg(long)]
    delete_between: bool,
    /// Also write the raw numbers, as JSON, to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ReplicationArgs {
    /// Repetitions of every tool in every scenario, the tools' order rotated [default: 3; 1 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    reps: Option<u32>,
    /// Size of the file of (a) and (c), MiB [default: 1024; 64 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    file_mb: Option<u64>,
    /// Random 4 KiB overwrites in (c) [default: 10000; 1000 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    overwrites: Option<u64>,
    /// Source tree archived for (b) [default: ~/.cargo/registry/src].
    #[arg(long)]
    tree: Option<PathBuf>,
    /// Most regular files taken from the tree [default: 10000; 1000 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    tree_files: Option<u64>,
    /// Most megabytes (10^6 bytes) of file data taken from the tree [default: 100; 10 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    tree_mb: Option<u64>,
    /// Scenarios to run [default: all].
    #[arg(long, value_delimiter = ',', value_enum)]
    only: Vec<ScenarioArg>,
    /// Tools to run [default: all].
    #[arg(long, value_delimiter = ',', value_enum)]
    tools: Vec<ToolArg>,
    /// Seconds of the paced writer for rill's ConRPL; 0 skips it [default: 20; 5 with --quick].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
    lag_seconds: Option<u64>,
    /// Writes per second of the paced writer.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    lag_rate: u64,
    /// Longest wait, in seconds, for a replica to equal its source, per run.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Directory in which the temporary directory (file system images, rilld hosts) is made.
    #[arg(long, default_value = "/var/tmp")]
    dir: PathBuf,
    /// The rilld binary [default: `rilld` in the directory of this rill-bench executable].
    #[arg(long)]
    rilld: Option<PathBuf>,
    /// Seed of the pseudo-random data and offsets.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Copy the rilld hosts' logs, the rsync daemon's and lsyncd's to this directory at the end.
    #[arg(long, value_name = "DIR")]
    keep_logs: Option<PathBuf>,
    /// Small smoke run: 64 MiB file, 1,000 overwrites, 1,000-file tree, 5 s of lag, 1 repetition.
    #[arg(long)]
    quick: bool,
    /// Also write the raw numbers, as JSON, to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ScenarioArg {
    A,
    B,
    C,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ToolArg {
    Rill,
    Rsync,
    Lsyncd,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Capture(args) => run_capture(args),
        Command::Replication(args) => run_replication(args),
        Command::Drain => drain::run_child(),
        Command::Engine {
            dir,
            ops,
            spill_mb,
            memory_mb,
        } => rill_bench::engine::run(&dir, ops, spill_mb, memory_mb).map(|t| print!("{t}")),
        Command::Difference {
            dir,
            size_mib,
            changes,
            rilld,
        } => rilld_or_beside(rilld).and_then(|rilld| {
            rill_bench::difference::run(&rilld, &dir, size_mib, &changes).map(|t| print!("{t}"))
        }),
        Command::DiskQueue {
            dir,
            appends,
            rounds,
        } => rill_bench::journal::run(&dir, appends, rounds).map(|table| print!("{table}")),
    };
    if let Err(e) = result {
        eprintln!("rill-bench: {e:#}");
        std::process::exit(1);
    }
}

/// Fails early when the directory `--json` would write into does not exist.
fn check_json_dir(json: Option<&PathBuf>) -> Result<()> {
    if let Some(json) = json {
        let dir = match json.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            bail!(
                "--json {}: directory {} does not exist",
                json.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// A flag set by SIGINT/SIGTERM, so that long loops stop and every guard cleans up.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    Ok(stop)
}

/// The `--rilld` given, or `rilld` in the directory of this executable.
fn rilld_or_beside(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let exe = std::env::current_exe().context("locating the rill-bench executable")?;
    Ok(exe
        .parent()
        .context("the rill-bench executable has no directory")?
        .join("rilld"))
}

fn run_replication(a: ReplicationArgs) -> Result<()> {
    check_json_dir(a.json.as_ref())?;
    let rilld = rilld_or_beside(a.rilld)?;
    let (reps, file_mb, overwrites, files, mb, lag) = if a.quick {
        (1, 64, 1_000, 1_000, 10, 5)
    } else {
        (3, 1024, 10_000, 10_000, 100, 20)
    };
    let scenarios = chosen(&a.only, Scenario::ALL, |s| match s {
        ScenarioArg::A => Scenario::BigFile,
        ScenarioArg::B => Scenario::Tree,
        ScenarioArg::C => Scenario::Overwrites,
    });
    let tools = chosen(&a.tools, Tool::ALL, |t| match t {
        ToolArg::Rill => Tool::Rill,
        ToolArg::Rsync => Tool::Rsync,
        ToolArg::Lsyncd => Tool::Lsyncd,
    });
    let cfg = replication::Config {
        rilld,
        dir: a.dir,
        reps: a.reps.unwrap_or(reps),
        file_bytes: a.file_mb.unwrap_or(file_mb) << 20,
        overwrites: a.overwrites.unwrap_or(overwrites),
        tree: TreeSpec {
            root: a.tree.unwrap_or_else(TreeSpec::default_root),
            max_files: a.tree_files.unwrap_or(files),
            max_bytes: a.tree_mb.unwrap_or(mb) * 1_000_000,
        },
        scenarios,
        tools,
        lag: Duration::from_secs(a.lag_seconds.unwrap_or(lag)),
        lag_rate: a.lag_rate,
        timeout: Duration::from_secs(a.timeout),
        seed: a.seed,
        keep_logs: a.keep_logs,
    };
    let stop = stop_flag()?;
    let result = replication::run(&cfg, &stop)?;
    print!("{}", replication::report::markdown(&result));
    if let Some(path) = &a.json {
        replication::report::write_json(&result, path)?;
        eprintln!("rill-bench: raw numbers written to {}", path.display());
    }
    Ok(())
}

fn run_capture(a: CaptureArgs) -> Result<()> {
    check_json_dir(a.json.as_ref())?;
    let stop = stop_flag()?;
    let (writes, mapped, uring, reps, files, mb) = if a.quick {
        (50_000, 4_096, 20_000, 1, 2_000, 20)
    } else {
        (1_000_000, 131_072, 250_000, 7, 20_000, 150)
    };
    let cfg = capture::Config {
        writes: a.writes.unwrap_or(writes),
        mapped_writes: a.mapped_writes.unwrap_or(mapped),
        uring_writes: a.uring_writes.unwrap_or(uring),
        reps: a.reps.unwrap_or(reps),
        tree: TreeSpec {
            root: a.tree.unwrap_or_else(TreeSpec::default_root),
            max_files: a.tree_files.unwrap_or(files),
            max_bytes: a.tree_mb.unwrap_or(mb) * 1_000_000,
        },
        ring_mb: a.ring_mb,
        inline_max: a.inline_max,
        force: a.force,
        settle: Duration::from_millis(200),
        exe: std::env::current_exe().context("locating the rill-bench executable")?,
        delete_between: a.delete_between,
    };
    let result = capture::run(&cfg, &stop)?;
    print!("{}", report::markdown(&result));
    if let Some(path) = &a.json {
        report::write_json(&result, path)?;
        eprintln!("rill-bench: raw numbers written to {}", path.display());
    }
    Ok(())
}

/// The values named on the command line, each once and in order, or all of them.
fn chosen<A, T: Copy + PartialEq>(
    args: &[A],
    all: impl AsRef<[T]>,
    of: impl Fn(&A) -> T,
) -> Vec<T> {
    if args.is_empty() {
        return all.as_ref().to_vec();
    }
    let mut v = Vec::new();
    for t in args.iter().map(of) {
        if !v.contains(&t) {
            v.push(t);
        }
    }
    v
}
