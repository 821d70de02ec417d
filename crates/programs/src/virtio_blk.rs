//! virtio-blk between two domains: `virtio-drivers`' `VirtIOBlk`, unchanged, in the
//! frontend, over `staticbus_virtio_msg`'s transport and DMA layer; staticbus's own
//! `no_std` device side with its RAM-disk backend (`RamBlk`) in the backend, the disk in
//! the backend's own memory. One `[[virtio]]` device (docs/virtio.md); each domain's side
//! follows from its role in the manifest.
//!
//! **Frontend.** Opens the device by name, attaches to the region (waiting on the doorbell
//! until the device side serves it), initialises the driver and runs `count` requests on
//! the disk's first blocks of 4 KiB (at most [`MAX_BLOCKS`]): request `i` goes to block
//! `mix(seed + i) mod blocks`, a write when that number is even, a read when odd. A write
//! bumps the block's generation and writes [`pattern`]`(seed, block, generation)`: the
//! block number, the generation, pseudo-random bytes derived from the three, and a 32-bit
//! FNV-1a checksum of everything before it. A read is verified against the pattern of the
//! block's current generation (generation 0: never written, all zeros, as a fresh RAM
//! disk is): checksum first, then block and generation, then every byte. So it needs no
//! shadow copy of the disk, only a 16-bit generation per block. Then every block is read
//! back and verified once more, the disk flushed, and the frontend prints the requests,
//! their rate (its own clock) and a 64-bit FNV-1a digest of the disk it expects (every
//! byte of the device's capacity), detaches and rings the doorbell.
//!
//! **Backend.** Serves the device with `DeviceTransport` over a RAM disk of `disk-size`
//! bytes (default: the whole buffer the image gives it) until the frontend has driven the
//! device and detached; then prints the requests served by type and the digest of its
//! disk, which must equal the frontend's. It passes if no request failed and the
//! frontend broke nothing (no broken queue, no broken control ring).
//!
//! **Restart.** With `restart-after=N` the backend crashes and restarts in place, as a
//! backend domain that dies and is booted again would: once it has served `N` requests in
//! its current life, as soon as the frontend's next request is in the queue (so that one is
//! in flight, never served by this life; with `N` = the workload's requests plus the final
//! pass's, that is the flush), it stops serving without a word to the region (`DeviceTransport::into_backend`:
//! `dev_state` stays 1, nothing is answered or completed) and attaches again
//! (`DeviceTransport::attach`: a new `dev_epoch`, every request in flight dropped, the
//! doorbell rung), `restarts=K` times (default 1). `restart-disk=keep` (default) keeps the
//! RAM disk across the restart, as a backend whose disk lives in memory that outlives it
//! would; `restart-disk=zero` re-creates it zeroed, as a backend whose disk is its own
//! memory. The frontend, sleeping on the doorbell for a used buffer, sees the new epoch
//! (`CallError::Reset`), drops its driver, forgets its DMA pool, initialises a new
//! `VirtIOBlk` over the same link and issues the request it lost again; a write whose
//! completion it never saw is written again with the same contents (the generation is
//! bumped only when a write completes). It must be given the same `restart-disk=`: with
//! `keep` every write it was told was done must read back after the restart (the
//! generations stay), with `zero` every block must read back as zeros after each new epoch
//! (the generations are forgotten). The final flush goes the same way: it is not
//! `VirtIOBlk::flush` (which spins on the used ring and would hang), but
//! `staticbus_virtio_msg::blk_flush::BlkFlush` on a driver of its own, which sleeps on the
//! doorbell; after a restart it is initialised again and the flush re-issued, and with
//! `zero` the final pass is read and verified again first.
//!
//! Both sides end with `RESULT PASS …` or `RESULT FAIL <reason>`.
//!
//! Arguments (all optional): `device=NAME` (default: the domain's only virtio device),
//! `count=N` (frontend; default [`DEFAULT_COUNT`]), `seed=S` (frontend; default
//! [`DEFAULT_SEED`]), `disk-size=BYTES` (backend; a multiple of 4096, at most the buffer),
//! `restart-after=N` and `restarts=K` (backend), `restart-disk=keep|zero` (both sides).

