//! The process allocator, tuned for buffers of replicated data.
//!
//! Data travels in buffers of up to 4 MiB (a resolved write, its frame, the frame read on
//! the target), each made and freed within milliseconds. glibc serves allocations that
//! large with a fresh `mmap` and gives the pages back on free (or trims them from the
//! heap top), so every buffer paid page faults and the kernel's zeroing of its pages: a
//! profile of a 1 GiB replication had page faults, page clearing and memory-cgroup
//! charging among the network threads' top costs. Serving them from the heap and keeping
//! freed memory for reuse cut the CPU `rilld` spends on that replication by about a
//! quarter (`rill-bench replication --only a` under `perf`, side by side).

/// Allocations below this come from the heap, so freed buffers are reused.
const MMAP_THRESHOLD: i32 = 64 << 20;
/// Free memory kept at the top of the heap before it is returned to the system: a few
/// buffers' worth, so a steady stream does not trim and fault the same pages again.
const TRIM_THRESHOLD: i32 = 256 << 20;

/// Sets the allocator's thresholds; call once, first thing in `main`.
pub fn tune_for_data_buffers() {
    #[cfg(target_env = "gnu")]
    crate::sys::process::set_malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD);
}
