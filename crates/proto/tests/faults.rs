//! The queue endpoints in-process over the fake event bus (`staticbus_guest::fake`), with
//! each kind of event fault injected. Spurious and coalesced events change nothing a
//! program sees. A dropped notification delays the waiter until the next notification;
//! with no next one the waiter sleeps for good (the protocols have no timeout; the fake bus
//! reports it as a deadlock), and the message is still in the queue.

use staticbus_guest::fake::{
    pair_ports, two_domains, Backing, Bus, BusPlatform, Chance, FaultState, FaultStats, Faults,
    FaultyPlatform, DEADLOCK,
};
use staticbus_guest::manifest::{Manifest, Protocol};
use staticbus_proto::endpoint::{Error, QueueRx, QueueTx};
use staticbus_proto::wait::Spin;
use std::sync::OnceLock;
use std::thread;

const SIZE: usize = 0x1000;

/// Messages per streaming run (Miri is slow).
const COUNT: u64 = if cfg!(miri) { 30 } else { 3000 };

/// `[producer, consumer]`: one queue `q` from domain `a` to domain `b`.
fn manifests() -> [&'static Manifest; 2] {
    static M: OnceLock<[&'static Manifest; 2]> = OnceLock::new();
    *M.get_or_init(|| two_domains(&[("q", Protocol::Queue, SIZE as u64)]))
}

/// Message `i`: `i` as 8 bytes, then `i % 200` bytes derived from `i`.
fn message(i: u64) -> Vec<u8> {
    let mut m = i.to_le_bytes().to_vec();
    m.extend((0..i % 200).map(|k| (i.wrapping_mul(31) + k) as u8));
    m
}

/// Streams [`COUNT`] messages from `a` to `b` with `faults` injected into each side's
/// events (both spin not at all, so they block often); checks every message arrives
/// once, in order, intact. Returns what was injected, `[producer, consumer]`.
fn stream(faults: [Faults; 2]) -> [FaultStats; 2] {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let states = faults.map(FaultState::new);
    // Attach both domains before either thread runs (deadlock detection counts them).
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let (mem, st) = (&mem, &states);
    thread::scope(|s| {
        s.spawn(move || {
            let p = FaultyPlatform::new(
                BusPlatform::new(da, ma).with_region("q", mem.region(SIZE)),
                &st[0],
            );
            let mut tx = QueueTx::open(&p, "q").unwrap();
            tx.set_spin(Spin::NONE);
            for i in 0..COUNT {
                tx.send(&message(i)).unwrap();
            }
        });
        s.spawn(move || {
            let p = FaultyPlatform::new(
                BusPlatform::new(db, mb).with_region("q", mem.region(SIZE)),
                &st[1],
            );
            let mut rx = QueueRx::open(&p, "q").unwrap();
            rx.set_spin(Spin::NONE);
            let mut buf = [0u8; 256];
            for i in 0..COUNT {
                let n = rx.recv(&mut buf).unwrap();
                assert_eq!(&buf[..n], &message(i)[..], "message {i}");
            }
            assert_eq!(rx.try_recv(&mut buf).unwrap(), None, "nothing extra");
        });
    });
    assert!(!bus.deadlocked());
    [states[0].stats(), states[1].stats()]
}

#[test]
fn spurious_events_change_nothing() {
    let [p, c] = stream([
        Faults::spurious(1, Chance::one_in(2)),
        Faults::spurious(2, Chance::one_in(2)),
    ]);
    // The data area (2 KiB) holds a few dozen messages: one side or the other waited,
    // and saw invented events.
    assert!(p.spurious + c.spurious > 0, "{p:?} {c:?}");
    assert_eq!(
        (p.dropped, c.dropped, p.coalesced, c.coalesced),
        (0, 0, 0, 0)
    );
}

#[test]
fn coalesced_events_change_nothing() {
    let [p, c] = stream([
        Faults::coalesce(3, Chance::ALWAYS),
        Faults::coalesce(4, Chance::ALWAYS),
    ]);
    assert_eq!((p.spurious, c.spurious, p.dropped, c.dropped), (0, 0, 0, 0));
}

#[test]
fn spurious_and_coalesced_together_change_nothing() {
    let f = |seed| Faults {
        seed,
        spurious: Chance::one_in(3),
        coalesce: Chance::one_in(2),
        drop: Chance::NEVER,
    };
    stream([f(5), f(6)]);
}

/// A producer in the test's thread (it opens first, so the consumer's open does not
/// wait) and a consumer thread that runs `consume` on its endpoint; `produce` runs once
/// the consumer sleeps in the bus. Returns what `consume` returned.
fn with_sleeping_consumer<T: Send>(
    bus: &Bus,
    producer: &FaultState,
    consumer: &FaultState,
    consume: impl FnOnce(
            &mut QueueRx<
                '_,
                staticbus_guest::fake::Faulty<'_, &staticbus_guest::fake::BusDomain<'_>>,
            >,
        ) -> T
        + Send,
    produce: impl FnOnce(
        QueueTx<'_, staticbus_guest::fake::Faulty<'_, &staticbus_guest::fake::BusDomain<'_>>>,
    ),
) -> T {
    let [ma, mb] = manifests();
    let mem = Backing::new(SIZE);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let mem = &mem;
    thread::scope(|s| {
        let pa = FaultyPlatform::new(
            BusPlatform::new(da, ma).with_region("q", mem.region(SIZE)),
            producer,
        );
        let tx = QueueTx::open(&pa, "q").unwrap();
        let h = s.spawn(move || {
            let p = FaultyPlatform::new(
                BusPlatform::new(db, mb).with_region("q", mem.region(SIZE)),
                consumer,
            );
            let mut rx = QueueRx::open(&p, "q").unwrap();
            rx.set_spin(Spin::NONE);
            consume(&mut rx)
        });
        bus.await_sleepers(1);
        produce(tx);
        drop(pa);
        h.join().unwrap()
    })
}

fn recv(rx: &mut QueueRx<'_, impl staticbus_guest::Events>) -> Result<Vec<u8>, Error> {
    let mut buf = [0u8; 256];
    rx.recv(&mut buf).map(|n| buf[..n].to_vec())
}

#[test]
fn a_dropped_notification_delays_the_consumer_until_the_next_one() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let (fp, fc) = (
        FaultState::new(Faults::drop(7, Chance::ALWAYS)),
        FaultState::new(Faults::none(8)),
    );
    let got = with_sleeping_consumer(
        &bus,
        &fp,
        &fc,
        |rx| [recv(rx), recv(rx)],
        |mut tx| {
            tx.send(b"one").unwrap();
            // The consumer asked to be woken, the notification was sent and lost.
            assert_eq!(tx.counters().notifications, 2, "open's and this one");
            assert_eq!(fp.stats().dropped, 2);
            assert_eq!(bus.sleeping(), 1, "the consumer still sleeps");
            fp.set(Faults::none(7));
            // Still waiting, so the consumer is notified again, and wakes.
            tx.send(b"two").unwrap();
        },
    );
    assert_eq!(got, [Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
    assert!(!bus.deadlocked());
}

#[test]
fn with_no_next_notification_the_consumer_sleeps_for_good() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let (fp, fc) = (
        FaultState::new(Faults::drop(9, Chance::ALWAYS)),
        FaultState::new(Faults::none(10)),
    );
    let (first, later) = with_sleeping_consumer(
        &bus,
        &fp,
        &fc,
        |rx| {
            let first = recv(rx);
            // The message was not lost, only its wake-up.
            let mut buf = [0u8; 16];
            let later = rx.try_recv(&mut buf).unwrap().map(|n| buf[..n].to_vec());
            (first, later)
        },
        // The producer sends its last message, whose notification is lost, and stops.
        |mut tx| tx.send(b"last").unwrap(),
    );
    assert_eq!(first, Err(Error::Event(DEADLOCK)));
    assert!(bus.deadlocked());
    assert_eq!(later.as_deref(), Some(&b"last"[..]));
}

#[test]
fn coalesced_notifications_wake_the_consumer_once() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let (fp, fc) = (
        FaultState::new(Faults::none(11)),
        FaultState::new(Faults::coalesce(12, Chance::ALWAYS)),
    );
    let port = pair_ports(0)[1];
    let got = with_sleeping_consumer(
        &bus,
        &fp,
        &fc,
        |rx| {
            let got = [recv(rx), recv(rx), recv(rx)];
            (got, rx.counters().wait.blocks)
        },
        |mut tx| {
            // Three notifications reach the sleeping consumer before it may look.
            bus.hold(true);
            for m in [&b"one"[..], b"two", b"three"] {
                tx.send(m).unwrap();
            }
            assert_eq!(bus.pending(mb.domid, port), 3);
            bus.hold(false);
        },
    );
    let ok = |m: &[u8]| Ok(m.to_vec());
    assert_eq!(got.0, [ok(b"one"), ok(b"two"), ok(b"three")]);
    // One wake-up took all three events; the other messages needed none.
    assert_eq!(fc.stats().coalesced, 2);
    assert_eq!(got.1, 1);
    assert_eq!(bus.pending(mb.domid, port), 0);
}

