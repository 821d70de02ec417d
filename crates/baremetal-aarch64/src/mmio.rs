//! MMIO accesses Xen can emulate.
//!
//! Xen emulates the guest's GIC and vPL011 by decoding the trapped access from ESR_EL2's
//! syndrome. A load or store with writeback (which the compiler may pick for a volatile
//! access, e.g. `ldr w12, [x11, #128]!`) has no valid syndrome: Xen prints "unhandled Arm
//! instruction" and injects an abort. So every emulated register is accessed with a plain
//! `ldr`/`str` from a base register.

/// Reads the 32-bit register at `addr`.
///
/// # Safety
///
/// `addr` is a 4-byte aligned register of a device mapped as Device memory for the whole
/// run, with no Rust object there, and reading it has no effect the caller does not want.
pub unsafe fn read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{p}]", p = in(reg) addr, v = out(reg) v, options(nostack));
    }
    v
}

/// Writes the 32-bit register at `addr`.
///
/// # Safety
///
/// As for [`read32`], for a write.
pub unsafe fn write32(addr: usize, v: u32) {
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("str {v:w}, [{p}]", p = in(reg) addr, v = in(reg) v, options(nostack));
    }
}

/// Reads the 64-bit register at `addr`.
///
/// # Safety
///
/// As for [`read32`], for an 8-byte aligned register the device lets the guest read as
/// one 64-bit access.
pub unsafe fn read64(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: the caller's contract.
    unsafe {
        core::arch::asm!("ldr {v}, [{p}]", p = in(reg) addr, v = out(reg) v, options(nostack));
    }
    v
}
