//! Virtio entropy frontend: `virtio-drivers`' virtqueue (`VirtQueue`) and feature
//! negotiation (`Transport::begin_init`), as its `VirtIORng` uses them, over the
//! virtio-msg transport of `staticbus-virtio-msg` on a shared region and a static event
//! channel, every ring and buffer inside the region (docs/virtio.md). Whoever serves the
//! device — staticbus's built-in entropy device, or a bridge to rust-vmm's
//! vhost-device-rng — is invisible here.
//!
//! Not `VirtIORng` itself: its `request_entropy` spins on the used ring until the device
//! answers, so a device that restarts with the request in flight would hang it for ever.
//! [`NbRng`] is the same driver (same features, one queue of 8) whose request sleeps on
//! the link's doorbell instead and ends with `CallError::Reset` when the device restarted
//! or needs a reset: the frontend then drops the driver, forgets its DMA pool, initialises
//! a new one over the same link and asks again for the bytes it did not get, so the stream
//! goes on across device restarts (the `resets=` count of the result).
//!
//! It waits for the device side, reads `bytes` bytes of entropy in requests of `chunk`
//! bytes (the last one shorter), each of which must come back full, and checks that they
//! look random enough to rule out a broken path (a buffer never written, one request's
//! bytes returned twice, a repeating pattern):
//!
//! * the byte histogram is not degenerate: every byte value occurs, and the chi-square
//!   statistic against the uniform distribution (255 degrees of freedom: mean 255,
//!   standard deviation 22.6) is below [`CHI2_LIMIT`];
//! * no two of the 64-byte blocks (the first [`MAX_BLOCKS`]) are equal (compared by
//!   their 64-bit FNV-1a digests, sorted).
//!
//! Then it detaches and prints `virtio-rng: digest 0x… (FNV-1a of the … bytes)` (two runs
//! that print the same digest got the same bytes: a source that is not random at all) and
//! `RESULT PASS virtio-rng requests=… bytes=… distinct=… chi2=… blocks=… in … (… B/s)
//! resets=…`.
//!
//! Arguments: `device=NAME` (the `[[virtio]]` device of this domain's manifest, opened
//! as its frontend with `staticbus_virtio_msg::open`; default `rng`), `bytes=N` (default
//! [`DEFAULT_BYTES`]), `chunk=N` (default [`DEFAULT_CHUNK`], at most [`MAX_CHUNK`]).

use crate::args::{ArgError, Args};
use crate::stats::{per_second, Nanos};
use crate::virtio_front::{open_frontend, Front, FrontError, Kind};
use crate::Clock;
use core::fmt::{self, Write};
use staticbus_guest::{Events, Platform};
use staticbus_virtio_msg::frontend::{CallError, Link, MsgTransport};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use virtio_drivers::device::common::Feature;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// Bytes read unless `bytes=` says otherwise.
pub const DEFAULT_BYTES: u64 = 64 * 1024;
/// Bytes per request unless `chunk=` says otherwise.
pub const DEFAULT_CHUNK: u64 = 4096;
/// Largest request (one bounce page of the DMA pool).
pub const MAX_CHUNK: u64 = 4096;
/// 64-byte blocks compared for equality.
pub const MAX_BLOCKS: usize = 1024;
/// Driver re-initialisations tolerated before the frontend gives up.
pub const MAX_RESETS: u64 = 100;
/// Chi-square bound of the byte histogram: 255 + 6.5 standard deviations.
pub const CHI2_LIMIT: u64 = 400;
/// Fewest bytes the histogram check is meaningful for (16 per byte value).
pub const MIN_BYTES: u64 = 4096;

/// The device type this frontend drives.
const KIND: Kind = Kind {
    tag: "virtio-rng",
    device_id: 4,
    what: "an entropy device",
};

/// The frontend's DMA pool (one device per program).
struct Pool;
impl PoolOf for Pool {
    fn pool() -> &'static DmaPool {
        static POOL: DmaPool = DmaPool::new();
        &POOL
    }
}

