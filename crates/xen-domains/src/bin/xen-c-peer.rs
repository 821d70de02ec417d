//! The Rust end of the C API check on real Xen: `staticbus_programs::c_peer` (the same code
//! the emulator's `c-peer` runs) as a bare-metal guest, talking to the C domU of
//! examples/xen-c-api (examples/c-api/peer.c over crates/capi's static library).
//!
//! ```text
//! staticbus.domain=rust count=200
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::c_peer::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-c-peer is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
