// `drop` of a handle models that party dying.
#![allow(clippy::drop_non_drop)]

use super::*;
use crate::testmem::Mem;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// A 64-bit mix (splitmix64 finaliser): every value word depends on the whole counter.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value writer `w` publishes for counter `c`: word `k` is `mix(c, w, k)`, so a copy
/// mixing two publishes differs from both.
fn value(w: usize, c: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    let mut k = 0u64;
    while v.len() < len {
        v.extend_from_slice(&mix(c ^ ((w as u64) << 56) ^ (k << 48)).to_le_bytes());
        k += 1;
    }
    v.truncate(len);
    v
}

fn region_for(writers: usize, readers: usize, value_size: usize) -> Mem {
    Mem::new(
        Params::new(writers, readers, value_size)
            .unwrap()
            .region_size(),
    )
}

fn seq_of(r: &Region, p: &Params, w: usize) -> u64 {
    r.load_le::<u64>(p.writer_slot(w) + SLOT_SEQ, Ordering::SeqCst)
        .unwrap()
}

fn set_seq(r: &Region, p: &Params, w: usize, s: u64) {
    r.store_le::<u64>(p.writer_slot(w) + SLOT_SEQ, s, Ordering::SeqCst)
        .unwrap();
}

#[test]
fn layout_constants() {
    let p = Params::new(2, 3, 8).unwrap();
    assert_eq!(p.slot_stride(), 64);
    assert_eq!(p.writer_slot(1), 0xc0 + 64);
    assert_eq!(p.reader_line(0), 0xc0 + 128);
    assert_eq!(p.data_size(), 5 * 64);
    assert_eq!(p.region_size(), 0xc0 + 5 * 64);
    assert_eq!(Params::new(1, 1, 0).unwrap().slot_stride(), 64);
    assert_eq!(Params::new(1, 1, 32).unwrap().slot_stride(), 64);
    assert_eq!(Params::new(1, 1, 33).unwrap().slot_stride(), 128);
    let big = Params::new(MAX_MEMBERS, MAX_MEMBERS, MAX_VALUE_SIZE).unwrap();
    assert_eq!(big.slot_stride(), MAX_VALUE_SIZE + 64);
    assert_eq!(
        big.region_size(),
        0xc0 + 64 * (MAX_VALUE_SIZE + 64) + 64 * 64
    );
    assert_eq!(
        (p.writers(), p.readers(), p.value_size()),
        (2, 3, 8),
        "getters"
    );
    // The documented value (docs/protocols.md), computed independently in Python from
    // the field table there; changing the table changes it.
    assert_eq!(LAYOUT_HASH, 0x565f_7641_ca5c_ca00);
}

#[test]
fn invalid_params_and_indices() {
    let mem = region_for(2, 2, 8);
    let r = mem.region();
    for (w, n, v) in [
        (0, 1, 8),
        (65, 1, 8),
        (1, 0, 8),
        (1, 65, 8),
        (1, 1, MAX_VALUE_SIZE + 1),
    ] {
        assert!(matches!(
            Writer::attach(r, w, n, 0, v),
            Err(Error::InvalidParams(_))
        ));
        assert!(matches!(
            Reader::attach(r, w, n, 0, v),
            Err(Error::InvalidParams(_))
        ));
    }
    assert_eq!(
        Writer::attach(r, 2, 2, 2, 8).unwrap_err(),
        Error::BadIndex { index: 2, count: 2 }
    );
    assert_eq!(
        Reader::attach(r, 2, 2, 5, 8).unwrap_err(),
        Error::BadIndex { index: 5, count: 2 }
    );
    // Nothing was initialised by the failed attaches.
    assert_eq!(
        Reader::attach(r, 2, 2, 0, 8).unwrap_err(),
        Error::Header(HeaderError::NotInitialized)
    );
    // Too small a region for the parameters.
    let small = r.sub(0, mem.region().len() - 64).unwrap();
    assert!(matches!(
        Writer::attach(small, 2, 2, 0, 8),
        Err(Error::Header(HeaderError::BadRegion { .. }))
    ));
}