/// Why the check failed.
#[derive(Debug)]
enum Fail<'a> {
    Arg(ArgError<'a>),
    Usage(&'static str),
    Front(FrontError<'a>),
    Call(&'static str, CallError),
    TooManyResets(u64),
    Driver(&'static str, virtio_drivers::Error),
    Short {
        request: u64,
        got: usize,
        asked: usize,
    },
    Missing {
        value: u8,
        bytes: u64,
    },
    Chi2 {
        chi2: u64,
        bytes: u64,
    },
    Repeat {
        first: usize,
        second: usize,
    },
}

impl<'a> From<FrontError<'a>> for Fail<'a> {
    fn from(e: FrontError<'a>) -> Self {
        Fail::Front(e)
    }
}

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "virtio-rng: {e}"),
            Fail::Usage(s) => write!(f, "virtio-rng: {s}"),
            Fail::Front(e) => write!(f, "virtio-rng: {e}"),
            Fail::Call(what, e) => write!(f, "virtio-rng: {what}: {e}"),
            Fail::TooManyResets(n) => {
                write!(f, "virtio-rng: gave up after {n} driver re-initialisations")
            }
            Fail::Driver(what, e) => write!(f, "virtio-rng: {what}: {e}"),
            Fail::Short {
                request,
                got,
                asked,
            } => write!(
                f,
                "virtio-rng: request {request} filled {got} of {asked} bytes"
            ),
            Fail::Missing { value, bytes } => write!(
                f,
                "virtio-rng: byte value {value:#04x} never occurs in {bytes} bytes"
            ),
            Fail::Chi2 { chi2, bytes } => write!(
                f,
                "virtio-rng: chi-square {chi2} of {bytes} bytes is over {CHI2_LIMIT}: not uniform"
            ),
            Fail::Repeat { first, second } => write!(
                f,
                "virtio-rng: 64-byte blocks {first} and {second} are equal"
            ),
        }
    }
}

/// What a passed run measured.
struct Passed {
    /// 64-bit FNV-1a of every byte read, in order.
    digest: u64,
    requests: u64,
    bytes: u64,
    distinct: usize,
    chi2: u64,
    blocks: usize,
    ns: u64,
    resets: u64,
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-rng requests={} bytes={} distinct={} chi2={} blocks={} in {} ({} B/s) resets={}",
            self.requests,
            self.bytes,
            self.distinct,
            self.chi2,
            self.blocks,
            Nanos(self.ns),
            per_second(self.bytes, self.ns),
            self.resets
        )
    }
}

/// Runs the frontend (see the module documentation); prints its `RESULT` line.
pub fn run<P, C, W>(platform: &P, clock: &C, args: &Args<'_>, out: &mut W) -> bool
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let r = run_inner(platform, clock, args, out);
    crate::result(out, r)
}

/// 64-bit FNV-1a.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The chi-square statistic of `hist` (of `n` bytes) against 256 equally likely values,
/// rounded down: Σ (256·c − n)² / (256·n).
pub fn chi_square(hist: &[u64; 256], n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let sum: u128 = hist
        .iter()
        .map(|&c| {
            let d = (256 * u128::from(c)).abs_diff(u128::from(n));
            d * d
        })
        .sum();
    (sum / (256 * u128::from(n))) as u64
}

fn run_inner<'a, P, C, W>(
    platform: &'a P,
    clock: &C,
    args: &Args<'a>,
    out: &mut W,
) -> Result<Passed, Fail<'a>>
where
    P: Platform + ?Sized,
    C: Clock,
    W: Write,
{
    let bytes = args.u64_or("bytes", DEFAULT_BYTES).map_err(Fail::Arg)?;
    let chunk = args.u64_or("chunk", DEFAULT_CHUNK).map_err(Fail::Arg)?;
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(Fail::Usage("chunk= must be 1 to 4096"));
    }
    if bytes < MIN_BYTES {
        return Err(Fail::Usage("bytes= must be at least 4096"));
    }
    let Front { dev, link, .. } = open_frontend(platform, clock, args, "rng", KIND, out)?;
    let guest_base = dev.guest_base;
    Pool::pool().attach(*link.region(), guest_base);
    let r = read_and_check(&link, clock, out, bytes, chunk);
    Pool::pool().detach();
    link.detach();
    if let Ok(p) = &r {
        let _ = writeln!(
            out,
            "virtio-rng: digest {:#018x} (FNV-1a of the {} bytes)",
            p.digest, p.bytes
        );
    }
    r
}

