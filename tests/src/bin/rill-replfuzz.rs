//! `rill-replfuzz`: the replication fuzzer (see `rill_tests::replfuzz`).
//!
//! ```text
//! rill-replfuzz [--seconds N]                 fresh seeds until N seconds have passed
//! rill-replfuzz --seed S                      one run of the plan drawn from S
//! rill-replfuzz --plan 'seed=S ops=N ...'     one run of exactly this plan
//!               [--ops-file FILE]             ... performing FILE's operations
//!               [--minimize [--budget N]]     ... shrinking them while it still fails
//! ```
//!
//! Every run prints its plan; a failing run prints the command that replays it and keeps
//! its directory (logs, trees, `ops.txt`). Exit status: 0 all passed, 1 a run failed, 2
//! bad arguments. Runs as root (the source loads the capture driver).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use rill_tests::replfuzz::minimize::minimize;
use rill_tests::replfuzz::{parse_ops, run, Ops, Plan, WOp, DEFAULT_OPS, DEFAULT_RATE};

#[derive(Parser)]
#[command(about = "Random replication workloads against two real rilld; the trees must end equal")]
struct Args {
    /// Run fresh seeds for this long (the default mode; 0 = a single run).
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// One run of the plan drawn from this seed.
    #[arg(long, conflicts_with = "plan")]
    seed: Option<u64>,
    /// One run of exactly this plan (as a failing run prints it).
    #[arg(long)]
    plan: Option<String>,
    /// Perform these operations (a run's ops.txt) instead of generating them.
    #[arg(long, requires = "plan")]
    ops_file: Option<PathBuf>,
    /// Shrink the operations of a failing --plan/--ops-file run to a few.
    #[arg(long, requires = "ops_file")]
    minimize: bool,
    /// Runs a minimization may try.
    #[arg(long, default_value_t = 60)]
    budget: usize,
    /// Operations per run, for plans drawn from seeds.
    #[arg(long, default_value_t = DEFAULT_OPS)]
    ops: usize,
    /// Operations per second, for plans drawn from seeds.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    rate: u32,
    /// Where runs make their directories.
    #[arg(long, default_value_os_t = rill_tests::fs::base_dir())]
    dir: PathBuf,
}

/// The hosts' log filter (`RILL_HOST_LOG`, read by `rill_tools::pair`) unless one is set:
/// every operation sent with its sequence, and every operation applied, so a failing
/// run's history can be traced in its hosts' `rilld.out`.
const TRACE: &str =
    "info,rill_engine::net::link::session=debug,rill_engine::replica::apply_thread=debug,rill_engine::source::transmit=debug";

fn main() -> ExitCode {
    let args = Args::parse();
    if std::env::var_os("RILL_HOST_LOG").is_none() {
        std::env::set_var("RILL_HOST_LOG", TRACE);
    }
    let plan = match args.plan.as_deref().map(str::parse::<Plan>) {
        Some(Err(e)) => {
            eprintln!("rill-replfuzz: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(p)) => Some(p),
        None => args
            .seed
            .map(|s| Plan::from_seed(s, args.ops, args.rate.max(1))),
    };
    let recorded = match args.ops_file.as_ref().map(read_ops) {
        Some(Err(e)) => {
            eprintln!("rill-replfuzz: {e}");
            return ExitCode::from(2);
        }
        Some(Ok(ops)) => Some(ops),
        None => None,
    };
    match (plan, recorded) {
        (Some(plan), Some(ops)) if args.minimize => shrink(&plan, ops, &args),
        (Some(plan), ops) => once(&plan, ops.as_deref(), &args),
        (None, _) => fresh_seeds(&args),
    }
}

fn read_ops(path: &PathBuf) -> Result<Vec<WOp>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_ops(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// One run; the replay command if it fails.
fn once(plan: &Plan, ops: Option<&[WOp]>, args: &Args) -> ExitCode {
    println!("run: {plan}");
    let source = ops.map_or(Ops::Generated, Ops::Recorded);
    match run(plan, source, &args.dir) {
        Ok(p) => {
            println!(
                "  passed: {} ops ({} refused by the kernel), equal {:.1} s after the workload began",
                p.ops,
                p.refused,
                p.elapsed.as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(f) => {
            println!("  FAILED: {f}");
            println!("  replay: rill-replfuzz --plan '{plan}'");
            if let Some(d) = f.dir() {
                println!(
                    "  replay these operations: rill-replfuzz --plan '{plan}' --ops-file {}",
                    d.join("ops.txt").display()
                );
                println!("  minimize: the same with --minimize");
            }
            ExitCode::from(1)
        }
    }
}

/// Fresh seeds until the time is up or a run fails.
fn fresh_seeds(args: &Args) -> ExitCode {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let mut runs = 0;
    loop {
        let plan = Plan::from_seed(fresh_seed(), args.ops, args.rate.max(1));
        let code = once(&plan, None, args);
        runs += 1;
        if code != ExitCode::SUCCESS {
            return code;
        }
        if Instant::now() >= until {
            println!("rill-replfuzz: {runs} runs passed");
            return ExitCode::SUCCESS;
        }
    }
}

/// A seed nobody chose: the standard library's per-process random hasher keys.
fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() >> 1
}

fn shrink(plan: &Plan, ops: Vec<WOp>, args: &Args) -> ExitCode {
    println!("minimizing {} operations of: {plan}", ops.len());
    let mut report = |len: usize, r: &Result<(), String>| match r {
        Ok(()) => println!("  {len} ops: passed"),
        Err(why) => println!("  {len} ops: failed ({why})"),
    };
    let best = minimize(plan, ops, &args.dir, args.budget, &mut report);
    let scaled = rill_tests::replfuzz::minimize::scale(plan, best.len());
    let out = args
        .dir
        .join(format!("rill-replfuzz-{}-minimized.txt", plan.seed));
    let text: String = std::iter::once(format!("# {scaled}\n"))
        .chain(best.iter().map(|o| format!("{o}\n")))
        .collect();
    if let Err(e) = std::fs::write(&out, &text) {
        eprintln!("rill-replfuzz: writing {}: {e}", out.display());
        return ExitCode::from(1);
    }
    println!(
        "{} operations still fail; written to {}:\n{text}",
        best.len(),
        out.display()
    );
    ExitCode::SUCCESS
}
