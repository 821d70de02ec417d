// `drop` of a handle models that side dying.
#![allow(clippy::drop_non_drop)]

use super::*;
use crate::testmem::Mem;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// Readers in most tests.
const READERS: usize = 3;
/// Slot size in most tests: 48-byte payloads.
const SLOT: usize = 64;
/// Header, 3 reader lines, a 512-byte ring: 8 slots of 64 bytes.
const SMALL: usize = 0xc0 + 3 * 64 + 512;
const SLOTS: u64 = 8;
const MAX: usize = SLOT - SLOT_PAYLOAD;

/// Payload of record number `n`: `n` in the first (up to) 8 bytes, then a pattern.
fn msg(n: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(7) ^ (n as u8))
        .collect();
    for (d, s) in v.iter_mut().zip(n.to_le_bytes()) {
        *d = s;
    }
    v
}

fn writer(mem: &Mem) -> Writer {
    Writer::attach(mem.region(), READERS, SLOT).unwrap()
}

fn reader(mem: &Mem, index: usize, start: Start) -> Reader {
    Reader::attach(mem.region(), READERS, index, start).unwrap()
}

fn slot_off(seq: u64) -> usize {
    data_offset(READERS) + (seq % SLOTS) as usize * SLOT
}

fn put64(r: &Region, off: usize, v: u64) {
    r.store_le::<u64>(off, v, Ordering::SeqCst).unwrap();
}

#[test]
fn layout_constants() {
    assert_eq!(data_offset(3), 0x180);
    assert_eq!(reader_line(2), 0x140);
    assert_eq!(data_size_for(SMALL, 3), Some(512));
    assert_eq!(data_size_for(SMALL + 511, 3), Some(512));
    assert_eq!(data_size_for(SMALL, 4), Some(256));
    assert_eq!(data_size_for(0x180 + 63, 3), None);
    assert_eq!(data_size_for(10, 1), None);
    assert!(slot_size_ok(32, 64) && slot_size_ok(256, 512));
    assert!(!slot_size_ok(512, 512), "one slot");
    assert!(!slot_size_ok(16, 512) && !slot_size_ok(48, 512) && !slot_size_ok(0, 512));
    assert_eq!(max_record(SLOT), 48);
    assert_eq!((stamp_busy(5), stamp_done(5)), (11, 12));
    assert!(matches!(
        layout(SMALL, 0),
        Err(Error::BadReaders { readers: 0 })
    ));
    assert!(matches!(
        layout(1 << 20, 65),
        Err(Error::BadReaders { readers: 65 })
    ));
    assert_eq!(layout(SMALL, 3).unwrap().data_offset, 0x180);
    // The documented value (docs/protocols.md), computed independently in Python from
    // the field table there; changing the table changes it.
    assert_eq!(LAYOUT_HASH, 0x60d3_3b3e_d243_8e90);
}

#[test]
fn append_read_in_order_across_wraps() {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r0 = reader(&mem, 0, Start::Resume);
    let mut r2 = reader(&mem, 2, Start::Oldest);
    let mut buf = [0u8; MAX];
    assert_eq!(r0.read(&mut buf), Ok(None));
    assert_eq!((w.max_record(), r0.max_record()), (MAX, MAX));
    assert_eq!((w.slots(), r0.slots()), (8, 8));
    assert_eq!((w.slot_size(), r2.slot_size()), (SLOT, SLOT));
    for n in 0..100u64 {
        let m = msg(n, (n as usize * 5) % (MAX + 1));
        assert_eq!(w.append(&m), Ok(Wakeups(0)));
        if n % 3 == 2 {
            // Two readers at their own pace, never lapped (at most 3 behind).
            for r in [&mut r0, &mut r2] {
                for k in n - 2..=n {
                    let got = r.read(&mut buf).unwrap().unwrap();
                    assert_eq!((got.seq, got.missed), (k, 0));
                    assert_eq!(&buf[..got.len], &msg(k, (k as usize * 5) % (MAX + 1))[..]);
                }
                assert_eq!(r.read(&mut buf), Ok(None));
            }
        }
    }
    assert_eq!(w.head(), 100);
    assert_eq!(r0.position(), 99);
    // The saved cursor is in the reader's line.
    assert_eq!(
        (mem.region()).load_le::<u64>(reader_line(0) + READER_CURSOR, Ordering::SeqCst),
        Some(99)
    );
    // Slot layout: stamp, length, payload at the documented offsets.
    let mut raw = [0u8; 16];
    mem.region().read_bytes(slot_off(99), &mut raw).unwrap();
    assert_eq!(u64::from_le_bytes(raw[..8].try_into().unwrap()), 200);
    assert_eq!(&raw[8..], &((99 * 5 % 49) as u64).to_le_bytes());
}

#[test]
fn lapped_reader_learns_exact_count() {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 1, Start::Resume);
    let mut buf = [0u8; MAX];
    w.append(b"first").unwrap();
    assert_eq!(r.read(&mut buf).unwrap().unwrap().seq, 0);
    // The reader sleeps while the writer writes three ring-fulls.
    for n in 1..=3 * SLOTS {
        w.append(&msg(n, 20)).unwrap();
    }
    let got = r.read(&mut buf).unwrap().unwrap();
    // Records 1..=16 are gone; 17..=24 are still in the ring.
    assert_eq!(got.seq, 2 * SLOTS + 1);
    assert_eq!(got.missed, 2 * SLOTS);
    assert_eq!(&buf[..got.len], &msg(got.seq, 20)[..]);
    let (mut returned, mut missed) = (2, got.missed);
    while let Some(g) = r.read(&mut buf).unwrap() {
        assert_eq!(g.missed, 0);
        assert_eq!(&buf[..g.len], &msg(g.seq, 20)[..]);
        returned += 1;
        missed += g.missed;
    }
    assert_eq!(returned + missed, w.head());
    assert_eq!(r.position(), w.head());
    // New readers: the oldest available record, or only new ones.
    let mut old = reader(&mem, 0, Start::Oldest);
    let mut new = reader(&mem, 2, Start::Latest);
    assert_eq!(old.position(), w.head() - SLOTS);
    assert_eq!(new.read(&mut buf), Ok(None));
    let g = old.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (w.head() - SLOTS, 0));
    w.append(b"new").unwrap();
    let g = new.read(&mut buf).unwrap().unwrap();
    assert_eq!(
        (g.seq, g.missed, &buf[..g.len]),
        (w.head() - 1, 0, &b"new"[..])
    );
}

