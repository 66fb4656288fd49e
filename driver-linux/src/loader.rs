//! Loading the eBPF programs into the kernel, pinned or private.
//!
//! A *pinned* load is the installed driver: maps, programs and the attachment are pinned
//! under `/sys/fs/bpf/rill`, so capture goes on with no process holding them, like a loaded
//! kernel module, until `unload`. A *private* load belongs to one process (a `capture`
//! session that must not consume the pinned ring an engine drains) and is detached when
//! that process drops it.
//!
//! The *floor* ([`load_floor`]) is a third kind of load, for `rill-bench capture`: on
//! every attach point of the capture, a program that returns at once
//! (`ebpf/src/floor.rs`), attached privately through the same code as the real ones, so
//! that what the benchmark compares differs in the programs' bodies and nothing else.

use std::path::{Path, PathBuf};

use crate::{btf::KernelOffsets, maps::DriverMaps, settings::DriverSettings, DriverError, Result};
use aya::{
    maps::ProgramArray,
    programs::{links::FdLink, RawTracePoint},
    Ebpf, EbpfLoader,
};

/// The compiled programs, built from `../ebpf` by build.rs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rill-ebpf.o"));

pub const PIN_DIR: &str = "/sys/fs/bpf/rill";
const BPFFS: &str = "/sys/fs/bpf";
const TRACEFS: &str = "/sys/kernel/tracing";
/// The program on `sys_exit` of a rill capture, pinned driver or private instance: one
/// loaded in the kernel under this name is a capture running.
pub const DISPATCHER: &str = "rill_sys_exit";
/// The floor's program on `sys_exit` (see [`load_floor`]).
pub const FLOOR_EXIT: &str = "rill_floor_exit";
const LINK_PIN: &str = "link";

/// The second layer of capture (see `ebpf/src/below.rs`): programs on subsystem
/// tracepoints, by name in the object, and the tracepoint each attaches to. Each is pinned
/// as `link_<tracepoint>` in a pinned load.
pub const BELOW: &[(&str, &str)] = &[
    ("rill_dirtied", "writeback_dirty_folio"),
    ("rill_wrote_back", "sb_clear_inode_writeback"),
    ("rill_uring_done", "io_uring_complete"),
    ("rill_dio_done", "iomap_dio_complete"),
    ("rill_uring_sub", "io_uring_submit_req"),
];

/// The completion programs of the io_uring requests that change names or attributes
/// (`ebpf/src/uring.rs`), by program name and the opcodes (uapi `enum io_uring_op`) each
/// handles; `rill_uring_done` tail-calls them through `RILL_URING_OPS`. One program a
/// family, as for the system calls, so each is verified on its own.
pub const URING_OPS: &[(&str, &[u32])] = &[
    // RENAMEAT, LINKAT
    ("rill_iou_two", &[35, 39]),
    // UNLINKAT, MKDIRAT, SYMLINKAT, SETXATTR
    ("rill_iou_one", &[36, 37, 38, 42]),
    // OPENAT, OPENAT2, FSETXATTR
    ("rill_iou_file", &[18, 28, 41]),
];

/// The floor's programs beneath the system calls: one for each of [`BELOW`], on the same
/// tracepoint, in the same order.
pub const FLOOR_BELOW: &[(&str, &str)] = &[
    ("rill_floor_dirt", "writeback_dirty_folio"),
    ("rill_floor_wb", "sb_clear_inode_writeback"),
    ("rill_floor_iou", "io_uring_complete"),
    ("rill_floor_dio", "iomap_dio_complete"),
    ("rill_floor_ius", "io_uring_submit_req"),
];

fn below_pin(tracepoint: &str) -> String {
    format!("link_{tracepoint}")
}

/// Names of the maps, as pinned.
pub const MAPS: &[&str] = &[
    "RILL_RING",
    "RILL_CONFIG",
    "RILL_STATS",
    "RILL_DIRTY",
    "RILL_EXCLUDED",
    "RILL_WATCHED",
    "RILL_SCRATCH",
    "RILL_HANDLERS",
    "RILL_PATHS",
    "RILL_GEN",
    // A program array's entries are cleared when no file descriptor or pin holds it.
    "RILL_URING_OPS",
];

pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(DriverError::NotRoot)
    }
}

/// Mounts bpffs (for pins) and tracefs (for tracepoint ids) where they are missing.
pub fn ensure_filesystems() -> Result<()> {
    for (fs, path) in [("bpf", BPFFS), ("tracefs", TRACEFS)] {
        if is_mounted(path, fs) {
            continue;
        }
        nix::mount::mount(
            Some(fs),
            path,
            Some(fs),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| DriverError::Mount {
            fs: if fs == "bpf" { "bpffs" } else { "tracefs" },
            path: path.into(),
            source: e.into(),
        })?;
    }
    Ok(())
}

fn is_mounted(path: &str, fstype: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 2 && f[1] == path && f[2] == fstype
            })
        })
        .unwrap_or(false)
}

pub fn pin_path(name: &str) -> PathBuf {
    Path::new(PIN_DIR).join(name)
}

/// Whether the pinned driver is loaded (its attachment is pinned).
pub fn is_loaded() -> bool {
    pin_path(LINK_PIN).exists()
}

/// A loaded instance. For a private instance, dropping it detaches the programs.
pub struct Instance {
    /// Holds the programs and, for a private instance, the attachment.
    pub ebpf: Ebpf,
    pub maps: DriverMaps,
}

/// Loads, configures and attaches the programs. With `pin`, pins everything under
/// [`PIN_DIR`] so it outlives this process.
pub fn load(settings: &DriverSettings, pin: bool) -> Result<Instance> {
    require_root()?;
    ensure_filesystems()?;
    let offsets = KernelOffsets::from_kernel()?;
    let cpus = aya::util::nr_cpus()
        .map_err(|(_, e)| DriverError::Ebpf(format!("cannot count CPUs: {e}")))?
        as u32;
    let ring_bytes = settings
        .ring_size_mb
        .checked_mul(1 << 20)
        .ok_or_else(|| DriverError::Ebpf("ring too large".into()))?;
    let mut loader = EbpfLoader::new();
    let globals = offsets.globals();
    for (name, value) in &globals {
        loader.override_global(name, value, true);
    }
    let file_ref = crate::btf::FileRefCount::from_kernel()?;
    loader.override_global("RILL_OFF_FILE_REF", &file_ref.offset, true);
    loader.override_global("RILL_FILE_REF_ONE", &file_ref.one, true);
    let uring_names = u64::from(crate::btf::uring_filenames_are_pointers()?);
    loader.override_global("RILL_URING_NAMES", &uring_names, true);
    loader
        .map_max_entries("RILL_RING", ring_bytes)
        .map_max_entries("RILL_SCRATCH", cpus);
    let mut ebpf = loader
        .load(OBJECT)
        .map_err(|e| DriverError::Ebpf(format!("loading the object: {e}")))?;

    for (name, nrs) in rill_abi::syscalls::FAMILIES {
        let nrs: Vec<u32> = nrs.iter().map(|&nr| nr as u32).collect();
        install(&mut ebpf, "RILL_HANDLERS", name, &nrs)?;
    }
    for (name, ops) in URING_OPS {
        install(&mut ebpf, "RILL_URING_OPS", name, ops)?;
    }

    if pin {
        std::fs::create_dir_all(PIN_DIR).map_err(|e| DriverError::io(PIN_DIR, e))?;
        for name in MAPS {
            let map = ebpf.map_mut(name).ok_or_else(|| missing(name))?;
            map.pin(pin_path(name))
                .map_err(|e| DriverError::Ebpf(format!("pinning {name}: {e}")))?;
        }
    }
    let mut maps = DriverMaps::take(&mut ebpf)?;
    maps.apply(settings)?;
    // The second layer first: from the dispatcher's attachment on, a shared mapping it
    // records is watched.
    attach_below(&mut ebpf, BELOW, pin)?;
    attach_exit(&mut ebpf, DISPATCHER, pin)?;
    Ok(Instance { ebpf, maps })
}

