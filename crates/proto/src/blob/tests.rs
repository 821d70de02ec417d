// `drop` of a handle models that domain dying.
#![allow(clippy::drop_non_drop)]

use super::*;
use crate::testmem::Mem;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// Region length for `readers` readers and a payload capacity of `cap` bytes.
fn len_for(readers: usize, cap: usize) -> usize {
    data_offset(readers) + 2 * (BANK_PAYLOAD + cap)
}

/// Two readers, 256-byte capacity.
const READERS: usize = 2;
const CAP: usize = 256;

fn small() -> Mem {
    Mem::new(len_for(READERS, CAP))
}

/// A blob whose every byte depends on its version, so a mix of two is detectable.
fn blob(v: u64, len: usize) -> Vec<u8> {
    let seed = v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (0..len)
        .map(|i| (seed >> ((i % 8) * 8)) as u8 ^ (i / 8) as u8)
        .collect()
}

/// A length derived from the version, 0..=cap.
fn len_of(v: u64, cap: usize) -> usize {
    (v as usize * 37) % (cap + 1)
}

fn bank_off(r: &Region, readers: usize, v: u64) -> usize {
    let bank = bank_size(r.len(), readers).unwrap();
    data_offset(readers) + (v & 1) as usize * bank
}

fn put64(r: &Region, off: usize, v: u64) {
    r.store_le::<u64>(off, v, Ordering::SeqCst).unwrap();
}

/// The size of the atomic the protocol uses for the word at `off`: 4 for state and flags
/// words and a bank's `len` and `crc`, 8 for everything else (other header words and
/// payload words).
fn access_size(r: &Region, readers: usize, off: usize) -> usize {
    let line = off & !(LINE - 1);
    let in_line = off % LINE;
    let member =
        line == 0x40 || line == 0x80 || (READERS_OFFSET..data_offset(readers)).contains(&line);
    let bank = bank_size(r.len(), readers).unwrap();
    let data = data_offset(readers);
    let bank_header = off >= data && off < data + 2 * bank && (off - data) % bank < LINE;
    if (member && in_line < 8) || (bank_header && (8..16).contains(&in_line)) {
        4
    } else {
        8
    }
}

/// A hostile write of `bytes` at `off`: each word it touches is read and written back
/// whole, with an atomic of the size the protocol uses there. (Partial or mixed-size
/// plain writes over atomics are fine for the protocol but beyond what Miri's weak-memory
/// emulation models.)
fn poke(r: &Region, readers: usize, off: usize, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        let at = off + i;
        let size = access_size(r, readers, at);
        let word = at & !(size - 1);
        let mut b = [0u8; 8];
        if size == 4 {
            let a = r.atomic::<u32>(word).unwrap();
            b[..4].copy_from_slice(&a.load(Ordering::SeqCst).to_ne_bytes());
            while i < bytes.len() && off + i < word + 4 {
                b[off + i - word] = bytes[i];
                i += 1;
            }
            a.store(
                u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                Ordering::SeqCst,
            );
        } else {
            let a = r.atomic::<u64>(word).unwrap();
            b.copy_from_slice(&a.load(Ordering::SeqCst).to_ne_bytes());
            while i < bytes.len() && off + i < word + 8 {
                b[off + i - word] = bytes[i];
                i += 1;
            }
            a.store(u64::from_ne_bytes(b), Ordering::SeqCst);
        }
    }
}

#[test]
fn layout_constants_and_checksum_vectors() {
    assert_eq!(data_offset(2), 0x140);
    assert_eq!(reader_line(1), 0x100);
    let len = len_for(2, 256);
    assert_eq!(len, 0x140 + 640);
    assert_eq!(bank_size(len, 2), Some(320));
    assert_eq!(capacity_for(len, 2), Some(256));
    // Odd sizes round down to whole lines per bank.
    assert_eq!(capacity_for(len + 127, 2), Some(256));
    assert_eq!(capacity_for(len + 128, 2), Some(320));
    assert_eq!(capacity_for(len_for(1, 64), 1), Some(64));
    assert_eq!(capacity_for(len_for(1, 64) - 1, 1), None);
    assert_eq!(capacity_for(len, 0), None);
    assert_eq!(capacity_for(len, MAX_MEMBERS + 1), None);
    assert_eq!(capacity_for(10, 1), None);
    // A huge mapping leaves everything past two maximal banks unused.
    assert_eq!(bank_size(usize::MAX / 2, 64), Some(MAX_BANK));
    let l = layout(len, 2).unwrap();
    assert_eq!((l.data_offset, l.data_size), (0x140, 640));
    assert_eq!(layout(len, 0), Err(Error::ReaderCount(0)));
    assert_eq!(layout(len, 65), Err(Error::ReaderCount(65)));
    assert_eq!(
        layout(200, 1),
        Err(Error::Header(HeaderError::BadRegion { len: 200 }))
    );
    // The documented values, computed independently in Python from the field table and
    // the CRC definition in docs/drafts/blob.md.
    assert_eq!(LAYOUT_HASH, 0x5a72_0051_6604_0e0d);
    assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    assert_eq!(crc32c(b""), 0);
    assert_eq!(checksum(1, b"123456789"), Some(0x281c_6ae0));
    assert_eq!(checksum(1, b""), Some(0x1a11_616d));
}

