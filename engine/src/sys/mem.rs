//! Memory the kernel has demands on: a buffer aligned for direct I/O, a shared mapping of a
//! file.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::fs::File;
use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// A zeroed buffer whose start is aligned as direct I/O needs it. A `Vec<u8>` cannot
/// promise the alignment.
pub(crate) struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the buffer is owned memory with no thread affinity.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// `len` zeroed bytes aligned to `align` (a power of two). Panics if they do not make a
    /// valid layout or `len` is 0.
    pub(crate) fn zeroed(len: usize, align: usize) -> AlignedBuf {
        let layout = Layout::from_size_align(len, align).expect("a valid layout");
        assert!(len > 0, "an aligned buffer holds bytes");
        // Zeroed once, so the slice below never covers uninitialised bytes.
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, layout }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `layout.size()` initialised bytes allocated by `zeroed`, borrowed mutably
        // with `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by `zeroed` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// The first bytes of a file mapped shared: what is written to it is written to the
/// file's pages in the page cache, without a system call.
///
/// Contract: the file is the caller's own; nothing truncates it below the mapped length
/// while it is mapped (an access to the lost pages would kill the process with `SIGBUS`)
/// and nothing else writes it.
pub(crate) struct SharedMap {
    map: memmap2::MmapMut,
}

impl SharedMap {
    /// Maps the first `len` bytes of `file` (open for reading and writing, at least `len`
    /// bytes long), read and written shared.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<SharedMap> {
        // SAFETY: memmap2's contract, that nothing changes the file's length or contents
        // behind the mapping, is this type's contract with its callers (see above).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }?;
        Ok(SharedMap { map })
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    /// Stores `value` at the mapping's start in one aligned 8-byte store (relaxed), so a
    /// process killed at any instant leaves the old value or the new one, never a mix.
    /// Panics if the mapping is shorter than 8 bytes.
    pub(crate) fn store_u64_at_start(&mut self, value: u64) {
        let word = &mut self.map[..8];
        // SAFETY: 8 bytes of the mapping, which starts a page (so they are aligned for a
        // u64), borrowed mutably with `self`: no other access for the atomic's lifetime.
        let slot = unsafe { AtomicU64::from_ptr(word.as_mut_ptr().cast::<u64>()) };
        slot.store(value, Ordering::Relaxed);
    }
}

/// Which of the pages of the first `len` bytes of `file` are in the page cache (`mincore`
/// over a read-only shared mapping of it), one entry per page of the system's page size.
#[cfg(test)]
pub(crate) fn resident_pages(file: &File, len: usize) -> io::Result<Vec<bool>> {
    use nix::unistd::{sysconf, SysconfVar};
    use std::os::fd::AsRawFd;
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .map_err(super::errno)?
        .and_then(|p| usize::try_from(p).ok())
        .ok_or_else(|| io::Error::other("no page size"))?;
    // SAFETY: a shared read-only mapping of a descriptor open for the call; no Rust
    // reference to it is made, and it is unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let mut resident = vec![0u8; len.div_ceil(page)];
    // SAFETY: the mapping made above, of `len` bytes; mincore fills one byte per page of
    // it, which `resident` holds.
    let r = unsafe { libc::mincore(map, len, resident.as_mut_ptr()) };
    let err = io::Error::last_os_error();
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(map, len) };
    if r != 0 {
        return Err(err);
    }
    Ok(resident.iter().map(|p| p & 1 == 1).collect())
}
