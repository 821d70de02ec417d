//! `log-check [count=N] [log=NAME] [ctl=NAME] [ack=NAME]`: the log check of
//! `staticbus_programs::log_check` (a writer that never waits appends checksummed records to
//! a `log` channel, paced, in bursts that lap the paused reader, then free-running; the
//! reader verifies every record and accounts exactly for every lost one), on the
//! emulator. The bare-metal Xen guest `xen-log-check` runs the same code.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    staticbus_emu_domains::exit(staticbus_emu_domains::run_app(
        staticbus_programs::log_check::run,
        &args,
    ))
}
