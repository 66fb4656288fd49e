//! The capture record.
//!
//! ```text
//! offset  size  field
//!      0     4  len        bytes in this record: header + all sections (padding excluded)
//!      4     1  version    ABI_VERSION
//!      5     1  kind       Kind
//!      6     2  flags      FLAG_* bits
//!      8     8  ktime_ns   CLOCK_MONOTONIC time the operation completed
//!     16     4  pid        thread-group id of the caller
//!     20     4  tid        thread id of the caller
//!     24     8  dev        kernel device number of the file system (0 when unknown)
//!     32     8  ino        inode of the object (fd operations) or of the base directory
//!     40    32  args[4]    kind-specific numbers, see Kind
//!     72    24  sections   byte length of each Section (u32), in Section order
//!     96     -  sections   concatenated, no padding between them
//! ```
//! The next record starts at `align_up(len, RECORD_ALIGN)`, so a stream of records is
//! self-delimiting. All integers are little-endian.

/// Bumped on any incompatible change to the layout below. The version the driver writes,
/// and every record that needs nothing newer.
pub const ABI_VERSION: u8 = 1;
/// The newest version this build reads and writes. Version 2 adds a `Prune`'s name rules
/// (see [`Kind`]); only a record that uses them is written as version 2, so a reader of
/// version 1 refuses that record (rather than removing names the rules spare) and reads
/// every other.
pub const ABI_VERSION_MAX: u8 = 2;
/// Records start on this boundary.
pub const RECORD_ALIGN: usize = 8;
/// Size of [`RecordHeader`] in bytes.
pub const HEADER_SIZE: usize = core::mem::size_of::<RecordHeader>();
/// Number of variable sections after the header.
pub const SECTION_COUNT: usize = 6;

/// The write's data is not inline because it exceeded the inline-data limit.
pub const FLAG_RANGE_ONLY: u16 = 1 << 0;
/// The write's data is not inline because the driver was throttling.
pub const FLAG_THROTTLED: u16 = 1 << 1;
/// The write was an append (`O_APPEND` or `RWF_APPEND`); the offset is end-of-file.
pub const FLAG_APPEND: u16 = 1 << 2;
/// A path section is incomplete (deeper than the driver walks); treat the object as dirty.
pub const FLAG_PATH_TRUNCATED: u16 = 1 << 3;
/// The user buffer could not be read; the data is not inline.
pub const FLAG_DATA_FAULT: u16 = 1 << 4;
/// `dev` and `ino` identify the object itself (an operation on an open file), not the
/// directory a name was resolved against.
pub const FLAG_OBJECT_ID: u16 = 1 << 5;
/// The record carries no path: it is the path last sent with the same cookie (`args[3]`
/// of a record with `FLAG_OBJECT_ID`). Operations through an open file repeat one path,
/// and the in-kernel walk is the most expensive part of their records, so the driver sends
/// it once per open file and again after any rename (which may change it).
pub const FLAG_PATH_CACHED: u16 = 1 << 6;
/// The record carries the values the operation set (a `Utimes`'s times in `args`, a
/// `SetXattr`'s value in the data section), so it can be applied where the source is not.
/// The driver sets it when it copied them from the caller (explicit times, a value of at
/// most 64 KiB); otherwise userspace reads them from the source file before sending.
pub const FLAG_VALUES: u16 = 1 << 7;
/// A `Chown` or `Utimes` by name acted on a final symlink itself (`lchown`, `fchownat` or
/// `utimensat` with `AT_SYMLINK_NOFOLLOW`). Without it such a call by name followed a final
/// symlink, and the reader names the file it reached: whether the name was a symlink can
/// only be told close to the call, and a later operation may make it one or stop it being
/// one.
pub const FLAG_NOFOLLOW: u16 = 1 << 8;
/// `dev` and `ino` identify the file a call by name reached (`truncate(2)`, through a
/// final symlink too) as the capture's reader found it, close to the call, and `args[3]`
/// when it looked (CLOCK_MONOTONIC ns); never with [`FLAG_OBJECT_ID`]. The operation stays
/// one by name: applied on a replica through the name, as the call was. The source reads
/// the file's times after it, and needs to know which file that was once later renames
/// and exchanges have moved names about (see `Written` in the engine's resolver).
pub const FLAG_REACHED_ID: u16 = 1 << 9;
/// With [`FLAG_REACHED_ID`]: the name was a symlink when the reader looked, so the call
/// changed the file the link leads to, and a later removal of the name removes the link,
/// not that file (whose times are still due: see `Written` in the engine's resolver).
pub const FLAG_REACHED_THROUGH_LINK: u16 = 1 << 10;
/// The largest extended attribute value Linux stores (`XATTR_SIZE_MAX`).
pub const XATTR_VALUE_MAX: u64 = 65536;
/// The largest name list of a `Prune` (131,072 names of 255 bytes and a separator, the
/// most `MaxRemoveOrphansOpSize` allows, fit).
pub const PRUNE_DATA_MAX: u64 = 32 << 20;
/// `Create`: the bit of `args[1]` (the open flags) set when the open also truncated an
/// existing file. It is Linux's `O_TRUNC`, and records carry it so whichever platform
/// wrote them.
pub const OPEN_TRUNC: u64 = 0o1000;
/// `Prune`: `args[0]` bit for a range bounded above (its data holds `until`).
pub const PRUNE_BOUNDED: u64 = 1;
/// The most name rules a `Prune` carries.
pub const PRUNE_RULES_MAX: usize = 1024;
/// The largest name section of a `Prune` (its rules): [`PRUNE_RULES_MAX`] rules of a tag
/// byte and a NUL-terminated name of at most 255 bytes.
pub const PRUNE_RULES_DATA_MAX: u64 = PRUNE_RULES_MAX as u64 * (1 + 255 + 1);
/// A `Prune` rule's tag: bit 0 set for a rule that protects the names it matches
/// (`Inc`), bits 1-2 which names it matches: [`PRUNE_MATCH_ALL`] (no name follows),
/// [`PRUNE_MATCH_EXACT`] or [`PRUNE_MATCH_WILDCARD`] (a NUL-terminated name follows).
pub const PRUNE_RULE_INCLUDE: u8 = 1;
/// A `Prune` rule that matches every name.
pub const PRUNE_MATCH_ALL: u8 = 0 << 1;
/// A `Prune` rule that matches one name.
pub const PRUNE_MATCH_EXACT: u8 = 1 << 1;
/// A `Prune` rule that matches the names of a wildcard (`*`, `?`).
pub const PRUNE_MATCH_WILDCARD: u8 = 2 << 1;
/// The data section holds fewer bytes than `args[1]` for a reason given by another flag.
pub const FLAG_PARTIAL_MASK: u16 = FLAG_RANGE_ONLY | FLAG_THROTTLED | FLAG_DATA_FAULT;

