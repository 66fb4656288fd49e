//! Reading kernel structures.
//!
//! Rust eBPF has no CO-RE relocations, so every struct member offset is a global the loader
//! fills in from the running kernel's BTF before loading (`RILL_OFF_*`, see
//! `rill_driver_linux::btf`). The only layout hard-coded here is `struct pt_regs`, which is
//! x86_64 user ABI (`asm/ptrace.h`) and cannot change.

use aya_ebpf::helpers::{bpf_get_current_task, generated as gen};

macro_rules! offsets {
    ($($name:ident),* $(,)?) => {
        $(
            #[no_mangle]
            static $name: u64 = 0;
        )*
        /// Member offsets. Zero-sized: each accessor reads its loader-set global where it
        /// is used, which keeps the offsets off the 512-byte BPF stack.
        pub struct Off;
        #[allow(non_snake_case)]
        impl Off {
            $(
                #[inline(always)]
                pub fn $name(&self) -> u64 {
                    // SAFETY: a .rodata global set by the loader; volatile so that LLVM does
                    // not fold the compile-time zero.
                    unsafe { core::ptr::read_volatile(&$name) }
                }
            )*
        }
        #[inline(always)]
        pub fn off() -> Off {
            Off
        }
    };
}

offsets!(
    RILL_OFF_TASK_FILES,
    RILL_OFF_TASK_FS,
    RILL_OFF_FILES_FDT,
    RILL_OFF_FDTABLE_MAX_FDS,
    RILL_OFF_FDTABLE_FD,
    RILL_OFF_FILE_PATH,
    RILL_OFF_FILE_INODE,
    RILL_OFF_FILE_POS,
    RILL_OFF_FILE_FLAGS,
    RILL_OFF_PATH_MNT,
    RILL_OFF_PATH_DENTRY,
    RILL_OFF_INODE_MODE,
    RILL_OFF_INODE_INO,
    RILL_OFF_INODE_SB,
    RILL_OFF_INODE_SIZE,
    RILL_OFF_INODE_NLINK,
    RILL_OFF_SB_DEV,
    RILL_OFF_DENTRY_PARENT,
    RILL_OFF_DENTRY_NAME,
    RILL_OFF_DENTRY_INODE,
    RILL_OFF_QSTR_LEN,
    RILL_OFF_QSTR_NAME,
    RILL_OFF_MOUNT_MNT,
    RILL_OFF_MOUNT_PARENT,
    RILL_OFF_MOUNT_MOUNTPOINT,
    RILL_OFF_VFSMOUNT_ROOT,
    RILL_OFF_FS_ROOT,
    RILL_OFF_FS_PWD,
    RILL_OFF_FS_UMASK,
    RILL_OFF_MAPPING_HOST,
    RILL_OFF_KIOCB_FILP,
    RILL_OFF_KIOCB_FLAGS,
    RILL_OFF_KIOCB_COMPLETE,
    RILL_OFF_IO_REQ_FILE,
    RILL_OFF_IO_REQ_OPCODE,
    RILL_OFF_CQE_RES,
    RILL_OFF_IO_REQ_CQE,
    RILL_OFF_IO_CQE_USER_DATA,
    RILL_OFF_FILENAME_NAME,
    RILL_OFF_IO_RENAME_OLD_DFD,
    RILL_OFF_IO_RENAME_NEW_DFD,
    RILL_OFF_IO_RENAME_OLDPATH,
    RILL_OFF_IO_RENAME_NEWPATH,
    RILL_OFF_IO_RENAME_FLAGS,
    RILL_OFF_IO_UNLINK_DFD,
    RILL_OFF_IO_UNLINK_FLAGS,
    RILL_OFF_IO_UNLINK_FILENAME,
    RILL_OFF_IO_MKDIR_DFD,
    RILL_OFF_IO_MKDIR_MODE,
    RILL_OFF_IO_MKDIR_FILENAME,
    RILL_OFF_IO_LINK_OLD_DFD,
    RILL_OFF_IO_LINK_NEW_DFD,
    RILL_OFF_IO_LINK_OLDPATH,
    RILL_OFF_IO_LINK_NEWPATH,
    RILL_OFF_IO_LINK_FLAGS,
    RILL_OFF_IO_OPEN_DFD,
    RILL_OFF_IO_OPEN_FILE_SLOT,
    RILL_OFF_IO_OPEN_FILENAME,
    RILL_OFF_IO_OPEN_HOW,
    RILL_OFF_IO_XATTR_CTX,
    RILL_OFF_IO_XATTR_FILENAME,
    RILL_OFF_XATTR_CTX_SIZE,
    RILL_OFF_XATTR_CTX_KNAME,
    RILL_OFF_XATTR_CTX_FLAGS,
    RILL_OFF_XATTR_NAME_NAME,
    RILL_OFF_FILES_COUNT,
    RILL_OFF_DENTRY_HASH,
    RILL_OFF_HLIST_BL_PPREV,
    // Not from the table in `rill_driver_linux::btf` (`FileRefCount`: `f_ref` or `f_count`).
    RILL_OFF_FILE_REF,
);

