//! The virtio-msg device side (RAM-disk blk) against a hostile frontend. The input drives
//! steps: arbitrary control-ring slots (any type, id, size, payload) and ring indices, a
//! correct initialisation of queue 0 at pages the input picks, arbitrary descriptors and
//! available entries of that queue, and arbitrary writes anywhere in the region; the
//! device side polls after each. Checked after every step: no panic, every poll
//! terminates, the device never writes the common line, the driver line or the request
//! ring, nor a byte outside the region (guard pages around it), and a broken queue or
//! ring always shows as DEVICE_NEEDS_RESET.
#![no_main]

use libfuzzer_sys::fuzz_target;
use staticbus_guest::{Errno, Events, Region};
use staticbus_virtio_msg::backends::RamBlk;
use staticbus_virtio_msg::device::{status, DeviceTransport};
use staticbus_virtio_msg::layout::{DMA_OFFSET, OFF_GUEST_BASE, PAGE};
use staticbus_virtio_msg::msg::id;
use staticbus_virtio_msg::ring::REQUESTS;
use std::sync::atomic::Ordering::Release;

const GUARD: usize = 4096;
const LEN: usize = 8 * PAGE;
const BASE: u64 = 0x4000_0000;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u64; 8]);

struct Quiet;

impl Events for Quiet {
    fn send(&self, _port: u32) -> Result<(), Errno> {
        Ok(())
    }
    fn wait_any(&self, _ports: &[u32]) -> Result<u32, Errno> {
        Err(Errno::ENOSYS)
    }
    fn try_take_any(&self, _ports: &[u32]) -> Option<u32> {
        None
    }
    fn take_fired(&self) -> Option<u32> {
        None
    }
    fn is_pending(&self, _port: u32) -> bool {
        false
    }
    fn clear_initial(&self, _port: u32) -> bool {
        false
    }
    fn status(&self, _port: u32) -> Result<staticbus_guest::ops::PortStatus, Errno> {
        Err(Errno::ENOSYS)
    }
}

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
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

struct Front {
    r: Region,
    prod: u32,
}

impl Front {
    fn slot(&mut self, bytes: &[u8; 64]) {
        let at = REQUESTS.slots + 64 * (self.prod % 16) as usize;
        self.r.write_bytes(at, bytes).unwrap();
        self.prod = self.prod.wrapping_add(1);
        self.r.store_le::<u32>(REQUESTS.prod, self.prod, Release).unwrap();
    }

    fn send(&mut self, msg_id: u8, payload: &[u8]) {
        let mut s = [0u8; 64];
        s[1] = msg_id;
        s[6] = 8 + payload.len() as u8;
        s[8..8 + payload.len()].copy_from_slice(payload);
        self.slot(&s);
    }

    fn send32(&mut self, msg_id: u8, words: &[u32]) {
        let p: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.send(msg_id, &p);
    }
}