/// The features `VirtIORng` negotiates.
const FEATURES: Feature = Feature::RING_INDIRECT_DESC
    .union(Feature::RING_EVENT_IDX)
    .union(Feature::VERSION_1);
/// `VirtIORng`'s queue size.
const QUEUE_SIZE: usize = 8;

/// virtio-drivers' entropy driver with a request that sleeps on the link's doorbell and
/// gives up when the device restarts (see the module documentation).
pub struct NbRng<'l, E: Events> {
    link: &'l Link<E>,
    transport: MsgTransport<'l, E>,
    queue: VirtQueue<RegionHal<Pool>, QUEUE_SIZE>,
}

impl<'l, E: Events> NbRng<'l, E> {
    /// Initialises the device as `VirtIORng::new` does.
    fn new(
        link: &'l Link<E>,
        mut transport: MsgTransport<'l, E>,
    ) -> Result<Self, virtio_drivers::Error> {
        let feat = transport.begin_init(FEATURES);
        let queue = VirtQueue::new(
            &mut transport,
            0,
            feat.contains(Feature::RING_INDIRECT_DESC),
            feat.contains(Feature::RING_EVENT_IDX),
        )?;
        transport.finish_init();
        Ok(NbRng {
            link,
            transport,
            queue,
        })
    }

    /// Fills `dst` with entropy; the bytes written. `Ok(None)`: the device restarted or
    /// needs a reset (re-initialise and ask again).
    fn request(&mut self, dst: &mut [u8]) -> Result<Option<usize>, Fail<'static>> {
        let link = self.link;
        // SAFETY: dst is neither moved nor touched until the request is popped below; when
        // it is abandoned (a device restart) the driver is dropped and the DMA pool forgets
        // its bounce pages before a new driver is made, so the device can write none of
        // dst's memory (it only ever sees the bounce page).
        let token = match unsafe { self.queue.add(&[], &mut [dst]) } {
            Ok(t) => t,
            Err(_) if link.needs_reset() => return Ok(None),
            Err(e) => return Err(Fail::Driver("adding a request", e)),
        };
        if self.queue.should_notify() {
            self.transport.notify(0);
        }
        while self.queue.peek_used() != Some(token) {
            match link.wait_used() {
                Ok(_) => {}
                Err(CallError::Reset) => return Ok(None),
                Err(e) => return Err(Fail::Call("waiting for the device", e)),
            }
        }
        // SAFETY: the same buffer as added above.
        let n = unsafe { self.queue.pop_used(token, &[], &mut [dst]) }
            .map_err(|e| Fail::Driver("completing a request", e))?;
        Ok(Some(n as usize))
    }
}

impl<E: Events> Drop for NbRng<'_, E> {
    fn drop(&mut self) {
        self.transport.queue_unset(0);
    }
}

/// A new driver over `link` on a fresh DMA pool, for as long as the device restarts
/// during initialisation (each attempt after the first counts in `resets`).
fn driver<'l, E: Events>(
    link: &'l Link<E>,
    resets: &mut u64,
) -> Result<NbRng<'l, E>, Fail<'static>> {
    loop {
        if *resets > MAX_RESETS {
            return Err(Fail::TooManyResets(*resets));
        }
        Pool::pool().attach(*link.region(), link.guest_base());
        match link.transport() {
            Ok(t) => match NbRng::new(link, t) {
                Ok(r) if !link.needs_reset() => return Ok(r),
                Ok(_) => {}
                Err(_) if link.needs_reset() => {}
                Err(e) => return Err(Fail::Driver("driver initialisation", e)),
            },
            Err(CallError::Reset) => {}
            Err(e) => return Err(Fail::Call("device info", e)),
        }
        *resets += 1;
    }
}