#[test]
fn init_attach_and_param_mismatch() {
    let mem = region_for(2, 3, 8);
    let r = mem.region();
    let nini = Error::Header(HeaderError::NotInitialized);
    // Only writer 0 initialises; everyone else waits for it.
    assert_eq!(Reader::attach(r, 2, 3, 0, 8).unwrap_err(), nini);
    assert_eq!(Writer::attach(r, 2, 3, 1, 8).unwrap_err(), nini);
    let w0 = Writer::attach(r, 2, 3, 0, 8).unwrap();
    assert_eq!((w0.index(), w0.epoch(), w0.seq()), (0, 1, 0));
    assert_eq!(w0.params(), Params::new(2, 3, 8).unwrap());
    let w1 = Writer::attach(r, 2, 3, 1, 8).unwrap();
    let rd = Reader::attach(r, 2, 3, 2, 8).unwrap();
    assert_eq!(
        (rd.index(), rd.epoch(), rd.attempts()),
        (2, 1, DEFAULT_ATTEMPTS)
    );
    assert_eq!(rd.params(), w1.params());
    // The parameter line holds what writer 0 recorded.
    assert_eq!(r.load_le::<u32>(OFF_VALUE_SIZE, Ordering::SeqCst), Some(8));
    assert_eq!(r.load_le::<u32>(OFF_WRITERS, Ordering::SeqCst), Some(2));
    assert_eq!(r.load_le::<u32>(OFF_READERS, Ordering::SeqCst), Some(3));
    // Another value size: another data area, reported as a parameter mismatch.
    let want = Params::new(2, 3, 8).unwrap();
    assert_eq!(
        Reader::attach(r, 2, 3, 0, 16).unwrap_err(),
        Error::ParamMismatch {
            found: want,
            expected: Params::new(2, 3, 16).unwrap()
        }
    );
    // Same data size, other counts: caught by the parameter line.
    assert_eq!(
        Reader::attach(r, 3, 2, 0, 8).unwrap_err(),
        Error::ParamMismatch {
            found: want,
            expected: Params::new(3, 2, 8).unwrap()
        }
    );
    assert!(matches!(
        Writer::attach(r, 3, 2, 0, 8),
        Err(Error::ParamMismatch { .. })
    ));
    // Writer 0 re-attaching does not re-initialise: writer 1's epoch survives.
    drop(w0);
    let w0 = Writer::attach(r, 2, 3, 0, 8).unwrap();
    assert_eq!(w0.epoch(), 2);
    assert_eq!(rd.writer_status(1).unwrap().epoch, 1);
    assert_eq!(rd.writer_status(0).unwrap().state, Some(State::Ready));
    assert_eq!(rd.writer_status(2), None);
    assert_eq!(w0.reader_status(2).unwrap().state, Some(State::Ready));
    assert_eq!(w0.reader_status(1).unwrap().state, Some(State::Reset));
    assert_eq!(w0.reader_status(3), None);
    // Non-zero reserved bytes in the parameter line.
    r.write_bytes(0x5c, &[1]).unwrap();
    assert_eq!(
        Reader::attach(r, 2, 3, 0, 8).unwrap_err(),
        Error::Header(HeaderError::Reserved)
    );
    r.write_bytes(0x5c, &[0]).unwrap();
    r.write_bytes(0x44, &[1]).unwrap();
    assert_eq!(
        Reader::attach(r, 2, 3, 0, 8).unwrap_err(),
        Error::Header(HeaderError::Reserved)
    );
    r.write_bytes(0x44, &[0]).unwrap();
    Reader::attach(r, 2, 3, 0, 8).unwrap();
    // A corrupt own sequence word.
    set_seq(&r, &want, 1, SEQ_LIMIT);
    assert_eq!(
        Writer::attach(r, 2, 3, 1, 8).unwrap_err(),
        Error::Header(HeaderError::BadOwnField)
    );
    drop(w1);
    w0.detach();
    rd.detach();
}

#[test]
fn initialiser_died_before_parameters() {
    let mem = region_for(2, 1, 8);
    let r = mem.region();
    let p = Params::new(2, 1, 8).unwrap();
    let mut w0 = Writer::attach(r, 2, 1, 0, 8).unwrap();
    w0.publish(5, &[5; 8]).unwrap();
    // As if writer 0 died after the header but before the parameters.
    r.store_le::<u32>(OFF_WRITERS, 0, Ordering::SeqCst).unwrap();
    let nini = Error::Header(HeaderError::NotInitialized);
    assert_eq!(Reader::attach(r, 2, 1, 0, 8).unwrap_err(), nini);
    assert_eq!(Writer::attach(r, 2, 1, 1, 8).unwrap_err(), nini);
    // Also with other parameters (other data area): still "not initialised".
    assert_eq!(Reader::attach(r, 2, 1, 0, 0).unwrap_err(), nini);
    // Writer 0 restarts and initialises again: a fresh channel.
    let w0 = Writer::attach(r, 2, 1, 0, 8).unwrap();
    assert_eq!((w0.epoch(), w0.seq()), (1, 0));
    assert_eq!(seq_of(&r, &p, 0), 0);
    let mut rd = Reader::attach(r, 2, 1, 0, 8).unwrap();
    assert_eq!(rd.read_latest(&mut [0; 8]), Ok(None));
}

#[test]
fn publish_and_read() {
    let vs = 13; // not a multiple of 8: the last word is padded with zeros
    let mem = region_for(1, 1, vs);
    let r = mem.region();
    let p = Params::new(1, 1, vs).unwrap();
    let mut w = Writer::attach(r, 1, 1, 0, vs).unwrap();
    let mut rd = Reader::attach(r, 1, 1, 0, vs).unwrap();
    let mut buf = [0xeeu8; 20];
    assert_eq!(rd.read_latest(&mut buf), Ok(None));
    assert_eq!(rd.read_writer(0, &mut buf), Ok(None));
    assert_eq!(
        w.publish(1, &[1; 12]),
        Err(Error::WrongValueSize {
            len: 12,
            expected: 13
        })
    );
    let v = value(0, 1, vs);
    assert!(w.publish(100, &v).unwrap().is_empty());
    assert_eq!(w.seq(), 2);
    // In memory: seq, stamp, value, zero padding.
    assert_eq!(seq_of(&r, &p, 0), 2);
    assert_eq!(
        r.load_le::<u64>(p.writer_slot(0) + SLOT_STAMP, Ordering::SeqCst),
        Some(100)
    );
    let mut raw = [0u8; 16];
    r.read_bytes(p.writer_slot(0) + SLOT_VALUE, &mut raw)
        .unwrap();
    assert_eq!(&raw[..vs], &v[..]);
    assert_eq!(&raw[vs..], &[0, 0, 0]);
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!(
        s,
        Sample {
            writer: 0,
            stamp: 100,
            seq: 2,
            contended: WriterSet(0)
        }
    );
    assert_eq!(&buf[..vs], &v[..]);
    assert_eq!(&buf[vs..], &[0xee; 7], "bytes past the value untouched");
    assert_eq!(
        rd.read_latest(&mut [0; 12]),
        Err(Error::BufferTooSmall { len: 13 })
    );
    assert_eq!(
        rd.read_writer(0, &mut [0; 12]),
        Err(Error::BufferTooSmall { len: 13 })
    );
    assert_eq!(
        rd.read_writer(1, &mut buf),
        Err(Error::BadIndex { index: 1, count: 1 })
    );
    let v2 = value(0, 2, vs);
    w.publish(50, &v2).unwrap();
    let s = rd.read_writer(0, &mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.stamp, s.seq), (0, 50, 4));
    assert_eq!(&buf[..vs], &v2[..]);
    // The writer's own last publish is its latest, even with a lower stamp.
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.stamp, s.seq), (50, 4));

    // Stamp-only values (value size 0).
    let mem0 = region_for(1, 1, 0);
    let mut w = Writer::attach(mem0.region(), 1, 1, 0, 0).unwrap();
    let mut rd = Reader::attach(mem0.region(), 1, 1, 0, 0).unwrap();
    w.publish(7, &[]).unwrap();
    assert_eq!(rd.read_latest(&mut []).unwrap().unwrap().stamp, 7);
}

