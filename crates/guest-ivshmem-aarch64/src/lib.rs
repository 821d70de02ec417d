//! The staticbus guest runtime for bare-metal arm64 VMs on QEMU's `virt` machine with no
//! hypervisor: the second platform, where the peers' doorbells are QEMU's
//! `ivshmem-doorbell` PCI device and the shared memory is its BAR2
//! (docs/adr/0005-ivshmem-platform.md).
//!
//! * **boot code** ([`rt`], bare metal only): an arm64 `Image` QEMU's `-kernel` loads at
//!   `0x40200000`, MMU on over a static identity map ([`memmap`]), PSCI shutdown;
//! * **the board** ([`board`]): the PCIe host bridge, the GICv2 with its GICv2m frame and
//!   the UART, read from the device tree QEMU generates;
//! * **the device** ([`device`], bare metal only): found through ECAM, BARs assigned by
//!   the runtime, MSI-X vectors delivered as GICv2m SPIs, the Doorbell register;
//! * **[`IvshmemPlatform`]**: [`staticbus_guest::Platform`] and
//!   [`staticbus_guest::Events`] over the device, so `staticbus-programs` run unchanged
//!   (ports become doorbell vectors and peer ids, regions become windows of BAR2);
//! * **the console** ([`println!`]): the board's PL011.
//!
//! The device-tree reader, MMIO accessors, PL011, counter, command line and compiled-in
//! manifests are `staticbus-baremetal-aarch64`'s, shared with the Xen runtime. The images
//! are `staticbus-ivshmem-domains`.
//!
//! A VM is started as
//!
//! ```text
//! qemu-system-aarch64 -machine virt,gic-version=2,highmem=off -cpu cortex-a57 -m 128M \
//!   -nographic -no-reboot -kernel IMAGE -append "staticbus.domain=NAME …" \
//!   -chardev socket,id=ivs,path=SOCKET -device ivshmem-doorbell,chardev=ivs,vectors=N
//! ```
//!
//! with staticbus's server (`staticbus-ivshmem-server`) on `SOCKET` giving the VM its
//! domid as peer id.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod board;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod device;
pub mod memmap;
mod platform;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod rt;

pub use platform::{Doorbells, IvshmemPlatform, RegionError};
#[cfg(target_arch = "aarch64")]
pub use staticbus_baremetal_aarch64::time;
pub use staticbus_baremetal_aarch64::{bootargs, fdt, manifests};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
use core::sync::atomic::{AtomicUsize, Ordering};
use staticbus_baremetal_aarch64::pl011::Pl011;

/// The console's base: the `virt` machine's PL011 until [`set_console`] says otherwise.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
static CONSOLE: AtomicUsize = AtomicUsize::new(memmap::VIRT_PL011 as usize);

/// Makes [`println!`] write to the PL011 at `base`.
///
/// # Safety
///
/// `base` is a PL011 register block in the runtime's Device memory (as
/// [`board::Board::from_fdt`] checks of the UART it finds).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub unsafe fn set_console(base: u64) {
    CONSOLE.store(base as usize, Ordering::Relaxed);
}

/// The console UART, for [`print!`] and [`println!`].
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn console() -> Pl011 {
    // SAFETY: CONSOLE is the virt machine's PL011 or a UART `set_console` was promised is
    // one; both are in the first GiB, which the boot code maps Device. The VM is
    // single-threaded with interrupts masked, so writers never interleave within a byte.
    unsafe { Pl011::new(CONSOLE.load(Ordering::Relaxed)) }
}

/// Not on bare metal: a console nobody writes (keeps the host build's item list equal).
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
#[doc(hidden)]
pub fn console() -> Pl011 {
    unreachable!("the console exists on bare metal only")
}

/// Prints to the console (bare-metal builds only).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let _ = ::core::write!($crate::console(), $($arg)*);
    }};
}

/// Prints a line to the console (bare-metal builds only).
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => {{
        use ::core::fmt::Write as _;
        let mut c = $crate::console();
        let _ = ::core::write!(c, $($arg)*);
        c.write_byte(b'\n');
    }};
}
