//! The blob protocol against hostile peers. The input drives a sequence of steps: a
//! hostile writer's arbitrary writes to `current`, the bank headers and payloads and the
//! common header; hostile readers' scribbles on the reader lines; and the correct writer's
//! publishes, restarts and mid-update deaths, interleaved with three correct readers'
//! read / version / changed_since / prepare_wait / restart.
//!
//! Checked after every step: no panic; only `Ok` or the allowed errors; `PeerBroken`
//! sticky; a reader never returns a version below one it returned before, nor more than
//! the capacity; every blob read is exactly what memory holds (current, the bank's stamp,
//! length, checksum and payload agree with it). While the writer is honest (no hostile
//! write to writer-owned bytes yet): every read returns exactly the latest published blob
//! and version, `version`, `changed_since` and `prepare_wait` agree with the model, no
//! reader breaks and every re-attach succeeds. While no reader line was scribbled on:
//! the writer's wake-ups are exactly the readers waiting. The correct writer never fails
//! because of anything a reader did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::Region;
use staticbus_proto::blob::{
    bank_size, checksum, data_offset, reader_line, Error, Reader, Writer, BANK_CRC, BANK_LEN,
    BANK_PAYLOAD, BANK_STAMP, BUSY, OFF_CURRENT,
};
use std::sync::atomic::Ordering;

const READERS: usize = 3;
const CAP: usize = 256;
const DATA: usize = 0xc0 + 64 * READERS;
const BANK: usize = BANK_PAYLOAD + CAP;
const LEN: usize = DATA + 2 * BANK;

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

fn blob(n: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (n as u8) ^ (i as u8).wrapping_mul(7))
        .collect()
}

fn bank_of(v: u64) -> usize {
    DATA + (v & 1) as usize * BANK
}

/// What a reader returned must be what memory says (single-threaded: nothing moved).
fn check_against_memory(r: &Region, version: u64, got: &[u8]) {
    let cur = r.atomic::<u64>(OFF_CURRENT).unwrap().load(Ordering::SeqCst);
    assert_eq!(
        u64::from_le(cur),
        version,
        "read a version that is not current"
    );
    let bank = bank_of(version);
    let stamp = u64::from_le(
        r.atomic::<u64>(bank + BANK_STAMP)
            .unwrap()
            .load(Ordering::SeqCst),
    );
    let len = u32::from_le(
        r.atomic::<u32>(bank + BANK_LEN)
            .unwrap()
            .load(Ordering::SeqCst),
    );
    let crc = u32::from_le(
        r.atomic::<u32>(bank + BANK_CRC)
            .unwrap()
            .load(Ordering::SeqCst),
    );
    assert_eq!(stamp, version);
    assert_eq!(len as usize, got.len());
    assert_eq!(Some(crc), checksum(version, got));
    let mut mem = vec![0u8; got.len()];
    r.read_bytes(bank + BANK_PAYLOAD, &mut mem).unwrap();
    assert_eq!(mem, got);
}

struct Model {
    /// No hostile write to writer-owned bytes so far.
    clean: bool,
    /// No scribble on reader lines so far.
    lines_clean: bool,
    latest: Option<(u64, Vec<u8>)>,
    /// Per reader: highest version returned or seen by the current handle.
    newest: [u64; READERS],
    /// Per reader: the flag is set (prepare_wait said block, reader has not run since).
    waiting: [bool; READERS],
}

impl Model {
    fn latest_version(&self) -> u64 {
        self.latest.as_ref().map_or(0, |l| l.0)
    }
}

/// The correct writer (re-)attaches. If a hostile write zeroed the magic, it initialises
/// the region afresh, which also clears every reader line (and so their wait flags).
fn writer_attach(r: &Region, m: &mut Model) -> Result<Writer, Error> {
    let magic = r.atomic::<u64>(0).unwrap().load(Ordering::SeqCst);
    let w = Writer::attach(*r, READERS)?;
    if magic == 0 {
        assert!(!m.clean);
        m.waiting = [false; READERS];
    }
    Ok(w)
}

