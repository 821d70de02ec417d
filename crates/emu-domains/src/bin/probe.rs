//! `probe MODE [ARG]`: a domain program for the emulator's integration tests. It reports
//! facts about its own environment as `key=value` lines:
//!
//! - `memfds=N`: memfds this process holds (its own memory plus the regions it may map —
//!   nothing else must be reachable);
//! - `pending.<port>=0|1`: whether each of its static ports was pending at start (the end
//!   Xen binds second starts pending);
//! - `status.<port>=…`: `EVTCHNOP_status` of each port;
//! - `foreign-send=<errno>`: sending on a port it does not own.
//!
//! Modes: `report` (report and exit 0), `crash` (report, then abort), `sleep MS` (report,
//! sleep, exit 0), `exit CODE`.

use staticbus_emu_domains::connect;
use staticbus_guest::{ops, Platform, TwoLevelTransport};

fn memfds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|t| t.to_string_lossy().starts_with("/memfd:"))
                .count()
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("report");
    if mode == "exit" {
        std::process::exit(args.get(2).and_then(|c| c.parse().ok()).unwrap_or(0));
    }
    let p = connect();
    println!("memfds={}", memfds());
    let ev = p.events();
    for e in p.manifest().evtchns {
        println!(
            "pending.{}={}",
            e.local_port,
            u8::from(ev.is_pending(e.local_port))
        );
        match ops::evtchn_status(p.hypercall(), e.local_port) {
            Ok(s) => println!("status.{}={:?}", e.local_port, s.state),
            Err(err) => println!("status.{}={err}", e.local_port),
        }
    }
    match ops::evtchn_send(p.hypercall(), 1000) {
        Ok(()) => println!("foreign-send=0"),
        Err(e) => println!("foreign-send={e}"),
    }
    match mode {
        "crash" => std::process::abort(),
        "sleep" => {
            let ms = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        _ => {}
    }
}
