//! The generic timer's virtual counter, for measuring (emulation) time in a guest.

/// `CNTVCT_EL0`: the virtual count (ticks since an arbitrary origin).
#[inline(always)]
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reading CNTVCT_EL0 has no side effects; Xen lets EL1 (and EL0) read it. The
    // ISB keeps the read from being hoisted above earlier instructions.
    unsafe {
        core::arch::asm!("isb", "mrs {t}, cntvct_el0", t = out(reg) t, options(nomem, nostack));
    }
    t
}

/// `CNTFRQ_EL0`: counter ticks per second (62.5 MHz on QEMU's virt board).
#[inline(always)]
pub fn frequency() -> u64 {
    let f: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {f}, cntfrq_el0", f = out(reg) f, options(nomem, nostack));
    }
    f
}

/// Converts a tick count to nanoseconds (saturating).
pub fn ticks_to_ns(ticks: u64) -> u64 {
    let f = frequency().max(1);
    u64::try_from(u128::from(ticks) * 1_000_000_000 / u128::from(f)).unwrap_or(u64::MAX)
}
