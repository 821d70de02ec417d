//! What every staticbus bare-metal arm64 runtime shares, whatever delivers its events
//! (real Xen: `staticbus-guest-xen-aarch64`; QEMU's ivshmem-doorbell device without a
//! hypervisor: `staticbus-guest-ivshmem-aarch64`; docs/adr/0005-ivshmem-platform.md):
//!
//! * a small read-only **device-tree reader** ([`fdt`]);
//! * **MMIO accessors** that trap-and-emulate hypervisors can decode ([`mmio`]);
//! * the **PL011 UART** register interface ([`pl011::Pl011`]; each runtime knows where
//!   its console is);
//! * the generic timer's **virtual counter** ([`time`]);
//! * the **stage-1 translation settings** and block attributes of the identity maps
//!   ([`mmu`]);
//! * the **command line** as `key=value` words ([`bootargs`]);
//! * the **manifests** of the system the image was built for, compiled in from
//!   `STATICBUS_MANIFEST_DIR` by `build.rs` and picked at boot by `staticbus.domain=`
//!   ([`manifests`]).
//!
//! Boot code, page tables, exception vectors and shutdown stay in each runtime: the load
//! address, the memory map and the way a domain ends differ per platform.
//!
//! On the host only the portable parts are compiled (everything but [`mmio`] and
//! [`time`]), so they are unit-tested there.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod bootargs;
pub mod fdt;
pub mod manifests;
#[cfg(target_arch = "aarch64")]
pub mod mmio;
pub mod mmu;
pub mod pl011;
#[cfg(target_arch = "aarch64")]
pub mod time;
