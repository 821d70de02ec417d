//! How a [`Region`](super::Region) moves copies of [`BLOCK_COPY_MIN`] bytes and more: the
//! method is chosen at run time, by what is fast on the machine the program runs on
//! ([`calibrate_block_copy`], then [`set_block_copy`]), not fixed at compile time. A
//! CPU's copy paths have size ranges where one of them is pathological (glibc's `memcpy`
//! at 16–64 KiB, or `rep movsb` on some hosts), so a program measures once at start and
//! keeps the fastest.
//!
//! Unless the program selects a method itself, on x86-64 the first block copy of the
//! process calibrates once (a few tens of microseconds: [`calibrate_block_copy`] on a
//! 64 KiB static scratch area, timed with the time-stamp counter) and keeps the fastest;
//! copies made by other threads while that runs use `rep movsb`. Other targets (and Miri)
//! use the volatile word loop. The platform's own copy routine (glibc's `memcpy` in a Linux
//! process) is one of the candidates once the program installs it with
//! [`set_platform_copy`]; a `no_std` guest without one simply does not have that choice.

use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// Copies of at least this many bytes between a [`Region`](super::Region) and private
/// memory use the selected [`BlockCopy`] method; shorter ones always use the volatile word
/// loop (its fixed cost is the lowest, which is what short messages pay).
pub const BLOCK_COPY_MIN: usize = 512;

/// A way to copy a block of bytes between shared and private memory. Every method copies
/// each byte exactly once as machine loads and stores the compiler cannot remove, merge
/// or repeat (volatile accesses, inline assembly, or a call to an opaque platform
/// routine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BlockCopy {
    /// Volatile 8-byte words (every target; the only one under Miri).
    Words = 0,
    /// x86-64 `rep movsb` (the CPU's microcoded block copy).
    RepMovsb = 1,
    /// x86-64 unrolled 16-byte SSE2 loads and stores, 64 bytes per iteration.
    Wide = 2,
    /// The platform's copy routine installed with [`set_platform_copy`] (e.g. glibc's
    /// `memcpy`).
    Platform = 3,
}

/// A platform copy routine with C `memcpy`'s signature: copies `n` bytes from `src` to
/// `dst` (disjoint) and returns `dst`.
pub type PlatformCopy = unsafe extern "C" fn(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;

const X86: bool = cfg!(all(target_arch = "x86_64", not(miri)));

const DEFAULT: BlockCopy = if X86 {
    BlockCopy::RepMovsb
} else {
    BlockCopy::Words
};

/// `METHOD` before the first block copy on x86-64: calibrate then.
const AUTO: u8 = 0xfe;
/// `METHOD` while one thread calibrates (the others use [`DEFAULT`]).
const CALIBRATING: u8 = 0xff;

static METHOD: AtomicU8 = AtomicU8::new(if X86 { AUTO } else { DEFAULT as u8 });
static PLATFORM: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

impl BlockCopy {
    /// Every method, available here or not.
    pub const ALL: [BlockCopy; 4] = [
        BlockCopy::Words,
        BlockCopy::RepMovsb,
        BlockCopy::Wide,
        BlockCopy::Platform,
    ];

    /// Short name (`words`, `rep-movsb`, `wide`, `platform`).
    pub fn name(self) -> &'static str {
        match self {
            BlockCopy::Words => "words",
            BlockCopy::RepMovsb => "rep-movsb",
            BlockCopy::Wide => "wide",
            BlockCopy::Platform => "platform",
        }
    }

    /// The method called `name` ([`BlockCopy::name`]).
    pub fn from_name(name: &str) -> Option<BlockCopy> {
        BlockCopy::ALL.into_iter().find(|m| m.name() == name)
    }

    fn from_raw(raw: u8) -> BlockCopy {
        match raw {
            1 => BlockCopy::RepMovsb,
            2 => BlockCopy::Wide,
            3 => BlockCopy::Platform,
            _ => BlockCopy::Words,
        }
    }

    /// Whether this method exists here: the x86-64 ones on x86-64 (not under Miri), the
    /// platform one once [`set_platform_copy`] installed a routine.
    pub fn is_available(self) -> bool {
        match self {
            BlockCopy::Words => true,
            BlockCopy::RepMovsb | BlockCopy::Wide => X86,
            BlockCopy::Platform => platform().is_some(),
        }
    }

    /// Copies `n` bytes from `src` to `dst` with this method (the word loop if the method
    /// is not available here).
    ///
    /// # Safety
    ///
    /// `src` is valid for reads and `dst` for writes of `n` bytes, and the two ranges do
    /// not overlap. Either may be shared memory that another domain changes meanwhile
    /// (accessed only by volatile or atomic accesses, as [`Region::new`](super::Region::new)
    /// requires): the bytes copied are then a snapshot.
    #[inline]
    pub unsafe fn copy(self, dst: *mut u8, src: *const u8, n: usize) {
        match self {
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            // SAFETY: forwarded from the caller.
            BlockCopy::RepMovsb => unsafe { rep_movsb(dst, src, n) },
            #[cfg(all(target_arch = "x86_64", not(miri)))]
            // SAFETY: forwarded from the caller.
            BlockCopy::Wide => unsafe { wide(dst, src, n) },
            BlockCopy::Platform => match platform() {
                // SAFETY: the routine was installed by `set_platform_copy`, whose caller
                // promised it copies exactly `n` bytes between valid disjoint ranges,
                // which ours are (forwarded from our caller). It is an opaque call: the
                // compiler cannot assume anything about the bytes it moves.
                Some(f) => unsafe {
                    f(dst, src, n);
                },
                // SAFETY: forwarded from the caller.
                None => unsafe { words(dst, src, n) },
            },
            // SAFETY: forwarded from the caller.
            _ => unsafe { words(dst, src, n) },
        }
    }
}

