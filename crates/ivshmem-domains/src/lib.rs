//! Bootable bare-metal arm64 images for QEMU's `virt` machine without a hypervisor, one
//! binary per program (`src/bin/`): `ivshmem-ping-pong`, `ivshmem-queue-check`,
//! `ivshmem-log-check`, `ivshmem-events-check` run the `staticbus-programs` programs (the same source the
//! emulator's domains and the Xen images run) over the ivshmem-doorbell runtime of
//! `staticbus-guest-ivshmem-aarch64`.
//!
//! Built for `aarch64-unknown-none` with the system's manifests compiled in
//! (`STATICBUS_MANIFEST_DIR`). On the host the binaries only say how to build them, and
//! [`app`] is not compiled.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub mod app;