#[test]
fn reader_restart_resumes_from_saved_cursor() {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 0, Start::Resume);
    let mut buf = [0u8; MAX];
    for n in 0..5 {
        w.append(&msg(n, 10)).unwrap();
    }
    for n in 0..3 {
        assert_eq!(r.read(&mut buf).unwrap().unwrap().seq, n);
    }
    drop(r);
    w.append(&msg(5, 10)).unwrap();
    let mut r = reader(&mem, 0, Start::Resume);
    assert_eq!(r.epoch(), 2);
    assert_eq!(w.reader_status(0).unwrap().epoch, 2);
    assert_eq!(w.reader_status(0).unwrap().state, Some(State::Ready));
    assert!(w.reader_status(READERS).is_none());
    for n in 3..6 {
        let g = r.read(&mut buf).unwrap().unwrap();
        assert_eq!((g.seq, g.missed), (n, 0));
        assert_eq!(&buf[..g.len], &msg(n, 10)[..]);
    }
    // Dies, is lapped while down: the loss is reported after the restart.
    drop(r);
    for n in 6..6 + 2 * SLOTS {
        w.append(&msg(n, 10)).unwrap();
    }
    let mut r = reader(&mem, 0, Start::Resume);
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (6 + SLOTS, SLOTS));
    // A reader that restarts with Latest skips the rest; with Resume after a clean
    // detach it continues.
    r.detach();
    assert_eq!(w.reader_status(0).unwrap().state, Some(State::Reset));
    let r = reader(&mem, 0, Start::Resume);
    assert_eq!(r.position(), 7 + SLOTS);
    let mut r = reader(&mem, 0, Start::Latest);
    assert_eq!(r.read(&mut buf), Ok(None));
    drop(r);
    assert_eq!(reader(&mem, 0, Start::Resume).position(), w.head());
}

#[test]
fn writer_restart_continues_sequence() {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 0, Start::Resume);
    let mut buf = [0u8; MAX];
    for n in 0..3 {
        w.append(&msg(n, 9)).unwrap();
    }
    assert_eq!(w.epoch(), 1);
    drop(w);
    let mut w = writer(&mem);
    assert_eq!((w.head(), w.epoch()), (3, 2));
    assert_eq!(r.writer_status().epoch, 2);
    w.append(&msg(3, 9)).unwrap();
    for n in 0..4 {
        let g = r.read(&mut buf).unwrap().unwrap();
        assert_eq!((g.seq, g.missed), (n, 0));
        assert_eq!(&buf[..g.len], &msg(n, 9)[..]);
    }
    w.detach();
    assert_eq!(r.writer_status().state, Some(State::Reset));
}

#[test]
fn writer_died_mid_record_is_never_returned() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    let mut w = writer(&mem);
    let mut behind = reader(&mem, 0, Start::Resume);
    let mut current = reader(&mem, 1, Start::Resume);
    let mut buf = [0u8; MAX];
    for n in 0..10 {
        w.append(&msg(n, 30)).unwrap();
        if n == 7 {
            for _ in 0..2 {
                behind.read(&mut buf).unwrap().unwrap();
            }
        }
    }
    while current.read(&mut buf).unwrap().is_some() {}
    assert_eq!(current.position(), 10);
    // The writer starts record 10 (slot 2, which holds record 2) and dies half-way:
    // busy stamp, length, part of the payload; the head stays at 10.
    drop(w);
    put64(&reg, slot_off(10) + SLOT_STAMP, stamp_busy(10));
    put64(&reg, slot_off(10) + SLOT_LEN, 30);
    // (Whole words: Miri's weak-memory model cannot mix byte and word accesses.)
    reg.write_bytes(slot_off(10) + SLOT_PAYLOAD, &[0xee; 16])
        .unwrap();
    assert_eq!(current.read(&mut buf), Ok(None));
    assert_eq!(current.prepare_wait(), Ok(true));
    // Record 2 was destroyed: reported as missed, never returned torn.
    let g = behind.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (3, 1));
    assert_eq!(&buf[..g.len], &msg(3, 30)[..]);
    // The restarted writer gives number 10 to its next record.
    let mut w = writer(&mem);
    assert_eq!(w.head(), 10);
    assert!(w.append(&msg(10, 30)).unwrap().contains(1));
    let g = current.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (10, 0));
    assert_eq!(&buf[..g.len], &msg(10, 30)[..]);
    // Died after stamping but before publishing the head: not visible either.
    drop(w);
    put64(&reg, slot_off(11) + SLOT_STAMP, stamp_done(11));
    assert_eq!(current.read(&mut buf), Ok(None));
    let mut w = writer(&mem);
    w.append(&msg(11, 7)).unwrap();
    let g = current.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, &buf[..g.len]), (11, &msg(11, 7)[..]));
    // Accounting for the reader that was behind: 3 returned, 1 missed, 8 to go.
    let mut n = 0;
    while let Some(g) = behind.read(&mut buf).unwrap() {
        assert_eq!(g.missed, 0);
        assert_eq!(
            &buf[..g.len],
            &msg(g.seq, if g.seq == 11 { 7 } else { 30 })[..]
        );
        n += 1;
    }
    assert_eq!(3 + 1 + n, w.head());
}

#[test]
fn too_large_and_small_buffer() {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 0, Start::Resume);
    assert_eq!(
        w.append(&[1; MAX + 1]),
        Err(Error::TooLarge {
            len: MAX + 1,
            max: MAX
        })
    );
    w.append(&[2; MAX]).unwrap();
    w.append(&[]).unwrap();
    assert_eq!(w.head(), 2);
    let mut small = [0u8; 10];
    assert_eq!(r.read(&mut small), Err(Error::BufferTooSmall { len: MAX }));
    assert_eq!(r.position(), 0);
    let mut buf = [0u8; MAX];
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.len, buf), (0, MAX, [2; MAX]));
    let g = r.read(&mut []).unwrap().unwrap();
    assert_eq!((g.seq, g.len), (1, 0));
    // A lapped reader with a small buffer: the loss stays pending until a record is
    // returned.
    for n in 0..2 * SLOTS {
        w.append(&msg(n, 40)).unwrap();
    }
    assert_eq!(r.read(&mut small), Err(Error::BufferTooSmall { len: 40 }));
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (2 + SLOTS, SLOTS));
    assert!(std::format!("{}", Error::TooLarge { len: 1, max: 0 }).contains("max"));
}