#[test]
fn spurious_wakeups_keep_the_consumer_polling_until_data_arrives() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let (fp, fc) = (
        FaultState::new(Faults::none(13)),
        FaultState::new(Faults::spurious(14, Chance::ALWAYS)),
    );
    let [da, db] = [bus.domain(ma.domid), bus.domain(mb.domid)];
    let mem = Backing::new(SIZE);
    let pa = FaultyPlatform::new(
        BusPlatform::new(da, ma).with_region("q", mem.region(SIZE)),
        &fp,
    );
    let mut tx = QueueTx::open(&pa, "q").unwrap();
    let (mem, fcr) = (&mem, &fc);
    let got = thread::scope(|s| {
        let h = s.spawn(move || {
            let p = FaultyPlatform::new(
                BusPlatform::new(db, mb).with_region("q", mem.region(SIZE)),
                fcr,
            );
            let mut rx = QueueRx::open(&p, "q").unwrap();
            rx.set_spin(Spin::NONE);
            recv(&mut rx)
        });
        // Every wait of the consumer returns at once: it never sleeps in the bus, and
        // checks the empty queue again after each invented event.
        while fc.stats().spurious < 5 {
            thread::yield_now();
        }
        assert_eq!(bus.sleeping(), 0);
        tx.send(b"data").unwrap();
        h.join().unwrap()
    });
    assert_eq!(got, Ok(b"data".to_vec()));
}

