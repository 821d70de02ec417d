//! Bootable bare-metal arm64 images for real Xen, one binary per program (`src/bin/`):
//! `xen-hello`, and `xen-ping-pong`, `xen-queue-check`, `xen-log-check`, `xen-virtio-blk`,
//! `xen-virtio-rng`, `xen-virtio-console` …, which run the
//! `staticbus-programs` programs (the same source the emulator's domains run) over the
//! runtime of `staticbus-guest-xen-aarch64`.
//!
//! `staticbus boot` builds them for `aarch64-unknown-none` with the system's manifests
//! compiled in (`STATICBUS_MANIFEST_DIR`, read by the runtime's build script); the runtime's
//! linker script comes through this crate's build script. On the host the binaries only say
//! how to build them, and [`app`] is not compiled. On the guest, [`heap`] is the global
//! allocator (a bump allocator; `virtio-drivers`' console driver allocates its receive page).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod app;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod heap;