#[test]
fn newest_across_writers_by_stamp() {
    let mem = region_for(3, 1, 8);
    let r = mem.region();
    let mut w: Vec<Writer> = (0..3)
        .map(|i| Writer::attach(r, 3, 1, i, 8).unwrap())
        .collect();
    let mut rd = Reader::attach(r, 3, 1, 0, 8).unwrap();
    let mut buf = [0u8; 8];
    let latest = |rd: &mut Reader, buf: &mut [u8; 8]| {
        let s = rd.read_latest(buf).unwrap().unwrap();
        assert_eq!(buf, &(s.writer as u64 * 1000 + s.stamp).to_le_bytes());
        (s.writer, s.stamp)
    };
    let put = |w: &mut Writer, stamp: u64| {
        let v = (w.index() as u64 * 1000 + stamp).to_le_bytes();
        w.publish(stamp, &v).unwrap();
    };
    put(&mut w[2], 10);
    assert_eq!(latest(&mut rd, &mut buf), (2, 10));
    put(&mut w[1], 11);
    assert_eq!(latest(&mut rd, &mut buf), (1, 11));
    put(&mut w[0], 5);
    assert_eq!(latest(&mut rd, &mut buf), (1, 11));
    // Ties go to the lowest index.
    put(&mut w[2], 11);
    assert_eq!(latest(&mut rd, &mut buf), (1, 11));
    put(&mut w[0], 11);
    assert_eq!(latest(&mut rd, &mut buf), (0, 11));
    // A writer's last publish replaces its previous one, even with a lower stamp.
    put(&mut w[0], 3);
    assert_eq!(latest(&mut rd, &mut buf), (1, 11));
    put(&mut w[1], 2);
    assert_eq!(latest(&mut rd, &mut buf), (2, 11));
    // Each writer's own latest is still there.
    for (i, want) in [(0, 3), (1, 2), (2, 11)] {
        let s = rd.read_writer(i, &mut buf).unwrap().unwrap();
        assert_eq!((s.writer, s.stamp), (i, want));
    }
    assert!(rd.broken_writers().is_empty());
}

#[test]
fn writer_restart_continues_sequence() {
    let mem = region_for(2, 1, 16);
    let r = mem.region();
    assert_eq!(
        Writer::attach(r, 2, 1, 1, 16).unwrap_err(),
        Error::Header(HeaderError::NotInitialized)
    );
    let _w0 = Writer::attach(r, 2, 1, 0, 16).unwrap();
    let mut w1 = Writer::attach(r, 2, 1, 1, 16).unwrap();
    let mut rd = Reader::attach(r, 2, 1, 0, 16).unwrap();
    let mut buf = [0u8; 16];
    for c in 0..3 {
        w1.publish(c, &value(1, c, 16)).unwrap();
    }
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().seq, 6);
    drop(w1);
    let mut w1 = Writer::attach(r, 2, 1, 1, 16).unwrap();
    assert_eq!((w1.epoch(), w1.seq()), (2, 6));
    // The last value is still readable after the restart.
    let s = rd.read_writer(1, &mut buf).unwrap().unwrap();
    assert_eq!((s.stamp, s.seq), (2, 6));
    assert_eq!(&buf[..], &value(1, 2, 16)[..]);
    w1.publish(3, &value(1, 3, 16)).unwrap();
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.stamp, s.seq), (1, 3, 8));
    assert_eq!(&buf[..], &value(1, 3, 16)[..]);
    assert!(rd.broken_writers().is_empty());
    // A reader restart forgets what it saw; nothing in memory changes.
    drop(rd);
    let mut rd = Reader::attach(r, 2, 1, 0, 16).unwrap();
    assert_eq!(rd.epoch(), 2);
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().seq, 8);
    w1.detach();
    assert_eq!(rd.writer_status(1).unwrap().state, Some(State::Reset));
    assert_eq!(rd.read_writer(1, &mut buf).unwrap().unwrap().seq, 8);
    assert!(std::format!("{}", Error::SeqExhausted).contains("exhausted"));
}

/// Simulates writer `w` dying during a publish: the odd sequence value and half of a new
/// value are in memory.
fn die_mid_write(r: &Region, p: &Params, w: usize, garbage: &[u8]) {
    let s = seq_of(r, p, w);
    let next = s + 1 + (s & 1);
    set_seq(r, p, w, next);
    // Whole words (as the writer stores them), the first half of the value.
    for (i, word) in garbage.chunks_exact(8).take(garbage.len() / 16).enumerate() {
        let v = u64::from_le_bytes(word.try_into().unwrap());
        r.store_le::<u64>(p.writer_slot(w) + SLOT_VALUE + 8 * i, v, Ordering::SeqCst)
            .unwrap();
    }
    r.store_le::<u64>(p.writer_slot(w) + SLOT_STAMP, u64::MAX, Ordering::SeqCst)
        .unwrap();
}