/// Zero-copy both ways: `send_in_place` waits for room (the queue fills up: the consumer
/// takes its time, without spinning) and fills each record in shared memory;
/// `recv_in_place` reads them there. Every message arrives once, in order, intact; a
/// message that can never fit is refused without calling the filler.
#[test]
fn zero_copy_sends_wait_for_room_and_arrive_intact() {
    let [ma, mb] = manifests();
    let bus = Bus::new(&[ma, mb]);
    let mem = Backing::new(SIZE);
    let (da, db) = (bus.domain(ma.domid), bus.domain(mb.domid));
    let mem = &mem;
    thread::scope(|s| {
        s.spawn(move || {
            let p = BusPlatform::new(da, ma).with_region("q", mem.region(SIZE));
            let mut tx = QueueTx::open(&p, "q").unwrap();
            tx.set_spin(Spin::NONE);
            let max = tx.producer().max_message();
            let mut called = false;
            let r = tx.send_in_place(max + 1, |_| called = true);
            assert!(
                matches!(
                    r,
                    Err(Error::Queue(staticbus_proto::queue::Error::TooLarge { .. }))
                ),
                "{r:?}"
            );
            assert!(!called, "the filler of a message that cannot fit ran");
            for i in 0..COUNT {
                let m = message(i);
                let len = tx
                    .send_in_place(m.len(), |r| {
                        r.write_bytes(0, &m).unwrap();
                        r.len()
                    })
                    .unwrap();
                assert_eq!(
                    len,
                    m.len(),
                    "the region handed out is the message's length"
                );
            }
        });
        s.spawn(move || {
            let p = BusPlatform::new(db, mb).with_region("q", mem.region(SIZE));
            let mut rx = QueueRx::open(&p, "q").unwrap();
            rx.set_spin(Spin::NONE);
            for i in 0..COUNT {
                if i % 500 == 0 {
                    // Let the producer fill the queue and wait for room.
                    thread::sleep(std::time::Duration::from_millis(5));
                }
                let got = rx
                    .recv_in_place(|m| {
                        let mut b = vec![0u8; m.len()];
                        m.read(0, &mut b).unwrap();
                        b
                    })
                    .unwrap();
                assert_eq!(got, message(i), "message {i}");
            }
            let mut buf = [0u8; 256];
            assert_eq!(rx.try_recv(&mut buf).unwrap(), None, "nothing extra");
        });
    });
    assert!(!bus.deadlocked());
}
