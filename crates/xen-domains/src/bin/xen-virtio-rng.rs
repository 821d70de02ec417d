//! The virtio entropy frontend on real Xen: `staticbus_programs::virtio_rng` (virtio-drivers'
//! virtqueue and feature negotiation as its `VirtIORng` uses them, over the virtio-msg transport on a `[[virtio]]` device's region
//! and event channel) as a bare-metal guest. Whoever serves the device — a Linux domain's
//! `linux-vhost-bridge` with rust-vmm's vhost-device-rng (examples/xen-linux-virtio-rng) or
//! a bare-metal device side — is invisible to it.
//!
//! ```text
//! staticbus.domain=app shm=virtio-rng peer=linux bytes=65536 chunk=4096
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::virtio_rng::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-virtio-rng is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
