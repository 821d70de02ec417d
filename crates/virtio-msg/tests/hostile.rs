//! A hostile frontend against the device side: arbitrary control messages (valid, out of
//! range, malformed), a correct initialisation followed by arbitrary descriptors,
//! available entries and ring indices, and arbitrary writes anywhere in the region. After
//! every step the device side has not panicked, has written nothing outside the region
//! (guard bytes around it), nothing in the parts the frontend owns (driver line, request
//! ring) or in the common line, and a broken queue shows as DEVICE_NEEDS_RESET.

mod common;

use common::*;
use proptest::prelude::*;
use staticbus_guest::fake::Backing;
use staticbus_guest::Region;
use staticbus_virtio_msg::backends::RamBlk;
use staticbus_virtio_msg::device::{status, DeviceTransport, F_VERSION_1};
use staticbus_virtio_msg::layout::{DMA_OFFSET, OFF_DEV_FLAGS, PAGE};
use staticbus_virtio_msg::msg::{id, Msg};
use staticbus_virtio_msg::ring::{Consumer, Producer, REQUESTS, RESPONSES};
use std::sync::atomic::Ordering::Acquire;

const GUARD: usize = 4096;
const LEN: usize = 16 * PAGE;
const PAGES: u64 = ((LEN - DMA_OFFSET) / PAGE) as u64;

#[derive(Clone, Debug)]
enum Op {
    /// A control message with these header fields and payload.
    Msg {
        ty: u8,
        msg_id: u8,
        size: u16,
        payload: Vec<u8>,
    },
    /// A correct initialisation with queue 0 of `1 << log` entries at these pages.
    Init { log: u8, pages: [u64; 3], skew: u8 },
    /// A descriptor of the last queue set up.
    Desc {
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    },
    /// An available entry (and the available index).
    Avail { slot: u16, head: u16, idx: u16 },
    /// Bytes anywhere in the region.
    Poke { at: usize, bytes: Vec<u8> },
    /// An EVENT_AVAIL.
    Kick,
}

fn op() -> impl Strategy<Value = Op> {
    let ids = prop_oneof![
        Just(id::DEVICE_INFO),
        0x02u8..0x0d,
        Just(id::EVENT_AVAIL),
        any::<u8>()
    ];
    let addr = prop_oneof![
        (0..LEN as u64 + 64).prop_map(|o| GUEST_BASE + o),
        any::<u64>(),
        (0..PAGES).prop_map(|p| GUEST_BASE + DMA_OFFSET as u64 + p * PAGE as u64),
    ];
    prop_oneof![
        3 => (prop_oneof![Just(0u8), any::<u8>()], ids, prop_oneof![8u16..=48, any::<u16>()],
            proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(ty, msg_id, size, payload)| Op::Msg { ty, msg_id, size, payload }),
        1 => (0u8..9, [0..PAGES, 0..PAGES, 0..PAGES], any::<u8>())
            .prop_map(|(log, pages, skew)| Op::Init { log, pages, skew }),
        4 => (0u16..40, addr, prop_oneof![0u32..5000, any::<u32>()], 0u16..8, 0u16..40)
            .prop_map(|(i, addr, len, flags, next)| Op::Desc { i, addr, len, flags, next }),
        3 => (0u16..300, 0u16..40, any::<u16>()).prop_map(|(slot, head, idx)| Op::Avail { slot, head, idx }),
        1 => (0..LEN, proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Op::Poke { at, bytes }),
        2 => Just(Op::Kick),
    ]
}

struct Hostile {
    r: Region,
    req: Producer,
    resp: Consumer,
    queue: Option<(u64, u64, u16)>,
    avail: u16,
}

