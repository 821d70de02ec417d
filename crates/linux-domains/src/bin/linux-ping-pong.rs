//! `linux-ping-pong`: `staticbus_programs::ping_pong::run`, the same source the emulator's
//! `ping-pong` and the bare-metal `xen-ping-pong` run, as a program of a Linux domU on Xen
//! (started by `linux-init` from the initramfs `staticbus boot` makes; its arguments are
//! the kernel command line's words).

fn main() {
    std::process::exit(staticbus_linux_domains::run(
        staticbus_programs::ping_pong::run,
    ))
}
