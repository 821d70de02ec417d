//! `probe MODE [ARG]`: a domain program for the emulator's integration tests. It reports
//! facts about its own environment as `key=value` lines:
//!
//! - `memfds=N`: memfds this process holds (its own memory plus the regions it may map —
//!   nothing else must be reachable);
//! - `memfd-set=NAME:MODE,…`: those memfds by name, sorted, each with the access mode of
//!   its descriptor (`rw` or `ro`), so that a test can assert the exact set;
//! - `memfd-maps=NAME:PERMS,…`: the memfds mapped into this process, sorted, each with
//!   the permissions of its mapping (`rw-s`, `r--s`) — a descriptor closed after `mmap`
//!   still gives access, so both sets together are what the domain can reach;
//! - `pending.<port>=0|1`: whether each of its static ports was pending at start (the end
//!   Xen binds second starts pending);
//! - `status.<port>=…`: `EVTCHNOP_status` of each port;
//! - `foreign-send=<errno>`: sending on a port it does not own.
//!
//! Modes: `report` (report and exit 0), `crash` (report, then abort), `sleep MS` (report,
//! sleep, exit 0), `exit CODE`.

use staticbus_emu_domains::connect;
use staticbus_guest::{ops, Platform, TwoLevelTransport};

/// The memfds this process holds: `NAME:MODE`, sorted.
fn memfds() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut set: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let target = target.to_string_lossy();
            let name = target.strip_prefix("/memfd:")?;
            let name = name.strip_suffix(" (deleted)").unwrap_or(name);
            let info = std::fs::read_to_string(
                std::path::Path::new("/proc/self/fdinfo").join(e.file_name()),
            )
            .ok()?;
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())?;
            let mode = match flags & 0o3 {
                0 => "ro",
                1 => "wo",
                _ => "rw",
            };
            Some(format!("{name}:{mode}"))
        })
        .collect();
    set.sort();
    set
}

/// The memfds mapped into this process: `NAME:PERMS`, sorted, each once.
fn memfd_maps() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let set: std::collections::BTreeSet<String> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let perms = f.nth(1)?;
            let path = l.split_once("/memfd:")?.1;
            let name = path.strip_suffix(" (deleted)").unwrap_or(path);
            Some(format!("{name}:{perms}"))
        })
        .collect();
    set.into_iter().collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("report");
    if mode == "exit" {
        std::process::exit(args.get(2).and_then(|c| c.parse().ok()).unwrap_or(0));
    }
    let p = connect();
    let set = memfds();
    println!("memfds={}", set.len());
    println!("memfd-set={}", set.join(","));
    println!("memfd-maps={}", memfd_maps().join(","));
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