#[test]
fn attach_errors_and_parameter_mismatch() {
    let mem = small();
    let r = mem.region();
    assert_eq!(
        Reader::attach(r, READERS, 0).unwrap_err(),
        Error::Header(HeaderError::NotInitialized)
    );
    assert_eq!(
        Writer::attach(r, 0).unwrap_err(),
        Error::ReaderCount(0),
        "checked before touching the region"
    );
    assert_eq!(
        header::validate(&r, &layout(r.len(), 1).unwrap()),
        Err(HeaderError::NotInitialized)
    );
    let w = Writer::attach(r, READERS).unwrap();
    assert_eq!(
        (w.version(), w.epoch(), w.readers(), w.capacity()),
        (0, 1, 2, CAP)
    );
    assert_eq!(
        Reader::attach(r, READERS, 2).unwrap_err(),
        Error::ReaderIndex {
            index: 2,
            readers: 2
        }
    );
    assert_eq!(
        Reader::attach(r, 65, 0).unwrap_err(),
        Error::ReaderCount(65)
    );
    // Reader configured with another reader count than the writer.
    assert!(matches!(
        Reader::attach(r, 3, 0),
        Err(Error::Header(HeaderError::WrongDataArea { .. }))
    ));
    assert!(matches!(
        Writer::attach(r, 1),
        Err(Error::Header(HeaderError::WrongDataArea { .. }))
    ));
    // A reader that maps less than the writer did.
    let shorter = r.sub(0, r.len() - 128).unwrap();
    assert!(matches!(
        Reader::attach(shorter, READERS, 0),
        Err(Error::Header(HeaderError::WrongRegionSize { .. }))
    ));
    // Another protocol's region.
    let qmem = Mem::new(r.len());
    crate::queue::Producer::attach(qmem.region()).unwrap();
    assert!(matches!(
        Reader::attach(qmem.region(), READERS, 0),
        Err(Error::Header(HeaderError::WrongProtocol {
            found: 1,
            expected: 4
        }))
    ));
    let tiny = Mem::new(len_for(1, 0));
    assert!(matches!(
        Writer::attach(tiny.region(), 1),
        Err(Error::Header(HeaderError::BadRegion { .. }))
    ));
    let rd = Reader::attach(r, READERS, 1).unwrap();
    assert_eq!(
        (rd.index(), rd.epoch(), rd.capacity(), rd.last_read()),
        (1, 1, CAP, 0)
    );
    assert_eq!(rd.writer_status().state, Some(State::Ready));
    assert_eq!(w.reader_status(1).unwrap().status.state, Some(State::Ready));
    assert_eq!(w.reader_status(0).unwrap().status.state, Some(State::Reset));
    assert!(w.reader_status(2).is_none());
    rd.detach();
    assert_eq!(w.reader_status(1).unwrap().status.state, Some(State::Reset));
    w.detach();
    assert_eq!(
        header::side_status(&r, Side::Writer).unwrap().state,
        Some(State::Reset)
    );
    assert!(std::format!("{}", Error::ReaderCount(0)).contains("reader count"));
}

