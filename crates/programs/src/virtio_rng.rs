//! Virtio entropy frontend: `virtio-drivers`' `VirtIORng`, unchanged, over the virtio-msg
//! transport of `staticbus-virtio-msg` on a shared region and a static event channel,
//! every ring and buffer inside the region (docs/virtio.md). Whoever serves the device —
//! staticbus's built-in entropy device, or a Linux domain's bridge to rust-vmm's
//! vhost-device-rng — is invisible here.
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
//! `RESULT PASS virtio-rng requests=… bytes=… distinct=… chi2=… blocks=… in … (… B/s)`.
//!
//! Arguments: `device=NAME` (the `[[virtio]]` device of this domain's manifest, opened
//! as its frontend with `staticbus_virtio_msg::open`; default `rng`), `bytes=N` (default
//! [`DEFAULT_BYTES`]), `chunk=N` (default [`DEFAULT_CHUNK`], at most [`MAX_CHUNK`]).

use crate::args::{ArgError, Args};
use crate::stats::{per_second, Nanos};
use crate::Clock;
use core::fmt::{self, Write};
use staticbus_guest::manifest::VirtioRole;
use staticbus_guest::{Events, Platform};
use staticbus_virtio_msg::frontend::{Link, LinkError, LinkWaitError};
use staticbus_virtio_msg::hal::{DmaPool, PoolOf, RegionHal};
use staticbus_virtio_msg::open::{open, OpenError};
use virtio_drivers::device::rng::VirtIORng;

/// Bytes read unless `bytes=` says otherwise.
pub const DEFAULT_BYTES: u64 = 64 * 1024;
/// Bytes per request unless `chunk=` says otherwise.
pub const DEFAULT_CHUNK: u64 = 4096;
/// Largest request (one bounce page of the DMA pool).
pub const MAX_CHUNK: u64 = 4096;
/// 64-byte blocks compared for equality.
pub const MAX_BLOCKS: usize = 1024;
/// Chi-square bound of the byte histogram: 255 + 6.5 standard deviations.
pub const CHI2_LIMIT: u64 = 400;
/// Fewest bytes the histogram check is meaningful for (16 per byte value).
pub const MIN_BYTES: u64 = 4096;

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
    Open(OpenError<'a>),
    Link(LinkError),
    Wait(staticbus_guest::Errno),
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

impl fmt::Display for Fail<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fail::Arg(e) => write!(f, "virtio-rng: {e}"),
            Fail::Usage(s) => write!(f, "virtio-rng: {s}"),
            Fail::Open(e) => write!(f, "virtio-rng: {e}"),
            Fail::Link(e) => write!(f, "virtio-rng: {e}"),
            Fail::Wait(e) => write!(f, "virtio-rng: waiting for the device: {e}"),
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
}

impl fmt::Display for Passed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "virtio-rng requests={} bytes={} distinct={} chi2={} blocks={} in {} ({} B/s)",
            self.requests,
            self.bytes,
            self.distinct,
            self.chi2,
            self.blocks,
            Nanos(self.ns),
            per_second(self.bytes, self.ns)
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
    let name = args.str_or("device", "rng");
    let bytes = args.u64_or("bytes", DEFAULT_BYTES).map_err(Fail::Arg)?;
    let chunk = args.u64_or("chunk", DEFAULT_CHUNK).map_err(Fail::Arg)?;
    if chunk == 0 || chunk > MAX_CHUNK {
        return Err(Fail::Usage("chunk= must be 1 to 4096"));
    }
    if bytes < MIN_BYTES {
        return Err(Fail::Usage("bytes= must be at least 4096"));
    }
    let dev = open(platform, name, VirtioRole::Frontend).map_err(Fail::Open)?;
    let (region, port, guest_base) = (dev.region, dev.port, dev.guest_base);
    let (shm, peer) = (dev.device.shm_id, dev.device.peer);
    let _ = writeln!(
        out,
        "virtio-rng: device `{name}`: region `{shm}` ({:#x} bytes at {guest_base:#x}), port {port} to {peer}",
        region.len()
    );
    let t_wait = clock.now_ns();
    let link = Link::attach_waiting(region, || platform.events(), port, guest_base).map_err(
        |e| match e {
            LinkWaitError::Link(e) => Fail::Link(e),
            LinkWaitError::Wait(e) => Fail::Wait(e),
        },
    )?;
    let info = link
        .device_info()
        .map_err(|_| Fail::Usage("DEVICE_INFO failed"))?;
    let _ = writeln!(
        out,
        "virtio-rng: device side up after {} (epoch {}): device id {}, vendor {:#x}, {} queue(s)",
        Nanos(clock.now_ns().saturating_sub(t_wait)),
        link.epoch(),
        info.device_id,
        info.vendor_id,
        info.max_vqs
    );
    if info.device_id != 4 {
        return Err(Fail::Usage("the device is not an entropy device (id 4)"));
    }
    Pool::pool().attach(*link.region(), guest_base);
    let r = read_and_check(&link, clock, bytes, chunk);
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

fn read_and_check<'a, E: Events, C: Clock>(
    link: &Link<E>,
    clock: &C,
    bytes: u64,
    chunk: u64,
) -> Result<Passed, Fail<'a>> {
    let transport = link
        .transport()
        .map_err(|_| Fail::Usage("the device restarted during initialisation"))?;
    let mut rng = VirtIORng::<RegionHal<Pool>, _>::new(transport)
        .map_err(|e| Fail::Driver("driver initialisation", e))?;
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
        let got = rng
            .request_entropy(dst)
            .map_err(|e| Fail::Driver("request_entropy", e))?;
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
