//! `latest` with one hostile writer and hostile readers. Three writers, two readers; the
//! first input byte picks the hostile writer, which scribbles on its own slot (sequence
//! word, stamp, value, state, epoch: aligned words or arbitrary bytes) and publishes with
//! its handle; if it is writer 0 (the initialiser) it also scribbles on the header and
//! parameter line. Hostile readers scribble on the reader lines (flags, state, epoch). The
//! other two writers publish correctly, restart, and sometimes "die" mid-publish (odd
//! sequence word and half a value written by hand, then restart). Reader 0 is correct:
//! read_latest / read_writer / changed / prepare_wait / restart.
//!
//! After every step: no panic; only allowed errors; honest writers' publishes never fail
//! and notify only existing readers, always including reader 0 while it waits;
//! `read_writer` of an honest writer returns exactly its last complete publish (or
//! `Contended` while it is dead mid-publish); `read_latest` returns the newest honest
//! publish unless the hostile slot's current, consistent content ranks above it, reports
//! exactly the dead honest writers as contended, and never blames an honest writer;
//! broken is sticky.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::Region;
use staticbus_proto::latest::{
    Error, Params, Reader, Sample, Writer, WriterSet, SLOT_SEQ, SLOT_STAMP, SLOT_VALUE,
};
use std::sync::atomic::Ordering;

