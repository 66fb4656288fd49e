//! Byte offsets of the kernel struct members that rill's eBPF programs read.
//!
//! C eBPF programs get CO-RE relocations: the loader patches each field access to the running
//! kernel's layout. Rust eBPF (aya) has no CO-RE, yet the layout of `task_struct`, `file`,
//! `dentry`, ... differs between kernel versions and configurations. So the offsets are never
//! hard-coded: they are read from the running kernel's BTF at load time and handed to the
//! programs as read-only globals (`RILL_OFF_*`), which the programs add to their pointers.

use std::io::ErrorKind;
use std::path::Path;

use btf_rs::{Btf, Member, Struct, Type};

use crate::error::{DriverError, Result};

/// Where a kernel built with `CONFIG_DEBUG_INFO_BTF=y` exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Bounds how deep anonymous members and typedef/qualifier chains are followed, so a corrupt
/// BTF file with a cycle yields an error instead of looping or overflowing the stack. Real
/// kernels nest anonymous members at most a few levels deep.
const MAX_DEPTH: usize = 16;

/// Declares [`KernelOffsets`] and everything derived from its field list from one table, so
/// the struct, the BTF lookups and the eBPF global names cannot drift apart.
macro_rules! kernel_offsets {
    ($($field:ident = $global:literal: $strukt:literal . $member:literal,)*) => {
        /// How many offsets the programs read.
        pub const OFFSET_COUNT: usize = [$($global),*].len();

        /// Byte offsets, in the running kernel, of the struct members the eBPF programs read.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct KernelOffsets {
            $(
                #[doc = concat!("Offset of `struct ", $strukt, "`.`", $member, "`.")]
                pub $field: u64,
            )*
        }

        impl KernelOffsets {
            fn from_btf(btf: &Btf, path: &Path) -> Result<KernelOffsets> {
                Ok(KernelOffsets {
                    $($field: member_offset(btf, path, $strukt, $member)?,)*
                })
            }

            /// (global name, value) pairs for the eBPF loader, one per field, in field order.
            pub fn globals(&self) -> [(&'static str, u64); OFFSET_COUNT] {
                [$(($global, self.$field),)*]
            }
        }

        /// (field, global, struct, member) for each field, in field order.
        #[cfg(test)]
        const LAYOUT: [(&str, &str, &str, &str); OFFSET_COUNT] =
            [$((stringify!($field), $global, $strukt, $member),)*];
    };
}