#[test]
fn wakeups_only_for_waiting_readers() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    let mut w = writer(&mem);
    let mut r0 = reader(&mem, 0, Start::Resume);
    let mut r1 = reader(&mem, 1, Start::Resume);
    let mut buf = [0u8; MAX];
    assert!(w.append(b"a").unwrap().is_empty());
    // Data present: do not block, flag cleared.
    assert_eq!(r1.prepare_wait(), Ok(false));
    assert!(w.append(b"b").unwrap().is_empty());
    r1.read(&mut buf).unwrap().unwrap();
    r1.read(&mut buf).unwrap().unwrap();
    assert_eq!(r1.prepare_wait(), Ok(true));
    assert_eq!(w.append(b"c"), Ok(Wakeups(0b10)));
    // Coalesced: the flag stays until the reader runs.
    assert_eq!(w.append(b"d"), Ok(Wakeups(0b10)));
    r1.read(&mut buf).unwrap().unwrap();
    assert!(w.append(b"e").unwrap().is_empty());
    // Reader 0 never waited; it is lapped without any notification.
    for _ in 0..20 {
        assert!(w.append(b"f").unwrap().is_empty());
    }
    assert!(r0.read(&mut buf).unwrap().unwrap().missed > 0);
    // A restarted reader starts with its flag clear.
    while r1.read(&mut buf).unwrap().is_some() {}
    assert_eq!(r1.prepare_wait(), Ok(true));
    drop(r1);
    let _r1 = reader(&mem, 1, Start::Resume);
    assert!(w.append(b"g").unwrap().is_empty());
    // A hostile reader line can only cause spurious wake-ups: the writer reads bit 0 of
    // the flags and nothing else.
    let line = reader_line(2);
    reg.write_bytes(line, &[0xff; 64]).unwrap();
    assert_eq!(w.append(b"h"), Ok(Wakeups(0b100)));
    reg.store_le::<u32>(line + 4, 0xfffe, Ordering::SeqCst)
        .unwrap();
    assert_eq!(w.append(b"i"), Ok(Wakeups(0)));
}

#[test]
fn attach_errors() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    assert_eq!(
        Reader::attach(reg, READERS, 0, Start::Resume).unwrap_err(),
        Error::Header(HeaderError::NotInitialized)
    );
    assert_eq!(
        Writer::attach(reg, 0, SLOT).unwrap_err(),
        Error::BadReaders { readers: 0 }
    );
    for bad in [0, 16, 48, 512, 1024] {
        assert_eq!(
            Writer::attach(reg, READERS, bad).unwrap_err(),
            Error::BadSlotSize(bad)
        );
    }
    let tiny = Mem::new(0x180 + 32);
    assert!(matches!(
        Writer::attach(tiny.region(), READERS, 32),
        Err(Error::Header(HeaderError::BadRegion { .. }))
    ));
    let mut w = writer(&mem);
    w.append(b"x").unwrap();
    drop(w);
    assert_eq!(
        Reader::attach(reg, READERS, 3, Start::Resume).unwrap_err(),
        Error::BadIndex {
            index: 3,
            readers: 3
        }
    );
    assert_eq!(
        Reader::attach(reg, 2, 0, Start::Resume).unwrap_err(),
        Error::ReadersMismatch {
            found: 3,
            expected: 2
        }
    );
    assert_eq!(
        Writer::attach(reg, 4, SLOT).unwrap_err(),
        Error::ReadersMismatch {
            found: 3,
            expected: 4
        }
    );
    assert_eq!(
        Writer::attach(reg, READERS, 128).unwrap_err(),
        Error::SlotSizeMismatch {
            found: 64,
            requested: 128
        }
    );
    // Own fields corrupt.
    reg.store_le::<u32>(OFF_SLOT_SIZE, 96, Ordering::SeqCst)
        .unwrap();
    assert_eq!(
        Writer::attach(reg, READERS, SLOT).unwrap_err(),
        Error::Header(HeaderError::BadOwnField)
    );
    // ... seen by a reader, the same field is the writer's fault.
    assert_eq!(
        Reader::attach(reg, READERS, 0, Start::Resume).unwrap_err(),
        Error::PeerBroken(Broken::BadSlotSize(96))
    );
    assert_eq!(
        header::line_status(&reg, reader_line(0)).unwrap().state,
        Some(State::Broken)
    );
    reg.store_le::<u32>(OFF_SLOT_SIZE, SLOT as u32, Ordering::SeqCst)
        .unwrap();
    put64(&reg, OFF_HEAD, MAX_HEAD + 1);
    assert_eq!(
        Writer::attach(reg, READERS, SLOT).unwrap_err(),
        Error::Header(HeaderError::BadOwnField)
    );
    assert_eq!(
        Reader::attach(reg, READERS, 0, Start::Resume).unwrap_err(),
        Error::PeerBroken(Broken::HeadOutOfRange(MAX_HEAD + 1))
    );
    put64(&reg, OFF_HEAD, 1);
    put64(&reg, reader_line(1) + READER_CURSOR, u64::MAX);
    assert_eq!(
        Reader::attach(reg, READERS, 1, Start::Resume).unwrap_err(),
        Error::Header(HeaderError::BadOwnField)
    );
    put64(&reg, reader_line(1) + READER_CURSOR, 2);
    assert_eq!(
        Reader::attach(reg, READERS, 1, Start::Resume).unwrap_err(),
        Error::PeerBroken(Broken::HeadWentBack(1))
    );
    // Latest/Oldest ignore the saved cursor and overwrite it.
    assert_eq!(reader(&mem, 1, Start::Latest).position(), 1);
    assert_eq!(reader(&mem, 1, Start::Resume).position(), 1);
    assert!(std::format!("{}", Error::Contended).contains("retry"));
}

