//! A log reader against a hostile writer. The input drives a sequence of steps:
//! arbitrary writes to the header, the writer's line (head, slot size, state, epoch) and
//! the ring (stamps, lengths, payload), plausible forgeries (a head a little ahead or
//! behind, stamps for nearby sequence numbers), interleaved with a correct writer's
//! appends, restarts and deaths mid-record, and the correct reader's read / prepare_wait
//! / restart. After every step: no panic, only `Ok` or the allowed errors, returned
//! lengths within the maximum and the buffer, sequence numbers strictly increasing with
//! `seq - missed` = the reader's previous position, `PeerBroken` sticky; and while no
//! hostile write has happened, the reader returns exactly the records and loss counts a
//! model of the ring predicts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::Region;
use staticbus_proto::log::{
    data_offset, stamp_busy, stamp_done, Error, Reader, Start, Writer, OFF_HEAD, OFF_SLOT_SIZE,
    SLOT_LEN, SLOT_PAYLOAD, SLOT_STAMP,
};
use std::sync::atomic::Ordering;

const READERS: usize = 2;
const INDEX: usize = 1;
const RING: usize = 512;
const SLOT: usize = 64;
const SLOTS: u64 = (RING / SLOT) as u64;
const LEN: usize = 0xc0 + READERS * 64 + RING;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        let n = N.min(self.0.len());
        b[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        b
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

fn start(b: u8) -> Start {
    match b % 3 {
        0 => Start::Resume,
        1 => Start::Oldest,
        _ => Start::Latest,
    }
}

fn slot(seq: u64) -> usize {
    data_offset(READERS) + (seq % SLOTS) as usize * SLOT
}

fn put64(r: &Region, off: usize, v: u64) {
    r.atomic::<u64>(off).unwrap().store(v.to_le(), Ordering::SeqCst);
}

fn get64(r: &Region, off: usize) -> u64 {
    u64::from_le(r.atomic::<u64>(off).unwrap().load(Ordering::SeqCst))
}

/// The correct reader's expected view while the ring is only written correctly.
struct Model {
    records: Vec<Vec<u8>>,
    /// Lowest sequence number whose slot still holds it.
    avail: u64,
    cursor: u64,
    saved: u64,
}

fuzz_target!(|data: &[u8]| {
    let mut mem = vec![Line([0; 8]); LEN / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of LEN bytes, 64-aligned; it outlives every
    // use of `r` (dropped at the end of this closure after the handles), and it is only
    // accessed through `Region`s from here on (no references into it are formed).
    let r = unsafe { Region::new(base, LEN) }.expect("non-null");
    let mut writer = Writer::attach(r, READERS, SLOT).expect("fresh region");
    let mut reader = Reader::attach(r, READERS, INDEX, Start::Resume).expect("initialised");
    let max = reader.max_record();
    let mut clean = true;
    let mut m = Model {
        records: Vec::new(),
        avail: 0,
        cursor: 0,
        saved: 0,
    };
    // The reader's position after its last returned record (or its start).
    let mut from = 0u64;
    let mut input = Input(data);
    let mut buf = vec![0u8; SLOT];
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let was_broken = reader.broken();
        let mut reattached = false;
        match input.u8() % 14 {
            0 => {
                clean = false;
                put64(&r, OFF_HEAD, input.u64());
            }
            1 => {
                clean = false;
                let h = get64(&r, OFF_HEAD);
                let d = input.u8() as u64;
                let v = if d & 1 == 0 { h.wrapping_add(d >> 1) } else { h.wrapping_sub(d >> 1) };
                put64(&r, OFF_HEAD, v);
            }
            2 => {
                clean = false;
                let off = data_offset(READERS) + (input.u16() as usize % RING) / 8 * 8;
                put64(&r, off, input.u64());
            }
            3 => {
                clean = false;
                let h = get64(&r, OFF_HEAD);
                let k = input.u8();
                let seq = h.wrapping_add(k as u64 % 24).wrapping_sub(16);
                let s = slot(input.u8() as u64) + SLOT_STAMP;
                put64(&r, s, if k & 0x80 == 0 { stamp_done(seq) } else { stamp_busy(seq) });
            }
            4 => {
                clean = false;
                let s = slot(input.u8() as u64) + SLOT_LEN;
                let v = input.u16() as u64 % 80 | (input.u8() as u64 % 2) << 32;
                put64(&r, s, v);
            }
            5 => {
                clean = false;
                // Header or writer line (8-byte words), then a restart of the reader.
                let off = (input.u8() as usize % (0xc0 / 8)) * 8;
                put64(&r, off, input.u64());
                if input.u8() & 1 == 0 {
                    r.atomic::<u32>(OFF_SLOT_SIZE)
                        .unwrap()
                        .store(1 << (input.u8() % 12), Ordering::SeqCst);
                }
                match Reader::attach(r, READERS, INDEX, start(input.u8())) {
                    Ok(nr) => {
                        from = nr.position();
                        reader = nr;
                        reattached = true;
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_) | Error::ReadersMismatch { .. }) => {}
                    Err(e) => panic!("attach: {e:?}"),
                }
            }
            6 | 7 | 8 => {
                let len = input.u8() as usize % (max + 4);
                let n = m.records.len() as u64;
                let mut p = vec![n as u8; len];
                for (d, s) in p.iter_mut().zip(n.to_le_bytes()) {
                    *d = s;
                }
                match writer.append(&p) {
                    Ok(_) => {
                        if clean {
                            assert_eq!(writer.head(), n + 1);
                            m.records.push(p);
                            m.avail = m.avail.max((n + 1).saturating_sub(SLOTS));
                        }
                    }
                    Err(Error::TooLarge { .. }) => assert!(len > max),
                    Err(e) => panic!("append: {e:?}"),
                }
            }
            9 | 10 => {
                let size = input.u8() as usize % (SLOT + 1);
                let res = reader.read(&mut buf[..size]);
                match res {
                    Ok(Some(g)) => {
                        assert!(g.len <= max && g.len <= size);
                        assert!(g.seq >= from && g.seq - g.missed == from);
                        from = g.seq + 1;
                        assert_eq!(reader.position(), from);
                    }
                    Ok(None) => {}
                    Err(Error::PeerBroken(_) | Error::BufferTooSmall { .. } | Error::Contended) => {}
                    Err(e) => panic!("read: {e:?}"),
                }
                if clean {
                    let head = m.records.len() as u64;
                    if m.cursor == head {
                        assert_eq!(res, Ok(None));
                    } else {
                        let seq = m.cursor.max(m.avail);
                        let want = &m.records[seq as usize];
                        if want.len() > size {
                            assert_eq!(res, Err(Error::BufferTooSmall { len: want.len() }));
                        } else {
                            let g = res.expect("clean read").expect("a record");
                            assert_eq!((g.seq, g.missed), (seq, seq - m.cursor));
                            assert_eq!(&buf[..g.len], &want[..]);
                            m.cursor = seq + 1;
                            m.saved = m.cursor;
                        }
                    }
                }
            }
            11 => match reader.prepare_wait() {
                Ok(block) => assert!(!clean || block == (m.cursor == m.records.len() as u64)),
                Err(e) => assert!(matches!(e, Error::PeerBroken(_)), "prepare_wait: {e:?}"),
            },
            12 => {
                // The writer dies half-way through the next record, then restarts.
                let h = writer.head();
                let s = slot(h);
                put64(&r, s + SLOT_STAMP, stamp_busy(h));
                put64(&r, s + SLOT_LEN, input.u8() as u64 % (max as u64 + 1));
                put64(&r, s + SLOT_PAYLOAD, input.u64());
                if clean {
                    m.avail = m.avail.max((h + 1).saturating_sub(SLOTS));
                }
                match Writer::attach(r, READERS, SLOT) {
                    Ok(w) => writer = w,
                    Err(e) => {
                        assert!(!clean, "clean writer restart: {e:?}");
                        assert!(matches!(
                            e,
                            Error::Header(_)
                                | Error::SlotSizeMismatch { .. }
                                | Error::ReadersMismatch { .. }
                        ));
                    }
                }
                if clean {
                    assert_eq!(writer.head(), m.records.len() as u64);
                }
            }
            _ => {
                let st = start(input.u8());
                match Reader::attach(r, READERS, INDEX, st) {
                    Ok(nr) => {
                        from = nr.position();
                        if clean {
                            let head = m.records.len() as u64;
                            m.cursor = match st {
                                Start::Resume => m.saved,
                                Start::Oldest => head.saturating_sub(SLOTS),
                                Start::Latest => head,
                            };
                            m.saved = m.cursor;
                            assert_eq!(from, m.cursor);
                        }
                        reader = nr;
                        reattached = true;
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_) | Error::ReadersMismatch { .. }) => {
                        assert!(!clean, "clean reader restart failed");
                    }
                    Err(e) => panic!("attach: {e:?}"),
                }
            }
        }
        if let (Some(b), false) = (was_broken, reattached) {
            assert_eq!(reader.broken(), Some(b), "broken must be sticky");
        }
    }
    drop(writer);
    drop(reader);
    drop(mem);
});