use crate::args::{ArgError, Args};
use crate::queue_check::{fnv1a32, mix};
use crate::stats::per_second;
use crate::virtio_front::{self, FrontError, Kind};
use crate::Clock;
use core::fmt::{self, Write};
use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::{Errno, Events, Platform};
use staticbus_virtio_msg::backends::RamBlk;
use staticbus_virtio_msg::blk_flush::{BlkFlush, FlushError};
use staticbus_virtio_msg::device::{status, AttachError, Backend, DeviceTransport, Refused};
use staticbus_virtio_msg::frontend::{CallError, Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::layout::{DRV_ATTACHED, OFF_DRV_STATE};
use staticbus_virtio_msg::open::{self, OpenError};
use staticbus_virtio_msg::queue::{QueueError, QueueLayout, SplitQueue};
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};

/// The device type the frontend drives (and the backend serves).
const KIND: Kind = Kind {
    tag: "virtio-blk",
    device_id: 2,
    what: "a block device",
};

/// Bytes per request.
pub const BLOCK: usize = 4096;
/// Blocks the frontend uses at most (the first ones of a larger disk).
pub const MAX_BLOCKS: usize = 1024;
/// Requests unless `count=` says otherwise.
pub const DEFAULT_COUNT: u64 = 2000;
/// Seed unless `seed=` says otherwise.
pub const DEFAULT_SEED: u64 = 0x5eed;
/// The RAM disk's device id.
pub const DISK_ID: &[u8] = b"staticbus-ramdisk";
/// Driver re-initialisations the frontend tolerates before it gives up.
pub const MAX_RESETS: u64 = 100;

/// What becomes of the backend's RAM disk when the backend restarts (`restart-disk=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartDisk {
    /// The disk survives the restart (memory that outlives the device side).
    Keep,
    /// The disk is re-created, all zeros (the device side's own memory).
    Zero,
}

impl RestartDisk {
    fn from_args<'a>(args: &Args<'a>) -> Result<Self, Fail<'a>> {
        match args.str_or("restart-disk", "keep") {
            "keep" => Ok(RestartDisk::Keep),
            "zero" => Ok(RestartDisk::Zero),
            _ => Err(Fail::Setup("restart-disk= must be `keep` or `zero`")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            RestartDisk::Keep => "kept",
            RestartDisk::Zero => "zeroed",
        }
    }
}

const SECTOR: usize = 512;
const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into a running 64-bit FNV-1a digest.
pub fn fnv1a64(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The digest of a whole disk as both sides print it.
pub fn disk_digest(disk: &[u8]) -> u64 {
    fnv1a64(DIGEST_SEED, disk)
}

/// The contents of `block` at `generation` for `seed`: all zeros for generation 0,
/// otherwise the block number (8 bytes LE), the generation (4 bytes LE), pseudo-random
/// bytes and the FNV-1a checksum of the first 4092 bytes (4 bytes LE).
pub fn pattern(seed: u64, block: u64, generation: u16, buf: &mut [u8; BLOCK]) {
    if generation == 0 {
        buf.fill(0);
        return;
    }
    buf[..8].copy_from_slice(&block.to_le_bytes());
    buf[8..12].copy_from_slice(&u32::from(generation).to_le_bytes());
    let mut state = mix(seed ^ block.rotate_left(20) ^ u64::from(generation).rotate_left(44));
    for chunk in buf[12..BLOCK - 4].chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let sum = fnv1a32(&buf[..BLOCK - 4]);
    buf[BLOCK - 4..].copy_from_slice(&sum.to_le_bytes());
}

/// What is wrong with `got`, read from `block` whose generation is `generation`.
fn verify(seed: u64, block: u64, generation: u16, got: &[u8; BLOCK]) -> Option<&'static str> {
    if generation == 0 {
        return got
            .iter()
            .any(|&b| b != 0)
            .then_some("not zero (never written)");
    }
    if fnv1a32(&got[..BLOCK - 4]).to_le_bytes() != got[BLOCK - 4..] {
        return Some("bad checksum");
    }
    if got[..8] != block.to_le_bytes() {
        return Some("another block's data");
    }
    if got[8..12] != u32::from(generation).to_le_bytes() {
        return Some("another generation (a lost or stale write)");
    }
    let mut want = [0u8; BLOCK];
    pattern(seed, block, generation, &mut want);
    (want != *got).then_some("wrong contents")
}

