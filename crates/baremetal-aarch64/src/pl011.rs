//! The PL011 UART (and the SBSA UART subset of it) as a byte sink: QEMU's `virt` board
//! has one at `0x09000000`, Xen emulates one for a domain with `vpl011` at
//! `GUEST_PL011_BASE`. Each runtime says where its console is.

use core::fmt;

/// Data register offset.
const DR: usize = 0x00;
/// Flag register offset.
const FR: usize = 0x18;
/// FR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

/// A PL011-compatible UART at a fixed MMIO address.
#[derive(Debug)]
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The UART at `base`.
    ///
    /// # Safety
    ///
    /// `base` is the address of a PL011 (or SBSA UART) register block mapped as Device
    /// memory for as long as the value is used, and nothing else uses the block in a
    /// way that conflicts with writing the data register.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    /// Writes one byte, waiting while the transmit FIFO is full.
    pub fn write_byte(&self, byte: u8) {
        // SAFETY: `new`'s contract: the register block is mapped Device memory; FR and DR
        // are 32-bit registers at aligned offsets (every PL011 model allows 32-bit accesses,
        // and `mmio` uses only accesses a trap-and-emulate hypervisor can decode).
        #[cfg(target_arch = "aarch64")]
        unsafe {
            while crate::mmio::read32(self.base + FR) & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            crate::mmio::write32(self.base + DR, u32::from(byte));
        }
        // Elsewhere (host builds of the docs and tests), plain volatile accesses.
        // SAFETY: as above.
        #[cfg(not(target_arch = "aarch64"))]
        unsafe {
            while ((self.base + FR) as *const u32).read_volatile() & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            ((self.base + DR) as *mut u32).write_volatile(u32::from(byte));
        }
    }

    /// Writes `bytes` unchanged. (No `\n` → `\r\n`: Xen's vPL011 backend splits lines on
    /// `\n` and would keep a `\r` in the printed line; the host side of QEMU's serial
    /// reads lines the same way.)
    pub fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}