#[test]
fn writer_died_mid_write_never_torn() {
    let vs = 24;
    let mem = region_for(2, 1, vs);
    let r = mem.region();
    let p = Params::new(2, 1, vs).unwrap();
    let mut w0 = Writer::attach(r, 2, 1, 0, vs).unwrap();
    let mut w1 = Writer::attach(r, 2, 1, 1, vs).unwrap();
    let mut rd = Reader::attach(r, 2, 1, 0, vs).unwrap();
    rd.set_attempts(0);
    assert_eq!(rd.attempts(), 1);
    rd.set_attempts(8);
    let mut buf = [0u8; 24];
    w0.publish(1, &value(0, 1, vs)).unwrap();
    w1.publish(2, &value(1, 2, vs)).unwrap();
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 1);
    assert!(!rd.changed());

    // Writer 1 dies mid-publish (seq 3) with a garbage half-value and a huge stamp.
    drop(w1);
    die_mid_write(&r, &p, 1, &value(9, 9, vs));
    assert!(rd.changed(), "the newest writer's slot moved");
    assert_eq!(
        rd.read_writer(1, &mut buf),
        Err(Error::Contended(WriterSet(0b10)))
    );
    // read_latest returns writer 0's consistent value and says writer 1 was left out.
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!(
        s,
        Sample {
            writer: 0,
            stamp: 1,
            seq: 2,
            contended: WriterSet(0b10)
        }
    );
    assert_eq!(&buf[..], &value(0, 1, vs)[..]);
    assert!(!rd.changed(), "a stuck slot is not a change");
    assert!(rd.prepare_wait());
    // Again (the stuck slot is now recognised at the first attempt): same result.
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap(), s);

    // Writer 1 restarts: still odd until its next publish completes.
    let mut w1 = Writer::attach(r, 2, 1, 1, vs).unwrap();
    assert_eq!(w1.seq(), 4);
    assert_eq!(seq_of(&r, &p, 1), 3);
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap(), s);
    w1.publish(0, &value(1, 3, vs)).unwrap();
    assert_eq!(seq_of(&r, &p, 1), 6);
    assert!(rd.changed(), "writer 1 left the contended set");
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!(
        (s.writer, s.stamp, s.seq, s.contended),
        (0, 1, 2, WriterSet(0))
    );
    let s = rd.read_writer(1, &mut buf).unwrap().unwrap();
    assert_eq!((s.stamp, s.seq), (0, 6));
    assert_eq!(&buf[..], &value(1, 3, vs)[..]);
    assert!(rd.broken_writers().is_empty());

    // With only one writer and that one stuck: Contended, never a torn value.
    drop(w0);
    die_mid_write(&r, &p, 0, &value(8, 8, vs));
    drop(w1);
    die_mid_write(&r, &p, 1, &value(7, 7, vs));
    assert!(rd.changed());
    assert_eq!(
        rd.read_latest(&mut buf),
        Err(Error::Contended(WriterSet(0b11)))
    );
    assert!(!rd.changed());
    assert!(std::format!("{}", Error::Contended(WriterSet(3))).contains("contended"));
}

#[test]
fn death_during_first_publish_is_empty() {
    let mem = region_for(2, 1, 8);
    let r = mem.region();
    let p = Params::new(2, 1, 8).unwrap();
    let mut w0 = Writer::attach(r, 2, 1, 0, 8).unwrap();
    let w1 = Writer::attach(r, 2, 1, 1, 8).unwrap();
    let mut rd = Reader::attach(r, 2, 1, 0, 8).unwrap();
    drop(w1);
    die_mid_write(&r, &p, 1, &[1; 8]);
    assert_eq!(seq_of(&r, &p, 1), 1);
    let mut buf = [0u8; 8];
    // Sequence 1: no complete value ever existed: empty, not contended.
    assert_eq!(rd.read_writer(1, &mut buf), Ok(None));
    assert_eq!(rd.read_latest(&mut buf), Ok(None));
    assert!(!rd.changed());
    w0.publish(4, &[4; 8]).unwrap();
    assert!(rd.changed());
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.contended), (0, WriterSet(0)));
    // Restart and publish: 1 -> (private 2) -> 3 -> 4.
    let mut w1 = Writer::attach(r, 2, 1, 1, 8).unwrap();
    assert_eq!(w1.seq(), 2);
    w1.publish(9, &[9; 8]).unwrap();
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.seq, buf), (1, 4, [9; 8]));
}

