//! The payloads of a verification: what a source asks of the replica (`Verify`) and
//! what the target found there (`Verified`).
//!
//! ```text
//! Verify     id u64, count u16, then per name:
//!              path bytes, first_block u64, blocks u32, list u8 (0|1)
//! Verified   id u64, count u16, then per name (in the order asked):
//!              kind u8, mode u32, uid u32, gid u32, size u64, mtime_s i64, mtime_ns u32,
//!              links u32, link bytes, xattr count u16 (name bytes, value bytes)*,
//!              sum count u32 (crc32c u32)*, name count u32 (name bytes)*, names_cut u8
//! bytes = u32 length, then that many bytes
//! ```
//!
//! # Why
//!
//! A verification request travels in the stream of operations, so the target answers
//! for the replica as it stands after every operation sent before the request (see
//! `crate::verify`). Neither frame carries a sequence number: a request is not kept for
//! resending, and one lost with its connection is asked again by the source.
//!
//! # Invariants
//!
//! Every count and length is checked against a cap before anything is allocated, and a
//! frame that breaks one is refused like any malformed frame: a peer's frame is untrusted.
//! The caps bound what one request costs the target: at most [`MAX_NAMES`] names and
//! [`MAX_BLOCKS`] block checksums (the largest `MaxChecksumBlocks` allows).

use super::frame::Kind;
use super::wire::{Reader, Writer};
use super::ProtoError;

/// Most names one request asks about: their inspection holds the target's applier, and
/// the answer must fit a frame even when every name carries a symlink and attributes.
pub const MAX_NAMES: usize = 256;
/// Most block checksums one request asks for in all (`MaxChecksumBlocks`' upper bound).
pub const MAX_BLOCKS: u32 = 4096;
/// Most names of one directory listed in an answer; a longer directory is cut
/// (`names_cut`) and its extra names past the cut are not looked for.
pub const MAX_LISTED: usize = 16_384;
/// Most extended attributes of one object in an answer.
pub const MAX_XATTRS: usize = 64;
/// Longest path, link text or attribute name (Linux's `PATH_MAX`).
pub const MAX_NAME_BYTES: usize = 4096;
/// Longest attribute value (Linux's `XATTR_SIZE_MAX`).
pub const MAX_VALUE_BYTES: usize = 65_536;

/// One name asked about. Paths are relative to the job's source and target paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub path: Vec<u8>,
    /// The block checksums wanted: `blocks` blocks from `first_block` (none: 0).
    pub first_block: u64,
    pub blocks: u32,
    /// Whether a directory's names are wanted (to find names only the replica has).
    pub list: bool,
}

/// What an object is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjKind {
    Missing = 0,
    File = 1,
    Dir = 2,
    Symlink = 3,
    /// A FIFO, socket or device.
    Special = 4,
}

impl ObjKind {
    fn from_u8(v: u8) -> Option<ObjKind> {
        [
            ObjKind::Missing,
            ObjKind::File,
            ObjKind::Dir,
            ObjKind::Symlink,
            ObjKind::Special,
        ]
        .into_iter()
        .find(|k| *k as u8 == v)
    }
}

/// What one side holds under a name: the attributes a verification compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspected {
    pub kind: Option<ObjKind>,
    /// Permission bits (and set-id, sticky), without the type.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, u32),
    /// Hard links to the object (a difference mirror writes in place only into a file
    /// that has no other name).
    pub links: u32,
    /// A symlink's text.
    pub link: Vec<u8>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// crc32c of each block asked for.
    pub sums: Vec<u32>,
    /// A directory's names, sorted, when asked for.
    pub names: Vec<Vec<u8>>,
    /// The listing was cut at [`MAX_LISTED`].
    pub names_cut: bool,
}

impl Inspected {
    pub fn kind(&self) -> ObjKind {
        self.kind.unwrap_or(ObjKind::Missing)
    }
}

/// The bytes `f` takes in a `Verified` payload.
pub fn encoded_len(f: &Inspected) -> usize {
    /// kind, mode, uid, gid, size, mtime, links, and the four counts and lengths,
    /// names_cut.
    const FIXED: usize = 1 + 4 * 3 + 8 + 8 + 4 + 4 + 4 + 2 + 4 + 4 + 1;
    FIXED
        + f.link.len()
        + f.xattrs
            .iter()
            .map(|(n, v)| 8 + n.len() + v.len())
            .sum::<usize>()
        + 4 * f.sums.len()
        + f.names.iter().map(|n| 4 + n.len()).sum::<usize>()
}

/// Appends a `Verify` payload.
pub(super) fn encode_asks(id: u64, asks: &[Ask], w: &mut Writer<'_>) -> Result<(), ProtoError> {
    w.u64(id);
    w.u16(count(w.kind(), "names", asks.len(), MAX_NAMES)? as u16);
    let mut blocks = 0u64;
    for a in asks {
        w.bytes("path", &a.path, MAX_NAME_BYTES)?;
        w.u64(a.first_block);
        w.u32(a.blocks);
        w.bool(a.list);
        blocks += u64::from(a.blocks);
    }
    count(w.kind(), "blocks", blocks as usize, MAX_BLOCKS as usize)?;
    Ok(())
}

