//! The guest's stage-1 identity map, built at assembly time by the boot code
//! (4 KiB granule, 39-bit VA, 36-bit PA, one level-1 and one level-2 table).
//!
//! | range | block size | attributes |
//! |---|---|---|
//! | `0x0000_0000..0x4000_0000` | 2 MiB | Device-nGnRnE, execute-never, for every block that overlaps a device window of the guest memory map ([`DEVICE_WINDOWS`]: virtio-mmio, the GICv2/v3 distributor and redistributors, the vPL011); Normal WB, execute-never for every other block (shared regions, the grant-table window and the Xen magic pages, where `shared_info` is mapped) |
//! | `0x4000_0000..0x1_0000_0000` | 1 GiB | Normal WB, executable: `GUEST_RAM0` |
//! | `0x1_0000_0000..0x10_0000_0000` | 1 GiB | Normal WB, execute-never: `GUEST_RAM1` and any shared region placed above 4 GiB |
//!
//! So a static shared-memory region is Normal write-back wherever `staticbus build` (or a
//! description's explicit `guest =`) puts it, as long as it stays clear of the device
//! windows' 2 MiB blocks (which the validator's window checks nearly guarantee: only a
//! region sharing a 2 MiB block with a device is refused, by [`is_normal`]) and below
//! 64 GiB ([`PA_LIMIT`]). Guest-physical addresses Xen did not map fault at stage 2 (Xen
//! injects a data abort); addresses from 64 GiB up fault at stage 1.
//!
//! Normal memory is Inner/Outer Write-Back, Read/Write-Allocate, Inner Shareable: what Xen
//! requires of memory it shares with the guest (spec §5.1).

pub use staticbus_baremetal_aarch64::mmu::{
    ATTR_DEVICE, ATTR_NORMAL, DEVICE_BLOCK, L1_BLOCK, L2_BLOCK, MAIR, NORMAL_BLOCK,
    NORMAL_XN_BLOCK, PA_LIMIT, SCTLR_SET, TCR,
};

/// The device windows of the domU memory map (`public/arch-arm.h`, spec §5.7), as
/// `[start, end)`: the virtio-mmio window, the GIC (v2 distributor and CPU interface and
/// v3 distributor and redistributors for 128 vCPUs, as one range), the vPL011. Every 2 MiB
/// block that overlaps one is mapped Device; see [`DEVICE_BLOCKS`].
pub const DEVICE_WINDOWS: [(u64, u64); 3] = [
    (0x0200_0000, 0x0210_0000),
    (0x0300_1000, 0x0402_0000),
    (PL011_BASE, PL011_BASE + 0x1000),
];

/// [`DEVICE_WINDOWS`] widened to whole 2 MiB blocks: the Device parts of the first GiB.
pub const DEVICE_BLOCKS: [(u64, u64); 3] = {
    let mut out = [(0, 0); 3];
    let mut i = 0;
    while i < DEVICE_WINDOWS.len() {
        let (s, e) = DEVICE_WINDOWS[i];
        out[i] = (s / L2_BLOCK * L2_BLOCK, e.div_ceil(L2_BLOCK) * L2_BLOCK);
        i += 1;
    }
    out
};

/// `GUEST_RAM0_BASE`.
pub const RAM_BASE: u64 = staticbus_abi::guest::RAM0_BASE;
/// `GUEST_RAM0_SIZE`.
pub const RAM_SIZE: u64 = staticbus_abi::guest::RAM0_SIZE;
/// `GUEST_PL011_BASE`.
const PL011_BASE: u64 = staticbus_abi::guest::PL011_BASE;

/// Level-1 entries from [`RAM_BASE`] + [`RAM_SIZE`] (4 GiB) to [`PA_LIMIT`]: Normal,
/// execute-never 1 GiB blocks.
pub const HIGH_L1_ENTRIES: u64 = (PA_LIMIT - (RAM_BASE + RAM_SIZE)) / L1_BLOCK;

/// Guest frame the runtime maps `shared_info` at: the first page of `GUEST_MAGIC_BASE`
/// (0x39000000), which a dom0less domU without xenstore does not use (Xen 4.17–4.20;
/// 4.21 puts a xenstore page at +0x1000 for `"enabled"` domains only).
pub const SHARED_INFO_GFN: u64 = 0x3900_0000 >> 12;

