//! Replays of plans the replication fuzzer (`rill-replfuzz`) failed on, each against two
//! real `rilld` processes. A plan names its seed, so the same operations are generated
//! again; timing (the mirror racing the workload, a host killed mid-stream) is part of
//! what made each fail, so a replay brings a failure back often, not every time.
//!
//! They are not part of the gating run (`#[ignore]`, run them with `cargo test -p
//! rill-tests --test replication_fuzz -- --ignored`): a replay repeats a plan's
//! operations, not its timing, so it is a developer's probe for the class of failure it
//! found, while `scripts/test` runs the fuzzer itself on fresh seeds (README, "The
//! replication fuzzer": status and open findings). Every cause they found and that is
//! fixed has a deterministic test of its own (engine unit tests, listed with the
//! findings).

use rill_tests::fs::base_dir;
use rill_tests::replfuzz::{run, Ops, Plan};
use rill_tests::require_kernel_support;

fn replay(plan: &str) {
    require_kernel_support();
    // The hosts log every operation sent and applied, so a failure can be traced.
    if std::env::var_os("RILL_HOST_LOG").is_none() {
        std::env::set_var(
            "RILL_HOST_LOG",
            "info,rill_engine::net::link::session=debug,rill_engine::replica::apply_thread=debug",
        );
    }
    let plan: Plan = plan.parse().expect("a valid plan");
    if let Err(f) = run(&plan, Ops::Generated, &base_dir()) {
        panic!("{plan}\n{f}");
    }
}

/// The job started while the workload ran (its mirror racing directory moves and
/// exchanges), the target killed soon after, then the link silent for 6 s. It found, in
/// turn: a FIFO made under a name the source then read (or the target wrote) stopping the
/// job for good; directories the source had moved away staying on the replica (a removal
/// of a name holding a non-empty directory refused, again at every remirror; remirrors of
/// names beneath directories the replica lacked failing for good); an exchange of two
/// directories captured while the mirror walked one of them, leaving the other's files on
/// the replica; and a write through a symlink the replica still had, into another file.
#[test]
#[ignore = "timing-dependent replay of open fuzzer findings; see the module doc"]
fn a_mirror_racing_directory_exchanges_with_the_target_killed_and_the_link_silent() {
    replay(
        "seed=473844087003532326 ops=4000 rate=400 prefill=5 start=during:1884 \
         events=kill-target@2137,cut-silent:5852@2224",
    );
}

/// The case the fuzzer was written for: a job mirrored first, then 4,000 operations of
/// every kind at 400 a second (exchanges between files in different directories and
/// moves of whole directories among them), nothing going wrong meanwhile. Open: a file
/// missing its last bytes on the replica after a write through a symlink and moves of
/// its hard-linked names (one run in three).
#[test]
#[ignore = "timing-dependent replay of open fuzzer findings; see the module doc"]
fn a_live_random_workload_with_exchanges_and_directory_moves() {
    replay("seed=20261207 ops=4000 rate=400 prefill=300 start=before events=none");
}