/// `Dirty` reasons (`args[0]`).
pub const DIRTY_RING_FULL: u64 = 1;
/// The ring was above the stop-replicating percentage.
pub const DIRTY_STOP_LIMIT: u64 = 2;
/// The path could not be resolved completely.
pub const DIRTY_PATH_UNKNOWN: u64 = 3;
/// Modified without a syscall the driver sees (fanotify modify, mmap).
pub const DIRTY_MODIFIED: u64 = 4;
/// The dirty-file map itself overflowed: every watched path must be rescanned.
pub const DIRTY_RESCAN_ALL: u64 = 5;

/// What a record describes. `args` and sections per kind:
///
/// | kind | args | sections |
/// |---|---|---|
/// | Write | offset, len | path, data (≤ len bytes) |
/// | Create | mode, open flags | path |
/// | Truncate | size | path |
/// | Fallocate | mode, offset, len | path |
/// | Unlink, Rmdir | - | path |
/// | Utimes | with `FLAG_VALUES`: atime s, atime ns \| mtime ns << 32, mtime s | path |
/// | Mkdir | mode | path |
/// | Mknod | mode (with type bits), rdev | path |
/// | Rename | renameat2 flags | path (old), path2 (new) |
/// | Link | flags | path (new name), path2 (existing file) |
/// | Symlink | - | path (the link), name (its target text) |
/// | Chmod | mode | path |
/// | Chown | uid, gid (u32::MAX: unchanged) | path |
/// | SetXattr, RemoveXattr | flags, value size | path, name (attribute name), data (the value, with `FLAG_VALUES`) |
/// | Dirty | reason (DIRTY_*) | path |
/// | Prune | `PRUNE_BOUNDED` | path (a directory), data: NUL-terminated names: `after` (may be empty), `until` (if bounded), then the names kept; version 2: name: the directory's name rules, most specific first, each a tag byte (`PRUNE_RULE_*`, `PRUNE_MATCH_*`) and for an exact or wildcard rule a NUL-terminated name |
/// | Overflow | records lost | - |
///
/// Records of operations on an open file (`FLAG_OBJECT_ID`) carry a path cookie in
/// `args[3]`, and with `FLAG_PATH_CACHED` no path section (see that flag).
///
/// A new kind touches (the guard `engine/src/proto/tests/kinds.rs` does not compile until
/// the kind has a sample record there, and fails until the encodings below carry it):
/// 1. `ebpf/src/handlers.rs` (and `ebpf/src/uring.rs` for an io_uring request): the
///    program that writes its record; `syscalls.rs` and `driver-linux/src/loader.rs` for
///    a syscall not attached yet.
/// 2. This file: the variant, [`Kind::ALL`], [`Kind::name`], [`Kind::category`], the table
///    above, and the section caps of [`Record::decode`] if it carries data or a name.
/// 3. `ops/src/event.rs`: its `Op`, `Op::kind`, `Event::to_json`, and `Event::paths` for a
///    second name (a target confines the names it lists).
/// 4. `ops/src/decode.rs` (record → `Op`) and `ops/src/codec.rs` (`Op` → record; a second
///    name given back relative in `decode_in`).
/// 5. The source: `engine/src/resolve/mod.rs` (values read, names made relative),
///    `engine/src/drain.rs` (which names a replication set judges) and
///    `engine/src/mirror/pending.rs` (`leaves`: whether the mirror reads what it did).
/// 6. The replica: `engine/src/apply/mod.rs` (and `engine/src/target/session.rs` if a
///    target refuses it).
/// 7. `driver-linux/src/fanotify/translate.rs` if the fallback sees it; the tests
///    `tests/tests/capture_ebpf.rs` (exact capture) and the replication fuzzer's workload
///    (`tests/src/replfuzz/generate.rs`, `ops.rs`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Write = 1,
    Create = 2,
    Truncate = 3,
    Fallocate = 4,
    Unlink = 5,
    Rmdir = 6,
    Mkdir = 7,
    Mknod = 8,
    Rename = 9,
    Link = 10,
    Symlink = 11,
    Chmod = 12,
    Chown = 13,
    Utimes = 14,
    SetXattr = 15,
    RemoveXattr = 16,
    Dirty = 17,
    Overflow = 18,
    /// Never from a driver: the mirror's list of the names a directory keeps on a replica.
    Prune = 19,
}