/// Copies `n` bytes with the selected method and returns `true`, or returns `false`
/// without copying when the selection is the word loop (the caller's own). Out of line, so
/// the callers' short-copy path stays as small as it was with one fixed instruction (their
/// code size decides how they inline into the protocols' per-message paths).
///
/// # Safety
///
/// As [`BlockCopy::copy`].
#[inline(never)]
pub(super) unsafe fn selected(dst: *mut u8, src: *const u8, n: usize) -> bool {
    let method = block_copy();
    if method == BlockCopy::Words {
        return false;
    }
    // SAFETY: forwarded from the caller.
    unsafe { method.copy(dst, src, n) };
    true
}

fn platform() -> Option<PlatformCopy> {
    let raw = PLATFORM.load(Ordering::Acquire);
    if raw.is_null() {
        return None;
    }
    // SAFETY: the only non-null values ever stored are `PlatformCopy` function pointers
    // cast to `*mut ()` (`set_platform_copy`); casting back gives the same function
    // pointer (same size, provenance kept).
    Some(unsafe { core::mem::transmute::<*mut (), PlatformCopy>(raw) })
}

/// The method copies of [`BLOCK_COPY_MIN`] bytes and more use now (process-wide). On
/// x86-64, the first call calibrates unless a method was selected before.
#[inline]
pub fn block_copy() -> BlockCopy {
    match METHOD.load(Ordering::Relaxed) {
        AUTO => auto_select(),
        CALIBRATING => DEFAULT,
        raw => BlockCopy::from_raw(raw),
    }
}

/// Scratch memory of the automatic calibration, touched only by the one thread that wins
/// the `AUTO -> CALIBRATING` exchange, once.
#[cfg(all(target_arch = "x86_64", not(miri)))]
struct Scratch(core::cell::UnsafeCell<[u8; AUTO_SCRATCH]>);

#[cfg(all(target_arch = "x86_64", not(miri)))]
// SAFETY: the contents are reached only by the single winner of the exchange in
// `auto_select` (see there), so no two threads ever access them.
unsafe impl Sync for Scratch {}

/// Bytes of the automatic calibration's scratch area (blocks up to 16 KiB are timed).
#[cfg(all(target_arch = "x86_64", not(miri)))]
const AUTO_SCRATCH: usize = 64 << 10;

#[cfg(all(target_arch = "x86_64", not(miri)))]
static SCRATCH: Scratch = Scratch(core::cell::UnsafeCell::new([0; AUTO_SCRATCH]));

/// The automatic calibration (x86-64): the first caller calibrates on [`SCRATCH`] with
/// the time-stamp counter and selects the fastest method, unless something selected one
/// meanwhile; callers racing with it get [`DEFAULT`].
#[cold]
#[inline(never)]
fn auto_select() -> BlockCopy {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    if METHOD
        .compare_exchange(AUTO, CALIBRATING, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        // SAFETY: this thread won the only `AUTO -> CALIBRATING` exchange there will ever
        // be (nothing stores `AUTO` again), so it is the only one ever to reach the
        // scratch area.
        let scratch = unsafe { &mut *SCRATCH.0.get() };
        // SAFETY: `rdtsc` reads the time-stamp counter; it has no preconditions.
        let mut tsc = || unsafe { core::arch::x86_64::_rdtsc() };
        let cal = calibrate_block_copy(scratch, 3, &mut tsc);
        // An explicit `set_block_copy` made meanwhile wins over the calibration.
        let _ = METHOD.compare_exchange(
            CALIBRATING,
            cal.fastest as u8,
            Ordering::Release,
            Ordering::Relaxed,
        );
        return block_copy();
    }
    DEFAULT
}