/// The raw value of `struct file`'s reference count that means one reference (see
/// `rill_driver_linux::btf::FileRefCount`), set by the loader.
#[no_mangle]
static RILL_FILE_REF_ONE: u64 = 0;

#[inline(always)]
pub fn file_ref_one() -> u64 {
    // SAFETY: a .rodata global set by the loader; volatile so that LLVM does not fold it.
    unsafe { core::ptr::read_volatile(&RILL_FILE_REF_ONE) }
}

/// Reads a `T` at `base + off` in kernel memory; zero if the address faults.
///
/// Deliberately branch-free: the helper zero-fills on a fault, and a branch on its result
/// would double the states the verifier explores at every read.
#[inline(always)]
pub fn kread<T: Copy + Default>(base: u64, off: u64) -> T {
    let mut v = T::default();
    // SAFETY: the helper validates the source address and writes at most size_of::<T>().
    unsafe {
        gen::bpf_probe_read_kernel(
            &mut v as *mut T as *mut _,
            core::mem::size_of::<T>() as u32,
            (base + off) as *const _,
        )
    };
    v
}

/// Reads a kernel pointer; `None` when it is null (or unreadable).
#[inline(always)]
pub fn kptr(base: u64, off: u64) -> Option<u64> {
    let p: u64 = kread(base, off);
    if p == 0 {
        None
    } else {
        Some(p)
    }
}

/// Reads a `T` at `addr` in the calling process's memory; `None` if it faults.
#[inline(always)]
pub fn try_uread<T: Copy + Default>(addr: u64) -> Option<T> {
    let mut v = T::default();
    // SAFETY: the helper validates the source address and writes at most size_of::<T>().
    let r = unsafe {
        gen::bpf_probe_read_user(
            &mut v as *mut T as *mut _,
            core::mem::size_of::<T>() as u32,
            addr as *const _,
        )
    };
    (r == 0).then_some(v)
}

/// Reads a `T` at `addr` in the calling process's memory; zero if it faults.
#[inline(always)]
pub fn uread<T: Copy + Default>(addr: u64) -> T {
    let mut v = T::default();
    // SAFETY: the helper validates the source address and writes at most size_of::<T>().
    unsafe {
        gen::bpf_probe_read_user(
            &mut v as *mut T as *mut _,
            core::mem::size_of::<T>() as u32,
            addr as *const _,
        )
    };
    v
}

/// The syscall's saved user registers (x86_64 `struct pt_regs`).
pub struct Regs(pub u64);

impl Regs {
    const DI: u64 = 112;
    const SI: u64 = 104;
    const DX: u64 = 96;
    const R10: u64 = 56;
    const R8: u64 = 72;
    const R9: u64 = 64;
    const ORIG_AX: u64 = 120;
    const CS: u64 = 136;
    /// Code segment of 64-bit user mode; ia32 syscalls use other numbers and are skipped.
    pub const USER64_CS: u64 = 0x33;

    /// Syscall argument `n` (0-based), in the x86_64 syscall calling convention.
    #[inline(always)]
    pub fn arg(&self, n: u32) -> u64 {
        let off = match n {
            0 => Self::DI,
            1 => Self::SI,
            2 => Self::DX,
            3 => Self::R10,
            4 => Self::R8,
            _ => Self::R9,
        };
        kread::<u64>(self.0, off)
    }