fn read_and_check<'a, E: Events, C: Clock, W: Write>(
    link: &Link<E>,
    clock: &C,
    out: &mut W,
    bytes: u64,
    chunk: u64,
) -> Result<Passed, Fail<'a>> {
    let mut resets = 0u64;
    let mut rng = Some(driver(link, &mut resets)?);
    let mut hist = [0u64; 256];
    let mut digests = [0u64; MAX_BLOCKS];
    let mut blocks = 0usize;
    let mut buf = [0u8; MAX_CHUNK as usize];
    // A 64-byte block may span two requests.
    let mut block = [0u8; 64];
    let mut in_block = 0usize;
    let (mut done, mut requests) = (0u64, 0u64);
    let mut digest = fnv1a64(&[]);
    let t0 = clock.now_ns();
    while done < bytes {
        let asked = chunk.min(bytes - done) as usize;
        let dst = &mut buf[..asked];
        let r = match rng.as_mut() {
            Some(r) => r,
            None => rng.insert(driver(link, &mut resets)?),
        };
        let Some(got) = r.request(dst)? else {
            // The device restarted: a new driver, and the same request again.
            rng = None;
            resets += 1;
            let _ = writeln!(
                out,
                "virtio-rng: request {}: the device restarted or needs a reset (epoch {}); \
                 re-initialising, asking again",
                requests + 1,
                link.region()
                    .load_le::<u64>(
                        staticbus_virtio_msg::layout::OFF_DEV_EPOCH,
                        core::sync::atomic::Ordering::Acquire
                    )
                    .unwrap_or(0)
            );
            continue;
        };
        requests += 1;
        if got != asked {
            return Err(Fail::Short {
                request: requests,
                got,
                asked,
            });
        }
        for &b in &dst[..] {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            hist[usize::from(b)] += 1;
            block[in_block] = b;
            in_block += 1;
            if in_block == block.len() {
                in_block = 0;
                if blocks < MAX_BLOCKS {
                    digests[blocks] = fnv1a64(&block);
                    blocks += 1;
                }
            }
        }
        done += asked as u64;
    }
    let ns = clock.now_ns().saturating_sub(t0);
    drop(rng);
    if let Some(v) = hist.iter().position(|&c| c == 0) {
        return Err(Fail::Missing {
            value: v as u8,
            bytes,
        });
    }
    let chi2 = chi_square(&hist, bytes);
    if chi2 >= CHI2_LIMIT {
        return Err(Fail::Chi2 { chi2, bytes });
    }
    let mut sorted = digests;
    let sorted = &mut sorted[..blocks];
    sorted.sort_unstable();
    // The first block (in stream order) whose digest occurs twice, and its next copy.
    let twice = |d: u64| {
        let i = sorted.partition_point(|&x| x < d);
        sorted.get(i + 1) == Some(&d)
    };
    if let Some(first) = digests[..blocks].iter().position(|&d| twice(d)) {
        let d = digests[first];
        let second = digests[first + 1..blocks]
            .iter()
            .position(|&x| x == d)
            .map_or(first, |i| first + 1 + i);
        return Err(Fail::Repeat { first, second });
    }
    Ok(Passed {
        digest,
        requests,
        bytes,
        distinct: hist.iter().filter(|&&c| c > 0).count(),
        chi2,
        blocks,
        ns,
        resets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_of_uniform_and_degenerate_histograms() {
        assert_eq!(chi_square(&[16; 256], 4096), 0);
        let mut one = [0u64; 256];
        one[7] = 4096;
        // All mass on one value: (255·4096)²/(256·4096) + 255·4096²/(256·4096)
        assert_eq!(chi_square(&one, 4096), 255 * 4096);
        // splitmix64 bytes: well under the limit.
        let mut hist = [0u64; 256];
        let mut x = 1u64;
        for _ in 0..8192 {
            x = crate::queue_check::mix(x);
            for b in x.to_le_bytes() {
                hist[usize::from(b)] += 1;
            }
        }
        let c = chi_square(&hist, 65536);
        assert!(c < CHI2_LIMIT, "{c}");
        assert!(c > 150, "suspiciously uniform: {c}");
    }
}
