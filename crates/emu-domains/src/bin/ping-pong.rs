//! `ping-pong ping|pong [ROUND_TRIPS]`: two domains bounce a counter over a channel's
//! event pair and two words of its region; `ping` prints round-trip statistics. This is
//! `staticbus_programs::ping_pong` (the code the bare-metal Xen guest `xen-ping-pong` runs)
//! with `role=ping|pong rounds=ROUND_TRIPS`; `key=value` words after the role are passed
//! on as well.
//!
//! `ping-pong flood|drain [COUNT]`: back-to-back sends, then a tenth as many blocking hypercalls
//! (`EVTCHNOP_status`, which always goes through the domain's hypervisor thread), to
//! measure send and hypercall throughput (emulator only). With direct delivery
//! (docs/adr/0009) the sends make no hypercall; the first line says which path they took.

use staticbus_emu_domains::{
    connect, count_arg, open, wait_until, word, Ordering::SeqCst, READY, SEQ,
};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str).unwrap_or("");
    let n = count_arg(&args, 2, 10_000);
    if role == "ping" || role == "pong" {
        let mut app_args = vec![format!("role={role}"), format!("rounds={n}")];
        app_args.extend(args.iter().skip(2).filter(|a| a.contains('=')).cloned());
        let passed = staticbus_emu_domains::run_app(staticbus_programs::ping_pong::run, &app_args);
        staticbus_emu_domains::exit(passed)
    }
    let p = connect();
    let ch = open(&p, "pingpong");
    ch.clear_initial();
    let (ready, seq) = (word(&ch, READY), word(&ch, SEQ));
    match role {
        "flood" => {
            // Hypercall throughput: back-to-back EVTCHNOP_send, then tell the peer to stop.
            wait_until(&ch, || ready.load(SeqCst) == 1);
            let start = Instant::now();
            for _ in 0..n {
                ch.notify_all().expect("notify");
            }
            let secs = start.elapsed().as_secs_f64();
            let path = if p.transport().direct_ports() > 0 {
                "direct, no hypercall"
            } else {
                "hypercalls"
            };
            println!(
                "flood: {n} EVTCHNOP_send ({path}) in {secs:.3}s = {:.0} sends/s",
                n as f64 / secs
            );
            let port = ch.peers()[0].local_port;
            let m = (n / 10).max(1);
            let start = Instant::now();
            for _ in 0..m {
                staticbus_guest::ops::evtchn_status(p.transport(), port).expect("status");
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "flood: {m} EVTCHNOP_status in {secs:.3}s = {:.0} hypercalls/s",
                m as f64 / secs
            );
            seq.store(u64::MAX, SeqCst);
            ch.notify_all().expect("notify");
            println!("PASS flood {n}");
        }
        "drain" => {
            ready.store(1, SeqCst);
            ch.notify_all().expect("notify");
            wait_until(&ch, || seq.load(SeqCst) == u64::MAX);
        }
        _ => {
            eprintln!("usage: ping-pong ping|pong|flood|drain [COUNT]");
            std::process::exit(2);
        }
    }
}