kernel_offsets! {
    task_files = "RILL_OFF_TASK_FILES": "task_struct"."files",
    task_fs = "RILL_OFF_TASK_FS": "task_struct"."fs",
    files_fdt = "RILL_OFF_FILES_FDT": "files_struct"."fdt",
    fdtable_max_fds = "RILL_OFF_FDTABLE_MAX_FDS": "fdtable"."max_fds",
    fdtable_fd = "RILL_OFF_FDTABLE_FD": "fdtable"."fd",
    file_path = "RILL_OFF_FILE_PATH": "file"."f_path",
    file_inode = "RILL_OFF_FILE_INODE": "file"."f_inode",
    file_pos = "RILL_OFF_FILE_POS": "file"."f_pos",
    file_flags = "RILL_OFF_FILE_FLAGS": "file"."f_flags",
    path_mnt = "RILL_OFF_PATH_MNT": "path"."mnt",
    path_dentry = "RILL_OFF_PATH_DENTRY": "path"."dentry",
    inode_mode = "RILL_OFF_INODE_MODE": "inode"."i_mode",
    inode_ino = "RILL_OFF_INODE_INO": "inode"."i_ino",
    inode_sb = "RILL_OFF_INODE_SB": "inode"."i_sb",
    inode_size = "RILL_OFF_INODE_SIZE": "inode"."i_size",
    inode_nlink = "RILL_OFF_INODE_NLINK": "inode"."i_nlink",
    sb_dev = "RILL_OFF_SB_DEV": "super_block"."s_dev",
    dentry_parent = "RILL_OFF_DENTRY_PARENT": "dentry"."d_parent",
    dentry_name = "RILL_OFF_DENTRY_NAME": "dentry"."d_name",
    dentry_inode = "RILL_OFF_DENTRY_INODE": "dentry"."d_inode",
    qstr_len = "RILL_OFF_QSTR_LEN": "qstr"."len",
    qstr_name = "RILL_OFF_QSTR_NAME": "qstr"."name",
    mount_mnt = "RILL_OFF_MOUNT_MNT": "mount"."mnt",
    mount_parent = "RILL_OFF_MOUNT_PARENT": "mount"."mnt_parent",
    mount_mountpoint = "RILL_OFF_MOUNT_MOUNTPOINT": "mount"."mnt_mountpoint",
    vfsmount_root = "RILL_OFF_VFSMOUNT_ROOT": "vfsmount"."mnt_root",
    fs_root = "RILL_OFF_FS_ROOT": "fs_struct"."root",
    fs_pwd = "RILL_OFF_FS_PWD": "fs_struct"."pwd",
    fs_umask = "RILL_OFF_FS_UMASK": "fs_struct"."umask",
    mapping_host = "RILL_OFF_MAPPING_HOST": "address_space"."host",
    kiocb_filp = "RILL_OFF_KIOCB_FILP": "kiocb"."ki_filp",
    kiocb_flags = "RILL_OFF_KIOCB_FLAGS": "kiocb"."ki_flags",
    kiocb_complete = "RILL_OFF_KIOCB_COMPLETE": "kiocb"."ki_complete",
    io_req_file = "RILL_OFF_IO_REQ_FILE": "io_kiocb"."file",
    io_req_opcode = "RILL_OFF_IO_REQ_OPCODE": "io_kiocb"."opcode",
    cqe_res = "RILL_OFF_CQE_RES": "io_uring_cqe"."res",
    io_req_cqe = "RILL_OFF_IO_REQ_CQE": "io_kiocb"."cqe",
    io_cqe_user_data = "RILL_OFF_IO_CQE_USER_DATA": "io_cqe"."user_data",
    filename_name = "RILL_OFF_FILENAME_NAME": "filename"."name",
    io_rename_old_dfd = "RILL_OFF_IO_RENAME_OLD_DFD": "io_rename"."old_dfd",
    io_rename_new_dfd = "RILL_OFF_IO_RENAME_NEW_DFD": "io_rename"."new_dfd",
    io_rename_oldpath = "RILL_OFF_IO_RENAME_OLDPATH": "io_rename"."oldpath",
    io_rename_newpath = "RILL_OFF_IO_RENAME_NEWPATH": "io_rename"."newpath",
    io_rename_flags = "RILL_OFF_IO_RENAME_FLAGS": "io_rename"."flags",
    io_unlink_dfd = "RILL_OFF_IO_UNLINK_DFD": "io_unlink"."dfd",
    io_unlink_flags = "RILL_OFF_IO_UNLINK_FLAGS": "io_unlink"."flags",
    io_unlink_filename = "RILL_OFF_IO_UNLINK_FILENAME": "io_unlink"."filename",
    io_mkdir_dfd = "RILL_OFF_IO_MKDIR_DFD": "io_mkdir"."dfd",
    io_mkdir_mode = "RILL_OFF_IO_MKDIR_MODE": "io_mkdir"."mode",
    io_mkdir_filename = "RILL_OFF_IO_MKDIR_FILENAME": "io_mkdir"."filename",
    io_link_old_dfd = "RILL_OFF_IO_LINK_OLD_DFD": "io_link"."old_dfd",
    io_link_new_dfd = "RILL_OFF_IO_LINK_NEW_DFD": "io_link"."new_dfd",
    io_link_oldpath = "RILL_OFF_IO_LINK_OLDPATH": "io_link"."oldpath",
    io_link_newpath = "RILL_OFF_IO_LINK_NEWPATH": "io_link"."newpath",
    io_link_flags = "RILL_OFF_IO_LINK_FLAGS": "io_link"."flags",
    io_open_dfd = "RILL_OFF_IO_OPEN_DFD": "io_open"."dfd",
    io_open_file_slot = "RILL_OFF_IO_OPEN_FILE_SLOT": "io_open"."file_slot",
    io_open_filename = "RILL_OFF_IO_OPEN_FILENAME": "io_open"."filename",
    io_open_how = "RILL_OFF_IO_OPEN_HOW": "io_open"."how",
    io_xattr_ctx = "RILL_OFF_IO_XATTR_CTX": "io_xattr"."ctx",
    io_xattr_filename = "RILL_OFF_IO_XATTR_FILENAME": "io_xattr"."filename",
    xattr_ctx_size = "RILL_OFF_XATTR_CTX_SIZE": "kernel_xattr_ctx"."size",
    xattr_ctx_kname = "RILL_OFF_XATTR_CTX_KNAME": "kernel_xattr_ctx"."kname",
    xattr_ctx_flags = "RILL_OFF_XATTR_CTX_FLAGS": "kernel_xattr_ctx"."flags",
    xattr_name_name = "RILL_OFF_XATTR_NAME_NAME": "xattr_name"."name",
    files_count = "RILL_OFF_FILES_COUNT": "files_struct"."count",
    dentry_hash = "RILL_OFF_DENTRY_HASH": "dentry"."d_hash",
    hlist_bl_pprev = "RILL_OFF_HLIST_BL_PPREV": "hlist_bl_node"."pprev",
}