#[test]
fn publish_read_versions_and_sizes() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    let mut a = Reader::attach(r, READERS, 0).unwrap();
    let mut b = Reader::attach(r, READERS, 1).unwrap();
    let mut buf = [0u8; CAP];
    assert_eq!(a.read(&mut buf), Ok(None));
    assert_eq!(a.version(), Ok(0));
    assert_eq!(a.changed_since(0), Ok(false));
    for v in 1..=40u64 {
        let len = len_of(v, CAP);
        let data = blob(v, len);
        let (got, wake) = w.publish(&data).unwrap();
        assert_eq!(got, v, "versions are consecutive");
        assert!(wake.is_empty());
        assert_eq!(w.version(), v);
        assert_eq!(a.changed_since(v - 1), Ok(true));
        assert_eq!(a.changed_since(v), Ok(false));
        for rd in [&mut a, &mut b] {
            let got = rd.read(&mut buf).unwrap().unwrap();
            assert_eq!(got, Blob { version: v, len });
            assert_eq!(&buf[..len], &data[..]);
            assert_eq!(rd.last_read(), v);
        }
        // Reading again returns the same blob.
        assert_eq!(b.read(&mut buf).unwrap().unwrap().version, v);
    }
    assert_eq!(w.reader_status(0).unwrap().last_read, 40);
    // Empty and full-capacity blobs.
    w.publish(&[]).unwrap();
    assert_eq!(
        a.read(&mut []).unwrap().unwrap(),
        Blob {
            version: 41,
            len: 0
        }
    );
    let full = blob(42, CAP);
    w.publish(&full).unwrap();
    assert_eq!(a.read(&mut buf).unwrap().unwrap().len, CAP);
    assert_eq!(buf, &full[..]);
    assert_eq!(
        w.publish(&[0; CAP + 1]),
        Err(Error::TooLarge {
            len: CAP + 1,
            max: CAP
        })
    );
    assert_eq!(w.version(), 42, "a rejected publish uses no version");
    // A small buffer is an error for that call only.
    let mut small_buf = [0u8; 100];
    assert_eq!(
        a.read(&mut small_buf),
        Err(Error::BufferTooSmall { len: CAP })
    );
    assert_eq!(a.broken(), None);
    w.publish(b"short").unwrap();
    assert_eq!(a.read(&mut small_buf).unwrap().unwrap().len, 5);
    assert_eq!(&small_buf[..5], b"short");
    // The bank layout: version v in bank v mod 2, with the documented checksum.
    let bank = bank_off(&r, READERS, 43);
    assert_eq!(
        r.load_le::<u64>(bank + BANK_STAMP, Ordering::SeqCst),
        Some(43)
    );
    assert_eq!(r.load_le::<u32>(bank + BANK_LEN, Ordering::SeqCst), Some(5));
    assert_eq!(
        r.load_le::<u32>(bank + BANK_CRC, Ordering::SeqCst),
        checksum(43, b"short")
    );
    assert_eq!(r.load_le::<u64>(OFF_CURRENT, Ordering::SeqCst), Some(43));
    let mut p = [0u8; 8];
    r.read_bytes(bank + BANK_PAYLOAD, &mut p).unwrap();
    assert_eq!(&p, b"short\0\0\0", "the last word is zero-padded");
}

/// Simulates a writer that dies after starting version `v`'s bank: stamp BUSY, the new
/// length and checksum, half the payload.
fn half_write(r: &Region, readers: usize, v: u64, data: &[u8]) {
    let bank = bank_off(r, readers, v);
    put64(r, bank + BANK_STAMP, BUSY);
    r.store_le::<u32>(bank + BANK_LEN, data.len() as u32, Ordering::SeqCst)
        .unwrap();
    r.store_le::<u32>(
        bank + BANK_CRC,
        checksum(v, data).unwrap(),
        Ordering::SeqCst,
    )
    .unwrap();
    poke(r, readers, bank + BANK_PAYLOAD, &data[..data.len() / 2]);
}

#[test]
fn half_written_update_leaves_readers_on_the_old_blob() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    let mut rd = Reader::attach(r, READERS, 0).unwrap();
    let mut buf = [0u8; CAP];
    let one = blob(1, 100);
    let two = blob(2, 200);
    w.publish(&one).unwrap();
    w.publish(&two).unwrap();
    // The writer dies while writing version 3 into bank 1 (where version 1 was).
    half_write(&r, READERS, 3, &blob(3, 150));
    drop(w);
    for _ in 0..3 {
        assert_eq!(
            rd.read(&mut buf).unwrap().unwrap(),
            Blob {
                version: 2,
                len: 200
            }
        );
        assert_eq!(&buf[..200], &two[..]);
    }
    assert_eq!(rd.changed_since(2), Ok(false));
    // It dies again after completing bank 1 for version 3 but before flipping `current`.
    let w = Writer::attach(r, READERS).unwrap();
    assert_eq!((w.version(), w.epoch()), (2, 2));
    let bank = bank_off(&r, READERS, 3);
    let three = blob(3, 150);
    poke(&r, READERS, bank + BANK_PAYLOAD, &three);
    put64(&r, bank + BANK_STAMP, 3);
    drop(w);
    assert_eq!(rd.read(&mut buf).unwrap().unwrap().version, 2);
    // The restarted writer continues: the next publish is version 3, fully visible.
    let mut w = Writer::attach(r, READERS).unwrap();
    assert_eq!(w.version(), 2);
    let new3 = blob(1003, 30);
    assert_eq!(w.publish(&new3).unwrap().0, 3);
    assert_eq!(
        rd.read(&mut buf).unwrap().unwrap(),
        Blob {
            version: 3,
            len: 30
        }
    );
    assert_eq!(&buf[..30], &new3[..]);
    // A fresh reader (stateless restart) sees the same.
    let mut fresh = Reader::attach(r, READERS, 0).unwrap();
    assert_eq!(fresh.epoch(), 2);
    assert_eq!(fresh.read(&mut buf).unwrap().unwrap().version, 3);
}