impl Kind {
    /// Every kind, in numeric order.
    pub const ALL: [Kind; 19] = [
        Kind::Write,
        Kind::Create,
        Kind::Truncate,
        Kind::Fallocate,
        Kind::Unlink,
        Kind::Rmdir,
        Kind::Mkdir,
        Kind::Mknod,
        Kind::Rename,
        Kind::Link,
        Kind::Symlink,
        Kind::Chmod,
        Kind::Chown,
        Kind::Utimes,
        Kind::SetXattr,
        Kind::RemoveXattr,
        Kind::Dirty,
        Kind::Overflow,
        Kind::Prune,
    ];

    pub const fn from_u8(v: u8) -> Option<Kind> {
        if v >= 1 && v as usize <= Self::ALL.len() {
            Some(Self::ALL[v as usize - 1])
        } else {
            None
        }
    }

    /// The name used on the command line, in JSON and in logs.
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Create => "create",
            Kind::Truncate => "truncate",
            Kind::Fallocate => "fallocate",
            Kind::Unlink => "unlink",
            Kind::Rmdir => "rmdir",
            Kind::Mkdir => "mkdir",
            Kind::Mknod => "mknod",
            Kind::Rename => "rename",
            Kind::Link => "link",
            Kind::Symlink => "symlink",
            Kind::Chmod => "chmod",
            Kind::Chown => "chown",
            Kind::Utimes => "utimes",
            Kind::SetXattr => "setxattr",
            Kind::RemoveXattr => "removexattr",
            Kind::Dirty => "dirty",
            Kind::Overflow => "overflow",
            Kind::Prune => "prune",
        }
    }

    /// The statistics category a record of this kind is counted under.
    pub const fn category(self) -> crate::maps::Category {
        use crate::maps::Category;
        match self {
            Kind::Write => Category::Data,
            Kind::Create | Kind::Truncate | Kind::Fallocate => Category::Size,
            Kind::Unlink
            | Kind::Rmdir
            | Kind::Mkdir
            | Kind::Mknod
            | Kind::Rename
            | Kind::Link
            | Kind::Symlink
            | Kind::Prune => Category::Namespace,
            Kind::Chmod | Kind::Chown | Kind::Utimes => Category::Attr,
            Kind::SetXattr | Kind::RemoveXattr => Category::Xattr,
            Kind::Dirty | Kind::Overflow => Category::Meta,
        }
    }
}