/// Reads a `Verify` payload.
pub(super) fn decode_asks(r: &mut Reader<'_>) -> Result<(u64, Vec<Ask>), ProtoError> {
    let id = r.u64("id")?;
    let n = r.count16("names", MAX_NAMES)?;
    let mut asks = Vec::with_capacity(n);
    let mut blocks = 0u64;
    for _ in 0..n {
        let ask = Ask {
            path: r.bytes("path", MAX_NAME_BYTES)?,
            first_block: r.u64("first_block")?,
            blocks: r.u32("blocks")?,
            list: r.bool("list")?,
        };
        blocks += u64::from(ask.blocks);
        if blocks > u64::from(MAX_BLOCKS) {
            return Err(r.too_many("blocks", blocks as usize, MAX_BLOCKS as usize));
        }
        asks.push(ask);
    }
    Ok((id, asks))
}

/// Appends a `Verified` payload.
pub(super) fn encode_found(
    id: u64,
    found: &[Inspected],
    w: &mut Writer<'_>,
) -> Result<(), ProtoError> {
    w.u64(id);
    w.u16(count(w.kind(), "names", found.len(), MAX_NAMES)? as u16);
    for f in found {
        w.u8(f.kind() as u8);
        for v in [f.mode, f.uid, f.gid] {
            w.u32(v);
        }
        w.u64(f.size);
        w.u64(f.mtime.0 as u64);
        w.u32(f.mtime.1);
        w.u32(f.links);
        w.bytes("link", &f.link, MAX_NAME_BYTES)?;
        w.u16(count(w.kind(), "xattrs", f.xattrs.len(), MAX_XATTRS)? as u16);
        for (name, value) in &f.xattrs {
            w.bytes("xattr name", name, MAX_NAME_BYTES)?;
            w.bytes("xattr value", value, MAX_VALUE_BYTES)?;
        }
        w.u32(count(w.kind(), "sums", f.sums.len(), MAX_BLOCKS as usize)? as u32);
        for s in &f.sums {
            w.u32(*s);
        }
        w.u32(count(w.kind(), "listed names", f.names.len(), MAX_LISTED)? as u32);
        for n in &f.names {
            w.bytes("listed name", n, MAX_NAME_BYTES)?;
        }
        w.bool(f.names_cut);
    }
    Ok(())
}

/// Reads a `Verified` payload.
pub(super) fn decode_found(r: &mut Reader<'_>) -> Result<(u64, Vec<Inspected>), ProtoError> {
    let id = r.u64("id")?;
    let n = r.count16("names", MAX_NAMES)?;
    let mut found = Vec::with_capacity(n);
    for _ in 0..n {
        found.push(decode_one(r)?);
    }
    Ok((id, found))
}

fn decode_one(r: &mut Reader<'_>) -> Result<Inspected, ProtoError> {
    let kind = r.u8("kind")?;
    let kind = ObjKind::from_u8(kind).ok_or_else(|| {
        r.bad(
            "kind",
            kind.into(),
            "0 (missing), 1 (file), 2 (directory), 3 (symlink) or 4 (special)",
        )
    })?;
    let mut f = Inspected {
        kind: Some(kind),
        mode: r.u32("mode")?,
        uid: r.u32("uid")?,
        gid: r.u32("gid")?,
        size: r.u64("size")?,
        mtime: (r.u64("mtime_s")? as i64, r.u32("mtime_ns")?),
        links: r.u32("links")?,
        link: r.bytes("link", MAX_NAME_BYTES)?,
        ..Inspected::default()
    };
    let xattrs = r.count16("xattrs", MAX_XATTRS)?;
    for _ in 0..xattrs {
        let name = r.bytes("xattr name", MAX_NAME_BYTES)?;
        f.xattrs
            .push((name, r.bytes("xattr value", MAX_VALUE_BYTES)?));
    }
    let sums = r.count32("sums", MAX_BLOCKS as usize)?;
    for _ in 0..sums {
        f.sums.push(r.u32("sum")?);
    }
    let names = r.count32("listed names", MAX_LISTED)?;
    for _ in 0..names {
        f.names.push(r.bytes("listed name", MAX_NAME_BYTES)?);
    }
    f.names_cut = r.bool("names_cut")?;
    Ok(f)
}

/// `n` if it is within `max`, else the error naming the field.
fn count(kind: Kind, field: &'static str, n: usize, max: usize) -> Result<usize, ProtoError> {
    if n > max {
        return Err(ProtoError::TooMany {
            kind,
            field,
            count: n,
            max,
        });
    }
    Ok(n)
}

impl Reader<'_> {
    fn count16(&mut self, field: &'static str, max: usize) -> Result<usize, ProtoError> {
        let n = usize::from(self.u16(field)?);
        count(self.kind(), field, n, max)
    }

    fn count32(&mut self, field: &'static str, max: usize) -> Result<usize, ProtoError> {
        let n = self.u32(field)? as usize;
        count(self.kind(), field, n, max)
    }

    fn too_many(&self, field: &'static str, n: usize, max: usize) -> ProtoError {
        ProtoError::TooMany {
            kind: self.kind(),
            field,
            count: n,
            max,
        }
    }
}