#[test]
fn writer_died_while_initialising() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    // Header published, slot size not yet: readers wait, the restarted writer finishes.
    header::init(&reg, &layout(SMALL, READERS).unwrap()).unwrap();
    reg.write_bytes(reader_line(0), &[0x55; 64]).unwrap();
    put64(&reg, slot_off(3), 77);
    assert_eq!(
        Reader::attach(reg, READERS, 0, Start::Resume).unwrap_err(),
        Error::Header(HeaderError::NotInitialized)
    );
    let mut w = writer(&mem);
    assert_eq!(reg.load_le::<u64>(slot_off(3), Ordering::SeqCst), Some(0));
    let mut r = reader(&mem, 0, Start::Resume);
    assert_eq!((r.position(), r.epoch()), (0, 1));
    w.append(b"ok").unwrap();
    assert_eq!(r.read(&mut [0; 8]).unwrap().unwrap().seq, 0);
}

fn broken_reader_sees(f: impl FnOnce(&Region), want: Broken) {
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 0, Start::Resume);
    for n in 0..10 {
        w.append(&msg(n, 16)).unwrap();
    }
    let mut buf = [0u8; MAX];
    assert_eq!(r.read(&mut buf).unwrap().unwrap().seq, 2); // 0, 1 overwritten
    f(&mem.region());
    assert_eq!(r.read(&mut buf), Err(Error::PeerBroken(want)));
    assert_eq!(r.read(&mut buf), Err(Error::PeerBroken(want)), "sticky");
    assert_eq!(r.prepare_wait(), Err(Error::PeerBroken(want)));
    assert_eq!(r.broken(), Some(want));
    assert_eq!(w.reader_status(0).unwrap().state, Some(State::Broken));
    // The writer does not care.
    assert!(w.append(b"still fine").is_ok());
    assert!(std::format!("{}", Error::PeerBroken(want)).contains("peer broken"));
}

#[test]
fn hostile_writer_cases() {
    let put = |off: usize, v: u64| move |r: &Region| put64(r, off, v);
    broken_reader_sees(
        put(OFF_HEAD, MAX_HEAD + 1),
        Broken::HeadOutOfRange(MAX_HEAD + 1),
    );
    broken_reader_sees(put(OFF_HEAD, 9), Broken::HeadWentBack(9));
    // Record 3 (slot 3) with an impossible stamp: empty, older, busy with itself, another
    // slot's record, a newer record beyond the head.
    for stamp in [
        0,
        stamp_done(2),
        stamp_busy(3),
        stamp_done(4),
        stamp_done(11),
    ] {
        broken_reader_sees(
            put(slot_off(3) + SLOT_STAMP, stamp),
            Broken::BadStamp { seq: 3, stamp },
        );
    }
    broken_reader_sees(put(slot_off(3) + SLOT_LEN, 49), Broken::BadLength(49));
    broken_reader_sees(
        put(slot_off(3) + SLOT_LEN, 4 | (7 << 32)),
        Broken::RecordReserved(7),
    );
    // A newer record in the slot, up to the head, is legal: record 3 counts as missed.
    let mem = Mem::new(SMALL);
    let mut w = writer(&mem);
    let mut r = reader(&mem, 0, Start::Resume);
    for n in 0..11 {
        w.append(&msg(n, 16)).unwrap();
    }
    let mut buf = [0u8; MAX];
    put64(&mem.region(), slot_off(3) + SLOT_STAMP, stamp_busy(11));
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (4, 4));
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Read(usize),
    /// read with a buffer too small for anything but empty records
    ReadSmall(usize),
    ReaderRestart(usize, u8),
    WriterRestart,
    /// the writer dies half-way through a record of this length, then restarts
    WriterDies(usize),
    Wait(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let idx = 0..READERS;
    prop_oneof![
        8 => (0usize..MAX + 8).prop_map(Op::Append),
        6 => idx.clone().prop_map(Op::Read),
        1 => idx.clone().prop_map(Op::ReadSmall),
        1 => (idx.clone(), 0u8..3).prop_map(|(i, s)| Op::ReaderRestart(i, s)),
        1 => Just(Op::WriterRestart),
        1 => (0usize..MAX + 1).prop_map(Op::WriterDies),
        2 => idx.prop_map(Op::Wait),
    ]
}

