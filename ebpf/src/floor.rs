//! The floor of capture, for `rill-bench capture`: a program that returns at once on
//! each attach point the capture uses.
//!
//! What rill's programs do is only part of what a capture costs: the kernel charges for
//! an attached program whatever it does (once `sys_exit` has a program, every system call
//! of every task leaves by the slower exit path that runs tracepoints; every hit of a
//! tracepoint goes through the BPF runtime's guards into the program). Measured beside
//! the real capture, these programs tell the two apart: the floor is what no program on
//! these hooks can get below. They touch no map,
//! so they are loaded from the same object without the driver's configuration. The
//! loader lists them with the real programs' attach points (`loader::FLOOR`).

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};

macro_rules! floor {
    ($name:ident, $tracepoint:tt) => {
        #[raw_tracepoint(tracepoint = $tracepoint)]
        pub fn $name(_ctx: RawTracePointContext) -> i32 {
            0
        }
    };
}

// Where `rill_sys_exit` attaches.
floor!(rill_floor_exit, "sys_exit");
// Where the second layer's programs (`below`) attach.
floor!(rill_floor_dirt, "writeback_dirty_folio");
floor!(rill_floor_wb, "sb_clear_inode_writeback");
floor!(rill_floor_iou, "io_uring_complete");
floor!(rill_floor_dio, "iomap_dio_complete");
floor!(rill_floor_ius, "io_uring_submit_req");
