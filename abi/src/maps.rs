//! Keys and values of the maps the Linux driver pins under `/sys/fs/bpf/rill`.
//!
//! The eBPF programs read [`DriverConfig`] on every operation and write [`Stat`] counters
//! and [`DirtyKey`] entries; `rill-driver` reads and writes them from userspace. Both sides
//! use these definitions, so a field added here is seen by both at once.

/// Settings the eBPF programs read. Index 0 of the `RILL_CONFIG` array map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Writes up to this many bytes carry their data inline; larger ones are range-only.
    pub inline_max: u32,
    /// Ring fill (percent of its size) at which writes become range-only.
    pub throttle_start_pct: u32,
    /// Ring fill (percent of its size) at which only dirty marks are kept.
    pub stop_pct: u32,
    /// Non-zero: only file systems in `RILL_WATCHED_DEVS` are captured.
    pub filter_devs: u32,
    /// Force a consumer wakeup every this many records (others are submitted without one).
    pub wakeup_every: u32,
    /// Non-zero: capture is paused (set while the driver is being reconfigured).
    pub paused: u32,
}

impl DriverConfig {
    /// The largest inline-data limit the programs support (their scratch buffer).
    pub const INLINE_MAX_LIMIT: u32 = 64 * 1024;
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            inline_max: Self::INLINE_MAX_LIMIT,
            throttle_start_pct: 50,
            stop_pct: 90,
            filter_devs: 0,
            wakeup_every: 64,
            paused: 0,
        }
    }
}

/// Statistics categories: drops and emissions are counted per category.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    /// Writes.
    Data = 0,
    /// Create, truncate, fallocate.
    Size = 1,
    /// Unlink, rmdir, mkdir, mknod, rename, link, symlink.
    Namespace = 2,
    /// chmod, chown, utimes.
    Attr = 3,
    /// setxattr, removexattr.
    Xattr = 4,
    /// Records the driver synthesizes (dirty, overflow).
    Meta = 5,
}

impl Category {
    pub const COUNT: usize = 6;
    pub const ALL: [Category; Self::COUNT] = [
        Category::Data,
        Category::Size,
        Category::Namespace,
        Category::Attr,
        Category::Xattr,
        Category::Meta,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Category::Data => "data",
            Category::Size => "size",
            Category::Namespace => "namespace",
            Category::Attr => "attr",
            Category::Xattr => "xattr",
            Category::Meta => "meta",
        }
    }
}

/// Index into the per-CPU `RILL_STATS` array. Per-category counters occupy
/// `base + category` for each `*_BASE` index.
pub struct Stat;

impl Stat {
    /// Records submitted to the ring, per category.
    pub const EMITTED_BASE: u32 = 0;
    /// Records lost because the ring had no room, per category (their files are dirty).
    pub const DROPPED_BASE: u32 = 8;
    /// Operations kept only as dirty marks because the ring was at the stop limit.
    pub const STOPPED_BASE: u32 = 16;
    /// Bytes submitted to the ring.
    pub const BYTES: u32 = 24;
    /// Writes recorded range-only because they exceeded `inline_max`.
    pub const RANGE_ONLY: u32 = 25;
    /// Writes recorded range-only because the ring was above `throttle_start_pct`.
    pub const THROTTLED: u32 = 26;
    /// Dirty marks that did not fit the dirty-file map (forces a full rescan).
    pub const DIRTY_MAP_FULL: u32 = 27;
    /// Operations skipped because the caller's process is excluded.
    pub const EXCLUDED: u32 = 28;
    /// Operations skipped because their file system is not watched.
    pub const UNWATCHED: u32 = 29;
    /// Per-CPU count of submissions, used to pace consumer wakeups (not a statistic).
    pub const WAKE_COUNTER: u32 = 30;
    /// Dirty marks made: every dropped or stopped operation, and every other record of a
    /// file whose operations were not all sent. Raised once the mark and its counts are
    /// in place, so a reader that sees it unchanged has nothing to collect and skips
    /// reading the other counters and listing the dirty-file map (which walks every bucket
    /// of the map, empty or not).
    pub const DIRTY_MARKS: u32 = 31;
    /// Number of slots in the array.
    pub const COUNT: u32 = 32;
}

/// What the driver remembers of an open file whose path it has sent (`RILL_PATHS`,
/// keyed by the `struct file` address, which is also the record's path cookie).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathSeen {
    /// The dentry the path was walked from: a reused `struct file` has another.
    pub dentry: u64,
    /// The rename generation (`RILL_GEN`) when it was sent.
    pub generation: u64,
}

/// A file (or, for name operations, a directory) whose operations were not all recorded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DirtyKey {
    /// Kernel device number of the file system (`s_dev`).
    pub dev: u64,
    pub ino: u64,
}

/// Why and when a file was marked dirty.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirtyValue {
    /// One of the `DIRTY_*` reasons of [`crate::record`].
    pub reason: u64,
    /// CLOCK_MONOTONIC time of the first lost operation.
    pub first_ns: u64,
    /// Number of operations lost on this file.
    pub count: u64,
}

/// Converts a kernel device number (`s_dev`, major in the top 12 bits of 32) to the
/// userspace `st_dev` encoding, so userspace can match `stat()` results.
pub const fn kernel_dev_to_user(kdev: u64) -> u64 {
    let major = (kdev >> 20) & 0xfff;
    let minor = kdev & 0xfffff;
    ((major & 0xfffff000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffffff00) << 12)
        | (minor & 0xff)
}

/// The inverse of [`kernel_dev_to_user`].
pub const fn user_dev_to_kernel(udev: u64) -> u64 {
    let major = ((udev >> 32) & 0xfffff000) | ((udev >> 8) & 0xfff);
    let minor = ((udev >> 12) & 0xffffff00) | (udev & 0xff);
    (major << 20) | minor
}
