//! `queue_check` and `log_check` run in-process, both domains as threads over the fake
//! event bus (`staticbus_guest::fake`), without and with spurious and coalesced events
//! injected into both domains' events: both pass, with every message and record
//! accounted for. (`faults.rs` does the same for `ping_pong`, with dropped events too.)

use staticbus_guest::fake::{
    two_domains_from, Backing, Bus, BusDomain, BusPlatform, Chance, FaultState, Faults,
    FaultyPlatform,
};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_programs::{log_check, queue_check, Args, Clock};
use std::thread;
use std::time::Instant;

const SIZE: usize = 0x4000;

struct Wall(Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// The program both domains run.
#[derive(Clone, Copy)]
enum Program {
    QueueCheck,
    LogCheck,
}

/// One domain: its platform with every channel's region, the program's output and
/// whether it passed.
fn domain(
    dom: BusDomain<'_>,
    m: &'static Manifest,
    mem: &[(&'static str, Backing)],
    faults: &FaultState,
    program: Program,
    args: &str,
) -> (bool, String) {
    let mut p = BusPlatform::new(dom, m);
    for (name, b) in mem {
        p = p.with_region(name, b.region(SIZE));
    }
    let p = FaultyPlatform::new(p, faults);
    let mut out = String::new();
    let (clock, args) = (Wall(Instant::now()), Args::new(args));
    let passed = match program {
        Program::QueueCheck => queue_check::run(&p, &clock, &args, &mut out),
        Program::LogCheck => log_check::run(&p, &clock, &args, &mut out),
    };
    (passed, out)
}

/// Runs `program` in domains `a` and `b` over `channels` (`(name, protocol, from)`) with
/// `faults`; returns both outputs.
fn run_pair(
    channels: &[(&'static str, Protocol, usize)],
    program: Program,
    args: [&str; 2],
    faults: [Faults; 2],
) -> [(bool, String); 2] {
    let spec: Vec<_> = channels
        .iter()
        .map(|&(n, p, from)| (n, p, SIZE as u64, from))
        .collect();
    let [ma, mb] = two_domains_from(&spec);
    let bus = Bus::new(&[ma, mb]);
    let mem: Vec<_> = channels
        .iter()
        .map(|&(n, _, _)| (n, Backing::new(SIZE)))
        .collect();
    let states = faults.map(FaultState::new);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let (mem, st) = (&mem, &states);
    let out = thread::scope(|s| {
        let a = s.spawn(move || domain(da, ma, mem, &st[0], program, args[0]));
        let b = s.spawn(move || domain(db, mb, mem, &st[1], program, args[1]));
        [a.join().unwrap(), b.join().unwrap()]
    });
    assert!(!bus.deadlocked());
    out
}

fn queue_check(faults: [Faults; 2]) {
    let [p, c] = run_pair(
        &[("stream", Protocol::Queue, 0), ("ack", Protocol::Queue, 1)],
        Program::QueueCheck,
        ["count=2000 rtt=50", ""],
        faults,
    );
    assert!(p.0, "{}", p.1);
    assert!(c.0, "{}", c.1);
    assert!(
        p.1.contains("RESULT PASS queue-check producer: 2000 messages verified"),
        "{}",
        p.1
    );
    assert!(p.1.contains("50 round trips"), "{}", p.1);
    assert!(
        c.1.contains("RESULT PASS queue-check consumer: 2000 messages in order and intact"),
        "{}",
        c.1
    );
}

fn log_check(faults: [Faults; 2]) {
    let [w, r] = run_pair(
        &[
            ("log", Protocol::Log, 0),
            ("ctl", Protocol::Queue, 0),
            ("ack", Protocol::Queue, 1),
        ],
        Program::LogCheck,
        ["count=2000", ""],
        faults,
    );
    assert!(w.0, "{}", w.1);
    assert!(r.0, "{}", r.1);
    assert!(
        w.1.contains("RESULT PASS log-check writer: 2000 records"),
        "{}",
        w.1
    );
    assert!(
        r.1.contains("RESULT PASS log-check reader: 2000 records"),
        "{}",
        r.1
    );
}

fn noisy(seed: u64) -> Faults {
    Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    }
}

#[test]
fn queue_check_passes_in_process() {
    queue_check([Faults::none(1), Faults::none(2)]);
}

#[test]
fn queue_check_passes_with_spurious_and_coalesced_events() {
    queue_check([noisy(3), noisy(4)]);
}

#[test]
fn log_check_passes_in_process() {
    log_check([Faults::none(5), Faults::none(6)]);
}

#[test]
fn log_check_passes_with_spurious_and_coalesced_events() {
    log_check([noisy(7), noisy(8)]);
}