const fn overlaps_device_block(addr: u64, end: u64) -> bool {
    let mut i = 0;
    while i < DEVICE_BLOCKS.len() {
        if addr < DEVICE_BLOCKS[i].1 && DEVICE_BLOCKS[i].0 < end {
            return true;
        }
        i += 1;
    }
    false
}

/// The level-2 descriptor (2 MiB block `index` of the first GiB).
pub const fn l2_entry(index: u64) -> u64 {
    let addr = index * L2_BLOCK;
    if overlaps_device_block(addr, addr + L2_BLOCK) {
        addr | DEVICE_BLOCK
    } else {
        addr | NORMAL_XN_BLOCK
    }
}

/// True if `[addr, addr + len)` is mapped as Normal memory, so it may hold `shared_info`,
/// a shared region or atomics: below [`PA_LIMIT`] and clear of [`DEVICE_BLOCKS`].
pub const fn is_normal(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    end <= PA_LIMIT && !overlaps_device_block(addr, end)
}

const _: () = {
    // Every device window of the guest memory map (both GIC layouts) is inside a Device
    // block; the Xen windows (grant table, magic pages) are not.
    let all = [
        staticbus_abi::guest::WINDOWS_GICV2,
        staticbus_abi::guest::WINDOWS_GICV3,
    ];
    let mut l = 0;
    while l < all.len() {
        let mut i = 0;
        while i < all[l].len() {
            let w = all[l][i];
            let xen_memory = w.base >= 0x3800_0000;
            let mut inside = false;
            let mut d = 0;
            while d < DEVICE_WINDOWS.len() {
                inside |= w.base >= DEVICE_WINDOWS[d].0 && w.base + w.size <= DEVICE_WINDOWS[d].1;
                d += 1;
            }
            assert!(inside != xen_memory);
            i += 1;
        }
        l += 1;
    }
    assert!(RAM_BASE == L1_BLOCK && RAM_SIZE == 3 * L1_BLOCK);
    assert!(DEVICE_BLOCKS[2].1 <= RAM_BASE);
    assert!(is_normal(SHARED_INFO_GFN << 12, 4096));
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors() {
        assert_eq!(l2_entry(0), 0x0060_0000_0000_0705);
        // virtio-mmio and the GIC: 0x02000000..0x04200000 is Device.
        assert_eq!(l2_entry(0x0200_0000 / L2_BLOCK), 0x0060_0000_0200_0401);
        assert_eq!(l2_entry(0x0400_0000 / L2_BLOCK), 0x0060_0000_0400_0401);
        assert_eq!(l2_entry(0x0420_0000 / L2_BLOCK), 0x0060_0000_0420_0705);
        // vPL011 at 0x22000000 is Device.
        assert_eq!(l2_entry(0x2200_0000 / L2_BLOCK), 0x0060_0000_2200_0401);
        // shared_info at 0x39000000 is Normal, inner shareable, execute-never.
        assert_eq!(l2_entry(0x3900_0000 / L2_BLOCK), 0x0060_0000_3900_0705);
        assert_eq!(l2_entry(0x0800_0000 / L2_BLOCK), 0x0060_0000_0800_0705);
        assert_eq!(RAM_BASE | NORMAL_BLOCK, 0x4000_0705);
        assert_eq!(MAIR, 0xff00);
        assert_eq!(HIGH_L1_ENTRIES, 60);
    }

    #[test]
    fn normal_ranges() {
        assert!(is_normal(0x4000_0000, 0x100_0000));
        assert!(is_normal(0x0800_0000, 0x0800_0000));
        assert!(is_normal(0x0800_0000, 0x0800_1000));
        assert!(is_normal(0x0, 0x20_0000));
        assert!(is_normal(0x0, 0x0200_0000));
        assert!(!is_normal(0x0, 0x0200_1000));
        assert!(!is_normal(0x2200_0000, 0x1000));
        assert!(
            !is_normal(0x2210_0000, 0x1000),
            "shares the vPL011's 2 MiB block"
        );
        assert!(is_normal(0x2220_0000, 0x1000));
        assert!(!is_normal(0x0410_0000, 0x1000), "shares a GICR 2 MiB block");
        assert!(is_normal(0x1_0000_0000, 0x1000));
        assert!(is_normal(0x2_0000_0000, 0x4000_0000));
        assert!(!is_normal(PA_LIMIT - 0x1000, 0x2000));
        assert!(!is_normal(u64::MAX, 2));
    }
}