fuzz_target!(|data: &[u8]| {
    let total = LEN + 2 * GUARD;
    let mut mem = vec![Line([0; 8]); total / 64].into_boxed_slice();
    let base = mem.as_mut_ptr().cast::<u8>();
    // SAFETY: `mem` is a live heap allocation of `total` bytes, 64-aligned, that outlives
    // every use of the regions below (dropped at the end of this closure, after them) and
    // is only accessed through `Region`s from here on.
    let all = unsafe { Region::new(base, total) }.expect("non-null");
    all.write_bytes(0, &[0xa5; GUARD]).unwrap();
    all.write_bytes(GUARD + LEN, &[0xa5; GUARD]).unwrap();
    let r = all.sub(GUARD, LEN).unwrap();
    let mut disk = vec![0u8; 16 * 512];
    let mut dev = DeviceTransport::attach(r, Quiet, 0, RamBlk::new(&mut disk, b"f")).unwrap();
    r.store_le::<u64>(OFF_GUEST_BASE, BASE, Release).unwrap();
    let mut front = Front { r, prod: 0 };
    let mut queue: Option<(usize, usize, u16)> = None;
    let mut input = Input(data);
    let mut before = vec![0u8; LEN];
    let mut after = vec![0u8; LEN];
    for _ in 0..2048 {
        if input.0.is_empty() {
            break;
        }
        match input.u8() % 8 {
            0 => {
                let mut s: [u8; 64] = [0; 64];
                s[..48].copy_from_slice(&input.bytes::<48>());
                front.slot(&s);
            }
            1 => {
                let (log, p) = (input.u8() % 9, input.bytes::<3>());
                let page = |i: usize| DMA_OFFSET + (p[i] as usize % 7) * PAGE;
                let (d, a, u) = (page(0), page(1), page(2) + 0x800);
                front.send32(id::SET_DEVICE_STATUS, &[0]);
                front.send32(id::SET_DEVICE_STATUS, &[3]);
                front.send32(id::SET_DRV_FEATURES, &[0, 2, 1 << 9, 1]);
                front.send32(id::SET_DEVICE_STATUS, &[11]);
                let mut v: Vec<u8> = [0u32, 0, 1 << log, 0].iter().flat_map(|w| w.to_le_bytes()).collect();
                for x in [d, a, u] {
                    v.extend_from_slice(&(BASE + x as u64).to_le_bytes());
                }
                front.send(id::SET_VQUEUE, &v);
                front.send32(id::SET_DEVICE_STATUS, &[15]);
                queue = Some((d, a, 1 << log));
            }
            2 => {
                let (i, addr, len, flags, next) = (input.u16(), input.u64(), input.u32(), input.u16(), input.u16());
                if let Some((d, _, size)) = queue {
                    let addr = if flags & 0x100 != 0 { BASE + addr % (LEN as u64 + 64) } else { addr };
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&addr.to_le_bytes());
                    b[8..12].copy_from_slice(&(len % 9000).to_le_bytes());
                    b[12..14].copy_from_slice(&(flags & 7).to_le_bytes());
                    b[14..].copy_from_slice(&(next % 64).to_le_bytes());
                    let _ = r.write_bytes(d + 16 * (i % size) as usize, &b);
                }
            }
            3 => {
                let (slot, head, idx) = (input.u16(), input.u16(), input.u16());
                if let Some((_, a, size)) = queue {
                    let _ = r.write_bytes(a + 4 + 2 * (slot % size) as usize, &(head % 64).to_le_bytes());
                    let _ = r.write_bytes(a + 2, &idx.to_le_bytes());
                }
            }
            4 => {
                let at = input.u16() as usize % LEN;
                let b = input.bytes::<8>();
                let n = b.len().min(LEN - at);
                r.write_bytes(at, &b[..n]).unwrap();
            }
            5 => {
                front.prod = input.u32();
                r.store_le::<u32>(REQUESTS.prod, front.prod, Release).unwrap();
            }
            6 => {
                let (msg_id, w) = (input.u8(), [input.u32(), input.u32(), input.u32()]);
                front.send32(msg_id, &w);
            }
            _ => front.send32(id::EVENT_AVAIL, &[0, 0]),
        }
        r.read_bytes(0, &mut before).unwrap();
        let broken = dev.faults().queue + dev.faults().ring;
        let mut rounds = 0;
        while dev.poll() > 0 {
            rounds += 1;
            assert!(rounds < 64, "poll keeps finding work");
        }
        r.read_bytes(0, &mut after).unwrap();
        assert!(before[..0x40] == after[..0x40], "device wrote the common line");
        assert!(before[0x80..0x500] == after[0x80..0x500], "device wrote the frontend's part");
        if dev.faults().queue + dev.faults().ring > broken {
            assert_ne!(dev.status() & status::DEVICE_NEEDS_RESET, 0);
        }
    }
    let mut g = vec![0u8; GUARD];
    all.read_bytes(0, &mut g).unwrap();
    assert!(g.iter().all(|&b| b == 0xa5), "wrote below the region");
    all.read_bytes(GUARD + LEN, &mut g).unwrap();
    assert!(g.iter().all(|&b| b == 0xa5), "wrote above the region");
    dev.into_backend();
    drop(mem);
});