#[test]
fn writer_restart_continues_versions_and_checks_own_fields() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    for v in 1..=5 {
        w.publish(&blob(v, 64)).unwrap();
    }
    drop(w);
    let mut rd = Reader::attach(r, READERS, 1).unwrap();
    let mut buf = [0u8; CAP];
    assert_eq!(rd.read(&mut buf).unwrap().unwrap().version, 5);
    let mut w = Writer::attach(r, READERS).unwrap();
    assert_eq!((w.version(), w.epoch()), (5, 2));
    assert_eq!(
        rd.read(&mut buf).unwrap().unwrap().version,
        5,
        "still visible"
    );
    assert_eq!(&buf[..64], &blob(5, 64)[..]);
    assert_eq!(w.publish(b"six").unwrap().0, 6);
    assert_eq!(rd.read(&mut buf).unwrap().unwrap().version, 6);
    drop(w);
    // Own fields corrupt: the writer refuses to continue.
    let bad_own = Err(Error::Header(HeaderError::BadOwnField));
    let bank6 = bank_off(&r, READERS, 6);
    let cases: [(usize, &[u8]); 4] = [
        (OFF_CURRENT, &BUSY.to_le_bytes()), // not a version
        (OFF_CURRENT, &7u64.to_le_bytes()), // bank 1 holds 5
        (bank6 + BANK_LEN, &(CAP as u32 + 1).to_le_bytes()),
        (bank6 + BANK_PAYLOAD + 1, b"X"), // checksum
    ];
    for (off, bytes) in cases {
        let mut saved = vec![0u8; bytes.len()];
        r.read_bytes(off, &mut saved).unwrap();
        poke(&r, READERS, off, bytes);
        assert_eq!(Writer::attach(r, READERS).map(|w| w.version()), bad_own);
        poke(&r, READERS, off, &saved);
    }
    assert_eq!(Writer::attach(r, READERS).unwrap().version(), 6);
    // A `current` pointing at the other, older but intact bank is accepted (the writer
    // cannot tell): it continues from there.
    put64(&r, OFF_CURRENT, 5);
    let mut w = Writer::attach(r, READERS).unwrap();
    assert_eq!(w.version(), 5);
    assert_eq!(w.publish(b"again").unwrap().0, 6);
}

#[test]
fn versions_exhausted() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    // Forge a restart at the last usable version (an even one lives in bank 0).
    let last = BUSY - 1;
    let bank = bank_off(&r, READERS, last);
    r.store_le::<u32>(bank + BANK_LEN, 0, Ordering::SeqCst)
        .unwrap();
    r.store_le::<u32>(
        bank + BANK_CRC,
        checksum(last, b"").unwrap(),
        Ordering::SeqCst,
    )
    .unwrap();
    put64(&r, bank + BANK_STAMP, last);
    put64(&r, OFF_CURRENT, last);
    w = {
        drop(w);
        Writer::attach(r, READERS).unwrap()
    };
    assert_eq!(w.version(), last);
    assert_eq!(w.publish(b"x"), Err(Error::VersionsExhausted));
    let mut rd = Reader::attach(r, READERS, 0).unwrap();
    assert_eq!(
        rd.read(&mut [0u8; 8]).unwrap().unwrap(),
        Blob {
            version: last,
            len: 0
        }
    );
}

/// Publishes two versions, lets `f` play the hostile writer, and checks that reader 0's
/// next read fails with `want`, stickily, and that it says so in its line.
fn corrupt_reader_view(f: impl FnOnce(&Region), want: Broken) {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    let mut rd = Reader::attach(r, READERS, 0).unwrap();
    let mut other = Reader::attach(r, READERS, 1).unwrap();
    w.publish(&blob(1, 100)).unwrap();
    w.publish(&blob(2, 100)).unwrap();
    let mut buf = [0u8; CAP];
    assert_eq!(rd.read(&mut buf).unwrap().unwrap().version, 2);
    assert_eq!(other.version(), Ok(2));
    f(&r);
    assert_eq!(rd.read(&mut buf), Err(Error::PeerBroken(want)));
    assert_eq!(rd.read(&mut buf), Err(Error::PeerBroken(want)), "sticky");
    assert_eq!(rd.version(), Err(Error::PeerBroken(want)));
    assert_eq!(rd.prepare_wait(), Err(Error::PeerBroken(want)));
    assert_eq!(rd.broken(), Some(want));
    assert_eq!(
        w.reader_status(0).unwrap().status.state,
        Some(State::Broken)
    );
    assert!(std::format!("{}", Error::PeerBroken(want)).contains("peer broken"));
}

