//! `virtio-rng device=NAME [bytes=N] [chunk=N]`: the frontend of a `[[virtio]]` entropy
//! device, `virtio-drivers`' entropy driver parts over the virtio-msg transport, reading entropy and
//! checking it is not degenerate. This is `staticbus_programs::virtio_rng`, the code the
//! bare-metal Xen guest `xen-virtio-rng` runs; whoever serves the device (in
//! examples/virtio-rng, rust-vmm's vhost-device-rng behind the bridge of another domain)
//! is invisible here.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let passed = staticbus_emu_domains::run_app(staticbus_programs::virtio_rng::run, &args);
    staticbus_emu_domains::exit(passed)
}