/// Why a run failed.
#[derive(Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Open(OpenError<'a>),
    Front(FrontError<'a>),
    Setup(&'static str),
    Attach(AttachError),
    Call(&'static str, CallError),
    Driver(&'static str, virtio_drivers::Error),
    Flush(FlushError),
    Events(Errno),
    Bad {
        request: u64,
        block: u64,
        why: &'static str,
    },
    Backend {
        failed: u64,
        queue: u64,
        ring: u64,
    },
    TooManyResets(u64),
    Capacity {
        before: u64,
        after: u64,
    },
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "{e}"),
            Fail::Open(e) => write!(f, "{e}"),
            Fail::Setup(m) => f.write_str(m),
            Fail::Front(e) => write!(f, "{e}"),
            Fail::Attach(e) => write!(f, "serving the device: {e}"),
            Fail::Call(what, e) => write!(f, "{what}: {e}"),
            Fail::Driver(what, e) => write!(f, "{what}: {e}"),
            Fail::Flush(e) => write!(f, "flush: {e}"),
            Fail::Events(e) => write!(f, "waiting on the doorbell: {e}"),
            Fail::Bad {
                request,
                block,
                why,
            } => write!(f, "request {request}: block {block} reads back {why}"),
            Fail::Backend {
                failed,
                queue,
                ring,
            } => write!(
                f,
                "{failed} requests failed, {queue} broken queues, {ring} broken control rings"
            ),
            Fail::TooManyResets(n) => write!(f, "gave up after {n} driver re-initialisations"),
            Fail::Capacity { before, after } => write!(
                f,
                "the device came back with {after} sectors instead of {before}"
            ),
        }
    }
}

impl<'a> From<ArgError<'a>> for Fail<'a> {
    fn from(e: ArgError<'a>) -> Self {
        Fail::Arg(e)
    }
}

impl<'a> From<FrontError<'a>> for Fail<'a> {
    fn from(e: FrontError<'a>) -> Self {
        Fail::Front(e)
    }
}

impl<'a> From<OpenError<'a>> for Fail<'a> {
    fn from(e: OpenError<'a>) -> Self {
        Fail::Open(e)
    }
}

/// Runs this domain's side (see the module documentation) with `disk` as the RAM disk's
/// memory if it is the backend (the frontend does not touch it); prints progress, figures
/// and the `RESULT` line to `out`; returns whether it passed.
pub fn run<P, C, W>(platform: &P, clock: &C, args: &Args<'_>, out: &mut W, disk: &mut [u8]) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, clock, args, out, disk);
    crate::result(out, r)
}

/// The summary of a passed run.
enum Passed {
    Frontend {
        count: u64,
        writes: u64,
        reads: u64,
        blocks: u64,
        digest: u64,
    },
    Backend {
        served: [u64; 5],
        digest: u64,
    },
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Passed::Frontend {
                count,
                writes,
                reads,
                blocks,
                digest,
            } => write!(
                f,
                "virtio-blk frontend: {count} requests ({writes} writes, {reads} reads) \
                 + {blocks} verified, disk digest {digest:#018x}"
            ),
            Passed::Backend { served, digest } => write!(
                f,
                "virtio-blk backend: {} requests ({} reads, {} writes, {} flushes), \
                 disk digest {digest:#018x}",
                served.iter().sum::<u64>(),
                served[0],
                served[1],
                served[2]
            ),
        }
    }
}