const W: usize = 3;
const N: usize = 2;
const VS: usize = 20;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const K: usize>(&mut self) -> [u8; K] {
        let mut b = [0u8; K];
        let n = K.min(self.0.len());
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

/// An honest writer's slot as it must be: the sequence word and the last complete publish.
#[derive(Clone, Default)]
struct Honest {
    seq: u64,
    latest: Option<(u64, [u8; VS])>,
}

impl Honest {
    fn dead(&self) -> bool {
        self.seq & 1 == 1 && self.seq > 1
    }
}

fn value(c: u64) -> [u8; VS] {
    let mut v = [0u8; VS];
    for (i, b) in v.iter_mut().enumerate() {
        *b = (c.rotate_left(i as u32 * 7) as u8) ^ (i as u8);
    }
    v
}

fn load64(r: &Region, off: usize) -> u64 {
    u64::from_le(r.atomic::<u64>(off).unwrap().load(Ordering::SeqCst))
}

fn store64(r: &Region, off: usize, v: u64) {
    r.atomic::<u64>(off)
        .unwrap()
        .store(v.to_le(), Ordering::SeqCst);
}

fn ranks_above(stamp: u64, w: usize, other_stamp: u64, other: usize) -> bool {
    stamp > other_stamp || (stamp == other_stamp && w < other)
}

fuzz_target!(|data: &[u8]| {
    let p = Params::new(W, N, VS).unwrap();
    let len = p.region_size();
    let mut mem = vec![Line([0; 8]); len / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of `len` bytes, 64-aligned; it outlives every
    // use of `r` (dropped at the end of this closure after the handles), and it is only
    // accessed through `Region`s from here on (no references into it are formed).
    let r = unsafe { Region::new(base, len) }.expect("non-null");
    let mut input = Input(data);
    let hostile = input.u8() as usize % W;
    let hslot = p.writer_slot(hostile);
    // `None`: the writer died and could not re-attach yet (hostile header).
    let mut ws: Vec<Option<Writer>> = (0..W)
        .map(|i| Some(Writer::attach(r, W, N, i, VS).expect("fresh region")))
        .collect();
    let mut rd = Reader::attach(r, W, N, 0, VS).expect("initialised");
    let mut honest: Vec<Honest> = vec![Honest::default(); W];
    let mut header_dirty = false;
    let mut waiting = false;
    let mut buf = [0u8; VS];
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let was_broken = rd.broken_writers();
        let mut reattached = false;
        match input.u8() % 16 {
            // ---- the hostile writer ----
            0 => {
                let off = (input.u8() as usize % (p.slot_stride() / 8)) * 8;
                store64(&r, hslot + off, input.u64());
            }
            1 => {
                let what = input.u64();
                let v = if input.u8() & 1 == 0 {
                    what & 0xff
                } else {
                    what
                };
                store64(&r, hslot + SLOT_SEQ, v);
            }
            2 => {
                let off = input.u8() as usize % p.slot_stride();
                let bytes: [u8; 16] = input.bytes();
                let n = (p.slot_stride() - off).min(16);
                r.write_bytes(hslot + off, &bytes[..n]).unwrap();
            }
            3 => {
                let stamp = input.u64();
                if let Some(h) = &mut ws[hostile] {
                    let _ = h.publish(stamp, &value(stamp));
                }
            }
            4 if hostile == 0 => {
                // The initialiser also owns the header and the parameter line.
                header_dirty = true;
                let off = input.u8() as usize % 0xc0;
                let bytes: [u8; 8] = input.bytes();
                r.write_bytes(off, &bytes[..(0xc0 - off).min(8)]).unwrap();
            }
            // ---- hostile readers ----
            4 | 5 => {
                let target = input.u8() as usize % N;
                if target == 0 {
                    // Reader 0's flag may be gone: no longer sure it gets notified.
                    waiting = false;
                }
                let line = p.reader_line(target);
                let off = input.u8() as usize % 64;
                let bytes: [u8; 8] = input.bytes();
                r.write_bytes(line + off, &bytes[..(64 - off).min(8)])
                    .unwrap();
            }
            // ---- honest writers ----
            6..=8 => {
                let w = input.u8() as usize % W;
                if let (true, Some(wr)) = (w != hostile, &mut ws[w]) {
                    let stamp = input.u16() as u64;
                    let v = value(stamp ^ ((w as u64) << 32));
                    let wk = wr.publish(stamp, &v).expect("honest publish");
                    assert_eq!(wk.0 & !((1 << N) - 1), 0, "only existing readers");
                    if waiting {
                        assert!(wk.contains(0), "reader 0 waits: {wk:?}");
                    }
                    let h = &mut honest[w];
                    h.seq = h.seq + (h.seq & 1) + 2;
                    h.latest = Some((stamp, v));
                    assert_eq!(wr.seq(), h.seq);
                }
            }
            9 => {
                // An honest writer dies mid-publish and restarts.
                let w = input.u8() as usize % W;
                if w != hostile {
                    let slot = p.writer_slot(w);
                    let h = &mut honest[w];
                    h.seq = h.seq + (h.seq & 1) + 1;
                    store64(&r, slot + SLOT_SEQ, h.seq);
                    let junk: [u8; 8] = input.bytes();
                    r.write_bytes(slot + SLOT_VALUE, &junk).unwrap();
                    store64(&r, slot + SLOT_STAMP, u64::MAX);
                    ws[w] = match Writer::attach(r, W, N, w, VS) {
                        Ok(nw) => Some(nw),
                        Err(e) => {
                            assert!(header_dirty, "honest restart: {e:?}");
                            None
                        }
                    };
                }
            }
            10 => {
                let w = input.u8() as usize % W;
                if w != hostile {
                    match Writer::attach(r, W, N, w, VS) {
                        Ok(nw) => ws[w] = Some(nw),
                        Err(e) => assert!(header_dirty, "honest restart: {e:?}"),
                    }
                }
            }
            // ---- the correct reader ----
            11 | 12 => {
                waiting = false;
                let res = rd.read_latest(&mut buf);
                check_latest(&r, &p, &rd, hostile, &honest, res, &buf);
            }
            13 => {
                waiting = false;
                let w = input.u8() as usize % W;
                let res = rd.read_writer(w, &mut buf);
                if w == hostile {
                    match res {
                        Ok(_) | Err(Error::Contended(_)) => {}
                        Err(Error::WriterBroken { writer, .. }) => assert_eq!(writer, hostile),
                        Err(e) => panic!("read_writer(hostile): {e:?}"),
                    }
                } else {
                    let h = &honest[w];
                    match (res, &h.latest) {
                        (Err(Error::Contended(c)), _) if h.dead() => {
                            assert_eq!(c, WriterSet(1 << w))
                        }
                        (Ok(None), _) if h.seq <= 1 => {}
                        (Ok(Some(s)), Some((stamp, v))) if !h.dead() => {
                            assert_eq!((s.writer, s.stamp, s.seq), (w, *stamp, h.seq));
                            assert_eq!(&buf, v);
                        }
                        (res, _) => panic!("read_writer({w}) = {res:?}, seq {}", h.seq),
                    }
                }
            }
            14 => {
                if input.u8() & 1 == 0 {
                    let _ = rd.changed();
                } else {
                    waiting = rd.prepare_wait();
                }
            }
            _ => match Reader::attach(r, W, N, 0, VS) {
                Ok(nr) => {
                    rd = nr;
                    reattached = true;
                    waiting = false;
                }
                Err(e) => assert!(header_dirty, "reader restart: {e:?}"),
            },
        }
        let broken = rd.broken_writers();
        assert_eq!(broken.0 & !(1 << hostile), 0, "honest writer blamed");
        if !reattached {
            assert_eq!(broken.0 & was_broken.0, was_broken.0, "broken is sticky");
        }
    }
    drop(ws);
    drop(mem);
});

fn check_latest(
    r: &Region,
    p: &Params,
    rd: &Reader,
    hostile: usize,
    honest: &[Honest],
    res: Result<Option<Sample>, Error>,
    buf: &[u8; VS],
) {
    // The newest live honest publish, and the dead honest writers (seq odd, > 1).
    let mut best: Option<(usize, u64)> = None;
    let mut dead = 0u64;
    for (w, h) in honest.iter().enumerate() {
        if w == hostile {
            continue;
        }
        if h.dead() {
            dead |= 1 << w;
            continue;
        }
        if let (Some((stamp, _)), true) = (&h.latest, h.seq & 1 == 0) {
            if best.is_none_or(|(bw, bs)| ranks_above(*stamp, w, bs, bw)) {
                best = Some((w, *stamp));
            }
        }
    }
    let hslot = p.writer_slot(hostile);
    let (hseq, hstamp) = (load64(r, hslot + SLOT_SEQ), load64(r, hslot + SLOT_STAMP));
    let honest_mask = !(1u64 << hostile);
    match res {
        Ok(Some(s)) if s.writer != hostile => {
            assert_eq!(
                Some((s.writer, s.stamp)),
                best,
                "not the newest honest value"
            );
            let (_, v) = honest[s.writer].latest.as_ref().unwrap();
            assert_eq!(s.seq, honest[s.writer].seq);
            assert_eq!(buf, v);
            assert_eq!(s.contended.0 & honest_mask, dead);
            let hostile_could_win = !s.contended.contains(hostile)
                && rd.broken(hostile).is_none()
                && hseq > 1
                && hseq & 1 == 0
                && ranks_above(hstamp, hostile, s.stamp, s.writer);
            assert!(
                !hostile_could_win,
                "hostile seq {hseq} stamp {hstamp} ranks first"
            );
        }
        Ok(Some(s)) => {
            // Exactly the hostile slot's current content (nothing runs concurrently).
            assert_eq!((s.seq, s.stamp), (hseq, hstamp));
            assert!(s.seq & 1 == 0 && s.seq > 1);
            let mut raw = [0u8; VS];
            r.read_bytes(hslot + SLOT_VALUE, &mut raw).unwrap();
            assert_eq!(&raw, buf);
            assert_eq!(s.contended.0 & honest_mask, dead);
            if let Some((bw, bs)) = best {
                assert!(ranks_above(s.stamp, hostile, bs, bw));
            }
        }
        Ok(None) => assert!(best.is_none() && dead == 0),
        Err(Error::Contended(c)) => {
            assert!(best.is_none());
            assert_eq!(c.0 & honest_mask, dead);
            assert!(!c.is_empty());
        }
        Err(e) => panic!("read_latest: {e:?}"),
    }
}
