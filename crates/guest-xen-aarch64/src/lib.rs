//! The staticbus guest runtime for bare-metal arm64 domUs on real Xen (dom0less).
//!
//! What a guest image needs between Xen's entry and the shared `staticbus-guest` driver:
//!
//! * **boot code** (`aarch64` + `target_os = "none"` only): an arm64 `Image` header Xen
//!   accepts, entry code that keeps the DTB pointer, enables FP/SIMD, installs exception
//!   vectors, turns the MMU on over a static identity map ([`memmap`]), clears `.bss`,
//!   sets up a stack and calls the program's main ([`entry!`]);
//! * **exception vectors** and a **panic handler** that print what happened on the
//!   console and shut the domain down as crashed — except the IRQ vector, which
//!   acknowledges interrupts and returns ([`irq`]);
//! * **the guest's GIC** ([`gic`]): found in the guest device tree (v2 or v3), the
//!   event-channel upcall PPI 31 enabled, for blocking with `wait=irq` ([`irq`]) instead
//!   of the default `SCHEDOP_poll`;
//! * **the `hvc #0xEA1` transport** ([`XenHypercall`]) implementing
//!   [`staticbus_guest::Hypercall`];
//! * **[`XenPlatform`]**: `shared_info` mapped with `XENMEM_add_to_physmap`, shared
//!   regions found in the guest device tree, the domain's manifest — the
//!   [`staticbus_guest::Platform`] the shared driver and `Channel::open` run on;
//! * **the vPL011 console** ([`pl011`], [`println!`]);
//! * the **manifests** of the system the image was built for ([`manifests`]), picked at
//!   boot by the `staticbus.domain=` argument on the guest's command line ([`bootargs`]);
//! * a small read-only **device-tree reader** ([`fdt`]).
//!
//! The device-tree reader, the MMIO accessors, the PL011 registers, the counter, the
//! command-line parser and the manifest table are `staticbus-baremetal-aarch64`'s, shared
//! with the ivshmem runtime, and re-exported here under their old paths.
//!
//! The runtime knows nothing of the programs it runs: the bootable images (and the glue
//! that runs a `staticbus-programs` program as a guest's main) are the crate
//! `staticbus-xen-domains`.
//!
//! On other targets (the host workspace build) only the portable parts are compiled:
//! the device-tree reader, the command-line parser, the memory map, the manifest table,
//! the console, the GIC lookup, the wait-mode choice and the platform (generic over its
//! hypercall transport), so they are unit-tested on the host.
//!
//! # Building an image
//!
//! ```text
//! STATICBUS_MANIFEST_DIR=out/xen-ping-pong \
//!   cargo build -p staticbus-xen-domains --bin xen-ping-pong \
//!   --target aarch64-unknown-none --release
//! llvm-objcopy -O binary target/aarch64-unknown-none/release/xen-ping-pong xen-ping-pong.bin
//! ```
//!
//! `build.rs` hands `link.ld` to the image crates (`links` metadata; linked at
//! `0x40000000`, where Xen loads a 64-bit Image with `text_offset` 0);
//! `staticbus-baremetal-aarch64`'s compiles in the manifests `staticbus build -o DIR` wrote
//! under `DIR/domains/*/manifest.rs` when `STATICBUS_MANIFEST_DIR=DIR` is set.
//! `staticbus boot` does all of it.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(test)]
extern crate std;

pub mod gic;
pub mod irq;
pub mod memmap;
pub mod pl011;
mod platform;

#[cfg(target_arch = "aarch64")]
mod hypercall;

// The parts every bare-metal runtime shares (`staticbus-baremetal-aarch64`), under the
// paths they always had here.
pub use staticbus_baremetal_aarch64::{bootargs, fdt, manifests};
#[cfg(target_arch = "aarch64")]
pub use staticbus_baremetal_aarch64::{mmio, time};

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod rt;

#[cfg(target_arch = "aarch64")]
pub use hypercall::XenHypercall;
pub use platform::{PlatformError, RegionError, XenPlatform};
