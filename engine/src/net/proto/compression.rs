//! Compression of Op bodies: which ops to compress (the guide's `MinCompressionFileSize`
//! and `SkipCompressionFileExt`), and zstd in and out of a frame.
//!
//! The caller decides per op with [`Compression::wants`] (it knows the file and its size;
//! the frame layer only sees opaque bytes) and passes the answer in a `Policy`. The
//! decoder trusts nothing: a compressed body must be a single zstd frame that declares
//! its decompressed size, the size is checked against the cap before anything is
//! allocated, and decompression writes into exactly that much room, so a zip bomb is an
//! error that costs at most the cap.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::io::Cursor;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use zstd::bulk::{Compressor, Decompressor};

use super::frame::Policy;
use super::ProtoError;

/// The guide's default `SkipCompressionFileExt` (Linux): types that are already compressed.
pub const DEFAULT_SKIP_EXT: &str =
    "mp3.exe.wmv.wma.qt.mpg.mpeg.zip.jpg.jpeg.tiff.rar.cab.tgz.bz.bz2.z.pkg.sea.sit.sitx";
/// The guide's default `MinCompressionFileSize`, in bytes.
pub const DEFAULT_MIN_FILE_SIZE: u64 = 1024;
/// zstd's default level: a good ratio at a cost far below a network's.
pub const DEFAULT_LEVEL: i32 = 3;

/// When a job compresses the bodies of its ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compression {
    /// `MinCompressionFileSize`: files smaller than this are sent as they are.
    pub min_file_size: u64,
    /// `SkipCompressionFileExt`: extensions (without the dot; compared ignoring case)
    /// never compressed.
    pub skip_ext: Vec<String>,
    /// zstd level.
    pub level: i32,
    pub enabled: bool,
}

impl Default for Compression {
    /// The guide's defaults, compression off (it is chosen per job).
    fn default() -> Self {
        Compression {
            min_file_size: DEFAULT_MIN_FILE_SIZE,
            skip_ext: parse_ext_list(DEFAULT_SKIP_EXT),
            level: DEFAULT_LEVEL,
            enabled: false,
        }
    }
}

/// Splits the guide's period-delimited list ("mp3.zip.JPG") into extensions; empty entries
/// (doubled or leading periods) are dropped.
pub fn parse_ext_list(list: &str) -> Vec<String> {
    list.split('.')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Compression {
    /// Whether an op on `path`, a file of `file_size` bytes, should be sent compressed.
    pub fn wants(&self, path: &Path, file_size: u64) -> bool {
        if !self.enabled || file_size < self.min_file_size {
            return false;
        }
        match path.extension() {
            Some(ext) => !self.skip_ext.iter().any(|s| same_ext(ext, s)),
            None => true,
        }
    }

    /// The encoding policy for one op: `wants` turned into a `Policy`.
    pub fn policy(&self, path: &Path, file_size: u64) -> Policy {
        Policy {
            zstd_level: self.wants(path, file_size).then_some(self.level),
            ..Policy::PLAIN
        }
    }
}

/// Extension equality ignoring case; a leading dot in the listed one is tolerated.
fn same_ext(ext: &OsStr, listed: &str) -> bool {
    let listed = listed.strip_prefix('.').unwrap_or(listed);
    let ext = ext.as_bytes();
    if ext.is_ascii() && listed.is_ascii() {
        return ext.eq_ignore_ascii_case(listed.as_bytes());
    }
    // Non-ASCII extensions are rare; only they pay for Unicode case folding.
    match std::str::from_utf8(ext) {
        Ok(ext) => ext.to_lowercase() == listed.to_lowercase(),
        Err(_) => false,
    }
}

thread_local! {
    // zstd contexts cost hundreds of KiB to set up; one per thread is reused by every op.
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

/// Appends `body` compressed at `level` to `out` and returns true, or leaves `out` as it
/// was and returns false when compression would not make the body smaller.
pub(super) fn compress_into(
    body: &[u8],
    level: i32,
    out: &mut Vec<u8>,
) -> Result<bool, ProtoError> {
    let start = out.len();
    // Room for the worst case, so zstd never fails for lack of space; any failure left is
    // a real one.
    out.reserve(zstd::zstd_safe::compress_bound(body.len()));
    let result = COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let ctx = match &mut *cell {
            Some((l, ctx)) if *l == level => ctx,
            slot => {
                let ctx = Compressor::new(level)?;
                &mut slot.insert((level, ctx)).1
            }
        };
        let mut cursor = Cursor::new(&mut *out);
        cursor.set_position(start as u64);
        ctx.compress_to_buffer(body, &mut cursor)
    });
    match result {
        Ok(n) if n < body.len() => Ok(true),
        Ok(_) => {
            out.truncate(start);
            Ok(false)
        }
        Err(e) => {
            out.truncate(start);
            Err(ProtoError::Compress(e.to_string()))
        }
    }
}

/// The zstd frame magic, 0xFD2FB528 little-endian. Anything else (skippable frames, the
/// legacy formats the library would also read) is refused before zstd sees it.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Decompresses one zstd frame that declares a size of at most `cap` bytes.
pub(super) fn decompress(src: &[u8], cap: usize) -> Result<Vec<u8>, ProtoError> {
    if !src.starts_with(&ZSTD_MAGIC) {
        return Err(ProtoError::Decompress(format!(
            "starts with {:02x?}, not the zstd magic {ZSTD_MAGIC:02x?}",
            src.get(..4).unwrap_or(src)
        )));
    }
    let size = match zstd::zstd_safe::get_frame_content_size(src) {
        Ok(Some(size)) => size,
        Ok(None) => {
            return Err(ProtoError::Decompress(
                "the frame does not declare its decompressed size".into(),
            ))
        }
        Err(_) => return Err(ProtoError::Decompress("unreadable frame header".into())),
    };
    if size > cap as u64 {
        return Err(ProtoError::TooLarge {
            what: "decompressed Op body",
            len: size,
            max: cap as u64,
        });
    }
    // size <= cap, and cap came from a usize.
    let size = size as usize;
    let mut body = Vec::with_capacity(size);
    let result = DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let ctx = match &mut *cell {
            Some(ctx) => ctx,
            slot => slot.insert(Decompressor::new()?),
        };
        // The capacity is the limit: more output (a lying size, a second frame) fails.
        ctx.decompress_to_buffer(src, &mut body)
    });
    match result {
        Ok(n) if n == size => Ok(body),
        Ok(n) => Err(ProtoError::Decompress(format!(
            "it declares {size} bytes but holds {n}"
        ))),
        Err(e) => Err(ProtoError::Decompress(e.to_string())),
    }
}