/// Loads program `name` and installs it in the program array `map` at each of `slots`
/// (syscall numbers, io_uring opcodes).
fn install(ebpf: &mut Ebpf, map: &str, name: &str, slots: &[u32]) -> Result<()> {
    let prog: &mut RawTracePoint = program(ebpf, name)?;
    prog.load().map_err(|e| refused(name, e))?;
    let fd = prog
        .fd()
        .map_err(|e| DriverError::Ebpf(e.to_string()))?
        .try_clone()
        .map_err(|e| DriverError::Ebpf(e.to_string()))?;
    let mut array = ProgramArray::try_from(ebpf.map_mut(map).ok_or_else(|| missing(map))?)
        .map_err(|e| DriverError::Ebpf(e.to_string()))?;
    for &slot in slots {
        array
            .set(slot, &fd, 0)
            .map_err(|e| DriverError::Ebpf(format!("installing {name} at {slot} of {map}: {e}")))?;
    }
    Ok(())
}

/// The floor of capture, attached: dropping it detaches the programs.
pub struct Floor {
    _ebpf: Ebpf,
}

/// Attaches the floor (`ebpf/src/floor.rs`): [`FLOOR_EXIT`] on `sys_exit` and
/// [`FLOOR_BELOW`] on the second layer's tracepoints, privately, skipping a tracepoint
/// this kernel lacks as the driver does. The programs use no map and no kernel offsets,
/// so the object is loaded as it is (its maps are made, at their default sizes, and
/// stay unused).
pub fn load_floor() -> Result<Floor> {
    require_root()?;
    ensure_filesystems()?;
    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| DriverError::Ebpf(format!("loading the object: {e}")))?;
    attach_below(&mut ebpf, FLOOR_BELOW, false)?;
    attach_exit(&mut ebpf, FLOOR_EXIT, false)?;
    Ok(Floor { _ebpf: ebpf })
}

/// Loads `programs` (name, tracepoint) and attaches each to its raw tracepoint. A
/// tracepoint this kernel lacks is skipped with a warning: capture loses only what it
/// alone would have seen. With `pin`, each attachment is pinned as `link_<tracepoint>`.
fn attach_below(ebpf: &mut Ebpf, programs: &[(&str, &str)], pin: bool) -> Result<()> {
    for &(name, tracepoint) in programs {
        let prog: &mut RawTracePoint = program(ebpf, name)?;
        prog.load().map_err(|e| refused(name, e))?;
        let link = match prog.attach(tracepoint) {
            Ok(link) => link,
            Err(e) => {
                log::warn!(
                    "tracepoint {tracepoint} unavailable ({e}): changes only it would see \
                     are not marked dirty (see README, Known limits of capture)"
                );
                continue;
            }
        };
        if pin {
            let link: FdLink = prog
                .take_link(link)
                .map_err(|e| DriverError::Ebpf(e.to_string()))?
                .into();
            let at = pin_path(&below_pin(tracepoint));
            link.pin(&at)
                .map_err(|e| DriverError::Ebpf(format!("pinning {}: {e}", at.display())))?;
        }
    }
    Ok(())
}

/// Loads program `name` and attaches it to the raw tracepoint `sys_exit`; with `pin`, pins
/// the attachment as the driver's.
fn attach_exit(ebpf: &mut Ebpf, name: &str, pin: bool) -> Result<()> {
    let prog: &mut RawTracePoint = program(ebpf, name)?;
    prog.load().map_err(|e| refused(name, e))?;
    let link = prog
        .attach("sys_exit")
        .map_err(|e| DriverError::Ebpf(format!("attaching to sys_exit: {e}")))?;
    if pin {
        let link: FdLink = prog
            .take_link(link)
            .map_err(|e| DriverError::Ebpf(e.to_string()))?
            .into();
        link.pin(pin_path(LINK_PIN))
            .map_err(|e| DriverError::Ebpf(format!("pinning the attachment: {e}")))?;
    }
    Ok(())
}

