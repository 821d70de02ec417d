//! A benchmark frontend domain for a virtio-blk device served over virtio-msg:
//!
//! ```text
//! virtio-blk-bench DEVICE FILE ROUNDS RANDOM SEQ_PASSES
//! ```
//!
//! Opens virtio device `DEVICE` of its manifest as the frontend, like
//! `virtio-blk-frontend`, and runs `virtio_drivers::device::blk::VirtIOBlk` over
//! `staticbus_virtio_msg`'s transport. `FILE` is the backend's file (the domains of a
//! `staticbus run` share its folder): this domain opens it read-only and reads it with
//! `pread` as the same-run reference.
//!
//! First it reads the whole disk once through the device (64 KiB requests) and once with
//! `pread`, and fails unless both return the same bytes (this also puts the file in the
//! page cache for both paths). Then, `ROUNDS` times, it measures, alternating the order
//! from round to round:
//!
//! - `rand4k`: `RANDOM` reads of 4 KiB at seeded random 4 KiB-aligned offsets (the same
//!   offsets for every path);
//! - `seq64k`: `SEQ_PASSES` passes of 64 KiB reads over the whole disk;
//!
//! each through the device with one request in flight (`blk-qd1`), through the device with
//! up to 16 in flight (`blk-qd16`: `read_blocks_nb`, completed as the device returns them)
//! and with `pread` (one at a time). Every device measurement counts the doorbells this
//! domain sent (`EVENT_AVAIL` kicks and any control message) and its wake-ups (returns
//! from a wait on the doorbell port).
//!
//! It prints a `round N PATH LOAD …` line per measurement, then one `figure` line per
//! path and load with the median over the rounds (IOPS, MiB/s, the ratio of the medians
//! to `pread`'s, the range and median of each round's ratio to the same round's `pread`,
//! doorbells and wake-ups per request), and at last
//! `PASS virtio-blk-bench rounds=… random=… seq-passes=… bytes=… checked=… requests=…
//! device-requests=…` (`requests`: the timed ones; `device-requests`: with the check's).
//! Benchmark figures only: nothing here is asserted about time.

use std::cell::Cell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::process::exit;
use std::time::Instant;

