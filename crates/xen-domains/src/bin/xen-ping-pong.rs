//! Two domains bounce a counter on real Xen: `staticbus_programs::ping_pong` (the same code
//! the emulator's `ping-pong` runs) as a bare-metal guest.
//!
//! One image serves both domains. Its command line (the kernel module's `bootargs` in the
//! host tree that `staticbus build` generated) says which domain it is and what to do:
//!
//! ```text
//! staticbus.domain=ping role=ping rounds=1000
//! ```
//!
//! With a channel `pingpong` in the manifest (Xen with static shared memory) the counter
//! goes through the channel's region and its event pair; without one (Debian's Xen 4.17
//! has no `CONFIG_STATIC_SHM`) over the domain's bare static event channel, events only.
//! `ping` prints the round-trip times measured with the virtual counter (emulation
//! numbers under QEMU TCG); both print `RESULT PASS …` or `RESULT FAIL <reason>` and shut
//! down (poweroff after a pass, crash after a failure).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, rt};
    use staticbus_xen_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::ping_pong::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "xen-ping-pong is a bare-metal Xen guest: build it with --target aarch64-unknown-none \
         (`staticbus boot` does)"
    );
    std::process::exit(2);
}