/// The variable parts of a record, in the order they follow the header.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    /// Components of the base directory (or of the object itself), leaf first; see [`crate::path`].
    PathBase = 0,
    /// The name the caller passed, relative to `PathBase` (empty for fd operations).
    PathName = 1,
    /// Second path (rename's new name, link's existing file), same encoding.
    Path2Base = 2,
    Path2Name = 3,
    /// Symlink target text or extended-attribute name.
    Name = 4,
    /// Inline write data.
    Data = 5,
}

/// The fixed part of every record. See the module docs for the byte layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub version: u8,
    pub kind: u8,
    pub flags: u16,
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub dev: u64,
    pub ino: u64,
    pub args: [u64; 4],
    pub sections: [u32; SECTION_COUNT],
}

const _: () = assert!(HEADER_SIZE == 96);
const _: () = assert!(HEADER_SIZE.is_multiple_of(RECORD_ALIGN));

/// Rounds `n` up to the record alignment.
pub const fn align_up(n: usize) -> usize {
    (n + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// Why bytes could not be decoded as a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a header, or than the header's `len`.
    Truncated { needed: usize, available: usize },
    /// `len` is smaller than the header or disagrees with the section lengths.
    BadLength { len: u32, sections_total: usize },
    /// A record of another ABI version.
    BadVersion(u8),
    /// A kind this version does not define.
    BadKind(u8),
    /// A section is longer than the kind allows (data beyond the write's length).
    BadSection(Section),
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            DecodeError::Truncated { needed, available } => write!(
                f,
                "truncated record: needs {needed} bytes, {available} available"
            ),
            DecodeError::BadLength {
                len,
                sections_total,
            } => write!(
                f,
                "corrupt record: length {len} but header and sections need {}",
                HEADER_SIZE + sections_total
            ),
            DecodeError::BadVersion(v) => write!(
                f,
                "record of ABI version {v}, this build reads versions {ABI_VERSION} to {ABI_VERSION_MAX}"
            ),
            DecodeError::BadKind(k) => write!(f, "corrupt record: unknown kind {k}"),
            DecodeError::BadSection(s) => write!(f, "corrupt record: section {s:?} too long"),
        }
    }
}

impl RecordHeader {
    /// The header at the start of `buf`, as stored, unchecked (no version, kind or length
    /// check: [`Record::decode`] does those); `None` if `buf` is shorter than a header. For
    /// a reader that must know a record's layout before the whole record has arrived.
    pub fn peek(buf: &[u8]) -> Option<RecordHeader> {
        (buf.len() >= HEADER_SIZE).then(|| read_header(buf))
    }
}

/// A decoded record, borrowing its sections from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub header: RecordHeader,
    pub kind: Kind,
    sections: [&'a [u8]; SECTION_COUNT],
}

impl<'a> Record<'a> {
    /// Decodes the record at the start of `buf`. Returns it and the number of bytes to skip
    /// to reach the next record (its length rounded up to [`RECORD_ALIGN`], capped at
    /// `buf.len()` so the last record of a buffer needs no trailing padding).
    pub fn decode(buf: &'a [u8]) -> Result<(Record<'a>, usize), DecodeError> {
        if buf.len() < HEADER_SIZE {
            return Err(DecodeError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let header = read_header(buf);
        if !(ABI_VERSION..=ABI_VERSION_MAX).contains(&header.version) {
            return Err(DecodeError::BadVersion(header.version));
        }
        let kind = Kind::from_u8(header.kind).ok_or(DecodeError::BadKind(header.kind))?;
        let sections_total: usize = header.sections.iter().map(|&l| l as usize).sum(); // 6 × u32 fits usize on 64-bit
        let len = header.len as usize;
        if len != HEADER_SIZE + sections_total {
            return Err(DecodeError::BadLength {
                len: header.len,
                sections_total,
            });
        }
        if buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                available: buf.len(),
            });
        }
        let data_len = header.sections[Section::Data as usize] as u64;
        let data_max = match kind {
            Kind::Write => header.args[1],
            Kind::SetXattr if header.flags & FLAG_VALUES != 0 => XATTR_VALUE_MAX,
            Kind::Prune => PRUNE_DATA_MAX,
            _ => 0,
        };
        if data_len > data_max {
            return Err(DecodeError::BadSection(Section::Data));
        }
        let name_max = match kind {
            Kind::Prune if header.version >= 2 => PRUNE_RULES_DATA_MAX,
            Kind::Prune => 0,
            _ => u64::MAX,
        };
        if header.sections[Section::Name as usize] as u64 > name_max {
            return Err(DecodeError::BadSection(Section::Name));
        }
        let mut sections: [&'a [u8]; SECTION_COUNT] = [&[]; SECTION_COUNT];
        let mut at = HEADER_SIZE;
        for (slot, &l) in sections.iter_mut().zip(header.sections.iter()) {
            *slot = &buf[at..at + l as usize];
            at += l as usize;
        }
        let advance = core::cmp::min(align_up(len), buf.len());
        Ok((
            Record {
                header,
                kind,
                sections,
            },
            advance,
        ))
    }

