//! `linux-log-check`: `staticbus_programs::log_check::run`, the same source the emulator's
//! `log-check` and the bare-metal `xen-log-check` run, as a program of a Linux domU on Xen
//! (started by `linux-init` from the initramfs `staticbus boot` makes; its arguments are
//! the kernel command line's words).

fn main() {
    std::process::exit(staticbus_linux_domains::run(
        staticbus_programs::log_check::run,
    ))
}
