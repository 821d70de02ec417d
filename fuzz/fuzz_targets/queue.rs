//! The queue consumer against a hostile producer. The input drives a sequence of steps:
//! arbitrary writes to the header, the producer's line (head, flags, state, epoch) and
//! the data area (record headers, wrap markers, payload, and headers carrying the right
//! commit stamp for an index near the tail), interleaved with a correct producer's sends,
//! batching changes, flushes and restarts (without flushing first), and the correct
//! consumer's recv / peek / release / prepare_wait / restart. After every step: no panic,
//! only `Ok` or the allowed errors (`PeerBroken`, `BufferTooSmall`, header errors on
//! re-attach), delivered lengths within the maximum, `PeerBroken` sticky; and while no
//! hostile write has happened, the consumer receives exactly the correct producer's
//! messages in order (committed records stay queued across producer restarts, published
//! or not).
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::Region;
use staticbus_proto::queue::{
    stamp, Consumer, Error, Producer, DATA_OFFSET, OFF_HEAD, OFF_PRODUCER_FLAGS, OFF_TAIL, WRAP,
};
use std::collections::VecDeque;

const CAP: usize = 512;
const LEN: usize = DATA_OFFSET + CAP;

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

fn allowed(e: &Error) -> bool {
    matches!(e, Error::PeerBroken(_) | Error::BufferTooSmall { .. })
}

fuzz_target!(|data: &[u8]| {
    let mut mem = vec![Line([0; 8]); LEN / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of LEN bytes, 64-aligned; it outlives every
    // use of `r` (dropped at the end of this closure after the handles), and it is only
    // accessed through `Region`s from here on (no references into it are formed).
    let r = unsafe { Region::new(base, LEN) }.expect("non-null");
    let mut producer = Producer::attach(r).expect("fresh region");
    let mut consumer = Consumer::attach(r).expect("initialised");
    let max = consumer.max_message();
    let mut clean = true;
    let mut sent: VecDeque<Vec<u8>> = VecDeque::new();
    let mut n = 0u8;
    let mut input = Input(data);
    let mut buf = vec![0u8; CAP];
    for _ in 0..4096 {
        if input.0.is_empty() {
            break;
        }
        let was_broken = consumer.broken();
        let mut reattached = false;
        match input.u8() % 13 {
            0 => {
                clean = false;
                r.atomic::<u64>(OFF_HEAD)
                    .unwrap()
                    .store(input.u64(), std::sync::atomic::Ordering::Release);
            }
            1 => {
                clean = false;
                let off = DATA_OFFSET + input.u16() as usize % CAP;
                let bytes: [u8; 16] = input.bytes();
                let end = (off + 16).min(LEN);
                r.write_bytes(off, &bytes[..end - off]).unwrap();
            }
            2 => {
                clean = false;
                let off = input.u16() as usize % DATA_OFFSET;
                let bytes: [u8; 8] = input.bytes();
                r.write_bytes(off, &bytes).unwrap();
                match Consumer::attach(r) {
                    Ok(c) => {
                        consumer = c;
                        reattached = true;
                    }
                    Err(Error::Header(_) | Error::PeerBroken(_)) => {}
                    Err(e) => panic!("attach: {e:?}"),
                }
            }
            3 => {
                let size = input.u16() as usize % (CAP + 1);
                match consumer.recv(&mut buf[..size]) {
                    Ok(Some(got)) => {
                        assert!(got.len <= max && got.len <= size);
                        if clean {
                            let want = sent.pop_front().expect("nothing was sent");
                            assert_eq!(&buf[..got.len], &want[..]);
                        }
                    }
                    Ok(None) => assert!(!clean || sent.is_empty()),
                    Err(e) => assert!(allowed(&e), "recv: {e:?}"),
                }
            }
            4 => {
                let release = input.u8() & 1 == 1;
                match consumer.peek() {
                    Ok(Some(m)) => {
                        assert!(m.len() <= max);
                        let mut b = vec![0u8; m.len()];
                        m.read(0, &mut b).unwrap();
                        if clean {
                            assert_eq!(sent.front(), Some(&b));
                        }
                        if release {
                            if let Err(e) = m.release() {
                                assert!(allowed(&e), "release: {e:?}");
                            }
                            if clean {
                                sent.pop_front();
                            }
                        }
                    }
                    Ok(None) => assert!(!clean || sent.is_empty()),
                    Err(e) => assert!(allowed(&e), "peek: {e:?}"),
                }
            }
            5 => {
                if let Err(e) = consumer.prepare_wait() {
                    assert!(allowed(&e), "prepare_wait: {e:?}");
                }
            }
            6 | 7 => {
                let len = input.u16() as usize % (max + 1);
                n = n.wrapping_add(1);
                let m = vec![n; len];
                if producer.send(&m).is_ok() && clean {
                    sent.push_back(m);
                }
            }
            8 => {
                clean = false;
                let off = OFF_PRODUCER_FLAGS - 4 + (input.u8() as usize % 3) * 4;
                r.atomic::<u32>(off).unwrap().store(
                    u32::from_le_bytes(input.bytes()),
                    std::sync::atomic::Ordering::Release,
                );
            }
            10 => {
                // The producer dies (without flushing) and re-attaches.
                if let Ok(p) = Producer::attach(r) {
                    producer = p;
                } else {
                    assert!(!clean, "a clean producer re-attach failed");
                }
            }
            11 => {
                producer.set_batch(u32::from(input.u8() % 8));
                if input.u8() & 1 == 1 {
                    let _ = producer.flush();
                }
            }
            12 => {
                // A header with the right stamp for an index near the (published) tail.
                clean = false;
                let tail = r
                    .atomic::<u64>(OFF_TAIL)
                    .unwrap()
                    .load(std::sync::atomic::Ordering::Acquire);
                // (Header scribbles may have misaligned the tail word itself.)
                let at = (tail & !7).wrapping_add(8 * u64::from(input.u8() % 80));
                let len = match input.u8() % 4 {
                    0 => WRAP,
                    1 => u32::from_le_bytes(input.bytes()),
                    _ => u32::from(input.u16()) % (CAP as u32),
                };
                let word = u64::from(len) | u64::from(stamp(at)) << 32;
                r.atomic::<u64>(DATA_OFFSET + (at as usize & (CAP - 1)))
                    .unwrap()
                    .store(word.to_le(), std::sync::atomic::Ordering::Release);
            }
            _ => match Consumer::attach(r) {
                Ok(c) => {
                    consumer = c;
                    reattached = true;
                }
                Err(Error::Header(_) | Error::PeerBroken(_)) => clean = false,
                Err(e) => panic!("attach: {e:?}"),
            },
        }
        if let (Some(b), false) = (was_broken, reattached) {
            assert_eq!(consumer.broken(), Some(b), "broken must be sticky");
        }
        if producer.broken().is_some() {
            // The consumer line is written only by the correct consumer here, except via
            // header scribbles (step 2): re-attach the producer if possible.
            if let Ok(p) = Producer::attach(r) {
                producer = p;
            }
        }
    }
    drop(producer);
    drop(consumer);
    drop(mem);
});
