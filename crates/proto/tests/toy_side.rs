//! A protocol outside this crate gets a complete endpoint by implementing [`Side`] for its
//! two handles and writing its operations with [`Endpoint::wait_until`] and the
//! [`Notifier`]: open by name, the protocol and role checks with their messages, the
//! bind-time event, waiting for the initialiser, counters and spin-then-block come from
//! the generic endpoint. The toy protocol is a counter: the writer bumps it, the reader
//! waits until it passes a value. It has no protocol id of its own, so it borrows
//! `blob`'s (and `blob`'s error type for a region that is too small or not initialised).
//!
//! Its operations are an extension trait only because this is another crate (an
//! inherent `impl` of `Endpoint` must be in `staticbus-proto`, where the four protocols'
//! sides are).

use staticbus_guest::fake::{
    two_domains, Backing, Bus, BusPlatform, Chance, FaultState, Faults, FaultyPlatform,
};
use staticbus_guest::manifest::{self, Manifest, Protocol, Role};
use staticbus_guest::{Events, Region};
use staticbus_proto::blob;
use staticbus_proto::endpoint::{AwaitInit, Endpoint, Error, Notifier, Side};
use staticbus_proto::header::HeaderError;
use staticbus_proto::wait::Spin;
use std::fmt;
use std::sync::atomic::Ordering::{Acquire, Release, SeqCst};
use std::sync::OnceLock;
use std::thread;

const SIZE: usize = 0x1000;
/// Non-zero once the writer has initialised the region.
const OFF_MAGIC: usize = 0;
/// The counter.
const OFF_VALUE: usize = 64;
/// The reader's "wake me" flag.
const OFF_WAITING: usize = 128;
const MAGIC: u64 = 0x544f_5943_4f55_4e54;

const BUMPS: u64 = if cfg!(miri) { 20 } else { 1000 };

fn too_small(region: &Region) -> Error {
    Error::Blob(blob::Error::Header(HeaderError::BadRegion {
        len: region.len(),
    }))
}

/// The writer's handle.
struct CounterWriter {
    region: Region,
    value: u64,
}

/// The reader's handle.
struct CounterReader {
    region: Region,
}

impl Side for CounterWriter {
    const PROTOCOL: Protocol = Protocol::Blob;
    const ROLE: Role = Role::Writer;
    const NAME: &'static str = "CounterWriter";
    const AWAIT_INIT: AwaitInit = AwaitInit::Never;
    type Args = ();

    fn attach(region: Region, _: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        let value = region
            .load_le::<u64>(OFF_VALUE, Acquire)
            .ok_or_else(|| too_small(&region))?;
        region
            .store_le::<u64>(OFF_MAGIC, MAGIC, Release)
            .ok_or_else(|| too_small(&region))?;
        Ok(CounterWriter { region, value })
    }

    fn opened<E: Events>(&mut self, n: &mut Notifier<'_, '_, E>) -> Result<(), Error> {
        n.each_peer()
    }

    fn debug_fields(&self, d: &mut fmt::DebugStruct<'_, '_>) {
        d.field("value", &self.value);
    }
}

impl Side for CounterReader {
    const PROTOCOL: Protocol = Protocol::Blob;
    const ROLE: Role = Role::Reader;
    const NAME: &'static str = "CounterReader";
    const AWAIT_INIT: AwaitInit = AwaitInit::Event;
    type Args = ();

    fn attach(region: Region, _: &'static manifest::Channel, _: &()) -> Result<Self, Error> {
        match region.load_le::<u64>(OFF_MAGIC, Acquire) {
            None => Err(too_small(&region)),
            Some(0) => Err(Error::Blob(blob::Error::Header(
                HeaderError::NotInitialized,
            ))),
            Some(_) => Ok(CounterReader { region }),
        }
    }

    fn debug_fields(&self, _: &mut fmt::DebugStruct<'_, '_>) {}
}

impl CounterReader {
    /// The counter. Sequentially consistent, like the flag's store before the re-check
    /// in `prepare` and the writer's store and swap: either the reader sees the new value
    /// or the writer sees the flag (a weaker load here lets both miss; Miri finds that).
    fn value(&self) -> u64 {
        self.region.load_le::<u64>(OFF_VALUE, SeqCst).unwrap()
    }
}

/// The toy's operations.
trait Bump {
    /// Adds one and wakes the reader if it waits.
    fn bump(&mut self) -> Result<u64, Error>;
}

trait AwaitPast {
    /// Waits (spin, then block) until the counter is above `v`; returns it.
    fn await_past(&mut self, v: u64) -> Result<u64, Error>;
}

