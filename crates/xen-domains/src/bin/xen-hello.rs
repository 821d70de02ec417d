//! The smallest Xen guest: prints its command line and a hello on the vPL011 console,
//! then powers the domain off. A smoke test of the boot path (Image header, MMU, console,
//! device tree, `SCHEDOP_shutdown`).
//!
//! `crash=fault` on the command line makes it read an unmapped address instead (the
//! exception vectors report the abort and crash the domain), `crash=panic` makes it
//! panic (the panic handler reports and crashes).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{bootargs, entry, println, rt};
    // Links the crate's guest heap (the global allocator that `alloc`, pulled in by the
    // crate's other programs through virtio-drivers, requires of every binary).
    use staticbus_xen_domains as _;

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        println!("hello from a staticbus guest (DTB at {:#x})", boot.dtb_addr);
        match &boot.fdt {
            Ok(_) => println!("bootargs: {:?}", boot.bootargs),
            Err(e) => println!("no device tree: {e}"),
        }
        match bootargs::value(boot.bootargs, "crash") {
            Some("fault") => {
                // At 64 GiB, beyond the runtime's stage-1 map (memmap::PA_LIMIT): a
                // translation fault at EL1.
                let p = core::ptr::with_exposed_provenance::<u64>(
                    staticbus_guest_xen_aarch64::memmap::PA_LIMIT as usize,
                );
                // SAFETY: none — this read faults on purpose, to test the vectors; the
                // exception handler never returns here.
                let v = unsafe { p.read_volatile() };
                println!("read {v:#x} from an unmapped address?");
            }
            Some("panic") => panic!("crash=panic on the command line"),
            _ => {}
        }
        println!("RESULT PASS hello");
        rt::poweroff()
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xen-hello is a bare-metal Xen guest: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