fn run_inner<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
    disk: &mut [u8],
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let m = platform.manifest();
    let name = virtio_front::device_name(args, m, None)?;
    let role = m
        .virtio_device(name)
        .map_or(VirtioRole::Frontend, |d| d.role);
    let dev = open::open(platform, name, role)?;
    let d = dev.device;
    // Lines stay under 120 characters (Xen splits longer ones).
    let _ = writeln!(
        out,
        "virtio-blk: device `{}` ({} id {}, {} queue(s) of {}), this domain its {}",
        d.name, d.device, d.device_id, d.queues, d.queue_size, d.role
    );
    let _ = writeln!(
        out,
        "virtio-blk: region `{}` {:#x} bytes at {:#x}, port {} to `{}` port {}",
        d.shm_id, d.size, d.guest_addr, d.local_port, d.peer, d.remote_port
    );
    if d.device_id != KIND.device_id {
        return Err(Fail::Front(FrontError::WrongDevice {
            kind: KIND,
            got: d.device_id,
        }));
    }
    match role {
        VirtioRole::Frontend => frontend(platform, clock, args, out, dev),
        VirtioRole::Backend => backend(platform, clock, args, out, dev, disk),
    }
}

/// The DMA pool of the frontend (one device per domain).
struct Pool;

impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

type Blk<'l, E> = VirtIOBlk<RegionHal<Pool>, MsgTransport<'l, E>>;

/// The frontend's driver over the link, re-created whenever the device restarts, and the
/// generation of every block it was told was written.
struct Session<'l, E: Events> {
    link: &'l Link<E>,
    guest_base: u64,
    blk: Option<Blk<'l, E>>,
    /// The device epoch the current driver was initialised against.
    epoch: u64,
    /// Driver re-initialisations after the first one.
    resets: u64,
    restart_disk: RestartDisk,
    /// Capacity in sectors, from the first driver.
    capacity: Option<u64>,
    generation: [u16; MAX_BLOCKS],
}

/// How one attempt at a request ended.
enum Attempt {
    Done,
    /// The device restarted or needs a reset: re-initialise and issue it again.
    Reset,
}

impl<'l, E: Events> Session<'l, E> {
    /// The current driver, initialising one if there is none: after a device restart, over
    /// a fresh DMA pool (the old driver's buffers are never handed out again). A new epoch
    /// with `restart-disk=zero` forgets every generation: the disk is all zeros again.
    fn driver(&mut self) -> Result<&mut Blk<'l, E>, Fail<'static>> {
        while self.blk.is_none() {
            if self.resets > MAX_RESETS {
                return Err(Fail::TooManyResets(self.resets));
            }
            Pool::pool().attach(*self.link.region(), self.guest_base);
            let t = match self.link.transport() {
                Ok(t) => t,
                Err(CallError::Reset) => {
                    self.resets += 1;
                    continue;
                }
                Err(e) => return Err(Fail::Call("device info", e)),
            };
            let epoch = self.link.epoch();
            match VirtIOBlk::new(t) {
                Ok(b) if !self.link.needs_reset() => {
                    let sectors = b.capacity();
                    match self.capacity {
                        None => self.capacity = Some(sectors),
                        Some(before) if before != sectors => {
                            return Err(Fail::Capacity {
                                before,
                                after: sectors,
                            })
                        }
                        Some(_) => {}
                    }
                    if self.epoch != epoch && self.restart_disk == RestartDisk::Zero {
                        self.generation.fill(0);
                    }
                    self.epoch = epoch;
                    self.blk = Some(b);
                }
                // Restarted again while initialising.
                Ok(_) => self.resets += 1,
                Err(_) if self.link.needs_reset() => self.resets += 1,
                Err(e) => return Err(Fail::Driver("initialising the driver", e)),
            }
        }
        Ok(self.blk.as_mut().unwrap_or_else(|| unreachable!()))
    }

