//! Stage-1 translation settings both bare-metal runtimes use for their static identity
//! maps (4 KiB granule, 39-bit VA, 36-bit PA, walks starting at level 1), and the block
//! descriptor attributes of Device and Normal memory. Each runtime lays out its own
//! tables (which ranges are RAM, devices or shared memory differs per platform).
//!
//! Normal memory is Inner/Outer Write-Back, Read/Write-Allocate, Inner Shareable: what Xen
//! requires of memory it shares with a guest, and what atomics on QEMU's ivshmem BAR2
//! need.

/// `MAIR_EL1` attribute index of Device-nGnRnE memory.
pub const ATTR_DEVICE: u64 = 0;
/// `MAIR_EL1` attribute index of Normal write-back memory.
pub const ATTR_NORMAL: u64 = 1;
/// `MAIR_EL1`: attr0 = Device-nGnRnE (0x00), attr1 = Normal WB RWA inner and outer (0xFF).
pub const MAIR: u64 = 0xFF << (8 * ATTR_NORMAL);

/// `TCR_EL1`: T0SZ = 25 (39-bit VA, walks start at level 1), IRGN0/ORGN0 = WB WA,
/// SH0 = inner shareable, TG0 = 4 KiB, EPD1 (no TTBR1 walks), IPS = 36 bits ([`PA_LIMIT`]).
pub const TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23) | (1 << 32);

/// The end of the mapped physical space (`TCR_EL1.IPS` = 36 bits: 64 GiB).
pub const PA_LIMIT: u64 = 1 << 36;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes() {
        assert_eq!(MAIR, 0xff00);
        assert_eq!(DEVICE_BLOCK, 0x0060_0000_0000_0401);
        assert_eq!(NORMAL_BLOCK, 0x705);
        assert_eq!(NORMAL_XN_BLOCK, 0x0060_0000_0000_0705);
    }
}
