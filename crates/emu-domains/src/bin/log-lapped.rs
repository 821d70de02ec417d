//! `log-lapped logger|collector BURSTS`: a `log` reader that falls behind, and exact
//! loss accounting.
//!
//! The logger appends BURSTS bursts of records while the collector is not reading; burst
//! `b` has `[slots / 2, slots, slots + 1, 3 * slots + 7][b % 4]` records, so some bursts
//! fit in the ring and others lap the reader. After each burst the logger sends the next
//! sequence number over the `done` queue and waits for an acknowledgement on `ack`. The
//! collector reads the burst from the log and checks that every record is intact, that
//! `seq == previous + 1 + missed` for every record, and that the burst's total `missed`
//! is exactly `max(0, burst - slots)`.
//!
//! Record `seq` is 32 bytes: `seq` as 8 little-endian bytes, then 24 bytes
//! `(seq + i) as u8`.

use staticbus_emu_domains::{connect, count_arg};
use staticbus_proto::endpoint::{Error, LogReader, LogWriter, QueueRx, QueueTx};
use staticbus_proto::log::Start;

fn fail(msg: &str) -> ! {
    eprintln!("FAIL {msg}");
    std::process::exit(1);
}

fn record(seq: u64) -> [u8; 32] {
    let mut r = [0u8; 32];
    r[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in r[8..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    r
}

fn burst_len(b: u64, slots: u64) -> u64 {
    [slots / 2, slots, slots + 1, 3 * slots + 7][(b % 4) as usize]
}

fn or_fail<T>(what: &str, r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| fail(&format!("{what}: {e}")))
}

fn logger(bursts: u64) {
    let p = connect();
    let mut log = or_fail("open log", LogWriter::open(&p, "log"));
    let mut done = or_fail("open done", QueueTx::open(&p, "done"));
    let mut ack = or_fail("open ack", QueueRx::open(&p, "ack"));
    let slots = log.writer().slots() as u64;
    let (mut expected_missed, mut buf) = (0, [0u8; 8]);
    for b in 0..bursts {
        let n = burst_len(b, slots);
        for _ in 0..n {
            let seq = log.head();
            or_fail("append", log.append(&record(seq)));
        }
        expected_missed += n.saturating_sub(slots);
        or_fail("send", done.send(&log.head().to_le_bytes()));
        or_fail("ack", ack.recv(&mut buf));
    }
    println!(
        "logger: {} records in {bursts} bursts into {slots} slots; {expected_missed} must be reported missed",
        log.head()
    );
}

fn collector(bursts: u64) {
    let p = connect();
    // The typed open refuses a channel used with the wrong protocol or role.
    match LogWriter::open(&p, "log") {
        Err(e @ Error::WrongRole { .. }) => println!("collector: refused as expected: {e}"),
        other => fail(&format!("opening the log as its writer: {other:?}")),
    }
    match QueueRx::open(&p, "log") {
        Err(e @ Error::WrongProtocol { .. }) => println!("collector: refused as expected: {e}"),
        other => fail(&format!("opening the log as a queue: {other:?}")),
    }
    let mut log = or_fail("open log", LogReader::open(&p, "log", Start::Oldest));
    let mut done = or_fail("open done", QueueRx::open(&p, "done"));
    let mut ack = or_fail("open ack", QueueTx::open(&p, "ack"));
    let slots = log.reader().slots() as u64;
    let (mut next, mut received, mut missed) = (0u64, 0u64, 0u64);
    let (mut buf, mut end) = ([0u8; 64], [0u8; 8]);
    for b in 0..bursts {
        or_fail("done", done.recv(&mut end));
        let end = u64::from_le_bytes(end);
        let mut burst_missed = 0;
        while next < end {
            let r = or_fail("read", log.read(&mut buf));
            if r.seq != next + r.missed {
                fail(&format!(
                    "record {} after {} with missed = {}: the loss count is wrong",
                    r.seq,
                    next.wrapping_sub(1),
                    r.missed
                ));
            }
            if buf[..r.len] != record(r.seq) {
                fail(&format!("record {} is corrupt or torn", r.seq));
            }
            burst_missed += r.missed;
            received += 1;
            next = r.seq + 1;
        }
        let want = burst_len(b, slots).saturating_sub(slots);
        if burst_missed != want {
            fail(&format!(
                "burst {b}: {burst_missed} reported missed, {want} overwritten"
            ));
        }
        missed += burst_missed;
        or_fail("ack", ack.send(b"ok"));
    }
    if received + missed != next {
        fail(&format!(
            "{received} received + {missed} missed != {next} written"
        ));
    }
    println!(
        "collector: {next} records: {received} received intact and in order, {missed} missed (reported exactly)"
    );
    println!("PASS log-lapped {next} {received} {missed}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bursts = count_arg(&args, 2, 40);
    match args.get(1).map(String::as_str) {
        Some("logger") => logger(bursts),
        Some("collector") => collector(bursts),
        _ => {
            eprintln!("usage: log-lapped logger|collector BURSTS");
            std::process::exit(2);
        }
    }
}
