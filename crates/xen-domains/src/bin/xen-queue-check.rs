//! The queue check on real Xen: `staticbus_programs::queue_check` (the same code the
//! emulator's `queue-check` runs) as a bare-metal guest. The producer streams checksummed
//! variable-length messages over the `stream` queue channel (static shared memory plus a
//! static event-channel pair), the consumer verifies each one in order and reports its
//! count and digest over `ack`, then the two do queue round trips.
//!
//! One image serves both domains; the command line names the domain and may set the
//! figures:
//!
//! ```text
//! staticbus.domain=producer count=10000 rtt=1000
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::queue_check::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-queue-check is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