    pub fn section(&self, s: Section) -> &'a [u8] {
        self.sections[s as usize]
    }

    pub fn flags(&self) -> u16 {
        self.header.flags
    }

    pub fn arg(&self, i: usize) -> u64 {
        self.header.args[i]
    }

    /// Encodes a record into `out`, returning the bytes written (not padded). Drivers that
    /// build records in userspace (fanotify, tests, the Windows core) use this; the eBPF
    /// programs write the same layout field by field.
    pub fn encode(
        header: &RecordHeader,
        sections: [&[u8]; SECTION_COUNT],
        out: &mut [u8],
    ) -> Result<usize, DecodeError> {
        let lens = sections.map(<[u8]>::len);
        let len = HEADER_SIZE + lens.iter().sum::<usize>();
        if out.len() < len {
            return Err(DecodeError::Truncated {
                needed: len,
                available: out.len(),
            });
        }
        out[..HEADER_SIZE].copy_from_slice(&Record::encode_header(header, lens)?);
        let mut at = HEADER_SIZE;
        for s in sections {
            out[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
        Ok(len)
    }

    /// The header of a record whose sections have the lengths `lens`, to be followed by
    /// the sections themselves: for a writer that appends a record piece by piece
    /// instead of into a buffer made (and zeroed) for all of it.
    pub fn encode_header(
        header: &RecordHeader,
        lens: [usize; SECTION_COUNT],
    ) -> Result<[u8; HEADER_SIZE], DecodeError> {
        let total: usize = lens.iter().sum();
        let bad = DecodeError::BadLength {
            len: u32::MAX,
            sections_total: total,
        };
        let mut h = *header;
        h.len = u32::try_from(HEADER_SIZE + total).map_err(|_| bad)?;
        // A writer that needs a newer version says so; every other gets the oldest.
        h.version = header.version.clamp(ABI_VERSION, ABI_VERSION_MAX);
        for (slot, l) in h.sections.iter_mut().zip(lens) {
            *slot = u32::try_from(l).map_err(|_| bad)?;
        }
        let mut b = [0u8; HEADER_SIZE];
        write_header(&h, &mut b);
        Ok(b)
    }
}

/// Splits a buffer of consecutive records, stopping at the first error.
pub fn records(buf: &[u8]) -> impl Iterator<Item = Result<Record<'_>, DecodeError>> {
    let mut rest = buf;
    let mut failed = false;
    core::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        match Record::decode(rest) {
            Ok((r, n)) => {
                rest = &rest[n..];
                Some(Ok(r))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

// Field by field rather than a pointer cast: the input may be unaligned (a journal slice)
// and the host may be big-endian; the wire format is little-endian either way.
fn read_header(b: &[u8]) -> RecordHeader {
    let mut args = [0u64; 4];
    for (i, a) in args.iter_mut().enumerate() {
        *a = u64_at(b, 40 + 8 * i);
    }
    let mut sections = [0u32; SECTION_COUNT];
    for (i, s) in sections.iter_mut().enumerate() {
        *s = u32_at(b, 72 + 4 * i);
    }
    RecordHeader {
        len: u32_at(b, 0),
        version: b[4],
        kind: b[5],
        flags: u16_at(b, 6),
        ktime_ns: u64_at(b, 8),
        pid: u32_at(b, 16),
        tid: u32_at(b, 20),
        dev: u64_at(b, 24),
        ino: u64_at(b, 32),
        args,
        sections,
    }
}

fn write_header(h: &RecordHeader, b: &mut [u8]) {
    b[0..4].copy_from_slice(&h.len.to_le_bytes());
    b[4] = h.version;
    b[5] = h.kind;
    b[6..8].copy_from_slice(&h.flags.to_le_bytes());
    b[8..16].copy_from_slice(&h.ktime_ns.to_le_bytes());
    b[16..20].copy_from_slice(&h.pid.to_le_bytes());
    b[20..24].copy_from_slice(&h.tid.to_le_bytes());
    b[24..32].copy_from_slice(&h.dev.to_le_bytes());
    b[32..40].copy_from_slice(&h.ino.to_le_bytes());
    for (i, a) in h.args.iter().enumerate() {
        b[40 + 8 * i..48 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    for (i, s) in h.sections.iter().enumerate() {
        b[72 + 4 * i..76 + 4 * i].copy_from_slice(&s.to_le_bytes());
    }
}