/// Selects the method for copies of [`BLOCK_COPY_MIN`] bytes and more, process-wide
/// (instead of the automatic calibration, if it did not run yet). Returns `false` (and
/// changes nothing) if the method is not available here. Copies in progress finish with
/// the method they started with.
pub fn set_block_copy(method: BlockCopy) -> bool {
    if !method.is_available() {
        return false;
    }
    METHOD.store(method as u8, Ordering::Relaxed);
    true
}

/// Installs the platform's copy routine as the [`BlockCopy::Platform`] candidate (a Linux
/// process: glibc's `memcpy`). It does not select it: [`set_block_copy`] does.
///
/// # Safety
///
/// For as long as the program runs, `f(dst, src, n)` must copy exactly the `n` bytes of
/// `[src, src + n)` to `[dst, dst + n)` for any valid, disjoint ranges, touch no other
/// memory, and be safe to call from any thread; it must not assume the source bytes
/// stay unchanged while it copies (another domain may write them).
pub unsafe fn set_platform_copy(f: PlatformCopy) {
    PLATFORM.store(f as *mut (), Ordering::Release);
}

/// The volatile word loop: bytes up to `dst`'s 8-alignment, then 8-byte words where
/// `src` is 8-aligned at the same points (bytes otherwise), then the tail; every access
/// volatile on both sides.
///
/// # Safety
///
/// As [`BlockCopy::copy`].
unsafe fn words(dst: *mut u8, src: *const u8, n: usize) {
    let lead = dst.align_offset(8).min(n);
    let same = src.wrapping_add(lead).align_offset(8) == 0;
    let mut i = 0;
    while i < n {
        if i >= lead && i + 8 <= n && same {
            // SAFETY: `i + 8 <= n`: inside both ranges, which the caller guarantees
            // valid; `dst + i` is 8-aligned (`i` is `lead` plus a multiple of 8), and so
            // is `src + i` (`same`).
            unsafe {
                let w = src.add(i).cast::<u64>().read_volatile();
                dst.add(i).cast::<u64>().write_volatile(w);
            }
            i += 8;
        } else {
            // SAFETY: `i < n`: inside both ranges; bytes have no alignment.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
            i += 1;
        }
    }
}

/// `rep movsb`.
///
/// # Safety
///
/// As [`BlockCopy::copy`].
#[cfg(all(target_arch = "x86_64", not(miri)))]
unsafe fn rep_movsb(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges are valid and disjoint. The x86-64 ABI
    // guarantees the direction flag is clear at this point, so `rep movsb` copies
    // forwards, touching exactly `[src, src + n)` and `[dst, dst + n)`; it changes no
    // flags and uses no stack.
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _,
            inout("rdi") dst => _,
            inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
}

/// Unrolled SSE2 copy: 64 bytes per iteration (four unaligned 16-byte loads, then four
/// stores), then the last `n % 64` bytes as one more 64-byte step ending at `n` (it
/// overlaps bytes already copied, which rewrites them with the same source bytes);
/// copies shorter than 64 bytes go to the word loop.
///
/// # Safety
///
/// As [`BlockCopy::copy`].
#[cfg(all(target_arch = "x86_64", not(miri)))]
unsafe fn wide(dst: *mut u8, src: *const u8, n: usize) {
    if n < 64 {
        // SAFETY: forwarded from the caller.
        return unsafe { words(dst, src, n) };
    }
    let body = n & !63;
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes and disjoint.
    // The loop touches `[0, body)` of both in 64-byte steps (`body` is a non-zero
    // multiple of 64, at most `n`), and the last step `[n - 64, n)`, inside both ranges
    // since `n >= 64`. SSE2 is part of the x86-64 baseline; the four xmm registers are
    // declared clobbered; no stack is used.
    unsafe {
        core::arch::asm!(
            "2:",
            "movdqu xmm0, [{s}]",
            "movdqu xmm1, [{s} + 16]",
            "movdqu xmm2, [{s} + 32]",
            "movdqu xmm3, [{s} + 48]",
            "movdqu [{d}], xmm0",
            "movdqu [{d} + 16], xmm1",
            "movdqu [{d} + 32], xmm2",
            "movdqu [{d} + 48], xmm3",
            "add {s}, 64",
            "add {d}, 64",
            "sub {c}, 64",
            "jnz 2b",
            "movdqu xmm0, [{se} - 64]",
            "movdqu xmm1, [{se} - 48]",
            "movdqu xmm2, [{se} - 32]",
            "movdqu xmm3, [{se} - 16]",
            "movdqu [{de} - 64], xmm0",
            "movdqu [{de} - 48], xmm1",
            "movdqu [{de} - 32], xmm2",
            "movdqu [{de} - 16], xmm3",
            s = inout(reg) src => _,
            d = inout(reg) dst => _,
            c = inout(reg) body => _,
            se = in(reg) src.add(n),
            de = in(reg) dst.add(n),
            out("xmm0") _,
            out("xmm1") _,
            out("xmm2") _,
            out("xmm3") _,
            options(nostack)
        );
    }
}