    /// The final flush, on a flush driver of its own (`BlkFlush`: `VirtIOBlk::flush` spins
    /// on the used ring and would never see a restart), initialised again and re-issued
    /// for as long as the device restarts, like the other requests. True if a restart
    /// re-created the disk zeroed meanwhile (`restart-disk=zero`): what was verified is
    /// gone, the caller verifies again.
    fn flush(&mut self) -> Result<bool, Fail<'static>> {
        // The flush driver owns queue 0: the block driver goes first.
        self.blk = None;
        let mut zeroed = false;
        let mut counted = false;
        loop {
            if self.resets > MAX_RESETS {
                return Err(Fail::TooManyResets(self.resets));
            }
            // A fresh pool, as for every new driver: nothing an abandoned request's bounce
            // buffer may still receive is handed out again.
            Pool::pool().attach(*self.link.region(), self.guest_base);
            let r = BlkFlush::<RegionHal<Pool>, E>::new(self.link).and_then(|f| {
                let epoch = self.link.epoch();
                if epoch != self.epoch {
                    if !counted {
                        // A restart between the last request and the flush.
                        self.resets += 1;
                    }
                    if self.restart_disk == RestartDisk::Zero {
                        self.generation.fill(0);
                        zeroed = true;
                    }
                    self.epoch = epoch;
                }
                counted = false;
                f.flush()
            });
            match r {
                Ok(()) => return Ok(zeroed),
                Err(FlushError::Reset) => {
                    self.resets += 1;
                    counted = true;
                }
                Err(e) => return Err(Fail::Flush(e)),
            }
        }
    }

    /// Drops the driver after a device restart (its transport does not reset a device that
    /// restarted anyway); the next request initialises a new one.
    fn reset(&mut self) {
        self.blk = None;
        self.resets += 1;
    }

    /// One attempt at a request with the driver's non-blocking calls, sleeping on the
    /// doorbell until it completes or the device restarts.
    fn once(
        &mut self,
        block: usize,
        write: bool,
        buf: &mut [u8; BLOCK],
    ) -> Result<Attempt, Fail<'static>> {
        let link = self.link;
        let blk = self.driver()?;
        let (mut req, mut resp) = (BlkReq::default(), BlkResp::default());
        let sector = block * BLOCK / SECTOR;
        // SAFETY: req, buf and resp are neither moved nor touched until the request is
        // completed below; when it is abandoned (a device restart) the driver is dropped
        // and the DMA pool forgets its bounce buffers before a new driver is created, so
        // nothing the device may still write is used again.
        let token = unsafe {
            if write {
                blk.write_blocks_nb(sector, &mut req, buf, &mut resp)
            } else {
                blk.read_blocks_nb(sector, &mut req, buf, &mut resp)
            }
        };
        let token = match token {
            Ok(t) => t,
            Err(_) if link.needs_reset() => return Ok(Attempt::Reset),
            Err(e) => return Err(Fail::Driver("submitting a request", e)),
        };
        while blk.peek_used() != Some(token) {
            match link.wait_used() {
                Ok(_) => {}
                Err(CallError::Reset) => return Ok(Attempt::Reset),
                Err(e) => return Err(Fail::Call("waiting for a used buffer", e)),
            }
        }
        // SAFETY: the same req, buf and resp as above.
        unsafe {
            if write {
                blk.complete_write_blocks(token, &req, buf, &mut resp)
            } else {
                blk.complete_read_blocks(token, &req, buf, &mut resp)
            }
        }
        .map_err(|e| Fail::Driver("completing a request", e))?;
        Ok(Attempt::Done)
    }

    /// Writes the block's next generation, again over a new driver for as long as the
    /// device restarts; the generation counts only once the write completed. A write
    /// the device did before it restarted without completing is written again with the
    /// same contents (or, with the disk zeroed, as generation 1).
    fn write(
        &mut self,
        seed: u64,
        block: usize,
        buf: &mut [u8; BLOCK],
    ) -> Result<(), Fail<'static>> {
        loop {
            // A block written 65,535 times starts again at generation 1.
            let g = self.generation[block].checked_add(1).unwrap_or(1);
            pattern(seed, block as u64, g, buf);
            match self.once(block, true, buf)? {
                Attempt::Done => {
                    self.generation[block] = g;
                    return Ok(());
                }
                Attempt::Reset => self.reset(),
            }
        }
    }

    /// Reads the block and verifies it against the generation it was last written with
    /// (re-issued over a new driver for as long as the device restarts).
    fn read(
        &mut self,
        seed: u64,
        request: u64,
        block: usize,
        buf: &mut [u8; BLOCK],
    ) -> Result<(), Fail<'static>> {
        loop {
            buf.fill(0xa5);
            match self.once(block, false, buf)? {
                Attempt::Done => break,
                Attempt::Reset => self.reset(),
            }
        }
        match verify(seed, block as u64, self.generation[block], buf) {
            Some(why) => Err(Fail::Bad {
                request,
                block: block as u64,
                why,
            }),
            None => Ok(()),
        }
    }
}

