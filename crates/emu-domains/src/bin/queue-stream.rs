//! `queue-stream producer|consumer COUNT [CRASH_EVERY]`: a stream of COUNT checksummed
//! messages over a `queue` channel (`staticbus-proto`), with the consumer crashing every
//! CRASH_EVERY messages to show that a restarted consumer carries on from the queue's state
//! in shared memory with nothing lost and nothing delivered twice.
//!
//! Message `seq` (1-based) is `seq` as 8 little-endian bytes followed by `seq % 57 + 8`
//! payload bytes `(seq + i) as u8`. The consumer keeps its progress in the `progress`
//! channel's region (word 0: last sequence number consumed; word 1: done), written before
//! `release`: after a restart it expects `checkpoint + 1`, and a message equal to the
//! checkpoint is the one it had in hand when it died (delivered again by design, see the
//! queue's restart rules) and is skipped. Crashes alternate between "after the checkpoint,
//! before `release`" and "after `release`". Run it with `staticbus run --restart-on-crash`.

use staticbus_emu_domains::{connect, count_arg, open, Ordering::SeqCst};
use staticbus_guest::{Channel, Events};
use staticbus_proto::endpoint::{QueueRx, QueueTx};

fn fail(msg: &str) -> ! {
    eprintln!("FAIL {msg}");
    std::process::exit(1);
}

fn message(seq: u64, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&seq.to_le_bytes());
    let len = (seq % 57 + 8) as usize;
    buf.extend((0..len).map(|i| (seq as usize + i) as u8));
}

fn wait<E: Events>(ch: &Channel<'_, E>) {
    if let Err(e) = ch.wait() {
        fail(&format!("wait: {e}"));
    }
}

fn producer(n: u64) {
    let p = connect();
    let progress = open(&p, "progress");
    progress.clear_initial();
    let mut tx = QueueTx::open(&p, "stream").unwrap_or_else(|e| fail(&format!("open: {e}")));
    let mut buf = Vec::new();
    for seq in 1..=n {
        message(seq, &mut buf);
        tx.send(&buf)
            .unwrap_or_else(|e| fail(&format!("send {seq}: {e}")));
    }
    let done = progress.region().atomic::<u64>(8).expect("progress word");
    while done.load(SeqCst) == 0 {
        wait(&progress);
    }
    let c = tx.counters();
    println!(
        "producer: sent {n} messages, {} notifications ({:.5} per message), blocked {} times",
        c.notifications,
        c.notifications as f64 / n as f64,
        c.wait.blocks
    );
}

/// What the consumer did with one message.
enum Step {
    /// The message in hand when the previous incarnation died: already counted.
    Repeat,
    /// A new message, checked and checkpointed.
    Next(u64),
}

fn consumer(n: u64, crash_every: u64) {
    let p = connect();
    let progress = open(&p, "progress");
    progress.clear_initial();
    let checkpoint = progress.region().atomic::<u64>(0).expect("progress word");
    let done = progress.region().atomic::<u64>(8).expect("progress word");
    // Blocks until the producer has initialised the queue.
    let mut rx = QueueRx::open(&p, "stream").unwrap_or_else(|e| fail(&format!("open: {e}")));
    let mut expect = checkpoint.load(SeqCst) + 1;
    let start = expect;
    let (mut want, mut got) = (Vec::new(), vec![0u8; 128]);
    loop {
        let step = rx
            .recv_in_place(|msg| {
                let len = msg.len();
                if len > got.len() || len < 8 {
                    fail(&format!("bad message length {len}"));
                }
                msg.read(0, &mut got[..len])
                    .unwrap_or_else(|e| fail(&format!("read: {e}")));
                let seq = u64::from_le_bytes(got[..8].try_into().expect("8 bytes"));
                if seq + 1 == expect {
                    return Step::Repeat;
                }
                if seq != expect {
                    fail(&format!(
                        "expected message {expect}, got {seq} (lost or duplicated)"
                    ));
                }
                message(seq, &mut want);
                if want[..] != got[..len] {
                    fail(&format!("message {seq} is corrupt"));
                }
                checkpoint.store(seq, SeqCst);
                let crash = crash_every > 0 && seq % crash_every == 0 && seq != start && seq != n;
                if crash && (seq / crash_every) % 2 == 0 {
                    // Died holding the message: it will be delivered again.
                    std::process::abort();
                }
                Step::Next(seq)
            })
            .unwrap_or_else(|e| fail(&format!("recv: {e}")));
        let seq = match step {
            Step::Repeat => continue,
            Step::Next(seq) => seq,
        };
        if crash_every > 0 && seq % crash_every == 0 && seq != start && seq != n {
            std::process::abort(); // died between messages
        }
        if seq == n {
            done.store(1, SeqCst);
            progress.notify_all().expect("notify");
            println!("consumer: received all {n} messages in order, none lost or duplicated");
            println!("PASS queue-stream {n}");
            return;
        }
        expect += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n = count_arg(&args, 2, 1_000_000);
    match args.get(1).map(String::as_str) {
        Some("producer") => producer(n),
        Some("consumer") => consumer(n, count_arg(&args, 3, 0)),
        _ => {
            eprintln!("usage: queue-stream producer|consumer COUNT [CRASH_EVERY]");
            std::process::exit(2);
        }
    }
}