/// Block sizes [`calibrate_block_copy`] times: across the range where one copy path or
/// another has been seen to be pathological (BENCHMARKS.md, issue 18).
pub const CALIBRATION_BLOCKS: [usize; 4] = [BLOCK_COPY_MIN, 4096, 16384, 65536];

/// What [`calibrate_block_copy`] measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calibration {
    /// For each method (indexed by `BlockCopy as usize`), the sum over
    /// [`CALIBRATION_BLOCKS`] of the best time (clock units) to copy `bytes` bytes in
    /// blocks of that size; `None`: not available here.
    pub time: [Option<u64>; 4],
    /// Bytes copied per block size and round.
    pub bytes: usize,
    /// The fastest available method (`Words` when nothing else could be timed).
    pub fastest: BlockCopy,
}

/// Times every available [`BlockCopy`] method on copies between the two halves of the
/// private `scratch` (blocks of each of [`CALIBRATION_BLOCKS`] that fit, `rounds`
/// rounds, the methods interleaved within each round, the best round kept) and returns
/// the times and the fastest (the smallest sum over the block sizes, so a method that is
/// pathological at one size loses). `clock` is any monotonic clock (nanoseconds, cycles).
/// It selects nothing: pass [`Calibration::fastest`] to [`set_block_copy`].
///
/// Cheap: `rounds × methods × block sizes × scratch.len() / 2` bytes copied (with 512 KiB
/// of scratch and 5 rounds, 20 MiB: a few milliseconds).
pub fn calibrate_block_copy(
    scratch: &mut [u8],
    rounds: u32,
    clock: &mut dyn FnMut() -> u64,
) -> Calibration {
    let half = scratch.len() / 2;
    let (src, dst) = scratch.split_at_mut(half);
    let mut time = [None::<u64>; 4];
    let mut best = [[u64::MAX; CALIBRATION_BLOCKS.len()]; 4];
    let methods = BlockCopy::ALL;
    for round in 0..rounds.max(1) as usize {
        for k in 0..methods.len() {
            // Rotate the order every round, so no method always runs first (cold) or
            // right after the same other one.
            let m = methods[(k + round) % methods.len()];
            if !m.is_available() {
                continue;
            }
            for (b, &block) in CALIBRATION_BLOCKS.iter().enumerate() {
                if block > half {
                    continue;
                }
                let t0 = clock();
                let mut at = 0;
                while at + block <= half {
                    // SAFETY: `[at, at + block)` is inside both halves, which are
                    // disjoint borrows of `scratch`.
                    unsafe { m.copy(dst.as_mut_ptr().add(at), src.as_ptr().add(at), block) };
                    at += block;
                }
                let dt = clock().saturating_sub(t0);
                let slot = &mut best[m as usize][b];
                *slot = (*slot).min(dt);
            }
        }
    }
    let mut fastest = BlockCopy::Words;
    for m in methods {
        if !m.is_available() {
            continue;
        }
        let sum = best[m as usize]
            .iter()
            .zip(CALIBRATION_BLOCKS)
            .filter(|&(_, block)| block <= half)
            .fold(0u64, |s, (&t, _)| s.saturating_add(t));
        time[m as usize] = Some(sum);
        if time[fastest as usize].is_none_or(|f| sum < f) {
            fastest = m;
        }
    }
    Calibration {
        time,
        bytes: half,
        fastest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;
    use std::vec::Vec;

    /// Clock units the platform copy below charges per byte (the calibration test's fake
    /// clock adds them up).
    static CHARGED: AtomicU64 = AtomicU64::new(0);

    unsafe extern "C" fn slow_copy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        CHARGED.fetch_add(1000 * n as u64, Ordering::Relaxed);
        // SAFETY: `set_platform_copy`'s contract: valid, disjoint ranges of `n` bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
        dst
    }

    #[test]
    fn every_method_copies_exactly_the_range() {
        // SAFETY: `slow_copy` copies exactly `n` bytes between valid disjoint ranges.
        unsafe { set_platform_copy(slow_copy) };
        let sizes: &[usize] = if cfg!(miri) {
            &[0, 1, 63, 64, 65, 200]
        } else {
            &[0, 1, 7, 63, 64, 65, 127, 128, 511, 512, 513, 4096 + 9]
        };
        for m in BlockCopy::ALL {
            for &n in sizes {
                for (s_at, d_at) in [(0usize, 0usize), (3, 0), (0, 5), (8, 8), (1, 7)] {
                    let src: Vec<u8> = (0..n + 16).map(|i| (i * 13 + n) as u8).collect();
                    let mut dst = std::vec![0xa5u8; n + 16];
                    // SAFETY: both ranges are inside their vectors and disjoint.
                    unsafe { m.copy(dst.as_mut_ptr().add(d_at), src.as_ptr().add(s_at), n) };
                    assert!(dst[..d_at].iter().all(|&b| b == 0xa5), "{m:?} {n}: before");
                    assert_eq!(&dst[d_at..d_at + n], &src[s_at..s_at + n], "{m:?} {n}");
                    assert!(
                        dst[d_at + n..].iter().all(|&b| b == 0xa5),
                        "{m:?} {n}: after"
                    );
                }
            }
        }
    }

    #[test]
    fn the_automatic_selection_is_an_available_method() {
        // Whatever ran first in this process (calibration, explicit selection), the
        // answer is settled and available.
        let m = block_copy();
        assert!(m.is_available(), "{m:?}");
        assert!(!matches!(METHOD.load(Ordering::Relaxed), AUTO));
    }

    #[test]
    fn names_round_trip() {
        for m in BlockCopy::ALL {
            assert_eq!(BlockCopy::from_name(m.name()), Some(m));
            assert_eq!(BlockCopy::from_raw(m as u8), m);
        }
        assert_eq!(BlockCopy::from_name("memmove"), None);
    }

    /// The only test that changes the process-wide selection (the others copy with an
    /// explicit method, so they pass whichever method is selected meanwhile).
    #[test]
    fn calibration_times_every_available_method_and_selection_sticks() {
        // SAFETY: `slow_copy` copies exactly `n` bytes between valid disjoint ranges.
        unsafe { set_platform_copy(slow_copy) };
        assert!(BlockCopy::Platform.is_available() && BlockCopy::Words.is_available());
        assert_eq!(BlockCopy::RepMovsb.is_available(), X86);
        assert_eq!(BlockCopy::Wide.is_available(), X86);
        let mut scratch = std::vec![0u8; if cfg!(miri) { 2 * 1024 } else { 256 << 10 }];
        for (i, b) in scratch.iter_mut().enumerate() {
            *b = i as u8;
        }
        // A fake clock: one unit per reading, plus what the (slow) platform copy charged.
        let mut ticks = 0u64;
        let cal = calibrate_block_copy(&mut scratch, 2, &mut || {
            ticks += 1;
            ticks + CHARGED.load(Ordering::Relaxed)
        });
        assert_eq!(cal.bytes, scratch.len() / 2);
        for m in BlockCopy::ALL {
            assert_eq!(cal.time[m as usize].is_some(), m.is_available(), "{m:?}");
        }
        let platform = cal.time[BlockCopy::Platform as usize].unwrap();
        assert!(platform >= 1000 * BLOCK_COPY_MIN as u64, "{cal:?}");
        assert_ne!(cal.fastest, BlockCopy::Platform, "{cal:?}");
        assert!(cal.time[cal.fastest as usize].unwrap() < platform);
        let (src, dst) = scratch.split_at(scratch.len() / 2);
        assert_eq!(
            src, dst,
            "the calibration copied the first half to the second"
        );
        let before = block_copy();
        for m in BlockCopy::ALL {
            assert_eq!(set_block_copy(m), m.is_available());
            if m.is_available() {
                assert_eq!(block_copy(), m);
            }
        }
        assert!(set_block_copy(before));
    }
}