use staticbus_emu_virtio_domains::Rng;
use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::ops::PortStatus;
use staticbus_guest::{Errno, Events, Platform};
use staticbus_virtio_msg::frontend::{Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::open::open;
use virtio_drivers::device::blk::{BlkReq, BlkResp, RespStatus, VirtIOBlk};

struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

type Blk<'l, E> = VirtIOBlk<RegionHal<Pool>, MsgTransport<'l, E>>;

/// The most requests in flight of the `blk-qd16` loads (the driver's queue size).
const DEPTH: usize = 16;
/// The small request: random reads.
const SMALL: usize = 4096;
/// The large request: sequential reads.
const LARGE: usize = 64 * 1024;

fn fail(why: impl std::fmt::Display) -> ! {
    println!("FAIL virtio-blk-bench: {why}");
    exit(1);
}

thread_local! {
    /// Doorbells this domain sent.
    static SENDS: Cell<u64> = const { Cell::new(0) };
    /// Returns from waits on event ports (wake-ups).
    static WAKES: Cell<u64> = const { Cell::new(0) };
}

fn counters() -> (u64, u64) {
    (SENDS.with(Cell::get), WAKES.with(Cell::get))
}

/// The platform's events, counting sends and wake-ups.
struct Counted<E>(E);

impl<E: Events> Events for Counted<E> {
    fn send(&self, port: u32) -> Result<(), Errno> {
        SENDS.with(|c| c.set(c.get() + 1));
        self.0.send(port)
    }

    fn wait_any(&self, ports: &[u32]) -> Result<u32, Errno> {
        let r = self.0.wait_any(ports);
        WAKES.with(|c| c.set(c.get() + 1));
        r
    }

    fn try_take_any(&self, ports: &[u32]) -> Option<u32> {
        self.0.try_take_any(ports)
    }

    fn take_fired(&self) -> Option<u32> {
        self.0.take_fired()
    }

    fn is_pending(&self, port: u32) -> bool {
        self.0.is_pending(port)
    }

    fn clear_initial(&self, port: u32) -> bool {
        self.0.clear_initial(port)
    }

    fn status(&self, port: u32) -> Result<PortStatus, Errno> {
        self.0.status(port)
    }
}

/// One request's memory; none of it moves while the request is in flight.
struct Slot {
    req: BlkReq,
    resp: BlkResp,
    buf: Vec<u8>,
    token: Option<u16>,
}

/// Reads `size` bytes at each offset of `offsets` through the device, with up to `depth`
/// requests in flight; returns the number of requests.
fn device_reads<E: Events>(
    blk: &mut Blk<'_, E>,
    link: &Link<E>,
    slots: &mut [Slot],
    size: usize,
    depth: usize,
    offsets: &[u64],
) -> u64 {
    let depth = depth.min(slots.len());
    let mut next = offsets.iter();
    let mut pending = next.next();
    let mut inflight = 0usize;
    let mut done = 0u64;
    loop {
        while inflight < depth {
            let Some(&off) = pending else { break };
            let s = slots
                .iter_mut()
                .find(|s| s.token.is_none())
                .unwrap_or_else(|| unreachable!("fewer requests in flight than slots"));
            let sector = usize::try_from(off / 512).unwrap_or_else(|_| fail("offset too large"));
            // SAFETY: the slot's req, buf and resp stay where they are and untouched until
            // the request completes below (the slots are not moved or resized meanwhile).
            let r =
                unsafe { blk.read_blocks_nb(sector, &mut s.req, &mut s.buf[..size], &mut s.resp) };
            match r {
                Ok(t) => {
                    s.token = Some(t);
                    inflight += 1;
                    pending = next.next();
                }
                Err(virtio_drivers::Error::QueueFull) if inflight > 0 => break,
                Err(e) => fail(format_args!("read of {size} bytes at {off}: {e}")),
            }
        }
        if inflight == 0 {
            return done;
        }
        let token = loop {
            if let Some(t) = blk.peek_used() {
                break t;
            }
            if let Err(e) = link.wait_used() {
                fail(format_args!("waiting for the device: {e}"));
            }
        };
        let s = slots
            .iter_mut()
            .find(|s| s.token == Some(token))
            .unwrap_or_else(|| fail(format_args!("the device returned unknown token {token}")));
        // SAFETY: the same req, buf and resp that were passed to read_blocks_nb for token.
        let r = unsafe { blk.complete_read_blocks(token, &s.req, &mut s.buf[..size], &mut s.resp) };
        if let Err(e) = r {
            fail(format_args!("a read completed with an error: {e}"));
        }
        if s.resp.status() != RespStatus::OK {
            fail(format_args!("a read returned status {:?}", s.resp.status()));
        }
        s.token = None;
        inflight -= 1;
        done += 1;
    }
}

/// Reads `size` bytes at each offset with `pread`, one at a time.
fn pread_reads(file: &File, buf: &mut [u8], size: usize, offsets: &[u64]) -> u64 {
    for &off in offsets {
        file.read_exact_at(&mut buf[..size], off)
            .unwrap_or_else(|e| fail(format_args!("pread of {size} bytes at {off}: {e}")));
    }
    offsets.len() as u64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// The loads, in the order of odd rounds (even rounds run them backwards).
const PATHS: [&str; 3] = ["pread", "blk-qd1", "blk-qd16"];
const LOADS: [&str; 2] = ["rand4k", "seq64k"];

/// One measurement.
#[derive(Clone, Copy, Default)]
struct Sample {
    per_s: f64,
    mib_s: f64,
    sends: f64,
    wakes: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [name, file_name, rounds, random, passes] = &args[..] else {
        eprintln!("usage: virtio-blk-bench DEVICE FILE ROUNDS RANDOM SEQ_PASSES");
        exit(2);
    };
    let num = |s: &str, what: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("{what} `{s}` is not a number");
            exit(2)
        })
    };
    let (rounds, random, passes) = (
        num(rounds, "ROUNDS"),
        num(random, "RANDOM") as usize,
        num(passes, "SEQ_PASSES") as usize,
    );
    if rounds == 0 {
        eprintln!("ROUNDS must be at least 1");
        exit(2);
    }
    let file = File::open(file_name).unwrap_or_else(|e| {
        fail(format_args!(
            "cannot open the backend's file {file_name}: {e}"
        ))
    });
    let p = staticbus_guest_emu::EmuPlatform::connect().unwrap_or_else(|e| {
        eprintln!("{e}");
        exit(2)
    });
    let opened = open(&p, name, VirtioRole::Frontend).unwrap_or_else(|e| fail(e));
    let (region, port, guest_base) = (opened.region, opened.port, opened.guest_base);
    let shm = opened.device.shm_id;
    let link = Link::attach_waiting(region, || Counted(p.events()), port, guest_base)
        .unwrap_or_else(|e| fail(format_args!("region `{shm}`: {e}")));
    Pool::pool().attach(*link.region(), guest_base);
    let transport = link
        .transport()
        .unwrap_or_else(|e| fail(format_args!("device info: {e}")));
    let mut blk = Blk::new(transport)
        .unwrap_or_else(|e| fail(format_args!("driver initialisation failed: {e}")));

    let bytes = blk.capacity() * 512;
    let file_len = file
        .metadata()
        .unwrap_or_else(|e| fail(format_args!("{file_name}: {e}")))
        .len();
    if file_len != bytes {
        fail(format_args!(
            "{file_name} holds {file_len} bytes but the device reports {bytes}: not the backend's file?"
        ));
    }
    if bytes < LARGE as u64 || bytes % LARGE as u64 != 0 {
        fail(format_args!(
            "the disk ({bytes} bytes) must be a non-zero multiple of {LARGE} bytes"
        ));
    }
    let mut slots: Vec<Slot> = (0..DEPTH)
        .map(|_| Slot {
            req: BlkReq::default(),
            resp: BlkResp::default(),
            buf: vec![0u8; LARGE],
            token: None,
        })
        .collect();
    let mut pbuf = vec![0u8; LARGE];

    // The same bytes both ways, once (and both paths' page cache warm).
    let mut checked = 0u64;
    for off in (0..bytes).step_by(LARGE) {
        device_reads(&mut blk, &link, &mut slots[..1], LARGE, 1, &[off]);
        pread_reads(&file, &mut pbuf, LARGE, &[off]);
        if slots[0].buf != pbuf {
            fail(format_args!(
                "the device and pread return other bytes at offset {off}"
            ));
        }
        checked += LARGE as u64;
    }
    println!(
        "checked: {checked} bytes read through the device equal pread of {file_name}; \
         load {}",
        loadavg()
    );

    let mut rng = Rng(0xb1c0);
    let small_blocks = bytes / SMALL as u64;
    let random_offsets: Vec<u64> = (0..random)
        .map(|_| (rng.next_u64() % small_blocks) * SMALL as u64)
        .collect();
    let seq_offsets: Vec<u64> = (0..passes)
        .flat_map(|_| (0..bytes).step_by(LARGE))
        .collect();

    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); PATHS.len() * LOADS.len()];
    let mut requests = 0u64;
    for round in 1..=rounds {
        let mut order: Vec<(usize, usize)> = (0..LOADS.len())
            .flat_map(|l| (0..PATHS.len()).map(move |p| (l, p)))
            .collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for (l, pi) in order {
            let (size, offsets) = if l == 0 {
                (SMALL, &random_offsets)
            } else {
                (LARGE, &seq_offsets)
            };
            let (s0, w0) = counters();
            let t = Instant::now();
            let n = match PATHS[pi] {
                "pread" => pread_reads(&file, &mut pbuf, size, offsets),
                "blk-qd1" => device_reads(&mut blk, &link, &mut slots, size, 1, offsets),
                _ => device_reads(&mut blk, &link, &mut slots, size, DEPTH, offsets),
            };
            let secs = t.elapsed().as_secs_f64().max(1e-9);
            let (s1, w1) = counters();
            if pi != 0 {
                requests += n;
            }
            let per = |x: u64| x as f64 / (n.max(1) as f64);
            let s = Sample {
                per_s: n as f64 / secs,
                mib_s: (n * size as u64) as f64 / secs / (1 << 20) as f64,
                sends: per(s1 - s0),
                wakes: per(w1 - w0),
            };
            println!(
                "round {round} {} {} requests={n} {:.0}/s {:.1} MiB/s doorbells/request={:.3} \
                 wakeups/request={:.3} load {}",
                PATHS[pi],
                LOADS[l],
                s.per_s,
                s.mib_s,
                s.sends,
                s.wakes,
                loadavg()
            );
            samples[l * PATHS.len() + pi].push(s);
        }
    }
    for (l, load) in LOADS.iter().enumerate() {
        let pread = median(samples[l * PATHS.len()].iter().map(|s| s.per_s).collect());
        for (pi, path) in PATHS.iter().enumerate() {
            let v = &samples[l * PATHS.len() + pi];
            let per_s = median(v.iter().map(|s| s.per_s).collect());
            let mib_s = median(v.iter().map(|s| s.mib_s).collect());
            let sends = median(v.iter().map(|s| s.sends).collect());
            let wakes = median(v.iter().map(|s| s.wakes).collect());
            // Each round against the same round's pread.
            let mut ratios: Vec<f64> = v
                .iter()
                .zip(&samples[l * PATHS.len()])
                .map(|(s, p)| s.per_s / p.per_s.max(1e-9))
                .collect();
            ratios.sort_by(|a, b| a.total_cmp(b));
            println!(
                "figure {load} {path}: {per_s:.0} requests/s {mib_s:.1} MiB/s \
                 ratio-to-pread={:.3} round-ratios={:.3}..{:.3} median={:.3} \
                 doorbells/request={sends:.3} wakeups/request={wakes:.3} \
                 (median of {rounds} rounds)",
                per_s / pread.max(1e-9),
                ratios[0],
                ratios[ratios.len() - 1],
                median(ratios.clone()),
            );
        }
    }
    drop(blk);
    Pool::pool().detach();
    link.detach();
    println!(
        "PASS virtio-blk-bench rounds={rounds} random={random} seq-passes={passes} \
         bytes={bytes} checked={checked} requests={requests} device-requests={}",
        requests + checked / LARGE as u64
    );
}

/// The first three fields of /proc/loadavg ("?" if it cannot be read).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}