/// Where `struct file` keeps its reference count, and the raw value that means exactly one
/// reference: the write handler reads it to tell whether another task may use the same
/// open file description (`ebpf/src/handlers.rs`, `Fd::shared`). Since Linux 6.13 it is
/// `f_ref`, a `file_ref_t` whose raw counter is the count less one (`FILE_REF_ONEREF` is
/// 0, and `file_needs_f_pos_lock` compares against it); before, `f_count`, an
/// `atomic_long_t` holding the count itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileRefCount {
    pub offset: u64,
    /// The raw value of one reference (0 for `f_ref`, 1 for `f_count`).
    pub one: u64,
}

impl FileRefCount {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<FileRefCount> {
        let path = Path::new(VMLINUX_BTF);
        let btf = Btf::from_file(path)
            .map_err(|e| layout_error(path, "valid BTF data", e.to_string()))?;
        Self::from_btf(&btf, path)
    }

    fn from_btf(btf: &Btf, path: &Path) -> Result<FileRefCount> {
        match member_offset(btf, path, "file", "f_ref") {
            Ok(offset) => Ok(FileRefCount { offset, one: 0 }),
            Err(_) => Ok(FileRefCount {
                offset: member_offset(btf, path, "file", "f_count")?,
                one: 1,
            }),
        }
    }
}

impl KernelOffsets {
    /// Reads the running kernel's BTF.
    pub fn from_kernel() -> Result<KernelOffsets> {
        Self::from_btf_file(Path::new(VMLINUX_BTF))
    }

    /// Reads a BTF file; tests and offline tooling use it on copies of a kernel's BTF.
    pub fn from_btf_file(path: &Path) -> Result<KernelOffsets> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound => DriverError::NoBtf { path: path.into() },
            _ => DriverError::io(path, e),
        })?;
        let btf = Btf::from_bytes(&bytes)
            .map_err(|e| layout_error(path, "valid BTF data", e.to_string()))?;
        Self::from_btf(&btf, path)
    }
}

/// The members `ebpf/src/uring.rs` reads as a `struct filename *` to copy an io_uring
/// request's names at submission.
const URING_FILENAMES: &[(&str, &str)] = &[
    ("io_rename", "oldpath"),
    ("io_rename", "newpath"),
    ("io_unlink", "filename"),
    ("io_mkdir", "filename"),
    ("io_link", "oldpath"),
    ("io_link", "newpath"),
    ("io_open", "filename"),
    ("io_xattr", "filename"),
];

