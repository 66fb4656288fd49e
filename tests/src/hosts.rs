//! Two real `rilld serve` processes on loopback that trust each other, with a source
//! directory and a replica path of their own: what the end-to-end replication tests start
//! from.

use std::path::PathBuf;

use rill_tools::pair::{pair, Host, Role};

use crate::fs::TestDir;

/// A source host and a target host, paired, and where a job replicates from and to.
pub struct Hosts {
    pub source: Host,
    pub target: Host,
    /// The job's source (made) and target path (not made: the target makes it).
    pub src: PathBuf,
    pub dst: PathBuf,
    /// The hosts' and the data's directories, removed when dropped.
    pub dirs: Vec<TestDir>,
}

/// Starts the two hosts with their own settings (`*_extra`: TOML lines) and pairs them.
/// Fails the test unless the kernel supports capture (see
/// [`crate::require_kernel_support`]).
pub fn paired_hosts(tag: &str, source_extra: &str, target_extra: &str) -> Hosts {
    crate::require_kernel_support();
    let (s, t, data) = (
        TestDir::new(&format!("{tag}-shost")),
        TestDir::new(&format!("{tag}-thost")),
        TestDir::new(&format!("{tag}-data")),
    );
    let rilld = crate::rilld_bin();
    let source = Host::start(rilld, s.path(), Role::Source, source_extra).expect("source");
    let target = Host::start(rilld, t.path(), Role::Target, target_extra).expect("target");
    pair(&source, &target).expect("pairing");
    let (src, dst) = (data.subdir("src"), data.join("replica"));
    Hosts {
        source,
        target,
        src,
        dst,
        dirs: vec![s, t, data],
    }
}
