//! `ping-pong ping|pong [ROUND_TRIPS]`: two domains bounce a sequence number over a static
//! event channel and a shared region; `ping` prints round-trip statistics.
//! `ping-pong flood|drain [COUNT]`: back-to-back sends, to measure hypercall throughput.
//!
//! Both sides first clear the bind-time pending bit and handshake (pong publishes
//! `ready`), then ping writes `seq = i` and notifies, pong answers `ack = i` and notifies.

use staticbus_examples::{
    connect, count_arg, open, wait_until, word, Ordering::SeqCst, Stats, ACK, READY, SEQ,
};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str).unwrap_or("");
    let n = count_arg(&args, 2, 10_000);
    let p = connect();
    let ch = open(&p, "pingpong");
    ch.clear_initial();
    let (ready, seq, ack) = (word(&ch, READY), word(&ch, SEQ), word(&ch, ACK));
    match role {
        "pong" => {
            ready.store(1, SeqCst);
            ch.notify_all().expect("notify");
            for i in 1..=n {
                wait_until(&ch, || seq.load(SeqCst) >= i);
                ack.store(i, SeqCst);
                ch.notify_all().expect("notify");
            }
            println!("pong: answered {n} pings");
        }
        "ping" => {
            wait_until(&ch, || ready.load(SeqCst) == 1);
            let mut rtt = Vec::with_capacity(n as usize);
            let start = Instant::now();
            for i in 1..=n {
                let t = Instant::now();
                seq.store(i, SeqCst);
                ch.notify_all().expect("notify");
                wait_until(&ch, || ack.load(SeqCst) >= i);
                rtt.push(t.elapsed().as_nanos() as u64);
            }
            let total = start.elapsed();
            let s = Stats::new(rtt);
            println!(
                "ping: {n} round trips in {:.3}s, RTT {}",
                total.as_secs_f64(),
                s.line()
            );
            println!("PASS ping-pong {n}");
        }
        "flood" => {
            // Hypercall throughput: back-to-back EVTCHNOP_send, then tell the peer to stop.
            wait_until(&ch, || ready.load(SeqCst) == 1);
            let start = Instant::now();
            for _ in 0..n {
                ch.notify_all().expect("notify");
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "flood: {n} EVTCHNOP_send in {secs:.3}s = {:.0} hypercalls/s",
                n as f64 / secs
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