/// The frontend (see the module documentation).
fn frontend<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
    dev: open::Opened,
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let count = args.u64_or("count", DEFAULT_COUNT)?;
    let seed = args.u64_or("seed", DEFAULT_SEED)?;
    let restart_disk = RestartDisk::from_args(args)?;
    let events = platform.events();
    let (link, _) = virtio_front::attach(platform, clock, &dev, KIND, out)?;
    let mut s = Session {
        link: &link,
        guest_base: dev.guest_base,
        blk: None,
        epoch: link.epoch(),
        resets: 0,
        restart_disk,
        capacity: None,
        generation: [0u16; MAX_BLOCKS],
    };
    s.driver()?;
    let sectors = s.capacity.unwrap_or(0);
    let capacity = sectors * SECTOR as u64;
    let blocks = ((capacity / BLOCK as u64) as usize).min(MAX_BLOCKS);
    if blocks == 0 {
        return Err(Fail::Setup("the disk is smaller than one 4 KiB block"));
    }
    let _ = writeln!(
        out,
        "virtio-blk frontend: driver up, capacity {capacity} bytes, using {blocks} blocks; \
         {count} requests, seed {seed:#x}"
    );
    let mut buf = [0u8; BLOCK];
    let (mut writes, mut reads) = (0u64, 0u64);
    let started = clock.now_ns();
    for i in 0..count {
        let r = mix(seed.wrapping_add(i));
        let block = ((r >> 1) % blocks as u64) as usize;
        let resets = s.resets;
        let t0 = clock.now_ns();
        if r & 1 == 0 {
            s.write(seed, block, &mut buf)?;
            writes += 1;
        } else {
            s.read(seed, i, block, &mut buf)?;
            reads += 1;
        }
        if s.resets != resets {
            // From the lost request's first submission to the completion of its re-issue
            // over the new driver: what the restart cost this request.
            let took = clock.now_ns().saturating_sub(t0);
            let _ = writeln!(
                out,
                "virtio-blk frontend: request {i}: device restarted (epoch {}, disk {}), \
                 re-initialised, re-issued, done in {} us",
                s.epoch,
                restart_disk.name(),
                took / 1000
            );
        }
    }
    let elapsed = clock.now_ns().saturating_sub(started);
    let _ = writeln!(
        out,
        "virtio-blk frontend: {count} requests in {} us ({} requests/s, {} KiB/s, one in flight)",
        elapsed / 1000,
        per_second(count, elapsed),
        per_second(count * BLOCK as u64, elapsed) / 1024
    );
    // Every block once more, the digest of the whole disk the frontend expects, and the
    // flush; again if a restart during the flush re-created the disk.
    let digest = loop {
        let mut digest = DIGEST_SEED;
        for block in 0..blocks {
            s.read(seed, count + block as u64, block, &mut buf)?;
            digest = fnv1a64(digest, &buf);
        }
        let zero = [0u8; SECTOR];
        for _ in (blocks * BLOCK / SECTOR) as u64..sectors {
            digest = fnv1a64(digest, &zero);
        }
        let resets = s.resets;
        let t0 = clock.now_ns();
        let zeroed = s.flush()?;
        if s.resets != resets {
            let _ = writeln!(
                out,
                "virtio-blk frontend: flush: device restarted (epoch {}, disk {}), \
                 re-initialised, re-issued, done in {} us",
                s.epoch,
                restart_disk.name(),
                clock.now_ns().saturating_sub(t0) / 1000
            );
        }
        if !zeroed {
            break digest;
        }
        let _ = writeln!(
            out,
            "virtio-blk frontend: the disk was zeroed meanwhile: every block again"
        );
    };
    let _ = writeln!(
        out,
        "virtio-blk frontend: {} resets, device epoch {} (disk {} on restart)",
        s.resets,
        s.epoch,
        restart_disk.name()
    );
    drop(s);
    Pool::pool().detach();
    link.detach();
    // Wake the backend: it ends once the frontend has detached.
    let _ = events.send(dev.port);
    Ok(Passed::Frontend {
        count,
        writes,
        reads,
        blocks: blocks as u64,
        digest,
    })
}

