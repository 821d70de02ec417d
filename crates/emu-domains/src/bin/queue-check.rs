//! `queue-check [count=N] [rtt=R] [stream=NAME] [ack=NAME]`: the queue check of
//! `staticbus_programs::queue_check` (checksummed variable-length messages over a `queue`
//! channel, verified in order, digest reported back, then queue round trips), on the
//! emulator. The bare-metal Xen guest `xen-queue-check` runs the same code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    staticbus_emu_domains::exit(staticbus_emu_domains::run_app(
        staticbus_programs::queue_check::run,
        &args,
    ))
}
