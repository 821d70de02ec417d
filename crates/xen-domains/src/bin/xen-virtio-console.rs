//! The virtio console frontend on real Xen: `staticbus_programs::virtio_console`
//! (virtio-drivers' `VirtIOConsole`, unchanged, over the virtio-msg transport on a
//! `[[virtio]]` device's region and event channel) as a bare-metal guest. Whoever serves
//! the device — a Linux domain's `linux-vhost-bridge` with rust-vmm's vhost-device-console
//! (examples/xen-linux-virtio-console) — is invisible to it.
//!
//! ```text
//! staticbus.domain=app device=console lines=2
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::virtio_console::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-virtio-console is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
