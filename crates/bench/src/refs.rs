//! References that cannot be pathological: single-core copies of the same blocks by
//! several methods (the best one is the reference, each is reported, and a disagreement
//! of more than 2× is flagged), the queue's own bulk-copy method chosen by calibration,
//! and the judgement of a run from references measured before and after it.

use crate::ctl::{now_ns, pin};
use staticbus_guest::{BlockCopy, Calibration};
use std::hint::black_box;

/// Environment variable through which the parent hands its bulk-copy method to the peer
/// process (both ends of a queue then copy the same way).
pub const COPY_ENV: &str = "STATICBUS_BENCH_COPY";

/// References that moved more than this fraction between before and after mark a run
/// noisy.
pub const NOISY: f64 = 0.20;

/// Copy references that differ by more than this factor are reported as a disagreement.
pub const DISAGREE: f64 = 2.0;

/// A cache-line one-way time (ns) below this is the "close" vCPU placement (SMT siblings
/// or one core complex: ~50 ns on the EPYC of BENCHMARKS.md), above it "apart" (~280 ns).
pub const CLOSE_BELOW_NS: f64 = 150.0;

extern "C" {
    /// The C library's `memcpy` (glibc on Linux), the platform copy candidate.
    fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
}

/// How the bench's `--copy` option picks the queue's bulk copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyChoice {
    /// Calibrate at start and take the fastest ([`staticbus_guest::calibrate_block_copy`]).
    Auto,
    /// This method, whatever the calibration says.
    Fixed(BlockCopy),
}

/// Parses `auto` or a [`BlockCopy`] name.
pub fn parse_copy(s: &str) -> Result<CopyChoice, String> {
    if s == "auto" {
        return Ok(CopyChoice::Auto);
    }
    BlockCopy::from_name(s)
        .map(CopyChoice::Fixed)
        .ok_or_else(|| {
            let names: Vec<_> = BlockCopy::ALL.iter().map(|m| m.name()).collect();
            format!("`{s}`: not a copy method (auto, {})", names.join(", "))
        })
}

/// Installs glibc's `memcpy` as the platform copy, then selects the queue's bulk-copy
/// method: the one the parent chose (the peer, through [`COPY_ENV`]), the fixed one, or
/// the fastest by a calibration of a few milliseconds. Returns the method and, if it
/// calibrated, what it measured.
pub fn setup_copy(choice: CopyChoice) -> Result<(BlockCopy, Option<Calibration>), String> {
    // SAFETY: the C library's `memcpy` copies exactly `n` bytes between valid disjoint
    // ranges, touches nothing else, is thread-safe, and works on bytes that change under
    // it (it reads each source byte with plain loads; what it copies is a snapshot).
    unsafe { staticbus_guest::set_platform_copy(memcpy) };
    let from_parent = std::env::var(COPY_ENV)
        .ok()
        .and_then(|n| BlockCopy::from_name(&n));
    let (method, cal) = match (from_parent, choice) {
        (Some(m), _) | (None, CopyChoice::Fixed(m)) => (m, None),
        (None, CopyChoice::Auto) => {
            let mut scratch = vec![0u8; 512 << 10];
            for (i, b) in scratch.iter_mut().enumerate() {
                *b = i as u8;
            }
            let cal = staticbus_guest::calibrate_block_copy(&mut scratch, 5, &mut now_ns);
            (cal.fastest, Some(cal))
        }
    };
    if !staticbus_guest::set_block_copy(method) {
        return Err(format!(
            "copy method {} is not available here",
            method.name()
        ));
    }
    // The peer processes inherit it (set before any is spawned).
    std::env::set_var(COPY_ENV, method.name());
    Ok((method, cal))
}

