//! Path sections and how they become absolute paths.
//!
//! The kernel cannot afford to build a path string root-first: it walks from the object up
//! through `d_parent` (crossing mount points) and only learns the root last. So the
//! `PathBase` section holds that walk as it happened, **leaf first**, each component as one
//! length byte followed by that many name bytes (names are at most 255 bytes, as in every
//! Linux file system). An empty `PathBase` is the root directory.
//!
//! `PathName` is the name the caller passed to the syscall, relative to the base: the
//! directory of `dirfd`, the working directory, or, for names starting with `/`, the
//! caller's root. For fd operations it is empty and the base is the object itself.
//!
//! [`join_path`] combines the two into an absolute path, resolving `.` and `..` lexically:
//! the driver cannot follow symlinks in the name, so `link/..` resolves to the directory
//! holding `link` (the kernel would follow it). That case is rare in the paths programs
//! pass, and documented as a limit of syscall-level capture.

/// Why path sections could not be joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// A component's length byte runs past the section, or a component is empty or has a `/`.
    Corrupt,
    /// The joined path does not fit the output buffer.
    TooLong,
}

impl core::fmt::Display for PathError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PathError::Corrupt => f.write_str("corrupt path section"),
            PathError::TooLong => f.write_str("path too long for the output buffer"),
        }
    }
}

/// Maximum components a `PathBase` section may hold (bounded so decoding is bounded).
pub const MAX_COMPONENTS: usize = 256;

/// Joins a leaf-first `base` and a caller-supplied `name` into `out` as an absolute path
/// (no trailing slash except for `/` itself). Returns the number of bytes written.
pub fn join_path(base: &[u8], name: &[u8], out: &mut [u8]) -> Result<usize, PathError> {
    // Component start offsets, leaf first; decoded before writing so we can emit root-first.
    let mut starts = [0u16; MAX_COMPONENTS];
    let mut count = 0;
    let mut at = 0usize;
    while at < base.len() {
        let l = base[at] as usize;
        let comp = base.get(at + 1..at + 1 + l).ok_or(PathError::Corrupt)?;
        if l == 0 || comp.contains(&b'/') || count == MAX_COMPONENTS {
            return Err(PathError::Corrupt);
        }
        starts[count] = at as u16;
        count += 1;
        at += 1 + l;
    }
    let mut w = Writer { out, len: 0 };
    for &s in starts[..count].iter().rev() {
        let s = s as usize;
        let l = base[s] as usize;
        w.push_component(&base[s + 1..s + 1 + l])?;
    }
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => w.pop_component(),
            c => w.push_component(c)?,
        }
    }
    if w.len == 0 {
        w.push(b"/")?;
    }
    Ok(w.len)
}

struct Writer<'o> {
    out: &'o mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn push(&mut self, bytes: &[u8]) -> Result<(), PathError> {
        let end = self.len + bytes.len();
        self.out
            .get_mut(self.len..end)
            .ok_or(PathError::TooLong)?
            .copy_from_slice(bytes);
        self.len = end;
        Ok(())
    }

    fn push_component(&mut self, c: &[u8]) -> Result<(), PathError> {
        self.push(b"/")?;
        self.push(c)
    }

    fn pop_component(&mut self) {
        while self.len > 0 {
            self.len -= 1;
            if self.out[self.len] == b'/' {
                break;
            }
        }
    }
}