#[test]
fn hostile_writer_cases() {
    let b0 = data_offset(READERS); // bank 0 holds version 2
    corrupt_reader_view(|r| poke(r, READERS, b0 + BANK_PAYLOAD + 50, b"!"), {
        let mut d = blob(2, 100);
        d[50] = b'!';
        Broken::Checksum {
            stored: checksum(2, &blob(2, 100)).unwrap(),
            computed: checksum(2, &d).unwrap(),
        }
    });
    // The checksum covers the length: a shorter length with the old checksum fails.
    corrupt_reader_view(
        |r| {
            r.store_le::<u32>(b0 + BANK_LEN, 99, Ordering::SeqCst)
                .unwrap()
        },
        Broken::Checksum {
            stored: checksum(2, &blob(2, 100)).unwrap(),
            computed: checksum(2, &blob(2, 100)[..99]).unwrap(),
        },
    );
    corrupt_reader_view(
        |r| {
            r.store_le::<u32>(b0 + BANK_LEN, CAP as u32 + 1, Ordering::SeqCst)
                .unwrap()
        },
        Broken::BadLength(CAP as u32 + 1),
    );
    corrupt_reader_view(|r| put64(r, b0 + BANK_STAMP, BUSY), Broken::BankStamp(BUSY));
    corrupt_reader_view(|r| put64(r, OFF_CURRENT, BUSY), Broken::BadCurrent(BUSY));
    corrupt_reader_view(|r| put64(r, OFF_CURRENT, 1), Broken::VersionWentBack(1));
    // `current` moved to a version whose bank holds another one.
    corrupt_reader_view(|r| put64(r, OFF_CURRENT, 3), Broken::BankStamp(1));
    // ... even with a forged stamp: the checksum covers the version.
    let b1 = b0 + bank_size(len_for(READERS, CAP), READERS).unwrap();
    corrupt_reader_view(
        |r| {
            put64(r, b1 + BANK_STAMP, 3);
            put64(r, OFF_CURRENT, 3);
        },
        Broken::Checksum {
            stored: checksum(1, &blob(1, 100)).unwrap(),
            computed: checksum(3, &blob(1, 100)).unwrap(),
        },
    );
    assert!(std::format!("{}", Broken::BadLength(3)).contains("length"));
}

#[test]
fn hostile_reader_costs_only_spurious_wakeups() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    let mut good = Reader::attach(r, READERS, 0).unwrap();
    // Reader 1 scribbles over its whole line.
    poke(&r, READERS, reader_line(1), &[0xff; LINE]);
    let (v, wake) = w.publish(b"cfg").unwrap();
    assert_eq!(
        (v, wake),
        (1, Wakeups(0b10)),
        "spurious wake-up of reader 1 only"
    );
    // Undefined flag bits alone ask for nothing.
    r.store_le::<u32>(reader_line(1) + SIDE_FLAGS, 6, Ordering::SeqCst)
        .unwrap();
    assert!(w.publish(b"cfg2").unwrap().1.is_empty());
    let mut buf = [0u8; 8];
    assert_eq!(good.read(&mut buf).unwrap().unwrap().version, 2);
    assert_eq!(&buf[..4], b"cfg2");
    // The writer restarts fine whatever the reader lines hold.
    poke(&r, READERS, reader_line(0), &[0xa5; 2 * LINE]);
    let w = Writer::attach(r, READERS).unwrap();
    assert_eq!(w.version(), 2);
    assert_eq!(w.reader_status(1).unwrap().status.state, None);
}

