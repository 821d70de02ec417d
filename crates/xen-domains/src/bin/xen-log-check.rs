//! The log check on real Xen: `staticbus_programs::log_check` (the same code the emulator's
//! `log-check` runs) as a bare-metal guest. The writer appends checksummed records of
//! varying length to the `log` channel (static shared memory plus a static event-channel
//! pair) without ever waiting on it: paced, then in bursts larger than the ring while the
//! reader is paused, then free-running. The reader verifies every record it gets and
//! accounts exactly for the lost ones; the two coordinate over the `ctl` and `ack` queues.
//!
//! One image serves both domains; the command line names the domain and may set the
//! figures:
//!
//! ```text
//! staticbus.domain=writer count=10000
//! ```

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::log_check::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-log-check is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