#[test]
fn wakeups_only_when_a_reader_waits() {
    let mem = region_for(2, 3, 8);
    let r = mem.region();
    let mut w0 = Writer::attach(r, 2, 3, 0, 8).unwrap();
    let mut w1 = Writer::attach(r, 2, 3, 1, 8).unwrap();
    let mut r0 = Reader::attach(r, 2, 3, 0, 8).unwrap();
    let mut r2 = Reader::attach(r, 2, 3, 2, 8).unwrap();
    let mut buf = [0u8; 8];
    // Nobody waits: no notifications.
    assert!(w0.publish(10, &[1; 8]).unwrap().is_empty());
    // Something new is there: prepare_wait says "don't block" and clears the flag.
    assert!(!r2.prepare_wait());
    assert!(w0.publish(11, &[2; 8]).unwrap().is_empty());
    r2.read_latest(&mut buf).unwrap().unwrap();
    r0.read_latest(&mut buf).unwrap().unwrap();
    assert!(r2.prepare_wait());
    assert!(r0.prepare_wait());
    // A publish that ranks below the last sample is no reason to wake up, but the
    // writer cannot know that: it notifies every waiting reader.
    let wk = w1.publish(3, &[3; 8]).unwrap();
    assert_eq!(wk, Wakeups(0b101));
    assert!(r2.prepare_wait(), "lower stamp: nothing newer");
    // Coalesced: the flag stays until the reader reads again.
    assert_eq!(w0.publish(12, &[4; 8]).unwrap(), Wakeups(0b101));
    assert!(!r2.prepare_wait());
    r2.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!(w0.publish(13, &[5; 8]).unwrap(), Wakeups(0b001));
    let s = r0.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.stamp), (0, 13));
    assert!(w0.publish(14, &[6; 8]).unwrap().is_empty());
    // read_writer also clears the flag; detach clears it too.
    assert!(!r0.prepare_wait());
    r0.read_latest(&mut buf).unwrap();
    assert!(r0.prepare_wait());
    r0.read_writer(1, &mut buf).unwrap();
    assert!(w0.publish(15, &[7; 8]).unwrap().is_empty());
    r2.read_latest(&mut buf).unwrap();
    assert!(r2.prepare_wait());
    r2.detach();
    assert!(w1.publish(16, &[8; 8]).unwrap().is_empty());
    // Hostile readers can only cause spurious notifications: unknown bits are ignored.
    let p = w0.params();
    r.store_le::<u32>(p.reader_line(1) + SIDE_FLAGS, 6, Ordering::SeqCst)
        .unwrap();
    assert!(w0.publish(17, &[9; 8]).unwrap().is_empty());
    r.store_le::<u32>(p.reader_line(1) + SIDE_FLAGS, 7, Ordering::SeqCst)
        .unwrap();
    assert_eq!(w0.publish(18, &[9; 8]).unwrap(), Wakeups(0b010));
}

#[test]
fn changed_tracks_what_read_latest_would_return() {
    let mem = region_for(3, 1, 8);
    let r = mem.region();
    let mut w: Vec<Writer> = (0..3)
        .map(|i| Writer::attach(r, 3, 1, i, 8).unwrap())
        .collect();
    let mut rd = Reader::attach(r, 3, 1, 0, 8).unwrap();
    let mut buf = [0u8; 8];
    assert!(!rd.changed(), "nothing published");
    w[1].publish(10, &[1; 8]).unwrap();
    assert!(rd.changed());
    assert!(rd.changed(), "changed() does not consume the change");
    rd.read_latest(&mut buf).unwrap().unwrap();
    assert!(!rd.changed());
    w[0].publish(9, &[0; 8]).unwrap();
    assert!(!rd.changed(), "ranks below");
    w[2].publish(10, &[2; 8]).unwrap();
    assert!(!rd.changed(), "tie, higher index");
    w[0].publish(10, &[0; 8]).unwrap();
    assert!(rd.changed(), "tie, lower index");
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 0);
    // The last sample's writer publishes again, even with a lower stamp.
    w[0].publish(1, &[0; 8]).unwrap();
    assert!(rd.changed());
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 1);
    // read_writer does not move what changed() compares against.
    w[2].publish(11, &[2; 8]).unwrap();
    rd.read_writer(2, &mut buf).unwrap();
    assert!(rd.changed());
}

#[test]
fn sequence_going_back_marks_the_writer_broken() {
    let mem = region_for(2, 1, 8);
    let r = mem.region();
    let p = Params::new(2, 1, 8).unwrap();
    let mut w0 = Writer::attach(r, 2, 1, 0, 8).unwrap();
    let mut w1 = Writer::attach(r, 2, 1, 1, 8).unwrap();
    let mut rd = Reader::attach(r, 2, 1, 0, 8).unwrap();
    let mut buf = [0u8; 8];
    w0.publish(1, &[1; 8]).unwrap();
    w1.publish(5, &[5; 8]).unwrap();
    w1.publish(6, &[6; 8]).unwrap();
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 1);
    // Hostile writer 1 rewinds its sequence word (and puts a huge stamp in).
    set_seq(&r, &p, 1, 2);
    r.store_le::<u64>(p.writer_slot(1) + SLOT_STAMP, u64::MAX, Ordering::SeqCst)
        .unwrap();
    let why = Broken::SeqWentBack { seen: 4, found: 2 };
    assert!(rd.changed(), "the last sample's writer broke");
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!((s.writer, s.stamp, buf), (0, 1, [1; 8]));
    assert_eq!(rd.broken(1), Some(why));
    assert_eq!(rd.broken(0), None);
    assert_eq!(rd.broken(99), None);
    assert_eq!(rd.broken_writers(), WriterSet(0b10));
    let err = Error::WriterBroken { writer: 1, why };
    assert_eq!(rd.read_writer(1, &mut buf), Err(err));
    assert!(std::format!("{err}").contains("went back"));
    // Sticky, even when the sequence word looks fine again.
    set_seq(&r, &p, 1, 100);
    assert_eq!(rd.read_writer(1, &mut buf), Err(err));
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 0);
    assert!(!rd.changed(), "broken writers are ignored");
    // A re-attached reader starts afresh.
    let mut rd = Reader::attach(r, 2, 1, 0, 8).unwrap();
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().writer, 1);
    // Broken found by read_writer.
    set_seq(&r, &p, 1, 98);
    assert_eq!(
        rd.read_writer(1, &mut buf),
        Err(Error::WriterBroken {
            writer: 1,
            why: Broken::SeqWentBack {
                seen: 100,
                found: 98
            }
        })
    );
    // The honest writer is unaffected.
    w0.publish(2, &[2; 8]).unwrap();
    assert_eq!(rd.read_latest(&mut buf).unwrap().unwrap().stamp, 2);
}

