//! `c-peer [count=N]`: the Rust end of the C API check (`staticbus_programs::c_peer`),
//! on the emulator; its peer is the C program of examples/c-api. The bare-metal Xen guest
//! `xen-c-peer` runs the same code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    staticbus_emu_domains::exit(staticbus_emu_domains::run_app(
        staticbus_programs::c_peer::run,
        &args,
    ))
}
