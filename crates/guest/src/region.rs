//! Static shared-memory regions: bounds-checked volatile and atomic access to memory
//! another domain writes too.

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

mod copy;

pub use copy::{
    block_copy, calibrate_block_copy, set_block_copy, set_platform_copy, BlockCopy, Calibration,
    PlatformCopy, BLOCK_COPY_MIN, CALIBRATION_BLOCKS,
};

/// A static shared-memory region mapped into this domain: a base pointer and a length.
///
/// The memory is shared with other domains that may be buggy or hostile and may change it
/// at any moment, so it is never seen through a Rust reference to plain data: bytes are
/// copied in and out with volatile accesses, and fields are reached as atomics of one
/// typed vocabulary for every [`Word`] (`u8`, `u16`, `u32`, `u64`): [`Region::atomic`],
/// [`Region::load_le`], [`Region::store_le`]. Every access is bounds- and
/// alignment-checked and fails with an error (never a panic) when it does not fit.
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
    ///   atomic accesses of 1, 2, 4 and 8 bytes (on bare metal: Normal write-back
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
    /// time where the region address is 8-aligned; from [`BLOCK_COPY_MIN`] bytes up, the
    /// selected [`BlockCopy`] method). The bytes are a snapshot; a peer may change them at
    /// any time, so validate what you read before using it.
    #[inline]
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: `offset + buf.len() <= self.len` (checked above): the pointer stays
        // inside (or one past the end of) the region.
        let src = unsafe { self.base.as_ptr().add(offset) };
        if buf.len() >= BLOCK_COPY_MIN {
            // SAFETY: `[src, src + buf.len())` is inside the region, valid for reads by
            // `Region::new`'s contract (and only accessed by such copies); `buf` is an
            // exclusive borrow of `buf.len()` bytes, which cannot overlap the region
            // (never reachable through references).
            let done = unsafe { copy::selected(buf.as_mut_ptr(), src, buf.len()) };
            if done {
                return Ok(());
            }
        }
        let n = buf.len();
        let lead = src.align_offset(8).min(n);
        let words = (n - lead) / 8;
        for (i, b) in buf[..lead].iter_mut().enumerate() {
            // SAFETY: `i < lead <= n`: in bounds of the checked range; u8 has no
            // alignment.
            *b = unsafe { src.add(i).read_volatile() };
        }
        // One chunk per word, without a bounds check per word.
        for (w, chunk) in buf[lead..lead + 8 * words].chunks_exact_mut(8).enumerate() {
            // SAFETY: `src + lead` is 8-aligned and `lead + 8 * w + 8 <= lead + 8 * words
            // <= n`: an aligned word inside the checked range.
            let word = unsafe { src.add(lead + 8 * w).cast::<u64>().read_volatile() };
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let done = lead + 8 * words;
        for (i, b) in buf[done..].iter_mut().enumerate() {
            // SAFETY: `done + i < n`: in bounds of the checked range.
            *b = unsafe { src.add(done + i).read_volatile() };
        }
        Ok(())
    }

    /// Copies `buf` to `offset` with volatile writes (8 bytes at a time where the region
    /// address is 8-aligned; from [`BLOCK_COPY_MIN`] bytes up, the selected [`BlockCopy`]
    /// method).
    #[inline]
    pub fn write_bytes(&self, offset: usize, buf: &[u8]) -> Result<(), OutOfBounds> {
        self.check(offset, buf.len())?;
        // SAFETY: `offset + buf.len() <= self.len` (checked above): the pointer stays
        // inside (or one past the end of) the region.
        let dst = unsafe { self.base.as_ptr().add(offset) };
        if buf.len() >= BLOCK_COPY_MIN {
            // SAFETY: `[dst, dst + buf.len())` is inside the region, valid for writes by
            // `Region::new`'s contract; `buf` is a shared borrow of `buf.len()` readable
            // bytes that cannot overlap the region.
            let done = unsafe { copy::selected(dst, buf.as_ptr(), buf.len()) };
            if done {
                return Ok(());
            }
        }
        let n = buf.len();
        let lead = dst.align_offset(8).min(n);
        let words = (n - lead) / 8;
        for (i, &b) in buf[..lead].iter().enumerate() {
            // SAFETY: `i < lead <= n`: in bounds of the checked range.
            unsafe { dst.add(i).write_volatile(b) };
        }
        // One chunk per word, without a bounds check per word.
        for (w, chunk) in buf[lead..lead + 8 * words].chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            // SAFETY: `dst + lead` is 8-aligned and `lead + 8 * w + 8 <= n`: an aligned
            // word inside the checked range.
            unsafe {
                dst.add(lead + 8 * w)
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

    /// Hints the CPU to fetch the cache line holding `offset` for reading (x86-64
    /// `prefetcht0`; nothing elsewhere or when out of bounds). Never faults, never changes
    /// memory. A reader that knows which lines it will read next (the queue's consumer:
    /// the records below the published head) can so have their cache-line transfers in
    /// flight together instead of one after another.
    #[inline]
    pub fn prefetch_read(&self, offset: usize) {
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        if offset < self.len {
            // SAFETY: `offset < self.len`, so the address is inside the region; and
            // `prefetcht0` is a hint that never faults and changes no memory or flags.
            unsafe {
                core::arch::asm!("prefetcht0 [{}]", in(reg) self.base.as_ptr().add(offset), options(nostack, preserves_flags, readonly));
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

    /// The `T` at `offset` as an atomic (`AtomicU8` … `AtomicU64`), or `None` if it is
    /// out of bounds or the address is not aligned to `T`'s size. The value is in native
    /// byte order; read-modify-write operations (`fetch_or`, `compare_exchange`, …) go
    /// through it.
    #[inline]
    pub fn atomic<T: Word>(&self, offset: usize) -> Option<&T::Atomic> {
        let p = self.aligned(offset, T::SIZE)?;
        // SAFETY: `p` is aligned to `T::SIZE` (which is the atomic's alignment) and
        // `[p, p + T::SIZE)` is inside the region, which `Region::new`'s contract keeps
        // valid for atomic accesses for as long as `self` (and thus the returned
        // reference) is used, and never accesses non-atomically through references. Byte
        // copies of the same memory are volatile accesses by this same handle, which is
        // not `Sync`.
        Some(unsafe { T::atomic_at(p.as_ptr()) })
    }

    /// Loads the little-endian `T` field at `offset` with one atomic load of `order`
    /// (`None`: out of bounds or misaligned, as [`Region::atomic`]).
    #[inline]
    pub fn load_le<T: Word>(&self, offset: usize, order: Ordering) -> Option<T> {
        Some(T::from_le(T::load(self.atomic::<T>(offset)?, order)))
    }

    /// Writes `value` as the little-endian `T` at `offset` with one plain (volatile, not
    /// atomic) aligned write: what [`Region::write_bytes`] does for `T::SIZE` bytes at an
    /// aligned offset, without its alignment and length cases (`None`: out of bounds or
    /// misaligned, nothing written). For bytes no peer reads before a later release store
    /// publishes them.
    #[inline]
    pub fn write_plain_le<T: Word>(&self, offset: usize, value: T) -> Option<()> {
        let p = self.aligned(offset, T::SIZE)?;
        // SAFETY: `p` is aligned to `T::SIZE` and `[p, p + T::SIZE)` is inside the region
        // (checked by `aligned`), valid for writes by `Region::new`'s contract; a volatile
        // write of a plain integer, like the words of `write_bytes`.
        unsafe { p.as_ptr().cast::<T>().write_volatile(value.to_le()) };
        Some(())
    }

    /// Stores `value` as the little-endian `T` field at `offset` with one atomic store of
    /// `order` (`None`: out of bounds or misaligned, nothing stored).
    #[inline]
    pub fn store_le<T: Word>(&self, offset: usize, value: T, order: Ordering) -> Option<()> {
        T::store(self.atomic::<T>(offset)?, T::to_le(value), order);
        Some(())
    }
}

mod sealed {
    /// Keeps [`Word`](super::Word) to the four types below.
    pub trait Sealed {}
}

/// An unsigned integer a [`Region`] accesses as one naturally aligned atomic: `u8`, `u16`,
/// `u32` or `u64` (sealed). Protocol fields are little-endian ([`Region::load_le`],
/// [`Region::store_le`]); [`Region::atomic`] gives the atomic itself.
pub trait Word: sealed::Sealed + Copy + Eq + fmt::Debug + 'static {
    /// The atomic type of the same size and alignment.
    type Atomic;
    /// Size in bytes, also the required alignment.
    const SIZE: usize;

    /// The atomic at `p`.
    ///
    /// # Safety
    ///
    /// `p` is aligned to [`Word::SIZE`] and valid for atomic reads and writes of that many
    /// bytes for `'a`, accessed only atomically (or by volatile copies of one
    /// non-`Sync` handle) meanwhile.
    #[doc(hidden)]
    unsafe fn atomic_at<'a>(p: *mut u8) -> &'a Self::Atomic;
    /// `atomic.load(order)`.
    #[doc(hidden)]
    fn load(atomic: &Self::Atomic, order: Ordering) -> Self;
    /// `atomic.store(value, order)`.
    #[doc(hidden)]
    fn store(atomic: &Self::Atomic, value: Self, order: Ordering);
    /// The value of little-endian bytes read natively (`u32::from_le` …).
    #[doc(hidden)]
    fn from_le(raw: Self) -> Self;
    /// The native value whose bytes are `self` little-endian (`u32::to_le` …).
    #[doc(hidden)]
    fn to_le(self) -> Self;
}

macro_rules! word {
    ($t:ty, $atomic:ty) => {
        impl sealed::Sealed for $t {}

        impl Word for $t {
            type Atomic = $atomic;
            const SIZE: usize = core::mem::size_of::<$t>();

            #[inline]
            unsafe fn atomic_at<'a>(p: *mut u8) -> &'a $atomic {
                // SAFETY: forwarded from the caller: aligned, valid for atomic accesses
                // for `'a`, and only accessed atomically meanwhile.
                unsafe { <$atomic>::from_ptr(p.cast::<$t>()) }
            }

            #[inline]
            fn load(atomic: &$atomic, order: Ordering) -> $t {
                atomic.load(order)
            }

            #[inline]
            fn store(atomic: &$atomic, value: $t, order: Ordering) {
                atomic.store(value, order)
            }

            #[inline]
            fn from_le(raw: $t) -> $t {
                <$t>::from_le(raw)
            }

            #[inline]
            fn to_le(self) -> $t {
                <$t>::to_le(self)
            }
        }
    };
}

word!(u8, AtomicU8);
word!(u16, AtomicU16);
word!(u32, AtomicU32);
word!(u64, AtomicU64);

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
            r.prefetch_read(at);
        }
        let mut all = [0u8; 64];
        r.read_bytes(0, &mut all).unwrap();
        assert_eq!(all, [0x5a; 64]);
    }

    #[test]
    fn atomics_check_bounds_and_alignment() {
        let mem = Backing::new(32);
        let r = mem.region(32);
        r.atomic::<u32>(4).unwrap().store(0x0403_0201, SeqCst);
        r.atomic::<u64>(8).unwrap().store(u64::MAX, SeqCst);
        let mut b = [0u8; 12];
        r.read_bytes(4, &mut b).unwrap();
        assert_eq!(&b[..4], &0x0403_0201u32.to_ne_bytes());
        assert_eq!(&b[4..], &[0xff; 8]);
        assert!(r.atomic::<u32>(2).is_none());
        assert!(r.atomic::<u64>(4).is_none());
        assert!(r.atomic::<u32>(28).is_some());
        assert!(r.atomic::<u32>(32).is_none());
        assert!(r.atomic::<u64>(24).is_some());
        assert!(r.atomic::<u64>(32).is_none());
        assert!(r.atomic::<u64>(usize::MAX - 3).is_none());
    }

    #[test]
    fn plain_word_writes_check_bounds_and_alignment() {
        let mem = Backing::new(32);
        let r = mem.region(32);
        r.write_bytes(0, &[0xaa; 32]).unwrap();
        assert_eq!(r.write_plain_le::<u64>(8, 0x0807_0605_0403_0201), Some(()));
        assert_eq!(r.write_plain_le::<u16>(30, 0x0201), Some(()));
        let mut b = [0u8; 32];
        r.read_bytes(0, &mut b).unwrap();
        assert_eq!(&b[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[30..], &[1, 2]);
        assert_eq!(r.load_le::<u64>(8, SeqCst), Some(0x0807_0605_0403_0201));
        // Misaligned, past the end, or wrapping: nothing written.
        assert!(r.write_plain_le::<u64>(4, 0).is_none());
        assert!(r.write_plain_le::<u64>(32, 0).is_none());
        assert!(r.write_plain_le::<u32>(30, 0).is_none());
        assert!(r.write_plain_le::<u64>(usize::MAX - 7, 0).is_none());
        r.read_bytes(0, &mut b).unwrap();
        assert_eq!(&b[..8], &[0xaa; 8]);
        assert_eq!(&b[16..30], &[0xaa; 14]);
    }

    #[test]
    fn u16_words_check_alignment_and_bounds() {
        let mem = Backing::new(64);
        let r = mem.region(64);
        // Aligned offsets inside the region only: a u16 needs 2-alignment, not 4.
        assert!(r.atomic::<u16>(2).is_some() && r.atomic::<u16>(62).is_some());
        assert!(r.atomic::<u16>(1).is_none() && r.atomic::<u16>(63).is_none());
        assert!(r.atomic::<u16>(64).is_none());
        assert!(r.atomic::<u16>(usize::MAX - 1).is_none());
        assert_eq!(r.load_le::<u16>(3, SeqCst), None);
        assert_eq!(r.store_le::<u16>(64, 1, SeqCst), None);
        // Alignment is checked on the address: an odd sub-region shifts it.
        let odd = r.sub(1, 16).unwrap();
        assert!(odd.atomic::<u16>(0).is_none() && odd.atomic::<u16>(1).is_some());
        assert!(odd.atomic::<u16>(15).is_none(), "one byte left");
        // u8 has no alignment, only bounds.
        assert!(r.atomic::<u8>(63).is_some() && r.atomic::<u8>(64).is_none());
    }

    #[test]
    fn u16_fields_are_little_endian_and_atomic() {
        let mem = Backing::new(64);
        let r = mem.region(64);
        r.store_le::<u16>(6, 0xbeef, SeqCst).unwrap();
        let mut b = [0u8; 4];
        r.read_bytes(5, &mut b).unwrap();
        assert_eq!(b, [0, 0xef, 0xbe, 0], "little-endian, exactly two bytes");
        assert_eq!(r.load_le::<u16>(6, SeqCst), Some(0xbeef));
        r.write_bytes(10, &[0x34, 0x12]).unwrap();
        assert_eq!(r.load_le::<u16>(10, SeqCst), Some(0x1234));
        // Read-modify-write through the atomic, wrapping at 16 bits (a virtio ring index).
        let idx = r.atomic::<u16>(12).unwrap();
        idx.store(u16::MAX, SeqCst);
        assert_eq!(idx.fetch_add(2, SeqCst), u16::MAX);
        assert_eq!(idx.load(SeqCst), 1);
        assert_eq!(idx.compare_exchange(1, 7, SeqCst, SeqCst), Ok(1));
        assert_eq!(idx.compare_exchange(1, 9, SeqCst, SeqCst), Err(7));
        assert_eq!(idx.swap(3, SeqCst), 7);
        assert_eq!(
            r.load_le::<u16>(14, SeqCst),
            Some(0),
            "the next word untouched"
        );
        // Other widths through the same vocabulary.
        r.store_le::<u8>(20, 0xa5, SeqCst).unwrap();
        r.store_le::<u32>(24, 0x0403_0201, SeqCst).unwrap();
        r.store_le::<u64>(32, 0x0807_0605_0403_0201, SeqCst)
            .unwrap();
        let mut all = [0u8; 16];
        r.read_bytes(24, &mut all).unwrap();
        assert_eq!(all, [1, 2, 3, 4, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(r.load_le::<u8>(20, SeqCst), Some(0xa5));
        assert_eq!(<u16 as Word>::SIZE, 2);
    }

    #[test]
    fn u16_atomics_across_threads() {
        // Two threads, as two domains, bump one shared u16 counter.
        let mem = Backing::new(64);
        let n = if cfg!(miri) { 50 } else { 10_000 };
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    let r = mem.region(64);
                    let c = r.atomic::<u16>(2).unwrap();
                    for _ in 0..n {
                        c.fetch_add(1, SeqCst);
                    }
                });
            }
        });
        assert_eq!(
            mem.region(64).load_le::<u16>(2, SeqCst),
            Some((2 * n) as u16)
        );
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
        assert!(s.atomic::<u64>(8).is_some());
        assert!(r.sub(60, 8).is_none());
        assert!(r.sub(usize::MAX, 2).is_none());
        assert!(r.sub(64, 0).unwrap().is_empty());
        // Misaligned sub-region: alignment is checked on the address, not the offset.
        let odd = r.sub(1, 16).unwrap();
        assert!(odd.atomic::<u32>(0).is_none());
        assert!(odd.atomic::<u32>(3).is_some());
    }
}