fn start(s: u8) -> Start {
    match s {
        0 => Start::Resume,
        1 => Start::Oldest,
        _ => Start::Latest,
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What one reader should see.
#[derive(Clone, Copy, Default)]
struct ModelReader {
    cursor: u64,
    saved: u64,
    waiting: bool,
    /// where the current accounting started (last attach not resuming)
    base: u64,
    returned: u64,
    missed: u64,
}

fn died_mid_record(reg: &Region, w: &Writer, len: usize) {
    let seq = w.head();
    let slot = slot_off(seq);
    put64(reg, slot + SLOT_STAMP, stamp_busy(seq));
    put64(reg, slot + SLOT_LEN, len as u64);
    reg.write_bytes(slot + SLOT_PAYLOAD, &vec![0xa5; (len / 2) & !7])
        .unwrap();
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reads_against_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 40 } else { 300 })) {
        let mem = Mem::new(SMALL);
        let reg = mem.region();
        let mut w = writer(&mem);
        let mut rs: Vec<Reader> = (0..READERS).map(|i| reader(&mem, i, Start::Resume)).collect();
        let mut model = [ModelReader::default(); READERS];
        let mut records: Vec<Vec<u8>> = Vec::new();
        // Lowest sequence number whose slot still holds it.
        let mut avail = 0u64;
        let mut buf = [0u8; MAX];
        for op in ops {
            match op {
                Op::Append(len) => {
                    let m = msg(records.len() as u64, len);
                    match w.append(&m) {
                        Ok(wake) => {
                            records.push(m);
                            avail = avail.max((records.len() as u64).saturating_sub(SLOTS));
                            for (i, mr) in model.iter().enumerate() {
                                prop_assert_eq!(wake.contains(i), mr.waiting);
                            }
                        }
                        Err(Error::TooLarge { .. }) => prop_assert!(len > MAX),
                        Err(e) => prop_assert!(false, "append: {e:?}"),
                    }
                }
                Op::Read(i) | Op::ReadSmall(i) => {
                    let small = matches!(op, Op::ReadSmall(_));
                    let b = if small { &mut buf[..0] } else { &mut buf[..] };
                    let got = rs[i].read(b);
                    let mr = &mut model[i];
                    mr.waiting = false;
                    let head = records.len() as u64;
                    if mr.cursor == head {
                        prop_assert_eq!(got, Ok(None));
                        continue;
                    }
                    let seq = mr.cursor.max(avail);
                    let want = &records[seq as usize];
                    match got {
                        Err(Error::BufferTooSmall { len }) => {
                            prop_assert!(small && len == want.len() && len > 0);
                        }
                        Ok(Some(g)) => {
                            prop_assert_eq!(g.seq, seq);
                            prop_assert_eq!(g.missed, seq - mr.cursor);
                            prop_assert_eq!(&buf[..g.len], &want[..]);
                            mr.missed += g.missed;
                            mr.returned += 1;
                            mr.cursor = seq + 1;
                            mr.saved = mr.cursor;
                        }
                        other => prop_assert!(false, "read {other:?}"),
                    }
                }
                Op::ReaderRestart(i, s) => {
                    rs[i] = reader(&mem, i, start(s));
                    let mr = &mut model[i];
                    let head = records.len() as u64;
                    let to = match start(s) {
                        Start::Resume => mr.saved,
                        Start::Oldest => head.saturating_sub(SLOTS),
                        Start::Latest => head,
                    };
                    if !matches!(start(s), Start::Resume) {
                        *mr = ModelReader { base: to, ..ModelReader::default() };
                    }
                    mr.cursor = to;
                    mr.saved = to;
                    mr.waiting = false;
                    prop_assert_eq!(rs[i].position(), to);
                }
                Op::WriterRestart => {
                    w = writer(&mem);
                    prop_assert_eq!(w.head(), records.len() as u64);
                }
                Op::WriterDies(len) => {
                    died_mid_record(&reg, &w, len);
                    avail = avail.max((records.len() as u64 + 1).saturating_sub(SLOTS));
                    w = writer(&mem);
                }
                Op::Wait(i) => {
                    let block = rs[i].prepare_wait().unwrap();
                    prop_assert_eq!(block, model[i].cursor == records.len() as u64);
                    model[i].waiting = block;
                }
            }
        }
        // Drain: every reader accounts for every record exactly.
        for (r, mr) in rs.iter_mut().zip(model.iter_mut()) {
            while let Some(g) = r.read(&mut buf).unwrap() {
                prop_assert_eq!(g.seq - g.missed, mr.cursor);
                mr.cursor = g.seq + 1;
                mr.returned += 1;
                mr.missed += g.missed;
            }
            prop_assert_eq!(mr.returned + mr.missed, records.len() as u64 - mr.base);
            prop_assert_eq!(r.position(), records.len() as u64);
        }
    }

    #[test]
    fn hostile_writer_only_ok_or_broken(
        steps in proptest::collection::vec(
            (op(), 0usize..12, any::<u64>(), 0usize..512),
            1..if cfg!(miri) { 30 } else { 200 },
        ),
    ) {
        let mem = Mem::new(SMALL);
        let reg = mem.region();
        let mut w = writer(&mem);
        let mut rs: Vec<Reader> = (0..READERS).map(|i| reader(&mem, i, Start::Resume)).collect();
        // Where each reader's next record must start counting from.
        let mut from: Vec<u64> = vec![0; READERS];
        let mut lens: Vec<usize> = Vec::new();
        let mut slots_touched = false;
        let mut buf = [0u8; MAX];
        for (op, target, value, at) in steps {
            // The hostile writer scribbles on memory it owns: its line, the header, the
            // ring (stamps, lengths, payload).
            let slot = data_offset(READERS) + (at & !7);
            let head = reg.load_le::<u64>(OFF_HEAD, Ordering::SeqCst).unwrap();
            match target {
                0 => put64(&reg, OFF_HEAD, value),
                1 => put64(&reg, OFF_HEAD, head.wrapping_add(value % 24)),
                2 => put64(&reg, OFF_HEAD, head.wrapping_sub(value % 4)),
                3 => { reg.store_le::<u32>(OFF_SLOT_SIZE, value as u32, Ordering::SeqCst); }
                4 => reg.write_bytes(0x40 + ((at % 64) & !7), &value.to_le_bytes()).unwrap(),
                5 => reg.write_bytes((value % 0x40) as usize & !7, &value.to_le_bytes()).unwrap(),
                6 | 7 => {
                    slots_touched = true;
                    let s = data_offset(READERS) + (at / SLOT) * SLOT;
                    let near = head.wrapping_add(value % 16).wrapping_sub(8);
                    let stamp = if target == 6 { value } else if value & 1 == 0 {
                        stamp_done(near)
                    } else {
                        stamp_busy(near)
                    };
                    put64(&reg, s + SLOT_STAMP, stamp);
                }
                8 => {
                    slots_touched = true;
                    let s = data_offset(READERS) + (at / SLOT) * SLOT;
                    put64(&reg, s + SLOT_LEN, if value & 1 == 0 { value >> 1 } else { value % 64 });
                }
                9 => {
                    slots_touched = true;
                    reg.write_bytes(slot, &value.to_le_bytes()).unwrap();
                }
                _ => {}
            }
            let was: Vec<Option<Broken>> = rs.iter().map(|r| r.broken()).collect();
            let mut replaced = None;
            match op {
                Op::Append(len) => {
                    let n = lens.len() as u64;
                    let len = len.max(8);
                    match w.append(&msg(n, len)) {
                        Ok(_) => lens.push(len),
                        Err(Error::TooLarge { .. }) => prop_assert!(len > w.max_record()),
                        Err(e) => prop_assert!(false, "append: {e:?}"),
                    }
                }
                Op::Read(i) | Op::ReadSmall(i) => {
                    let b = if matches!(op, Op::ReadSmall(_)) { &mut buf[..4] } else { &mut buf[..] };
                    match rs[i].read(b) {
                        Ok(Some(g)) => {
                            prop_assert!(g.len <= rs[i].max_record());
                            prop_assert!(g.seq >= from[i]);
                            prop_assert_eq!(g.seq - g.missed, from[i]);
                            from[i] = g.seq + 1;
                            prop_assert_eq!(rs[i].position(), from[i]);
                            if !slots_touched {
                                // Never torn: some record the correct writer wrote.
                                let got = &b[..g.len];
                                prop_assert!(g.len >= 8, "len {}", g.len);
                                let n = u64::from_le_bytes(got[..8].try_into().unwrap());
                                prop_assert!((n as usize) < lens.len());
                                prop_assert_eq!(got, &msg(n, lens[n as usize])[..]);
                            }
                        }
                        Ok(None) => {}
                        Err(Error::PeerBroken(_) | Error::BufferTooSmall { .. } | Error::Contended) => {}
                        Err(e) => prop_assert!(false, "read: {e:?}"),
                    }
                }
                Op::ReaderRestart(i, s) => match Reader::attach(reg, READERS, i, start(s)) {
                    Ok(r) => {
                        from[i] = r.position();
                        rs[i] = r;
                        replaced = Some(i);
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_) | Error::ReadersMismatch { .. }) => {}
                    Err(e) => prop_assert!(false, "attach: {e:?}"),
                },
                Op::WriterRestart | Op::WriterDies(_) => match Writer::attach(reg, READERS, SLOT) {
                    Ok(nw) => w = nw,
                    Err(Error::Header(_) | Error::SlotSizeMismatch { .. } | Error::ReadersMismatch { .. }) => {}
                    Err(e) => prop_assert!(false, "writer attach: {e:?}"),
                },
                Op::Wait(i) => match rs[i].prepare_wait() {
                    Ok(_) | Err(Error::PeerBroken(_)) => {}
                    Err(e) => prop_assert!(false, "wait: {e:?}"),
                },
            }
            for (i, (r, b)) in rs.iter().zip(was).enumerate() {
                if let (Some(b), false) = (b, replaced == Some(i)) {
                    prop_assert_eq!(r.broken(), Some(b), "sticky");
                }
            }
        }
    }
}

