//! The log against a hostile *reader* (docs/protocols.md §4.7). Reader 1 is hostile: it
//! writes anything into its own line (state, flags, epoch, cursor, reserved) or, now and
//! then, anywhere in the region; a correct writer appends, restarts and dies mid-record, and
//! reader 0 reads, waits and restarts correctly. After every step: no panic; the writer's
//! appends never fail (but for a too-large payload, or an exhausted log a restart found
//! after a write elsewhere) and advance its head by one; while the
//! hostile reader has kept to its own line, every writer restart attaches and continues, the
//! writer notifies reader 0 exactly when it waits, and reader 0 gets exactly the records and
//! loss counts a model of the ring predicts; after it wrote elsewhere, only the allowed
//! typed errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::Region;
use staticbus_proto::log::{
    data_offset, reader_line, stamp_busy, Error, Reader, Start, Writer, SLOT_LEN, SLOT_STAMP,
};
use std::sync::atomic::Ordering;

const READERS: usize = 2;
const HONEST: usize = 0;
const HOSTILE: usize = 1;
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
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
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

/// Another domain's store of any width, over fields of any width.
fn scribble(r: &Region, off: usize, bytes: &[u8]) {
    r.write_bytes(off, bytes).unwrap();
}

fuzz_target!(|data: &[u8]| {
    let mut mem = vec![Line([0; 8]); LEN / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of LEN bytes, 64-aligned; it outlives every
    // use of `r` (dropped at the end of this closure after the handles), and it is only
    // accessed through `Region`s from here on (no references into it are formed).
    let r = unsafe { Region::new(base, LEN) }.expect("non-null");
    let mut writer = Writer::attach(r, READERS, SLOT).expect("fresh region");
    let mut reader = Reader::attach(r, READERS, HONEST, Start::Resume).expect("initialised");
    let max = reader.max_record();
    // The hostile reader has written only its own line so far.
    let mut clean = true;
    let mut records: Vec<Vec<u8>> = Vec::new();
    let (mut avail, mut cursor, mut saved, mut waiting) = (0u64, 0u64, 0u64, false);
    let mut from = 0u64;
    let mut input = Input(data);
    let mut buf = vec![0u8; SLOT];
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let was_broken = reader.broken();
        let mut reattached = false;
        match input.u8() % 12 {
            0 | 1 => {
                // Any 4-byte word of its own line.
                let off = reader_line(HOSTILE) + 4 * (input.u8() as usize % 16);
                scribble(&r, off, &input.u32().to_le_bytes());
            }
            2 => {
                // It attaches for real (a correct reader's writes to its line).
                let _ = Reader::attach(r, READERS, HOSTILE, start(input.u8()));
            }
            3 => {
                // Anywhere.
                clean = false;
                let off = (input.u32() as usize % (LEN / 8)) * 8;
                scribble(&r, off, &input.u64().to_le_bytes());
            }
            4 | 5 | 6 => {
                let len = input.u8() as usize % (max + 4);
                let n = writer.head();
                let mut p = vec![n as u8 ^ 0x5a; len];
                for (d, s) in p.iter_mut().zip(n.to_le_bytes()) {
                    *d = s;
                }
                match writer.append(&p) {
                    Ok(wake) => {
                        assert_eq!(writer.head(), n + 1);
                        if clean {
                            assert_eq!(wake.contains(HONEST), waiting);
                            records.push(p);
                            avail = avail.max((n + 1).saturating_sub(SLOTS));
                        }
                    }
                    Err(Error::TooLarge { .. }) => assert!(len > max),
                    // A head of 2^62 found at a restart (written by the hostile reader).
                    Err(Error::Exhausted) => assert!(!clean),
                    Err(e) => panic!("append: {e:?}"),
                }
            }
            7 | 8 => {
                let size = input.u8() as usize % (SLOT + 1);
                let res = reader.read(&mut buf[..size]);
                waiting = false;
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
                    if cursor == records.len() as u64 {
                        assert_eq!(res, Ok(None));
                    } else {
                        let seq = cursor.max(avail);
                        let want = &records[seq as usize];
                        if want.len() > size {
                            assert_eq!(res, Err(Error::BufferTooSmall { len: want.len() }));
                        } else {
                            let g = res.expect("clean read").expect("a record");
                            assert_eq!((g.seq, g.missed), (seq, seq - cursor));
                            assert_eq!(&buf[..g.len], &want[..]);
                            cursor = seq + 1;
                            saved = cursor;
                        }
                    }
                }
            }
            9 => match reader.prepare_wait() {
                Ok(block) => {
                    assert!(!clean || block == (cursor == records.len() as u64));
                    waiting = block;
                }
                Err(e) => assert!(matches!(e, Error::PeerBroken(_)), "prepare_wait: {e:?}"),
            },
            10 => {
                // The writer dies half-way through its next record, or between records,
                // then restarts.
                if input.u8() & 1 == 0 {
                    let h = writer.head();
                    put64(&r, slot(h) + SLOT_STAMP, stamp_busy(h));
                    put64(&r, slot(h) + SLOT_LEN, input.u8() as u64 % (max as u64 + 1));
                    if clean {
                        avail = avail.max((h + 1).saturating_sub(SLOTS));
                    }
                }
                match Writer::attach(r, READERS, SLOT) {
                    Ok(w) => writer = w,
                    Err(e) => {
                        assert!(!clean, "a corrupt reader line stopped a writer restart: {e:?}");
                        assert!(matches!(
                            e,
                            Error::Header(_)
                                | Error::SlotSizeMismatch { .. }
                                | Error::ReadersMismatch { .. }
                        ));
                    }
                }
                if clean {
                    assert_eq!(writer.head(), records.len() as u64);
                }
            }
            _ => {
                let st = start(input.u8());
                match Reader::attach(r, READERS, HONEST, st) {
                    Ok(nr) => {
                        from = nr.position();
                        if clean {
                            let head = records.len() as u64;
                            cursor = match st {
                                Start::Resume => saved,
                                Start::Oldest => head.saturating_sub(SLOTS),
                                Start::Latest => head,
                            };
                            saved = cursor;
                            assert_eq!(from, cursor);
                        }
                        waiting = false;
                        reader = nr;
                        reattached = true;
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_) | Error::ReadersMismatch { .. }) => {
                        assert!(!clean, "a corrupt reader line stopped another reader's restart");
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
