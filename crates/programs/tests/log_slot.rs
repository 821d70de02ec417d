//! `log_check`'s writer attaches with the slot size the description declares; a `slot=`
//! argument that disagrees is refused with both numbers, one that agrees is accepted.

use staticbus_guest::fake::{two_domains, Backing, Bus, BusPlatform, FAKE_SLOT_SIZE};
use staticbus_guest::manifest::Protocol;
use staticbus_programs::{log_check, Args, Clock};

const SIZE: usize = 0x4000;

struct Zero;

impl Clock for Zero {
    fn now_ns(&self) -> u64 {
        0
    }
}

fn writer_with(args: &str) -> (bool, String) {
    let [a, _b] = two_domains(&[("log", Protocol::Log, SIZE as u64)]);
    let bus = Bus::new(&[a]);
    let mem = Backing::new(SIZE);
    let p = BusPlatform::new(bus.domain(a.domid), a).with_region("log", mem.region(SIZE));
    let mut out = String::new();
    let passed = log_check::run(&p, &Zero, &Args::new(args), &mut out);
    (passed, out)
}

#[test]
fn a_slot_argument_must_agree_with_the_description() {
    let (passed, out) = writer_with("count=1000 slot=256");
    assert!(!passed, "{out}");
    assert!(
        out.contains(&format!(
            "RESULT FAIL slot=256, but the description declares slot-size {FAKE_SLOT_SIZE} for this log"
        )),
        "{out}"
    );
    // The same number is only a repetition: the writer goes on, to the next channel it
    // opens (`ctl`, which this one-channel system lacks).
    let (passed, out) = writer_with(&format!("count=1000 slot={FAKE_SLOT_SIZE}"));
    assert!(!passed, "{out}");
    assert!(out.contains("RESULT FAIL open ctl: "), "{out}");
    assert!(!out.contains("but the description declares"), "{out}");
}
