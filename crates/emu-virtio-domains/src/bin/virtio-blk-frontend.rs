//! The frontend domain of a virtio-blk device served over virtio-msg:
//!
//! ```text
//! virtio-blk-frontend DEVICE SEED OPS
//! ```
//!
//! Opens virtio device `DEVICE` of its manifest as the frontend
//! (`staticbus_virtio_msg::open`: the region, its guest address and the doorbell port),
//! waits for the device side, and runs `virtio_drivers::device::blk::VirtIOBlk` over
//! `staticbus_virtio_msg`'s transport with every ring and buffer in the region. It
//! reads the whole disk, runs `OPS` requests of the seeded workload (random 4 KiB writes
//! and reads, every read checked against what it wrote), reads the whole disk back and
//! checks it, flushes, and prints (after a `progress N` line every 2,000 requests)
//! `PASS virtio-blk-frontend ops=… writes=… reads=… resets=… blocks=… digest=0x…` (the
//! digest of the disk it was told it wrote, `staticbus_emu_virtio_domains::digest`).
//!
//! A device that restarts (a new epoch in the region) or raises NEEDS_RESET ends the
//! request with `Reset`: the driver is dropped, the DMA pool forgotten, a new driver
//! initialised over the same link, and the request that was in flight issued again (a
//! write is idempotent). The final flush too: it goes through
//! `staticbus_virtio_msg::blk_flush::BlkFlush`, which sleeps on the doorbell, not
//! `VirtIOBlk::flush`, which spins on the used ring and would hang. Reads after a restart are checked like any other, so a write the
//! device acknowledged before it died and lost would be found.

use std::process::exit;

use staticbus_emu_virtio_domains::{digest, Op, Workload, BLOCK};
use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::{Events, Platform};
use staticbus_virtio_msg::blk_flush::{BlkFlush, FlushError};
use staticbus_virtio_msg::frontend::{CallError, Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::open::open;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};

struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

type Blk<'l, E> = VirtIOBlk<RegionHal<Pool>, MsgTransport<'l, E>>;

/// A `progress N` line every this many requests of the workload (a test kills the backend
/// domain on one).
const PROGRESS: u64 = 2000;

/// Resets the frontend tolerates before it gives up (each one is a device restart).
const MAX_RESETS: u32 = 100;

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-blk-frontend: {why}");
    exit(1);
}

/// The driver over the link, re-created after each device restart.
struct Device<'l, E: Events> {
    link: &'l Link<E>,
    guest_base: u64,
    blk: Option<Blk<'l, E>>,
    resets: u32,
    done: u64,
}

impl<'l, E: Events> Device<'l, E> {
    /// The current driver, initialising one if there is none (each attempt that finds the
    /// device restarting counts as a reset).
    fn driver(&mut self) -> &mut Blk<'l, E> {
        while self.blk.is_none() {
            Pool::pool().attach(*self.link.region(), self.guest_base);
            match self.link.transport() {
                Ok(t) => match Blk::new(t) {
                    Ok(b) => self.blk = Some(b),
                    Err(e) => self.reset(format_args!("driver initialisation failed ({e})")),
                },
                Err(CallError::Reset) => self.reset(format_args!("the device restarted again")),
                Err(e) => fail(format_args!("device info: {e}")),
            }
        }
        self.blk.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// Drops the driver (its buffers are forgotten with the pool at the next driver).
    fn reset(&mut self, why: std::fmt::Arguments<'_>) {
        self.blk = None;
        self.resets += 1;
        println!(
            "reset {} after {} requests: {why}; re-initialising",
            self.resets, self.done
        );
        if self.resets > MAX_RESETS {
            fail(format_args!("more than {MAX_RESETS} resets"));
        }
    }

    /// One request with the non-blocking calls, waiting on the link's doorbell.
    fn once(&mut self, op: Op, buf: &mut [u8; BLOCK]) -> Result<(), CallError> {
        let link = self.link;
        let blk = self.driver();
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        let (block, write) = match op {
            Op::Write(b) => (b, true),
            Op::Read(b) => (b, false),
        };
        let sector = block * BLOCK / 512;
        // SAFETY: req, buf and resp stay untouched until the request completes; when it is
        // abandoned (Reset) the driver is dropped and the DMA pool forgets its bounce
        // buffers before a new driver is created, so the device can write none of them.
        let token = unsafe {
            if write {
                blk.write_blocks_nb(sector, &mut req, buf, &mut resp)
            } else {
                blk.read_blocks_nb(sector, &mut req, buf, &mut resp)
            }
        };
        let token = token.map_err(|e| {
            if link.needs_reset() {
                CallError::Reset
            } else {
                fail(format_args!("submitting {op:?}: {e}"))
            }
        })?;
        while blk.peek_used() != Some(token) {
            link.wait_used()?;
        }
        // SAFETY: the same req, buf and resp as above.
        let r = unsafe {
            if write {
                blk.complete_write_blocks(token, &req, buf, &mut resp)
            } else {
                blk.complete_read_blocks(token, &req, buf, &mut resp)
            }
        };
        r.unwrap_or_else(|e| fail(format_args!("{op:?} completed with an error: {e}")));
        Ok(())
    }