/// Whether every member the io_uring programs read as a `struct filename *` is one in the
/// running kernel. Offsets alone cannot tell: a kernel that keeps something else there
/// (an embedded struct) would have its bytes read as a pointer and, perhaps, a wrong name
/// copied. Where this is false the loader tells the programs not to copy names, and such
/// requests become rescan marks, which are never wrong.
pub fn uring_filenames_are_pointers() -> Result<bool> {
    let path = Path::new(VMLINUX_BTF);
    let btf =
        Btf::from_file(path).map_err(|e| layout_error(path, "valid BTF data", e.to_string()))?;
    Ok(URING_FILENAMES
        .iter()
        .all(|(strukt, member)| points_to(&btf, strukt, member, "filename").unwrap_or(false)))
}

/// Whether `strukt.member` (a direct member) is a pointer to `struct target`.
fn points_to(btf: &Btf, strukt: &str, member: &str, target: &str) -> btf_rs::Result<bool> {
    let Some(s) = btf
        .resolve_types_by_name(strukt)?
        .into_iter()
        .find_map(|ty| match ty {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
    else {
        return Ok(false);
    };
    for m in &s.members {
        if btf.resolve_name(m)? != member {
            continue;
        }
        let Type::Ptr(p) = btf.resolve_chained_type(m)? else {
            return Ok(false);
        };
        return Ok(match btf.resolve_chained_type(&p)? {
            Type::Struct(pointee) => btf.resolve_name(&pointee)? == target,
            _ => false,
        });
    }
    Ok(false)
}

fn layout_error(path: &Path, what: &str, detail: String) -> DriverError {
    DriverError::BtfLayout {
        path: path.into(),
        what: what.into(),
        detail,
    }
}

/// Byte offset of `member` in `struct strukt`, looking through anonymous structs and unions.
fn member_offset(btf: &Btf, path: &Path, strukt: &str, member: &str) -> Result<u64> {
    let error = |detail: String| layout_error(path, &format!("{strukt}.{member}"), detail);
    // BTF also holds forward declarations (no members) under the same name; skip them.
    let definition = btf
        .resolve_types_by_name(strukt)
        .map_err(|e| error(e.to_string()))?
        .into_iter()
        .find_map(|ty| match ty {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or_else(|| error(format!("no definition of struct {strukt}")))?;
    let found = find_member(btf, &definition, member, 0).map_err(|e| error(e.to_string()))?;
    let (bits, bitfield) =
        found.ok_or_else(|| error(format!("struct {strukt} has no member {member}")))?;
    // eBPF programs read whole bytes at the offset: a bitfield cannot be read that way.
    if bitfield.is_some_and(|size| size != 0) || !bits.is_multiple_of(8) {
        return Err(error(format!(
            "member is a bitfield or not byte-aligned (bit offset {bits})"
        )));
    }
    Ok(bits / 8)
}

/// Bit offset and bitfield size of `name` in `s`. C lets members of anonymous structs and
/// unions be named as members of the enclosing struct (the kernel moves `struct file` and
/// `struct qstr` members into such unions), so those are searched too, adding their offset.
fn find_member(
    btf: &Btf,
    s: &Struct,
    name: &str,
    depth: usize,
) -> btf_rs::Result<Option<(u64, Option<u32>)>> {
    if depth > MAX_DEPTH {
        return Err(btf_rs::Error::Format(
            "anonymous members nest too deep".into(),
        ));
    }
    for m in &s.members {
        let base = u64::from(m.bit_offset());
        let member_name = btf.resolve_name(m)?;
        if member_name == name {
            return Ok(Some((base, m.bitfield_size())));
        }
        if member_name.is_empty() {
            if let Some(inner) = anonymous_composite(btf, m)? {
                if let Some((bits, bitfield)) = find_member(btf, &inner, name, depth + 1)? {
                    return Ok(Some((base + bits, bitfield)));
                }
            }
        }
    }
    Ok(None)
}

/// The struct or union an anonymous member holds, seen through typedefs and qualifiers.
fn anonymous_composite(btf: &Btf, m: &Member) -> btf_rs::Result<Option<Struct>> {
    let mut ty = btf.resolve_chained_type(m)?;
    for _ in 0..MAX_DEPTH {
        ty = match ty {
            Type::Struct(s) | Type::Union(s) => return Ok(Some(s)),
            Type::Typedef(t) => btf.resolve_chained_type(&t)?,
            Type::Const(t) | Type::Volatile(t) | Type::Restrict(t) => {
                btf.resolve_chained_type(&t)?
            }
            Type::TypeTag(t) => btf.resolve_chained_type(&t)?,
            _ => return Ok(None),
        };
    }
    Err(btf_rs::Error::Format("type chain too long".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const PTR: u64 = std::mem::size_of::<usize>() as u64;

    fn kernel() -> KernelOffsets {
        match KernelOffsets::from_kernel() {
            Ok(o) => o,
            Err(e) => panic!("reading {VMLINUX_BTF}: {e}"),
        }
    }

    #[test]
    fn kernel_offsets_resolve_and_are_plausible() {
        let o = kernel();
        for (name, value) in o.globals() {
            println!("{name} = {value}");
        }
        // Layouts every kernel has had: `struct path` is two pointers, `fs_struct` holds two
        // adjacent paths, `qstr` starts with a 64-bit hash_len union, and `vfsmount` and
        // `inode` start with mnt_root and i_mode.
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.path_dentry, o.path_mnt + PTR);
        assert_eq!(o.fs_pwd, o.fs_root + 2 * PTR);
        assert_eq!(o.qstr_name, 8);
        let len_in_hash_len = if cfg!(target_endian = "little") { 4 } else { 0 };
        assert_eq!(o.qstr_len, len_in_hash_len);
        assert_eq!(o.vfsmount_root, 0);
        assert_eq!(o.inode_mode, 0);
        // Pointers and embedded pointer-holding structs are pointer-aligned.
        for off in [
            o.task_files,
            o.task_fs,
            o.files_fdt,
            o.fdtable_fd,
            o.file_path,
            o.file_inode,
            o.path_dentry,
            o.inode_sb,
            o.dentry_parent,
            o.dentry_name,
            o.dentry_inode,
            o.qstr_name,
            o.mount_mnt,
            o.mount_parent,
            o.mount_mountpoint,
            o.fs_root,
            o.fs_pwd,
        ] {
            assert!(off.is_multiple_of(PTR), "{o:?}");
        }
        // task_struct is large; files and fs are far from its start.
        assert!(o.task_files > 64 && o.task_fs > 64, "{o:?}");
    }

    /// This kernel (6.13 or later) counts a file's references in `f_ref`, from 0; an
    /// older one's `f_count` is also an 8-byte member, counting from 1.
    #[test]
    fn file_reference_count_is_found() {
        let r = FileRefCount::from_kernel().unwrap();
        let btf = Btf::from_file(Path::new(VMLINUX_BTF)).unwrap();
        match member_offset(&btf, Path::new(VMLINUX_BTF), "file", "f_ref") {
            Ok(offset) => assert_eq!(r, FileRefCount { offset, one: 0 }),
            Err(_) => assert_eq!(r.one, 1),
        }
        assert!(r.offset.is_multiple_of(8) && r.offset > 0, "{r:?}");
    }

    /// This kernel keeps an io_uring request's names as `struct filename *`, so the
    /// programs copy them; a member of another type, or a missing one, says no.
    #[test]
    fn uring_filenames_are_pointers_here() {
        assert!(uring_filenames_are_pointers().unwrap());
        let btf = Btf::from_file(Path::new(VMLINUX_BTF)).unwrap();
        assert!(!points_to(&btf, "io_rename", "old_dfd", "filename").unwrap());
        assert!(!points_to(&btf, "io_rename", "flags", "filename").unwrap());
        assert!(!points_to(&btf, "io_rename", "no_such_member", "filename").unwrap());
        assert!(!points_to(&btf, "io_open", "file", "filename").unwrap());
    }

    #[test]
    fn members_of_one_struct_have_distinct_offsets() {
        let globals = kernel().globals();
        let mut seen = HashSet::new();
        for ((_, _, strukt, member), (_, value)) in LAYOUT.iter().zip(globals) {
            assert!(
                seen.insert((*strukt, value)),
                "{strukt}.{member} = {value} shared"
            );
        }
    }

    #[test]
    fn global_names_follow_field_names() {
        let globals = KernelOffsets::default().globals();
        let mut names = HashSet::new();
        for ((field, global, _, _), (name, _)) in LAYOUT.iter().zip(globals) {
            assert_eq!(*global, name);
            assert_eq!(name, format!("RILL_OFF_{}", field.to_uppercase()));
            assert!(names.insert(name), "{name} repeated");
        }
        assert_eq!(names.len(), OFFSET_COUNT);
        // Each field lands in its own global, in field order.
        let o = KernelOffsets {
            task_files: 1,
            fs_umask: 29,
            ..Default::default()
        };
        assert_eq!(o.globals()[0], ("RILL_OFF_TASK_FILES", 1));
        assert_eq!(o.globals()[28], ("RILL_OFF_FS_UMASK", 29));
    }

    #[test]
    fn missing_struct_or_member_is_a_layout_error() {
        let path = Path::new(VMLINUX_BTF);
        let btf = Btf::from_file(path).expect("kernel BTF parses");
        for (strukt, member) in [("task_struct", "no_such_member"), ("no_such_struct", "x")] {
            match member_offset(&btf, path, strukt, member) {
                Err(DriverError::BtfLayout { what, .. }) => {
                    assert_eq!(what, format!("{strukt}.{member}"))
                }
                other => panic!("{strukt}.{member}: {other:?}"),
            }
        }
        // A bitfield (`unsigned sched_reset_on_fork:1`) cannot be read by byte offset.
        let bitfield = member_offset(&btf, path, "task_struct", "sched_reset_on_fork");
        assert!(
            matches!(bitfield, Err(DriverError::BtfLayout { .. })),
            "{bitfield:?}"
        );
    }

    #[test]
    fn missing_file_is_no_btf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        match KernelOffsets::from_btf_file(&path) {
            Err(DriverError::NoBtf { path: p }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_or_garbage_btf_is_an_error() {
        let full = std::fs::read(VMLINUX_BTF).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        // Empty, mid-header, header only, mid-types, and missing the final NUL of the strings.
        for len in [0, 10, 24, 100, full.len() / 2, full.len() - 1] {
            std::fs::write(&path, &full[..len]).unwrap();
            let result = KernelOffsets::from_btf_file(&path);
            assert!(
                matches!(result, Err(DriverError::BtfLayout { .. })),
                "{len} bytes: {result:?}"
            );
        }
        std::fs::write(&path, b"not BTF at all, not BTF at all").unwrap();
        let result = KernelOffsets::from_btf_file(&path);
        assert!(
            matches!(result, Err(DriverError::BtfLayout { .. })),
            "{result:?}"
        );
        // The untruncated copy still resolves, so the errors above come from the truncation.
        std::fs::write(&path, &full).unwrap();
        assert_eq!(KernelOffsets::from_btf_file(&path).unwrap(), kernel());
    }

    /// Independent check of the resolver against bpftool's raw dump (scripts/setup
    /// installs bpftool, so its absence is a failure, not a skip).
    #[test]
    fn agrees_with_bpftool() {
        let out = match std::process::Command::new("bpftool")
            .args(["btf", "dump", "file", VMLINUX_BTF, "format", "raw"])
            .output()
        {
            Ok(out) if out.status.success() => out.stdout,
            other => panic!("bpftool btf dump failed (run scripts/setup): {other:?}"),
        };
        let dump = String::from_utf8_lossy(&out);
        let o = kernel();
        // Members directly in a named struct, as bpftool prints them:
        //   [id] STRUCT 'path' size=16 vlen=2
        //           'mnt' type_id=.. bits_offset=0
        for (strukt, member, expected) in [
            ("path", "dentry", o.path_dentry),
            ("task_struct", "files", o.task_files),
        ] {
            let header = format!("STRUCT '{strukt}' size=");
            let bits = dump
                .split("\n[")
                .filter(|block| block.contains(&header) && !block.contains("vlen=0"))
                .flat_map(|block| block.lines())
                .find_map(|line| {
                    line.trim()
                        .strip_prefix(&format!("'{member}' "))?
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("bits_offset="))?
                        .parse::<u64>()
                        .ok()
                });
            assert_eq!(bits, Some(expected * 8), "{strukt}.{member}");
        }
    }
}