#[test]
fn writer_set_and_display() {
    let s = WriterSet(0b1010_0001);
    assert_eq!(s.iter().collect::<Vec<_>>(), [0, 5, 7]);
    assert!(s.contains(5) && !s.contains(1) && !s.contains(64));
    assert_eq!(s.count(), 3);
    assert!(!s.is_empty() && WriterSet::default().is_empty());
    for e in [
        Error::Header(HeaderError::NotInitialized),
        Error::InvalidParams(Params {
            writers: 0,
            readers: 1,
            value_size: 1,
        }),
        Error::BadIndex { index: 1, count: 1 },
        Error::ParamMismatch {
            found: Params::new(1, 1, 1).unwrap(),
            expected: Params::new(1, 1, 2).unwrap(),
        },
        Error::WrongValueSize {
            len: 1,
            expected: 2,
        },
        Error::BufferTooSmall { len: 3 },
    ] {
        assert!(!std::format!("{e}").is_empty());
    }
    let w = Writer::attach(region_for(1, 1, 8).region(), 1, 1, 0, 8);
    assert!(std::format!("{w:?}").contains("Writer"));
}

// ---- property tests ----

const W: usize = 3;
const VS: usize = 20;

#[derive(Clone, Debug)]
enum Op {
    /// Writer publishes with a small stamp (ties are common).
    Publish(usize, u64),
    ReadLatest,
    ReadWriter(usize),
    /// Writer re-attaches.
    WriterRestart(usize),
    /// Writer dies mid-publish (odd sequence, half a value) and re-attaches.
    DieMidWrite(usize),
    ReaderRestart,
    Changed,
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..W, 0u64..6).prop_map(|(w, s)| Op::Publish(w, s)),
        4 => Just(Op::ReadLatest),
        2 => (0..W).prop_map(Op::ReadWriter),
        1 => (0..W).prop_map(Op::WriterRestart),
        1 => (0..W).prop_map(Op::DieMidWrite),
        1 => Just(Op::ReaderRestart),
        2 => Just(Op::Changed),
        1 => Just(Op::Wait),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The model of one writer's slot: the sequence word in memory and the last complete
/// publish.
#[derive(Clone, Default)]
struct ModelSlot {
    seq: u64,
    latest: Option<(u64, Vec<u8>)>,
}

/// An offset below `limit` for a hostile scribble. Under Miri only 8-aligned (whole
/// words, as the protocol's u64 fields): Miri's weak-memory emulation crashes (an internal
/// error, not a finding) when a word written atomically is then partly overwritten by a
/// plain or smaller atomic write and written atomically again. Natively, any offset.
fn scribble_at(at: usize, limit: usize) -> usize {
    if cfg!(miri) {
        (at % limit) & !7
    } else {
        at % limit
    }
}

/// What read_latest must return: `(writer, seq, stamp, value)` or none, and the
/// contended set.
type Expect = (Option<(usize, u64, u64, Vec<u8>)>, u64);

fn expect(m: &[ModelSlot]) -> Expect {
    let mut best: Option<(usize, u64, u64, Vec<u8>)> = None;
    let mut contended = 0;
    for (w, s) in m.iter().enumerate() {
        if s.seq & 1 == 1 {
            if s.seq > 1 {
                contended |= 1 << w;
            }
            continue;
        }
        if let Some((stamp, v)) = &s.latest {
            if best.as_ref().is_none_or(|b| *stamp > b.2) {
                best = Some((w, s.seq, *stamp, v.clone()));
            }
        }
    }
    (best, contended)
}