fuzz_target!(|data: &[u8]| {
    assert_eq!(bank_size(LEN, READERS), Some(BANK));
    assert_eq!(data_offset(READERS), DATA);
    let mut mem = vec![Line([0; 8]); LEN / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of LEN bytes, 64-aligned; it outlives every
    // use of `r` (dropped at the end of this closure after the handles), and it is only
    // accessed through `Region`s from here on (no references into it are formed).
    let r = unsafe { Region::new(base, LEN) }.expect("non-null");
    let mut writer = Writer::attach(r, READERS).expect("fresh region");
    assert_eq!(writer.capacity(), CAP);
    let mut readers: Vec<Reader> = (0..READERS)
        .map(|i| Reader::attach(r, READERS, i).expect("initialised"))
        .collect();
    let mut m = Model {
        clean: true,
        lines_clean: true,
        latest: None,
        newest: [0; READERS],
        waiting: [false; READERS],
    };
    let mut input = Input(data);
    let mut n = 0u64;
    let mut buf = vec![0u8; CAP];
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let was: Vec<_> = readers.iter().map(|x| x.broken()).collect();
        let mut replaced = None;
        let op = input.u8();
        let i = (op as usize / 16) % READERS;
        match op % 16 {
            0 => {
                m.clean = false;
                let v = match input.u8() % 4 {
                    0 => input.u64(),
                    1 => BUSY,
                    // Near the real versions: forward, backward, the other bank.
                    _ => m
                        .latest_version()
                        .wrapping_add(input.u8() as u64)
                        .wrapping_sub(8),
                };
                r.atomic::<u64>(OFF_CURRENT)
                    .unwrap()
                    .store(v.to_le(), Ordering::SeqCst);
            }
            1 => {
                m.clean = false;
                let off = DATA + input.u16() as usize % (2 * BANK);
                let bytes: [u8; 16] = input.bytes();
                let k = (input.u8() as usize % 16 + 1).min(LEN - off);
                r.write_bytes(off, &bytes[..k]).unwrap();
            }
            2 => {
                // Forge a stamp (or a length) in a bank header.
                m.clean = false;
                let bank = bank_of(input.u8() as u64);
                if input.u8() & 1 == 0 {
                    let v = m.latest_version().wrapping_add(input.u8() as u64 % 4);
                    r.atomic::<u64>(bank + BANK_STAMP)
                        .unwrap()
                        .store(v.to_le(), Ordering::SeqCst);
                } else {
                    let l = u32::from_le_bytes(input.bytes());
                    r.atomic::<u32>(bank + BANK_LEN)
                        .unwrap()
                        .store(l.to_le(), Ordering::SeqCst);
                }
            }
            3 => {
                m.clean = false;
                let off = (input.u8() as usize % (0xc0 / 8)) * 8;
                let bytes: [u8; 8] = input.bytes();
                r.write_bytes(off, &bytes).unwrap();
            }
            4..=6 => {
                let len = input.u16() as usize % (CAP + 17);
                n += 1;
                let d = blob(n, len);
                match writer.publish(&d) {
                    Ok((v, wake)) => {
                        if m.clean {
                            assert_eq!(v, m.latest_version() + 1);
                        }
                        if m.lines_clean {
                            for j in 0..READERS {
                                assert_eq!(wake.contains(j), m.waiting[j], "wake-up of {j}");
                            }
                        }
                        m.latest = Some((v, d));
                    }
                    Err(Error::TooLarge { .. }) => assert!(len > CAP),
                    Err(Error::VersionsExhausted) => assert!(!m.clean),
                    Err(e) => panic!("publish: {e:?}"),
                }
            }
            7 | 8 => {
                let size = input.u16() as usize % (CAP + 1);
                m.waiting[i] = false;
                match readers[i].read(&mut buf[..size]) {
                    Ok(Some(b)) => {
                        assert!(b.len <= CAP && b.len <= size);
                        assert!(b.version >= m.newest[i], "version went back");
                        m.newest[i] = b.version;
                        check_against_memory(&r, b.version, &buf[..b.len]);
                        if m.clean {
                            let (v, d) = m.latest.as_ref().expect("nothing published");
                            assert_eq!(b.version, *v);
                            assert_eq!(&buf[..b.len], &d[..]);
                        }
                    }
                    Ok(None) => {
                        assert_eq!(m.newest[i], 0);
                        assert!(!m.clean || m.latest.is_none());
                    }
                    Err(Error::BufferTooSmall { len }) => {
                        assert!(len > size && len <= CAP);
                        if m.clean {
                            assert_eq!(Some(len), m.latest.as_ref().map(|l| l.1.len()));
                        }
                    }
                    Err(Error::PeerBroken(b)) => assert!(!m.clean, "honest writer, broken: {b:?}"),
                    Err(e) => panic!("read: {e:?}"),
                }
            }
            9 => {
                m.waiting[i] = false;
                let since = input.u8() as u64;
                let res = if input.u8() & 1 == 0 {
                    readers[i].version().map(|v| {
                        assert!(v >= m.newest[i]);
                        m.newest[i] = v;
                        if m.clean {
                            assert_eq!(v, m.latest_version());
                        }
                    })
                } else {
                    readers[i].changed_since(since).map(|c| {
                        if m.clean {
                            assert_eq!(c, m.latest_version() > since);
                        }
                    })
                };
                match res {
                    Ok(()) => {}
                    Err(Error::PeerBroken(b)) => assert!(!m.clean, "honest writer, broken: {b:?}"),
                    Err(e) => panic!("version: {e:?}"),
                }
            }
            10 => match readers[i].prepare_wait() {
                Ok(block) => {
                    if m.clean {
                        assert_eq!(block, m.latest_version() == readers[i].last_read());
                    }
                    m.waiting[i] = block;
                }
                Err(Error::PeerBroken(_)) => {
                    assert!(!m.clean);
                    m.waiting[i] = false;
                }
                Err(e) => panic!("prepare_wait: {e:?}"),
            },
            11 => {
                // A hostile reader scribbles on a reader line (its own or another's).
                m.lines_clean = false;
                let at = input.u8() as usize % 64;
                let bytes: [u8; 8] = input.bytes();
                // Within the line: past the last one is bank 0, the writer's.
                let k = (input.u8() as usize % 8 + 1).min(64 - at);
                r.write_bytes(reader_line(i) + at, &bytes[..k]).unwrap();
            }
            12 => match writer_attach(&r, &mut m) {
                Ok(w) => {
                    if m.clean {
                        assert_eq!(w.version(), m.latest_version());
                    }
                    writer = w;
                }
                Err(Error::Header(_)) => assert!(!m.clean),
                Err(e) => panic!("writer attach: {e:?}"),
            },
            13 => {
                // The correct writer dies half-way through its next publish, then restarts.
                let v = writer.version().wrapping_add(1);
                let bank = bank_of(v);
                r.atomic::<u64>(bank + BANK_STAMP)
                    .unwrap()
                    .store(BUSY, Ordering::SeqCst);
                let bytes: [u8; 16] = input.bytes();
                r.write_bytes(bank + BANK_PAYLOAD, &bytes).unwrap();
                r.atomic::<u32>(bank + BANK_LEN)
                    .unwrap()
                    .store((input.u8() as u32).to_le(), Ordering::SeqCst);
                match writer_attach(&r, &mut m) {
                    Ok(w) => {
                        if m.clean {
                            assert_eq!(w.version(), m.latest_version());
                        }
                        writer = w;
                    }
                    Err(Error::Header(_)) => assert!(!m.clean),
                    Err(e) => panic!("writer attach: {e:?}"),
                }
            }
            _ => match Reader::attach(r, READERS, i) {
                Ok(x) => {
                    readers[i] = x;
                    m.newest[i] = 0;
                    m.waiting[i] = false;
                    replaced = Some(i);
                }
                Err(Error::Header(_)) => assert!(!m.clean),
                Err(e) => panic!("reader attach: {e:?}"),
            },
        }
        for (j, (x, b)) in readers.iter().zip(was).enumerate() {
            if let (Some(b), false) = (b, replaced == Some(j)) {
                assert_eq!(x.broken(), Some(b), "broken must be sticky");
            }
            if m.clean {
                assert_eq!(x.broken(), None, "honest writer, broken reader {j}");
            }
        }
    }
    drop(writer);
    drop(readers);
    drop(mem);
});