impl Hostile {
    fn raw(&mut self, ty: u8, msg_id: u8, size: u16, payload: &[u8]) {
        let mut slot = [0u8; 64];
        slot[0] = ty;
        slot[1] = msg_id;
        slot[6..8].copy_from_slice(&size.to_le_bytes());
        let n = payload.len().min(40);
        slot[8..8 + n].copy_from_slice(&payload[..n]);
        let i = self.req.index();
        let at = REQUESTS.slots + 64 * (i % 16) as usize;
        self.r.write_bytes(at, &slot).unwrap();
        // Through the producer only to move its index (a full ring: overwrite, as a
        // hostile frontend may).
        let m = Msg::parse(slot[..48].try_into().unwrap());
        if let Ok(m) = m {
            if !self.req.push(&self.r, &m).unwrap_or(false) {
                self.req = Producer::new(REQUESTS, i.wrapping_add(1));
                self.r.store_le::<u32>(
                    REQUESTS.prod,
                    i.wrapping_add(1),
                    std::sync::atomic::Ordering::Release,
                );
            }
        } else {
            self.req = Producer::new(REQUESTS, i.wrapping_add(1));
            self.r.store_le::<u32>(
                REQUESTS.prod,
                i.wrapping_add(1),
                std::sync::atomic::Ordering::Release,
            );
        }
    }

    fn send(&mut self, msg_id: u8, payload: &[u8]) {
        self.raw(0, msg_id, 8 + payload.len().min(40) as u16, payload);
    }

    fn drain(&mut self) {
        while let Ok(Some(_)) = self.resp.pop(&self.r) {}
    }
}

