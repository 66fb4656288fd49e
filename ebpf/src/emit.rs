//! Building a record in per-CPU scratch memory and submitting it to the ring.
//!
//! `bpf_ringbuf_reserve` needs a size known at verification time, but records are variable
//! (paths, inline data), so a record is assembled in a scratch map value and copied out
//! with `bpf_ringbuf_output`. Every write into scratch is at an offset masked with
//! `OFF_MASK` and a size of at most `MAX_CHUNK`; the scratch value is larger than their sum,
//! which is what lets the verifier prove each access in bounds.
//!
//! Submission follows the driver's throttling: below `throttle_start_pct` of ring fill,
//! records are complete; above it writes are range-only; at `stop_pct` nothing is submitted
//! and the file is marked in the dirty-file map instead. A record the ring has no room for
//! is counted as dropped and its file is marked dirty too: nothing is lost silently.

use aya_ebpf::{
    bindings::{
        BPF_NOEXIST, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE,
    },
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns,
        generated::{
            bpf_probe_read_kernel, bpf_probe_read_kernel_str, bpf_probe_read_user,
            bpf_probe_read_user_str,
        },
    },
};
use rill_abi::{
    maps::Category,
    record::{DIRTY_RING_FULL, DIRTY_STOP_LIMIT, FLAG_PATH_TRUNCATED},
    DirtyKey, DirtyValue, DriverConfig, Kind, PathSeen, RecordHeader, Section, Stat, ABI_VERSION,
    HEADER_SIZE, SECTION_COUNT,
};

use crate::kernel::{kread, KPath, Off};
use crate::maps::{
    RILL_CONFIG, RILL_DIRTY, RILL_EXCLUDED, RILL_GEN, RILL_PATHS, RILL_RING, RILL_SCRATCH,
    RILL_STATS, RILL_WATCHED,
};

pub const SCRATCH_SIZE: usize = 0x30000;
const OFF_MASK: u64 = 0x1FFFF;
/// Largest single copy into scratch (one inline-data chunk).
pub const MAX_CHUNK: u64 = 0x10000;
/// Longest user string read (PATH_MAX).
const MAX_STR: u32 = 4096;
/// Deepest directory nesting the path walk follows before flagging the path truncated.
const MAX_DEPTH: u32 = 64;
/// iovecs copied inline; a longer vector is recorded range-only.
const MAX_IOV: u64 = 16;
/// Bytes of leaf-first components the walk writes at most.
const MAX_WALK_BYTES: u64 = 4096;

#[repr(C, align(8))]
pub struct Scratch {
    pub buf: [u8; SCRATCH_SIZE],
    walk: Walk,
}

/// The path walk's cursor. It lives in map memory, read and written volatile, so that the
/// verifier sees unknown scalars at the top of each iteration: states then differ only in
/// the loop counter and the mount-crossing branch is pruned instead of doubling the states
/// explored at every level (which exceeded the 1M-instruction limit with registers).
#[repr(C)]
struct Walk {
    dentry: u64,
    mnt: u64,
    mnt_root: u64,
    off: u64,
    complete: u64,
    /// Bytes of data still to copy (iovec loop), and the data section's length so far.
    left: u64,
    data: u64,
}

/// The ring's state as the throttling rules see it.
#[derive(PartialEq, Eq, Clone, Copy)]
pub enum Level {
    Normal,
    /// Above `throttle_start_pct`: writes are range-only.
    Throttled,
    /// At `stop_pct`: only dirty marks.
    Stopped,
}

#[inline(always)]
pub fn stat_add(index: u32, n: u64) {
    if let Some(p) = RILL_STATS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot; concurrent updates on one CPU only lose a count.
        unsafe { *p += n };
    }
}

/// The settings, or `None` while paused.
#[inline(always)]
pub fn config() -> Option<&'static DriverConfig> {
    let cfg = RILL_CONFIG.get(0)?;
    if cfg.paused != 0 {
        None
    } else {
        Some(cfg)
    }
}

/// Whether the caller's process is excluded from capture.
#[inline(always)]
pub fn excluded() -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { RILL_EXCLUDED.get(&tgid) }.is_some() {
        stat_add(Stat::EXCLUDED, 1);
        true
    } else {
        false
    }
}

