//! The driver's maps. The loader pins all of them under `/sys/fs/bpf/rill`; their key and
//! value types are `rill_abi::maps`. Sizes marked "set at load" are overridden by the loader.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use rill_abi::{DirtyKey, DirtyValue, DriverConfig, PathSeen, Stat};

use crate::emit::Scratch;
use crate::uring::UringNames;

/// The capture ring (size set at load from the `RingSizeMB` setting).
#[map]
pub static RILL_RING: RingBuf = RingBuf::with_byte_size(1 << 24, 0);

#[map]
pub static RILL_CONFIG: Array<DriverConfig> = Array::with_max_entries(1, 0);

#[map]
pub static RILL_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// The driver's change journal: files whose operations were not all recorded.
#[map]
pub static RILL_DIRTY: HashMap<DirtyKey, DirtyValue> = HashMap::with_max_entries(65536, 0);

/// Thread-group ids whose operations are not captured.
#[map]
pub static RILL_EXCLUDED: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);

/// Kernel device numbers of watched file systems (used when `filter_devs` is set).
#[map]
pub static RILL_WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(256, 0);

/// One record-building buffer per CPU (entries set at load to the number of CPUs). Not a
/// per-CPU map because those are limited to 32 KiB values.
#[map]
pub static RILL_SCRATCH: Array<Scratch> = Array::with_max_entries(1, 0);

/// Handlers by syscall number, filled by the loader.
#[map]
pub static RILL_HANDLERS: ProgramArray = ProgramArray::with_max_entries(512, 0);

/// Open files whose path has been sent, so later writes through them can omit it.
#[map]
pub static RILL_PATHS: LruHashMap<u64, PathSeen> = LruHashMap::with_max_entries(16384, 0);

/// The rename generation: bumped by every rename (which may change any path below it) and
/// by a reader that attaches (it has not seen earlier paths); cached paths of an older
/// generation are sent again.
#[map]
pub static RILL_GEN: Array<u64> = Array::with_max_entries(1, 0);

/// Files with a shared writable mapping (recorded by `mmap` at exit): their pages change
/// without a system call, so the second layer marks them dirty when a page of theirs is
/// made dirty or written back (see `below`). Keyed by `struct inode` address.
#[map]
pub static RILL_MAPPED: LruHashMap<u64, u8> = LruHashMap::with_max_entries(4096, 0);

/// The names of io_uring requests in flight that change the namespace or a file's
/// attributes, copied when each is submitted, by request (`struct io_kiocb`) address:
/// the kernel frees them before the request completes (see `uring`). An LRU map, so
/// requests whose completion is never seen (`IOSQE_CQE_SKIP_SUCCESS`) cannot fill it.
#[map]
pub static RILL_URING: LruHashMap<u64, UringNames> = LruHashMap::with_max_entries(512, 0);

/// Per-CPU room for one `UringNames` while it is built at submission (0) and read at
/// completion (1): too large for the stack.
#[map]
pub static RILL_URING_TMP: PerCpuArray<UringNames> = PerCpuArray::with_max_entries(2, 0);

/// The completion programs of the io_uring operations that change names, by opcode,
/// filled by the loader (see `uring`).
#[map]
pub static RILL_URING_OPS: ProgramArray = ProgramArray::with_max_entries(64, 0);
