//! Waiting until a replica equals its source: a cheap check polled, then a full
//! comparison bracketed by two metadata snapshots (see the parent module's documentation).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::super::{check_stop, StopFlag};
use super::tree::{self, Snapshot};
use super::Run;

/// How often a tool's status is asked while waiting (rill's `in_sync`: one request to
/// its management API, cheap beside what is measured). The poll sets the resolution of
/// the result, so it is kept well under the times measured.
pub const POLL_STATUS: Duration = Duration::from_millis(10);
/// How often a replica's metadata is walked while waiting (lsyncd, which reports nothing
/// to ask): a walk of thousands of files costs enough to disturb what it measures if
/// repeated more often, and lsyncd's times are tens of seconds.
pub const POLL_WALK: Duration = Duration::from_millis(100);

/// What waiting for equality found.
pub struct Outcome {
    /// Since `t0`, when the replica was equal; `None`: not within the deadline.
    pub at: Option<Duration>,
    /// When it was equal except for directory modes (a known rill gap, see the report),
    /// if that came first.
    pub relaxed_at: Option<Duration>,
    pub mtime_mismatches: usize,
    /// What still differed at the deadline.
    pub diff: String,
}

/// How long to keep waiting for full equality once the replica is equal except for
/// directory modes.
pub const DIR_MODE_GRACE: Duration = Duration::from_secs(10);

/// Polls every `poll` until the replica equals the source (see the module
/// documentation), at most until `deadline`. `cheap` is the tool's cheap check; `mtimes`
/// adds file mtimes to the metadata check that precedes the full comparison. A replica
/// that is equal except for directory modes is noted, and waited for [`DIR_MODE_GRACE`]
/// longer.
///
/// The source is snapshotted at the first poll whose cheap check passes, not before the
/// first poll: the source no longer changes, and a walk of thousands of files taken while
/// the tool catches up would take CPU from it.
#[allow(clippy::too_many_arguments)]
pub fn wait_equal(
    t0: Instant,
    deadline: Instant,
    src: &Path,
    dst: &Path,
    mtimes: bool,
    poll: Duration,
    run: &mut Run,
    stop: &StopFlag,
    mut cheap: impl FnMut() -> Result<bool>,
) -> Result<Outcome> {
    let mut relaxed_at = None;
    let mut deadline = deadline;
    let mut src_snap: Option<Snapshot> = None;
    loop {
        let started = Instant::now();
        let started_wall = tree::now_ns();
        if started > deadline {
            let cheap_now = cheap()?;
            let diff = tree::full_difference(src, dst)?;
            let modes = Snapshot::take(src)?.mode_differences(&Snapshot::take(dst)?);
            return Ok(Outcome {
                at: None,
                relaxed_at,
                mtime_mismatches: 0,
                diff: format!(
                    "the cheap check is {}; {}{}",
                    if cheap_now { "passing" } else { "failing" },
                    diff.map_or("the trees are equal now".into(), |d| format!(
                        "first difference: {d}"
                    )),
                    if modes.is_empty() {
                        String::new()
                    } else {
                        format!("; modes differ on {modes}")
                    }
                ),
            });
        }
        check_stop(stop)?;
        run.polls += 1;
        if cheap()? {
            let src_snap = match &src_snap {
                Some(s) => s,
                None => src_snap.insert(Snapshot::take(src)?),
            };
            let m1 = Snapshot::take(dst)?;
            let at = started.duration_since(t0);
            let strict = src_snap.matches(&m1, mtimes);
            let relaxed = relaxed_at.is_none()
                && !strict
                && src_snap.first_difference(&m1, mtimes, false).is_none();
            // Equal from this poll's start on only if nothing in the replica changed after
            // it began: the walk and the comparison themselves are then not counted.
            let settled = tree::newest_change(dst, &m1)? <= started_wall;
            if (strict || relaxed) && settled {
                run.full_compares += 1;
                if tree::first_content_difference(src, dst, src_snap)?.is_none()
                    && Snapshot::take(dst)? == m1
                {
                    if strict {
                        return Ok(Outcome {
                            at: Some(at),
                            relaxed_at: relaxed_at.or(Some(at)),
                            mtime_mismatches: src_snap.mtime_mismatches(&m1),
                            diff: String::new(),
                        });
                    }
                    relaxed_at = Some(at);
                    deadline = deadline.min(Instant::now() + DIR_MODE_GRACE);
                }
            }
        }
        let next = started + poll;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
}
