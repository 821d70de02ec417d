//! The waiting ends of `log`, `latest` and `blob` (their readers; the writers never wait)
//! in-process over the fake event bus with each kind of event fault injected into both
//! sides (`tests/faults.rs` does the same for the queue). Spurious and coalesced events
//! change nothing a reader returns; a dropped notification delays the sleeping reader
//! until the next one.

use staticbus_guest::fake::{
    two_domains, Backing, Bus, BusPlatform, Chance, FaultState, FaultStats, Faults, FaultyPlatform,
};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_proto::endpoint::{BlobReader, BlobWriter, LatestReader, LatestWriter};
use staticbus_proto::endpoint::{LogReader, LogWriter};
use staticbus_proto::log::Start;
use staticbus_proto::wait::Spin;
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;

const SIZE: usize = 0x4000;
/// Values per streaming run (Miri is slow).
const COUNT: u64 = if cfg!(miri) { 15 } else { 500 };

type Plat<'a> = FaultyPlatform<'a, BusPlatform<'a>>;

/// `[writer, reader]`: a log `l`, a latest value `v` and a blob `b` from `a` to `b`.
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| {
        two_domains(&[
            ("l", Protocol::Log, SIZE as u64),
            ("v", Protocol::Latest, SIZE as u64),
            ("b", Protocol::Blob, SIZE as u64),
        ])
    })
}

/// The 16-byte value (the manifests' `value-size`) or record number `i`.
fn value(i: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v[8..].copy_from_slice(&(!i).to_le_bytes());
    v
}

