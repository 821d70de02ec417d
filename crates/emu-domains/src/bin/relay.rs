//! `relay source|relay|sink [COUNT]`: three domains, two channels. `source` sends the numbers
//! 1..=COUNT over channel `upstream` to `relay`, which forwards each over `downstream` to
//! `sink`, which checks order and sum. One word each way per message (a stop-and-wait
//! mailbox; see the protocols for real queues).

use staticbus_emu_domains::{
    connect, count_arg, open, wait_until, word, Ordering::SeqCst, ACK, READY, SEQ,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let role = args.get(1).map(String::as_str).unwrap_or("");
    let n = count_arg(&args, 2, 1000);
    let p = connect();
    match role {
        "source" => {
            let up = open(&p, "upstream");
            up.clear_initial();
            wait_until(&up, || word(&up, READY).load(SeqCst) == 1);
            for i in 1..=n {
                word(&up, SEQ).store(i, SeqCst);
                up.notify_all().expect("notify");
                wait_until(&up, || word(&up, ACK).load(SeqCst) >= i);
            }
            println!("source: sent {n}");
        }
        "relay" => {
            let up = open(&p, "upstream");
            let down = open(&p, "downstream");
            up.clear_initial();
            down.clear_initial();
            wait_until(&down, || word(&down, READY).load(SeqCst) == 1);
            word(&up, READY).store(1, SeqCst);
            up.notify_all().expect("notify");
            for i in 1..=n {
                wait_until(&up, || word(&up, SEQ).load(SeqCst) >= i);
                let v = word(&up, SEQ).load(SeqCst);
                word(&down, SEQ).store(v, SeqCst);
                down.notify_all().expect("notify");
                wait_until(&down, || word(&down, ACK).load(SeqCst) >= i);
                word(&up, ACK).store(i, SeqCst);
                up.notify_all().expect("notify");
            }
            println!("relay: forwarded {n}");
        }
        "sink" => {
            let down = open(&p, "downstream");
            down.clear_initial();
            word(&down, READY).store(1, SeqCst);
            down.notify_all().expect("notify");
            let mut sum = 0u64;
            for i in 1..=n {
                wait_until(&down, || word(&down, SEQ).load(SeqCst) >= i);
                let v = word(&down, SEQ).load(SeqCst);
                if v != i {
                    eprintln!("sink: expected {i}, got {v}");
                    std::process::exit(1);
                }
                sum += v;
                word(&down, ACK).store(i, SeqCst);
                down.notify_all().expect("notify");
            }
            let want = n * (n + 1) / 2;
            if sum != want {
                eprintln!("sink: sum {sum}, expected {want}");
                std::process::exit(1);
            }
            println!("sink: received {n}, sum {sum}");
            println!("PASS relay {n}");
        }
        _ => {
            eprintln!("usage: relay source|relay|sink [COUNT]");
            std::process::exit(2);
        }
    }
}