impl<E: Events> Bump for Endpoint<'_, E, CounterWriter> {
    fn bump(&mut self) -> Result<u64, Error> {
        let (w, mut n) = self.parts();
        w.value += 1;
        w.region
            .store_le::<u64>(OFF_VALUE, w.value, SeqCst)
            .unwrap();
        let waiting = w.region.atomic::<u32>(OFF_WAITING).unwrap().swap(0, SeqCst) != 0;
        n.all_if(waiting)?;
        Ok(w.value)
    }
}

impl<E: Events> AwaitPast for Endpoint<'_, E, CounterReader> {
    fn await_past(&mut self, v: u64) -> Result<u64, Error> {
        self.wait_until(
            |r| Ok(Some(r.value()).filter(|&now| now > v)),
            |r, _| {
                r.region
                    .atomic::<u32>(OFF_WAITING)
                    .unwrap()
                    .store(1, SeqCst);
                Ok(r.value() <= v)
            },
        )
    }
}

/// `[writer, reader]`: one toy channel `c` from `a` to `b`, and a queue `q`.
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| {
        two_domains(&[
            ("c", Protocol::Blob, SIZE as u64),
            ("q", Protocol::Queue, SIZE as u64),
        ])
    })
}

/// The reader opens first and waits for the initialisation; the writer bumps
/// [`BUMPS`] times, each after the reader has seen the previous value (so the reader,
/// which does not spin, often blocks); `faults` on both sides' events. Returns the
/// writer's notifications and the reader's blocks.
fn count_up(faults: [Faults; 2]) -> (u64, u64) {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let states = faults.map(FaultState::new);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let (mem, st, bus) = (&mem, &states, &bus);
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<u64>();
    thread::scope(|s| {
        let reader = s.spawn(move || {
            let p = FaultyPlatform::new(
                BusPlatform::new(db, mb).with_region("c", mem.region(SIZE)),
                &st[1],
            );
            let mut r = Endpoint::<_, CounterReader>::open(&p, "c").unwrap();
            r.set_spin(Spin::NONE);
            let mut v = 0;
            while v < BUMPS {
                v = r.await_past(v).unwrap();
                seen_tx.send(v).unwrap();
            }
            r.counters().wait.blocks
        });
        // The reader sleeps in its open until the writer has initialised the region.
        bus.await_sleepers(1);
        let p = FaultyPlatform::new(
            BusPlatform::new(da, ma).with_region("c", mem.region(SIZE)),
            &st[0],
        );
        let mut w = Endpoint::<_, CounterWriter>::open(&p, "c").unwrap();
        assert_eq!(w.counters().notifications, 1, "open signals the reader");
        for i in 1..=BUMPS {
            assert_eq!(w.bump().unwrap(), i);
            assert_eq!(seen_rx.recv().unwrap(), i, "the reader saw every value");
        }
        let notifications = w.counters().notifications;
        drop(p);
        (notifications, reader.join().unwrap())
    })
}

#[test]
fn a_toy_side_is_a_whole_endpoint() {
    let (notifications, blocks) = count_up([Faults::none(1), Faults::none(2)]);
    // The writer notified only a reader that asked (at most once per bump, plus open's
    // signal), and without faults every block of the reader ended by one of those.
    assert!(notifications <= BUMPS + 1, "{notifications} notifications");
    assert!(
        blocks <= notifications,
        "{blocks} blocks, {notifications} notifications"
    );
}

#[test]
fn a_toy_side_survives_spurious_and_coalesced_events() {
    let f = |seed| Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    };
    count_up([f(3), f(4)]);
}

#[test]
fn a_toy_side_gets_the_checks_and_their_messages() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let pb = BusPlatform::new(bus.domain(mb.domid), mb)
        .with_region("c", mem.region(SIZE))
        .with_region("q", mem.region(SIZE));
    let e = Endpoint::<_, CounterWriter>::open(&pb, "c").unwrap_err();
    assert_eq!(
        e,
        Error::WrongRole {
            expected: Role::Writer,
            found: Role::Reader
        }
    );
    assert_eq!(
        e.to_string(),
        "this domain is the channel's reader, the program expects writer"
    );
    let e = Endpoint::<_, CounterReader>::open(&pb, "q").unwrap_err();
    assert_eq!(
        e.to_string(),
        "the manifest declares protocol `queue`, the program expects `blob`"
    );
    let e = Endpoint::<_, CounterReader>::open(&pb, "nope").unwrap_err();
    assert_eq!(
        e.to_string(),
        "cannot open channel: no such channel in the manifest"
    );
    // The writer's side in Debug, under the side's name.
    let pa = BusPlatform::new(bus.domain(ma.domid), ma).with_region("c", mem.region(SIZE));
    let mut w = Endpoint::<_, CounterWriter>::open(&pa, "c").unwrap();
    w.bump().unwrap();
    let d = format!("{w:?}");
    assert!(
        d.starts_with("CounterWriter { channel: \"c\", value: 1, counters: "),
        "{d}"
    );
}
