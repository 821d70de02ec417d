//! `events_check` in-process, both domains as threads over the fake event bus: it passes
//! on a faithful bus and with coalesced and spurious events, and when the ringer's events
//! are lost the sleeper's wait after the burst never returns, which the bus reports as a deadlock and the program as
//! `RESULT FAIL` instead of hanging.

use staticbus_guest::fake::{
    two_domains, Backing, Bus, BusPlatform, Chance, FaultState, Faults, FaultyPlatform,
};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_programs::{events_check, Args, Clock};
use std::sync::OnceLock;
use std::thread;
use std::time::Instant;

const SIZE: usize = 0x1000;
const ARGS: &str = if cfg!(miri) {
    "burst=20 rounds=10 spin=8"
} else {
    "burst=200 rounds=300 spin=64"
};

struct Wall(Instant);

impl Clock for Wall {
    fn now_ns(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// `a` produces on `bell` (the ringer), `b` consumes (the sleeper).
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| two_domains(&[("bell", Protocol::Queue, SIZE as u64)]))
}

fn run(faults: [Faults; 2]) -> [(bool, String); 2] {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let states = faults.map(FaultState::new);
    let side = |dom, m: &'static Manifest, f: &FaultState| {
        let p = FaultyPlatform::new(
            BusPlatform::new(dom, m).with_region("bell", mem.region(SIZE)),
            f,
        );
        let mut out = String::new();
        let passed = events_check::run(&p, &Wall(Instant::now()), &Args::new(ARGS), &mut out);
        (passed, out)
    };
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    thread::scope(|s| {
        // The ringer first, until it sleeps waiting for `ready`: its `hello` is then in
        // memory before the sleeper looks (its event may be one of the lost ones).
        let a = s.spawn(|| side(da, ma, &states[0]));
        bus.await_sleepers(1);
        let b = s.spawn(|| side(db, mb, &states[1]));
        [a.join().unwrap(), b.join().unwrap()]
    })
}

#[test]
fn passes_on_a_faithful_bus() {
    let [ringer, sleeper] = run([Faults::none(1), Faults::none(2)]);
    assert!(ringer.0, "{}", ringer.1);
    assert!(sleeper.0, "{}", sleeper.1);
    assert!(
        ringer.1.contains("RESULT PASS events-check ringer"),
        "{}",
        ringer.1
    );
    assert!(sleeper.1.contains("wake-ups, none lost"), "{}", sleeper.1);
}

#[test]
fn passes_with_coalesced_and_spurious_events() {
    let f = |seed| Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    };
    let [ringer, sleeper] = run([f(3), f(4)]);
    assert!(ringer.0, "{}", ringer.1);
    assert!(sleeper.0, "{}", sleeper.1);
}

#[test]
fn a_lost_burst_fails_instead_of_hanging() {
    // Every event the ringer sends is lost (the sleeper's handshake events arrive): the
    // sleeper's wait after the burst never returns and the ringer waits for its report.
    let [ringer, sleeper] = run([Faults::drop(5, Chance::ALWAYS), Faults::none(6)]);
    assert!(!ringer.0 && !sleeper.0, "{}\n{}", ringer.1, sleeper.1);
    assert!(
        sleeper.1.contains("RESULT FAIL wait after the burst"),
        "{}",
        sleeper.1
    );
}