fn key(e: &Expect) -> (Option<(usize, u64)>, u64) {
    (e.0.as_ref().map(|b| (b.0, b.1)), e.1)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reads_match_model(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 30 } else { 200 })) {
        let p = Params::new(W, 2, VS).unwrap();
        let mem = Mem::new(p.region_size());
        let r = mem.region();
        let mut ws: Vec<Writer> = (0..W).map(|i| Writer::attach(r, W, 2, i, VS).unwrap()).collect();
        let mut rd = Reader::attach(r, W, 2, 1, VS).unwrap();
        let mut model = vec![ModelSlot::default(); W];
        // What the reader's last read_latest returned (for changed()).
        let mut last = (None, 0);
        let mut waiting = false;
        let mut n = 0u64;
        let mut buf = [0u8; VS + 4];
        for op in ops {
            match op {
                Op::Publish(w, stamp) => {
                    n += 1;
                    let v = value(w, n, VS);
                    let wk = ws[w].publish(stamp, &v).unwrap();
                    prop_assert_eq!(wk, Wakeups(if waiting { 0b10 } else { 0 }));
                    let s = &mut model[w];
                    s.seq = s.seq + (s.seq & 1) + 2;
                    s.latest = Some((stamp, v));
                }
                Op::ReadLatest => {
                    waiting = false;
                    let e = expect(&model);
                    let got = rd.read_latest(&mut buf);
                    match (&e.0, got) {
                        (Some((w, seq, stamp, v)), Ok(Some(s))) => {
                            prop_assert_eq!(s, Sample { writer: *w, stamp: *stamp, seq: *seq, contended: WriterSet(e.1) });
                            prop_assert_eq!(&buf[..VS], &v[..]);
                        }
                        (None, Ok(None)) => prop_assert_eq!(e.1, 0),
                        (None, Err(Error::Contended(c))) => prop_assert_eq!(c, WriterSet(e.1)),
                        (e, g) => prop_assert!(false, "expected {:?}, got {:?}", e, g),
                    }
                    last = key(&e);
                }
                Op::ReadWriter(w) => {
                    waiting = false;
                    let got = rd.read_writer(w, &mut buf);
                    let s = &model[w];
                    if s.seq & 1 == 1 && s.seq > 1 {
                        prop_assert_eq!(got, Err(Error::Contended(WriterSet(1 << w))));
                    } else if s.seq <= 1 {
                        prop_assert_eq!(got, Ok(None));
                    } else {
                        let (stamp, v) = s.latest.clone().unwrap();
                        prop_assert_eq!(got, Ok(Some(Sample { writer: w, stamp, seq: s.seq, contended: WriterSet(0) })));
                        prop_assert_eq!(&buf[..VS], &v[..]);
                    }
                }
                Op::WriterRestart(w) => {
                    ws[w] = Writer::attach(r, W, 2, w, VS).unwrap();
                    prop_assert_eq!(ws[w].seq(), model[w].seq + (model[w].seq & 1));
                }
                Op::DieMidWrite(w) => {
                    die_mid_write(&r, &p, w, &value(7, n, VS));
                    ws[w] = Writer::attach(r, W, 2, w, VS).unwrap();
                    let s = &mut model[w];
                    s.seq = s.seq + (s.seq & 1) + 1;
                }
                Op::ReaderRestart => {
                    rd = Reader::attach(r, W, 2, 1, VS).unwrap();
                    last = (None, 0);
                    waiting = false;
                }
                Op::Changed => {
                    prop_assert_eq!(rd.changed(), key(&expect(&model)) != last);
                }
                Op::Wait => {
                    let block = rd.prepare_wait();
                    prop_assert_eq!(block, key(&expect(&model)) == last);
                    waiting = block;
                }
            }
            prop_assert!(rd.broken_writers().is_empty());
        }
    }

    #[test]
    fn hostile_writer_only_spoils_its_own_slot(
        hostile in 0..W,
        steps in proptest::collection::vec(
            (op(), 0u8..8, any::<u64>(), 0usize..64),
            1..if cfg!(miri) { 25 } else { 200 },
        ),
    ) {
        let p = Params::new(W, 1, VS).unwrap();
        let mem = Mem::new(p.region_size());
        let r = mem.region();
        let mut ws: Vec<Writer> = (0..W).map(|i| Writer::attach(r, W, 1, i, VS).unwrap()).collect();
        let mut rd = Reader::attach(r, W, 1, 0, VS).unwrap();
        rd.set_attempts(4);
        // Honest writers' last publishes.
        let mut model: Vec<Option<(u64, u64, Vec<u8>)>> = vec![None; W];
        let hslot = p.writer_slot(hostile);
        let mut n = 0u64;
        let mut buf = [0u8; VS];
        for (op, target, x, at) in steps {
            // The hostile writer scribbles on its own slot.
            match target {
                0 => { r.store_le::<u64>(hslot + SLOT_SEQ, x, Ordering::SeqCst); }
                1 => { r.store_le::<u64>(hslot + SLOT_SEQ, x & 0xff, Ordering::SeqCst); }
                2 => { r.store_le::<u64>(hslot + SLOT_STAMP, x, Ordering::SeqCst); }
                3 => { r.write_bytes(hslot + scribble_at(at, p.slot_stride() - 7), &x.to_le_bytes()).unwrap(); }
                4 => { let _ = ws[hostile].publish(x, &value(hostile, x, VS)); }
                5 => {
                    // The u32 state and flags words (natively also u32 halves of the epoch).
                    let off = if cfg!(miri) { (at % 2) * 4 } else { (at % 4) * 4 };
                    r.store_le::<u32>(hslot + off, x as u32, Ordering::SeqCst);
                }
                _ => {}
            }
            let was_broken = rd.broken_writers();
            let honest = |w: usize| w != hostile;
            match op {
                Op::Publish(w, stamp) if honest(w) => {
                    n += 1;
                    let v = value(w, n, VS);
                    ws[w].publish(stamp, &v).unwrap();
                    model[w] = Some((stamp, ws[w].seq(), v));
                }
                Op::Publish(..) | Op::DieMidWrite(_) => {}
                Op::WriterRestart(w) => match Writer::attach(r, W, 1, w, VS) {
                    Ok(nw) => ws[w] = nw,
                    Err(e) => prop_assert!(!honest(w) && e == Error::Header(HeaderError::BadOwnField), "{e:?}"),
                },
                Op::ReadLatest => {
                    let res = rd.read_latest(&mut buf);
                    // The newest honest publish, by (stamp, lowest index).
                    let mut best: Option<usize> = None;
                    for w in (0..W).filter(|&w| honest(w)) {
                        if let Some((s, _, _)) = &model[w] {
                            if best.is_none_or(|b| *s > model[b].as_ref().unwrap().0) {
                                best = Some(w);
                            }
                        }
                    }
                    match res {
                        Ok(Some(s)) if honest(s.writer) => {
                            prop_assert_eq!(Some(s.writer), best);
                            let (stamp, seq, v) = model[s.writer].clone().unwrap();
                            prop_assert_eq!((s.stamp, s.seq), (stamp, seq));
                            prop_assert_eq!(&buf[..], &v[..]);
                            prop_assert!(s.contended.0 & !(1 << hostile) == 0);
                            // The hostile slot was left out, or empty, or ranks below.
                            let hs = seq_of(&r, &p, hostile);
                            let st = r.load_le::<u64>(hslot + SLOT_STAMP, Ordering::SeqCst).unwrap();
                            prop_assert!(
                                s.contended.contains(hostile)
                                    || rd.broken(hostile).is_some()
                                    || hs <= 1
                                    || !(st > s.stamp || (st == s.stamp && hostile < s.writer)),
                                "hostile slot seq {hs} stamp {st} should have won"
                            );
                        }
                        Ok(Some(s)) => {
                            // The hostile slot's current content, consistently read.
                            prop_assert_eq!(s.seq, seq_of(&r, &p, hostile));
                            prop_assert_eq!(s.seq & 1, 0);
                            let st = r.load_le::<u64>(hslot + SLOT_STAMP, Ordering::SeqCst).unwrap();
                            prop_assert_eq!(s.stamp, st);
                            let mut raw = [0u8; VS];
                            r.read_bytes(hslot + SLOT_VALUE, &mut raw).unwrap();
                            prop_assert_eq!(raw, buf);
                            // It must rank above every honest value.
                            if let Some(b) = best {
                                let bs = model[b].as_ref().unwrap().0;
                                prop_assert!(st > bs || (st == bs && hostile < b));
                            }
                        }
                        Ok(None) => prop_assert!(best.is_none()),
                        Err(Error::Contended(c)) => {
                            prop_assert!(best.is_none());
                            prop_assert_eq!(c, WriterSet(1 << hostile));
                        }
                        Err(e) => prop_assert!(false, "read_latest: {e:?}"),
                    }
                }
                Op::ReadWriter(w) => {
                    let res = rd.read_writer(w, &mut buf);
                    if honest(w) {
                        match (&model[w], res) {
                            (Some((stamp, seq, v)), Ok(Some(s))) => {
                                prop_assert_eq!((s.stamp, s.seq), (*stamp, *seq));
                                prop_assert_eq!(&buf[..], &v[..]);
                            }
                            (None, Ok(None)) => {}
                            (m, g) => prop_assert!(false, "model {:?} got {:?}", m.is_some(), g),
                        }
                    } else {
                        match res {
                            Ok(_) | Err(Error::Contended(_)) => {}
                            Err(Error::WriterBroken { writer, .. }) => prop_assert_eq!(writer, hostile),
                            Err(e) => prop_assert!(false, "read_writer: {e:?}"),
                        }
                    }
                }
                Op::ReaderRestart => {
                    rd = Reader::attach(r, W, 1, 0, VS).unwrap();
                    rd.set_attempts(4);
                }
                Op::Changed => { rd.changed(); }
                Op::Wait => { rd.prepare_wait(); }
            }
            prop_assert!(rd.broken_writers().0 & !(1 << hostile) == 0);
            if !matches!(op, Op::ReaderRestart) {
                prop_assert_eq!(rd.broken_writers().0 & was_broken.0, was_broken.0, "sticky");
            }
        }
    }
}