#[test]
fn wakeups_only_when_a_reader_prepared_to_wait() {
    let mem = small();
    let r = mem.region();
    let mut w = Writer::attach(r, READERS).unwrap();
    let mut a = Reader::attach(r, READERS, 0).unwrap();
    let mut b = Reader::attach(r, READERS, 1).unwrap();
    let mut buf = [0u8; CAP];
    assert!(w.publish(b"1").unwrap().1.is_empty(), "nobody waits");
    // Reader 1 has not read version 1 yet: prepare_wait says "do not block".
    assert!(!b.prepare_wait().unwrap());
    assert_eq!(w.reader_status(1).unwrap().flags, 0, "flag cleared");
    assert!(w.publish(b"2").unwrap().1.is_empty());
    b.read(&mut buf).unwrap();
    assert!(b.prepare_wait().unwrap());
    assert_eq!(w.reader_status(1).unwrap().flags, NEED_WAKEUP);
    let (_, wake) = w.publish(b"3").unwrap();
    assert_eq!(wake, Wakeups(0b10));
    assert!(wake.contains(1) && !wake.contains(0));
    // Until reader 1 runs again, every publish asks to notify it (coalesce them).
    assert_eq!(w.publish(b"4").unwrap().1, Wakeups(0b10));
    assert_eq!(b.changed_since(2), Ok(true)); // clears the flag
    assert!(w.publish(b"5").unwrap().1.is_empty());
    // Both wait.
    a.read(&mut buf).unwrap();
    b.read(&mut buf).unwrap();
    assert!(a.prepare_wait().unwrap());
    assert!(b.prepare_wait().unwrap());
    assert_eq!(w.publish(b"6").unwrap().1, Wakeups(0b11));
    assert!(!a.prepare_wait().unwrap(), "newer than last read");
    assert_eq!(a.read(&mut buf).unwrap().unwrap().version, 6);
    assert_eq!(&buf[..1], b"6");
    assert_eq!(w.publish(b"7").unwrap().1, Wakeups(0b10));
    // A reader that finds the writer broken while preparing to wait stops asking.
    b.read(&mut buf).unwrap();
    assert!(b.prepare_wait().unwrap());
    put64(&r, OFF_CURRENT, 1);
    assert_eq!(
        b.prepare_wait(),
        Err(Error::PeerBroken(Broken::VersionWentBack(1)))
    );
    assert_eq!(w.reader_status(1).unwrap().flags, 0);
    assert!(w.publish(b"8").unwrap().1.is_empty());
    // A reader that never read anything waits for the first blob.
    let fresh_mem = small();
    let fr = fresh_mem.region();
    let mut w2 = Writer::attach(fr, READERS).unwrap();
    let mut c = Reader::attach(fr, READERS, 0).unwrap();
    assert!(c.prepare_wait().unwrap());
    assert_eq!(w2.publish(b"").unwrap().1, Wakeups(1));
    assert!(!c.prepare_wait().unwrap());
    // Re-attaching clears a stale flag.
    assert!(c.read(&mut buf).unwrap().is_some());
    assert!(c.prepare_wait().unwrap());
    drop(c);
    let _c = Reader::attach(fr, READERS, 0).unwrap();
    assert!(w2.publish(b"").unwrap().1.is_empty());
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum Op {
    Publish(usize),
    Read(usize),
    Version(usize),
    Wait(usize),
    WriterRestart,
    /// The writer dies half-way through the next version, then restarts.
    WriterDiesMidUpdate(usize),
    ReaderRestart(usize),
}

const PROP_READERS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let rd = 0..PROP_READERS;
    prop_oneof![
        4 => (0usize..=CAP + 8).prop_map(Op::Publish),
        4 => rd.clone().prop_map(Op::Read),
        1 => rd.clone().prop_map(Op::Version),
        1 => rd.clone().prop_map(Op::Wait),
        1 => Just(Op::WriterRestart),
        1 => (0usize..=CAP).prop_map(Op::WriterDiesMidUpdate),
        1 => rd.prop_map(Op::ReaderRestart),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn attach_readers(r: Region) -> Vec<Reader> {
    (0..PROP_READERS)
        .map(|i| Reader::attach(r, PROP_READERS, i).unwrap())
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reads_match_model(
        ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 30 } else { 200 }),
        seed in any::<u64>(),
    ) {
        let mem = Mem::new(len_for(PROP_READERS, CAP));
        let r = mem.region();
        let mut w = Writer::attach(r, PROP_READERS).unwrap();
        let mut readers = attach_readers(r);
        // The model: the latest published blob, and what each reader last read.
        let mut latest: Option<(u64, Vec<u8>)> = None;
        let mut last_read = [0u64; PROP_READERS];
        let mut buf = [0u8; CAP];
        let mut n = seed;
        for op in ops {
            let latest_v = latest.as_ref().map_or(0, |l| l.0);
            match op {
                Op::Publish(len) => {
                    n = n.wrapping_add(1);
                    let data = blob(n, len);
                    match w.publish(&data) {
                        Ok((v, _)) => {
                            prop_assert_eq!(v, latest_v + 1);
                            latest = Some((v, data));
                        }
                        Err(Error::TooLarge { .. }) => prop_assert!(len > CAP),
                        Err(e) => prop_assert!(false, "publish: {e:?}"),
                    }
                }
                Op::Read(i) => {
                    let got = readers[i].read(&mut buf).unwrap();
                    match (&latest, got) {
                        (None, None) => {}
                        (Some((v, data)), Some(b)) => {
                            prop_assert_eq!(b.version, *v);
                            prop_assert_eq!(&buf[..b.len], &data[..]);
                            last_read[i] = *v;
                        }
                        (l, g) => prop_assert!(false, "model {:?} read {:?}", l.as_ref().map(|l| l.0), g),
                    }
                }
                Op::Version(i) => {
                    prop_assert_eq!(readers[i].version().unwrap(), latest_v);
                    prop_assert_eq!(readers[i].changed_since(last_read[i]).unwrap(), latest_v > last_read[i]);
                }
                Op::Wait(i) => {
                    prop_assert_eq!(readers[i].prepare_wait().unwrap(), latest_v == last_read[i]);
                }
                Op::WriterRestart => {
                    drop(w);
                    w = Writer::attach(r, PROP_READERS).unwrap();
                    prop_assert_eq!(w.version(), latest_v);
                }
                Op::WriterDiesMidUpdate(len) => {
                    half_write(&r, PROP_READERS, latest_v + 1, &blob(!n, len));
                    drop(w);
                    w = Writer::attach(r, PROP_READERS).unwrap();
                    prop_assert_eq!(w.version(), latest_v);
                }
                Op::ReaderRestart(i) => {
                    readers[i] = Reader::attach(r, PROP_READERS, i).unwrap();
                    last_read[i] = 0;
                }
            }
        }
    }

    #[test]
    fn hostile_writer_only_published_blobs_or_errors(
        steps in proptest::collection::vec(
            (op(), 0usize..8, any::<u64>(), any::<u16>()),
            1..if cfg!(miri) { 25 } else { 200 },
        ),
    ) {
        let mem = Mem::new(len_for(PROP_READERS, CAP));
        let r = mem.region();
        let bank = bank_size(r.len(), PROP_READERS).unwrap();
        let data = data_offset(PROP_READERS);
        let mut w = Writer::attach(r, PROP_READERS).unwrap();
        let mut readers = attach_readers(r);
        // Every (version, blob) the correct writer ever published; a version can appear
        // twice when a forged `current` made the writer restart from an older one.
        let mut published: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut newest = [0u64; PROP_READERS];
        let mut buf = [0u8; CAP];
        let mut n = 0u64;
        for (op, target, value, at) in steps {
            let at = at as usize;
            // The hostile writer scribbles on writer-owned bytes.
            match target {
                0 => put64(&r, OFF_CURRENT, value),
                1 => put64(&r, OFF_CURRENT, value % 64),
                2 => poke(&r, PROP_READERS, data + (at % 2) * bank + (at / 2 % 2) * 8, &value.to_le_bytes()),
                3 => put64(&r, data + (at % 2) * bank + BANK_STAMP, value % 64),
                4 => poke(&r, PROP_READERS, data + (at % 2) * bank + BANK_PAYLOAD + (at >> 1) % CAP, &[value as u8]),
                5 => poke(&r, PROP_READERS, 0x40 + (at % 8) * 8, &value.to_le_bytes()),
                6 => poke(&r, PROP_READERS, (at % 0x40) & !7, &value.to_le_bytes()),
                _ => {}
            }
            let was = readers.iter().map(|x| x.broken()).collect::<Vec<_>>();
            let mut replaced = None;
            match op {
                Op::Publish(len) | Op::WriterDiesMidUpdate(len) => {
                    n += 1;
                    let d = blob(n, len);
                    match w.publish(&d) {
                        Ok((v, _)) => published.push((v, d)),
                        Err(Error::TooLarge { .. }) => prop_assert!(len > CAP),
                        Err(Error::VersionsExhausted) => {}
                        Err(e) => prop_assert!(false, "publish: {e:?}"),
                    }
                }
                Op::Read(i) => match readers[i].read(&mut buf) {
                    Ok(Some(b)) => {
                        prop_assert!(
                            published.iter().any(|(v, d)| *v == b.version && d[..] == buf[..b.len]),
                            "read version {} ({} bytes) was never published", b.version, b.len
                        );
                        prop_assert!(b.version >= newest[i]);
                        newest[i] = b.version;
                    }
                    Ok(None) => prop_assert_eq!(newest[i], 0),
                    Err(Error::PeerBroken(_)) => {}
                    Err(e) => prop_assert!(false, "read: {e:?}"),
                },
                Op::Version(i) => match readers[i].version() {
                    Ok(v) => {
                        prop_assert!(v >= newest[i]);
                        newest[i] = v;
                    }
                    Err(Error::PeerBroken(_)) => {}
                    Err(e) => prop_assert!(false, "version: {e:?}"),
                },
                Op::Wait(i) => match readers[i].prepare_wait() {
                    Ok(_) | Err(Error::PeerBroken(_)) => {}
                    Err(e) => prop_assert!(false, "prepare_wait: {e:?}"),
                },
                Op::WriterRestart => match Writer::attach(r, PROP_READERS) {
                    Ok(nw) => w = nw,
                    Err(Error::Header(_)) => {}
                    Err(e) => prop_assert!(false, "writer attach: {e:?}"),
                },
                Op::ReaderRestart(i) => match Reader::attach(r, PROP_READERS, i) {
                    Ok(nr) => {
                        readers[i] = nr;
                        newest[i] = 0;
                        replaced = Some(i);
                    }
                    Err(Error::Header(_)) => {}
                    Err(e) => prop_assert!(false, "reader attach: {e:?}"),
                },
            }
            for (i, (x, b)) in readers.iter().zip(was).enumerate() {
                if let (Some(b), false) = (b, replaced == Some(i)) {
                    prop_assert_eq!(x.broken(), Some(b), "broken must be sticky");
                }
            }
        }
    }
}

