//! The guest's stage-1 identity map, built at assembly time by the boot code
//! (4 KiB granule, 39-bit VA, one level-1 and one level-2 table).
//!
//! | range | size | attributes |
//! |---|---|---|
//! | `0x0000_0000..0x4000_0000` | 1 GiB in 2 MiB blocks | Device-nGnRnE, execute-never (GIC, vPL011, …), except: |
//! | `0x0800_0000..0x1000_0000` | 128 MiB | Normal WB, XN: staticbus's default guest window for shared regions |
//! | `0x3800_0000..0x3A00_0000` | 32 MiB | Normal WB, XN: grant-table window and Xen magic pages (shared_info is mapped here) |
//! | `0x4000_0000..0x1_0000_0000` | 3 GiB in 1 GiB blocks | Normal WB, executable: `GUEST_RAM0` |
//!
//! Normal memory is Inner/Outer Write-Back, Read/Write-Allocate, Inner Shareable: what Xen
//! requires of memory it shares with the guest (spec §5.1). Everything else faults.

/// `MAIR_EL1` attribute index of Device-nGnRnE memory.
pub const ATTR_DEVICE: u64 = 0;
/// `MAIR_EL1` attribute index of Normal write-back memory.
pub const ATTR_NORMAL: u64 = 1;
/// `MAIR_EL1`: attr0 = Device-nGnRnE (0x00), attr1 = Normal WB RWA inner and outer (0xFF).
pub const MAIR: u64 = 0xFF << (8 * ATTR_NORMAL);

/// `TCR_EL1`: T0SZ = 25 (39-bit VA, walks start at level 1), IRGN0/ORGN0 = WB WA,
/// SH0 = inner shareable, TG0 = 4 KiB, EPD1 (no TTBR1 walks), IPS = 36 bits.
pub const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (1 << 32);

/// `SCTLR_EL1` bits the boot code sets: M (MMU), C (data cache), I (instruction cache).
pub const SCTLR_SET: u64 = (1 << 0) | (1 << 2) | (1 << 12);

const BLOCK: u64 = 0b01;
const AF: u64 = 1 << 10;
const SH_INNER: u64 = 3 << 8;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;

/// Block descriptor attributes (without the output address) of Device memory.
pub const DEVICE_BLOCK: u64 = BLOCK | (ATTR_DEVICE << 2) | AF | PXN | UXN;
/// Block descriptor attributes of Normal memory the guest may execute (RAM).
pub const NORMAL_BLOCK: u64 = BLOCK | (ATTR_NORMAL << 2) | SH_INNER | AF;
/// Block descriptor attributes of Normal, execute-never memory (shared windows).
pub const NORMAL_XN_BLOCK: u64 = NORMAL_BLOCK | PXN | UXN;

/// Level-2 block size.
pub const L2_BLOCK: u64 = 2 << 20;
/// Level-1 block size.
pub const L1_BLOCK: u64 = 1 << 30;

/// Normal windows inside the first GiB, as `[start, end)` guest-physical ranges.
pub const NORMAL_WINDOWS: [(u64, u64); 2] = [
    (SHM_WINDOW_BASE, SHM_WINDOW_BASE + SHM_WINDOW_SIZE),
    (XEN_WINDOW_BASE, XEN_WINDOW_BASE + XEN_WINDOW_SIZE),
];
/// staticbus's default guest window for shared regions (`guest-shm-window`).
pub const SHM_WINDOW_BASE: u64 = 0x0800_0000;
/// Its size.
pub const SHM_WINDOW_SIZE: u64 = 0x0800_0000;
/// The grant-table window (`GUEST_GNTTAB_BASE`) and the magic pages after it.
pub const XEN_WINDOW_BASE: u64 = 0x3800_0000;
/// Their size (gnttab 16 MiB + magic 16 MiB).
pub const XEN_WINDOW_SIZE: u64 = 0x0200_0000;
/// `GUEST_RAM0_BASE`.
pub const RAM_BASE: u64 = staticbus_abi::guest::RAM0_BASE;
/// `GUEST_RAM0_SIZE`.
pub const RAM_SIZE: u64 = staticbus_abi::guest::RAM0_SIZE;

/// Guest frame the runtime maps `shared_info` at: the first page of `GUEST_MAGIC_BASE`
/// (0x39000000), which a dom0less domU without xenstore does not use (Xen 4.17–4.20;
/// 4.21 puts a xenstore page at +0x1000 for `"enabled"` domains only).
pub const SHARED_INFO_GFN: u64 = 0x3900_0000 >> 12;

/// The level-2 descriptor (2 MiB block `index` of the first GiB).
pub const fn l2_entry(index: u64) -> u64 {
    let addr = index * L2_BLOCK;
    let mut i = 0;
    while i < NORMAL_WINDOWS.len() {
        if addr >= NORMAL_WINDOWS[i].0 && addr < NORMAL_WINDOWS[i].1 {
            return addr | NORMAL_XN_BLOCK;
        }
        i += 1;
    }
    addr | DEVICE_BLOCK
}

/// True if `[addr, addr + len)` is mapped as Normal memory (a window above or RAM), so it
/// may hold `shared_info`, a shared region or atomics.
pub const fn is_normal(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    if addr >= RAM_BASE && end <= RAM_BASE + RAM_SIZE {
        return true;
    }
    let mut i = 0;
    while i < NORMAL_WINDOWS.len() {
        if addr >= NORMAL_WINDOWS[i].0 && end <= NORMAL_WINDOWS[i].1 {
            return true;
        }
        i += 1;
    }
    false
}

const _: () = {
    // Every window is 2 MiB aligned, so the level-2 blocks describe it exactly.
    let mut i = 0;
    while i < NORMAL_WINDOWS.len() {
        assert!(NORMAL_WINDOWS[i].0 % L2_BLOCK == 0 && NORMAL_WINDOWS[i].1 % L2_BLOCK == 0);
        assert!(NORMAL_WINDOWS[i].1 <= RAM_BASE);
        i += 1;
    }
    assert!(RAM_BASE == L1_BLOCK && RAM_SIZE == 3 * L1_BLOCK);
    assert!(is_normal(SHARED_INFO_GFN << 12, 4096));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        assert_eq!(l2_entry(0), 0x0060_0000_0000_0401);
        // vPL011 at 0x22000000 is Device.
        assert_eq!(l2_entry(0x2200_0000 / L2_BLOCK), 0x0060_0000_2200_0401);
        // shared_info at 0x39000000 is Normal, inner shareable, execute-never.
        assert_eq!(l2_entry(0x3900_0000 / L2_BLOCK), 0x0060_0000_3900_0705);
        assert_eq!(l2_entry(0x0800_0000 / L2_BLOCK), 0x0060_0000_0800_0705);
        assert_eq!(l2_entry(0x1000_0000 / L2_BLOCK), 0x0060_0000_1000_0401);
        assert_eq!(RAM_BASE | NORMAL_BLOCK, 0x4000_0705);
        assert_eq!(MAIR, 0xff00);
    }

    #[test]
    fn normal_ranges() {
        assert!(is_normal(0x4000_0000, 0x100_0000));
        assert!(is_normal(0x0800_0000, 0x0800_0000));
        assert!(!is_normal(0x0800_0000, 0x0800_1000));
        assert!(!is_normal(0x2200_0000, 0x1000));
        assert!(!is_normal(0x1_0000_0000, 0x1000));
        assert!(!is_normal(u64::MAX, 2));
    }
}
