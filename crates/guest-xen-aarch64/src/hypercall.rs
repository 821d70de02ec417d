//! The `hvc #0xEA1` hypercall transport (spec §5.1).

use staticbus_abi::hypercall as nr;
use staticbus_guest::Hypercall;

/// Xen's arm64 hypercall transport: `hvc #0xEA1` with the hypercall number in `x16`, the
/// arguments in `x0..x4` and the result in `x0`. `x1..x4` and `x16` are treated as
/// clobbered (debug builds of Xen overwrite them with `0xDEADBEEF`).
///
/// Pointer arguments are guest virtual addresses translated by the guest's current
/// stage-1 regime: the runtime's identity map makes them equal to guest-physical
/// addresses, and every buffer passed to Xen must be in Normal write-back memory (stack,
/// `.data`, `.bss` are in guest RAM).
#[derive(Clone, Copy, Debug, Default)]
pub struct XenHypercall;

/// Issues hypercall `op` with three arguments.
///
/// # Safety
///
/// The arguments must be valid for hypercall `op` (pointers to live, correctly laid out
/// argument structures in Normal memory, for the call's duration).
#[inline(always)]
unsafe fn hvc3(op: u64, a0: u64, a1: u64, a2: u64) -> i64 {
    let ret: i64;
    // SAFETY: the caller guarantees the arguments are valid for `op`. The hypervisor
    // preserves every register but x0 (the result) and the clobbered x1..x4 and x16, does
    // not touch the stack, and may read and write the memory the arguments point to
    // (no `nomem`/`readonly`, so the compiler assumes that).
    unsafe {
        core::arch::asm!(
            "hvc #0xEA1",
            inlateout("x0") a0 => ret,
            inlateout("x1") a1 => _,
            inlateout("x2") a2 => _,
            lateout("x3") _,
            lateout("x4") _,
            inlateout("x16") op => _,
            options(nostack),
        );
    }
    ret
}

impl Hypercall for XenHypercall {
    unsafe fn event_channel_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: the Hypercall contract: `arg` points to `cmd`'s argument structure.
        unsafe { hvc3(nr::EVENT_CHANNEL_OP, cmd.into(), arg as u64, 0) }
    }

    unsafe fn memory_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: the Hypercall contract: `arg` points to `cmd`'s argument structure.
        unsafe { hvc3(nr::MEMORY_OP, cmd.into(), arg as u64, 0) }
    }

    unsafe fn sched_op(&self, cmd: u32, arg: *mut u8) -> i64 {
        // SAFETY: the Hypercall contract: `arg` points to `cmd`'s argument structure (or
        // is null for commands without one).
        unsafe { hvc3(nr::SCHED_OP, cmd.into(), arg as u64, 0) }
    }

    unsafe fn console_io(&self, cmd: u32, count: usize, buf: *const u8) -> i64 {
        // SAFETY: the Hypercall contract: `buf` is readable for `count` bytes.
        unsafe { hvc3(nr::CONSOLE_IO, cmd.into(), count as u64, buf as u64) }
    }
}