/// A writer thread publishing as fast as it can while two reader threads read: every blob
/// read is exactly the one its version stands for (never a mix of two), versions never go
/// back, and each reader ends on the last version. Under Miri this also checks that the
/// seqlock is free of data races (payload words are atomics ordered by the fences).
#[test]
fn two_threads_never_a_mixed_blob() {
    let (total, cap): (u64, usize) = if cfg!(miri) { (12, 64) } else { (20_000, 1024) };
    let mem = Mem::new(len_for(2, cap));
    let shared = mem.shared();
    Writer::attach(mem.region(), 2).unwrap();
    let contended = std::thread::scope(|s| {
        s.spawn(move || {
            let mut w = Writer::attach(shared.region(), 2).unwrap();
            for v in 1..=total {
                let (got, _) = w.publish(&blob(v, len_of(v, cap))).unwrap();
                assert_eq!(got, v);
            }
        });
        let readers: Vec<_> = (0..2)
            .map(|i| {
                s.spawn(move || {
                    let mut rd = Reader::attach(shared.region(), 2, i).unwrap();
                    let mut buf = vec![0u8; cap];
                    let (mut prev, mut contended, mut reads) = (0u64, 0u64, 0u64);
                    while prev < total {
                        match rd.read(&mut buf) {
                            Ok(Some(b)) => {
                                assert!(b.version >= prev, "version went back");
                                assert_eq!(b.len, len_of(b.version, cap));
                                assert!(buf[..b.len] == blob(b.version, b.len)[..], "mixed blob");
                                prev = b.version;
                                reads += 1;
                            }
                            Ok(None) => assert_eq!(prev, 0),
                            Err(Error::Contended) => contended += 1,
                            Err(e) => panic!("reader {i}: {e:?}"),
                        }
                        if cfg!(miri) {
                            std::thread::yield_now();
                        }
                    }
                    assert!(reads > 0);
                    (contended, rd.retries())
                })
            })
            .collect();
        readers
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    std::println!("two_threads_never_a_mixed_blob: (Contended returns, retried attempts) per reader {contended:?}");
}

/// docs/drafts/blob.md N.11, byte for byte.
#[test]
fn worked_example_from_the_spec() {
    let mem = Mem::new(0x3c0);
    let r = mem.region();
    let mut w = Writer::attach(r, 2).unwrap();
    assert_eq!(w.capacity(), 0x100);
    let mut c = [0u8; 0x40];
    r.read_bytes(0, &mut c).unwrap();
    assert_eq!(&c[0x08..0x10], &[4, 0, 0, 0, 1, 0, 0, 0]);
    assert_eq!(
        &c[0x18..0x28],
        &[0x40, 1, 0, 0, 0, 0, 0, 0, 0x80, 2, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(&c[0x28..0x30], &0x5a72_0051_6604_0e0du64.to_le_bytes());
    let mut rd = Reader::attach(r, 2, 1).unwrap();
    assert_eq!(
        r.load_le::<u32>(0x100, Ordering::SeqCst),
        Some(State::Ready as u32)
    );
    assert_eq!(w.publish(b"123456789").unwrap().0, 1);
    let mut bank1 = [0u8; 0x50];
    r.read_bytes(0x280, &mut bank1).unwrap();
    assert_eq!(
        &bank1[..0x10],
        &[1, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0xe0, 0x6a, 0x1c, 0x28]
    );
    assert_eq!(&bank1[0x40..], b"123456789\0\0\0\0\0\0\0");
    assert_eq!(r.load_le::<u64>(0x50, Ordering::SeqCst), Some(1));
    let mut buf = [0u8; 16];
    assert_eq!(
        rd.read(&mut buf).unwrap().unwrap(),
        Blob { version: 1, len: 9 }
    );
    assert_eq!(
        r.load_le::<u64>(0x110, Ordering::SeqCst),
        Some(1),
        "last_read"
    );
    w.publish(b"two").unwrap();
    assert_eq!(
        r.load_le::<u64>(0x140, Ordering::SeqCst),
        Some(2),
        "bank 0 stamp"
    );
    let mut p = [0u8; 3];
    r.read_bytes(0x180, &mut p).unwrap();
    assert_eq!(&p, b"two");
}

#[test]
fn field_table_is_built_from_the_constants_the_code_uses() {
    crate::fieldcheck::check(include_str!("../blob.rs"), "pub const FIELDS", &[]);
    crate::fieldcheck::hash_covers(FIELDS, LAYOUT_HASH);
}