/// Whether a file system (kernel `s_dev`) is captured.
#[inline(always)]
pub fn watched(cfg: &DriverConfig, dev: u64) -> bool {
    // SAFETY: the value is only tested for presence.
    if cfg.filter_devs == 0 || unsafe { RILL_WATCHED.get(&dev) }.is_some() {
        true
    } else {
        stat_add(Stat::UNWATCHED, 1);
        false
    }
}

#[inline(always)]
pub fn level(cfg: &DriverConfig) -> Level {
    let size = RILL_RING.query(BPF_RB_RING_SIZE as u64);
    if size == 0 {
        return Level::Normal;
    }
    let pct = RILL_RING.query(BPF_RB_AVAIL_DATA as u64) * 100 / size;
    if pct >= cfg.stop_pct as u64 {
        Level::Stopped
    } else if pct >= cfg.throttle_start_pct as u64 {
        Level::Throttled
    } else {
        Level::Normal
    }
}

/// Records that the operations on `key` were not all submitted. Key (0, 0) means the
/// object is unknown and every watched path must be rescanned.
#[inline(always)]
pub fn mark_dirty(key: DirtyKey, reason: u64) {
    record_mark(key, reason);
    // Last: a reader that sees the count rise finds the mark (see Stat::DIRTY_MARKS).
    stat_add(Stat::DIRTY_MARKS, 1);
}

#[inline(always)]
fn record_mark(key: DirtyKey, reason: u64) {
    if let Some(v) = RILL_DIRTY.get_ptr_mut(&key) {
        // SAFETY: a map value pointer; counts are advisory.
        unsafe { (*v).count += 1 };
        return;
    }
    let v = DirtyValue {
        reason,
        first_ns: unsafe { bpf_ktime_get_ns() },
        count: 1,
    };
    // EEXIST means another CPU inserted it first, which is just as good.
    if let Err(e) = RILL_DIRTY.insert(&key, &v, BPF_NOEXIST as u64) {
        if e != -17 {
            stat_add(Stat::DIRTY_MAP_FULL, 1);
        }
    }
}

/// Counts an operation that was kept only as a dirty mark because the ring is at the stop
/// limit.
#[inline(always)]
pub fn stopped(kind: Kind, key: DirtyKey) {
    stat_add(Stat::STOPPED_BASE + kind.category() as u32, 1);
    mark_dirty(key, DIRTY_STOP_LIMIT);
}

/// A record under construction in this CPU's scratch buffer.
pub struct Builder {
    s: *mut u8,
    off: u64,
    sections: [u32; SECTION_COUNT],
    pub flags: u16,
}

impl Builder {
    #[inline(always)]
    pub fn new() -> Option<Builder> {
        let cpu = unsafe { bpf_get_smp_processor_id() };
        let s = RILL_SCRATCH.get_ptr_mut(cpu)?;
        Some(Builder {
            s: s as *mut u8,
            off: HEADER_SIZE as u64,
            sections: [0; SECTION_COUNT],
            flags: 0,
        })
    }

    #[inline(always)]
    fn at(&self, off: u64) -> *mut u8 {
        // SAFETY (for callers): masked offset + at most MAX_CHUNK stays inside Scratch.
        unsafe { self.s.add((off & OFF_MASK) as usize) }
    }

