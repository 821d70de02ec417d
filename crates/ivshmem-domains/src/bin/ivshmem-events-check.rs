//! `staticbus_programs::events_check` (the same code the emulator's and the Xen images' domains run)
//! as a bare-metal VM on QEMU's virt machine, its peers reached through the ivshmem-doorbell
//! device. One image serves every domain; `-append "staticbus.domain=NAME …"` says which.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_ivshmem_aarch64::{entry, rt};
    use staticbus_ivshmem_domains::app;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        app::run(boot, staticbus_programs::events_check::run)
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "ivshmem-events-check is a bare-metal VM image: build it with --target aarch64-unknown-none"
    );
    std::process::exit(2);
}
