//! virtio-blk between two bare-metal VMs on QEMU's virt machine, no Xen:
//! `staticbus_programs::virtio_blk` (the same code as the Xen image `xen-virtio-blk`:
//! virtio-drivers' `VirtIOBlk` in the frontend, staticbus's RAM-disk device side in the
//! backend) over a `[[virtio]]` device whose region is a window of the ivshmem-doorbell
//! device's shared object and whose doorbell is its MSI-X vectors.
//!
//! One image serves both domains; the command line names the domain and may set the
//! figures:
//!
//! ```text
//! staticbus.domain=frontend count=2000 seed=24301
//! staticbus.domain=backend disk-size=1048576
//! ```
//!
//! The backend's RAM disk is [`DISK_BYTES`] of this image's `.bss` (zeroed at boot), of
//! which `disk-size=` uses a prefix (default: all).

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The RAM disk buffer's size (the largest `disk-size=`).
pub const DISK_BYTES: usize = 1 << 20;

#[cfg(target_os = "none")]
mod guest {
    use super::DISK_BYTES;
    use core::sync::atomic::{AtomicBool, Ordering};
    use staticbus_guest_ivshmem_aarch64::{entry, rt};
    use staticbus_ivshmem_domains::app::{self, CounterClock, Output, Platform};
    use staticbus_programs::{virtio_blk, Args};

    entry!(main);

    static mut DISK: [u8; DISK_BYTES] = [0; DISK_BYTES];
    static TAKEN: AtomicBool = AtomicBool::new(false);

    fn blk(p: &Platform, c: &CounterClock, a: &Args<'_>, out: &mut Output) -> bool {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return virtio_blk::run(p, c, a, out, &mut []);
        }
        // SAFETY: TAKEN makes this the only reference ever made to DISK, and the program
        // runs on one vCPU.
        let disk = unsafe { &mut *core::ptr::addr_of_mut!(DISK) };
        virtio_blk::run(p, c, a, out, disk)
    }

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, blk)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "ivshmem-virtio-blk is a bare-metal VM image: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