/// The RAM disk of one life of the device side, which with a `limit` (`restart-after=`)
/// stops serving once it has served that many requests: the next request the frontend
/// makes available is never taken, and the life ends (`crashed`) with it in flight.
struct Life<'d> {
    blk: RamBlk<'d>,
    limit: Option<u64>,
    crashed: bool,
}

impl Backend for Life<'_> {
    fn device_type(&self) -> u32 {
        self.blk.device_type()
    }
    fn vendor_id(&self) -> u32 {
        self.blk.vendor_id()
    }
    fn device_features(&self) -> u64 {
        self.blk.device_features()
    }
    fn set_driver_features(&mut self, features: u64) -> Result<(), Refused> {
        self.blk.set_driver_features(features)
    }
    fn config_size(&self) -> u32 {
        self.blk.config_size()
    }
    fn read_config(&self, offset: u32, buf: &mut [u8]) {
        self.blk.read_config(offset, buf)
    }
    fn write_config(&mut self, offset: u32, data: &[u8]) -> Result<(), Refused> {
        self.blk.write_config(offset, data)
    }
    fn config_generation(&self) -> u32 {
        self.blk.config_generation()
    }
    fn num_queues(&self) -> u16 {
        self.blk.num_queues()
    }
    fn max_queue_size(&self, queue: u16) -> u16 {
        self.blk.max_queue_size(queue)
    }
    fn status_changed(&mut self, status: u8) -> Result<(), Refused> {
        self.blk.status_changed(status)
    }
    fn reset(&mut self) {
        self.blk.reset()
    }
    fn queue_set(&mut self, queue: u16, layout: QueueLayout) -> Result<(), Refused> {
        self.blk.queue_set(queue, layout)
    }
    fn queue_reset(&mut self, queue: u16) {
        self.blk.queue_reset(queue)
    }
    fn notify(&mut self, queue: u16, vq: &mut SplitQueue<'_>) -> Result<(), QueueError> {
        if self
            .limit
            .is_some_and(|n| self.blk.served.iter().sum::<u64>() >= n)
        {
            // The frontend's next request is there: crash before serving it. (A frontend
            // with several requests in flight may have had more than `limit` served by
            // the RAM disk's last turn; these ones have one.)
            if vq.pending()? > 0 {
                self.crashed = true;
            }
            return Ok(());
        }
        self.blk.notify(queue, vq)
    }
}

/// How one life of the device side ended.
enum End {
    /// The frontend drove the device and detached.
    Detached,
    /// `restart-after=` requests served: crash and attach again.
    Restart,
}