/// Runs `reader` in a thread as domain `b` and `writer` here as domain `a` (each with
/// its faults), over one bus; returns what `reader` returned.
fn pair<T: Send>(
    faults: [&FaultState; 2],
    reader: impl FnOnce(&Plat<'_>) -> T + Send,
    writer: impl FnOnce(&Plat<'_>, &Bus),
) -> T {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = ["l", "v", "b"].map(|_| Backing::new(SIZE));
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let platform = |dom, m, f| {
        let [l, v, b] = &mem;
        FaultyPlatform::new(
            BusPlatform::new(dom, m)
                .with_region("l", l.region(SIZE))
                .with_region("v", v.region(SIZE))
                .with_region("b", b.region(SIZE)),
            f,
        )
    };
    let platform = &platform;
    let fr = faults[1];
    thread::scope(|s| {
        let h = s.spawn(move || reader(&platform(db, mb, fr)));
        let pa = platform(da, ma, faults[0]);
        writer(&pa, &bus);
        drop(pa);
        h.join().unwrap()
    })
}

/// The writer publishes value `i` only after the reader acknowledged `i - 1`, so the
/// reader (no spinning) waits for nearly every one: it must see each, intact. Returns
/// what was injected, `[writer, reader]`, over the three protocols.
fn stream(faults: [Faults; 2]) -> [FaultStats; 2] {
    let st = faults.map(FaultState::new);
    let st = [&st[0], &st[1]];
    // Log: every record, in order, none missed.
    let (ack, acked) = mpsc::channel();
    pair(
        st,
        move |p| {
            let mut r = LogReader::open(p, "l", Start::Oldest).unwrap();
            r.set_spin(Spin::NONE);
            let mut buf = [0u8; 64];
            for i in 0..COUNT {
                let rec = r.read(&mut buf).unwrap();
                assert_eq!((rec.seq, rec.missed), (i, 0));
                assert_eq!(&buf[..rec.len], &value(i), "record {i}");
                ack.send(i).unwrap();
            }
        },
        |p, _| {
            let mut w = LogWriter::open(p, "l").unwrap();
            for i in 0..COUNT {
                w.append(&value(i)).unwrap();
                assert_eq!(acked.recv().unwrap(), i);
            }
        },
    );
    // Latest: every change, with its stamp.
    let (ack, acked) = mpsc::channel();
    pair(
        st,
        move |p| {
            let mut r = LatestReader::open(p, "v").unwrap();
            r.set_spin(Spin::NONE);
            let mut buf = [0u8; 16];
            for i in 1..=COUNT {
                let s = r.read_changed(&mut buf).unwrap().expect("a value");
                assert_eq!(s.stamp, i);
                assert_eq!(buf, value(i), "value {i}");
                ack.send(i).unwrap();
            }
        },
        |p, _| {
            let mut w = LatestWriter::open(p, "v").unwrap();
            for i in 1..=COUNT {
                w.publish(i, &value(i)).unwrap();
                assert_eq!(acked.recv().unwrap(), i);
            }
        },
    );
    // Blob: every version, intact.
    let (ack, acked) = mpsc::channel();
    pair(
        st,
        move |p| {
            let mut r = BlobReader::open(p, "b").unwrap();
            r.set_spin(Spin::NONE);
            let mut buf = [0u8; 64];
            for i in 1..=COUNT {
                let b = r.read_changed(&mut buf).unwrap().expect("a blob");
                assert_eq!(b.version, i);
                assert_eq!(&buf[..b.len], &value(i), "blob {i}");
                ack.send(i).unwrap();
            }
        },
        |p, _| {
            let mut w = BlobWriter::open(p, "b").unwrap();
            for i in 1..=COUNT {
                assert_eq!(w.publish(&value(i)).unwrap(), i);
                assert_eq!(acked.recv().unwrap(), i);
            }
        },
    );
    [st[0].stats(), st[1].stats()]
}

#[test]
fn readers_see_every_value_with_spurious_events() {
    let [_, r] = stream([
        Faults::spurious(1, Chance::one_in(2)),
        Faults::spurious(2, Chance::one_in(2)),
    ]);
    // The readers waited (in open, or for a value) and saw invented events.
    assert!(r.spurious > 0, "{r:?}");
    assert_eq!((r.dropped, r.coalesced), (0, 0));
}

#[test]
fn readers_see_every_value_with_coalesced_events() {
    stream([
        Faults::coalesce(3, Chance::ALWAYS),
        Faults::coalesce(4, Chance::ALWAYS),
    ]);
}

#[test]
fn readers_see_every_value_with_both() {
    let f = |seed| Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    };
    stream([f(5), f(6)]);
}

/// The reader opens, says so on `opened`, then waits (`read`). Once it sleeps in that
/// wait, the writer's first publish loses its notification (the reader sleeps on), and
/// the second one, still owed to a reader whose wake-up flag stays set, wakes it.
/// `write(p, before)` opens the writer on `p`, then calls `before()` and publishes, twice.
fn dropped_then_delivered<T: Send>(
    read: impl FnOnce(&Plat<'_>, &mpsc::Sender<()>) -> T + Send,
    write: impl FnOnce(&Plat<'_>, &mut dyn FnMut()),
) -> T {
    let (fw, fr) = (
        FaultState::new(Faults::none(7)),
        FaultState::new(Faults::none(8)),
    );
    let (opened, is_open) = mpsc::channel();
    pair(
        [&fw, &fr],
        move |p| read(p, &opened),
        |p, bus| {
            let mut publishes = 0;
            write(p, &mut || {
                if publishes == 0 {
                    is_open.recv().unwrap();
                    bus.await_sleepers(1);
                    fw.set(Faults::drop(9, Chance::ALWAYS));
                } else {
                    assert_eq!(fw.stats().dropped, 1);
                    assert_eq!(bus.sleeping(), 1, "the reader still sleeps");
                    fw.set(Faults::none(10));
                }
                publishes += 1;
            });
            assert_eq!(publishes, 2);
            assert!(!bus.deadlocked());
        },
    )
}

#[test]
fn a_dropped_notification_delays_each_reader_until_the_next_one() {
    // Log: the reader then reads both records.
    let got = dropped_then_delivered(
        |p, opened| {
            let mut r = LogReader::open(p, "l", Start::Oldest).unwrap();
            r.set_spin(Spin::NONE);
            opened.send(()).unwrap();
            let mut buf = [0u8; 64];
            [r.read(&mut buf).unwrap().seq, r.read(&mut buf).unwrap().seq]
        },
        |p, before| {
            let mut w = LogWriter::open(p, "l").unwrap();
            for k in 0..2 {
                before();
                w.append(&value(k)).unwrap();
            }
        },
    );
    assert_eq!(got, [0, 1]);
    // Latest and blob: the reader wakes after the second publish and reads the newest.
    let got = dropped_then_delivered(
        |p, opened| {
            let mut r = LatestReader::open(p, "v").unwrap();
            r.set_spin(Spin::NONE);
            opened.send(()).unwrap();
            let mut buf = [0u8; 16];
            r.read_changed(&mut buf).unwrap().map(|s| s.stamp)
        },
        |p, before| {
            let mut w = LatestWriter::open(p, "v").unwrap();
            for k in 1..=2 {
                before();
                w.publish(k, &value(k)).unwrap();
            }
        },
    );
    assert_eq!(got, Some(2));
    let got = dropped_then_delivered(
        |p, opened| {
            let mut r = BlobReader::open(p, "b").unwrap();
            r.set_spin(Spin::NONE);
            opened.send(()).unwrap();
            let mut buf = [0u8; 64];
            r.read_changed(&mut buf).unwrap().map(|b| b.version)
        },
        |p, before| {
            let mut w = BlobWriter::open(p, "b").unwrap();
            for k in 1..=2 {
                before();
                w.publish(&value(k)).unwrap();
            }
        },
    );
    assert_eq!(got, Some(2));
}
