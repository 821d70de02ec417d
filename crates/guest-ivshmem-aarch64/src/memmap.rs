//! The VM's stage-1 identity map on QEMU's `virt` machine (`highmem=off`), built at
//! assembly time by the boot code with the settings of
//! [`staticbus_baremetal_aarch64::mmu`].
//!
//! | range | block size | attributes |
//! |---|---|---|
//! | `0x0000_0000..0x4000_0000` | 2 MiB | Normal WB, execute-never for the shared object window `[SHM_BASE, SHM_BASE + SHM_MAX)` (BAR2, [`staticbus_abi::ivshmem`]); Device-nGnRnE, execute-never for every other block (flash, GIC, GICv2m, PL011, the PCIe MMIO window with BAR0 and BAR1, the ECAM window at `0x3f00_0000`) |
//! | `0x4000_0000..0x1_0000_0000` | 1 GiB | Normal WB, executable: RAM (only what `-m` gives exists) |
//!
//! Nothing above 4 GiB is mapped: with `highmem=off` the machine has no high ECAM, no
//! high MMIO window and no RAM there.

use staticbus_abi::ivshmem;
pub use staticbus_baremetal_aarch64::mmu::{
    DEVICE_BLOCK, L1_BLOCK, L2_BLOCK, MAIR, NORMAL_BLOCK, NORMAL_XN_BLOCK, SCTLR_SET, TCR,
};

/// RAM base of the `virt` machine.
pub const RAM_BASE: u64 = ivshmem::RAM_BASE;
/// Bytes of RAM the map covers (three 1 GiB blocks).
pub const RAM_SPAN: u64 = 3 * L1_BLOCK;
/// The `virt` machine's first PL011 (the console QEMU's `-serial` connects).
pub const VIRT_PL011: u64 = 0x0900_0000;
/// Start of the Normal window: BAR2.
pub const SHM_START: u64 = ivshmem::SHM_BASE;
/// End of the Normal window.
pub const SHM_END: u64 = ivshmem::SHM_BASE + ivshmem::SHM_MAX;

/// The level-2 descriptor of 2 MiB block `index` of the first GiB.
pub const fn l2_entry(index: u64) -> u64 {
    let addr = index * L2_BLOCK;
    if addr >= SHM_START && addr < SHM_END {
        addr | NORMAL_XN_BLOCK
    } else {
        addr | DEVICE_BLOCK
    }
}

/// True if `[addr, addr + len)` is inside the shared object window (Normal memory).
pub const fn in_shm_window(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => addr >= SHM_START && end <= SHM_END,
        None => false,
    }
}

/// True if `[addr, addr + len)` is RAM in the map.
pub const fn in_ram(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => addr >= RAM_BASE && end <= RAM_BASE + RAM_SPAN,
        None => false,
    }
}

/// True if `[addr, addr + len)` lies in Device blocks of the first GiB.
pub const fn in_device_blocks(addr: u64, len: u64) -> bool {
    match addr.checked_add(len) {
        Some(end) => end <= RAM_BASE && (end <= SHM_START || addr >= SHM_END),
        None => false,
    }
}

const _: () = {
    assert!(SHM_START % L2_BLOCK == 0 && SHM_END % L2_BLOCK == 0);
    assert!(SHM_END <= RAM_BASE);
    assert!(in_device_blocks(VIRT_PL011, 0x1000));
    assert!(in_device_blocks(ivshmem::BAR0_BASE, ivshmem::SMALL_BAR_MAX));
    assert!(in_device_blocks(ivshmem::BAR1_BASE, ivshmem::SMALL_BAR_MAX));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        assert_eq!(l2_entry(0), 0x0060_0000_0000_0401);
        assert_eq!(l2_entry(0x0900_0000 / L2_BLOCK), 0x0060_0000_0900_0401);
        assert_eq!(l2_entry(0x2000_0000 / L2_BLOCK), 0x0060_0000_2000_0705);
        assert_eq!(l2_entry(0x2fe0_0000 / L2_BLOCK), 0x0060_0000_2fe0_0705);
        assert_eq!(l2_entry(0x3000_0000 / L2_BLOCK), 0x0060_0000_3000_0401);
        assert_eq!(l2_entry(0x3f00_0000 / L2_BLOCK), 0x0060_0000_3f00_0401);
    }

    #[test]
    fn windows() {
        assert!(in_shm_window(0x2000_0000, 0x1000_0000));
        assert!(!in_shm_window(0x2000_0000, 0x1000_0001));
        assert!(!in_shm_window(0x1fff_f000, 0x2000));
        assert!(!in_shm_window(u64::MAX, 2));
        assert!(in_ram(0x4800_0000, 0x1000));
        assert!(!in_ram(0x3fff_f000, 0x2000));
        assert!(in_device_blocks(0x3f00_0000, 0x100_0000));
        assert!(!in_device_blocks(0x1fff_f000, 0x2000));
    }
}