/// The hostile reader of the two hostile-reader properties below.
const HOSTILE: usize = 1;

/// Another domain's store of `value` into the 8-byte word at `off`, with the width of the
/// fields there (two u32 halves where the layout has two u32 fields: `protocol`/`version`,
/// writer `state`/`flags`, `slot_size`/reserved, a reader's `state`/`flags`), as a
/// hostile member would write them. (Same widths as the protocol's own accesses, so that
/// Miri's weak-memory model applies.)
fn scribble(reg: &Region, off: usize, value: u64) {
    let line = (READERS_OFFSET..data_offset(READERS))
        .contains(&off)
        .then(|| (off - READERS_OFFSET) % 64);
    if matches!(off, 0x08 | 0x40 | 0x58) || line == Some(0) {
        reg.store_le::<u32>(off, value as u32, Ordering::SeqCst)
            .unwrap();
        reg.store_le::<u32>(off + 4, (value >> 32) as u32, Ordering::SeqCst)
            .unwrap();
    } else {
        put64(reg, off, value);
    }
}

fn flags_of(reg: &Region, index: usize) -> u32 {
    reg.load_le::<u32>(reader_line(index) + 4, Ordering::SeqCst)
        .unwrap()
}

#[test]
fn a_writer_restart_tolerates_a_corrupt_reader_line() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    let mut w = writer(&mem);
    for n in 0..5 {
        w.append(&msg(n, 16)).unwrap();
    }
    // Reader 1's whole line garbage: state, flags, epoch, cursor, reserved.
    reg.write_bytes(reader_line(HOSTILE), &[0xff; 64]).unwrap();
    drop(w);
    let mut w = writer(&mem);
    assert_eq!(w.head(), 5);
    // Its flag bit is set: it gets (spurious) notifications, nothing else changes.
    assert!(w.append(&msg(5, 16)).unwrap().contains(HOSTILE));
    let mut r0 = reader(&mem, 0, Start::Resume);
    let mut buf = [0u8; MAX];
    for n in 0..6 {
        let g = r0.read(&mut buf).unwrap().unwrap();
        assert_eq!((g.seq, g.missed, &buf[..g.len]), (n, 0, &msg(n, 16)[..]));
    }
    // The hostile reader itself: its own cursor is out of range, so it cannot resume.
    assert!(matches!(
        Reader::attach(reg, READERS, HOSTILE, Start::Resume),
        Err(Error::Header(HeaderError::BadOwnField))
    ));
}

