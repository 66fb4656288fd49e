//! The calling thread and the process's allocator.

/// The calling thread's id (`gettid`), as `ps -L` and the kernel show it.
pub(crate) fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Sets glibc's `M_MMAP_THRESHOLD` and `M_TRIM_THRESHOLD` (`mallopt`); their results are
/// not checked (a refused value leaves the default).
///
/// Written by hand: nix does not wrap `mallopt`.
#[cfg(target_env = "gnu")]
pub(crate) fn set_malloc_thresholds(mmap: i32, trim: i32) {
    // SAFETY: mallopt takes two integers and only sets allocator parameters, under the
    // allocator's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
        libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
    }
}