fn le32s(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn run(ops: &[Op]) -> (staticbus_virtio_msg::device::Faults, u8) {
    let mem = Backing::new(LEN + 2 * GUARD);
    let all = mem.region(LEN + 2 * GUARD);
    all.write_bytes(0, &[0xa5; GUARD]).unwrap();
    all.write_bytes(GUARD + LEN, &[0xa5; GUARD]).unwrap();
    let r = all.sub(GUARD, LEN).unwrap();
    let mut disk = vec![0u8; 64 * 512];
    let mut dev = DeviceTransport::attach(r, Quiet, BE_PORT, RamBlk::new(&mut disk, b"h")).unwrap();
    r.store_le::<u64>(0x98, GUEST_BASE, std::sync::atomic::Ordering::Release);
    let mut h = Hostile {
        r,
        req: Producer::resume(REQUESTS, &r).unwrap(),
        resp: Consumer::resume(RESPONSES, &r).unwrap(),
        queue: None,
        avail: 0,
    };
    for op in ops {
        match op {
            Op::Msg {
                ty,
                msg_id,
                size,
                payload,
            } => h.raw(*ty, *msg_id, *size, payload),
            Op::Init { log, pages, skew } => {
                let size = 1u32 << log;
                let gpa = |p: u64, o: u64| GUEST_BASE + DMA_OFFSET as u64 + p * PAGE as u64 + o;
                let skew = if skew % 4 == 0 {
                    (*skew as u64) % 16
                } else {
                    0
                };
                h.send(id::SET_DEVICE_STATUS, &le32s(&[0]));
                h.send(id::SET_DEVICE_STATUS, &le32s(&[3]));
                let f = F_VERSION_1 | (1 << 9);
                h.send(
                    id::SET_DRV_FEATURES,
                    &le32s(&[0, 2, f as u32, (f >> 32) as u32]),
                );
                h.send(id::SET_DEVICE_STATUS, &le32s(&[11]));
                let (d, a, u) = (gpa(pages[0], skew), gpa(pages[1], 0), gpa(pages[2], 0x800));
                let mut v = le32s(&[0, 0, size, 0]);
                for x in [d, a, u] {
                    v.extend_from_slice(&x.to_le_bytes());
                }
                h.send(id::SET_VQUEUE, &v);
                h.send(id::SET_DEVICE_STATUS, &le32s(&[15]));
                h.queue = Some((d - GUEST_BASE, a - GUEST_BASE, size as u16));
                h.avail = 0;
            }
            Op::Desc {
                i,
                addr,
                len,
                flags,
                next,
            } => {
                if let Some((d, _, size)) = h.queue {
                    let at = d as usize + 16 * (*i % size.max(1)) as usize;
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&addr.to_le_bytes());
                    b[8..12].copy_from_slice(&len.to_le_bytes());
                    b[12..14].copy_from_slice(&flags.to_le_bytes());
                    b[14..].copy_from_slice(&next.to_le_bytes());
                    let _ = r.write_bytes(at, &b);
                }
            }
            Op::Avail { slot, head, idx } => {
                if let Some((_, a, size)) = h.queue {
                    let a = a as usize;
                    let _ = r.write_bytes(a + 4 + 2 * (*slot % size) as usize, &head.to_le_bytes());
                    // Mostly one more entry, sometimes anything.
                    h.avail = if idx % 4 == 0 {
                        *idx
                    } else {
                        h.avail.wrapping_add(1)
                    };
                    let _ = r.write_bytes(a + 2, &h.avail.to_le_bytes());
                }
            }
            Op::Poke { at, bytes } => {
                let n = bytes.len().min(LEN - at);
                r.write_bytes(*at, &bytes[..n]).unwrap();
            }
            Op::Kick => h.send(id::EVENT_AVAIL, &le32s(&[0, 0])),
        }
        // The parts the device must never write: the common line, the driver line and the
        // request ring (0x80..0x500).
        let mut before = vec![0u8; 0x500];
        r.read_bytes(0, &mut before).unwrap();
        let queue_faults = dev.faults().queue + dev.faults().ring;
        let mut rounds = 0;
        while dev.poll() > 0 {
            rounds += 1;
            assert!(rounds < 100, "poll keeps finding work");
        }
        let mut after = vec![0u8; 0x500];
        r.read_bytes(0, &mut after).unwrap();
        for range in [0..0x40, 0x80..0x500] {
            assert!(
                before[range.clone()] == after[range.clone()],
                "device wrote {range:x?}"
            );
        }
        if dev.faults().queue + dev.faults().ring > queue_faults {
            assert_ne!(dev.status() & status::DEVICE_NEEDS_RESET, 0);
            assert_eq!(r.load_le::<u32>(OFF_DEV_FLAGS, Acquire), Some(1));
        }
        h.drain();
    }
    let mut g = vec![0u8; GUARD];
    all.read_bytes(0, &mut g).unwrap();
    assert!(g.iter().all(|&b| b == 0xa5), "wrote below the region");
    all.read_bytes(GUARD + LEN, &mut g).unwrap();
    assert!(g.iter().all(|&b| b == 0xa5), "wrote above the region");
    let out = (dev.faults(), dev.status());
    dev.into_backend();
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 2 } else { 400 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_hostile_frontend_cannot_break_the_device_side(ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 8 } else { 80 })) {
        run(&ops);
    }
}

#[test]
fn a_correct_init_then_a_descriptor_loop_needs_reset() {
    // The deterministic core of the property: the queue path is reached.
    let ops = [
        Op::Init {
            log: 2,
            pages: [0, 1, 2],
            skew: 1,
        },
        Op::Desc {
            i: 0,
            addr: GUEST_BASE + 0x5000,
            len: 16,
            flags: 1,
            next: 1,
        },
        Op::Desc {
            i: 1,
            addr: GUEST_BASE + 0x5000,
            len: 16,
            flags: 1,
            next: 0,
        },
        Op::Avail {
            slot: 0,
            head: 0,
            idx: 1,
        },
    ];
    let (faults, st) = run(&ops);
    assert_eq!(faults.queue, 1);
    assert_eq!(faults.refused, 0, "the initialisation was accepted");
    assert_eq!(st & status::DEVICE_NEEDS_RESET, status::DEVICE_NEEDS_RESET);
    assert_eq!(st & !status::DEVICE_NEEDS_RESET, 15);
}
