//! Static shared-memory regions: bounds-checked volatile and atomic access to memory
//! another domain writes too.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64};

/// A static shared-memory region mapped into this domain: a base pointer and a length.
///
/// The memory is shared with other domains that may be buggy or hostile and may change it
/// at any moment, so it is never seen through a Rust reference to plain data: bytes are
/// copied in and out with volatile accesses, and protocol header words are reached as
/// atomics. Every access is bounds- and alignment-checked and fails with an error (never a
/// panic) when it does not fit.
///
/// A `Region` is a plain handle (`Copy`): the transport that creates it promises the
/// memory outlives every copy (see [`Region::new`]). It is neither `Send` nor `Sync`,
/// because its byte copies are volatile, not atomic: within one program, share only the
/// atomic words across threads.
#[derive(Clone, Copy)]
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

/// A byte range that does not fit in a [`Region`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfBounds {
    /// Requested offset.
    pub offset: usize,
    /// Requested length.
    pub len: usize,
    /// The region's length.
    pub region_len: usize,
}

impl fmt::Display for OutOfBounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} bytes at offset {:#x} do not fit in a region of {:#x} bytes",
            self.len, self.offset, self.region_len
        )
    }
}

impl core::error::Error for OutOfBounds {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("base", &self.base)
            .field("len", &format_args!("{:#x}", self.len))
            .finish()
    }
}