/// One line describing the queue's bulk-copy method and the calibration behind it.
pub fn describe_copy(method: BlockCopy, cal: Option<&Calibration>) -> String {
    match cal {
        None => format!(
            "queue bulk copy (≥ {} B): {} (fixed)",
            staticbus_guest::BLOCK_COPY_MIN,
            method.name()
        ),
        Some(c) => {
            let times: Vec<String> = BlockCopy::ALL
                .iter()
                .filter_map(|m| {
                    c.time[*m as usize].map(|t| {
                        let gbps = (c.bytes * staticbus_guest::CALIBRATION_BLOCKS.len()) as f64
                            / t.max(1) as f64;
                        format!("{} {gbps:.1} GB/s", m.name())
                    })
                })
                .collect();
            format!(
                "queue bulk copy (≥ {} B): {} (calibrated at start on one core, blocks of {:?} B: {})",
                staticbus_guest::BLOCK_COPY_MIN,
                method.name(),
                staticbus_guest::CALIBRATION_BLOCKS,
                times.join(", ")
            )
        }
    }
}

/// A single-core copy method the copy reference tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefCopy {
    /// `copy_from_slice`: the C library's `memcpy` (glibc).
    Glibc,
    /// A [`BlockCopy`] method of the guest crate (`rep movsb`, the wide loop, …).
    Block(BlockCopy),
}

impl RefCopy {
    /// Every copy the reference tries on this machine: glibc `memcpy`, and on x86-64
    /// `rep movsb` and the 64-byte SSE2 loop.
    pub fn all() -> Vec<RefCopy> {
        let mut v = vec![RefCopy::Glibc];
        for m in [BlockCopy::RepMovsb, BlockCopy::Wide] {
            if m.is_available() {
                v.push(RefCopy::Block(m));
            }
        }
        v
    }

    /// Short name.
    pub fn name(self) -> &'static str {
        match self {
            RefCopy::Glibc => "glibc memcpy",
            RefCopy::Block(BlockCopy::RepMovsb) => "rep movsb",
            RefCopy::Block(BlockCopy::Wide) => "SSE2 64 B loop",
            RefCopy::Block(m) => m.name(),
        }
    }
}

/// A single-core copy rate.
#[derive(Clone, Copy, Debug)]
pub struct CopyRate {
    /// Copies per second.
    pub per_sec: f64,
    /// GB/s.
    pub gbps: f64,
}

/// Single-core copies of one warm `size`-byte block to another with `how`, for at least
/// `ms` milliseconds after a warm-up.
pub fn copy_rate(size: usize, how: RefCopy, ms: u64) -> CopyRate {
    pin(0);
    let src: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut dst = vec![0u8; size];
    let run = |iters: u64, dst: &mut [u8]| {
        for _ in 0..iters {
            let n = black_box(size);
            match how {
                RefCopy::Glibc => dst[..n].copy_from_slice(black_box(&src[..n])),
                // SAFETY: both vectors hold `size` bytes and are distinct allocations.
                RefCopy::Block(m) => unsafe {
                    m.copy(dst.as_mut_ptr(), black_box(src.as_ptr()), n)
                },
            }
            black_box(&mut *dst);
        }
    };
    let mut iters = 1u64;
    loop {
        let t = now_ns();
        run(iters, &mut dst);
        if now_ns() - t > 20_000_000 {
            break;
        }
        iters *= 2;
    }
    let t = now_ns();
    let mut done = 0;
    while now_ns() - t < ms * 1_000_000 {
        run(iters, &mut dst);
        done += iters;
    }
    let secs = (now_ns() - t) as f64 / 1e9;
    let per_sec = done as f64 / secs;
    CopyRate {
        per_sec,
        gbps: per_sec * size as f64 / 1e9,
    }
}

/// The copy reference of one block size: every [`RefCopy`] measured, the best one.
#[derive(Clone, Debug)]
pub struct CopyRef {
    /// Each method and its rate.
    pub each: Vec<(RefCopy, CopyRate)>,
}

impl CopyRef {
    /// Measures every method on `size`-byte blocks (`ms` each).
    pub fn measure(size: usize, ms: u64) -> CopyRef {
        CopyRef {
            each: RefCopy::all()
                .into_iter()
                .map(|m| (m, copy_rate(size, m, ms)))
                .collect(),
        }
    }