proptest! {
    #![proptest_config(config())]

    /// §4.7: a reader that writes anything, at any time, into its own line (the only
    /// memory a correct reader writes) changes nothing for the writer and the other
    /// readers but the notifications it gets: every append succeeds, a restarted writer
    /// attaches and continues, and the other readers get exactly what the model predicts.
    #[test]
    fn a_reader_scribbling_on_its_own_line_affects_nobody(
        steps in proptest::collection::vec(
            (op(), proptest::option::of((0usize..9, any::<u64>()))),
            1..if cfg!(miri) { 40 } else { 300 },
        ),
    ) {
        let mem = Mem::new(SMALL);
        let reg = mem.region();
        let mut w = writer(&mem);
        let mut rs: Vec<Reader> = (0..READERS).map(|i| reader(&mem, i, Start::Resume)).collect();
        let mut model = [ModelReader::default(); READERS];
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut avail = 0u64;
        let mut buf = [0u8; MAX];
        for (op, scribble) in steps {
            if let Some((word, value)) = scribble {
                // Any field of its line: state, flags, epoch, cursor, the reserved words.
                let line = reader_line(HOSTILE);
                if word < 2 {
                    reg.store_le::<u32>(line + 4 * word, value as u32, Ordering::SeqCst)
                        .unwrap();
                } else {
                    put64(&reg, line + 8 * (word - 1), value);
                }
            }
            match op {
                Op::Append(len) => {
                    let m = msg(records.len() as u64, len);
                    match w.append(&m) {
                        Ok(wake) => {
                            records.push(m);
                            avail = avail.max((records.len() as u64).saturating_sub(SLOTS));
                            for (i, mr) in model.iter().enumerate() {
                                let want = if i == HOSTILE {
                                    flags_of(&reg, HOSTILE) & 1 != 0
                                } else {
                                    mr.waiting
                                };
                                prop_assert_eq!(wake.contains(i), want);
                            }
                        }
                        Err(Error::TooLarge { .. }) => prop_assert!(len > MAX),
                        Err(e) => prop_assert!(false, "append: {e:?}"),
                    }
                }
                Op::Read(i) | Op::ReadSmall(i) if i != HOSTILE => {
                    let small = matches!(op, Op::ReadSmall(_));
                    let b = if small { &mut buf[..0] } else { &mut buf[..] };
                    let got = rs[i].read(b);
                    let mr = &mut model[i];
                    mr.waiting = false;
                    if mr.cursor == records.len() as u64 {
                        prop_assert_eq!(got, Ok(None));
                        continue;
                    }
                    let seq = mr.cursor.max(avail);
                    let want = &records[seq as usize];
                    match got {
                        Err(Error::BufferTooSmall { len }) => {
                            prop_assert!(small && len == want.len() && len > 0);
                        }
                        Ok(Some(g)) => {
                            prop_assert_eq!((g.seq, g.missed), (seq, seq - mr.cursor));
                            prop_assert_eq!(&buf[..g.len], &want[..]);
                            mr.missed += g.missed;
                            mr.returned += 1;
                            mr.cursor = seq + 1;
                            mr.saved = mr.cursor;
                        }
                        other => prop_assert!(false, "read {other:?}"),
                    }
                }
                Op::ReaderRestart(i, s) if i != HOSTILE => {
                    rs[i] = reader(&mem, i, start(s));
                    let mr = &mut model[i];
                    let head = records.len() as u64;
                    let to = match start(s) {
                        Start::Resume => mr.saved,
                        Start::Oldest => head.saturating_sub(SLOTS),
                        Start::Latest => head,
                    };
                    if !matches!(start(s), Start::Resume) {
                        *mr = ModelReader { base: to, ..ModelReader::default() };
                    }
                    mr.cursor = to;
                    mr.saved = to;
                    mr.waiting = false;
                    prop_assert_eq!(rs[i].position(), to);
                }
                Op::Wait(i) if i != HOSTILE => {
                    let block = rs[i].prepare_wait().unwrap();
                    prop_assert_eq!(block, model[i].cursor == records.len() as u64);
                    model[i].waiting = block;
                }
                // What the hostile reader does besides scribbling: attach for real now and
                // then (which writes its line as a correct reader would), whatever comes of
                // it.
                Op::Read(_) | Op::ReadSmall(_) | Op::Wait(_) => {}
                Op::ReaderRestart(_, s) => {
                    let _ = Reader::attach(reg, READERS, HOSTILE, start(s));
                }
                Op::WriterRestart => {
                    w = Writer::attach(reg, READERS, SLOT).expect("a corrupt reader line");
                    prop_assert_eq!(w.head(), records.len() as u64);
                }
                Op::WriterDies(len) => {
                    died_mid_record(&reg, &w, len);
                    avail = avail.max((records.len() as u64 + 1).saturating_sub(SLOTS));
                    w = Writer::attach(reg, READERS, SLOT).expect("a corrupt reader line");
                    prop_assert_eq!(w.head(), records.len() as u64);
                }
            }
        }
        for i in (0..READERS).filter(|&i| i != HOSTILE) {
            let (r, mr) = (&mut rs[i], &mut model[i]);
            while let Some(g) = r.read(&mut buf).unwrap() {
                prop_assert_eq!(g.seq - g.missed, mr.cursor);
                prop_assert_eq!(&buf[..g.len], &records[g.seq as usize][..]);
                mr.cursor = g.seq + 1;
                mr.returned += 1;
                mr.missed += g.missed;
            }
            prop_assert_eq!(mr.returned + mr.missed, records.len() as u64 - mr.base);
        }
    }

    /// §4.7: a reader that writes anywhere in the region (every member maps all of it
    /// read-write) can make the others' records and positions wrong and a restarted writer
    /// refuse to attach (or find the log exhausted), but no more: an attached writer never
    /// fails or waits because of what is written after its attach (it reads nothing shared
    /// but the flag bits) and its head advances by one per append, a restarted writer either
    /// attaches or gives a typed error, and every reader operation ends, with a record
    /// whose accounting is consistent, nothing, or a typed error.
    #[test]
    fn a_reader_writing_anywhere_leaves_only_typed_errors(
        steps in proptest::collection::vec(
            (op(), 0usize..SMALL / 8, any::<u64>(), any::<bool>()),
            1..if cfg!(miri) { 30 } else { 200 },
        ),
    ) {
        let mem = Mem::new(SMALL);
        let reg = mem.region();
        let mut w = writer(&mem);
        let mut rs: Vec<Reader> = (0..READERS).map(|i| reader(&mem, i, Start::Resume)).collect();
        let mut from: Vec<u64> = vec![0; READERS];
        let mut buf = [0u8; MAX];
        for (op, at, value, hostile) in steps {
            if hostile {
                scribble(&reg, 8 * at, value);
            }
            let was: Vec<Option<Broken>> = rs.iter().map(|r| r.broken()).collect();
            let mut replaced = None;
            match op {
                Op::Append(len) => {
                    let head = w.head();
                    match w.append(&msg(head, len)) {
                        Ok(_) => prop_assert_eq!(w.head(), head + 1),
                        Err(Error::TooLarge { .. }) => prop_assert!(len > w.max_record()),
                        // A head of exactly 2^62 found at a restart: valid, and full.
                        Err(Error::Exhausted) => prop_assert_eq!(head, MAX_HEAD),
                        Err(e) => prop_assert!(false, "append: {e:?}"),
                    }
                }
                Op::Read(i) | Op::ReadSmall(i) if i != HOSTILE => {
                    let b = if matches!(op, Op::ReadSmall(_)) { &mut buf[..4] } else { &mut buf[..] };
                    match rs[i].read(b) {
                        Ok(Some(g)) => {
                            prop_assert!(g.len <= rs[i].max_record());
                            prop_assert_eq!(g.seq - g.missed, from[i]);
                            from[i] = g.seq + 1;
                            prop_assert_eq!(rs[i].position(), from[i]);
                        }
                        Ok(None) => {}
                        Err(Error::PeerBroken(_) | Error::BufferTooSmall { .. } | Error::Contended) => {}
                        Err(e) => prop_assert!(false, "read: {e:?}"),
                    }
                }
                Op::ReaderRestart(i, s) => match Reader::attach(reg, READERS, i, start(s)) {
                    Ok(r) => {
                        from[i] = r.position();
                        rs[i] = r;
                        replaced = Some(i);
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_) | Error::ReadersMismatch { .. }) => {}
                    Err(e) => prop_assert!(false, "attach: {e:?}"),
                },
                Op::WriterRestart | Op::WriterDies(_) => match Writer::attach(reg, READERS, SLOT) {
                    Ok(nw) => w = nw,
                    // The writer keeps going on its private state if it cannot re-attach.
                    Err(Error::Header(_) | Error::SlotSizeMismatch { .. } | Error::ReadersMismatch { .. }) => {}
                    Err(e) => prop_assert!(false, "writer attach: {e:?}"),
                },
                Op::Wait(i) => match rs[i].prepare_wait() {
                    Ok(_) | Err(Error::PeerBroken(_)) => {}
                    Err(e) => prop_assert!(false, "wait: {e:?}"),
                },
                Op::Read(_) | Op::ReadSmall(_) => {}
            }
            for (i, (r, b)) in rs.iter().zip(was).enumerate() {
                if let (Some(b), false) = (b, replaced == Some(i)) {
                    prop_assert_eq!(r.broken(), Some(b), "sticky");
                }
            }
        }
    }
}