impl Region {
    /// A region of `len` bytes at `base`. `None` if `base` is null or `base + len`
    /// overflows the address space.
    ///
    /// # Safety
    ///
    /// The transport that calls this promises, for as long as this region or any copy of
    /// it, or any reference obtained from one, is used:
    ///
    /// * `[base, base + len)` is mapped, readable and writable, and valid for volatile and
    ///   atomic accesses of 1, 4 and 8 bytes (on bare metal: Normal write-back
    ///   inner-shareable memory, spec §5.1); it is never unmapped or freed;
    /// * this program accesses that memory only through `Region`s and raw-pointer
    ///   volatile or atomic accesses — never through Rust references to non-atomic data
    ///   (`&[u8]`, `&mut T`);
    /// * other domains (or processes, on the emulator) may read and write it at any time;
    ///   that is expected and sound, since every access here is volatile or atomic.
    pub unsafe fn new(base: *mut u8, len: usize) -> Option<Region> {
        let base = NonNull::new(base)?;
        base.as_ptr().addr().checked_add(len)?;
        Some(Region { base, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The base pointer (for a transport or an FFI peer; access through it must follow
    /// the contract of [`Region::new`]).
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    #[inline]
    fn check(&self, offset: usize, len: usize) -> Result<(), OutOfBounds> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(OutOfBounds {
                offset,
                len,
                region_len: self.len,
            }),
        }
    }

    /// The sub-region `[offset, offset + len)`, or `None` if it does not fit.
    pub fn sub(&self, offset: usize, len: usize) -> Option<Region> {
        self.check(offset, len).ok()?;
        // SAFETY: `offset + len <= self.len`, so the offset pointer stays inside (or one
        // past the end of) the region's allocation.
        let base = unsafe { self.base.add(offset) };
        Some(Region { base, len })
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` with volatile reads (8 bytes at a
    /// time where the region address is 8-aligned; on x86-64 one `rep movsb` from
    /// [`BLOCK_COPY_MIN`] bytes up). The bytes are a snapshot; a peer may change them at
    /// any time, so validate what you read before using it.
    #[inline]
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: `offset + buf.len() <= self.len` (checked above): the pointer stays
        // inside (or one past the end of) the region.
        let src = unsafe { self.base.as_ptr().add(offset) };
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if buf.len() >= BLOCK_COPY_MIN {
            // SAFETY: `[src, src + buf.len())` is inside the region, valid for reads by
            // `Region::new`'s contract; `buf` is an exclusive borrow of `buf.len()` bytes,
            // which cannot overlap the region (never reachable through references).
            unsafe { block_copy(buf.as_mut_ptr(), src, buf.len()) };
            return Ok(());
        }
        let n = buf.len();
        let lead = src.align_offset(8).min(n);
        let words = (n - lead) / 8;
        for (i, b) in buf[..lead].iter_mut().enumerate() {
            // SAFETY: `i < lead <= n`: in bounds of the checked range; u8 has no
            // alignment.
            *b = unsafe { src.add(i).read_volatile() };
        }
        for w in 0..words {
            let at = lead + 8 * w;
            // SAFETY: `src + lead` is 8-aligned and `at + 8 <= lead + 8 * words <= n`:
            // an aligned word inside the checked range.
            let word = unsafe { src.add(at).cast::<u64>().read_volatile() };
            buf[at..at + 8].copy_from_slice(&word.to_ne_bytes());
        }
        let done = lead + 8 * words;
        for (i, b) in buf[done..].iter_mut().enumerate() {
            // SAFETY: `done + i < n`: in bounds of the checked range.
            *b = unsafe { src.add(done + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `buf` to `offset` with volatile writes (8 bytes at a time where the region
    /// address is 8-aligned; on x86-64 one `rep movsb` from [`BLOCK_COPY_MIN`] bytes up).
    #[inline]
    pub fn write_bytes(&self, offset: usize, buf: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: `offset + buf.len() <= self.len` (checked above): the pointer stays
        // inside (or one past the end of) the region.
        let dst = unsafe { self.base.as_ptr().add(offset) };
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if buf.len() >= BLOCK_COPY_MIN {
            // SAFETY: `[dst, dst + buf.len())` is inside the region, valid for writes by
            // `Region::new`'s contract; `buf` is a shared borrow of `buf.len()` readable
            // bytes that cannot overlap the region.
            unsafe { block_copy(dst, buf.as_ptr(), buf.len()) };
            return Ok(());
        }
        let n = buf.len();
        let lead = dst.align_offset(8).min(n);
        let words = (n - lead) / 8;
        for (i, &b) in buf[..lead].iter().enumerate() {
            // SAFETY: `i < lead <= n`: in bounds of the checked range.
            unsafe { dst.add(i).write_volatile(b) };
        }
        for w in 0..words {
            let at = lead + 8 * w;
            let mut word = [0u8; 8];
            word.copy_from_slice(&buf[at..at + 8]);
            // SAFETY: `dst + lead` is 8-aligned and `at + 8 <= n`: an aligned word inside
            // the checked range.
            unsafe {
                dst.add(at)
                    .cast::<u64>()
                    .write_volatile(u64::from_ne_bytes(word))
            };
        }
        let done = lead + 8 * words;
        for (i, &b) in buf[done..].iter().enumerate() {
            // SAFETY: `done + i < n`: in bounds of the checked range.
            unsafe { dst.add(done + i).write_volatile(b) };
        }
        Ok(())
    }

    /// Hints the CPU to fetch the cache line holding `offset` for writing (x86-64
    /// `prefetchw`; nothing elsewhere or when out of bounds). Never faults, never changes
    /// memory.
    #[inline]
    pub fn prefetch_write(&self, offset: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if offset < self.len {
            // SAFETY: `offset < self.len`, so the address is inside the region; and
            // `prefetchw` is a hint that never faults and changes no memory or flags.
            unsafe {
                core::arch::asm!("prefetchw [{}]", in(reg) self.base.as_ptr().add(offset), options(nostack, preserves_flags, readonly));
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(miri))))]
        let _ = offset;
    }

    #[inline]
    fn aligned(&self, offset: usize, size: usize) -> Option<NonNull<u8>> {
        self.check(offset, size).ok()?;
        // SAFETY: `offset + size <= self.len`: the pointer stays inside the region.
        let p = unsafe { self.base.add(offset) };
        (p.as_ptr().addr() % size == 0).then_some(p)
    }

    /// The 32-bit word at `offset` as an atomic, or `None` if it is out of bounds or the
    /// address is not 4-aligned.
    #[inline]
    pub fn atomic_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let p = self.aligned(offset, 4)?;
        // SAFETY: `p` is 4-aligned and `[p, p + 4)` is inside the region, which
        // `Region::new`'s contract keeps valid for atomic accesses for as long as `self`
        // (and thus the returned reference) is used, and never accesses non-atomically
        // through references. Byte copies of the same memory are volatile accesses by
        // this same handle, which is not `Sync`.
        Some(unsafe { AtomicU32::from_ptr(p.as_ptr().cast::<u32>()) })
    }

    /// The 64-bit word at `offset` as an atomic, or `None` if it is out of bounds or the
    /// address is not 8-aligned.
    #[inline]
    pub fn atomic_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let p = self.aligned(offset, 8)?;
        // SAFETY: as in `atomic_u32`, with `p` 8-aligned and `[p, p + 8)` in bounds.
        Some(unsafe { AtomicU64::from_ptr(p.as_ptr().cast::<u64>()) })
    }
}

/// Copies of at least this many bytes between a [`Region`] and private memory use the
/// CPU's block-copy instruction where it has one (x86-64's `rep movsb`, which moves whole
/// cache lines and writes them without first fetching their old contents — between two
/// cores this doubles the bandwidth of 64 KiB messages; see BENCHMARKS.md). Shorter copies,
/// other architectures and Miri use the volatile word loop.
pub const BLOCK_COPY_MIN: usize = 512;

/// Copies `n` bytes from `src` to `dst` with `rep movsb`.
///
/// Like a volatile access, the copy is opaque to the compiler: it happens exactly once, as
/// machine loads and stores, whatever another domain does to the same bytes meanwhile.
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `n` bytes, and the two ranges
/// must not overlap.
#[cfg(all(target_arch = "x86_64", not(miri)))]
unsafe fn block_copy(dst: *mut u8, src: *const u8, n: usize) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::Backing;
    use core::sync::atomic::Ordering::SeqCst;

    #[test]
    fn new_rejects_null_and_wrapping_ranges() {
        // SAFETY: both calls fail before any memory could be accessed.
        unsafe {
            assert!(Region::new(core::ptr::null_mut(), 16).is_none());
            let mut byte = 0u8;
            assert!(Region::new(&raw mut byte, usize::MAX).is_none());
        }
    }

    #[test]
    fn byte_access_is_bounds_checked() {
        let mem = Backing::new(64);
        let r = mem.region(64);
        assert_eq!(r.len(), 64);
        assert!(!r.is_empty());
        let data: [u8; 21] = core::array::from_fn(|i| i as u8 + 1);
        // Unaligned start, crosses several words.
        r.write_bytes(3, &data).unwrap();
        let mut back = [0u8; 21];
        r.read_bytes(3, &mut back).unwrap();
        assert_eq!(back, data);
        let mut around = [0xffu8; 26];
        r.read_bytes(0, &mut around).unwrap();
        assert_eq!(&around[..3], &[0, 0, 0]);
        assert_eq!(&around[3..24], &data);
        assert_eq!(&around[24..], &[0, 0]);
        // Exactly up to the end is fine; one past is not.
        r.write_bytes(60, &[9; 4]).unwrap();
        let err = r.write_bytes(61, &[9; 4]).unwrap_err();
        assert_eq!(
            err,
            OutOfBounds {
                offset: 61,
                len: 4,
                region_len: 64
            }
        );
        assert!(r.read_bytes(64, &mut [0; 1]).is_err());
        assert!(r.read_bytes(64, &mut []).is_ok());
        assert!(r.read_bytes(usize::MAX, &mut [0; 2]).is_err());
        assert!(r.write_bytes(usize::MAX, &[0; 1]).is_err());
        assert_eq!(
            std::format!("{err}"),
            "4 bytes at offset 0x3d do not fit in a region of 0x40 bytes"
        );
    }

    #[test]
    fn long_copies_land_exactly_where_asked() {
        // Sizes on both sides of the block-copy threshold, at unaligned offsets: every
        // byte lands where asked and nothing around it changes.
        let len = 3 * BLOCK_COPY_MIN + 64;
        let mem = Backing::new(len);
        let r = mem.region(len);
        for n in [
            BLOCK_COPY_MIN - 1,
            BLOCK_COPY_MIN,
            BLOCK_COPY_MIN + 13,
            2 * BLOCK_COPY_MIN + 7,
        ] {
            for at in [0usize, 5, 8, 63] {
                r.write_bytes(0, &std::vec![0xa5u8; len]).unwrap();
                let data: std::vec::Vec<u8> = (0..n).map(|i| (i * 7 + n + at) as u8).collect();
                r.write_bytes(at, &data).unwrap();
                let mut all = std::vec![0u8; len];
                r.read_bytes(0, &mut all).unwrap();
                assert!(
                    all[..at].iter().all(|&b| b == 0xa5),
                    "n {n} at {at}: before"
                );
                assert_eq!(&all[at..at + n], &data[..], "n {n} at {at}");
                assert!(
                    all[at + n..].iter().all(|&b| b == 0xa5),
                    "n {n} at {at}: after"
                );
                let mut back = std::vec![0u8; n];
                r.read_bytes(at, &mut back).unwrap();
                assert_eq!(back, data, "n {n} at {at}: read back");
            }
        }
        assert!(r
            .write_bytes(len - BLOCK_COPY_MIN + 1, &[0; BLOCK_COPY_MIN])
            .is_err());
        assert!(r
            .read_bytes(len - BLOCK_COPY_MIN + 1, &mut [0; BLOCK_COPY_MIN])
            .is_err());
    }

    #[test]
    fn prefetch_is_only_a_hint() {
        let mem = Backing::new(64);
        let r = mem.region(64);
        r.write_bytes(0, &[0x5a; 64]).unwrap();
        for at in [0, 1, 63, 64, 4096, usize::MAX] {
            r.prefetch_write(at);
        }
        let mut all = [0u8; 64];
        r.read_bytes(0, &mut all).unwrap();
        assert_eq!(all, [0x5a; 64]);
    }

    #[test]
    fn atomics_check_bounds_and_alignment() {
        let mem = Backing::new(32);
        let r = mem.region(32);
        r.atomic_u32(4).unwrap().store(0x0403_0201, SeqCst);
        r.atomic_u64(8).unwrap().store(u64::MAX, SeqCst);
        let mut b = [0u8; 12];
        r.read_bytes(4, &mut b).unwrap();
        assert_eq!(&b[..4], &0x0403_0201u32.to_ne_bytes());
        assert_eq!(&b[4..], &[0xff; 8]);
        assert!(r.atomic_u32(2).is_none());
        assert!(r.atomic_u64(4).is_none());
        assert!(r.atomic_u32(28).is_some());
        assert!(r.atomic_u32(32).is_none());
        assert!(r.atomic_u64(24).is_some());
        assert!(r.atomic_u64(32).is_none());
        assert!(r.atomic_u64(usize::MAX - 3).is_none());
    }

    #[test]
    fn sub_regions() {
        let mem = Backing::new(64);
        let r = mem.region(64);
        let s = r.sub(16, 16).unwrap();
        assert_eq!(s.len(), 16);
        s.write_bytes(0, b"abcd").unwrap();
        let mut b = [0u8; 4];
        r.read_bytes(16, &mut b).unwrap();
        assert_eq!(&b, b"abcd");
        assert!(s.write_bytes(13, b"abcd").is_err());
        assert!(s.atomic_u64(8).is_some());
        assert!(r.sub(60, 8).is_none());
        assert!(r.sub(usize::MAX, 2).is_none());
        assert!(r.sub(64, 0).unwrap().is_empty());
        // Misaligned sub-region: alignment is checked on the address, not the offset.
        let odd = r.sub(1, 16).unwrap();
        assert!(odd.atomic_u32(0).is_none());
        assert!(odd.atomic_u32(3).is_some());
    }
}