    /// The final flush, on a flush driver of its own (`BlkFlush`; `VirtIOBlk::flush` spins
    /// on the used ring and would never see a restart), re-initialised and re-issued for
    /// as long as the device restarts, like the other requests.
    fn flush(&mut self) {
        // The flush driver owns queue 0: the block driver goes first.
        self.blk = None;
        loop {
            // A fresh pool, as for every new driver.
            Pool::pool().attach(*self.link.region(), self.guest_base);
            match BlkFlush::<RegionHal<Pool>, E>::new(self.link).and_then(BlkFlush::flush) {
                Ok(()) => return,
                Err(FlushError::Reset) => {
                    self.reset(format_args!("the flush ended with NEEDS_RESET"));
                }
                Err(e) => fail(format_args!("flush: {e}")),
            }
        }
    }

    /// One request, re-issued over a new driver for as long as the device restarts.
    fn request(&mut self, op: Op, buf: &mut [u8; BLOCK]) {
        loop {
            match self.once(op, buf) {
                Ok(()) => {
                    self.done += 1;
                    return;
                }
                Err(CallError::Reset) => {
                    self.reset(format_args!("{op:?} ended with NEEDS_RESET"));
                }
                Err(e) => fail(format_args!("{op:?}: {e}")),
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, seed, ops] = &args[..] else {
        eprintln!("usage: virtio-blk-frontend DEVICE SEED OPS");
        exit(2);
    };
    let num = |s: &str, what: &str| -> u64 {
        let r = match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        };
        r.unwrap_or_else(|_| {
            eprintln!("{what} `{s}` is not a number");
            exit(2)
        })
    };
    let (seed, ops) = (num(seed, "SEED"), num(ops, "OPS"));
    let p = staticbus_emu_domains_connect();
    let opened = open(&p, name, VirtioRole::Frontend).unwrap_or_else(|e| fail(e));
    let (region, port, guest_base) = (opened.region, opened.port, opened.guest_base);
    let shm = opened.device.shm_id;
    let link = Link::attach_waiting(region, || p.events(), port, guest_base)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e}")));
    let mut dev = Device {
        link: &link,
        guest_base,
        blk: None,
        resets: 0,
        done: 0,
    };
    let bytes = dev.driver().capacity() * 512;
    let blocks = usize::try_from(bytes).unwrap_or(usize::MAX) / BLOCK;
    if blocks == 0 {
        fail("the disk is smaller than one block");
    }
    let mut buf = [0u8; BLOCK];
    let mut model = vec![0u8; blocks * BLOCK];
    for b in 0..blocks {
        dev.request(Op::Read(b), &mut buf);
        model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&buf);
    }
    let started = std::time::Instant::now();
    let mut w = Workload::new(seed, blocks);
    let (mut writes, mut reads) = (0u64, 0u64);
    for i in 0..ops {
        if i > 0 && i % PROGRESS == 0 {
            println!("progress {i}");
        }
        let op = w.next_op(&mut buf);
        match op {
            Op::Write(b) => {
                let data = buf;
                dev.request(op, &mut buf);
                model[b * BLOCK..(b + 1) * BLOCK].copy_from_slice(&data);
                writes += 1;
            }
            Op::Read(b) => {
                dev.request(op, &mut buf);
                if buf[..] != model[b * BLOCK..(b + 1) * BLOCK] {
                    fail(format_args!(
                        "request {i}: block {b} reads back other data than was written"
                    ));
                }
                reads += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "workload: {ops} requests in {} ms ({:.0} requests/s, one in flight, {} resets)",
        elapsed.as_millis(),
        ops as f64 / elapsed.as_secs_f64().max(1e-9),
        dev.resets
    );
    for b in 0..blocks {
        dev.request(Op::Read(b), &mut buf);
        if buf[..] != model[b * BLOCK..(b + 1) * BLOCK] {
            fail(format_args!(
                "final check: block {b} differs from what was written"
            ));
        }
    }
    dev.flush();
    let resets = dev.resets;
    drop(dev);
    Pool::pool().detach();
    link.detach();
    println!(
        "PASS virtio-blk-frontend ops={ops} writes={writes} reads={reads} resets={resets} \
         blocks={blocks} digest={:#018x}",
        digest(&model)
    );
}

/// Attaches to the emulator or exits with a message.
fn staticbus_emu_domains_connect() -> staticbus_guest_emu::EmuPlatform {
    staticbus_guest_emu::EmuPlatform::connect().unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    })
}