    #[inline(always)]
    pub fn nr(&self) -> u64 {
        kread::<u64>(self.0, Self::ORIG_AX)
    }

    #[inline(always)]
    pub fn cs(&self) -> u64 {
        kread::<u64>(self.0, Self::CS)
    }
}

/// A `struct path`: the (mount, dentry) pair naming a file.
#[derive(Clone, Copy)]
pub struct KPath {
    pub mnt: u64,
    pub dentry: u64,
}

impl KPath {
    #[inline(always)]
    pub fn at(o: &Off, addr: u64) -> Option<KPath> {
        Some(KPath {
            mnt: kptr(addr, o.RILL_OFF_PATH_MNT())?,
            dentry: kptr(addr, o.RILL_OFF_PATH_DENTRY())?,
        })
    }
}

/// What the handlers need of an inode.
#[derive(Clone, Copy, Default)]
pub struct InodeInfo {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub size: i64,
    /// Hard-link count; 0 once the last name is gone (the file lives on while open).
    pub nlink: u32,
}

#[inline(always)]
pub fn inode_info(o: &Off, inode: u64) -> Option<InodeInfo> {
    let sb = kptr(inode, o.RILL_OFF_INODE_SB())?;
    let dev: u32 = kread(sb, o.RILL_OFF_SB_DEV());
    Some(InodeInfo {
        dev: dev as u64,
        ino: kread(inode, o.RILL_OFF_INODE_INO()),
        mode: kread::<u16>(inode, o.RILL_OFF_INODE_MODE()) as u32,
        size: kread(inode, o.RILL_OFF_INODE_SIZE()),
        nlink: kread(inode, o.RILL_OFF_INODE_NLINK()),
    })
}

/// The `struct file *` behind `fd` in the current task, if any.
#[inline(always)]
pub fn file_of_fd(o: &Off, fd: u64) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    let files = kptr(task, o.RILL_OFF_TASK_FILES())?;
    let fdt = kptr(files, o.RILL_OFF_FILES_FDT())?;
    let max: u32 = kread(fdt, o.RILL_OFF_FDTABLE_MAX_FDS());
    if fd >= max as u64 {
        return None;
    }
    let arr = kptr(fdt, o.RILL_OFF_FDTABLE_FD())?;
    kptr(arr, fd * 8)
}

/// The current task's `fs_struct` (root, working directory, umask).
#[inline(always)]
pub fn task_fs(o: &Off) -> Option<u64> {
    let task = unsafe { bpf_get_current_task() };
    kptr(task, o.RILL_OFF_TASK_FS())
}

/// `AT_FDCWD`: names relative to the working directory.
pub const AT_FDCWD: i32 = -100;

/// The directory a caller's name is relative to: its root for absolute names, `dirfd`'s
/// directory, or its working directory. Returns the path and whether the name is absolute.
/// `name` is in kernel memory with `kernel`, else in the caller's.
#[inline(always)]
pub fn name_base(o: &Off, dirfd: i32, name: u64, kernel: bool) -> Option<(KPath, bool)> {
    let first: u8 = if kernel { kread(name, 0) } else { uread(name) };
    let fs = task_fs(o)?;
    if first == b'/' {
        return Some((KPath::at(o, fs + o.RILL_OFF_FS_ROOT())?, true));
    }
    if dirfd == AT_FDCWD {
        return Some((KPath::at(o, fs + o.RILL_OFF_FS_PWD())?, false));
    }
    let file = file_of_fd(o, dirfd as u32 as u64)?;
    Some((KPath::at(o, file + o.RILL_OFF_FILE_PATH())?, false))
}

/// The inode of a path's dentry.
#[inline(always)]
pub fn path_inode(o: &Off, p: &KPath) -> Option<u64> {
    kptr(p.dentry, o.RILL_OFF_DENTRY_INODE())
}

/// The current umask, applied by the kernel to the mode of mkdir and mknod.
#[inline(always)]
pub fn umask(o: &Off) -> u32 {
    task_fs(o)
        .map(|fs| kread::<u32>(fs, o.RILL_OFF_FS_UMASK()))
        .unwrap_or(0o022)
}