    /// Appends the leaf-first components of `p` to section `sec` (see `rill_abi::path`).
    #[inline(always)]
    pub fn walk(&mut self, o: &Off, sec: Section, p: KPath) {
        use core::ptr::{addr_of_mut, read_volatile as get, write_volatile as put};
        let start = self.off;
        // SAFETY: `walk` follows `buf` inside the same map value.
        let w = unsafe { &mut (*(self.s as *mut Scratch)).walk };
        unsafe {
            put(addr_of_mut!(w.dentry), p.dentry);
            put(addr_of_mut!(w.mnt), p.mnt);
            put(
                addr_of_mut!(w.mnt_root),
                kread(p.mnt, o.RILL_OFF_VFSMOUNT_ROOT()),
            );
            put(addr_of_mut!(w.off), start);
            put(addr_of_mut!(w.complete), 0);
        }
        for _ in 0..MAX_DEPTH {
            // SAFETY: as above; every access is to the map value.
            unsafe {
                let dentry = get(addr_of_mut!(w.dentry));
                let mnt = get(addr_of_mut!(w.mnt));
                if dentry == 0 {
                    break;
                }
                if dentry == get(addr_of_mut!(w.mnt_root)) {
                    // Top of this mount: continue where it is mounted, unless it is the root.
                    let mount = mnt - o.RILL_OFF_MOUNT_MNT();
                    let parent: u64 = kread(mount, o.RILL_OFF_MOUNT_PARENT());
                    if parent == mount || parent == 0 {
                        put(addr_of_mut!(w.complete), 1);
                        break;
                    }
                    let next = parent + o.RILL_OFF_MOUNT_MNT();
                    put(
                        addr_of_mut!(w.dentry),
                        kread(mount, o.RILL_OFF_MOUNT_MOUNTPOINT()),
                    );
                    put(addr_of_mut!(w.mnt), next);
                    put(
                        addr_of_mut!(w.mnt_root),
                        kread(next, o.RILL_OFF_VFSMOUNT_ROOT()),
                    );
                    continue;
                }
                let parent: u64 = kread(dentry, o.RILL_OFF_DENTRY_PARENT());
                if parent == dentry {
                    // Its own parent but not a mount root: a detached dentry.
                    break;
                }
                let len: u32 = kread(dentry, o.RILL_OFF_DENTRY_NAME() + o.RILL_OFF_QSTR_LEN());
                let name: u64 = kread(dentry, o.RILL_OFF_DENTRY_NAME() + o.RILL_OFF_QSTR_NAME());
                let len = len as u64;
                let off = get(addr_of_mut!(w.off)) & OFF_MASK;
                if len == 0 || len > 255 || off + 1 + len > start + MAX_WALK_BYTES {
                    break;
                }
                // Masked offsets, at most 1 + 255 bytes: inside Scratch.
                *self.at(off) = len as u8;
                if bpf_probe_read_kernel(
                    self.at(off + 1) as *mut _,
                    (len & 0xFF) as u32,
                    name as *const _,
                ) != 0
                {
                    break;
                }
                put(addr_of_mut!(w.off), off + 1 + len);
                put(addr_of_mut!(w.dentry), parent);
            }
        }
        // SAFETY: as above.
        unsafe {
            self.off = get(addr_of_mut!(w.off)) & OFF_MASK;
            if get(addr_of_mut!(w.complete)) == 0 {
                self.flags |= FLAG_PATH_TRUNCATED;
            }
        }
        self.sections[sec as usize] = self.off.wrapping_sub(start) as u32;
    }

    /// Appends a NUL-terminated string (without its NUL) to `sec`, from kernel memory with
    /// `kernel`, else from user memory.
    #[inline(always)]
    pub fn str(&mut self, sec: Section, ptr: u64, kernel: bool) {
        if ptr == 0 {
            return;
        }
        let to = self.at(self.off) as *mut _;
        // SAFETY: masked offset + MAX_STR stays inside Scratch.
        let n = unsafe {
            if kernel {
                bpf_probe_read_kernel_str(to, MAX_STR, ptr as *const _)
            } else {
                bpf_probe_read_user_str(to, MAX_STR, ptr as *const _)
            }
        };
        if n > 1 {
            let len = (n - 1) as u64;
            self.off += len;
            self.sections[sec as usize] = len as u32;
        }
    }

    /// Appends `len` bytes of user memory to the data section. Returns false on a fault.
    #[inline(always)]
    pub fn user_data(&mut self, ptr: u64, len: u64) -> bool {
        if len == 0 {
            return true;
        }
        if len > MAX_CHUNK {
            return false;
        }
        let size = ((len - 1) & (MAX_CHUNK - 1)) + 1;
        // SAFETY: masked offset + at most MAX_CHUNK stays inside Scratch.
        if unsafe { bpf_probe_read_user(self.at(self.off) as *mut _, size as u32, ptr as *const _) }
            != 0
        {
            return false;
        }
        self.off += size;
        self.sections[Section::Data as usize] += size as u32;
        true
    }