/// Two writer threads and a reader thread (three "domains"). Every value is derived from
/// its stamp, so a torn copy is detected; per writer, stamps and sequence values never go
/// backwards; a writer restarts now and then. Under Miri this also checks that the
/// seqlock is data-race free (value words are relaxed atomics ordered by the fences).
#[test]
fn threads_never_torn_never_backwards() {
    const VS: usize = 44;
    let total: u64 = if cfg!(miri) { 40 } else { 50_000 };
    let reads: u64 = if cfg!(miri) { 60 } else { 100_000 };
    let p = Params::new(2, 1, VS).unwrap();
    let mem = Mem::new(p.region_size());
    let shared = mem.shared();
    Writer::attach(mem.region(), 2, 1, 0, VS).unwrap();
    let clock = std::sync::atomic::AtomicU64::new(1);
    std::thread::scope(|s| {
        for w in 0..2 {
            let clock = &clock;
            s.spawn(move || {
                let mut wr = Writer::attach(shared.region(), 2, 1, w, VS).unwrap();
                for i in 0..total {
                    let stamp = clock.fetch_add(1, Ordering::Relaxed);
                    wr.publish(stamp, &value(w, stamp, VS)).unwrap();
                    if i % 1000 == 999 {
                        wr = Writer::attach(shared.region(), 2, 1, w, VS).unwrap();
                    }
                }
            });
        }
        s.spawn(move || {
            let mut rd = Reader::attach(shared.region(), 2, 1, 0, VS).unwrap();
            let mut buf = [0u8; VS];
            let mut seen = [(0u64, 0u64); 2];
            let mut got = 0u64;
            let check = |s: Sample, buf: &[u8; VS], seen: &mut [(u64, u64); 2]| {
                assert_eq!(&buf[..], &value(s.writer, s.stamp, VS)[..], "torn value");
                let (seq, stamp) = seen[s.writer];
                assert!(s.seq >= seq && s.stamp >= stamp, "went backwards");
                assert!(s.seq % 2 == 0);
                seen[s.writer] = (s.seq, s.stamp);
            };
            for i in 0..reads {
                let r = if i % 3 == 2 {
                    rd.read_writer((i % 2) as usize, &mut buf)
                } else {
                    rd.read_latest(&mut buf)
                };
                match r {
                    Ok(Some(s)) => {
                        check(s, &buf, &mut seen);
                        got += 1;
                    }
                    Ok(None) | Err(Error::Contended(_)) => std::thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
                let _ = rd.changed();
            }
            assert!(got > 0);
            assert!(rd.broken_writers().is_empty());
        });
    });
    // Afterwards, the newest value is the highest stamp of all.
    let mut rd = Reader::attach(mem.region(), 2, 1, 0, VS).unwrap();
    let mut buf = [0u8; VS];
    let s = rd.read_latest(&mut buf).unwrap().unwrap();
    assert_eq!(s.stamp, clock.load(Ordering::SeqCst) - 1);
    assert_eq!(&buf[..], &value(s.writer, s.stamp, VS)[..]);
}

#[test]
fn field_table_is_built_from_the_constants_the_code_uses() {
    // PARAMS is the whole parameter line; only its three words are hashed.
    crate::fieldcheck::check(
        include_str!("../latest.rs"),
        "pub const FIELDS",
        &["PARAMS"],
    );
    crate::fieldcheck::hash_covers(FIELDS, LAYOUT_HASH);
}