/// A fast writer thread laps a slow reader thread (two "domains") on a 4-slot ring:
/// every record returned is intact, sequence numbers increase, and returned + missed ==
/// written. Under Miri this also checks the seqlock is free of data races (payload words
/// are atomics) and that a torn copy is always caught by the stamp re-check.
#[test]
fn two_threads_lapping() {
    use std::sync::atomic::AtomicBool;
    let total: u64 = if cfg!(miri) { 150 } else { 200_000 };
    const LEN: usize = 0xc0 + 64 + 128;
    let mem = Mem::new(LEN);
    let shared = mem.shared();
    let done = AtomicBool::new(false);
    let len_of = |n: u64| 8 + (n as usize * 5) % 9;
    Writer::attach(mem.region(), 1, 32).unwrap();
    std::thread::scope(|s| {
        let done = &done;
        s.spawn(move || {
            let mut w = Writer::attach(shared.region(), 1, 32).unwrap();
            assert_eq!((w.slots(), w.max_record()), (4, 16));
            for n in 0..total {
                w.append(&msg(n, len_of(n))).unwrap();
                if n % 1000 == 999 {
                    w = Writer::attach(shared.region(), 1, 32).unwrap();
                }
                // Keep both threads running for the whole stream.
                if n % 16 == 15 {
                    std::thread::yield_now();
                }
            }
            done.store(true, Ordering::SeqCst);
        });
        s.spawn(move || {
            let mut r = Reader::attach(shared.region(), 1, 0, Start::Resume).unwrap();
            let mut buf = [0u8; 16];
            let (mut next, mut returned, mut missed, mut contended) = (0u64, 0u64, 0u64, 0u64);
            let mut spin = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                match r.read(&mut buf) {
                    Ok(Some(g)) => {
                        assert_eq!(g.seq - g.missed, next);
                        assert_eq!(&buf[..g.len], &msg(g.seq, len_of(g.seq))[..], "torn");
                        next = g.seq + 1;
                        returned += 1;
                        missed += g.missed;
                        if returned % 97 == 0 {
                            r = Reader::attach(shared.region(), 1, 0, Start::Resume).unwrap();
                        }
                        // Slow reader: dawdle now and then.
                        spin += 1;
                        if spin % 64 == 0 {
                            std::thread::yield_now();
                        }
                    }
                    Ok(None) if finished => break,
                    Ok(None) => std::thread::yield_now(),
                    Err(Error::Contended) => contended += 1,
                    Err(e) => panic!("{e:?}"),
                }
            }
            assert_eq!(returned + missed, total);
            assert_eq!(r.position(), total);
            std::println!("returned {returned} missed {missed} contended {contended}");
        });
    });
}

/// The worked example of docs/protocols.md (log), byte for byte.
#[test]
fn worked_example() {
    let mem = Mem::new(0x340);
    let reg = mem.region();
    let mut w = Writer::attach(reg, 1, 64).unwrap();
    assert_eq!((w.slots(), w.max_record()), (8, 48));
    for n in 0..9u64 {
        w.append(&msg(n, 8)).unwrap();
    }
    w.append(b"hello").unwrap();
    let mut slot = [0u8; 24];
    reg.read_bytes(0x140, &mut slot).unwrap();
    assert_eq!(
        slot,
        [
            0x14, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0, 0,
            0
        ]
    );
    assert_eq!(reg.load_le::<u64>(0x50, Ordering::SeqCst), Some(10));
    assert_eq!(reg.load_le::<u64>(0x180, Ordering::SeqCst), Some(6));
    let mut r = Reader::attach(reg, 1, 0, Start::Resume).unwrap();
    let mut buf = [0u8; 48];
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (2, 2));
    assert_eq!(reg.load_le::<u64>(0xd0, Ordering::SeqCst), Some(3));
    let mut returned = 1;
    while let Some(g) = r.read(&mut buf).unwrap() {
        assert_eq!(g.missed, 0);
        returned += 1;
    }
    assert_eq!(returned, 8);
    // The variant: saved cursor 2, the writer died writing record 10 into slot 2.
    drop(r);
    put64(&reg, 0xd0, 2);
    put64(&reg, 0x180, 21);
    let mut r = Reader::attach(reg, 1, 0, Start::Resume).unwrap();
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, g.missed), (3, 1));
    let mut w = Writer::attach(reg, 1, 64).unwrap();
    assert_eq!(w.head(), 10);
    w.append(b"x").unwrap();
}

#[test]
fn sequence_numbers_end_at_max_head() {
    let mem = Mem::new(SMALL);
    let reg = mem.region();
    writer(&mem).append(b"a").unwrap();
    put64(&reg, OFF_HEAD, MAX_HEAD - 1);
    let mut r = reader(&mem, 0, Start::Latest);
    let mut w = writer(&mem);
    w.append(b"last").unwrap();
    assert_eq!(w.append(b"more"), Err(Error::Exhausted));
    assert_eq!(w.head(), MAX_HEAD);
    let mut buf = [0u8; MAX];
    let g = r.read(&mut buf).unwrap().unwrap();
    assert_eq!((g.seq, &buf[..g.len]), (MAX_HEAD - 1, &b"last"[..]));
    assert_eq!(r.read(&mut buf), Ok(None));
}

#[test]
fn field_table_is_built_from_the_constants_the_code_uses() {
    crate::fieldcheck::check(include_str!("../log.rs"), "pub const FIELDS", &[]);
    crate::fieldcheck::hash_covers(FIELDS, LAYOUT_HASH);
}