    /// Appends the first `written` bytes of a user iovec array (at most `MAX_IOV` entries).
    /// Returns false on a fault or a longer vector. The cursor lives in map memory for the
    /// same verifier reason as the path walk's.
    #[inline(always)]
    pub fn user_iov(&mut self, iov: u64, written: u64) -> bool {
        use core::ptr::{addr_of_mut, read_volatile as get, write_volatile as put};
        // SAFETY: `walk` follows `buf` inside the same map value.
        let w = unsafe { &mut (*(self.s as *mut Scratch)).walk };
        unsafe {
            put(addr_of_mut!(w.off), self.off);
            put(addr_of_mut!(w.left), written);
            put(addr_of_mut!(w.data), 0);
        }
        for i in 0..MAX_IOV {
            // SAFETY: map-value accesses at masked offsets, copies of at most MAX_CHUNK.
            unsafe {
                let left = get(addr_of_mut!(w.left));
                if left == 0 {
                    break;
                }
                let v: [u64; 2] = crate::kernel::uread(iov + i * 16);
                let n = if v[1] < left { v[1] } else { left };
                if n == 0 {
                    continue;
                }
                let size = ((n - 1) & (MAX_CHUNK - 1)) + 1;
                let off = get(addr_of_mut!(w.off)) & OFF_MASK;
                if bpf_probe_read_user(self.at(off) as *mut _, size as u32, v[0] as *const _) != 0 {
                    return false;
                }
                put(addr_of_mut!(w.off), off + size);
                put(addr_of_mut!(w.left), left - size);
                put(addr_of_mut!(w.data), get(addr_of_mut!(w.data)) + size);
            }
        }
        // SAFETY: as above.
        unsafe {
            if get(addr_of_mut!(w.left)) != 0 {
                return false;
            }
            self.off = get(addr_of_mut!(w.off)) & OFF_MASK;
            self.sections[Section::Data as usize] = (get(addr_of_mut!(w.data)) & OFF_MASK) as u32;
        }
        true
    }

    /// Forgets inline data appended so far (a later chunk faulted).
    #[inline(always)]
    pub fn drop_data(&mut self) {
        self.off -= self.sections[Section::Data as usize] as u64;
        self.sections[Section::Data as usize] = 0;
    }

    /// Writes the header and submits the record, marking `key` dirty if the ring is full.
    /// Returns whether the record reached the ring.
    #[inline(always)]
    pub fn submit(self, kind: Kind, key: DirtyKey, args: [u64; 4]) -> bool {
        let len = self.off & OFF_MASK;
        let h = header(kind, self.flags, key, args, self.sections, len);
        // SAFETY: Scratch is 8-aligned and larger than a header.
        unsafe { core::ptr::write(self.s as *mut RecordHeader, h) };
        // SAFETY: len is masked to OFF_MASK, below SCRATCH_SIZE.
        let bytes = unsafe { core::slice::from_raw_parts(self.s as *const u8, len as usize) };
        let sent = RILL_RING.output::<[u8]>(bytes, wakeup_flags()).is_ok();
        account(kind, key, sent, len)
    }
}

#[inline(always)]
fn header(
    kind: Kind,
    flags: u16,
    key: DirtyKey,
    args: [u64; 4],
    sections: [u32; SECTION_COUNT],
    len: u64,
) -> RecordHeader {
    let pid_tgid = bpf_get_current_pid_tgid();
    RecordHeader {
        len: len as u32,
        version: ABI_VERSION,
        kind: kind as u8,
        flags,
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        dev: key.dev,
        ino: key.ino,
        args,
        sections,
    }
}

/// Counts a submission, or a drop (and marks its file dirty: nothing is lost silently).
#[inline(always)]
fn account(kind: Kind, key: DirtyKey, sent: bool, len: u64) -> bool {
    let cat = kind.category() as u32;
    if sent {
        stat_add(Stat::EMITTED_BASE + cat, 1);
        stat_add(Stat::BYTES, len);
    } else {
        stat_add(Stat::DROPPED_BASE + cat, 1);
        mark_dirty(key, DIRTY_RING_FULL);
    }
    sent
}

/// Submits a write whose path was already sent, reading its data straight from the
/// caller into a ring slot (one copy instead of two through scratch). A reservation needs
/// a size known to the verifier, so slots come in a few sizes; the record's `len` says how
/// much of its slot it uses. `args[1]` is the length written, 1 to `MAX_CHUNK` bytes.
#[inline(always)]
pub fn submit_write_direct(key: DirtyKey, flags: u16, args: [u64; 4], src: u64) -> bool {
    let len = args[1];
    if len <= 64 {
        direct::<{ HEADER_SIZE + 64 }, 64>(key, flags, args, src)
    } else if len <= 512 {
        direct::<{ HEADER_SIZE + 512 }, 512>(key, flags, args, src)
    } else if len <= 4096 {
        direct::<{ HEADER_SIZE + 4096 }, 4096>(key, flags, args, src)
    } else if len <= 16384 {
        direct::<{ HEADER_SIZE + 16384 }, 16384>(key, flags, args, src)
    } else {
        direct::<{ HEADER_SIZE + 65536 }, 65536>(key, flags, args, src)
    }
}

