//! x86_64 syscall numbers of the operations rill captures (arch/x86/entry/syscalls), and
//! which eBPF handler program takes each. The programs dispatch on these numbers and the
//! loader installs each handler at the numbers of its family from [`FAMILIES`]: one list,
//! so the two sides cannot disagree about where a syscall goes.

pub const WRITE: u64 = 1;
pub const OPEN: u64 = 2;
pub const MMAP: u64 = 9;
pub const IOCTL: u64 = 16;
pub const PWRITE64: u64 = 18;
pub const WRITEV: u64 = 20;
pub const SENDFILE: u64 = 40;
pub const TRUNCATE: u64 = 76;
pub const FTRUNCATE: u64 = 77;
pub const RENAME: u64 = 82;
pub const MKDIR: u64 = 83;
pub const RMDIR: u64 = 84;
pub const CREAT: u64 = 85;
pub const LINK: u64 = 86;
pub const UNLINK: u64 = 87;
pub const SYMLINK: u64 = 88;
pub const CHMOD: u64 = 90;
pub const FCHMOD: u64 = 91;
pub const CHOWN: u64 = 92;
pub const FCHOWN: u64 = 93;
pub const LCHOWN: u64 = 94;
pub const UTIME: u64 = 132;
pub const MKNOD: u64 = 133;
pub const SETXATTR: u64 = 188;
pub const LSETXATTR: u64 = 189;
pub const FSETXATTR: u64 = 190;
pub const REMOVEXATTR: u64 = 197;
pub const LREMOVEXATTR: u64 = 198;
pub const FREMOVEXATTR: u64 = 199;
pub const IO_SUBMIT: u64 = 209;
pub const UTIMES: u64 = 235;
pub const OPENAT: u64 = 257;
pub const MKDIRAT: u64 = 258;
pub const MKNODAT: u64 = 259;
pub const FCHOWNAT: u64 = 260;
pub const FUTIMESAT: u64 = 261;
pub const UNLINKAT: u64 = 263;
pub const RENAMEAT: u64 = 264;
pub const LINKAT: u64 = 265;
pub const SYMLINKAT: u64 = 266;
pub const FCHMODAT: u64 = 268;
pub const SPLICE: u64 = 275;
pub const UTIMENSAT: u64 = 280;
pub const FALLOCATE: u64 = 285;
pub const PWRITEV: u64 = 296;
pub const RENAMEAT2: u64 = 316;
pub const COPY_FILE_RANGE: u64 = 326;
pub const PWRITEV2: u64 = 328;
pub const OPENAT2: u64 = 437;
pub const FCHMODAT2: u64 = 452;
pub const SETXATTRAT: u64 = 463;
pub const REMOVEXATTRAT: u64 = 466;

/// Each handler program (by its name in the eBPF object) and the syscalls it handles.
pub const FAMILIES: &[(&str, &[u64])] = &[
    (
        "rill_write",
        &[
            WRITE,
            PWRITE64,
            WRITEV,
            PWRITEV,
            PWRITEV2,
            SENDFILE,
            SPLICE,
            COPY_FILE_RANGE,
        ],
    ),
    ("rill_open", &[OPEN, OPENAT, OPENAT2, CREAT]),
    ("rill_ioctl", &[IOCTL]),
    ("rill_map", &[MMAP, IO_SUBMIT]),
    ("rill_size", &[TRUNCATE, FTRUNCATE, FALLOCATE]),
    ("rill_remove", &[UNLINK, UNLINKAT, RMDIR]),
    ("rill_make", &[MKDIR, MKDIRAT, MKNOD, MKNODAT]),
    ("rill_rename", &[RENAME, RENAMEAT, RENAMEAT2]),
    ("rill_link", &[LINK, LINKAT, SYMLINK, SYMLINKAT]),
    (
        "rill_attr",
        &[
            CHMOD, FCHMOD, FCHMODAT, FCHMODAT2, CHOWN, FCHOWN, LCHOWN, FCHOWNAT, UTIME, UTIMES,
            FUTIMESAT, UTIMENSAT,
        ],
    ),
    (
        "rill_xattr",
        &[
            SETXATTR,
            LSETXATTR,
            FSETXATTR,
            REMOVEXATTR,
            LREMOVEXATTR,
            FREMOVEXATTR,
            SETXATTRAT,
            REMOVEXATTRAT,
        ],
    ),
];