    /// The fastest method's rate: the reference.
    pub fn best(&self) -> CopyRate {
        self.each
            .iter()
            .map(|(_, r)| *r)
            .max_by(|a, b| a.gbps.total_cmp(&b.gbps))
            .expect("at least glibc")
    }

    /// The slowest method and the factor by which the best beats it, if above
    /// [`DISAGREE`].
    pub fn disagreement(&self) -> Option<(RefCopy, f64)> {
        let (slow, r) = self
            .each
            .iter()
            .min_by(|a, b| a.1.gbps.total_cmp(&b.1.gbps))?;
        let f = self.best().gbps / r.gbps.max(1e-9);
        (f > DISAGREE).then_some((*slow, f))
    }

    /// `glibc memcpy 40.1, rep movsb 38.0, SSE2 64 B loop 35.2 GB/s`.
    pub fn list(&self) -> String {
        let v: Vec<String> = self
            .each
            .iter()
            .map(|(m, r)| format!("{} {:.2}", m.name(), r.gbps))
            .collect();
        format!("{} GB/s", v.join(", "))
    }
}

/// The relative change from `a` to `b` (`|b / a - 1|`).
pub fn moved(a: f64, b: f64) -> f64 {
    if a <= 0.0 {
        return f64::INFINITY;
    }
    (b / a - 1.0).abs()
}

/// The placement a cache-line one-way time shows.
pub fn placement(one_way_ns: f64) -> &'static str {
    if one_way_ns < CLOSE_BELOW_NS {
        "close"
    } else {
        "apart"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_choice_parses_auto_and_every_method() {
        assert_eq!(parse_copy("auto"), Ok(CopyChoice::Auto));
        for m in BlockCopy::ALL {
            assert_eq!(parse_copy(m.name()), Ok(CopyChoice::Fixed(m)));
        }
        let e = parse_copy("memmove").unwrap_err();
        assert!(e.contains("rep-movsb") && e.contains("auto"), "{e}");
    }

    #[test]
    fn disagreement_and_noise_judgements() {
        let rate = |gbps| CopyRate { per_sec: 1.0, gbps };
        let r = CopyRef {
            each: vec![
                (RefCopy::Glibc, rate(1.8)),
                (RefCopy::Block(BlockCopy::RepMovsb), rate(30.0)),
            ],
        };
        assert_eq!(r.best().gbps, 30.0);
        let (slow, f) = r.disagreement().unwrap();
        assert_eq!(slow, RefCopy::Glibc);
        assert!((f - 30.0 / 1.8).abs() < 1e-9);
        let close = CopyRef {
            each: vec![(RefCopy::Glibc, rate(20.0)), (RefCopy::Glibc, rate(39.0))],
        };
        assert!(close.disagreement().is_none());
        assert!(moved(100.0, 119.0) < NOISY && moved(100.0, 121.0) > NOISY);
        assert!(moved(100.0, 79.0) > NOISY);
        assert_eq!(placement(50.0), "close");
        assert_eq!(placement(280.0), "apart");
    }

    #[test]
    fn every_reference_copy_is_measured_and_correct() {
        for how in RefCopy::all() {
            let r = copy_rate(4096, how, 1);
            assert!(r.gbps > 0.0 && r.per_sec > 0.0, "{how:?}");
        }
        // The methods themselves copy exactly (checked in staticbus-guest); here, the
        // reference uses each on real blocks.
        let src: Vec<u8> = (0..4096).map(|i| (i * 7) as u8).collect();
        for how in RefCopy::all() {
            let mut dst = vec![0u8; 4096];
            match how {
                RefCopy::Glibc => dst.copy_from_slice(&src),
                // SAFETY: distinct vectors of 4096 bytes.
                RefCopy::Block(m) => unsafe { m.copy(dst.as_mut_ptr(), src.as_ptr(), 4096) },
            }
            assert_eq!(dst, src, "{how:?}");
        }
    }
}