/// One slot size of [`submit_write_direct`]: `SLOT` bytes, `CAP` (a power of two) of data.
#[inline(always)]
fn direct<const SLOT: usize, const CAP: u64>(
    key: DirtyKey,
    mut flags: u16,
    args: [u64; 4],
    src: u64,
) -> bool {
    let Some(mut entry) = RILL_RING.reserve::<[u8; SLOT]>(0) else {
        return account(Kind::Write, key, false, 0);
    };
    let p = entry.as_mut_ptr() as *mut u8;
    // Masked so the verifier sees 1..=CAP bytes; callers pass 1..=CAP.
    let size = ((args[1].wrapping_sub(1)) & (CAP - 1)) + 1;
    // SAFETY: the slot has HEADER_SIZE + CAP bytes; the helper checks the source.
    let fault =
        unsafe { bpf_probe_read_user(p.add(HEADER_SIZE) as *mut _, size as u32, src as *const _) }
            != 0;
    let mut sections = [0u32; SECTION_COUNT];
    if fault {
        flags |= rill_abi::record::FLAG_DATA_FAULT;
    } else {
        sections[Section::Data as usize] = size as u32;
    }
    let len = HEADER_SIZE as u64 + sections[Section::Data as usize] as u64;
    // SAFETY: ring slots are 8-aligned and this one is larger than a header.
    unsafe {
        core::ptr::write(
            p as *mut RecordHeader,
            header(Kind::Write, flags, key, args, sections, len),
        )
    };
    entry.submit(wakeup_flags());
    account(Kind::Write, key, true, len)
}

/// Per-record wakeups cost a self-interrupt each (about 9 us measured on this kind of VM), so
/// the consumer is woken every `wakeup_every` records of a CPU, and every 8th while the
/// ring is over a quarter full (a reader that is behind is awake anyway; one that sleeps
/// must not sleep long); between wakeups it polls on a short timeout.
#[inline(always)]
fn wakeup_flags() -> u64 {
    let every = RILL_CONFIG
        .get(0)
        .map(|c| c.wakeup_every as u64)
        .unwrap_or(64)
        .max(1);
    let mut n = 0u64;
    if let Some(p) = RILL_STATS.get_ptr_mut(Stat::WAKE_COUNTER) {
        // SAFETY: a per-CPU slot.
        unsafe {
            *p += 1;
            n = *p;
        }
    }
    let size = RILL_RING.query(BPF_RB_RING_SIZE as u64);
    if n % every == 0 || (n % 8 == 0 && RILL_RING.query(BPF_RB_AVAIL_DATA as u64) * 4 > size) {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[allow(dead_code)]
const _: () = assert!(Category::COUNT <= 8);

/// The current rename generation.
#[inline(always)]
pub fn generation() -> u64 {
    RILL_GEN.get(0).copied().unwrap_or(0)
}

#[inline(always)]
pub fn bump_generation() {
    if let Some(g) = RILL_GEN.get_ptr_mut(0) {
        // SAFETY: a map value. BPF has an atomic add (BPF_XADD) but the target has no
        // compare-and-swap, so AtomicU64::fetch_add is unavailable; the intrinsic lowers to
        // the instruction. Atomic, so two renames on two CPUs both move the generation.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                g, 1,
            )
        };
    }
}

/// Whether the path of `file` (walked from `dentry`) was sent in this generation.
#[inline(always)]
pub fn path_sent(file: u64, dentry: u64, generation: u64) -> bool {
    // SAFETY: the value is read at once.
    match unsafe { RILL_PATHS.get(&file) } {
        Some(seen) => seen.dentry == dentry && seen.generation == generation,
        None => false,
    }
}

#[inline(always)]
pub fn remember_path(file: u64, dentry: u64, generation: u64) {
    let _ = RILL_PATHS.insert(&file, &PathSeen { dentry, generation }, 0);
}