/// Removes the pinned driver: detaches the programs and frees the maps. Idempotent.
pub fn unload() -> Result<bool> {
    require_root()?;
    let was = is_loaded();
    // The attachment first, so nothing writes into maps that are going away.
    let below = BELOW.iter().map(|(_, tp)| below_pin(tp));
    let links = std::iter::once(LINK_PIN.to_string()).chain(below);
    for name in links.chain(MAPS.iter().map(|m| m.to_string())) {
        let p = pin_path(&name);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DriverError::io(p, e)),
        }
    }
    match std::fs::remove_dir(PIN_DIR) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DriverError::io(PIN_DIR, e)),
    }
    Ok(was)
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint> {
    ebpf.program_mut(name)
        .ok_or_else(|| DriverError::Ebpf(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| DriverError::Ebpf(e.to_string()))
}

pub(crate) fn missing(name: &str) -> DriverError {
    DriverError::Ebpf(format!("map {name} missing from the object"))
}

fn refused(name: &str, e: aya::programs::ProgramError) -> DriverError {
    match e {
        aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        } => DriverError::ProgramRefused {
            program: name.into(),
            detail: io_error.to_string(),
            log: tail(&verifier_log.to_string(), 40),
        },
        other => DriverError::ProgramRefused {
            program: name.into(),
            detail: other.to_string(),
            log: String::new(),
        },
    }
}

/// The end of a verifier log: where it says why it refused.
fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use rill_abi::syscalls as nr;

    /// The ABI's x86_64 numbers are the C library's.
    #[test]
    fn syscall_numbers_match_the_c_library() {
        let pairs: &[(u64, libc::c_long)] = &[
            (nr::WRITE, libc::SYS_write),
            (nr::PWRITEV2, libc::SYS_pwritev2),
            (nr::OPENAT2, libc::SYS_openat2),
            (nr::RENAMEAT2, libc::SYS_renameat2),
            (nr::LINKAT, libc::SYS_linkat),
            (nr::FCHMODAT2, libc::SYS_fchmodat2),
            (nr::UTIMENSAT, libc::SYS_utimensat),
            (nr::FREMOVEXATTR, libc::SYS_fremovexattr),
            (nr::MKNODAT, libc::SYS_mknodat),
            (nr::FALLOCATE, libc::SYS_fallocate),
            (nr::IOCTL, libc::SYS_ioctl),
            (nr::MMAP, libc::SYS_mmap),
            (nr::IO_SUBMIT, libc::SYS_io_submit),
        ];
        for &(ours, libc) in pairs {
            assert_eq!(ours, libc as u64);
        }
    }

    /// The kernel keeps 15 bytes of a program's name; the pins are named by tracepoint.
    #[test]
    fn second_layer_program_names_fit_the_kernel() {
        for (name, tracepoint) in super::BELOW {
            assert!(name.starts_with("rill_") && name.len() <= 15, "{name}");
            assert_eq!(super::below_pin(tracepoint), format!("link_{tracepoint}"));
        }
    }

    /// The floor stands where the capture does: one program on each of its tracepoints,
    /// with names the kernel keeps whole (the benchmark finds them by name).
    #[test]
    fn floor_has_the_capture_attach_points() {
        let floor: Vec<&str> = super::FLOOR_BELOW.iter().map(|(_, tp)| *tp).collect();
        let below: Vec<&str> = super::BELOW.iter().map(|(_, tp)| *tp).collect();
        assert_eq!(floor, below);
        let names = super::FLOOR_BELOW.iter().map(|(name, _)| *name);
        for name in names.chain([super::FLOOR_EXIT, super::DISPATCHER]) {
            assert!(name.starts_with("rill_") && name.len() <= 15, "{name}");
        }
    }
}
