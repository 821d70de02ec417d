//! `ping_pong` (channel form) run in-process, both domains as threads over the fake event
//! bus (`staticbus_guest::fake`), with each kind of event fault injected: it passes with
//! spurious and with coalesced events, and with its notifications dropped both sides end
//! up waiting for good, which the bus reports and the program turns into `RESULT FAIL`.

use staticbus_guest::fake::{
    two_domains, Backing, Bus, BusDomain, BusPlatform, Chance, FaultState, FaultStats, Faults,
    FaultyPlatform,
};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_programs::{ping_pong, Args, Clock};
use std::sync::OnceLock;
use std::thread;
use std::time::Instant;

const SIZE: usize = 0x1000;
const ROUNDS: u64 = if cfg!(miri) { 20 } else { 500 };

struct Wall(Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// `a` is the channel's producer (so `ping`), `b` its consumer (`pong`).
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| two_domains(&[("pingpong", Protocol::Queue, SIZE as u64)]))
}

/// One side of the ping-pong: its output and whether it passed.
fn side(dom: BusDomain<'_>, m: &'static Manifest, mem: &Backing, f: &FaultState) -> (bool, String) {
    let p = FaultyPlatform::new(
        BusPlatform::new(dom, m).with_region("pingpong", mem.region(SIZE)),
        f,
    );
    let args = format!("rounds={ROUNDS}");
    let mut out = String::new();
    let passed = ping_pong::run(&p, &Wall(Instant::now()), &Args::new(&args), &mut out);
    (passed, out)
}

struct Run {
    ping: (bool, String),
    pong: (bool, String),
    faults: [FaultStats; 2],
    deadlocked: bool,
}

/// Runs ping (`a`) and pong (`b`) with `faults`; with `ping_first`, pong starts only
/// once ping sleeps waiting for it.
fn run(faults: [Faults; 2], ping_first: bool) -> Run {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let states = faults.map(FaultState::new);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let (mem_r, st, bus_r) = (&mem, &states, &bus);
    let (ping, pong) = thread::scope(|s| {
        let ping = s.spawn(move || side(da, ma, mem_r, &st[0]));
        if ping_first {
            bus_r.await_sleepers(1);
        }
        let pong = s.spawn(move || side(db, mb, mem_r, &st[1]));
        (ping.join().unwrap(), pong.join().unwrap())
    });
    Run {
        ping,
        pong,
        faults: [states[0].stats(), states[1].stats()],
        deadlocked: bus.deadlocked(),
    }
}

fn assert_passed(r: &Run) {
    assert!(r.ping.0, "{}", r.ping.1);
    assert!(r.pong.0, "{}", r.pong.1);
    assert!(
        r.ping
            .1
            .contains(&format!("RESULT PASS ping-pong ping: {ROUNDS} round trips")),
        "{}",
        r.ping.1
    );
    assert!(
        r.pong.1.contains("RESULT PASS ping-pong pong"),
        "{}",
        r.pong.1
    );
    assert!(!r.deadlocked);
}

#[test]
fn passes_without_faults() {
    let r = run([Faults::none(1), Faults::none(2)], false);
    assert_passed(&r);
    assert_eq!(r.faults, [FaultStats::default(); 2]);
}

#[test]
fn passes_with_spurious_events() {
    // Every wait returns at once: both sides poll the words until the other answers.
    let r = run(
        [
            Faults::spurious(3, Chance::ALWAYS),
            Faults::spurious(4, Chance::ALWAYS),
        ],
        false,
    );
    assert_passed(&r);
    // Over the rounds the sides waited for each other, and every wait was invented.
    assert!(
        r.faults[0].spurious + r.faults[1].spurious > 0,
        "{:?}",
        r.faults
    );
}

#[test]
fn passes_with_coalesced_events() {
    let r = run(
        [
            Faults::coalesce(5, Chance::ALWAYS),
            Faults::coalesce(6, Chance::ALWAYS),
        ],
        false,
    );
    assert_passed(&r);
}

#[test]
fn passes_with_some_of_both() {
    let f = |seed| Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    };
    assert_passed(&run([f(7), f(8)], false));
}

#[test]
fn with_its_notifications_dropped_it_fails_instead_of_hanging() {
    // Ping writes hello, notifies (lost) and sleeps waiting for ready; then pong starts,
    // sees hello, writes ready, notifies (lost) and sleeps waiting for round 1. Nobody is
    // left to wake anyone: on Xen both would sleep forever.
    let r = run(
        [
            Faults::drop(9, Chance::ALWAYS),
            Faults::drop(10, Chance::ALWAYS),
        ],
        true,
    );
    assert!(r.deadlocked);
    for (passed, out) in [&r.ping, &r.pong] {
        assert!(!passed);
        assert!(out.contains("RESULT FAIL wait: errno 35"), "{out}");
    }
    assert_eq!(r.faults[0].dropped, 1, "ping's hello");
    assert_eq!(r.faults[1].dropped, 1, "pong's ready");
}
