//! The smallest Xen guest: prints its command line and a hello on the vPL011 console,
//! then powers the domain off. A smoke test of the boot path (Image header, MMU, console,
//! device tree, `SCHEDOP_shutdown`).

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod guest {
    use staticbus_guest_xen_aarch64::{entry, println, rt};

    entry!(main);

    fn main(boot: rt::Boot) -> ! {
        println!("hello from a staticbus guest (DTB at {:#x})", boot.dtb_addr);
        match &boot.fdt {
            Ok(_) => println!("bootargs: {:?}", boot.bootargs),
            Err(e) => println!("no device tree: {e}"),
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
