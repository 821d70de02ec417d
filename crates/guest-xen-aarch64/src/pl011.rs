//! The vPL011 console (SBSA UART subset emulated by Xen at `GUEST_PL011_BASE`, spec §5.7).
//!
//! A domain gets it when its host-tree node has the `vpl011` property (staticbus emits it
//! by default: `vpl011 = true`). Xen prints the output of a domain without serial input
//! focus line by line as `(XEN) DOM<id>: <line>`, at normal log level, so it shows on a
//! release build of Xen (unlike `CONSOLEIO_write`).

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
        // are 32-bit registers at aligned offsets (Xen's vPL011 allows 32-bit accesses,
        // and `mmio` uses only accesses Xen can emulate).
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
    /// `\n` and would keep a `\r` in the printed line.)
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

/// The guest's vPL011 at `GUEST_PL011_BASE` (`0x22000000`), for [`print!`](crate::print)
/// and [`println!`](crate::println).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn console() -> Pl011 {
    // SAFETY: the boot code maps the first GiB, including GUEST_PL011_BASE, as Device
    // memory; Xen emulates a PL011 there for a domain with `vpl011` (without it, writes
    // fault and the exception handler reports the abort). The guest is single-threaded
    // with interrupts masked, so writers never interleave within a byte.
    unsafe { Pl011::new(staticbus_abi::guest::PL011_BASE as usize) }
}

/// Prints to the vPL011 console (bare-metal builds only).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let _ = ::core::write!($crate::pl011::console(), $($arg)*);
    }};
}

/// Prints a line to the vPL011 console (bare-metal builds only).
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let mut c = $crate::pl011::console();
        let _ = ::core::write!(c, $($arg)*);
        c.write_byte(b'\n');
    }};
}