fn backend<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
    dev: open::Opened,
    disk: &mut [u8],
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let size = args.u64_or("disk-size", disk.len() as u64)?;
    if size == 0 || size % BLOCK as u64 != 0 || size > disk.len() as u64 {
        let _ = writeln!(
            out,
            "virtio-blk backend: disk-size={size} (this image's buffer holds {} bytes)",
            disk.len()
        );
        return Err(Fail::Setup(
            "disk-size must be a non-zero multiple of 4096 within the image's disk buffer",
        ));
    }
    let restart_after = args.u64_or("restart-after", 0)?;
    let restarts = args.u64_or("restarts", u64::from(restart_after != 0))?;
    if restarts != 0 && restart_after == 0 {
        return Err(Fail::Setup("restarts= needs restart-after=N (N > 0)"));
    }
    let restart_disk = RestartDisk::from_args(args)?;
    let disk = &mut disk[..size as usize];
    let _ = writeln!(
        out,
        "virtio-blk backend: RAM disk of {size} bytes, serving `{}`",
        dev.device.name
    );
    if restarts != 0 {
        let _ = writeln!(
            out,
            "virtio-blk backend: restarting in place {restarts} times, after {restart_after} \
             requests each, disk {} on restart",
            restart_disk.name()
        );
    }
    let events = platform.events();
    let mut served = [0u64; 5];
    let mut faults = staticbus_virtio_msg::device::Faults::default();
    let mut driven = false;
    let mut started = None;
    let mut restarted = 0u64;
    let epoch = loop {
        let life = Life {
            blk: RamBlk::new(&mut *disk, DISK_ID),
            limit: (restarted < restarts).then_some(restart_after),
            crashed: false,
        };
        let mut t = DeviceTransport::attach(dev.region, platform.events(), dev.port, life)
            .map_err(Fail::Attach)?;
        let life = 'life: loop {
            loop {
                let work = t.poll();
                if t.status() & status::DRIVER_OK != 0 {
                    driven = true;
                    started.get_or_insert_with(|| clock.now_ns());
                }
                if t.backend().crashed {
                    break 'life End::Restart;
                }
                if work == 0 {
                    break;
                }
            }
            let attached = dev
                .region
                .load_le::<u32>(OFF_DRV_STATE, core::sync::atomic::Ordering::Acquire)
                == Some(DRV_ATTACHED);
            if driven && !attached {
                break End::Detached;
            }
            events.wait(dev.port).map_err(Fail::Events)?;
        };
        let epoch = t.epoch();
        let f = t.faults();
        // Stop without a word to the region, as a crash would.
        let blk = t.into_backend().blk;
        for (total, n) in served.iter_mut().zip(blk.served) {
            *total += n;
        }
        faults.refused += f.refused;
        faults.dropped += f.dropped;
        faults.queue += f.queue;
        faults.ring += f.ring;
        faults.lost += f.lost;
        match life {
            End::Detached => break epoch,
            End::Restart => {
                restarted += 1;
                if restart_disk == RestartDisk::Zero {
                    disk.fill(0);
                }
                let _ = writeln!(
                    out,
                    "virtio-blk backend: restart {restarted}: epoch {epoch} crashed after {} \
                     requests served, attaching again (disk {})",
                    served.iter().sum::<u64>(),
                    restart_disk.name()
                );
            }
        }
    };
    let elapsed = clock.now_ns().saturating_sub(started.unwrap_or(0));
    let total: u64 = served.iter().sum();
    let _ = writeln!(
        out,
        "virtio-blk backend: served {total} requests in {} us ({} requests/s)",
        elapsed / 1000,
        per_second(total, elapsed),
    );
    let _ = writeln!(
        out,
        "virtio-blk backend: faults: {} refused, {} dropped, {} broken queues, {} broken \
         rings, {} lost",
        faults.refused, faults.dropped, faults.queue, faults.ring, faults.lost
    );
    let _ = writeln!(
        out,
        "virtio-blk backend: {restarted} restarts, device epoch {epoch}"
    );
    if served[4] != 0 || faults.queue != 0 || faults.ring != 0 {
        return Err(Fail::Backend {
            failed: served[4],
            queue: faults.queue,
            ring: faults.ring,
        });
    }
    Ok(Passed::Backend {
        served,
        digest: disk_digest(disk),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_verify_only_themselves() {
        let mut b = [0u8; BLOCK];
        pattern(1, 7, 3, &mut b);
        assert_eq!(verify(1, 7, 3, &b), None);
        assert_eq!(
            verify(1, 7, 4, &b),
            Some("another generation (a lost or stale write)")
        );
        assert_eq!(verify(1, 8, 3, &b), Some("another block's data"));
        assert_eq!(verify(2, 7, 3, &b), Some("wrong contents"));
        assert_eq!(verify(1, 7, 0, &b), Some("not zero (never written)"));
        b[100] ^= 1;
        assert_eq!(verify(1, 7, 3, &b), Some("bad checksum"));
        pattern(1, 7, 0, &mut b);
        assert_eq!(verify(1, 7, 0, &b), None);
        let mut c = [0u8; BLOCK];
        pattern(1, 7, 2, &mut c);
        pattern(1, 7, 3, &mut b);
        assert_ne!(b[12..], c[12..], "generations differ in their bytes too");
    }
}
